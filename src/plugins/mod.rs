//! One folder per plugin: its setup, its handler, its README and its tests.

pub mod acl;
pub mod any;
pub mod bufsize;
pub mod chaos;
pub mod errors;
pub mod health;
pub mod loadbalance;
pub mod local;
pub mod log;
pub mod r#loop;
pub mod minimal;
pub mod nsid;
pub mod prometheus;
pub mod ready;
pub mod root;
pub mod template;
pub mod whoami;

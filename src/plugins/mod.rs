//! One folder per plugin: its setup, its handler, its README and its tests.

pub mod acl;
pub mod any;
pub mod bind;
pub mod bufsize;
pub mod cache;
pub mod chaos;
pub mod errors;
pub mod forward;
pub mod health;
pub mod hosts;
pub mod loadbalance;
pub mod local;
pub mod log;
pub mod r#loop;
pub mod minimal;
pub mod nsid;
pub mod prometheus;
pub mod ready;
pub mod reload;
pub mod root;
pub mod whoami;

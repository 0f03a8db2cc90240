//! One folder per plugin: its setup, its handler, its README and its tests.

pub mod acl;
pub mod any;
pub mod bufsize;
pub mod chaos;
pub mod local;
pub mod minimal;
pub mod nsid;
pub mod root;
pub mod whoami;

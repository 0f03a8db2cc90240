//! One folder per plugin: its setup, its handler, its README and its tests.

pub mod loadbalance;
pub mod r#loop;
pub mod whoami;

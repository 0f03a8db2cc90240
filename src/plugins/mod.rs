//! One folder per plugin: its setup, its handler, its README and its tests.

pub mod forward;
pub mod whoami;

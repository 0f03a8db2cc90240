//! One folder per plugin: its setup, its handler, its README and its tests.

pub mod errors;
pub mod health;
pub mod log;
pub mod prometheus;
pub mod ready;
pub mod whoami;

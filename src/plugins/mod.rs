//! One folder per plugin: its setup, its handler, its README and its tests.

pub mod bind;
pub mod reload;
pub mod whoami;

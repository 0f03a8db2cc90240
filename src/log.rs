//! Log lines in CoreDNS's format: `[INFO] message`, `[WARNING] ...`, `[ERROR] ...`, written to
//! standard output as CoreDNS writes them (no timestamp; the container runtime adds one).

use std::io::Write;

pub fn write_line(level: &str, msg: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the server down.
    let _ = writeln!(out, "[{level}] {msg}");
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write_line("INFO", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::write_line("WARNING", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write_line("ERROR", format_args!($($arg)*)) };
}

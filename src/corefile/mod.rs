//! The Corefile: CoreDNS's configuration language (a fork of the Caddyfile).
//!
//! This module turns text into [`ServerBlock`]s whose every token remembers the file and line it
//! came from, so that a plugin's setup can reject a bad option with CoreDNS's
//! `FILE:LINE - Error during parsing: ...` message. Lexing, snippets, `import`, environment
//! variables and server-key parsing live in the files beside this one; plugins only ever see the
//! tree of [`Directive`]s.

mod key;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use key::{Scheme, ServerKey, normalize_exact, parse_key};
pub use parser::{parse_file, parse_str, parse_str_without_files};

/// Where a token was read: the file (as the user named it, or `stdin`) and the 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One word of the Corefile after quoting, escapes and environment variables are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub loc: Loc,
    /// The token was written in quotes: `"{"` is a word, not the start of a block.
    pub quoted: bool,
}

/// A line inside a server block: its first word, the rest of the line, and an optional `{ }` block
/// whose lines are directives in turn (plugins such as `forward` and `template` nest options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub loc: Loc,
    pub args: Vec<Token>,
    pub block: Vec<Directive>,
}

/// `KEY [KEY...] { directives }`: the keys are the raw words (for example `.:53`,
/// `dns://example.org`, `10.0.0.0/24`); [`parse_key`] gives them meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerBlock {
    pub keys: Vec<Token>,
    pub directives: Vec<Directive>,
    pub loc: Loc,
}

/// The whole parsed configuration plus every file that went into it, which `reload` hashes.
#[derive(Clone, Debug, Default)]
pub struct Corefile {
    pub blocks: Vec<ServerBlock>,
    /// The Corefile itself (as named, when read from a file) and every imported file (absolute),
    /// in the order they were read.
    pub files: Vec<PathBuf>,
    /// SHA-512 (lowercase hex) of the bytes of `files`, in order, as the parser read them.
    /// `reload` compares this, never a second read of the files, so a change that lands between
    /// parsing and hashing cannot become the baseline and be missed.
    pub sha512: String,
    /// Things CoreDNS logs as `[WARNING]` while parsing (a glob that matched no file), for the
    /// caller to print.
    pub warnings: Vec<String>,
}

/// A Corefile error, formatted as CoreDNS formats its parse errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub loc: Option<Loc>,
    pub msg: String,
}

impl Error {
    pub fn at(loc: &Loc, msg: impl Into<String>) -> Self {
        Error {
            loc: Some(loc.clone()),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(loc) => write!(f, "{loc} - Error during parsing: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for Error {}

impl Directive {
    /// CoreDNS's `c.ArgErr()`: the line has too few or too many words.
    pub fn arg_err(&self) -> Error {
        Error::at(
            &self.loc,
            format!(
                "Wrong argument count or unexpected line ending after '{}'",
                self.args
                    .last()
                    .map_or(self.name.as_str(), |t| t.text.as_str())
            ),
        )
    }

    /// An error about this directive, at its line (CoreDNS's `c.Errf`).
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::at(&self.loc, msg)
    }

    /// An error about one of this directive's words, at that word's line.
    pub fn err_at(&self, token: &Token, msg: impl Into<String>) -> Error {
        Error::at(&token.loc, msg)
    }

    /// The words after the directive name, as strings.
    pub fn arg_strs(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }

    /// CoreDNS's "unknown property" error for a line inside this directive's block.
    pub fn unknown_property(line: &Directive) -> Error {
        Error::at(&line.loc, format!("unknown property '{}'", line.name))
    }
}

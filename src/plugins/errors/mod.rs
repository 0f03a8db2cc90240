//! `errors`: log the errors that plugins return, optionally consolidated. See README.md.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use regex::Regex;

use crate::corefile::Directive;
use crate::plugin::mnemonic::type_name;
use crate::plugin::parse::go_duration_string;
use crate::plugin::setup::{Setup, SetupError, SetupResult};
use crate::plugin::{Failure, Next, Outcome, Plugin, Request, Served};

/// Longer patterns are refused, as CoreDNS refuses them (a guard against huge regex builds).
const MAX_REGEXP_LEN: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// One `consolidate DURATION REGEXP [LEVEL] [show_first]` line.
pub struct Pattern {
    period: Duration,
    regex: Regex,
    level: Level,
    show_first: bool,
    /// Matches since the period started; the first one starts the period's timer.
    count: AtomicU32,
}

pub struct Errors {
    patterns: Vec<Arc<Pattern>>,
    /// `debug` is on in this block: DEBUG lines are printed (CoreDNS drops them otherwise).
    debug: bool,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    match d.args.as_slice() {
        [] => {}
        [only] if only.text == "stdout" => {}
        [other] => return Err(d.err(format!("invalid log file: {}", other.text))),
        _ => return Err(d.arg_err()),
    }
    let mut patterns = Vec::new();
    for line in &d.block {
        match line.name.as_str() {
            // A stack trace is for Go's panic recovery; there is no such recovery here, so the
            // option is accepted and changes nothing.
            "stacktrace" => {}
            "consolidate" => patterns.push(Arc::new(consolidate(line)?)),
            other => {
                return Err(SetupError {
                    loc: None,
                    msg: format!(
                        "{} - Syntax error: Unexpected token '{other}', expecting 'Unknown field {other}'",
                        line.loc
                    ),
                });
            }
        }
    }
    Ok(Some(Arc::new(Errors {
        patterns,
        debug: c.block.debug,
    })))
}

fn consolidate(line: &Directive) -> Result<Pattern, SetupError> {
    let args = line.arg_strs();
    if !(2..=4).contains(&args.len()) {
        return Err(line.arg_err());
    }
    let period = crate::plugin::parse::go_duration(args[0]).map_err(|e| line.err(e))?;
    if args[1].len() > MAX_REGEXP_LEN {
        return Err(line.err(format!(
            "regex pattern too long: {} > {MAX_REGEXP_LEN}",
            args[1].len()
        )));
    }
    let regex = Regex::new(args[1]).map_err(|e| line.err(e.to_string()))?;
    let mut level = None;
    let mut show_first = false;
    for arg in &args[2..] {
        let this = match *arg {
            "warning" => Level::Warning,
            "error" => Level::Error,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "show_first" => {
                show_first = true;
                continue;
            }
            other => {
                return Err(line.err(format!("unknown option in consolidate: {other}")));
            }
        };
        if level.is_some() {
            return Err(line.err("multiple log levels specified in consolidate"));
        }
        if show_first {
            return Err(line.err("log level must come before show_first in consolidate"));
        }
        level = Some(this);
    }
    Ok(Pattern {
        period,
        regex,
        level: level.unwrap_or(Level::Error),
        show_first,
        count: AtomicU32::new(0),
    })
}

impl Errors {
    fn emit(&self, level: Level, msg: std::fmt::Arguments<'_>) {
        if level == Level::Debug && !self.debug {
            return;
        }
        crate::log::write_line(level.tag(), msg);
    }

    fn report(&self, req: &Request, failure: &Failure) {
        if let Some((level, line)) = self.decide(req, failure) {
            self.emit(level, format_args!("{line}"));
        }
    }

    /// What to print for `failure`, CoreDNS's `RCODE QNAME QTYPE: ERROR` with the rcode as a
    /// number, or nothing when it only counts towards the first consolidation pattern it
    /// matches.
    fn decide(&self, req: &Request, failure: &Failure) -> Option<(Level, String)> {
        let error = failure.error.as_ref()?;
        let text = error.to_string();
        let mut level = Level::Error;
        if let Some(p) = self.patterns.iter().find(|p| p.regex.is_match(&text)) {
            if p.count.fetch_add(1, Ordering::Relaxed) != 0 {
                return None;
            }
            self.start_period(p);
            if !p.show_first {
                return None;
            }
            level = p.level;
        }
        let line = format!(
            "plugin/errors: {} {} {}: {text}",
            u16::from(failure.rcode),
            req.name(),
            type_name(req.qtype())
        );
        Some((level, line))
    }

    /// The first match of a period: print the summary when the period is over.
    fn start_period(&self, p: &Arc<Pattern>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Pattern> = Arc::downgrade(p);
        let debug = self.debug;
        rt.spawn(async move {
            let Some(period) = weak.upgrade().map(|p| p.period) else {
                return;
            };
            tokio::time::sleep(period).await;
            if let Some(p) = weak.upgrade() {
                summarize(&p, debug);
            }
        });
    }
}

/// `N errors like 'REGEXP' occurred in last DURATION`, at the pattern's level. With
/// `show_first` a lone error was already printed, so it gets no summary.
fn summarize(p: &Pattern, debug: bool) {
    if p.level == Level::Debug && !debug {
        p.count.store(0, Ordering::Relaxed);
        return;
    }
    if let Some(line) = summary(p) {
        crate::log::write_line(p.level.tag(), format_args!("{line}"));
    }
}

/// Take the period's count and word it; `None` when there is nothing to add.
fn summary(p: &Pattern) -> Option<String> {
    let n = p.count.swap(0, Ordering::Relaxed);
    if n == 0 || (n == 1 && p.show_first) {
        return None;
    }
    Some(format!(
        "plugin/errors: {n} errors like '{}' occurred in last {}",
        p.regex.as_str(),
        go_duration_string(p.period)
    ))
}

impl Plugin for Errors {
    fn name(&self) -> &'static str {
        "errors"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        next.serve(req).map(move |mut outcome| {
            self.back(req, &mut outcome);
            outcome
        })
    }

    fn passes_through(&self) -> bool {
        true
    }

    fn back(&self, req: &Request, outcome: &mut Outcome) {
        if let Err(failure) = outcome {
            self.report(req, failure);
        }
    }
}

#[cfg(test)]
mod tests;

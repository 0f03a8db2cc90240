//! From words to server blocks: keys, braces, nested blocks, snippets and `import`.
//!
//! The parser walks one flat list of words. `import` splices the words of a snippet or of files
//! into that list where the `import` line was, as Caddy v1 does, so an import may appear wherever
//! a line may: before a server block's keys, among its directives, or inside a nested block. Every
//! word remembers the expansion it came from (the file or snippet imported, and what imported
//! that), which is how an import cycle is found and reported instead of looping.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use super::lexer::{self, Kind};
use super::{Corefile, Directive, Error, Loc, ServerBlock, Token};

/// Caddy v1's caps on snippet and file imports per parse; they also bound what a pathological
/// input (a snippet imported a thousand times) can cost.
const MAX_IMPORTS: usize = 1000;
/// Words after all imports: far above any real configuration.
const MAX_WORDS: usize = 1_000_000;
/// Nesting of `{ }` blocks below a server block.
const MAX_DEPTH: usize = 64;

const UNMATCHED_CLOSE: &str = "Unexpected '}' because no matching opening brace";

/// Parse the Corefile at `path`. Imports are relative to its directory; error messages name it
/// as given.
pub fn parse_file(path: &Path) -> Result<Corefile, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error {
        loc: None,
        msg: format!("open {}: {e}", path.display()),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let abs = clean(&absolute(path));
    let dir = abs
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let identity = std::fs::canonicalize(path).unwrap_or(abs);
    let mut parser = Parser::new(&lexer::process_env);
    parser.files.push(path.to_path_buf());
    parser.digest.update(&bytes);
    parser.run(
        &path.to_string_lossy(),
        &text,
        dir,
        FrameKey::File(identity),
    )
}

/// Parse Corefile text. `file` names it in errors (`stdin`); relative imports are looked up in
/// `base_dir`.
pub fn parse_str(file: &str, input: &str, base_dir: &Path) -> Result<Corefile, Error> {
    parse_with_env(file, input, base_dir, &lexer::process_env)
}

/// [`parse_str`] with no file system access: every file import finds nothing, as if no file
/// existed. For fuzzing, where an `import /dev/...` must not reach the host.
#[doc(hidden)]
pub fn parse_str_without_files(file: &str, input: &str) -> Result<Corefile, Error> {
    let mut parser = Parser::new(&lexer::process_env);
    parser.files_allowed = false;
    parser.run(file, input, PathBuf::from("/nonexistent"), FrameKey::Root)
}

/// [`parse_str`] with environment variables looked up by `env`.
pub(crate) fn parse_with_env(
    file: &str,
    input: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Corefile, Error> {
    let parser = Parser::new(env);
    parser.run(file, input, clean(&absolute(base_dir)), FrameKey::Root)
}

/// A word on its way through the parser.
#[derive(Clone, Debug)]
struct Word {
    text: String,
    loc: Loc,
    quoted: bool,
    kind: Kind,
    newline: bool,
    /// Index into `Parser::dirs`: where relative imports written next to this word are found.
    dir: usize,
    /// Index into `Parser::frames`: the expansion this word came from.
    frame: usize,
}

impl Word {
    fn is_word(&self) -> bool {
        self.kind == Kind::Word
    }

    fn token(self) -> Token {
        Token {
            text: self.text,
            loc: self.loc,
            quoted: self.quoted,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum FrameKey {
    /// Text given directly (`parse_str`): nothing to import it again by.
    Root,
    /// A file, by its canonical path.
    File(PathBuf),
    Snippet(String),
}

/// One expansion: the top-level text, an imported file, or an imported snippet.
struct Frame {
    parent: Option<usize>,
    key: FrameKey,
    /// How the cycle message shows it: the path, or `(name)` for a snippet.
    label: String,
}

struct Parser<'e> {
    /// The words still to read, last first: reading pops, and an import pushes its words in
    /// reverse, so an import costs what it brings and not what follows it.
    words: Vec<Word>,
    /// The last word read, where "Unexpected EOF" is reported.
    last: Option<Loc>,
    dirs: Vec<PathBuf>,
    frames: Vec<Frame>,
    snippets: HashMap<String, Vec<Word>>,
    snippet_imports: usize,
    file_imports: usize,
    files: Vec<PathBuf>,
    /// Over the bytes of `files`, as they were read.
    digest: sha2::Sha512,
    warnings: Vec<String>,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// Off only for fuzzing: file imports then match nothing.
    files_allowed: bool,
}

impl<'e> Parser<'e> {
    fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Parser {
            words: Vec::new(),
            last: None,
            dirs: Vec::new(),
            frames: Vec::new(),
            snippets: HashMap::new(),
            snippet_imports: 0,
            file_imports: 0,
            files: Vec::new(),
            digest: sha2::Sha512::default(),
            warnings: Vec::new(),
            env,
            files_allowed: true,
        }
    }

    fn run(
        mut self,
        file: &str,
        text: &str,
        dir: PathBuf,
        key: FrameKey,
    ) -> Result<Corefile, Error> {
        self.frames.push(Frame {
            parent: None,
            key,
            label: file.to_string(),
        });
        let mut words = self.load(Arc::from(file), text, dir, 0)?;
        words.reverse();
        self.words = words;
        let blocks = self.blocks()?;
        let sha512 = self
            .digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Corefile {
            blocks,
            files: self.files,
            sha512,
            warnings: self.warnings,
        })
    }

    /// Lex one text into words that belong to `frame`, with environment variables substituted.
    fn load(
        &mut self,
        file: Arc<str>,
        text: &str,
        dir: PathBuf,
        frame: usize,
    ) -> Result<Vec<Word>, Error> {
        let dir_index = self.dirs.len();
        self.dirs.push(dir);
        let lexemes = lexer::lex(text).map_err(|(line, msg)| {
            Error::at(
                &Loc {
                    file: file.clone(),
                    line,
                },
                msg,
            )
        })?;
        Ok(lexemes
            .into_iter()
            .map(|l| Word {
                text: lexer::expand_env(&l.text, self.env),
                loc: Loc {
                    file: file.clone(),
                    line: l.line,
                },
                quoted: l.quoted,
                kind: l.kind,
                newline: l.newline,
                dir: dir_index,
                frame,
            })
            .collect())
    }

    fn peek(&self) -> Option<&Word> {
        self.words.last()
    }

    fn bump(&mut self) -> Word {
        // Only called after `peek` saw a word.
        let w = self.words.pop().expect("a word to read");
        self.last = Some(w.loc.clone());
        w
    }

    /// Where "Unexpected EOF" is reported: the last word, as CoreDNS does.
    fn eof_loc(&self) -> Loc {
        match &self.last {
            Some(loc) => loc.clone(),
            None => Loc {
                file: Arc::from(self.frames[0].label.as_str()),
                line: 1,
            },
        }
    }

    fn unclosed(&self, open: &Loc) -> Error {
        let at = if open.file == self.eof_loc().file {
            format!("line {}", open.line)
        } else {
            open.to_string()
        };
        Error::at(
            &self.eof_loc(),
            format!("Unexpected EOF, expecting '}}' to close the block opened at {at}"),
        )
    }

    fn blocks(&mut self) -> Result<Vec<ServerBlock>, Error> {
        let mut blocks = Vec::new();
        while let Some(w) = self.peek() {
            if w.kind == Kind::Close {
                return Err(Error::at(&w.loc, UNMATCHED_CLOSE));
            }
            if w.is_word() && w.text == "import" {
                self.import()?;
                continue;
            }
            let loc = w.loc.clone();
            let keys = self.keys()?;
            if let [key] = keys.as_slice()
                && let Some(name) = snippet_name(&key.text)
            {
                self.snippet(name.to_string(), key.loc.clone())?;
                continue;
            }
            let directives = self.body()?;
            if keys.is_empty() {
                // Caddy drops a block without keys; with keys from an unset environment variable
                // that can be on purpose, so it is only a warning.
                self.warnings
                    .push(format!("{loc}: server block without keys is ignored"));
                continue;
            }
            let loc = keys[0].loc.clone();
            blocks.push(ServerBlock {
                keys,
                directives,
                loc,
            });
        }
        Ok(blocks)
    }

    /// The keys of a server block: words on the first line, separated by white space or commas;
    /// a trailing comma continues the list on the next line. Ends before a `{` or the next line.
    fn keys(&mut self) -> Result<Vec<Token>, Error> {
        let mut keys = Vec::new();
        let mut expecting = false;
        let mut first = true;
        loop {
            let Some(w) = self.peek() else {
                if expecting {
                    return Err(Error::at(&self.eof_loc(), "Unexpected EOF"));
                }
                break;
            };
            match w.kind {
                Kind::Open if expecting => {
                    return Err(Error::at(
                        &w.loc,
                        "Expected another address but had '{' - check for extra comma",
                    ));
                }
                Kind::Open => break,
                Kind::Close if !first && !expecting && w.newline => break,
                Kind::Close => return Err(Error::at(&w.loc, UNMATCHED_CLOSE)),
                Kind::Word => {}
            }
            if !first && !expecting && w.newline {
                break;
            }
            if !first && w.newline && w.text == "import" {
                self.import()?;
                continue;
            }
            let w = self.bump();
            first = false;
            if w.text.is_empty() {
                // `""` is no key (Caddy skips it too).
                continue;
            }
            expecting = w.text.ends_with(',');
            for part in w.text.split(',').filter(|p| !p.is_empty()) {
                keys.push(Token {
                    text: part.to_string(),
                    loc: w.loc.clone(),
                    quoted: w.quoted,
                });
            }
        }
        Ok(keys)
    }

    /// `(name) { ... }`: keep the words for `import name`, unexpanded; imports inside a snippet
    /// happen where it is used.
    fn snippet(&mut self, name: String, at: Loc) -> Result<(), Error> {
        if self.snippets.contains_key(&name) {
            return Err(Error::at(
                &at,
                format!("redeclaration of previously declared snippet {name}"),
            ));
        }
        let open = match self.peek() {
            Some(w) if w.kind == Kind::Open => self.bump(),
            Some(w) => {
                return Err(Error::at(
                    &w.loc,
                    format!(
                        "Syntax error: Unexpected token '{}', expecting '{{'",
                        w.text
                    ),
                ));
            }
            None => {
                return Err(Error::at(
                    &at,
                    format!("Unexpected EOF, expecting '{{' to start snippet ({name})"),
                ));
            }
        };
        let mut depth = 1usize;
        let mut body = Vec::new();
        loop {
            if self.peek().is_none() {
                return Err(self.unclosed(&open.loc));
            }
            let w = self.bump();
            match w.kind {
                Kind::Open => depth += 1,
                Kind::Close => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Kind::Word => {}
            }
            body.push(w);
        }
        self.snippets.insert(name, body);
        Ok(())
    }

    /// A server block's directives: in braces, or (for a block without braces, which must then
    /// be the last) up to the end of the input.
    fn body(&mut self) -> Result<Vec<Directive>, Error> {
        match self.peek() {
            Some(w) if w.kind == Kind::Open => {
                let open = self.bump();
                self.lines(Some(&open.loc), 1)
            }
            _ => self.lines(None, 1),
        }
    }

    /// Directive lines until the `}` that closes `open`, or the end of the input when there is
    /// no `open`. A line is a name, the words after it on the same line, and an optional block
    /// that opens with `{` at the end of the line (or alone on the next one) and holds lines in
    /// turn. A `}` may also close a block in the middle of a line: `tls { insecure }`.
    fn lines(&mut self, open: Option<&Loc>, depth: usize) -> Result<Vec<Directive>, Error> {
        if depth > MAX_DEPTH
            && let Some(open) = open
        {
            return Err(Error::at(
                open,
                format!("blocks are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let mut out = Vec::new();
        loop {
            let Some(w) = self.peek() else {
                return match open {
                    Some(open) => Err(self.unclosed(open)),
                    None => Ok(out),
                };
            };
            match w.kind {
                Kind::Close if open.is_some() => {
                    self.bump();
                    return Ok(out);
                }
                Kind::Close => return Err(Error::at(&w.loc, UNMATCHED_CLOSE)),
                Kind::Open => {
                    return Err(Error::at(
                        &w.loc,
                        "Syntax error: Unexpected token '{', expecting a directive",
                    ));
                }
                Kind::Word => {}
            }
            if w.text == "import" {
                self.import()?;
                continue;
            }
            let name = self.bump();
            let mut args = Vec::new();
            while let Some(a) = self.peek() {
                if a.newline || !a.is_word() {
                    break;
                }
                let a = self.bump();
                args.push(a.token());
            }
            let mut block = Vec::new();
            if let Some(w) = self.peek()
                && w.kind == Kind::Open
            {
                let open = self.bump();
                block = self.lines(Some(&open.loc), depth + 1)?;
            }
            out.push(Directive {
                name: name.text,
                loc: name.loc,
                args,
                block,
            });
        }
    }

    /// `import PATTERN` at the start of a line: replace it with the words of the snippet named
    /// PATTERN, or else of the files PATTERN matches.
    fn import(&mut self) -> Result<(), Error> {
        let imp = self.bump();
        let arg = match self.peek() {
            Some(a) if !a.newline && a.is_word() => self.bump(),
            _ => {
                return Err(Error::at(
                    &imp.loc,
                    "Wrong argument count or unexpected line ending after 'import'",
                ));
            }
        };
        if let Some(extra) = self.peek()
            && !extra.newline
            && extra.is_word()
        {
            return Err(Error::at(
                &extra.loc,
                "Import takes only one argument (glob pattern or file)",
            ));
        }
        if arg.text.is_empty() {
            return Err(Error::at(&arg.loc, "Import requires a non-empty filepath"));
        }
        let words = if self.snippets.contains_key(&arg.text) {
            self.import_snippet(&arg)?
        } else {
            self.import_files(&arg)?
        };
        if self.words.len() + words.len() > MAX_WORDS {
            return Err(Error::at(
                &arg.loc,
                format!("the configuration has more than {MAX_WORDS} words after imports"),
            ));
        }
        self.words.extend(words.into_iter().rev());
        Ok(())
    }

    fn import_snippet(&mut self, arg: &Word) -> Result<Vec<Word>, Error> {
        let name = arg.text.clone();
        let label = format!("({name})");
        self.check_cycle(arg, &FrameKey::Snippet(name.clone()), &label)?;
        if self.snippet_imports >= MAX_IMPORTS {
            return Err(Error::at(
                &arg.loc,
                format!("maximum snippet import depth ({MAX_IMPORTS}) exceeded"),
            ));
        }
        self.snippet_imports += 1;
        let frame = self.frames.len();
        self.frames.push(Frame {
            parent: Some(arg.frame),
            key: FrameKey::Snippet(name.clone()),
            label,
        });
        let mut words = self.snippets.get(&name).cloned().unwrap_or_default();
        for w in &mut words {
            w.frame = frame;
        }
        if let Some(first) = words.first_mut() {
            first.newline = true;
        }
        Ok(words)
    }

    fn import_files(&mut self, arg: &Word) -> Result<Vec<Word>, Error> {
        let pattern = arg.text.as_str();
        if self.file_imports >= MAX_IMPORTS {
            return Err(Error::at(
                &arg.loc,
                format!("maximum file import depth ({MAX_IMPORTS}) exceeded"),
            ));
        }
        self.file_imports += 1;
        // Relative to the directory of the file the `import` is written in (a snippet's words
        // keep the file they were written in).
        let glob_path = if Path::new(pattern).is_absolute() {
            clean(Path::new(pattern))
        } else {
            clean(&self.dirs[arg.dir].join(pattern))
        };
        let shown = glob_path.to_string_lossy().into_owned();
        if shown.matches('*').count() > 1
            || shown.matches('?').count() > 1
            || (shown.contains('[') && shown.contains(']'))
        {
            // Caddy's guard against patterns that take long to expand.
            return Err(Error::at(
                &arg.loc,
                format!("Glob pattern may only contain one wildcard (*), but has others: {shown}"),
            ));
        }
        let matches = if !self.files_allowed {
            Ok(Vec::new())
        } else {
            glob(&glob_path)
        }
        .map_err(|e| {
            Error::at(
                &arg.loc,
                format!("Failed to use import pattern {pattern}: {e}"),
            )
        })?;
        if matches.is_empty() {
            if shown.contains(['*', '?', '[', ']']) {
                self.warnings
                    .push(format!("No files matching import glob pattern: {pattern}"));
            } else {
                return Err(Error::at(
                    &arg.loc,
                    format!("File to import not found: {pattern}"),
                ));
            }
        }
        let mut words = Vec::new();
        for path in matches {
            let shown = path.to_string_lossy().into_owned();
            let meta = std::fs::metadata(&path)
                .map_err(|e| Error::at(&arg.loc, format!("Could not import {shown}: {e}")))?;
            if meta.is_dir() {
                return Err(Error::at(
                    &arg.loc,
                    format!("Could not import {shown}: is a directory"),
                ));
            }
            // Caddy would also open a FIFO or a device and wait on it forever (or read
            // /dev/zero until memory runs out); a configuration file is a regular file.
            if !meta.is_file() {
                return Err(Error::at(
                    &arg.loc,
                    format!("Could not import {shown}: not a regular file"),
                ));
            }
            let identity = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            self.check_cycle(arg, &FrameKey::File(identity.clone()), &shown)?;
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::at(&arg.loc, format!("Could not import {shown}: {e}")))?;
            if !self.files.contains(&path) {
                self.files.push(path.clone());
                self.digest.update(&bytes);
            }
            let frame = self.frames.len();
            self.frames.push(Frame {
                parent: Some(arg.frame),
                key: FrameKey::File(identity),
                label: shown.clone(),
            });
            let dir = path
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
            let text = String::from_utf8_lossy(&bytes);
            // Words of an imported file name it by its absolute path, as Caddy does.
            words.extend(self.load(Arc::from(shown.as_str()), &text, dir, frame)?);
        }
        Ok(words)
    }

    /// An error when `key` is already being expanded where `at` stands; the message shows the
    /// whole chain from the top.
    fn check_cycle(&self, at: &Word, key: &FrameKey, label: &str) -> Result<(), Error> {
        let mut chain = Vec::new();
        let mut cycle = false;
        let mut frame = Some(at.frame);
        while let Some(i) = frame {
            let f = &self.frames[i];
            chain.push(f.label.as_str());
            cycle |= f.key == *key;
            frame = f.parent;
        }
        if !cycle {
            return Ok(());
        }
        chain.reverse();
        chain.push(label);
        Err(Error::at(
            &at.loc,
            format!("Import cycle detected: {}", chain.join(" -> ")),
        ))
    }
}

/// `(name)` as the only key defines a snippet.
fn snippet_name(key: &str) -> Option<&str> {
    key.strip_prefix('(')?.strip_suffix(')')
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Lexical clean-up, as Go's `filepath.Clean`: no `.` components, `..` folded where it can be.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Go's `filepath.Glob` for the patterns Caddy lets through: `*` (any run of characters within
/// one path component, dot files included), `?` (one character) and `\` (escape), in any
/// component. Matches come sorted within each directory. A `[` can only be an unclosed class
/// here (a pattern with both brackets was refused), which Go reports as a bad pattern.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let text = pattern.to_string_lossy();
    if !has_meta(&text) {
        return Ok(if std::fs::symlink_metadata(pattern).is_ok() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    if text.contains('[') || text.ends_with('\\') {
        return Err("syntax error in pattern".into());
    }
    let mut found = vec![PathBuf::new()];
    for c in pattern.components() {
        let comp = match c {
            Component::Normal(s) => s.to_str().filter(|s| has_meta(s)),
            _ => None,
        };
        let Some(comp) = comp else {
            for f in &mut found {
                f.push(c.as_os_str());
            }
            continue;
        };
        let pat: Vec<char> = comp.chars().collect();
        let mut next = Vec::new();
        for base in &found {
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| {
                    let name: Vec<char> = name.chars().collect();
                    wildcard_match(&pat, &name)
                })
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found.retain(|p| std::fs::symlink_metadata(p).is_ok());
    Ok(found)
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

fn wildcard_match(pat: &[char], name: &[char]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| wildcard_match(rest, &name[i..])),
        Some(('?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some(('\\', rest)) if !rest.is_empty() => {
            name.first() == Some(&rest[0]) && wildcard_match(&rest[1..], &name[1..])
        }
        Some((c, rest)) => name.first() == Some(c) && wildcard_match(rest, &name[1..]),
    }
}

//! Table-driven tests of the whole Corefile language: structure, line numbers, environment
//! variables, snippets, imports (with real files in temporary directories) and errors; and a
//! property test that no input makes the parser panic.

use std::path::{Path, PathBuf};

use super::parser::parse_with_env;
use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "ZONE" => Some("example.org".into()),
        "PORT" => Some("1053".into()),
        "TWO" => Some("a.example b.example".into()),
        "PLUGIN" => Some("whoami".into()),
        "SNIP" => Some("common".into()),
        "BRACE" => Some("{".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Corefile, Error> {
    parse_with_env("Corefile", text, Path::new("/nonexistent"), &env)
}

fn parse_in(dir: &Path, text: &str) -> Result<Corefile, Error> {
    parse_with_env("Corefile", text, dir, &env)
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// A compact picture of the tree: `keys{name@line arg arg{...}}` per block.
fn shape(c: &Corefile) -> Vec<String> {
    fn lines(ds: &[Directive]) -> String {
        ds.iter()
            .map(|d| {
                let mut s = format!("{}@{}", d.name, d.loc.line);
                for a in &d.args {
                    s.push(' ');
                    s.push_str(&a.text);
                }
                if !d.block.is_empty() {
                    s.push_str(&format!("{{{}}}", lines(&d.block)));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
    c.blocks
        .iter()
        .map(|b| {
            let keys: Vec<&str> = b.keys.iter().map(|k| k.text.as_str()).collect();
            format!(
                "{}@{}{{{}}}",
                keys.join(","),
                b.loc.line,
                lines(&b.directives)
            )
        })
        .collect()
}

#[test]
fn structure() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("# nothing\n\n", &[]),
        (".:53 {\n    whoami\n}\n", &[".:53@1{whoami@2}"]),
        (
            "example.org {\n  log\n  errors\n}\nexample.net:1053 {\n  whoami\n}",
            &[
                "example.org@1{log@2; errors@3}",
                "example.net:1053@5{whoami@6}",
            ],
        ),
        // Several keys, separated by spaces, commas, or a trailing comma and a new line.
        ("a b c {\n}", &["a,b,c@1{}"]),
        ("a, b,c {\n}", &["a,b,c@1{}"]),
        ("a,\n  b,\n  c {\n whoami\n}", &["a,b,c@1{whoami@4}"]),
        ("a , b {\n}", &["a,b@1{}"]),
        // Without braces: a single block whose lines run to the end.
        (
            "example.org\nwhoami\nlog stdout",
            &["example.org@1{whoami@2; log@3 stdout}"],
        ),
        ("example.org", &["example.org@1{}"]),
        // The brace may sit alone on the next line.
        ("example.org\n{\n  whoami\n}", &["example.org@1{whoami@3}"]),
        // Nested blocks of any depth, with their lines.
        (
            ". {\n forward . 1.1.1.1 {\n  tls {\n   x 1 {\n    deep\n   }\n  }\n  max_fails 3\n }\n}",
            &[".@1{forward@2 . 1.1.1.1{tls@3{x@4 1{deep@5}}; max_fails@8 3}}"],
        ),
        // One-line blocks.
        (". { whoami }", &[".@1{whoami@1}"]),
        (
            ". {\n forward . x { max_fails 3 }\n log\n}",
            &[".@1{forward@2 . x{max_fails@2 3}; log@3}"],
        ),
        (". {\n a { }\n}", &[".@1{a@2}"]),
        // Comments anywhere outside quotes.
        (". { # c\n  log # c {\n} # c", &[".@1{log@2}"]),
        // Quoted words: a quoted brace is an argument, and a string over several lines leaves
        // the following line numbers right.
        (
            ". {\n  template \"{\" \"}\"\n  log\n}",
            &[".@1{template@2 { }; log@3}"],
        ),
        (
            ". {\n  answer \"a\nb\nc\" d\n  log\n}",
            &[".@1{answer@2 a\nb\nc d; log@5}"],
        ),
        (". {\n  x \"\" y\n}", &[".@1{x@2  y}"]),
        // `{}` without a space is a word, as in Caddy.
        (". {\n  x {}\n}", &[".@1{x@2 {}}"]),
        // A block whose keys are all empty (an unset variable) is dropped, as Caddy drops it.
        ("{$UNSET} {\n whoami\n}\n. {\n log\n}", &[".@4{log@5}"]),
    ];
    for (input, want) in cases {
        let c = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(shape(&c), *want, "input {input:?}");
    }
}

#[test]
fn tokens_remember_file_line_and_quoting() {
    let c = parse(". {\n  rewrite name \"a b\" c\n}").unwrap();
    let d = &c.blocks[0].directives[0];
    assert_eq!(d.loc.to_string(), "Corefile:2");
    assert_eq!(d.args[1].text, "a b");
    assert!(d.args[1].quoted);
    assert!(!d.args[0].quoted);
    assert_eq!(c.blocks[0].keys[0].loc.to_string(), "Corefile:1");
    assert!(c.files.is_empty());
}

#[test]
fn environment_variables_in_every_word() {
    let c = parse(
        "{$ZONE}:{%PORT%} {$TWO} {\n  {$PLUGIN} {$ZONE} \"q {$PORT}\"\n  x{$UNSET}y {\n    {%PLUGIN%}\n  }\n}",
    )
    .unwrap();
    assert_eq!(
        shape(&c),
        vec!["example.org:1053,a.example b.example@1{whoami@2 example.org q 1053; xy@3{whoami@4}}"]
    );
    // A variable holding a brace is a word, not a block.
    let c = parse(". {\n  x {$BRACE}\n}").unwrap();
    assert_eq!(shape(&c), vec![".@1{x@2 {}"]);
    // Snippet names and import patterns too.
    let c = parse("({$SNIP}) {\n  log\n}\n. {\n  import {%SNIP%}\n}").unwrap();
    assert_eq!(shape(&c), vec![".@4{log@2}"]);
}

#[test]
fn snippets() {
    let cases: &[(&str, &[&str])] = &[
        (
            "(common) {\n  log\n  errors\n}\n. {\n  import common\n  whoami\n}",
            &[".@5{log@2; errors@3; whoami@7}"],
        ),
        // Used at the top, in several blocks, inside a nested block, one line long.
        (
            "(s) { cache 30 }\na {\n import s\n}\nb {\n forward . x {\n  import s\n }\n}",
            &["a@2{cache@1 30}", "b@5{forward@6 . x{cache@1 30}}"],
        ),
        // A snippet that imports another one, defined before it is used.
        (
            "(a) {\n  log\n}\n(b) {\n  import a\n  errors\n}\n. {\n  import b\n}",
            &[".@8{log@2; errors@6}"],
        ),
        // A snippet may carry whole server blocks.
        (
            "(blocks) {\n  x {\n    log\n  }\n}\nimport blocks\n",
            &["x@2{log@3}"],
        ),
        // A snippet with nested braces.
        (
            "(f) {\n  forward . y {\n    max_fails 2\n  }\n}\n. {\n  import f\n}",
            &[".@6{forward@2 . y{max_fails@3 2}}"],
        ),
        // Lines after an import stay separate lines.
        (
            "(s) {\n  a 1\n}\n. {\n  import s\n  b 2\n}",
            &[".@4{a@2 1; b@6 2}"],
        ),
        ("(s) {\n  a 1\n}\n. { import s }", &[".@4{a@2 1}"]),
    ];
    for (input, want) in cases {
        let c = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(shape(&c), *want, "input {input:?}");
    }
}

#[test]
fn errors_name_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            ". {\n  whoami\n}\n}",
            "Corefile:4 - Error during parsing: Unexpected '}' because no matching opening brace",
        ),
        (
            "}",
            "Corefile:1 - Error during parsing: Unexpected '}' because no matching opening brace",
        ),
        (
            "example.org\nwhoami\n}",
            "Corefile:3 - Error during parsing: Unexpected '}' because no matching opening brace",
        ),
        (
            ". {\n  whoami\n  log\n",
            "Corefile:3 - Error during parsing: Unexpected EOF, expecting '}' to close the block opened at line 1",
        ),
        (
            ". {\n  forward . x {\n    max_fails 3\n}\n",
            "Corefile:4 - Error during parsing: Unexpected EOF, expecting '}' to close the block opened at line 1",
        ),
        (
            ". {\n  forward . x {\n    max_fails 3\n",
            "Corefile:3 - Error during parsing: Unexpected EOF, expecting '}' to close the block opened at line 2",
        ),
        (
            "a, {\n}",
            "Corefile:1 - Error during parsing: Expected another address but had '{' - check for extra comma",
        ),
        ("a,", "Corefile:1 - Error during parsing: Unexpected EOF"),
        (
            ". {\n  log { } {\n  }\n}",
            "Corefile:2 - Error during parsing: Syntax error: Unexpected token '{', expecting a directive",
        ),
        (
            ". {\n  x \"unterminated\n}\n",
            "Corefile:2 - Error during parsing: Unexpected EOF: a quoted string starting on this line is never closed",
        ),
        (
            "(s) {\n  log\n}\n(s) {\n  errors\n}",
            "Corefile:4 - Error during parsing: redeclaration of previously declared snippet s",
        ),
        (
            "(s)\nlog",
            "Corefile:2 - Error during parsing: Syntax error: Unexpected token 'log', expecting '{'",
        ),
        (
            "(s)",
            "Corefile:1 - Error during parsing: Unexpected EOF, expecting '{' to start snippet (s)",
        ),
        (
            "(s) {\n  log\n",
            "Corefile:2 - Error during parsing: Unexpected EOF, expecting '}' to close the block opened at line 1",
        ),
        (
            ". {\n  import nosuchsnippet\n}",
            "Corefile:2 - Error during parsing: File to import not found: nosuchsnippet",
        ),
        (
            ". {\n  import\n}",
            "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'import'",
        ),
        (
            ". {\n  import a b\n}",
            "Corefile:2 - Error during parsing: Import takes only one argument (glob pattern or file)",
        ),
        (
            ". {\n  import \"\"\n}",
            "Corefile:2 - Error during parsing: Import requires a non-empty filepath",
        ),
        (
            ". {\n  import {$UNSET}\n}",
            "Corefile:2 - Error during parsing: Import requires a non-empty filepath",
        ),
        (
            "(a) {\n  import a\n}\n. {\n  import a\n}",
            "Corefile:2 - Error during parsing: Import cycle detected: Corefile -> (a) -> (a)",
        ),
        (
            "(a) {\n  import b\n}\n(b) {\n  import a\n}\n. {\n  import b\n}",
            "Corefile:2 - Error during parsing: Import cycle detected: Corefile -> (b) -> (a) -> (b)",
        ),
        (
            ". {\n  import /a*/b*\n}",
            "Corefile:2 - Error during parsing: Glob pattern may only contain one wildcard (*), but has others: /a*/b*",
        ),
        (
            ". {\n  import /x/[ab]\n}",
            "Corefile:2 - Error during parsing: Glob pattern may only contain one wildcard (*), but has others: /x/[ab]",
        ),
        (
            ". {\n  import /x/??\n}",
            "Corefile:2 - Error during parsing: Glob pattern may only contain one wildcard (*), but has others: /x/??",
        ),
        (
            ". {\n  import /x/[a*\n}",
            "Corefile:2 - Error during parsing: Failed to use import pattern /x/[a*: syntax error in pattern",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(err(input), *want, "input {input:?}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut text = String::from(". {\n");
    for i in 0..200 {
        text.push_str(&format!("d{i} {{\n"));
    }
    let e = err(&text);
    assert!(e.contains("nested more than 64 levels"), "{e}");
}

#[test]
fn snippet_bombs_are_capped() {
    // Each snippet imports the previous one twice: 2^30 copies if nothing stopped it.
    let mut text = String::from("(s0) {\n  log\n}\n");
    for i in 1..30 {
        text.push_str(&format!(
            "(s{i}) {{\n  import s{p}\n  import s{p}\n}}\n",
            p = i - 1
        ));
    }
    text.push_str(". {\n  import s29\n}\n");
    let e = err(&text);
    assert!(
        e.contains("maximum snippet import depth (1000) exceeded"),
        "{e}"
    );
}

#[test]
fn many_imports_before_a_long_tail_stay_cheap() {
    // 999 imports of a 100-line snippet ahead of 20000 more lines: splicing in front of the tail
    // must not copy the tail each time.
    let mut text = String::from("(s) {\n");
    text.push_str(&"  a b c\n".repeat(100));
    text.push_str("}\n. {\n");
    text.push_str(&"  import s\n".repeat(999));
    text.push_str(&"  x y\n".repeat(20000));
    text.push_str("}\n");
    let started = std::time::Instant::now();
    let c = parse(&text).unwrap();
    assert_eq!(c.blocks[0].directives.len(), 999 * 100 + 20000);
    assert_eq!(
        c.blocks[0].directives.last().unwrap().loc.line,
        1102 + 20000
    );
    eprintln!(
        "parsed {} bytes with 999 imports in {:?}",
        text.len(),
        started.elapsed()
    );
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "ferrodns-corefile-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn file_imports_are_relative_to_the_importing_file() {
    let t = TempDir::new("rel");
    let main = t.write(
        "Corefile",
        "import snippets.conf\n. {\n  import common\n  import conf.d/zone.conf\n}\n",
    );
    t.write("snippets.conf", "(common) {\n  log\n}\n");
    // conf.d/zone.conf imports a file next to itself, not next to the Corefile.
    t.write("conf.d/zone.conf", "errors\nimport more.conf\n");
    t.write("conf.d/more.conf", "\n\nwhoami \"x\"\n");
    let c = parse_file(&main).unwrap();
    assert_eq!(shape(&c), vec![".@2{log@2; errors@1; whoami@3 x}"]);
    let d = &c.blocks[0].directives;
    let snippets = t.0.join("snippets.conf");
    assert_eq!(&*d[0].loc.file, snippets.to_str().unwrap());
    let more = t.0.join("conf.d/more.conf");
    assert_eq!(d[2].loc.to_string(), format!("{}:3", more.display()));
    assert_eq!(
        c.files,
        vec![
            main.clone(),
            snippets,
            t.0.join("conf.d/zone.conf"),
            more.clone()
        ]
    );

    // parse_str resolves against the base directory it is given.
    let c = parse_in(&t.0, ". {\n  import conf.d/more.conf\n}").unwrap();
    assert_eq!(shape(&c), vec![".@1{whoami@3 x}"]);
    assert_eq!(c.files, vec![more.clone()]);
    // An absolute pattern.
    let c = parse(&format!(". {{\n  import {}\n}}", more.display())).unwrap();
    assert_eq!(shape(&c), vec![".@1{whoami@3 x}"]);

    // An error inside an imported file names that file.
    t.write("conf.d/bad.conf", "log\nimport missing.conf\n");
    let e = parse_in(&t.0, ". {\n  import conf.d/bad.conf\n}").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2 - Error during parsing: File to import not found: missing.conf",
            t.0.join("conf.d/bad.conf").display()
        )
    );
}

#[test]
fn glob_imports() {
    let t = TempDir::new("glob");
    t.write("zones/b.conf", "b.example {\n  log\n}\n");
    t.write("zones/a.conf", "a.example {\n  whoami\n}\n");
    t.write("zones/c.txt", "not imported\n");
    t.write("zones/.hidden.conf", "h.example {\n}\n");
    let c = parse_in(&t.0, "import zones/*.conf\n").unwrap();
    // Sorted by name, dot files included (Go's filepath.Glob).
    assert_eq!(
        shape(&c),
        vec![
            "h.example@1{}",
            "a.example@1{whoami@2}",
            "b.example@1{log@2}"
        ]
    );
    assert_eq!(c.files.len(), 3);
    assert!(c.warnings.is_empty());

    let c = parse_in(&t.0, "import zones/?.conf\n").unwrap();
    assert_eq!(c.blocks.len(), 2);
    // A wildcard in a directory component.
    let c = parse_in(&t.0, "import z*/a.conf\n").unwrap();
    assert_eq!(shape(&c), vec!["a.example@1{whoami@2}"]);

    // No match: a warning for a glob, an error for a plain file name.
    let c = parse_in(&t.0, "import nothing/*.conf\n. {\n  whoami\n}").unwrap();
    assert_eq!(c.blocks.len(), 1);
    assert_eq!(
        c.warnings,
        vec!["No files matching import glob pattern: nothing/*.conf".to_string()]
    );
    assert_eq!(
        parse_in(&t.0, "import nothing.conf")
            .unwrap_err()
            .to_string(),
        "Corefile:1 - Error during parsing: File to import not found: nothing.conf"
    );
    // A directory is not a file to import.
    assert_eq!(
        parse_in(&t.0, "import zones").unwrap_err().to_string(),
        format!(
            "Corefile:1 - Error during parsing: Could not import {}: is a directory",
            t.0.join("zones").display()
        )
    );
    #[cfg(unix)]
    assert_eq!(
        parse_in(&t.0, "import /dev/null").unwrap_err().to_string(),
        "Corefile:1 - Error during parsing: Could not import /dev/null: not a regular file"
    );
    assert!(
        parse_in(&t.0, "import z*")
            .unwrap_err()
            .to_string()
            .contains("is a directory")
    );
}

#[test]
fn file_import_cycles_are_errors() {
    let t = TempDir::new("cycle");
    let main = t.write("Corefile", ". {\n  import a.conf\n}\n");
    let a = t.write("a.conf", "log\nimport sub/../b.conf\n");
    let b = t.write("b.conf", "errors\nimport a.conf\n");
    let e = parse_file(&main).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{b}:2 - Error during parsing: Import cycle detected: {main} -> {a} -> {b} -> {a}",
            main = main.display(),
            a = a.display(),
            b = b.display()
        )
    );
    // A Corefile that imports itself, through a glob.
    let own = t.write("own/Corefile", ". {\n  log\n}\nimport Core*\n");
    let e = parse_file(&own).unwrap_err().to_string();
    assert!(e.contains("Import cycle detected"), "{e}");
    // The same file twice side by side is no cycle.
    let twice = t.write("twice/Corefile", ". {\n  import x\n  import x\n}\n");
    t.write("twice/x", "log\n");
    let c = parse_file(&twice).unwrap();
    assert_eq!(shape(&c), vec![".@1{log@1; log@1}"]);
    assert_eq!(c.files.len(), 2);
}

#[test]
fn parse_file_reports_a_missing_file() {
    let e = parse_file(Path::new("/nonexistent/Corefile")).unwrap_err();
    assert!(e.loc.is_none());
    assert!(
        e.to_string().starts_with("open /nonexistent/Corefile: "),
        "{e}"
    );
}

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random and mutated Corefiles must parse or fail with an error, never panic or hang. (The
/// fuzz target `fuzz/fuzz_targets/corefile.rs` does the same with coverage guidance.)
#[test]
fn random_corefiles_never_panic() {
    let seeds = [
        ".:53 {\n  whoami\n  log\n}\n",
        "(s) {\n  cache 30 { success 10 }\n}\na, b,\nc:1053 {\n  import s\n  x \"q {\" {$ZONE}\n}\n",
        "example.org\nwhoami\n",
        "10.0.0.0/27 tls://[::1]:853 {\n  forward . 1.1.1.1 {\n    tls_servername x\n  }\n}\n",
        "import /nonexistent/*.conf\n# comment\n\"\" {\n}\n",
    ];
    let pieces = [
        "{",
        "}",
        "\"",
        "\\",
        "#",
        "\n",
        " ",
        ",",
        "import",
        "import s",
        "(s)",
        "{$ZONE}",
        "{%PORT%}",
        "{$",
        "%}",
        "*",
        "?",
        "[",
        "/",
        ":",
        "::",
        "10.0.0.0/8",
        "dns://",
        "é",
        "\r",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..4000 {
        let mut text: Vec<char> = seeds[round % seeds.len()].chars().collect();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 => {
                    let piece = pieces[rng.below(pieces.len())];
                    text.splice(at..at, piece.chars());
                }
                1 if at < text.len() => {
                    let end = (at + 1 + rng.below(6)).min(text.len());
                    text.drain(at..end);
                }
                _ => {
                    let c = char::from_u32(rng.below(0x80) as u32).unwrap_or(' ');
                    text.insert(at, c);
                }
            }
        }
        let text: String = text.into_iter().collect();
        // No file access: a mutation must not import something from the host.
        if let Ok(c) = parse_str_without_files("Corefile", &text) {
            for b in &c.blocks {
                for k in &b.keys {
                    let _ = parse_key(&k.text);
                }
            }
        }
        for word in text.split_whitespace() {
            let _ = parse_key(word);
        }
    }
    // Purely random bytes as text, too.
    for _ in 0..2000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_str_without_files("Corefile", &text);
        let _ = parse_key(&text);
    }
}

#[test]
fn sha512_covers_exactly_the_bytes_parsed() {
    use sha2::{Digest, Sha512};
    let t = TempDir::new("sha");
    let main_text = "import a.conf\n. {\n  import a.conf\n  whoami\n}\n";
    let import_text = "# imported twice, hashed once\n";
    let main = t.write("Corefile", main_text);
    t.write("a.conf", import_text);
    let c = parse_file(&main).unwrap();
    let want: String = Sha512::digest(format!("{main_text}{import_text}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(c.sha512, want);
    // Changing the file afterwards does not change what was parsed.
    t.write("a.conf", "# changed\n");
    assert_eq!(c.sha512, want);
    assert_ne!(parse_file(&main).unwrap().sha512, want);
}

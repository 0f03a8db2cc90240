//! Splitting Corefile text into words, as CoreDNS's Caddy v1 fork does.
//!
//! - Words are separated by white space; `\r` is ignored outside quotes.
//! - `#` starts a comment anywhere outside quotes (even inside a word: `foo#bar` is `foo`), up to
//!   the end of the line.
//! - A word that *starts* with `"` is quoted: it runs to the next unescaped `"`, may contain white
//!   space, `#`, braces and line breaks, and may be empty (`""`). Inside quotes `\"` is a quote;
//!   every other backslash is kept as written, so regular expressions such as `"(.*)\.example"`
//!   reach plugins unchanged. A `"` in the middle of an unquoted word is an ordinary character.
//! - A word records the line it starts on and the line it ends on: the next word begins a new
//!   Corefile line only if it starts below the end of the previous one, so a quoted string over
//!   several lines neither shifts later line numbers nor splits a directive.
//!
//! Unlike Caddy v1, a quoted `"{"` or `"}"` is a word and never a brace, and a quote still open at
//! the end of the file is an error rather than silently closed.

/// What a word means to the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Word,
    /// An unquoted `{` standing alone.
    Open,
    /// An unquoted `}` standing alone.
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lexeme {
    /// The word as written, quotes removed and `\"` unescaped; environment variables are not yet
    /// substituted.
    pub text: String,
    pub line: usize,
    pub end_line: usize,
    pub quoted: bool,
    /// The first word of a Corefile line.
    pub newline: bool,
    pub kind: Kind,
}

/// The words of `input`, or the line of a quoted string that is never closed and the message.
pub(crate) fn lex(input: &str) -> Result<Vec<Lexeme>, (usize, String)> {
    let mut out: Vec<Lexeme> = Vec::new();
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut val = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut escaped = false;
    let mut comment = false;

    let mut finish = |val: &mut String, start: usize, end: usize, quoted: bool| {
        let kind = match (quoted, val.as_str()) {
            (false, "{") => Kind::Open,
            (false, "}") => Kind::Close,
            _ => Kind::Word,
        };
        let newline = out.last().is_none_or(|prev| start > prev.end_line);
        out.push(Lexeme {
            text: std::mem::take(val),
            line: start,
            end_line: end,
            quoted,
            newline,
            kind,
        });
    };

    for ch in input.chars() {
        if quoted {
            if escaped {
                // Only a quote is escaped; any other backslash stays, with what follows it.
                if ch != '"' {
                    val.push('\\');
                }
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
                continue;
            } else if ch == '"' {
                quoted = false;
                in_word = false;
                finish(&mut val, start_line, line, true);
                continue;
            }
            if ch == '\n' {
                line += 1;
            }
            val.push(ch);
            continue;
        }
        if ch.is_whitespace() {
            if ch == '\n' {
                if in_word {
                    in_word = false;
                    finish(&mut val, start_line, line, false);
                }
                line += 1;
                comment = false;
            } else if in_word {
                in_word = false;
                finish(&mut val, start_line, line, false);
            }
            continue;
        }
        if comment {
            continue;
        }
        if ch == '#' {
            comment = true;
            if in_word {
                in_word = false;
                finish(&mut val, start_line, line, false);
            }
            continue;
        }
        if !in_word {
            in_word = true;
            start_line = line;
            if ch == '"' {
                quoted = true;
                continue;
            }
        }
        val.push(ch);
    }
    if quoted {
        return Err((
            start_line,
            "Unexpected EOF: a quoted string starting on this line is never closed".to_string(),
        ));
    }
    if in_word {
        finish(&mut val, start_line, line, false);
    }
    Ok(out)
}

/// Substitute `{%NAME%}` and then `{$NAME}` references, as Caddy v1 does: an unset variable
/// becomes the empty string, and an empty name (`{$}`, `{%%}`) or a reference without its closing
/// mark leaves the rest of the word as written. Each pass reads the word once from left to right,
/// so a value that itself contains a reference is not expanded again by the same pass (Caddy
/// rescans, and loops forever on a variable that refers to itself).
pub(crate) fn expand_env(word: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    if !word.contains('{') {
        return word.to_string();
    }
    let once = replace_refs(word, "{%", "%}", lookup);
    replace_refs(&once, "{$", "}", lookup)
}

fn replace_refs(
    s: &str,
    open: &str,
    close: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(open) {
        // Caddy looks for the closing mark from the opening one itself, so `{%}` has an empty
        // name rather than reaching for a later `%}`.
        let Some(len) = rest[start..].find(close) else {
            break;
        };
        if len <= open.len() {
            break;
        }
        let name = &rest[start + open.len()..start + len];
        out.push_str(&rest[..start]);
        if let Some(value) = lookup(name) {
            out.push_str(&value);
        }
        rest = &rest[start + len + close.len()..];
    }
    out.push_str(rest);
    out
}

/// The process environment, for [`expand_env`]. Names the C library cannot look up are unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<(String, usize, bool)> {
        lex(input)
            .unwrap()
            .into_iter()
            .map(|l| (l.text, l.line, l.newline))
            .collect()
    }

    #[test]
    fn splits_words_lines_and_comments() {
        type Word<'a> = (&'a str, usize, bool);
        let cases: &[(&str, &[Word])] = &[
            ("", &[]),
            (" \t\r\n\n", &[]),
            (
                "a b c\nd e",
                &[
                    ("a", 1, true),
                    ("b", 1, false),
                    ("c", 1, false),
                    ("d", 2, true),
                    ("e", 2, false),
                ],
            ),
            ("a # b c\nd", &[("a", 1, true), ("d", 2, true)]),
            ("a#b c\nd", &[("a", 1, true), ("d", 2, true)]),
            ("# only a comment", &[]),
            ("a\r\nb\r\n", &[("a", 1, true), ("b", 2, true)]),
            ("\"a b\" c", &[("a b", 1, true), ("c", 1, false)]),
            ("\"\" x", &[("", 1, true), ("x", 1, false)]),
            ("\"# not a comment\"", &[("# not a comment", 1, true)]),
            ("a\"b c\"", &[("a\"b", 1, true), ("c\"", 1, false)]),
            ("\"a\"b", &[("a", 1, true), ("b", 1, false)]),
            // A quoted string over three lines: the word after it is on its last line, and the
            // line after that is line 4.
            (
                "x \"1\n2\n3\" y\nz",
                &[
                    ("x", 1, true),
                    ("1\n2\n3", 1, false),
                    ("y", 3, false),
                    ("z", 4, true),
                ],
            ),
            (r#""say \"hi\"""#, &[("say \"hi\"", 1, true)]),
            (
                r#""(.*)\.example\.org""#,
                &[(r"(.*)\.example\.org", 1, true)],
            ),
            (r#""a\\b""#, &[(r"a\\b", 1, true)]),
            (
                "{ } {x} x{",
                &[
                    ("{", 1, true),
                    ("}", 1, false),
                    ("{x}", 1, false),
                    ("x{", 1, false),
                ],
            ),
        ];
        for (input, want) in cases {
            let want: Vec<(String, usize, bool)> = want
                .iter()
                .map(|(t, l, n)| (t.to_string(), *l, *n))
                .collect();
            assert_eq!(words(input), want, "input {input:?}");
        }
    }

    #[test]
    fn braces_only_when_bare_and_unquoted() {
        let kinds: Vec<Kind> = lex("{ } \"{\" \"}\" {} a{")
            .unwrap()
            .into_iter()
            .map(|l| l.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Open,
                Kind::Close,
                Kind::Word,
                Kind::Word,
                Kind::Word,
                Kind::Word
            ]
        );
    }

    #[test]
    fn unterminated_quote_is_an_error_at_its_start() {
        assert_eq!(lex("a\n\"b\nc").unwrap_err().0, 2);
        assert_eq!(lex("\"a\\\"").unwrap_err().0, 1);
    }

    #[test]
    fn environment_references() {
        let env = |name: &str| -> Option<String> {
            match name {
                "ADDRESS" => Some("servername.com".into()),
                "PORT" => Some("8080".into()),
                "FOOBAR" => Some("foobar".into()),
                "SELF" => Some("{$SELF}".into()),
                "PCT" => Some("{$PORT}".into()),
                _ => None,
            }
        };
        let cases = [
            ("{$ADDRESS}", "servername.com"),
            ("di{$FOOBAR}", "difoobar"),
            ("{$ADDRESS}:{$PORT}", "servername.com:8080"),
            ("{%ADDRESS%}:{$PORT}", "servername.com:8080"),
            ("{$ADDRESS}:{%PORT%}", "servername.com:8080"),
            ("{%ADDRESS%}/{%FOOBAR%}", "servername.com/foobar"),
            ("{%ADDRESS}", "{%ADDRESS}"),
            (":{$PORT$}", ":"),
            ("{$UNSET}x", "x"),
            ("{$}", "{$}"),
            ("{%}", "{%}"),
            ("{$$}", ""),
            ("{%%}", "{%%}"),
            ("{{ .Name }} {$FOOBAR}", "{{ .Name }} foobar"),
            ("{$ADDRESS", "{$ADDRESS"),
            ("{$SELF}", "{$SELF}"),
            ("{%PCT%}", "8080"),
            ("a{$=}b{$\0}c", "abc"),
        ];
        for (word, want) in cases {
            assert_eq!(expand_env(word, &env), want, "word {word:?}");
        }
    }
}

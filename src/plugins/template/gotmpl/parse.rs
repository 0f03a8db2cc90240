//! Lexing and parsing Go `text/template` source into a tree, once, at setup.
//!
//! The grammar, the keywords, the trim markers (`{{- ` and ` -}}`), the rules for variables
//! (declared before use, scoped to the enclosing block) and the parse error texts follow Go's
//! `text/template/parse` package, so a template that Go rejects is rejected here at start-up with
//! the same kind of message, and one that Go accepts parses to the same tree.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::FUNCS;

/// A parse error: `template: NAME:LINE: message`, as Go prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub name: String,
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template: {}:{}: {}", self.name, self.line, self.msg)
    }
}

/// A node of the tree. Positions are byte offsets into the template source.
#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    Range(Branch),
    With(Branch),
    Template {
        pos: usize,
        name: String,
        quoted: String,
        pipe: Option<Pipe>,
    },
    Break,
    Continue,
}

/// `{{if}}`, `{{range}}` and `{{with}}`: a pipeline, a body and an optional else body.
#[derive(Debug, Clone)]
pub struct Branch {
    pub pos: usize,
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

/// `[$x :=] cmd | cmd | ...`
#[derive(Debug, Clone)]
pub struct Pipe {
    pub pos: usize,
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub cmds: Vec<Cmd>,
}

/// One stage of a pipeline: an operand followed by its arguments.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub pos: usize,
    pub args: Vec<Arg>,
}

/// A number constant, with every interpretation Go's parser gives it.
#[derive(Debug, Clone)]
pub struct Number {
    pub text: String,
    pub int: Option<i64>,
    pub uint: Option<u64>,
    pub float: Option<f64>,
    /// A character constant (`'a'`) or an integer literal: never a float when standing alone.
    pub is_int_literal: bool,
}

#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B`
    Field {
        pos: usize,
        idents: Vec<String>,
    },
    /// `$x.A.B` (`name` keeps its `$`).
    Variable {
        pos: usize,
        name: String,
        idents: Vec<String>,
    },
    Dot(usize),
    Nil(usize),
    Bool(usize, bool),
    Number(usize, Number),
    Str {
        pos: usize,
        quoted: String,
        value: String,
    },
    /// A function name.
    Ident {
        pos: usize,
        name: String,
    },
    /// `( pipeline )`
    Pipe(Pipe),
    /// `(pipeline).A.B`
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Dot(pos)
            | Arg::Nil(pos)
            | Arg::Bool(pos, _)
            | Arg::Number(pos, _)
            | Arg::Str { pos, .. }
            | Arg::Ident { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// String forms: Go's `parse.Node.String()`, which CoreDNS uses as the `template` metric label.

pub fn list_string(nodes: &[Node], out: &mut String) {
    for n in nodes {
        node_string(n, out);
    }
}

fn node_string(n: &Node, out: &mut String) {
    match n {
        Node::Text(t) => out.push_str(t),
        Node::Action(p) => {
            out.push_str("{{");
            pipe_string(p, out);
            out.push_str("}}");
        }
        Node::If(b) => branch_string("if", b, out),
        Node::Range(b) => branch_string("range", b, out),
        Node::With(b) => branch_string("with", b, out),
        Node::Template { quoted, pipe, .. } => {
            let _ = write!(out, "{{{{template {quoted}");
            if let Some(p) = pipe {
                out.push(' ');
                pipe_string(p, out);
            }
            out.push_str("}}");
        }
        Node::Break => out.push_str("{{break}}"),
        Node::Continue => out.push_str("{{continue}}"),
    }
}

fn branch_string(name: &str, b: &Branch, out: &mut String) {
    out.push_str("{{");
    out.push_str(name);
    out.push(' ');
    pipe_string(&b.pipe, out);
    out.push_str("}}");
    list_string(&b.list, out);
    if let Some(e) = &b.else_list {
        out.push_str("{{else}}");
        list_string(e, out);
    }
    out.push_str("{{end}}");
}

pub fn pipe_string(p: &Pipe, out: &mut String) {
    if !p.decl.is_empty() {
        out.push_str(&p.decl.join(", "));
        out.push_str(if p.is_assign { " = " } else { " := " });
    }
    for (i, c) in p.cmds.iter().enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        cmd_string(c, out);
    }
}

pub fn cmd_string(c: &Cmd, out: &mut String) {
    for (i, a) in c.args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if let Arg::Pipe(p) = a {
            out.push('(');
            pipe_string(p, out);
            out.push(')');
        } else {
            arg_string(a, out);
        }
    }
}

pub fn arg_string(a: &Arg, out: &mut String) {
    match a {
        Arg::Field { idents, .. } => {
            for i in idents {
                out.push('.');
                out.push_str(i);
            }
        }
        Arg::Variable { name, idents, .. } => {
            out.push_str(name);
            for i in idents {
                out.push('.');
                out.push_str(i);
            }
        }
        Arg::Dot(_) => out.push('.'),
        Arg::Nil(_) => out.push_str("nil"),
        Arg::Bool(_, b) => out.push_str(if *b { "true" } else { "false" }),
        Arg::Number(_, n) => out.push_str(&n.text),
        Arg::Str { quoted, .. } => out.push_str(quoted),
        Arg::Ident { name, .. } => out.push_str(name),
        Arg::Pipe(p) => pipe_string(p, out),
        Arg::Chain { node, fields, .. } => {
            if let Arg::Pipe(p) = node.as_ref() {
                out.push('(');
                pipe_string(p, out);
                out.push(')');
            } else {
                arg_string(node, out);
            }
            for f in fields {
                out.push('.');
                out.push_str(f);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    LeftDelim,
    RightDelim,
    Space,
    Field(String),
    Variable(String),
    Dot,
    Ident(String),
    Keyword(&'static str),
    Bool(bool),
    Nil,
    Number(String),
    Char(String),
    Str(String),
    RawStr(String),
    LeftParen,
    RightParen,
    Pipe,
    Declare,
    Assign,
    Comma,
    /// Any other printable character inside an action.
    Other(char),
    Eof,
    Error(String),
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Text(s) => format!("{s:?}"),
        Tok::LeftDelim => "\"{{\"".into(),
        Tok::RightDelim => "\"}}\"".into(),
        Tok::Space => "space".into(),
        Tok::Field(s) | Tok::Variable(s) | Tok::Ident(s) | Tok::Number(s) | Tok::Char(s) => {
            format!("{s:?}")
        }
        Tok::Str(s) | Tok::RawStr(s) => format!("{s:?}"),
        Tok::Dot => "\".\"".into(),
        Tok::Keyword(k) => format!("<{k}>"),
        Tok::Bool(b) => format!("\"{b}\""),
        Tok::Nil => "\"nil\"".into(),
        Tok::LeftParen => "\"(\"".into(),
        Tok::RightParen => "\")\"".into(),
        Tok::Pipe => "\"|\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Other(c) => format!("{:?}", c.to_string()),
        Tok::Eof => "EOF".into(),
        Tok::Error(e) => e.clone(),
    }
}

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Split the source into tokens with their byte positions, as Go's lexer does. The list always
/// ends with `Eof`, also after an error token.
fn lex(src: &str) -> Vec<(Tok, usize)> {
    let mut toks = lex_until_error(src);
    if !matches!(toks.last(), Some((Tok::Eof, _))) {
        toks.push((Tok::Eof, src.len()));
    }
    toks
}

fn lex_until_error(src: &str) -> Vec<(Tok, usize)> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut trim_next_text = false;
    loop {
        // Text up to the next "{{".
        let start = i;
        let next = src[i..].find("{{").map(|p| i + p);
        let end = next.unwrap_or(src.len());
        let mut text = &src[start..end];
        if trim_next_text {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
            trim_next_text = false;
        }
        let Some(open) = next else {
            if !text.is_empty() {
                toks.push((Tok::Text(text.to_string()), start));
            }
            toks.push((Tok::Eof, src.len()));
            return toks;
        };
        let mut j = open + 2;
        // "{{- " trims the text before it.
        if b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(|c| is_space(*c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            j += 2;
        }
        if !text.is_empty() {
            toks.push((Tok::Text(text.to_string()), start));
        }
        // A comment: "{{/* ... */}}", with optional trim markers.
        // Go wants the comment right after the delimiter (and its trim marker).
        let k = j;
        if src[k..].starts_with("/*") {
            let Some(close) = src[k + 2..].find("*/") else {
                toks.push((Tok::Error("unclosed comment".into()), k));
                return toks;
            };
            let mut after = k + 2 + close + 2;
            let rest = &src[after..];
            if rest.starts_with("}}") {
                after += 2;
            } else if rest.len() >= 3
                && is_space(rest.as_bytes()[0])
                && rest[1..].starts_with("-}}")
            {
                after += 4;
                trim_next_text = true;
            } else {
                toks.push((
                    Tok::Error("comment ends before closing delimiter".into()),
                    k,
                ));
                return toks;
            }
            i = after;
            continue;
        }
        toks.push((Tok::LeftDelim, open));
        // Inside the action.
        let mut p = j;
        let mut paren_depth = 0usize;
        loop {
            // Right delimiter, with or without trim marker.
            if src[p..].starts_with("}}") {
                toks.push((Tok::RightDelim, p));
                p += 2;
                break;
            }
            if p < b.len()
                && is_space(b[p])
                && src[p..]
                    .trim_start_matches([' ', '\t', '\r', '\n'])
                    .starts_with("-}}")
            {
                let ws_end = p
                    + (src[p..].len() - src[p..].trim_start_matches([' ', '\t', '\r', '\n']).len());
                toks.push((Tok::RightDelim, ws_end));
                p = ws_end + 3;
                trim_next_text = true;
                break;
            }
            let Some(c) = src[p..].chars().next() else {
                toks.push((Tok::Error("unclosed action".into()), p));
                return toks;
            };
            let here = p;
            match c {
                ' ' | '\t' | '\r' | '\n' => {
                    while p < b.len() && is_space(b[p]) {
                        // Stop before " -}}" so the delimiter check sees it.
                        if src[p..]
                            .trim_start_matches([' ', '\t', '\r', '\n'])
                            .starts_with("-}}")
                        {
                            break;
                        }
                        p += 1;
                    }
                    if p == here {
                        p += 1;
                    }
                    toks.push((Tok::Space, here));
                }
                '=' => {
                    toks.push((Tok::Assign, here));
                    p += 1;
                }
                ':' => {
                    if b.get(p + 1) == Some(&b'=') {
                        toks.push((Tok::Declare, here));
                        p += 2;
                    } else {
                        toks.push((Tok::Error("expected :=".into()), here));
                        return toks;
                    }
                }
                '|' => {
                    toks.push((Tok::Pipe, here));
                    p += 1;
                }
                '"' => {
                    let Some(q) = closing_quote(b, p) else {
                        toks.push((Tok::Error("unterminated quoted string".into()), here));
                        return toks;
                    };
                    toks.push((Tok::Str(src[p..=q].to_string()), here));
                    p = q + 1;
                }
                '`' => {
                    let Some(close) = src[p + 1..].find('`') else {
                        toks.push((Tok::Error("unterminated raw quoted string".into()), here));
                        return toks;
                    };
                    let q = p + 1 + close;
                    toks.push((Tok::RawStr(src[p..=q].to_string()), here));
                    p = q + 1;
                }
                '\'' => {
                    let Some(q) = closing_quote(b, p) else {
                        toks.push((Tok::Error("unterminated character constant".into()), here));
                        return toks;
                    };
                    toks.push((Tok::Char(src[p..=q].to_string()), here));
                    p = q + 1;
                }
                '$' => {
                    let mut q = p + 1;
                    while let Some(ch) = src[q..].chars().next() {
                        if !is_alnum(ch) {
                            break;
                        }
                        q += ch.len_utf8();
                    }
                    toks.push((Tok::Variable(src[p..q].to_string()), here));
                    p = q;
                }
                '.' => {
                    // A number like .5, a field, or dot itself.
                    let next = src[p + 1..].chars().next();
                    if next.is_some_and(|d| d.is_ascii_digit()) {
                        let q = scan_number(src, p);
                        toks.push((Tok::Number(src[p..q].to_string()), here));
                        p = q;
                    } else if next.is_some_and(is_alnum) {
                        let mut q = p + 1;
                        while let Some(ch) = src[q..].chars().next() {
                            if !is_alnum(ch) {
                                break;
                            }
                            q += ch.len_utf8();
                        }
                        toks.push((Tok::Field(src[p..q].to_string()), here));
                        p = q;
                    } else {
                        toks.push((Tok::Dot, here));
                        p += 1;
                    }
                }
                '+' | '-' | '0'..='9' => {
                    if c != '+' && c != '-'
                        || src[p + 1..].starts_with(|d: char| d.is_ascii_digit() || d == '.')
                    {
                        let q = scan_number(src, p);
                        // A number must not run straight into letters ("3k").
                        if src[q..].starts_with(is_alnum) {
                            let mut r = q;
                            while let Some(ch) = src[r..].chars().next() {
                                if !is_alnum(ch) {
                                    break;
                                }
                                r += ch.len_utf8();
                            }
                            toks.push((
                                Tok::Error(format!("bad number syntax: {:?}", &src[p..r])),
                                here,
                            ));
                            return toks;
                        }
                        toks.push((Tok::Number(src[p..q].to_string()), here));
                        p = q;
                    } else {
                        toks.push((Tok::Other(c), here));
                        p += 1;
                    }
                }
                '(' => {
                    paren_depth += 1;
                    toks.push((Tok::LeftParen, here));
                    p += 1;
                }
                ')' => {
                    if paren_depth == 0 {
                        toks.push((Tok::Error("unexpected right paren".into()), here));
                        return toks;
                    }
                    paren_depth -= 1;
                    toks.push((Tok::RightParen, here));
                    p += 1;
                }
                ',' => {
                    toks.push((Tok::Comma, here));
                    p += 1;
                }
                c if is_alnum(c) => {
                    let mut q = p;
                    while let Some(ch) = src[q..].chars().next() {
                        if !is_alnum(ch) {
                            break;
                        }
                        q += ch.len_utf8();
                    }
                    let word = &src[p..q];
                    let tok = match word {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        w => match KEYWORDS.iter().find(|k| **k == w) {
                            Some(k) => Tok::Keyword(k),
                            None => Tok::Ident(w.to_string()),
                        },
                    };
                    toks.push((tok, here));
                    p = q;
                }
                c => {
                    toks.push((Tok::Other(c), here));
                    p += c.len_utf8();
                }
            }
        }
        i = p;
    }
}

/// The end of a number starting at `p`: sign, prefix, digits, fraction, exponent, underscores.
fn scan_number(src: &str, p: usize) -> usize {
    let b = src.as_bytes();
    let mut q = p;
    if q < b.len() && (b[q] == b'+' || b[q] == b'-') {
        q += 1;
    }
    let mut digits: &[u8] = b"0123456789_";
    if b.get(q) == Some(&b'0') {
        match b.get(q + 1).map(|c| c.to_ascii_lowercase()) {
            Some(b'x') => {
                q += 2;
                digits = b"0123456789abcdefABCDEF_";
            }
            Some(b'o') => {
                q += 2;
                digits = b"01234567_";
            }
            Some(b'b') => {
                q += 2;
                digits = b"01_";
            }
            _ => {}
        }
    }
    while q < b.len() && digits.contains(&b[q]) {
        q += 1;
    }
    if q < b.len() && b[q] == b'.' {
        q += 1;
        while q < b.len() && digits.contains(&b[q]) {
            q += 1;
        }
    }
    let exp: &[u8] = if digits.len() > 20 { b"pP" } else { b"eEpP" };
    if q < b.len() && exp.contains(&b[q]) {
        q += 1;
        if q < b.len() && (b[q] == b'+' || b[q] == b'-') {
            q += 1;
        }
        while q < b.len() && b[q].is_ascii_digit() {
            q += 1;
        }
    }
    if q < b.len() && b[q] == b'i' {
        q += 1;
    }
    q
}

// ---------------------------------------------------------------------------------------------
// Number constants

/// Interpret a number or character constant as Go's `parse.NumberNode` does.
pub fn parse_number(text: &str, is_char: bool) -> Result<Number, String> {
    if is_char {
        let inner =
            unquote_char(text).ok_or_else(|| format!("malformed character constant: {text}"))?;
        let v = inner as i64;
        return Ok(Number {
            text: text.to_string(),
            int: Some(v),
            uint: Some(v as u64),
            float: Some(v as f64),
            is_int_literal: true,
        });
    }
    if text.ends_with('i') {
        return Err(format!("illegal number syntax: {text:?}"));
    }
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let parsed_uint = if let Some(h) = lower.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        u64::from_str_radix(o, 8).ok()
    } else if let Some(bits) = lower.strip_prefix("0b") {
        u64::from_str_radix(bits, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        u64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<u64>().ok()
    };
    let mut n = Number {
        text: text.to_string(),
        int: None,
        uint: None,
        float: None,
        is_int_literal: parsed_uint.is_some(),
    };
    if let Some(u) = parsed_uint {
        if neg {
            if u <= i64::MAX as u64 + 1 {
                n.int = Some((u as i128).wrapping_neg() as i64);
            }
        } else {
            n.uint = Some(u);
            if u <= i64::MAX as u64 {
                n.int = Some(u as i64);
            }
        }
        n.float = n.int.map(|i| i as f64).or(n.uint.map(|u| u as f64));
    } else {
        let is_hex = lower.starts_with("0x");
        let f = if is_hex {
            None
        } else {
            lower.parse::<f64>().ok()
        };
        match f {
            Some(f) if f.is_finite() => {
                let f = if neg { -f } else { f };
                n.float = Some(f);
                // A float with an integral value also works as an integer ("1e3").
                if f.fract() == 0.0 && f.abs() < 9.2e18 {
                    n.int = Some(f as i64);
                    if f >= 0.0 {
                        n.uint = Some(f as u64);
                    }
                }
            }
            _ => return Err(format!("illegal number syntax: {text:?}")),
        }
    }
    Ok(n)
}

fn unquote_char(text: &str) -> Option<char> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    let s = unquote_body(inner, '\'')?;
    let mut chars = s.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    Some(c)
}

/// Go's `strconv.Unquote` for interpreted strings.
pub fn unquote_string(quoted: &str) -> Option<String> {
    if let Some(raw) = quoted.strip_prefix('`') {
        return Some(raw.strip_suffix('`')?.replace('\r', ""));
    }
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    unquote_body(inner, '"')
}

fn unquote_body(s: &str, quote: char) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = s.chars().peekable();
    // Octal and \x escapes produce raw bytes; collect them and validate as UTF-8 at the end.
    let flush = |bytes: &mut Vec<u8>, out: &mut String| -> Option<()> {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8(std::mem::take(bytes)).ok()?);
        }
        Some(())
    };
    while let Some(c) = chars.next() {
        if c == quote || c == '\n' {
            return None;
        }
        if c != '\\' {
            flush(&mut bytes, &mut out)?;
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '\'' | '"' => {
                if e != quote {
                    return None;
                }
                out.push(e)
            }
            'x' => {
                let h: String = (0..2).filter_map(|_| chars.next()).collect();
                bytes.push(u8::from_str_radix(&h, 16).ok()?);
                continue;
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let h: String = (0..n).filter_map(|_| chars.next()).collect();
                if h.len() != n {
                    return None;
                }
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                for _ in 0..2 {
                    v = v * 8 + chars.next()?.to_digit(8)?;
                }
                if v > 255 {
                    return None;
                }
                bytes.push(v as u8);
                continue;
            }
            _ => return None,
        }
        if !bytes.is_empty() {
            // An escape that produced a char after raw bytes: keep order.
            let c = out.pop();
            flush(&mut bytes, &mut out)?;
            if let Some(c) = c {
                out.push(c);
            }
        }
    }
    flush(&mut bytes, &mut out)?;
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Parser

/// The result of parsing: the main tree and the `{{define}}`d templates.
pub struct Parsed {
    pub root: Vec<Node>,
    pub defs: HashMap<String, Vec<Node>>,
}

enum Stop {
    End,
    Else,
    ElseIf(usize),
    ElseWith(usize),
    Eof,
}

struct Parser<'s> {
    name: &'s str,
    src: &'s str,
    toks: Vec<(Tok, usize)>,
    at: usize,
    vars: Vec<String>,
    range_depth: usize,
    defs: HashMap<String, Vec<Node>>,
}

type PResult<T> = Result<T, ParseError>;

pub fn parse(name: &str, src: &str) -> PResult<Parsed> {
    let mut p = Parser {
        name,
        src,
        toks: lex(src),
        at: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        defs: HashMap::new(),
    };
    let mut root = Vec::new();
    loop {
        let (tok, pos) = p.peek().clone();
        match tok {
            Tok::Eof => break,
            Tok::LeftDelim => {
                // {{define}} is only allowed at the top level.
                let save = p.at;
                p.next();
                if let (Tok::Keyword("define"), _) = p.peek_non_space().clone() {
                    p.next_non_space();
                    p.define()?;
                    continue;
                }
                p.at = save;
                match p.text_or_action()? {
                    Item::Node(n) => root.push(n),
                    Item::End(Stop::End) => return Err(p.err_at(pos, "unexpected {{end}}")),
                    Item::End(_) => return Err(p.err_at(pos, "unexpected {{else}}")),
                }
            }
            _ => match p.text_or_action()? {
                Item::Node(n) => root.push(n),
                Item::End(_) => {}
            },
        }
    }
    Ok(Parsed { root, defs: p.defs })
}

enum Item {
    Node(Node),
    End(Stop),
}

impl<'s> Parser<'s> {
    fn line_of(&self, pos: usize) -> usize {
        1 + self.src[..pos.min(self.src.len())].matches('\n').count()
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            name: self.name.to_string(),
            line: self.line_of(pos),
            msg: msg.into(),
        }
    }

    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> (Tok, usize) {
        let t = self.peek().clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn peek_non_space(&mut self) -> &(Tok, usize) {
        while self.peek().0 == Tok::Space {
            self.at += 1;
        }
        self.peek()
    }

    fn next_non_space(&mut self) -> (Tok, usize) {
        self.peek_non_space();
        self.next()
    }

    fn unexpected(&self, t: &(Tok, usize), context: &str) -> ParseError {
        if let Tok::Error(e) = &t.0 {
            return self.err_at(t.1, e.clone());
        }
        self.err_at(t.1, format!("unexpected {} in {context}", describe(&t.0)))
    }

    fn expect_right_delim(&mut self, context: &str) -> PResult<()> {
        let t = self.next_non_space();
        if t.0 != Tok::RightDelim {
            return Err(self.unexpected(&t, context));
        }
        Ok(())
    }

    /// One text or action item.
    fn text_or_action(&mut self) -> PResult<Item> {
        let t = self.next();
        match t.0 {
            Tok::Text(s) => Ok(Item::Node(Node::Text(s))),
            Tok::LeftDelim => self.action(),
            Tok::Eof => Ok(Item::End(Stop::Eof)),
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Stop)> {
        let mut list = Vec::new();
        loop {
            if self.peek().0 == Tok::Eof {
                return Err(self.err_at(self.peek().1, "unexpected EOF"));
            }
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                Item::End(Stop::Eof) => {
                    return Err(self.err_at(self.src.len(), "unexpected EOF"));
                }
                Item::End(e) => return Ok((list, e)),
            }
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.0 {
            Tok::Keyword("block") => self.block(t.1).map(Item::Node),
            Tok::Keyword("break") => {
                if self.range_depth == 0 {
                    return Err(self.err_at(t.1, "{{break}} outside {{range}}"));
                }
                self.expect_right_delim("{{break}}")?;
                Ok(Item::Node(Node::Break))
            }
            Tok::Keyword("continue") => {
                if self.range_depth == 0 {
                    return Err(self.err_at(t.1, "{{continue}} outside {{range}}"));
                }
                self.expect_right_delim("{{continue}}")?;
                Ok(Item::Node(Node::Continue))
            }
            Tok::Keyword("define") => Err(self.err_at(t.1, "unexpected <define> in command")),
            Tok::Keyword("else") => {
                let next = self.peek_non_space().clone();
                match next.0 {
                    Tok::Keyword("if") => {
                        self.next_non_space();
                        Ok(Item::End(Stop::ElseIf(t.1)))
                    }
                    Tok::Keyword("with") => {
                        self.next_non_space();
                        Ok(Item::End(Stop::ElseWith(t.1)))
                    }
                    _ => {
                        self.expect_right_delim("else")?;
                        Ok(Item::End(Stop::Else))
                    }
                }
            }
            Tok::Keyword("end") => {
                self.expect_right_delim("end")?;
                Ok(Item::End(Stop::End))
            }
            Tok::Keyword("if") => self.control("if", t.1).map(|b| Item::Node(Node::If(b))),
            Tok::Keyword("range") => self
                .control("range", t.1)
                .map(|b| Item::Node(Node::Range(b))),
            Tok::Keyword("with") => self.control("with", t.1).map(|b| Item::Node(Node::With(b))),
            Tok::Keyword("template") => self.template_call(t.1, "template").map(Item::Node),
            _ => {
                self.at -= 1;
                let pipe = self.pipeline("command", true)?;
                Ok(Item::Node(Node::Action(pipe)))
            }
        }
    }

    /// `{{if pipe}} list [{{else}} list | {{else if ...}}] {{end}}` and friends.
    fn control(&mut self, context: &'static str, pos: usize) -> PResult<Branch> {
        let mark = self.vars.len();
        let pipe = self.pipeline(context, true)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            Stop::End => None,
            Stop::Else => {
                let (else_list, end) = self.item_list()?;
                if !matches!(end, Stop::End) {
                    return Err(self.err_at(pos, "expected end; found {{else}}"));
                }
                Some(else_list)
            }
            Stop::ElseIf(epos) if context == "if" => {
                // "{{else if x}}" is "{{else}}{{if x}}...{{end}}", sharing the outer {{end}}.
                let inner = self.control("if", epos)?;
                Some(vec![Node::If(inner)])
            }
            Stop::ElseWith(epos) if context == "with" => {
                let inner = self.control("with", epos)?;
                Some(vec![Node::With(inner)])
            }
            Stop::ElseIf(epos) | Stop::ElseWith(epos) => {
                return Err(self.err_at(epos, "unexpected {{else}}"));
            }
            Stop::Eof => return Err(self.err_at(self.src.len(), "unexpected EOF")),
        };
        self.vars.truncate(mark);
        Ok(Branch {
            pos,
            pipe,
            list,
            else_list,
        })
    }

    fn template_call(&mut self, pos: usize, context: &str) -> PResult<Node> {
        let t = self.next_non_space();
        let (name, quoted) = match &t.0 {
            Tok::Str(q) | Tok::RawStr(q) => (
                unquote_string(q)
                    .ok_or_else(|| self.err_at(t.1, format!("invalid syntax: {q}")))?,
                q.clone(),
            ),
            _ => return Err(self.unexpected(&t, &format!("{context} clause"))),
        };
        let pipe = if self.peek_non_space().0 != Tok::RightDelim {
            Some(self.pipeline(context, true)?)
        } else {
            self.next_non_space();
            None
        };
        Ok(Node::Template {
            pos,
            name,
            quoted,
            pipe,
        })
    }

    /// `{{define "name"}} ... {{end}}`
    fn define(&mut self) -> PResult<()> {
        let t = self.next_non_space();
        let name = match &t.0 {
            Tok::Str(q) | Tok::RawStr(q) => {
                unquote_string(q).ok_or_else(|| self.err_at(t.1, format!("invalid syntax: {q}")))?
            }
            _ => return Err(self.unexpected(&t, "define clause")),
        };
        self.expect_right_delim("define clause")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if !matches!(end, Stop::End) {
            return Err(self.err_at(t.1, "unexpected {{else}} in define clause"));
        }
        self.add_def(name, list, t.1)
    }

    fn add_def(&mut self, name: String, list: Vec<Node>, pos: usize) -> PResult<()> {
        // Go lets an empty definition be replaced, and a non-empty one replace an empty one.
        let empty = |l: &Vec<Node>| {
            l.iter()
                .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
        };
        if let Some(old) = self.defs.get(&name)
            && !empty(old)
            && !empty(&list)
        {
            return Err(self.err_at(
                pos,
                format!("template: multiple definition of template {name:?}"),
            ));
        }
        self.defs.insert(name, list);
        Ok(())
    }

    /// `{{block "name" pipeline}} default {{end}}`: define it, then call it.
    fn block(&mut self, pos: usize) -> PResult<Node> {
        let node = self.template_call(pos, "block clause")?;
        let Node::Template { name, .. } = &node else {
            unreachable!("template_call returns a template node")
        };
        let name = name.clone();
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if !matches!(end, Stop::End) {
            return Err(self.err_at(pos, "unexpected {{else}} in block clause"));
        }
        self.add_def(name, list, pos)?;
        Ok(node)
    }

    /// A pipeline, ended by `}}` (`delim`) or `)`.
    fn pipeline(&mut self, context: &str, delim: bool) -> PResult<Pipe> {
        let pos = self.peek_non_space().1;
        let mut pipe = Pipe {
            pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations: "$x :=", "$x =", "$i, $e :=" (range only).
        'decls: loop {
            let save = self.at;
            let v = self.peek_non_space().clone();
            let Tok::Variable(name) = &v.0 else { break };
            self.next_non_space();
            let next = self.peek_non_space().clone();
            match next.0 {
                Tok::Declare | Tok::Assign => {
                    self.next_non_space();
                    pipe.is_assign = next.0 == Tok::Assign;
                    if pipe.is_assign && !self.vars.contains(name) {
                        return Err(self.err_at(v.1, format!("undefined variable {name:?}")));
                    }
                    pipe.decl.push(name.clone());
                    if !pipe.is_assign {
                        self.vars.push(name.clone());
                    }
                    break 'decls;
                }
                Tok::Comma => {
                    self.next_non_space();
                    pipe.decl.push(name.clone());
                    self.vars.push(name.clone());
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().0 {
                            Tok::Variable(_) | Tok::RightDelim | Tok::RightParen => {
                                continue 'decls;
                            }
                            _ => {
                                return Err(
                                    self.err_at(next.1, "range can only initialize variables")
                                );
                            }
                        }
                    }
                    return Err(self.err_at(next.1, format!("too many declarations in {context}")));
                }
                _ => {
                    self.at = save;
                    break;
                }
            }
        }
        loop {
            let t = self.next_non_space();
            match t.0 {
                Tok::RightDelim if delim => break,
                Tok::RightParen if !delim => break,
                Tok::Bool(_)
                | Tok::Char(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::RawStr(_)
                | Tok::Str(_)
                | Tok::Variable(_)
                | Tok::LeftParen => {
                    self.at -= 1;
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
        if pipe.cmds.is_empty() {
            return Err(self.err_at(pos, format!("missing value for {context}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Number(..) | Arg::Str { .. }
            ) {
                return Err(self.err_at(
                    c.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                ));
            }
        }
        Ok(pipe)
    }

    fn command(&mut self) -> PResult<Cmd> {
        let pos = self.peek_non_space().1;
        let mut cmd = Cmd {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let t = self.next();
            match t.0 {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => {
                    self.at -= 1;
                }
                Tok::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.err_at(pos, "empty command"));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if !matches!(self.peek().0, Tok::Field(_)) {
            return Ok(Some(term));
        }
        let mut fields = Vec::new();
        while let Tok::Field(f) = &self.peek().0 {
            fields.push(f[1..].to_string());
            self.next();
        }
        Ok(Some(match term {
            Arg::Field { pos, mut idents } => {
                idents.extend(fields);
                Arg::Field { pos, idents }
            }
            Arg::Variable {
                pos,
                name,
                mut idents,
            } => {
                idents.extend(fields);
                Arg::Variable { pos, name, idents }
            }
            Arg::Bool(pos, _)
            | Arg::Str { pos, .. }
            | Arg::Number(pos, _)
            | Arg::Nil(pos)
            | Arg::Dot(pos) => {
                let mut s = String::new();
                arg_string(&term, &mut s);
                return Err(self.err_at(pos, format!("unexpected . after term {s:?}")));
            }
            other => Arg::Chain {
                pos: other.pos(),
                node: Box::new(other),
                fields,
            },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        let pos = t.1;
        Ok(Some(match t.0 {
            Tok::Ident(name) => {
                if !FUNCS.contains(&name.as_str()) {
                    return Err(self.err_at(pos, format!("function {name:?} not defined")));
                }
                Arg::Ident { pos, name }
            }
            Tok::Dot => Arg::Dot(pos),
            Tok::Nil => Arg::Nil(pos),
            Tok::Variable(name) => {
                if !self.vars.contains(&name) {
                    return Err(self.err_at(pos, format!("undefined variable {name:?}")));
                }
                Arg::Variable {
                    pos,
                    name,
                    idents: Vec::new(),
                }
            }
            Tok::Field(f) => Arg::Field {
                pos,
                idents: vec![f[1..].to_string()],
            },
            Tok::Bool(b) => Arg::Bool(pos, b),
            Tok::Number(text) => Arg::Number(
                pos,
                parse_number(&text, false).map_err(|e| self.err_at(pos, e))?,
            ),
            Tok::Char(text) => Arg::Number(
                pos,
                parse_number(&text, true).map_err(|e| self.err_at(pos, e))?,
            ),
            Tok::LeftParen => Arg::Pipe(self.pipeline("parenthesized pipeline", false)?),
            Tok::Str(q) | Tok::RawStr(q) => {
                let value = unquote_string(&q)
                    .ok_or_else(|| self.err_at(pos, format!("invalid syntax: {q}")))?;
                Arg::Str {
                    pos,
                    quoted: q,
                    value,
                }
            }
            Tok::Error(e) => return Err(self.err_at(pos, e)),
            _ => {
                self.at -= 1;
                return Ok(None);
            }
        }))
    }
}

/// The index of the quote that closes the one at `open` (`"` or `'`), skipping backslash
/// escapes; `None` when a newline or the end comes first, as Go's lexer reports it.
fn closing_quote(b: &[u8], open: usize) -> Option<usize> {
    let quote = b[open];
    let mut q = open + 1;
    while q < b.len() {
        match b[q] {
            b'\\' => q += 2,
            b'\n' => return None,
            c if c == quote => return Some(q),
            _ => q += 1,
        }
    }
    None
}

//! Printing values as Go's `fmt` package prints them: `%v` for actions, `print`, `println`,
//! `printf` with flags, width and precision, and the escapers `html`, `js` and `urlquery`.

use std::fmt::Write as _;

use super::{Kind, Value};

/// `%v`.
pub fn write_value(v: &Value<'_>, out: &mut String) {
    match v {
        Value::Invalid => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u, _) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => out.push_str(&float_g(*f, None)),
        Value::Str(s) => out.push_str(s),
        Value::List(l) => {
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(e, out);
            }
            out.push(']');
        }
        Value::Object(o) => o.write(out),
    }
}

fn is_string(v: &Value<'_>) -> bool {
    matches!(v, Value::Str(_))
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
pub fn sprint(vals: &[Value<'_>]) -> String {
    let mut out = String::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 && !is_string(v) && !is_string(&vals[i - 1]) {
            out.push(' ');
        }
        write_value(v, &mut out);
    }
    out
}

/// `fmt.Sprintln`: always spaces, and a newline.
pub fn sprintln(vals: &[Value<'_>]) -> String {
    let mut out = String::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(v, &mut out);
    }
    out.push('\n');
    out
}

#[derive(Default, Clone, Copy)]
struct Flags {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn arg_int(v: Option<&Value<'_>>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        Some(Value::Uint(u, _)) => i64::try_from(*u).ok(),
        _ => None,
    }
}

/// `fmt.Sprintf`.
pub fn sprintf(format: &str, args: &[Value<'_>]) -> String {
    let mut out = String::new();
    let mut argi = 0;
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut f = Flags::default();
        while i < chars.len() {
            match chars[i] {
                '-' => {
                    f.minus = true;
                    f.zero = false;
                }
                '+' => f.plus = true,
                '#' => f.sharp = true,
                ' ' => f.space = true,
                '0' => f.zero = !f.minus,
                _ => break,
            }
            i += 1;
        }
        if i < chars.len() && chars[i] == '*' {
            i += 1;
            match arg_int(args.get(argi)) {
                Some(w) => {
                    if w < 0 {
                        f.minus = true;
                        f.zero = false;
                    }
                    f.width = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            argi += 1;
        } else {
            let mut w = None;
            while i < chars.len() && chars[i].is_ascii_digit() {
                w = Some(w.unwrap_or(0) * 10 + chars[i].to_digit(10).unwrap_or(0) as usize);
                i += 1;
            }
            f.width = w;
        }
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            if i < chars.len() && chars[i] == '*' {
                i += 1;
                match arg_int(args.get(argi)) {
                    Some(p) if p >= 0 => f.prec = Some(p as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                argi += 1;
            } else {
                let mut p = 0;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    p = p * 10 + chars[i].to_digit(10).unwrap_or(0) as usize;
                    i += 1;
                }
                f.prec = Some(p);
            }
        }
        if i >= chars.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = chars[i];
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        format_arg(&mut out, arg, verb, f);
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (n, a) in args[argi..].iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            if matches!(a, Value::Nil | Value::Invalid) {
                out.push_str("<nil>");
            } else {
                out.push_str(a.type_name());
                out.push('=');
                write_value(a, &mut out);
            }
        }
        out.push(')');
    }
    out
}

fn pad(out: &mut String, s: &str, f: Flags) {
    let n = s.chars().count();
    let w = f.width.unwrap_or(0);
    if n >= w {
        out.push_str(s);
        return;
    }
    let fill = w - n;
    if f.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if f.zero {
        // Zeros go after a sign.
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+' | b'-' | b' ') => s.split_at(1),
            _ => ("", s),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(s);
    }
}

fn bad_verb(out: &mut String, v: &Value<'_>, verb: char) {
    let _ = write!(out, "%!{verb}(");
    match v {
        Value::Nil | Value::Invalid => out.push_str("<nil>"),
        v => {
            out.push_str(v.type_name());
            out.push('=');
            write_value(v, out);
        }
    }
    out.push(')');
}

fn format_arg(out: &mut String, v: &Value<'_>, verb: char, f: Flags) {
    if verb == 'T' {
        pad(out, v.type_name(), f);
        return;
    }
    match v {
        Value::Nil | Value::Invalid => {
            if verb == 'v' {
                pad(out, "<nil>", f);
            } else {
                bad_verb(out, v, verb);
            }
        }
        Value::Bool(b) => match verb {
            'v' | 't' => pad(out, if *b { "true" } else { "false" }, f),
            _ => bad_verb(out, v, verb),
        },
        Value::Int(i) => format_integer(out, v, i.unsigned_abs(), *i < 0, verb, f),
        Value::Uint(u, _) => format_integer(out, v, *u, false, verb, f),
        Value::Float(x) => match verb {
            'v' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F' => {
                let mut s = match verb {
                    'v' | 'g' => float_g(*x, f.prec),
                    'G' => float_g(*x, f.prec).to_uppercase(),
                    'e' => float_e(*x, f.prec.unwrap_or(6)),
                    'E' => float_e(*x, f.prec.unwrap_or(6)).to_uppercase(),
                    _ => float_f(*x, f.prec.unwrap_or(6)),
                };
                if !s.starts_with('-') && !s.starts_with('+') {
                    if f.plus {
                        s.insert(0, '+');
                    } else if f.space {
                        s.insert(0, ' ');
                    }
                } else if s.starts_with('+') && !f.plus {
                    // "+Inf" keeps its sign only with the plus flag.
                    if x.is_infinite() && verb != 'v' {
                        s.remove(0);
                    }
                }
                let mut ff = f;
                if x.is_nan() || x.is_infinite() {
                    ff.zero = false;
                }
                pad(out, &s, ff);
            }
            _ => bad_verb(out, v, verb),
        },
        Value::Str(s) => match verb {
            'v' if f.sharp => pad(out, &go_quote(s), f),
            'v' | 's' => {
                let s: String = match f.prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.to_string(),
                };
                pad(out, &s, f);
            }
            'q' => {
                if f.sharp && !s.contains('`') && s.chars().all(|c| c == '\t' || !c.is_control()) {
                    pad(out, &format!("`{s}`"), f);
                } else {
                    pad(out, &go_quote(s), f);
                }
            }
            'x' | 'X' => {
                let mut h = String::new();
                let bytes = match f.prec {
                    Some(p) => &s.as_bytes()[..p.min(s.len())],
                    None => s.as_bytes(),
                };
                for (n, b) in bytes.iter().enumerate() {
                    if f.space && n > 0 {
                        h.push(' ');
                    }
                    if f.sharp && (f.space || n == 0) {
                        h.push_str(if verb == 'x' { "0x" } else { "0X" });
                    }
                    if verb == 'x' {
                        let _ = write!(h, "{b:02x}");
                    } else {
                        let _ = write!(h, "{b:02X}");
                    }
                }
                pad(out, &h, f);
            }
            _ => bad_verb(out, v, verb),
        },
        Value::List(l) => {
            out.push('[');
            for (n, e) in l.iter().enumerate() {
                if n > 0 {
                    out.push(' ');
                }
                format_arg(out, e, verb, f);
            }
            out.push(']');
        }
        Value::Object(o) => match (o.kind(), verb) {
            (Kind::Slice, _) => {
                out.push('[');
                for n in 0..o.len() {
                    if n > 0 {
                        out.push(' ');
                    }
                    format_arg(out, &o.index(n), verb, f);
                }
                out.push(']');
            }
            (_, 'v' | 's') => {
                let mut s = String::new();
                o.write(&mut s);
                pad(out, &s, f);
            }
            _ => bad_verb(out, v, verb),
        },
    }
}

fn format_integer(out: &mut String, v: &Value<'_>, mag: u64, neg: bool, verb: char, f: Flags) {
    let digits = match verb {
        'v' | 'd' => mag.to_string(),
        'b' => format!("{mag:b}"),
        'o' | 'O' => format!("{mag:o}"),
        'x' => format!("{mag:x}"),
        'X' => format!("{mag:X}"),
        'c' => {
            let c = char::from_u32(mag as u32).unwrap_or('\u{FFFD}');
            pad(out, &c.to_string(), f);
            return;
        }
        'q' => {
            let c = char::from_u32(mag as u32).unwrap_or('\u{FFFD}');
            let q = match c {
                '\'' => "'\\''".to_string(),
                '"' => "'\"'".to_string(),
                c => {
                    let g = go_quote(&c.to_string());
                    format!("'{}'", &g[1..g.len() - 1])
                }
            };
            pad(out, &q, f);
            return;
        }
        'U' => {
            let mut s = format!("U+{mag:04X}");
            if f.sharp
                && let Some(c) = char::from_u32(mag as u32)
                && !c.is_control()
            {
                let _ = write!(s, " '{c}'");
            }
            pad(out, &s, f);
            return;
        }
        _ => {
            bad_verb(out, v, verb);
            return;
        }
    };
    let mut digits = digits;
    if let Some(p) = f.prec {
        if p == 0 && mag == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let prefix = match verb {
        'b' if f.sharp => "0b",
        'o' if f.sharp && !digits.starts_with('0') => "0",
        'O' => "0o",
        'x' if f.sharp => "0x",
        'X' if f.sharp => "0X",
        _ => "",
    };
    let sign = if neg {
        "-"
    } else if f.plus {
        "+"
    } else if f.space {
        " "
    } else {
        ""
    };
    let body = format!("{prefix}{digits}");
    let w = f.width.unwrap_or(0);
    let len = sign.len() + body.len();
    if f.zero && f.prec.is_none() && !f.minus && len < w {
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', w - len));
        out.push_str(&body);
    } else {
        let mut nf = f;
        nf.zero = false;
        pad(out, &format!("{sign}{body}"), nf);
    }
}

/// The decimal digits of `x` (no trailing zeros) and the decimal point position: `x` is
/// `0.DIGITS × 10^dp`. `sig` rounds to that many significant digits; `None` is the shortest
/// representation that reads back as `x`.
fn decimal(x: f64, sig: Option<usize>) -> (String, i32) {
    let s = match sig {
        Some(n) => format!("{:.*e}", n.max(1) - 1, x.abs()),
        None => format!("{:e}", x.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    if digits == "0" {
        return (digits, 1);
    }
    (digits, exp + 1)
}

fn special(x: f64) -> Option<String> {
    if x.is_nan() {
        Some("NaN".into())
    } else if x.is_infinite() {
        Some(if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        })
    } else {
        None
    }
}

/// `%g` (and `%v`), shortest or with `prec` significant digits.
fn float_g(x: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let shortest = prec.is_none();
    let (digits, dp) = decimal(x, prec.map(|p| p.max(1)));
    let nd = digits.len() as i32;
    let mut eprec = prec.map_or(nd, |p| p.max(1) as i32);
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let neg = x.is_sign_negative() && x != 0.0 || (x == 0.0 && x.is_sign_negative());
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        push_exp(&mut out, exp);
    } else {
        push_fixed(&mut out, &digits, dp, (nd - dp).max(0) as usize);
    }
    out
}

fn push_exp(out: &mut String, exp: i32) {
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    let _ = write!(out, "{e}");
}

/// Digits `0.DIGITS × 10^dp` with `frac` digits after the point.
fn push_fixed(out: &mut String, digits: &str, dp: i32, frac: usize) {
    let d = digits.as_bytes();
    if dp <= 0 {
        out.push('0');
    } else {
        for i in 0..dp as usize {
            out.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    }
    if frac > 0 {
        out.push('.');
        for i in 0..frac as i32 {
            let idx = dp + i;
            let c = if idx < 0 {
                b'0'
            } else {
                *d.get(idx as usize).unwrap_or(&b'0')
            };
            out.push(c as char);
        }
    }
}

/// `%e` with `prec` digits after the point.
fn float_e(x: f64, prec: usize) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let s = format!("{x:.prec$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut out = mant.to_string();
    push_exp(&mut out, exp);
    out
}

/// `%f` with `prec` digits after the point.
fn float_f(x: f64, prec: usize) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    format!("{x:.prec$}")
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || (c != ' ' && c.is_whitespace()) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `template.HTMLEscapeString`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 || ((c as u32) >= 0x80 && c.is_control()) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

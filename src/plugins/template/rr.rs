//! One resource record in RFC 1035 zone-file syntax, as miekg/dns's `dns.NewRR` reads the
//! rendered output of an `answer`, `additional` or `authority` template: origin `.` (relative
//! names become fully qualified), default TTL 3600, default class IN, TTL and class in either
//! order, parentheses across lines, `;` comments, quoted strings, and `\X` / `\DDD` escapes.
//! Only the first record of the text is read, as `NewRR` does.
//!
//! Why not hickory-proto's zone parser: it reads `\DDD` escapes as octal where RFC 1035 §5.1
//! says decimal (a query name with an escaped byte would come back as a different name), it
//! has no default TTL, and it follows `$INCLUDE` into the filesystem. The record types templates
//! produce (A, AAAA, CNAME, NS, PTR, MX, SRV, TXT, SOA) are parsed here; other types have their
//! RDATA handed to hickory-proto's per-type text parser (`RData::try_from_str`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// miekg/dns's `DefaultTtl`.
const DEFAULT_TTL: u32 = 3600;

struct Token {
    text: String,
    quoted: bool,
}

/// Parse the first record in `text`. `Ok(None)`: the text holds no record at all (empty,
/// blanks, comments).
pub fn parse(text: &str) -> Result<Option<Record>, String> {
    let tokens = tokenize(text)?;
    let Some(first) = tokens.first() else {
        return Ok(None);
    };
    if first.quoted {
        return Err(format!("dns: bad owner name: {:?}", first.text));
    }
    let owner = parse_name(&first.text).map_err(|e| format!("dns: bad owner name: {e}"))?;
    let mut ttl = None;
    let mut class = None;
    let mut rtype = None;
    let mut i = 1;
    while i < tokens.len() {
        let t = &tokens[i];
        i += 1;
        if t.quoted {
            return Err(format!("dns: syntax error: unexpected {:?}", t.text));
        }
        let upper = t.text.to_ascii_uppercase();
        if t.text.starts_with(|c: char| c.is_ascii_digit()) {
            if ttl.is_some() {
                return Err(format!("dns: not a TTL: {:?}", t.text));
            }
            ttl = Some(parse_ttl(&t.text).ok_or_else(|| format!("dns: not a TTL: {:?}", t.text))?);
            continue;
        }
        if let Some(c) = parse_class(&upper) {
            if class.is_some() {
                return Err(format!("dns: syntax error: unexpected class {:?}", t.text));
            }
            class = Some(c);
            continue;
        }
        match parse_type(&upper) {
            Some(rt) => {
                rtype = Some(rt);
                break;
            }
            None if ttl.is_none() && class.is_none() => {
                return Err(format!("dns: not a TTL: {:?}", t.text));
            }
            None => return Err(format!("dns: unknown RR type: {:?}", t.text)),
        }
    }
    let Some(rtype) = rtype else {
        return Err(format!(
            "dns: not a TTL: {:?}",
            tokens.last().map_or("", |t| t.text.as_str())
        ));
    };
    let rdata = parse_rdata(rtype, &tokens[i..])?;
    let mut record = Record::from_rdata(owner, ttl.unwrap_or(DEFAULT_TTL), rdata);
    record.dns_class = class.unwrap_or(DNSClass::IN);
    Ok(Some(record))
}

/// Split the first record into tokens. Escapes are kept (names and strings decode them).
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let b = text.as_bytes();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    let mut at_line_start = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                if depth == 0 && !tokens.is_empty() {
                    break;
                }
                at_line_start = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => {
                if at_line_start && depth == 0 {
                    // A record line that starts with a blank reuses the previous owner, and
                    // there is none; a blank or comment-only line is skipped.
                    let rest = &text[i..];
                    let line = rest.split('\n').next().unwrap_or("");
                    let content = line.trim_start_matches([' ', '\t', '\r']);
                    if !content.is_empty() && !content.starts_with(';') && tokens.is_empty() {
                        return Err("dns: missing owner name".into());
                    }
                }
                at_line_start = false;
                i += 1;
            }
            b';' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                depth += 1;
                at_line_start = false;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return Err("dns: extra closing brace".into());
                }
                depth -= 1;
                i += 1;
            }
            b'"' => {
                at_line_start = false;
                let mut j = i + 1;
                let mut s = String::new();
                loop {
                    match b.get(j) {
                        None => return Err("dns: unterminated quoted string".into()),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            s.push('\\');
                            if let Some(ch) = text[j + 1..].chars().next() {
                                s.push(ch);
                                j += 1 + ch.len_utf8();
                            } else {
                                j += 1;
                            }
                        }
                        Some(_) => {
                            let ch = text[j..].chars().next().unwrap_or('\0');
                            s.push(ch);
                            j += ch.len_utf8();
                        }
                    }
                }
                tokens.push(Token {
                    text: s,
                    quoted: true,
                });
                i = j + 1;
            }
            _ => {
                if at_line_start && tokens.is_empty() && c == b'$' {
                    return Err("dns: $ directives are not supported in a template".into());
                }
                at_line_start = false;
                let mut j = i;
                let mut s = String::new();
                while j < b.len() {
                    let ch = b[j];
                    if matches!(ch, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"') {
                        break;
                    }
                    if ch == b'\\' {
                        s.push('\\');
                        if let Some(next) = text[j + 1..].chars().next() {
                            s.push(next);
                            j += 1 + next.len_utf8();
                        } else {
                            j += 1;
                        }
                        continue;
                    }
                    let next = text[j..].chars().next().unwrap_or('\0');
                    s.push(next);
                    j += next.len_utf8();
                }
                tokens.push(Token {
                    text: s,
                    quoted: false,
                });
                i = j;
            }
        }
    }
    if depth != 0 {
        return Err("dns: unbalanced parenthesis".into());
    }
    Ok(tokens)
}

/// Decode `\X` and `\DDD` (decimal) escapes into bytes.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        if let Some(v) = decimal_escape(&b[i + 1..]) {
            out.push(v.ok_or_else(|| format!("bad escape in {s:?}"))?);
            i += 4;
        } else if i + 1 < b.len() {
            out.push(b[i + 1]);
            i += 2;
        } else {
            return Err(format!("bad escape in {s:?}"));
        }
    }
    Ok(out)
}

/// `DDD` after a backslash: `None` when the next three bytes are not digits, `Some(None)` when
/// they are but exceed 255.
fn decimal_escape(b: &[u8]) -> Option<Option<u8>> {
    let d = b.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = u32::from(d[0] - b'0') * 100 + u32::from(d[1] - b'0') * 10 + u32::from(d[2] - b'0');
    Some(u8::try_from(v).ok())
}

/// A domain name in presentation format; relative names are completed with the root origin.
pub fn parse_name(s: &str) -> Result<Name, String> {
    if s == "@" || s == "." {
        return Ok(Name::root());
    }
    let b = s.as_bytes();
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if let Some(v) = decimal_escape(&b[i + 1..]) {
                    cur.push(v.ok_or_else(|| format!("{s:?}: bad escape"))?);
                    i += 4;
                } else if i + 1 < b.len() {
                    cur.push(b[i + 1]);
                    i += 2;
                } else {
                    return Err(format!("{s:?}"));
                }
            }
            b'.' => {
                if cur.is_empty() {
                    return Err(format!("{s:?}: empty label"));
                }
                labels.push(std::mem::take(&mut cur));
                i += 1;
            }
            c => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if !cur.is_empty() {
        labels.push(cur);
    }
    if labels.iter().any(|l| l.len() > 63) {
        return Err(format!("{s:?}: label longer than 63 octets"));
    }
    if labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1 > 255 {
        return Err(format!("{s:?}: name longer than 255 octets"));
    }
    let mut name = Name::from_labels(labels.iter().map(|l| l.as_slice()))
        .map_err(|e| format!("{s:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// A TTL: seconds, or miekg's unit form (`1h30m`).
fn parse_ttl(s: &str) -> Option<u32> {
    if let Ok(v) = s.parse::<u32>() {
        return Some(v);
    }
    let mut total: u64 = 0;
    let mut cur: u64 = 0;
    let mut saw_digit = false;
    for c in s.chars() {
        match c {
            '0'..='9' => {
                cur = cur
                    .checked_mul(10)?
                    .checked_add(u64::from(c as u8 - b'0'))?;
                saw_digit = true;
            }
            _ => {
                if !saw_digit {
                    return None;
                }
                let mult = match c.to_ascii_lowercase() {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86400,
                    'w' => 604800,
                    _ => return None,
                };
                total = total.checked_add(cur.checked_mul(mult)?)?;
                cur = 0;
                saw_digit = false;
            }
        }
    }
    total = total.checked_add(cur)?;
    u32::try_from(total).ok()
}

/// miekg's class names, plus `CLASSnnn`.
pub fn parse_class(upper: &str) -> Option<DNSClass> {
    match upper {
        "IN" => Some(DNSClass::IN),
        "CH" => Some(DNSClass::CH),
        "CS" => Some(DNSClass::from(2)),
        "HS" => Some(DNSClass::HS),
        "NONE" => Some(DNSClass::NONE),
        "ANY" => Some(DNSClass::ANY),
        _ => upper
            .strip_prefix("CLASS")
            .and_then(|n| n.parse::<u16>().ok())
            .map(DNSClass::from),
    }
}

/// A type mnemonic or `TYPEnnn`.
pub fn parse_type(upper: &str) -> Option<RecordType> {
    if let Some(n) = upper.strip_prefix("TYPE")
        && let Ok(v) = n.parse::<u16>()
    {
        return Some(RecordType::from(v));
    }
    match RecordType::from_str(upper) {
        Ok(RecordType::Unknown(_)) | Err(_) => None,
        Ok(t) => Some(t),
    }
}

fn one(rtype: RecordType, tokens: &[Token], n: usize) -> Result<&[Token], String> {
    if tokens.len() < n {
        return Err(format!("dns: bad {rtype} rdata: too few fields"));
    }
    if tokens.len() > n {
        return Err(format!(
            "dns: bad {rtype} rdata: garbage after rdata: {:?}",
            tokens[n].text
        ));
    }
    Ok(tokens)
}

fn num<T: FromStr>(rtype: RecordType, what: &str, t: &Token) -> Result<T, String> {
    t.text
        .parse::<T>()
        .map_err(|_| format!("dns: bad {rtype} {what}: {:?}", t.text))
}

fn name_field(rtype: RecordType, t: &Token) -> Result<Name, String> {
    parse_name(&t.text).map_err(|e| format!("dns: bad {rtype} name: {e}"))
}

fn parse_rdata(rtype: RecordType, tokens: &[Token]) -> Result<RData, String> {
    Ok(match rtype {
        RecordType::A => {
            let t = one(rtype, tokens, 1)?;
            let ip = Ipv4Addr::from_str(&t[0].text)
                .map_err(|_| format!("dns: bad A A: {:?}", t[0].text))?;
            RData::A(A(ip))
        }
        RecordType::AAAA => {
            let t = one(rtype, tokens, 1)?;
            let ip = Ipv6Addr::from_str(&t[0].text)
                .map_err(|_| format!("dns: bad AAAA AAAA: {:?}", t[0].text))?;
            RData::AAAA(AAAA(ip))
        }
        RecordType::CNAME => RData::CNAME(CNAME(name_field(rtype, &one(rtype, tokens, 1)?[0])?)),
        RecordType::NS => RData::NS(NS(name_field(rtype, &one(rtype, tokens, 1)?[0])?)),
        RecordType::PTR => RData::PTR(PTR(name_field(rtype, &one(rtype, tokens, 1)?[0])?)),
        RecordType::MX => {
            let t = one(rtype, tokens, 2)?;
            RData::MX(MX::new(num(rtype, "Mx", &t[0])?, name_field(rtype, &t[1])?))
        }
        RecordType::SRV => {
            let t = one(rtype, tokens, 4)?;
            RData::SRV(SRV::new(
                num(rtype, "Priority", &t[0])?,
                num(rtype, "Weight", &t[1])?,
                num(rtype, "Port", &t[2])?,
                name_field(rtype, &t[3])?,
            ))
        }
        RecordType::SOA => {
            let t = one(rtype, tokens, 7)?;
            let timer = |t: &Token, what: &str| -> Result<i32, String> {
                parse_ttl(&t.text)
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| format!("dns: bad SOA {what}: {:?}", t.text))
            };
            RData::SOA(SOA::new(
                name_field(rtype, &t[0])?,
                name_field(rtype, &t[1])?,
                num(rtype, "zone serial", &t[2])?,
                timer(&t[3], "zone refresh")?,
                timer(&t[4], "zone retry")?,
                timer(&t[5], "zone expire")?,
                parse_ttl(&t[6].text)
                    .ok_or_else(|| format!("dns: bad SOA zone minttl: {:?}", t[6].text))?,
            ))
        }
        RecordType::TXT => {
            if tokens.is_empty() {
                return Err("dns: bad TXT Txt: no strings".into());
            }
            // Strings longer than 255 octets are split, as miekg/dns does.
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for t in tokens {
                let bytes = unescape(&t.text).map_err(|e| format!("dns: bad TXT Txt: {e}"))?;
                if bytes.is_empty() {
                    parts.push(Vec::new());
                }
                for chunk in bytes.chunks(255) {
                    parts.push(chunk.to_vec());
                }
            }
            RData::TXT(TXT::from_bytes(
                parts.iter().map(|p| p.as_slice()).collect(),
            ))
        }
        other => {
            let text = tokens
                .iter()
                .map(|t| {
                    if t.quoted {
                        format!("\"{}\"", t.text)
                    } else {
                        t.text.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            RData::try_from_str(other, &text).map_err(|e| format!("dns: bad {other} rdata: {e}"))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(text: &str) -> String {
        let r = parse(text).unwrap().unwrap();
        format!(
            "{} {} {} {} {}",
            r.name,
            r.ttl,
            r.dns_class,
            r.record_type(),
            r.data
        )
    }

    #[test]
    fn records_templates_produce() {
        for (text, want) in [
            (
                "a.example. 60 IN A 10.95.12.8",
                "a.example. 60 IN A 10.95.12.8",
            ),
            ("a.example. A 10.0.0.1", "a.example. 3600 IN A 10.0.0.1"),
            ("a.example. IN 60 A 10.0.0.1", "a.example. 60 IN A 10.0.0.1"),
            (
                "a.example. 1h AAAA 2001:db8::1",
                "a.example. 3600 IN AAAA 2001:db8::1",
            ),
            (
                "example.net 60 IN CNAME target.example.com",
                "example.net. 60 IN CNAME target.example.com.",
            ),
            (
                "8.12.95.10.in-addr.arpa. 60 IN PTR ip-10-95-12-8.example.",
                "8.12.95.10.in-addr.arpa. 60 IN PTR ip-10-95-12-8.example.",
            ),
            (
                "x.example. 60 IN MX 10 x.example.",
                "x.example. 60 IN MX 10 x.example.",
            ),
            (
                "_s._tcp.example. 60 IN SRV 0 5 443 host.example.",
                "_s._tcp.example. 60 IN SRV 0 5 443 host.example.",
            ),
            (
                "coredns.invalid. 60 CH TXT \"test\"",
                "coredns.invalid. 60 CH TXT test",
            ),
            (
                "t.example. 60 IN TXT \"a b\" c",
                "t.example. 60 IN TXT a bc",
            ),
            (
                "invalid. 60 IN SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)",
                "invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60",
            ),
            (
                "example.com 60 IN SOA ns.example.com hostmaster.example.com (\n 1 60\n 60 60 60 ) ; c",
                "example.com. 60 IN SOA ns.example.com. hostmaster.example.com. 1 60 60 60 60",
            ),
            (
                "example. 900 IN NS ns1.example.",
                "example. 900 IN NS ns1.example.",
            ),
            (
                "\n; comment\nfirst. 60 IN A 1.1.1.1\nsecond. 60 IN A 2.2.2.2",
                "first. 60 IN A 1.1.1.1",
            ),
            ("@ 60 IN NS a.", ". 60 IN NS a."),
        ] {
            assert_eq!(show(text), want, "{text}");
        }
    }

    #[test]
    fn decimal_escapes_keep_the_bytes() {
        let r = parse("a\\032b.example. 60 IN A 1.2.3.4").unwrap().unwrap();
        assert_eq!(r.name.iter().next(), Some(&b"a b"[..]));
        let r = parse("a\\.b.example. 60 IN TXT \"x\\\"y\\255\"")
            .unwrap()
            .unwrap();
        assert_eq!(r.name.iter().next(), Some(&b"a.b"[..]));
        match &r.data {
            RData::TXT(t) => assert_eq!(&*t.txt_data[0], b"x\"y\xff"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_records() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("  \n ; only a comment\n").unwrap().is_none());
        for bad in [
            "test.example.",
            "a.example. 60 IN A",
            "a.example. 60 IN A 300.1.1.1",
            "a.example. 60 IN A 1.1.1.1 extra",
            "a.example. 60 IN BOGUS x",
            "a.example. 60 IN SOA a. b. (1 2 3",
            " a.example. 60 IN A 1.1.1.1",
            "$INCLUDE /etc/passwd",
            "a..example. 60 IN A 1.1.1.1",
            "a.example. 60 IN MX x y.",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

//! What a template sees as `.`: CoreDNS's `templateData` (`.Zone .Name .Regex .Match .Group
//! .Class .Type .Message .Question .Remote` and the `.Meta` method), borrowed from the query.

use std::borrow::Cow;
use std::fmt::Write as _;

use hickory_proto::op::{MessageType, OpCode};
use hickory_proto::rr::Name;
use regex::{Captures, Regex};

use super::gotmpl::{Kind, Object, Value};
use super::{class_name, type_name};
use crate::plugin::Request;

/// A name as miekg/dns presents it: `.`-separated labels, `\X` before `. space ' @ ; ( ) " \`,
/// `\DDD` (decimal) for bytes outside printable ASCII, a trailing dot; optionally lower-cased
/// as CoreDNS's `state.Name()` is.
pub fn presentation(name: &Name, lower: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        for &b in label {
            let b = if lower { b.to_ascii_lowercase() } else { b };
            match b {
                b'.' | b' ' | b'\'' | b'@' | b';' | b'(' | b')' | b'"' | b'\\' => {
                    out.push('\\');
                    out.push(b as char);
                }
                b if !(b' '..=b'~').contains(&b) => {
                    let _ = write!(out, "\\{b:03}");
                }
                b => out.push(b as char),
            }
        }
        out.push('.');
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// `.Match`: the whole match and every group (empty for a group that took no part).
pub struct Matches<'q> {
    caps: Captures<'q>,
}

impl Matches<'_> {
    fn get(&self, i: usize) -> &str {
        self.caps.get(i).map_or("", |m| m.as_str())
    }
}

impl Object for Matches<'_> {
    fn type_name(&self) -> &'static str {
        "[]string"
    }
    fn kind(&self) -> Kind {
        Kind::Slice
    }
    fn field(&self, _name: &str) -> Option<Value<'_>> {
        None
    }
    fn len(&self) -> usize {
        self.caps.len()
    }
    fn index(&self, i: usize) -> Value<'_> {
        Value::str(self.get(i))
    }
}

/// `.Group`: every group by number (`"0"`, `"1"`, ...) and the named ones by name.
pub struct Groups<'q> {
    matches: &'q Matches<'q>,
    regex: &'q Regex,
}

impl Object for Groups<'_> {
    fn type_name(&self) -> &'static str {
        "map[string]string"
    }
    fn kind(&self) -> Kind {
        Kind::Map
    }
    fn field(&self, key: &str) -> Option<Value<'_>> {
        // strconv.Itoa form only: "01" is not group 1.
        if let Ok(i) = key.parse::<usize>()
            && i.to_string() == key
            && i < self.matches.len()
        {
            return Some(Value::str(self.matches.get(i)));
        }
        let i = self.regex.capture_names().position(|n| n == Some(key))?;
        Some(Value::str(self.matches.get(i)))
    }
    fn len(&self) -> usize {
        self.keys().len()
    }
    fn keys(&self) -> Vec<Cow<'_, str>> {
        let mut keys: Vec<Cow<'_, str>> = (0..self.matches.len())
            .map(|i| Cow::Owned(i.to_string()))
            .collect();
        for n in self.regex.capture_names().flatten() {
            if !keys.iter().any(|k| k == n) {
                keys.push(Cow::Borrowed(n));
            }
        }
        keys.sort();
        keys
    }
}

/// `.Question`: miekg/dns's `*dns.Question`, name as the client wrote it.
pub struct QuestionData<'q> {
    req: &'q Request,
}

fn class_text(c: u16) -> String {
    match class_name(c) {
        "" => format!("CLASS{c}"),
        s => s.to_string(),
    }
}

fn type_text(t: u16) -> String {
    match type_name(t) {
        "" => format!("TYPE{t}"),
        s => s.to_string(),
    }
}

impl Object for QuestionData<'_> {
    fn type_name(&self) -> &'static str {
        "*dns.Question"
    }
    fn kind(&self) -> Kind {
        Kind::Struct
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "Name" => Value::Str(Cow::Owned(presentation(self.req.qname(), false))),
            "Qtype" => Value::Uint(u64::from(u16::from(self.req.qtype())), "uint16"),
            "Qclass" => Value::Uint(u64::from(u16::from(self.req.qclass())), "uint16"),
            _ => return None,
        })
    }
    fn write(&self, out: &mut String) {
        let _ = write!(
            out,
            ";{}\t{}\t {}",
            presentation(self.req.qname(), false),
            class_text(u16::from(self.req.qclass())),
            type_text(u16::from(self.req.qtype()))
        );
    }
}

/// `.Message.Question`: the one question, as a slice.
pub struct QuestionList<'q>(&'q QuestionData<'q>);

impl Object for QuestionList<'_> {
    fn type_name(&self) -> &'static str {
        "[]dns.Question"
    }
    fn kind(&self) -> Kind {
        Kind::Slice
    }
    fn field(&self, _name: &str) -> Option<Value<'_>> {
        None
    }
    fn len(&self) -> usize {
        1
    }
    fn index(&self, _i: usize) -> Value<'_> {
        Value::Object(self.0)
    }
}

/// `.Message`: the header fields of miekg/dns's `*dns.Msg` and its question.
pub struct MessageData<'q> {
    req: &'q Request,
    question: QuestionList<'q>,
}

fn opcode_text(op: OpCode) -> String {
    match op {
        OpCode::Query => "QUERY".into(),
        OpCode::Status => "STATUS".into(),
        OpCode::Notify => "NOTIFY".into(),
        OpCode::Update => "UPDATE".into(),
        other => u8::from(other).to_string(),
    }
}

impl Object for MessageData<'_> {
    fn type_name(&self) -> &'static str {
        "*dns.Msg"
    }
    fn kind(&self) -> Kind {
        Kind::Struct
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        let h = &self.req.msg().metadata;
        Some(match name {
            "Id" => Value::Uint(u64::from(h.id), "uint16"),
            "Response" => Value::Bool(h.message_type == MessageType::Response),
            "Opcode" => Value::Int(i64::from(u8::from(h.op_code))),
            "Authoritative" => Value::Bool(h.authoritative),
            "Truncated" => Value::Bool(h.truncation),
            "RecursionDesired" => Value::Bool(h.recursion_desired),
            "RecursionAvailable" => Value::Bool(h.recursion_available),
            "Zero" => Value::Bool(false),
            "AuthenticatedData" => Value::Bool(h.authentic_data),
            "CheckingDisabled" => Value::Bool(h.checking_disabled),
            "Rcode" => Value::Int(i64::from(u16::from(h.response_code))),
            "Question" => Value::Object(&self.question),
            _ => return None,
        })
    }
    fn write(&self, out: &mut String) {
        // miekg/dns's `Msg.String()`, the dig-like text, without an OPT pseudo-section.
        let h = &self.req.msg().metadata;
        let _ = write!(
            out,
            ";; opcode: {}, status: {}, id: {}\n;; flags:",
            opcode_text(h.op_code),
            h.response_code.to_str().to_uppercase(),
            h.id
        );
        for (set, flag) in [
            (h.message_type == MessageType::Response, " qr"),
            (h.authoritative, " aa"),
            (h.truncation, " tc"),
            (h.recursion_desired, " rd"),
            (h.recursion_available, " ra"),
            (h.authentic_data, " ad"),
            (h.checking_disabled, " cd"),
        ] {
            if set {
                out.push_str(flag);
            }
        }
        let _ = write!(
            out,
            "; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: {}\n\n;; QUESTION SECTION:\n",
            usize::from(self.req.msg().edns.is_some())
        );
        self.question.0.write(out);
        out.push('\n');
    }
}

/// `.`: everything a template can use about the matched query.
pub struct QueryData<'q> {
    zone: &'q str,
    name: &'q str,
    regex: &'q Regex,
    pub class: &'static str,
    pub qtype: &'static str,
    matches: Matches<'q>,
    question: QuestionData<'q>,
    req: &'q Request,
}

impl<'q> QueryData<'q> {
    pub fn new(
        req: &'q Request,
        zone: &'q str,
        name: &'q str,
        regex: &'q Regex,
        caps: Captures<'q>,
        class: &'static str,
        qtype: &'static str,
    ) -> Self {
        QueryData {
            zone,
            name,
            regex,
            class,
            qtype,
            matches: Matches { caps },
            question: QuestionData { req },
            req,
        }
    }
}

impl Object for QueryData<'_> {
    fn type_name(&self) -> &'static str {
        "*template.templateData"
    }
    fn kind(&self) -> Kind {
        Kind::Struct
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "Zone" => Value::str(self.zone),
            "Name" => Value::str(self.name),
            "Regex" => Value::str(self.regex.as_str()),
            "Match" => Value::Object(&self.matches),
            "Class" => Value::str(self.class),
            "Type" => Value::str(self.qtype),
            // Served by [`Dot`], which owns the objects that borrow this one.
            "Group" | "Message" => return None,
            "Question" => Value::Object(&self.question),
            "Remote" => Value::Str(Cow::Owned(self.req.ip().to_string())),
            _ => return None,
        })
    }
    fn method(&self, name: &str, args: &[Value<'_>]) -> Option<Result<Value<'_>, String>> {
        if name != "Meta" {
            return None;
        }
        // CoreDNS reads metadata only when the *metadata* plugin is loaded; ferrodns has no
        // metadata plugin, so every name reads as "", as CoreDNS without it.
        Some(match args {
            [Value::Str(_)] => Ok(Value::str("")),
            [other] => Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            )),
            _ => Err(format!(
                "wrong number of args for Meta: want 1 got {}",
                args.len()
            )),
        })
    }
    fn write(&self, out: &mut String) {
        let _ = write!(
            out,
            "&{{{} {} {} ",
            self.zone,
            self.name,
            self.regex.as_str()
        );
        self.matches.write(out);
        let _ = write!(out, " {} {} {}}}", self.class, self.qtype, self.req.ip());
    }
}

/// The data objects that borrow each other (`.Group` reads `.Match`, `.Message.Question`
/// reads `.Question`) are built around [`QueryData`] by [`Dot`].
pub struct Dot<'q> {
    data: &'q QueryData<'q>,
    groups: Groups<'q>,
    message: MessageData<'q>,
}

impl<'q> Dot<'q> {
    pub fn new(data: &'q QueryData<'q>) -> Self {
        Dot {
            data,
            groups: Groups {
                matches: &data.matches,
                regex: data.regex,
            },
            message: MessageData {
                req: data.req,
                question: QuestionList(&data.question),
            },
        }
    }
}

impl Object for Dot<'_> {
    fn type_name(&self) -> &'static str {
        self.data.type_name()
    }
    fn kind(&self) -> Kind {
        Kind::Struct
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "Group" => Some(Value::Object(&self.groups)),
            "Message" => Some(Value::Object(&self.message)),
            _ => self.data.field(name),
        }
    }
    fn method(&self, name: &str, args: &[Value<'_>]) -> Option<Result<Value<'_>, String>> {
        self.data.method(name, args)
    }
    fn write(&self, out: &mut String) {
        self.data.write(out)
    }
}

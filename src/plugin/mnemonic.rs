//! Rcode, query-type and class names as CoreDNS prints and parses them: miekg/dns's
//! `RcodeToString`, `StringToRcode`, `Type.String()`, `ClassToString` and `StringToClass`. One table, so a metric label, a log line and a Corefile
//! option never disagree about what rcode 11 or 16 is called.

use std::borrow::Cow;

use hickory_proto::rr::{DNSClass, RecordType};

/// miekg/dns's `RcodeToString`. 16 is BADSIG there, not BADVERS: the two share a value and
/// miekg's table keeps BADSIG.
const RCODES: &[(u16, &str)] = &[
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (6, "YXDOMAIN"),
    (7, "YXRRSET"),
    (8, "NXRRSET"),
    (9, "NOTAUTH"),
    (10, "NOTZONE"),
    (11, "DSOTYPENI"),
    (16, "BADSIG"),
    (17, "BADKEY"),
    (18, "BADTIME"),
    (19, "BADMODE"),
    (20, "BADNAME"),
    (21, "BADALG"),
    (22, "BADTRUNC"),
    (23, "BADCOOKIE"),
];

/// The name miekg/dns gives an rcode, if it has one. Callers choose the fallback, because
/// CoreDNS does not agree with itself: `prometheus` prints `RCODE<n>`, `log` and `forward`'s
/// metrics print the bare number ([`rcode_or_number`]).
pub fn rcode_name(rcode: u16) -> Option<&'static str> {
    RCODES
        .iter()
        .find(|(n, _)| *n == rcode)
        .map(|(_, name)| *name)
}

/// An rcode as CoreDNS's `log` replacer and `forward`'s metrics write it: the name, else the
/// bare number.
pub fn rcode_or_number(rcode: u16) -> Cow<'static, str> {
    match rcode_name(rcode) {
        Some(name) => name.into(),
        None => rcode.to_string().into(),
    }
}

/// miekg/dns's `StringToRcode` looked up as CoreDNS does (upper-cased first): every name of
/// [`rcode_name`] plus `NOTIMPL`, the old misspelling miekg still accepts.
pub fn rcode_from_name(text: &str) -> Option<u16> {
    if text.eq_ignore_ascii_case("NOTIMPL") {
        return Some(4);
    }
    RCODES
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(text))
        .map(|(n, _)| *n)
}

/// A query type as miekg/dns prints it: its mnemonic, or `TYPE<n>` when it has none.
pub fn type_name(t: RecordType) -> Cow<'static, str> {
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}").into(),
        known => <&'static str>::from(known).into(),
    }
}

/// miekg/dns's `ClassToString`. hickory has no CSNET variant, so class 2 is matched by number.
const CLASSES: &[(u16, &str)] = &[
    (1, "IN"),
    (2, "CS"),
    (3, "CH"),
    (4, "HS"),
    (254, "NONE"),
    (255, "ANY"),
];

/// A class as miekg/dns prints it: its mnemonic, or `CLASS<n>`.
pub fn class_name(c: DNSClass) -> Cow<'static, str> {
    let n = u16::from(c);
    match CLASSES.iter().find(|(v, _)| *v == n) {
        Some((_, name)) => (*name).into(),
        None => format!("CLASS{n}").into(),
    }
}

/// miekg/dns's `StringToClass`: exact, upper-case mnemonics only (callers upper-case first,
/// as CoreDNS does).
pub fn class_from_name(text: &str) -> Option<DNSClass> {
    CLASSES
        .iter()
        .find(|(_, name)| *name == text)
        .map(|(n, _)| DNSClass::from(*n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcode_names_round_trip() {
        for &(n, name) in RCODES {
            assert_eq!(rcode_name(n), Some(name));
            assert_eq!(rcode_from_name(name), Some(n));
            assert_eq!(rcode_from_name(&name.to_ascii_lowercase()), Some(n));
        }
        assert_eq!(rcode_name(12), None);
        assert_eq!(rcode_or_number(3), "NXDOMAIN");
        assert_eq!(rcode_or_number(12), "12");
        assert_eq!(rcode_from_name("notimpl"), Some(4));
        // BADVERS shares 16 with BADSIG and is not in miekg's table.
        assert_eq!(rcode_from_name("BADVERS"), None);
        assert_eq!(rcode_from_name("nope"), None);
    }

    #[test]
    fn class_names() {
        assert_eq!(class_name(DNSClass::IN), "IN");
        assert_eq!(class_name(DNSClass::from(2)), "CS");
        assert_eq!(class_name(DNSClass::from(42)), "CLASS42");
        assert_eq!(class_from_name("CH"), Some(DNSClass::CH));
        assert_eq!(class_from_name("CS"), Some(DNSClass::Unknown(2)));
        assert_eq!(class_from_name("*"), None);
        assert_eq!(class_from_name("in"), None);
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(RecordType::AAAA), "AAAA");
        assert_eq!(type_name(RecordType::Unknown(65280)), "TYPE65280");
    }
}

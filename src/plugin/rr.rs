//! Numbers of the DNS wire format that the byte-level readers (forward's reply check, cache's
//! layout, loadbalance's shuffle) share: the header's length, and the record types and class
//! they look for (RFC 1035 §3.2.2-3.2.4, RFC 3596, RFC 6891, RFC 4034, RFC 8945).

/// Octets of the message header; the question starts here.
pub const HEADER: usize = 12;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_RRSIG: u16 = 46;
pub const TYPE_TSIG: u16 = 250;

pub const CLASS_IN: u16 = 1;

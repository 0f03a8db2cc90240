//! [`Request`]: one query as the chain sees it, with the question and the client computed once
//! (CoreDNS's `request.Request`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};

/// The transport a query arrived on, named as CoreDNS's `log` and metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// The smallest UDP payload every DNS client accepts (RFC 1035 §4.2.1).
pub const MIN_UDP_SIZE: u16 = 512;

/// A query that has a single question: the server answers FORMERR to anything else before a
/// plugin sees it, so [`Request::query`] never fails.
#[derive(Clone, Debug)]
pub struct Request {
    pub msg: Message,
    pub src: SocketAddr,
    pub local: SocketAddr,
    pub proto: Proto,
    /// Size of the query on the wire, in bytes.
    pub wire_len: usize,
    /// The server block zone that this query was dispatched to (`example.org.`), and the
    /// server's address as CoreDNS labels it in metrics (`dns://:53`).
    pub zone: Arc<str>,
    pub server: Arc<str>,
    /// The question name in lower case with its trailing dot, as logs, metrics and most plugins
    /// compare it.
    name: String,
}

impl Request {
    /// Build a request from a parsed message that has exactly one question.
    pub fn new(
        msg: Message,
        src: SocketAddr,
        local: SocketAddr,
        proto: Proto,
        wire_len: usize,
    ) -> Option<Self> {
        if msg.queries.len() != 1 {
            return None;
        }
        let name = lowercase_name(&msg.queries[0].name);
        Some(Request {
            msg,
            src,
            local,
            proto,
            wire_len,
            zone: Arc::from("."),
            server: Arc::from(""),
            name,
        })
    }

    /// The same client and transport asking `msg` instead (for `rewrite`, `dns64`, ...).
    /// Returns `None` when `msg` does not carry exactly one question.
    pub fn with_message(&self, msg: Message) -> Option<Self> {
        let mut req = Request::new(msg, self.src, self.local, self.proto, self.wire_len)?;
        req.zone = self.zone.clone();
        req.server = self.server.clone();
        Some(req)
    }

    pub fn query(&self) -> &Query {
        &self.msg.queries[0]
    }

    /// The question name as the client wrote it.
    pub fn qname(&self) -> &Name {
        &self.query().name
    }

    /// The question name in lower case, fully qualified (`example.org.`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn qtype(&self) -> RecordType {
        self.query().query_type
    }

    pub fn qclass(&self) -> DNSClass {
        self.query().query_class
    }

    pub fn id(&self) -> u16 {
        self.msg.metadata.id
    }

    pub fn edns(&self) -> Option<&Edns> {
        self.msg.edns.as_ref()
    }

    /// The DNSSEC OK bit.
    pub fn do_bit(&self) -> bool {
        self.edns().is_some_and(|e| e.flags().dnssec_ok)
    }

    /// The largest reply the client accepts: 65535 over TCP, otherwise the EDNS0 buffer size,
    /// never less than 512 (CoreDNS's `request.Size`).
    pub fn size(&self) -> usize {
        if self.proto == Proto::Tcp {
            return u16::MAX as usize;
        }
        let advertised = self.edns().map_or(MIN_UDP_SIZE, |e| e.max_payload());
        advertised.max(MIN_UDP_SIZE) as usize
    }

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        match self.src.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        }
    }

    /// 1 for IPv4, 2 for IPv6, as CoreDNS's `family` label.
    pub fn family(&self) -> u8 {
        if self.ip().is_ipv4() { 1 } else { 2 }
    }

    /// A reply skeleton: same ID, opcode, RD and CD bits, and question (miekg/dns `SetReply`).
    pub fn reply(&self) -> Message {
        let mut m = Message::response(self.id(), self.msg.metadata.op_code);
        m.metadata.recursion_desired = self.msg.metadata.recursion_desired;
        m.metadata.checking_disabled = self.msg.metadata.checking_disabled;
        m.queries.push(self.query().clone());
        m
    }
}

/// `Name` in lower case with a trailing dot; the root is `.`.
pub fn lowercase_name(name: &Name) -> String {
    let mut s = name.to_ascii();
    s.make_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, edns: Option<u16>, proto: Proto) -> Request {
        let mut m = Message::query();
        m.queries
            .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.edns = Some(e);
        }
        let a: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        Request::new(m, a, a, proto, 40).unwrap()
    }

    #[test]
    fn name_is_lowercase_fqdn() {
        assert_eq!(req("ExAmple.ORG", None, Proto::Udp).name(), "example.org.");
        assert_eq!(req(".", None, Proto::Udp).name(), ".");
    }

    #[test]
    fn size_follows_edns_and_transport() {
        assert_eq!(req("a.", None, Proto::Udp).size(), 512);
        assert_eq!(req("a.", Some(100), Proto::Udp).size(), 512);
        assert_eq!(req("a.", Some(4096), Proto::Udp).size(), 4096);
        assert_eq!(req("a.", Some(4096), Proto::Tcp).size(), 65535);
    }
}

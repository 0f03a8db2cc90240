//! [`Response`]: the answer travelling back up the chain.
//!
//! It wraps a parsed [`Message`]; plugins read and change it through these methods so that a
//! pre-encoded form (a cache hit, an upstream reply passed through) can be added behind the same
//! interface without touching every plugin.
//!
//! The pre-encoded form ([`Response::from_wire`]) is what makes a cache hit cheap: the server
//! sends those bytes after patching the ID and adding the client's OPT record, with no parse and
//! no encode. A plugin on the way back that only looks at [`Response::rcode`] or
//! [`Response::plugin`] keeps it that way; [`Response::message`] parses the bytes once (and keeps
//! the wire form), [`Response::message_mut`] turns the answer into a parsed message for good.

use std::sync::OnceLock;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;

#[derive(Clone, Debug)]
pub struct Response {
    body: Body,
    /// Which plugin wrote the answer, for `coredns_dns_responses_total{plugin}`.
    pub plugin: &'static str,
    /// A UDP size below the one the client advertised, set on the way back by a plugin that
    /// lowered the query's EDNS0 size (`bufsize`): the server fits the answer to the smaller of
    /// the two, as CoreDNS's writer fits it to the request the plugins changed.
    pub max_udp_size: Option<u16>,
}

/// What the server sends: pre-encoded bytes or a message to encode.
pub enum Form {
    Wire(Vec<u8>),
    Message(Message),
}

#[derive(Clone, Debug)]
enum Body {
    /// Boxed, like the parsed copy below, so that a `Response` stays small: it is moved through
    /// every plugin on the way back.
    Parsed(Box<Message>),
    /// A complete DNS message without an OPT record. The header's ID is not meaningful (the
    /// server writes the query's); everything else is sent as is.
    Wire {
        bytes: Vec<u8>,
        parsed: OnceLock<Box<Message>>,
    },
}

impl Response {
    pub fn new(msg: Message, plugin: &'static str) -> Self {
        Response {
            body: Body::Parsed(Box::new(msg)),
            plugin,
            max_udp_size: None,
        }
    }

    /// An answer already encoded: a whole DNS message (header, question, sections) with no OPT
    /// record, as the server must send it apart from the ID and EDNS. The bytes must parse;
    /// plugins that produce them encode them with hickory first.
    pub fn from_wire(bytes: Vec<u8>, plugin: &'static str) -> Self {
        Response {
            body: Body::Wire {
                bytes,
                parsed: OnceLock::new(),
            },
            plugin,
            max_udp_size: None,
        }
    }

    pub fn message(&self) -> &Message {
        match &self.body {
            Body::Parsed(m) => m,
            Body::Wire { bytes, parsed } => {
                parsed.get_or_init(|| Box::new(parse_or_servfail(bytes)))
            }
        }
    }

    /// The message to change. A wire-form answer is parsed and loses its wire form, so the
    /// server encodes the changed message instead.
    pub fn message_mut(&mut self) -> &mut Message {
        if let Body::Wire { bytes, parsed } = &mut self.body {
            let m = parsed
                .take()
                .unwrap_or_else(|| Box::new(parse_or_servfail(bytes)));
            self.body = Body::Parsed(m);
        }
        match &mut self.body {
            Body::Parsed(m) => m,
            Body::Wire { .. } => unreachable!("converted above"),
        }
    }

    pub fn into_message(self) -> Message {
        match self.body {
            Body::Parsed(m) => *m,
            Body::Wire { bytes, parsed } => parsed
                .into_inner()
                .map_or_else(|| parse_or_servfail(&bytes), |m| *m),
        }
    }

    /// The wire form when the answer has one, otherwise the parsed message (for the server).
    pub fn into_form(self) -> Form {
        match self.body {
            Body::Wire { bytes, .. } => Form::Wire(bytes),
            Body::Parsed(m) => Form::Message(*m),
        }
    }

    /// The pre-encoded bytes when the answer is in wire form, else the answer itself.
    pub fn into_wire(self) -> Result<Vec<u8>, Response> {
        match self.body {
            Body::Wire { bytes, .. } => Ok(bytes),
            body => Err(Response { body, ..self }),
        }
    }

    /// The pre-encoded bytes, if this answer is in wire form.
    pub fn wire(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Wire { bytes, .. } => Some(bytes),
            Body::Parsed(_) => None,
        }
    }

    /// The pre-encoded bytes to change in place (a shuffle that keeps the message's length and
    /// meaning); any parsed copy made earlier is dropped, so it cannot go stale.
    pub fn wire_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.body {
            Body::Wire { bytes, parsed } => {
                parsed.take();
                Some(bytes)
            }
            Body::Parsed(_) => None,
        }
    }

    pub fn rcode(&self) -> ResponseCode {
        match &self.body {
            Body::Parsed(m) => m.metadata.response_code,
            // A wire-form answer carries no OPT record, so the rcode is the header's 4 bits.
            Body::Wire { bytes, .. } => match bytes.get(3) {
                Some(b) => ResponseCode::from(0, b & 0x0f),
                None => ResponseCode::ServFail,
            },
        }
    }
}

/// CoreDNS's `response.Type`: what kind of answer this is. `cache` decides by it where an answer
/// is cached and for how long; `log` filters on its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NoError,
    NameError,
    NoData,
    Delegation,
    ServerError,
    OtherError,
    Meta,
    Update,
}

impl Kind {
    /// Whether `cache` keeps this kind in its denial cache (SERVFAIL too, for `servfail`).
    pub fn is_denial(self) -> bool {
        matches!(self, Kind::NameError | Kind::NoData | Kind::ServerError)
    }

    /// Whether `cache` may keep this kind at all.
    pub fn cacheable(self) -> bool {
        !matches!(self, Kind::OtherError | Kind::Meta | Kind::Update)
    }

    /// CoreDNS's `response.Classify`.
    pub fn class(self) -> Class {
        match self {
            Kind::NoError | Kind::Delegation => Class::Success,
            Kind::NameError | Kind::NoData => Class::Denial,
            _ => Class::Error,
        }
    }
}

/// `response.Typify`. `expired_sig` is whether the answer carries an RRSIG out of its validity
/// period, which only counts when the client set DO.
pub fn typify(m: &Message, do_bit: bool, expired_sig: bool) -> Kind {
    let shape = Shape {
        op_code: m.metadata.op_code,
        qtype: m.queries.first().map(|q| q.query_type),
        rcode: m.metadata.response_code,
        answers: !m.answers.is_empty(),
        authority_soa: m
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        authority_ns: m
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::NS),
    };
    shape.typify(do_bit, expired_sig)
}

/// What [`typify`] looks at in an answer, so that an answer still in wire form can be typed
/// from a walk over its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub op_code: OpCode,
    /// The first question's type.
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
    /// The answer section is not empty.
    pub answers: bool,
    pub authority_soa: bool,
    pub authority_ns: bool,
}

impl Shape {
    pub fn typify(&self, do_bit: bool, expired_sig: bool) -> Kind {
        match self.op_code {
            OpCode::Update => return Kind::Update,
            OpCode::Notify => return Kind::Meta,
            _ => {}
        }
        if matches!(self.qtype, Some(RecordType::AXFR | RecordType::IXFR)) {
            return Kind::Meta;
        }
        if do_bit && expired_sig {
            return Kind::OtherError;
        }
        let rcode = self.rcode;
        if self.answers && rcode == ResponseCode::NoError {
            return Kind::NoError;
        }
        match rcode {
            ResponseCode::NoError if self.authority_soa => Kind::NoData,
            ResponseCode::NXDomain if self.authority_soa => Kind::NameError,
            ResponseCode::ServFail => Kind::ServerError,
            ResponseCode::NoError if self.authority_ns => Kind::Delegation,
            ResponseCode::NoError => Kind::NoError,
            _ => Kind::OtherError,
        }
    }
}

/// CoreDNS's `response.Class`, what `log`'s `class` filter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Success,
    Denial,
    Error,
}

/// Wire-form bytes come from our own encoder, so this only fails on a bug; the client then gets
/// a SERVFAIL rather than a crash.
fn parse_or_servfail(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|_| {
        let id = bytes
            .get(..2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let mut m = Message::response(id, OpCode::Query);
        m.metadata.response_code = ResponseCode::ServFail;
        m
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn wire_form_reads_and_converts() {
        let mut m = Message::response(7, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        m.queries.push(Query::query(
            Name::from_ascii("a.example.").unwrap(),
            RecordType::A,
        ));
        let wire = m.to_vec().unwrap();
        let mut r = Response::from_wire(wire.clone(), "cache");
        assert_eq!(r.rcode(), ResponseCode::NXDomain);
        assert_eq!(r.message().queries.len(), 1);
        assert_eq!(r.wire(), Some(wire.as_slice()));
        r.message_mut().metadata.response_code = ResponseCode::NoError;
        assert!(r.wire().is_none());
        assert_eq!(r.rcode(), ResponseCode::NoError);
        assert!(matches!(r.into_form(), Form::Message(_)));
    }
}

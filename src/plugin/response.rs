//! [`Response`]: the answer travelling back up the chain.
//!
//! It wraps a parsed [`Message`]; plugins read and change it through these methods so that a
//! pre-encoded form (a cache hit, an upstream reply passed through) can be added behind the same
//! interface without touching every plugin.

use hickory_proto::op::{Message, ResponseCode};

#[derive(Clone, Debug)]
pub struct Response {
    msg: Message,
    /// Which plugin wrote the answer, for `coredns_dns_responses_total{plugin}`.
    pub plugin: &'static str,
    /// A UDP size below the one the client advertised, set on the way back by a plugin that
    /// lowered the query's EDNS0 size (`bufsize`): the server fits the answer to the smaller of
    /// the two, as CoreDNS's writer fits it to the request the plugins changed.
    pub max_udp_size: Option<u16>,
}

impl Response {
    pub fn new(msg: Message, plugin: &'static str) -> Self {
        Response {
            msg,
            plugin,
            max_udp_size: None,
        }
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    pub fn message_mut(&mut self) -> &mut Message {
        &mut self.msg
    }

    pub fn into_message(self) -> Message {
        self.msg
    }

    pub fn rcode(&self) -> ResponseCode {
        self.msg.metadata.response_code
    }
}

//! Any datagram or TCP message must be answered, ignored or refused by the dispatcher, never
//! crash it: drive `prepare`, then `finish` with the outcomes a chain can produce.
#![no_main]

use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use libfuzzer_sys::fuzz_target;

use ferrodns::plugin::{Chain, Failure, Proto, Response};
use ferrodns::server::dispatch::{BlockServer, Prepared, ZoneTable, finish, prepare};

fuzz_target!(|data: &[u8]| {
    let mut table = ZoneTable::default();
    for (zone, chaos) in [(".", false), ("example.org.", true)] {
        table.insert(
            zone.to_string(),
            None,
            Arc::new(BlockServer {
                chain: Chain::default(),
                zone: Arc::from(zone),
                server: Arc::from("dns://:53"),
                allow_chaos: chaos,
                recorder: None,
            }),
        );
    }
    let addr = "127.0.0.1:53".parse().unwrap();
    for proto in [Proto::Udp, Proto::Tcp] {
        match prepare(&table, data, addr, addr, proto) {
            Prepared::Serve(_, req) => {
                // An answer built from the request itself, echoing whatever it carried.
                let mut m = req.reply();
                m.additionals.extend(req.msg().additionals.iter().cloned());
                m.answers.extend(req.msg().answers.iter().cloned());
                let bytes = finish(&req, Ok(Response::new(m, "fuzz")));
                assert!(bytes.len() <= req.size());
                let m = Message::from_vec(&bytes).expect("the answer parses");
                assert_eq!(m.metadata.id, req.id());
                let _ = finish(&req, Err(Failure::new(ResponseCode::ServFail)));
                assert!(finish(&req, Err(Failure::no_reply())).is_empty());
            }
            Prepared::Reply(bytes) => {
                // An error reply written from the raw header must still be a message.
                let m = Message::from_vec(&bytes).expect("an error reply parses");
                assert_eq!(m.metadata.message_type, MessageType::Response);
            }
            Prepared::Drop => {}
        }
    }
});

//! Any datagram or TCP message must be answered, ignored or refused by the dispatcher, never
//! crash it: drive `prepare`, then `finish` with the outcomes a chain can produce. The UDP
//! listener's way in, `prepare_in` into a request reused query after query, must come to the
//! same decision and the same request as `prepare` into a fresh one.
#![no_main]

use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use libfuzzer_sys::fuzz_target;

use ferrodns::plugin::{Chain, Failure, Proto, Response};
use ferrodns::server::dispatch::{
    BlockServer, Placed, Prepared, ZoneTable, finish, prepare, prepare_in,
};

thread_local! {
    /// The reused request, as a listener keeps one: it carries what earlier inputs left in it.
    static PARKED: std::cell::RefCell<Option<ferrodns::plugin::Request>> =
        const { std::cell::RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let mut table = ZoneTable::default();
    for (zone, chaos) in [(".", false), ("example.org.", true)] {
        table.insert(
            zone.to_string(),
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
        let fresh = prepare(&table, data, addr, addr, proto);
        PARKED.with(|p| {
            let mut p = p.borrow_mut();
            let req = p.get_or_insert_with(|| {
                let root = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
                match prepare(&table, &root, addr, addr, proto) {
                    Prepared::Serve(_, r) => r,
                    _ => unreachable!("the root query is served"),
                }
            });
            match (&fresh, prepare_in(&table, data, addr, addr, proto, req)) {
                (Prepared::Serve(block, r), Placed::Serve(b)) => {
                    assert!(Arc::ptr_eq(block, b));
                    assert_eq!(r.name(), req.name());
                    assert_eq!(r.qtype(), req.qtype());
                    assert_eq!(r.qclass(), req.qclass());
                    assert_eq!(r.id(), req.id());
                    assert_eq!(r.do_bit(), req.do_bit());
                    assert_eq!(r.size(), req.size());
                    assert_eq!(r.msg().to_vec().ok(), req.msg().to_vec().ok());
                }
                (Prepared::Reply(a), Placed::Reply(b)) => assert_eq!(a, &b),
                (Prepared::Drop, Placed::Drop) => {}
                _ => panic!("prepare and prepare_in decided differently"),
            }
        });
        match fresh {
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

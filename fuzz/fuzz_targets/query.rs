//! Any datagram must be answered, ignored or refused by the dispatcher, never crash it.
#![no_main]

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use libfuzzer_sys::fuzz_target;

use ferrodns::plugin::{Chain, Proto};
use ferrodns::server::dispatch::{BlockServer, Prepared, ZoneTable, prepare};

fuzz_target!(|data: &[u8]| {
    let mut table = ZoneTable::default();
    let block = Arc::new(BlockServer {
        chain: Chain::default(),
        zone: Arc::from("."),
        server: Arc::from("dns://:53"),
        allow_chaos: false,
    });
    table.insert(".".to_string(), None, block);
    let addr = "127.0.0.1:53".parse().unwrap();
    for proto in [Proto::Udp, Proto::Tcp] {
        if let Prepared::Serve(_, req) = prepare(&table, data, addr, addr, proto) {
            // Every error path that a plugin can produce ends in finish().
            let _ = ferrodns::server::dispatch::error_reply(&req, ResponseCode::ServFail);
        }
    }
});

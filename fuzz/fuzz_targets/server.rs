//! Any datagram or TCP message must be answered, ignored or refused by a server running real
//! plugins, never crash it: the bytes go through `prepare`, the chain of a server block built
//! from a Corefile (hosts, cache, acl, any, minimal, loadbalance, nsid, chaos, whoami, local,
//! bufsize, errors, prometheus) and `finish`, as a listener runs them.
#![no_main]

use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;

use ferrodns::corefile::parse_str_without_files;
use ferrodns::metrics::Metrics;
use ferrodns::plugin::Proto;
use ferrodns::plugin::setup::Shared;
use ferrodns::server::dispatch::{Prepared, ZoneTable, prepare, serve};

const COREFILE: &str = r#"
example.org 10.0.0.0/24 {
    errors
    prometheus 127.0.0.1:9153
    acl {
        block type HINFO
        filter type NULL
    }
    bufsize 1232
    any
    minimal
    nsid fuzz
    hosts /nonexistent/hosts {
        192.0.2.1 a.example.org www.example.org
        192.0.2.2 a.example.org
        2001:db8::1 a.example.org
        ::ffff:192.0.2.9 mapped.example.org
        10.0.0.1 ten.10.0.0.in-addr.arpa
        fallthrough
    }
    loadbalance round_robin
    cache 30 {
        prefetch 1 1m 10%
        serve_stale 1h
    }
    whoami
}
. {
    local
    chaos ferrodns-fuzz dev@example.org
    whoami
}
"#;

struct Fixture {
    rt: tokio::runtime::Runtime,
    tables: Vec<Arc<ZoneTable>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let corefile = parse_str_without_files("Corefile", COREFILE).expect("fixed Corefile");
        let shared = Shared::new(Arc::new(Metrics::new()));
        let instance = {
            let _guard = rt.enter();
            ferrodns::server::build(&corefile, 53, &shared).expect("fixed Corefile builds")
        };
        let tables = instance.listeners.iter().map(|l| l.table.clone()).collect();
        Fixture { rt, tables }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let src = "10.0.0.7:5353".parse().unwrap();
    let local = "127.0.0.1:53".parse().unwrap();
    for table in &f.tables {
        for proto in [Proto::Udp, Proto::Tcp] {
            match prepare(table, data, src, local, proto) {
                Prepared::Serve(block, req) => {
                    let limit = req.size();
                    let (id, qtype, qname) = (req.id(), req.qtype(), req.qname().clone());
                    let bytes = f.rt.block_on(serve(block, req));
                    if !bytes.is_empty() {
                        // The client must get a DNS message for its query.
                        let m = Message::from_vec(&bytes).expect("the server's reply parses");
                        assert_eq!(m.metadata.id, id);
                        assert_eq!(m.metadata.message_type, MessageType::Response);
                        if let [q] = m.queries.as_slice() {
                            assert_eq!(q.query_type, qtype);
                            assert!(q.name.eq_case(&qname), "{} != {qname}", q.name);
                        }
                    }
                    if proto == Proto::Udp {
                        assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
                    }
                }
                Prepared::Reply(bytes) => {
                    // An error reply written from the raw header must still be a message.
                    let m = Message::from_vec(&bytes).expect("an error reply parses");
                    assert_eq!(m.metadata.message_type, MessageType::Response);
                }
                Prepared::Drop => {}
            }
        }
    }
});

//! `whoami`: answers every query with the client's address and port. See README.md.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record};

use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Response, Served};

pub struct Whoami;

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    if !d.args.is_empty() || !d.block.is_empty() {
        return Err(d.arg_err());
    }
    Ok(Some(Arc::new(Whoami)))
}

impl Plugin for Whoami {
    fn name(&self) -> &'static str {
        "whoami"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let mut m = req.reply();
        m.metadata.authoritative = true;
        let qname = req.qname().clone();
        let ip = req.ip();
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        m.additionals
            .push(Record::from_rdata(qname.clone(), 0, rdata));
        // `_udp`/`_tcp` followed by the query name, as CoreDNS writes it.
        let srv_name = Name::from_ascii(format!("_{}.{}", req.proto.as_str(), req.name()))
            .unwrap_or_else(|_| qname.clone());
        let srv = SRV::new(0, 0, req.src.port(), qname);
        m.additionals
            .push(Record::from_rdata(srv_name, 0, RData::SRV(srv)));
        Served::Ready(Ok(Response::new(m, "whoami")))
    }
}

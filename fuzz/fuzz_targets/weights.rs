//! Any weight file (`loadbalance weighted FILE`) must load or be refused with an error, and a
//! loaded one must answer every weight question with a weight of 1 to 255.
#![no_main]

use std::net::IpAddr;

use hickory_proto::rr::Name;
use libfuzzer_sys::fuzz_target;

use ferrodns::plugins::loadbalance::weighted::Weights;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(weights) = Weights::parse(&text, "weights") else {
        return;
    };
    let mut names = vec![Name::root()];
    let mut ips: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
    for word in text.split_whitespace().take(32) {
        if let Ok(ip) = word.parse() {
            ips.push(ip);
        } else if let Ok(n) = Name::from_ascii(word) {
            names.push(n);
        }
    }
    for n in &names {
        for ip in &ips {
            assert!(weights.weight(n, *ip) >= 1);
        }
    }
});

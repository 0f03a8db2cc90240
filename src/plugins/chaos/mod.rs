//! `chaos`: answers the class CH TXT questions that identify a server (`version.bind`,
//! `authors.bind`, `hostname.bind` and their RFC 4892 twins). See README.md.

use std::sync::Arc;

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use rand::seq::SliceRandom;

use crate::corefile::Directive;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Response, Served};

/// A TXT character-string holds at most 255 octets (RFC 1035 §3.3).
const MAX_STRING: usize = 255;

pub struct Chaos {
    version: String,
    authors: Vec<String>,
    hostname: String,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    // CoreDNS reads the first `chaos` line of a block only.
    let d = c.first()?;
    if let Some(line) = d.block.first() {
        return Err(Directive::unknown_property(line));
    }
    let args = d.arg_strs();
    let (version, authors) = match args.as_slice() {
        [] => (default_version(), default_authors()),
        [version] => (trim(version), default_authors()),
        [version, authors @ ..] => {
            let mut list: Vec<String> = authors.iter().map(|a| trim(a)).collect();
            list.sort();
            list.dedup();
            // CoreDNS keeps an over-long explicit version as is and then fails to write the
            // answer; ferrodns cuts it to what a TXT string can hold.
            (trim(version), list)
        }
    };
    // The server lets class CH queries reach this block's chain only when chaos is loaded.
    c.block.allow_chaos = true;
    Ok(Some(Arc::new(Chaos {
        version,
        authors,
        hostname: trim(&hostname()),
    })))
}

/// `ferrodns-VERSION`, as CoreDNS answers `CoreDNS-VERSION`.
fn default_version() -> String {
    format!("ferrodns-{}", crate::VERSION)
}

/// CoreDNS lists its own maintainers; ferrodns names itself rather than credit people who did
/// not write it.
fn default_authors() -> Vec<String> {
    vec!["ferrodns".to_string()]
}

fn trim(s: &str) -> String {
    if s.len() <= MAX_STRING {
        return s.to_string();
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The host's name as the kernel reports it (Go's `os.Hostname`), `localhost` when unknown.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname NUL-terminates on success
    // when the name fits, and we stop at the first NUL or the buffer's end either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

impl Plugin for Chaos {
    fn name(&self) -> &'static str {
        "chaos"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        if req.qclass() != DNSClass::CH || req.qtype() != RecordType::TXT {
            return next.serve(req);
        }
        let texts: Vec<&str> = match req.name() {
            "authors.bind." => {
                // CoreDNS lists the authors in a new random order on every answer.
                let mut list: Vec<&str> = self.authors.iter().map(String::as_str).collect();
                list.shuffle(&mut rand::rng());
                list
            }
            "version.bind." | "version.server." => vec![self.version.as_str()],
            "hostname.bind." | "id.server." => vec![self.hostname.as_str()],
            _ => return next.serve(req),
        };
        let mut m = req.reply();
        for text in texts {
            let mut rr = Record::from_rdata(
                req.qname().clone(),
                0,
                RData::TXT(TXT::new(vec![text.to_string()])),
            );
            rr.dns_class = DNSClass::CH;
            m.answers.push(rr);
        }
        Served::Ready(Ok(Response::new(m, "chaos")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit::{self, Answer, ask, message, run, show};
    use hickory_proto::op::ResponseCode;

    fn chaos(corefile_line: &str) -> Arc<dyn Plugin> {
        let corefile = format!(". {{\n {corefile_line}\n}}\n");
        let built = testkit::setup(setup, "chaos", &corefile).expect("setup");
        assert!(built.block.allow_chaos);
        built.handler.expect("handler")
    }

    #[test]
    fn answers_identity_names_in_class_ch() {
        let host = trim(&hostname());
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Answer::new(ResponseCode::NXDomain))];
        let plugin = chaos("chaos MyDNS-1.0 alice");
        let cases: Vec<(testkit::Ask, ResponseCode, Vec<String>)> = vec![
            (
                ask("version.bind.", RecordType::TXT).class(DNSClass::CH),
                ResponseCode::NoError,
                vec!["version.bind. 0 CH TXT MyDNS-1.0".into()],
            ),
            (
                ask("Version.Server.", RecordType::TXT).class(DNSClass::CH),
                ResponseCode::NoError,
                vec!["Version.Server. 0 CH TXT MyDNS-1.0".into()],
            ),
            (
                ask("authors.bind.", RecordType::TXT)
                    .class(DNSClass::CH)
                    .tcp(),
                ResponseCode::NoError,
                vec!["authors.bind. 0 CH TXT alice".into()],
            ),
            (
                ask("hostname.bind.", RecordType::TXT).class(DNSClass::CH),
                ResponseCode::NoError,
                vec![format!("hostname.bind. 0 CH TXT {host}")],
            ),
            (
                ask("id.server.", RecordType::TXT).class(DNSClass::CH),
                ResponseCode::NoError,
                vec![format!("id.server. 0 CH TXT {host}")],
            ),
            // Other names, other types and class IN go on down the chain.
            (
                ask("example.bind.", RecordType::TXT).class(DNSClass::CH),
                ResponseCode::NXDomain,
                vec![],
            ),
            (
                ask("version.bind.", RecordType::A).class(DNSClass::CH),
                ResponseCode::NXDomain,
                vec![],
            ),
            (
                ask("version.bind.", RecordType::TXT),
                ResponseCode::NXDomain,
                vec![],
            ),
        ];
        for (q, rcode, answer) in cases {
            let req = q.request();
            let m = message(run(plugin.as_ref(), &req, &rest));
            assert_eq!(m.metadata.response_code, rcode, "{}", req.name());
            assert_eq!(show(&m.answers), answer, "{}", req.name());
            assert!(!m.metadata.authoritative);
        }
    }

    #[test]
    fn version_and_authors_from_arguments() {
        let many = "x".repeat(300);
        for (line, version, authors) in [
            ("chaos", default_version(), default_authors()),
            ("chaos v9", "v9".to_string(), default_authors()),
            (
                "chaos v9 zed amy zed",
                "v9".to_string(),
                vec!["amy".to_string(), "zed".to_string()],
            ),
            (
                &*format!("chaos {many}"),
                "x".repeat(255),
                default_authors(),
            ),
        ] {
            let plugin = chaos(line);
            let req = ask("version.bind.", RecordType::TXT)
                .class(DNSClass::CH)
                .request();
            let m = message(run(plugin.as_ref(), &req, &[]));
            assert_eq!(
                show(&m.answers),
                vec![format!("version.bind. 0 CH TXT {version}")],
                "{line}"
            );
            let req = ask("authors.bind.", RecordType::TXT)
                .class(DNSClass::CH)
                .request();
            let m = message(run(plugin.as_ref(), &req, &[]));
            let mut got: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
            got.sort();
            assert_eq!(got, authors, "{line}");
        }
    }

    #[test]
    fn only_a_block_is_an_error() {
        let got = testkit::setup(setup, "chaos", ". {\n chaos {\n  foo\n }\n}\n").map(|_| ());
        assert_eq!(
            got,
            Err("plugin/chaos: Corefile:3 - Error during parsing: unknown property 'foo'".into())
        );
    }
}

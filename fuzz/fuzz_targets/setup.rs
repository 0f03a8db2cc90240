//! Any Corefile that parses must be built into servers or refused with an error by the plugins'
//! setup, never crash the process: a broken Corefile given to a running server (reload) must
//! leave it serving.
#![no_main]

use std::sync::{Arc, Once};

use libfuzzer_sys::fuzz_target;

use ferrodns::corefile::parse_str_without_files;
use ferrodns::metrics::Metrics;
use ferrodns::plugin::setup::Shared;

fuzz_target!(|data: &[u8]| {
    // Plugins read the files their options name; keep the fuzzer to an empty directory, away
    // from device files (`hosts /dev/zero` would read forever, which is the operator's choice,
    // not a parser bug).
    static CD: Once = Once::new();
    CD.call_once(|| {
        let dir = std::env::temp_dir().join(format!("ferrodns-fuzz-setup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::env::set_current_dir(&dir).expect("chdir");
    });
    let text = String::from_utf8_lossy(data);
    if ["/dev", "/proc", "/sys", "..", "{$", "{%"]
        .iter()
        .any(|s| text.contains(s))
    {
        return;
    }
    let Ok(corefile) = parse_str_without_files("Corefile", &text) else {
        return;
    };
    // Setup may spawn background tasks (reload loops, probes); a runtime per input, dropped at
    // the end, cancels them so inputs stay independent.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let shared = Shared::new(Arc::new(Metrics::new()));
    if let Err(e) = ferrodns::server::build(&corefile, 53, &shared) {
        let _ = e.to_string();
    }
});

//! Any text given as a Corefile must parse or fail with an error, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ferrodns::corefile::parse_str("fuzz", text, std::path::Path::new("/nonexistent"));
        for word in text.split_whitespace().take(4) {
            let _ = ferrodns::corefile::parse_key(word);
        }
    }
});

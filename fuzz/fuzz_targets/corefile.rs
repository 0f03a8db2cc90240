//! Any text given as a Corefile must parse or fail with an error, never panic or hang; and every
//! key of a parsed block, and every word, must be accepted or refused by the key parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Without file access: an input such as `import /dev/zero` must not reach the host.
    if let Ok(corefile) = ferrodns::corefile::parse_str_without_files("fuzz", &text) {
        for block in &corefile.blocks {
            for key in &block.keys {
                if let Ok(keys) = ferrodns::corefile::parse_key(&key.text) {
                    assert!(!keys.is_empty());
                    for k in keys {
                        assert!(k.zone.ends_with('.'), "{k:?}");
                    }
                }
            }
            walk(&block.directives, 0);
        }
    }
    for word in text.split_whitespace().take(8) {
        let _ = ferrodns::corefile::parse_key(word);
    }
});

fn walk(lines: &[ferrodns::corefile::Directive], depth: usize) {
    assert!(depth <= 64);
    for d in lines {
        let _ = d.arg_err().to_string();
        walk(&d.block, depth + 1);
    }
}

//! `root`: the directory that relative file names in the server block are read from. It has no
//! handler: it only sets [`BlockConfig::root`](crate::plugin::setup::BlockConfig). See README.md.

use std::io::ErrorKind;
use std::path::PathBuf;

use crate::plugin::setup::{Setup, SetupResult};

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    // Every `root` line is read and the last one wins, as in CoreDNS. Words after the path are
    // ignored there too; ferrodns says so instead of staying silent.
    let mut root = None;
    for d in &c.directives {
        if !d.block.is_empty() {
            return Err(d.arg_err());
        }
        let Some(path) = d.args.first() else {
            return Err(d.arg_err());
        };
        if d.args.len() > 1 {
            crate::warning!(
                "plugin/root: ignoring everything after the path '{}' on {}",
                path.text,
                d.loc
            );
        }
        root = Some((d, PathBuf::from(&path.text)));
    }
    let Some((d, root)) = root else {
        return c.once().map(|_| None);
    };
    match std::fs::metadata(&root) {
        Ok(_) => {}
        // The directory may be created later (a volume mounted after start): allowed, but said.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            crate::warning!("plugin/root: Root path does not exist: {}", root.display());
        }
        Err(e) => {
            return Err(d.err(format!(
                "unable to access root path '{}': stat {}: {}",
                root.display(),
                root.display(),
                go_error_text(&e)
            )));
        }
    }
    c.block.root = root;
    Ok(None)
}

/// An OS error as Go prints it (`permission denied`), without Rust's ` (os error 13)`.
fn go_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit;

    #[test]
    fn sets_the_block_root() {
        let tmp = std::env::temp_dir();
        let missing = tmp.join("ferrodns-root-test-surely-missing");
        let file = tmp.join(format!("ferrodns-root-test-file-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let below_file = file.join("sub");
        for (corefile, want) in [
            (format!(". {{\n root {}\n}}\n", tmp.display()), Ok(tmp.clone())),
            // Missing: accepted with a warning.
            (format!(". {{\n root {}\n}}\n", missing.display()), Ok(missing.clone())),
            // Relative paths stay relative to the working directory.
            (". {\n root zones\n}\n".to_string(), Ok(PathBuf::from("zones"))),
            // The last line wins.
            (
                format!(". {{\n root /nonexistent-a\n root {}\n}}\n", tmp.display()),
                Ok(tmp.clone()),
            ),
            (
                ". {\n root\n}\n".to_string(),
                Err("plugin/root: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'root'".to_string()),
            ),
            (
                ". {\n root {\n  /tmp\n }\n}\n".to_string(),
                Err("plugin/root: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'root'".to_string()),
            ),
            (
                format!(". {{\n root {}\n}}\n", below_file.display()),
                Err(format!(
                    "plugin/root: Corefile:2 - Error during parsing: unable to access root path '{0}': stat {0}: not a directory",
                    below_file.display()
                )),
            ),
        ] {
            let got = testkit::setup(setup, "root", &corefile).map(|b| {
                assert!(b.handler.is_none());
                b.block.root
            });
            assert_eq!(got, want, "{corefile}");
        }
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn relative_files_resolve_against_root() {
        let built = testkit::setup(setup, "root", ". {\n root /srv/zones\n}\n").unwrap();
        assert_eq!(
            built.block.root.join("db.example.org"),
            PathBuf::from("/srv/zones/db.example.org")
        );
    }
}

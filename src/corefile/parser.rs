// temporary stand-in until the full parser lands
use super::*;
use std::path::Path;
use std::sync::Arc;
pub fn parse_file(path: &Path) -> Result<Corefile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error {
        loc: None,
        msg: e.to_string(),
    })?;
    let mut c = parse_str(&path.to_string_lossy(), &text, Path::new("."))?;
    c.files.push(path.to_path_buf());
    Ok(c)
}
pub fn parse_str(file: &str, input: &str, _base: &Path) -> Result<Corefile, Error> {
    let file: Arc<str> = Arc::from(file);
    let mut blocks = Vec::new();
    let mut cur: Option<ServerBlock> = None;
    let mut nested: Option<Directive> = None;
    for (i, line) in input.lines().enumerate() {
        let loc = Loc {
            file: file.clone(),
            line: i + 1,
        };
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if words.is_empty() {
            continue;
        }
        let tok = |w: &str| Token {
            text: w.to_string(),
            loc: loc.clone(),
            quoted: false,
        };
        if cur.is_none() {
            let keys = words
                .iter()
                .filter(|w| **w != "{")
                .map(|w| tok(w.trim_end_matches(',')))
                .collect();
            cur = Some(ServerBlock {
                keys,
                directives: vec![],
                loc: loc.clone(),
            });
            continue;
        }
        if words == ["}"] {
            if let Some(d) = nested.take() {
                cur.as_mut().unwrap().directives.push(d);
            } else {
                blocks.push(cur.take().unwrap());
            }
            continue;
        }
        let opens = words.last() == Some(&"{");
        let ws: Vec<&str> = if opens {
            words[..words.len() - 1].to_vec()
        } else {
            words.clone()
        };
        let d = Directive {
            name: ws[0].to_string(),
            loc: loc.clone(),
            args: ws[1..].iter().map(|w| tok(w)).collect(),
            block: vec![],
        };
        if let Some(n) = nested.as_mut() {
            n.block.push(d);
        } else if opens {
            nested = Some(d);
        } else {
            cur.as_mut().unwrap().directives.push(d);
        }
    }
    if let Some(c) = cur {
        blocks.push(c);
    }
    Ok(Corefile {
        blocks,
        files: vec![],
    })
}

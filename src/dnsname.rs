//! Small operations on domain names written as text, as the Corefile and plugins use them.

/// Lower case, with a trailing dot: `Example.ORG` becomes `example.org.`.
pub fn fqdn_lower(name: &str) -> String {
    let mut s = name.to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// Whether `name` equals `zone` or lies below it. Both must be lowercase FQDNs.
pub fn is_subdomain(name: &str, zone: &str) -> bool {
    if zone == "." {
        return true;
    }
    match name.len().checked_sub(zone.len()) {
        Some(0) => name == zone,
        Some(n) => name.ends_with(zone) && name.as_bytes()[n - 1] == b'.',
        None => false,
    }
}

/// The longest of `zones` that contains `name` (CoreDNS's `plugin.Zones.Matches`).
pub fn longest_match<'z, S: AsRef<str>>(zones: &'z [S], name: &str) -> Option<&'z str> {
    zones
        .iter()
        .map(|z| z.as_ref())
        .filter(|z| is_subdomain(name, z))
        .max_by_key(|z| z.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for (name, zone, want) in [
            ("example.org.", "example.org.", true),
            ("a.example.org.", "example.org.", true),
            ("aexample.org.", "example.org.", false),
            ("org.", "example.org.", false),
            ("anything.", ".", true),
        ] {
            assert_eq!(is_subdomain(name, zone), want, "{name} in {zone}");
        }
        assert_eq!(
            longest_match(&[".", "org.", "example.org."], "a.example.org."),
            Some("example.org.")
        );
        assert_eq!(longest_match(&["net."], "a.example.org."), None);
    }
}

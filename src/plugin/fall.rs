//! `fallthrough [ZONES...]`: which names a plugin passes to the next one instead of answering
//! NXDOMAIN itself (CoreDNS's `plugin/pkg/fall`).

use crate::corefile::Directive;
use crate::dnsname::{fqdn_lower, is_subdomain};

/// The zones for which a plugin falls through. Empty: never.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fall {
    zones: Vec<String>,
}

impl Fall {
    /// Fall through for every name (`fallthrough` with no zones).
    pub fn root() -> Self {
        Fall {
            zones: vec![".".into()],
        }
    }

    /// From the words after `fallthrough`: none means every zone.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Self {
        if args.is_empty() {
            return Fall::root();
        }
        Fall {
            zones: args.iter().map(|a| fqdn_lower(a.as_ref())).collect(),
        }
    }

    /// From a `fallthrough ...` line inside a plugin's block.
    pub fn from_directive(d: &Directive) -> Self {
        Fall::from_args(&d.arg_strs())
    }

    /// Whether `name` (a lowercase FQDN) should go to the next plugin.
    pub fn through(&self, name: &str) -> bool {
        self.zones.iter().any(|z| is_subdomain(name, z))
    }

    pub fn is_set(&self) -> bool {
        !self.zones.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallthrough_zones() {
        assert!(!Fall::default().through("a.example.org."));
        assert!(Fall::from_args::<&str>(&[]).through("anything."));
        let f = Fall::from_args(&["Example.org"]);
        assert!(f.through("a.example.org."));
        assert!(!f.through("example.net."));
    }
}

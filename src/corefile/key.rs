// temporary stand-in until the full key parser lands
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Dns,
    Tls,
    Https,
    Grpc,
    Quic,
    Https3,
}
impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Dns => 53,
            Scheme::Tls | Scheme::Quic => 853,
            _ => 443,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Dns => "dns",
            Scheme::Tls => "tls",
            Scheme::Https => "https",
            Scheme::Grpc => "grpc",
            Scheme::Quic => "quic",
            Scheme::Https3 => "https3",
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    pub scheme: Scheme,
    pub zone: String,
    pub port: Option<u16>,
    pub network: Option<(std::net::IpAddr, u8)>,
    pub original: String,
}
pub fn parse_key(key: &str) -> Result<Vec<ServerKey>, String> {
    let k = key.strip_prefix("dns://").unwrap_or(key);
    let (zone, port) = match k.rsplit_once(':') {
        Some((z, p)) => (
            z,
            Some(p.parse::<u16>().map_err(|_| format!("bad port {p}"))?),
        ),
        None => (k, None),
    };
    Ok(vec![ServerKey {
        scheme: Scheme::Dns,
        zone: crate::dnsname::fqdn_lower(zone),
        port,
        network: None,
        original: key.to_string(),
    }])
}

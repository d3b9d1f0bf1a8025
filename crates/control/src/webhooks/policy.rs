//! Where outbound webhooks may go (no SSRF): a public address, or one the operator allowed.
//! Private (RFC 1918, unique-local, CGNAT), loopback, link-local, unspecified, multicast,
//! broadcast, documentation and reserved addresses are refused unless an allow-list entry
//! (`baton serve --webhook-allow 127.0.0.0/8`) contains them; cloud metadata addresses
//! (169.254.169.254, fd00:ec2::254, 100.100.100.200, 168.63.129.16) only when an entry names
//! exactly that address. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
//! The delivery worker checks every address a name resolves to, at delivery time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("'{s}' is not an address block ({why}); write e.g. 127.0.0.0/8 or ::1/128")
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix length must be 0 to {max}")))?,
            None => max,
        };
        Ok(Self { net, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let ((net, width), (addr, w2)) = (bits(self.net), bits(ip));
        if width != w2 {
            return false;
        }
        let host_bits = u32::from(width - self.prefix);
        let mask = if host_bits >= 128 {
            0
        } else {
            !0u128 << host_bits
        };
        (net & mask) == (addr & mask)
    }

    /// Whether this block is exactly one address.
    fn is_single(&self, ip: IpAddr) -> bool {
        let (_, width) = bits(self.net);
        self.prefix == width && self.net == canonical(ip)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

const METADATA: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// What kind of non-public address `ip` is (`None`: public).
fn special(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v) => {
            let o = v.octets();
            Some(match o {
                [127, ..] => "loopback",
                [10, ..] | [192, 168, ..] => "private",
                [172, b, ..] if (16..32).contains(&b) => "private",
                [100, b, ..] if (64..128).contains(&b) => "shared (carrier-grade NAT)",
                [169, 254, ..] => "link-local",
                [0, ..] => "unspecified (\"this network\")",
                [255, 255, 255, 255] => "broadcast",
                [a, ..] if (224..240).contains(&a) => "multicast",
                [a, ..] if a >= 240 => "reserved",
                [192, 0, 0, _] => "IETF protocol assignments",
                [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
                [198, b, ..] if b == 18 || b == 19 => "benchmarking",
                _ => return None,
            })
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            Some(if v.is_loopback() {
                "loopback"
            } else if v.is_unspecified() {
                "unspecified"
            } else if s[0] & 0xfe00 == 0xfc00 {
                "private (unique local)"
            } else if s[0] & 0xffc0 == 0xfe80 {
                "link-local"
            } else if s[0] & 0xff00 == 0xff00 {
                "multicast"
            } else if s[0] == 0x2001 && s[1] == 0xdb8 {
                "documentation"
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                "NAT64 (it reaches IPv4 addresses through a gateway)"
            } else {
                return None;
            })
        }
    }
}

/// The allow-list outbound webhooks are checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// Public addresses, and those in `allow`.
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    pub fn allowed_blocks(&self) -> &[Cidr] {
        &self.allow
    }

    /// `Ok` when a webhook may be sent to `ip`; otherwise why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if METADATA.contains(&canonical(ip)) {
            if self.allow.iter().any(|c| c.is_single(ip)) {
                return Ok(());
            }
            return Err(format!(
                "{ip} is a cloud metadata address: refused unless the server allows exactly that address (--webhook-allow {ip})"
            ));
        }
        match special(ip) {
            None => Ok(()),
            Some(_) if self.allow.iter().any(|c| c.contains(ip)) => Ok(()),
            Some(kind) => Err(format!(
                "{ip} is a {kind} address: refused unless the server allows it (baton serve --webhook-allow)"
            )),
        }
    }

    /// Checks a URL's host as written: a literal address, or a `localhost` name (which are
    /// loopback whatever DNS says). Other names are checked when they are resolved.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = h.parse::<IpAddr>() {
            return self.check(ip);
        }
        let lower = h.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return self
                .check(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .map_err(|_| format!("{host} names this machine (loopback): refused unless the server allows 127.0.0.0/8 (baton serve --webhook-allow)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_what_is_not_public_unless_allowed() {
        let deny = AddressPolicy::default();
        for a in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "198.18.0.1",
        ] {
            assert!(deny.check(ip(a)).is_err(), "{a} should be refused");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(deny.check(ip(a)).is_ok(), "{a} is public");
        }
        let lo = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        assert!(lo.check(ip("127.0.0.1")).is_ok());
        assert!(lo.check(ip("127.9.9.9")).is_ok());
        assert!(lo.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(lo.check(ip("::1")).is_ok());
        assert!(lo.check(ip("10.0.0.1")).is_err());
        let e = deny.check(ip("10.0.0.1")).unwrap_err();
        assert!(
            e.contains("private") && e.contains("--webhook-allow"),
            "{e}"
        );
    }

    #[test]
    fn metadata_needs_its_exact_address() {
        let wide = AddressPolicy::new(vec!["169.254.0.0/16".parse().unwrap()]);
        assert!(wide.check(ip("169.254.1.1")).is_ok());
        let e = wide.check(ip("169.254.169.254")).unwrap_err();
        assert!(e.contains("metadata"), "{e}");
        let exact = AddressPolicy::new(vec!["169.254.169.254".parse().unwrap()]);
        assert!(exact.check(ip("169.254.169.254")).is_ok());
    }

    #[test]
    fn hosts_as_written() {
        let deny = AddressPolicy::default();
        for h in [
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "[::1]",
            "10.0.0.1",
            "169.254.169.254",
        ] {
            assert!(deny.check_host(h).is_err(), "{h}");
        }
        assert!(deny.check_host("example.com").is_ok());
        let lo = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(lo.check_host("localhost").is_ok());
        for bad in ["10.0.0.0/33", "nope", "::1/129", "1.2.3.4/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains(ip("10.1.1.1"))
        );
    }
}

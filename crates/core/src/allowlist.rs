//! Network allow lists: the rule model and every decision the host-side proxy makes.
//!
//! Runs in: the client (the planner parses the rules; the proxy asks them).
//!
//! Pure code: no DNS, no sockets. The proxy asks three questions in order: may this *name*
//! be reached ([`AllowList::check_name`]), may this *IP literal* be reached
//! ([`AllowList::check_ip`]), and may a permitted name's *resolved address* be used
//! ([`AllowList::check_resolved`]). The last one is what stops DNS rebinding: an allowed name
//! whose DNS answer points at loopback, a private range, the cloud metadata services or the
//! host's own addresses is refused unless the user named that address or range. Deny beats
//! allow; no matching rule means denied.
//!
//! Every address is judged as the one the kernel would really connect to: IPv4-mapped IPv6
//! is its IPv4 address, and an unspecified destination (`0.0.0.0`, `::`) is loopback, because
//! Linux routes a connection to "any address" to the local host. [`destination`] gives that
//! address, and the proxy connects to exactly what was judged.
//!
//! Long because every decision the proxy makes lives here, so that a reader sees all
//! of them at once; the tests beside it, about as long as the code, try each rule against
//! hostile spellings of names and addresses.

use crate::CorralError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The parsed `network: { allow, deny, hosts }` of a policy.
///
/// Serialised form: rules as the text the user wrote, `hosts` as lists of addresses keyed by
/// the normalised name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowList {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// One allow or deny entry: a destination pattern and an optional port.
///
/// Serialised as what it was read as (`{ "rule": "[::1]:5432", "matches": "the address ::1",
/// "port": 5432 }`), so `plan` shows how each entry was understood; read back from that or
/// from the plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    text: String,
    target: Target,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Exact, normalised domain name.
    Name(String),
    /// `*.suffix`: strict subdomains of `suffix`, at any depth.
    Wildcard(String),
    /// An address or CIDR block (a single address is a full-length prefix).
    Net { addr: IpAddr, prefix: u8 },
}

/// A destination as a client named it: an IP literal or a validated, normalised name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum Verdict {
    /// `rule` is the text of the rule that admitted the destination.
    Allow { rule: String },
    /// `rule` is the deny rule that matched, if one did; `reason` says why in words.
    Deny { rule: Option<String>, reason: String },
}

/// One refused connection, for `RunResult.violations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The host name or IP address the sandboxed program asked for.
    pub destination: String,
    pub port: u16,
    pub rule: Option<String>,
    pub reason: String,
    /// `"http"` (plain forwarding), `"connect"` (HTTP CONNECT) or `"socks5"`; `"*"` for a
    /// refusal that is not about one destination (too many connections, the list's end).
    pub protocol: String,
    /// How many times this same refusal happened: repeats are counted, not listed again.
    #[serde(default = "one")]
    pub count: u64,
}

fn one() -> u64 {
    1
}

/// `rule` of an [`Verdict::Allow`] for a resolved address that no IP rule names: the name
/// was admitted by its own rule before resolution.
pub const RESOLVED_ADDRESS: &str = "(address of an allowed name)";

const NOT_ALLOWED: &str = "not in the allow list";
const DENIED: &str = "matches a deny rule";

impl AllowList {
    /// Parses and validates the policy's lists; errors name the entry
    /// (`network.allow[2]`, `network.deny[0]`, `network.hosts.<name>`).
    pub fn parse(
        allow: &[String],
        deny: &[String],
        hosts: &BTreeMap<String, String>,
    ) -> Result<AllowList, CorralError> {
        let list = |entries: &[String], field: &str| -> Result<Vec<Rule>, CorralError> {
            entries
                .iter()
                .enumerate()
                .map(|(i, text)| Rule::parse(text).map_err(|e| CorralError::policy(format!("{field}[{i}]"), e)))
                .collect()
        };
        let allow = list(allow, "network.allow")?;
        let deny = list(deny, "network.deny")?;
        let mut pins = BTreeMap::new();
        for (name, addrs) in hosts {
            let field = format!("network.hosts.{name}");
            let key = parse_pin_name(name).map_err(|e| CorralError::policy(&field, e))?;
            let ips = parse_pin_addrs(addrs).map_err(|e| CorralError::policy(&field, e))?;
            if pins.insert(key.clone(), ips).is_some() {
                return Err(CorralError::policy(
                    field,
                    format!("`{key}` is pinned twice (names are case-insensitive)"),
                ));
            }
        }
        Ok(AllowList { allow, deny, hosts: pins })
    }

    pub fn allow(&self) -> &[Rule] {
        &self.allow
    }

    pub fn deny(&self) -> &[Rule] {
        &self.deny
    }

    /// Whether an allow rule names the host's loopback itself (`127.0.0.1:8080`, `[::1]`,
    /// `127.0.0.0/8`, `localhost`) rather than a range that merely contains it (`0.0.0.0/0`).
    /// Proxy-aware clients must then send loopback requests to the proxy too.
    pub fn names_loopback(&self) -> bool {
        self.allow.iter().any(|r| match &r.target {
            Target::Net { addr, .. } => addr.is_loopback(),
            Target::Name(name) => name == "localhost",
            Target::Wildcard(suffix) => suffix == "localhost",
        })
    }

    /// Addresses the user pinned for `host` through `hosts`, bypassing DNS.
    pub fn pinned(&self, host: &str) -> Option<&[IpAddr]> {
        let name = normalize_name(host).ok()?;
        self.hosts.get(&name).map(Vec::as_slice)
    }

    /// A destination given by name, before resolution. IP rules never match names.
    pub fn check_name(&self, host: &str, port: u16) -> Verdict {
        let name = match normalize_name(host) {
            Ok(name) => name,
            Err(e) => return Verdict::Deny { rule: None, reason: format!("invalid host name: {e}") },
        };
        if let Some(rule) = self.deny.iter().find(|r| r.matches_name(&name, port)) {
            return Verdict::Deny { rule: Some(rule.text.clone()), reason: DENIED.into() };
        }
        match self.allow.iter().find(|r| r.matches_name(&name, port)) {
            Some(rule) => Verdict::Allow { rule: rule.text.clone() },
            None => Verdict::Deny { rule: None, reason: NOT_ALLOWED.into() },
        }
    }

    /// A destination given as an IP literal. Domain rules never match addresses.
    pub fn check_ip(&self, ip: IpAddr, port: u16) -> Verdict {
        let ip = destination(ip);
        if let Some(rule) = self.deny.iter().find(|r| r.matches_ip(ip, port)) {
            return Verdict::Deny { rule: Some(rule.text.clone()), reason: DENIED.into() };
        }
        match self.allow.iter().find(|r| r.matches_ip(ip, port)) {
            Some(rule) => Verdict::Allow { rule: rule.text.clone() },
            None => Verdict::Deny { rule: None, reason: NOT_ALLOWED.into() },
        }
    }

    /// One address a permitted name resolved to. `pinned`: it came from `hosts` (the user
    /// stated it), so the sensitive-range check is skipped; explicit deny rules still apply.
    /// `local`: this host's own interface addresses, which a DNS answer must not lead to
    /// either (services listening on all addresses answer there).
    pub fn check_resolved(&self, ip: IpAddr, port: u16, pinned: bool, local: &[IpAddr]) -> Verdict {
        let ip = destination(ip);
        if let Some(rule) = self.deny.iter().find(|r| r.matches_ip(ip, port)) {
            return Verdict::Deny {
                rule: Some(rule.text.clone()),
                reason: format!("resolved to {ip}, which {DENIED}"),
            };
        }
        if let Some(rule) = self.allow.iter().find(|r| r.matches_ip(ip, port)) {
            return Verdict::Allow { rule: rule.text.clone() };
        }
        let kind =
            sensitive(ip).or_else(|| local.iter().any(|l| destination(*l) == ip).then_some("an address of this host"));
        match kind {
            // DNS answers are not the user's word: an allowed name must not become a way
            // into the host itself, its private networks or a cloud metadata service.
            Some(kind) if !pinned => Verdict::Deny {
                rule: None,
                reason: format!(
                    "resolved to {ip}, {kind}; add the address to the allow list or pin the name in hosts to permit it"
                ),
            },
            _ => Verdict::Allow { rule: RESOLVED_ADDRESS.into() },
        }
    }
}

impl Rule {
    /// Parses one entry: `name`, `*.name`, `ip`, `[ipv6]`, `cidr`, each with optional `:PORT`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let trimmed = text.trim();
        let bad = |why: String| format!("invalid rule `{trimmed}`: {why}");
        if trimmed.is_empty() {
            return Err("empty rule".into());
        }
        let (target, port) = parse_target(trimmed).map_err(bad)?;
        Ok(Rule { text: trimmed.to_string(), target, port })
    }

    /// The rule as the user wrote it (trimmed).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    fn port_matches(&self, port: u16) -> bool {
        self.port.unwrap_or(port) == port
    }

    /// `name` must already be normalised.
    fn matches_name(&self, name: &str, port: u16) -> bool {
        self.port_matches(port)
            && match &self.target {
                Target::Name(n) => n == name,
                Target::Wildcard(suffix) => is_strict_subdomain(name, suffix),
                Target::Net { .. } => false,
            }
    }

    /// `ip` must already be canonical.
    fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.port_matches(port)
            && match self.target {
                Target::Net { addr, prefix } => in_net(ip, addr, prefix),
                _ => false,
            }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            rule: &'a str,
            matches: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            port: Option<u16>,
        }
        View { rule: &self.text, matches: self.target.to_string(), port: self.port }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rule, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            View { rule: String },
        }
        let text = match Form::deserialize(deserializer)? {
            Form::Text(text) | Form::View { rule: text } => text,
        };
        Rule::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Name(name) => write!(f, "the name {name}"),
            Target::Wildcard(suffix) => write!(f, "names under {suffix} (not {suffix} itself)"),
            Target::Net { addr, prefix } if *prefix == if addr.is_ipv4() { 32 } else { 128 } => {
                write!(f, "the address {addr}")
            }
            Target::Net { addr, prefix } => write!(f, "addresses in {addr}/{prefix}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Host {
    /// A host as it appears in a request: `[v6]`, an IP literal, or a name (validated,
    /// lowercased, trailing dot dropped).
    pub fn parse(s: &str) -> Result<Host, String> {
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(ip.into()))
                .map_err(|_| format!("`{s}` is not an IPv6 address"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        normalize_name(s).map(Host::Name)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }
}

fn parse_target(s: &str) -> Result<(Target, Option<u16>), String> {
    // `[v6]` or `[v6/prefix]`, optionally followed by `:PORT`.
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("missing `]`")?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':').ok_or("expected `:PORT` after `]`")?)?),
        };
        let (addr, prefix) = parse_net(inside)?;
        if !addr.is_ipv6() {
            return Err("brackets are for IPv6 addresses".into());
        }
        return Ok((net_target(addr, prefix), port));
    }
    // A CIDR: the prefix length contains no `:`, so a `:PORT` after it is unambiguous.
    if let Some((addr, tail)) = s.split_once('/') {
        let (prefix, port) = match tail.split_once(':') {
            Some((prefix, port)) => (prefix, Some(parse_port(port)?)),
            None => (tail, None),
        };
        let (addr, prefix) = parse_net(&format!("{addr}/{prefix}"))?;
        return Ok((net_target(addr, prefix), port));
    }
    // A bare IPv6 address is ambiguous: `::1:5432` is an address, or `[::1]` with port 5432.
    // Only the bracketed forms say which.
    if s.matches(':').count() > 1 {
        let as_address = s.parse::<Ipv6Addr>().ok().map(|ip| format!("`[{ip}]` for the address"));
        let with_port = s
            .rsplit_once(':')
            .and_then(|(addr, port)| {
                // `fd00::5` read with a port is `fd00::` and 5.
                let ip = addr.parse::<Ipv6Addr>().or_else(|_| format!("{addr}:").parse::<Ipv6Addr>()).ok()?;
                Some((ip, parse_port(port).ok()?))
            })
            .map(|(ip, port)| format!("`[{ip}]:{port}` for port {port}"));
        let readings: Vec<String> = as_address.into_iter().chain(with_port).collect();
        return Err(if readings.is_empty() {
            "not an IPv6 address (write `[addr]` or `[addr]:PORT`)".into()
        } else {
            format!("a bare IPv6 address is ambiguous: write {}", readings.join(" or "))
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (s, None),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((net_target(ip.into(), 32), port));
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        return Ok((Target::Wildcard(normalize_name(suffix)?), port));
    }
    if host == "*" {
        return Err("a wildcard needs a domain after `*.` (e.g. `*.example.com`)".into());
    }
    Ok((Target::Name(normalize_name(host)?), port))
}

/// `addr` or `addr/prefix`, host bits zero.
fn parse_net(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("prefix length must be 0–{max}")),
        },
    };
    let net = mask(addr, prefix);
    if net != addr {
        return Err(format!("host bits are set; did you mean `{net}/{prefix}`?"));
    }
    Ok((addr, prefix))
}

/// Rules on IPv4-mapped IPv6 blocks are stored as IPv4 so both spellings match alike, and a
/// rule naming exactly the unspecified address names the loopback address it reaches.
fn net_target(addr: IpAddr, prefix: u8) -> Target {
    let (addr, prefix) = match addr {
        IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => (canonical(addr), prefix - 96),
        _ => (addr, prefix),
    };
    let full = if addr.is_ipv4() { 32 } else { 128 };
    if prefix == full {
        return Target::Net { addr: destination(addr), prefix };
    }
    Target::Net { addr, prefix }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("port `{s}` must be a number from 1 to 65535")),
    }
}

fn parse_pin_name(name: &str) -> Result<String, String> {
    if name.trim_start().starts_with('*') {
        return Err("a wildcard cannot be pinned; pin each name".into());
    }
    normalize_name(name.trim())
}

fn parse_pin_addrs(list: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        let bare = item.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(item);
        let ip = bare.parse::<IpAddr>().map_err(|_| format!("`{item}` is not an IP address"))?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Lowercases, drops one trailing dot, and checks the name is a host name: labels of 1–63
/// `[a-z0-9-]` not starting or ending with `-`, at most 253 characters, and a last label
/// that is not all digits (that would be a malformed IP address, which resolvers accept in
/// surprising forms such as `127.1`).
fn normalize_name(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty host name".into());
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    if !name.is_ascii() {
        return Err(format!("`{s}` is not ASCII; write internationalised names in their xn-- form"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{s}`: each label must be 1–63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("`{s}`: names may contain only letters, digits, `-` and `.` (`*` only as `*.`)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("`{s}`: a label cannot start or end with `-`"));
        }
    }
    if name.rsplit('.').next().is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("`{s}` is neither a valid IP address nor a domain name"));
    }
    Ok(name)
}

fn is_strict_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1 && name.ends_with(suffix) && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) reaches the IPv4 address, so it is judged as one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address a connection to `ip` really reaches, which is the one every rule judges and
/// the one to connect to: IPv4-mapped IPv6 is its IPv4 address, and the unspecified address
/// (`0.0.0.0`, `::`, `::ffff:0.0.0.0`) is loopback (Linux connects "any address" to the local
/// host).
pub fn destination(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == net.is_ipv4() && mask(ip, prefix) == net
}

/// Azure's platform endpoint (wire server, DNS, health probes), reachable from every VM.
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// Ranges a DNS answer must not lead to without the user's explicit word: the host itself,
/// the networks behind it, and the cloud metadata services.
fn sensitive(ip: IpAddr) -> Option<&'static str> {
    let v4_in = |a: Ipv4Addr, net: [u8; 4], prefix: u8| in_net(a.into(), Ipv4Addr::from(net).into(), prefix);
    match destination(ip) {
        IpAddr::V4(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V4(a) if a.is_link_local() => Some("a link-local address (this includes cloud metadata services)"),
        IpAddr::V4(a) if a.octets()[0] == 0 => Some("an address of \"this network\" (0.0.0.0/8)"),
        IpAddr::V4(a) if a.is_private() => Some("a private address (RFC 1918)"),
        IpAddr::V4(a) if v4_in(a, [100, 64, 0, 0], 10) => Some("a shared address (100.64.0.0/10, carrier-grade NAT)"),
        IpAddr::V4(a) if a == AZURE_WIRESERVER => Some("Azure's platform endpoint (168.63.129.16)"),
        IpAddr::V4(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V6(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => Some("a link-local address"),
        // fd00:ec2::254 (AWS's IPv6 metadata service) lies in here.
        IpAddr::V6(a) if a.segments()[0] & 0xfe00 == 0xfc00 => {
            Some("a unique local address (fc00::/7, this includes cloud metadata services)")
        }
        // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
        IpAddr::V6(a) if a.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            let [.., hi, lo] = a.segments();
            sensitive(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn rules(allow: &[&str], deny: &[&str], hosts: &[(&str, &str)]) -> AllowList {
        let hosts = hosts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AllowList::parse(&s(allow), &s(deny), &hosts).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn allowed(v: Verdict) -> bool {
        v.is_allowed()
    }

    #[test]
    fn exact_names_match_only_themselves() {
        let r = rules(&["example.com"], &[], &[]);
        assert_eq!(r.check_name("example.com", 443), Verdict::Allow { rule: "example.com".into() });
        assert!(!allowed(r.check_name("www.example.com", 443)));
        assert!(!allowed(r.check_name("evil-example.com", 443)));
        assert!(!allowed(r.check_name("example.com.evil.net", 443)));
        assert!(!allowed(r.check_name("xexample.com", 443)));
    }

    #[test]
    fn wildcard_matches_subdomains_at_any_depth_but_not_the_bare_name_or_look_alikes() {
        let r = rules(&["*.example.com"], &[], &[]);
        assert!(allowed(r.check_name("a.example.com", 80)));
        assert!(allowed(r.check_name("a.b.c.example.com", 80)));
        assert!(!allowed(r.check_name("example.com", 80)));
        assert!(!allowed(r.check_name("evil-example.com", 80)));
        assert!(!allowed(r.check_name("aexample.com", 80)));
        assert!(!allowed(r.check_name("a.example.com.evil.net", 80)));
        assert!(!allowed(r.check_name(".example.com", 80)));
    }

    #[test]
    fn names_are_case_insensitive_and_trailing_dots_ignored() {
        let r = rules(&["Example.COM.", "*.Wild.Test"], &[], &[]);
        assert!(allowed(r.check_name("EXAMPLE.com", 1)));
        assert!(allowed(r.check_name("example.com.", 1)));
        assert!(allowed(r.check_name("A.WILD.test.", 1)));
        assert_eq!(r.allow()[0].text(), "Example.COM.");
    }

    #[test]
    fn ports_restrict_rules() {
        let r = rules(&["example.com:443", "*.api.test:8080", "10.0.0.0/8:22", "[::1]:5432"], &[], &[]);
        assert!(allowed(r.check_name("example.com", 443)));
        assert!(!allowed(r.check_name("example.com", 80)));
        assert!(allowed(r.check_name("x.api.test", 8080)));
        assert!(!allowed(r.check_name("x.api.test", 8081)));
        assert!(allowed(r.check_ip(ip("10.9.8.7"), 22)));
        assert!(!allowed(r.check_ip(ip("10.9.8.7"), 23)));
        assert!(allowed(r.check_ip(ip("::1"), 5432)));
        assert!(!allowed(r.check_ip(ip("::1"), 5433)));
        assert_eq!(r.allow()[3].port(), Some(5432));
    }

    #[test]
    fn ipv6_forms() {
        let r = rules(&["[::1]", "[fd00::5]", "[fd00::/16]:443", "2001:db8::/32"], &[], &[]);
        assert!(allowed(r.check_ip(ip("::1"), 9)));
        assert!(allowed(r.check_ip(ip("fd00::5"), 9)));
        assert!(allowed(r.check_ip(ip("fd00:1::1"), 443)));
        assert!(!allowed(r.check_ip(ip("fd00:1::1"), 80)));
        assert!(allowed(r.check_ip(ip("2001:db8:ffff::1"), 80)));
        assert!(!allowed(r.check_ip(ip("2001:db9::1"), 80)));
        assert!(!allowed(r.check_ip(ip("::2"), 9)));
    }

    #[test]
    fn cidr_v4_and_v6() {
        let r = rules(&["10.0.0.0/8", "192.168.1.0/24", "0.0.0.0/0:7"], &["10.66.0.0/16"], &[]);
        assert!(allowed(r.check_ip(ip("10.1.2.3"), 80)));
        assert!(!allowed(r.check_ip(ip("11.1.2.3"), 80)));
        assert!(allowed(r.check_ip(ip("192.168.1.255"), 80)));
        assert!(!allowed(r.check_ip(ip("192.168.2.1"), 80)));
        assert!(allowed(r.check_ip(ip("8.8.8.8"), 7)));
        assert!(!allowed(r.check_ip(ip("fd00::1"), 7)), "an IPv4 /0 does not cover IPv6");
        assert_eq!(
            r.check_ip(ip("10.66.1.1"), 80),
            Verdict::Deny { rule: Some("10.66.0.0/16".into()), reason: DENIED.into() }
        );
    }

    #[test]
    fn deny_beats_allow() {
        let r = rules(
            &["*.example.com", "10.0.0.0/8"],
            &["secret.example.com", "*.internal.example.com:22", "10.0.0.1"],
            &[],
        );
        assert_eq!(
            r.check_name("secret.example.com", 443),
            Verdict::Deny { rule: Some("secret.example.com".into()), reason: DENIED.into() }
        );
        assert!(!allowed(r.check_name("db.internal.example.com", 22)));
        assert!(allowed(r.check_name("db.internal.example.com", 443)));
        assert!(!allowed(r.check_ip(ip("10.0.0.1"), 80)));
        assert!(allowed(r.check_ip(ip("10.0.0.2"), 80)));
    }

    #[test]
    fn no_rule_means_denied() {
        let r = rules(&[], &[], &[]);
        assert_eq!(r.check_name("example.com", 443), Verdict::Deny { rule: None, reason: NOT_ALLOWED.into() });
        assert_eq!(r.check_ip(ip("1.1.1.1"), 443), Verdict::Deny { rule: None, reason: NOT_ALLOWED.into() });
    }

    #[test]
    fn ip_rules_never_match_names_and_name_rules_never_match_ips() {
        let r = rules(&["127.0.0.1", "localhost"], &[], &[]);
        assert!(!allowed(r.check_name("127.0.0.1", 80)));
        assert!(allowed(r.check_name("localhost", 80)));
        assert!(allowed(r.check_ip(ip("127.0.0.1"), 80)));
        let r = rules(&["localhost"], &[], &[]);
        assert!(!allowed(r.check_ip(ip("127.0.0.1"), 80)));
    }

    #[test]
    fn ip_literals_in_mapped_form_are_judged_as_ipv4() {
        let r = rules(&["0.0.0.0/0"], &["10.0.0.0/8"], &[]);
        assert!(!allowed(r.check_ip(ip("::ffff:10.1.1.1"), 80)));
        assert!(allowed(r.check_ip(ip("::ffff:11.1.1.1"), 80)));
        let r = rules(&["::ffff:10.0.0.0/104"], &[], &[]);
        assert!(allowed(r.check_ip(ip("10.2.3.4"), 80)));
    }

    #[test]
    fn resolved_addresses_in_sensitive_ranges_are_refused_unless_pinned_or_named() {
        let r = rules(&["allowed.test"], &[], &[]);
        let local = [ip("203.0.113.7"), ip("2001:db8::7")];
        for addr in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "febf::1",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "168.63.129.16",
            "fd00::1",
            "fd00:ec2::254",
            "fc00::1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "::ffff:10.1.2.3",
            "203.0.113.7",
            "::ffff:203.0.113.7",
            "2001:db8::7",
        ] {
            let v = r.check_resolved(ip(addr), 80, false, &local);
            assert!(matches!(&v, Verdict::Deny { rule: None, .. }), "{addr}: {v:?}");
            assert!(r.check_resolved(ip(addr), 80, true, &local).is_allowed(), "{addr} pinned");
        }
        for addr in [
            "93.184.216.34",
            "2606:4700::1",
            "fec0::1",
            "::ffff:8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "168.63.129.17",
            "64:ff9b::808:808",
            "203.0.113.8",
        ] {
            assert_eq!(
                r.check_resolved(ip(addr), 80, false, &local),
                Verdict::Allow { rule: RESOLVED_ADDRESS.into() },
                "{addr}"
            );
        }
        let Verdict::Deny { reason, .. } = r.check_resolved(ip("169.254.169.254"), 80, false, &[]) else {
            unreachable!()
        };
        assert!(reason.contains("169.254.169.254") && reason.contains("link-local"), "{reason}");
        let Verdict::Deny { reason, .. } = r.check_resolved(ip("203.0.113.7"), 80, false, &local) else {
            unreachable!()
        };
        assert!(reason.contains("this host"), "{reason}");
    }

    #[test]
    fn a_range_allowed_explicitly_admits_resolved_private_addresses() {
        let r = rules(&["db.corp.test", "10.0.0.0/8", "[fd00::/8]:443"], &[], &[]);
        assert_eq!(r.check_resolved(ip("10.1.2.3"), 5432, false, &[]), Verdict::Allow { rule: "10.0.0.0/8".into() });
        assert!(!r.check_resolved(ip("192.168.0.1"), 5432, false, &[]).is_allowed());
        assert!(r.check_resolved(ip("fd00:ec2::254"), 443, false, &[]).is_allowed());
        assert!(!r.check_resolved(ip("fd00:ec2::254"), 80, false, &[]).is_allowed());
    }

    #[test]
    fn unspecified_destinations_are_judged_as_loopback() {
        let r = rules(&["0.0.0.0/0", "::/0"], &["127.0.0.0/8", "[::1]"], &[]);
        for addr in ["0.0.0.0", "::ffff:0.0.0.0", "::", "::0", "127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let v = r.check_ip(ip(addr), 8080);
            assert!(matches!(&v, Verdict::Deny { rule: Some(_), .. }), "{addr}: {v:?}");
        }
        assert!(r.check_ip(ip("8.8.8.8"), 53).is_allowed());
        assert!(r.check_ip(ip("2001:db8::1"), 53).is_allowed());
        assert_eq!(destination(ip("0.0.0.0")), ip("127.0.0.1"));
        assert_eq!(destination(ip("::")), ip("::1"));
        assert_eq!(destination(ip("::ffff:0.0.0.0")), ip("127.0.0.1"));
        assert_eq!(destination(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        // A rule naming the unspecified address names the loopback address it reaches.
        let r = rules(&["0.0.0.0:8080", "[::]:9090"], &[], &[]);
        assert!(r.check_ip(ip("127.0.0.1"), 8080).is_allowed());
        assert!(r.check_ip(ip("::1"), 9090).is_allowed());
        assert!(!r.check_ip(ip("127.0.0.2"), 8080).is_allowed());
        let r = rules(&["[::1]:5432"], &["0.0.0.0"], &[]);
        assert!(!r.check_resolved(ip("127.0.0.1"), 5432, true, &[]).is_allowed());
    }

    #[test]
    fn rules_that_name_loopback() {
        for allow in
            [&["127.0.0.1:8080"][..], &["[::1]"], &["127.0.0.0/8"], &["localhost:3000"], &["0.0.0.0:80"], &["[::]"]]
        {
            assert!(rules(allow, &[], &[]).names_loopback(), "{allow:?}");
        }
        for allow in [&["0.0.0.0/0"][..], &["::/0"], &["example.com"], &["10.0.0.0/8"], &[]] {
            assert!(!rules(allow, &[], &[]).names_loopback(), "{allow:?}");
        }
        assert!(!rules(&["example.com"], &["127.0.0.1"], &[]).names_loopback(), "deny rules do not count");
    }

    #[test]
    fn bare_ipv6_rules_are_refused_with_both_readings() {
        let e = Rule::parse("::1:5432").unwrap_err();
        assert!(e.contains("`[::1:5432]`") && e.contains("`[::1]:5432`"), "{e}");
        let e = Rule::parse("::1").unwrap_err();
        assert!(e.contains("`[::1]`") && e.contains("`[::]:1`"), "{e}");
        let e = Rule::parse("fd00::zz").unwrap_err();
        assert!(e.contains("[addr]"), "{e}");
        assert_eq!(Rule::parse("[::1]:5432").unwrap().port(), Some(5432));
        assert_eq!(Rule::parse("2001:db8::/32").unwrap().port(), None);
    }

    #[test]
    fn an_allow_ip_rule_admits_a_sensitive_resolved_address() {
        let r = rules(&["dev.test", "127.0.0.1:8080"], &[], &[]);
        assert_eq!(
            r.check_resolved(ip("127.0.0.1"), 8080, false, &[]),
            Verdict::Allow { rule: "127.0.0.1:8080".into() }
        );
        assert!(!r.check_resolved(ip("127.0.0.1"), 8081, false, &[]).is_allowed());
        assert!(r.check_resolved(ip("::ffff:127.0.0.1"), 8080, false, &[]).is_allowed());
    }

    #[test]
    fn deny_rules_apply_to_resolved_addresses_even_when_pinned() {
        let r = rules(&["*.corp.test"], &["10.1.0.0/16"], &[("db.corp.test", "10.1.2.3")]);
        let v = r.check_resolved(ip("10.1.2.3"), 5432, true, &[]);
        assert!(matches!(&v, Verdict::Deny { rule: Some(rule), .. } if rule == "10.1.0.0/16"), "{v:?}");
        assert!(!r.check_resolved(ip("::ffff:10.1.2.3"), 5432, false, &[]).is_allowed());
        assert!(r.check_resolved(ip("10.2.0.1"), 5432, true, &[]).is_allowed());
        assert!(!r.check_resolved(ip("10.2.0.1"), 5432, false, &[]).is_allowed(), "private, not named");
    }

    #[test]
    fn pins() {
        let r = rules(&[], &[], &[("Allowed.Test.", "127.0.0.1, ::1 ,[fd00::1]"), ("one.test", "10.0.0.1")]);
        assert_eq!(r.pinned("allowed.test").unwrap(), &[ip("127.0.0.1"), ip("::1"), ip("fd00::1")]);
        assert_eq!(r.pinned("ALLOWED.test.").unwrap().len(), 3);
        assert_eq!(r.pinned("one.test").unwrap(), &[ip("10.0.0.1")]);
        assert!(r.pinned("two.test").is_none());
        assert!(r.pinned("not a name").is_none());
        // A pin does not allow: the allow list still decides.
        assert!(!r.check_name("one.test", 80).is_allowed());
    }

    #[test]
    fn parse_errors_name_the_field() {
        let field = |allow: &[&str], deny: &[&str], hosts: &[(&str, &str)]| {
            let hosts = hosts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let e = AllowList::parse(&s(allow), &s(deny), &hosts).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::PolicyInvalid);
            e.field.unwrap()
        };
        assert_eq!(field(&["ok.test", "fine.test", "bad_name.test"], &[], &[]), "network.allow[2]");
        assert_eq!(field(&["ok.test"], &["*"], &[]), "network.deny[0]");
        assert_eq!(field(&[], &[], &[("*.wild.test", "127.0.0.1")]), "network.hosts.*.wild.test");
        assert_eq!(field(&[], &[], &[("ok.test", "127.0.0.1, nope")]), "network.hosts.ok.test");
        assert_eq!(field(&[], &[], &[("ok.test", "")]), "network.hosts.ok.test");
        assert_eq!(field(&[], &[], &[("A.test", "::1"), ("a.test", "::1")]), "network.hosts.a.test");
    }

    #[test]
    fn invalid_rules() {
        for bad in [
            "",
            "  ",
            "*",
            "*.",
            "a.*.example.com",
            "**.example.com",
            "foo*.example.com",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "exa mple.com",
            "bad_name.com",
            "é.example.com",
            "example.com:0",
            "example.com:65536",
            "example.com:",
            "example.com:+1",
            "example.com:http",
            "10.0.0.256",
            "127.1",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "fd00::/129",
            "[::1",
            "[::1]80",
            "[10.0.0.1]:80",
            "[nothost]:80",
            "1.2.3.4:80:90",
            "http://example.com",
            "example.com/path",
            "::",
            "::1",
            "::1:5432",
            "fd00::5",
            "2001:db8::1:443",
        ] {
            assert!(Rule::parse(bad).is_err(), "`{bad}` should be refused");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(Rule::parse(&long_label).is_err());
        let long_name = ["a".repeat(63).as_str(); 4].join(".") + ".com";
        assert!(long_name.len() > 253 && Rule::parse(&long_name).is_err());
        let max_label = format!("{}.com", "a".repeat(63));
        assert!(Rule::parse(&max_label).is_ok());
    }

    #[test]
    fn valid_rules() {
        for good in [
            "example.com",
            "localhost",
            "xn--bcher-kva.example",
            "*.com",
            "a-b.c0m:1",
            "1.2.3.4:65535",
            "[::]",
            "[::]:1",
            "0.0.0.0/0",
            "::/0",
            "fd00::/8:443",
            "[fd00::/8]:443",
            " spaced.example ",
            "3com.com",
        ] {
            assert!(Rule::parse(good).is_ok(), "`{good}` should parse: {:?}", Rule::parse(good));
        }
    }

    #[test]
    fn invalid_hosts_are_denied_not_panicking() {
        let r = rules(&["*.example.com"], &[], &[]);
        for bad in ["", "a..example.com", "a b.example.com", "x.example.com\0", "127.0.0.1"] {
            assert!(!r.check_name(bad, 80).is_allowed(), "{bad:?}");
        }
    }

    #[test]
    fn host_parse() {
        assert_eq!(Host::parse("[::1]"), Ok(Host::Ip(ip("::1"))));
        assert_eq!(Host::parse("::1"), Ok(Host::Ip(ip("::1"))));
        assert_eq!(Host::parse("10.0.0.1"), Ok(Host::Ip(ip("10.0.0.1"))));
        assert_eq!(Host::parse("Example.COM."), Ok(Host::Name("example.com".into())));
        assert!(Host::parse("[10.0.0.1]").is_err());
        assert!(Host::parse("127.1").is_err());
        assert!(Host::parse("a/b").is_err());
        assert_eq!(Host::parse("Example.COM").unwrap().to_string(), "example.com");
    }

    #[test]
    fn serde_round_trip() {
        let r = rules(&["*.example.com:443", "[::1]:80"], &["10.0.0.0/8"], &[("a.test", "127.0.0.1")]);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"allow":[{"rule":"*.example.com:443","matches":"names under example.com (not example.com itself)","port":443},"#,
                r#"{"rule":"[::1]:80","matches":"the address ::1","port":80}],"#,
                r#""deny":[{"rule":"10.0.0.0/8","matches":"addresses in 10.0.0.0/8"}],"hosts":{"a.test":["127.0.0.1"]}}"#
            )
        );
        assert_eq!(serde_json::from_str::<AllowList>(&json).unwrap(), r);
        let text =
            r#"{"allow":["*.example.com:443","[::1]:80"],"deny":["10.0.0.0/8"],"hosts":{"a.test":["127.0.0.1"]}}"#;
        assert_eq!(serde_json::from_str::<AllowList>(text).unwrap(), r);
        assert!(serde_json::from_str::<AllowList>(r#"{"allow":["*"],"deny":[],"hosts":{}}"#).is_err());

        let v = Verdict::Deny { rule: None, reason: "x".into() };
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"verdict":"deny","rule":null,"reason":"x"}"#);
        let violation = Violation {
            destination: "evil.test".into(),
            port: 443,
            rule: Some("evil.test".into()),
            reason: DENIED.into(),
            protocol: "connect".into(),
            count: 3,
        };
        let json = serde_json::to_string(&violation).unwrap();
        assert_eq!(serde_json::from_str::<Violation>(&json).unwrap(), violation);
    }
}

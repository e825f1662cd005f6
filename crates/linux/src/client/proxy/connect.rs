//! Deciding and opening one upstream connection. Shared by both protocols so the rules are
//! applied in exactly one place.
//!
//! Runs in: the client, on the proxy's tokio tasks.

use super::{Shared, CONNECT_TIMEOUT};
use corral_core::allowlist::{destination, Host, Verdict, Violation};
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Why no upstream connection was made.
pub(super) enum Failure {
    /// The rules refuse the destination (already recorded as a violation).
    Refused { rule: Option<String>, reason: String },
    /// The name has no address, or resolution failed or timed out.
    Unresolved(io::Error),
    /// Every permitted address failed to connect (or the time ran out).
    Unreachable(io::Error),
}

impl Failure {
    /// One line for an error response.
    pub(super) fn describe(&self, host: &str, port: u16) -> String {
        match self {
            Failure::Refused { rule: Some(rule), reason } => {
                format!("corral: {host}:{port} refused by network rule `{rule}`: {reason}")
            }
            Failure::Refused { rule: None, reason } => format!("corral: {host}:{port} refused: {reason}"),
            Failure::Unresolved(e) => format!("corral: cannot resolve {host}: {e}"),
            Failure::Unreachable(e) => format!("corral: cannot connect to {host}:{port}: {e}"),
        }
    }
}

/// Checks `host` (as the client wrote it) and `port` against the rules, resolves names,
/// and connects to the first permitted address that answers. Refusals are recorded.
pub(super) async fn open(shared: &Shared, host: &str, port: u16, protocol: &str) -> Result<TcpStream, Failure> {
    let refuse = |destination: &str, rule: Option<String>, reason: String| {
        shared.record(Violation {
            destination: destination.to_string(),
            port,
            rule: rule.clone(),
            reason: reason.clone(),
            protocol: protocol.to_string(),
            count: 1,
        });
        Failure::Refused { rule, reason }
    };
    let rules = &shared.rules;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let candidates = match Host::parse(host) {
        Err(e) => return Err(refuse(host, None, format!("invalid host name: {e}"))),
        Ok(Host::Ip(ip)) => match rules.check_ip(ip, port) {
            Verdict::Deny { rule, reason } => return Err(refuse(host, rule, reason)),
            Verdict::Allow { .. } => vec![destination(ip)],
        },
        Ok(Host::Name(name)) => {
            if let Verdict::Deny { rule, reason } = rules.check_name(&name, port) {
                return Err(refuse(&name, rule, reason));
            }
            let (addrs, pinned) = match rules.pinned(&name) {
                Some(addrs) => (addrs.to_vec(), true),
                None => (shared.resolver.lookup(&name, port, deadline).await.map_err(Failure::Unresolved)?, false),
            };
            let mut permitted = Vec::new();
            let mut first_refusal = None;
            for ip in &addrs {
                match rules.check_resolved(*ip, port, pinned, &shared.local) {
                    Verdict::Allow { .. } => permitted.push(destination(*ip)),
                    Verdict::Deny { rule, reason } => {
                        first_refusal.get_or_insert((rule, reason));
                    }
                }
            }
            match first_refusal {
                Some((rule, reason)) if permitted.is_empty() => {
                    let reason = match addrs.len() {
                        1 => reason,
                        n => format!("all {n} addresses refused; the first {reason}"),
                    };
                    return Err(refuse(&name, rule, reason));
                }
                _ => permitted,
            }
        }
    };
    connect_any(&candidates, port, deadline).await.map_err(Failure::Unreachable)
}

async fn connect_any(addrs: &[IpAddr], port: u16, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
    for ip in addrs {
        match timeout_at(deadline, TcpStream::connect(SocketAddr::new(*ip, port))).await {
            Ok(Ok(stream)) => {
                // Handshakes of interactive protocols (TLS) should not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connection timed out")),
        }
    }
    Err(last)
}

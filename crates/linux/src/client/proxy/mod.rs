//! The host-side network proxy for `network: { allow, deny, hosts }`. Runs in: the
//! caller's process, on its tokio runtime.
//!
//! The sandbox has no route out; a bridge inside it relays every TCP connection made to
//! 127.0.0.1:3128 (HTTP proxy) or 127.0.0.1:1080 (SOCKS5) byte for byte to this proxy, over
//! a channel made for that one sandbox (`crate::ipc::proxy`): there is no socket path, so
//! nothing else can reach it. The first byte tells the protocols apart (SOCKS5 starts with
//! 0x05, an HTTP request with a method name). Every destination is decided by
//! [`AllowList`] *here*, after resolution, so a DNS answer cannot smuggle the sandbox onto
//! loopback, a private network or the metadata service; every refusal is recorded as a
//! [`Violation`].
//!
//! One process serves many sandboxes, each with a proxy of its own, so nothing one sandbox
//! sends may cost the others: connections are capped per sandbox and per process (each
//! holds descriptors of the caller) with a few guaranteed to every sandbox, a client must finish its request quickly, refusals are
//! kept in a list bounded in bytes with repeats counted, and names are resolved on threads
//! of the proxy's own, a few per sandbox ([`resolve`]), never on the runtime's shared
//! blocking pool.

mod connect;
mod http;
pub(crate) mod relay;
mod resolve;
mod socks;

use crate::ipc::proxy::{self as channel, Received};
use corral_core::allowlist::{AllowList, Violation};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// How long a client may take to send its whole request (slow or idle handshakes hold
/// descriptors of the caller).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Resolution plus connection attempts to every permitted address, in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections one sandbox may have open through its proxy at once.
pub const MAX_CONNECTIONS_PER_SANDBOX: usize = 128;
/// Connections every sandbox may open whatever the others hold: only those past it count
/// against the process-wide cap, so sandboxes holding that cap cannot shut another out.
pub const GUARANTEED_CONNECTIONS: usize = 8;
/// Bytes of text the refusals of one sandbox may hold (names, reasons, rules); past it
/// refusals are only counted.
pub const MAX_VIOLATION_BYTES: usize = 64 << 10;
/// Longest destination kept in a refusal, in bytes.
const MAX_DESTINATION: usize = 255;

/// A running proxy. Dropping it stops accepting and aborts live connections;
/// [`Proxy::shutdown`] does the same and waits for the connections to end.
pub struct Proxy {
    /// The channel's other end, until the sandbox is started with it.
    sandbox_end: Option<OwnedFd>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    accept: Option<JoinHandle<()>>,
}

/// State every connection task sees.
struct Shared {
    rules: Arc<AllowList>,
    violations: Mutex<Violations>,
    /// This host's interface addresses, which a resolved name must not lead to unless the
    /// rules name them.
    local: Vec<IpAddr>,
    resolver: resolve::Resolver,
}

impl Shared {
    fn record(&self, violation: Violation) {
        self.violations.lock().unwrap_or_else(|e| e.into_inner()).record(violation);
    }
}

/// Refusals, bounded in bytes: a repeat of a listed refusal counts, a new one is listed
/// while the budget lasts and counted in a last summary entry after that.
#[derive(Default)]
struct Violations {
    list: Vec<Violation>,
    index: HashMap<(String, u16, String, String), usize>,
    bytes: usize,
    unlisted: u64,
}

impl Violations {
    fn record(&mut self, mut v: Violation) {
        v.destination = printable(&v.destination, MAX_DESTINATION);
        let key = (v.destination.clone(), v.port, v.protocol.clone(), v.reason.clone());
        if let Some(&i) = self.index.get(&key) {
            self.list[i].count += v.count;
            return;
        }
        let size =
            2 * (v.destination.len() + v.reason.len()) + v.protocol.len() + v.rule.as_ref().map_or(0, String::len);
        if self.bytes + size > MAX_VIOLATION_BYTES {
            self.unlisted += v.count;
            return;
        }
        self.bytes += size;
        self.index.insert(key, self.list.len());
        self.list.push(v);
    }

    fn snapshot(&self) -> Vec<Violation> {
        let mut out = self.list.clone();
        if self.unlisted > 0 {
            out.push(Violation {
                destination: "*".into(),
                port: 0,
                rule: None,
                reason: format!("further refusals, not listed: the list keeps {} KiB", MAX_VIOLATION_BYTES >> 10),
                protocol: "*".into(),
                count: self.unlisted,
            });
        }
        out
    }
}

/// `s` with control characters escaped, at most `max` bytes (cut on a character boundary,
/// marked with `…`): names in refusals come from the sandbox.
fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let piece: String = if c.is_control() { c.escape_default().collect() } else { c.to_string() };
        if out.len() + piece.len() > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Connections open through every proxy of this process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Connections every proxy of this process may hold at once: a quarter of the descriptor
/// limit (each connection holds up to two), so the caller keeps room for everything else.
pub fn max_connections_per_process() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(s, _)| s);
        ((soft / 4) as usize).clamp(64, 8192)
    })
}

/// One connection's place, held for as long as it lives: one of its sandbox's guaranteed
/// places, or one counted against the process-wide cap.
struct Slot {
    shared: bool,
}

impl Slot {
    /// A place for a sandbox that has `open` connections now, if it may have another.
    fn take(open: usize) -> Result<Slot, Violation> {
        if open >= MAX_CONNECTIONS_PER_SANDBOX {
            return Err(too_many(true));
        }
        if open < GUARANTEED_CONNECTIONS {
            return Ok(Slot { shared: false });
        }
        let max = max_connections_per_process();
        LIVE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map(|_| Slot { shared: true })
            .map_err(|_| too_many(false))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.shared {
            LIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Starts a proxy for `rules`, served by a task on the current tokio runtime (which needs
/// I/O and time enabled). Each connection gets its own task. The sandbox's end of the
/// channel is [`Proxy::take_sandbox_end`].
pub async fn start(rules: Arc<AllowList>) -> io::Result<Proxy> {
    let (ours, theirs) = channel::pair()?;
    nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))?;
    // SAFETY: `ours` is an OwnedFd moved in here, so nothing else closes it while it is
    // registered.
    let ours = unsafe { AsyncFd::register(ours) }.map_err(io::Error::from)?;
    let shared = Arc::new(Shared {
        rules,
        violations: Mutex::new(Violations::default()),
        local: local_addresses(),
        resolver: resolve::Resolver::new(),
    });
    let (stop, stopped) = oneshot::channel();
    let accept = tokio::spawn(accept_loop(ours, shared.clone(), stopped));
    Ok(Proxy { sandbox_end: Some(theirs), shared, stop: Some(stop), accept: Some(accept) })
}

impl Proxy {
    /// The sandbox's end of the channel, for the spawn request (once).
    pub fn take_sandbox_end(&mut self) -> Option<OwnedFd> {
        self.sandbox_end.take()
    }

    /// Opens a connection as the sandbox's bridge would, for tests and tools that drive the
    /// proxy directly (before the sandbox's end is taken).
    pub fn connect(&self) -> io::Result<UnixStream> {
        let end = self.sandbox_end.as_ref().ok_or_else(|| io::Error::other("the channel went to a sandbox"))?;
        let fd = channel::open(end.as_fd())?;
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)?;
        UnixStream::from_std(std)
    }

    /// Every refused connection so far: repeats counted, the list bounded in bytes.
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.violations.lock().unwrap_or_else(|e| e.into_inner()).snapshot()
    }

    /// Stops accepting, aborts live connections and waits for them to close.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

async fn accept_loop(channel: AsyncFd<OwnedFd>, shared: Arc<Shared>, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    let mut open = true;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            ready = channel.readable(), if open => {
                let Ok(mut guard) = ready else { break };
                loop {
                    match channel::receive(channel.get_ref().as_fd()) {
                        Ok(Received::Connection(fd)) => {
                            let slot = match Slot::take(connections.len()) {
                                Ok(slot) => slot,
                                Err(refused) => {
                                    // Dropping the end closes the command's connection at once.
                                    shared.record(refused);
                                    continue;
                                }
                            };
                            let std = std::os::unix::net::UnixStream::from(fd);
                            if std.set_nonblocking(true).is_err() {
                                continue;
                            }
                            if let Ok(stream) = UnixStream::from_std(std) {
                                let shared = shared.clone();
                                connections.spawn(async move {
                                    serve(stream, &shared).await;
                                    drop(slot);
                                });
                            }
                        }
                        Ok(Received::Malformed) => continue,
                        Ok(Received::Empty) => {
                            guard.clear_ready();
                            break;
                        }
                        // The sandbox is gone; its live connections finish on their own.
                        Ok(Received::Closed) | Err(_) => {
                            open = false;
                            break;
                        }
                    }
                }
            },
            // Reap finished connections so the set does not grow with the proxy's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            else => break,
        }
    }
    connections.shutdown().await;
}

fn too_many(per_sandbox: bool) -> Violation {
    let reason = if per_sandbox {
        format!("too many connections at once: a sandbox may have {MAX_CONNECTIONS_PER_SANDBOX}")
    } else {
        format!(
            "too many connections at once in this process (at most {} past the first {GUARANTEED_CONNECTIONS} of each sandbox)",
            max_connections_per_process()
        )
    };
    Violation { destination: "*".into(), port: 0, rule: None, reason, protocol: "*".into(), count: 1 }
}

/// One accepted connection: detect the protocol and hand over. Errors end the connection;
/// they concern one client only.
async fn serve(mut client: UnixStream, shared: &Shared) {
    let mut first = [0u8; 1];
    match timeout(HANDSHAKE_TIMEOUT, client.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    // The sandbox's bridge says first that it can take tunnels over (relay.rs).
    let handoff = first[0] == relay::HANDOFF_HELLO;
    if handoff {
        match timeout(HANDSHAKE_TIMEOUT, client.read_exact(&mut first)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
    let _ = match first[0] {
        socks::VERSION => socks::serve(client, shared, handoff).await,
        byte => http::serve(client, byte, shared, handoff).await,
    };
}

/// The addresses of this host's interfaces (of the caller's network namespace), read when
/// the proxy starts.
fn local_addresses() -> Vec<IpAddr> {
    let Ok(found) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out: Vec<IpAddr> = Vec::new();
    for ifa in found {
        let Some(addr) = ifa.address else { continue };
        let ip = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
            (Some(v4), _) => IpAddr::V4(v4.ip()),
            (_, Some(v6)) => IpAddr::V6(v6.ip()),
            _ => continue,
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(destination: &str, port: u16) -> Violation {
        Violation {
            destination: destination.into(),
            port,
            rule: None,
            reason: "not in the allow list".into(),
            protocol: "connect".into(),
            count: 1,
        }
    }

    #[test]
    fn repeats_are_counted_and_the_list_is_bounded_in_bytes() {
        let mut v = Violations::default();
        for _ in 0..1000 {
            v.record(refusal("evil.test", 443));
        }
        assert_eq!(v.snapshot().len(), 1);
        assert_eq!(v.snapshot()[0].count, 1000);
        let long = "a".repeat(60_000);
        for i in 0..10_000u32 {
            v.record(refusal(&format!("{i}{long}"), 443));
        }
        let list = v.snapshot();
        let bytes: usize = list.iter().map(|x| x.destination.len() + x.reason.len()).sum();
        assert!(bytes <= MAX_VIOLATION_BYTES, "{bytes}");
        assert!(list.iter().all(|x| x.destination.len() <= MAX_DESTINATION + '…'.len_utf8()));
        let last = list.last().unwrap();
        assert_eq!(last.destination, "*");
        assert_eq!(last.count + (list.len() as u64 - 2), 10_000, "every refusal is listed or counted");
    }

    #[test]
    fn names_are_made_printable() {
        assert_eq!(printable("a\u{1b}[2Kb\n", 100), "a\\u{1b}[2Kb\\n");
        assert_eq!(printable("ééé", 4), "éé…");
    }
}

//! The host-side network proxy for `network: { allow, deny, hosts }`. Runs in: the
//! caller's process, on its tokio runtime.
//!
//! The sandbox has no route out; a bridge inside it relays every TCP connection made to
//! 127.0.0.1:3128 (HTTP proxy) or 127.0.0.1:1080 (SOCKS5) byte for byte to the Unix socket
//! served here. The first byte tells the protocols apart (SOCKS5 starts with 0x05, an HTTP
//! request with a method name). Every destination is decided by [`AllowList`] *here*, after
//! resolution, so a DNS answer cannot smuggle the sandbox onto loopback or the metadata
//! service; every refusal is recorded as a [`Violation`].

mod connect;
mod http;
pub(crate) mod relay;
mod socks;

use corral_core::allowlist::{AllowList, Violation};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// How long a client may take to send its request (slow or idle handshakes hold a task).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Resolution plus connection attempts to every permitted address, in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Violations kept per proxy: a looping program must not grow the caller's memory forever.
const MAX_VIOLATIONS: usize = 10_000;

/// A running proxy. Dropping it stops accepting, aborts live connections and removes its
/// socket directory; [`Proxy::shutdown`] does the same and waits for the connections to end.
pub struct Proxy {
    dir: PathBuf,
    socket: PathBuf,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    accept: Option<JoinHandle<()>>,
}

/// State every connection task sees.
struct Shared {
    rules: Arc<AllowList>,
    violations: Mutex<Vec<Violation>>,
    /// This host's interface addresses, which a resolved name must not lead to unless the
    /// rules name them.
    local: Vec<IpAddr>,
}

impl Shared {
    fn record(&self, violation: Violation) {
        let mut list = self.violations.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < MAX_VIOLATIONS {
            list.push(violation);
        }
    }
}

/// Starts a proxy for `rules`: a Unix stream socket `proxy.sock` in a fresh private
/// directory (mode 0700) under `$XDG_RUNTIME_DIR`, or the temporary directory, served by a
/// task on the current tokio runtime (which needs I/O and time enabled). Each connection
/// gets its own task.
pub async fn start(rules: Arc<AllowList>) -> io::Result<Proxy> {
    let dir = private_dir()?;
    let socket = dir.join("proxy.sock");
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io::Error::new(e.kind(), format!("cannot listen on {}: {e}", socket.display())));
        }
    };
    let shared = Arc::new(Shared { rules, violations: Mutex::new(Vec::new()), local: local_addresses() });
    let (stop, stopped) = oneshot::channel();
    let accept = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
    Ok(Proxy { dir, socket, shared, stop: Some(stop), accept: Some(accept) })
}

impl Proxy {
    /// The Unix socket the sandbox's bridge connects to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Every refused connection so far (at most the first 10 000).
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.violations.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops accepting, aborts live connections, waits for them to close, removes the
    /// socket directory.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, shared.clone()));
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // Reap finished connections so the set does not grow with the proxy's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// One accepted connection: detect the protocol and hand over. Errors end the connection;
/// they concern one client only.
async fn serve(mut client: UnixStream, shared: Arc<Shared>) {
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
        socks::VERSION => socks::serve(client, &shared, handoff).await,
        byte => http::serve(client, byte, &shared, handoff).await,
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

/// A fresh directory only this user can enter, on a path short enough for a socket address.
fn private_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bases: Vec<PathBuf> = Vec::new();
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        bases.push(runtime.into());
    }
    bases.push(std::env::temp_dir());
    bases.push("/tmp".into());
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no usable directory for the proxy socket");
    for base in bases.iter().filter(|b| b.is_absolute()) {
        for _ in 0..8 {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let name =
                format!("corral-proxy-{}-{}-{nanos:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            let dir = base.join(name);
            // sun_path holds 108 bytes including the terminating NUL.
            if dir.join("proxy.sock").as_os_str().len() >= 108 {
                last = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is too long for a socket path", base.display()),
                );
                break;
            }
            // `create` fails on an existing path, so nobody can have prepared it for us.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    last = io::Error::new(e.kind(), format!("cannot create a directory in {}: {e}", base.display()));
                    break;
                }
            }
        }
    }
    Err(last)
}

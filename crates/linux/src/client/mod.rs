//! The client side of the helper protocol. Runs in: the caller's process (the Node addon,
//! a Rust program), which may be multithreaded and therefore never forks for sandbox work.
//!
//! [`Supervisor::start`] spawns the helper from a dedicated, long-lived thread (the
//! helper's death signal follows the thread that spawned it) which then reads responses
//! and routes them by request id to the waiting [`Sandbox`] handles. Sending is
//! serialised by a mutex; any thread may spawn sandboxes concurrently.

pub mod changes;
pub mod hostfs;
mod links;
pub mod proxy;
pub mod run;
mod shared;

pub use shared::{helper_path, shared};

use crate::ipc::protocol::{Request, Response};
use crate::ipc::transport::{self, StdioKind};
use corral_core::command::Command;
use corral_core::{CorralError, HostCapabilities, RunStats, SandboxSpec, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

/// One of the command's standard streams.
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// A descriptor (a pipe end, a file, a terminal) the command gets as its own.
    Fd(OwnedFd),
}

type Reply<T> = oneshot::Sender<Result<T, CorralError>>;

/// Where a sandbox's replies go: `Started` (its pid), maybe `Terminal`, then `Exited` or
/// `Failed`.
struct Waiting {
    started: Option<Reply<i32>>,
    terminal: Option<Reply<OwnedFd>>,
    done: Option<Reply<Finished>>,
}

/// How a sandbox ended.
#[derive(Debug)]
pub struct Finished {
    pub stats: RunStats,
    /// The overlays' upper layers when writes were captured (`writeMode: 'overlay'`):
    /// holding this keeps them alive; see [`crate::client::changes`].
    pub layers: Option<OwnedFd>,
}

#[derive(Default)]
struct Routes {
    sandboxes: HashMap<u64, Waiting>,
    /// Replies to Hello and Probe, which carry no id.
    control: Option<mpsc::Sender<Response>>,
    /// Answers to control requests, by operation id.
    ops: HashMap<u64, Reply<()>>,
    /// Set when the helper is gone; every later request fails with it.
    dead: Option<String>,
}

pub struct Supervisor {
    sock: OwnedFd,
    send_lock: Mutex<()>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
    helper_pid: i32,
    caps: HostCapabilities,
}

/// A sandbox in flight.
pub struct Sandbox {
    pub id: u64,
    started: Option<oneshot::Receiver<Result<i32, CorralError>>>,
    terminal: Option<oneshot::Receiver<Result<OwnedFd, CorralError>>>,
    done: oneshot::Receiver<Result<Finished, CorralError>>,
}

fn gone(why: &str) -> CorralError {
    CorralError::internal(format!("the corral helper process is gone: {why}"))
        .with_hint("it restarts on the next call; please report this if it repeats")
}

impl Supervisor {
    /// Starts a helper (`helper` is the path of the `corral-helper` binary), checks its
    /// version and probes the host.
    pub fn start(helper: &Path) -> Result<Arc<Supervisor>, CorralError> {
        let (ours, theirs) = transport::pair().map_err(|e| CorralError::spawn(format!("socketpair: {e}")))?;
        let reader_sock = ours.try_clone().map_err(|e| CorralError::spawn(format!("dup: {e}")))?;
        let routes = Arc::new(Mutex::new(Routes::default()));
        let (control_tx, control_rx) = mpsc::channel();
        routes.lock().unwrap().control = Some(control_tx);
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let helper_path = helper.to_path_buf();
        let reader_routes = routes.clone();
        std::thread::Builder::new()
            .name("corral-supervisor".into())
            .spawn(move || {
                let child = spawn_helper(&helper_path, theirs);
                let pid = child.as_ref().map(|c| c.id() as i32).map_err(Clone::clone);
                let _ = spawned_tx.send(pid);
                if let Ok(child) = child {
                    read_loop(reader_sock, &reader_routes);
                    let mut child = child;
                    let _ = child.wait(); // reap the helper
                }
            })
            .map_err(|e| CorralError::spawn(format!("starting the supervisor thread: {e}")))?;
        let helper_pid = spawned_rx.recv().map_err(|_| CorralError::internal("supervisor thread died"))??;
        let mut sup = Supervisor {
            sock: ours,
            send_lock: Mutex::new(()),
            routes,
            next_id: AtomicU64::new(1),
            helper_pid,
            caps: HostCapabilities::default(),
        };
        match sup.control(&control_rx, Request::Hello { version: PROTOCOL_VERSION.into() })? {
            Response::Hello { version, .. } if version == PROTOCOL_VERSION => {}
            Response::Hello { version, .. } => {
                return Err(CorralError::internal(format!(
                    "the helper at {} speaks {version}, this library {PROTOCOL_VERSION}",
                    helper.display()
                ))
                .with_hint("reinstall corral so the addon and corral-helper come from the same build"))
            }
            other => return Err(CorralError::internal(format!("unexpected reply to hello: {other:?}"))),
        }
        match sup.control(&control_rx, Request::Probe)? {
            Response::Probe { caps } => sup.caps = *caps,
            other => return Err(CorralError::internal(format!("unexpected reply to probe: {other:?}"))),
        }
        Ok(Arc::new(sup))
    }

    fn control(&self, rx: &mpsc::Receiver<Response>, req: Request) -> Result<Response, CorralError> {
        self.send(&req, &[])?;
        rx.recv_timeout(std::time::Duration::from_secs(30)).map_err(|_| gone("no answer to a control request"))
    }

    fn send(&self, req: &Request, fds: &[RawFd]) -> Result<(), CorralError> {
        let _guard = self.send_lock.lock().unwrap_or_else(|e| e.into_inner());
        transport::send(self.sock.as_fd(), req, fds).map_err(|e| {
            if e.raw_os_error() == Some(libc::EMSGSIZE) || e.kind() == std::io::ErrorKind::InvalidInput {
                CorralError::policy(
                    "policy",
                    "the compiled policy is too large to send to the helper (a very large environment?)",
                )
            } else {
                gone(&e.to_string())
            }
        })
    }

    /// Host capabilities as the helper probed them.
    pub fn caps(&self) -> &HostCapabilities {
        &self.caps
    }

    pub fn helper_pid(&self) -> i32 {
        self.helper_pid
    }

    /// Whether the helper is still there to take requests.
    pub fn is_alive(&self) -> bool {
        self.routes.lock().map(|r| r.dead.is_none()).unwrap_or(false)
    }

    /// Creates a sandbox running `spec.argv`. Returns once the request is sent; await
    /// [`Sandbox::started`] and [`Sandbox::wait`] for the outcome. `proxy`: the sandbox's end
    /// of its allow-list proxy's channel, for a proxied network.
    pub fn spawn(&self, spec: &SandboxSpec, stdio: [Stdio; 3], proxy: Option<OwnedFd>) -> Result<Sandbox, CorralError> {
        self.request(spec, stdio, false, None, proxy)
    }

    /// Like [`spawn`](Self::spawn), with `channel` as the command's fd 3.
    pub fn spawn_with_channel(
        &self,
        spec: &SandboxSpec,
        stdio: [Stdio; 3],
        channel: OwnedFd,
        proxy: Option<OwnedFd>,
    ) -> Result<Sandbox, CorralError> {
        self.request(spec, stdio, false, Some(channel), proxy)
    }

    /// Creates a warm sandbox: everything but the command. [`Sandbox::started`] resolves
    /// when it is ready; [`Supervisor::exec`] then runs its one command.
    pub fn prepare(&self, spec: &SandboxSpec, proxy: Option<OwnedFd>) -> Result<Sandbox, CorralError> {
        self.request(spec, [Stdio::Null, Stdio::Null, Stdio::Null], true, None, proxy)
    }

    /// Runs `command` in the prepared sandbox `id`; await that sandbox's `wait()`.
    pub fn exec(
        &self,
        id: u64,
        command: Command,
        timeout_ms: Option<u64>,
        stdio: [Stdio; 3],
    ) -> Result<(), CorralError> {
        let kinds = stdio.each_ref().map(|s| if matches!(s, Stdio::Fd(_)) { StdioKind::Fd } else { StdioKind::Null });
        let fds: Vec<RawFd> =
            stdio.iter().filter_map(|s| if let Stdio::Fd(fd) = s { Some(fd.as_raw_fd()) } else { None }).collect();
        self.send(&Request::Exec { id, command: Box::new(command), stdio: kinds, timeout_ms }, &fds)
    }

    fn request(
        &self,
        spec: &SandboxSpec,
        stdio: [Stdio; 3],
        prepare: bool,
        channel: Option<OwnedFd>,
        proxy: Option<OwnedFd>,
    ) -> Result<Sandbox, CorralError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (started_tx, started_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let (term_tx, term_rx) = oneshot::channel();
        {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = &routes.dead {
                return Err(gone(why));
            }
            routes
                .sandboxes
                .insert(id, Waiting { started: Some(started_tx), terminal: Some(term_tx), done: Some(done_tx) });
        }
        let kinds = stdio.each_ref().map(|s| if matches!(s, Stdio::Fd(_)) { StdioKind::Fd } else { StdioKind::Null });
        let mut fds: Vec<RawFd> =
            stdio.iter().filter_map(|s| if let Stdio::Fd(fd) = s { Some(fd.as_raw_fd()) } else { None }).collect();
        // The fork channel travels after the stdio fds, then the proxy's channel; the helper
        // knows they are there from `channel` and `proxy`.
        fds.extend(channel.as_ref().map(|fd| fd.as_raw_fd()));
        fds.extend(proxy.as_ref().map(|fd| fd.as_raw_fd()));
        let req = if prepare {
            Request::Prepare { id, spec: Box::new(spec.clone()), proxy: proxy.is_some() }
        } else {
            Request::Spawn {
                id,
                spec: Box::new(spec.clone()),
                stdio: kinds,
                channel: channel.is_some(),
                proxy: proxy.is_some(),
            }
        };
        if let Err(e) = self.send(&req, &fds) {
            self.routes.lock().unwrap_or_else(|e| e.into_inner()).sandboxes.remove(&id);
            return Err(e);
        }
        // Our copies close now (the helper has its own), so EOF follows the sandbox.
        drop(stdio);
        drop(channel);
        drop(proxy);
        Ok(Sandbox { id, started: Some(started_rx), terminal: Some(term_rx), done: done_rx })
    }

    /// Sends `signal` to the sandbox's command; SIGKILL ends the whole sandbox at once.
    pub fn signal(&self, id: u64, signal: i32) -> Result<(), CorralError> {
        self.send(&Request::Signal { id, signal }, &[])
    }

    /// Stops (`true`) or continues (`false`) every process of the sandbox.
    pub async fn freeze(&self, id: u64, freeze: bool) -> Result<(), CorralError> {
        let op = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = &routes.dead {
                return Err(gone(why));
            }
            routes.ops.insert(op, tx);
        }
        self.send(&Request::Freeze { op, id, freeze }, &[])?;
        rx.await.unwrap_or_else(|_| Err(gone("no answer to a freeze request")))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Both directions end: the helper kills its sandboxes and exits, the reader stops.
        let _ = nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
}

impl Sandbox {
    /// Resolves with the sandbox init's pid once the sandbox exists.
    pub async fn started(&mut self) -> Result<i32, CorralError> {
        match self.started.take() {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(gone("no start report"))),
            None => Err(CorralError::internal("started() awaited twice")),
        }
    }

    /// The master side of the command's terminal (specs with a `terminal`), once init has
    /// created it.
    pub async fn terminal(&mut self) -> Result<OwnedFd, CorralError> {
        match self.terminal.take() {
            Some(rx) => {
                rx.await.unwrap_or_else(|_| Err(CorralError::spawn("the sandbox ended before its terminal existed")))
            }
            None => Err(CorralError::internal("terminal() awaited twice")),
        }
    }

    /// Resolves when the sandbox is gone.
    pub async fn wait(self) -> Result<Finished, CorralError> {
        self.done.await.unwrap_or_else(|_| Err(gone("no exit report")))
    }
}

/// The helper's `argv[0]`.
const HELPER_NAME: &str = "corral-helper";

fn spawn_helper(path: &Path, sock: OwnedFd) -> Result<std::process::Child, CorralError> {
    let raw = sock.as_raw_fd();
    let mut cmd = std::process::Command::new(path);
    // Every sandbox's pid 1 is a clone of the helper and shows its command line to the
    // command: neither the install path nor the caller's pid belongs there. The parent's
    // pid travels in the environment, which only the helper's own user can read.
    cmd.arg0(HELPER_NAME).arg("--fd").arg("3");
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    cmd.env_clear();
    cmd.env(crate::helper::PARENT_ENV, std::process::id().to_string());
    // Where the helper lists the placeholders it makes (helper/placeholders/registry.rs).
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        cmd.env("XDG_RUNTIME_DIR", run);
    }
    // SAFETY: dup2 is async-signal-safe; it gives the helper our socket end as fd 3 without
    // ever making it inheritable in this (multithreaded) process.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if raw == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(raw, 3) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        CorralError::spawn(format!("cannot start the corral helper at {}: {e}", path.display()))
            .with_hint("set CORRAL_HELPER to the path of corral-helper, or reinstall corral")
    })?;
    drop(sock);
    Ok(child)
}

fn read_loop(sock: OwnedFd, routes: &Mutex<Routes>) {
    let mut buf = Vec::new();
    let why = loop {
        match transport::recv::<Response>(sock.as_fd(), &mut buf) {
            Ok(Some((resp, fds))) => route(routes, resp, fds),
            Ok(None) => break "the helper closed the connection".to_string(),
            Err(e) => break format!("reading from the helper: {e}"),
        }
    };
    let mut r = routes.lock().unwrap_or_else(|e| e.into_inner());
    r.dead = Some(why.clone());
    r.control = None;
    for (_, tx) in r.ops.drain() {
        let _ = tx.send(Err(gone(&why)));
    }
    for (_, w) in r.sandboxes.drain() {
        if let Some(tx) = w.started {
            let _ = tx.send(Err(gone(&why)));
        }
        if let Some(tx) = w.done {
            let _ = tx.send(Err(gone(&why)));
        }
    }
}

fn route(routes: &Mutex<Routes>, resp: Response, fds: Vec<OwnedFd>) {
    let mut r = routes.lock().unwrap_or_else(|e| e.into_inner());
    match resp {
        Response::Hello { .. } | Response::Probe { .. } => {
            if let Some(tx) = &r.control {
                let _ = tx.send(resp);
            }
        }
        Response::Started { id, pid } => {
            if let Some(w) = r.sandboxes.get_mut(&id) {
                if let Some(tx) = w.started.take() {
                    let _ = tx.send(Ok(pid));
                }
            }
        }
        Response::Exited { id, stats } => {
            if let Some(tx) = r.sandboxes.remove(&id).and_then(|w| w.done) {
                let _ = tx.send(Ok(Finished { stats, layers: fds.into_iter().next() }));
            }
        }
        Response::Terminal { id } => {
            if let (Some(w), Some(fd)) = (r.sandboxes.get_mut(&id), fds.into_iter().next()) {
                if let Some(tx) = w.terminal.take() {
                    let _ = tx.send(Ok(fd));
                }
            }
        }
        Response::Done { op, error } => {
            if let Some(tx) = r.ops.remove(&op) {
                let _ = tx.send(error.map_or(Ok(()), Err));
            }
        }
        Response::Failed { id, error } => {
            if let Some(w) = r.sandboxes.remove(&id) {
                if let Some(tx) = w.started {
                    let _ = tx.send(Err(error.clone()));
                }
                if let Some(tx) = w.done {
                    let _ = tx.send(Err(error));
                }
            }
        }
    }
}

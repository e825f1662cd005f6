//! The corral side of copy-on-write fork. Runs in: the client (tokio).
//!
//! A template is an ordinary sandboxed command started with the fork channel at fd 3. A
//! reader task routes what the template says: `forked` to the waiting `fork()`, `exit` to
//! the clone's handle. When the template goes away, every clone still running goes with it
//! (the sandbox's init ends the tree), so their handles resolve as killed.

use super::message::Message;
use corral_core::{CorralError, ExitStatus, Plan};
use corral_linux::client::run::{self, drain, Output};
use corral_linux::client::Supervisor;
use corral_linux::ipc::transport;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// How long `close()` lets a template finish on its own before killing its sandbox.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The template's own output kept for `close()` and start-up errors.
const TEMPLATE_OUTPUT_CAP: u64 = 1 << 20;

type ForkReply = Result<(i32, Vec<OwnedFd>), CorralError>;
/// A drained stream: its bytes, and whether some were dropped past the cap.
type Drained = (Vec<u8>, bool);

#[derive(Default)]
struct Routes {
    ready: Option<oneshot::Sender<Result<(), CorralError>>>,
    forks: HashMap<u64, oneshot::Sender<ForkReply>>,
    exits: HashMap<u64, oneshot::Sender<ExitStatus>>,
    /// Why the channel is gone, once it is.
    gone: Option<String>,
}

struct Channel {
    /// The socket, until the channel is gone: then it is closed at once, however long the
    /// template's and its clones' handles live on.
    sock: Mutex<Option<Arc<AsyncFd<OwnedFd>>>>,
    routes: Mutex<Routes>,
}

impl Channel {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sock(&self) -> Option<Arc<AsyncFd<OwnedFd>>> {
        self.sock.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn send(&self, msg: &Message) -> Result<(), CorralError> {
        let Some(sock) = self.sock() else {
            let why = self.routes().gone.clone().unwrap_or_else(|| "the fork channel is closed".into());
            return Err(CorralError::spawn(why));
        };
        loop {
            let mut guard = sock.writable().await.map_err(io_error)?;
            match guard.try_io(|s| transport::send(s.get_ref().as_fd(), msg, &[])) {
                Ok(r) => return r.map_err(io_error),
                Err(_would_block) => continue,
            }
        }
    }

    /// Routes messages until the template closes its end or breaks the protocol.
    async fn read_loop(self: Arc<Self>) {
        let mut buf = Vec::new();
        let Some(sock) = self.sock() else { return };
        let why = loop {
            let Ok(mut guard) = sock.readable().await else { break "the channel failed".to_string() };
            let got = match guard.try_io(|s| transport::recv::<Message>(s.get_ref().as_fd(), &mut buf)) {
                Ok(r) => r,
                Err(_would_block) => continue,
            };
            match got {
                Ok(Some((msg, fds))) => {
                    if let Err(why) = self.route(msg, fds) {
                        break why;
                    }
                }
                Ok(None) => break "the template exited".to_string(),
                Err(e) => break format!("the template broke the fork protocol: {e}"),
            }
        };
        drop(sock);
        self.fail_all(&why);
    }

    /// Routes one message. Every message the template may send answers something corral
    /// asked for and is still waiting on (`ready` once, `forked` and then `exit` once per
    /// fork requested, or `error` for that fork): anything else is a protocol error that
    /// ends the channel. So the work one template can cause here is bounded by the forks
    /// its caller asked for, however fast it writes, and each message is a map lookup.
    fn route(&self, msg: Message, fds: Vec<OwnedFd>) -> Result<(), String> {
        let mut routes = self.routes();
        match msg {
            Message::Ready => {
                let tx = routes.ready.take().ok_or("`ready` when not starting")?;
                let _ = tx.send(Ok(()));
            }
            Message::Forked { id, pid } => {
                // Checked before anything is handed on: what fails here is closed (dropped).
                clone_streams(&fds)?;
                if pid <= 0 {
                    return Err(format!("`forked` for clone {id} with pid {pid}"));
                }
                let tx = routes.forks.remove(&id).ok_or(format!("`forked` for unknown clone {id}"))?;
                let _ = tx.send(Ok((pid, fds)));
            }
            Message::Exit { id, code, signal } => {
                let status = match (code, signal) {
                    (Some(code), None) => ExitStatus::Exited { code },
                    (None, Some(signal)) => ExitStatus::Signaled { signal },
                    _ => return Err(format!("`exit` for clone {id} needs exactly one of code and signal")),
                };
                if routes.forks.contains_key(&id) {
                    return Err(format!("`exit` for clone {id} before `forked`"));
                }
                let tx = routes.exits.remove(&id).ok_or(format!("`exit` for unknown clone {id}"))?;
                let _ = tx.send(status);
            }
            Message::Error { id: Some(id), message } => {
                let tx = routes.forks.remove(&id).ok_or(format!("`error` for unknown fork {id}"))?;
                routes.exits.remove(&id);
                let _ = tx.send(Err(CorralError::spawn(format!("the template could not fork: {message}"))));
            }
            Message::Error { id: None, message } => return Err(format!("the template failed: {message}")),
            other => return Err(format!("unexpected message from the template: {other:?}")),
        }
        Ok(())
    }

    fn fail_all(&self, why: &str) {
        let mut routes = self.routes();
        routes.gone = Some(why.to_string());
        if let Some(tx) = routes.ready.take() {
            let _ = tx.send(Err(CorralError::spawn(format!("{why} before it was ready"))));
        }
        for (_, tx) in routes.forks.drain() {
            let _ = tx.send(Err(CorralError::spawn(why.to_string())));
        }
        // The template's sandbox ends with it, taking every clone along.
        for (_, tx) in routes.exits.drain() {
            let _ = tx.send(ExitStatus::Signaled { signal: libc::SIGKILL });
        }
        // Nothing more is read from it: closed now (a send in flight still holds it).
        self.sock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Checks that a clone's streams are what the protocol promises: exactly two descriptors,
/// stdout and stderr, each the read end of a pipe. Anything else is refused (and closed when
/// the caller drops it): a socket can fail a read with ECONNRESET, a directory cannot be
/// read at all, a device such as /dev/zero never ends, a write end never delivers.
fn clone_streams(fds: &[OwnedFd]) -> Result<(), String> {
    if fds.len() != 2 {
        return Err(format!("`forked` must carry 2 descriptors (stdout, stderr), got {}", fds.len()));
    }
    for (name, fd) in ["stdout", "stderr"].iter().zip(fds) {
        // SAFETY: fstat and fcntl(F_GETFL) on a descriptor we own, into a zeroed stat.
        let (mode, flags) = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            let rc = libc::fstat(fd.as_raw_fd(), &mut st);
            (if rc == 0 { Some(st.st_mode) } else { None }, libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))
        };
        let fifo = mode.is_some_and(|m| m & libc::S_IFMT == libc::S_IFIFO);
        if !fifo || flags < 0 || flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(format!("`forked` must carry the read ends of two pipes; the clone's {name} is not one"));
        }
    }
    Ok(())
}

fn io_error(e: std::io::Error) -> CorralError {
    CorralError::spawn(format!("fork channel: {e}"))
}

/// A running template: a sandboxed command that initialised once and forks clones on
/// request.
pub struct Template {
    sup: Arc<Supervisor>,
    sandbox_id: u64,
    /// Pid of the template sandbox's init, in this process's pid namespace.
    pub pid: i32,
    channel: Arc<Channel>,
    next_id: AtomicU64,
    /// Taken by the one `close()` (or a failed start).
    ending: Mutex<Option<Ending>>,
}

/// What finishing the template's sandbox needs.
struct Ending {
    waiter: run::Waiter,
    output: tokio::task::JoinHandle<(Drained, Drained)>,
}

/// A clone forked from a template. It runs inside the template's sandbox (same namespaces,
/// Landlock and seccomp rules, cgroup), in a process of its own.
pub struct Forked {
    /// Handle for `signal` (unique per template).
    pub id: u64,
    /// Its `CLONE_ID`.
    pub clone_id: u32,
    /// Pid inside the template's sandbox.
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    exit: oneshot::Receiver<ExitStatus>,
    channel: Arc<Channel>,
}

impl Template {
    /// Starts `plan`'s command as a template and waits until it says it is ready.
    pub async fn start(sup: Arc<Supervisor>, plan: &Plan) -> Result<Template, CorralError> {
        let (ours, theirs) = transport::pair().map_err(io_error)?;
        nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .map_err(|e| io_error(e.into()))?;
        let (ready_tx, ready_rx) = oneshot::channel();
        // SAFETY: `ours` is moved in, so nothing else closes it while it is registered.
        let sock = unsafe { AsyncFd::register(ours) }.map_err(|e| io_error(e.into()))?;
        let channel = Arc::new(Channel {
            sock: Mutex::new(Some(Arc::new(sock))),
            routes: Mutex::new(Routes { ready: Some(ready_tx), ..Routes::default() }),
        });
        let spawned = run::spawn(&sup, plan, false, None, Some(theirs)).await?;
        tokio::spawn(channel.clone().read_loop());
        let cap = plan.max_output_bytes.unwrap_or(TEMPLATE_OUTPUT_CAP).min(TEMPLATE_OUTPUT_CAP);
        let (out, err) = (spawned.stdout, spawned.stderr);
        let output = tokio::spawn(async move {
            let none = || async { (Vec::new(), false) };
            tokio::join!(
                async {
                    if let Some(fd) = out {
                        drain(fd, cap).await
                    } else {
                        none().await
                    }
                },
                async {
                    if let Some(fd) = err {
                        drain(fd, cap).await
                    } else {
                        none().await
                    }
                },
            )
        });
        let template = Template {
            sup,
            sandbox_id: spawned.id,
            pid: spawned.pid,
            channel,
            next_id: AtomicU64::new(0),
            ending: Mutex::new(Some(Ending { waiter: spawned.waiter, output })),
        };
        match ready_rx.await {
            Ok(Ok(())) => Ok(template),
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.message,
                    _ => "the template's channel closed".into(),
                };
                // Say how the template ended and what it printed: that is what explains it.
                let how = match template.finish().await {
                    Ok(out) => describe(&out),
                    Err(e) => format!(" ({})", e.message),
                };
                Err(CorralError::spawn(format!("{why}{how}")))
            }
        }
    }

    /// Forks `n` clones with `CLONE_ID` 0..n-1; resolves once all exist.
    pub async fn fork(&self, n: u32) -> Result<Vec<Forked>, CorralError> {
        let mut pending = Vec::with_capacity(n as usize);
        for clone_id in 0..n {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (fork_tx, fork_rx) = oneshot::channel();
            let (exit_tx, exit_rx) = oneshot::channel();
            {
                let mut routes = self.channel.routes();
                if let Some(why) = &routes.gone {
                    return Err(CorralError::spawn(why.clone()));
                }
                routes.forks.insert(id, fork_tx);
                routes.exits.insert(id, exit_tx);
            }
            self.channel.send(&Message::Fork { id, clone: clone_id }).await?;
            pending.push((id, clone_id, fork_rx, exit_rx));
        }
        let mut clones = Vec::with_capacity(pending.len());
        let mut failure = None;
        for (id, clone_id, fork_rx, exit) in pending {
            match fork_rx.await.unwrap_or_else(|_| Err(CorralError::spawn("the template went away"))) {
                Ok((pid, fds)) => {
                    let mut fds = fds.into_iter();
                    let (stdout, stderr) = (fds.next(), fds.next());
                    clones.push(Forked { id, clone_id, pid, stdout, stderr, exit, channel: self.channel.clone() });
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            None => Ok(clones),
            Some(e) => {
                // All or nothing: the clones that did start are killed.
                for c in &clones {
                    let _ = c.signal(libc::SIGKILL).await;
                }
                Err(e)
            }
        }
    }

    /// Tells the template to stop serving and waits for its sandbox to end (killing it
    /// after a grace period). Clones still running end with it.
    pub async fn close(&self) -> Result<Output, CorralError> {
        let _ = self.channel.send(&Message::Close).await;
        self.finish().await
    }

    /// Waits for the sandbox to end, killing it if it takes too long; collects its output.
    async fn finish(&self) -> Result<Output, CorralError> {
        let ending = self.ending.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(Ending { waiter, output }) = ending else {
            return Err(CorralError::invalid_state("the template was closed already"));
        };
        let wait = waiter.wait();
        tokio::pin!(wait);
        let ended = match tokio::time::timeout(CLOSE_GRACE, &mut wait).await {
            Ok(r) => r,
            Err(_) => {
                let _ = self.sup.signal(self.sandbox_id, libc::SIGKILL);
                wait.await
            }
        };
        let mut out = ended?;
        if let Ok(((stdout, t1), (stderr, t2))) = output.await {
            (out.stdout, out.stderr, out.truncated) = (stdout, stderr, t1 || t2);
        }
        Ok(out)
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        if self.ending.get_mut().map(|e| e.is_some()).unwrap_or(true) {
            // Dropped without close(): end the sandbox and its clones now.
            let _ = self.sup.signal(self.sandbox_id, libc::SIGKILL);
        }
    }
}

impl Forked {
    /// Sends `signal` to the clone (SIGSTOP/SIGCONT pause and resume it).
    pub async fn signal(&self, signal: i32) -> Result<(), CorralError> {
        self.channel.send(&Message::Signal { id: self.id, signal }).await
    }

    /// A handle for signalling the clone after `wait` took ownership of the clone.
    pub fn signaller(&self) -> Signaller {
        Signaller { id: self.id, channel: self.channel.clone() }
    }

    /// Resolves when the clone has exited.
    pub async fn wait(self) -> ExitStatus {
        self.exit.await.unwrap_or(ExitStatus::Signaled { signal: libc::SIGKILL })
    }

    /// Waits for the clone, collecting its output (each stream capped at `cap` bytes).
    pub async fn output(mut self, cap: u64) -> CloneOutput {
        let (out, err) = (self.stdout.take(), self.stderr.take());
        let ((stdout, _), (stderr, _)) = tokio::join!(drain_opt(out, cap), drain_opt(err, cap));
        let status = self.wait().await;
        CloneOutput { status, stdout, stderr }
    }
}

/// Signals a clone without owning it.
#[derive(Clone)]
pub struct Signaller {
    id: u64,
    channel: Arc<Channel>,
}

impl Signaller {
    pub async fn signal(&self, signal: i32) -> Result<(), CorralError> {
        self.channel.send(&Message::Signal { id: self.id, signal }).await
    }
}

async fn drain_opt(fd: Option<OwnedFd>, cap: u64) -> Drained {
    match fd {
        Some(fd) => drain(fd, cap).await,
        None => (Vec::new(), false),
    }
}

/// What a clone left behind.
#[derive(Debug)]
pub struct CloneOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Waits for every clone and runs `plan`'s command (the reducer) with their stdout
/// concatenated in `CLONE_ID` order on its stdin.
pub async fn reduce(sup: &Supervisor, plan: &Plan, clones: Vec<Forked>) -> Result<Output, CorralError> {
    let cap = plan.max_output_bytes.unwrap_or(u64::MAX);
    let mut outputs: Vec<(u32, CloneOutput)> =
        futures_join_all(clones.into_iter().map(|c| async move { (c.clone_id, c.output(cap).await) })).await;
    outputs.sort_by_key(|(id, _)| *id);
    let input: Vec<u8> = outputs.into_iter().flat_map(|(_, o)| o.stdout).collect();
    run::run(sup, plan, Some(input)).await
}

/// Awaits futures concurrently, keeping their order.
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn describe(out: &Output) -> String {
    let mut s = match out.stats.status {
        ExitStatus::Exited { code } => format!(" (it exited with code {code})"),
        ExitStatus::Signaled { signal } => format!(" (it was killed by signal {signal})"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr.trim_end().chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
    if !tail.is_empty() {
        s.push_str(&format!("; its stderr:\n{tail}"));
    }
    s
}

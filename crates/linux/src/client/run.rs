//! Running a command to completion and collecting its output. Runs in: the client.
//!
//! The command writes straight into pipes this process owns (the helper only passes the
//! descriptors on), and they are drained asynchronously so that a chatty command never
//! blocks on a full pipe. Past `max_output` bytes a stream is drained but not kept.

use crate::client::changes::Captured;
use crate::client::proxy::{self, Proxy};
use crate::client::{Finished, Stdio, Supervisor};
use corral_core::allowlist::Violation;
use corral_core::spec::MountSpec;
use corral_core::{CorralError, Plan, RunStats, SandboxSpec};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

#[derive(Debug)]
pub struct Output {
    pub stats: RunStats,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond the cap was discarded.
    pub truncated: bool,
    /// Writes captured by overlays, to list and commit or discard.
    pub captured: Option<Captured>,
    /// Connections the network proxy refused.
    pub violations: Vec<Violation>,
}

impl Output {
    /// What `finished` reports, with its overlay changes listed (on a thread of their own:
    /// listing takes time in proportion to what the command wrote). A listing that cannot
    /// be completed says so in itself; the result still arrives.
    pub async fn new(spec: &SandboxSpec, finished: Finished) -> Result<Output, CorralError> {
        let captured = match finished.layers {
            Some(root) => {
                let mut lowers: Vec<(usize, std::path::PathBuf)> = spec
                    .mounts
                    .iter()
                    .filter_map(|m| match m {
                        MountSpec::Overlay { lower, layer, .. } => Some((*layer, lower.clone())),
                        _ => None,
                    })
                    .collect();
                lowers.sort();
                let lowers = lowers.into_iter().map(|(_, l)| l).collect();
                Some(Captured::list(root, lowers).await?)
            }
            None => None,
        };
        Ok(Output {
            stats: finished.stats,
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
            captured,
            violations: Vec::new(),
        })
    }
}

pub fn pipe_pair() -> Result<(OwnedFd, OwnedFd), CorralError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| CorralError::spawn(format!("pipe: {e}")))
}

/// Reads a pipe to its end, keeping at most `cap` bytes; `true` if some were dropped.
pub async fn drain(fd: OwnedFd, cap: u64) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut truncated = false;
    let Ok(mut rx) = pipe::Receiver::from_owned_fd(fd) else { return (out, false) };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(out.len() as u64) as usize;
                if n > room {
                    truncated = true;
                }
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (out, truncated)
}

/// The command's stdin: a pipe that the returned future fills with `data`, or /dev/null
/// (the future then does nothing). A command that stops reading early is not an error.
pub fn stdin_from(data: Option<Vec<u8>>) -> Result<(Stdio, impl std::future::Future<Output = ()>), CorralError> {
    let (stdin, writer) = match data {
        Some(data) => {
            let (r, w) = pipe_pair()?;
            (Stdio::Fd(r), Some((w, data)))
        }
        None => (Stdio::Null, None),
    };
    let feed = async move {
        if let Some((w, data)) = writer {
            if let Ok(mut tx) = pipe::Sender::from_owned_fd(w) {
                let _ = tx.write_all(&data).await;
            }
        }
    };
    Ok((stdin, feed))
}

/// Starts the allow-list proxy a proxied plan needs; the sandbox's end of its channel goes
/// with the spawn request ([`Proxy::take_sandbox_end`]).
pub async fn network(plan: &Plan) -> Result<(SandboxSpec, Option<Proxy>), CorralError> {
    let Some(rules) = &plan.network else { return Ok((plan.spec.clone(), None)) };
    let proxy = proxy::start(Arc::new(rules.clone()))
        .await
        .map_err(|e| CorralError::spawn(format!("starting the network proxy: {e}")))?;
    Ok((plan.spec.clone(), Some(proxy)))
}

/// The channel end a spawn request carries for `proxy`.
fn proxy_end(proxy: &mut Option<Proxy>) -> Option<OwnedFd> {
    proxy.as_mut().and_then(Proxy::take_sandbox_end)
}

/// Stops the proxy, keeping what it refused.
pub async fn finish(out: &mut Output, proxy: Option<Proxy>) {
    if let Some(p) = proxy {
        out.violations = p.violations();
        p.shutdown().await;
    }
}

/// Runs `plan` with the given stdio (e.g. the caller's own terminal) and waits for it.
pub async fn run_with_stdio(sup: &Supervisor, plan: &Plan, stdio: [Stdio; 3]) -> Result<Output, CorralError> {
    let (spec, mut proxy) = network(plan).await?;
    let mut sandbox = sup.spawn(&spec, stdio, proxy_end(&mut proxy))?;
    sandbox.started().await?;
    let mut out = Output::new(&spec, sandbox.wait().await?).await?;
    finish(&mut out, proxy).await;
    Ok(out)
}

/// Runs `plan` to completion, capturing output (each stream capped at the plan's
/// `max_output_bytes`). Must be called within a tokio runtime with I/O enabled.
pub async fn run(sup: &Supervisor, plan: &Plan, stdin: Option<Vec<u8>>) -> Result<Output, CorralError> {
    let (spec, mut proxy) = network(plan).await?;
    let cap = plan.max_output_bytes.unwrap_or(u64::MAX);
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let (stdin, feed) = stdin_from(stdin)?;
    let mut sandbox = sup.spawn(&spec, [stdin, Stdio::Fd(out_w), Stdio::Fd(err_w)], proxy_end(&mut proxy))?;
    let started = sandbox.started();
    let ((stdout, t1), (stderr, t2), (), started) = tokio::join!(drain(out_r, cap), drain(err_r, cap), feed, started);
    started?;
    let mut out = Output::new(&spec, sandbox.wait().await?).await?;
    (out.stdout, out.stderr, out.truncated) = (stdout, stderr, t1 || t2);
    finish(&mut out, proxy).await;
    Ok(out)
}

/// A sandbox running with pipes (or a terminal) whose other ends the caller streams.
pub struct Spawned {
    pub id: u64,
    /// Pid of the sandbox's init in the caller's pid namespace.
    pub pid: i32,
    /// Write end of the command's stdin, if it has one (else it reads /dev/null).
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The master side of the command's terminal, in terminal mode (stdio is the terminal).
    pub terminal: Option<OwnedFd>,
    pub waiter: Waiter,
}

/// What finishing a spawned sandbox needs.
pub struct Waiter {
    spec: SandboxSpec,
    sandbox: crate::client::Sandbox,
    proxy: Option<Proxy>,
}

impl Waiter {
    /// Resolves when every process of the sandbox is gone.
    pub async fn wait(self) -> Result<Output, CorralError> {
        let mut out = Output::new(&self.spec, self.sandbox.wait().await?).await?;
        finish(&mut out, self.proxy).await;
        Ok(out)
    }
}

/// The environment variable that tells a copy-on-write template where its fork channel is.
pub const FORK_FD_ENV: &str = "CORRAL_FORK_FD";

/// Starts `plan` with fresh pipes, or with a terminal of its own when `terminal` is set,
/// and returns once the sandbox exists. With `channel`, the command gets it as fd 3 and
/// `CORRAL_FORK_FD=3` (a copy-on-write template).
pub async fn spawn(
    sup: &Supervisor,
    plan: &Plan,
    with_stdin: bool,
    terminal: Option<corral_core::spec::TerminalSize>,
    channel: Option<OwnedFd>,
) -> Result<Spawned, CorralError> {
    if terminal.is_some() && channel.is_some() {
        return Err(CorralError::policy("pty", "a copy-on-write template cannot have a terminal"));
    }
    let (mut spec, mut proxy) = network(plan).await?;
    spec.terminal = terminal;
    if channel.is_some() {
        spec.env.insert(FORK_FD_ENV.into(), "3".into());
    }
    let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
    let mut stdio = [Stdio::Null, Stdio::Null, Stdio::Null];
    if terminal.is_none() {
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        (ours[1], ours[2]) = (Some(out_r), Some(err_r));
        (stdio[1], stdio[2]) = (Stdio::Fd(out_w), Stdio::Fd(err_w));
        if with_stdin {
            let (r, w) = pipe_pair()?;
            ours[0] = Some(w);
            stdio[0] = Stdio::Fd(r);
        }
    }
    let mut sandbox = match channel {
        Some(channel) => sup.spawn_with_channel(&spec, stdio, channel, proxy_end(&mut proxy))?,
        None => sup.spawn(&spec, stdio, proxy_end(&mut proxy))?,
    };
    let pid = sandbox.started().await?;
    let terminal = match terminal {
        Some(_) => {
            // Callers stream pipes, whatever the mode: relay the terminal through a pair.
            let master = sandbox.terminal().await?;
            let (out_r, out_w) = pipe_pair()?;
            let (in_r, in_w) = pipe_pair()?;
            (ours[0], ours[1]) = (Some(in_w), Some(out_r));
            relay_terminal(
                master.try_clone().map_err(|e| CorralError::spawn(format!("dup terminal: {e}")))?,
                in_r,
                out_w,
            )?;
            Some(master)
        }
        None => None,
    };
    let id = sandbox.id;
    let [stdin, stdout, stderr] = ours;
    Ok(Spawned { id, pid, stdin, stdout, stderr, terminal, waiter: Waiter { spec, sandbox, proxy } })
}

/// Copies terminal output to `out` and `input` to the terminal until either side ends.
/// (Node cannot stream a pty master itself: its tty streams reopen the device by name.)
fn relay_terminal(master: OwnedFd, input: OwnedFd, out: OwnedFd) -> Result<(), CorralError> {
    use tokio::io::unix::AsyncFd;
    let fail = |e: std::io::Error| CorralError::spawn(format!("relaying the terminal: {e}"));
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
        .map_err(|e| fail(e.into()))?;
    // SAFETY: `master` is an OwnedFd moved in here, so nothing else closes it while it is
    // registered.
    let master = std::sync::Arc::new(unsafe { AsyncFd::register(master) }.map_err(|e| fail(e.into()))?);
    let reader = master.clone();
    tokio::spawn(async move {
        let Ok(mut out) = pipe::Sender::from_owned_fd(out) else { return };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Ok(mut guard) = reader.readable().await else { return };
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
                Ok(Ok(0)) | Ok(Err(_)) => return, // EIO: the last holder of the terminal is gone
                Ok(Ok(n)) => {
                    if out.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(_would_block) => continue,
            }
        }
    });
    tokio::spawn(async move {
        let Ok(mut input) = pipe::Receiver::from_owned_fd(input) else { return };
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = input.read(&mut buf).await {
            if n == 0 {
                return;
            }
            let mut data = &buf[..n];
            while !data.is_empty() {
                let Ok(mut guard) = master.writable().await else { return };
                match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from)) {
                    Ok(Ok(w)) => data = &data[w..],
                    Ok(Err(_)) => return,
                    Err(_would_block) => continue,
                }
            }
        }
    });
    Ok(())
}

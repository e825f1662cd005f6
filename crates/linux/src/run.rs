//! Running a command to completion and collecting its output. Runs in: the client.
//!
//! The command writes straight into pipes this process owns (the helper only passes the
//! descriptors on), and they are drained asynchronously so that a chatty command never
//! blocks on a full pipe. Past `max_output` bytes a stream is drained but not kept.

use crate::changes::Captured;
use crate::client::{Finished, Stdio, Supervisor};
use crate::proxy::{self, Proxy};
use corral_core::net::Violation;
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
    fn new(spec: &SandboxSpec, finished: Finished) -> Result<Output, CorralError> {
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
                Some(
                    Captured::new(root, lowers)
                        .map_err(|e| CorralError::internal(format!("listing captured changes: {e}")))?,
                )
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

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), CorralError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| CorralError::spawn(format!("pipe: {e}")))
}

async fn drain(fd: OwnedFd, cap: u64) -> (Vec<u8>, bool) {
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

/// Starts the allow-list proxy a proxied plan needs, and the spec that points at it.
async fn network(plan: &Plan) -> Result<(SandboxSpec, Option<Proxy>), CorralError> {
    let Some(rules) = &plan.network else { return Ok((plan.spec.clone(), None)) };
    let proxy = proxy::start(Arc::new(rules.clone()))
        .await
        .map_err(|e| CorralError::spawn(format!("starting the network proxy: {e}")))?;
    let mut spec = plan.spec.clone();
    spec.proxy_socket = Some(proxy.socket_path().to_path_buf());
    Ok((spec, Some(proxy)))
}

/// Stops the proxy, keeping what it refused.
async fn finish(out: &mut Output, proxy: Option<Proxy>) {
    if let Some(p) = proxy {
        out.violations = p.violations();
        p.shutdown().await;
    }
}

/// Runs `plan` with the given stdio (e.g. the caller's own terminal) and waits for it.
pub async fn run_with_stdio(sup: &Supervisor, plan: &Plan, stdio: [Stdio; 3]) -> Result<Output, CorralError> {
    let (spec, proxy) = network(plan).await?;
    let mut sandbox = sup.spawn(&spec, stdio)?;
    sandbox.started().await?;
    let mut out = Output::new(&spec, sandbox.wait().await?)?;
    finish(&mut out, proxy).await;
    Ok(out)
}

/// Runs `plan` to completion, capturing output (each stream capped at the plan's
/// `max_output_bytes`). Must be called within a tokio runtime with I/O enabled.
pub async fn run(sup: &Supervisor, plan: &Plan, stdin: Option<Vec<u8>>) -> Result<Output, CorralError> {
    let (spec, proxy) = network(plan).await?;
    let cap = plan.max_output_bytes.unwrap_or(u64::MAX);
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let (stdin_stdio, stdin_writer) = match stdin {
        Some(data) => {
            let (r, w) = pipe_pair()?;
            (Stdio::Fd(r), Some((w, data)))
        }
        None => (Stdio::Null, None),
    };
    let mut sandbox = sup.spawn(&spec, [stdin_stdio, Stdio::Fd(out_w), Stdio::Fd(err_w)])?;
    let feed = async move {
        if let Some((w, data)) = stdin_writer {
            if let Ok(mut tx) = pipe::Sender::from_owned_fd(w) {
                // A command that stops reading early is not an error.
                let _ = tx.write_all(&data).await;
            }
        }
    };
    let started = sandbox.started();
    let ((stdout, t1), (stderr, t2), (), started) = tokio::join!(drain(out_r, cap), drain(err_r, cap), feed, started);
    started?;
    let mut out = Output::new(&spec, sandbox.wait().await?)?;
    (out.stdout, out.stderr, out.truncated) = (stdout, stderr, t1 || t2);
    finish(&mut out, proxy).await;
    Ok(out)
}

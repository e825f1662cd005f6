//! Messages from inside a sandbox to the helper, over the per-sandbox report socket.
//!
//! Runs in: sandbox init and command (writers), helper (reader). The socket is a
//! `SOCK_SEQPACKET` pair, so each report is one message and may carry a descriptor (the
//! overlay layers). The command's copy is close-on-exec, so a successful `execve` says
//! nothing and only failures and the final status are written.

use crate::ipc::protocol;
use corral_core::ExitStatus;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Report {
    /// A setup step failed; nothing of the command ran.
    SetupFailed { step: String, message: String, errno: Option<i32> },
    /// `execve` of the command failed.
    ExecFailed { program: String, errno: i32 },
    /// The overlays' upper layers, attached as a directory descriptor.
    Layers,
    /// The master side of the command's terminal, attached.
    Terminal,
    /// A prepared sandbox is ready for its command.
    Ready,
    /// The command ended (written by init once every other process of the sandbox is gone,
    /// so the helper can answer before the namespaces finish tearing down). `usage` covers
    /// the whole tree.
    Exited { status: ExitStatus, usage: Option<Usage> },
}

/// CPU and memory of the sandbox's processes, from init's `getrusage(RUSAGE_CHILDREN)`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub user_us: u64,
    pub system_us: u64,
    pub max_rss_bytes: u64,
}

impl Usage {
    /// From a `getrusage`/`wait4` record (times in µs, `ru_maxrss` in KiB).
    pub fn from_rusage(ru: &libc::rusage) -> Usage {
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Usage { user_us: us(ru.ru_utime), system_us: us(ru.ru_stime), max_rss_bytes: ru.ru_maxrss as u64 * 1024 }
    }
}

/// A warm sandbox's command, sent by the helper to init over the report socket with the
/// stdio descriptors marked `Fd` attached in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub argv: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub cwd: std::path::PathBuf,
    pub stdio: [crate::ipc::protocol::StdioKind; 3],
}

impl Report {
    /// Sends the report; errors are ignored because the writer is about to exit and the
    /// helper treats a missing report as an abnormal death.
    pub fn send(&self, sock: BorrowedFd<'_>) {
        let _ = protocol::send(sock, self, &[]);
    }

    pub fn send_with(&self, sock: BorrowedFd<'_>, fd: &OwnedFd) {
        let _ = protocol::send(sock, self, &[fd.as_raw_fd()]);
    }

    /// Reads every report queued now, with the descriptors each carried; `true` once the
    /// writers are all gone.
    pub fn read_queued(sock: BorrowedFd<'_>) -> (Vec<(Report, Vec<OwnedFd>)>, bool) {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match protocol::recv_nonblocking::<Report>(sock, &mut buf) {
                Ok(protocol::Received::Message(r, fds)) => out.push((r, fds)),
                Ok(protocol::Received::Empty) => return (out, false),
                Ok(protocol::Received::Closed) | Err(_) => return (out, true),
            }
        }
    }
}

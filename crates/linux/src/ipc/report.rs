//! The messages between the helper and one sandbox, over that sandbox's report socket
//! (see [`transport`]): [`Report`]s from inside, and a prepared
//! sandbox's [`Exec`] from the helper.
//!
//! Runs in: sandbox init and command (they write reports and read `Exec`), helper (the
//! other end). A report may carry a descriptor (the overlay layers, a terminal). The
//! command's copy of the socket is close-on-exec, so a successful `execve` says nothing
//! and only failures and the final status are written.

use super::transport::{self, Received, StdioKind, Wire};
use corral_core::command::Command;
use corral_core::ExitStatus;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// Largest message on a report socket (an `Exec` carries a whole environment).
pub const MAX_MESSAGE: usize = 1 << 20;

impl Wire for Report {
    const MAX_LEN: usize = MAX_MESSAGE;
}

impl Wire for Exec {
    const MAX_LEN: usize = MAX_MESSAGE;
}

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
    /// Carve-outs to keep in place while the command runs: the inotify instance watching
    /// them, the empty file masks are bound from, a writer of this socket (for the warden,
    /// `crate::helper::warden`, to report a carve-out it cannot put back), and the
    /// sandbox's user and mount namespaces, attached.
    Watching,
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

/// A prepared sandbox's command, sent by the helper to its waiting command process with
/// the stdio descriptors marked `Fd` attached in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Exec {
    pub command: Command,
    pub stdio: [StdioKind; 3],
}

impl Report {
    /// Sends the report; errors are ignored because the writer is about to exit and the
    /// helper treats a missing report as an abnormal death.
    pub fn send(&self, sock: BorrowedFd<'_>) {
        let _ = transport::send(sock, self, &[]);
    }

    pub fn send_with(&self, sock: BorrowedFd<'_>, fd: &OwnedFd) {
        let _ = transport::send(sock, self, &[fd.as_raw_fd()]);
    }

    /// Sends the report with several descriptors attached; whether it went.
    pub fn send_with_all(&self, sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> bool {
        let raw: Vec<std::os::fd::RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        transport::send(sock, self, &raw).is_ok()
    }

    /// Reads every report queued now, with the descriptors each carried; `true` once the
    /// writers are all gone.
    pub fn read_queued(sock: BorrowedFd<'_>) -> (Vec<(Report, Vec<OwnedFd>)>, bool) {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match transport::recv_nonblocking::<Report>(sock, &mut buf) {
                Ok(Received::Message(r, fds)) => out.push((r, fds)),
                Ok(Received::Empty) => return (out, false),
                Ok(Received::Closed) | Err(_) => return (out, true),
            }
        }
    }
}

//! Messages from inside a sandbox to the helper, over the per-sandbox report socket.
//!
//! Runs in: sandbox init and command (writers), helper (reader). The socket is a
//! `SOCK_SEQPACKET` pair, so each report is one message and may carry a descriptor (the
//! overlay layers). The command's copy is close-on-exec, so a successful `execve` says
//! nothing and only failures and the final status are written.

use crate::protocol;
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
    /// The command ended (written by init).
    Exited { status: ExitStatus },
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

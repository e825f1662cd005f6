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

    /// Reads every queued report (the writers are gone, so this never blocks for long),
    /// with the descriptors they carried.
    pub fn read_all(sock: BorrowedFd<'_>) -> (Vec<Report>, Vec<OwnedFd>) {
        let mut buf = Vec::new();
        let mut reports = Vec::new();
        let mut fds = Vec::new();
        while let Ok(Some((r, mut f))) = protocol::recv_nonblocking::<Report>(sock, &mut buf) {
            reports.push(r);
            fds.append(&mut f);
        }
        (reports, fds)
    }
}

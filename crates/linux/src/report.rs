//! Messages from inside a sandbox to the helper, over the per-sandbox report pipe.
//!
//! Runs in: sandbox init and command (writers), helper (reader). The command's copy of
//! the pipe is close-on-exec, so a successful `execve` says nothing and only failures and
//! the final status are written. Each message is one JSON line, written with a single
//! `write` well under PIPE_BUF, so lines never interleave.

use corral_core::ExitStatus;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, BorrowedFd};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Report {
    /// A setup step failed; nothing of the command ran.
    SetupFailed { step: String, message: String, errno: Option<i32> },
    /// `execve` of the command failed.
    ExecFailed { program: String, errno: i32 },
    /// The command ended (written by init).
    Exited { status: ExitStatus },
}

impl Report {
    /// Writes the report; errors are ignored because the writer is about to exit and the
    /// helper treats a missing report as an abnormal death.
    pub fn send(&self, fd: BorrowedFd<'_>) {
        if let Ok(mut line) = serde_json::to_vec(self) {
            line.push(b'\n');
            // SAFETY: plain write(2) of a buffer we own to a descriptor we borrow.
            unsafe { libc::write(fd.as_raw_fd(), line.as_ptr().cast(), line.len()) };
        }
    }

    /// Parses every complete line of `buf`.
    pub fn parse_all(buf: &[u8]) -> Vec<Report> {
        buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).filter_map(|l| serde_json::from_slice(l).ok()).collect()
    }
}

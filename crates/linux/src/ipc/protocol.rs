//! The typed protocol between a client and the helper.
//!
//! Runs in: client and helper. Transport: a `SOCK_SEQPACKET` socketpair (message
//! boundaries kept, `SOCK_CLOEXEC`), one JSON message per packet, file descriptors
//! attached with `SCM_RIGHTS`. Every request carries an `id` chosen by the client; every
//! response names the `id` it answers, so many sandboxes can be in flight at once.

use corral_core::{CorralError, HostCapabilities, RunStats, SandboxSpec};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Largest message we accept (a spec with a large inherited environment fits easily).
pub const MAX_MESSAGE: usize = 1 << 20;
/// At most this many descriptors ride on one message.
pub const MAX_FDS: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Request {
    /// First message: the helper answers with its version so stale binaries are caught.
    Hello { version: String },
    /// Report host capabilities.
    Probe,
    /// Create a sandbox and run `spec.argv` in it. `stdio` says which of stdin, stdout,
    /// stderr come as attached descriptors (in that order) and which are `/dev/null`.
    /// `channel`: one more descriptor follows the stdio ones, for the command's fd 3 (a
    /// copy-on-write template's fork channel).
    Spawn {
        id: u64,
        spec: Box<SandboxSpec>,
        stdio: [StdioKind; 3],
        #[serde(default)]
        channel: bool,
    },
    /// Create a sandbox that waits for its command (a warm pool's); `Started` follows once
    /// it is ready.
    Prepare { id: u64, spec: Box<SandboxSpec> },
    /// Run a command in a prepared sandbox: stdio descriptors attached as for `Spawn`.
    Exec { id: u64, command: Box<crate::ipc::report::Command>, timeout_ms: Option<u64> },
    /// Send a signal to the sandbox's command (SIGKILL kills the whole sandbox).
    Signal { id: u64, signal: i32 },
    /// Stop (`freeze: true`) or continue every process of the sandbox; answered by `Done`.
    Freeze { op: u64, id: u64, freeze: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StdioKind {
    Null,
    Fd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Response {
    Hello {
        version: String,
        pid: i32,
    },
    Probe {
        caps: Box<HostCapabilities>,
    },
    /// The sandbox exists; `pid` is its init in the caller's pid namespace.
    Started {
        id: u64,
        pid: i32,
    },
    /// The command ran and the sandbox is gone.
    Exited {
        id: u64,
        stats: RunStats,
    },
    /// The sandbox could not be created or the command could not be started; nothing is
    /// left behind.
    Failed {
        id: u64,
        error: CorralError,
    },
    /// The master side of the command's terminal is attached.
    Terminal {
        id: u64,
    },
    /// The answer to a control request such as `Freeze`.
    Done {
        op: u64,
        error: Option<CorralError>,
    },
}

pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)
}

/// Sends one message with its descriptors. `MSG_NOSIGNAL`: a dead peer is an error, not
/// a SIGPIPE.
pub fn send<T: Serialize>(sock: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "message too large"));
    }
    let iov = [IoSlice::new(&bytes)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and its descriptors (close-on-exec). `Ok(None)` at end of stream.
pub fn recv<T: for<'de> Deserialize<'de>>(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    recv_flags(sock, buf, MsgFlags::empty())
}

/// What a non-blocking receive found.
pub enum Received<T> {
    Message(T, Vec<OwnedFd>),
    /// Nothing queued now.
    Empty,
    /// The peer is gone and nothing is left.
    Closed,
}

/// Receives one message if one is queued, without waiting.
pub fn recv_nonblocking<T: for<'de> Deserialize<'de>>(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
) -> io::Result<Received<T>> {
    match recv_flags(sock, buf, MsgFlags::MSG_DONTWAIT) {
        Ok(Some((m, fds))) => Ok(Received::Message(m, fds)),
        Ok(None) => Ok(Received::Closed),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Received::Empty),
        Err(e) => Err(e),
    }
}

fn recv_flags<T: for<'de> Deserialize<'de>>(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    flags: MsgFlags,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    // Size the buffer to the datagram (MSG_PEEK|MSG_TRUNC returns its full length): most
    // messages are a few hundred bytes, and zeroing a fresh 1 MiB buffer for each one
    // (page faults included) cost more than the rest of a report's handling.
    let need = loop {
        // SAFETY: a zero-length peek; no buffer is written.
        let n = unsafe {
            libc::recv(sock.as_raw_fd(), std::ptr::null_mut(), 0, libc::MSG_PEEK | libc::MSG_TRUNC | flags.bits())
        };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if need > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "message too long"));
    }
    if buf.len() < need.max(1) {
        buf.resize(need.max(1), 0);
    }
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC | flags) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(list.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                if msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "message truncated"));
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..len]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fds)))
}

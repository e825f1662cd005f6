//! The fork protocol's messages and their framing (docs/fork-protocol.md). Runs in: both
//! the driver (corral) and a Rust template.
//!
//! One message is one datagram on a SOCK_SEQPACKET socket: a JSON object whose `op` names
//! it. Descriptors ride along with `forked` as SCM_RIGHTS.

use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Largest message either side sends; anything longer is a protocol error.
pub const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Message {
    /// Template → corral: initialised, ready to fork.
    Ready,
    /// corral → template: fork one clone. `id` names it in later messages; `clone` is its
    /// `CLONE_ID`.
    Fork { id: u64, clone: u32 },
    /// Template → corral: the clone exists (`pid` in the sandbox's pid namespace); carries
    /// the read ends of its stdout and stderr.
    Forked { id: u64, pid: i32 },
    /// Template → corral: the clone is gone, with `code` or `signal`.
    Exit {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// corral → template: send `signal` to the clone.
    Signal { id: u64, signal: i32 },
    /// Template → corral: a request failed (`id` is the fork's), or the template cannot go on.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        message: String,
    },
    /// corral → template: no more forks; the template's serve loop returns.
    Close,
}

/// Sends `msg` with `fds` attached. A blocking socket blocks; a non-blocking one may
/// return `WouldBlock`.
pub fn send(sock: BorrowedFd<'_>, msg: &Message, fds: &[RawFd]) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let iov = [IoSlice::new(&body)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message and its descriptors (close-on-exec); `None` at end of stream.
pub fn recv(sock: BorrowedFd<'_>) -> std::io::Result<Option<(Message, Vec<OwnedFd>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let (len, fds, truncated) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: descriptors just received are ours alone.
                fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (msg.bytes, fds, truncated)
    };
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "fork message too long"));
    }
    let msg = serde_json::from_slice(&buf[..len])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad fork message: {e}")))?;
    Ok(Some((msg, fds)))
}

/// A connected SOCK_SEQPACKET pair, close-on-exec.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    Ok(socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn messages_have_the_documented_shape() {
        let j = |m: &Message| serde_json::to_string(m).unwrap();
        assert_eq!(j(&Message::Ready), r#"{"op":"ready"}"#);
        assert_eq!(j(&Message::Fork { id: 7, clone: 2 }), r#"{"op":"fork","id":7,"clone":2}"#);
        assert_eq!(j(&Message::Exit { id: 7, code: Some(0), signal: None }), r#"{"op":"exit","id":7,"code":0}"#);
        let parsed: Message = serde_json::from_str(r#"{"op":"error","message":"boom"}"#).unwrap();
        assert_eq!(parsed, Message::Error { id: None, message: "boom".into() });
    }

    #[test]
    fn descriptors_travel_with_a_message() {
        let (a, b) = pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send(a.as_fd(), &Message::Forked { id: 1, pid: 42 }, &[r.as_raw_fd()]).unwrap();
        let (msg, fds) = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!(msg, Message::Forked { id: 1, pid: 42 });
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv(b.as_fd()).unwrap().is_none(), "end of stream once the peer closes");
    }
}

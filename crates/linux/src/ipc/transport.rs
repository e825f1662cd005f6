//! The one transport under every channel between corral's processes: a `SOCK_SEQPACKET`
//! Unix socket pair (`SOCK_CLOEXEC`), one JSON message per datagram, file descriptors
//! attached with `SCM_RIGHTS`. Runs in: every process that speaks a channel — the client,
//! the helper, a sandbox's init and command, and a copy-on-write template.
//!
//! Datagrams keep message boundaries, so there is no framing to get wrong; each kind of
//! message says how long it may be ([`Wire::MAX_LEN`]) and a longer one is an error at
//! either end. Interrupted calls are retried; a send to a peer that is gone is an error,
//! never a `SIGPIPE`.

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// At most this many descriptors ride on one message.
pub const MAX_FDS: usize = 8;

/// A kind of message that travels on a channel.
pub trait Wire {
    /// The longest datagram of this kind, in bytes, that either end accepts.
    const MAX_LEN: usize;
}

/// How one of a command's standard streams is given: as a descriptor attached to the
/// message (in stdin, stdout, stderr order), or as `/dev/null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StdioKind {
    Null,
    Fd,
}

/// A connected pair, close-on-exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)
}

/// Sends one message with `fds` attached. A blocking socket blocks; a non-blocking one
/// may return `WouldBlock`.
pub fn send<T: Wire + Serialize>(sock: BorrowedFd<'_>, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if bytes.len() > T::MAX_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "message too large"));
    }
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    if fds.is_empty() {
        // send(2) (sendto without an address): a sandboxed command's own reports then pass
        // its socket gate without stopping there.
        loop {
            // SAFETY: send from a buffer we own.
            let n = unsafe { libc::send(sock.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    let iov = [IoSlice::new(&bytes)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and its descriptors (close-on-exec); `Ok(None)` at end of stream.
/// `buf` is reused across calls and grows to the longest datagram seen.
pub fn recv<T: Wire + DeserializeOwned>(
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
pub fn recv_nonblocking<T: Wire + DeserializeOwned>(
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

fn recv_flags<T: Wire + DeserializeOwned>(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    flags: MsgFlags,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    // Size the buffer to the datagram (MSG_PEEK|MSG_TRUNC returns its full length): most
    // messages are a few hundred bytes, and zeroing a buffer of the largest size for each
    // one (page faults included) cost more than the rest of a report's handling.
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
    if need > T::MAX_LEN {
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
                if msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }

    impl Wire for Note {
        const MAX_LEN: usize = 64;
    }

    fn note(text: &str) -> Note {
        Note { text: text.into() }
    }

    #[test]
    fn messages_keep_their_boundaries_and_descriptors() {
        let (a, b) = pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send(a.as_fd(), &note("one"), &[r.as_raw_fd()]).unwrap();
        send(a.as_fd(), &note("two"), &[]).unwrap();
        let mut buf = Vec::new();
        let (first, fds) = recv::<Note>(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!((first, fds.len()), (note("one"), 1));
        assert!(
            matches!(recv_nonblocking::<Note>(b.as_fd(), &mut buf).unwrap(), Received::Message(m, _) if m == note("two"))
        );
        assert!(matches!(recv_nonblocking::<Note>(b.as_fd(), &mut buf).unwrap(), Received::Empty));
        drop(a);
        assert!(recv::<Note>(b.as_fd(), &mut buf).unwrap().is_none(), "end of stream once the peer closes");
    }

    #[test]
    fn each_kind_has_its_length_limit() {
        let (a, b) = pair().unwrap();
        let long = note(&"x".repeat(100));
        assert_eq!(send(a.as_fd(), &long, &[]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        // A peer that sends more than the kind allows is refused on receipt.
        let bytes = serde_json::to_vec(&long).unwrap();
        nix::sys::socket::send(a.as_raw_fd(), &bytes, MsgFlags::empty()).unwrap();
        let e = recv::<Note>(b.as_fd(), &mut Vec::new()).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}

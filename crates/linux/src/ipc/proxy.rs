//! The channel between a sandbox's network bridge and its allow-list proxy. Runs in: the
//! client (the proxy creates the channel and receives connections) and sandbox init (the
//! bridge opens connections).
//!
//! There is no socket path anyone could find: each proxy serves exactly one sandbox, over
//! one `SOCK_SEQPACKET` pair made for it. The proxy keeps one end; the other travels with
//! the spawn request to the helper and on to the sandbox's init. For every connection the
//! command makes to the bridge, the bridge creates a stream socketpair, keeps one end and
//! sends the other over the channel (one byte, the end attached with `SCM_RIGHTS`). Only
//! the holder of the channel can reach the proxy at all, so the proxy needs no peer check:
//! another sandbox, or a command that finds a path, has nothing to connect to.

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The one byte each channel message carries (a stream end rides on it).
const CONNECTION: u8 = b'c';

/// A new channel: (the proxy's end, the sandbox's end), both close-on-exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)
}

/// Opens one connection to the proxy without waiting: our end of a fresh stream pair, the
/// other end sent over `channel`. `WouldBlock` when the proxy is not keeping up (the
/// channel's queue is full); the caller drops the connection then.
pub fn open(channel: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
    let fds = [theirs.as_raw_fd()];
    let iov = [io::IoSlice::new(&[CONNECTION])];
    loop {
        match sendmsg::<()>(
            channel.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(ours),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What one non-blocking receive on the proxy's end found.
pub enum Received {
    /// A connection: the proxy's end of a stream socket the bridge opened.
    Connection(OwnedFd),
    /// A message that is not a connection (ignored; the channel stays usable).
    Malformed,
    /// Nothing queued now.
    Empty,
    /// The sandbox's end is closed: no more connections will come.
    Closed,
}

/// Takes one message off the proxy's end of the channel, checking that it carries what the
/// protocol promises (exactly one Unix stream socket) whatever the other side sent.
pub fn receive(channel: BorrowedFd<'_>) -> io::Result<Received> {
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let msg = match recvmsg::<()>(
        channel.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    ) {
        Ok(msg) => msg,
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => return Ok(Received::Empty),
        Err(e) => return Err(e.into()),
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: descriptors just received are ours alone.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    if truncated || msg.bytes != 1 || byte[0] != CONNECTION || fds.len() != 1 {
        return Ok(Received::Malformed);
    }
    let fd = fds.pop().unwrap_or_else(|| unreachable!("one descriptor checked above"));
    Ok(if is_unix_stream(&fd) { Received::Connection(fd) } else { Received::Malformed })
}

fn is_unix_stream(fd: &OwnedFd) -> bool {
    let Ok(st) = nix::sys::stat::fstat(fd) else { return false };
    st.st_mode & libc::S_IFMT == libc::S_IFSOCK
        && int_option(fd, libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && int_option(fd, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}

/// An integer `SOL_SOCKET` option.
pub(crate) fn int_option(fd: &impl AsRawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a local int of the length we pass.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, option, (&mut value as *mut libc::c_int).cast(), &mut len)
    };
    (rc == 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_connection_travels_and_anything_else_is_refused() {
        let (proxy, sandbox) = pair().unwrap();
        let ours = open(sandbox.as_fd()).unwrap();
        let Received::Connection(theirs) = receive(proxy.as_fd()).unwrap() else { panic!("no connection") };
        nix::unistd::write(&ours, b"hi").unwrap();
        let mut buf = [0u8; 2];
        nix::unistd::read(&theirs, &mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        assert!(matches!(receive(proxy.as_fd()).unwrap(), Received::Empty));

        // A pipe where a socket belongs, two descriptors, no descriptor: refused.
        let (r, _w) = nix::unistd::pipe().unwrap();
        let iov = [io::IoSlice::new(&[CONNECTION])];
        let send = |fds: &[RawFd]| {
            let cmsgs = [ControlMessage::ScmRights(fds)];
            let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
            sendmsg::<()>(sandbox.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).unwrap();
        };
        send(&[r.as_raw_fd()]);
        send(&[ours.as_raw_fd(), ours.as_raw_fd()]);
        send(&[]);
        for _ in 0..3 {
            assert!(matches!(receive(proxy.as_fd()).unwrap(), Received::Malformed));
        }
        drop(sandbox);
        assert!(matches!(receive(proxy.as_fd()).unwrap(), Received::Closed));
    }
}

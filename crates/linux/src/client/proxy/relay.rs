//! An established tunnel: handed to the sandbox's bridge, or relayed here.
//!
//! Runs in: the client, on the proxy's tokio tasks.
//!
//! Hand-off (the bridge asked for it with [`HANDOFF_HELLO`]): the proxy sends the bridge
//! one message, [`HANDOFF_MARK`] followed by the reply the client is owed, carrying the
//! upstream socket as SCM_RIGHTS. From then on the bridge splices between the command's
//! connection and the upstream socket directly, and the proxy is out of the data path (on
//! 2 cores, one process and one copy fewer per byte). Bytes the client sent before the
//! bridge switched over still reach the proxy: it forwards them upstream until the bridge
//! closes its end, then lets go. The destination was decided before any of this, so the
//! bridge can only ever talk to a connection the rules allowed.
//! Relay (any other client, such as the proxy's own tests): bytes are copied here.

pub(crate) use crate::ipc::tunnel::{HANDOFF_HELLO, HANDOFF_MARK};
use std::io;
use std::os::fd::AsRawFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Completes a tunnel: `reply` goes to the client, `pending` (bytes the client sent along
/// with its request) upstream, then the bytes flow — through the bridge if `handoff`.
pub(super) async fn tunnel(
    mut client: UnixStream,
    mut upstream: TcpStream,
    reply: &[u8],
    pending: &[u8],
    handoff: bool,
) -> io::Result<()> {
    if !handoff {
        client.write_all(reply).await?;
        return relay(client, upstream, pending).await;
    }
    if !pending.is_empty() {
        upstream.write_all(pending).await?;
    }
    let mut message = Vec::with_capacity(reply.len() + 1);
    message.push(HANDOFF_MARK);
    message.extend_from_slice(reply);
    loop {
        client.writable().await?;
        let sent = client.try_io(tokio::io::Interest::WRITABLE, || {
            use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
            let fds = [upstream.as_raw_fd()];
            let iov = [io::IoSlice::new(&message)];
            sendmsg::<()>(client.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_NOSIGNAL, None)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(n) if n == message.len() => break,
            // The message is a few dozen bytes into an empty socket; a short send means the
            // bridge is gone.
            Ok(_) => return Err(io::Error::new(io::ErrorKind::WriteZero, "short hand-off")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    // Late bytes, until the bridge closes its end. Our copy of the upstream socket closes
    // when this returns; the bridge's keeps the connection (never shut it down here: that
    // would end it for the bridge too).
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match client.read(&mut buf).await? {
            0 => return Ok(()),
            n => upstream.write_all(&buf[..n]).await?,
        }
    }
}

/// Buffer per direction. Measured on a 2-core host with a 100 MB loopback download: 128 KiB
/// was the fastest and cheapest in CPU (64 KiB a little behind, 256 KiB and splice(2)
/// both slower), and twice 128 KiB per tunnel keeps 50 tunnels near 12 MiB.
const BUFFER: usize = 128 << 10;

/// `pending`: bytes the client sent along with its request, to go upstream first. Each side's
/// end of file is passed on as a half-close, as TCP clients expect.
async fn relay(mut client: UnixStream, mut upstream: TcpStream, pending: &[u8]) -> io::Result<()> {
    if !pending.is_empty() {
        upstream.write_all(pending).await?;
    }
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Data goes both ways, a half-close is passed on, and the relay ends when both sides
    /// have closed.
    #[tokio::test]
    async fn relays_both_ways_and_passes_half_closes_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (client, mut sandbox) = UnixStream::pair().unwrap();
        let relay = tokio::spawn(async move { relay(client, upstream, b"").await });

        let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let download: Vec<u8> = upload.iter().rev().copied().collect();
        let expected_up = upload.clone();
        let expected_down = download.clone();
        let server_side = tokio::spawn(async move {
            let mut got = Vec::new();
            let (mut r, mut w) = server.split();
            let (read, write) =
                tokio::join!(r.read_to_end(&mut got), async { w.write_all(&download).await.and(w.shutdown().await) });
            read.unwrap();
            write.unwrap();
            got
        });
        let (mut r, mut w) = sandbox.split();
        let mut got = Vec::new();
        let (read, write) =
            tokio::join!(r.read_to_end(&mut got), async { w.write_all(&upload).await.and(w.shutdown().await) });
        read.unwrap();
        write.unwrap();
        assert!(got == expected_down, "download differs");
        assert!(server_side.await.unwrap() == expected_up, "upload differs");
        relay.await.unwrap().unwrap();
    }
}

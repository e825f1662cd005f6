//! The fork protocol's messages (docs/fork-protocol.md). Runs in: both the driver
//! (corral) and a Rust template.
//!
//! One message is one datagram on corral's seqpacket transport
//! (`corral_linux::ipc::transport`): a JSON object whose `op` names it. Descriptors ride
//! along with `forked` as SCM_RIGHTS.

use corral_linux::ipc::transport::Wire;
use serde::{Deserialize, Serialize};

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

impl Wire for Message {
    /// Longest message either side sends; anything longer is a protocol error.
    const MAX_LEN: usize = 4096;
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_linux::ipc::transport::{pair, recv, send};
    use std::os::fd::{AsFd, AsRawFd};

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
        let mut buf = Vec::new();
        let (msg, fds) = recv::<Message>(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(msg, Message::Forked { id: 1, pid: 42 });
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv::<Message>(b.as_fd(), &mut buf).unwrap().is_none(), "end of stream once the peer closes");
    }
}

//! The channel between the allow-list proxy and a sandbox's bridge: one Unix stream
//! connection per tunnelled TCP connection, to the proxy's socket. Runs in: the client
//! (the proxy) and sandbox init (the bridge).
//!
//! The bridge starts each connection with [`HANDOFF_HELLO`], then relays the command's
//! bytes; the proxy reads the request (HTTP or SOCKS5) and decides. Once a tunnel is
//! established, the proxy hands the upstream socket over: one message that starts with
//! [`HANDOFF_MARK`], followed by the reply the command is owed, with the socket attached
//! as SCM_RIGHTS. The bridge then splices between the two directly.

/// The first byte a bridge sends: "I can take tunnels over" (no protocol starts with it).
pub const HANDOFF_HELLO: u8 = 0x00;
/// The first byte of a hand-off message (so that it is never empty: a stream socket sends
/// no descriptors without data).
pub const HANDOFF_MARK: u8 = 0x00;

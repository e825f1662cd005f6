//! Messages between corral's processes. Runs in: every process that sends or receives
//! them. One [`transport`] carries every channel; each channel has its own message types:
//! the client and the helper ([`protocol`]), the helper and a sandbox's init and command
//! ([`report`]); the copy-on-write fork channel's live with the pool
//! (`corral_pool::fork`). The proxy and a sandbox's bridge speak over plain stream
//! connections instead ([`tunnel`]), since they carry TCP byte streams.

pub mod protocol;
pub mod report;
pub mod transport;
pub mod tunnel;

//! Messages between corral's processes. Runs in: every process that sends or receives
//! them. One [`transport`] carries every channel; each channel has its own message types:
//! the client and the helper ([`protocol`]), the helper and a sandbox's init and command
//! ([`report`]), a sandbox's network bridge and its proxy ([`proxy`]); the copy-on-write
//! fork channel's live with the pool (`corral_pool::fork`). Each connection the bridge
//! opens to the proxy carries a TCP byte stream ([`tunnel`]).

pub mod protocol;
pub mod proxy;
pub mod report;
pub mod transport;
pub mod tunnel;

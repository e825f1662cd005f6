//! Messages between corral's processes. Runs in: every process that sends or receives
//! them — the client and the helper ([`protocol`]), the helper and a sandbox's init and
//! command ([`report`]).

pub mod protocol;
pub mod report;

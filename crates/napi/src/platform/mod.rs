//! The platform under the binding: one set of names whatever the target, so that the
//! binding itself has no `cfg`. Linux runs sandboxes ([`linux`](self)); elsewhere every
//! call says the platform is not supported yet. Runs in: the caller (Node).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
pub use unsupported::*;

use corral_core::result::RunInfo;
use std::os::fd::OwnedFd;

/// A run that ended: what it reports, its output, and what it wrote aside.
pub struct Finished {
    pub info: RunInfo,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub captured: Option<Captured>,
}

/// A sandbox started by `spawn`, with descriptors for the caller to stream.
pub struct Spawned {
    pub pid: i32,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub terminal: Option<OwnedFd>,
    pub handle: Running,
}

/// One clone of a template: its streams (the caller's from now on) and its control.
pub struct Clone {
    pub clone_id: u32,
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub signaller: Signaller,
    pub forked: Forked,
}

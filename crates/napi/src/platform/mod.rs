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

//! corral-pool: the warm pool and copy-on-write fork.
//!
//! Runs in: the client, over the helper's protocol; `fork::serve` in a Rust template inside
//! the sandbox.
//!
//! Both carry corral's speed promise and grow out of the Linux helper, which is
//! single-threaded and may therefore fork:
//!
//! - [`Pool`]: sandboxes prepared ahead of time — namespaces created (a new network
//!   namespace alone costs about a millisecond), mount view built, cgroup ready — parked in
//!   their own init until a command arrives. Acquiring one costs the last steps only
//!   (fork, Landlock, seccomp, exec). Each prepared sandbox runs one command, never more.
//! - [`fork`]: a template initialises once and forks clones that share its memory
//!   copy-on-write, each told its `CLONE_ID`.
//!
//! This crate holds the policy — sizing, refill, idle expiry, statistics, the fork
//! protocol — as plain code over the helper's protocol; the process work happens in the
//! helper and the sandboxes.

#[cfg(target_os = "linux")]
pub mod fork;
#[cfg(target_os = "linux")]
mod pool;

#[cfg(target_os = "linux")]
pub use pool::{Pool, PoolOptions, PoolStats, RunRequest};

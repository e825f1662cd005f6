//! Copy-on-write fork: a template initialises once, then forks clones that share
//! its memory copy-on-write, each told its `CLONE_ID`.
//!
//! Runs in: the client (the driver) and, for a Rust template, the template's process in the
//! sandbox (`serve`).
//!
//! The template is a sandboxed command holding one end of a SOCK_SEQPACKET channel at fd 3
//! (`CORRAL_FORK_FD=3`); the protocol on it is in docs/fork-protocol.md. [`Template`] is
//! corral's side; [`serve`] and [`template`] are the template's side for Rust programs
//! (python/corral_fork.py is the same for Python). Clones live in the template's sandbox:
//! they share its namespaces, Landlock and seccomp rules and cgroup, each in a process of
//! its own, and they end when the template does.

mod driver;
pub mod message;
mod serve;

pub use driver::{reduce, CloneOutput, Forked, Signaller, Template};
pub use serve::{is_template, prefer_huge_pages, serve, template};

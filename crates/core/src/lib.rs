//! corral-core: the policy model and everything that can be decided without touching the OS.
//!
//! Runs in: wherever it is called: it is pure code, mostly run by the client when planning;
//! the helper and the sandbox carry out the spec it makes.
//!
//! The flow is one-way: a raw [`Policy`] (deserialised from JSON, exactly what a user wrote)
//! goes through [`normalize::plan`] together with a [`Context`] (who is calling, from where)
//! and the host's [`HostCapabilities`]; the result is a [`Plan`]: a fully resolved
//! [`SandboxSpec`] that a backend executes without further decisions, plus every caveat
//! where this host cannot enforce what was asked.
//!
//! This crate is the single authority on validation: the TypeScript facade and the CLI only
//! pre-check for friendlier messages. File system facts needed for resolution (symlinks,
//! existence) come in through the [`HostFs`] trait so the rules are testable without a host.

pub mod allowlist;
pub mod caveats;
pub mod command;
pub mod env;
pub mod error;
pub mod host;
pub mod normalize;
pub mod policy;
pub mod result;
pub mod schema;
pub mod seccomp;
pub mod spec;
pub mod units;

pub use error::{CorralError, ErrorCode};
pub use host::{Context, FileKind, HostCapabilities, HostFs, Owner};
pub use normalize::{plan, refuse_caveats, Caveat, Plan};
pub use policy::Policy;
pub use result::{ExitStatus, RunStats};
pub use spec::SandboxSpec;

/// Version of the wire format between the addon and the helper; both sides refuse to talk
/// across versions so a stale helper binary is reported instead of misread.
pub const PROTOCOL_VERSION: &str = concat!("corral/", env!("CARGO_PKG_VERSION"), "/1");

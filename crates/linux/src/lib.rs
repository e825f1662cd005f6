//! corral's Linux backend.
//!
//! The tree is grouped by the process each line runs in (each module's top comment has a
//! `Runs in:` line):
//!
//! - [`client`]: runs inside the caller (the Node addon, or a Rust program): the helper's
//!   handle, running a command and collecting its output, captured overlay changes, the
//!   planner's view of the host file system, the allow-list proxy. It never forks to do
//!   sandbox work; it starts the helper once and talks to it over a `SOCK_SEQPACKET`
//!   socketpair, passing the command's stdio as file descriptors.
//! - [`helper`]: a single-threaded supervisor (the `corral-helper` binary). Because it has
//!   one thread it may run ordinary code after `clone`; it creates every sandbox
//!   (`helper::launch`), places it in a cgroup, enforces timeouts, reaps, and reports
//!   exits. The warm pool and copy-on-write fork grow out of it.
//! - [`sandbox::init`]: pid 1 of the sandbox's pid namespace. Builds the namespaces'
//!   contents (uid map, hostname, loopback, mount view), forks the command, reaps zombies,
//!   forwards signals, reports the command's status.
//! - [`sandbox::command`]: the last steps before `execve`: stdio, rlimits, no-new-privs,
//!   Landlock, capabilities, seccomp (last).
//! - [`ipc`]: the messages between those processes.
//! - [`seccomp`] and `sys`: shared by several of them (filters are compiled in the helper
//!   and installed in the command; `sys` wraps system calls nix does not cover).
//! - `error`: where this crate's typed errors get their `CorralError` code, in one place.
//!
//! docs/architecture.md draws these processes and the channels between them.

pub mod client;
mod error;
pub mod helper;
pub mod ipc;
mod mountinfo;
pub mod sandbox;
pub mod seccomp;
mod sys;

pub use client::{Finished, Sandbox, Stdio, Supervisor};

use corral_core::{Context, CorralError, HostCapabilities, Plan, Policy};

/// Plans `policy` for `argv` on this host: the core normaliser plus the checks only this
/// backend can make (system call names exist on this architecture).
pub fn plan(policy: &Policy, argv: &[String], ctx: &Context, host: &HostCapabilities) -> Result<Plan, CorralError> {
    let plan = corral_core::plan(policy, argv, ctx, host, &client::hostfs::RealFs)?;
    seccomp::check_names(&plan.spec.seccomp)?;
    Ok(plan)
}

/// The calling process's context: cwd, home, ids, environment.
pub fn current_context() -> Result<Context, CorralError> {
    let cwd =
        std::env::current_dir().map_err(|e| CorralError::spawn(format!("cannot read the current directory: {e}")))?;
    let home = std::env::var_os("HOME").map(Into::into);
    Ok(Context {
        cwd,
        home,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        env: std::env::vars().collect(),
    })
}

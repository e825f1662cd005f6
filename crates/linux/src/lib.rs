//! corral's Linux backend.
//!
//! Processes and roles (each module says which process its code runs in):
//!
//! - **client** ([`client`]): runs inside the caller (the Node addon, or a Rust program).
//!   It never forks to do sandbox work; it starts the helper once and talks to it over a
//!   `SOCK_SEQPACKET` socketpair, passing the command's stdio as file descriptors.
//! - **helper** ([`helper`]): a single-threaded supervisor (the `corral-helper` binary).
//!   Because it has one thread it may run ordinary code after `clone`; it creates every
//!   sandbox, enforces timeouts, reaps, and reports exits. The warm pool and
//!   copy-on-write fork grow out of it.
//! - **sandbox init** ([`sandbox::init`]): pid 1 of the sandbox's pid namespace. Builds the
//!   namespaces' contents (uid map, hostname, loopback, mount view), forks the command,
//!   reaps zombies, forwards signals, reports the command's status.
//! - **command** ([`sandbox::command`]): the last steps before `execve`: stdio, rlimits,
//!   no-new-privs, Landlock, capabilities, seccomp (last).

pub mod cgroup;
pub mod changes;
pub mod client;
mod freezer;
pub mod helper;
pub mod hostfs;
mod placeholders;
pub mod probe;
pub mod protocol;
pub mod proxy;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod seccomp;
mod sys;

pub use client::{Finished, Sandbox, Stdio, Supervisor};

use corral_core::{Context, CorralError, HostCapabilities, Plan, Policy};

/// Plans `policy` for `argv` on this host: the core normaliser plus the checks only this
/// backend can make (system call names exist on this architecture).
pub fn plan(policy: &Policy, argv: &[String], ctx: &Context, host: &HostCapabilities) -> Result<Plan, CorralError> {
    let plan = corral_core::plan(policy, argv, ctx, host, &hostfs::RealFs)?;
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

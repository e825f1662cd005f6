//! Starting the command under Seatbelt (macOS only). Runs in: the caller, then, inside
//! `pre_exec`, the forked child just before it execs `sandbox-exec`.
//!
//! The child's steps follow the Linux command process where macOS allows: a new session,
//! rlimits, and every descriptor above stderr closed at exec. `sandbox-exec` then applies
//! the profile to itself and execs the command, which inherits all of it.

use crate::invocation::invocation;
use crate::profile::Profile;
use corral_core::spec::{Rlimit, Rlimits};
use corral_core::{CorralError, SandboxSpec};
use std::ffi::c_int;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Descriptors marked close-on-exec in the child: enough for any caller in practice, and
/// bounded because marking costs one system call per number.
const MAX_FD: c_int = 1 << 16;

/// The `sandbox-exec` command for `spec` under `profile`: environment cleared and set from
/// the spec, cwd from the spec (both moved to the private temp directory where the plan
/// put them in `/tmp`). The caller sets stdio, spawns, and enforces the timeout.
pub fn command(spec: &SandboxSpec, profile: &Profile) -> Result<Command, CorralError> {
    let inv = invocation(spec, profile)?;
    let limits = rlimits(&spec.rlimits);
    let max_fd = open_files_ceiling();
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args).env_clear().envs(&inv.env).current_dir(&inv.cwd);
    // SAFETY: the closure makes only async-signal-safe calls (setsid, setrlimit, fcntl) and
    // does not allocate: `limits` was built before the fork.
    unsafe {
        cmd.pre_exec(move || child_setup(&limits, max_fd));
    }
    Ok(cmd)
}

/// Limits as `(resource, value)`, soft and hard alike. RLIMIT_AS is left out: macOS does
/// not enforce it and since macOS 12 refuses to set it (the compiler reports a caveat).
/// So is corral's default process bound: RLIMIT_NPROC counts all of the user's processes
/// here, not the sandbox's, so only a `limits.pids` the policy asks for is applied.
fn rlimits(r: &Rlimits) -> Vec<(c_int, u64)> {
    r.entries()
        .filter_map(|(limit, v)| {
            let res = match limit {
                Rlimit::AddressSpace => return None,
                Rlimit::Processes if v == corral_core::normalize::DEFAULT_PIDS => return None,
                Rlimit::Processes => sys::RLIMIT_NPROC,
                Rlimit::OpenFiles => sys::RLIMIT_NOFILE,
                Rlimit::FileSize => sys::RLIMIT_FSIZE,
                Rlimit::CpuSeconds => sys::RLIMIT_CPU,
            };
            Some((res, v))
        })
        .collect()
}

fn open_files_ceiling() -> c_int {
    let mut rl = sys::Rlimit { cur: 0, max: 0 };
    // SAFETY: getrlimit writes one struct we own.
    if unsafe { sys::getrlimit(sys::RLIMIT_NOFILE, &mut rl) } != 0 {
        return MAX_FD;
    }
    rl.cur.min(MAX_FD as u64) as c_int
}

/// Runs in the child between fork and exec.
fn child_setup(limits: &[(c_int, u64)], max_fd: c_int) -> io::Result<()> {
    // A new session: no controlling terminal, so the command cannot push input into the
    // caller's terminal (TIOCSTI needs one) nor get its job-control signals.
    // SAFETY: setsid has no arguments.
    if unsafe { sys::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    for fd in 3..max_fd {
        // SAFETY: F_SETFD on a number that may not be open; EBADF is expected and ignored.
        unsafe { sys::fcntl(fd, sys::F_SETFD, sys::FD_CLOEXEC) };
    }
    for &(resource, value) in limits {
        let rl = sys::Rlimit { cur: value, max: value };
        // SAFETY: setrlimit reads one struct we own.
        if unsafe { sys::setrlimit(resource, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The few Darwin calls this needs, declared here rather than adding a dependency.
/// Values from the macOS SDK's <sys/resource.h> and <sys/fcntl.h>.
mod sys {
    use std::ffi::c_int;

    pub const RLIMIT_CPU: c_int = 0;
    pub const RLIMIT_FSIZE: c_int = 1;
    pub const RLIMIT_NPROC: c_int = 7;
    pub const RLIMIT_NOFILE: c_int = 8;
    pub const F_SETFD: c_int = 2;
    pub const FD_CLOEXEC: c_int = 1;

    /// `struct rlimit`; `rlim_t` is a 64-bit unsigned integer on Darwin.
    #[repr(C)]
    pub struct Rlimit {
        pub cur: u64,
        pub max: u64,
    }

    extern "C" {
        pub fn setsid() -> c_int;
        pub fn getrlimit(resource: c_int, rlp: *mut Rlimit) -> c_int;
        pub fn setrlimit(resource: c_int, rlp: *const Rlimit) -> c_int;
        pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    }
}

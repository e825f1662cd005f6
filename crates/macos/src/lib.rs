//! corral's macOS backend: the policy the Linux backend executes, enforced by Seatbelt.
//!
//! Runs in: the caller on macOS; the compiler is plain code, tested on any host.
//!
//! There is one policy model. The core normaliser turns a policy into a
//! [`SandboxSpec`](corral_core::SandboxSpec); on Linux a backend builds namespaces, a mount
//! view, Landlock and seccomp from it, and here the same spec is compiled into an Apple
//! Seatbelt (SBPL) profile and the command runs under `sandbox-exec -p <profile>`.
//!
//! - [`profile`]: the compiler, plain code that builds and is unit-tested on any host. It
//!   reports every guarantee Seatbelt cannot give (no pid, IPC or UTS namespace, no
//!   system-call filter, no private tmpfs…) as a [`Caveat`](corral_core::Caveat).
//! - [`invocation`]: the `sandbox-exec` argv, environment and cwd, also plain data.
//! - `runner` (macOS only): the [`std::process::Command`], with a new session, rlimits
//!   and inherited descriptors closed, applied between fork and exec.

pub mod invocation;
pub mod profile;
#[cfg(target_os = "macos")]
pub mod runner;
mod sbpl;

pub use profile::{compile, CompileOptions, Profile};

use corral_core::{CorralError, Plan};

/// Compiles `plan` and, in strict mode, refuses the caveats this backend adds, as the
/// normaliser refuses its own.
pub fn compile_plan(plan: &Plan, options: &CompileOptions) -> Result<Profile, CorralError> {
    let profile = compile(&plan.spec, options)?;
    if plan.strict {
        corral_core::refuse_caveats(&profile.caveats)?;
    }
    Ok(profile)
}

//! Where the Linux backend's errors become `CorralError`s: the one place that chooses the
//! code (and the policy field) for each. Runs in: the client and the helper.
//!
//! Modules return their own typed errors ([`CgroupError`], [`SeccompError`]); a sandbox's
//! own processes report a failed step or exec over the report socket, and the helper turns
//! those reports into errors here too.

use crate::client::changes::ChangesError;
use crate::helper::cgroup::CgroupError;
use crate::seccomp::SeccompError;
use corral_core::CorralError;

impl From<SeccompError> for CorralError {
    fn from(e: SeccompError) -> CorralError {
        match &e {
            SeccompError::UnknownProfile(_) => CorralError::policy("seccomp.profile", e.to_string()),
            SeccompError::NotACall { list, index, .. } => {
                CorralError::policy(format!("seccomp.{list}[{index}]"), e.to_string())
            }
            SeccompError::UnsupportedArch(_) => CorralError::unsupported(e.to_string()),
            // The profiles are corral's own data: one that does not compile is a bug.
            _ => CorralError::internal(e.to_string()),
        }
    }
}

impl From<CgroupError> for CorralError {
    fn from(e: CgroupError) -> CorralError {
        match &e {
            CgroupError::Unusable(_) | CgroupError::NoController { .. } | CgroupError::NoFreezer => {
                CorralError::unsupported(e.to_string())
            }
            CgroupError::InvalidCpus(_) => CorralError::policy("limits.cpus", e.to_string()),
            // The kernel refused or did not finish in time.
            _ => CorralError::spawn(e.to_string()).with_errno(e.errno()),
        }
    }
}

impl From<ChangesError> for CorralError {
    fn from(e: ChangesError) -> CorralError {
        // The host refused a step of listing or committing (the errno says why).
        let errno = e.errno();
        CorralError::spawn(format!("committing captured changes: {e}")).with_errno(errno)
    }
}

/// `e` with what was being done in front of its message.
pub(crate) fn doing(what: &str, e: impl Into<CorralError>) -> CorralError {
    let mut e = e.into();
    e.message = format!("{what}: {}", e.message);
    e
}

/// A setup step inside the sandbox failed (reported by its init or command process).
pub(crate) fn setup_failed(step: &str, message: &str, errno: Option<i32>) -> CorralError {
    CorralError::spawn(format!("sandbox setup failed at {step}: {message}")).with_errno(errno)
}

/// `execve` of the command failed inside the sandbox. `field: argv[0]` tells this apart
/// from a failure of the sandbox's setup (which may carry the same errno): the CLI exits
/// 126 or 127 for this one only.
pub(crate) fn exec_failed(program: &str, errno: i32) -> CorralError {
    let e = std::io::Error::from_raw_os_error(errno);
    let err =
        CorralError::spawn(format!("cannot execute {program:?}: {e}")).with_errno(Some(errno)).with_field("argv[0]");
    match errno {
        libc::ENOENT => err.with_hint(
            "not found in the sandbox: is its directory granted with fs.read or fs.exec, and is it on the sandbox's PATH?",
        ),
        libc::EACCES => err.with_hint("not executable in the sandbox: grant its directory with fs.exec"),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::ErrorCode;

    #[test]
    fn each_error_gets_its_code_here() {
        let e = CorralError::from(SeccompError::UnknownProfile("x".into()));
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("seccomp.profile")));
        let e = CorralError::from(SeccompError::ProbeShape);
        assert_eq!(e.code, ErrorCode::Internal);
        let e = CorralError::from(CgroupError::Unusable("no cgroups here".into()));
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Unsupported, "no cgroups here"));
        let e = doing(
            "creating the sandbox's cgroup",
            CgroupError::File {
                action: "opening".into(),
                path: "/sys/fs/cgroup/x".into(),
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            },
        );
        assert_eq!((e.code, e.errno), (ErrorCode::SpawnFailed, Some(libc::EACCES)));
        assert!(e.message.starts_with("creating the sandbox's cgroup: opening /sys/fs/cgroup/x: "), "{e}");
        assert_eq!(exec_failed("nope", libc::ENOENT).errno, Some(libc::ENOENT));
    }
}

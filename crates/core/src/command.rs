//! The rules every command obeys, however it starts: a cold run, a warm pool's prepared
//! sandbox or a copy-on-write template. Runs in: wherever a command is accepted — the
//! planner, the client before it hands a command over, and the helper that receives one.
//!
//! [`check`] is the one place these rules live: a non-empty argv without NUL bytes,
//! environment names a process can carry, and a working directory the sandbox shows.
//!
//! Working directory: a directory is shown when a grant makes it visible, when it holds
//! granted paths (the view has it, with only those entries), or when it is the root of a
//! fresh tmpfs such as the private `/tmp`. A `cwd` that names anything else is refused
//! (`POLICY_INVALID`, field `cwd`); where the default — the caller's own directory — is
//! not shown, the planner starts the command in `/` instead (see `normalize::plan`).

use crate::error::{CorralError, Result};
use crate::spec::{MountSpec, SandboxSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A command and where it runs: what a prepared sandbox is handed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
}

impl Command {
    /// [`check`] for this command.
    pub fn check(&self, mounts: &[MountSpec]) -> Result<()> {
        check(mounts, &self.argv, &self.env, &self.cwd)
    }
}

/// Checks one command for a sandbox whose mount view is `mounts`: argv, environment and
/// working directory (a sandbox path). Every path that starts a command calls this.
pub fn check(mounts: &[MountSpec], argv: &[String], env: &BTreeMap<String, String>, cwd: &Path) -> Result<()> {
    check_argv(argv)?;
    check_env(env)?;
    check_cwd(mounts, cwd)
}

/// [`check`] for the command a spec carries (a cold run's).
pub fn check_spec(spec: &SandboxSpec) -> Result<()> {
    check(&spec.mounts, &spec.argv, &spec.env, &spec.cwd)
}

/// A command is a non-empty list whose first word is not empty; no word holds a NUL byte
/// (`execve` could not pass it).
pub fn check_argv(argv: &[String]) -> Result<()> {
    if argv.is_empty() {
        return Err(CorralError::policy("argv", "no command given"));
    }
    for (i, a) in argv.iter().enumerate() {
        if a.contains('\0') {
            return Err(CorralError::policy(format!("argv[{i}]"), "contains a NUL byte"));
        }
    }
    if argv[0].is_empty() {
        return Err(CorralError::policy("argv[0]", "the command is empty"));
    }
    Ok(())
}

/// Every name is one a process environment can carry, every value free of NUL bytes.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in env {
        check_env_name(k).map_err(|m| CorralError::policy(format!("env.{k}"), m))?;
        if v.contains('\0') {
            return Err(CorralError::policy(format!("env.{k}"), "value contains a NUL byte"));
        }
    }
    Ok(())
}

/// A variable name: not empty, no `=` (it ends the name), no NUL byte.
pub fn check_env_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("{name:?} is not a valid environment variable name"));
    }
    Ok(())
}

/// The working directory is an absolute path that the sandbox shows.
pub fn check_cwd(mounts: &[MountSpec], cwd: &Path) -> Result<()> {
    if !cwd.is_absolute() {
        return Err(CorralError::policy("cwd", format!("{} is not an absolute path", cwd.display())));
    }
    if !shows(mounts, cwd) {
        return Err(CorralError::policy("cwd", format!("{} is not visible in the sandbox", cwd.display())).with_hint(
            "grant it with fs.read or fs.write, or set cwd to a directory the sandbox shows, such as /tmp",
        ));
    }
    Ok(())
}

/// Whether the mount view shows the directory `dir` (a sandbox path, `.` and `..`
/// already resolved): inside a granted tree, holding one, or the root of a fresh tmpfs.
pub fn shows(mounts: &[MountSpec], dir: &Path) -> bool {
    mounts.iter().any(|m| match m {
        MountSpec::Bind { target, .. } | MountSpec::Overlay { target, .. } => {
            dir.starts_with(target) || target.starts_with(dir)
        }
        // A fresh tmpfs starts empty: only its root exists.
        MountSpec::Tmpfs { target, .. } => dir == target,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn mounts() -> Vec<MountSpec> {
        vec![
            MountSpec::Bind { source: "/usr".into(), target: "/usr".into(), writable: false, exec: true },
            MountSpec::Bind {
                source: "/home/u/work/model".into(),
                target: "/home/u/work/model".into(),
                writable: false,
                exec: false,
            },
            MountSpec::Tmpfs { target: "/tmp".into(), exec: true },
            MountSpec::Proc { target: "/proc".into() },
        ]
    }

    fn field(r: Result<()>) -> String {
        r.unwrap_err().field.unwrap_or_default()
    }

    #[test]
    fn argv_is_a_non_empty_list_of_words() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_argv(&a(&["true"])).is_ok());
        assert_eq!(field(check_argv(&[])), "argv");
        assert_eq!(field(check_argv(&a(&[""]))), "argv[0]");
        assert_eq!(field(check_argv(&a(&["sh", "a\0b"]))), "argv[1]");
    }

    #[test]
    fn environment_names_and_values() {
        assert!(check_env(&env(&[("A", "1"), ("B_2", "")])).is_ok());
        assert_eq!(field(check_env(&env(&[("A=B", "1")]))), "env.A=B");
        assert_eq!(field(check_env(&env(&[("", "1")]))), "env.");
        assert_eq!(field(check_env(&env(&[("A", "x\0y")]))), "env.A");
    }

    #[test]
    fn the_working_directory_must_be_shown() {
        let m = mounts();
        for shown in ["/usr", "/usr/lib", "/home/u/work/model", "/home/u/work", "/home", "/", "/tmp"] {
            assert!(check_cwd(&m, Path::new(shown)).is_ok(), "{shown}");
        }
        for hidden in ["/etc", "/home/u/other", "/tmp/x", "/proc"] {
            let e = check_cwd(&m, Path::new(hidden)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("cwd"), "{hidden}");
            assert!(e.hint.is_some());
        }
        assert_eq!(field(check_cwd(&m, Path::new("usr"))), "cwd");
    }

    #[test]
    fn check_runs_every_rule() {
        let m = mounts();
        let argv = vec!["true".to_string()];
        assert!(check(&m, &argv, &env(&[("A", "1")]), Path::new("/usr")).is_ok());
        assert_eq!(field(check(&m, &[], &env(&[]), Path::new("/usr"))), "argv");
        assert_eq!(field(check(&m, &argv, &env(&[("=", "")]), Path::new("/usr"))), "env.=");
        assert_eq!(field(check(&m, &argv, &env(&[]), Path::new("/etc"))), "cwd");
    }
}

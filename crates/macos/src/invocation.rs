//! What `sandbox-exec` is started with: program, arguments, environment, working directory.
//!
//! Runs in: the caller on macOS; plain code, tested on any host.
//!
//! Plain data, so it is unit-tested on any host; [`crate::runner`] turns it into a process
//! on macOS.

use crate::profile::Profile;
use corral_core::{CorralError, SandboxSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Applies a profile to itself, then execs the command, which inherits the sandbox.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment: nothing of the caller's is inherited.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

pub fn invocation(spec: &SandboxSpec, profile: &Profile) -> Result<Invocation, CorralError> {
    corral_core::command::check_argv(&spec.argv)?;
    // `--` so that a command starting with `-` is never read as a sandbox-exec option.
    let mut args = vec!["-p".to_string(), profile.text.clone(), "--".to_string()];
    args.extend(spec.argv.iter().cloned());
    let mut env = spec.env.clone();
    let mut cwd = spec.cwd.clone();
    if let Some(tmp) = &profile.private_tmp {
        // The sandbox's /tmp lives elsewhere on macOS; what the plan put there moves along.
        for key in ["HOME", "TMPDIR"] {
            if let Some(moved) = env.get(key).and_then(|v| rebase(Path::new(v), tmp)) {
                env.insert(key.to_string(), moved.display().to_string());
            }
        }
        env.entry("TMPDIR".to_string()).or_insert_with(|| tmp.display().to_string());
        if let Some(moved) = rebase(&cwd, tmp) {
            cwd = moved;
        }
    }
    Ok(Invocation { program: SANDBOX_EXEC.into(), args, env, cwd })
}

/// `path` with a leading `/tmp` replaced by `tmp`; `None` when it is not under `/tmp`.
fn rebase(path: &Path, tmp: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix("/tmp").ok()?;
    Some(if rest.as_os_str().is_empty() { tmp.to_path_buf() } else { tmp.join(rest) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::spec;
    use crate::profile::{compile, CompileOptions};

    #[test]
    fn sandbox_exec_gets_the_profile_then_the_command() {
        let s = spec();
        let p = compile(&s, &CompileOptions::default()).unwrap();
        let inv = invocation(&s, &p).unwrap();
        assert_eq!(inv.program, PathBuf::from("/usr/bin/sandbox-exec"));
        assert_eq!(inv.args[0], "-p");
        assert_eq!(inv.args[1], p.text);
        assert_eq!(&inv.args[2..], ["--", "/usr/bin/true", "-x"]);
        assert_eq!(inv.env, s.env);
        assert_eq!(inv.cwd, PathBuf::from("/tmp/work"));
    }

    #[test]
    fn tmp_paths_move_to_the_private_directory() {
        let s = spec();
        let p = compile(&s, &CompileOptions { private_tmp: Some(Path::new("/private/var/folders/ab/T/corral-1")) })
            .unwrap();
        let inv = invocation(&s, &p).unwrap();
        assert_eq!(inv.env["HOME"], "/private/var/folders/ab/T/corral-1");
        assert_eq!(inv.env["TMPDIR"], "/private/var/folders/ab/T/corral-1");
        assert_eq!(inv.env["PATH"], s.env["PATH"]);
        assert_eq!(inv.cwd, PathBuf::from("/private/var/folders/ab/T/corral-1/work"));
    }

    #[test]
    fn an_empty_command_is_refused() {
        let mut s = spec();
        s.argv.clear();
        let p = compile(&s, &CompileOptions::default()).unwrap();
        assert_eq!(invocation(&s, &p).unwrap_err().field.as_deref(), Some("argv"));
    }
}

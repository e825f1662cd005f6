//! Compiling the profiles of `corral_core::seccomp` to BPF with seccompiler, and
//! installing them.
//!
//! Runs in: client (name checks at plan time), helper (compiling, cached per profile),
//! command (installing, last step before execve).

use corral_core::seccomp as profiles;
use corral_core::spec::SeccompSpec;
use corral_core::CorralError;
use seccompiler::{BpfProgram, TargetArch};
use std::collections::HashMap;
use std::sync::Arc;

fn arch() -> Result<TargetArch, CorralError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| CorralError::unsupported(format!("seccomp filters are not built for {}", std::env::consts::ARCH)))
}

/// Compiled filters in installation order (the last installed takes precedence among
/// equal actions, which is why the clone3 → ENOSYS filter comes last).
pub type Compiled = Arc<Vec<BpfProgram>>;

pub fn compile(spec: &SeccompSpec) -> Result<Compiled, CorralError> {
    let filters = profiles::filters(&spec.profile, &spec.allow, &spec.deny)
        .ok_or_else(|| CorralError::policy("seccomp.profile", format!("unknown profile {:?}", spec.profile)))?;
    let json = profiles::to_seccompiler_json(&filters, std::env::consts::ARCH);
    let mut map = seccompiler::compile_from_json(json.to_string().as_bytes(), arch()?)
        .map_err(|e| CorralError::internal(format!("compiling seccomp profile {:?}: {e}", spec.profile)))?;
    Ok(Arc::new(filters.iter().filter_map(|f| map.remove(f.name)).collect()))
}

/// Checks that every name in the custom lists is a system call of this architecture, so
/// a typo is a policy error naming the entry rather than a failure at spawn time.
pub fn check_names(spec: &SeccompSpec) -> Result<(), CorralError> {
    let arch = arch()?;
    for (list, names) in [("allow", &spec.allow), ("deny", &spec.deny)] {
        for (i, name) in names.iter().enumerate() {
            let probe = serde_json::json!({ "probe": {
                "mismatch_action": "allow", "match_action": { "errno": 1 }, "filter": [{ "syscall": name }]
            }});
            if seccompiler::compile_from_json(probe.to_string().as_bytes(), arch).is_err() {
                return Err(CorralError::policy(
                    format!("seccomp.{list}[{i}]"),
                    format!("{name:?} is not a system call on {}", std::env::consts::ARCH),
                ));
            }
        }
    }
    Ok(())
}

/// Compiles each profile once per helper.
#[derive(Default)]
pub struct Cache(HashMap<String, Compiled>);

impl Cache {
    pub fn get(&mut self, spec: &SeccompSpec) -> Result<Compiled, CorralError> {
        let key = serde_json::to_string(spec).unwrap_or_default();
        if let Some(c) = self.0.get(&key) {
            return Ok(c.clone());
        }
        let c = compile(spec)?;
        self.0.insert(key, c.clone());
        Ok(c)
    }
}

/// Installs the filters on the calling thread. Must be the last step before execve.
pub fn install(filters: &[BpfProgram]) -> std::io::Result<()> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(std::io::Error::other)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_compiles_for_every_arch() {
        for (name, _) in profiles::PROFILES {
            let filters = profiles::filters(name, &[], &[]).unwrap();
            for arch in ["x86_64", "aarch64"] {
                let json = profiles::to_seccompiler_json(&filters, arch);
                let map =
                    seccompiler::compile_from_json(json.to_string().as_bytes(), TargetArch::try_from(arch).unwrap());
                assert!(map.is_ok(), "{name} on {arch}: {:?}", map.err());
            }
        }
    }

    #[test]
    fn unknown_names_are_policy_errors() {
        let spec =
            SeccompSpec { profile: "default".into(), allow: vec!["getpid".into()], deny: vec!["frobnicate".into()] };
        let e = check_names(&spec).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("seccomp.deny[0]"));
    }
}

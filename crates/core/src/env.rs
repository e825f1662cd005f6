//! The sandbox's environment: clean by default.
//!
//! Runs in: the client, when planning.
//!
//! Only PATH, HOME, LANG, TERM and TZ are set unless the policy passes more, so tokens in
//! the caller's environment (`GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `NPM_TOKEN`…) never
//! reach the command by accident.

use crate::command::check_env_name;
use crate::error::{CorralError, Result};
use crate::policy::InheritEnv;
use std::collections::BTreeMap;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Variables copied from the caller when set there (they carry no secrets).
const PASSTHROUGH: &[&str] = &["LANG", "TERM", "TZ"];

/// Builds the environment in a stable order.
pub fn build(
    caller: &BTreeMap<String, String>,
    inherit: Option<&InheritEnv>,
    explicit: Option<&BTreeMap<String, String>>,
    home: &str,
) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
    env.insert("HOME".to_string(), home.to_string());
    for name in PASSTHROUGH {
        if let Some(v) = caller.get(*name) {
            env.insert(name.to_string(), v.clone());
        }
    }
    env.entry("LANG".to_string()).or_insert_with(|| "C.UTF-8".to_string());
    match inherit {
        None | Some(InheritEnv::All(false)) => {}
        Some(InheritEnv::All(true)) => env.extend(caller.iter().map(|(k, v)| (k.clone(), v.clone()))),
        Some(InheritEnv::Names(names)) => {
            for (i, name) in names.iter().enumerate() {
                check_env_name(name).map_err(|m| CorralError::policy(format!("inheritEnv[{i}]"), m))?;
                if let Some(v) = caller.get(name) {
                    env.insert(name.clone(), v.clone());
                }
            }
        }
    }
    if let Some(explicit) = explicit {
        for (k, v) in explicit {
            check_env_name(k).map_err(|m| CorralError::policy(format!("env.{k}"), m))?;
            if v.contains('\0') {
                return Err(CorralError::policy(format!("env.{k}"), "value contains a NUL byte"));
            }
            env.insert(k.clone(), v.clone());
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> BTreeMap<String, String> {
        [("LANG", "en_US.UTF-8"), ("GITHUB_TOKEN", "secret"), ("CI", "true"), ("TERM", "xterm")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn clean_by_default() {
        let env = build(&caller(), None, None, "/tmp").unwrap();
        let keys: Vec<_> = env.keys().cloned().collect();
        assert_eq!(keys, ["HOME", "LANG", "PATH", "TERM"]);
        assert_eq!(env["LANG"], "en_US.UTF-8");
    }

    #[test]
    fn inherit_names_and_explicit_override() {
        let explicit: BTreeMap<_, _> = [("CI".to_string(), "no".to_string())].into_iter().collect();
        let env = build(&caller(), Some(&InheritEnv::Names(vec!["CI".into()])), Some(&explicit), "/tmp").unwrap();
        assert_eq!(env["CI"], "no");
        assert!(!env.contains_key("GITHUB_TOKEN"));
        let e = build(&caller(), Some(&InheritEnv::Names(vec!["A=B".into()])), None, "/tmp").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inheritEnv[0]"));
    }
}

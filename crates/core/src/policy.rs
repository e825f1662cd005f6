//! The raw policy: exactly what a user wrote (in TypeScript, a JSON file, or CLI flags),
//! deserialised strictly. Unknown keys are errors; every value is type-checked here and
//! range-checked in `normalize`.
//!
//! Field names are camelCase on the wire (TypeScript's convention) and snake_case in Rust.

use crate::error::{CorralError, Result};
use crate::units::{DurationMs, Size};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    pub fs: Option<FsPolicy>,
    pub network: Option<NetworkPolicy>,
    pub env: Option<BTreeMap<String, String>>,
    pub inherit_env: Option<InheritEnv>,
    pub cwd: Option<String>,
    pub hostname: Option<String>,
    pub limits: Option<Limits>,
    pub timeout: Option<DurationMs>,
    pub seccomp: Option<SeccompPolicy>,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsPolicy {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub exec: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub protect: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub write_mode: Option<WriteMode>,
    /// Pathname Unix sockets the sandbox may connect to (all others are refused).
    #[serde(default)]
    pub allow_unix_sockets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Volume {
    pub source: String,
    /// Absolute path inside the sandbox.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    /// Files in the volume may be executed.
    #[serde(default)]
    pub exec: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    Direct,
    Ephemeral,
    Overlay,
}

/// `'none' | 'loopback' | 'host' | { allow, deny?, hosts? }`
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkPolicy {
    None,
    Loopback,
    Host,
    Rules(NetworkRules),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkRules {
    /// Destinations reachable through the proxy: names, `*.` wildcards, IPs, CIDRs, each
    /// with an optional `:port`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Destinations refused even if allowed.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Names pinned to addresses, for the proxy (like /etc/hosts).
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// `proxy` (default): an empty namespace and the allow-list proxy; `host`: the host's
    /// network, optionally narrowed by the port lists below.
    pub mode: Option<NetworkMode>,
    /// TCP ports the command may bind (Landlock); unset means any.
    pub bind_ports: Option<Vec<u16>>,
    /// TCP ports the command may connect to (Landlock); unset means any.
    pub connect_ports: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Proxy,
    Host,
}

/// `true` (everything, discouraged), `false` (the default) or a list of variable names.
#[derive(Debug, Clone, PartialEq)]
pub enum InheritEnv {
    All(bool),
    Names(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    pub memory: Option<Size>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    pub open_files: Option<u64>,
    pub file_size: Option<Size>,
    pub disk: Option<Size>,
    pub cpu_time: Option<DurationMs>,
    pub max_output_bytes: Option<Size>,
}

/// `'default'` or `{ profile?, allow?, deny? }`: both spellings read into this.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeccompPolicy {
    pub profile: Option<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SeccompFields {
    pub profile: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Policy {
    /// Parses a policy from JSON, naming the offending field on error.
    pub fn from_json(text: &str) -> Result<Policy> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.to_string();
            let field = if path == "." || path.is_empty() { "policy".to_string() } else { path };
            CorralError::policy(field, strip_position(&message))
        })
    }
}

/// serde_json appends " at line 1 column 42"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

impl<'de> Deserialize<'de> for NetworkPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NetworkPolicy;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("'none', 'loopback', 'host' or { allow: [...] }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<NetworkPolicy, E> {
                match v {
                    "none" => Ok(NetworkPolicy::None),
                    "loopback" => Ok(NetworkPolicy::Loopback),
                    "host" => Ok(NetworkPolicy::Host),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<NetworkPolicy, A::Error> {
                NetworkRules::deserialize(de::value::MapAccessDeserializer::new(map)).map(NetworkPolicy::Rules)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for InheritEnv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InheritEnv;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or a list of variable names")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<InheritEnv, E> {
                Ok(InheritEnv::All(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<InheritEnv, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(InheritEnv::Names)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for SeccompPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SeccompPolicy;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a profile name or { profile?, allow?, deny? }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<SeccompPolicy, E> {
                Ok(SeccompPolicy { profile: Some(v.to_string()), ..Default::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<SeccompPolicy, A::Error> {
                let f = SeccompFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(SeccompPolicy { profile: f.profile, allow: f.allow, deny: f.deny })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_is_valid() {
        let p = Policy::from_json("{}").unwrap();
        assert!(p.fs.is_none() && p.network.is_none());
    }

    #[test]
    fn unknown_keys_name_the_field() {
        let e = Policy::from_json(r#"{"fs":{"reed":["/x"]}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("fs.reed"));
        let e = Policy::from_json(r#"{"bogus":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bogus"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = Policy::from_json(r#"{"limits":{"memory":"lots"}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.memory"));
        let e = Policy::from_json(r#"{"fs":{"read":["/usr", 3]}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("fs.read[1]"));
        let e = Policy::from_json(r#"{"network":"internet"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("network"));
        let e = Policy::from_json(r#"{"timeout":-1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timeout"));
    }

    #[test]
    fn union_shapes() {
        let p = Policy::from_json(r#"{"network":{"allow":["example.com"]},"inheritEnv":["CI"],"seccomp":"strict"}"#)
            .unwrap();
        assert!(matches!(p.network, Some(NetworkPolicy::Rules(_))));
        assert_eq!(p.inherit_env, Some(InheritEnv::Names(vec!["CI".into()])));
        assert_eq!(p.seccomp.unwrap().profile.as_deref(), Some("strict"));
        let p = Policy::from_json(r#"{"seccomp":{"profile":"compute","deny":["uname"]}}"#).unwrap();
        assert_eq!(p.seccomp.unwrap().deny, vec!["uname".to_string()]);
    }
}

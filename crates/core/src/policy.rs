//! The raw policy: exactly what a user wrote (in TypeScript, a JSON file, or CLI flags),
//! deserialised strictly. Unknown keys are errors; every value is type-checked here and
//! range-checked in `normalize`.
//!
//! Runs in: the client, reading a policy.
//!
//! Field names are camelCase on the wire (TypeScript's convention) and snake_case in Rust.

use crate::error::{CorralError, Result};
use crate::units::{DurationMs, Size};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A corral sandbox policy. Everything is optional: `{}` runs the system's programs with
/// read-only system directories, a private /tmp, no network and a clean environment.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "corral policy")]
pub struct Policy {
    /// The JSON Schema this file follows, for editors; ignored by corral.
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// File system rules: what the command may read, write, execute, and what stays hidden.
    pub fs: Option<FsPolicy>,
    /// 'none' (default), 'loopback', 'host', or an allow-list reached through corral's proxy.
    pub network: Option<NetworkPolicy>,
    /// Variables to set in the sandbox (on top of PATH, HOME, LANG, TERM, TZ).
    pub env: Option<BTreeMap<String, String>>,
    /// Variables to copy from the caller: a list of names, or true for all (discouraged).
    pub inherit_env: Option<InheritEnv>,
    /// Working directory inside the sandbox; must be a visible directory.
    pub cwd: Option<String>,
    /// The sandbox's hostname (default 'corral').
    pub hostname: Option<String>,
    /// Resource limits.
    pub limits: Option<Limits>,
    /// Wall-clock limit: milliseconds, or a string such as '500ms', '5s', '2m', '1h'.
    pub timeout: Option<DurationMs>,
    /// A seccomp profile name, or a profile with extra allowed / refused system calls.
    pub seccomp: Option<SeccompPolicy>,
    /// Refuse to run when any rule cannot be enforced on this host.
    pub strict: Option<bool>,
}

/// File system rules. Paths may be absolute, relative to the caller's directory, or start
/// with '~/'; they must exist (except under `deny`, `protect` and `noexec`). A grant means
/// the path as written: a symlink on the way is refused unless only root can have made it.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsPolicy {
    /// Read-only paths, added to the system defaults.
    #[serde(default)]
    pub read: Vec<String>,
    /// Read-write paths; programs written there may run unless `execWritable` is false.
    #[serde(default)]
    pub write: Vec<String>,
    /// Paths whose files may be executed (the system directories always may). Implies read.
    #[serde(default)]
    pub exec: Vec<String>,
    /// Paths hidden inside readable trees wherever they appear, e.g. '~/.ssh', '~/.aws/',
    /// '.env'; one that does not exist yet is reserved (a directory with a trailing '/').
    #[serde(default)]
    pub deny: Vec<String>,
    /// Paths kept read-only inside writable trees, unchanged under their names, e.g.
    /// '.git/hooks/', '~/.bashrc'.
    #[serde(default)]
    pub protect: Vec<String>,
    /// Paths whose files never run, wherever they appear (mounted noexec); '/tmp' and
    /// '/dev/shm' name the sandbox's own.
    #[serde(default)]
    pub noexec: Vec<String>,
    /// Whether places the command can write may also run programs (default true); false is
    /// W^X: no place is both writable and executable.
    pub exec_writable: Option<bool>,
    /// Host paths bound at another place inside.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// 'direct' (default), 'ephemeral' (writes vanish) or 'overlay' (writes held for review).
    pub write_mode: Option<WriteMode>,
    /// Pathname Unix sockets the sandbox may connect to (all others are refused).
    #[serde(default)]
    pub allow_unix_sockets: Vec<String>,
}

/// A host path bound at another place inside the sandbox.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Volume {
    /// Host path (absolute, relative to the caller, or '~/...').
    pub source: String,
    /// Absolute path inside the sandbox.
    pub target: String,
    /// Read-only inside (default: writable).
    #[serde(default)]
    pub read_only: bool,
    /// Files in the volume may be executed.
    #[serde(default)]
    pub exec: bool,
}

/// Where writes to granted paths go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
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

/// An allow-list enforced by a host-side proxy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
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

/// 'proxy' (default): an empty network namespace and the allow-list proxy; 'host': the
/// host's network, narrowed by the port lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
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

/// Resource limits. Sizes are bytes or strings such as '64k', '256M', '1.5G'.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    /// Memory for the whole sandbox (a cgroup; per process where none), at least 1M.
    pub memory: Option<Size>,
    /// Share of CPUs for the whole sandbox, e.g. 0.5.
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 4096))]
    pub cpus: Option<f64>,
    /// Most processes in the sandbox at once (its init and the command count).
    #[schemars(range(min = 2, max = 4194304))]
    pub pids: Option<u64>,
    /// Most open files per process (at most the host's hard limit).
    #[schemars(range(min = 16, max = 1048576))]
    pub open_files: Option<u64>,
    /// Largest file a process may write.
    pub file_size: Option<Size>,
    /// Size of the private /tmp, and of the overlay layers in the capturing write modes.
    pub disk: Option<Size>,
    /// CPU time per process: milliseconds or a string such as '10s'.
    pub cpu_time: Option<DurationMs>,
    /// Cap on captured stdout and on captured stderr (the SDK's default is 100M).
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

// The unions are read by hand (the Deserialize impls above), so their schemas are
// written here, next to them.

impl JsonSchema for NetworkPolicy {
    fn schema_name() -> Cow<'static, str> {
        "NetworkPolicy".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let rules = generator.subschema_for::<NetworkRules>();
        json_schema!({
            "description": "'none' (default): an empty network namespace with loopback only; 'loopback': the same, named for intent; 'host': the host's network (a caveat); or an allow-list reached through corral's proxy.",
            "anyOf": [{ "type": "string", "enum": ["none", "loopback", "host"] }, rules]
        })
    }
}

impl JsonSchema for InheritEnv {
    fn schema_name() -> Cow<'static, str> {
        "InheritEnv".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [{ "type": "boolean" }, { "type": "array", "items": { "type": "string" } }]
        })
    }
}

impl JsonSchema for SeccompPolicy {
    fn schema_name() -> Cow<'static, str> {
        "SeccompPolicy".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = crate::seccomp::PROFILES.iter().map(|(n, _)| *n).collect();
        let descriptions: Vec<String> = crate::seccomp::PROFILES.iter().map(|(n, d)| format!("{n}: {d}")).collect();
        let syscalls = json_schema!({ "type": "array", "items": { "type": "string", "pattern": "^[A-Za-z0-9_]+$" } });
        json_schema!({
            "description": format!("A seccomp profile (default 'default'), or one with extra allowed / refused system calls. {}", descriptions.join("; ")),
            "anyOf": [
                { "type": "string", "enum": names },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "profile": { "type": "string", "enum": names },
                        "allow": syscalls,
                        "deny": syscalls
                    }
                }
            ]
        })
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

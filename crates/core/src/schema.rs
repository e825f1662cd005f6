//! The policy's JSON Schema, generated from the policy model in `policy.rs`, so that what
//! editors complete and validate is what the normaliser reads. Runs in: anywhere (pure
//! code); the package ships the result as `schema/policy.schema.json`.
//!
//! The schema checks shapes, types, names and simple ranges; the normaliser remains the
//! authority (paths that must exist, rules that conflict, the host's own limits).

use crate::policy::Policy;
use schemars::generate::SchemaSettings;

/// Where the schema is published inside the npm package and the repository.
pub const SCHEMA_PATH: &str = "schema/policy.schema.json";

/// The JSON Schema (draft-07, the draft editors support best) of a policy file.
pub fn policy_schema() -> serde_json::Value {
    let generator = SchemaSettings::draft07().for_deserialize().into_generator();
    let schema = generator.into_root_schema_for::<Policy>();
    serde_json::to_value(schema).expect("a schema is JSON")
}

/// The schema as committed: pretty JSON with a trailing newline.
pub fn policy_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&policy_schema()).expect("a schema is JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The committed schema is the generated one. `CORRAL_UPDATE_SCHEMA=1 cargo test -p
    /// corral-core schema` rewrites it after a change to the policy model.
    #[test]
    fn committed_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(SCHEMA_PATH);
        let generated = policy_schema_text();
        if std::env::var_os("CORRAL_UPDATE_SCHEMA").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date: run CORRAL_UPDATE_SCHEMA=1 cargo test -p corral-core schema",
            path.display()
        );
    }

    #[test]
    fn a_policy_file_may_name_its_schema() {
        let p = Policy::from_json(r#"{"$schema":"./node_modules/corral/schema/policy.schema.json","hostname":"h"}"#);
        assert_eq!(p.unwrap().hostname.as_deref(), Some("h"));
        let schema = policy_schema();
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema["properties"]["$schema"].is_object());
        assert!(schema["properties"]["limits"].is_object());
    }
}

//! Writing SBPL, the Seatbelt profile language: string literals, path filters, rules.
//!
//! Runs in: the caller on macOS; plain code, tested on any host.
//!
//! Everything that puts a host path into profile text goes through [`quote`], so a path can
//! never end a string literal early or start a new rule.

use corral_core::CorralError;
use std::path::{Component, Path, PathBuf};

/// Top-level directories that are symlinks into `/private` on macOS.
const PRIVATE_ALIASES: &[&str] = &["etc", "tmp", "var"];

/// `path` as an SBPL string literal, with `\` and `"` escaped. Refuses what a profile cannot
/// express safely (NUL bytes, line breaks, non-UTF-8 names) and what Seatbelt, which sees
/// resolved paths, could never match (relative paths, `..`).
pub fn quote(path: &Path, field: &str) -> Result<String, CorralError> {
    let refuse = |why: &str| CorralError::policy(field, format!("{}: {why}", path.display()));
    let s = path.to_str().ok_or_else(|| refuse("is not valid UTF-8, which a Seatbelt profile cannot express"))?;
    if s.contains(['\0', '\n', '\r']) {
        return Err(refuse("contains a NUL byte or a line break, which a Seatbelt profile cannot express"));
    }
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(refuse("is not an absolute path without `..`"));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// Every spelling of `path` that Seatbelt may be asked about. Seatbelt matches resolved
/// paths, and on macOS `/etc`, `/tmp` and `/var` resolve into `/private`, so a rule written
/// for one spelling must also name the other. The given spelling comes first.
pub fn host_forms(path: &Path) -> Vec<PathBuf> {
    let is_alias = |c: Option<Component>| match c {
        Some(Component::Normal(n)) => n.to_str().is_some_and(|n| PRIVATE_ALIASES.contains(&n)),
        _ => false,
    };
    // Rebuilt from components: no trailing slash or `.`, which would never match.
    let path: PathBuf = path.components().collect();
    let mut forms = vec![path.clone()];
    let mut parts = path.components();
    if parts.next() != Some(Component::RootDir) {
        return forms;
    }
    let mut after = parts.clone();
    match after.next() {
        first if is_alias(first) => forms.push(Path::new("/private").join(parts.as_path())),
        Some(Component::Normal(n)) if n == "private" && is_alias(after.clone().next()) => {
            forms.push(Path::new("/").join(after.as_path()))
        }
        _ => {}
    }
    forms
}

/// `(subpath "…")` filters for every host form of `path`.
pub fn subpaths(path: &Path, field: &str) -> Result<Vec<String>, CorralError> {
    filters("subpath", path, field)
}

/// `(literal "…")` filters for every host form of `path`.
pub fn literals(path: &Path, field: &str) -> Result<Vec<String>, CorralError> {
    filters("literal", path, field)
}

fn filters(kind: &str, path: &Path, field: &str) -> Result<Vec<String>, CorralError> {
    host_forms(path).iter().map(|p| Ok(format!("({kind} {})", quote(p, field)?))).collect()
}

/// Appends one rule. A single filter stays on the rule's line; several go one per line so
/// a diff of two profiles reads rule by rule.
pub fn rule(out: &mut String, action: &str, ops: &str, filters: &[String]) {
    out.push('(');
    out.push_str(action);
    out.push(' ');
    out.push_str(ops);
    match filters {
        [] => {}
        [one] => {
            out.push(' ');
            out.push_str(one);
        }
        many => {
            for f in many {
                out.push_str("\n  ");
                out.push_str(f);
            }
        }
    }
    out.push_str(")\n");
}

/// An SBPL string literal for a fixed, known-safe name (a Mach service, a sysctl).
pub fn name(kind: &str, value: &str) -> String {
    debug_assert!(!value.contains(['"', '\\', '\n', '\0']));
    format!("({kind} \"{value}\")")
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::ErrorCode;

    #[test]
    fn quote_escapes_and_refuses() {
        assert_eq!(quote(Path::new(r#"/a "b"\c"#), "f").unwrap(), r#""/a \"b\"\\c""#);
        for bad in ["/a\nb", "/a\0b", "/a\rb", "rel/path", "/a/../b"] {
            let e = quote(Path::new(bad), "mounts[0]").unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("mounts[0]")), "{bad:?}");
        }
    }

    #[test]
    fn private_aliases_go_both_ways() {
        let forms = |p: &str| host_forms(Path::new(p)).into_iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
        assert_eq!(forms("/tmp"), ["/tmp", "/private/tmp"]);
        assert_eq!(forms("/var/folders/x"), ["/var/folders/x", "/private/var/folders/x"]);
        assert_eq!(forms("/private/etc/hosts"), ["/private/etc/hosts", "/etc/hosts"]);
        assert_eq!(forms("/private"), ["/private"]);
        assert_eq!(forms("/private/Users"), ["/private/Users"]);
        assert_eq!(forms("/etcetera"), ["/etcetera"]);
        assert_eq!(forms("/usr/etc"), ["/usr/etc"]);
        assert_eq!(forms("/tmp/./x/"), ["/tmp/x", "/private/tmp/x"]);
    }

    #[test]
    fn rules_format_one_or_many_filters() {
        let mut out = String::new();
        rule(&mut out, "allow", "process-fork", &[]);
        rule(&mut out, "allow", "file-read*", &["(literal \"/\")".into()]);
        rule(&mut out, "deny", "file-write*", &["(subpath \"/a\")".into(), "(subpath \"/b\")".into()]);
        assert_eq!(out, "(allow process-fork)\n(allow file-read* (literal \"/\"))\n(deny file-write*\n  (subpath \"/a\")\n  (subpath \"/b\"))\n");
    }
}

//! Path rules shared by the planner: `~` and relative paths resolve against the caller,
//! `.` and `..` are removed lexically, symlinks are resolved at plan time.
//!
//! Runs in: the client, when planning.

use crate::error::{CorralError, Result};
use crate::host::{Context, HostFs};
use crate::spec::MountSpec;
use std::path::{Component, Path, PathBuf};

/// Expands `~`, makes relative paths absolute against the caller's cwd, removes `.` and
/// `..` lexically, then resolves symlinks. The path must exist.
pub fn resolve_existing(field: &str, raw: &str, ctx: &Context, fs: &dyn HostFs) -> Result<PathBuf> {
    let abs = absolute(field, raw, ctx)?;
    fs.canonicalize(&abs).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound { "does not exist".to_string() } else { e.to_string() };
        CorralError::policy(field, format!("{}: {what}", abs.display()))
    })
}

/// `~` expansion and lexical absolutisation, without touching the file system.
pub fn absolute(field: &str, raw: &str, ctx: &Context) -> Result<PathBuf> {
    if raw.is_empty() {
        return Err(CorralError::policy(field, "path is empty"));
    }
    if raw.contains('\0') {
        return Err(CorralError::policy(field, "path contains a NUL byte"));
    }
    let expanded = if raw == "~" || raw.starts_with("~/") {
        let home = ctx
            .home
            .as_ref()
            .ok_or_else(|| CorralError::policy(field, "~ used but the caller has no home directory"))?;
        home.join(raw.trim_start_matches('~').trim_start_matches('/'))
    } else if raw.starts_with('~') {
        return Err(CorralError::policy(field, "only ~ and ~/… are supported, not ~user"));
    } else {
        ctx.cwd.join(raw)
    };
    Ok(lexical(&expanded))
}

/// Removes `.` and `..` without looking at the file system.
pub fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Resolves the longest existing prefix of `p` (symlinks included) and appends the rest:
/// for paths that may not exist yet, such as protected ones.
pub fn resolve_prefix(p: &Path, fs: &dyn HostFs) -> PathBuf {
    let mut missing = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(real) = fs.canonicalize(&cur) {
            return missing.iter().rev().fold(real, |acc: PathBuf, part| acc.join(part));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

pub fn depth(p: &Path) -> usize {
    p.components().filter(|c| matches!(c, Component::Normal(_))).count()
}

pub fn mount_target(m: &MountSpec) -> &Path {
    match m {
        MountSpec::Bind { target, .. }
        | MountSpec::Overlay { target, .. }
        | MountSpec::Tmpfs { target, .. }
        | MountSpec::Proc { target }
        | MountSpec::Dev { target }
        | MountSpec::Mask { target } => target,
        MountSpec::Symlink { link, .. } => link,
    }
}

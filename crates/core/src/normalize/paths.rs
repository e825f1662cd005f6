//! Path rules shared by the planner: `~` and relative paths resolve against the caller,
//! `.` and `..` are removed lexically, symlinks are looked at one component at a time.
//!
//! A grant means the path as written. A symlink on the way is followed only when nothing
//! a sandbox of this caller wrote can have put it there: it sits in a directory that only
//! root can write (`/var/run -> /run`, `/bin -> usr/bin`, a home directory that is a link
//! an administrator made). For a root caller, whose earlier sandboxes may have written
//! root-owned links anywhere it granted, only the system's own directories qualify. Any
//! other symlink is refused: an earlier run could have planted it to redirect this one.
//! Restrictions (deny, protect, noexec) follow every symlink instead, since hiding or
//! pinning more than asked is never an escape.
//!
//! Runs in: the client, when planning.

use crate::error::{CorralError, Result};
use crate::host::{Context, FileKind, HostFs};
use crate::spec::MountSpec;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Links followed in one path before giving up, as the kernel does (`ELOOP`).
const MAX_LINKS: usize = 40;
/// Directories whose root-owned symlinks a root caller still trusts: the top level (`/bin`),
/// `/var` (`/var/run`, `/var/lock`), `/home` (home directories that are links), and the
/// few system directories links are made in (`/etc/localtime`, `/etc/alternatives/java`,
/// `/usr/lib/jvm/default-java`). Only these directories themselves, never the trees under
/// them: a root caller's earlier sandbox with `--write /usr/local/share/x` or
/// `--write /etc/x` writes root-owned links there, and a later grant through one would be
/// redirected wherever that run chose.
const ROOT_TRUSTED_DIRS: &[&str] = &[
    "/",
    "/var",
    "/home",
    "/usr",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/lib/jvm",
    "/etc",
    "/etc/alternatives",
];

/// Expands `~`, makes relative paths absolute against the caller's cwd, removes `.` and
/// `..` lexically, then follows trusted symlinks only (see the module comment). The path
/// must exist; the result has no symlink in it.
pub fn resolve_as_written(field: &str, raw: &str, ctx: &Context, fs: &dyn HostFs) -> Result<PathBuf> {
    let abs = absolute(field, raw, ctx)?;
    let mut done = PathBuf::from("/");
    let mut rest: VecDeque<OsString> = names(&abs).collect();
    let mut links = 0;
    while let Some(name) = rest.pop_front() {
        let next = done.join(&name);
        match fs.kind(&next) {
            None => {
                return Err(CorralError::policy(field, format!("{}: does not exist", abs.display())));
            }
            Some(FileKind::Symlink(to)) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(CorralError::policy(field, format!("{}: too many levels of symlinks", abs.display())));
                }
                let followed = lexical(&done.join(&to));
                if !trusted_symlink(&next, ctx, fs) {
                    return Err(CorralError::policy(
                        field,
                        format!(
                            "{} is a symlink (to {}) in a directory that is not the system's: a grant means the path as written and is never redirected by a link an earlier run could have planted",
                            next.display(),
                            to.display()
                        ),
                    )
                    .with_hint(format!("grant the link's target, {}, if that is what you mean", followed.display())));
                }
                for part in names(&followed).collect::<Vec<_>>().into_iter().rev() {
                    rest.push_front(part);
                }
                done = PathBuf::from("/");
            }
            Some(_) => done = next,
        }
    }
    Ok(done)
}

/// A symlink nobody but root can have put where it is (see the module comment).
pub fn trusted_symlink(link: &Path, ctx: &Context, fs: &dyn HostFs) -> bool {
    let Some(parent) = link.parent() else { return false };
    let Some(dir) = fs.owner(parent) else { return false };
    if dir.uid != 0 || dir.mode & 0o022 != 0 {
        return false;
    }
    ctx.uid != 0 || ROOT_TRUSTED_DIRS.iter().any(|d| parent == Path::new(d))
}

fn names(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        _ => None,
    })
}

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
        | MountSpec::Dev { target, .. }
        | MountSpec::Mask { target }
        | MountSpec::Pin { target, .. } => target,
        MountSpec::Symlink { link, .. } => link,
    }
}

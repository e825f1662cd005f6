//! Where this helper's base cgroup goes, and clearing what dead helpers left there. Runs
//! in: the helper.

use super::backend::{Anchor, Backend};
use super::error::CgroupError;
use super::files::{remove_empty_children, remove_empty_tree};
use super::tree::{Dir, Mount, Tree};
use cgroups_rs::fs::cgroup::get_cgroups_relative_paths;
use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Where the base goes.
pub(super) enum Placement {
    /// `$CORRAL_CGROUP`, relative to the hierarchy root.
    Delegated(PathBuf),
    /// `corral/` at the top (root).
    Top,
    /// Below the process's own cgroup (non-root).
    Own,
}

impl Placement {
    /// `$CORRAL_CGROUP` if set, else the top as root, else below our own cgroup.
    pub fn choose(backend: &dyn Backend, uid: nix::unistd::Uid) -> Result<Placement, CgroupError> {
        Ok(match std::env::var("CORRAL_CGROUP") {
            Ok(p) if !p.trim().is_empty() => Placement::Delegated(delegated_path(&p, backend)?),
            _ if uid.is_root() => Placement::Top,
            _ => Placement::Own,
        })
    }

    pub fn anchor(&self) -> Anchor {
        match self {
            Placement::Delegated(_) => Anchor::Delegated,
            Placement::Top => Anchor::Top,
            Placement::Own => Anchor::Own,
        }
    }

    /// The base's name is this followed by the helper's pid.
    pub fn prefix(&self) -> &'static str {
        match self {
            Placement::Own => "corral-h",
            _ => "h",
        }
    }

    /// The cgroup the base goes in, in each mounted hierarchy.
    pub fn parent(&self, backend: &dyn Backend, mounts: &[Mount]) -> Result<Tree, CgroupError> {
        let own = match self {
            Placement::Own => get_cgroups_relative_paths().map_err(|e| {
                CgroupError::Unusable(format!("cannot read this process's cgroups from /proc/self/cgroup: {e}"))
            })?,
            _ => HashMap::new(),
        };
        let mut dirs = Vec::new();
        for m in mounts {
            let rel = match self {
                Placement::Delegated(p) => p.clone(),
                Placement::Top => PathBuf::from("corral"),
                Placement::Own => own_path(&own, m, backend.own_key(m.kind))?,
            };
            dirs.push(Dir { kind: m.kind, path: m.path.join(rel), mount_root: m.mount_root.clone() });
        }
        Ok(Tree { v2: backend.unified(), root: dirs[0].path.clone(), dirs })
    }
}

/// `$CORRAL_CGROUP` as a path relative to the hierarchy root; `..` is refused.
fn delegated_path(raw: &str, backend: &dyn Backend) -> Result<PathBuf, CgroupError> {
    let rel = backend.below_mount(raw.trim());
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(CgroupError::Unusable(format!("CORRAL_CGROUP={raw:?} must be a cgroup path without `..`")))
            }
        }
    }
    Ok(out)
}

/// This process's cgroup in the hierarchy of `m` (its line in `/proc/self/cgroup` has
/// `key`), relative to the mount.
fn own_path(own: &HashMap<String, String>, m: &Mount, key: &str) -> Result<PathBuf, CgroupError> {
    let path = own.get(key).ok_or_else(|| {
        CgroupError::Unusable(format!("/proc/self/cgroup names no cgroup for the {} controller", m.kind.name()))
    })?;
    let root = m.mount_root.to_string_lossy();
    let rel = if root == "/" { path.as_str() } else { path.strip_prefix(root.as_ref()).unwrap_or(path) };
    Ok(PathBuf::from(rel.trim_start_matches('/')))
}

/// Removes the bases that helpers killed by SIGKILL left in `parent`: `<prefix><pid>` for a
/// pid that no longer exists. Their sandboxes should have died with them (each init has its
/// helper as death signal), but a paused one cannot act on that: its processes are thawed
/// and killed here, so that they end (those of a base whose rmdir then still fails go at the
/// next sweep). Of our own name (a reused pid) only the empty sandbox cgroups inside go.
pub(super) fn remove_stale(parent: &Path, prefix: &str, own: u32) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else { continue };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(pid) = digits.parse::<i32>() else { continue };
        let path = entry.path();
        if pid as u32 == own {
            remove_empty_children(&path);
        } else if pid > 0 && !alive(pid) {
            end_stale_sandboxes(&path);
            remove_empty_tree(&path);
        }
    }
}

/// Kills what is left in the sandbox cgroups of a dead helper's base `base`, then thaws
/// them (v1 freezer `freezer.state`, v2 `cgroup.freeze`) so that the kill lands. One pass,
/// bounded by what the directories list; nothing here waits.
fn end_stale_sandboxes(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for pid in fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
            if let Ok(pid @ 1..) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
        let _ = fs::write(dir.join("cgroup.freeze"), "0");
    }
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM means it exists but is not ours.
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::super::tree::Kind;
    use super::super::{v1::V1, v2::V2};
    use super::*;

    #[test]
    fn delegated_paths() {
        assert_eq!(delegated_path("/user.slice/x.scope", &V2).unwrap(), PathBuf::from("user.slice/x.scope"));
        assert_eq!(delegated_path("/sys/fs/cgroup/a/b", &V2).unwrap(), PathBuf::from("a/b"));
        assert_eq!(delegated_path("/sys/fs/cgroup/a/b", &V1).unwrap(), PathBuf::from("sys/fs/cgroup/a/b"));
        assert_eq!(delegated_path("a/./b/", &V2).unwrap(), PathBuf::from("a/b"));
        assert!(delegated_path("a/../../etc", &V2).is_err());
    }

    #[test]
    fn own_paths_strip_the_mount_root() {
        let own: HashMap<String, String> =
            [("memory".to_string(), "/docker/abc/x".to_string()), (String::new(), "/user.slice/y".to_string())].into();
        let m =
            |root: &str| Mount { kind: Kind::Memory, path: "/sys/fs/cgroup/memory".into(), mount_root: root.into() };
        assert_eq!(own_path(&own, &m("/"), V1.own_key(Kind::Memory)).unwrap(), PathBuf::from("docker/abc/x"));
        assert_eq!(own_path(&own, &m("/docker/abc"), V1.own_key(Kind::Memory)).unwrap(), PathBuf::from("x"));
        assert_eq!(own_path(&own, &m("/"), V2.own_key(Kind::Memory)).unwrap(), PathBuf::from("user.slice/y"));
    }
}

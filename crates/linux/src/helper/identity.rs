//! The host identity of a root caller's sandbox, and the maps that give it. Runs in: the
//! helper (the sandbox's side is `crate::sandbox::init::userns`).
//!
//! A sandbox's user namespace maps one id. For a non-root caller that is the caller's own
//! uid, onto itself, which the sandbox's init may write alone. For root the same map would
//! make the sandbox's root the host's root: it would read every root-only file it can see
//! and could leave set-user-ID-root files behind. So a root caller's sandbox maps its root
//! onto an unprivileged host uid and gid instead (a map only a process privileged outside
//! the namespace may write: the helper, as a container runtime's parent process does), and
//! the caller's grants become idmapped mounts, so that the caller's files are the sandbox
//! root's there and what it creates lands owned by the caller.
//!
//! The grants are idmapped through a user namespace of their own, made once per helper,
//! whose map shifts host root onto the sandbox's host uid and leaves every other id as it
//! is (`0 H 1`, `1 1 H-1`, and the ids above H onto themselves). Through the sandbox's own
//! namespace, which maps root alone, every other user's file would be unmapped, and the
//! kernel refuses any write to a file whose owner is unmapped, even one its mode allows to
//! all: a world-writable file of another user stayed writable to a root caller's sandbox
//! before its ids were shifted, and stays so.
//!
//! Which ids. If the administrator gave root subordinate ids (a `root:` or `0:` line in
//! /etc/subuid and /etc/subgid), the first of each: that range is the host's own answer to
//! "ids root may hand to its containers". Otherwise corral's reserved id, 2080374784
//! (0x7C000000), for both: above the ranges distributions hand out (subordinate ids from
//! 100000; systemd's container ranges end at 0x6FFFFFFF), below systemd's namespace and
//! foreign ranges (0x7FFE0000 up) and below 2^31, which some tools read as negative. The
//! id is refused if /etc/passwd or /etc/group names it, if it lies in another user's
//! subordinate range, or if the helper's own user namespace does not map it (inside a
//! container); the sandbox then runs as host root with a caveat (`ROOT_IDENTITY`).
//!
//! Every root sandbox gets the same ids. They cannot reach one another with them: each has
//! its own pid, mount and IPC namespaces, and the only host files it can write are the
//! caller's, through idmapped mounts that store the caller's ids.

use super::setid_guard::{self, Guard};
use crate::sandbox::init::mounts::Captured;
use crate::sys;
use corral_core::host::{HostIds, IdentityCapabilities};
use corral_core::spec::{MountSpec, ShiftedIdentity};
use corral_core::{CorralError, SandboxSpec};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// corral's reserved host id for a root caller's sandbox (see the module comment).
pub const RESERVED_ID: u32 = 0x7C00_0000;

/// Which ids a root caller's sandbox gets on this host, checked by mapping them once.
pub fn probe() -> IdentityCapabilities {
    if !nix::unistd::geteuid().is_root() {
        return IdentityCapabilities {
            root_maps_to: None,
            detail: Some("corral does not run as root here: a sandbox maps the caller's own ids".into()),
            ..Default::default()
        };
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (passwd, group, subuid, subgid) =
        (read("/etc/passwd"), read("/etc/group"), read("/etc/subuid"), read("/etc/subgid"));
    let chosen = choose("uid", &subuid, &passwd, &read("/proc/self/uid_map"))
        .and_then(|uid| Ok((uid, choose("gid", &subgid, &group, &read("/proc/self/gid_map"))?)));
    let ((uid, uid_from), (gid, gid_from)) = match chosen {
        Ok(c) => c,
        Err(why) => return IdentityCapabilities { detail: Some(why), ..Default::default() },
    };
    let ids = HostIds { uid, gid };
    let from = if uid_from == gid_from { uid_from.to_string() } else { format!("{uid_from}; {gid_from}") };
    let (setid_guard, setid_guard_detail) = match setid_guard::probe() {
        Ok(()) => (true, None),
        Err(why) => (false, Some(why)),
    };
    match try_map(ids) {
        Ok(()) => IdentityCapabilities {
            root_maps_to: Some(ids),
            detail: Some(format!("uid {uid}, gid {gid}: {from}")),
            idmapped_mounts: true,
            setid_guard,
            setid_guard_detail,
        },
        Err(Refused::Map(why)) => IdentityCapabilities {
            detail: Some(format!("cannot map uid {uid} and gid {gid}: {why}")),
            ..Default::default()
        },
        Err(Refused::Idmap(why)) => IdentityCapabilities {
            root_maps_to: Some(ids),
            detail: Some(format!("uid {uid}, gid {gid}: {from}; no idmapped mounts: {why}")),
            idmapped_mounts: false,
            setid_guard,
            setid_guard_detail,
        },
    }
}

/// The id to use for `kind` (`uid` or `gid`) and where it comes from, or why none.
fn choose(kind: &str, subordinate: &str, names: &str, own_map: &str) -> Result<(u32, &'static str), String> {
    let file = if kind == "uid" { "/etc/subuid" } else { "/etc/subgid" };
    let roots = ranges(subordinate).find(|(owner, _, count)| (*owner == "root" || *owner == "0") && *count > 0);
    let (id, from) = match roots {
        Some((_, start, _)) => {
            (start, if kind == "uid" { "root's range in /etc/subuid" } else { "root's range in /etc/subgid" })
        }
        None => (RESERVED_ID, "corral's reserved id"),
    };
    if id == 0 || id == 65534 || id == 65535 || id == u32::MAX {
        return Err(format!("{kind} {id} from {file} is not an unprivileged id"));
    }
    if let Some(name) = named(names, id) {
        let db = if kind == "uid" { "/etc/passwd" } else { "/etc/group" };
        return Err(format!("{kind} {id} ({from}) belongs to {name} in {db}"));
    }
    if roots.is_none() {
        if let Some((owner, ..)) =
            ranges(subordinate).find(|(_, start, count)| (*start..start.saturating_add(*count)).contains(&id))
        {
            return Err(format!("{kind} {id} ({from}) lies in {owner}'s range in {file}"));
        }
    }
    if !mapped(own_map, id) {
        return Err(format!("{kind} {id} ({from}) is not mapped into the user namespace corral runs in"));
    }
    Ok((id, from))
}

/// `name:start:count` lines of /etc/subuid or /etc/subgid.
fn ranges(text: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    text.lines().filter_map(|l| {
        let mut f = l.trim().split(':');
        let (owner, start, count) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
        Some((owner, start, count))
    })
}

/// The name /etc/passwd or /etc/group gives `id` (third field), if any.
fn named(db: &str, id: u32) -> Option<&str> {
    db.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.trim().parse::<u32>().ok()? == id).then_some(name)
    })
}

/// Whether a `/proc/self/uid_map` (`inside outside count` lines) covers `id`.
fn mapped(map: &str, id: u32) -> bool {
    map.lines().any(|l| {
        let n: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        n.len() == 3 && (n[0]..n[0] + n[2]).contains(&u64::from(id))
    })
}

enum Refused {
    /// The maps cannot be written.
    Map(String),
    /// They can, but mounts cannot be idmapped through them.
    Idmap(String),
}

/// Checks that `ids` can be mapped (a throwaway user namespace of the sandbox's kind) and
/// that a copy of the root file system's mount can be idmapped through the grants' user
/// namespace: what every root sandbox will need.
fn try_map(ids: HostIds) -> Result<(), Refused> {
    with_user_namespace(|pid| write_maps(pid, 0, 0, ids)).map_err(Refused::Map)?;
    let ns = mount_userns(ids).map_err(Refused::Idmap)?;
    let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Refused::Idmap(format!("opening /: {e}")))?;
    let tree = sys::open_tree_clone_one(root.as_fd()).map_err(|e| Refused::Idmap(format!("open_tree: {e}")))?;
    sys::mount_setattr_idmap(tree.as_fd(), ns.as_fd())
        .map_err(|e| Refused::Idmap(format!("idmapping a copy of / : {e}")))
}

/// Runs `f` on the pid of a child in a new user namespace, which waits until `f` is done;
/// returns a descriptor of that namespace (which outlives the child).
fn with_user_namespace(f: impl FnOnce(i32) -> Result<(), String>) -> Result<OwnedFd, String> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the helper is single-threaded; the child only reads and exits.
    match unsafe { sys::clone3_fork(libc::CLONE_NEWUSER as u64, None) } {
        Ok(sys::Forked::Child) => {
            drop(w);
            let _ = nix::unistd::read(r.as_fd(), &mut [0u8]);
            sys::exit_now(0)
        }
        Ok(sys::Forked::Parent { pid, .. }) => {
            drop(r);
            let result = f(pid).and_then(|()| userns_of(pid));
            drop(w);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            result
        }
        Err(e) => Err(format!("creating a user namespace: {e}")),
    }
}

/// The lines of a map that shifts `0` onto `host` and keeps every other id.
fn shifting_map(host: u32) -> String {
    let mut lines = format!("0 {host} 1\n");
    if host > 1 {
        lines.push_str(&format!("1 1 {}\n", host - 1));
    }
    // Ids above `host`, up to the last valid one (u32::MAX is no id).
    if host < u32::MAX - 1 {
        lines.push_str(&format!("{0} {0} {1}\n", host + 1, u32::MAX - host - 1));
    }
    lines
}

/// The user namespace the grants of sandboxes with `ids` are idmapped through (see the
/// module comment), made on first use and kept for the helper's life.
fn mount_userns(ids: HostIds) -> Result<BorrowedFd<'static>, String> {
    static MADE: OnceLock<(HostIds, OwnedFd)> = OnceLock::new();
    if let Some((made_for, fd)) = MADE.get() {
        return if *made_for == ids {
            Ok(fd.as_fd())
        } else {
            Err(format!("this helper idmaps for uid {}, not {}", made_for.uid, ids.uid))
        };
    }
    let fd = with_user_namespace(|pid| {
        for (file, host) in [("uid_map", ids.uid), ("gid_map", ids.gid)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, shifting_map(host)).map_err(|e| format!("writing {path}: {e}"))?;
        }
        Ok(())
    })?;
    Ok(MADE.get_or_init(|| (ids, fd)).1.as_fd())
}

/// Writes the uid and gid maps of the user namespace of `pid`: `inside` onto `ids`.
fn write_maps(pid: i32, uid: u32, gid: u32, ids: HostIds) -> Result<(), String> {
    for (file, inside, outside) in [("uid_map", uid, ids.uid), ("gid_map", gid, ids.gid)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, format!("{inside} {outside} 1\n")).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

fn userns_of(pid: i32) -> Result<OwnedFd, String> {
    let path = format!("/proc/{pid}/ns/user");
    nix::fcntl::open(Path::new(&path), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening {path}: {e}"))
}

/// Gives the just-cloned sandbox init `pid` its ids: writes its maps, idmaps the trees of
/// the caller's grants through its namespace and puts the writable ones under the set-id
/// guard, then says so on `go`. Whether anything was guarded, and `go` back when init will
/// say on it that its view is built (see [`guard_view`]).
pub fn map(
    pid: i32,
    spec: &SandboxSpec,
    ids: &ShiftedIdentity,
    captured: &Captured,
    go: OwnedFd,
    guard: &mut Guard,
) -> Result<(bool, Option<ViewWait>), CorralError> {
    let fail = |e: String| CorralError::spawn(format!("mapping the sandbox's ids: {e}"));
    write_maps(pid, spec.uid, spec.gid, HostIds { uid: ids.host_uid, gid: ids.host_gid }).map_err(fail)?;
    let mut guarded = false;
    if !ids.idmapped.is_empty() {
        let ns = mount_userns(HostIds { uid: ids.host_uid, gid: ids.host_gid }).map_err(fail)?;
        for (target, tree) in captured.trees_at(spec, &ids.idmapped) {
            sys::mount_setattr_idmap(tree, ns).map_err(|e| {
                CorralError::spawn(format!("idmapping the mount at {}: {e}", target.display()))
                    .with_errno(e.raw_os_error())
                    .with_hint("a file system in that tree cannot be idmapped on this kernel; `corral plan` shows which grants are (identity.idmapped)")
            })?;
        }
        // Host root's files are the sandbox root's there: see `setid_guard`. The planner
        // reported SETID_UNGUARDED where the host cannot do this, so here it must work.
        if ids.guard_setid {
            let trees: Vec<_> = writable_trees(spec, captured, &ids.idmapped).collect();
            guarded = !trees.is_empty();
            guard.guard(trees).map_err(|e| CorralError::spawn(format!("guarding set-id files: {e}")))?;
        }
    }
    nix::unistd::write(&go, b"g").map_err(|e| fail(format!("waking the sandbox: {e}")))?;
    // What init mounts beneath a guarded tree (pins are copies of its mount) is guarded
    // once init has built its view, before it runs anything of the caller's; the helper's
    // loop waits for that with its other work (`guard_view`).
    let view =
        setid_guard::view_needs_guarding(spec).then(|| ViewWait { go, targets: setid_guard::guarded_targets(spec) });
    Ok((guarded, view))
}

/// A sandbox whose init will say on `go` that its view is built, so that what it mounted
/// beneath the guarded `targets` is guarded before it goes on (see [`guard_view`]).
pub struct ViewWait {
    pub go: OwnedFd,
    targets: Vec<PathBuf>,
}

/// Init `pid` said on `view.go` that its view is built (it is readable): guards what it
/// mounted beneath the guarded grants, then lets it go on. An error ends the run (fail
/// closed); init ending meanwhile is no error (its exit is answered as ever).
pub fn guard_view(pid: i32, view: &ViewWait, guard: &mut Guard) -> Result<(), CorralError> {
    let go = view.go.as_fd();
    let fail = |e: String| CorralError::spawn(format!("guarding the set-id files in the sandbox's view: {e}"));
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut byte) {
            Ok(1) => break,
            Ok(_) => return Ok(()), // init ended before its view was built
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(fail(format!("waiting for the sandbox's view: {e}"))),
        }
    }
    guard.guard_view(pid, &view.targets).map_err(fail)?;
    nix::unistd::write(go, b"g").map_err(|e| fail(format!("waking the sandbox: {e}")))?;
    Ok(())
}

/// The writable bind trees among the idmapped ones, with their host sources.
fn writable_trees<'a>(
    spec: &'a SandboxSpec,
    captured: &'a Captured,
    idmapped: &'a [PathBuf],
) -> impl Iterator<Item = (&'a Path, BorrowedFd<'a>)> + 'a {
    captured.trees_at(spec, idmapped).filter_map(|(target, tree)| {
        spec.mounts.iter().find_map(|m| match m {
            MountSpec::Bind { source, target: t, writable: true, .. } if t == target => Some((source.as_path(), tree)),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\nodd:x:2080374784:1::/:/bin/sh\n";

    #[test]
    fn reserved_id_unless_root_has_a_range() {
        let full = "0 0 4294967295\n";
        assert_eq!(choose("uid", "", "", full), Ok((RESERVED_ID, "corral's reserved id")));
        assert_eq!(
            choose("uid", "alice:100000:65536\nroot:300000:65536\n", "", full),
            Ok((300000, "root's range in /etc/subuid"))
        );
        assert_eq!(choose("gid", "0:400000:1\n", "", full), Ok((400000, "root's range in /etc/subgid")));
    }

    #[test]
    fn the_grants_map_shifts_root_alone() {
        assert_eq!(shifting_map(RESERVED_ID), "0 2080374784 1\n1 1 2080374783\n2080374785 2080374785 2214592510\n");
        // Every valid id is covered once: 1 + (H - 1) + (u32::MAX - H - 1) = u32::MAX - 1.
        assert_eq!(1 + (RESERVED_ID - 1) + (u32::MAX - RESERVED_ID - 1), u32::MAX - 1);
        assert_eq!(shifting_map(1), "0 1 1\n2 2 4294967293\n");
    }

    #[test]
    fn ids_that_collide_are_refused() {
        let full = "0 0 4294967295\n";
        assert!(choose("uid", "", PASSWD, full).unwrap_err().contains("belongs to odd"));
        let e = choose("uid", "alice:2080000000:1000000\n", "", full).unwrap_err();
        assert!(e.contains("alice's range"), "{e}");
        // A container that maps only the first 65536 ids.
        assert!(choose("uid", "", "", "0 100000 65536\n").unwrap_err().contains("not mapped"));
        assert!(choose("uid", "root:0:65536\n", "", full).is_err());
    }
}

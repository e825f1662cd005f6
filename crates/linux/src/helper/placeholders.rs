//! Empty placeholders for denied or protected paths that do not exist yet. Runs in: the
//! helper, before a sandbox is cloned and after it is gone.
//!
//! A placeholder is the mount point the sandbox's mask or read-only pin needs; while it
//! exists nothing else can be created at that path, and a file the host writes there later
//! is written into it, so it stays hidden or read-only in the sandbox. It is created
//! relative to its (existing) parent opened without following symlinks, so a link planted
//! by an earlier run cannot redirect it.
//!
//! Several sandboxes (of this helper, of another helper of this user, or of another
//! caller: root and a non-root caller may carve out the same path) may stand on one
//! placeholder, and removing it while one does would take that sandbox's mount away, in
//! every namespace. Each sandbox stands on it with an open-file-description read lock
//! (`F_OFD_SETLK`, `F_RDLCK`) for its lifetime, and a placeholder is removed only when no
//! such lock is on it and it is still the empty thing corral made (marked with the
//! `user.corral.placeholder` attribute where the file system has user attributes;
//! otherwise only its creator removes it). The removal has to exclude standers in a way
//! nobody else can imitate, since anyone who can read a placeholder can lock it:
//! - a file is removed under a write lock, which needs a descriptor open for writing:
//!   only its owner and root get one (`flock`, which anyone who can open a file may take
//!   exclusively, is not used at all);
//! - a directory cannot be opened for writing, so its remover first sets the
//!   `user.corral.removing` attribute to its pid and start time (only the owner and root
//!   may set one; `XATTR_CREATE` lets one remover in at a time; one left by a remover killed
//!   outright is known as such), then tests for read locks and removes it. A stander takes
//!   its read lock first and then looks for that attribute, so either the remover sees the
//!   stander or the stander sees the remover and tries again. Where the file system has no
//!   user attributes the test for read locks is all there is.
//!
//! What another local user can do with a placeholder they can read is take a read lock too,
//! which only delays its removal, as a sandbox standing on it would: no run is refused or
//! waits because of it. Placeholders stay readable (0644, 0755) because a sandbox of
//! another caller must be able to open one to stand on it.
//!
//! A helper killed outright (SIGKILL, the OOM killer) cannot remove what it made: each
//! sandbox's placeholders are listed in a registry of this user's, and the next helper to
//! start removes those of helpers that are gone, by the same rules ([`registry`]).

mod registry;

use corral_core::spec::Placeholder;
use corral_core::CorralError;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use nix::unistd::UnlinkatFlags;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

const MARK: &std::ffi::CStr = c"user.corral.placeholder";
/// Set on a directory placeholder by the one remover at work on it.
const REMOVING: &std::ffi::CStr = c"user.corral.removing";
/// Attempts when a placeholder is removed between our finding and locking it.
const RETRIES: usize = 8;
/// Milliseconds to wait for a remover (who holds its lock or mark only to test and unlink).
const LOCK_WAITS: usize = 50;

/// A placeholder this sandbox stands on (and may have to remove).
pub struct Held {
    parent: OwnedFd,
    name: PathBuf,
    dir: bool,
    /// Open (read-only) on the placeholder, holding the read lock.
    lock: OwnedFd,
    created: bool,
}

/// The placeholders one sandbox stands on, and the list that names them (see [`sweep`]).
#[derive(Default)]
pub struct Holding {
    held: Vec<Held>,
    list: Option<registry::List>,
}

pub fn create(all: &[Placeholder]) -> Result<Holding, CorralError> {
    let mut held = Holding::default();
    if all.is_empty() {
        return Ok(held);
    }
    held.list = registry::List::new(all);
    for p in all {
        match hold(p) {
            Ok(Some(h)) => {
                if let (true, Some(list)) = (h.created, held.list.as_mut()) {
                    list.created(p, registry::Identity::of(h.lock.as_fd()));
                }
                held.held.push(h);
            }
            Ok(None) => {}
            Err(e) => {
                remove(held);
                return Err(CorralError::spawn(format!(
                    "cannot reserve {} for the sandbox: {e}",
                    p.root.join(&p.relative).display()
                )));
            }
        }
    }
    Ok(held)
}

fn hold(p: &Placeholder) -> nix::Result<Option<Held>> {
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let parent = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, &p.root, how)?;
    let mut waits = 0;
    let mut attempts = 0;
    while attempts < RETRIES {
        let made = if p.dir {
            nix::sys::stat::mkdirat(parent.as_fd(), &p.relative, Mode::from_bits_truncate(0o755))
        } else {
            nix::fcntl::openat(
                parent.as_fd(),
                &p.relative,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        };
        let created = match made {
            Ok(()) => true,
            // It exists (the real thing, or another sandbox's placeholder): stand on it.
            Err(nix::errno::Errno::EEXIST) => false,
            Err(e) => return Err(e),
        };
        // Read-only and not following a symlink.
        let lock = match nix::fcntl::openat(
            parent.as_fd(),
            &p.relative,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // A symlink there now fails the run when the sandbox opens the path; one this
            // caller cannot read is not one of ours to stand on.
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::EACCES) => return Ok(None),
            Err(nix::errno::Errno::ENOENT) => {
                attempts += 1;
                continue; // removed meanwhile: again
            }
            Err(e) => return Err(e),
        };
        if created {
            // Best effort: where user attributes are unsupported only the creator removes it.
            // SAFETY: a valid descriptor and a NUL-terminated name; the value is one byte.
            unsafe { libc::fsetxattr(lock.as_raw_fd(), MARK.as_ptr(), c"1".as_ptr().cast(), 1, 0) };
        }
        stand(lock.as_fd())?;
        let st = fstat(lock.as_fd())?;
        // A directory's remover marks it before it looks for read locks: seen now, it may
        // not have seen ours. Let it finish (or give up), then look again.
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            match remover(lock.as_fd()) {
                Remover::None | Remover::Gone => {}
                Remover::Alive if waits < LOCK_WAITS => {
                    drop(lock);
                    waits += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                Remover::Alive => return Err(nix::errno::Errno::EAGAIN),
            }
        }
        // Nobody removes a placeholder with a read lock on it: if ours is still the one at
        // the path now, it stays there as long as we hold the lock.
        if same_file(&st, &parent, p)? {
            return Ok(Some(Held { parent, name: p.relative.clone(), dir: p.dir, lock, created }));
        }
        attempts += 1;
    }
    Err(nix::errno::Errno::EAGAIN)
}

fn same_file(held: &FileStat, parent: &OwnedFd, p: &Placeholder) -> nix::Result<bool> {
    match fstatat(parent.as_fd(), &p.relative, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(now) => Ok(now.st_dev == held.st_dev && now.st_ino == held.st_ino),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The read lock that says a sandbox stands on the placeholder, waiting a little while a
/// file's remover holds the write lock (it does so only to unlink). Only a descriptor open
/// for writing takes a write lock, so only the file's owner and root can make this wait;
/// a directory cannot be write-locked at all. Never blocking for long: this helper serves
/// every sandbox.
fn stand(fd: BorrowedFd<'_>) -> nix::Result<()> {
    for _ in 0..LOCK_WAITS {
        match ofd_lock(fd, libc::F_OFD_SETLK, libc::F_RDLCK) {
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            r => return r.map(drop),
        }
    }
    Err(nix::errno::Errno::EAGAIN)
}

/// An open-file-description lock request on the whole file: `cmd` is `F_OFD_SETLK` or
/// `F_OFD_GETLK`, `kind` a lock type; the answer (for `F_OFD_GETLK`, a lock in the way or
/// `F_UNLCK`).
fn ofd_lock(fd: BorrowedFd<'_>, cmd: libc::c_int, kind: libc::c_int) -> nix::Result<libc::flock> {
    // SAFETY: an all-zero flock is valid (whole file from offset 0, l_pid 0 as OFD locks need).
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: fcntl on a descriptor we hold, with a flock we own.
        match unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut l) } {
            -1 => match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                e => return Err(e),
            },
            _ => return Ok(l),
        }
    }
}

/// Whether someone other than `fd`'s own open file description holds a lock on the file.
fn locked_by_others(fd: BorrowedFd<'_>) -> bool {
    ofd_lock(fd, libc::F_OFD_GETLK, libc::F_WRLCK).map_or(true, |l| l.l_type != libc::F_UNLCK as libc::c_short)
}

/// Who marked a directory as being removed.
#[derive(PartialEq)]
enum Remover {
    None,
    /// A process that still runs (or one we cannot tell about).
    Alive,
    /// A process that is gone: killed outright between marking and removing.
    Gone,
}

/// The mark a remover leaves while at work: its pid and start time, so that a mark left by
/// one killed outright is known as such.
fn remover_mark() -> Option<&'static str> {
    static MARK: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MARK.get_or_init(|| {
        let pid = std::process::id();
        Some(format!("{pid} {}", start_time(pid)?))
    })
    .as_deref()
}

/// A process's start time (clock ticks after boot), from `/proc/PID/stat`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (in parentheses) may hold anything; the fields after it do not.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a remover is at work on the directory `fd`.
fn remover(fd: BorrowedFd<'_>) -> Remover {
    let mut v = [0u8; 64];
    // SAFETY: a valid descriptor and a buffer of the given length.
    let n = unsafe { libc::fgetxattr(fd.as_raw_fd(), REMOVING.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    if n < 0 {
        return match nix::errno::Errno::last() {
            nix::errno::Errno::ENODATA | nix::errno::Errno::EOPNOTSUPP => Remover::None,
            nix::errno::Errno::ERANGE => Remover::Gone, // longer than any mark we set
            _ => Remover::Alive,                        // cannot tell: as if one were at work
        };
    }
    // Set only by the owner or root (never by a reader of the placeholder); anything but a
    // live process's pid and start time is what a killed remover left.
    let mark = std::str::from_utf8(&v[..n as usize]).ok().and_then(|m| m.split_once(' '));
    let live = mark
        .and_then(|(pid, start)| Some((pid.parse::<u32>().ok()?, start.parse::<u64>().ok()?)))
        .is_some_and(|(pid, start)| start_time(pid) == Some(start));
    if live {
        Remover::Alive
    } else {
        Remover::Gone
    }
}

fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> nix::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we hold.
        match unsafe { libc::flock(fd.as_raw_fd(), op) } {
            0 => return Ok(()),
            _ => match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                e => return Err(e),
            },
        }
    }
}

/// Placeholders of sandboxes that are gone which stayed because someone else stood on
/// them, with their lists (still locked, so no sweep takes them while this helper lives).
/// The sandbox still there may be another caller's, whose helper cannot remove what this
/// one made (only the owner and root can): this helper tries again whenever one of its
/// sandboxes ends, and a helper that exits or is killed leaves the lists to the next sweep.
/// The helper is single-threaded.
static PENDING: std::sync::Mutex<Vec<Holding>> = std::sync::Mutex::new(Vec::new());
/// Sandboxes' leftovers kept in [`PENDING`]; past that the oldest list is handed to the
/// next sweep (it is unlocked and kept on disk).
const MAX_PENDING: usize = 256;

/// Removes each placeholder nobody else stands on any more, if it is still the empty
/// thing corral made, then the list that named them (kept while one of them stays only
/// because someone else stands on it). Tries again for earlier sandboxes' that stayed.
pub fn remove(holding: Holding) {
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    let settle = |h: Holding| {
        let stayed = release(h.held);
        if !stayed.is_empty() {
            return Some(Holding { held: stayed, list: h.list });
        }
        if let Some(list) = h.list {
            list.remove();
        }
        None
    };
    // This sandbox's first: an earlier one's may be waiting for this one's to go.
    let this = settle(holding);
    let mut again: Vec<Holding> = std::mem::take(&mut *pending).into_iter().filter_map(settle).collect();
    again.extend(this);
    if again.len() > MAX_PENDING {
        // Dropped: each list's lock goes with its descriptor, its file stays for a sweep.
        again.drain(..again.len() - MAX_PENDING);
    }
    *pending = again;
}

/// Removes each placeholder nobody else stands on any more, if it is still the empty
/// thing corral made (rmdir refuses a non-empty directory; a file must be empty), and no
/// longer stands on the others. Hands back those of ours that stay only because someone
/// stands on them (or was removing them).
fn release(held: Vec<Held>) -> Vec<Held> {
    let mut stayed = Vec::new();
    for h in held {
        // We stand on it no more (a file's write lock would collide with our read lock).
        if ofd_lock(h.lock.as_fd(), libc::F_OFD_SETLK, libc::F_UNLCK).is_err() {
            continue;
        }
        let ours = h.created || marked(h.lock.as_fd());
        let Ok(held) = fstat(h.lock.as_fd()) else { continue };
        if !ours || !still_there(&h, &held) {
            continue;
        }
        let removal = if h.dir && held.st_mode & libc::S_IFMT == libc::S_IFDIR {
            remove_dir(&h, &held)
        } else if !h.dir && held.st_mode & libc::S_IFMT == libc::S_IFREG {
            remove_file(&h, &held)
        } else {
            Removal::Done
        };
        if removal == Removal::InUse {
            stayed.push(h);
        }
    }
    stayed
}

#[derive(PartialEq)]
enum Removal {
    /// Removed, or not to be removed (not empty, changed, not ours to remove).
    Done,
    /// Someone stands on it, or another remover is at work.
    InUse,
}

/// Whether the name still leads (without following a symlink) to the file `held` is.
fn still_there(h: &Held, held: &FileStat) -> bool {
    fstatat(h.parent.as_fd(), &h.name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|now| now.st_dev == held.st_dev && now.st_ino == held.st_ino)
}

/// Unlinks an empty placeholder file under a write lock: granted only when no read lock
/// (no sandbox standing on it) is there, and only to a descriptor open for writing, which
/// nobody but its owner and root gets. Standers lock first and then check the name, so
/// with the write lock held and the name still ours, nobody can start standing on it.
fn remove_file(h: &Held, held: &FileStat) -> Removal {
    let Ok(w) = nix::fcntl::openat(
        h.parent.as_fd(),
        &h.name,
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return Removal::Done; // not ours to write: its owner removes it
    };
    if !fstat(w.as_fd()).is_ok_and(|st| st.st_dev == held.st_dev && st.st_ino == held.st_ino) {
        return Removal::Done;
    }
    if ofd_lock(w.as_fd(), libc::F_OFD_SETLK, libc::F_WRLCK).is_err() {
        return Removal::InUse; // another sandbox stands on it
    }
    if fstat(w.as_fd()).is_ok_and(|now| now.st_size == 0) && still_there(h, held) {
        let _ = nix::unistd::unlinkat(h.parent.as_fd(), &h.name, UnlinkatFlags::NoRemoveDir);
    }
    Removal::Done
}

/// Removes an empty placeholder directory nobody stands on. No descriptor of a directory is
/// open for writing, so no write lock excludes standers; instead the remover marks it
/// first (only its owner and root may, and only one remover at a time), then tests for
/// read locks. A stander locks first and then looks for the mark (see [`hold`]).
fn remove_dir(h: &Held, held: &FileStat) -> Removal {
    let fd = h.lock.as_raw_fd();
    let Some(mark) = remover_mark() else { return Removal::Done };
    let set = || {
        // SAFETY: a valid descriptor, a NUL-terminated name and a value of the given length.
        match unsafe { libc::fsetxattr(fd, REMOVING.as_ptr(), mark.as_ptr().cast(), mark.len(), libc::XATTR_CREATE) } {
            0 => Ok(()),
            _ => Err(nix::errno::Errno::last()),
        }
    };
    let mut marked = set();
    if marked == Err(nix::errno::Errno::EEXIST) && remover(h.lock.as_fd()) == Remover::Gone {
        // Left by a remover killed outright: ours now.
        // SAFETY: a valid descriptor and a NUL-terminated name.
        unsafe { libc::fremovexattr(fd, REMOVING.as_ptr()) };
        marked = set();
    }
    match marked {
        Ok(()) => {}
        // No user attributes on this file system (its placeholders carry no mark either,
        // and only their creator removes them): the test for read locks is all there is.
        Err(nix::errno::Errno::EOPNOTSUPP) => {}
        // Another remover at work.
        Err(nix::errno::Errno::EEXIST) => return Removal::InUse,
        // Not ours to mark: left to its owner.
        Err(_) => return Removal::Done,
    }
    let marked = marked.is_ok();
    let in_use = locked_by_others(h.lock.as_fd());
    // rmdir refuses a directory that is not empty: then it stays, unmarked again.
    if !in_use
        && still_there(h, held)
        && nix::unistd::unlinkat(h.parent.as_fd(), &h.name, UnlinkatFlags::RemoveDir).is_ok()
    {
        return Removal::Done;
    }
    if marked {
        // SAFETY: a valid descriptor and a NUL-terminated name.
        unsafe { libc::fremovexattr(fd, REMOVING.as_ptr()) };
    }
    if in_use {
        Removal::InUse
    } else {
        Removal::Done
    }
}

fn marked(fd: BorrowedFd<'_>) -> bool {
    mark(fd) == Some(true)
}

/// Whether the file `fd` carries the mark; `None` when its file system has no user
/// attributes at all (so no placeholder there carries one).
fn mark(fd: BorrowedFd<'_>) -> Option<bool> {
    let mut v = [0u8; 1];
    // SAFETY: a valid descriptor and a buffer of the given length.
    match unsafe { libc::fgetxattr(fd.as_raw_fd(), MARK.as_ptr(), v.as_mut_ptr().cast(), v.len()) } {
        1 => return Some(true),
        0.. => return Some(false), // an attribute of that name, but not the mark
        _ => {}
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::EOPNOTSUPP => None,
        _ => Some(false),
    }
}

/// Removes what helpers killed outright left: the placeholders their lists name that are
/// still marked (or are the very file the dead helper created), empty, and stood on by
/// nobody. Never fails and never follows a symlink; anything unexpected is left alone.
/// A list naming one that stays only because someone stands on it (a sandbox of another
/// caller's, say) is kept for the next sweep.
pub fn sweep() {
    registry::sweep(|listed| {
        let found: Vec<Held> = listed.iter().filter_map(|(p, id)| reopen(p, *id)).collect();
        !release(found).is_empty()
    });
}

/// A listed placeholder as [`release`] takes it: there, of the kind listed, and either
/// marked or the file its creator recorded.
fn reopen(p: &Placeholder, identity: Option<registry::Identity>) -> Option<Held> {
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let parent = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, &p.root, how).ok()?;
    // Non-blocking: a FIFO put there opens without waiting for a writer.
    let lock = nix::fcntl::openat(
        parent.as_fd(),
        &p.relative,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let kind = fstat(lock.as_fd()).ok()?.st_mode & libc::S_IFMT;
    if kind != if p.dir { libc::S_IFDIR } else { libc::S_IFREG } {
        return None;
    }
    // A list is only a claim: whoever can write the registry (a sandbox with a write grant
    // over /tmp or the runtime directory too) can name any file, and its device, inode and
    // birth time are there for anyone who can stat it. So the recorded identity counts only
    // where the file system keeps no marks at all; elsewhere an unmarked file is not ours.
    let ours = match mark(lock.as_fd()) {
        Some(marked) => marked,
        None => identity.is_some_and(|id| registry::Identity::of(lock.as_fd()) == Some(id)),
    };
    ours.then(|| Held { parent, name: p.relative.clone(), dir: p.dir, lock, created: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-ph-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        d
    }

    fn open_ro(p: &std::path::Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK, Mode::empty()).unwrap()
    }

    #[test]
    fn locks_taken_by_others_refuse_no_stander_and_only_read_locks_keep_a_placeholder() {
        for dir in [false, true] {
            let root = scratch(if dir { "locks-dir" } else { "locks-file" });
            let p = Placeholder { root: root.clone(), relative: PathBuf::from(".envrc"), dir };
            let path = root.join(".envrc");
            let first = hold(&p).unwrap().unwrap();
            assert!(first.created);
            // Anyone who can read it: an exclusive flock and a read lock of their own.
            let other = open_ro(&path);
            flock(other.as_fd(), libc::LOCK_EX | libc::LOCK_NB).unwrap();
            ofd_lock(other.as_fd(), libc::F_OFD_SETLK, libc::F_RDLCK).unwrap();
            let second = hold(&p).unwrap().unwrap();
            assert!(!second.created);
            assert_eq!(release(vec![first, second]).len(), 2, "not said to be in use");
            assert!(path.exists(), "removed while someone held a read lock on it");
            drop(other);
            // Only a flock left by someone: nothing to corral.
            let other = open_ro(&path);
            flock(other.as_fd(), libc::LOCK_EX | libc::LOCK_NB).unwrap();
            assert!(release(vec![hold(&p).unwrap().unwrap()]).is_empty());
            assert!(!path.exists(), "not removed once nobody stood on it");
            if dir {
                // A remover that gave up left no mark behind it.
                let again = hold(&p).unwrap().unwrap();
                assert!(remover(again.lock.as_fd()) == Remover::None);
            }
            let _ = std::fs::remove_dir_all(&root);
        }
    }

    #[test]
    fn a_directory_marked_by_a_live_remover_waits_and_one_left_by_a_dead_one_does_not() {
        let root = scratch("marks");
        let p = Placeholder { root: root.clone(), relative: PathBuf::from("hooks"), dir: true };
        let path = root.join("hooks");
        let h = hold(&p).unwrap().unwrap();
        let set = |v: &str| {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: NUL-terminated path and name, a value of the given length.
            unsafe { libc::lsetxattr(c.as_ptr(), REMOVING.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        };
        // A remover at work (this very process): a stander waits, then refuses; another
        // remover leaves it alone.
        set(remover_mark().unwrap());
        assert_eq!(hold(&p).err(), Some(nix::errno::Errno::EAGAIN));
        release(vec![h]);
        assert!(path.exists());
        // Left by a remover that is gone (no such pid; garbage): stood on, then removed.
        std::fs::remove_dir(&path).unwrap();
        for stale in ["4194999 12", "junk"] {
            let made = hold(&p).unwrap().unwrap();
            set(stale);
            let h = hold(&p).unwrap().unwrap();
            release(vec![made, h]);
            assert!(!path.exists(), "a stale mark ({stale}) kept the placeholder");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}

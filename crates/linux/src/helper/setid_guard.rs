//! The set-id guard: a root caller's sandbox may not open a set-user-ID, set-group-ID or
//! file-capability file through its writable grants. Runs in: the helper (it marks each such
//! sandbox's writable trees) and a responder process the helper forks once (it answers).
//!
//! Why: a root caller's grants are idmapped, so host root's files there are the sandbox
//! root's own (`crate::helper::identity`). write(2) and truncate(2) clear a file's set-id
//! bits and capabilities, but stores through a shared writable mapping do not (page faults
//! never do), so a set-user-ID-root program already in a write grant could be rewritten and
//! keep its bit, for whoever runs it next on the host. Nothing the sandbox does can make
//! such a file (seccomp refuses the modes and the capability attribute, commit strips
//! them), so refusing to open the ones already there closes it. fanotify's open permission
//! events do that without a race: the kernel holds each open through a marked mount until
//! the responder answers, and the answer is about the inode actually being opened. (Asking
//! at mmap(2) would be racy: another thread can swap the descriptor between the check and
//! the call; and refusing shared writable mappings outright breaks SQLite's WAL.) A read-only
//! open is refused too: the event does not say how the file is being opened.
//!
//! What is marked: each writable tree before init may use it, with the host's submounts in
//! it; and, once init has built its view, every mount it made beneath one (a pin, the
//! directory above a protected file mounted on itself, is a copy of the grant's mount, and
//! a copy carries no mark). Init waits for that before it runs anything of the caller's.
//!
//! Cost: one round trip to the responder for each inode first opened through a marked mount
//! (60-90 µs on a small VM); an inode found plain gets an ignore mark, so later opens of it,
//! by any sandbox of this helper, are not held, until the next guarded sandbox starts: the
//! host may have made a remembered file set-id since, so every start forgets them all. The
//! marks are evictable (they do not keep an inode in memory; one the kernel evicts is asked
//! about again), and after `IGNORE_MARKS` of them (or a sixteenth of root's fanotify mark
//! budget, if less) they are all dropped and the counting starts over (a kernel before 5.19
//! has no evictable marks: there each pins its inode, and the bound is `PINNING_MARKS`).
//!
//! Fail closed. The group uses an unlimited queue (a full bounded one would let permission
//! events through). The helper keeps its own copy of the group, so while the responder is
//! gone opens wait rather than pass; when it dies, the helper kills every guarded sandbox
//! before it lets the group go (closing a group allows whatever it held). Permission events
//! need CAP_SYS_ADMIN in the host's user namespace: only a root caller's helper has it,
//! which is also the only caller whose sandbox owns host root's files. [`probe`] says
//! whether this host allows it; the planner reports `SETID_UNGUARDED` where it does not.

use crate::mountinfo::mount_points;
use crate::sys;
use crate::sys::close_all_except;
use corral_core::spec::MountSpec;
use corral_core::SandboxSpec;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Ignore marks the responder keeps before dropping them all, at most: they count against
/// root's `fs.fanotify.max_user_marks`, which every root helper and every other fanotify
/// user of the host shares, so one helper takes no more than a sixteenth of it.
const IGNORE_MARKS: usize = 65536;
/// The same where each mark pins its inode.
const PINNING_MARKS: usize = 8192;

/// The helper's side: the group, and the responder answering it.
#[derive(Default)]
pub struct Guard {
    active: Option<Active>,
}

struct Active {
    group: Fanotify,
    responder_pid: i32,
    responder: OwnedFd,
}

/// Whether this helper can guard a root caller's writable grants: a group with permission
/// events and an unlimited queue, and a mount mark on a detached copy of `/` (which nothing
/// opens through; it goes with the descriptor).
pub fn probe() -> Result<(), String> {
    let group = new_group()?;
    let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| format!("opening /: {e}"))?;
    let tree = sys::open_tree_clone_one(root.as_fd()).map_err(|e| format!("open_tree: {e}"))?;
    mark_mount(&group, tree.as_fd())
}

fn new_group() -> Result<Fanotify, String> {
    Fanotify::init(
        InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_UNLIMITED_QUEUE,
        // Non-blocking: the responder's descriptor of a FIFO must not wait for a writer.
        EventFFlags::O_RDONLY | EventFFlags::O_NONBLOCK | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
    )
    .map_err(|e| format!("fanotify_init with permission events: {e}"))
}

/// Marks the one mount `fd` is on (a detached tree or one of its submounts). By the
/// descriptor's magic link: fanotify_mark takes no O_PATH descriptor without a path.
fn mark_mount(group: &Fanotify, fd: BorrowedFd<'_>) -> Result<(), String> {
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    group
        .mark(MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_MOUNT, MaskFlags::FAN_OPEN_PERM, fd, Some(path.as_path()))
        .map_err(|e| format!("fanotify_mark of a mount: {e}"))
}

impl Guard {
    /// Guards the detached `trees`, writable copies of the host paths given with them: each
    /// tree's own mount and every mount below it. Must run in the single-threaded helper,
    /// before the sandbox that gets the trees runs anything.
    pub fn guard<'a>(&mut self, trees: impl IntoIterator<Item = (&'a Path, BorrowedFd<'a>)>) -> Result<(), String> {
        let mut table: Option<Vec<u8>> = None;
        for (source, tree) in trees {
            let group = self.start()?;
            if table.is_none() {
                forget_verdicts(group, tree);
                table = Some(std::fs::read("/proc/self/mountinfo").map_err(|e| format!("reading mountinfo: {e}"))?);
            }
            mark_mount(group, tree)?;
            for below in submounts(table.as_deref().unwrap_or_default(), source) {
                let how = OpenHow::new()
                    .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
                match nix::fcntl::openat2(tree, below.as_path(), how) {
                    Ok(fd) => mark_mount(group, fd.as_fd())?,
                    // Not in the copy (covered on the host, or gone since): nothing reaches it.
                    Err(nix::errno::Errno::ENOENT) => {}
                    Err(e) => {
                        return Err(format!("opening the mount at {} under {}: {e}", below.display(), source.display()))
                    }
                }
            }
        }
        Ok(())
    }

    /// Guards the mounts init made beneath the guarded targets while building its view
    /// (pins are recursive copies of the grant's own mount, and a copy has no mark), once
    /// init `pid` has built it and before it runs anything of the caller's: every mount
    /// point its mount table shows at or beneath one of `targets`.
    pub fn guard_view(&mut self, pid: i32, targets: &[PathBuf]) -> Result<(), String> {
        let group = self.start()?;
        let root_path = format!("/proc/{pid}/root");
        let root = nix::fcntl::open(
            Path::new(&root_path),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("opening {root_path}: {e}"))?;
        let table =
            std::fs::read(format!("/proc/{pid}/mountinfo")).map_err(|e| format!("reading its mountinfo: {e}"))?;
        for at in mount_points(&table).filter(|p| targets.iter().any(|t| p.starts_with(t))) {
            let rel = at.strip_prefix("/").unwrap_or(&at);
            let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
            let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(
                ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            let fd = match nix::fcntl::openat2(root.as_fd(), rel, how) {
                Ok(fd) => fd,
                // Covered by a later mount: nothing reaches it.
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(format!("opening the sandbox's mount at {}: {e}", at.display())),
            };
            // A pinned symlink: nothing is opened through it.
            if nix::sys::stat::fstat(fd.as_fd()).map_err(|e| format!("{}: {e}", at.display()))?.st_mode & libc::S_IFMT
                == libc::S_IFLNK
            {
                continue;
            }
            mark_mount(group, fd.as_fd())?;
        }
        Ok(())
    }

    /// Forgets the verdicts remembered so far ([`forget_verdicts`]), for a sandbox prepared
    /// earlier that gets its command now: it must not inherit what other runs found.
    pub fn forget(&self) {
        if let Some(a) = &self.active {
            forget_verdicts(&a.group, a.group.as_fd());
        }
    }

    /// The group, with a live responder; both made on first use.
    fn start(&mut self) -> Result<&Fanotify, String> {
        if self.active.is_none() {
            let group = new_group()?;
            let helper = std::process::id() as i32;
            // SAFETY: the helper is single-threaded; the child never returns from `respond`.
            match unsafe { sys::clone3_fork(0, None) } {
                Ok(sys::Forked::Child) => respond(group, helper),
                Ok(sys::Forked::Parent { pid, pidfd }) => {
                    self.active = Some(Active { group, responder_pid: pid, responder: pidfd })
                }
                Err(e) => return Err(format!("starting the set-id guard: {e}")),
            }
        }
        Ok(&self.active.as_ref().expect("started above").group)
    }

    /// The responder's pidfd, for the helper's poll.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.active.as_ref().map(|a| a.responder.as_fd())
    }

    /// Whether the responder has died (its pidfd is readable). If so it is reaped; the
    /// group stays until [`Guard::release`], after the helper has killed what it guarded.
    pub fn responder_died(&self) -> bool {
        let Some(a) = &self.active else { return false };
        if !sys::ready_now(a.responder.as_fd(), libc::POLLIN).unwrap_or(false) {
            return false;
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(a.responder_pid), None);
        true
    }

    /// Lets the group go (its marks with it) and stops the responder; the next guarded
    /// sandbox starts both afresh. Only once nothing it guarded runs.
    pub fn release(&mut self) {
        if let Some(a) = self.active.take() {
            let _ = sys::pidfd_send_signal(a.responder.as_fd(), libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(a.responder_pid), None);
        }
    }
}

/// The targets of the sandbox's trees the helper guards: its writable idmapped binds, when
/// the spec asks for the guard (a root caller's sandbox on a host that allows it).
pub fn guarded_targets(spec: &SandboxSpec) -> Vec<PathBuf> {
    let Some(ids) = spec.identity.as_ref().filter(|i| i.guard_setid) else { return Vec::new() };
    spec.mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind { target, writable: true, .. } if ids.idmapped.contains(target) => Some(target.clone()),
            _ => None,
        })
        .collect()
}

/// Whether init mounts anything beneath a guarded target while it builds its view (a pin, a
/// mask, another grant): then it stops once the view is built, and the helper guards those
/// mounts too ([`Guard::guard_view`]) before init goes on. Init and helper both ask this.
pub fn view_needs_guarding(spec: &SandboxSpec) -> bool {
    let targets = guarded_targets(spec);
    spec.mounts.iter().any(|m| {
        let at = corral_core::normalize::mount_target(m);
        targets.iter().any(|t| at != t && at.starts_with(t))
    })
}

/// Forgets every verdict remembered so far (the ignore marks on inodes; the mount marks
/// stay). A file found plain may have been made set-id by the host since: a sandbox that
/// starts now, or a warm one handed its command now, is asked about it again. (One that holds it open from before keeps it, as it
/// keeps any file the host changes during its run.)
fn forget_verdicts(group: &Fanotify, any: BorrowedFd<'_>) {
    let _ = group.mark(MarkFlags::FAN_MARK_FLUSH, MaskFlags::empty(), any, None::<&Path>);
}

/// The mount points strictly below `source` in the helper's mount table (`mountinfo`),
/// relative to it: the submounts a recursive copy of `source` holds.
fn submounts(mountinfo: &[u8], source: &Path) -> Vec<PathBuf> {
    mount_points(mountinfo)
        .filter_map(|p| p.strip_prefix(source).ok().map(Path::to_path_buf))
        .filter(|rel| !rel.as_os_str().is_empty())
        .collect()
}

/// Whether a file with this status and capability attribute may be opened: not set-user-ID,
/// not set-group-ID and group-executable (without group execute the bit marks mandatory
/// locking, no privilege), no file capabilities.
fn allowed(mode: u32, has_caps: bool) -> bool {
    let setuid = mode & libc::S_ISUID != 0;
    let setgid = mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0;
    !(setuid || setgid || has_caps)
}

/// The verdict on one event's file: anything it cannot tell is refused.
fn verdict(fd: BorrowedFd<'_>) -> bool {
    let Ok(st) = nix::sys::stat::fstat(fd) else { return false };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return true; // only regular files are executed with privilege
    }
    // SAFETY: a size query (null buffer, length 0) on a descriptor we hold.
    let caps = unsafe { libc::fgetxattr(fd.as_raw_fd(), c"security.capability".as_ptr(), std::ptr::null_mut(), 0) };
    let has_caps = if caps >= 0 {
        caps > 0
    } else {
        match nix::errno::Errno::last() {
            // No attribute, or a file system that cannot hold one.
            nix::errno::Errno::ENODATA | nix::errno::Errno::EOPNOTSUPP => false,
            _ => return false,
        }
    };
    allowed(st.st_mode, has_caps)
}

/// The responder: answers every event of `group` until the helper dies. Exits (and the
/// helper then kills what it guarded) on anything it cannot answer.
fn respond(group: Fanotify, helper: i32) -> ! {
    let run = || -> Result<(), ()> {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(());
        }
        if nix::unistd::getppid().as_raw() != helper {
            return Err(()); // the helper died before the death signal was set
        }
        close_all_except(&[group.as_raw_fd()]).map_err(drop)?;
        let budget = std::fs::read_to_string("/proc/sys/fs/fanotify/max_user_marks")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .map_or(PINNING_MARKS, |m| m / 16);
        let mut ignored = Ignored { count: 0, evictable: true, budget: budget.max(1024) };
        loop {
            let events = match group.read_events() {
                Ok(e) => e,
                // The descriptor or the buffer is wrong: nothing more can be answered.
                Err(nix::errno::Errno::EBADF | nix::errno::Errno::EINVAL | nix::errno::Errno::EFAULT) => return Err(()),
                // The kernel could not open the first event's file for us (a write lease
                // on it that our open would have to break, say; or no descriptor left): it
                // has refused that open itself and consumed the event. The next is
                // answered as ever.
                Err(_) => continue,
            };
            for event in &events {
                answer(&group, event, &mut ignored)?;
            }
        }
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    sys::exit_now(1)
}

/// The ignore marks added so far, and whether the kernel takes evictable ones.
struct Ignored {
    count: usize,
    evictable: bool,
    /// A sixteenth of the host's mark budget for root (see `IGNORE_MARKS`).
    budget: usize,
}

fn answer(group: &Fanotify, event: &FanotifyEvent, ignored: &mut Ignored) -> Result<(), ()> {
    if !event.check_version() {
        return Err(());
    }
    let Some(fd) = event.fd() else { return Ok(()) }; // an overflow notice: none with this queue
    let allow = verdict(fd);
    let response = if allow { Response::FAN_ALLOW } else { Response::FAN_DENY };
    group.write_response(FanotifyResponse::new(fd, response)).map_err(drop)?;
    if allow {
        ignore(group, fd, ignored);
    }
    Ok(())
}

/// Spares later opens of `fd`'s inode the round trip. The bits are the inode's and no
/// sandbox can set them; the host can, so the helper drops these marks whenever a guarded
/// sandbox starts ([`forget_verdicts`]). A mark that cannot be added only costs a round trip.
fn ignore(group: &Fanotify, fd: BorrowedFd<'_>, ignored: &mut Ignored) {
    let bound = if ignored.evictable { IGNORE_MARKS } else { PINNING_MARKS }.min(ignored.budget);
    if ignored.count >= bound {
        forget_verdicts(group, fd);
        ignored.count = 0;
    }
    let flags = MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORED_MASK | MarkFlags::FAN_MARK_IGNORED_SURV_MODIFY;
    let mut added = group.mark(flags | evictable(ignored.evictable), MaskFlags::FAN_OPEN_PERM, fd, None::<&Path>);
    if added == Err(nix::errno::Errno::EINVAL) && ignored.evictable {
        ignored.evictable = false;
        added = group.mark(flags, MaskFlags::FAN_OPEN_PERM, fd, None::<&Path>);
    }
    if added.is_ok() {
        ignored.count += 1;
    }
}

fn evictable(yes: bool) -> MarkFlags {
    if yes {
        MarkFlags::FAN_MARK_EVICTABLE
    } else {
        MarkFlags::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_id_and_capability_files_are_refused() {
        assert!(allowed(0o100755, false));
        assert!(!allowed(0o104755, false));
        assert!(!allowed(0o104644, false));
        assert!(!allowed(0o102755, false));
        assert!(allowed(0o102644, false)); // mandatory-locking marker, no group execute
        assert!(!allowed(0o100755, true));
    }

    #[test]
    fn submounts_are_the_mount_points_below_the_source() {
        let table = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                     30 22 0:30 / /g/a\\040b rw - tmpfs t rw\n\
                     31 22 0:31 / /g/x/y rw - tmpfs t rw\n\
                     32 22 0:32 / /gx rw - tmpfs t rw\n\
                     33 22 0:33 / /g rw - tmpfs t rw\n";
        assert_eq!(submounts(table.as_bytes(), Path::new("/g")), vec![PathBuf::from("a b"), PathBuf::from("x/y")]);
    }

    #[test]
    fn mount_points_need_not_be_utf8() {
        let table = b"1 0 8:1 / / rw - ext4 /dev/a rw\n2 1 0:5 / /w/b\xffd\\040e rw - tmpfs t rw\n";
        let points: Vec<PathBuf> = mount_points(table).collect();
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].as_os_str().as_bytes(), b"/w/b\xffd e");
    }
}

//! Thin, checked wrappers for the system calls nix does not cover (yet): clone3, the new
//! mount API, pidfds, close_range, seccomp with a listener. Each returns `io::Result` so
//! callers can attach context.
//!
//! Runs in: the helper and the sandbox's processes.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub fn cstr(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `struct clone_args` (linux/sched.h), version 2 (with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub enum Forked {
    Child,
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
}

/// `clone3` without a new stack (fork semantics) that also returns a pidfd.
///
/// # Safety
/// The caller must be single-threaded. In the child, glibc's cached thread id is stale, so
/// the child must not call `raise`, `abort` or pthread functions; it ends with `_exit`.
pub unsafe fn clone3_fork(flags: u64, into_cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64 | if into_cgroup.is_some() { CLONE_INTO_CGROUP } else { 0 },
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: into_cgroup.map(|fd| fd.as_raw_fd() as u64).unwrap_or(0),
        ..Default::default()
    };
    let rc = check(libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()))?;
    if rc == 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent { pid: rc as libc::pid_t, pidfd: OwnedFd::from_raw_fd(pidfd) })
    }
}

pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us.
    unsafe { check(libc::syscall(libc::SYS_pidfd_open, pid, 0)).map(|fd| OwnedFd::from_raw_fd(fd as RawFd)) }
}

/// A pidfd for one thread (PIDFD_THREAD, Linux 6.9+), or where the kernel has no thread
/// pidfds, for its thread group (threads share their descriptor table as a rule).
pub fn pidfd_open_thread(tid: libc::pid_t) -> io::Result<OwnedFd> {
    const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;
    // SAFETY: plain syscall; the returned fd is owned by us.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, PIDFD_THREAD) };
    if rc >= 0 {
        // SAFETY: a new descriptor from the kernel.
        return Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) });
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EINVAL) {
        return Err(e);
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse::<libc::pid_t>().ok())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    pidfd_open(tgid)
}

/// A copy of descriptor `fd` of the process behind `pidfd` (the same open file).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us (close-on-exec by definition).
    unsafe {
        check(libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0u32))
            .map(|fd| OwnedFd::from_raw_fd(fd as RawFd))
    }
}

const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 1 << 5;

/// Installs a seccomp filter whose user notifications go to the returned listener. Once
/// the listener has received a call, the caller waits killably (WAIT_KILLABLE_RECV, Linux
/// 5.19): a signal then cannot interrupt a call the listener is already performing, which
/// the caller would restart and so perform twice.
pub fn seccomp_with_listener(program: &[seccompiler::sock_filter]) -> io::Result<OwnedFd> {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: the program outlives the call; the kernel copies it.
    unsafe {
        check(libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            &prog as *const libc::sock_fprog,
        ))
        .map(|fd| OwnedFd::from_raw_fd(fd as RawFd))
    }
}

pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed fd.
    unsafe { check(libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, 0usize, 0u32)).map(drop) }
}

/// Marks every descriptor from `first` up close-on-exec (Linux 5.11+), so they vanish at
/// `execve` while the report pipe stays usable until then.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    unsafe { check(libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC)).map(drop) }
}

const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const AT_RECURSIVE: u32 = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached, recursive copy of the mount tree at the object `fd` refers to (an O_PATH
/// descriptor): `open_tree(fd, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH)`.
pub fn open_tree_clone(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    open_tree(fd, AT_RECURSIVE)
}

/// A detached copy of the one mount at `fd`, without the mounts below it.
pub fn open_tree_clone_one(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    open_tree(fd, 0)
}

fn open_tree(fd: BorrowedFd<'_>, recursive: u32) -> io::Result<OwnedFd> {
    let empty = c"";
    // SAFETY: valid pointers; the result is a new fd we own.
    unsafe {
        check(libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | recursive | libc::AT_EMPTY_PATH as u32,
        ))
        .map(|fd| OwnedFd::from_raw_fd(fd as RawFd))
    }
}

/// Sets and clears mount attributes on the whole tree behind `fd`
/// (`mount_setattr(AT_RECURSIVE)`), and makes it private: a copy of a shared mount (one
/// the helper captured in the host's mount namespace) would otherwise stay in its peer
/// group, and mounts made on it later would propagate back.
pub fn mount_setattr_fd(fd: BorrowedFd<'_>, set: u64, clear: u64) -> io::Result<()> {
    setattr_at(
        fd,
        &MountAttr { attr_set: set, attr_clr: clear, propagation: libc::MS_PRIVATE, userns_fd: 0 },
        AT_RECURSIVE,
    )
}

/// Sets mount attributes on the one mount whose root `fd` refers to (not its children).
pub fn mount_setattr_one(fd: BorrowedFd<'_>, set: u64) -> io::Result<()> {
    setattr_at(fd, &MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 }, 0)
}

/// Makes the detached tree behind `fd` an idmapped mount: its files' owners appear
/// through the id mapping of the user namespace `userns` (`MOUNT_ATTR_IDMAP`), and ids
/// written through it are mapped back the same way.
pub fn mount_setattr_idmap(fd: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let attr =
        MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    setattr_at(fd, &attr, AT_RECURSIVE)
}

fn setattr_at(fd: BorrowedFd<'_>, attr: &MountAttr, recursive: u32) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid pointers for the duration of the call.
    unsafe {
        check(libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as u32 | recursive,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ))
        .map(drop)
    }
}

/// Sets mount attributes on the single mount at `path` (not its children).
pub fn mount_setattr_path(path: &Path, set: u64) -> io::Result<()> {
    let c = cstr(path)?;
    let attr = MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: valid pointers for the duration of the call.
    unsafe {
        check(libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            0u32,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ))
        .map(drop)
    }
}

const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

/// Attaches the detached tree `from` on the object `to` refers to (an O_PATH descriptor
/// opened without following symlinks, so the target cannot be swapped for a link).
pub fn move_mount_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let empty = c"";
    // SAFETY: valid pointers for the duration of the call.
    unsafe {
        check(libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        ))
        .map(drop)
    }
}

/// `_exit` without running destructors or atexit handlers (safe after clone/fork).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no process state.
    unsafe { libc::_exit(code) }
}

const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;

/// A new, detached, empty, read-only tmpfs (`fsopen`, `fsconfig`, `fsmount`) to attach with
/// [`move_mount_fd`]: needs no path, so no /proc either.
pub fn empty_tmpfs() -> io::Result<OwnedFd> {
    // SAFETY: valid pointers; the result is a new fd we own.
    let fs = unsafe {
        check(libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC))
            .map(|fd| OwnedFd::from_raw_fd(fd as RawFd))?
    };
    for (key, value) in [(c"mode", c"0555"), (c"size", c"4k"), (c"nr_inodes", c"1")] {
        // SAFETY: valid pointers for the duration of the call.
        unsafe {
            check(libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            ))?
        };
    }
    // SAFETY: no pointers.
    unsafe {
        check(libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        ))?
    };
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    // SAFETY: the result is a new fd we own.
    unsafe {
        check(libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs as libc::c_uint))
            .map(|fd| OwnedFd::from_raw_fd(fd as RawFd))
    }
}

/// Whether `fd` reports any of `events` now (poll without waiting): a pidfd whose process
/// has exited, a listener with something queued, a socket whose connect has finished.
pub fn ready_now(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: poll on one local pollfd, without waiting.
    match unsafe { libc::poll(&mut p, 1, 0) } {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n > 0 && p.revents != 0),
    }
}

/// Joins the namespace `ns` (a `/proc/PID/ns/*` descriptor) of type `nstype` (`CLONE_NEW*`).
pub fn setns_fd(ns: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns with a descriptor and flags.
    if unsafe { libc::setns(ns.as_raw_fd(), nstype) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor from 3 up except `keep`.
pub fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|f| **f >= 3).map(|f| *f as u32).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    for k in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if k > from {
            let to = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: close_range on our own descriptor table.
            if unsafe { libc::syscall(libc::SYS_close_range, from, to, 0u32) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if k == u32::MAX {
            break;
        }
        from = k + 1;
    }
    Ok(())
}

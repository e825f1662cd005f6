//! The mount view. Runs in: sandbox init, before the command is forked.
//!
//! The sandbox's root is a fresh tmpfs that holds only what the spec lists: read-only
//! (or read-write) binds of granted host paths, symlinks such as `/bin -> usr/bin`, a
//! fresh `/proc` with sensitive entries masked, a minimal `/dev`, a private `/tmp`, and
//! masks over secrets. Nothing else of the host is reachable, which is what keeps host
//! sockets and devices out even where Landlock cannot.
//!
//! Path safety: every host source is opened with `RESOLVE_NO_SYMLINKS` (the planner
//! already resolved symlinks, so one appearing now means the path changed underneath and
//! the run fails), captured as a detached mount with `open_tree` before anything is
//! covered, and attached with `move_mount` onto a target opened the same way.

use crate::sandbox::{Step, StepError};
use crate::sys;
use corral_core::spec::MountSpec;
use corral_core::SandboxSpec;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Where the new root is assembled before `pivot_root`: a directory every host has. It is
/// only covered inside our own mount namespace, after all sources are captured.
const STAGING: &str = "/tmp";
/// Device nodes of the minimal `/dev`, bound from the host (a user namespace cannot mknod).
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// procfs entries hidden like container runtimes do: kernel memory, keys, timers, and the
/// sysrq trigger (writable by a sandbox whose uid maps to host root).
const PROC_MASKED: &[&str] = &[
    "kcore",
    "keys",
    "key-users",
    "timer_list",
    "sysrq-trigger",
    "latency_stats",
    "sched_debug",
    "acpi",
    "scsi",
    "asound",
];
/// procfs subtrees made read-only: sysctls and hardware knobs.
const PROC_READONLY: &[&str] = &["sys", "irq", "bus", "fs"];
const EMPTY_FILE: &str = ".corral-empty";
const EMPTY_DIR: &str = ".corral-empty-dir";
/// Mount point of the overlay layers' tmpfs while the view is built.
const UPPERS: &str = ".corral-layers";

/// O_PATH without O_NOFOLLOW: with RESOLVE_NO_SYMLINKS a trailing symlink is then an
/// error (ELOOP) instead of a descriptor of the link itself.
fn open_how_path() -> OpenHow {
    OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_NO_SYMLINKS)
}

/// Opens a host path as O_PATH, refusing any symlink on the way.
fn open_host(path: &Path) -> Result<OwnedFd, StepError> {
    nix::fcntl::openat2(nix::fcntl::AT_FDCWD, path, open_how_path()).map_err(|e| {
        let why = if e == nix::errno::Errno::ELOOP {
            "a symlink appeared in the path since the policy was planned".to_string()
        } else {
            e.to_string()
        };
        StepError::msg("open mount source", format!("{}: {why}", path.display()))
    })
}

/// Opens `rel` beneath the new root, refusing symlinks and `..` escapes.
fn open_in(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return nix::fcntl::openat(root, ".", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty());
    }
    nix::fcntl::openat2(
        root,
        rel,
        open_how_path().resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH),
    )
}

fn rel(target: &Path) -> PathBuf {
    target.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

/// Mount attributes for a bind of a granted path.
fn bind_attrs(writable: bool, exec: bool) -> u64 {
    let mut a = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
    if !writable {
        a |= sys::MOUNT_ATTR_RDONLY;
    }
    if !exec {
        a |= sys::MOUNT_ATTR_NOEXEC;
    }
    a
}

/// A detached copy of `fd`'s tree with `attrs` set recursively.
fn detached(fd: BorrowedFd<'_>, attrs: u64, step: &'static str) -> Result<OwnedFd, StepError> {
    let tree = sys::open_tree_clone(fd).step(step)?;
    sys::mount_setattr_fd(tree.as_fd(), attrs).step(step)?;
    Ok(tree)
}

/// Builds the view and enters it. Returns the directory holding the overlays' upper layers
/// when the spec asks to capture them (the caller hands it to the helper, which keeps the
/// layers alive after the sandbox is gone).
pub fn build(spec: &SandboxSpec) -> Result<Option<OwnedFd>, StepError> {
    // Mount events must never propagate between the sandbox and the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .step("make / private")?;

    // Capture every host source before the staging tmpfs covers anything.
    let mut sources: Vec<Option<OwnedFd>> = Vec::with_capacity(spec.mounts.len());
    let mut source_is_dir = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        match m {
            MountSpec::Bind { source, writable, exec, .. } => {
                let fd = open_host(source)?;
                source_is_dir.push(is_dir(&fd));
                sources.push(Some(detached(fd.as_fd(), bind_attrs(*writable, *exec), "capture bind source")?));
            }
            // An overlay's lower layer is named by this descriptor (/proc/self/fd/N), so
            // it is the directory opened now, whatever happens to the path later.
            MountSpec::Overlay { lower, .. } => {
                source_is_dir.push(true);
                sources.push(Some(open_host(lower)?));
            }
            _ => {
                source_is_dir.push(false);
                sources.push(None);
            }
        }
    }
    let devices =
        if spec.mounts.iter().any(|m| matches!(m, MountSpec::Dev { .. })) { capture_devices()? } else { Vec::new() };

    // The new root: an empty tmpfs.
    mount(Some("tmpfs"), STAGING, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755,size=1m"))
        .step("mount root tmpfs")?;
    let root = nix::fcntl::open(STAGING, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .step("open new root")?;
    let staging = Path::new(STAGING);
    std::fs::write(staging.join(EMPTY_FILE), b"").step("create mask file")?;
    std::fs::create_dir(staging.join(EMPTY_DIR)).step("create mask dir")?;
    let empty_file = open_in(root.as_fd(), Path::new(EMPTY_FILE)).step("open mask file")?;
    let empty_dir = open_in(root.as_fd(), Path::new(EMPTY_DIR)).step("open mask dir")?;
    let uppers = match &spec.overlay {
        Some(o) => Some(upper_tmpfs(
            staging,
            o.size,
            spec.mounts.iter().filter(|m| matches!(m, MountSpec::Overlay { .. })).count(),
        )?),
        None => None,
    };

    // Targets under these were made by us and may get new mount points; under a host bind
    // they must already exist (we never create files on the host).
    let mut made: Vec<(PathBuf, bool)> = vec![(PathBuf::new(), true)];
    for (i, m) in spec.mounts.iter().enumerate() {
        let target = rel(corral_core::normalize::mount_target(m));
        let synthetic_parent = made
            .iter()
            .filter(|(p, _)| target.starts_with(p))
            .max_by_key(|(p, _)| p.components().count())
            .map(|(_, s)| *s)
            .unwrap_or(false);
        match m {
            MountSpec::Bind { .. } => {
                let dst = mount_point(root.as_fd(), &target, source_is_dir[i], synthetic_parent)?;
                let src = sources[i].take().expect("captured above");
                sys::move_mount_fd(src.as_fd(), dst.as_fd())
                    .map_err(|e| StepError::io("attach bind mount", e).context(&target))?;
                made.push((target, false));
            }
            MountSpec::Overlay { exec, layer, .. } => {
                mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                let lower = sources[i].take().expect("captured above");
                let upper = staging.join(UPPERS);
                let opts = format!(
                    "lowerdir=/proc/self/fd/{},upperdir={}/upper/{layer},workdir={}/work/{layer},userxattr",
                    lower.as_raw_fd(),
                    upper.display(),
                    upper.display()
                );
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if !exec {
                    flags |= MsFlags::MS_NOEXEC;
                }
                mount(Some("overlay"), &staging.join(&target), Some("overlay"), flags, Some(opts.as_str()))
                    .map_err(|e| StepError::io("mount overlay", e).context(&target))?;
                made.push((target, false));
            }
            MountSpec::Tmpfs { size, mode, .. } => {
                mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                let mut opts = format!("mode={mode:o}");
                if let Some(size) = size {
                    opts.push_str(&format!(",size={size}"));
                }
                mount(
                    Some("tmpfs"),
                    &staging.join(&target),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(opts.as_str()),
                )
                .step("mount tmpfs")?;
                made.push((target, true));
            }
            MountSpec::Proc { .. } => {
                mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                proc(&staging.join(&target), root.as_fd(), &target, empty_file.as_fd(), empty_dir.as_fd())?;
                made.push((target, false));
            }
            MountSpec::Dev { .. } => {
                mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                dev(&staging.join(&target), root.as_fd(), &target, &devices)?;
                made.push((target, false));
            }
            MountSpec::Symlink { link, target: to } => {
                nix::unistd::symlinkat(to.as_path(), root.as_fd(), &rel(link)).step("create symlink")?;
            }
            MountSpec::Mask { .. } => mask(root.as_fd(), &target, empty_file.as_fd(), empty_dir.as_fd())?,
        }
    }
    drop((empty_file, empty_dir));
    std::fs::remove_file(staging.join(EMPTY_FILE)).step("remove mask file")?;
    std::fs::remove_dir(staging.join(EMPTY_DIR)).step("remove mask dir")?;
    // The overlays hold their own references to the upper layers: the tmpfs leaves the
    // view, and survives only through the descriptor handed to the helper, if any.
    let captured = match (&spec.overlay, uppers) {
        (Some(o), Some(dir)) => {
            umount2(&staging.join(UPPERS), MntFlags::MNT_DETACH).step("detach overlay layers")?;
            std::fs::remove_dir(staging.join(UPPERS)).step("remove overlay mount point")?;
            o.capture.then_some(dir)
        }
        _ => None,
    };

    // Enter it: pivot_root(".", ".") stacks the old root on top of the new one, and a lazy
    // unmount drops it (pivot_root(2), "NOTES").
    nix::unistd::fchdir(&root).step("chdir to new root")?;
    drop(root);
    nix::unistd::pivot_root(".", ".").step("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).step("detach old root")?;
    nix::unistd::chdir("/").step("chdir /")?;
    // The root itself holds only mount points and symlinks: make it read-only.
    sys::mount_setattr_path(Path::new("/"), sys::MOUNT_ATTR_RDONLY).step("make root read-only")?;
    Ok(captured)
}

fn is_dir(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR).unwrap_or(false)
}

/// The tmpfs holding `upper/N` and `work/N` for each overlay (they must share a file
/// system); `limits.disk` caps it. Returns a descriptor of its root.
fn upper_tmpfs(staging: &Path, size: Option<u64>, layers: usize) -> Result<OwnedFd, StepError> {
    let at = staging.join(UPPERS);
    std::fs::create_dir(&at).step("mkdir overlay layers")?;
    let mut opts = String::from("mode=0755");
    if let Some(size) = size {
        opts.push_str(&format!(",size={size}"));
    }
    mount(Some("tmpfs"), &at, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))
        .step("mount overlay layers")?;
    for layer in 0..layers {
        std::fs::create_dir_all(at.join("upper").join(layer.to_string())).step("mkdir upper layer")?;
        std::fs::create_dir_all(at.join("work").join(layer.to_string())).step("mkdir work dir")?;
    }
    nix::fcntl::open(&at, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .step("open overlay layers")
}

impl StepError {
    fn context(mut self, target: &Path) -> StepError {
        self.message = format!("/{}: {}", target.display(), self.message);
        self
    }
}

/// Opens (creating if allowed) the mount point for `target` beneath the new root.
fn mount_point(root: BorrowedFd<'_>, target: &Path, dir: bool, may_create: bool) -> Result<OwnedFd, StepError> {
    match open_in(root, target) {
        Ok(fd) => return Ok(fd),
        Err(nix::errno::Errno::ENOENT) if may_create => {}
        Err(e) => return Err(StepError::io("open mount point", e).context(target)),
    }
    let mut so_far = PathBuf::new();
    let parts: Vec<_> = target.components().collect();
    for (i, c) in parts.iter().enumerate() {
        so_far.push(c);
        let last = i + 1 == parts.len();
        let res = if last && !dir {
            nix::fcntl::openat(
                root,
                &so_far,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            nix::sys::stat::mkdirat(root, &so_far, Mode::from_bits_truncate(0o755))
        };
        match res {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(StepError::io("create mount point", e).context(target)),
        }
    }
    open_in(root, target).map_err(|e| StepError::io("open mount point", e).context(target))
}

fn capture_devices() -> Result<Vec<OwnedFd>, StepError> {
    DEVICES
        .iter()
        .map(|d| {
            let fd = open_host(&Path::new("/dev").join(d))?;
            detached(fd.as_fd(), sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC, "capture device")
        })
        .collect()
}

/// Hides `target` under an empty read-only file or directory.
fn mask(
    root: BorrowedFd<'_>,
    target: &Path,
    empty_file: BorrowedFd<'_>,
    empty_dir: BorrowedFd<'_>,
) -> Result<(), StepError> {
    let dst = match open_in(root, target) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(StepError::io("open masked path", e).context(target)),
    };
    let is_dir =
        nix::sys::stat::fstat(&dst).map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR).step("stat masked path")?;
    let src = if is_dir { empty_dir } else { empty_file };
    let tree = detached(
        src,
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC,
        "prepare mask",
    )?;
    sys::move_mount_fd(tree.as_fd(), dst.as_fd()).map_err(|e| StepError::io("mask path", e).context(target))
}

/// A fresh procfs for our pid namespace, with masks and read-only subtrees.
fn proc(
    at: &Path,
    root: BorrowedFd<'_>,
    target: &Path,
    empty_file: BorrowedFd<'_>,
    empty_dir: BorrowedFd<'_>,
) -> Result<(), StepError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), at, Some("proc"), flags, None::<&str>).step("mount /proc")?;
    for name in PROC_MASKED {
        mask(root, &target.join(name), empty_file, empty_dir)?;
    }
    for name in PROC_READONLY {
        let path = target.join(name);
        let Ok(fd) = open_in(root, &path) else { continue };
        let ro = detached(
            fd.as_fd(),
            sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC,
            "read-only /proc subtree",
        )?;
        sys::move_mount_fd(ro.as_fd(), fd.as_fd())
            .map_err(|e| StepError::io("read-only /proc subtree", e).context(&path))?;
    }
    Ok(())
}

/// A minimal /dev: six host device nodes, a private devpts, shm, the usual symlinks; the
/// tmpfs itself ends read-only.
fn dev(at: &Path, root: BorrowedFd<'_>, target: &Path, devices: &[OwnedFd]) -> Result<(), StepError> {
    mount(Some("tmpfs"), at, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=0755,size=64k"))
        .step("mount /dev")?;
    for (name, fd) in DEVICES.iter().zip(devices) {
        let dst = mount_point(root, &target.join(name), false, true)?;
        sys::move_mount_fd(fd.as_fd(), dst.as_fd()).step("bind device")?;
    }
    std::fs::create_dir(at.join("pts")).step("mkdir /dev/pts")?;
    mount(
        Some("devpts"),
        &at.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .step("mount devpts")?;
    std::fs::create_dir(at.join("shm")).step("mkdir /dev/shm")?;
    mount(
        Some("tmpfs"),
        &at.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777"),
    )
    .step("mount /dev/shm")?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, at.join(link)).step("create /dev symlink")?;
    }
    sys::mount_setattr_path(at, sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC)
        .step("make /dev read-only")?;
    Ok(())
}

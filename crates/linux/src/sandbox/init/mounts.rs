//! The mount view. Runs in: sandbox init, before the command is forked.
//!
//! The sandbox's root is a fresh tmpfs that holds only what the spec lists: read-only
//! (or read-write) binds of granted host paths, symlinks such as `/bin -> usr/bin`, a
//! fresh `/proc` with sensitive entries masked, a minimal `/dev`, a private `/tmp`, masks
//! over secrets, and pins (paths mounted on themselves so they cannot be renamed,
//! replaced or removed). Nothing else of the host is reachable, which is what keeps host
//! sockets and devices out even where Landlock cannot.
//!
//! Path safety: every host source is opened with `RESOLVE_NO_SYMLINKS` (the planner
//! refused or resolved symlinks already, so one appearing now means the path changed
//! underneath and the run fails), captured as a detached mount with `open_tree` before
//! anything is covered, and attached with `move_mount` onto a target opened the same way
//! beneath the new root. Everything corral makes for itself (the masks' empty stand-ins,
//! the scratch tmpfs) is reached by descriptor, never by a path a grant could cover: a
//! grant of the host's `/` covers the whole staging directory.
//!
//! The scratch tmpfs holds `tmp/` (the private `/tmp`), `shm/` (`/dev/shm`) and the
//! overlays' `upper/N` and `work/N`, so `limits.disk` bounds all of them together.
//!
//! Who captures: init, for a sandbox with the caller's own ids; for a root caller's
//! (`spec.identity`) the helper, as root, before the clone (`crate::helper::launch`):
//! init's ids are unprivileged by then, and only the helper may idmap the caller's grants.
//! Trees detached in the host's mount namespace attach in the sandbox's all the same.

use crate::sandbox::{Step, StepError};
use crate::sys;
use corral_core::spec::MountSpec;
use corral_core::SandboxSpec;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

/// Where the new root is assembled before `pivot_root`: a directory every host has. It is
/// only covered inside our own mount namespace, after all sources are captured.
const STAGING: &str = "/tmp";
/// Device nodes of the minimal `/dev`, bound from the host (a user namespace cannot mknod).
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// procfs entries hidden like container runtimes do: kernel memory, keys, timers, and the
/// sysrq trigger; and every entry only host root may read (mode 0400: the kernel log,
/// physical page flags and counts, slab and page-type statistics, kernel virtual and
/// physical addresses), whoever the sandbox's ids are.
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
    "kmsg",
    "kpagecgroup",
    "kpagecount",
    "kpageflags",
    "pagetypeinfo",
    "slabinfo",
    "vmallocinfo",
];
/// procfs subtrees made read-only: sysctls and hardware knobs.
const PROC_READONLY: &[&str] = &["sys", "irq", "bus", "fs"];
/// Names in the staging root (the planner refuses grants whose target starts with
/// `/.corral`, so none can collide).
const EMPTY_FILE: &str = ".corral-empty";
const EMPTY_DIR: &str = ".corral-empty-dir";
const SCRATCH: &str = ".corral-scratch";

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
    open_beneath(root, rel, OFlag::empty())
}

fn open_beneath(root: BorrowedFd<'_>, rel: &Path, extra: OFlag) -> nix::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return nix::fcntl::openat(root, ".", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty());
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | extra)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH);
    nix::fcntl::openat2(root, rel, how)
}

fn rel(target: &Path) -> PathBuf {
    target.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

/// The path that names what `fd` refers to, for calls that take only paths (mount(2)).
fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
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
    sys::mount_setattr_fd(tree.as_fd(), attrs, 0).step(step)?;
    Ok(tree)
}

/// The host objects the view is made of, captured before anything is covered: a detached
/// copy of each bind source and overlay lower layer, and the device nodes of `/dev`.
pub struct Captured {
    /// By index into `spec.mounts`: the tree of each `Bind` and `Overlay` (an overlay's
    /// lower layer in a sandbox with the caller's own ids: an `O_PATH` descriptor).
    trees: Vec<Option<OwnedFd>>,
    is_dir: Vec<bool>,
    devices: Vec<OwnedFd>,
}

impl Captured {
    /// Every descriptor held, so init keeps them when it closes what it inherited.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.trees.iter().flatten().chain(&self.devices).map(|f| f.as_raw_fd()).collect()
    }

    /// The trees of the mounts whose targets are listed, with their targets.
    pub fn trees_at<'a>(
        &'a self,
        spec: &'a SandboxSpec,
        targets: &'a [PathBuf],
    ) -> impl Iterator<Item = (&'a Path, BorrowedFd<'a>)> + 'a {
        spec.mounts.iter().zip(&self.trees).filter_map(move |(m, tree)| {
            let target = corral_core::normalize::mount_target(m);
            Some((target, tree.as_ref()?.as_fd())).filter(|_| targets.iter().any(|t| t == target))
        })
    }
}

/// Captures every host source of the view. Runs in init, or in the helper for a sandbox
/// whose ids are shifted (see the module comment).
pub fn capture(spec: &SandboxSpec) -> Result<Captured, StepError> {
    let mut trees: Vec<Option<OwnedFd>> = Vec::with_capacity(spec.mounts.len());
    let mut is_dirs = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        match m {
            MountSpec::Bind { source, writable, exec, .. } => {
                let fd = open_host(source)?;
                is_dirs.push(is_dir(&fd));
                trees.push(Some(detached(fd.as_fd(), bind_attrs(*writable, *exec), "capture bind source")?));
            }
            // The lower layer is the directory opened now, whatever happens to the path
            // later: named by this descriptor (/proc/self/fd/N) or, for a root caller's
            // sandbox, a detached tree the helper idmaps, attached while the overlay is made.
            MountSpec::Overlay { lower, .. } => {
                let fd = open_host(lower)?;
                is_dirs.push(true);
                trees.push(Some(match spec.identity {
                    Some(_) => detached(
                        fd.as_fd(),
                        sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
                        "capture overlay lower layer",
                    )?,
                    None => fd,
                }));
            }
            _ => {
                is_dirs.push(false);
                trees.push(None);
            }
        }
    }
    let devices =
        if spec.mounts.iter().any(|m| matches!(m, MountSpec::Dev { .. })) { capture_devices()? } else { Vec::new() };
    Ok(Captured { trees, is_dir: is_dirs, devices })
}

/// Builds the view and enters it, from the sources `captured` holds (captured here when
/// `None`). Returns the directory holding the overlays' upper layers when the spec asks to
/// capture them (the caller hands it to the helper, which keeps the layers alive after the
/// sandbox is gone), and the empty file masks are bound from (for `carveouts`).
pub fn build(spec: &SandboxSpec, captured: Option<Captured>) -> Result<(Option<OwnedFd>, OwnedFd), StepError> {
    // Mount events must never propagate between the sandbox and the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .step("make / private")?;

    // Capture every host source before the staging tmpfs covers anything.
    let Captured { trees: mut sources, is_dir: source_is_dir, devices } = match captured {
        Some(c) => c,
        None => capture(spec)?,
    };

    // The new root: an empty tmpfs. `base` stays its root even when a grant of the host's
    // `/` covers it; `root` is whatever is on top at the staging directory.
    mount(Some("tmpfs"), STAGING, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755,size=1m"))
        .step("mount root tmpfs")?;
    let base = nix::fcntl::open(STAGING, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .step("open new root")?;
    nix::fcntl::openat(
        base.as_fd(),
        EMPTY_FILE,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o444),
    )
    .step("create mask file")?;
    nix::sys::stat::mkdirat(base.as_fd(), EMPTY_DIR, Mode::from_bits_truncate(0o555)).step("create mask dir")?;
    let empty_file = open_in(base.as_fd(), Path::new(EMPTY_FILE)).step("open mask file")?;
    let empty_dir = open_in(base.as_fd(), Path::new(EMPTY_DIR)).step("open mask dir")?;
    let layers = spec.mounts.iter().filter(|m| matches!(m, MountSpec::Overlay { .. })).count();
    let scratch = scratch_tmpfs(base.as_fd(), spec.scratch.size, layers)?;
    let mut root = base.try_clone().step("open new root")?;

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
                made.push((target.clone(), false));
            }
            MountSpec::Overlay { exec, layer, .. } => {
                let dst = mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                let lower = sources[i].take().expect("captured above");
                let layers = fd_path(scratch.as_fd());
                // A root caller's tree, detached by the helper in the host's namespaces (which
                // overlayfs requires privilege over), is attached out of sight meanwhile.
                let lower_at = match spec.identity {
                    Some(_) => {
                        let at = open_in(scratch.as_fd(), Path::new(&format!("lower/{layer}")))
                            .step("open lower layer mount point")?;
                        sys::move_mount_fd(lower.as_fd(), at.as_fd())
                            .map_err(|e| StepError::io("attach lower layer", e).context(&target))?;
                        Some(format!("lower/{layer}"))
                    }
                    None => None,
                };
                let lower_path = match &lower_at {
                    Some(at) => layers.join(at),
                    None => fd_path(lower.as_fd()),
                };
                let opts = format!(
                    "lowerdir={},upperdir={}/upper/{layer},workdir={}/work/{layer},userxattr",
                    lower_path.display(),
                    layers.display(),
                    layers.display()
                );
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if !exec {
                    flags |= MsFlags::MS_NOEXEC;
                }
                mount(Some("overlay"), &fd_path(dst.as_fd()), Some("overlay"), flags, Some(opts.as_str()))
                    .map_err(|e| StepError::io("mount overlay", e).context(&target))?;
                if let Some(at) = lower_at {
                    umount2(&layers.join(&at), MntFlags::MNT_DETACH).step("detach lower layer")?;
                    nix::unistd::unlinkat(scratch.as_fd(), at.as_str(), UnlinkatFlags::RemoveDir)
                        .step("remove lower layer mount point")?;
                }
                made.push((target.clone(), false));
            }
            MountSpec::Tmpfs { exec, .. } => {
                let dst = mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                let tree = scratch_dir(scratch.as_fd(), "tmp", *exec)?;
                sys::move_mount_fd(tree.as_fd(), dst.as_fd()).step("attach /tmp")?;
                made.push((target.clone(), true));
            }
            MountSpec::Proc { .. } => {
                let dst = mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                proc(dst.as_fd(), root.as_fd(), &target, empty_file.as_fd(), empty_dir.as_fd())?;
                made.push((target.clone(), false));
            }
            MountSpec::Dev { shm_exec, .. } => {
                let dst = mount_point(root.as_fd(), &target, true, synthetic_parent)?;
                dev(dst.as_fd(), root.as_fd(), &target, &devices, scratch.as_fd(), *shm_exec)?;
                made.push((target.clone(), false));
            }
            MountSpec::Symlink { link, target: to } => {
                nix::unistd::symlinkat(to.as_path(), root.as_fd(), &rel(link)).step("create symlink")?;
            }
            MountSpec::Mask { .. } => mask(root.as_fd(), &target, empty_file.as_fd(), empty_dir.as_fd())?,
            MountSpec::Pin { read_only, exec, .. } => pin(root.as_fd(), &target, *read_only, *exec)?,
        }
        // Something now covers the staging directory itself (a grant of the host's `/`):
        // later targets are beneath it.
        if target.as_os_str().is_empty() && !matches!(m, MountSpec::Symlink { .. } | MountSpec::Mask { .. }) {
            root = nix::fcntl::open(STAGING, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .step("open new root")?;
        }
    }
    // The empty file stays, for `carveouts`: the kernel binds nothing from an unlinked file.
    drop(empty_dir);
    nix::unistd::unlinkat(base.as_fd(), EMPTY_DIR, UnlinkatFlags::RemoveDir).step("remove mask dir")?;
    // The scratch tmpfs leaves the staging root: the mounts made from it hold their own
    // references, and the descriptor handed to the helper (when capturing) keeps it too.
    umount2(&fd_path(scratch.as_fd()), MntFlags::MNT_DETACH).step("detach the scratch tmpfs")?;
    nix::unistd::unlinkat(base.as_fd(), SCRATCH, UnlinkatFlags::RemoveDir).step("remove scratch mount point")?;
    drop(base);
    let captured = spec.overlay.as_ref().filter(|o| o.capture).map(|_| scratch);

    // Enter it: pivot_root(".", ".") stacks the old root on top of the new one, and a lazy
    // unmount drops it (pivot_root(2), "NOTES").
    nix::unistd::fchdir(&root).step("chdir to new root")?;
    drop(root);
    nix::unistd::pivot_root(".", ".").step("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).step("detach old root")?;
    nix::unistd::chdir("/").step("chdir /")?;
    // The root holds only mount points and symlinks: read-only, unless it is a writable
    // grant of the host's `/` itself.
    let root_writable = spec.mounts.iter().any(|m| match m {
        MountSpec::Bind { target, writable, .. } => *writable && target == Path::new("/"),
        MountSpec::Overlay { target, .. } => target == Path::new("/"),
        _ => false,
    });
    if !root_writable {
        sys::mount_setattr_path(Path::new("/"), sys::MOUNT_ATTR_RDONLY).step("make root read-only")?;
    }
    Ok((captured, empty_file))
}

fn is_dir(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR).unwrap_or(false)
}

/// The scratch tmpfs, mounted at `SCRATCH` in the staging root, with `tmp/`, `shm/` and
/// `upper/N`, `work/N` for each overlay (an overlay's upper and work directories must share
/// a file system) and `lower/N`, where a captured lower tree is attached while its overlay
/// is mounted. Returns a descriptor of its root.
fn scratch_tmpfs(base: BorrowedFd<'_>, size: u64, layers: usize) -> Result<OwnedFd, StepError> {
    nix::sys::stat::mkdirat(base, SCRATCH, Mode::from_bits_truncate(0o700)).step("mkdir scratch")?;
    let at = open_in(base, Path::new(SCRATCH)).step("open scratch mount point")?;
    let opts = format!("mode=0755,size={size}");
    mount(
        Some("tmpfs"),
        &fd_path(at.as_fd()),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .step("mount scratch tmpfs")?;
    // Nothing covers the staging root yet, so the path leads to the new tmpfs's root.
    let dir = nix::fcntl::openat(
        base,
        SCRATCH,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("open scratch tmpfs")?;
    for shared in ["tmp", "shm"] {
        nix::sys::stat::mkdirat(dir.as_fd(), shared, Mode::empty()).step("mkdir scratch dir")?;
        nix::sys::stat::fchmodat(
            dir.as_fd(),
            shared,
            Mode::from_bits_truncate(0o1777),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .step("chmod scratch dir")?;
    }
    for kind in ["upper", "work", "lower"] {
        if layers > 0 {
            nix::sys::stat::mkdirat(dir.as_fd(), kind, Mode::from_bits_truncate(0o755)).step("mkdir overlay layers")?;
        }
        for layer in 0..layers {
            let p = format!("{kind}/{layer}");
            nix::sys::stat::mkdirat(dir.as_fd(), p.as_str(), Mode::from_bits_truncate(0o755))
                .step("mkdir overlay layer")?;
        }
    }
    Ok(dir)
}

/// A detached bind of the scratch tmpfs's directory `name` (`/tmp`, `/dev/shm`).
fn scratch_dir(scratch: BorrowedFd<'_>, name: &str, exec: bool) -> Result<OwnedFd, StepError> {
    let fd = open_in(scratch, Path::new(name)).step("open scratch dir")?;
    detached(fd.as_fd(), bind_attrs(true, exec), "bind scratch dir")
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

/// Hides `target` under an empty read-only file or directory. Nothing to hide where
/// nothing exists, or where this process (and so the command, which has less) cannot
/// reach: a directory on the way it may not search.
pub(super) fn mask(
    root: BorrowedFd<'_>,
    target: &Path,
    empty_file: BorrowedFd<'_>,
    empty_dir: BorrowedFd<'_>,
) -> Result<(), StepError> {
    let dst = match open_in(root, target) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::EACCES) => return Ok(()),
        Err(e) => return Err(StepError::io("open masked path", e).context(target)),
    };
    let src = if is_dir(&dst) { empty_dir } else { empty_file };
    cover(dst.as_fd(), src).map_err(|e| e.context(target))
}

/// Mounts a read-only, noexec copy of `src` (an empty stand-in, or `dst` itself) on `dst`.
pub(super) fn cover(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> Result<(), StepError> {
    let attrs = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC;
    let tree = detached(src, attrs, "prepare mask")?;
    sys::move_mount_fd(tree.as_fd(), dst).step("mask path")
}

/// Mounts what the view shows at `target` (not following a final symlink) on itself, so
/// that it cannot be renamed, replaced or removed; optionally read-only, or with exec
/// allowed or refused.
pub(super) fn pin(root: BorrowedFd<'_>, target: &Path, read_only: bool, exec: Option<bool>) -> Result<(), StepError> {
    let at = match open_beneath(root, target, OFlag::O_NOFOLLOW) {
        Ok(fd) => fd,
        // Out of this process's reach, so out of the command's too.
        Err(nix::errno::Errno::EACCES) => return Ok(()),
        // Only a rule about whether files run can name something that is not there.
        Err(nix::errno::Errno::ENOENT) if !read_only && exec.is_some() => return Ok(()),
        Err(nix::errno::Errno::ENOENT) => {
            return Err(StepError::msg(
                "pin path",
                format!("/{}: removed since the policy was planned", target.display()),
            ))
        }
        Err(e) => return Err(StepError::io("pin path", e).context(target)),
    };
    pin_at(at.as_fd(), target, read_only, exec)
}

/// Mounts what `at` (an `O_PATH` descriptor, possibly of a symlink) refers to on itself;
/// `target` only names it in errors.
pub(super) fn pin_at(at: BorrowedFd<'_>, target: &Path, read_only: bool, exec: Option<bool>) -> Result<(), StepError> {
    let tree = sys::open_tree_clone(at).map_err(|e| StepError::io("pin path", e).context(target))?;
    let mut set = 0;
    let mut clear = 0;
    if read_only {
        set |= sys::MOUNT_ATTR_RDONLY;
    }
    match exec {
        Some(false) => set |= sys::MOUNT_ATTR_NOEXEC,
        Some(true) => clear |= sys::MOUNT_ATTR_NOEXEC,
        None => {}
    }
    if set | clear != 0 {
        match sys::mount_setattr_fd(tree.as_fd(), set, clear) {
            // The host itself mounted it noexec (a locked flag): it stays so.
            Err(e) if clear != 0 && e.raw_os_error() == Some(libc::EPERM) => {
                sys::mount_setattr_fd(tree.as_fd(), set, 0).map_err(|e| StepError::io("pin path", e).context(target))?
            }
            r => r.map_err(|e| StepError::io("pin path", e).context(target))?,
        }
    }
    sys::move_mount_fd(tree.as_fd(), at).map_err(|e| StepError::io("pin path", e).context(target))
}

/// A fresh procfs for our pid namespace, with masks and read-only subtrees.
fn proc(
    at: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    target: &Path,
    empty_file: BorrowedFd<'_>,
    empty_dir: BorrowedFd<'_>,
) -> Result<(), StepError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &fd_path(at), Some("proc"), flags, None::<&str>).step("mount /proc")?;
    for name in PROC_MASKED {
        mask(root, &target.join(name), empty_file, empty_dir)?;
    }
    for name in PROC_READONLY {
        let path = target.join(name);
        let Ok(fd) = open_in(root, &path) else { continue };
        cover(fd.as_fd(), fd.as_fd()).map_err(|e| e.context(&path))?;
    }
    Ok(())
}

/// A minimal /dev: six host device nodes, a private devpts, shm (from the scratch tmpfs),
/// the usual symlinks; the tmpfs itself ends read-only.
fn dev(
    at: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    target: &Path,
    devices: &[OwnedFd],
    scratch: BorrowedFd<'_>,
    shm_exec: bool,
) -> Result<(), StepError> {
    mount(
        Some("tmpfs"),
        &fd_path(at),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .step("mount /dev")?;
    let dev = open_in(root, target).step("open /dev")?;
    for (name, fd) in DEVICES.iter().zip(devices) {
        let dst = mount_point(root, &target.join(name), false, true)?;
        sys::move_mount_fd(fd.as_fd(), dst.as_fd()).step("bind device")?;
    }
    nix::sys::stat::mkdirat(dev.as_fd(), "pts", Mode::from_bits_truncate(0o755)).step("mkdir /dev/pts")?;
    let pts = open_in(dev.as_fd(), Path::new("pts")).step("open /dev/pts")?;
    mount(
        Some("devpts"),
        &fd_path(pts.as_fd()),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .step("mount devpts")?;
    nix::sys::stat::mkdirat(dev.as_fd(), "shm", Mode::from_bits_truncate(0o755)).step("mkdir /dev/shm")?;
    let shm = open_in(dev.as_fd(), Path::new("shm")).step("open /dev/shm")?;
    let tree = scratch_dir(scratch, "shm", shm_exec)?;
    sys::move_mount_fd(tree.as_fd(), shm.as_fd()).step("attach /dev/shm")?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        nix::unistd::symlinkat(to, dev.as_fd(), link).step("create /dev symlink")?;
    }
    sys::mount_setattr_one(dev.as_fd(), sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC)
        .step("make /dev read-only")?;
    Ok(())
}

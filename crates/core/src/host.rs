//! What the normaliser needs to know about the caller and the host, as plain data.
//!
//! Runs in: the client, when planning; the helper fills in `HostCapabilities`.
//!
//! The backends fill these in (`corral_linux::probe`), tests fake them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Who is asking: resolved once per call by the binding, from the calling process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Context {
    /// The caller's working directory; relative policy paths resolve against it.
    pub cwd: PathBuf,
    /// The caller's home directory; `~` in policy paths expands to it.
    pub home: Option<PathBuf>,
    pub uid: u32,
    pub gid: u32,
    /// The caller's environment, for `inheritEnv` and the safe defaults (LANG, TERM, TZ).
    pub env: BTreeMap<String, String>,
}

/// What `lstat` says a host path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    /// A symlink, with its target as written (not resolved).
    Symlink(PathBuf),
    /// A Unix domain socket.
    Socket,
    /// A device or fifo.
    Other,
}

/// What `lstat` says about a path beyond its kind: who may have written it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Hard links to it (`st_nlink`).
    pub links: u64,
}

/// How far the planner looks inside a denied or protected directory for files that have
/// other names (hard links) outside it: every entry is one `lstat`, on the cold path.
pub const LINK_WALK_ENTRIES: usize = 5_000;
/// How deep that walk goes.
pub const LINK_WALK_DEPTH: usize = 32;

/// What a bounded walk of a directory found about its regular files' other names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkedOut {
    /// The first few files found that have names outside the directory.
    pub first: Vec<PathBuf>,
    /// How many such files were found.
    pub count: u64,
    /// False when the walk stopped at a bound ([`LINK_WALK_ENTRIES`], [`LINK_WALK_DEPTH`])
    /// or could not tell: files it did not see may have other names too.
    pub complete: bool,
}

/// How many files a [`LinkedOut`] names.
pub const LINKED_OUT_NAMED: usize = 3;

/// The file system questions the normaliser asks. Implemented over `std::fs` by the
/// backends and by an in-memory map in tests.
pub trait HostFs {
    /// `realpath`: every symlink resolved; fails if the path does not exist.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// `lstat`: `None` if the path does not exist.
    fn kind(&self, path: &Path) -> Option<FileKind>;
    /// Owner, permission bits and link count of `path` itself (`lstat`). The default says
    /// nothing is known, which makes every symlink untrusted.
    fn owner(&self, _path: &Path) -> Option<Owner> {
        None
    }
    /// Mount points strictly below the directory `path`, in the caller's mount namespace.
    fn submounts(&self, _path: &Path) -> Vec<PathBuf> {
        Vec::new()
    }
    /// An empty regular file or an empty directory (what a placeholder is).
    fn is_empty(&self, _path: &Path) -> bool {
        false
    }
    /// The regular files below the directory `dir` with more hard links than the walk saw
    /// inside it (so they have names outside it), walked without following symlinks,
    /// within [`LINK_WALK_ENTRIES`] and [`LINK_WALK_DEPTH`]. The default cannot tell, and
    /// says so (an incomplete walk).
    fn linked_out(&self, _dir: &Path) -> LinkedOut {
        LinkedOut::default()
    }
    /// Whether the caller may create entries in the directory `dir` (`access(W_OK)`).
    fn writable(&self, _dir: &Path) -> bool {
        false
    }
    /// Whether the file system holding `path` can be mounted idmapped (showing its files'
    /// owners through another user namespace's mapping). `None` when it cannot be told.
    fn idmap_support(&self, _path: &Path) -> Option<bool> {
        Some(true)
    }
}

/// What this host can enforce. Reported by `corral check` and consulted by the planner, so
/// that every gap becomes a caveat instead of silence.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostCapabilities {
    /// `linux` or `macos`.
    pub os: String,
    pub arch: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Effective uid of the process that creates sandboxes.
    pub uid: u32,
    /// Highest Landlock ABI the kernel offers; 0 when Landlock is unavailable or disabled.
    pub landlock_abi: u32,
    /// Unprivileged-capable user namespaces can be created by this user.
    pub user_namespaces: bool,
    /// Why user namespaces are unavailable, and how to enable them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespaces_detail: Option<String>,
    /// seccomp-bpf filters can be installed.
    pub seccomp: bool,
    /// seccomp user notification (`SECCOMP_RET_USER_NOTIF`) and `pidfd_getfd` (Linux 5.6+),
    /// which the socket gate needs.
    pub seccomp_user_notif: bool,
    /// The new mount API (`open_tree`, `move_mount`, `mount_setattr`; Linux 5.12+).
    pub mount_api: bool,
    /// overlayfs can be mounted inside a user namespace (Linux 5.11+, distro permitting).
    pub overlay_in_userns: bool,
    /// `pidfd_open` (Linux 5.3+).
    pub pidfd: bool,
    /// `vm.memfd_noexec` exists (Linux 6.3+) and sandbox init may set it for its own pid
    /// namespace (it must be host root to write the sysctl), so memory files cannot be
    /// executed.
    #[serde(default)]
    pub memfd_noexec: bool,
    pub cgroup: CgroupCapabilities,
    /// The hard RLIMIT_NOFILE of the process that creates sandboxes: no sandbox can have
    /// more open files. `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files_limit: Option<u64>,
    /// Which host identity a root caller's sandbox gets.
    #[serde(default)]
    pub identity: IdentityCapabilities,
}

/// A host uid and gid.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HostIds {
    pub uid: u32,
    pub gid: u32,
}

/// The unprivileged host identity a root caller's sandbox runs as, instead of host root.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityCapabilities {
    /// The host uid and gid the sandbox's root maps onto; `None` when no unused ids could be
    /// found (the sandbox's root is then the host's root, with a caveat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_maps_to: Option<HostIds>,
    /// Where those ids come from, or why there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Mounts can be idmapped (`mount_setattr(MOUNT_ATTR_IDMAP)`, Linux 5.12+) by the helper.
    pub idmapped_mounts: bool,
    /// The helper can refuse opens of set-id and file-capability files through a mount
    /// (fanotify permission events: host root, `CONFIG_FANOTIFY_ACCESS_PERMISSIONS`).
    #[serde(default)]
    pub setid_guard: bool,
    /// Why it cannot, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setid_guard_detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CgroupCapabilities {
    /// `v2`, `v1`, `hybrid` or `none`.
    pub version: String,
    /// Where the unified (v2) hierarchy is mounted, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified_mount: Option<String>,
    /// Controllers this user can use for sandboxes (memory, cpu, pids…).
    pub controllers: Vec<String>,
    /// The caller can create child cgroups (root, or a delegated subtree).
    pub writable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl HostCapabilities {
    /// A host that supports everything, for tests of the planner.
    pub fn full_linux() -> Self {
        HostCapabilities {
            os: "linux".into(),
            arch: "x86_64".into(),
            kernel: "6.18.0".into(),
            uid: 1000,
            landlock_abi: 7,
            user_namespaces: true,
            user_namespaces_detail: None,
            seccomp: true,
            seccomp_user_notif: true,
            mount_api: true,
            overlay_in_userns: true,
            pidfd: true,
            memfd_noexec: true,
            identity: IdentityCapabilities {
                root_maps_to: Some(HostIds { uid: 2_080_374_784, gid: 2_080_374_784 }),
                detail: Some("corral's reserved id".into()),
                idmapped_mounts: true,
                setid_guard: true,
                setid_guard_detail: None,
            },
            cgroup: CgroupCapabilities {
                version: "v2".into(),
                unified_mount: Some("/sys/fs/cgroup".into()),
                controllers: vec!["memory".into(), "cpu".into(), "pids".into()],
                writable: true,
                detail: None,
            },
            open_files_limit: Some(1 << 20),
        }
    }
}

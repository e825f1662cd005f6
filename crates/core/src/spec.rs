//! The compiled sandbox: every decision already made, in the order a backend performs it.
//!
//! Runs in: the client (builds it), the helper and the sandbox (carry it out).
//!
//! A `SandboxSpec` is what the addon sends to the helper. It names host paths that were
//! resolved at plan time and never contains anything a backend must interpret further:
//! the mount list is already ordered (parents before children), the environment is final,
//! limits are numbers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// The command; `argv[0]` is looked up in the sandbox's PATH when it has no slash.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    pub hostname: String,
    /// Uid and gid the command runs as inside: the caller's own numbers. They map onto the
    /// same host ids, one to one, unless `identity` says otherwise.
    pub uid: u32,
    pub gid: u32,
    /// The unprivileged host ids a root caller's sandbox runs as instead of host root, and
    /// the mounts that still show the caller's files as the sandbox's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ShiftedIdentity>,
    pub network: NetworkAccess,
    /// The mount view, built on an empty tmpfs root in this order.
    pub mounts: Vec<MountSpec>,
    pub landlock: LandlockSpec,
    pub seccomp: SeccompSpec,
    pub rlimits: Rlimits,
    /// Limits for the whole process tree, enforced by a cgroup of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupLimits>,
    /// Wall-clock limit; the whole sandbox is killed when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The sandbox's own memory-backed storage.
    pub scratch: ScratchSpec,
    /// Where overlay writes land (write modes `ephemeral` and `overlay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlaySpec>,
    /// Set `vm.memfd_noexec=2` for the sandbox's pid namespace, so that memory files can
    /// never be executed; the run fails if it cannot be set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memfd_noexec: bool,
    /// Prepare the sandbox and wait for its command (a warm pool's sandboxes): `argv`,
    /// `env`, `cwd` and stdio arrive later, with the helper's `Exec`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait_for_command: bool,
    /// Give the command a terminal of the sandbox's own devpts (its controlling terminal);
    /// stdio is then that terminal and the master side goes back to the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<TerminalSize>,
    /// Sandbox paths of the Unix sockets `fs.allowUnixSockets` lists: with the socket gate,
    /// the only pathname sockets not bound inside the sandbox that it may connect or send to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unix_sockets: Vec<PathBuf>,
    /// Empty files and directories created on the host for the run, as mount points for
    /// denied or protected paths that do not exist yet (so that one created later is
    /// still hidden or read-only); removed afterwards when nothing else uses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placeholders: Vec<Placeholder>,
}

/// A sandbox whose ids map onto other host ids than the caller's (a root caller's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShiftedIdentity {
    /// The host uid and gid the sandbox's `uid` and `gid` map onto.
    pub host_uid: u32,
    pub host_gid: u32,
    /// Targets of the bind and overlay mounts of the caller's grants: each is an idmapped
    /// mount, so the caller's files there are the sandbox's own and files the command
    /// creates land owned by the caller. Other mounts (the system directories) show host
    /// files with host owners, which the sandbox's ids are not.
    #[serde(default)]
    pub idmapped: Vec<PathBuf>,
    /// The writable ones among them are put under the helper's set-id guard: no set-id or
    /// file-capability file there may be opened (a shared writable mapping would change it
    /// and keep its bits). False where the host cannot (caveat `SETID_UNGUARDED`).
    #[serde(default)]
    pub guard_setid: bool,
}

/// One tmpfs per sandbox holds everything the command writes into memory: the private
/// `/tmp`, `/dev/shm` and every overlay's upper layer, so one size bounds them together.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScratchSpec {
    /// Bytes (`limits.disk`, or corral's default).
    pub size: u64,
}

/// Overlay writes: their upper layers live in the scratch tmpfs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OverlaySpec {
    /// Keep the layers after the run so the changes can be listed, committed or discarded
    /// (`overlay`); otherwise they vanish with the sandbox (`ephemeral`).
    pub capture: bool,
}

/// An empty file or directory standing in for a denied or protected path that does not
/// exist.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placeholder {
    /// The writable host directory it is created in (opened without following symlinks).
    pub root: PathBuf,
    /// Its name in `root` (one component).
    pub relative: PathBuf,
    pub dir: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum NetworkAccess {
    /// A new, empty network namespace with loopback up.
    Isolated,
    /// The host's network namespace.
    Host,
    /// An empty network namespace whose loopback ports relay to the host-side proxy that
    /// enforces an allow-list (HTTP proxy on `http_port`, SOCKS5 on `socks_port`), over a
    /// channel that comes with the spawn request.
    #[serde(rename_all = "camelCase")]
    Proxied { http_port: u16, socks_port: u16 },
}

/// One step of the mount view. Targets are paths inside the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum MountSpec {
    /// Bind a host path (recursively); read-only unless `writable`; `noexec` unless `exec`.
    Bind { source: PathBuf, target: PathBuf, writable: bool, exec: bool },
    /// An overlay whose lower layer is the host directory `lower` and whose upper layer is
    /// the `layer`-th directory of the scratch tmpfs: writes never reach the host.
    Overlay { lower: PathBuf, target: PathBuf, exec: bool, layer: usize },
    /// The private `/tmp`: a directory of the scratch tmpfs; `noexec` unless `exec`.
    Tmpfs { target: PathBuf, exec: bool },
    /// A fresh procfs for the sandbox's pid namespace, with sensitive entries masked.
    Proc { target: PathBuf },
    /// A minimal `/dev`: null, zero, full, random, urandom, tty, a private devpts, and shm
    /// (a directory of the scratch tmpfs, `noexec` unless `shm_exec`).
    Dev { target: PathBuf, shm_exec: bool },
    /// A symlink (e.g. `/bin -> usr/bin` on merged-/usr systems).
    Symlink { link: PathBuf, target: PathBuf },
    /// Hide a file or directory under an empty read-only one. Nothing is hidden where
    /// nothing exists when the view is built, or where the sandbox could not reach it.
    Mask { target: PathBuf },
    /// Mount whatever the view already shows at `target` (a directory, file or symlink,
    /// not followed) on itself. A mount point cannot be renamed, replaced or removed from
    /// inside, which keeps a protected path what it is under its name. Optionally also
    /// read-only, or with execution allowed (`exec: true`) or refused (`exec: false`).
    Pin {
        target: PathBuf,
        read_only: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<bool>,
    },
}

/// Landlock rules, applied in the command's process after the mount view exists (paths
/// are sandbox paths). Everything not listed is denied.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LandlockSpec {
    pub rules: Vec<LandlockRule>,
    /// Kernel ABI the plan was made for; the backend fails closed if it gets less.
    pub abi: u32,
    /// Scope abstract Unix sockets and signals to the sandbox (ABI 6+).
    pub scoped: bool,
    /// TCP port rules (ABI 4+): `None` leaves that kind of access unrestricted, a list
    /// allows exactly those ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_ports: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ports: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LandlockRule {
    pub path: PathBuf,
    pub access: FsAccess,
}

/// Coarse access classes; the backend maps them to the Landlock rights of its ABI.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FsAccess {
    /// List directories only (no file contents).
    #[serde(default)]
    pub list: bool,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// ioctl on device files (terminals).
    pub ioctl: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SeccompSpec {
    pub profile: String,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// The socket gate: connect, bind, and every send that can carry an address stop for the
    /// sandbox's init, which performs them and refuses pathname Unix sockets the sandbox may
    /// not reach.
    #[serde(default)]
    pub gate: bool,
    /// TCP port rules are in force: every other inet protocol (UDP, MPTCP, SCTP, …) and TCP
    /// Fast Open, which the rules cannot see, are refused.
    #[serde(default)]
    pub tcp_only: bool,
    /// TCP bind port rules are in force: `listen()` goes through the gate too, which refuses
    /// it on an unbound socket (the kernel would bind an ephemeral port no rule saw).
    #[serde(default)]
    pub gate_listen: bool,
    /// No extended attribute may be set (`EOPNOTSUPP`, as on a file system without them). A
    /// root caller's sandbox owns host root's files in its idmapped grants, and an access
    /// ACL (`system.posix_acl_access`) changes a file's permission bits without clearing
    /// its set-user-ID bit, as chmod would: a set-user-ID-root program there could be made
    /// writable to every host user, or a set-group-ID file without group execute (which
    /// the command may write) made executable.
    #[serde(default)]
    pub no_xattr_writes: bool,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TerminalSize {
    pub cols: u16,
    pub rows: u16,
}

/// Tree-wide limits a sandbox cgroup enforces.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CgroupLimits {
    /// Bytes of memory (swap off); the whole tree is OOM-killed past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Share of CPUs (`0.5` = half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

/// Per-process limits (setrlimit), applied to the command before exec.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rlimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
}

/// One kind of per-process limit; each backend maps it to its platform's resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    AddressSpace,
    Processes,
    OpenFiles,
    FileSize,
    CpuSeconds,
}

impl Rlimits {
    /// The limits that are set, each with its value (soft and hard alike).
    pub fn entries(&self) -> impl Iterator<Item = (Rlimit, u64)> {
        [
            (Rlimit::AddressSpace, self.address_space),
            (Rlimit::Processes, self.processes),
            (Rlimit::OpenFiles, self.open_files),
            (Rlimit::FileSize, self.file_size),
            (Rlimit::CpuSeconds, self.cpu_seconds),
        ]
        .into_iter()
        .filter_map(|(r, v)| v.map(|v| (r, v)))
    }
}

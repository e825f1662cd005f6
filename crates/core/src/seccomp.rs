//! The seccomp profiles: one source of truth for which system calls each profile refuses
//! or allows, as data. The Linux backend compiles the filters this module describes with
//! seccompiler (its JSON front end, which also resolves names per architecture); this
//! module has no OS calls so the lists are unit-tested anywhere.
//!
//! Runs in: the client (planning) and the helper (compiling the filters).
//!
//! Every profile except `permissive` starts from the container-runtime deny-list below
//! (modelled on the moby/containerd default, minus what only matters with capabilities we
//! never grant). `strict` is an allow-list instead. Filters stack, so a profile is a small
//! list of filters, each with one action: that keeps `clone3` answering ENOSYS (libc falls
//! back to `clone`, whose flags we can inspect) while everything else answers EPERM.
//!
//! Every profile, `permissive` and custom allow lists included, also gets two filters no
//! allow list lifts: one refuses to make set-user-ID or set-group-ID files (the chmod
//! family, and creating files, directories or nodes with those bits) and io_uring, which
//! opens and creates files through no system call a filter can inspect; the other answers
//! ENOSYS to `openat2`, whose mode sits in memory a filter cannot read, so libc and
//! runtimes fall back to `openat`.
//!
//! Long because the profiles are data, and each list of system calls stays in one
//! place, next to the profile that uses it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The named profiles, in order of increasing permission.
pub const PROFILES: &[(&str, &str)] = &[
    ("strict", "allow-list of ~220 ordinary calls (files, memory, processes, time, AF_UNIX sockets); everything else EPERM"),
    ("compute", "default, and no sockets but AF_UNIX: for pure computation"),
    ("default", "container-runtime deny-list: no mount, namespaces, keyring, bpf, perf, io_uring, ptrace, module/kexec, TIOCSTI/TIOCSETD, raw/packet sockets"),
    ("network", "default, plus every netlink protocol (for tools such as ss or ip that inspect the network)"),
    ("permissive", "only what can harm the host: module loading, kexec, reboot, swap, clock setting, TIOCSTI/TIOCSETD; and, as in every profile, set-user-ID/set-group-ID modes, io_uring and userfaultfd (openat2 answers ENOSYS)"),
];

/// Calls no allow list can permit, and why.
pub const NEVER_ALLOWED: &[(&str, &str)] = &[
    ("io_uring_setup", "io_uring opens and creates files without system calls seccomp can inspect, so it could create set-user-ID files"),
    ("io_uring_enter", "io_uring opens and creates files without system calls seccomp can inspect, so it could create set-user-ID files"),
    ("io_uring_register", "io_uring opens and creates files without system calls seccomp can inspect, so it could create set-user-ID files"),
    ("openat2", "its file mode is passed in memory seccomp cannot read, so it answers ENOSYS and callers fall back to openat"),
    ("userfaultfd", "a page fault it handles would stall the sandbox's pid 1 while it reads a gated call's arguments from the command's memory"),
];

pub const DEFAULT_PROFILE: &str = "default";

pub fn is_profile(name: &str) -> bool {
    PROFILES.iter().any(|(n, _)| *n == name)
}

// Linux ABI constants (identical on x86_64 and aarch64).
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWCGROUP: u64 = 0x0200_0000;
const CLONE_NEWUTS: u64 = 0x0400_0000;
const CLONE_NEWIPC: u64 = 0x0800_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;
pub const CLONE_NAMESPACE_FLAGS: [u64; 7] =
    [CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET];
const S_ISUID: u64 = 0o4000;
const S_ISGID: u64 = 0o2000;
const O_CREAT: u64 = 0o100;
/// `__O_TMPFILE`: an unnamed file, created with the mode given (and linkable later).
const O_TMPFILE: u64 = 0o20_000_000;
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;
const TIOCSETD: u64 = 0x5423;
const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const AF_NETLINK: u64 = 16;
const SOCK_DGRAM: u64 = 2;
const SOCK_RAW: u64 = 3;
const SOCK_RDM: u64 = 4;
const SOCK_SEQPACKET: u64 = 5;
const SOCK_DCCP: u64 = 6;
const SOCK_PACKET: u64 = 10;
const IPPROTO_TCP: u64 = 6;
const MSG_FASTOPEN: u64 = 0x2000_0000;
const SOCK_TYPE_MASK: u64 = 0xf;
const NETLINK_ROUTE: u64 = 0;
/// Personalities runtimes allow: PER_LINUX, UNAME26, PER_LINUX32, their ADDR_NO_RANDOMIZE
/// variants, and the 0xffffffff query.
const PERSONALITY_OK: [u64; 5] = [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Calls that can harm the host or other tenants whatever namespaces we are in.
const HOST_HARM: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "syslog",
    "uselib",
    "open_by_handle_at",
    "lookup_dcookie",
    "vhangup",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "_sysctl",
];

/// The container-runtime deny-list on top of HOST_HARM: ways out of namespaces and mounts,
/// and the kernel's most attacked interfaces.
const CONTAINER_DENY: &[&str] = &[
    // mounts and namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    // keyring
    "keyctl",
    "add_key",
    "request_key",
    // kernel attack surface
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "fanotify_init",
    "name_to_handle_at",
    "quotactl",
    "quotactl_fd",
    // other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    // NUMA policy (needs CAP_SYS_NICE in runtimes)
    "mbind",
    "set_mempolicy",
    "migrate_pages",
    "move_pages",
    // obsolete
    "sysfs",
    "ustat",
];

/// Calls missing from the aarch64 table (legacy x86_64 entry points). Names here are
/// skipped when compiling for an architecture that does not have them.
pub const X86_64_ONLY: &[&str] = &[
    "open",
    "stat",
    "lstat",
    "poll",
    "access",
    "pipe",
    "select",
    "dup2",
    "pause",
    "alarm",
    "fork",
    "vfork",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "chown",
    "lchown",
    "mkdir",
    "rmdir",
    "rename",
    "getdents",
    "utime",
    "utimes",
    "futimesat",
    "time",
    "epoll_create",
    "epoll_wait",
    "inotify_init",
    "eventfd",
    "signalfd",
    "arch_prctl",
    "iopl",
    "ioperm",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "getpgrp",
    "modify_ldt",
    "epoll_ctl_old",
    "epoll_wait_old",
    "nfsservctl",
    "mknod",
];

/// `strict`'s allow-list: ordinary file, memory, process, signal, time and IPC calls.
const STRICT_ALLOW: &[&str] = &[
    // files and directories
    "read",
    "write",
    "open",
    "openat",
    // not openat2: every profile answers it ENOSYS (see `openat2_filter`)
    "close",
    "close_range",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "lseek",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "access",
    "faccessat",
    "faccessat2",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "truncate",
    "ftruncate",
    "fallocate",
    "fadvise64",
    "readahead",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "creat",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "readlink",
    "readlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "umask",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "statfs",
    "fstatfs",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "copy_file_range",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "sync_file_range",
    "ioctl",
    "pipe",
    "pipe2",
    "memfd_create",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "mknod",
    "mknodat",
    // memory
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "msync",
    "mincore",
    "madvise",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "membarrier",
    "get_mempolicy",
    // processes and threads
    "clone",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getpgrp",
    "getsid",
    "setsid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "futex",
    "futex_waitv",
    "arch_prctl",
    "prctl",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "getpriority",
    "setpriority",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "times",
    "sysinfo",
    "uname",
    "getcpu",
    "getrandom",
    "capget",
    "pidfd_open",
    "pidfd_send_signal",
    "restart_syscall",
    "personality",
    "modify_ldt",
    // signals
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "kill",
    "tkill",
    "tgkill",
    "pause",
    "signalfd",
    "signalfd4",
    // time
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "alarm",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    // waiting and events
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    // local sockets (socket families are narrowed to AF_UNIX below)
    "socket",
    "socketpair",
    "connect",
    "accept",
    "accept4",
    "bind",
    "listen",
    "shutdown",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    // self-restriction is always welcome
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
];

/// One argument comparison, as seccompiler's JSON front end spells it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cond {
    pub index: u8,
    #[serde(rename = "type")]
    pub width: &'static str,
    pub op: Value,
    pub val: u64,
}

impl Cond {
    fn dword(index: u8, op: Value, val: u64) -> Cond {
        Cond { index, width: "dword", op, val }
    }
    fn qword(index: u8, op: Value, val: u64) -> Cond {
        Cond { index, width: "qword", op, val }
    }
}

/// A rule matches a call by name and, if `args` is not empty, when all conditions hold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rule {
    pub syscall: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Cond>,
}

impl Rule {
    fn any(name: &str) -> Rule {
        Rule { syscall: name.to_string(), args: vec![] }
    }
    fn when(name: &str, args: Vec<Cond>) -> Rule {
        Rule { syscall: name.to_string(), args }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u32),
}

impl Action {
    fn to_json(self) -> Value {
        match self {
            Action::Allow => json!("allow"),
            Action::Errno(e) => json!({ "errno": e }),
        }
    }
}

/// One seccomp filter: rules with one action on match and another for everything else.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub name: &'static str,
    pub on_match: Action,
    pub otherwise: Action,
    pub rules: Vec<Rule>,
}

impl Filter {
    /// Names this filter mentions.
    pub fn syscalls(&self) -> BTreeSet<&str> {
        self.rules.iter().map(|r| r.syscall.as_str()).collect()
    }
}

/// Socket families each deny-list profile permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sockets {
    /// AF_UNIX only.
    UnixOnly,
    /// AF_UNIX, AF_INET, AF_INET6 and NETLINK_ROUTE; never raw or packet sockets.
    Standard,
    /// Standard plus every netlink protocol.
    StandardAllNetlink,
}

fn socket_rules(sockets: Sockets) -> Vec<Rule> {
    let ne = || json!("ne");
    // Raw IP sockets (and the obsolete SOCK_PACKET) see and forge traffic; a raw *netlink*
    // socket is just how netlink is spoken (`ip`, `ss`, glibc's getaddrinfo), so the family
    // decides.
    let raw = || {
        [SOCK_RAW, SOCK_PACKET]
            .iter()
            .map(|t| {
                Rule::when(
                    "socket",
                    vec![Cond::dword(1, json!({ "masked_eq": SOCK_TYPE_MASK }), *t), Cond::dword(0, ne(), AF_NETLINK)],
                )
            })
            .collect::<Vec<_>>()
    };
    match sockets {
        Sockets::UnixOnly => vec![Rule::when("socket", vec![Cond::dword(0, ne(), AF_UNIX)])],
        Sockets::Standard | Sockets::StandardAllNetlink => {
            let mut rules = raw();
            // A family outside the permitted set.
            rules.push(Rule::when(
                "socket",
                [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK].iter().map(|f| Cond::dword(0, ne(), *f)).collect(),
            ));
            if sockets == Sockets::Standard {
                rules.push(Rule::when(
                    "socket",
                    vec![Cond::dword(0, json!("eq"), AF_NETLINK), Cond::dword(2, ne(), NETLINK_ROUTE)],
                ));
            }
            rules
        }
    }
}

/// Terminal ioctls that reach beyond the command: typing into a terminal's input queue
/// (TIOCSTI), the console's private commands (TIOCLINUX), and changing a terminal's line
/// discipline (TIOCSETD), which stays changed after the command exits and on a terminal the
/// command was handed, breaks the caller's session.
fn terminal_injection_rules() -> Vec<Rule> {
    // The ioctl request is an `unsigned int` in the kernel: compare 32 bits so high bits
    // cannot smuggle a request past the filter.
    [TIOCSTI, TIOCLINUX, TIOCSETD].iter().map(|r| Rule::when("ioctl", vec![Cond::dword(1, json!("eq"), *r)])).collect()
}

/// io_uring performs connect, send, open and the rest from kernel workers that no seccomp
/// filter sees, so no profile lets it through (a custom `allow` still can, with a caveat).
const IO_URING: &[&str] = &["io_uring_setup", "io_uring_enter", "io_uring_register"];

fn namespace_clone_rules() -> Vec<Rule> {
    CLONE_NAMESPACE_FLAGS
        .iter()
        .map(|flag| Rule::when("clone", vec![Cond::qword(0, json!({ "masked_eq": flag }), *flag)]))
        .collect()
}

fn personality_rule() -> Rule {
    Rule::when("personality", PERSONALITY_OK.iter().map(|p| Cond::dword(0, json!("ne"), *p)).collect())
}

/// Where TCP port rules are in force (Landlock sees TCP `bind` and `connect` only), what
/// they cannot see is closed: inet sockets that are not plain TCP (UDP, MPTCP, SCTP, ping,
/// raw…), socket families other than Unix, inet and netlink, and TCP Fast Open, whose
/// connect rides on `sendto`/`sendmsg`. Installed with every profile, and `seccomp.allow`
/// does not lift it: it is part of the network policy.
pub fn port_rules_filter() -> Filter {
    let ne = || json!("ne");
    let mut rules = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for ty in [SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET, SOCK_DCCP, SOCK_PACKET] {
            rules.push(Rule::when(
                "socket",
                vec![Cond::dword(0, json!("eq"), family), Cond::dword(1, json!({ "masked_eq": SOCK_TYPE_MASK }), ty)],
            ));
        }
        // SOCK_STREAM with a protocol other than TCP: MPTCP (262), SCTP (132).
        rules.push(Rule::when(
            "socket",
            vec![Cond::dword(0, json!("eq"), family), Cond::dword(2, ne(), 0), Cond::dword(2, ne(), IPPROTO_TCP)],
        ));
    }
    rules.push(Rule::when(
        "socket",
        [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK].iter().map(|f| Cond::dword(0, ne(), *f)).collect(),
    ));
    for (call, flags) in [("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3)] {
        rules.push(Rule::when(call, vec![Cond::dword(flags, json!({ "masked_eq": MSG_FASTOPEN }), MSG_FASTOPEN)]));
    }
    deny("ports", rules)
}

fn deny(name: &'static str, rules: Vec<Rule>) -> Filter {
    Filter { name, on_match: Action::Errno(EPERM), otherwise: Action::Allow, rules }
}

/// Calls that set a file's mode, with the index of the mode argument.
const MODE_SETTERS: &[(&str, u8)] = &[
    ("chmod", 1),
    ("fchmod", 1),
    ("fchmodat", 2),
    ("fchmodat2", 2),
    ("creat", 1),
    ("mkdir", 1),
    ("mkdirat", 2),
    ("mknod", 1),
    ("mknodat", 2),
];
/// Calls that create a file when their flags ask for it: (name, flags index, mode index).
const OPENERS: &[(&str, u8, u8)] = &[("open", 1, 2), ("openat", 2, 3)];

/// Never a set-user-ID or set-group-ID file, whoever the caller: a file's owner may set
/// those bits without any capability, and a root caller's files are root's on the host.
/// A mode is refused when either bit is set (the kernel reads the mode as 16 bits and
/// these are bits 11 and 10, so higher bits cannot hide them); `open` and `openat` only
/// when they create (`O_CREAT` or `O_TMPFILE`), since otherwise the mode is ignored and
/// may hold anything. The other calls no allow list can permit are refused here too (io_uring:
/// its opens take modes no filter sees; userfaultfd), openat2 apart (its own filter).
fn setid_filter() -> Filter {
    let has = |index: u8, bit: u64| Cond::dword(index, json!({ "masked_eq": bit }), bit);
    let mut rules = Vec::new();
    for bit in [S_ISUID, S_ISGID] {
        for (name, mode) in MODE_SETTERS {
            rules.push(Rule::when(name, vec![has(*mode, bit)]));
        }
        for (name, flags, mode) in OPENERS {
            for creating in [O_CREAT, O_TMPFILE] {
                rules.push(Rule::when(name, vec![has(*flags, creating), has(*mode, bit)]));
            }
        }
    }
    rules.extend(NEVER_ALLOWED.iter().filter(|(n, _)| *n != "openat2").map(|(n, _)| Rule::any(n)));
    deny("setid", rules)
}

/// `openat2` takes its mode in a struct in memory: answer ENOSYS, and callers fall back
/// to `openat`, whose mode the setid filter reads.
fn openat2_filter() -> Filter {
    Filter {
        name: "openat2",
        on_match: Action::Errno(ENOSYS),
        otherwise: Action::Allow,
        rules: vec![Rule::any("openat2")],
    }
}

/// clone3 passes its flags in memory that seccomp cannot read: answer ENOSYS so libc
/// falls back to clone(2), whose flags the deny filter checks.
fn clone3_filter() -> Filter {
    Filter {
        name: "clone3",
        on_match: Action::Errno(ENOSYS),
        otherwise: Action::Allow,
        rules: vec![Rule::any("clone3")],
    }
}

/// The filters for a profile with the user's `allow` / `deny` additions applied.
///
/// `allow` removes names from deny filters (and adds them to strict's allow-list); `deny`
/// adds unconditional refusals. Names are not validated here: the backend's compiler
/// rejects unknown ones, and the caller maps that to the field.
pub fn filters(profile: &str, allow: &[String], deny_extra: &[String]) -> Option<Vec<Filter>> {
    let mut filters = match profile {
        "permissive" => {
            // Any socket family: raw sockets still need CAP_NET_RAW, which is never granted.
            let mut rules: Vec<Rule> = HOST_HARM.iter().chain(IO_URING).map(|n| Rule::any(n)).collect();
            rules.extend(terminal_injection_rules());
            vec![deny("deny", rules)]
        }
        "default" | "compute" | "network" => {
            let sockets = match profile {
                "compute" => Sockets::UnixOnly,
                "network" => Sockets::StandardAllNetlink,
                _ => Sockets::Standard,
            };
            vec![clone3_filter(), deny("deny", container_deny_rules(sockets))]
        }
        "strict" => {
            let allow_filter = Filter {
                name: "allow",
                on_match: Action::Allow,
                otherwise: Action::Errno(EPERM),
                rules: STRICT_ALLOW.iter().map(|n| Rule::any(n)).collect(),
            };
            // Arguments of allowed calls are narrowed by a stacked deny filter.
            let mut narrow = namespace_clone_rules();
            narrow.extend(terminal_injection_rules());
            narrow.extend(socket_rules(Sockets::UnixOnly));
            narrow.push(personality_rule());
            vec![clone3_filter(), allow_filter, deny("narrow", narrow)]
        }
        _ => return None,
    };
    for f in &mut filters {
        match f.on_match {
            Action::Allow => {
                for name in allow {
                    if !f.rules.iter().any(|r| &r.syscall == name) {
                        f.rules.push(Rule::any(name));
                    }
                }
                f.rules.retain(|r| !deny_extra.contains(&r.syscall));
            }
            Action::Errno(_) => f.rules.retain(|r| !allow.contains(&r.syscall)),
        }
    }
    filters.retain(|f| !f.rules.is_empty());
    if !deny_extra.is_empty() {
        filters.push(deny("custom-deny", deny_extra.iter().map(|n| Rule::any(n)).collect()));
    }
    // After the allow list has been applied: nothing lifts these.
    filters.push(setid_filter());
    filters.push(openat2_filter());
    // Among equal actions the most recently installed filter wins: the ENOSYS filters go
    // last so they answer ENOSYS (which makes libc fall back) rather than another's EPERM.
    filters.sort_by_key(|f| f.on_match == Action::Errno(ENOSYS));
    Some(filters)
}

/// What a set of filters amounts to, for people: how many calls an allow-list lets
/// through, how many are refused outright, and which are checked by their arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Calls an allow-list filter lets through (the `strict` profile); `None` for deny-lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<usize>,
    /// Calls refused whatever their arguments.
    pub refused: usize,
    /// Calls refused only for some arguments (namespace flags, TIOCSTI, socket families…).
    pub argument_checked: Vec<String>,
}

pub fn counts(filters: &[Filter]) -> Counts {
    let mut allowed: Option<BTreeSet<&str>> = None;
    let mut refused = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for f in filters {
        match f.on_match {
            Action::Allow => allowed.get_or_insert_with(BTreeSet::new).extend(f.syscalls()),
            Action::Errno(_) => {
                for r in &f.rules {
                    if r.args.is_empty() {
                        refused.insert(r.syscall.as_str());
                    } else {
                        checked.insert(r.syscall.as_str());
                    }
                }
            }
        }
    }
    let checked = checked.difference(&refused).map(|s| s.to_string()).collect();
    Counts {
        allowed: allowed.map(|a| a.difference(&refused).count()),
        refused: refused.len(),
        argument_checked: checked,
    }
}

fn container_deny_rules(sockets: Sockets) -> Vec<Rule> {
    let mut rules: Vec<Rule> = HOST_HARM.iter().chain(CONTAINER_DENY).map(|n| Rule::any(n)).collect();
    rules.extend(namespace_clone_rules());
    rules.extend(terminal_injection_rules());
    rules.extend(socket_rules(sockets));
    rules.push(personality_rule());
    rules
}

/// The filters in seccompiler's JSON format for one architecture (`x86_64`, `aarch64`),
/// skipping calls that architecture does not have.
pub fn to_seccompiler_json(filters: &[Filter], arch: &str) -> Value {
    let mut out = serde_json::Map::new();
    for f in filters {
        let rules: Vec<&Rule> =
            f.rules.iter().filter(|r| arch == "x86_64" || !X86_64_ONLY.contains(&r.syscall.as_str())).collect();
        out.insert(
            f.name.to_string(),
            json!({
                "mismatch_action": f.otherwise.to_json(),
                "match_action": f.on_match.to_json(),
                "filter": rules,
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(filters: &[Filter]) -> BTreeSet<String> {
        filters
            .iter()
            .filter(|f| f.on_match != Action::Allow)
            .flat_map(|f| f.rules.iter().filter(|r| r.args.is_empty()).map(|r| r.syscall.clone()))
            .collect()
    }

    #[test]
    fn every_profile_builds() {
        for (name, _) in PROFILES {
            let f = filters(name, &[], &[]).unwrap();
            assert!(!f.is_empty(), "{name}");
        }
        assert!(filters("nope", &[], &[]).is_none());
    }

    #[test]
    fn counts_say_what_a_profile_amounts_to() {
        let c = counts(&filters("default", &[], &[]).unwrap());
        assert!(c.allowed.is_none());
        assert_eq!(c.refused, denied(&filters("default", &[], &[]).unwrap()).len());
        assert!(c.argument_checked.iter().any(|s| s == "ioctl") && c.argument_checked.iter().any(|s| s == "socket"));
        let strict = counts(&filters("strict", &[], &[]).unwrap());
        assert_eq!(strict.allowed, Some(STRICT_ALLOW.len()));
        // An extra deny on top of the allow-list leaves one call fewer allowed.
        let fewer = counts(&filters("strict", &[], &["getpid".into()]).unwrap());
        assert_eq!(fewer.allowed, Some(STRICT_ALLOW.len() - 1));
    }

    #[test]
    fn default_denies_the_issue_list() {
        let d = denied(&filters("default", &[], &[]).unwrap());
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "perf_event_open",
            "io_uring_setup",
            "io_uring_enter",
            "userfaultfd",
            "ptrace",
            "kexec_load",
            "init_module",
            "finit_module",
            "reboot",
            "swapon",
            "open_by_handle_at",
        ] {
            assert!(d.contains(name), "default must deny {name}");
        }
        let f = filters("default", &[], &[]).unwrap();
        let clone3 = f.iter().find(|f| f.name == "clone3").unwrap();
        assert_eq!(clone3.on_match, Action::Errno(ENOSYS));
        // ENOSYS filters are installed last, so they win over another filter's EPERM.
        let first_enosys = f.iter().position(|f| f.on_match == Action::Errno(ENOSYS)).unwrap();
        assert!(f[first_enosys..].iter().all(|f| f.on_match == Action::Errno(ENOSYS)));
        let deny = f.iter().find(|f| f.name == "deny").unwrap();
        assert_eq!(deny.rules.iter().filter(|r| r.syscall == "clone").count(), 7);
        assert!(deny
            .rules
            .iter()
            .any(|r| r.syscall == "ioctl" && r.args[0].val == TIOCSTI && r.args[0].width == "dword"));
    }

    #[test]
    fn no_profile_or_allow_list_permits_setid_modes() {
        let everything: Vec<String> = STRICT_ALLOW.iter().chain(CONTAINER_DENY).map(|s| s.to_string()).collect();
        for (name, _) in PROFILES {
            for allow in [&[][..], &everything[..]] {
                let f = filters(name, allow, &[]).unwrap();
                let setid = f.iter().find(|f| f.name == "setid").unwrap_or_else(|| panic!("{name}: no setid filter"));
                assert_eq!(setid.on_match, Action::Errno(EPERM));
                for call in
                    ["chmod", "fchmod", "fchmodat", "fchmodat2", "creat", "mkdirat", "mknodat", "open", "openat"]
                {
                    let modes: Vec<u64> =
                        setid.rules.iter().filter(|r| r.syscall == call).map(|r| r.args.last().unwrap().val).collect();
                    assert!(modes.contains(&S_ISUID) && modes.contains(&S_ISGID), "{name}: {call} {modes:?}");
                }
                for call in ["io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd"] {
                    assert!(setid.rules.iter().any(|r| r.syscall == call && r.args.is_empty()), "{name}: {call}");
                }
                // openat/open only when creating: the flags condition comes first.
                assert!(setid.rules.iter().filter(|r| r.syscall == "openat").all(|r| r.args.len() == 2
                    && r.args[0].index == 2
                    && [O_CREAT, O_TMPFILE].contains(&r.args[0].val)));
                let openat2 = f.last().unwrap();
                assert_eq!((openat2.name, openat2.on_match), ("openat2", Action::Errno(ENOSYS)), "{name}");
            }
        }
    }

    #[test]
    fn every_profile_refuses_io_uring_and_terminal_takeover() {
        for (name, _) in PROFILES {
            let f = filters(name, &[], &[]).unwrap();
            let deny = denied(&f);
            // strict refuses by omission from its allow-list.
            let allowed: BTreeSet<&str> =
                f.iter().filter(|f| f.on_match == Action::Allow).flat_map(|f| f.syscalls()).collect();
            for call in IO_URING {
                assert!(deny.contains(*call) || (*name == "strict" && !allowed.contains(call)), "{name}: {call}");
            }
            for request in [TIOCSTI, TIOCLINUX, TIOCSETD] {
                assert!(
                    f.iter().any(|f| f.on_match != Action::Allow
                        && f.rules.iter().any(|r| r.syscall == "ioctl" && r.args[0].val == request)),
                    "{name}: ioctl {request:#x}"
                );
            }
        }
    }

    #[test]
    fn raw_sockets_are_refused_but_netlink_is_spoken_raw() {
        for name in ["default", "network"] {
            let f = filters(name, &[], &[]).unwrap();
            let deny = f.iter().find(|f| f.name == "deny").unwrap();
            let raw: Vec<&Rule> = deny
                .rules
                .iter()
                .filter(|r| r.syscall == "socket" && r.args.iter().any(|c| c.index == 1 && c.val == SOCK_RAW))
                .collect();
            assert_eq!(raw.len(), 1, "{name}");
            assert!(raw[0].args.iter().any(|c| c.index == 0 && c.val == AF_NETLINK && c.op == json!("ne")));
        }
    }

    #[test]
    fn port_rules_close_what_they_cannot_see() {
        let f = port_rules_filter();
        assert_eq!((f.on_match, f.otherwise), (Action::Errno(EPERM), Action::Allow));
        let socket_rules = f.rules.iter().filter(|r| r.syscall == "socket").count();
        assert_eq!(socket_rules, 2 * 7 + 1);
        for call in ["sendto", "sendmsg", "sendmmsg"] {
            assert!(f.rules.iter().any(|r| r.syscall == call && r.args[0].val == MSG_FASTOPEN), "{call}");
        }
    }

    #[test]
    fn allow_lifts_and_deny_adds() {
        let f = filters("default", &["ptrace".into(), "io_uring_setup".into()], &["uname".into()]).unwrap();
        let d = denied(&f);
        assert!(!d.contains("ptrace"));
        assert!(d.contains("uname"));
        // The setid filter is not lifted (the planner refuses such a list anyway).
        assert!(d.contains("io_uring_setup"));
        let f = filters("strict", &["mount".into()], &["getpid".into()]).unwrap();
        let allow = f.iter().find(|f| f.name == "allow").unwrap().syscalls();
        assert!(allow.contains("mount") && !allow.contains("getpid"));
    }

    #[test]
    fn profiles_are_ordered_by_permission() {
        let base = denied(&filters("default", &[], &[]).unwrap());
        let permissive = denied(&filters("permissive", &[], &[]).unwrap());
        assert!(permissive.is_subset(&base));
        let compute = filters("compute", &[], &[]).unwrap();
        assert!(compute
            .iter()
            .any(|f| f.rules.iter().any(|r| r.syscall == "socket" && r.args.len() == 1 && r.args[0].val == AF_UNIX)));
    }

    #[test]
    fn strict_list_has_no_duplicates_or_dangerous_calls() {
        let mut seen = BTreeSet::new();
        for n in STRICT_ALLOW {
            assert!(seen.insert(*n), "duplicate {n}");
            assert!(!CONTAINER_DENY.contains(n) && !HOST_HARM.contains(n), "{n} is dangerous");
        }
    }

    #[test]
    fn json_skips_calls_other_arches_lack() {
        let f = filters("strict", &[], &[]).unwrap();
        let j = to_seccompiler_json(&f, "aarch64");
        let text = j.to_string();
        assert!(!text.contains("\"open\""));
        assert!(text.contains("\"openat\""));
    }
}

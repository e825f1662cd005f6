//! What this host supports, found by asking the kernel rather than guessing from versions.
//!
//! Runs in: the helper (the user-namespace test clones, which only a single-threaded
//! process may do safely). Cheap enough to run once per helper.

use crate::sys;
use corral_core::host::{CgroupCapabilities, HostCapabilities};
use std::fs;
use std::path::{Path, PathBuf};

/// The sysctl that makes memory files non-executable for one pid namespace.
pub const MEMFD_NOEXEC: &str = "/proc/sys/vm/memfd_noexec";

pub fn host_capabilities() -> HostCapabilities {
    let uts = nix::sys::utsname::uname().ok();
    let (userns_ok, userns_detail) = user_namespaces();
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    HostCapabilities {
        os: "linux".into(),
        arch: std::env::consts::ARCH.into(),
        kernel: uts.map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
        uid: nix::unistd::geteuid().as_raw(),
        landlock_abi: landlock_abi(),
        user_namespaces: userns_ok,
        user_namespaces_detail: userns_detail,
        // SAFETY: PR_GET_SECCOMP only reads our own state.
        seccomp: unsafe { libc::prctl(libc::PR_GET_SECCOMP) } >= 0 && actions.contains("errno"),
        // The socket gate takes the caller's socket with pidfd_getfd (Linux 5.6).
        seccomp_user_notif: actions.contains("user_notif") && syscall_exists(libc::SYS_pidfd_getfd),
        mount_api: syscall_exists(libc::SYS_mount_setattr),
        overlay_in_userns: fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("overlay"),
        pidfd: sys::pidfd_open(std::process::id() as i32).is_ok(),
        // Only host root may write the sysctl (its file belongs to root; uid 0 of a user
        // namespace the caller made is someone else), and the value set inside a new pid
        // namespace holds for that namespace alone (Linux 6.3+).
        memfd_noexec: is_host_root() && Path::new(MEMFD_NOEXEC).exists(),
        identity: super::identity::probe(),
        cgroup: cgroups(),
        open_files_limit: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(_, hard)| hard)
            .filter(|h| *h != libc::RLIM_INFINITY),
    }
}

/// Whether our effective uid is the host's uid 0 (not merely 0 in a user namespace).
fn is_host_root() -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.lines().any(|l| {
        let v: Vec<u64> = l.split_whitespace().filter_map(|n| n.parse().ok()).collect();
        matches!(v[..], [inside, outside, count] if (inside..inside + count).contains(&u64::from(euid)) && outside + (u64::from(euid) - inside) == 0)
    })
}

/// Highest Landlock ABI, 0 if Landlock is missing or disabled at boot.
pub fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: the version query takes no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        0
    } else {
        rc as u32
    }
}

/// A call with invalid arguments fails with ENOSYS only if the kernel lacks it.
fn syscall_exists(nr: libc::c_long) -> bool {
    // SAFETY: every argument is invalid on purpose; nothing is dereferenced.
    let rc = unsafe { libc::syscall(nr, -1, 0usize, 0usize, 0usize, 0usize) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// The namespaces a sandbox uses, and the sysctl that limits how many of each may exist.
const NAMESPACES: [(libc::c_int, &str); 7] = [
    (libc::CLONE_NEWUSER, "user.max_user_namespaces"),
    (libc::CLONE_NEWNS, "user.max_mnt_namespaces"),
    (libc::CLONE_NEWPID, "user.max_pid_namespaces"),
    (libc::CLONE_NEWNET, "user.max_net_namespaces"),
    (libc::CLONE_NEWIPC, "user.max_ipc_namespaces"),
    (libc::CLONE_NEWUTS, "user.max_uts_namespaces"),
    (libc::CLONE_NEWCGROUP, "user.max_cgroup_namespaces"),
];

/// Tries to create the namespaces a sandbox uses; on failure, says which knob refuses.
fn user_namespaces() -> (bool, Option<String>) {
    let flags = NAMESPACES.iter().fold(0, |f, (flag, _)| f | *flag as u64);
    match try_namespaces(flags) {
        Ok(()) => (true, None),
        Err(e) => (false, Some(userns_refusal(&e))),
    }
}

/// Creates a child in new namespaces `flags`, which exits at once.
fn try_namespaces(flags: u64) -> std::io::Result<()> {
    // SAFETY: the helper is single-threaded; the child only calls _exit.
    match unsafe { sys::clone3_fork(flags, None) } {
        Ok(sys::Forked::Child) => sys::exit_now(0),
        Ok(sys::Forked::Parent { pid, .. }) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn userns_refusal(e: &std::io::Error) -> String {
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let sysctl = |name: &str| read(&format!("/proc/sys/{}", name.replace('.', "/")));
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return format!("user namespaces are disabled by sysctl kernel.unprivileged_userns_clone=0 ({e})");
    }
    for (_, name) in NAMESPACES {
        if sysctl(name).as_deref() == Some("0") {
            return format!("namespaces are disabled by sysctl {name}=0 ({e})");
        }
    }
    if e.raw_os_error() == Some(libc::ENOSPC) {
        // A limit on the number of namespaces is reached: find which, one kind at a time
        // (each inside a new user namespace, as a sandbox makes them).
        let user = libc::CLONE_NEWUSER as u64;
        let culprit = NAMESPACES.iter().find(|(flag, _)| {
            let flags = user | *flag as u64;
            try_namespaces(flags).is_err_and(|e| e.raw_os_error() == Some(libc::ENOSPC))
        });
        if let Some((_, name)) = culprit {
            let value = sysctl(name).unwrap_or_else(|| "?".into());
            return format!(
                "the limit on namespaces is reached: sysctl {name}={value} (ENOSPC; other programs hold that many, \
                 or the limit is set too low: raise it)"
            );
        }
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return format!(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1) ({e})"
        );
    }
    format!("creating a user namespace failed: {e} (inside a container, the runtime's seccomp profile may refuse it)")
}

fn is_cgroup2(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC).unwrap_or(false)
}

/// The cgroup layout: v2, v1, hybrid (v1 controllers plus a v2 tree at `unified`) or none.
fn cgroups() -> CgroupCapabilities {
    let root = Path::new("/sys/fs/cgroup");
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if is_cgroup2(root) {
        let rel = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim_start_matches('/');
        let dir = root.join(rel);
        let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        return CgroupCapabilities {
            version: "v2".into(),
            unified_mount: Some(root.display().to_string()),
            controllers: controllers.split_whitespace().map(String::from).collect(),
            writable: nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok(),
            detail: Some(format!("own cgroup {}", dir.display())),
        };
    }
    let v1: Vec<String> = ["memory", "cpu", "pids", "freezer"]
        .iter()
        .filter(|c| root.join(c).join("tasks").exists())
        .map(|c| c.to_string())
        .collect();
    if v1.is_empty() {
        return CgroupCapabilities { version: "none".into(), ..Default::default() };
    }
    let unified = root.join("unified");
    let writable = v1.iter().all(|c| {
        let rel = own
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                ctrls.split(',').any(|x| x == c).then(|| path.trim_start_matches('/').to_string())
            })
            .unwrap_or_default();
        let dir: PathBuf = root.join(c).join(rel);
        nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok()
    });
    CgroupCapabilities {
        version: if is_cgroup2(&unified) { "hybrid".into() } else { "v1".into() },
        unified_mount: is_cgroup2(&unified).then(|| unified.display().to_string()),
        controllers: v1,
        writable,
        detail: None,
    }
}

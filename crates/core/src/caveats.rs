//! Every caveat code corral reports, what it means and what to do about it. Runs in:
//! anywhere (pure data). `schema/caveats.json` is generated from this list (a test keeps
//! it current), and the TypeScript `CaveatCode` type and docs/errors.md are held to it; a
//! test here finds every code the sources report and fails on one missing from the list.

use serde::Serialize;

/// One caveat code.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CaveatInfo {
    pub code: &'static str,
    /// `linux`, `macos` or `any`.
    pub platform: &'static str,
    /// What does not hold.
    pub meaning: &'static str,
    /// What to do about it.
    pub fix: &'static str,
}

const fn c(code: &'static str, platform: &'static str, meaning: &'static str, fix: &'static str) -> CaveatInfo {
    CaveatInfo { code, platform, meaning, fix }
}

pub const CAVEATS: &[CaveatInfo] = &[
    c("HOST_NETWORK", "any", "The sandbox shares the host's network (network 'host', or an allow-list in mode 'host'): it can reach anything the host can.", "Use network 'none', 'loopback' or an allow-list through the proxy."),
    c("LANDLOCK_UNAVAILABLE", "linux", "Landlock is missing or disabled: file access is limited by the mount view alone, exec control by noexec mounts.", "Use Linux 5.13+ with Landlock enabled (lsm= on the kernel command line includes landlock)."),
    c("LANDLOCK_NO_REFER", "linux", "Landlock ABI < 2: renames and links across directories are refused outright.", "Use Linux 5.19 or newer."),
    c("LANDLOCK_NO_TRUNCATE", "linux", "Landlock ABI < 3: truncate() of readable files is not restricted (read-only mounts still hold).", "Use Linux 6.2 or newer."),
    c("LANDLOCK_NO_NET", "linux", "Landlock ABI < 4: network.bindPorts / connectPorts cannot be enforced.", "Use Linux 6.7 or newer, or leave the port lists out."),
    c("LANDLOCK_NO_IOCTL", "linux", "Landlock ABI < 5: ioctl on device files is not restricted.", "Use Linux 6.10 or newer."),
    c("LANDLOCK_NO_SCOPE", "linux", "Landlock ABI < 6: with the host network, the host's abstract Unix sockets are reachable.", "Use Linux 6.12 or newer, or a network other than 'host'."),
    c("SECCOMP_UNAVAILABLE", "linux", "seccomp filters cannot be installed: system calls are not filtered.", "Use a kernel built with CONFIG_SECCOMP_FILTER, outside a container that forbids it."),
    c("MEMORY_PER_PROCESS", "linux", "No cgroup memory controller for corral: limits.memory caps each process's address space (RLIMIT_AS), not the tree's memory.", "Run as root, or delegate a cgroup v2 subtree with the memory controller (CORRAL_CGROUP names it)."),
    c("PIDS_BY_RLIMIT", "linux", "No cgroup pids controller for corral: limits.pids falls back to RLIMIT_NPROC, checked only when a process is created, and before Linux 5.14 counting all of the user's processes on the host rather than the sandbox's.", "Delegate a cgroup v2 subtree with the pids controller (CORRAL_CGROUP names it), or run as root."),
    c("PIDS_UNENFORCED_FOR_ROOT", "linux", "No cgroup pids controller, and RLIMIT_NPROC does not apply to root: limits.pids is not enforced.", "Make the pids controller available (cgroup v2 delegation or v1 pids)."),
    c("CPU_SHARE_UNENFORCED", "linux", "No cgroup CPU controller for corral: limits.cpus is not enforced.", "Run as root, or delegate a cgroup v2 subtree with the cpu controller."),
    c("DISK_LIMIT_UNENFORCED", "any", "limits.disk caps the sandbox's own /tmp, /dev/shm and overlay layers; writes to the host's /tmp (granted here), or anywhere on macOS, are not counted.", "Leave /tmp ungranted, or leave limits.disk out."),
    c("CAPTURE_FILE_READONLY", "linux", "A single file under fs.write cannot capture writes in the ephemeral or overlay write modes, so it is read-only.", "Grant its directory instead."),
    c("OVERLAY_SUBMOUNTS", "linux", "A tree with mount points inside cannot be an overlay's lower layer in a user namespace, so in the ephemeral and overlay write modes it is read-only.", "Grant the directories beside the mount points instead, or use writeMode 'direct' for that tree."),
    c("RULE_UNMATCHED", "any", "A deny, protect or noexec path is not visible anywhere in the sandbox: the rule applies to nothing.", "Check the path (rules take host paths), or drop the rule."),
    c("NOT_RESERVED", "linux", "A denied or protected path does not exist and you cannot create the placeholder that reserves it: if someone else creates it while a sandbox exists, it is not hidden or read-only there.", "Create the path beforehand (empty), or deny or protect its directory."),
    c("DENIED_FILE_HAS_LINKS", "any", "A denied file has more hard links: its other names show its content unless they are denied too.", "Deny the other names as well, or remove the extra links."),
    c("PROTECTED_FILE_HAS_LINKS", "linux", "A protected file has more hard links: its other names in writable places can still change it.", "Protect the other names as well, or remove the extra links."),
    c("DENIED_DIR_HAS_LINKS", "any", "Files inside a denied directory have other names (hard links) outside it: their content shows there unless those are denied too. The caveat names the first few and the count.", "Deny the other names as well, or remove the extra links (find DIR -type f -links +1 lists candidates)."),
    c("PROTECTED_DIR_HAS_LINKS", "linux", "Files inside a protected directory have other names (hard links) outside it: in writable places those can still change them. The caveat names the first few and the count.", "Protect the other names as well, or remove the extra links (find DIR -type f -links +1 lists candidates)."),
    c("LINKS_UNCHECKED", "any", "A denied or protected directory is larger or deeper than corral checks for hard links when it plans a run (5000 entries, 32 levels), or could not be read in full: files past that may have other names outside it.", "Deny or protect the smaller directories inside it that matter, or check it yourself (find DIR -type f -links +1)."),
    c("MEMFD_EXEC", "linux", "With fs.execWritable false, memory files (memfd_create) can still be executed: vm.memfd_noexec needs Linux 6.3+ and a root caller to be set for one sandbox.", "Run as root on Linux 6.3 or newer, or accept that a program written to memory can run."),
    c("UNIX_SOCKETS_UNGATED", "linux", "No socket gate (seccomp user notification with pidfd_getfd, Linux 5.6+): pathname Unix sockets the sandbox can see are connectable, including ones created after it started.", "Use Linux 5.6 or newer with seccomp, or keep host programs' sockets out of granted trees."),
    c("LISTEN_UNCHECKED", "linux", "Without the socket gate, listen() on an unbound TCP socket binds an ephemeral port that network.bindPorts does not cover.", "Use Linux 5.6 or newer with seccomp."),
    c("UNIX_SOCKETS_IN_WRITABLE_PATHS", "macos", "Unix sockets inside writable paths are connectable, including ones a host program creates there later (Seatbelt filters connections by path only).", "Keep host programs' sockets out of writable paths."),
    c("ROOT_IDENTITY", "linux", "No unused unprivileged host ids for a root caller's sandbox: its root is the host's root, so it can read root-only files in every tree it sees (set-id files stay refused).", "Give root a range in /etc/subuid and /etc/subgid, free uid and gid 2080374784, or run corral as a non-root user."),
    c("IDMAP_UNSUPPORTED", "linux", "A root caller's grant is on a file system that cannot be idmapped here: the sandbox meets it as its unprivileged host ids, so the caller's files there are not its own (root-only ones are unreadable) and files it creates there are owned by those ids.", "Grant paths on ext4, xfs, btrfs, f2fs, vfat or tmpfs (Linux 6.3+), or run corral as a non-root user."),
    c("SETID_UNGUARDED", "linux", "A root caller's writable grant holds host root's files as the sandbox's own, and this host cannot refuse it the set-user-ID, set-group-ID or file-capability files there: one rewritten through a shared writable mapping keeps its bits (write(2) would clear them).", "Run corral as host root outside a container that withholds fanotify (CONFIG_FANOTIFY_ACCESS_PERMISSIONS), use writeMode 'overlay' or 'ephemeral', or keep set-id files out of writable grants."),
    c("NO_MOUNT_VIEW", "macos", "No mount namespace: paths outside the policy are denied rather than absent; their names and metadata stay visible.", "None on macOS; run on Linux for a private view."),
    c("NO_BIND_REMAP", "macos", "Paths cannot be remapped: a volume is visible at its host path, not at its target.", "Use the host path inside, or run on Linux."),
    c("TMP_RELOCATED", "macos", "No private tmpfs: the sandbox's temporary directory is a private host directory (TMPDIR points there); /tmp stays denied.", "Use TMPDIR in the command."),
    c("NO_PRIVATE_TMP", "macos", "No private tmpfs and no private directory was given: /tmp is not available.", "Give a private directory for temporary files."),
    c("NO_PRIVATE_DEVPTS", "macos", "No private devpts: the sandbox cannot create pseudo-terminals.", "None on macOS."),
    c("NO_PRIVATE_LOOPBACK", "macos", "No network namespace: the sandbox has no loopback of its own, so TCP and UDP on localhost are refused.", "None on macOS."),
    c("NO_PID_NAMESPACE", "macos", "No pid namespace: the sandbox sees host process ids and basic details of other processes, though it signals only its own.", "None on macOS."),
    c("NO_IPC_NAMESPACE", "macos", "No IPC namespace: System V and POSIX shared memory and semaphores are denied rather than private.", "None on macOS."),
    c("NO_UTS_NAMESPACE", "macos", "The sandbox cannot have its own hostname: it sees the host's.", "Leave hostname out on macOS."),
    c("NO_SECCOMP", "macos", "No seccomp: system calls are limited by the Seatbelt profile alone; seccomp.allow and seccomp.deny are ignored.", "None on macOS."),
    c("NO_RLIMIT_NPROC_ISOLATION", "macos", "limits.pids uses RLIMIT_NPROC, which counts all of the user's processes, not only the sandbox's.", "Run the sandbox as a user of its own."),
    c("NO_MEMORY_LIMIT", "macos", "RLIMIT_AS is not enforced (macOS 12+ refuses to set it): limits.memory is not applied.", "None on macOS."),
];

/// The information for `code`, if it is one.
pub fn info(code: &str) -> Option<&'static CaveatInfo> {
    CAVEATS.iter().find(|c| c.code == code)
}

/// Where the list is published for tools and the TypeScript package.
pub const CAVEATS_PATH: &str = "schema/caveats.json";

/// The list as committed: pretty JSON with a trailing newline.
pub fn caveats_text() -> String {
    let mut text = serde_json::to_string_pretty(CAVEATS).expect("the list is JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("caveats.rs") {
                out.push(p);
            }
        }
    }

    /// The codes the crates report (the first argument of every `caveat(` call), and the
    /// text of every source file.
    fn reported() -> (BTreeSet<String>, String) {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in std::fs::read_dir(&crates).unwrap().flatten() {
            let src = krate.path().join("src");
            if src.is_dir() {
                sources(&src, &mut files);
            }
        }
        let mut codes = BTreeSet::new();
        let mut all = String::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            all.push_str(&text);
            for (i, _) in text.match_indices("caveat(") {
                let rest = text[i + "caveat(".len()..].trim_start();
                if let Some(code) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    if code.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !code.is_empty() {
                        codes.insert(code.to_string());
                    }
                }
            }
        }
        (codes, all)
    }

    #[test]
    fn every_reported_code_is_listed_and_every_listed_code_reported() {
        let listed: BTreeSet<String> = CAVEATS.iter().map(|c| c.code.to_string()).collect();
        let (reported, text) = reported();
        assert!(reported.len() > 10, "the scan found too few codes: {reported:?}");
        let missing: Vec<_> = reported.difference(&listed).collect();
        assert!(missing.is_empty(), "caveat codes reported but not in caveats::CAVEATS: {missing:?}");
        // Some codes come from tables rather than a literal first argument.
        let stale: Vec<_> = listed.iter().filter(|c| !text.contains(&format!("\"{c}\""))).collect();
        assert!(stale.is_empty(), "caveat codes listed but never reported: {stale:?}");
        assert_eq!(listed.len(), CAVEATS.len(), "a code is listed twice");
    }

    /// `CORRAL_UPDATE_SCHEMA=1 cargo test -p corral-core` rewrites the file after a change.
    #[test]
    fn committed_list_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(CAVEATS_PATH);
        if std::env::var_os("CORRAL_UPDATE_SCHEMA").is_some_and(|v| v == "1") {
            std::fs::write(&path, caveats_text()).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == caveats_text(),
            "{} is out of date: run CORRAL_UPDATE_SCHEMA=1 cargo test -p corral-core",
            path.display()
        );
    }
}

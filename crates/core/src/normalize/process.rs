//! Everything about the process rather than the file system: network mode, working
//! directory, environment, hostname, limits, seccomp, and the Landlock gaps of this kernel.
//!
//! Runs in: the client, when planning.

use super::{caveat, Caveat};
use crate::allowlist::AllowList;
use crate::error::{CorralError, Result};
use crate::host::HostCapabilities;
use crate::policy::{NetworkMode, NetworkPolicy, Policy};
use crate::seccomp;
use crate::spec::{CgroupLimits, NetworkAccess, Rlimits, SeccompSpec};
use std::collections::BTreeMap;

pub const DEFAULT_HOSTNAME: &str = "corral";
/// Processes and threads a sandbox may have when `limits.pids` is not set.
pub const DEFAULT_PIDS: u64 = 2048;

/// Loopback ports inside the sandbox where the bridge answers for the proxy.
pub const PROXY_HTTP_PORT: u16 = 3128;
pub const PROXY_SOCKS_PORT: u16 = 1080;

/// How the sandbox reaches the network.
pub(super) struct Network {
    pub spec: NetworkAccess,
    /// The allow-list the host-side proxy enforces (proxied networks).
    pub rules: Option<AllowList>,
    pub bind_ports: Option<Vec<u16>>,
    pub connect_ports: Option<Vec<u16>>,
}

pub(super) fn network(policy: &Policy, host: &HostCapabilities, caveats: &mut Vec<Caveat>) -> Result<Network> {
    let host_caveat = |caveats: &mut Vec<Caveat>| {
        caveats.push(caveat(
            "HOST_NETWORK",
            "network: 'host' shares the host's network: the sandbox can reach anything the host can",
            Some("network"),
        ))
    };
    let plain = |spec| Network { spec, rules: None, bind_ports: None, connect_ports: None };
    let r = match &policy.network {
        None | Some(NetworkPolicy::None) | Some(NetworkPolicy::Loopback) => return Ok(plain(NetworkAccess::Isolated)),
        Some(NetworkPolicy::Host) => {
            host_caveat(caveats);
            return Ok(plain(NetworkAccess::Host));
        }
        Some(NetworkPolicy::Rules(r)) => r,
    };
    for (field, ports) in [("network.bindPorts", &r.bind_ports), ("network.connectPorts", &r.connect_ports)] {
        if let Some(i) = ports.iter().flatten().position(|p| *p == 0) {
            return Err(CorralError::policy(format!("{field}[{i}]"), "ports are 1 to 65535"));
        }
        if ports.is_some() && host.landlock_abi < 4 {
            caveats.push(caveat("LANDLOCK_NO_NET", "Landlock ABI < 4: TCP port rules cannot be enforced", Some(field)));
        }
    }
    let (spec, rules) = match r.mode.unwrap_or(NetworkMode::Proxy) {
        NetworkMode::Host => {
            for (field, used) in [
                ("network.allow", !r.allow.is_empty()),
                ("network.deny", !r.deny.is_empty()),
                ("network.hosts", !r.hosts.is_empty()),
            ] {
                if used {
                    return Err(CorralError::policy(
                        field,
                        "needs mode 'proxy': the host network cannot filter by name",
                    ));
                }
            }
            host_caveat(caveats);
            (NetworkAccess::Host, None)
        }
        NetworkMode::Proxy => (
            NetworkAccess::Proxied { http_port: PROXY_HTTP_PORT, socks_port: PROXY_SOCKS_PORT },
            Some(AllowList::parse(&r.allow, &r.deny, &r.hosts)?),
        ),
    };
    Ok(Network { spec, rules, bind_ports: r.bind_ports.clone(), connect_ports: r.connect_ports.clone() })
}

/// Proxy settings for the command, in the spellings common tools read.
///
/// Loopback normally stays direct (`NO_PROXY`): it is the sandbox's own, where the command's
/// test servers listen. When an allow rule names the host's loopback (`127.0.0.1:8080`),
/// loopback requests go to the proxy instead, which connects the allowed ones to the host
/// and refuses (and records) the rest; the command's own loopback servers are then
/// reachable only by clients that ignore the proxy settings.
pub(super) fn proxy_env(env: &mut BTreeMap<String, String>, rules: &AllowList) {
    let http = format!("http://127.0.0.1:{PROXY_HTTP_PORT}");
    let socks = format!("socks5h://127.0.0.1:{PROXY_SOCKS_PORT}");
    for (k, v) in [("HTTP_PROXY", &http), ("HTTPS_PROXY", &http), ("ALL_PROXY", &socks)] {
        env.entry(k.to_string()).or_insert_with(|| v.clone());
        env.entry(k.to_lowercase()).or_insert_with(|| v.clone());
    }
    if rules.names_loopback() {
        return;
    }
    for k in ["NO_PROXY", "no_proxy"] {
        env.entry(k.to_string()).or_insert_with(|| "localhost,127.0.0.1,::1".to_string());
    }
}

pub(super) fn hostname(policy: &Policy) -> Result<String> {
    let Some(h) = &policy.hostname else { return Ok(DEFAULT_HOSTNAME.to_string()) };
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !h.starts_with('-');
    if !ok {
        return Err(CorralError::policy(
            "hostname",
            format!("{h:?} is not a valid hostname (letters, digits, '-' and '.', at most 64)"),
        ));
    }
    Ok(h.to_string())
}

pub(super) fn landlock_caveats(abi: u32, network: NetworkAccess, caveats: &mut Vec<Caveat>) {
    if abi == 0 {
        caveats.push(caveat(
            "LANDLOCK_UNAVAILABLE",
            "Landlock is unavailable: file access is limited by the mount view alone (exec control by noexec mounts)",
            Some("fs"),
        ));
        return;
    }
    let gaps = [
        (2, "LANDLOCK_NO_REFER", "Landlock ABI < 2: renames and links across directories are refused outright"),
        (
            3,
            "LANDLOCK_NO_TRUNCATE",
            "Landlock ABI < 3: truncate() of readable files is not restricted (read-only mounts still hold)",
        ),
        (5, "LANDLOCK_NO_IOCTL", "Landlock ABI < 5: ioctl on device files is not restricted"),
    ];
    for (min, code, message) in gaps {
        if abi < min {
            caveats.push(caveat(code, message, Some("fs")));
        }
    }
    if abi < 6 && network == NetworkAccess::Host {
        caveats.push(caveat(
            "LANDLOCK_NO_SCOPE",
            "Landlock ABI < 6: with the host network, the host's abstract Unix sockets are reachable",
            Some("network"),
        ));
    }
}

/// How the limits are enforced: a cgroup for the whole tree where this host lets us have
/// one, per-process rlimits otherwise (each gap a caveat).
/// Fewest processes a sandbox can run with: its init and the command.
pub const MIN_PIDS: u64 = 2;
/// Most processes a limit can name: the kernel's PID_MAX_LIMIT (2^22).
pub const MAX_PIDS: u64 = 1 << 22;
/// Fewest open files the command can start with (its setup, and a shell saving fds 10+).
pub const MIN_OPEN_FILES: u64 = 16;

pub(super) struct Limits {
    pub rlimits: Rlimits,
    pub cgroup: Option<CgroupLimits>,
    pub max_output_bytes: Option<u64>,
}

pub(super) fn limits(policy: &Policy, host: &HostCapabilities, caveats: &mut Vec<Caveat>) -> Result<Limits> {
    let default = crate::policy::Limits::default();
    let l = policy.limits.as_ref().unwrap_or(&default);
    let positive = |field: &str, v: Option<u64>| -> Result<Option<u64>> {
        match v {
            Some(0) => Err(CorralError::policy(field, "must be greater than 0")),
            v => Ok(v),
        }
    };
    let memory = positive("limits.memory", l.memory.map(|s| s.0))?;
    if memory.is_some_and(|m| m < (1 << 20)) {
        return Err(CorralError::policy("limits.memory", "must be at least 1M"));
    }
    let pids = l.pids;
    if let Some(p) = pids {
        // The sandbox's pid 1 and the command are two processes before the command forks.
        if !(MIN_PIDS..=MAX_PIDS).contains(&p) {
            return Err(CorralError::policy(
                "limits.pids",
                format!("must be from {MIN_PIDS} (the sandbox's init and the command) to {MAX_PIDS} (the kernel's most pids)"),
            ));
        }
    }
    if let Some(c) = l.cpus {
        if !(c.is_finite() && c > 0.0 && c <= 4096.0) {
            return Err(CorralError::policy("limits.cpus", "must be a number of CPUs greater than 0"));
        }
    }
    positive("limits.disk", l.disk.map(|s| s.0))?;
    let max_output_bytes = positive("limits.maxOutputBytes", l.max_output_bytes.map(|s| s.0))?;
    let open_files = l.open_files;
    if let Some(n) = open_files {
        // The command's last setup steps (Landlock, seccomp) and a shell's own descriptors
        // need some room before the command does anything.
        if n < MIN_OPEN_FILES {
            return Err(CorralError::policy(
                "limits.openFiles",
                format!("must be at least {MIN_OPEN_FILES}: the sandbox needs that many to start the command"),
            ));
        }
        // No one inside the sandbox may raise a hard limit past the host's.
        let most = host.open_files_limit.unwrap_or(1 << 20).min(1 << 20);
        if n > most {
            return Err(CorralError::policy(
                "limits.openFiles",
                format!("must be at most {most}, this host's hard limit for the process that creates sandboxes"),
            )
            .with_hint("raise the hard limit (ulimit -Hn, or LimitNOFILE for a service) before starting Node"));
        }
    }

    // Each tree-wide limit goes to the cgroup controller that enforces it, if we have it.
    let has = |c: &str| host.cgroup.writable && host.cgroup.controllers.iter().any(|x| x == c);
    let why = host.cgroup.detail.clone().unwrap_or_else(|| "cgroups are not writable here".into());
    let mut cgroup = CgroupLimits::default();
    let mut address_space = None;
    let mut processes = None;
    if let Some(m) = memory {
        if has("memory") {
            cgroup.memory = Some(m);
        } else {
            address_space = Some(m);
            caveats.push(caveat(
                "MEMORY_PER_PROCESS",
                &format!(
                    "limits.memory caps each process's address space (RLIMIT_AS), not the whole tree's memory: {why}"
                ),
                Some("limits.memory"),
            ));
        }
    }
    if let Some(p) = pids {
        if has("pids") {
            cgroup.pids = Some(p);
        } else {
            processes = Some(p);
            if host.uid == 0 {
                caveats.push(caveat(
                    "PIDS_UNENFORCED_FOR_ROOT",
                    &format!("limits.pids falls back to RLIMIT_NPROC, which the kernel does not apply to root: {why}"),
                    Some("limits.pids"),
                ));
            } else {
                // Since Linux 5.14 the kernel counts RLIMIT_NPROC per user namespace, so per
                // sandbox; before, across every process of the user on the host.
                let scope = if kernel_at_least(&host.kernel, (5, 14)) {
                    "counted per sandbox (its user namespace)"
                } else {
                    "counted across all of the user's processes on the host, before Linux 5.14"
                };
                caveats.push(caveat(
                    "PIDS_BY_RLIMIT",
                    &format!(
                        "limits.pids falls back to RLIMIT_NPROC, {scope}, checked only when a process is created: {why}"
                    ),
                    Some("limits.pids"),
                ));
            }
        }
    }
    if let Some(c) = l.cpus {
        if has("cpu") {
            cgroup.cpus = Some(c);
        } else {
            caveats.push(caveat(
                "CPU_SHARE_UNENFORCED",
                &format!("limits.cpus needs a cgroup CPU controller: {why}"),
                Some("limits.cpus"),
            ));
        }
    }
    // Without `limits.pids` a fork bomb still stops at DEFAULT_PIDS: RLIMIT_NPROC, which
    // the kernel counts per user namespace (Linux 5.14+), so per sandbox, at no cost to
    // start-up. The kernel never applies it to host root, so a root caller's sandbox gets a
    // pids cgroup for it where one can be made; so does one that has a cgroup anyway.
    if pids.is_none() {
        processes = Some(DEFAULT_PIDS);
        if (host.uid == 0 || cgroup != CgroupLimits::default()) && has("pids") {
            cgroup.pids = Some(DEFAULT_PIDS);
        }
    }
    let rlimits = Rlimits {
        address_space,
        processes,
        open_files,
        file_size: positive("limits.fileSize", l.file_size.map(|s| s.0))?,
        cpu_seconds: positive("limits.cpuTime", l.cpu_time.map(|d| d.0))?.map(|ms| ms.div_ceil(1000)),
    };
    let cgroup = (cgroup != CgroupLimits::default()).then_some(cgroup);
    Ok(Limits { rlimits, cgroup, max_output_bytes })
}

/// The seccomp profile, with what the network policy adds: the socket gate wherever the
/// host can run it, and, where TCP port rules are in force, no protocol they cannot see.
pub(super) fn seccomp_spec(
    policy: &Policy,
    host: &HostCapabilities,
    network: &Network,
    caveats: &mut Vec<Caveat>,
) -> Result<SeccompSpec> {
    let s = policy.seccomp.clone().unwrap_or_default();
    let profile = s.profile.unwrap_or_else(|| seccomp::DEFAULT_PROFILE.to_string());
    if !seccomp::is_profile(&profile) {
        let names: Vec<&str> = seccomp::PROFILES.iter().map(|(n, _)| *n).collect();
        return Err(CorralError::policy(
            "seccomp.profile",
            format!("unknown profile {profile:?} (one of: {})", names.join(", ")),
        ));
    }
    for (list, names) in [("allow", &s.allow), ("deny", &s.deny)] {
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(CorralError::policy(
                    format!("seccomp.{list}[{i}]"),
                    format!("{n:?} is not a system call name"),
                ));
            }
        }
    }
    // Allowing these would be silently overruled by the filters every profile has.
    for (i, n) in s.allow.iter().enumerate() {
        if let Some((_, why)) = seccomp::NEVER_ALLOWED.iter().find(|(name, _)| name == n) {
            return Err(CorralError::policy(format!("seccomp.allow[{i}]"), format!("{n} cannot be allowed: {why}")));
        }
    }
    if !host.seccomp {
        caveats.push(caveat(
            "SECCOMP_UNAVAILABLE",
            "seccomp filters cannot be installed on this host: system calls are not filtered",
            Some("seccomp"),
        ));
    }
    // Connecting to a pathname Unix socket is not a file access Landlock governs here, so
    // the gate is what keeps sockets out of reach that the policy did not list.
    let gate = host.seccomp && host.seccomp_user_notif;
    if !gate {
        caveats.push(caveat(
            "UNIX_SOCKETS_UNGATED",
            "this host lacks seccomp user notification with pidfd_getfd (Linux 5.6+): pathname Unix sockets visible in the sandbox (in granted directories, including ones created later) are connectable",
            Some("fs.allowUnixSockets"),
        ));
    }
    if !gate && network.bind_ports.is_some() {
        caveats.push(caveat(
            "LISTEN_UNCHECKED",
            "without the socket gate, listen() on an unbound TCP socket binds an ephemeral port that network.bindPorts does not cover",
            Some("network.bindPorts"),
        ));
    }
    let tcp_only = network.bind_ports.is_some() || network.connect_ports.is_some();
    Ok(SeccompSpec {
        profile,
        allow: s.allow,
        deny: s.deny,
        gate,
        tcp_only,
        gate_listen: gate && network.bind_ports.is_some(),
        // Set with the identity (see `super::build`).
        no_xattr_writes: false,
    })
}

/// Whether `kernel` (`uname -r`, e.g. `6.18.0-foo`) is at least `major.minor`; an
/// unreadable version counts as older.
fn kernel_at_least(kernel: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = kernel.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

//! The normaliser: the one authority that turns a raw [`Policy`] into a [`Plan`].
//!
//! Everything a user can get wrong is caught here and reported with the field that holds
//! it; everything the host cannot enforce becomes a [`Caveat`] (and, in strict mode, an
//! error). Backends execute the resulting [`SandboxSpec`] without further decisions.

use crate::env;
use crate::error::{CorralError, ErrorCode, Result};
use crate::host::{Context, FileKind, HostCapabilities, HostFs};
use crate::policy::{NetworkPolicy, Policy};
use crate::seccomp;
use crate::spec::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The compiled policy and what it means on this host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub spec: SandboxSpec,
    /// Every rule this host cannot fully enforce. Empty means everything holds.
    pub caveats: Vec<Caveat>,
    /// Cap on captured stdout+stderr bytes, enforced by the caller that collects output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    pub strict: bool,
}

/// A guarantee that does not hold on this host, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caveat {
    /// Stable identifier, e.g. `LANDLOCK_UNAVAILABLE`.
    pub code: String,
    pub message: String,
    /// The policy field the caveat is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Top-level system directories exposed read-only by default. On merged-/usr hosts most
/// are symlinks and are recreated as symlinks.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];
/// Secrets hidden inside the default-readable `/etc`.
const ETC_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/security/opasswd",
    "/etc/ssl/private",
    "/etc/krb5.keytab",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
];
/// Paths the sandbox gets fresh copies of; host paths there cannot be granted.
const SYNTHETIC: &[&str] = &["/proc", "/dev"];
pub const DEFAULT_HOSTNAME: &str = "corral";

/// A path the policy grants, merged across `read`, `write` and `exec`.
#[derive(Debug, Clone, Default)]
struct Grant {
    field: String,
    read: bool,
    write: bool,
    exec: bool,
    system: bool,
}

/// Compiles `policy` for `argv` (empty when only planning).
pub fn plan(policy: &Policy, argv: &[String], ctx: &Context, host: &HostCapabilities, fs: &dyn HostFs) -> Result<Plan> {
    let mut caveats = Vec::new();
    let strict = policy.strict.unwrap_or(false);
    check_argv(argv)?;
    check_host(host)?;

    let fsp = policy.fs.clone().unwrap_or_default();
    not_yet("fs.deny", !fsp.deny.is_empty())?;
    not_yet("fs.protect", !fsp.protect.is_empty())?;
    not_yet("fs.volumes", !fsp.volumes.is_empty())?;
    not_yet("fs.writeMode", fsp.write_mode.is_some_and(|m| m != crate::policy::WriteMode::Direct))?;
    not_yet("fs.allowUnixSockets", !fsp.allow_unix_sockets.is_empty())?;

    // 1. Which host paths are visible, and how.
    let mut grants: BTreeMap<PathBuf, Grant> = BTreeMap::new();
    let mut symlinks = Vec::new();
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match fs.kind(path) {
            Some(FileKind::Dir) => {
                let g = grants.entry(path.to_path_buf()).or_default();
                g.field = "defaults".into();
                g.read = true;
                g.exec = *dir != "/etc";
                g.system = true;
            }
            Some(FileKind::Symlink(target)) => symlinks.push((path.to_path_buf(), target)),
            _ => {}
        }
    }
    for (name, list, write, exec) in
        [("read", &fsp.read, false, false), ("write", &fsp.write, true, false), ("exec", &fsp.exec, false, true)]
    {
        for (i, raw) in list.iter().enumerate() {
            let field = format!("fs.{name}[{i}]");
            let path = resolve_existing(&field, raw, ctx, fs)?;
            if let Some(s) = SYNTHETIC.iter().find(|s| path.starts_with(s)) {
                return Err(CorralError::policy(
                    field,
                    format!("{s} is private to the sandbox and cannot be granted from the host"),
                ));
            }
            let g = grants.entry(path).or_default();
            if g.field.is_empty() || g.system {
                g.field = field;
            }
            g.read = true;
            g.write |= write;
            g.exec |= exec;
            g.system = false;
        }
    }

    // 2. The mount view, parents before children.
    let private_tmp = !grants.contains_key(Path::new("/tmp"));
    let tmp_size = policy.limits.as_ref().and_then(|l| l.disk).map(|s| s.0);
    let mut mounts: Vec<MountSpec> = Vec::new();
    for (path, g) in &grants {
        mounts.push(MountSpec::Bind { source: path.clone(), target: path.clone(), writable: g.write, exec: g.exec });
    }
    let root_bound = grants.contains_key(Path::new("/"));
    if !root_bound {
        for (link, target) in &symlinks {
            mounts.push(MountSpec::Symlink { link: link.clone(), target: target.clone() });
        }
    }
    mounts.push(MountSpec::Proc { target: "/proc".into() });
    mounts.push(MountSpec::Dev { target: "/dev".into() });
    if private_tmp {
        mounts.push(MountSpec::Tmpfs { target: "/tmp".into(), size: tmp_size, mode: 0o1777 });
    } else if tmp_size.is_some() {
        caveats.push(caveat(
            "DISK_LIMIT_UNENFORCED",
            "limits.disk caps the private /tmp, but /tmp is the host's here",
            Some("limits.disk"),
        ));
    }
    for secret in ETC_SECRETS {
        let p = Path::new(secret);
        if fs.kind(p).is_some() && visible(&grants, p) {
            mounts.push(MountSpec::Mask { target: p.to_path_buf() });
        }
    }
    // Stable sort by depth: a mount never lands under one made after it.
    mounts.sort_by_key(|m| depth(mount_target(m)));

    // 3. Landlock on top of the view (defence in depth), and what this kernel lacks.
    let mut rules: Vec<LandlockRule> = grants
        .iter()
        .map(|(p, g)| LandlockRule {
            path: p.clone(),
            access: FsAccess { read: true, write: g.write, exec: g.exec, ..Default::default() },
        })
        .collect();
    // Listing any directory of the view reveals only names the view already exposes
    // (mount points and symlinks); without it `ls /` and tools that walk up fail.
    rules.push(LandlockRule { path: "/".into(), access: FsAccess { list: true, ..Default::default() } });
    let rw = FsAccess { read: true, write: true, ..Default::default() };
    rules.push(LandlockRule { path: "/proc".into(), access: FsAccess { read: true, ..Default::default() } });
    for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm"] {
        rules.push(LandlockRule { path: dev.into(), access: rw });
    }
    for tty in ["/dev/tty", "/dev/pts", "/dev/ptmx"] {
        rules.push(LandlockRule { path: tty.into(), access: FsAccess { ioctl: true, ..rw } });
    }
    if private_tmp {
        rules.push(LandlockRule { path: "/tmp".into(), access: rw });
    }
    let network = match &policy.network {
        None | Some(NetworkPolicy::None) | Some(NetworkPolicy::Loopback) => NetworkSpec::Isolated,
        Some(NetworkPolicy::Host) => {
            caveats.push(caveat(
                "HOST_NETWORK",
                "network: 'host' shares the host's network: the sandbox can reach anything the host can",
                Some("network"),
            ));
            NetworkSpec::Host
        }
        Some(NetworkPolicy::Rules(_)) => {
            return Err(
                CorralError::unsupported("network allow-lists are not available in this version").with_field("network")
            )
        }
    };
    landlock_caveats(host.landlock_abi, network, &mut caveats);

    // 4. Process: cwd, identity, environment, limits.
    let cwd = match &policy.cwd {
        Some(raw) => {
            let p = resolve_existing("cwd", raw, ctx, fs)?;
            // The private /tmp starts empty, so only its root can be a working directory.
            let private_tmp_root = private_tmp && p == Path::new("/tmp");
            if !(visible(&grants, &p) || private_tmp_root) {
                return Err(CorralError::policy("cwd", format!("{} is not visible in the sandbox", p.display()))
                    .with_hint("grant it with fs.read or fs.write"));
            }
            p
        }
        None => fs.canonicalize(&ctx.cwd).ok().filter(|p| visible(&grants, p)).unwrap_or_else(|| PathBuf::from("/")),
    };
    let home = ctx
        .home
        .as_ref()
        .and_then(|h| fs.canonicalize(h).ok())
        .filter(|h| grants.iter().any(|(p, g)| g.write && h.starts_with(p)))
        .map(|h| h.display().to_string())
        .unwrap_or_else(|| "/tmp".to_string());
    let env = env::build(&ctx.env, policy.inherit_env.as_ref(), policy.env.as_ref(), &home)?;
    let hostname = match &policy.hostname {
        Some(h) => check_hostname(h)?,
        None => DEFAULT_HOSTNAME.to_string(),
    };
    let (rlimits, max_output_bytes) = limits(policy, host, &mut caveats)?;
    let seccomp = seccomp_spec(policy, host, &mut caveats)?;

    let spec = SandboxSpec {
        argv: argv.to_vec(),
        env,
        cwd,
        hostname,
        uid: ctx.uid,
        gid: ctx.gid,
        network,
        mounts,
        landlock: LandlockSpec {
            rules: {
                rules.sort_by(|a, b| a.path.cmp(&b.path));
                rules
            },
            abi: host.landlock_abi,
            scoped: host.landlock_abi >= 6,
        },
        seccomp,
        rlimits,
        timeout_ms: policy.timeout.map(|t| t.0).filter(|t| *t > 0),
    };
    if strict && !caveats.is_empty() {
        let list: Vec<String> = caveats.iter().map(|c| format!("{}: {}", c.code, c.message)).collect();
        return Err(CorralError::unsupported(format!("strict mode refuses to run with caveats: {}", list.join("; ")))
            .with_field(caveats[0].field.clone().unwrap_or_else(|| "strict".into())));
    }
    Ok(Plan { spec, caveats, max_output_bytes, strict })
}

fn caveat(code: &str, message: &str, field: Option<&str>) -> Caveat {
    Caveat { code: code.into(), message: message.into(), field: field.map(str::to_string) }
}

fn not_yet(field: &str, used: bool) -> Result<()> {
    if used {
        return Err(CorralError::unsupported(format!("{field} is not available in this version")).with_field(field));
    }
    Ok(())
}

fn check_argv(argv: &[String]) -> Result<()> {
    for (i, a) in argv.iter().enumerate() {
        if a.contains('\0') {
            return Err(CorralError::policy(format!("argv[{i}]"), "contains a NUL byte"));
        }
    }
    if argv.first().is_some_and(|a| a.is_empty()) {
        return Err(CorralError::policy("argv[0]", "the command is empty"));
    }
    Ok(())
}

fn check_host(host: &HostCapabilities) -> Result<()> {
    if host.os == "linux" && !host.user_namespaces {
        let why = host.user_namespaces_detail.clone().unwrap_or_else(|| "user namespaces are unavailable".into());
        return Err(CorralError::unsupported(format!("cannot create sandboxes: {why}"))
            .with_hint("enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0, or on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"));
    }
    Ok(())
}

fn landlock_caveats(abi: u32, network: NetworkSpec, caveats: &mut Vec<Caveat>) {
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
    if abi < 6 && network == NetworkSpec::Host {
        caveats.push(caveat(
            "LANDLOCK_NO_SCOPE",
            "Landlock ABI < 6: with the host network, the host's abstract Unix sockets are reachable",
            Some("network"),
        ));
    }
}

fn limits(policy: &Policy, host: &HostCapabilities, caveats: &mut Vec<Caveat>) -> Result<(Rlimits, Option<u64>)> {
    let Some(l) = &policy.limits else { return Ok((Rlimits::default(), None)) };
    let positive = |field: &str, v: Option<u64>| -> Result<Option<u64>> {
        match v {
            Some(0) => Err(CorralError::policy(field, "must be greater than 0")),
            v => Ok(v),
        }
    };
    let memory = positive("limits.memory", l.memory.map(|s| s.0))?;
    if let Some(m) = memory {
        if m < (1 << 20) {
            return Err(CorralError::policy("limits.memory", "must be at least 1M"));
        }
        caveats.push(caveat(
            "MEMORY_PER_PROCESS",
            "limits.memory caps each process's address space (RLIMIT_AS), not the whole tree's resident memory",
            Some("limits.memory"),
        ));
    }
    let processes = positive("limits.pids", l.pids)?;
    if processes.is_some() && host.uid == 0 {
        caveats.push(caveat(
            "PIDS_UNENFORCED_FOR_ROOT",
            "limits.pids uses RLIMIT_NPROC, which the kernel does not apply to root",
            Some("limits.pids"),
        ));
    }
    if let Some(c) = l.cpus {
        if !(c.is_finite() && c > 0.0 && c <= 4096.0) {
            return Err(CorralError::policy("limits.cpus", "must be a number of CPUs greater than 0"));
        }
        caveats.push(caveat(
            "CPU_SHARE_UNENFORCED",
            "limits.cpus needs a cgroup CPU controller, which this version does not use",
            Some("limits.cpus"),
        ));
    }
    positive("limits.disk", l.disk.map(|s| s.0))?;
    let max_output = positive("limits.maxOutputBytes", l.max_output_bytes.map(|s| s.0))?;
    let rl = Rlimits {
        address_space: memory,
        processes,
        open_files: positive("limits.openFiles", l.open_files)?,
        file_size: positive("limits.fileSize", l.file_size.map(|s| s.0))?,
        cpu_seconds: positive("limits.cpuTime", l.cpu_time.map(|d| d.0))?.map(|ms| ms.div_ceil(1000)),
    };
    if let Some(n) = rl.open_files {
        if n > 1 << 20 {
            return Err(CorralError::policy("limits.openFiles", "must be at most 1048576"));
        }
    }
    Ok((rl, max_output))
}

fn seccomp_spec(policy: &Policy, host: &HostCapabilities, caveats: &mut Vec<Caveat>) -> Result<SeccompSpec> {
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
    if !host.seccomp {
        caveats.push(caveat(
            "SECCOMP_UNAVAILABLE",
            "seccomp filters cannot be installed on this host: system calls are not filtered",
            Some("seccomp"),
        ));
    }
    Ok(SeccompSpec { profile, allow: s.allow, deny: s.deny })
}

fn check_hostname(h: &str) -> Result<String> {
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

/// Expands `~`, makes relative paths absolute against the caller's cwd, removes `.` and
/// `..` lexically, then resolves symlinks. The path must exist.
pub fn resolve_existing(field: &str, raw: &str, ctx: &Context, fs: &dyn HostFs) -> Result<PathBuf> {
    let abs = absolute(field, raw, ctx)?;
    fs.canonicalize(&abs).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound { "does not exist".to_string() } else { e.to_string() };
        CorralError::policy(field, format!("{}: {what}", abs.display()))
    })
}

/// `~` expansion and lexical absolutisation, without touching the file system.
pub fn absolute(field: &str, raw: &str, ctx: &Context) -> Result<PathBuf> {
    if raw.is_empty() {
        return Err(CorralError::policy(field, "path is empty"));
    }
    if raw.contains('\0') {
        return Err(CorralError::policy(field, "path contains a NUL byte"));
    }
    let expanded = if raw == "~" || raw.starts_with("~/") {
        let home = ctx
            .home
            .as_ref()
            .ok_or_else(|| CorralError::policy(field, "~ used but the caller has no home directory"))?;
        home.join(raw.trim_start_matches('~').trim_start_matches('/'))
    } else if raw.starts_with('~') {
        return Err(CorralError::policy(field, "only ~ and ~/… are supported, not ~user"));
    } else {
        ctx.cwd.join(raw)
    };
    let mut out = PathBuf::from("/");
    for c in expanded.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

fn depth(p: &Path) -> usize {
    p.components().filter(|c| matches!(c, Component::Normal(_))).count()
}

pub fn mount_target(m: &MountSpec) -> &Path {
    match m {
        MountSpec::Bind { target, .. }
        | MountSpec::Tmpfs { target, .. }
        | MountSpec::Proc { target }
        | MountSpec::Dev { target }
        | MountSpec::Mask { target } => target,
        MountSpec::Symlink { link, .. } => link,
    }
}

/// Whether `p` is inside a granted path.
fn visible(grants: &BTreeMap<PathBuf, Grant>, p: &Path) -> bool {
    grants.keys().any(|g| p.starts_with(g))
}

impl From<ErrorCode> for Caveat {
    fn from(code: ErrorCode) -> Self {
        Caveat { code: code.as_str().into(), message: String::new(), field: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FileKind;
    use std::collections::HashMap;
    use std::io;

    /// An in-memory host: merged-/usr Debian with a home directory.
    struct FakeFs(HashMap<PathBuf, FileKind>);

    impl FakeFs {
        fn debian() -> Self {
            let mut m = HashMap::new();
            for d in [
                "/",
                "/usr",
                "/usr/bin",
                "/usr/lib",
                "/etc",
                "/home",
                "/home/u",
                "/home/u/work",
                "/tmp",
                "/tmp/x",
                "/data",
            ] {
                m.insert(PathBuf::from(d), FileKind::Dir);
            }
            for (l, t) in [
                ("/bin", "usr/bin"),
                ("/lib", "usr/lib"),
                ("/sbin", "usr/sbin"),
                ("/lib64", "usr/lib64"),
                ("/home/u/link", "/data"),
            ] {
                m.insert(PathBuf::from(l), FileKind::Symlink(t.into()));
            }
            m.insert("/etc/shadow".into(), FileKind::File);
            FakeFs(m)
        }
    }

    impl HostFs for FakeFs {
        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            match self.0.get(path) {
                Some(FileKind::Symlink(t)) if t.is_absolute() => Ok(t.clone()),
                Some(FileKind::Symlink(t)) => Ok(Path::new("/").join(t)),
                Some(_) => Ok(path.to_path_buf()),
                None => Err(io::ErrorKind::NotFound.into()),
            }
        }
        fn kind(&self, path: &Path) -> Option<FileKind> {
            self.0.get(path).cloned()
        }
    }

    fn ctx() -> Context {
        Context { cwd: "/home/u/work".into(), home: Some("/home/u".into()), uid: 1000, gid: 1000, env: BTreeMap::new() }
    }

    fn plan_json(json: &str) -> Result<Plan> {
        let p = Policy::from_json(json)?;
        plan(&p, &["true".to_string()], &ctx(), &HostCapabilities::full_linux(), &FakeFs::debian())
    }

    #[test]
    fn empty_policy_gives_the_safe_defaults() {
        let plan = plan_json("{}").unwrap();
        let s = &plan.spec;
        assert!(plan.caveats.is_empty(), "{:?}", plan.caveats);
        assert_eq!(s.hostname, "corral");
        assert_eq!(s.network, NetworkSpec::Isolated);
        assert_eq!(s.cwd, PathBuf::from("/"));
        assert_eq!(s.env["HOME"], "/tmp");
        assert!(s.mounts.contains(&MountSpec::Bind {
            source: "/usr".into(),
            target: "/usr".into(),
            writable: false,
            exec: true
        }));
        assert!(s.mounts.contains(&MountSpec::Bind {
            source: "/etc".into(),
            target: "/etc".into(),
            writable: false,
            exec: false
        }));
        assert!(s.mounts.contains(&MountSpec::Symlink { link: "/bin".into(), target: "usr/bin".into() }));
        assert!(s.mounts.contains(&MountSpec::Mask { target: "/etc/shadow".into() }));
        assert!(s.mounts.iter().any(|m| matches!(m, MountSpec::Tmpfs { target, .. } if target == Path::new("/tmp"))));
        assert!(!s.mounts.iter().any(|m| matches!(m, MountSpec::Bind { source, .. } if source.starts_with("/home"))));
        assert_eq!(s.seccomp.profile, "default");
    }

    #[test]
    fn mounts_are_parents_first() {
        let plan = plan_json(r#"{"fs":{"read":["/home/u"],"write":["/home/u/work"]}}"#).unwrap();
        let targets: Vec<_> = plan.spec.mounts.iter().map(|m| mount_target(m).to_path_buf()).collect();
        let parent = targets.iter().position(|t| t == Path::new("/home/u")).unwrap();
        let child = targets.iter().position(|t| t == Path::new("/home/u/work")).unwrap();
        assert!(parent < child);
        let shadow = targets.iter().position(|t| t == Path::new("/etc/shadow")).unwrap();
        let etc = targets.iter().position(|t| t == Path::new("/etc")).unwrap();
        assert!(etc < shadow);
    }

    #[test]
    fn paths_resolve_against_the_caller() {
        let plan = plan_json(r#"{"fs":{"write":["."],"read":["~/link"]}}"#).unwrap();
        assert!(plan.spec.mounts.contains(&MountSpec::Bind {
            source: "/home/u/work".into(),
            target: "/home/u/work".into(),
            writable: true,
            exec: false
        }));
        assert!(plan.spec.mounts.iter().any(|m| mount_target(m) == Path::new("/data")));
        // The caller's cwd is visible now, so the command starts there.
        assert_eq!(plan.spec.cwd, PathBuf::from("/home/u/work"));
    }

    #[test]
    fn bad_paths_name_their_field() {
        let e = plan_json(r#"{"fs":{"read":["/usr","/nope"]}}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("fs.read[1]")));
        let e = plan_json(r#"{"fs":{"write":["/proc/self"]}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("fs.write[0]"));
        let e = plan_json(r#"{"fs":{"read":[""]}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("fs.read[0]"));
        let e = plan_json(r#"{"cwd":"/data"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cwd"));
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, field) in [
            (r#"{"hostname":"bad host"}"#, "hostname"),
            (r#"{"limits":{"memory":0}}"#, "limits.memory"),
            (r#"{"limits":{"cpus":-1}}"#, "limits.cpus"),
            (r#"{"limits":{"openFiles":99999999}}"#, "limits.openFiles"),
            (r#"{"seccomp":"loose"}"#, "seccomp.profile"),
            (r#"{"seccomp":{"deny":["rm -rf"]}}"#, "seccomp.deny[0]"),
            (r#"{"env":{"A=B":"x"}}"#, "env.A=B"),
        ] {
            let e = plan_json(json).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{json}");
        }
    }

    #[test]
    fn strict_refuses_caveats() {
        let e = plan_json(r#"{"network":"host","strict":true}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(e.message.contains("HOST_NETWORK"));
        assert!(plan_json(r#"{"strict":true}"#).is_ok());
    }

    #[test]
    fn landlock_gaps_become_caveats() {
        let mut host = HostCapabilities::full_linux();
        host.landlock_abi = 4;
        let p = Policy::from_json("{}").unwrap();
        let plan = plan(&p, &[], &ctx(), &host, &FakeFs::debian()).unwrap();
        let codes: Vec<_> = plan.caveats.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["LANDLOCK_NO_IOCTL"]);
        assert!(!plan.spec.landlock.scoped);
    }

    #[test]
    fn no_user_namespaces_is_unsupported_with_a_hint() {
        let mut host = HostCapabilities::full_linux();
        host.user_namespaces = false;
        let e = plan(&Policy::default(), &[], &ctx(), &host, &FakeFs::debian()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(e.hint.unwrap().contains("sysctl"));
    }

    #[test]
    fn limits_become_rlimits() {
        let plan = plan_json(r#"{"limits":{"memory":"256M","pids":64,"openFiles":128,"fileSize":"1M","cpuTime":"1500ms","disk":"16M"},"timeout":"5s"}"#).unwrap();
        let r = plan.spec.rlimits;
        assert_eq!(r.address_space, Some(256 << 20));
        assert_eq!(r.processes, Some(64));
        assert_eq!(r.cpu_seconds, Some(2));
        assert_eq!(plan.spec.timeout_ms, Some(5000));
        assert!(plan.spec.mounts.contains(&MountSpec::Tmpfs {
            target: "/tmp".into(),
            size: Some(16 << 20),
            mode: 0o1777
        }));
    }
}

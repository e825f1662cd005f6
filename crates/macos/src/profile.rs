//! The compiler: a [`SandboxSpec`], the policy the Linux backend executes, as a Seatbelt
//! profile.
//!
//! Runs in: the caller on macOS; plain code, tested on any host.
//!
//! In SBPL a later matching rule wins over an earlier one, so the profile is written in one
//! fixed order: deny everything; the platform baseline any macOS program needs to start;
//! the grants derived from the mount view; the network; and the masks last, so that they
//! override every grant above them. The mount view is the source of file rules (Landlock
//! rules restate it for Linux), except list-only rules, which have no mount of their own.
//! Whatever Seatbelt cannot express becomes a [`Caveat`].
//!
//! Long because the compiler is one ordered sequence of rules (later rules win in
//! SBPL), and its tests beside it, about as long, read the profile it writes.

use crate::sbpl::{self, literals, subpaths};
use corral_core::normalize::{DEFAULT_DISK, DEFAULT_HOSTNAME, DEFAULT_PIDS};
use corral_core::seccomp;
use corral_core::spec::{MountSpec, NetworkAccess, SandboxSpec, SeccompSpec};
use corral_core::{Caveat, CorralError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions<'a> {
    /// A directory private to this run that stands in for the sandbox's `/tmp`, since macOS
    /// has no private tmpfs. The caller creates it empty and removes it after the run.
    pub private_tmp: Option<&'a Path>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// SBPL text for `sandbox-exec -p`.
    pub text: String,
    /// What this profile cannot enforce, to be added to the plan's own caveats.
    pub caveats: Vec<Caveat>,
    /// The directory granted in place of `/tmp`, if any; the runner moves `TMPDIR` (and a
    /// home or cwd the plan put in `/tmp`) there.
    pub private_tmp: Option<PathBuf>,
}

/// Mach services libSystem talks to in any process: notifications, logging, user and
/// group lookups (getpwuid goes through opendirectoryd, not /etc/passwd).
const BASE_SERVICES: &[&str] = &[
    "com.apple.logd",
    "com.apple.system.logger",
    "com.apple.system.notification_center",
    "com.apple.system.opendirectoryd.libinfo",
    "com.apple.system.opendirectoryd.membership",
];

/// With the host network: DNS configuration and TLS trust evaluation.
const NETWORK_SERVICES: &[&str] = &[
    "com.apple.SecurityServer",
    "com.apple.SystemConfiguration.DNSConfiguration",
    "com.apple.SystemConfiguration.configd",
    "com.apple.dnssd.service",
    "com.apple.ocspd",
    "com.apple.trustd.agent",
];

/// With the host network: resolver and TLS files (macOS resolves through mDNSResponder,
/// but portable resolvers and OpenSSL-based tools read these).
const NETWORK_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/protocols",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/ssl/cert.pem",
    "/etc/ssl/openssl.cnf",
    "/var/run/resolv.conf",
];

/// sysctls that libc and language runtimes read to size themselves. An allow-list rather
/// than all of sysctl-read: `kern.proc.all` lists every process on the host and
/// `kern.procargs2` reveals the arguments and environment of the user's other processes.
const SYSCTL_PREFIXES: &[&str] = &["hw.", "kern.proc.pid.", "machdep.cpu.", "user."];
const SYSCTL_NAMES: &[&str] = &[
    "kern.argmax",
    "kern.boottime",
    "kern.clockrate",
    "kern.hostname",
    "kern.iossupportversion",
    "kern.maxfiles",
    "kern.maxfilesperproc",
    "kern.maxproc",
    "kern.maxprocperuid",
    "kern.ngroups",
    "kern.osproductversion",
    "kern.osproductversioncompat",
    "kern.osrelease",
    "kern.ostype",
    "kern.osvariant_status",
    "kern.osversion",
    "kern.secure_kernel",
    "kern.usrstack64",
    "kern.version",
    "machdep.ptrauth_enabled",
    "security.mac.lockdown_mode_state",
    "sysctl.proc_cputype",
    "sysctl.proc_translated",
    "vm.loadavg",
];

/// Read-only platform code: frameworks, the dyld shared cache (inside cryptexes since
/// macOS 13) and /usr/lib. Never all of /System: /System/Volumes/Data is the user's disk.
const PLATFORM_CODE: &[&str] =
    &["/System/Library", "/System/Cryptexes", "/System/Volumes/Preboot/Cryptexes", "/usr/lib"];

/// Compiles `spec` into a Seatbelt profile. Deterministic: the same spec and options give
/// the same text.
pub fn compile(spec: &SandboxSpec, options: &CompileOptions) -> Result<Profile, CorralError> {
    let mut out = Out::default();
    out.line("(version 1)");
    out.line("(deny default)");
    out.caveat("NO_MOUNT_VIEW", "macOS has no mount namespace: paths outside the policy are denied rather than absent, and their names and metadata (stat) stay visible", Some("fs"));
    process_basics(&mut out);
    platform_files(&mut out);
    let view = mounts(spec, options, &mut out)?;
    listing(spec, &mut out)?;
    if let NetworkAccess::Proxied { .. } = spec.network {
        // The allow-list needs the bridge and proxy of the Linux backend; granting the host
        // network instead would silently drop every rule.
        return Err(
            CorralError::unsupported("network allow-lists are not available on macOS yet").with_field("network")
        );
    }
    network(spec, &view.writable, &mut out);
    pins(&view, &mut out)?;
    masks(&view, &mut out)?;
    process_caveats(spec, &mut out);
    Ok(Profile { text: out.text, caveats: out.caveats, private_tmp: view.private_tmp })
}

#[derive(Default)]
struct Out {
    text: String,
    caveats: Vec<Caveat>,
}

impl Out {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }
    fn section(&mut self, title: &str) {
        self.text.push_str("\n; ");
        self.line(title);
    }
    fn allow(&mut self, ops: &str, filters: &[String]) {
        sbpl::rule(&mut self.text, "allow", ops, filters);
    }
    fn deny(&mut self, ops: &str, filters: &[String]) {
        sbpl::rule(&mut self.text, "deny", ops, filters);
    }
    fn caveat(&mut self, code: &str, message: impl Into<String>, field: Option<&str>) {
        self.caveats.push(Caveat { code: code.into(), message: message.into(), field: field.map(str::to_string) });
    }
}

fn names(kind: &str, values: &[&str]) -> Vec<String> {
    values.iter().map(|v| sbpl::name(kind, v)).collect()
}

fn process_basics(out: &mut Out) {
    out.section("Processes: fork, see and signal only the sandbox's own");
    // Some macOS versions allow these even under (deny default); say it explicitly.
    out.deny("process-info* nvram* iokit-get-properties", &[]);
    out.allow("process-fork", &[]);
    out.allow("process-info*", &["(target same-sandbox)".into()]);
    out.allow("signal", &["(target same-sandbox)".into()]);
    let mut sysctls = names("sysctl-name-prefix", SYSCTL_PREFIXES);
    sysctls.extend(names("sysctl-name", SYSCTL_NAMES));
    out.allow("sysctl-read", &sysctls);
    out.allow("mach-lookup", &names("global-name", BASE_SERVICES));
    // Power management queries; every other IOKit user client stays closed.
    out.allow("iokit-open", &[sbpl::name("iokit-user-client-class", "RootDomainUserClient")]);
    // Creating Unix sockets (socketpair, local IPC); where they may bind or connect is
    // decided in the network section.
    out.allow("system-socket", &["(socket-domain AF_UNIX)".into()]);
}

fn platform_files(out: &mut Out) {
    out.section("Platform files every program needs to start");
    // dyld and realpath() stat every path component; contents stay denied.
    out.allow("file-read-metadata", &[]);
    out.allow("file-read*", &["(literal \"/\")".into()]);
    let code: Vec<String> = PLATFORM_CODE.iter().flat_map(|p| fixed(subpaths, p)).collect();
    out.allow("file-read* file-map-executable", &code);
    // /etc/localtime points here.
    out.allow("file-read*", &fixed(subpaths, "/var/db/timezone"));
    // dyld registers DTrace probes through this device at startup.
    out.allow("file-read-data file-write-data file-ioctl", &fixed(literals, "/dev/dtracehelper"));
}

/// Filters for a constant path, which cannot fail to quote.
fn fixed(f: fn(&Path, &str) -> Result<Vec<String>, CorralError>, path: &str) -> Vec<String> {
    f(Path::new(path), "profile").expect("constant paths are absolute and plain")
}

/// What the mount view leaves for the later sections.
struct View {
    /// Writable roots, with their subpath filters: where Unix sockets may live and where
    /// masks need rename protection.
    writable: Vec<(PathBuf, Vec<String>)>,
    masks: Vec<(usize, PathBuf)>,
    /// Paths pinned in place (`MountSpec::Pin`): not renamed or removed, maybe read-only,
    /// maybe with execution set.
    pins: Vec<(usize, PathBuf, bool, Option<bool>)>,
    private_tmp: Option<PathBuf>,
}

fn mounts(spec: &SandboxSpec, options: &CompileOptions, out: &mut Out) -> Result<View, CorralError> {
    out.section("The mount view");
    let mut view = View { writable: Vec::new(), masks: Vec::new(), pins: Vec::new(), private_tmp: None };
    for (i, m) in spec.mounts.iter().enumerate() {
        match m {
            MountSpec::Bind { source, target, writable, exec } => {
                let filters = subpaths(source, &format!("mounts[{i}].source"))?;
                out.allow("file-read*", &filters);
                if *writable {
                    out.allow("file-write*", &filters);
                    view.writable.push((source.clone(), filters.clone()));
                }
                if *exec {
                    // Both the exec itself and mapping its libraries executable.
                    out.allow("process-exec* file-map-executable", &filters);
                }
                if source != target {
                    out.caveat(
                        "NO_BIND_REMAP",
                        format!(
                            "macOS cannot remap paths: {} is visible at its host path, not at {}",
                            source.display(),
                            target.display()
                        ),
                        Some("fs.volumes"),
                    );
                }
            }
            MountSpec::Tmpfs { target, exec } => {
                match options.private_tmp.filter(|_| target == Path::new("/tmp")) {
                    Some(dir) => {
                        if dir.parent().is_none() {
                            return Err(CorralError::policy("privateTmp", "the private temporary directory cannot be /"));
                        }
                        let filters = subpaths(dir, "privateTmp")?;
                        out.allow("file-read* file-write*", &filters);
                        if *exec {
                            out.allow("process-exec* file-map-executable", &filters);
                        }
                        view.writable.push((dir.to_path_buf(), filters));
                        view.private_tmp = Some(dir.to_path_buf());
                        out.caveat("TMP_RELOCATED", format!("macOS has no private tmpfs: the sandbox's temporary directory is {} (TMPDIR points there); /tmp itself stays denied", dir.display()), Some("fs"));
                    }
                    None => out.caveat("NO_PRIVATE_TMP", format!("macOS has no private tmpfs and no private directory was given: {} is not available in the sandbox", target.display()), Some("fs")),
                }
                if spec.scratch.size != DEFAULT_DISK {
                    out.caveat(
                        "DISK_LIMIT_UNENFORCED",
                        "limits.disk caps a private tmpfs, which macOS does not have",
                        Some("limits.disk"),
                    );
                }
            }
            // Captured writes need a copy-on-write layer; granting the lower directory
            // instead would let writes reach the host, so refuse (fail closed).
            MountSpec::Overlay { .. } => {
                return Err(CorralError::unsupported(
                    "fs.writeMode 'ephemeral' and 'overlay' need overlayfs, which macOS does not have",
                )
                .with_field("fs.writeMode"))
            }
            MountSpec::Dev { target, .. } => devices(target, i, out)?,
            MountSpec::Mask { target } => view.masks.push((i, target.clone())),
            MountSpec::Pin { target, read_only, exec } => view.pins.push((i, target.clone(), *read_only, *exec)),
            // The sandbox sees the host's own link; Seatbelt checks resolved paths, so the
            // link's target is reachable only through a grant of its own, as on Linux.
            MountSpec::Symlink { .. } => {}
            // Nothing like a private procfs exists on macOS; process info is covered above.
            MountSpec::Proc { .. } => {}
        }
    }
    Ok(view)
}

fn devices(dev: &Path, i: usize, out: &mut Out) -> Result<(), CorralError> {
    let field = format!("mounts[{i}].target");
    let paths = |names: &[&str]| -> Result<Vec<String>, CorralError> {
        let mut filters = Vec::new();
        for name in names {
            filters.extend(literals(&dev.join(name), &field)?);
        }
        Ok(filters)
    };
    out.allow("file-read*", &paths(&["null", "zero", "random", "urandom", "tty"])?);
    out.allow("file-write*", &paths(&["null", "tty"])?);
    // /dev/fd/N and /dev/std* only duplicate descriptors the process already holds.
    let mut fds = subpaths(&dev.join("fd"), &field)?;
    fds.extend(paths(&["stdin", "stdout", "stderr"])?);
    out.allow("file-read* file-write*", &fds);
    // isatty() and window sizes. Opening another terminal stays denied, so ioctl reaches
    // only a terminal handed in as stdio.
    let mut ioctl = paths(&["null", "tty"])?;
    if dev == Path::new("/dev") {
        ioctl.push("(regex #\"^/dev/ttys[0-9]+$\")".into());
    }
    out.allow("file-ioctl", &ioctl);
    out.caveat("NO_PRIVATE_DEVPTS", "macOS has no private devpts: the sandbox cannot create pseudo-terminals, since /dev/ptmx would expose the user's other terminals", None);
    Ok(())
}

/// List-only Landlock rules have no mount of their own: on macOS they are metadata reads.
fn listing(spec: &SandboxSpec, out: &mut Out) -> Result<(), CorralError> {
    let mut filters = Vec::new();
    for (i, r) in spec.landlock.rules.iter().enumerate() {
        let a = r.access;
        if a.list && !(a.read || a.write || a.exec) {
            filters.extend(subpaths(&r.path, &format!("landlock.rules[{i}].path"))?);
        }
    }
    if !filters.is_empty() {
        out.section("Directory listing (also covered by the metadata baseline)");
        out.allow("file-read-metadata", &filters);
    }
    Ok(())
}

fn network(spec: &SandboxSpec, writable: &[(PathBuf, Vec<String>)], out: &mut Out) {
    if spec.network == NetworkAccess::Host && !unix_sockets_only(&spec.seccomp) {
        out.section("Network: the host's");
        out.allow("network*", &[]);
        // Kernel control sockets, which network libraries use to read interface state.
        out.allow("system-socket", &["(require-all (socket-domain AF_SYSTEM) (socket-protocol 2))".into()]);
        out.allow("mach-lookup", &names("global-name", NETWORK_SERVICES));
        let mut files = Vec::new();
        for f in NETWORK_FILES {
            files.extend(fixed(literals, f));
        }
        out.allow("file-read*", &files);
        return;
    }
    out.section("Network: none, except Unix sockets inside writable paths");
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for f in writable.iter().flat_map(|(_, filters)| filters) {
        local.push(format!("(local unix-socket {f})"));
        remote.push(format!("(remote unix-socket {f})"));
    }
    if !local.is_empty() {
        out.allow("network-bind network-inbound", &local);
        out.allow("network-outbound", &remote);
        out.caveat(
            "UNIX_SOCKETS_IN_WRITABLE_PATHS",
            "Unix sockets inside writable paths are connectable, including ones a host program creates there later",
            Some("fs.write"),
        );
    }
    if spec.network == NetworkAccess::Isolated {
        out.caveat("NO_PRIVATE_LOOPBACK", "macOS has no network namespace: the sandbox has no loopback of its own, so TCP and UDP on localhost are refused", Some("network"));
    }
}

/// Whether the plan's seccomp filters refuse every socket family but AF_UNIX: the one part
/// of a seccomp profile Seatbelt can restate, as "no IP networking". Read from the core's
/// filters so that `seccomp.allow: ["socket"]` lifts it here as it does on Linux.
fn unix_sockets_only(s: &SeccompSpec) -> bool {
    const AF_UNIX: u64 = 1;
    let Some(filters) = seccomp::filters(&s.profile, &s.allow, &s.deny) else { return false };
    let refuses_non_unix = |r: &seccomp::Rule| {
        r.syscall == "socket"
            && matches!(r.args.as_slice(), [c] if c.index == 0 && c.op.as_str() == Some("ne") && c.val == AF_UNIX)
    };
    let mut denied = filters.iter().filter(|f| f.on_match != seccomp::Action::Allow).flat_map(|f| &f.rules);
    denied.any(|r| refuses_non_unix(r) || (r.syscall == "socket" && r.args.is_empty()))
}

/// Pins become denials after the grants: the path itself cannot be unlinked or renamed
/// (what a mount point gives on Linux), a read-only pin cannot be written at all, and
/// execution follows the pin.
fn pins(view: &View, out: &mut Out) -> Result<(), CorralError> {
    if view.pins.is_empty() {
        return Ok(());
    }
    out.section("Pinned paths: they stay what they are under their names");
    let (mut fixed, mut read_only, mut runs, mut never) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, target, ro, exec) in &view.pins {
        let field = format!("mounts[{i}].target");
        fixed.extend(literals(target, &field)?);
        let tree = subpaths(target, &field)?;
        if *ro {
            read_only.extend(tree.iter().cloned());
        }
        match exec {
            Some(true) => runs.extend(tree),
            Some(false) => never.extend(tree),
            None => {}
        }
    }
    out.deny("file-write-unlink", &fixed);
    if !read_only.is_empty() {
        out.deny("file-write*", &read_only);
    }
    if !runs.is_empty() {
        out.allow("process-exec* file-map-executable", &runs);
    }
    if !never.is_empty() {
        out.deny("process-exec* file-map-executable", &never);
    }
    Ok(())
}

fn masks(view: &View, out: &mut Out) -> Result<(), CorralError> {
    if view.masks.is_empty() {
        return Ok(());
    }
    out.section("Masks, last so they override every grant above");
    let mut hidden = Vec::new();
    let mut ancestors = BTreeMap::new();
    for (i, target) in &view.masks {
        hidden.extend(subpaths(target, &format!("mounts[{i}].target"))?);
        // Renaming a parent would carry the masked path out from under its rule; on Linux
        // the mount point makes such a rename fail.
        for a in target.ancestors().skip(1) {
            let inside = |w: &Path| sbpl::host_forms(a).iter().any(|f| f.starts_with(w));
            if a != Path::new("/") && view.writable.iter().any(|(w, _)| inside(w)) {
                ancestors.entry(a.to_path_buf()).or_insert(*i);
            }
        }
    }
    out.deny("file-read* file-write*", &hidden);
    let mut unlink = Vec::new();
    for (a, i) in &ancestors {
        unlink.extend(literals(a, &format!("mounts[{i}].target"))?);
    }
    if !unlink.is_empty() {
        out.deny("file-write-unlink", &unlink);
    }
    Ok(())
}

fn process_caveats(spec: &SandboxSpec, out: &mut Out) {
    out.caveat("NO_PID_NAMESPACE", "macOS has no pid namespace: the sandbox sees host process ids and the basic details of other processes (kern.proc.pid), though it can signal only its own", None);
    out.caveat(
        "NO_IPC_NAMESPACE",
        "macOS has no IPC namespace: System V and POSIX shared memory and semaphores are denied rather than private",
        None,
    );
    if spec.hostname != DEFAULT_HOSTNAME {
        out.caveat(
            "NO_UTS_NAMESPACE",
            format!("macOS cannot give the sandbox its own hostname: it sees the host's, not {:?}", spec.hostname),
            Some("hostname"),
        );
    }
    let s = &spec.seccomp;
    let mut message = format!("seccomp profile {:?} filters Linux system calls, which macOS cannot do: ", s.profile);
    if unix_sockets_only(s) {
        message.push_str("its nearest Seatbelt counterpart is applied (no IP sockets, whatever the network setting); other calls are limited only by Seatbelt's operation checks");
    } else {
        message.push_str("system calls are limited only by Seatbelt's operation checks (files, network, processes, Mach services, sysctl, IOKit)");
    }
    if !s.allow.is_empty() || !s.deny.is_empty() {
        message.push_str("; seccomp.allow and seccomp.deny are ignored");
    }
    out.caveat("NO_SECCOMP", message, Some("seccomp"));
    if spec.rlimits.processes.is_some_and(|p| p != DEFAULT_PIDS) {
        out.caveat(
            "NO_RLIMIT_NPROC_ISOLATION",
            "limits.pids uses RLIMIT_NPROC, which on macOS counts all of the user's processes, not only the sandbox's",
            Some("limits.pids"),
        );
    }
    if spec.rlimits.address_space.is_some() {
        out.caveat(
            "NO_MEMORY_LIMIT",
            "macOS does not enforce RLIMIT_AS (and since macOS 12 refuses to set it): limits.memory is not applied",
            Some("limits.memory"),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use corral_core::spec::{FsAccess, LandlockRule, LandlockSpec, Rlimits};
    use corral_core::{Context, ErrorCode, FileKind, HostCapabilities, HostFs, Plan, Policy};
    use std::collections::{BTreeMap, HashMap};
    use std::io;

    /// A hand-built spec shaped like the planner's output for `{}`.
    pub(crate) fn spec() -> SandboxSpec {
        let env = [("PATH", "/usr/bin:/bin"), ("HOME", "/tmp"), ("LANG", "C.UTF-8")];
        SandboxSpec {
            argv: vec!["/usr/bin/true".into(), "-x".into()],
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: "/tmp/work".into(),
            hostname: DEFAULT_HOSTNAME.into(),
            uid: 501,
            gid: 20,
            identity: None,
            network: NetworkAccess::Isolated,
            mounts: vec![
                bind("/usr", false, true),
                bind("/bin", false, true),
                MountSpec::Symlink { link: "/etc".into(), target: "private/etc".into() },
                MountSpec::Proc { target: "/proc".into() },
                MountSpec::Dev { target: "/dev".into(), shm_exec: true },
                MountSpec::Tmpfs { target: "/tmp".into(), exec: true },
            ],
            landlock: LandlockSpec {
                rules: vec![LandlockRule { path: "/".into(), access: FsAccess { list: true, ..Default::default() } }],
                abi: 0,
                scoped: false,
                bind_ports: None,
                connect_ports: None,
            },
            seccomp: SeccompSpec {
                profile: "default".into(),
                allow: vec![],
                deny: vec![],
                gate: false,
                tcp_only: false,
                gate_listen: false,
                no_xattr_writes: false,
            },
            rlimits: Rlimits::default(),
            timeout_ms: None,
            scratch: corral_core::spec::ScratchSpec { size: DEFAULT_DISK },
            memfd_noexec: false,
            overlay: None,
            wait_for_command: false,
            terminal: None,
            cgroup: None,
            unix_sockets: vec![],
            placeholders: Vec::new(),
        }
    }

    fn bind(path: &str, writable: bool, exec: bool) -> MountSpec {
        MountSpec::Bind { source: path.into(), target: path.into(), writable, exec }
    }

    fn text(spec: &SandboxSpec) -> String {
        compile(spec, &CompileOptions::default()).unwrap().text
    }

    fn codes(p: &Profile) -> Vec<&str> {
        p.caveats.iter().map(|c| c.code.as_str()).collect()
    }

    /// An in-memory macOS: /etc, /tmp and /var are symlinks into /private.
    struct FakeMac(HashMap<PathBuf, FileKind>);

    impl FakeMac {
        fn new() -> Self {
            let mut m = HashMap::new();
            for d in [
                "/",
                "/usr",
                "/bin",
                "/sbin",
                "/private",
                "/private/etc",
                "/private/tmp",
                "/private/var",
                "/Users",
                "/Users/u",
                "/Users/u/work",
            ] {
                m.insert(PathBuf::from(d), FileKind::Dir);
            }
            for (l, t) in [("/etc", "private/etc"), ("/tmp", "private/tmp"), ("/var", "private/var")] {
                m.insert(PathBuf::from(l), FileKind::Symlink(t.into()));
            }
            FakeMac(m)
        }
    }

    impl HostFs for FakeMac {
        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            match self.0.get(path) {
                Some(FileKind::Symlink(t)) => Ok(Path::new("/").join(t)),
                Some(_) => Ok(path.to_path_buf()),
                None => Err(io::ErrorKind::NotFound.into()),
            }
        }
        fn kind(&self, path: &Path) -> Option<FileKind> {
            self.0.get(path).cloned()
        }
    }

    fn plan(json: &str) -> Plan {
        let ctx = Context {
            cwd: "/Users/u/work".into(),
            home: Some("/Users/u".into()),
            uid: 501,
            gid: 20,
            env: BTreeMap::new(),
        };
        let host = HostCapabilities { os: "macos".into(), arch: "aarch64".into(), uid: 501, ..Default::default() };
        corral_core::plan(&Policy::from_json(json).unwrap(), &["true".to_string()], &ctx, &host, &FakeMac::new())
            .unwrap()
    }

    #[test]
    fn the_empty_policy_compiles_and_denies_by_default() {
        let plan = plan("{}");
        let p = compile(&plan.spec, &CompileOptions::default()).unwrap();
        assert!(p.text.starts_with("(version 1)\n(deny default)\n"), "{}", p.text);
        assert!(!p.text.contains("(allow default"));
        assert!(p.text.contains("(allow file-read* (subpath \"/usr\"))"));
        assert!(p.text.contains("(allow process-exec* file-map-executable (subpath \"/usr\"))"));
        // Nothing from the policy is writable; only devices and the platform's dtrace hook.
        assert!(!p.text.contains("(allow file-write* (subpath"));
        assert!(!p.text.contains("network*"));
        assert!(p.text.contains("(allow signal (target same-sandbox))"));
        assert_eq!(p.private_tmp, None);
        assert_eq!(compile(&plan.spec, &CompileOptions::default()).unwrap(), p, "deterministic");
    }

    #[test]
    fn a_writable_bind_allows_writes_and_unix_sockets_there() {
        let mut s = spec();
        s.mounts.push(bind("/Users/u/work", true, false));
        let t = text(&s);
        assert!(t.contains("(allow file-read* (subpath \"/Users/u/work\"))"));
        assert!(t.contains("(allow file-write* (subpath \"/Users/u/work\"))"));
        assert!(!t.contains("(allow process-exec* file-map-executable (subpath \"/Users/u/work\"))"));
        assert!(!t.contains("(allow file-write* (subpath \"/usr\"))"));
        assert!(t.contains("(allow network-bind network-inbound (local unix-socket (subpath \"/Users/u/work\")))"));
        assert!(t.contains("(allow network-outbound (remote unix-socket (subpath \"/Users/u/work\")))"));
    }

    #[test]
    fn masks_come_after_the_allows_and_deny() {
        let mut s = spec();
        s.mounts.push(bind("/Users/u/work", true, false));
        s.mounts.push(MountSpec::Mask { target: "/Users/u/work/app/.env".into() });
        let t = text(&s);
        let deny = t.find("(deny file-read* file-write* (subpath \"/Users/u/work/app/.env\"))").expect(&t);
        assert!(t.rfind("(allow").unwrap() < deny, "{t}");
        // Neither the masked path nor a writable parent can be renamed away.
        assert!(
            t.contains("(deny file-write-unlink\n  (literal \"/Users/u/work\")\n  (literal \"/Users/u/work/app\"))"),
            "{t}"
        );
    }

    #[test]
    fn paths_are_escaped_or_refused() {
        let mut s = spec();
        s.mounts.push(bind(r#"/Users/u/say "hi" \o/"#, false, false));
        assert!(text(&s).contains(r#"(allow file-read* (subpath "/Users/u/say \"hi\" \\o"))"#));
        for bad in ["/Users/u/a\nb", "/Users/u/a\0b"] {
            let mut s = spec();
            s.mounts.insert(0, bind(bad, false, false));
            let e = compile(&s, &CompileOptions::default()).unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("mounts[0].source")), "{bad:?}");
        }
    }

    #[test]
    fn private_aliases_get_both_spellings() {
        let mut s = spec();
        s.mounts.push(bind("/private/etc", false, false));
        s.mounts.push(MountSpec::Mask { target: "/etc/sudoers".into() });
        let p = compile(&s, &CompileOptions { private_tmp: Some(Path::new("/var/folders/ab/T/corral-1")) }).unwrap();
        assert!(
            p.text.contains("(allow file-read*\n  (subpath \"/private/etc\")\n  (subpath \"/etc\"))"),
            "{}",
            p.text
        );
        assert!(p.text.contains(
            "(deny file-read* file-write*\n  (subpath \"/etc/sudoers\")\n  (subpath \"/private/etc/sudoers\"))"
        ));
        assert!(p.text.contains("(allow file-read* file-write*\n  (subpath \"/var/folders/ab/T/corral-1\")\n  (subpath \"/private/var/folders/ab/T/corral-1\"))"));
        assert_eq!(p.private_tmp.as_deref(), Some(Path::new("/var/folders/ab/T/corral-1")));
    }

    #[test]
    fn the_host_network_allows_network() {
        let mut s = spec();
        s.network = NetworkAccess::Host;
        let p = compile(&s, &CompileOptions::default()).unwrap();
        assert!(p.text.contains("\n(allow network*)\n"));
        assert!(p.text.contains("(global-name \"com.apple.SystemConfiguration.DNSConfiguration\")"));
        assert!(!codes(&p).contains(&"NO_PRIVATE_LOOPBACK"));
        // Seccomp profiles that refuse IP sockets keep them off even with the host network,
        // unless the policy allows `socket` again, as on Linux.
        for profile in ["compute", "strict"] {
            s.seccomp.profile = profile.into();
            assert!(!text(&s).contains("network*"), "{profile}");
        }
        s.seccomp.allow.push("socket".into());
        assert!(text(&s).contains("(allow network*)"));
        s.seccomp.profile = "network".into();
        assert!(text(&s).contains("(allow network*)"));
    }

    #[test]
    fn list_only_rules_become_metadata_reads() {
        let mut s = spec();
        s.landlock
            .rules
            .push(LandlockRule { path: "/Users/u".into(), access: FsAccess { list: true, ..Default::default() } });
        s.landlock.rules.push(LandlockRule {
            path: "/Users/u/work".into(),
            access: FsAccess { read: true, list: true, ..Default::default() },
        });
        let t = text(&s);
        assert!(t.contains("(allow file-read-metadata\n  (subpath \"/\")\n  (subpath \"/Users/u\"))"), "{t}");
        assert!(!t.contains("(subpath \"/Users/u/work\")"));
    }

    #[test]
    fn caveats_name_what_seatbelt_cannot_do() {
        let p = compile(&spec(), &CompileOptions::default()).unwrap();
        assert_eq!(
            codes(&p),
            [
                "NO_MOUNT_VIEW",
                "NO_PRIVATE_DEVPTS",
                "NO_PRIVATE_TMP",
                "NO_PRIVATE_LOOPBACK",
                "NO_PID_NAMESPACE",
                "NO_IPC_NAMESPACE",
                "NO_SECCOMP"
            ]
        );
        assert!(p.caveats.iter().all(|c| !c.message.is_empty()));

        let mut s = spec();
        s.hostname = "box".into();
        s.mounts[5] = MountSpec::Tmpfs { target: "/tmp".into(), exec: true };
        s.scratch.size = 1 << 20;
        s.mounts.push(MountSpec::Bind {
            source: "/Users/u/data".into(),
            target: "/data".into(),
            writable: false,
            exec: false,
        });
        s.seccomp.deny.push("ptrace".into());
        s.rlimits = Rlimits { processes: Some(64), address_space: Some(1 << 30), ..Default::default() };
        let p = compile(&s, &CompileOptions { private_tmp: Some(Path::new("/private/tmp/corral-1")) }).unwrap();
        assert_eq!(
            codes(&p),
            [
                "NO_MOUNT_VIEW",
                "NO_PRIVATE_DEVPTS",
                "TMP_RELOCATED",
                "DISK_LIMIT_UNENFORCED",
                "NO_BIND_REMAP",
                "UNIX_SOCKETS_IN_WRITABLE_PATHS",
                "NO_PRIVATE_LOOPBACK",
                "NO_PID_NAMESPACE",
                "NO_IPC_NAMESPACE",
                "NO_UTS_NAMESPACE",
                "NO_SECCOMP",
                "NO_RLIMIT_NPROC_ISOLATION",
                "NO_MEMORY_LIMIT",
            ]
        );
        let seccomp = p.caveats.iter().find(|c| c.code == "NO_SECCOMP").unwrap();
        assert!(seccomp.message.contains("\"default\"") && seccomp.message.contains("ignored"), "{}", seccomp.message);
        assert_eq!(seccomp.field.as_deref(), Some("seccomp"));
    }

    #[test]
    fn strict_plans_refuse_macos_caveats() {
        let mut plan = plan("{}");
        plan.strict = true;
        let e = crate::compile_plan(&plan, &CompileOptions::default()).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::Unsupported, Some("fs")));
        assert!(e.message.contains("NO_PID_NAMESPACE"));
        plan.strict = false;
        assert!(crate::compile_plan(&plan, &CompileOptions::default()).is_ok());
    }

    #[test]
    fn a_root_private_tmp_is_refused() {
        let e = compile(&spec(), &CompileOptions { private_tmp: Some(Path::new("/")) }).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("privateTmp"));
    }
}

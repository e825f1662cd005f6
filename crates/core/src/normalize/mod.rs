//! The normaliser: the one authority that turns a raw [`Policy`] into a [`Plan`].
//!
//! Runs in: the client, when planning.
//!
//! Everything a user can get wrong is caught here and reported with the field that holds
//! it; everything the host cannot enforce becomes a [`Caveat`] (and, in strict mode, an
//! error). Backends execute the resulting [`SandboxSpec`] without further decisions.
//!
//! Path semantics: `~` and relative paths resolve against the caller; symlinks are
//! resolved here, at plan time, and the plan shows the absolute result. At launch every
//! host path is opened again without following any symlink, so a path that changed into
//! a symlink (or vanished) since planning fails the run instead of redirecting it.

mod paths;
mod process;
mod view;

pub use paths::{absolute, mount_target, resolve_existing};
pub use process::{DEFAULT_HOSTNAME, PROXY_HTTP_PORT, PROXY_SOCKS_PORT};
pub use view::SOCKET_SCAN_BUDGET;

use crate::error::{CorralError, Result};
use crate::host::{Context, FileKind, HostCapabilities, HostFs};
use crate::policy::Policy;
use crate::spec::*;
use crate::{command, env};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// The allow-list the host-side proxy enforces, for proxied networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::allowlist::AllowList>,
    /// What the seccomp filters amount to, for people reading the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_counts: Option<crate::seccomp::Counts>,
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

pub(crate) fn caveat(code: &str, message: &str, field: Option<&str>) -> Caveat {
    Caveat { code: code.into(), message: message.into(), field: field.map(str::to_string) }
}

/// The host path that the mount view shows at sandbox path `p`: through the bind or
/// overlay mount nearest to it.
fn host_path(mounts: &[MountSpec], p: &Path) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind { source, target, .. } => Some((source, target)),
            MountSpec::Overlay { lower, target, .. } => Some((lower, target)),
            _ => None,
        })
        .filter(|(_, target)| p.starts_with(target))
        .max_by_key(|(_, target)| target.components().count())
        .and_then(|(source, target)| p.strip_prefix(target).ok().map(|rest| source.join(rest)))
}

/// Compiles `policy` for `argv` (empty when only planning).
pub fn plan(policy: &Policy, argv: &[String], ctx: &Context, host: &HostCapabilities, fs: &dyn HostFs) -> Result<Plan> {
    let mut caveats = Vec::new();
    let strict = policy.strict.unwrap_or(false);
    check_host(host)?;

    // The file-system view, then what the kernel lacks to enforce it.
    let disk = policy.limits.as_ref().and_then(|l| l.disk).map(|s| s.0);
    if disk == Some(0) {
        return Err(CorralError::policy("limits.disk", "must be greater than 0"));
    }
    let view = view::build(&policy.fs.clone().unwrap_or_default(), disk, ctx, fs, &mut caveats)?;
    let network = process::network(policy, host, &mut caveats)?;
    process::landlock_caveats(host.landlock_abi, network.spec, &mut caveats);
    if view.overlay.is_some() && !host.overlay_in_userns {
        return Err(CorralError::unsupported("fs.writeMode needs overlayfs inside a user namespace (Linux 5.11+)")
            .with_field("fs.writeMode"));
    }

    // The process: where it starts, as whom, with what. A `cwd` the policy names must be
    // a directory the sandbox shows. Without one the command starts where the
    // caller is when the sandbox shows that directory — also when it only holds granted
    // paths, so `python3 score.py` with `read: ['./score.py']` finds its script — and
    // otherwise in `/`, as bubblewrap falls back; the plan's `cwd` says which.
    let cwd = match &policy.cwd {
        Some(raw) => {
            let lexical = absolute("cwd", raw, ctx)?;
            let p = fs.canonicalize(&lexical).unwrap_or(lexical);
            command::check_cwd(&view.mounts, &p)?;
            // A file is no working directory; the host path behind it is found through the
            // mount view, so a volume's target still works.
            if host_path(&view.mounts, &p).is_some_and(|h| !matches!(fs.kind(&h), Some(FileKind::Dir))) {
                return Err(CorralError::policy("cwd", format!("{} is not a directory", p.display())));
            }
            p
        }
        None => fs
            .canonicalize(&ctx.cwd)
            .ok()
            .filter(|p| command::shows(&view.mounts, p))
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    let home = ctx
        .home
        .as_ref()
        .and_then(|h| fs.canonicalize(h).ok())
        .filter(|h| view.visible.iter().any(|(t, writable)| *writable && h.starts_with(t)))
        .map(|h| h.display().to_string())
        .unwrap_or_else(|| "/tmp".to_string());
    let mut env = env::build(&ctx.env, policy.inherit_env.as_ref(), policy.env.as_ref(), &home)?;
    if network.rules.is_some() {
        process::proxy_env(&mut env);
    }
    let hostname = process::hostname(policy)?;
    let limits = process::limits(policy, host, &mut caveats)?;
    let seccomp = process::seccomp_spec(policy, host, &mut caveats)?;

    let spec = SandboxSpec {
        argv: argv.to_vec(),
        env,
        cwd,
        hostname,
        uid: ctx.uid,
        gid: ctx.gid,
        network: network.spec,
        mounts: view.mounts,
        landlock: LandlockSpec {
            rules: view.rules,
            abi: host.landlock_abi,
            scoped: host.landlock_abi >= 6,
            bind_ports: network.bind_ports,
            connect_ports: network.connect_ports,
        },
        seccomp,
        rlimits: limits.rlimits,
        cgroup: limits.cgroup,
        timeout_ms: policy.timeout.map(|t| t.0).filter(|t| *t > 0),
        overlay: view.overlay,
        wait_for_command: false,
        terminal: None,
        proxy_socket: None,
        placeholders: view.placeholders,
    };
    // The command (argv, final environment, working directory), once there is one.
    if !argv.is_empty() {
        command::check_spec(&spec)?;
    }
    if strict {
        refuse_caveats(&caveats)?;
    }
    let seccomp_counts = crate::seccomp::filters(&spec.seccomp.profile, &spec.seccomp.allow, &spec.seccomp.deny)
        .map(|f| crate::seccomp::counts(&f));
    Ok(Plan {
        spec,
        caveats,
        max_output_bytes: limits.max_output_bytes,
        strict,
        network: network.rules,
        seccomp_counts,
    })
}

/// Strict mode: any caveat — the normaliser's or a backend's — refuses the run.
pub fn refuse_caveats(caveats: &[Caveat]) -> Result<()> {
    let Some(first) = caveats.first() else { return Ok(()) };
    let list: Vec<String> = caveats.iter().map(|c| format!("{}: {}", c.code, c.message)).collect();
    Err(CorralError::unsupported(format!("strict mode refuses to run with caveats: {}", list.join("; ")))
        .with_field(first.field.clone().unwrap_or_else(|| "strict".into())))
}

fn check_host(host: &HostCapabilities) -> Result<()> {
    if host.os == "linux" && !host.user_namespaces {
        let why = host.user_namespaces_detail.clone().unwrap_or_else(|| "user namespaces are unavailable".into());
        return Err(CorralError::unsupported(format!("cannot create sandboxes: {why}"))
            .with_hint("enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0, or on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FileKind;
    use crate::ErrorCode;
    use std::collections::{BTreeMap, HashMap};
    use std::io;
    use std::path::Path;

    /// An in-memory host: merged-/usr Debian with a home directory, a checkout and a socket.
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
                "/home/u/work/.git",
                "/home/u/.ssh",
                "/tmp",
                "/tmp/x",
                "/data",
                "/run",
                "/run/user",
            ] {
                m.insert(PathBuf::from(d), FileKind::Dir);
            }
            for (l, t) in [
                ("/bin", "usr/bin"),
                ("/lib", "usr/lib"),
                ("/sbin", "usr/sbin"),
                ("/lib64", "usr/lib64"),
                ("/home/u/link", "/data"),
                ("/home/u/.bashrc", "/home/u/dotfiles/bashrc"),
            ] {
                m.insert(PathBuf::from(l), FileKind::Symlink(t.into()));
            }
            for f in [
                "/etc/shadow",
                "/home/u/.ssh/id_ed25519",
                "/home/u/work/.git/config",
                "/home/u/work/.env",
                "/home/u/dotfiles/bashrc",
            ] {
                m.insert(f.into(), FileKind::File);
            }
            m.insert("/home/u/work/agent.sock".into(), FileKind::Socket);
            m.insert("/run/user/docker.sock".into(), FileKind::Socket);
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
        fn find_sockets(&self, root: &Path, _budget: usize) -> Option<Vec<PathBuf>> {
            let mut v: Vec<PathBuf> = self
                .0
                .iter()
                .filter(|(p, k)| **k == FileKind::Socket && p.starts_with(root))
                .map(|(p, _)| p.clone())
                .collect();
            v.sort();
            Some(v)
        }
    }

    fn ctx() -> Context {
        Context { cwd: "/home/u/work".into(), home: Some("/home/u".into()), uid: 1000, gid: 1000, env: BTreeMap::new() }
    }

    fn plan_json(json: &str) -> Result<Plan> {
        let p = Policy::from_json(json)?;
        plan(&p, &["true".to_string()], &ctx(), &HostCapabilities::full_linux(), &FakeFs::debian())
    }

    fn bind(source: &str, target: &str, writable: bool, exec: bool) -> MountSpec {
        MountSpec::Bind { source: source.into(), target: target.into(), writable, exec }
    }

    fn mask(target: &str) -> MountSpec {
        MountSpec::Mask { target: target.into() }
    }

    fn position(plan: &Plan, target: &str) -> usize {
        plan.spec.mounts.iter().position(|m| mount_target(m) == Path::new(target)).unwrap()
    }

    #[test]
    fn empty_policy_gives_the_safe_defaults() {
        let plan = plan_json("{}").unwrap();
        let s = &plan.spec;
        assert!(plan.caveats.is_empty(), "{:?}", plan.caveats);
        assert_eq!(s.hostname, "corral");
        assert_eq!(s.network, NetworkAccess::Isolated);
        assert_eq!(s.cwd, PathBuf::from("/"));
        assert_eq!(s.env["HOME"], "/tmp");
        assert!(s.mounts.contains(&bind("/usr", "/usr", false, true)));
        assert!(s.mounts.contains(&bind("/etc", "/etc", false, false)));
        assert!(s.mounts.contains(&MountSpec::Symlink { link: "/bin".into(), target: "usr/bin".into() }));
        assert!(s.mounts.contains(&mask("/etc/shadow")));
        assert!(s.mounts.iter().any(|m| matches!(m, MountSpec::Tmpfs { target, .. } if target == Path::new("/tmp"))));
        assert!(!s.mounts.iter().any(|m| matches!(m, MountSpec::Bind { source, .. } if source.starts_with("/home"))));
        assert_eq!(s.seccomp.profile, "default");
        assert!(s.overlay.is_none() && s.placeholders.is_empty());
    }

    #[test]
    fn mounts_are_parents_first() {
        let plan = plan_json(r#"{"fs":{"read":["/home/u"],"write":["/home/u/work"]}}"#).unwrap();
        assert!(position(&plan, "/home/u") < position(&plan, "/home/u/work"));
        assert!(position(&plan, "/etc") < position(&plan, "/etc/shadow"));
    }

    #[test]
    fn paths_resolve_against_the_caller() {
        let plan = plan_json(r#"{"fs":{"write":["."],"read":["~/link"]}}"#).unwrap();
        assert!(plan.spec.mounts.contains(&bind("/home/u/work", "/home/u/work", true, false)));
        assert!(plan.spec.mounts.iter().any(|m| mount_target(m) == Path::new("/data")));
        // The caller's cwd is visible now, so the command starts there.
        assert_eq!(plan.spec.cwd, PathBuf::from("/home/u/work"));
    }

    #[test]
    fn the_command_starts_where_the_caller_is_when_the_sandbox_shows_it() {
        // Not shown at all: the command starts in /.
        assert_eq!(plan_json("{}").unwrap().spec.cwd, PathBuf::from("/"));
        // Only a path inside it is granted: the view holds the directory, so it starts there.
        let plan = plan_json(r#"{"fs":{"read":["./.git"]}}"#).unwrap();
        assert_eq!(plan.spec.cwd, PathBuf::from("/home/u/work"));
        // The same rule for a cwd the policy names.
        let plan = plan_json(r#"{"fs":{"read":["./.git"]},"cwd":"/home/u"}"#).unwrap();
        assert_eq!(plan.spec.cwd, PathBuf::from("/home/u"));
        let e = plan_json(r#"{"fs":{"read":["./.git"]},"cwd":"/data"}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("cwd")));
        assert!(e.hint.is_some());
    }

    #[test]
    fn bad_paths_name_their_field() {
        let e = plan_json(r#"{"fs":{"read":["/usr","/nope"]}}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("fs.read[1]")));
        for (json, field) in [
            (r#"{"fs":{"write":["/proc/self"]}}"#, "fs.write[0]"),
            (r#"{"fs":{"read":[""]}}"#, "fs.read[0]"),
            (r#"{"cwd":"/data"}"#, "cwd"),
            (r#"{"fs":{"volumes":[{"source":"/data","target":"rel"}]}}"#, "fs.volumes[0].target"),
            (r#"{"fs":{"volumes":[{"source":"/nope","target":"/x"}]}}"#, "fs.volumes[0].source"),
            (r#"{"fs":{"volumes":[{"source":"/data","target":"/dev/x"}]}}"#, "fs.volumes[0].target"),
            (
                r#"{"fs":{"read":["/home/u"],"volumes":[{"source":"/data","target":"/home/u/missing"}]}}"#,
                "fs.volumes[0].target",
            ),
            (r#"{"fs":{"allowUnixSockets":["/data"]}}"#, "fs.allowUnixSockets[0]"),
            (r#"{"fs":{"read":["/run/user/docker.sock"]}}"#, "fs.read[0]"),
            (r#"{"fs":{"read":["~"],"deny":["~/.ssh"],"exec":["~/.ssh"]}}"#, "fs.exec[0]"),
        ] {
            let e = plan_json(json).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{json}: {e}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, field) in [
            (r#"{"hostname":"bad host"}"#, "hostname"),
            (r#"{"limits":{"memory":0}}"#, "limits.memory"),
            (r#"{"limits":{"disk":0}}"#, "limits.disk"),
            (r#"{"limits":{"cpus":-1}}"#, "limits.cpus"),
            (r#"{"limits":{"openFiles":99999999}}"#, "limits.openFiles"),
            (r#"{"limits":{"openFiles":3}}"#, "limits.openFiles"),
            (r#"{"limits":{"pids":1}}"#, "limits.pids"),
            (r#"{"limits":{"pids":4294967296}}"#, "limits.pids"),
            (r#"{"fs":{"read":["~"]},"cwd":"~/work/.env"}"#, "cwd"),
            (r#"{"fs":{"volumes":[{"source":"~/work","target":"/w"}]},"cwd":"/w/.env"}"#, "cwd"),
            (r#"{"seccomp":"loose"}"#, "seccomp.profile"),
            (r#"{"seccomp":{"deny":["rm -rf"]}}"#, "seccomp.deny[0]"),
            (r#"{"env":{"A=B":"x"}}"#, "env.A=B"),
        ] {
            let e = plan_json(json).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{json}");
        }
    }

    #[test]
    fn limits_at_their_bounds_are_accepted() {
        let plan = plan_json(r#"{"limits":{"pids":2,"openFiles":16},"cwd":"/usr/bin"}"#).unwrap();
        assert_eq!(plan.spec.cgroup.and_then(|c| c.pids), Some(2));
        assert_eq!(plan.spec.rlimits.open_files, Some(16));
        // A volume's target is a directory inside even where the host has no such path.
        let plan = plan_json(r#"{"fs":{"volumes":[{"source":"~/work","target":"/w"}]},"cwd":"/w/.git"}"#).unwrap();
        assert_eq!(plan.spec.cwd, PathBuf::from("/w/.git"));
    }

    #[test]
    fn open_files_stay_under_the_hosts_hard_limit() {
        let mut host = HostCapabilities::full_linux();
        host.open_files_limit = Some(1024);
        let policy = Policy::from_json(r#"{"limits":{"openFiles":2048}}"#).unwrap();
        let e = plan(&policy, &[], &ctx(), &host, &FakeFs::debian()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.openFiles"));
        let policy = Policy::from_json(r#"{"limits":{"openFiles":1024}}"#).unwrap();
        assert!(plan(&policy, &[], &ctx(), &host, &FakeFs::debian()).is_ok());
    }

    #[test]
    fn deny_hides_paths_inside_readable_trees() {
        let plan = plan_json(r#"{"fs":{"read":["~"],"deny":["~/.ssh","~/missing",".env","/data"]}}"#).unwrap();
        assert!(plan.spec.mounts.contains(&mask("/home/u/.ssh")));
        assert!(plan.spec.mounts.contains(&mask("/home/u/work/.env")));
        // Missing or invisible paths have nothing to hide.
        assert!(!plan.spec.mounts.iter().any(
            |m| matches!(m, MountSpec::Mask { target } if target.ends_with("missing") || target.starts_with("/data"))
        ));
        assert!(position(&plan, "/home/u") < position(&plan, "/home/u/.ssh"));
    }

    #[test]
    fn protect_keeps_paths_read_only_inside_writable_trees() {
        let plan = plan_json(r#"{"fs":{"write":["."],"protect":[".git/config",".git/hooks/pre-commit","/usr/lib"]}}"#)
            .unwrap();
        assert!(plan.spec.mounts.contains(&bind("/home/u/work/.git/config", "/home/u/work/.git/config", false, false)));
        // .git/hooks does not exist: a placeholder directory stands in for it.
        assert_eq!(
            plan.spec.placeholders,
            vec![Placeholder { root: "/home/u/work/.git".into(), relative: "hooks".into(), dir: true }]
        );
        assert!(plan.spec.mounts.contains(&bind("/home/u/work/.git/hooks", "/home/u/work/.git/hooks", false, false)));
        assert!(position(&plan, "/home/u/work") < position(&plan, "/home/u/work/.git/hooks"));
        // Read-only trees need nothing.
        assert!(!plan.spec.mounts.iter().any(|m| mount_target(m) == Path::new("/usr/lib")));
    }

    #[test]
    fn protecting_a_symlink_is_a_caveat() {
        let plan = plan_json(r#"{"fs":{"write":["~"],"protect":["~/.bashrc"]}}"#).unwrap();
        assert_eq!(plan.caveats[0].code, "PROTECTED_SYMLINK");
        assert!(plan.spec.mounts.contains(&bind("/home/u/dotfiles/bashrc", "/home/u/dotfiles/bashrc", false, false)));
    }

    #[test]
    fn volumes_bind_elsewhere() {
        let plan = plan_json(r#"{"fs":{"volumes":[{"source":"/data","target":"/mnt/data","readOnly":true},{"source":"~/work","target":"/work"}]}}"#).unwrap();
        assert!(plan.spec.mounts.contains(&bind("/data", "/mnt/data", false, false)));
        assert!(plan.spec.mounts.contains(&bind("/home/u/work", "/work", true, false)));
        assert!(plan.spec.landlock.rules.iter().any(|r| r.path == Path::new("/work") && r.access.write));
    }

    #[test]
    fn sockets_in_granted_trees_are_masked_unless_allowed() {
        let plan = plan_json(r#"{"fs":{"write":["."]}}"#).unwrap();
        assert!(plan.spec.mounts.contains(&mask("/home/u/work/agent.sock")));
        let plan =
            plan_json(r#"{"fs":{"write":["."],"allowUnixSockets":["agent.sock","/run/user/docker.sock"]}}"#).unwrap();
        assert!(!plan.spec.mounts.contains(&mask("/home/u/work/agent.sock")));
        assert!(plan.spec.mounts.contains(&bind("/run/user/docker.sock", "/run/user/docker.sock", true, false)));
    }

    #[test]
    fn write_modes_use_overlays() {
        let plan = plan_json(r#"{"fs":{"write":["."],"writeMode":"ephemeral"},"limits":{"disk":"64M"}}"#).unwrap();
        let overlays: Vec<_> = plan.spec.mounts.iter().filter(|m| matches!(m, MountSpec::Overlay { .. })).collect();
        assert_eq!(overlays.len(), 3, "/etc, /usr and the checkout: {overlays:?}");
        assert_eq!(plan.spec.overlay, Some(OverlaySpec { size: Some(64 << 20), capture: false }));
        let plan = plan_json(r#"{"fs":{"read":["/data"],"write":["."],"writeMode":"overlay"}}"#).unwrap();
        assert!(plan.spec.mounts.contains(&MountSpec::Overlay {
            lower: "/home/u/work".into(),
            target: "/home/u/work".into(),
            exec: false,
            layer: 0
        }));
        assert!(plan.spec.mounts.contains(&bind("/data", "/data", false, false)));
        assert_eq!(plan.spec.overlay, Some(OverlaySpec { size: None, capture: true }));
        let mut host = HostCapabilities::full_linux();
        host.overlay_in_userns = false;
        let p = Policy::from_json(r#"{"fs":{"write":["."],"writeMode":"overlay"}}"#).unwrap();
        assert_eq!(plan_err(&p, &host).code, ErrorCode::Unsupported);
    }

    fn plan_err(p: &Policy, host: &HostCapabilities) -> CorralError {
        plan(p, &[], &ctx(), host, &FakeFs::debian()).unwrap_err()
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
        let e = plan_err(&Policy::default(), &host);
        assert_eq!(e.code, ErrorCode::Unsupported);
        assert!(e.hint.unwrap().contains("sysctl"));
    }

    #[test]
    fn limits_go_to_the_cgroup_where_there_is_one() {
        let plan = plan_json(r#"{"limits":{"memory":"256M","pids":64,"cpus":0.5,"openFiles":128,"fileSize":"1M","cpuTime":"1500ms","disk":"16M"},"timeout":"5s"}"#).unwrap();
        assert!(plan.caveats.is_empty(), "{:?}", plan.caveats);
        assert_eq!(plan.spec.cgroup, Some(CgroupLimits { memory: Some(256 << 20), cpus: Some(0.5), pids: Some(64) }));
        let r = plan.spec.rlimits;
        assert_eq!((r.address_space, r.processes, r.open_files, r.cpu_seconds), (None, None, Some(128), Some(2)));
        assert_eq!(plan.spec.timeout_ms, Some(5000));
        assert!(plan.spec.mounts.contains(&MountSpec::Tmpfs {
            target: "/tmp".into(),
            size: Some(16 << 20),
            mode: 0o1777
        }));
    }

    #[test]
    fn without_cgroups_limits_fall_back_to_rlimits_with_caveats() {
        let mut host = HostCapabilities::full_linux();
        host.cgroup.writable = false;
        host.cgroup.detail = Some("cgroups are not writable for uid 1000".into());
        let p = Policy::from_json(r#"{"limits":{"memory":"256M","pids":64,"cpus":0.5}}"#).unwrap();
        let plan = plan(&p, &[], &ctx(), &host, &FakeFs::debian()).unwrap();
        assert_eq!(plan.spec.cgroup, None);
        assert_eq!((plan.spec.rlimits.address_space, plan.spec.rlimits.processes), (Some(256 << 20), Some(64)));
        let codes: Vec<_> = plan.caveats.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["MEMORY_PER_PROCESS", "CPU_SHARE_UNENFORCED"]);
        assert!(plan.caveats[0].message.contains("uid 1000"));
    }
}

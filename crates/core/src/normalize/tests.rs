//! The planner against an in-memory host.
//!
//! Runs in: tests only.
//!
//! Long because each rule about a host path is checked at every place that path appears
//! (binds, volumes, overlays), and the fake host they share is defined once, here.

use super::*;
use crate::host::{FileKind, LinkedOut, Owner};
use crate::ErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::io;

/// An in-memory host: merged-/usr Debian with a home directory, a checkout and a socket.
/// Everything is root's and 0755 unless it lies under the caller's home (uid 1000).
struct FakeFs {
    entries: HashMap<PathBuf, FileKind>,
    owners: HashMap<PathBuf, Owner>,
    mounts: Vec<PathBuf>,
    /// What a walk of a directory finds about hard links out of it (none when absent).
    linked: HashMap<PathBuf, LinkedOut>,
}

impl FakeFs {
    fn debian() -> Self {
        let mut fs =
            FakeFs { entries: HashMap::new(), owners: HashMap::new(), mounts: Vec::new(), linked: HashMap::new() };
        for d in [
            "/",
            "/usr",
            "/usr/bin",
            "/usr/lib",
            "/usr/local",
            "/usr/local/bin",
            "/etc",
            "/home",
            "/home/u",
            "/home/u/work",
            "/home/u/work/.git",
            "/home/u/work/a",
            "/home/u/work/a/b",
            "/home/u/.ssh",
            "/home/u/dotfiles",
            "/home/u/dotfiles/nvim",
            "/home/u/.config",
            "/home/u/secret",
            "/tmp",
            "/tmp/x",
            "/data",
            "/run",
            "/run/user",
            "/var",
            "/var/tmp",
            "/srv",
            "/srv/ci",
        ] {
            fs.add(d, FileKind::Dir);
        }
        for (l, t) in [
            ("/bin", "usr/bin"),
            ("/lib", "usr/lib"),
            ("/sbin", "usr/sbin"),
            ("/lib64", "usr/lib64"),
            ("/var/run", "/run"),
            ("/home/u/link", "/data"),
            ("/home/u/.bashrc", "/home/u/dotfiles/bashrc"),
            ("/home/u/.config/nvim", "../dotfiles/nvim"),
            ("/home/u/work/out", "/home/u/secret"),
            ("/srv/ci/out", "/home/u/secret"),
        ] {
            fs.add(l, FileKind::Symlink(t.into()));
        }
        for f in [
            "/etc/shadow",
            "/home/u/.ssh/id_ed25519",
            "/home/u/work/.git/config",
            "/home/u/work/.env",
            "/home/u/work/a/b/file",
            "/home/u/dotfiles/bashrc",
            "/home/u/dotfiles/nvim/init.lua",
            "/home/u/secret/id_rsa",
        ] {
            fs.add(f, FileKind::File);
        }
        fs.add("/home/u/work/agent.sock", FileKind::Socket);
        fs.add("/run/user/docker.sock", FileKind::Socket);
        fs.owners.insert("/tmp".into(), Owner { uid: 0, mode: 0o1777, links: 1 });
        fs.owners.insert("/var/tmp".into(), Owner { uid: 0, mode: 0o1777, links: 1 });
        fs
    }

    fn add(&mut self, path: &str, kind: FileKind) {
        let uid = if path.starts_with("/home/u") { 1000 } else { 0 };
        self.owners.insert(path.into(), Owner { uid, mode: 0o755, links: 1 });
        self.entries.insert(path.into(), kind);
    }
}

impl HostFs for FakeFs {
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        // Resolve component by component, as realpath does.
        let mut out = PathBuf::from("/");
        let mut todo: Vec<_> = path.components().skip(1).map(|c| c.as_os_str().to_os_string()).collect();
        todo.reverse();
        let mut hops = 0;
        while let Some(name) = todo.pop() {
            let next = out.join(&name);
            match self.entries.get(&next) {
                None => return Err(io::ErrorKind::NotFound.into()),
                Some(FileKind::Symlink(t)) => {
                    hops += 1;
                    assert!(hops < 40);
                    let followed = paths::lexical(&out.join(t));
                    let mut parts: Vec<_> =
                        followed.components().skip(1).map(|c| c.as_os_str().to_os_string()).collect();
                    parts.reverse();
                    todo.extend(parts);
                    out = PathBuf::from("/");
                }
                Some(_) => out = next,
            }
        }
        Ok(out)
    }
    fn kind(&self, path: &Path) -> Option<FileKind> {
        self.entries.get(path).cloned()
    }
    fn owner(&self, path: &Path) -> Option<Owner> {
        self.owners.get(path).copied()
    }
    fn submounts(&self, path: &Path) -> Vec<PathBuf> {
        self.mounts.iter().filter(|m| m.starts_with(path) && *m != path).cloned().collect()
    }
    fn is_empty(&self, path: &Path) -> bool {
        self.entries.get(path) == Some(&FileKind::File) && path.ends_with("empty")
    }
    fn linked_out(&self, dir: &Path) -> LinkedOut {
        self.linked.get(dir).cloned().unwrap_or(LinkedOut { complete: true, ..LinkedOut::default() })
    }
    fn writable(&self, dir: &Path) -> bool {
        self.owners.get(dir).is_some_and(|o| o.uid == 1000 || o.mode & 0o002 != 0)
    }
}

fn ctx() -> Context {
    Context { cwd: "/home/u/work".into(), home: Some("/home/u".into()), uid: 1000, gid: 1000, env: BTreeMap::new() }
}

fn plan_json(json: &str) -> Result<Plan> {
    plan_with(json, &ctx(), &FakeFs::debian())
}

fn plan_with(json: &str, ctx: &Context, fs: &FakeFs) -> Result<Plan> {
    let p = Policy::from_json(json)?;
    plan(&p, &["true".to_string()], ctx, &HostCapabilities::full_linux(), fs)
}

fn bind(source: &str, target: &str, writable: bool, exec: bool) -> MountSpec {
    MountSpec::Bind { source: source.into(), target: target.into(), writable, exec }
}

fn mask(target: &str) -> MountSpec {
    MountSpec::Mask { target: target.into() }
}

fn pin(target: &str, read_only: bool) -> MountSpec {
    MountSpec::Pin { target: target.into(), read_only, exec: None }
}

fn position(plan: &Plan, target: &str) -> usize {
    plan.spec.mounts.iter().position(|m| mount_target(m) == Path::new(target)).unwrap()
}

fn has_mount(plan: &Plan, target: &str) -> bool {
    plan.spec.mounts.iter().any(|m| mount_target(m) == Path::new(target))
}

fn codes(plan: &Plan) -> Vec<&str> {
    plan.caveats.iter().map(|c| c.code.as_str()).collect()
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
    assert!(s.mounts.contains(&MountSpec::Tmpfs { target: "/tmp".into(), exec: true }));
    assert!(s.mounts.contains(&MountSpec::Dev { target: "/dev".into(), shm_exec: true }));
    assert!(!s.mounts.iter().any(|m| matches!(m, MountSpec::Bind { source, .. } if source.starts_with("/home"))));
    assert_eq!(s.seccomp.profile, "default");
    assert!(s.overlay.is_none() && s.placeholders.is_empty());
    // Bounded by default: memory-backed storage and processes.
    assert_eq!(s.scratch.size, DEFAULT_DISK);
    assert_eq!(s.rlimits.processes, Some(DEFAULT_PIDS));
    assert!(s.cgroup.is_none(), "RLIMIT_NPROC alone bounds a non-root caller's sandbox");
    assert!(s.memfd_noexec);
    // The kernel never applies RLIMIT_NPROC to host root: a cgroup bounds its sandboxes.
    let mut host = HostCapabilities::full_linux();
    host.uid = 0;
    let plan = super::plan(&Policy::default(), &[], &ctx(), &host, &FakeFs::debian()).unwrap();
    assert_eq!(plan.spec.cgroup, Some(CgroupLimits { pids: Some(DEFAULT_PIDS), ..Default::default() }));
}

#[test]
fn proxy_settings_send_loopback_to_the_proxy_only_when_a_rule_names_it() {
    let plan = plan_json(r#"{"network":{"allow":["example.com"]}}"#).unwrap();
    assert_eq!(plan.spec.env["HTTP_PROXY"], "http://127.0.0.1:3128");
    assert_eq!(plan.spec.env["NO_PROXY"], "localhost,127.0.0.1,::1");
    for allow in [r#""127.0.0.1:8080""#, r#""localhost""#, r#""[::1]:5432""#] {
        let plan = plan_json(&format!(r#"{{"network":{{"allow":[{allow}]}}}}"#)).unwrap();
        assert!(!plan.spec.env.contains_key("NO_PROXY") && !plan.spec.env.contains_key("no_proxy"), "{allow}");
        assert_eq!(plan.spec.env["https_proxy"], "http://127.0.0.1:3128");
    }
    let plan = plan_json(r#"{"network":{"allow":["127.0.0.1:8080"]},"env":{"NO_PROXY":"mine"}}"#).unwrap();
    assert_eq!(plan.spec.env["NO_PROXY"], "mine");
}

#[test]
fn mounts_are_parents_first() {
    let plan = plan_json(r#"{"fs":{"read":["/home/u"],"write":["/home/u/work"]}}"#).unwrap();
    assert!(position(&plan, "/home/u") < position(&plan, "/home/u/work"));
    assert!(position(&plan, "/etc") < position(&plan, "/etc/shadow"));
}

#[test]
fn paths_resolve_against_the_caller() {
    let plan = plan_json(r#"{"fs":{"write":["."],"read":["~/dotfiles"]}}"#).unwrap();
    // Writable places run programs unless the policy says otherwise.
    assert!(plan.spec.mounts.contains(&bind("/home/u/work", "/home/u/work", true, true)));
    assert!(plan.spec.mounts.contains(&bind("/home/u/dotfiles", "/home/u/dotfiles", false, false)));
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
fn a_volume_over_the_callers_directory_shows_another_tree_there() {
    // /home/u is a volume of /srv/ci: /home/u/work is /srv/ci/work there, which is missing.
    let plan = plan_json(r#"{"fs":{"volumes":[{"source":"/srv/ci","target":"/home/u"}]}}"#).unwrap();
    assert_eq!(plan.spec.cwd, PathBuf::from("/"));
    // A volume of the directory itself, elsewhere, and a grant of it: the same directory.
    let plan = plan_json(r#"{"fs":{"read":["."],"volumes":[{"source":".","target":"/w"}]}}"#).unwrap();
    assert_eq!(plan.spec.cwd, PathBuf::from("/home/u/work"));
    // The private /tmp shows only its own root.
    let at = |cwd: &str| Context { cwd: cwd.into(), ..ctx() };
    let plan = plan_with(r#"{"fs":{"read":["/"]}}"#, &at("/tmp/x"), &FakeFs::debian()).unwrap();
    assert_eq!(plan.spec.cwd, PathBuf::from("/"));
    let plan = plan_with(r#"{"fs":{"read":["/"]}}"#, &at("/srv/ci"), &FakeFs::debian()).unwrap();
    assert_eq!(plan.spec.cwd, PathBuf::from("/srv/ci"));
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
fn corral_names_are_reserved() {
    for target in ["/.corral-empty", "/.corral-empty-dir", "/.corral-layers", "/.corral-scratch/x", "/.corralx"] {
        let json = format!(r#"{{"fs":{{"volumes":[{{"source":"/data","target":"{target}"}}]}}}}"#);
        let e = plan_json(&json).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("fs.volumes[0].target")), "{target}");
        assert!(e.message.contains("reserved"), "{e}");
    }
    // Only corral's own top-level names collide.
    assert!(plan_json(r#"{"fs":{"volumes":[{"source":"/data","target":"/mnt/.corral-x"}]}}"#).is_ok());
    assert!(plan_json(r#"{"fs":{"volumes":[{"source":"/data","target":"/corral"}]}}"#).is_ok());
    // Except the one a fork template shows its Python module at, which nothing else uses.
    assert!(plan_json(r#"{"fs":{"volumes":[{"source":"/data","target":"/.corral-python"}]}}"#).is_ok());
    assert!(plan_json(r#"{"fs":{"volumes":[{"source":"/data","target":"/.corral-python/x"}]}}"#).is_err());
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
    let plan = plan_json(r#"{"fs":{"read":["~"],"deny":["~/.ssh","~/missing",".env"]}}"#).unwrap();
    assert!(plan.spec.mounts.contains(&mask("/home/u/.ssh")));
    assert!(plan.spec.mounts.contains(&mask("/home/u/work/.env")));
    assert!(position(&plan, "/home/u") < position(&plan, "/home/u/.ssh"));
    // A path that does not exist yet is reserved by a placeholder and hidden too.
    assert!(plan.spec.mounts.contains(&mask("/home/u/missing")));
    assert_eq!(
        plan.spec.placeholders,
        vec![Placeholder { root: "/home/u".into(), relative: "missing".into(), dir: false }]
    );
    assert!(plan.caveats.is_empty(), "{:?}", plan.caveats);
    // A missing directory on the way is the placeholder: everything below it is hidden.
    let plan = plan_json(r#"{"fs":{"read":["~"],"deny":["~/.aws/credentials"]}}"#).unwrap();
    assert_eq!(
        plan.spec.placeholders,
        vec![Placeholder { root: "/home/u".into(), relative: ".aws".into(), dir: true }]
    );
    assert!(plan.spec.mounts.contains(&mask("/home/u/.aws")));
    assert!(plan.watch.contains(&PathBuf::from("/home/u/.aws")));
    // A trailing slash reserves a directory.
    let plan = plan_json(r#"{"fs":{"read":["~"],"deny":["~/.aws/","~/.env"]}}"#).unwrap();
    assert_eq!(
        plan.spec.placeholders,
        vec![
            Placeholder { root: "/home/u".into(), relative: ".aws".into(), dir: true },
            Placeholder { root: "/home/u".into(), relative: ".env".into(), dir: false }
        ]
    );
}

#[test]
fn a_grant_inside_a_volume_needs_something_there() {
    let e = plan_json(r#"{"fs":{"read":["/home/u/work/a"],"volumes":[{"source":"/data","target":"/home/u/work"}]}}"#)
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("fs.read[0]"));
    assert!(e.message.contains("/data/a"), "{e}");
}

#[test]
fn a_sandbox_stands_on_an_empty_carve_out_another_may_have_made() {
    let mut fs = FakeFs::debian();
    fs.add("/home/u/work/.git/empty", FileKind::File);
    let plan =
        plan_with(r#"{"fs":{"write":["."],"protect":[".git/empty"],"deny":[".git/empty"]}}"#, &ctx(), &fs).unwrap();
    assert_eq!(
        plan.spec.placeholders,
        vec![Placeholder { root: "/home/u/work/.git".into(), relative: "empty".into(), dir: false }]
    );
    let plan = plan_with(r#"{"fs":{"write":["."],"protect":[".git/empty"]}}"#, &ctx(), &fs).unwrap();
    assert_eq!(plan.spec.placeholders.len(), 1);
    assert!(plan.spec.mounts.contains(&pin("/home/u/work/.git/empty", true)));
}

#[test]
fn a_rule_that_matches_nothing_is_a_caveat() {
    let plan = plan_json(r#"{"fs":{"read":["."],"deny":["/data/x"],"protect":["/srv"],"noexec":["/srv"]}}"#).unwrap();
    assert_eq!(codes(&plan), ["RULE_UNMATCHED", "RULE_UNMATCHED", "RULE_UNMATCHED"]);
    assert_eq!(plan.caveats[0].field.as_deref(), Some("fs.noexec[0]"));
    assert!(plan.spec.placeholders.is_empty());
    let e = plan_json(r#"{"fs":{"read":["."],"deny":["/data/x"]},"strict":true}"#).unwrap_err();
    assert!(e.message.contains("RULE_UNMATCHED"), "{e}");
}

#[test]
fn a_rule_naming_a_volume_target_is_refused_with_the_host_path() {
    for json in [
        r#"{"fs":{"volumes":[{"source":"/data","target":"/mnt/d","readOnly":true}],"deny":["/mnt/d/secret"]}}"#,
        r#"{"fs":{"volumes":[{"source":"/data","target":"/mnt/d"}],"protect":["/mnt/d/cfg"]}}"#,
    ] {
        let e = plan_json(json).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyInvalid);
        assert!(e.field.as_deref().is_some_and(|f| f.starts_with("fs.deny") || f.starts_with("fs.protect")));
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("/data/")), "{e}");
    }
}

#[test]
fn rules_hold_at_every_place_a_host_path_appears() {
    // A volume shows the home directory a second time.
    let plan = plan_json(
        r#"{"fs":{"read":["~"],"volumes":[{"source":"~/work","target":"/w"},{"source":"/etc","target":"/hostetc","readOnly":true}],"deny":["~/work/.env"],"protect":["~/work/.git/config"]}}"#,
    )
    .unwrap();
    let s = &plan.spec;
    for m in ["/home/u/work/.env", "/w/.env", "/etc/shadow", "/hostetc/shadow"] {
        assert!(s.mounts.contains(&mask(m)), "{m}: {:?}", s.mounts);
    }
    // Read-only at home, but writable at /w: pinned there, with its directory.
    assert!(s.mounts.contains(&pin("/w/.git/config", true)));
    assert!(s.mounts.contains(&pin("/w/.git", false)));
    assert!(!has_mount(&plan, "/home/u/work/.git/config"));
    // A place hidden under a deeper mount is not one.
    let plan = plan_json(
        r#"{"fs":{"read":["~"],"volumes":[{"source":"/data","target":"/home/u/work"}],"deny":["~/work/.env"]}}"#,
    )
    .unwrap();
    assert!(!has_mount(&plan, "/home/u/work/.env"));
    assert_eq!(codes(&plan), ["RULE_UNMATCHED"]);
}

#[test]
fn exec_and_noexec_hold_at_every_place() {
    let plan = plan_json(
        r#"{"fs":{"exec":["~/work/a"],"volumes":[{"source":"~/work","target":"/w","readOnly":true}],"write":["~/dotfiles"],"noexec":["~/dotfiles/nvim","~/work/a/b"]}}"#,
    )
    .unwrap();
    let s = &plan.spec;
    assert!(s.mounts.contains(&bind("/home/u/work/a", "/home/u/work/a", false, true)));
    assert!(s.mounts.contains(&MountSpec::Pin { target: "/w/a".into(), read_only: false, exec: Some(true) }));
    for t in ["/home/u/work/a/b", "/w/a/b", "/home/u/dotfiles/nvim"] {
        assert!(s.mounts.contains(&MountSpec::Pin { target: t.into(), read_only: false, exec: Some(false) }), "{t}");
    }
    assert!(s.landlock.rules.iter().any(|r| r.path == Path::new("/w/a") && r.access.exec));
    // A noexec grant root loses exec on the mount and in Landlock.
    let plan = plan_json(r#"{"fs":{"write":["."],"noexec":[".","/tmp","/dev/shm"]}}"#).unwrap();
    let s = &plan.spec;
    assert!(s.mounts.contains(&bind("/home/u/work", "/home/u/work", true, false)));
    assert!(s.mounts.contains(&MountSpec::Tmpfs { target: "/tmp".into(), exec: false }));
    assert!(s.mounts.contains(&MountSpec::Dev { target: "/dev".into(), shm_exec: false }));
    assert!(!s.landlock.rules.iter().any(|r| r.access.exec && r.path.starts_with("/home")));
}

#[test]
fn wx_makes_no_place_both_writable_and_executable() {
    let plan = plan_json(r#"{"fs":{"write":["."],"execWritable":false}}"#).unwrap();
    let s = &plan.spec;
    assert!(s.mounts.contains(&bind("/home/u/work", "/home/u/work", true, false)));
    assert!(s.mounts.contains(&MountSpec::Tmpfs { target: "/tmp".into(), exec: false }));
    assert!(s.mounts.contains(&MountSpec::Dev { target: "/dev".into(), shm_exec: false }));
    assert!(s.memfd_noexec);
    for json in [
        r#"{"fs":{"write":["."],"exec":["."],"execWritable":false}}"#,
        r#"{"fs":{"volumes":[{"source":".","target":"/w","exec":true}],"execWritable":false}}"#,
        r#"{"fs":{"write":["."],"volumes":[{"source":".","target":"/w"}],"exec":["/home/u/work/a"],"execWritable":false}}"#,
    ] {
        let e = plan_json(json).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyInvalid, "{json}");
    }
    // Ephemeral system directories stay read-only, so nothing new in them can run.
    let plan = plan_json(r#"{"fs":{"read":["/data"],"writeMode":"ephemeral","execWritable":false}}"#).unwrap();
    assert!(plan.spec.mounts.contains(&bind("/usr", "/usr", false, true)));
    assert!(plan.spec.mounts.contains(&MountSpec::Overlay {
        lower: "/data".into(),
        target: "/data".into(),
        exec: false,
        layer: 0
    }));
    // Where memory files cannot be made non-executable, W^X says so.
    let mut host = HostCapabilities::full_linux();
    host.memfd_noexec = false;
    let p = Policy::from_json(r#"{"fs":{"execWritable":false}}"#).unwrap();
    let plan = super::plan(&p, &[], &ctx(), &host, &FakeFs::debian()).unwrap();
    assert_eq!(codes(&plan), ["MEMFD_EXEC"]);
    let p = Policy::from_json("{}").unwrap();
    assert!(super::plan(&p, &[], &ctx(), &host, &FakeFs::debian()).unwrap().caveats.is_empty());
}

#[test]
fn ephemeral_system_overlays_run_programs_when_writable_places_may() {
    let plan = plan_json(r#"{"fs":{"writeMode":"ephemeral"}}"#).unwrap();
    assert!(plan
        .spec
        .mounts
        .iter()
        .any(|m| matches!(m, MountSpec::Overlay { target, exec: true, .. } if target == Path::new("/usr"))));
}

#[test]
fn protect_keeps_paths_read_only_inside_writable_trees() {
    let plan =
        plan_json(r#"{"fs":{"write":["."],"protect":[".git/config",".git/hooks/pre-commit","/usr/lib"]}}"#).unwrap();
    let s = &plan.spec;
    assert!(s.mounts.contains(&pin("/home/u/work/.git/config", true)));
    // The directory on the way is pinned: renaming or replacing it would change what the
    // protected path means.
    assert!(s.mounts.contains(&pin("/home/u/work/.git", false)));
    // .git/hooks does not exist: a placeholder directory stands in for it.
    assert_eq!(
        s.placeholders,
        vec![Placeholder { root: "/home/u/work/.git".into(), relative: "hooks".into(), dir: true }]
    );
    assert!(s.mounts.contains(&pin("/home/u/work/.git/hooks", true)));
    assert!(position(&plan, "/home/u/work") < position(&plan, "/home/u/work/.git"));
    assert!(position(&plan, "/home/u/work/.git") < position(&plan, "/home/u/work/.git/hooks"));
    // Read-only trees need nothing.
    assert!(!has_mount(&plan, "/usr/lib"));
    assert!(plan.caveats.is_empty(), "{:?}", plan.caveats);
    // Every directory between the writable root and the path, at any depth.
    let plan = plan_json(r#"{"fs":{"write":["."],"protect":["a/b/file"]}}"#).unwrap();
    for (t, ro) in [("/home/u/work/a", false), ("/home/u/work/a/b", false), ("/home/u/work/a/b/file", true)] {
        assert!(plan.spec.mounts.contains(&pin(t, ro)), "{t}");
    }
    // A trailing slash asks for a directory placeholder.
    let plan = plan_json(r#"{"fs":{"write":["."],"protect":[".git/info/"]}}"#).unwrap();
    assert!(plan.spec.placeholders[0].dir);
    let plan = plan_json(r#"{"fs":{"write":["."],"protect":[".git/info"]}}"#).unwrap();
    assert!(!plan.spec.placeholders[0].dir);
    // Protecting a writable grant itself is a contradiction.
    let e = plan_json(r#"{"fs":{"write":["."],"protect":["."]}}"#).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("fs.protect[0]"));
}

#[test]
fn protect_pins_the_symlinks_on_the_way() {
    // ~/.config/nvim -> ../dotfiles/nvim: the link itself cannot be replaced, and the
    // file it leads to is read-only.
    let plan = plan_json(r#"{"fs":{"write":["~"],"protect":["~/.config/nvim/init.lua","~/.bashrc"]}}"#).unwrap();
    let s = &plan.spec;
    for (t, ro) in [
        ("/home/u/.config", false),
        ("/home/u/.config/nvim", false),
        ("/home/u/dotfiles", false),
        ("/home/u/dotfiles/nvim", false),
        ("/home/u/dotfiles/nvim/init.lua", true),
        ("/home/u/.bashrc", false),
        ("/home/u/dotfiles/bashrc", true),
    ] {
        assert!(s.mounts.contains(&pin(t, ro)), "{t}: {:?}", s.mounts);
    }
    assert!(plan.caveats.is_empty(), "{:?}", plan.caveats);
    // A link out of every grant is pinned: what it leads to is invisible, so nothing can
    // be created there, and it cannot be replaced by a directory of the command's own.
    let plan = plan_json(r#"{"fs":{"write":["."],"protect":["out/hooks"]}}"#).unwrap();
    assert!(plan.spec.mounts.contains(&pin("/home/u/work/out", false)));
    assert!(plan.spec.placeholders.is_empty());
}

#[test]
fn grants_never_follow_a_symlink_an_earlier_run_could_have_planted() {
    for (json, field) in [
        (r#"{"fs":{"write":["out"]}}"#, "fs.write[0]"),
        (r#"{"fs":{"read":["out/id_rsa"]}}"#, "fs.read[0]"),
        (r#"{"fs":{"read":["~/link"]}}"#, "fs.read[0]"),
        (r#"{"fs":{"exec":["~/.config/nvim"]}}"#, "fs.exec[0]"),
        (r#"{"fs":{"volumes":[{"source":"out","target":"/out"}]}}"#, "fs.volumes[0].source"),
        (r#"{"fs":{"allowUnixSockets":["~/link/x.sock"]}}"#, "fs.allowUnixSockets[0]"),
    ] {
        let e = plan_json(json).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some(field)), "{json}");
        assert!(e.message.contains("symlink"), "{e}");
    }
    let e = plan_json(r#"{"fs":{"write":["out"]}}"#).unwrap_err();
    assert!(e.hint.unwrap().contains("/home/u/secret"));
    // System links (in directories only root can write) are followed.
    let plan = plan_json(r#"{"fs":{"read":["/var/run/user"]}}"#).unwrap();
    assert!(plan.spec.mounts.contains(&bind("/run/user", "/run/user", false, false)));
}

#[test]
fn a_root_caller_trusts_only_the_systems_own_links() {
    let root = Context { uid: 0, gid: 0, ..ctx() };
    let mut fs = FakeFs::debian();
    // A root-owned link in a root-owned directory a root caller's sandbox could write.
    fs.owners.insert("/srv/ci".into(), Owner { uid: 0, mode: 0o755, links: 1 });
    assert!(plan_with(r#"{"fs":{"read":["/srv/ci/out"]}}"#, &root, &fs).is_err());
    assert!(plan_with(r#"{"fs":{"read":["/var/run/user"]}}"#, &root, &fs).is_ok());
    // Nor a link deeper under /usr or /etc: an earlier root run granted its directory.
    fs.add("/usr/local/share", FileKind::Dir);
    fs.add("/usr/local/share/x", FileKind::Dir);
    fs.add("/usr/local/share/x/out", FileKind::Symlink("/home/u/secret".into()));
    assert!(plan_with(r#"{"fs":{"write":["/usr/local/share/x/out"]}}"#, &root, &fs).is_err());
    // For anyone else it cannot have been planted there.
    assert!(plan_with(r#"{"fs":{"read":["/srv/ci/out"]}}"#, &ctx(), &fs).is_ok());
    // World-writable directories are never trusted.
    fs.add("/var/tmp/l", FileKind::Symlink("/data".into()));
    assert!(plan_with(r#"{"fs":{"read":["/var/tmp/l"]}}"#, &ctx(), &fs).is_err());
}

#[test]
fn the_whole_host_can_be_granted() {
    for (json, writable, exec) in [
        (r#"{"fs":{"read":["/"]}}"#, false, false),
        (r#"{"fs":{"write":["/"]}}"#, true, true),
        (r#"{"fs":{"exec":["/"]}}"#, false, true),
    ] {
        let plan = plan_json(json).unwrap();
        let s = &plan.spec;
        assert!(s.mounts.contains(&bind("/", "/", writable, exec)), "{json}");
        assert_eq!(position(&plan, "/"), 0);
        // The system directories keep running programs; the host's own links show.
        assert!(s.mounts.contains(&bind("/usr", "/usr", writable, true)), "{json}: {:?}", s.mounts);
        assert!(!s.mounts.iter().any(|m| matches!(m, MountSpec::Symlink { .. })));
        assert!(s.mounts.contains(&mask("/etc/shadow")));
        assert!(s.mounts.contains(&MountSpec::Tmpfs { target: "/tmp".into(), exec: true }));
        assert_eq!(s.cwd, PathBuf::from("/home/u/work"));
    }
}

#[test]
fn volumes_bind_elsewhere() {
    let plan = plan_json(r#"{"fs":{"volumes":[{"source":"/data","target":"/mnt/data","readOnly":true},{"source":"~/work","target":"/work"}]}}"#).unwrap();
    assert!(plan.spec.mounts.contains(&bind("/data", "/mnt/data", false, false)));
    assert!(plan.spec.mounts.contains(&bind("/home/u/work", "/work", true, true)));
    assert!(plan.spec.landlock.rules.iter().any(|r| r.path == Path::new("/work") && r.access.write));
}

#[test]
fn listed_sockets_reach_the_gate_and_nothing_is_scanned() {
    // Sockets in granted trees are not searched for at plan time: the socket gate
    // refuses every one the policy does not list, whenever it appeared.
    let plan = plan_json(r#"{"fs":{"write":["."]}}"#).unwrap();
    assert!(!plan.spec.mounts.contains(&mask("/home/u/work/agent.sock")));
    assert!(plan.spec.unix_sockets.is_empty());
    assert!(plan.spec.seccomp.gate);
    let plan =
        plan_json(r#"{"fs":{"write":["."],"allowUnixSockets":["agent.sock","/run/user/docker.sock"]}}"#).unwrap();
    assert!(plan.spec.mounts.contains(&bind("/run/user/docker.sock", "/run/user/docker.sock", true, false)));
    assert_eq!(
        plan.spec.unix_sockets,
        [PathBuf::from("/home/u/work/agent.sock"), PathBuf::from("/run/user/docker.sock")]
    );
    let mut host = HostCapabilities::full_linux();
    host.seccomp_user_notif = false;
    let p = Policy::from_json(r#"{"fs":{"write":["."]}}"#).unwrap();
    let ungated = super::plan(&p, &[], &ctx(), &host, &FakeFs::debian()).unwrap();
    assert!(!ungated.spec.seccomp.gate);
    assert!(ungated.caveats.iter().any(|c| c.code == "UNIX_SOCKETS_UNGATED"), "{:?}", ungated.caveats);
}

#[test]
fn port_rules_close_the_protocols_they_cannot_see() {
    let plan = plan_json(r#"{"network":{"mode":"host","connectPorts":[443]}}"#).unwrap();
    assert!(plan.spec.seccomp.tcp_only && !plan.spec.seccomp.gate_listen);
    let plan = plan_json(r#"{"network":{"mode":"host","bindPorts":[]}}"#).unwrap();
    assert!(plan.spec.seccomp.tcp_only && plan.spec.seccomp.gate_listen);
    let plan = plan_json(r#"{"network":"host"}"#).unwrap();
    assert!(!plan.spec.seccomp.tcp_only);
}

#[test]
fn write_modes_use_overlays() {
    let plan = plan_json(r#"{"fs":{"write":["."],"writeMode":"ephemeral"},"limits":{"disk":"64M"}}"#).unwrap();
    let overlays: Vec<_> = plan.spec.mounts.iter().filter(|m| matches!(m, MountSpec::Overlay { .. })).collect();
    assert_eq!(overlays.len(), 3, "/etc, /usr and the checkout: {overlays:?}");
    assert_eq!(plan.spec.overlay, Some(OverlaySpec { capture: false }));
    assert_eq!(plan.spec.scratch.size, 64 << 20);
    let plan = plan_json(r#"{"fs":{"read":["/data"],"write":["."],"writeMode":"overlay"}}"#).unwrap();
    assert!(plan.spec.mounts.contains(&MountSpec::Overlay {
        lower: "/home/u/work".into(),
        target: "/home/u/work".into(),
        exec: true,
        layer: 0
    }));
    assert!(plan.spec.mounts.contains(&bind("/data", "/data", false, false)));
    assert_eq!(plan.spec.overlay, Some(OverlaySpec { capture: true }));
    let mut host = HostCapabilities::full_linux();
    host.overlay_in_userns = false;
    let p = Policy::from_json(r#"{"fs":{"write":["."],"writeMode":"overlay"}}"#).unwrap();
    assert_eq!(plan_err(&p, &host).code, ErrorCode::Unsupported);
}

#[test]
fn a_tree_with_mounts_inside_cannot_be_overlaid() {
    let mut fs = FakeFs::debian();
    fs.mounts.push("/home/u/work/a".into());
    let plan = plan_with(r#"{"fs":{"write":["."],"writeMode":"overlay"}}"#, &ctx(), &fs).unwrap();
    assert!(plan.spec.mounts.contains(&bind("/home/u/work", "/home/u/work", false, false)));
    assert_eq!(codes(&plan), ["OVERLAY_SUBMOUNTS"]);
    assert!(plan.caveats[0].message.contains("/home/u/work/a"));
    assert_eq!(plan.caveats[0].field.as_deref(), Some("fs.write[0]"));
    assert!(plan_with(r#"{"fs":{"write":["."],"writeMode":"overlay"},"strict":true}"#, &ctx(), &fs).is_err());
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
    assert_eq!(codes(&plan), ["LANDLOCK_NO_IOCTL"]);
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
    assert_eq!(plan.spec.scratch.size, 16 << 20);
    // A cgroup made for other limits carries the default process bound too.
    let plan = plan_json(r#"{"limits":{"memory":"256M"}}"#).unwrap();
    assert_eq!(plan.spec.cgroup, Some(CgroupLimits { memory: Some(256 << 20), cpus: None, pids: Some(DEFAULT_PIDS) }));
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
    assert_eq!(codes(&plan), ["MEMORY_PER_PROCESS", "PIDS_BY_RLIMIT", "CPU_SHARE_UNENFORCED"]);
    assert!(plan.caveats[0].message.contains("uid 1000"));
}

fn root() -> Context {
    Context { uid: 0, gid: 0, ..ctx() }
}

fn plan_root(p: &Policy, host: &HostCapabilities) -> Result<Plan> {
    plan(p, &[], &root(), host, &FakeFs::debian())
}

#[test]
fn root_callers_run_as_unprivileged_host_ids_with_their_grants_idmapped() {
    let p = Policy::from_json(
        r#"{"fs":{"read":["/data"],"write":["."],"protect":[".git/config"],"volumes":[{"source":"/tmp/x","target":"/mnt/x"}]}}"#,
    )
    .unwrap();
    let planned = plan_root(&p, &HostCapabilities::full_linux()).unwrap();
    assert!(planned.caveats.is_empty(), "{:?}", planned.caveats);
    let id = planned.spec.identity.expect("a root caller's ids are shifted");
    assert_eq!((planned.spec.uid, id.host_uid, id.host_gid), (0, 2_080_374_784, 2_080_374_784));
    // The caller's grants keep the caller's owners (what protect pins inside them is a copy
    // of their mount, idmapped alike); the system directories do not.
    for t in ["/data", "/home/u/work", "/mnt/x"] {
        assert!(id.idmapped.contains(&PathBuf::from(t)), "{t}: {:?}", id.idmapped);
    }
    assert!(!id.idmapped.iter().any(|t| t.starts_with("/usr") || t.starts_with("/etc")), "{:?}", id.idmapped);
    // Granting a system directory explicitly makes it the caller's grant.
    let p = Policy::from_json(r#"{"fs":{"read":["/etc"]}}"#).unwrap();
    let planned = plan_root(&p, &HostCapabilities::full_linux()).unwrap();
    assert_eq!(planned.spec.identity.unwrap().idmapped, vec![PathBuf::from("/etc")]);
    // Non-root callers keep their own ids.
    assert!(plan_json(r#"{"fs":{"write":["."]}}"#).unwrap().spec.identity.is_none());
}

#[test]
fn root_identity_gaps_are_caveats() {
    let p = Policy::from_json(r#"{"fs":{"write":["."]}}"#).unwrap();
    let mut host = HostCapabilities::full_linux();
    host.identity.idmapped_mounts = false;
    let planned = plan_root(&p, &host).unwrap();
    assert_eq!(planned.caveats.len(), 1);
    assert_eq!(planned.caveats[0].code, "IDMAP_UNSUPPORTED");
    assert!(planned.caveats[0].message.contains("/home/u/work"), "{}", planned.caveats[0].message);
    assert!(planned.spec.identity.unwrap().idmapped.is_empty());
    host.identity.root_maps_to = None;
    host.identity.detail = Some("uid 2080374784 is user x".into());
    let planned = plan_root(&p, &host).unwrap();
    assert!(planned.spec.identity.is_none());
    assert_eq!(planned.caveats[0].code, "ROOT_IDENTITY");
    assert!(planned.caveats[0].message.contains("user x"));
    let strict = Policy::from_json(r#"{"fs":{"write":["."]},"strict":true}"#).unwrap();
    let e = plan_root(&strict, &host).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
}

#[test]
fn an_unguarded_write_grant_of_a_root_caller_is_a_caveat() {
    let mut host = HostCapabilities::full_linux();
    let write = Policy::from_json(r#"{"fs":{"write":["."]}}"#).unwrap();
    let planned = plan_root(&write, &host).unwrap();
    assert!(planned.caveats.is_empty(), "{:?}", planned.caveats);
    assert!(planned.spec.identity.unwrap().guard_setid);
    host.identity.setid_guard = false;
    host.identity.setid_guard_detail = Some("fanotify_init: EPERM".into());
    let planned = plan_root(&write, &host).unwrap();
    assert_eq!(planned.caveats.len(), 1);
    assert_eq!(planned.caveats[0].code, "SETID_UNGUARDED");
    assert!(planned.caveats[0].message.contains("/home/u/work") && planned.caveats[0].message.contains("EPERM"));
    assert!(!planned.spec.identity.unwrap().guard_setid);
    // Nothing written reaches the host through a read grant or an overlay.
    for json in [r#"{"fs":{"read":["."]}}"#, r#"{"fs":{"write":["."],"writeMode":"overlay"}}"#] {
        let planned = plan_root(&Policy::from_json(json).unwrap(), &host).unwrap();
        assert!(planned.caveats.iter().all(|c| c.code != "SETID_UNGUARDED"), "{json}: {:?}", planned.caveats);
    }
    let strict = Policy::from_json(r#"{"fs":{"write":["."]},"strict":true}"#).unwrap();
    assert_eq!(plan_root(&strict, &host).unwrap_err().code, ErrorCode::Unsupported);
}

#[test]
fn a_root_caller_with_idmapped_grants_sets_no_extended_attributes() {
    let mut host = HostCapabilities::full_linux();
    let write = Policy::from_json(r#"{"fs":{"write":["."]}}"#).unwrap();
    assert!(plan_root(&write, &host).unwrap().spec.seccomp.no_xattr_writes);
    // Without idmapped grants the sandbox owns none of host root's files.
    host.identity.idmapped_mounts = false;
    assert!(!plan_root(&write, &host).unwrap().spec.seccomp.no_xattr_writes);
}

#[test]
fn io_uring_and_openat2_cannot_be_allowed() {
    for (json, field) in [
        (r#"{"seccomp":{"allow":["io_uring_setup"]}}"#, "seccomp.allow[0]"),
        (r#"{"seccomp":{"profile":"permissive","allow":["uname","io_uring_enter"]}}"#, "seccomp.allow[1]"),
        (r#"{"seccomp":{"profile":"strict","allow":["openat2"]}}"#, "seccomp.allow[0]"),
    ] {
        let e = plan_json(json).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{json}: {e}");
    }
}

#[test]
fn pids_without_a_cgroup_say_how_they_are_counted() {
    let p: Policy = serde_json::from_str(r#"{"limits":{"pids":64}}"#).unwrap();
    let mut host = HostCapabilities::full_linux();
    host.cgroup.controllers.retain(|c| c != "pids");
    let plan = super::plan(&p, &[], &ctx(), &host, &FakeFs::debian()).unwrap();
    assert_eq!(plan.spec.rlimits.processes, Some(64));
    let c = plan.caveats.iter().find(|c| c.code == "PIDS_BY_RLIMIT").expect("a caveat");
    assert!(c.message.contains("per sandbox"), "{}", c.message);
    assert_eq!(c.field.as_deref(), Some("limits.pids"));
    host.kernel = "5.10.0-28-amd64".into();
    let plan = super::plan(&p, &[], &ctx(), &host, &FakeFs::debian()).unwrap();
    let c = plan.caveats.iter().find(|c| c.code == "PIDS_BY_RLIMIT").expect("a caveat");
    assert!(c.message.contains("all of the user's processes"), "{}", c.message);
    // With the controller: a cgroup, no caveat.
    let plan = super::plan(&p, &[], &ctx(), &HostCapabilities::full_linux(), &FakeFs::debian()).unwrap();
    assert!(plan.caveats.iter().all(|c| c.code != "PIDS_BY_RLIMIT"));
}

#[test]
fn a_grant_inside_a_hidden_or_protected_tree_is_held_to_that_rule() {
    // A volume whose source lies inside a denied directory is the same contradiction as a
    // read of that path.
    for json in [
        r#"{"fs":{"read":["~"],"deny":["~/.ssh"],"volumes":[{"source":"~/.ssh/id_ed25519","target":"/key"}]}}"#,
        r#"{"fs":{"deny":["~/dotfiles"],"volumes":[{"source":"~/dotfiles/nvim","target":"/nvim"}]}}"#,
    ] {
        let e = plan_json(json).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::PolicyInvalid, Some("fs.volumes[0]")), "{json}: {e}");
    }
    // A writable grant inside a protected directory cannot be written.
    for json in [
        r#"{"fs":{"write":["."],"protect":[".git"],"volumes":[{"source":".git/config","target":"/g"}]}}"#,
        r#"{"fs":{"write":[".", "a/b"],"protect":["a"]}}"#,
    ] {
        let e = plan_json(json).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyInvalid, "{json}: {e}");
        assert!(e.message.contains("writable"), "{json}: {e}");
    }
}

/// A denied or protected directory whose files have other names outside it says so,
/// naming the first few and the count; one too large to check says that; strict refuses.
#[test]
fn directories_with_files_linked_out_of_them_are_caveats() {
    let mut fs = FakeFs::debian();
    fs.add("/home/u/work/.git/hooks", FileKind::Dir);
    fs.linked.insert(
        "/home/u/work/.git/hooks".into(),
        LinkedOut { first: vec!["/home/u/work/.git/hooks/pre-commit".into()], count: 1, complete: true },
    );
    fs.linked.insert(
        "/home/u/.ssh".into(),
        LinkedOut {
            first: vec!["/home/u/.ssh/a".into(), "/home/u/.ssh/b".into(), "/home/u/.ssh/c".into()],
            count: 7,
            complete: false,
        },
    );
    let p = plan_with(
        r#"{"fs":{"read":["/home/u"],"write":["/home/u/work"],"protect":["/home/u/work/.git/hooks"],"deny":["/home/u/.ssh"]}}"#,
        &ctx(),
        &fs,
    )
    .unwrap();
    let find =
        |code: &str| p.caveats.iter().find(|c| c.code == code).unwrap_or_else(|| panic!("{code}: {:?}", p.caveats));
    let prot = find("PROTECTED_DIR_HAS_LINKS");
    assert_eq!(prot.field.as_deref(), Some("fs.protect[0]"));
    assert!(
        prot.message.contains("/home/u/work/.git/hooks/pre-commit") && prot.message.contains("1 file(s)"),
        "{}",
        prot.message
    );
    let deny = find("DENIED_DIR_HAS_LINKS");
    assert_eq!(deny.field.as_deref(), Some("fs.deny[0]"));
    assert!(deny.message.contains("/home/u/.ssh/a, /home/u/.ssh/b, /home/u/.ssh/c, and 4 more"), "{}", deny.message);
    let unchecked = find("LINKS_UNCHECKED");
    assert_eq!(unchecked.field.as_deref(), Some("fs.deny[0]"));
    // Once per directory, however many places show it.
    assert_eq!(codes(&p).iter().filter(|c| **c == "DENIED_DIR_HAS_LINKS").count(), 1);
    // Strict mode refuses; a directory with nothing linked out raises nothing.
    let strict = plan_with(
        r#"{"strict":true,"fs":{"write":["/home/u/work"],"protect":["/home/u/work/.git/hooks"]}}"#,
        &ctx(),
        &fs,
    )
    .unwrap_err();
    assert!(strict.message.contains("PROTECTED_DIR_HAS_LINKS"), "{}", strict.message);
    let clean = plan_with(r#"{"fs":{"write":["/home/u/work"],"protect":["/home/u/work/.git"]}}"#, &ctx(), &fs).unwrap();
    assert!(!codes(&clean).iter().any(|c| c.contains("LINKS")), "{:?}", clean.caveats);
}

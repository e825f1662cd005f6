//! Kernel-level tests of the Linux backend through the helper, without Node: the protocol,
//! setup failures, exec errors, timeouts and concurrency. (The TypeScript suite covers
//! isolation in depth, as root and as an unprivileged user.)

use corral_core::{ErrorCode, ExitStatus, Policy};
use corral_linux::{client::run, Supervisor};
use std::path::Path;
use std::sync::Arc;

fn supervisor() -> Arc<Supervisor> {
    Supervisor::start(Path::new(env!("CARGO_BIN_EXE_corral-helper"))).expect("helper starts")
}

fn plan(sup: &Supervisor, policy: &str, argv: &[&str]) -> corral_core::Plan {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let ctx = corral_linux::current_context().unwrap();
    corral_linux::plan(&Policy::from_json(policy).unwrap(), &argv, &ctx, sup.caps()).unwrap()
}

fn spec(sup: &Supervisor, policy: &str, argv: &[&str]) -> corral_core::SandboxSpec {
    plan(sup, policy, argv).spec
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn runs_and_reports_status_and_output() {
    let sup = supervisor();
    let out = rt()
        .block_on(run::run(&sup, &plan(&sup, "{}", &["/bin/sh", "-c", "echo out; echo err >&2; exit 4"]), None))
        .unwrap();
    assert_eq!(out.stats.status, ExitStatus::Exited { code: 4 });
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert!(out.stats.wall_time_us > 0);
}

#[test]
fn exec_failures_are_typed() {
    let sup = supervisor();
    let e = rt().block_on(run::run(&sup, &plan(&sup, "{}", &["/nonexistent-binary"]), None)).unwrap_err();
    assert_eq!((e.code, e.errno), (ErrorCode::SpawnFailed, Some(libc::ENOENT)));
}

#[test]
fn setup_failures_are_reported_not_hung() {
    let sup = supervisor();
    let mut p = plan(&sup, "{}", &["true"]);
    // Inside a granted tree, so the command checks pass; missing, so chdir fails in setup.
    p.spec.cwd = "/usr/no/such/dir".into();
    let e = rt().block_on(run::run(&sup, &p, None)).unwrap_err();
    assert_eq!(e.code, ErrorCode::SpawnFailed);
    assert!(e.message.contains("chdir"), "{e}");
}

#[test]
fn timeout_kills_the_sandbox() {
    let sup = supervisor();
    let out = rt().block_on(run::run(&sup, &plan(&sup, r#"{"timeout":"200ms"}"#, &["sleep", "30"]), None)).unwrap();
    assert!(out.stats.timed_out);
    assert_eq!(out.stats.status, ExitStatus::Signaled { signal: libc::SIGKILL });
}

#[test]
fn many_sandboxes_in_flight_share_one_helper() {
    let sup = supervisor();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..32 {
            let sup = sup.clone();
            let p = plan(&sup, "{}", &["/bin/sh", "-c", &format!("echo {i}")]);
            tasks.push(tokio::spawn(async move { run::run(&sup, &p, None).await }));
        }
        let mut outs = Vec::new();
        for t in tasks {
            outs.push(t.await.unwrap().unwrap());
        }
        outs
    });
    for (i, out) in results.iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{i}\n"));
    }
}

#[test]
fn killing_a_sandbox_by_signal() {
    let sup = supervisor();
    let s = spec(&sup, "{}", &["sleep", "30"]);
    let rt = rt();
    let stats = rt.block_on(async {
        let mut sb = sup
            .spawn(&s, [corral_linux::Stdio::Null, corral_linux::Stdio::Null, corral_linux::Stdio::Null], None)
            .unwrap();
        sb.started().await.unwrap();
        sup.signal(sb.id, libc::SIGTERM).unwrap();
        sb.wait().await.unwrap()
    });
    assert_eq!(stats.stats.status, ExitStatus::Signaled { signal: libc::SIGTERM });
}

#[test]
fn dropping_the_supervisor_ends_its_sandboxes() {
    let sup = supervisor();
    let helper = sup.helper_pid();
    let s = spec(&sup, "{}", &["sleep", "30"]);
    let rt = rt();
    let pid = rt.block_on(async {
        let mut sb = sup
            .spawn(&s, [corral_linux::Stdio::Null, corral_linux::Stdio::Null, corral_linux::Stdio::Null], None)
            .unwrap();
        sb.started().await.unwrap()
    });
    drop(sup);
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() && !Path::new(&format!("/proc/{helper}")).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("sandbox {pid} or helper {helper} survived the supervisor");
}

#[test]
fn a_path_that_becomes_a_symlink_after_planning_fails_the_run() {
    let sup = supervisor();
    let base = std::env::temp_dir().join(format!("corral-swap-{}", std::process::id()));
    let granted = base.join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    let p = plan(&sup, &format!(r#"{{"fs":{{"write":["{}"]}}}}"#, granted.display()), &["true"]);
    // Swap the planned directory for a link to somewhere it must not reach.
    std::fs::remove_dir(&granted).unwrap();
    std::os::unix::fs::symlink("/etc", &granted).unwrap();
    let e = rt().block_on(run::run(&sup, &p, None)).unwrap_err();
    std::fs::remove_dir_all(&base).unwrap();
    assert_eq!(e.code, ErrorCode::SpawnFailed);
    assert!(e.message.contains("symlink appeared"), "{e}");
}

#[test]
fn the_command_starts_in_the_callers_directory_when_the_sandbox_shows_it() {
    let sup = supervisor();
    let here = std::env::current_dir().unwrap().canonicalize().unwrap();
    let pwd = |policy: &str| {
        let out = rt().block_on(run::run(&sup, &plan(&sup, policy, &["/bin/sh", "-c", "pwd; ls"]), None)).unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    // Only a file inside it is granted: the sandbox holds the directory with that entry alone.
    assert_eq!(pwd(r#"{"fs":{"read":["./Cargo.toml"]}}"#), format!("{}\nCargo.toml\n", here.display()));
    // Nothing of it is shown: the command starts in / (and the plan says so).
    assert!(pwd("{}").starts_with("/\n"));
}

/// A directory of this test's own, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = Path::new("/var/tmp").join(format!("corral-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(sup: &Supervisor, policy: &str, script: &str) -> run::Output {
    rt().block_on(run::run(sup, &plan(sup, policy, &["/bin/sh", "-c", script]), None)).unwrap()
}

#[test]
fn the_whole_host_can_be_granted() {
    let sup = supervisor();
    for grant in ["read", "exec"] {
        let out =
            sh(&sup, &format!(r#"{{"fs":{{"{grant}":["/"]}}}}"#), "cat /etc/hostname >/dev/null && ls /var && echo ok");
        assert_eq!(
            out.stats.status,
            ExitStatus::Exited { code: 0 },
            "{grant}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.ends_with(b"ok\n"));
    }
}

#[test]
fn a_protected_path_keeps_its_name_whatever_happens_above_it() {
    let sup = supervisor();
    let dir = Scratch::new("protect");
    let r = dir.0.join("repo");
    std::fs::create_dir_all(r.join(".git")).unwrap();
    std::fs::write(r.join(".git/config"), "[core]\n").unwrap();
    let policy = format!(r#"{{"fs":{{"write":["{0}"],"protect":["{0}/.git/config","{0}/.git/hooks"]}}}}"#, r.display());
    let script = format!(
        "cd {}; cp -a .git .git.new; echo evil > .git.new/config; mv .git .git.orig || echo refused; mv -T .git.new .git || echo refused; echo x > .git/hooks/pre-commit || echo refused",
        r.display()
    );
    let out = sh(&sup, &policy, &script);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "refused\nrefused\nrefused\n");
    assert_eq!(std::fs::read_to_string(r.join(".git/config")).unwrap(), "[core]\n");
    // The placeholder that reserved .git/hooks is gone again.
    assert!(!r.join(".git/hooks").exists());
}

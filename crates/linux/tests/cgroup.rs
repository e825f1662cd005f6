//! Kernel-level tests of `corral_linux::helper::cgroup`: real cgroups, real processes.
//!
//! They need root and usable cgroups. Without them each test prints `SKIPPED: <why>` and
//! returns early; nothing is faked. With CORRAL_REQUIRE_ALL=1 (as in CI) a missing
//! prerequisite is a failure instead. All tests share this process's base cgroup (`h<pid>`),
//! so they run one at a time.

use corral_core::spec::CgroupLimits;
use corral_linux::helper::cgroup::{join_self, Manager, SandboxCgroup};
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

const MIB: u64 = 1 << 20;

/// A prerequisite is missing: the test is skipped with the reason printed, or fails under
/// CORRAL_REQUIRE_ALL=1.
fn skip(test: &str, why: &str) {
    if std::env::var_os("CORRAL_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{test}: {why} (CORRAL_REQUIRE_ALL=1 makes a missing prerequisite a failure)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// The lock and a manager, or None (the test skipped, see `skip`) where cgroups cannot be
/// tested.
fn setup(test: &str) -> Option<(MutexGuard<'static, ()>, Manager)> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nix::unistd::geteuid().is_root() {
        skip(test, &format!("needs root (uid {})", nix::unistd::geteuid()));
        return None;
    }
    match Manager::new() {
        Ok(m) => {
            eprintln!("{test}: cgroup {} with {:?}", m.version(), m.controllers());
            Some((guard, m))
        }
        Err(e) => {
            skip(test, &format!("cgroups are not usable here: {e}"));
            None
        }
    }
}

/// Whether `m` has `controller`; if not, the test is skipped (see `skip`).
fn has(test: &str, m: &Manager, controller: &str) -> bool {
    let ok = m.controllers().iter().any(|c| c == controller);
    if !ok {
        skip(test, &format!("no {controller} controller ({:?})", m.controllers()));
    }
    ok
}

/// Where the hierarchy of `controller` is mounted (v1), from /proc/self/mountinfo.
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split(' ');
        if r.next()? != "cgroup" {
            return None;
        }
        let opts = r.nth(1)?;
        let point = left.split(' ').nth(4)?;
        opts.split(',').any(|o| o == controller).then(|| PathBuf::from(point))
    })
}

/// The parent of this process's base cgroup, relative to each hierarchy's mount (as root).
fn base_parent_rel() -> PathBuf {
    match std::env::var("CORRAL_CGROUP") {
        Ok(p) if !p.trim().is_empty() => PathBuf::from(p.trim().trim_start_matches('/')),
        _ => PathBuf::from("corral"),
    }
}

/// The base's parent directory, per controller (v2: one entry, "").
fn parent_dirs(m: &Manager) -> Vec<(String, PathBuf)> {
    let rel = base_parent_rel();
    if m.version() == "v2" {
        return vec![(String::new(), Path::new("/sys/fs/cgroup").join(rel))];
    }
    let mut names = m.controllers();
    names.push("cpuacct".into());
    names.into_iter().filter_map(|c| Some((c.clone(), v1_mount(&c)?.join(&rel)))).collect()
}

/// Directory of sandbox `id` in the hierarchy of `controller` ("" on v2).
fn sandbox_dir(m: &Manager, controller: &str, id: u64) -> PathBuf {
    let rel = base_parent_rel().join(format!("h{}", std::process::id())).join(format!("s{id}"));
    if m.version() == "v2" {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        v1_mount(controller).expect("controller mounted").join(rel)
    }
}

fn all_dirs(m: &Manager, id: u64) -> Vec<PathBuf> {
    parent_dirs(m).iter().map(|(c, _)| sandbox_dir(m, c, id)).collect()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).trim().to_string()
}

fn keyed(path: &Path, key: &str) -> Option<u64> {
    read(path).lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Starts `cmd` inside `cg`: joining happens in the child before `execve`, like corral's
/// v1 path (on v2 the test opens `cgroup.procs` itself; the helper uses CLONE_INTO_CGROUP).
fn spawn_in(m: &Manager, cg: &SandboxCgroup, id: u64, cmd: &mut Command) -> Child {
    let v2_procs = (m.version() == "v2").then(|| {
        fs::OpenOptions::new().write(true).open(sandbox_dir(m, "", id).join("cgroup.procs")).expect("open cgroup.procs")
    });
    let mut fds: [RawFd; 8] = [-1; 8];
    let list: Vec<RawFd> = match &v2_procs {
        Some(f) => vec![f.as_raw_fd()],
        None => cg.procs_fds().iter().map(|fd| fd.as_raw_fd()).collect(),
    };
    assert!(!list.is_empty() && list.len() <= fds.len(), "procs fds: {list:?}");
    fds[..list.len()].copy_from_slice(&list);
    let n = list.len();
    // SAFETY: the closure only calls join_self (write(2)) on descriptors that stay open
    // until spawn returns; nothing allocates in the forked child.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds[..n] {
                join_self(&[BorrowedFd::borrow_raw(fd)])?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn");
    drop(v2_procs);
    child
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn limits_oom_and_destroy() {
    let Some((_lock, m)) = setup("limits_oom_and_destroy") else { return };
    if !has("limits_oom_and_destroy", &m, "memory") {
        return;
    }
    let id = 101;
    let limits = CgroupLimits { memory: Some(64 * MIB), cpus: Some(0.5), pids: Some(16) };
    let cg = m.create(id, &limits).expect("create");
    if m.version() == "v2" {
        assert!(cg.dir_fd().is_some() && cg.procs_fds().is_empty());
        let dir = sandbox_dir(&m, "", id);
        assert_eq!(read(&dir.join("memory.max")), (64 * MIB).to_string());
        if dir.join("memory.swap.max").exists() {
            assert_eq!(read(&dir.join("memory.swap.max")), "0");
        }
        if dir.join("memory.oom.group").exists() {
            assert_eq!(read(&dir.join("memory.oom.group")), "1");
        }
        assert_eq!(read(&dir.join("pids.max")), "16");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    } else {
        assert!(cg.dir_fd().is_none() && !cg.procs_fds().is_empty());
        let mem = sandbox_dir(&m, "memory", id);
        assert_eq!(read(&mem.join("memory.limit_in_bytes")), (64 * MIB).to_string());
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), (64 * MIB).to_string());
        }
        assert_eq!(read(&sandbox_dir(&m, "pids", id).join("pids.max")), "16");
        let cpu = sandbox_dir(&m, "cpu", id);
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    }

    // 200 MB, every byte written, under a 64 MiB limit without swap: the OOM killer.
    let mut child = spawn_in(&m, &cg, id, Command::new(python()).args(["-c", "b = b'x' * (200 << 20)"]));
    let status = child.wait().expect("wait");
    eprintln!("allocating child: {status:?}");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "expected an OOM kill, got {status:?}");
    let stats = cg.stats();
    eprintln!("stats: {stats:?}");
    assert!(stats.oom_kills >= 1, "{stats:?}");
    if let Some(peak) = stats.peak_memory {
        assert!((64 * MIB * 8 / 10..=64 * MIB).contains(&peak), "peak {peak} vs limit {}", 64 * MIB);
    } else {
        assert_eq!(m.version(), "v2", "v1 always reports peak memory");
        eprintln!("no memory.peak on this kernel (before 5.19)");
    }
    assert!(stats.cpu.is_some_and(|t| t.user_us + t.system_us > 0), "{stats:?}");

    let dirs = all_dirs(&m, id);
    assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
    cg.destroy().expect("destroy");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    m.remove();
}

#[test]
fn pids_limit_stops_forks() {
    let Some((_lock, m)) = setup("pids_limit_stops_forks") else { return };
    if !has("pids_limit_stops_forks", &m, "pids") {
        return;
    }
    let id = 102;
    let cg = m.create(id, &CgroupLimits { pids: Some(16), ..CgroupLimits::default() }).expect("create");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "for i in $(seq 40); do sleep 1 & done; wait"]).stderr(Stdio::piped());
    let mut child = spawn_in(&m, &cg, id, &mut cmd);
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    let status = child.wait().expect("wait");
    eprintln!("forking shell: {status:?}, stderr: {}", stderr.trim());
    assert!(!status.success(), "the shell should fail to fork 40 sleeps under pids.max=16");
    let events = sandbox_dir(&m, "pids", id).join("pids.events");
    assert!(keyed(&events, "max").is_some_and(|n| n > 0), "pids.events: {}", read(&events));
    let dirs = all_dirs(&m, id);
    // The sleeps that did start are still inside: destroy kills them.
    cg.destroy().expect("destroy");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn freeze_thaw_and_destroy_while_frozen() {
    let Some((_lock, m)) = setup("freeze_thaw_and_destroy_while_frozen") else { return };
    if !has("freeze_thaw_and_destroy_while_frozen", &m, "freezer") {
        return;
    }
    let id = 103;
    let cg = m.create(id, &CgroupLimits::default()).expect("create");
    let tmp = std::env::temp_dir().join(format!("corral-cgroup-test-{}", std::process::id()));
    fs::create_dir_all(&tmp).expect("temp dir");
    let counter = tmp.join("counter");
    let mut cmd = Command::new("sh");
    // `1<>` overwrites in place without truncating (the numbers only grow longer), so the
    // file always holds a whole number.
    cmd.args(["-c", "i=0; while :; do i=$((i+1)); echo $i 1<>\"$1\"; done", "sh"]).arg(&counter);
    let mut child = spawn_in(&m, &cg, id, &mut cmd);
    let read_counter = || fs::read_to_string(&counter).unwrap_or_default();
    let started = Instant::now();
    while read_counter().trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "the counter never started");
        std::thread::sleep(Duration::from_millis(10));
    }

    cg.freeze().expect("freeze");
    let a = read_counter();
    std::thread::sleep(Duration::from_millis(300));
    let b = read_counter();
    eprintln!("frozen: {:?} then {:?}", a.trim(), b.trim());
    assert!(a.trim().parse::<u64>().is_ok(), "counter {a:?}");
    assert_eq!(a, b, "the counter moved while frozen");

    cg.thaw().expect("thaw");
    let thawed = Instant::now();
    loop {
        let c = read_counter();
        if !c.trim().is_empty() && c != a {
            eprintln!("thawed: {:?}", c.trim());
            break;
        }
        assert!(thawed.elapsed() < Duration::from_secs(20), "the counter did not move after thaw");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Destroying a paused sandbox kills it too.
    cg.freeze().expect("freeze again");
    let dirs = all_dirs(&m, id);
    cg.destroy().expect("destroy");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let _ = fs::remove_dir_all(&tmp);
}

#[test]
fn drop_destroys_and_limits_need_controllers() {
    let Some((_lock, m)) = setup("drop_destroys_and_limits_need_controllers") else { return };
    let id = 104;
    let cg = m.create(id, &CgroupLimits::default()).expect("create");
    let mut child = spawn_in(&m, &cg, id, Command::new("sleep").arg("600"));
    let dirs = all_dirs(&m, id);
    assert!(m.create(id, &CgroupLimits::default()).is_err(), "a second cgroup with the same id");
    drop(cg);
    assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let bad = CgroupLimits { cpus: Some(-1.0), ..CgroupLimits::default() };
    if m.controllers().iter().any(|c| c == "cpu") {
        assert!(m.create(105, &bad).is_err());
        assert!(all_dirs(&m, 105).iter().all(|d| !d.exists()));
    }
}

#[test]
fn stale_bases_of_dead_helpers_are_removed() {
    let Some((_lock, first)) = setup("stale_bases_of_dead_helpers_are_removed") else { return };
    let mut fake = 999_999;
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(fake), None) != Err(nix::errno::Errno::ESRCH) {
        fake += 1;
    }
    let parents = parent_dirs(&first);
    let own = format!("h{}", std::process::id());
    for (_, p) in &parents {
        fs::create_dir_all(p.join(format!("h{fake}")).join("s7")).expect("fake stale base");
    }
    let second = Manager::new().expect("second manager");
    for (c, p) in &parents {
        assert!(!p.join(format!("h{fake}")).exists(), "stale h{fake} left in {} ({c})", p.display());
        assert!(p.join(&own).is_dir(), "our own base {own} went away in {}", p.display());
    }
    second.remove();
    first.remove();
    for (_, p) in &parents {
        assert!(!p.join(&own).exists(), "{} left behind", p.join(&own).display());
    }
}

#[test]
fn create_destroy_cost() {
    let Some((_lock, m)) = setup("create_destroy_cost") else { return };
    let limits = CgroupLimits {
        memory: m.controllers().iter().any(|c| c == "memory").then_some(256 * MIB),
        pids: m.controllers().iter().any(|c| c == "pids").then_some(64),
        cpus: None,
    };
    let rounds = 50;
    let (mut create, mut stats, mut destroy) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for i in 0..rounds {
        let t = Instant::now();
        let cg = m.create(1000 + i, &limits).expect("create");
        create += t.elapsed();
        let t = Instant::now();
        let _ = cg.stats();
        stats += t.elapsed();
        let t = Instant::now();
        cg.destroy().expect("destroy");
        destroy += t.elapsed();
    }
    let us = |d: Duration| d.as_micros() / u128::from(rounds);
    // Printed for the benchmarks' sake; never asserted.
    eprintln!(
        "per sandbox ({}): create {} µs, stats {} µs, destroy {} µs",
        m.version(),
        us(create),
        us(stats),
        us(destroy)
    );
}

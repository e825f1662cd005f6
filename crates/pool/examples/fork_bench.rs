//! Copy-on-write fork timings for `npm run bench` (fork ×1000 against a plain fork loop,
//! and the memory the clones take). bench/run.mjs drives it.
//!
//! Each case forks N clones from a template that filled 50 MB, and is timed from the first
//! fork request until every clone has exited (clones exit at once, as in the reference C
//! loop; reading the shared data costs the same with or without corral):
//! - `native`: a Rust closure template (this binary, re-executed in the sandbox);
//! - `native-floor`: a bare fork loop in an unsandboxed process of the same size;
//! - `python`: bench/fork_template.py through corral_fork;
//! - `python-floor`: the same script's plain `os.fork` loop, unsandboxed.
//!
//! Memory: the PSS of the template's whole tree with all N clones alive, against the
//! template's own before it forked.
//!
//! Usage: fork_bench --clones N --rounds R [--python SCRIPT --python-lib DIR]
//! Prints one JSON object: `{ "times": case → sorted µs, "memory": case → {template, total} }`.

use corral_core::Policy;
use corral_linux::Supervisor;
use corral_pool::fork::{self, Template};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MB: usize = 50;

struct State {
    hold: bool,
    data: Vec<u8>,
}

fn init() -> State {
    State { hold: std::env::args().nth(1).as_deref() == Some("hold"), data: vec![0x5a; MB << 20] }
}

/// What a held clone does before it sleeps: read one byte in every 64 pages.
fn touch(data: &[u8]) -> u64 {
    data.iter().step_by(4096 * 64).map(|&b| b as u64).sum()
}

fn work(s: &State, _clone: u32) -> i32 {
    if s.hold {
        std::hint::black_box(touch(&s.data));
        std::thread::sleep(Duration::from_secs(600));
    }
    0
}

fn main() {
    fork::template(init, work);
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("floor") {
        return floor(args[2].parse().expect("floor N"));
    }
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let clones: u32 = arg("--clones").map(|v| v.parse().expect("--clones N")).unwrap_or(1000);
    let rounds: usize = arg("--rounds").map(|v| v.parse().expect("--rounds R")).unwrap_or(5);
    let python = arg("--python").zip(arg("--python-lib"));
    raise_nofile();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sup = Supervisor::start(&corral_linux::client::helper_path()).expect("start helper");
    let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let mut times: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut memory = BTreeMap::new();

    let native = |mode: &str| plan(&sup, &[exe.clone(), mode.into()], &[&exe], None);
    for _ in 0..rounds {
        let floor = std::process::Command::new(&exe).args(["floor", &clones.to_string()]).output().unwrap();
        times.entry("native-floor").or_default().push(String::from_utf8_lossy(&floor.stdout).trim().parse().unwrap());
        times.entry("native").or_default().push(rt.block_on(timed_fork(&sup, &native("exit"), clones)));
    }
    memory.insert("native", rt.block_on(held_memory(&sup, &native("hold"), clones)));

    if let Some((script, lib)) = &python {
        let py = |mode: &str| plan(&sup, &["python3".into(), script.clone(), mode.into()], &[script, lib], Some(lib));
        for _ in 0..rounds {
            let plain =
                std::process::Command::new("python3").args([script, "plain", &clones.to_string()]).output().unwrap();
            assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
            times
                .entry("python-floor")
                .or_default()
                .push(String::from_utf8_lossy(&plain.stdout).trim().parse().unwrap());
            times.entry("python").or_default().push(rt.block_on(timed_fork(&sup, &py("exit"), clones)));
        }
        memory.insert("python", rt.block_on(held_memory(&sup, &py("hold"), clones)));
    }
    for v in times.values_mut() {
        v.sort_unstable();
    }
    println!("{}", serde_json::json!({ "clones": clones, "times": times, "memory": memory }));
}

fn plan(sup: &Supervisor, argv: &[String], readable: &[&String], python_lib: Option<&String>) -> corral_core::Plan {
    let ctx = corral_linux::current_context().unwrap();
    let mut policy = serde_json::json!({ "fs": { "read": readable, "exec": [&argv[0]] }, "limits": { "pids": 4096 } });
    if argv[0] == "python3" {
        policy["fs"]["exec"] = serde_json::json!([]);
    }
    if let Some(lib) = python_lib {
        policy["env"] = serde_json::json!({ "PYTHONPATH": lib });
    }
    corral_linux::plan(&Policy::from_json(&policy.to_string()).unwrap(), argv, &ctx, sup.caps()).unwrap()
}

/// µs from the first fork request until all `n` clones have exited.
async fn timed_fork(sup: &Arc<Supervisor>, plan: &corral_core::Plan, n: u32) -> u64 {
    let t = Template::start(sup.clone(), plan).await.expect("template starts");
    let start = Instant::now();
    let clones = t.fork(n).await.expect("fork");
    let mut waits = Vec::with_capacity(clones.len());
    for mut c in clones {
        // The clones print nothing: close our read ends at once.
        (c.stdout, c.stderr) = (None, None);
        waits.push(c.wait());
    }
    for w in waits {
        assert_eq!(w.await, corral_core::ExitStatus::Exited { code: 0 });
    }
    let us = start.elapsed().as_micros() as u64;
    t.close().await.expect("close");
    us
}

/// PSS of the template alone, and of its whole tree with `n` clones alive.
async fn held_memory(sup: &Arc<Supervisor>, plan: &corral_core::Plan, n: u32) -> serde_json::Value {
    let t = Template::start(sup.clone(), plan).await.expect("template starts");
    let template: u64 = tree(t.pid).iter().map(|&p| pss_bytes(p)).sum();
    let clones = t.fork(n).await.expect("fork");
    // Every clone has touched its data once it is asleep; give them a moment.
    tokio::time::sleep(Duration::from_millis(500 + n as u64)).await;
    let procs = tree(t.pid);
    let total: u64 = procs.iter().map(|&p| pss_bytes(p)).sum();
    drop(clones);
    t.close().await.expect("close");
    serde_json::json!({ "template": template, "total": total, "processes": procs.len() })
}

/// The floor: an unsandboxed process of the same size forking `n` children that exit at
/// once, timed from the first fork until all are reaped.
fn floor(n: usize) {
    let state = init();
    // The same memory as a corral template's: serve() moves it to huge pages.
    fork::prefer_huge_pages();
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: this process is single-threaded; the child only reads memory and _exits.
        match unsafe { libc::fork() } {
            // SAFETY: _exit in the child.
            0 => unsafe { libc::_exit(0) },
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            _ => {}
        }
    }
    for _ in 0..n {
        // SAFETY: wait for any child.
        unsafe { libc::wait(std::ptr::null_mut()) };
    }
    let us = start.elapsed().as_micros();
    std::hint::black_box(&state.data); // the 50 MB stayed resident throughout
    println!("{us}");
}

fn raise_nofile() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        for task in std::fs::read_dir(format!("/proc/{}/task", all[i])).into_iter().flatten().flatten() {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(kids.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
        i += 1;
    }
    all
}

fn pss_bytes(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

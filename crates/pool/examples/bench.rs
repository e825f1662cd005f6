//! Timing harness for `npm run bench` (bench/run.mjs drives it and prints the table).
//!
//! Latency cases are timed the same way — start, wait, record — each in its own block
//! after a warm-up (round-robin would let a heavy peer's teardown, such as runsc's or a
//! network namespace's asynchronous cleanup, land on the next case's samples). External
//! commands (the floor `/bin/true`, bwrap, firejail, runsc) start through
//! `std::process::Command` (posix_spawn); corral's cases go through the real client →
//! helper → sandbox path, cold (`--corral`) or from a warm pool (`--pool`).
//!
//! Also measured: throughput with 8 commands in flight, unsandboxed, cold and pooled; and
//! the memory an idle pooled sandbox holds.
//!
//! Usage: bench --iterations N [--external NAME::ARGV]... [--corral NAME::POLICY]... [--pool NAME::POLICY]...
//! Prints one JSON object: `latency` (case → sorted µs), `throughput` (case → runs/s),
//! `idle` (bytes per idle pooled sandbox, PSS and system-wide).

use corral_core::Policy;
use corral_linux::{client::run, Stdio, Supervisor};
use corral_pool::{Pool, PoolOptions, RunRequest};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

enum Case {
    External(Vec<String>),
    Corral(Box<corral_core::Plan>),
    Pooled(Pool),
}

fn true_req() -> RunRequest {
    RunRequest { argv: vec!["/bin/true".into()], ..Default::default() }
}

async fn once(sup: &Supervisor, name: &str, case: &Case) {
    match case {
        Case::External(argv) => {
            let status = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(status.success(), "{name} failed: {status}");
        }
        Case::Corral(plan) => {
            let out =
                run::run_with_stdio(sup, plan, [Stdio::Null, Stdio::Null, Stdio::Null]).await.expect("corral run");
            assert_eq!(out.stats.status, corral_core::ExitStatus::Exited { code: 0 });
        }
        Case::Pooled(pool) => {
            let out = pool.run(true_req()).await.expect("pool run");
            assert_eq!(out.stats.status, corral_core::ExitStatus::Exited { code: 0 });
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut iterations = 200;
    let mut external = vec![("floor".to_string(), vec!["/bin/true".to_string()])];
    let (mut cold, mut pooled) = (Vec::new(), Vec::new());
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--iterations" => iterations = value().parse().expect("--iterations N"),
            "--external" => {
                let v = value();
                let (name, argv) = v.split_once("::").expect("--external NAME::ARGV");
                external.push((name.into(), argv.split_whitespace().map(String::from).collect()));
            }
            "--corral" | "--pool" => {
                let v = value();
                let (name, json) = v.split_once("::").expect("NAME::POLICY");
                let list = if args[i] == "--corral" { &mut cold } else { &mut pooled };
                list.push((name.to_string(), json.to_string()));
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sup = Supervisor::start(&corral_linux::client::helper_path()).expect("start helper");
    let ctx = corral_linux::current_context().unwrap();
    let argv = vec!["/bin/true".to_string()];
    let plan =
        |json: &str| corral_linux::plan(&Policy::from_json(json).expect(json), &argv, &ctx, sup.caps()).expect(json);
    let mut cases: Vec<(String, Case)> = external.into_iter().map(|(n, a)| (n, Case::External(a))).collect();
    for (name, json) in &cold {
        cases.push((name.clone(), Case::Corral(Box::new(plan(json)))));
    }
    let _guard = rt.enter();
    for (name, json) in &pooled {
        let options = PoolOptions { size: 8, max_size: 16, idle_timeout: None };
        cases.push((name.clone(), Case::Pooled(Pool::new(sup.clone(), plan(json), options).expect("pool"))));
    }

    let mut latency: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let warmup = (iterations / 10).max(3);
    for (name, case) in &cases {
        std::thread::sleep(Duration::from_millis(300)); // let the previous case's teardown settle
        for round in 0..warmup + iterations {
            if let Case::Pooled(pool) = case {
                // This case is acquire+exec from a ready pool: let the previous refill finish
                // first (under load, refills cost throughput instead; the throughput case
                // measures that).
                rt.block_on(async {
                    while pool.stats().ready < 2 || pool.stats().preparing > 0 {
                        tokio::time::sleep(Duration::from_micros(200)).await
                    }
                });
            }
            let t = Instant::now();
            rt.block_on(once(&sup, name, case));
            if round >= warmup {
                latency.entry(name.clone()).or_default().push(t.elapsed().as_micros() as u64);
            }
        }
    }
    for v in latency.values_mut() {
        v.sort_unstable();
    }

    // Throughput: runs per second with 8 in flight.
    let mut throughput = BTreeMap::new();
    let total = (iterations * 2).max(200);
    for (name, case) in &cases {
        if !(name == "floor" || name == "corral" || matches!(case, Case::Pooled(_))) {
            continue;
        }
        std::thread::sleep(Duration::from_millis(300));
        let case = Arc::new(case);
        let t = Instant::now();
        rt.block_on(async {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut workers = Vec::new();
            for _ in 0..8 {
                let (next, sup) = (next.clone(), sup.clone());
                let case: &Case = &case;
                // SAFETY of the borrow: the block_on below joins every worker before `case` drops.
                let case: &'static Case = unsafe { std::mem::transmute::<&Case, &'static Case>(case) };
                let name = name.clone();
                workers.push(tokio::spawn(async move {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                        match case {
                            Case::External(argv) => {
                                let s = tokio::process::Command::new(&argv[0]).status().await.expect("spawn");
                                assert!(s.success());
                            }
                            _ => once(&sup, &name, case).await,
                        }
                    }
                }));
            }
            for w in workers {
                w.await.unwrap();
            }
        });
        throughput.insert(name.clone(), total as f64 / t.elapsed().as_secs_f64());
    }

    // Idle memory: what an idle pooled sandbox holds: the PSS of its processes, and the drop in the
    // system's available memory (which also counts the kernel's namespace objects).
    let idle = rt.block_on(async {
        let n = 32;
        let json = pooled.first().map(|(_, j)| j.clone()).unwrap_or_else(|| "{}".into());
        let before = mem_available();
        let pool =
            Pool::new(sup.clone(), plan(&json), PoolOptions { size: n, max_size: n, idle_timeout: None }).unwrap();
        while pool.stats().ready < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = mem_available();
        let pss: u64 = helper_children(sup.helper_pid()).iter().map(|p| pss_bytes(*p)).sum();
        pool.close().await;
        serde_json::json!({
            "sandboxes": n,
            "pssPerSandbox": pss / n as u64,
            "systemPerSandbox": before.saturating_sub(after) / n as u64,
        })
    });
    println!("{}", serde_json::json!({ "latency": latency, "throughput": throughput, "idle": idle }));
}

fn mem_available() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn helper_children(helper: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn pss_bytes(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

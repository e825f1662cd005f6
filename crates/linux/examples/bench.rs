//! Timing harness for `npm run bench` (bench/run.mjs drives it and prints the table).
//!
//! Every case is timed the same way — spawn, wait, record — in its own block after a
//! warm-up (round-robin would let a heavy peer's teardown, e.g. runsc's or a network
//! namespace's asynchronous cleanup, land on the next case's samples). External commands (the floor `/bin/true`, bwrap, firejail, runsc) start through
//! `std::process::Command` (posix_spawn); corral's case goes through the real client →
//! helper → sandbox path. Prints one JSON object: case name → sorted samples in µs.
//!
//! Usage: bench --iterations N [--external NAME::ARGV...]... [--corral NAME::POLICY-JSON]...

use corral_core::Policy;
use corral_linux::{run, Stdio, Supervisor};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

enum Case {
    External(Vec<String>),
    Corral(Box<corral_core::Plan>),
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut iterations = 200;
    let mut cases: Vec<(String, Case)> = vec![("floor".into(), Case::External(vec!["/bin/true".into()]))];
    let mut policies: Vec<(String, String)> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--iterations" => {
                iterations = args[i + 1].parse().expect("--iterations N");
                i += 1;
            }
            "--corral" => {
                let (name, json) = args[i + 1].split_once("::").expect("--corral NAME::POLICY");
                policies.push((name.into(), json.into()));
                i += 1;
            }
            "--external" => {
                let (name, argv) = args[i + 1].split_once("::").expect("--external NAME::ARGV");
                cases.push((name.into(), Case::External(argv.split_whitespace().map(String::from).collect())));
                i += 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }

    let sup = Supervisor::start(&corral_linux::client::default_helper_path()).expect("start helper");
    let ctx = corral_linux::current_context().unwrap();
    let argv = vec!["/bin/true".to_string()];
    for (name, policy) in policies {
        let plan = corral_linux::plan(&Policy::from_json(&policy).expect(&name), &argv, &ctx, sup.caps()).expect(&name);
        cases.push((name, Case::Corral(Box::new(plan))));
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut samples: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let warmup = (iterations / 10).max(3);
    for (name, case) in &cases {
        std::thread::sleep(std::time::Duration::from_millis(300)); // let the previous case's teardown settle
        for round in 0..warmup + iterations {
            let t = Instant::now();
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
                    let stats = rt
                        .block_on(run::run_with_stdio(&sup, plan, [Stdio::Null, Stdio::Null, Stdio::Null]))
                        .expect("corral run");
                    assert_eq!(stats.stats.status, corral_core::ExitStatus::Exited { code: 0 });
                }
            }
            if round >= warmup {
                samples.entry(name.clone()).or_default().push(t.elapsed().as_micros() as u64);
            }
        }
    }
    for v in samples.values_mut() {
        v.sort_unstable();
    }
    println!("{}", serde_json::to_string(&samples).unwrap());
}

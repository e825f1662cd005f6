//! Copy-on-write fork against the real kernel. This binary is also the template: started
//! inside a sandbox with the fork channel, `template()` takes over and never returns.

use corral_core::{ExitStatus, Policy};
use corral_linux::Supervisor;
use corral_pool::fork::{self, Template};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TEMPLATE_MB: usize = 50;

fn main() {
    fork::template(init, work);
    let helper = helper();
    if !helper.exists() {
        // A missing prerequisite fails where CI asks for every test to run.
        let why = format!("{} is missing: build it first (cargo build -p corral-linux)", helper.display());
        assert!(std::env::var_os("CORRAL_REQUIRE_ALL").is_none_or(|v| v != "1"), "{why}");
        println!("skipped: {why}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let sup = Supervisor::start(&helper).unwrap();
        for (name, test) in [
            ("clones_share_the_template_and_report", clones_share_the_template_and_report as fn(_) -> _),
            ("clones_can_be_signalled_and_end_with_the_template", clones_can_be_signalled_and_end_with_the_template),
            ("a_template_that_dies_early_explains_why", a_template_that_dies_early_explains_why),
        ] {
            print!("test {name} ... ");
            test(sup.clone()).await;
            println!("ok");
        }
    });
}

type Test = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// The template's state: its mode (from its argv) and 50 MB it filled.
struct State {
    mode: String,
    data: Vec<u8>,
}

fn init() -> State {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "die" {
        eprintln!("cannot load the model");
        std::process::exit(3);
    }
    let data: Vec<u8> = (0..TEMPLATE_MB << 20).map(|i| (i % 251) as u8).collect();
    State { mode, data }
}

fn work(s: &State, clone_id: u32) -> i32 {
    let sum: u64 = s.data.iter().map(|&b| b as u64).sum();
    println!("clone {clone_id} sum {sum} env {}", std::env::var("CLONE_ID").unwrap_or_default());
    if s.mode == "hold" {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(60));
    }
    0
}

fn helper() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("corral-helper")
}

fn plan(sup: &Supervisor, mode: &str, policy: &str) -> corral_core::Plan {
    let ctx = corral_linux::current_context().unwrap();
    let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    // The sandbox sees this test binary (read and exec), nothing else of the build tree.
    let mut policy: serde_json::Value = serde_json::from_str(policy).unwrap();
    policy["fs"] = serde_json::json!({ "read": [exe], "exec": [exe] });
    let policy = Policy::from_json(&policy.to_string()).unwrap();
    corral_linux::plan(&policy, &[exe, mode.into()], &ctx, sup.caps()).unwrap()
}

fn expected_sum() -> u64 {
    (0..TEMPLATE_MB << 20).map(|i| (i % 251) as u64).sum()
}

fn clones_share_the_template_and_report(sup: Arc<Supervisor>) -> Test {
    Box::pin(async move {
        let t = Template::start(sup.clone(), &plan(&sup, "sum", r#"{"timeout":"60s"}"#)).await.unwrap();
        let clones = t.fork(20).await.unwrap();
        let outputs = futures(clones.into_iter().map(|c| c.output(1 << 16))).await;
        let sum = expected_sum();
        for (i, o) in outputs.iter().enumerate() {
            assert_eq!(o.status, ExitStatus::Exited { code: 0 });
            assert_eq!(String::from_utf8_lossy(&o.stdout), format!("clone {i} sum {sum} env {i}\n"));
        }
        // reduce(): the clones' stdout, in CLONE_ID order, on the reducer's stdin.
        let more = t.fork(3).await.unwrap();
        let reducer = plan(&sup, "", r#"{}"#);
        let mut reducer = reducer;
        reducer.spec.argv = vec!["sh".into(), "-c".into(), "cut -d' ' -f2 | tr '\\n' ,".into()];
        let out = fork::reduce(&sup, &reducer, more).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0,1,2,");
        let closed = t.close().await.unwrap();
        assert_eq!(closed.stats.status, ExitStatus::Exited { code: 0 });
    })
}

fn clones_can_be_signalled_and_end_with_the_template(sup: Arc<Supervisor>) -> Test {
    Box::pin(async move {
        let t = Template::start(sup.clone(), &plan(&sup, "hold", r#"{"timeout":"60s"}"#)).await.unwrap();
        let template_pid = t.pid;
        let mut clones = t.fork(10).await.unwrap();
        // Wait until every clone has read the data (its line is out), then measure.
        let mut readers = Vec::new();
        for c in clones.iter_mut() {
            let fd = c.stdout.take().unwrap();
            readers.push(tokio::spawn(async move { first_line(fd).await }));
        }
        for r in readers {
            assert!(r.await.unwrap().starts_with("clone "));
        }
        let pss: u64 = descendants(template_pid).iter().map(|&p| pss_bytes(p)).sum();
        let one = (TEMPLATE_MB as u64) << 20;
        // 11 processes (template + 10 clones) that each touched 50 MB: shared, the total
        // stays near one copy.
        assert!(pss < one * 2, "PSS of the template tree {} MB", pss >> 20);
        print!("(PSS of template + 10 clones: {} MB) ", pss >> 20);
        let first = clones.remove(0);
        first.signal(libc::SIGTERM).await.unwrap();
        assert_eq!(first.wait().await, ExitStatus::Signaled { signal: libc::SIGTERM });
        t.close().await.unwrap();
        for c in clones {
            assert_eq!(c.wait().await, ExitStatus::Signaled { signal: libc::SIGKILL });
        }
        // init reports before it exits; the helper reaps it a moment later.
        let gone = async {
            while std::path::Path::new(&format!("/proc/{template_pid}")).exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone).await.expect("the template sandbox is gone");
    })
}

fn a_template_that_dies_early_explains_why(sup: Arc<Supervisor>) -> Test {
    Box::pin(async move {
        let err = match Template::start(sup.clone(), &plan(&sup, "die", "{}")).await {
            Ok(_) => panic!("a dying template started"),
            Err(e) => e,
        };
        assert!(err.message.contains("exited with code 3"), "{}", err.message);
        assert!(err.message.contains("cannot load the model"), "{}", err.message);
    })
}

async fn futures<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in futs.collect::<Vec<_>>() {
        out.push(f.await);
    }
    out
}

async fn first_line(fd: std::os::fd::OwnedFd) -> String {
    use tokio::io::AsyncBufReadExt;
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(rx).read_line(&mut line).await.unwrap();
    line
}

/// Every process below `pid` (host pids), and `pid` itself.
fn descendants(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
        i += 1;
    }
    all
}

fn pss_bytes(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

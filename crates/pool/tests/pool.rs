//! The warm pool against the real kernel, through the helper.

use corral_core::Policy;
use corral_linux::Supervisor;
use corral_pool::{Pool, PoolOptions, RunRequest};
use std::path::Path;
use std::time::Duration;

/// The helper binary of the workspace build (`cargo test --workspace` builds it for
/// corral-linux's tests), or `None` where it is missing: the test is then skipped with the
/// reason printed, or fails under CORRAL_REQUIRE_ALL=1 (as in CI).
fn helper() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("corral-helper");
    if Path::new(&path).exists() {
        return Some(path);
    }
    let why = format!("{} is missing: build it first (cargo build -p corral-linux)", path.display());
    assert!(std::env::var_os("CORRAL_REQUIRE_ALL").is_none_or(|v| v != "1"), "{why}");
    println!("skipped: {why}");
    None
}

fn req(argv: &[&str]) -> RunRequest {
    RunRequest { argv: argv.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

#[test]
fn pooled_runs_are_isolated_and_used_once() {
    let Some(path) = helper() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let sup = Supervisor::start(&path).unwrap();
        let ctx = corral_linux::current_context().unwrap();
        let plan =
            corral_linux::plan(&Policy::from_json(r#"{"timeout":"10s"}"#).unwrap(), &[], &ctx, sup.caps()).unwrap();
        let pool = Pool::new(sup.clone(), plan, PoolOptions { size: 2, max_size: 4, idle_timeout: None }).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(pool.stats().ready, 2);
        // Each command sees a fresh sandbox: a file one leaves in /tmp is not there for the next.
        let a = pool.run(req(&["sh", "-c", "ls /tmp; echo x > /tmp/left; echo $$; hostname"])).await.unwrap();
        let b = pool.run(req(&["sh", "-c", "ls /tmp; echo $$"])).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&a.stdout), "2\ncorral\n");
        assert_eq!(String::from_utf8_lossy(&b.stdout), "2\n");
        // A crashing command leaves the pool working.
        let c = pool.run(req(&["sh", "-c", "kill -SEGV $$"])).await.unwrap();
        assert_eq!(c.stats.status, corral_core::ExitStatus::Signaled { signal: libc::SIGSEGV });
        let d = pool.run(req(&["echo", "still here"])).await.unwrap();
        assert_eq!(d.stdout, b"still here\n");
        let stats = pool.stats();
        // Served by the pool: from a ready sandbox, or by waiting for one being prepared
        // (which of the two depends on how fast the host refills, not on the pool).
        assert!(stats.hits + stats.waits >= 3, "{stats:?}");
        pool.close().await;
        assert_eq!(pool.stats().ready, 0);
        // A closed pool is not a bad policy: it is used after it ended.
        assert_eq!(pool.run(req(&["true"])).await.unwrap_err().code, corral_core::ErrorCode::InvalidState);
    });
}

/// A pool for `policy` on a helper of its own, inside a runtime; `f` gets the pool.
fn with_pool<F, Fut>(policy: &str, size: usize, f: F)
where
    F: FnOnce(Pool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(path) = helper() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let sup = Supervisor::start(&path).unwrap();
        let ctx = corral_linux::current_context().unwrap();
        let plan = corral_linux::plan(&Policy::from_json(policy).unwrap(), &[], &ctx, sup.caps()).unwrap();
        let pool = Pool::new(sup, plan, PoolOptions { size, max_size: size * 2, idle_timeout: None }).unwrap();
        f(pool.clone()).await;
        pool.close().await;
    });
}

#[test]
fn a_burst_waits_for_the_sandboxes_being_prepared_instead_of_making_more() {
    with_pool(r#"{"timeout":"10s"}"#, 2, |pool| async move {
        // 20 commands, 2 at a time (as the TypeScript pool's queue hands them over): each
        // finished command starts the refill the next one waits for.
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
        let runs = (0..20).map(|_| {
            let (pool, gate) = (pool.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                pool.run(req(&["true"])).await.unwrap().stats.status
            })
        });
        for r in futures_join(runs).await {
            assert_eq!(r, corral_core::ExitStatus::Exited { code: 0 });
        }
        let s = pool.stats();
        assert_eq!(s.misses, 0, "{s:?}");
        assert_eq!(s.hits + s.waits, 20, "{s:?}");
        assert!(s.created <= 22, "{s:?}");
    });
}

#[test]
fn a_cancelled_run_is_killed() {
    with_pool(r#"{"timeout":"30s"}"#, 1, |pool| async move {
        let cancel = std::sync::Arc::new(tokio::sync::Notify::new());
        let request = RunRequest { cancel: Some(cancel.clone()), ..req(&["sleep", "30"]) };
        let run = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(request).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.notify_one();
        let out = run.await.unwrap();
        assert_eq!(out.stats.status, corral_core::ExitStatus::Signaled { signal: libc::SIGKILL });
        assert!(!out.stats.timed_out);
    });
}

/// Awaits every task in order.
async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}

/// A pooled command is checked by the same rules as a cold one: the same code and field
/// for a bad argv, environment or working directory — from the pool, and from the helper
/// when a prepared sandbox is handed such a command directly.
#[test]
fn pooled_commands_get_the_cold_runs_errors() {
    let Some(path) = helper() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let sup = Supervisor::start(&path).unwrap();
        let ctx = corral_linux::current_context().unwrap();
        let plan = |policy: &str, argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            corral_linux::plan(&Policy::from_json(policy).unwrap(), &argv, &ctx, sup.caps())
        };
        let pool =
            Pool::new(sup.clone(), plan("{}", &[]).unwrap(), PoolOptions { size: 1, max_size: 2, idle_timeout: None })
                .unwrap();
        let env = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect();
        // (cold policy, cold argv, pooled request)
        let cases: Vec<(&str, Vec<&str>, RunRequest)> = vec![
            ("{}", vec![""], req(&[""])),
            ("{}", vec!["echo", "a\0b"], req(&["echo", "a\0b"])),
            (r#"{"env":{"A=B":"1"}}"#, vec!["true"], RunRequest { env: env("A=B", "1"), ..req(&["true"]) }),
            (r#"{"env":{"A":"x\u0000y"}}"#, vec!["true"], RunRequest { env: env("A", "x\0y"), ..req(&["true"]) }),
            (
                r#"{"cwd":"/corral-not-granted"}"#,
                vec!["true"],
                RunRequest { cwd: Some("/corral-not-granted".into()), ..req(&["true"]) },
            ),
        ];
        for (policy, argv, request) in cases {
            let cold = plan(policy, &argv).unwrap_err();
            let pooled = pool.run(request.clone()).await.unwrap_err();
            assert_eq!((pooled.code, &pooled.field), (cold.code, &cold.field), "{policy} {argv:?}");
            assert_eq!(cold.code, corral_core::ErrorCode::PolicyInvalid);
            // The helper refuses the same command when a client hands it over unchecked.
            let mut warm = sup.prepare(&plan("{}", &[]).unwrap().spec, None).unwrap();
            warm.started().await.unwrap();
            let spec = plan("{}", &[]).unwrap().spec;
            let mut env = spec.env.clone();
            env.extend(request.env.clone());
            let command = corral_core::command::Command {
                argv: request.argv.clone(),
                env,
                cwd: request.cwd.clone().unwrap_or(spec.cwd),
            };
            let null = || corral_linux::Stdio::Null;
            sup.exec(warm.id, command, None, [null(), null(), null()]).unwrap();
            let helper = warm.wait().await.unwrap_err();
            assert_eq!((helper.code, &helper.field), (cold.code, &cold.field), "helper: {policy} {argv:?}");
        }
        // An empty argv (a cold run with no command is planned only, then refused by the
        // helper) and a relative working directory.
        assert_eq!(pool.run(req(&[])).await.unwrap_err().field.as_deref(), Some("argv"));
        let relative = RunRequest { cwd: Some("tmp".into()), ..req(&["true"]) };
        assert_eq!(pool.run(relative).await.unwrap_err().field.as_deref(), Some("cwd"));
        // None of these took a sandbox.
        assert_eq!(pool.stats().hits + pool.stats().misses, 0);
        pool.close().await;
    });
}

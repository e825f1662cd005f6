//! Linux: corral-linux's shared helper, runs, spawns, pools and copy-on-write templates.
//!
//! Runs in: the Node process (the addon).

use super::{Clone, Finished, Spawned};
use corral_core::result::{ChangesInfo, PlanSummary, RunInfo};
use corral_core::spec::TerminalSize;
use corral_core::{Context, CorralError, ExitStatus, HostCapabilities, Plan, Policy};
use corral_linux::client::run::{self, Output, Waiter};
use corral_linux::client::{shared, Stdio, Supervisor};
use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub use corral_linux::client::changes::Captured;
pub use corral_pool::PoolStats;

/// Applies captured changes to the host, on a thread of its own (never the runtime's
/// workers, nor its blocking pool that other tenants' lookups share): its length is in
/// proportion to what the command wrote.
pub async fn commit(c: Captured) -> Result<(), CorralError> {
    corral_linux::client::changes::on_own_thread("corral-commit", move || c.commit()).await?
}

pub fn caps() -> Result<HostCapabilities, CorralError> {
    Ok(shared()?.caps().clone())
}

pub fn plan(policy: &Policy, argv: &[String], ctx: &Context) -> Result<Plan, CorralError> {
    corral_linux::plan(policy, argv, ctx, &caps()?)
}

fn finished(out: Output, plan: &PlanSummary) -> Finished {
    let changes = out.captured.as_ref().map(|c| ChangesInfo::of(c.changes()));
    Finished {
        info: RunInfo {
            stats: out.stats,
            plan: plan.clone(),
            truncated: out.truncated,
            violations: out.violations,
            changes,
        },
        stdout: out.stdout,
        stderr: out.stderr,
        captured: out.captured,
    }
}

/// Copies of three descriptors of this process (close-on-exec), for a command to use as
/// its stdio.
pub fn inherit_stdio(fds: &[i32]) -> Result<[OwnedFd; 3], CorralError> {
    let dup = |fd: i32| -> Result<OwnedFd, CorralError> {
        // SAFETY: the caller vouches that `fd` is open in this process for the call.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        b.try_clone_to_owned().map_err(|e| CorralError::spawn(format!("dup of fd {fd}: {e}")))
    };
    match fds {
        [a, b, c] => Ok([dup(*a)?, dup(*b)?, dup(*c)?]),
        _ => Err(CorralError::internal("stdio needs exactly three descriptors")),
    }
}

/// Runs `plan` to its end: output collected (`stdin` fed to it), or the command given
/// `stdio` of the caller's own.
pub async fn run(plan: Plan, stdin: Option<Vec<u8>>, stdio: Option<[OwnedFd; 3]>) -> Result<Finished, CorralError> {
    let sup = shared()?;
    let summary = PlanSummary::of(&plan);
    let out = match stdio {
        Some(fds) => run::run_with_stdio(&sup, &plan, fds.map(Stdio::Fd)).await?,
        None => run::run(&sup, &plan, stdin).await?,
    };
    Ok(finished(out, &summary))
}

/// A running sandbox.
pub struct Running {
    sup: Arc<Supervisor>,
    id: u64,
    waiter: Mutex<Option<Waiter>>,
    plan: PlanSummary,
}

pub async fn spawn(plan: Plan, with_stdin: bool, terminal: Option<TerminalSize>) -> Result<Spawned, CorralError> {
    let sup = shared()?;
    let summary = PlanSummary::of(&plan);
    let s = run::spawn(&sup, &plan, with_stdin, terminal, None).await?;
    Ok(Spawned {
        pid: s.pid,
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
        terminal: s.terminal,
        handle: Running { sup, id: s.id, waiter: Mutex::new(Some(s.waiter)), plan: summary },
    })
}

impl Running {
    pub fn kill(&self, signal: i32) -> Result<(), CorralError> {
        self.sup.signal(self.id, signal)
    }

    pub async fn freeze(&self, freeze: bool) -> Result<(), CorralError> {
        self.sup.freeze(self.id, freeze).await
    }

    /// Resolves when every process of the sandbox is gone; once.
    pub async fn wait(&self) -> Result<Finished, CorralError> {
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
        let waiter = waiter.ok_or_else(|| CorralError::internal("wait() may be called once"))?;
        Ok(finished(waiter.wait().await?, &self.plan))
    }
}

pub fn resize_terminal(fd: BorrowedFd<'_>, size: TerminalSize) -> Result<(), CorralError> {
    corral_linux::sandbox::terminal::resize(&fd, size)
        .map_err(|e| CorralError::spawn(format!("resizing the terminal: {e}")))
}

/// A warm pool for one plan.
pub struct Pool {
    pool: corral_pool::Pool,
    plan: PlanSummary,
}

impl Pool {
    /// Starts filling at once, on the runtime current when called.
    pub fn new(plan: Plan, size: usize, max_size: usize, idle_timeout: Option<Duration>) -> Result<Pool, CorralError> {
        let summary = PlanSummary::of(&plan);
        let options = corral_pool::PoolOptions { size, max_size, idle_timeout };
        Ok(Pool { pool: corral_pool::Pool::renewing(Box::new(shared), plan, options)?, plan: summary })
    }

    pub async fn run(
        &self,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
        stdin: Option<Vec<u8>>,
        cancel: Option<Arc<Notify>>,
    ) -> Result<Finished, CorralError> {
        let out = self.pool.run(corral_pool::RunRequest { argv, env, cwd, stdin, cancel }).await?;
        Ok(finished(out, &self.plan))
    }

    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    pub async fn close(&self) {
        self.pool.close().await
    }
}

/// A running copy-on-write template.
pub struct Template {
    template: corral_pool::fork::Template,
    plan: PlanSummary,
}

pub use corral_pool::fork::{Forked, Signaller};

impl Template {
    /// Starts the plan's command as a template; resolves once it said it is ready.
    pub async fn start(plan: Plan) -> Result<Template, CorralError> {
        let summary = PlanSummary::of(&plan);
        let template = corral_pool::fork::Template::start(shared()?, &plan).await?;
        Ok(Template { template, plan: summary })
    }

    pub fn pid(&self) -> i32 {
        self.template.pid
    }

    pub async fn fork(&self, n: u32) -> Result<Vec<Clone>, CorralError> {
        Ok(self
            .template
            .fork(n)
            .await?
            .into_iter()
            .map(|mut f| Clone {
                clone_id: f.clone_id,
                pid: f.pid,
                stdout: f.stdout.take(),
                stderr: f.stderr.take(),
                signaller: f.signaller(),
                forked: f,
            })
            .collect())
    }

    pub async fn close(&self) -> Result<Finished, CorralError> {
        Ok(finished(self.template.close().await?, &self.plan))
    }
}

/// How a clone ended.
pub async fn clone_exit(forked: Forked) -> ExitStatus {
    forked.wait().await
}

//! The warm pool. Runs in: the client (tokio), talking to the helper.
//!
//! Ready sandboxes wait in a queue; `run` takes one (a hit) or prepares one on the spot
//! (a miss), hands it its command, and tops the queue back up in the background. A
//! sandbox that ran a command is never reused. Sandboxes idle for longer than
//! `idle_timeout` are killed; `close` kills the rest, and the commands still running, and
//! waits until they are gone.
//!
//! A pool outlives its helper: each sandbox remembers the helper that made it, and when
//! that helper is gone the pool drops what it had ready and prepares anew with a fresh one
//! (from the source it was given, e.g. the process's shared helper, which restarts).

use corral_core::command::Command;
use corral_core::{CorralError, Plan};
use corral_linux::client::proxy::Proxy;
use corral_linux::client::run::{self, drain, pipe_pair, Output};
use corral_linux::client::{Sandbox, Stdio, Supervisor};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Longest `close` waits for killed sandboxes to be gone.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// One command's place in `in_use`, given back when dropped: exactly once, whether the run
/// ends, fails or is abandoned half-way.
struct Lease<'a> {
    pool: &'a Pool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.lock().in_use -= 1;
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Ready sandboxes to keep.
    pub size: usize,
    /// Most sandboxes ready or being prepared at once.
    pub max_size: usize,
    /// Kill ready sandboxes unused for this long (the pool refills on the next use).
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStats {
    pub ready: usize,
    /// Being prepared in the background now.
    pub preparing: usize,
    pub in_use: usize,
    pub created: u64,
    pub hits: u64,
    pub misses: u64,
    /// Commands that waited for a sandbox already being prepared instead of preparing
    /// another: under a burst, the pool creates what the commands use and no more.
    pub waits: u64,
    /// Mean time from `run` to the command having been handed over, in µs.
    pub mean_acquire_us: f64,
}

/// One command for a pooled sandbox: the pool's policy decides everything else.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub argv: Vec<String>,
    /// Variables added to (or overriding) the policy's environment.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the sandbox, an absolute path it shows (default: the
    /// policy's).
    pub cwd: Option<PathBuf>,
    pub stdin: Option<Vec<u8>>,
    /// Notified to cancel: the sandbox is killed (SIGKILL) and the run ends as killed.
    pub cancel: Option<Arc<Notify>>,
}

struct Warm {
    /// The helper that prepared it: the one that runs its command.
    sup: Arc<Supervisor>,
    sandbox: Sandbox,
    since: Instant,
    /// What stood at the plan's carve-out paths just before this sandbox was built.
    carve_outs: Vec<Option<(u64, u64)>>,
    /// The spec it was prepared from (with its proxy's socket, for allow-lists).
    spec: corral_core::SandboxSpec,
    /// This sandbox's own allow-list proxy, so that violations belong to its one command.
    proxy: Option<Proxy>,
}

struct State {
    ready: VecDeque<Warm>,
    preparing: usize,
    /// Commands waiting for one of the sandboxes being prepared.
    waiting: usize,
    in_use: usize,
    /// Sandboxes running a command now, with their helper: `close` kills them.
    handed: Vec<(u64, Arc<Supervisor>)>,
    /// Sandboxes killed (stale, idle too long) whose end has not been answered yet: `close`
    /// waits for them, so nothing of theirs (a placeholder on the host) outlives it.
    dying: usize,
    stats: PoolStats,
    acquire_total_us: f64,
}

/// Where a pool gets a helper when the one it has is gone.
pub type HelperSource = Box<dyn Fn() -> Result<Arc<Supervisor>, CorralError> + Send + Sync>;

struct Inner {
    /// The helper sandboxes are prepared with now.
    sup: Mutex<Arc<Supervisor>>,
    /// A fresh helper once `sup` is gone (none: the pool fails with it).
    renew: Option<HelperSource>,
    plan: Plan,
    options: PoolOptions,
    state: Mutex<State>,
    closed: AtomicBool,
    /// Wakes a command waiting for a sandbox when one is ready (or failed to be).
    prepared: Notify,
}

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool for `plan` on helper `sup`; starts filling at once (call within a tokio
    /// runtime). If the helper goes away, so does the pool: see [`Pool::renewing`].
    pub fn new(sup: Arc<Supervisor>, plan: Plan, options: PoolOptions) -> Result<Pool, CorralError> {
        Self::with_source(sup, None, plan, options)
    }

    /// Like [`new`](Self::new), with helpers from `source`: the pool takes one now, and a
    /// fresh one whenever the one it has is gone.
    pub fn renewing(source: HelperSource, plan: Plan, options: PoolOptions) -> Result<Pool, CorralError> {
        Self::with_source(source()?, Some(source), plan, options)
    }

    fn with_source(
        sup: Arc<Supervisor>,
        renew: Option<HelperSource>,
        plan: Plan,
        options: PoolOptions,
    ) -> Result<Pool, CorralError> {
        if options.max_size == 0 || options.size > options.max_size {
            return Err(CorralError::policy("maxSize", "must be at least 1 and at least size"));
        }
        let state = State {
            ready: VecDeque::new(),
            preparing: 0,
            waiting: 0,
            in_use: 0,
            handed: Vec::new(),
            dying: 0,
            stats: PoolStats::default(),
            acquire_total_us: 0.0,
        };
        let pool = Pool {
            inner: Arc::new(Inner {
                sup: Mutex::new(sup),
                renew,
                plan,
                options,
                state: Mutex::new(state),
                closed: AtomicBool::new(false),
                prepared: Notify::new(),
            }),
        };
        pool.refill();
        if let Some(idle) = options.idle_timeout {
            let weak = Arc::downgrade(&pool.inner);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(idle.min(Duration::from_secs(1))).await;
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.closed.load(Ordering::Relaxed) {
                        return;
                    }
                    Pool { inner }.expire(idle);
                }
            });
        }
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The helper to prepare with: the current one, or a fresh one when it is gone.
    fn helper(&self) -> Result<Arc<Supervisor>, CorralError> {
        let mut sup = self.inner.sup.lock().unwrap_or_else(|e| e.into_inner());
        if !sup.is_alive() {
            if let Some(renew) = &self.inner.renew {
                *sup = renew()?;
            }
        }
        Ok(sup.clone())
    }

    pub fn stats(&self) -> PoolStats {
        let s = self.lock();
        let mut stats = s.stats;
        stats.ready = s.ready.len();
        stats.preparing = s.preparing;
        stats.in_use = s.in_use;
        let acquired = (s.stats.hits + s.stats.misses).max(1) as f64;
        stats.mean_acquire_us = s.acquire_total_us / acquired;
        stats
    }

    /// Prepares sandboxes in the background until `size` are ready (or being prepared).
    fn refill(&self) {
        if self.inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let wanted = {
            let mut s = self.lock();
            let have = s.ready.len() + s.preparing;
            let room = self.inner.options.max_size.saturating_sub(have);
            let n = self.inner.options.size.saturating_sub(have).min(room);
            s.preparing += n;
            n
        };
        for _ in 0..wanted {
            let pool = self.clone();
            tokio::spawn(async move {
                let mut warm = pool.prepare().await.ok();
                if let Some(w) = warm.take_if(|_| pool.inner.closed.load(Ordering::Relaxed)) {
                    // Closed meanwhile: this one goes, and close() waits for that.
                    let _ = w.sup.signal(w.sandbox.id, libc::SIGKILL);
                    let _ = w.sandbox.wait().await;
                }
                {
                    let mut s = pool.lock();
                    s.preparing -= 1;
                    if let Some(w) = warm {
                        s.stats.created += 1;
                        s.ready.push_back(w);
                    }
                }
                pool.inner.prepared.notify_one();
            });
        }
    }

    async fn prepare(&self) -> Result<Warm, CorralError> {
        let carve_outs = identities(&self.inner.plan.watch);
        let sup = self.helper()?;
        let (spec, mut proxy) = run::network(&self.inner.plan).await?;
        let mut sandbox = sup.prepare(&spec, proxy.as_mut().and_then(Proxy::take_sandbox_end))?;
        sandbox.started().await?;
        Ok(Warm { sup, sandbox, since: Instant::now(), carve_outs, spec, proxy })
    }

    /// Kills ready sandboxes idle for longer than `idle`.
    fn expire(&self, idle: Duration) {
        let stale: Vec<Warm> = {
            let mut s = self.lock();
            let (old, young): (Vec<Warm>, Vec<Warm>) = s.ready.drain(..).partition(|w| w.since.elapsed() >= idle);
            s.ready = young.into();
            old
        };
        self.discard(stale);
    }

    /// Kills sandboxes that will never be used; each counts in `dying` until its end is
    /// answered.
    fn discard(&self, warm: Vec<Warm>) {
        if warm.is_empty() {
            return;
        }
        self.lock().dying += warm.len();
        for w in warm {
            let _ = w.sup.signal(w.sandbox.id, libc::SIGKILL);
            let pool = self.clone();
            tokio::spawn(async move {
                let _ = w.sandbox.wait().await;
                pool.lock().dying -= 1;
            });
        }
    }

    /// A ready sandbox (a hit); else one being prepared that no other command waits for
    /// (a wait); else one prepared now (a miss).
    async fn acquire(&self) -> Result<(Warm, Lease<'_>), CorralError> {
        // A carve-out replaced on the host since a sandbox was built (an atomic save over a
        // denied file, a denied path created) is not hidden or pinned in that sandbox: the
        // host's unlink or rename took its mount away. Such a sandbox is not used.
        let now = identities(&self.inner.plan.watch);
        let mut stale: Vec<Warm> = Vec::new();
        let mut waited = false;
        let warm = loop {
            // Registered before the state is read, so a sandbox that becomes ready in
            // between still wakes this command.
            let prepared = self.inner.prepared.notified();
            tokio::pin!(prepared);
            prepared.as_mut().enable();
            {
                let mut s = self.lock();
                if waited {
                    s.waiting -= 1;
                }
                if self.inner.closed.load(Ordering::Relaxed) {
                    drop(s);
                    self.discard(stale);
                    return Err(CorralError::invalid_state("the pool is closed"));
                }
                if s.ready.iter().any(|w| w.carve_outs != now) {
                    let (fresh, old): (Vec<Warm>, Vec<Warm>) = s.ready.drain(..).partition(|w| w.carve_outs == now);
                    s.ready = fresh.into();
                    stale.extend(old);
                }
                // Sandboxes of a helper that is gone went with it.
                s.ready.retain(|w| w.sup.is_alive());
                if let Some(w) = s.ready.pop_front() {
                    if waited {
                        s.stats.waits += 1;
                    } else {
                        s.stats.hits += 1;
                    }
                    s.in_use += 1;
                    break Some(w);
                }
                if s.preparing <= s.waiting {
                    s.stats.misses += 1;
                    s.in_use += 1;
                    break None;
                }
                s.waiting += 1;
            }
            waited = true;
            prepared.await;
        };
        self.discard(stale);
        // Counted in `in_use` above; the lease uncounts it once, however this run ends.
        let lease = Lease { pool: self };
        match warm {
            Some(w) => Ok((w, lease)),
            None => {
                let w = self.prepare().await?;
                self.lock().stats.created += 1;
                Ok((w, lease))
            }
        }
    }

    fn command(&self, req: &RunRequest) -> Command {
        let spec = &self.inner.plan.spec;
        let mut env = spec.env.clone();
        env.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Command { argv: req.argv.clone(), env, cwd: req.cwd.clone().unwrap_or_else(|| spec.cwd.clone()) }
    }

    /// Runs one command in a warm sandbox and collects its output (each stream capped at
    /// the policy's `maxOutputBytes`). The command is checked as a cold run's is, before a
    /// sandbox is taken for it.
    pub async fn run(&self, req: RunRequest) -> Result<Output, CorralError> {
        let cmd = self.command(&req);
        cmd.check(&self.inner.plan.spec.mounts)?;
        let t0 = Instant::now();
        let (sandbox, _lease) = self.acquire().await?;
        self.run_in(sandbox, cmd, req.stdin, req.cancel, t0).await
    }

    async fn run_in(
        &self,
        warm: Warm,
        cmd: Command,
        stdin: Option<Vec<u8>>,
        cancel: Option<Arc<Notify>>,
        t0: Instant,
    ) -> Result<Output, CorralError> {
        let Warm { sup, sandbox, spec, proxy, .. } = warm;
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        let (stdin, feed) = run::stdin_from(stdin)?;
        let timeout = self.inner.plan.spec.timeout_ms;
        let handed = sup.exec(sandbox.id, cmd, timeout, [stdin, Stdio::Fd(out_w), Stdio::Fd(err_w)]);
        handed?;
        self.lock().handed.push((sandbox.id, sup.clone()));
        // A close() that came before the line above did not see this sandbox: it goes now.
        if self.inner.closed.load(Ordering::SeqCst) {
            let _ = sup.signal(sandbox.id, libc::SIGKILL);
        }
        // Cancelling kills the sandbox; the run then ends as any killed run does.
        let killer = cancel.map(|cancel| {
            let (sup, id) = (sup.clone(), sandbox.id);
            tokio::spawn(async move {
                cancel.notified().await;
                let _ = sup.signal(id, libc::SIGKILL);
            })
        });
        self.lock().acquire_total_us += t0.elapsed().as_micros() as f64;
        let cap = self.inner.plan.max_output_bytes.unwrap_or(u64::MAX);
        let ((stdout, t1), (stderr, t2), ()) = tokio::join!(drain(out_r, cap), drain(err_r, cap), feed);
        let id = sandbox.id;
        let fin = sandbox.wait().await;
        self.lock().handed.retain(|(i, s)| !(*i == id && Arc::ptr_eq(s, &sup)));
        if let Some(k) = killer {
            k.abort();
        }
        // Refill once this command is done: preparing a sandbox takes the helper's one
        // thread (clone3 into new namespaces) and a core (the mount view), which would
        // otherwise sit right in this command's path. The queue has `size` ready meanwhile.
        self.refill();
        let fin = fin?;
        let mut out = Output::new(&spec, fin).await?;
        (out.stdout, out.stderr, out.truncated) = (stdout, stderr, t1 || t2);
        run::finish(&mut out, proxy).await;
        Ok(out)
    }

    /// Kills every ready sandbox and every command still running (their runs end as killed
    /// by SIGKILL) and stops refilling; resolves once they are gone (or after
    /// [`CLOSE_WAIT`], should a helper not answer).
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        // Commands waiting for a sandbox learn that none will come.
        self.inner.prepared.notify_waiters();
        let ready: Vec<Warm> = self.lock().ready.drain(..).collect();
        for w in &ready {
            let _ = w.sup.signal(w.sandbox.id, libc::SIGKILL);
        }
        for w in ready {
            let _ = w.sandbox.wait().await;
        }
        // Commands handed out: killed; each run_in then ends and says so.
        let handed = self.lock().handed.clone();
        for (id, sup) in &handed {
            let _ = sup.signal(*id, libc::SIGKILL);
        }
        // Sandboxes still being prepared are killed as they become ready (see refill);
        // wait for them and for those killed earlier (see discard), so nothing outlives
        // close().
        let deadline = Instant::now() + CLOSE_WAIT;
        while Instant::now() < deadline && {
            let s = self.lock();
            s.preparing > 0 || !s.handed.is_empty() || s.dying > 0
        } {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Device and inode of each path (`None` where nothing is), without following symlinks.
fn identities(paths: &[PathBuf]) -> Vec<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    paths.iter().map(|p| std::fs::symlink_metadata(p).ok().map(|m| (m.dev(), m.ino()))).collect()
}

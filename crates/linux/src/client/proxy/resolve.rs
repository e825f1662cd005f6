//! Name resolution for the proxies, on threads of their own. Runs in: the client.
//!
//! The system resolver (`getaddrinfo`, so `/etc/hosts`, nsswitch and resolv.conf all count)
//! blocks a thread until it answers, and a sandbox chooses which names it asks for: names
//! under a domain whose servers never answer hold a thread for the resolver's whole
//! timeout. So lookups never run on the runtime's shared blocking pool, where they once
//! queued unrelated work (committing overlay changes, other tenants' lookups) behind them.
//! They run on a small set of threads started on demand, and each sandbox's proxy may have
//! at most [`LOOKUPS_PER_SANDBOX`] of them busy: a lookup counts until its thread returns,
//! not until the proxy stops waiting, so a sandbox whose lookups hang holds at most that
//! many threads and other sandboxes' lookups run beside them. The process may start that
//! many threads for every sandbox whose share is in use (a share lives while its proxy or
//! any of its lookups does), so sandboxes whose lookups hang cannot take the threads
//! another sandbox's lookup needs; [`MIN_THREADS`] is a floor, not the cap.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

/// Lookups one sandbox may have running (or queued) at once.
pub const LOOKUPS_PER_SANDBOX: usize = 4;
/// Resolver threads the process may start whatever the number of sandboxes.
const MIN_THREADS: usize = 64;
/// An idle resolver thread ends after this long.
const IDLE: Duration = Duration::from_secs(30);

/// One sandbox's share of the resolver threads.
pub struct Resolver {
    permits: Arc<Semaphore>,
    share: Arc<Share>,
}

/// Counted in [`SHARES`] while it lives.
struct Share;

/// Sandboxes whose share of the resolver is in use.
static SHARES: AtomicUsize = AtomicUsize::new(0);

impl Share {
    fn new() -> Arc<Share> {
        SHARES.fetch_add(1, Ordering::AcqRel);
        Arc::new(Share)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        SHARES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Threads the process may have: enough for every share's lookups at once.
fn max_threads() -> usize {
    (SHARES.load(Ordering::Acquire) * LOOKUPS_PER_SANDBOX).max(MIN_THREADS)
}

struct Job {
    name: String,
    port: u16,
    reply: oneshot::Sender<io::Result<Vec<IpAddr>>>,
    /// Held until the lookup itself returns.
    _permit: OwnedSemaphorePermit,
    /// Keeps the sandbox's share counted until the lookup returns, even if its proxy is gone.
    _share: Arc<Share>,
}

#[derive(Default)]
struct Pool {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { queue: VecDeque::new(), threads: 0, idle: 0 });
static WORK: Condvar = Condvar::new();

impl Resolver {
    pub fn new() -> Resolver {
        Resolver { permits: Arc::new(Semaphore::new(LOOKUPS_PER_SANDBOX)), share: Share::new() }
    }

    /// The addresses of `name`, without duplicates, in the resolver's order; waits at most
    /// until `deadline` (for a turn and for the answer).
    pub async fn lookup(&self, name: &str, port: u16, deadline: Instant) -> io::Result<Vec<IpAddr>> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "resolution timed out");
        let permit = timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| io::Error::other("resolver closed"))?;
        let (reply, answer) = oneshot::channel();
        submit(Job { name: name.to_string(), port, reply, _permit: permit, _share: self.share.clone() })?;
        timeout_at(deadline, answer)
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| io::Error::other("resolver thread gone"))?
    }
}

fn submit(job: Job) -> io::Result<()> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.queue.push_back(job);
    // Every queued job needs a thread of its own. An idle thread already woken for an
    // earlier job still counts as idle until it runs, and cannot take this one until that
    // lookup returns, which for a hostile name is the resolver's whole timeout.
    if pool.queue.len() > pool.idle && pool.threads < max_threads() {
        std::thread::Builder::new().name("corral-resolver".into()).spawn(work)?;
        pool.threads += 1;
    }
    drop(pool);
    WORK.notify_one();
    Ok(())
}

fn work() {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = pool.queue.pop_front() {
            drop(pool);
            let Job { name, port, reply, _permit: permit, _share: share } = job;
            let answer = resolve(&name, port);
            // The turn ends before the answer is out, so a caller that got it can take
            // another turn at once. It may have stopped waiting; the turn ends either way.
            drop(permit);
            drop(share);
            let _ = reply.send(answer);
            pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        pool.idle += 1;
        let (next, wait) = WORK.wait_timeout(pool, IDLE).unwrap_or_else(|e| e.into_inner());
        pool = next;
        pool.idle -= 1;
        if wait.timed_out() && pool.queue.is_empty() {
            pool.threads -= 1;
            return;
        }
    }
}

fn resolve(name: &str, port: u16) -> io::Result<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = Vec::new();
    for addr in (name, port).to_socket_addrs()? {
        if !addrs.contains(&addr.ip()) {
            addrs.push(addr.ip());
        }
    }
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no addresses"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_on_its_own_threads_and_times_out() {
        let r = Resolver::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let addrs = r.lookup("127.0.0.1", 80, deadline).await.unwrap();
        assert_eq!(addrs, vec![IpAddr::from([127, 0, 0, 1])]);
        // Every permit is busy: the next lookup waits for a turn and gives up at its deadline.
        let held: Vec<_> = (0..LOOKUPS_PER_SANDBOX).map(|_| r.permits.clone().try_acquire_owned().unwrap()).collect();
        let e = r.lookup("127.0.0.1", 80, Instant::now() + Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(held);
        assert!(r.lookup("127.0.0.1", 80, deadline).await.is_ok());
    }

    #[test]
    fn every_share_is_backed_by_threads() {
        // Other tests' resolvers may live meanwhile: they only raise the count.
        let shares: Vec<Resolver> = (0..MIN_THREADS).map(|_| Resolver::new()).collect();
        assert!(max_threads() >= MIN_THREADS * LOOKUPS_PER_SANDBOX);
        drop(shares);
    }
}

//! The template side of copy-on-write fork, for Rust programs. Runs in: the template (a
//! sandboxed command corral started with the fork channel at fd 3).
//!
//! The template must be single-threaded when it serves: `fork` copies only the calling
//! thread, so a lock another thread held would stay locked in every clone.

use super::message::Message;
use corral_linux::ipc::transport;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::collections::HashMap;
use std::io::{Error, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The channel corral gave this process, if it was started as a template.
fn channel() -> std::io::Result<OwnedFd> {
    let raw: i32 = std::env::var(corral_linux::client::run::FORK_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "not started as a corral template (CORRAL_FORK_FD unset)"))?;
    // The variable names the channel for this process only: clones and anything the
    // template execs must not think they have one.
    std::env::remove_var(corral_linux::client::run::FORK_FD_ENV);
    // SAFETY: corral placed the channel at this descriptor for us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    Ok(fd)
}

/// True when corral started this process as a copy-on-write template.
pub fn is_template() -> bool {
    std::env::var_os(corral_linux::client::run::FORK_FD_ENV).is_some()
}

/// Serves fork requests until corral is done. Returns `Some(clone_id)` in each clone (also
/// in its environment as `CLONE_ID`), `None` in the template once corral closes.
pub fn serve() -> std::io::Result<Option<u32>> {
    let chan = channel()?;
    prefer_huge_pages();
    not_dumpable()?;
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let old_mask = chld.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let sfd = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    let result = Server { chan: chan.as_fd(), children: HashMap::new(), buf: Vec::new() }.run(&sfd, &old_mask);
    match result {
        // In a clone: drop the template's plumbing so the clone holds nothing of it.
        Ok(Some(id)) => {
            drop(sfd);
            drop(chan);
            old_mask.thread_set_mask()?;
            Ok(Some(id))
        }
        other => {
            old_mask.thread_set_mask()?;
            other
        }
    }
}

struct Server<'a> {
    chan: BorrowedFd<'a>,
    /// Receive buffer, reused.
    buf: Vec<u8>,
    /// Live clones: pid → protocol id.
    children: HashMap<i32, u64>,
}

impl Server<'_> {
    fn run(&mut self, sfd: &SignalFd, old_mask: &SigSet) -> std::io::Result<Option<u32>> {
        transport::send(self.chan, &Message::Ready, &[])?;
        loop {
            let mut fds = [
                libc::pollfd { fd: self.chan.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: sfd.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: a valid array of two pollfd.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                let e = Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                while let Ok(Some(_)) = sfd.read_signal() {}
                self.reap()?;
            }
            if fds[0].revents == 0 {
                continue;
            }
            let Some((msg, _)) = transport::recv::<Message>(self.chan, &mut self.buf)? else { return Ok(None) };
            match msg {
                Message::Fork { id, clone } => {
                    if let Some(clone_id) = self.fork(id, clone, old_mask)? {
                        return Ok(Some(clone_id));
                    }
                }
                Message::Signal { id, signal } => {
                    if let Some((&pid, _)) = self.children.iter().find(|(_, &c)| c == id) {
                        // SAFETY: kill with a pid we forked and have not reaped.
                        unsafe { libc::kill(pid, signal) };
                    }
                }
                Message::Close => return Ok(None),
                other => {
                    let message = format!("unexpected message {other:?}");
                    transport::send(self.chan, &Message::Error { id: None, message }, &[])?;
                }
            }
        }
    }

    /// Reports every clone that has ended.
    fn reap(&mut self) -> std::io::Result<()> {
        loop {
            let (pid, code, signal) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, None, Some(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if let Some(id) = self.children.remove(&pid.as_raw()) {
                transport::send(self.chan, &Message::Exit { id, code, signal }, &[])?;
            }
        }
    }

    /// Forks one clone. Returns `Some(clone_id)` in the clone, `None` in the template.
    fn fork(&mut self, id: u64, clone: u32, old_mask: &SigSet) -> std::io::Result<Option<u32>> {
        let pipes = (|| -> nix::Result<_> {
            let o = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let e = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            Ok((o, e))
        })();
        let ((out_r, out_w), (err_r, err_w)) = match pipes {
            Ok(p) => p,
            Err(e) => {
                transport::send(self.chan, &Message::Error { id: Some(id), message: format!("pipe: {e}") }, &[])?;
                return Ok(None);
            }
        };
        // SAFETY: the template is single-threaded (see the module docs); the child only
        // rearranges descriptors before returning to the caller's code.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                let _ = old_mask; // restored by serve() once the plumbing is dropped
                                  // SAFETY: dup2 onto stdout/stderr; the sources are ours.
                unsafe {
                    if libc::dup2(out_w.as_raw_fd(), 1) < 0 || libc::dup2(err_w.as_raw_fd(), 2) < 0 {
                        libc::_exit(127);
                    }
                }
                drop((out_r, out_w, err_r, err_w));
                std::env::set_var("CLONE_ID", clone.to_string());
                Ok(Some(clone))
            }
            Ok(ForkResult::Parent { child }) => {
                drop((out_w, err_w));
                self.children.insert(child.as_raw(), id);
                let fds = [out_r.as_raw_fd(), err_r.as_raw_fd()];
                transport::send(self.chan, &Message::Forked { id, pid: Pid::as_raw(child) }, &fds)?;
                Ok(None)
            }
            Err(e) => {
                transport::send(self.chan, &Message::Error { id: Some(id), message: format!("fork: {e}") }, &[])?;
                Ok(None)
            }
        }
    }
}

/// A template in one call: runs `init` once, then serves; each clone runs
/// `work(&state, clone_id)` and exits with its return value. Returns only when this process
/// was not started as a template, so a program can call it first thing in `main` and go on
/// to drive corral otherwise. The template exits once corral closes it.
pub fn template<S>(init: impl FnOnce() -> S, work: impl Fn(&S, u32) -> i32) {
    if !is_template() {
        return;
    }
    let state = init();
    match serve() {
        Ok(Some(clone_id)) => {
            let code = work(&state, clone_id);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            // Straight out: exit handlers and destructors would only write to (and so copy)
            // pages the clone shares with the template.
            // SAFETY: _exit ends the process; everything buffered was flushed above.
            unsafe { libc::_exit(code) }
        }
        Ok(None) => std::process::exit(0),
        Err(e) => {
            eprintln!("corral template: {e}");
            std::process::exit(1)
        }
    }
}

/// Makes this process, and so every clone forked from it from birth, not dumpable: no other
/// process of the sandbox (another clone among them) may then read its memory through
/// `/proc/PID/mem` or attach to it, since the sandbox's processes hold no capabilities.
/// (An `exec` resets this; a clone does not exec.)
fn not_dumpable() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(Error::last_os_error());
    }
    Ok(())
}

/// Backs the process's large anonymous mappings with transparent huge pages, best effort.
///
/// A fork copies one page-table entry per resident 4 KiB page: for a 50 MB template that is
/// 12,800 entries per clone, and most of a fork's cost. On huge pages it is 25. Writes in a
/// clone still copy 4 KiB at a time (the kernel splits a shared huge page on a write
/// fault), so sharing is unchanged. Needs Linux 6.1 (MADV_COLLAPSE); where it fails the
/// template simply forks at the 4 KiB rate.
pub fn prefer_huge_pages() {
    const HUGE: usize = 2 << 20;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        // Anonymous (no path, or the heap) and private-writable: where a template's data is.
        let path = fields.nth(3).unwrap_or("");
        if !perms.starts_with("rw") || !perms.ends_with('p') || !(path.is_empty() || path == "[heap]") {
            continue;
        }
        let Some((lo, hi)) = range.split_once('-') else { continue };
        let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) else { continue };
        let start = lo.next_multiple_of(HUGE);
        let end = hi / HUGE * HUGE;
        if end <= start {
            continue;
        }
        // SAFETY: advice on a range of our own mappings; neither call changes its contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_COLLAPSE);
        }
    }
}

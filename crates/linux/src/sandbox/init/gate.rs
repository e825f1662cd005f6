//! The socket gate. Runs in: sandbox init (pid 1), one per sandbox.
//!
//! Long because the gate performs each call it gates in full (copying the arguments once,
//! checking them, acting on the command's socket, answering as the kernel would), and
//! those steps share one set of bounds and checks that must not drift apart.
//!
//! A pathname Unix socket is reached by its path, and Landlock on this kernel does not
//! govern connecting to one: any socket the view shows is connectable, including one a host
//! program creates later in a granted directory (an agent, a database, another sandbox's
//! socket) and one reached through a symlink, `/proc/self/fd` or a volume alias. So every
//! `connect`, `sendto` with an address, `sendmsg` and `sendmmsg` of the command stops in
//! the kernel (seccomp user notification, see `crate::seccomp::gate_program`) and comes
//! here, and this process performs it:
//!
//! - It copies the arguments out of the command's memory once, checks its copy, and acts on
//!   its copy: nothing the command rewrites after the check changes what happens.
//! - It acts on the command's own socket (`pidfd_getfd` gives the same open socket), so the
//!   result is the command's: its socket gets connected, its data sent. Letting the kernel
//!   continue the call instead would re-read the command's memory and descriptor table,
//!   which another of its threads can change in between; no call that can reach a path is
//!   ever continued.
//! - A pathname is resolved from the command's working directory, following symlinks as
//!   the kernel would, to an `O_PATH` descriptor, and the socket behind it must be one that
//!   `allowUnixSockets` listed (as it was when the sandbox started) or one that a process of
//!   this sandbox bound (binds of pathname sockets come here too, are performed here, and
//!   the socket file is kept open so its identity cannot be reused). The connection is then
//!   made to `/proc/self/fd/N` of that descriptor: to exactly the socket that was checked.
//!   Everything else is refused with EACCES, whenever and wherever the socket appeared.
//!
//! Everything else about these calls is the kernel's: errors, partial sends, blocking
//! (a call on a blocking socket that would block is retried here until it can proceed or
//! its send timeout passes, while the command waits in the kernel as it would have).
//! What changes: a peer sees the sandbox's pid 1 as the sender (`SO_PEERCRED`, explicit
//! `SCM_CREDENTIALS`), and a datagram or stream send moves at most [`MAX_STREAM_SEND`]
//! bytes per call (a short write, which callers of `send` handle).
//!
//! This process is the sandbox's own, so a command that floods or stalls it stalls only
//! itself; the helper, shared by every sandbox, never sees these calls. Its memory per call
//! is bounded (the copies below have fixed caps), and a call whose target is gone is
//! dropped. It holds no capability: it reads the command's memory and takes its sockets
//! because the command runs in a user namespace this process owns (`super::command`).

use crate::sys;
use nix::errno::Errno;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most a stream send moves in one call (callers of `send` loop on short writes).
pub const MAX_STREAM_SEND: usize = 256 << 10;
/// The largest datagram passed on (the kernel's own limits are lower).
const MAX_DATAGRAM: usize = 1 << 20;
/// The largest control message (the kernel's default `optmem_max` is 20 KiB).
const MAX_CONTROL: usize = 64 << 10;
/// `struct sockaddr_storage`: the kernel refuses longer addresses with EINVAL.
const MAX_ADDRESS: usize = 128;
/// Messages per `sendmmsg` (UIO_MAXIOV).
const MAX_MESSAGES: usize = 1024;
/// Parts per message (UIO_MAXIOV).
const MAX_IOV: usize = 1024;
/// Calls waiting for a blocking socket at once; past it a call that would block fails
/// with EAGAIN instead of waiting. Each holds a descriptor, as each remembered bind does:
/// both are held to a quarter of this process's descriptor limit too (see `Gate::new`).
const MAX_PARKED: usize = 1024;
/// Sockets bound through the gate that stay identifiable.
const MAX_BOUND: usize = 4096;

const SUN_PATH: usize = 2; // offsetof(struct sockaddr_un, sun_path)

/// What the gate needs from the policy.
pub struct Rules {
    /// Sandbox paths of the sockets `allowUnixSockets` lists.
    pub unix_sockets: Vec<PathBuf>,
    /// TCP bind port rules are in force: `listen()` on an unbound socket (which binds an
    /// ephemeral port no rule saw) is refused.
    pub bind_ports: bool,
    /// Sandbox paths where the command may create files (its Landlock write rules), which
    /// a socket bound through the gate must lie under too.
    pub writable: Vec<PathBuf>,
}

/// A file's identity: device and inode.
type Identity = (u64, u64);

pub struct Gate {
    listener: OwnedFd,
    rules: Rules,
    /// The listed sockets as they were when the sandbox started.
    allowed: Vec<Identity>,
    /// Sockets bound through the gate, each pinned by an `O_PATH` descriptor.
    bound: HashMap<Identity, OwnedFd>,
    parked: Vec<Parked>,
    /// `MAX_BOUND` and `MAX_PARKED` within this process's descriptor limit, which is its
    /// caller's (1024 is common): past it every call that needs a descriptor here would fail.
    max_bound: usize,
    max_parked: usize,
    /// Our own root and mount namespace: a command that has left them (a nested namespace
    /// in the permissive profile) gets no pathname sockets.
    root: Identity,
    mount_ns: Identity,
}

/// One notification: `struct seccomp_notif`.
#[derive(Clone, Copy)]
struct Call {
    id: u64,
    tid: i32,
    nr: i64,
    args: [u64; 6],
}

/// A call waiting for its socket (the command asked to block).
struct Parked {
    call: Call,
    sock: OwnedFd,
    /// A connect under way (wait for it to finish), rather than a call to run again.
    connecting: bool,
    /// When the call gives up (the socket's send timeout), if ever.
    deadline: Option<Instant>,
    /// Whether poll's report on the socket means anything. An unconnected Unix socket
    /// always polls writable, even while the listener it connects to (or the receiver it
    /// sends to) is full: polling it would wake init at once for every such call, and a
    /// process parking many would starve every other gated call of the sandbox.
    polled: bool,
    /// When to try again without a readiness report.
    retry: Instant,
    backoff: Duration,
}

/// The longest wait between tries of a parked call that poll cannot report on.
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// New calls taken per wake-up: enough that a call arriving beside many parked ones is not
/// left behind for many turns, few enough that a flood does not starve init's other duties.
const CALLS_PER_TURN: usize = 32;

/// What handling a call came to.
enum Outcome {
    /// Answer now: a return value or an errno.
    Done(Result<i64, Errno>),
    /// The socket is blocking and not ready: wait, then run the call again.
    Wait { sock: OwnedFd, deadline: Option<Instant> },
    /// A connect is in progress on a blocking socket: wait for it to finish.
    Connecting { sock: OwnedFd, deadline: Option<Instant> },
    /// Let the kernel run the call (binds that cannot reach anything).
    Continue,
}

impl Gate {
    /// Records the identities of the listed sockets (as the sandbox starts, in its view).
    pub fn new(listener: OwnedFd, rules: Rules) -> std::io::Result<Gate> {
        let identity = |p: &Path| -> std::io::Result<Identity> {
            let st = nix::sys::stat::stat(p)?;
            Ok((st.st_dev, st.st_ino))
        };
        let mut allowed = Vec::new();
        for path in &rules.unix_sockets {
            // Opened without following a symlink at the end: the listed path itself.
            let fd = nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            );
            if let Ok(st) = fd.and_then(|fd| nix::sys::stat::fstat(&fd)) {
                if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
                    allowed.push((st.st_dev, st.st_ino));
                }
            }
        }
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX));
        let share = (limit / 4).max(16);
        Ok(Gate {
            listener,
            rules,
            allowed,
            bound: HashMap::new(),
            parked: Vec::new(),
            max_bound: MAX_BOUND.min(share),
            max_parked: MAX_PARKED.min(share),
            root: identity(Path::new("/"))?,
            mount_ns: identity(Path::new("/proc/self/ns/mnt"))?,
        })
    }

    /// Descriptors to poll: the listener, then each parked call's socket.
    pub fn interest(&self, out: &mut Vec<libc::pollfd>) {
        out.push(libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for p in &self.parked {
            // A negative descriptor keeps the places aligned; poll skips it.
            let fd = if p.polled { p.sock.as_raw_fd() } else { -1 };
            out.push(libc::pollfd { fd, events: libc::POLLOUT, revents: 0 });
        }
    }

    /// How long poll may sleep before a parked call wants another try.
    pub fn timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        self.parked
            .iter()
            .flat_map(|p| [Some(p.retry), p.deadline])
            .flatten()
            .map(|t| t.saturating_duration_since(now))
            .min()
    }

    /// Acts on what poll reported for the descriptors `interest` listed (in that order).
    /// False once the listener is gone (no process is left under the filter).
    pub fn handle(&mut self, ready: &[libc::pollfd]) -> bool {
        let now = Instant::now();
        // Parked calls whose socket is ready, whose retry time came, or whose time is up.
        let due: Vec<usize> = self
            .parked
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                ready.get(i + 1).is_some_and(|r| r.revents != 0)
                    || p.retry <= now
                    || p.deadline.is_some_and(|d| d <= now)
            })
            .map(|(i, _)| i)
            .collect();
        for i in due.into_iter().rev() {
            let p = self.parked.swap_remove(i);
            self.resume(p);
        }
        let listener = ready.first().map_or(0, |r| r.revents);
        if listener & libc::POLLIN != 0 {
            // A few calls per wake-up (see CALLS_PER_TURN); poll reports the rest at once.
            for _ in 0..CALLS_PER_TURN {
                let Some(call) = self.receive() else { break };
                self.run(call, None);
                if !sys::ready_now(self.listener.as_fd(), libc::POLLIN).unwrap_or(false) {
                    break;
                }
            }
        }
        listener & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) == 0 || listener & libc::POLLIN != 0
    }

    fn receive(&self) -> Option<Call> {
        // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: ioctl on our listener with a pointer to a local struct of the right size.
        let rc = unsafe { libc::ioctl(self.listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut n) };
        if rc != 0 {
            return None; // ENOENT: the caller was interrupted meanwhile
        }
        let args = n.data.args;
        Some(Call { id: n.id, tid: n.pid as i32, nr: i64::from(n.data.nr), args })
    }

    fn valid(&self, id: u64) -> bool {
        pending(self.listener.as_raw_fd(), id)
    }

    fn answer(&self, id: u64, result: Result<i64, Errno>, continue_call: bool) {
        let (val, error) = match result {
            Ok(v) => (v, 0),
            Err(e) => (0, -(e as i32)),
        };
        let flags = if continue_call { libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 } else { 0 };
        let resp = libc::seccomp_notif_resp { id, val, error, flags };
        // SAFETY: ioctl with a pointer to a local response. ENOENT (the caller is gone or
        // was interrupted) needs nothing more.
        unsafe { libc::ioctl(self.listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND as _, &resp) };
    }

    /// Runs one call (again, for a parked one: `sock` is the socket it started on).
    fn run(&mut self, call: Call, sock: Option<OwnedFd>) {
        let outcome = match Target::open(call.tid, self.listener.as_raw_fd(), call.id) {
            Ok(target) => self.dispatch(&call, &target, sock),
            Err(e) => Outcome::Done(Err(e)),
        };
        match outcome {
            Outcome::Done(result) => self.answer(call.id, result, false),
            Outcome::Continue => self.answer(call.id, Ok(0), true),
            Outcome::Wait { sock, deadline } | Outcome::Connecting { sock, deadline }
                if self.parked.len() >= self.max_parked =>
            {
                let _ = (sock, deadline);
                self.answer(call.id, Err(Errno::EAGAIN), false)
            }
            Outcome::Wait { sock, deadline } => self.park(call, sock, deadline, false),
            Outcome::Connecting { sock, deadline } => self.park(call, sock, deadline, true),
        }
    }

    fn park(&mut self, call: Call, sock: OwnedFd, deadline: Option<Instant>, connecting: bool) {
        let backoff = Duration::from_millis(2);
        let polled = connecting
            || crate::ipc::proxy::int_option(&sock, libc::SO_DOMAIN) != Some(libc::AF_UNIX)
            || nix::sys::socket::getpeername::<nix::sys::socket::UnixAddr>(sock.as_raw_fd()).is_ok();
        self.parked.push(Parked { call, sock, connecting, polled, deadline, retry: Instant::now() + backoff, backoff });
    }

    fn resume(&mut self, mut p: Parked) {
        if !self.valid(p.call.id) {
            return; // the command was interrupted or killed; a restarted call comes anew
        }
        if p.deadline.is_some_and(|d| d <= Instant::now()) {
            // What the kernel answers when a blocking call's send timeout passes.
            let e = if p.connecting { Errno::EINPROGRESS } else { Errno::EAGAIN };
            return self.answer(p.call.id, Err(e), false);
        }
        if p.connecting {
            // Finished when the socket is writable (or failed): its pending error tells.
            match connect_finished(&p.sock) {
                Some(result) => self.answer(p.call.id, result.map(|()| 0), false),
                None => {
                    p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
                    p.retry = Instant::now() + p.backoff;
                    self.parked.push(p);
                }
            }
            return;
        }
        let backoff = p.backoff;
        let before = self.parked.len();
        self.run(p.call, Some(p.sock));
        if self.parked.len() > before {
            if let Some(again) = self.parked.last_mut() {
                again.backoff = (backoff * 2).min(MAX_BACKOFF);
                again.retry = Instant::now() + again.backoff;
            }
        }
    }

    fn dispatch(&mut self, call: &Call, target: &Target, sock: Option<OwnedFd>) -> Outcome {
        let a = call.args;
        let fd = a[0] as i32;
        let sock = match sock {
            Some(s) => s,
            None => match target.socket(fd) {
                Ok(s) => s,
                Err(e) => return Outcome::Done(Err(e)),
            },
        };
        let result = match call.nr {
            libc::SYS_connect => return self.connect(target, sock, a[1], a[2] as u32),
            libc::SYS_bind => return self.bind(target, &sock, a[1], a[2] as u32),
            libc::SYS_listen => self.listen(&sock, a[1] as i32),
            libc::SYS_sendto => {
                let msg = Message { name: (a[4], a[5] as u32), iov: Iov::One(a[1], a[2] as usize), control: (0, 0) };
                return self.send(target, sock, &msg, a[3] as i32);
            }
            libc::SYS_sendmsg => match Message::read(target, a[1]) {
                Ok(msg) => return self.send(target, sock, &msg, a[2] as i32),
                Err(e) => Err(e),
            },
            libc::SYS_sendmmsg => return self.sendmmsg(target, sock, a[1], a[2] as u32, a[3] as i32),
            _ => Err(Errno::ENOSYS),
        };
        Outcome::Done(result)
    }

    /// `connect`: every family goes through here; pathname Unix addresses are checked.
    fn connect(&mut self, target: &Target, sock: OwnedFd, addr: u64, len: u32) -> Outcome {
        let address = match read_address(target, addr, len) {
            Ok(a) => a,
            Err(e) => return Outcome::Done(Err(e)),
        };
        let (address, _pin) = match self.checked(target, &sock, address) {
            Ok(a) => a,
            Err(e) => return Outcome::Done(Err(e)),
        };
        let blocking = !nonblocking(&sock);
        // A blocking connect must not block this process: start it non-blocking (the flag
        // belongs to the open socket, so for a moment the command's copy is non-blocking
        // too), restore the flag, and wait for the outcome in poll.
        let flags = file_flags(&sock);
        if blocking {
            set_file_flags(&sock, flags | libc::O_NONBLOCK);
        }
        // SAFETY: connect on our copy of the socket with our copy of the address.
        let rc = unsafe { libc::connect(sock.as_raw_fd(), address.as_ptr().cast(), address.len() as libc::socklen_t) };
        let result = if rc == 0 { Ok(0) } else { Err(Errno::last()) };
        if blocking {
            set_file_flags(&sock, flags);
        }
        match result {
            Err(Errno::EINPROGRESS) | Err(Errno::EALREADY) if blocking => {
                Outcome::Connecting { deadline: send_deadline(&sock), sock }
            }
            // A Unix listener with a full backlog: a blocking connect waits for room.
            Err(Errno::EAGAIN) if blocking => Outcome::Wait { deadline: send_deadline(&sock), sock },
            other => Outcome::Done(other),
        }
    }

    /// `bind`: a pathname Unix socket is bound here (so the gate knows it for what it is);
    /// every other bind cannot reach anything and the kernel runs it in the command.
    fn bind(&mut self, target: &Target, sock: &OwnedFd, addr: u64, len: u32) -> Outcome {
        let address = match read_address(target, addr, len) {
            Ok(a) => a,
            Err(e) => return Outcome::Done(Err(e)),
        };
        let Some(path) = unix_path(sock, &address) else { return Outcome::Continue };
        Outcome::Done(self.bind_path(target, sock, &path).map(|()| 0))
    }

    fn bind_path(&mut self, target: &Target, sock: &OwnedFd, path: &[u8]) -> Result<(), Errno> {
        self.same_view(target)?;
        let path = Path::new(std::ffi::OsStr::from_bytes(path));
        let name = path.file_name().ok_or(Errno::EINVAL)?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = target.open_path(parent, libc::O_DIRECTORY)?;
        // The command's Landlock rules decide where it may create files; the gate binds
        // on its behalf, so it asks the same of the directory.
        let dir_path = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).map_err(|_| Errno::EACCES)?;
        if !self.rules.writable.iter().any(|w| dir_path.starts_with(w)) {
            return Err(Errno::EACCES);
        }
        let mask = target.umask().unwrap_or(0o022);
        // Bound by name inside the directory, with the command's umask (this process is
        // single-threaded, so its cwd and umask may stand in for a moment).
        let name_c = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
        nix::unistd::fchdir(&dir)?;
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
        let mut address = vec![0u8; SUN_PATH];
        address[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        address.extend_from_slice(name_c.as_bytes_with_nul());
        // SAFETY: bind on our copy of the socket with an address we built.
        let rc = unsafe { libc::bind(sock.as_raw_fd(), address.as_ptr().cast(), address.len() as libc::socklen_t) };
        let result = if rc == 0 { Ok(()) } else { Err(Errno::last()) };
        nix::sys::stat::umask(old);
        let _ = nix::unistd::chdir("/");
        result?;
        if self.bound.len() >= self.max_bound {
            // Forget sockets whose files are gone; if that frees nothing, the newest bind
            // is not remembered (connecting to it is refused, never allowed wrongly).
            self.bound.retain(|_, fd| nix::sys::stat::fstat(fd as &OwnedFd).is_ok_and(|s| s.st_nlink > 0));
        }
        // Keep the socket file open: its inode number stays ours while the gate uses it.
        // The bind has happened whatever follows: a socket that cannot be remembered is
        // still bound, and only connecting to it is refused.
        if self.bound.len() < self.max_bound {
            let pin = nix::fcntl::openat(
                &dir,
                name,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            );
            if let Ok(pin) = pin {
                // Between the bind and that open, another process of the sandbox may have
                // renamed some other socket over the new name (a host program's, from a
                // directory it may write): the file is remembered only if it is the one this
                // socket is bound to, by the kernel's word. (Renames never leave a file
                // system, and there inode numbers differ.)
                if let Ok(st) = nix::sys::stat::fstat(&pin) {
                    if bound_inode(sock) == Some(st.st_ino as u32) {
                        self.bound.insert((st.st_dev, st.st_ino), pin);
                    }
                }
            }
        }
        Ok(())
    }

    /// `listen` (only while bind port rules are in force): an unbound TCP socket would be
    /// given an ephemeral port no rule saw.
    fn listen(&self, sock: &OwnedFd, backlog: i32) -> Result<i64, Errno> {
        let family = crate::ipc::proxy::int_option(sock, libc::SO_DOMAIN).unwrap_or(0);
        if self.rules.bind_ports && (family == libc::AF_INET || family == libc::AF_INET6) {
            match local_port(sock) {
                Some(port) if port != 0 && holds_port(sock, family, port) => {}
                _ => return Err(Errno::EACCES),
            }
        }
        nix::sys::socket::listen(
            sock,
            nix::sys::socket::Backlog::new(backlog.max(0)).unwrap_or(nix::sys::socket::Backlog::MAXCONN),
        )?;
        Ok(0)
    }

    /// `sendto` with an address, `sendmsg`: the message is copied and sent from here.
    fn send(&mut self, target: &Target, sock: OwnedFd, msg: &Message, flags: i32) -> Outcome {
        match self.send_one(target, &sock, msg, flags) {
            Ok(n) => Outcome::Done(Ok(n as i64)),
            Err(Errno::EAGAIN) if flags & libc::MSG_DONTWAIT == 0 && !nonblocking(&sock) => {
                Outcome::Wait { deadline: send_deadline(&sock), sock }
            }
            Err(e) => Outcome::Done(Err(e)),
        }
    }

    fn send_one(&mut self, target: &Target, sock: &OwnedFd, msg: &Message, flags: i32) -> Result<usize, Errno> {
        // MSG_ZEROCOPY lends the kernel the pages of the buffer sent from until the bytes
        // have left, which can be long after the call returns; ours is freed at once and
        // reused for the next call, so the bytes would leave carrying another process's
        // message. ENOBUFS is how the kernel says it cannot send without copying (callers
        // send again without the flag).
        if flags & libc::MSG_ZEROCOPY != 0 {
            return Err(Errno::ENOBUFS);
        }
        let stream = crate::ipc::proxy::int_option(sock, libc::SO_TYPE) == Some(libc::SOCK_STREAM);
        let cap = if stream { MAX_STREAM_SEND } else { MAX_DATAGRAM };
        let data = msg.iov.read(target, cap, stream)?;
        let name = match msg.name {
            (0, _) | (_, 0) => None,
            (addr, len) => Some(read_address(target, addr, len)?),
        };
        let (name, _pin) = match name {
            Some(name) => {
                let (checked, pin) = self.checked(target, sock, name)?;
                (Some(checked), pin)
            }
            None => (None, None),
        };
        let (mut control, _fds) = read_control(target, msg.control)?;
        if !target.still_valid() {
            return Err(Errno::ENOENT);
        }
        let mut iov = [libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() }];
        // SAFETY: msghdr is plain data; every pointer below outlives the call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = iov.as_mut_ptr();
        hdr.msg_iovlen = 1;
        if let Some(name) = &name {
            hdr.msg_name = name.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = name.len() as libc::socklen_t;
        }
        if !control.is_empty() {
            hdr.msg_control = control.as_mut_ptr().cast();
            hdr.msg_controllen = control.len() as _;
        }
        // Never block here, never let a dead peer signal this process.
        let ours = flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: sendmsg on our copy of the socket with buffers we own.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, ours) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e == Errno::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
            // The signal the command would have had.
            target.signal(libc::SIGPIPE);
        }
        Err(e)
    }

    /// `sendmmsg`: each message as `sendmsg`; the count sent is written back as the kernel
    /// would (`msg_len` of each message).
    fn sendmmsg(&mut self, target: &Target, sock: OwnedFd, vec: u64, count: u32, flags: i32) -> Outcome {
        let count = (count as usize).min(MAX_MESSAGES);
        const ENTRY: u64 = std::mem::size_of::<libc::mmsghdr>() as u64;
        let mut sent = 0usize;
        for i in 0..count {
            let at = vec + i as u64 * ENTRY;
            let result = Message::read(target, at).and_then(|msg| self.send_one(target, &sock, &msg, flags));
            match result {
                Ok(n) => {
                    let len_at = at + std::mem::size_of::<libc::msghdr>() as u64;
                    if target.write(len_at, &(n as u32).to_ne_bytes()).is_err() {
                        break;
                    }
                    sent += 1;
                }
                Err(Errno::EAGAIN) if sent == 0 && flags & libc::MSG_DONTWAIT == 0 && !nonblocking(&sock) => {
                    return Outcome::Wait { deadline: send_deadline(&sock), sock };
                }
                Err(e) if sent == 0 => return Outcome::Done(Err(e)),
                Err(_) => break,
            }
        }
        Outcome::Done(Ok(sent as i64))
    }

    /// The address to use instead of `address`: the same, unless it names a pathname
    /// socket, which must pass the check and is then named by our descriptor for it (kept
    /// open, returned alongside, until the call is made).
    fn checked(&self, target: &Target, sock: &OwnedFd, address: Vec<u8>) -> Result<(Vec<u8>, Option<OwnedFd>), Errno> {
        let Some(path) = unix_path(sock, &address) else { return Ok((address, None)) };
        self.same_view(target)?;
        let path = Path::new(std::ffi::OsStr::from_bytes(&path));
        // Like the kernel: follow symlinks; a missing path is ENOENT, a non-socket refused.
        let found = target.open_path(path, 0)?;
        let st = nix::sys::stat::fstat(&found)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(Errno::ECONNREFUSED);
        }
        let id = (st.st_dev, st.st_ino);
        if !self.allowed.contains(&id) && !self.bound.contains_key(&id) {
            return Err(Errno::EACCES);
        }
        let by_fd = format!("/proc/self/fd/{}", found.as_raw_fd());
        let mut out = vec![0u8; SUN_PATH];
        out[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        out.extend_from_slice(by_fd.as_bytes());
        out.push(0);
        Ok((out, Some(found)))
    }

    fn same_view(&self, target: &Target) -> Result<(), Errno> {
        let id = |p: String| nix::sys::stat::stat(p.as_str()).map(|s| (s.st_dev, s.st_ino));
        if id(format!("/proc/{}/root", target.tid))? == self.root
            && id(format!("/proc/{}/ns/mnt", target.tid))? == self.mount_ns
        {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }
}

/// The pathname of a Unix address on a Unix socket; `None` for anything else (abstract
/// names, unnamed addresses, other families).
fn unix_path(sock: &OwnedFd, address: &[u8]) -> Option<Vec<u8>> {
    if crate::ipc::proxy::int_option(sock, libc::SO_DOMAIN) != Some(libc::AF_UNIX) {
        return None;
    }
    if address.len() <= SUN_PATH || u16::from_ne_bytes([address[0], address[1]]) != libc::AF_UNIX as u16 {
        return None;
    }
    let raw = &address[SUN_PATH..];
    if raw[0] == 0 {
        return None; // abstract: Landlock scopes those
    }
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    Some(raw[..end].to_vec())
}

fn read_address(target: &Target, addr: u64, len: u32) -> Result<Vec<u8>, Errno> {
    if len as usize > MAX_ADDRESS {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    target.read(addr, len as usize)
}

/// The parts of a message to copy: name, data, control.
struct Message {
    name: (u64, u32),
    iov: Iov,
    control: (u64, usize),
}

enum Iov {
    One(u64, usize),
    Many(u64, usize),
}

impl Message {
    /// Reads a `struct msghdr` at `at`.
    fn read(target: &Target, at: u64) -> Result<Message, Errno> {
        let raw = target.read(at, std::mem::size_of::<libc::msghdr>())?;
        // SAFETY: msghdr is plain data and `raw` has its size; read unaligned.
        let h: libc::msghdr = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
        if h.msg_iovlen > MAX_IOV {
            return Err(Errno::EMSGSIZE);
        }
        Ok(Message {
            name: (h.msg_name as u64, h.msg_namelen),
            iov: Iov::Many(h.msg_iov as u64, h.msg_iovlen),
            control: (h.msg_control as u64, h.msg_controllen),
        })
    }
}

impl Iov {
    /// The data, gathered: at most `cap` bytes for a stream (a short send), else all of it
    /// or EMSGSIZE.
    fn read(&self, target: &Target, cap: usize, stream: bool) -> Result<Vec<u8>, Errno> {
        let parts: Vec<(u64, usize)> = match *self {
            Iov::One(base, len) => vec![(base, len)],
            Iov::Many(at, count) => {
                if count == 0 {
                    return Ok(Vec::new());
                }
                let raw = target.read(at, count * std::mem::size_of::<libc::iovec>())?;
                raw.chunks_exact(std::mem::size_of::<libc::iovec>())
                    .map(|c| {
                        // SAFETY: iovec is plain data; `c` has its size.
                        let v: libc::iovec = unsafe { std::ptr::read_unaligned(c.as_ptr().cast()) };
                        (v.iov_base as u64, v.iov_len)
                    })
                    .collect()
            }
        };
        let total = parts.iter().fold(0usize, |n, (_, len)| n.saturating_add(*len));
        if !stream && total > cap {
            return Err(Errno::EMSGSIZE);
        }
        let mut data = Vec::with_capacity(total.min(cap));
        for (base, len) in parts {
            let room = cap - data.len();
            if room == 0 {
                break;
            }
            let take = len.min(room);
            if take > 0 {
                data.extend_from_slice(&target.read(base, take)?);
            }
        }
        Ok(data)
    }
}

/// The control data with the command's descriptors replaced by ours (kept open until the
/// call is made, returned alongside) and its credentials by this process's.
fn read_control(target: &Target, (at, len): (u64, usize)) -> Result<(Vec<u8>, Vec<OwnedFd>), Errno> {
    if at == 0 || len == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    if len > MAX_CONTROL {
        return Err(Errno::ENOBUFS);
    }
    let mut buf = target.read(at, len)?;
    let mut fds = Vec::new();
    let header = std::mem::size_of::<libc::cmsghdr>();
    let mut off = 0usize;
    while off + header <= buf.len() {
        // SAFETY: cmsghdr is plain data and `buf[off..]` has at least its size.
        let h: libc::cmsghdr = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
        // The length is the command's: checked without overflow (a length that wraps the
        // offset around would loop this process forever or slice backwards), as the
        // kernel does, before anything uses it.
        let total = h.cmsg_len;
        let end = match off.checked_add(total) {
            Some(end) if total >= header && end <= buf.len() => end,
            _ => return Err(Errno::EINVAL),
        };
        let body = off + header..end;
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            for slot in buf[body].chunks_exact_mut(4) {
                let theirs = i32::from_ne_bytes([slot[0], slot[1], slot[2], slot[3]]);
                let ours = target.descriptor(theirs)?;
                slot.copy_from_slice(&ours.as_raw_fd().to_ne_bytes());
                fds.push(ours);
            }
        } else if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_CREDENTIALS {
            // The kernel accepts only the sender's own pid: ours.
            if body.len() >= 4 {
                buf[body.start..body.start + 4].copy_from_slice(&std::process::id().to_ne_bytes());
            }
        }
        // CMSG_ALIGN. `total` is at least a header and at most the buffer's length here, so
        // the offset moves on and neither sum overflows.
        off += (total + std::mem::size_of::<usize>() - 1) & !(std::mem::size_of::<usize>() - 1);
    }
    Ok((buf, fds))
}

/// Whether notification `id` still waits for an answer (its caller is alive and has not
/// been interrupted).
fn pending(listener: RawFd, id: u64) -> bool {
    // SAFETY: ioctl with a pointer to a local u64.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _, &id) == 0 }
}

/// The calling thread of a notification, as far as the gate needs it.
struct Target {
    tid: i32,
    pidfd: OwnedFd,
    listener: RawFd,
    id: u64,
}

impl Target {
    /// Opens the thread. The notification still pending after the pidfd exists proves the
    /// pidfd is the caller's (its thread id cannot have been reused meanwhile).
    fn open(tid: i32, listener: RawFd, id: u64) -> Result<Target, Errno> {
        let pidfd =
            sys::pidfd_open_thread(tid).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::ESRCH)))?;
        if !pending(listener, id) {
            return Err(Errno::ENOENT);
        }
        Ok(Target { tid, pidfd, listener, id })
    }

    /// Checked again after reading the caller's memory and before acting on it.
    fn still_valid(&self) -> bool {
        pending(self.listener, self.id)
    }

    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; len];
        let local = [std::io::IoSliceMut::new(&mut buf)];
        let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len }];
        let mut local = local;
        match nix::sys::uio::process_vm_readv(nix::unistd::Pid::from_raw(self.tid), &mut local, &remote) {
            Ok(n) if n == len => Ok(buf),
            _ => Err(Errno::EFAULT),
        }
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let local = [std::io::IoSlice::new(data)];
        let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len: data.len() }];
        match nix::sys::uio::process_vm_writev(nix::unistd::Pid::from_raw(self.tid), &local, &remote) {
            Ok(n) if n == data.len() => Ok(()),
            _ => Err(Errno::EFAULT),
        }
    }

    /// The command's descriptor `fd`, as ours (the same open file).
    fn descriptor(&self, fd: RawFd) -> Result<OwnedFd, Errno> {
        sys::pidfd_getfd(self.pidfd.as_fd(), fd).map_err(|e| match e.raw_os_error() {
            Some(libc::EBADF) => Errno::EBADF,
            Some(e) => Errno::from_raw(e),
            None => Errno::EBADF,
        })
    }

    /// The command's socket `fd` (ENOTSOCK for anything else).
    fn socket(&self, fd: RawFd) -> Result<OwnedFd, Errno> {
        let sock = self.descriptor(fd)?;
        let st = nix::sys::stat::fstat(&sock)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(Errno::ENOTSOCK);
        }
        Ok(sock)
    }

    /// Opens `path` as the command's own lookup would (from its working directory for a
    /// relative path, following symlinks) to an `O_PATH` descriptor. `/proc/self` and
    /// `/proc/thread-self` name the command, not this process. (A symlink elsewhere that
    /// leads there still resolves as ours: whatever it finds must pass the same check.)
    fn open_path(&self, path: &Path, extra: i32) -> Result<OwnedFd, Errno> {
        let rewritten;
        let path = match (path.strip_prefix("/proc/self"), path.strip_prefix("/proc/thread-self")) {
            (Ok(rest), _) => {
                rewritten = Path::new(&format!("/proc/{}", self.tgid()?)).join(rest);
                rewritten.as_path()
            }
            (_, Ok(rest)) => {
                rewritten = Path::new(&format!("/proc/{}/task/{}", self.tgid()?, self.tid)).join(rest);
                rewritten.as_path()
            }
            _ => path,
        };
        let base = if path.is_absolute() {
            None
        } else {
            Some(nix::fcntl::open(
                format!("/proc/{}/cwd", self.tid).as_str(),
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?)
        };
        let flags =
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::from_bits_truncate(extra);
        match &base {
            Some(dir) => nix::fcntl::openat(dir, path, flags, nix::sys::stat::Mode::empty()),
            None => nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()),
        }
    }

    /// The calling thread's process id.
    fn tgid(&self) -> Result<i32, Errno> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.tid)).map_err(|_| Errno::ESRCH)?;
        status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok()).ok_or(Errno::ESRCH)
    }

    /// The command's umask, from its status.
    fn umask(&self) -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.tid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("Umask:"))?;
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: pidfd_send_signal to the calling thread's pidfd.
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.pidfd.as_raw_fd(), sig, 0usize, 0u32) };
    }
}

fn file_flags(sock: &OwnedFd) -> i32 {
    // SAFETY: fcntl on our descriptor.
    unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_GETFL) }.max(0)
}

fn set_file_flags(sock: &OwnedFd, flags: i32) {
    // SAFETY: fcntl on our descriptor.
    unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_SETFL, flags) };
}

fn nonblocking(sock: &OwnedFd) -> bool {
    file_flags(sock) & libc::O_NONBLOCK != 0
}

/// When a blocking call on `sock` gives up: its `SO_SNDTIMEO`, if set.
fn send_deadline(sock: &OwnedFd) -> Option<Instant> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: getsockopt into a local timeval.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    if rc != 0 || (tv.tv_sec == 0 && tv.tv_usec == 0) {
        return None;
    }
    Some(Instant::now() + Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000))
}

/// A connect in progress: `None` while it is, else its outcome.
fn connect_finished(sock: &OwnedFd) -> Option<Result<(), Errno>> {
    if !sys::ready_now(sock.as_fd(), libc::POLLOUT).unwrap_or(false) {
        return None;
    }
    match crate::ipc::proxy::int_option(sock, libc::SO_ERROR) {
        Some(0) => Some(Ok(())),
        Some(e) => Some(Err(Errno::from_raw(e))),
        None => Some(Err(Errno::last())),
    }
}

/// Whether the inet socket `sock`, whose name shows `port`, really holds that port. The name
/// alone does not tell: after a failed connect the kernel releases the ephemeral port it had
/// taken but the name still shows it, and listen() on that socket would take a fresh port
/// that no rule saw. Binding again does tell: a socket holding a port answers EINVAL (a
/// socket binds once, and the kernel says so before it looks for the port); one that holds
/// none is refused by the port rules (this process's Landlock domain has the command's) or
/// is now bound to `port`, which those rules allow, and is still refused as never bound.
fn holds_port(sock: &OwnedFd, family: i32, port: u16) -> bool {
    use nix::sys::socket::{SockaddrIn, SockaddrIn6};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let result = if family == libc::AF_INET {
        nix::sys::socket::bind(sock.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)))
    } else {
        nix::sys::socket::bind(
            sock.as_raw_fd(),
            &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
        )
    };
    result == Err(Errno::EINVAL)
}

/// The inode number (its low 32 bits, which is what the kernel reports) of the file the
/// Unix socket `sock` is bound to, from the kernel's socket diagnostics (sock_diag, which
/// needs no privilege); `None` when it is bound to none or the kernel cannot say.
fn bound_inode(sock: &OwnedFd) -> Option<u32> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_VFS: u32 = 0x2;
    const UNIX_DIAG_VFS: u16 = 1;
    const HEADER: usize = 16; // struct nlmsghdr
    const MESSAGE: usize = 16; // struct unix_diag_msg
                               // Sockets live on sockfs, whose inode numbers are 32 bits.
    let ino = u32::try_from(nix::sys::stat::fstat(sock).ok()?.st_ino).ok()?;
    // SAFETY: socket(2) with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a descriptor just made, owned from here on.
    let netlink = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // struct nlmsghdr, then struct unix_diag_req for exactly this socket, no cookie.
    let mut req = Vec::with_capacity(HEADER + 24);
    req.extend_from_slice(&((HEADER + 24) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&ino.to_ne_bytes());
    req.extend_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: send(2) of a buffer we own.
    if unsafe { libc::send(netlink.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } != req.len() as isize {
        return None;
    }
    // The kernel answers within the send: nothing here waits.
    let mut buf = [0u8; 1024];
    // SAFETY: recv(2) into a local buffer.
    let n = unsafe { libc::recv(netlink.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    let reply = buf.get(..usize::try_from(n).ok()?)?;
    let u32_at = |at: usize| reply.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let u16_at = |at: usize| reply.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let len = (u32_at(0)? as usize).min(reply.len());
    if u16_at(4)? != SOCK_DIAG_BY_FAMILY || u32_at(HEADER + 4)? != ino {
        return None; // an error, or not about this socket
    }
    let mut at = HEADER + MESSAGE;
    while at + 4 <= len {
        let (size, kind) = (u16_at(at)? as usize, u16_at(at + 2)?);
        if size < 4 {
            return None;
        }
        if kind == UNIX_DIAG_VFS && size >= 12 {
            return u32_at(at + 4); // struct unix_diag_vfs: inode, then device
        }
        at += (size + 3) & !3;
    }
    None
}

/// The local port of an inet socket (0 when unbound).
fn local_port(sock: &OwnedFd) -> Option<u16> {
    let addr: nix::sys::socket::SockaddrStorage = nix::sys::socket::getsockname(sock.as_raw_fd()).ok()?;
    addr.as_sockaddr_in().map(|a| a.port()).or_else(|| addr.as_sockaddr_in6().map(|a| a.port()))
}

//! The command's terminal. Runs in: sandbox init (creates it) and the command (adopts it).
//!
//! The pty comes from the sandbox's own devpts instance (`/dev/ptmx` inside the view), so
//! nothing of the host's terminals is reachable; the master side travels to the caller,
//! and the slave becomes the command's controlling terminal after `setsid`.

use super::{Step, StepError};
use corral_core::spec::TerminalSize;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};

/// Opens a new pty of the sandbox's devpts: (master, slave).
pub fn open(size: TerminalSize) -> Result<(OwnedFd, OwnedFd), StepError> {
    let master = nix::fcntl::open("/dev/ptmx", OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
        .step("open /dev/ptmx")?;
    let mut n: libc::c_uint = 0;
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on the master we just opened, with pointers to locals.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0
            || libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) < 0
        {
            return Err(StepError::io("unlock pty", std::io::Error::last_os_error()));
        }
    }
    let slave = nix::fcntl::open(
        format!("/dev/pts/{n}").as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("open pty slave")?;
    resize(&master, size).step("set terminal size")?;
    Ok((master, slave))
}

/// Sets the window size (the command gets SIGWINCH).
pub fn resize(master: &impl AsRawFd, size: TerminalSize) -> std::io::Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ with a pointer to a local winsize.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// In the command, after `setsid`: the slave becomes the controlling terminal and stdio.
pub fn adopt(slave: i32) -> Result<(), StepError> {
    // SAFETY: ioctl and dup2 on a descriptor inherited from init.
    unsafe {
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
            return Err(StepError::io("make the terminal controlling", std::io::Error::last_os_error()));
        }
        for target in 0..3 {
            if libc::dup2(slave, target) < 0 {
                return Err(StepError::io("dup2 terminal", std::io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

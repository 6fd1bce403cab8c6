//! Socket options libc exposes but neither xsk-rs nor nix wrap.

use std::io;
use std::os::fd::RawFd;

/// Busy-poll the device from this socket's syscalls (kernel ≥ 5.11):
/// SO_PREFER_BUSY_POLL makes the kernel favour our polling over interrupts,
/// SO_BUSY_POLL sets how long a syscall may spin (µs), SO_BUSY_POLL_BUDGET
/// how many packets one poll may process.
pub fn prefer_busy_poll(fd: RawFd, budget: u32) -> io::Result<()> {
    const BUSY_POLL_USECS: i32 = 20;
    set_int(fd, libc::SOL_SOCKET, libc::SO_PREFER_BUSY_POLL, 1)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, BUSY_POLL_USECS)?;
    set_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_BUSY_POLL_BUDGET,
        budget as i32,
    )
}

fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is an initialised i32 that lives for the call and we
    // pass its exact size; `fd` is a socket owned by the caller (invariant 5).
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

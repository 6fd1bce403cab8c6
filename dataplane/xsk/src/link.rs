//! XDP attachment through a BPF link.
//!
//! libbpf-rs attaches XDP programs either through netlink (which outlives the
//! process) or through `bpf_program__attach_xdp` (a link, but without mode
//! flags). sluice wants both a link and the mode: a link is owned by a file
//! descriptor, so the kernel detaches the program when the last descriptor
//! closes, even if the process is killed with SIGKILL. Nothing stays attached
//! to the NIC after sluice exits, however it exits.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Where the kernel runs the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (XDP_FLAGS_DRV_MODE); fails if the driver has no XDP.
    Native,
    /// Generic XDP on the skb path (XDP_FLAGS_SKB_MODE); works everywhere, slower.
    Skb,
}

/// An XDP program attached to an interface. Dropping it detaches the program.
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
    ifindex: u32,
    mode: XdpAttachMode,
}

impl XdpLink {
    /// Attach `prog` to `ifindex` in `mode` through a new BPF link.
    ///
    /// Fails with EBUSY if another program is attached to the interface in
    /// the same mode (through netlink or another link).
    pub fn attach(prog: BorrowedFd<'_>, ifindex: u32, mode: XdpAttachMode) -> io::Result<Self> {
        let flags = match mode {
            XdpAttachMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            XdpAttachMode::Skb => libbpf_sys::XDP_FLAGS_SKB_MODE,
        };
        let opts = libbpf_sys::bpf_link_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
            flags,
            ..Default::default()
        };
        // SAFETY: `prog` is a live program fd borrowed for the call, `opts` is a
        // fully initialised struct whose `sz` is its own size, and libbpf only
        // reads it during the call. The return value is a new fd we own, or a
        // negative errno.
        let ret = unsafe {
            libbpf_sys::bpf_link_create(
                prog.as_raw_fd(),
                ifindex as i32,
                libbpf_sys::BPF_XDP,
                &opts,
            )
        };
        if ret < 0 {
            return Err(io::Error::from_raw_os_error(-ret));
        }
        // SAFETY: `ret` is a fresh descriptor returned by the kernel and owned
        // by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(ret) };
        Ok(Self { fd, ifindex, mode })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn mode(&self) -> XdpAttachMode {
        self.mode
    }

    /// Detach now instead of on drop, reporting errors.
    pub fn detach(self) -> io::Result<()> {
        // SAFETY: the fd is a live BPF link owned by `self`.
        let ret = unsafe { libbpf_sys::bpf_link_detach(self.fd.as_raw_fd()) };
        if ret < 0 {
            return Err(io::Error::from_raw_os_error(-ret));
        }
        Ok(())
    }
}

impl AsFd for XdpLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Which tc hook a [`TcxLink`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcxDirection {
    Ingress,
    Egress,
}

/// A SCHED_CLS program attached to an interface's tc hook through a TCX
/// link (BPF_TCX_INGRESS / BPF_TCX_EGRESS, kernel >= 6.6), appended after
/// any programs already there. Like [`XdpLink`], the link is owned by a file
/// descriptor: dropping it, or the process dying, detaches the program, and
/// no qdisc or filter is left behind.
#[derive(Debug)]
pub struct TcxLink {
    fd: OwnedFd,
    ifindex: u32,
    direction: TcxDirection,
}

impl TcxLink {
    /// Attach `prog` (a SCHED_CLS program) to `ifindex` on `direction`.
    /// The interface is looked up in the calling thread's network namespace.
    pub fn attach(prog: BorrowedFd<'_>, ifindex: u32, direction: TcxDirection) -> io::Result<Self> {
        let attach_type = match direction {
            TcxDirection::Ingress => libbpf_sys::BPF_TCX_INGRESS,
            TcxDirection::Egress => libbpf_sys::BPF_TCX_EGRESS,
        };
        let opts = libbpf_sys::bpf_link_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
            ..Default::default()
        };
        // SAFETY: as in `XdpLink::attach`: a live program fd borrowed for the
        // call, a fully initialised options struct that libbpf only reads
        // during the call, and a return value that is a new fd or -errno.
        let ret = unsafe {
            libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts)
        };
        if ret < 0 {
            return Err(io::Error::from_raw_os_error(-ret));
        }
        // SAFETY: `ret` is a fresh descriptor returned by the kernel and owned
        // by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(ret) };
        Ok(Self {
            fd,
            ifindex,
            direction,
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn direction(&self) -> TcxDirection {
        self.direction
    }

    /// Detach now instead of on drop, reporting errors.
    pub fn detach(self) -> io::Result<()> {
        // SAFETY: the fd is a live BPF link owned by `self`.
        let ret = unsafe { libbpf_sys::bpf_link_detach(self.fd.as_raw_fd()) };
        if ret < 0 {
            return Err(io::Error::from_raw_os_error(-ret));
        }
        Ok(())
    }
}

impl AsFd for TcxLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

//! A minimal bound AF_XDP socket, for tests that need a live entry in an
//! XSKMAP: the kernel accepts only sockets with a UMEM, a fill ring and an
//! RX ring that are bound to a device queue. It never reads or writes a
//! frame; it is not a datapath socket.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, RxQueue, Socket, TxQueue, Umem};

/// An AF_XDP socket bound to (interface, queue) in copy mode, with its own
/// private UMEM and no XDP program loaded by libxdp.
pub struct ProbeSocket {
    // Field order is drop order: the rings before the UMEM they map.
    tx: TxQueue,
    _rx: RxQueue,
    _fq_cq: Option<(FillQueue, CompQueue)>,
    _umem: Umem,
}

impl ProbeSocket {
    /// Binds a socket to `queue` of `ifname` (in the calling thread's network
    /// namespace) in copy mode.
    pub fn bind(ifname: &str, queue: u32) -> io::Result<Self> {
        let other = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
        let umem_cfg = UmemConfig::builder().build().map_err(|e| other(&e))?;
        let frames = NonZeroU32::new(64).expect("non-zero");
        let (umem, _frames) = Umem::new(umem_cfg, frames, false).map_err(|e| other(&e))?;
        let cfg = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY)
            .build();
        let iface: Interface = ifname.parse().map_err(|e| other(&e))?;
        // SAFETY: the safety condition of `Socket::new` concerns a shared UMEM
        // whose (interface, queue) pair is already bound; this UMEM was
        // created just above and is used by this socket only, and
        // INHIBIT_PROG_LOAD is set anyway.
        let (tx, rx, fq_cq) =
            unsafe { Socket::new(cfg, &umem, &iface, queue) }.map_err(|e| other(&e))?;
        Ok(Self {
            tx,
            _rx: rx,
            _fq_cq: fq_cq,
            _umem: umem,
        })
    }
}

impl AsFd for ProbeSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        let fd = self.tx.fd().as_raw_fd();
        // SAFETY: the descriptor belongs to the socket that `self.tx` keeps
        // alive; the borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }
}

//! One AF_XDP socket with its own UMEM, bound to one queue of one interface.
//!
//! The poll loop that owns an [`Xsk`] drives it in this order each iteration:
//! [`Xsk::reclaim`] (completions back to the free list), [`Xsk::refill`] (free
//! frames onto the fill ring), [`Xsk::receive`] (frames lent to a closure that
//! answers transmit or drop), [`Xsk::transmit`] (new frames written by a
//! closure), [`Xsk::flush_tx`] (queued frames onto the TX ring, kernel kicked
//! when it asks for it), and [`Xsk::wait`] when nothing happened.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::umem::frame::DataMut;
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use crate::sockopt;

/// How many frames ahead [`Xsk::receive`] prefetches.
const PREFETCH_AHEAD: usize = 4;

/// How the socket is bound to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy if the driver supports it, copy otherwise.
    Auto,
    /// The kernel copies frames between its buffers and the UMEM.
    Copy,
    /// The NIC DMAs straight into the UMEM; needs driver support.
    ZeroCopy,
}

/// Sizes and modes of one socket and its UMEM.
#[derive(Clone, Debug)]
pub struct XskConfig {
    /// Bytes per UMEM frame: a power of two, at least 2048.
    pub frame_size: u32,
    /// Frames in the UMEM. Must exceed `ring_size` so frames remain for TX
    /// while the fill ring is full.
    pub frame_count: u32,
    /// Entries of each ring (RX, TX, fill, completion): a power of two.
    pub ring_size: u32,
    pub bind: BindMode,
    /// Bind with XDP_USE_NEED_WAKEUP: the kernel says when it needs a
    /// syscall to make progress, so a busy loop makes none otherwise.
    pub need_wakeup: bool,
    /// Ask the kernel to busy-poll the device from our syscalls
    /// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET = budget).
    pub busy_poll_budget: Option<u32>,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_size: 4096,
            frame_count: 8192,
            ring_size: 2048,
            bind: BindMode::Auto,
            need_wakeup: true,
            busy_poll_budget: None,
        }
    }
}

impl XskConfig {
    /// The smallest valid configuration: a socket that exists to be put in
    /// an XSKMAP (tests) or to receive a trickle of frames.
    pub fn small() -> Self {
        Self {
            frame_size: 2048,
            frame_count: 128,
            ring_size: 64,
            bind: BindMode::Copy,
            need_wakeup: true,
            busy_poll_budget: None,
        }
    }

    /// Check sizes before any memory is allocated.
    pub fn validate(&self) -> Result<(), XskError> {
        let pow2 = |name: &str, v: u32| {
            if v.is_power_of_two() {
                Ok(())
            } else {
                Err(XskError::Config(format!(
                    "{name} must be a power of two, got {v}"
                )))
            }
        };
        pow2("frame size", self.frame_size)?;
        pow2("ring size", self.ring_size)?;
        if self.frame_size < 2048 || self.frame_size > 65536 {
            return Err(XskError::Config(format!(
                "frame size must be between 2048 and 65536, got {}",
                self.frame_size
            )));
        }
        if self.ring_size < 64 || self.ring_size > 65536 {
            return Err(XskError::Config(format!(
                "ring size must be between 64 and 65536, got {}",
                self.ring_size
            )));
        }
        if self.frame_count < 2 * self.ring_size {
            return Err(XskError::Config(format!(
                "UMEM frames ({}) must be at least twice the ring size ({}) so the fill \
                 ring can be kept full while frames are in flight on TX",
                self.frame_count, self.ring_size
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    #[error(
        "cannot create a UMEM of {frames} frames x {frame_size} B: {source} \
         (needs that much locked memory; check `ulimit -l` and free memory)"
    )]
    Umem {
        frames: u32,
        frame_size: u32,
        source: io::Error,
    },
    #[error(
        "{iface} queue {queue}: the driver has no AF_XDP zero-copy support; \
         use --bind copy or --bind auto"
    )]
    NoZeroCopy { iface: String, queue: u32 },
    #[error("{iface} queue {queue}: another AF_XDP socket is already bound to this queue")]
    QueueBusy { iface: String, queue: u32 },
    #[error("cannot bind an AF_XDP socket to {iface} queue {queue}: {source}")]
    Bind {
        iface: String,
        queue: u32,
        source: io::Error,
    },
}

/// What to do with a received frame once the closure is done with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxAction {
    /// Send the frame (as rewritten in place) out of the same queue.
    Transmit,
    /// Give the frame back for reception.
    Drop,
}

/// A UMEM frame lent to a closure. Its bytes are valid only for the call.
pub struct Frame<'a> {
    data: DataMut<'a>,
}

impl Frame<'_> {
    /// The packet: from the start of the frame's data to its current length.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.data.contents()
    }

    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.data.contents_mut()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.data.contents().len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the packet may grow to within its frame.
    #[inline]
    pub fn capacity(&mut self) -> usize {
        self.data.cursor().buf_len()
    }

    /// Set the packet length, clamped to [`Frame::capacity`]; returns the new length.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> usize {
        let mut cursor = self.data.cursor();
        cursor.set_pos(len);
        cursor.pos()
    }

    /// The whole writable area of the frame, for building a packet from
    /// scratch; follow with [`Frame::set_len`].
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        self.set_len(cap);
        self.data.contents_mut()
    }
}

/// Counters kept by the socket itself. Plain integers: the owning thread
/// publishes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames taken off the RX ring.
    pub rx_frames: u64,
    /// Bytes of the frames taken off the RX ring.
    pub rx_bytes: u64,
    /// Frames placed on the TX ring.
    pub tx_frames: u64,
    /// Bytes of the frames placed on the TX ring.
    pub tx_bytes: u64,
    /// Frames the kernel reported sent (completion ring).
    pub tx_completed: u64,
    /// Frames dropped because the TX ring had no room.
    pub tx_ring_full: u64,
    /// Refills that found no free frame while the fill ring had room.
    pub fill_starved: u64,
    /// sendto() calls to make the kernel transmit.
    pub tx_kicks: u64,
    /// Syscalls made because the fill ring asked for a wakeup.
    pub fill_kicks: u64,
    /// ppoll() calls while idle.
    pub polls: u64,
    /// Nanoseconds spent inside TX kicks and fill-ring wakeups (syscalls
    /// that, in copy mode, do the kernel's transmit work); idle ppoll()
    /// time is not counted.
    pub kick_ns: u64,
}

/// Kernel-side counters of the socket (XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Dropped for reasons other than an invalid descriptor or a full RX
    /// ring: too large for a frame, or (copy mode) no frame on the fill ring.
    /// Disjoint from `rx_ring_full` (the full XDP_STATISTICS struct is read).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty: u64,
    /// Times the kernel found the TX ring empty when asked to send.
    pub tx_ring_empty: u64,
}

/// An AF_XDP socket bound to one queue, with a UMEM of its own.
pub struct Xsk {
    // Field order matters only for readability: xsk-rs reference-counts the
    // UMEM from every ring, so drop order cannot unmap memory under a ring
    // (invariant 1).
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    umem: Umem,
    /// Frames owned by user space and not lent out (invariant 2).
    free: Vec<FrameDesc>,
    /// Received frames the closure asked to transmit, waiting for flush_tx.
    tx_queue: Vec<FrameDesc>,
    /// Scratch for ring batches; never reallocated.
    scratch: Vec<FrameDesc>,
    in_fill: usize,
    in_tx: usize,
    frame_count: usize,
    ring_size: usize,
    bound: BindMode,
    need_wakeup: bool,
    stats: XskStats,
    iface: String,
    queue: u32,
}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk")
            .field("iface", &self.iface)
            .field("queue", &self.queue)
            .field("bound", &self.bound)
            .field("free", &self.free.len())
            .field("in_fill", &self.in_fill)
            .field("in_tx", &self.in_tx)
            .finish()
    }
}

impl Xsk {
    /// Create a UMEM and an AF_XDP socket bound to `queue` of `iface`.
    ///
    /// No XDP program is loaded: the caller's program steers packets into
    /// this socket through its XSKMAP (see [`Xsk::fd`]).
    pub fn open(iface: &str, queue: u32, config: &XskConfig) -> Result<Self, XskError> {
        config.validate()?;
        match config.bind {
            BindMode::Copy | BindMode::ZeroCopy => Self::open_as(iface, queue, config, config.bind),
            BindMode::Auto => match Self::open_as(iface, queue, config, BindMode::ZeroCopy) {
                Err(XskError::NoZeroCopy { .. }) => {
                    Self::open_as(iface, queue, config, BindMode::Copy)
                }
                other => other,
            },
        }
    }

    fn open_as(
        iface: &str,
        queue: u32,
        config: &XskConfig,
        mode: BindMode,
    ) -> Result<Self, XskError> {
        let ring = QueueSize::new(config.ring_size).map_err(|e| XskError::Config(e.to_string()))?;
        let umem_config = UmemConfig::builder()
            .frame_size(
                FrameSize::new(config.frame_size).map_err(|e| XskError::Config(e.to_string()))?,
            )
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| XskError::Config(e.to_string()))?;
        let frames = NonZeroU32::new(config.frame_count)
            .ok_or_else(|| XskError::Config("UMEM needs at least one frame".into()))?;
        let (umem, descs) = Umem::new(umem_config, frames, false).map_err(|e| XskError::Umem {
            frames: config.frame_count,
            frame_size: config.frame_size,
            source: io_source(&e),
        })?;

        let mut bind = match mode {
            BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
            _ => BindFlags::XDP_COPY,
        };
        if config.need_wakeup {
            bind |= BindFlags::XDP_USE_NEED_WAKEUP;
        }
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            // Our own XDP program owns the interface: libxdp must not load its default.
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind)
            .build();
        let ifname: Interface = iface
            .parse()
            .map_err(|_| XskError::Config(format!("bad interface name {iface:?}")))?;
        // SAFETY: the UMEM is fresh and not shared, so the shared-UMEM
        // precondition of xsk-rs (INHIBIT_PROG_LOAD when re-binding a bound
        // pair) does not arise; we set INHIBIT_PROG_LOAD regardless (invariant 1).
        let created = unsafe { Socket::new(socket_config, &umem, &ifname, queue) };
        let (tx, rx, rings) = created.map_err(|e| {
            let source = io_source(&e);
            match (mode, source.raw_os_error()) {
                (BindMode::ZeroCopy, Some(libc::EOPNOTSUPP)) => XskError::NoZeroCopy {
                    iface: iface.to_string(),
                    queue,
                },
                (_, Some(libc::EBUSY)) => XskError::QueueBusy {
                    iface: iface.to_string(),
                    queue,
                },
                _ => XskError::Bind {
                    iface: iface.to_string(),
                    queue,
                    source,
                },
            }
        })?;
        let (fill, comp) = rings.ok_or_else(|| XskError::Bind {
            iface: iface.to_string(),
            queue,
            source: io::Error::other("xsk-rs returned no fill/completion rings for a fresh UMEM"),
        })?;

        if let Some(budget) = config.busy_poll_budget {
            sockopt::prefer_busy_poll(tx.fd().as_raw_fd(), budget).map_err(|source| {
                XskError::Bind {
                    iface: iface.to_string(),
                    queue,
                    source,
                }
            })?;
        }

        let frame_count = descs.len();
        let ring_size = config.ring_size as usize;
        let mut free = Vec::with_capacity(frame_count);
        free.extend(descs.into_iter().rev());
        Ok(Self {
            rx,
            tx,
            fill,
            comp,
            umem,
            free,
            tx_queue: Vec::with_capacity(frame_count),
            scratch: vec![FrameDesc::default(); ring_size],
            in_fill: 0,
            in_tx: 0,
            frame_count,
            ring_size,
            bound: mode,
            need_wakeup: config.need_wakeup,
            stats: XskStats::default(),
            iface: iface.to_string(),
            queue,
        })
    }

    /// The socket's descriptor, for the XSKMAP of the steering program.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the socket, which lives as long as
        // `self` (xsk-rs closes it when the last ring drops) (invariant 1).
        unsafe { BorrowedFd::borrow_raw(self.tx.fd().as_raw_fd()) }
    }

    /// The mode the socket actually bound in (never `Auto`).
    pub fn bind_mode(&self) -> BindMode {
        self.bound
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn stats(&self) -> XskStats {
        self.stats
    }

    /// Frames owned by user space and available for TX or refill.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Frames on the fill ring or being filled by the kernel.
    pub fn frames_in_fill(&self) -> usize {
        self.in_fill
    }

    /// Frames on the TX ring whose completion has not come back yet.
    pub fn tx_in_flight(&self) -> usize {
        self.in_tx
    }

    /// Move completed TX frames back to the free list.
    pub fn reclaim(&mut self) -> usize {
        if self.in_tx == 0 {
            return 0;
        }
        let want = self.in_tx.min(self.ring_size);
        // SAFETY: the completion ring only returns addresses of frames we
        // put on the TX ring of this UMEM; their ownership passes back to us
        // (invariants 2, 3, 4).
        let n = unsafe { self.comp.consume(&mut self.scratch[..want]) };
        self.free.extend_from_slice(&self.scratch[..n]);
        self.in_tx -= n;
        self.stats.tx_completed += n as u64;
        self.debug_check();
        n
    }

    /// Put free frames on the fill ring, keeping `keep_free` frames back for
    /// transmitting new packets. Returns the number of frames handed over.
    pub fn refill(&mut self, keep_free: usize) -> usize {
        let room = self.fill.nb_free(self.ring_size as u32) as usize;
        if room == 0 {
            return 0;
        }
        let spare = self.free.len().saturating_sub(keep_free);
        if spare == 0 {
            self.stats.fill_starved += 1;
            return 0;
        }
        let n = room.min(spare);
        let start = self.free.len() - n;
        // SAFETY: these frames are on the free list, so user space owns them
        // and nothing references their memory; after this call the kernel
        // owns them until they come back on the RX ring (invariants 2, 3, 4).
        let produced = unsafe { self.fill.produce(&self.free[start..]) };
        if produced == n {
            self.free.truncate(start);
            self.in_fill += n;
        }
        if produced > 0 && self.need_wakeup && self.fill.needs_wakeup() {
            // The driver stopped polling for lack of buffers; a non-blocking
            // poll makes it look again.
            self.stats.fill_kicks += 1;
            let started = std::time::Instant::now();
            let _ = self.poll_rx(Duration::ZERO);
            self.stats.kick_ns += started.elapsed().as_nanos() as u64;
        }
        self.debug_check();
        produced
    }

    /// Take up to `max` frames off the RX ring and lend each to `f`, which
    /// may rewrite it in place and answers transmit (queued for the next
    /// [`Xsk::flush_tx`]) or drop (back to the free list). Returns the number
    /// of frames received.
    #[inline]
    pub fn receive<F>(&mut self, max: usize, mut f: F) -> usize
    where
        F: FnMut(&mut Frame<'_>) -> RxAction,
    {
        let want = max.min(self.ring_size);
        // SAFETY: the RX ring hands us frames of this UMEM that the kernel
        // has finished writing; from here user space owns them (invariants 2, 3, 4).
        let n = unsafe { self.rx.consume(&mut self.scratch[..want]) };
        self.in_fill -= n;
        self.stats.rx_frames += n as u64;
        for i in 0..n.min(PREFETCH_AHEAD) {
            self.prefetch(i);
        }
        for i in 0..n {
            if i + PREFETCH_AHEAD < n {
                self.prefetch(i + PREFETCH_AHEAD);
            }
            let mut desc = self.scratch[i];
            self.stats.rx_bytes += desc.lengths().data() as u64;
            // SAFETY: `desc` came off the RX ring just now and is referenced by
            // nothing else; the mutable borrow ends with the closure call,
            // before the frame moves to the TX queue or the free list
            // (invariants 2, 3).
            let data = unsafe { self.umem.data_mut(&mut desc) };
            let action = f(&mut Frame { data });
            match action {
                RxAction::Transmit => self.tx_queue.push(desc),
                RxAction::Drop => self.free.push(desc),
            }
        }
        self.debug_check();
        n
    }

    /// Start loading the first cache line of received frame `i` of the
    /// scratch batch. In copy mode another core (the sender's, on veth; the
    /// softirq's, on a NIC) wrote the frame, so the first touch is a
    /// cross-core miss; issuing it a few frames ahead overlaps the misses.
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `scratch[i]` was just consumed from the RX ring, so it
            // describes a frame of this UMEM (invariant 3) that user space
            // owns and that nothing writes while this shared view exists
            // (invariant 2); the view ends before the frame is lent out.
            let data = unsafe { self.umem.data(&self.scratch[i]) };
            let ptr = data.contents().as_ptr();
            // SAFETY: a prefetch is only a hint: it reads nothing observable
            // and cannot fault, and `ptr` points into the mapped UMEM anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    /// Build up to `max` new packets in free frames: `f` writes a packet
    /// into the frame and returns `true` to send it, `false` to stop.
    /// Returns the number of frames queued for [`Xsk::flush_tx`].
    pub fn transmit<F>(&mut self, max: usize, mut f: F) -> usize
    where
        F: FnMut(&mut Frame<'_>) -> bool,
    {
        let mut queued = 0;
        while queued < max {
            let Some(mut desc) = self.free.pop() else {
                break;
            };
            // SAFETY: the frame was on the free list, so user space owns it
            // and nothing else references it; the borrow ends before the
            // descriptor moves on (invariants 2, 3).
            let data = unsafe { self.umem.data_mut(&mut desc) };
            let send = f(&mut Frame { data });
            if send {
                self.tx_queue.push(desc);
                queued += 1;
            } else {
                self.free.push(desc);
                break;
            }
        }
        queued
    }

    /// Move queued frames onto the TX ring and kick the kernel when it needs
    /// it. Frames that do not fit are dropped (counted in `tx_ring_full`).
    /// Returns the number of frames placed on the ring.
    pub fn flush_tx(&mut self) -> usize {
        let pending = self.tx_queue.len();
        let mut placed = 0;
        if pending > 0 {
            let room = self.tx.nb_free(pending as u32) as usize;
            let n = room.min(pending);
            placed = if n > 0 {
                // SAFETY: queued frames are owned by user space (received or
                // written by us) and belong to this UMEM; the kernel owns them
                // until they come back on the completion ring (invariants 2, 3, 4).
                unsafe { self.tx.produce(&self.tx_queue[..n]) }
            } else {
                0
            };
            self.in_tx += placed;
            self.stats.tx_frames += placed as u64;
            self.stats.tx_bytes += self.tx_queue[..placed]
                .iter()
                .map(|d| d.lengths().data() as u64)
                .sum::<u64>();
            let dropped = pending - placed;
            if dropped > 0 {
                self.stats.tx_ring_full += dropped as u64;
                self.free.extend_from_slice(&self.tx_queue[placed..]);
            }
            self.tx_queue.clear();
        }
        if self.in_tx > 0 && (!self.need_wakeup || self.tx.needs_wakeup()) {
            self.kick_tx();
        }
        self.debug_check();
        placed
    }

    /// Make the kernel transmit. In copy mode sendto() transmits
    /// synchronously but at most a small batch per call (32 frames in
    /// Linux), so keep kicking until the ring is empty or a kick makes no
    /// progress. In zero-copy mode one kick schedules the driver.
    fn kick_tx(&mut self) {
        let max_kicks = if self.bound == BindMode::Copy {
            (self.ring_size / 16).max(2)
        } else {
            1
        };
        let started = std::time::Instant::now();
        let mut free = self.tx.nb_free_exact();
        for _ in 0..max_kicks {
            self.stats.tx_kicks += 1;
            // ENOBUFS, EAGAIN, EBUSY and ENETDOWN mean "later" and are
            // swallowed by xsk-rs; the frames stay on the ring.
            let _ = self.tx.wakeup();
            if self.bound != BindMode::Copy {
                break;
            }
            let now_free = self.tx.nb_free_exact();
            if now_free as usize == self.ring_size || now_free == free {
                break;
            }
            free = now_free;
        }
        self.stats.kick_ns += started.elapsed().as_nanos() as u64;
    }

    /// Whether frames remain on the TX ring that the kernel has not taken.
    pub fn tx_pending_on_ring(&mut self) -> bool {
        (self.tx.nb_free_exact() as usize) < self.ring_size
    }

    /// Sleep until a frame arrives or `timeout` passes. Returns whether the
    /// RX ring became readable.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        self.stats.polls += 1;
        self.poll_rx(timeout)
    }

    /// Like [`Xsk::wait`], also waking when `also` (e.g. an eventfd other
    /// threads write to) becomes readable. Returns whether anything did.
    pub fn wait_with(&mut self, timeout: Duration, also: BorrowedFd<'_>) -> io::Result<bool> {
        self.stats.polls += 1;
        poll_fds(self.fd(), Some(also), timeout)
    }

    fn poll_rx(&mut self, timeout: Duration) -> io::Result<bool> {
        poll_fds(self.fd(), None, timeout)
    }

    /// Kernel counters of the socket.
    pub fn kernel_stats(&self) -> io::Result<KernelStats> {
        let s = self.tx.fd().xdp_statistics()?;
        Ok(KernelStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
            tx_ring_empty: s.tx_ring_empty_descs(),
        })
    }

    #[inline]
    fn debug_check(&self) {
        debug_assert_eq!(
            self.free.len() + self.tx_queue.len() + self.in_fill + self.in_tx,
            self.frame_count,
            "frame ownership accounting broken (invariant 2)"
        );
    }
}

/// ppoll() for POLLIN on `fd` (and `also`); EINTR counts as "nothing happened".
fn poll_fds(
    fd: BorrowedFd<'_>,
    also: Option<BorrowedFd<'_>>,
    timeout: Duration,
) -> io::Result<bool> {
    use nix::poll::{ppoll, PollFd, PollFlags};
    let mut pfds = [
        PollFd::new(fd, PollFlags::POLLIN),
        PollFd::new(also.unwrap_or(fd), PollFlags::POLLIN),
    ];
    let n = if also.is_some() { 2 } else { 1 };
    let ts = nix::sys::time::TimeSpec::from_duration(timeout);
    match ppoll(&mut pfds[..n], Some(ts), None) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn io_source(e: &dyn std::error::Error) -> io::Error {
    match e.source().and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(io) => match io.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(io.kind(), io.to_string()),
        },
        None => io::Error::other(e.to_string()),
    }
}

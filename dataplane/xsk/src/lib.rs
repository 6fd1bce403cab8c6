//! AF_XDP sockets, UMEM frame ownership, mmap of BPF maps ([`SharedWords`]) and
//! the kernel calls around them.
//!
//! This is the only crate of sluice that contains `unsafe`. Everything above
//! it (BPF loading, the poll loop, the protocol engines) is safe Rust that
//! borrows a frame's bytes for the duration of a closure.
//!
//! # Invariants
//!
//! Every `unsafe` block in this crate cites the invariants it relies on:
//!
//! 1. **The UMEM outlives its sockets.** [`Xsk`] owns the UMEM and the four
//!    rings; xsk-rs additionally keeps the UMEM alive through a reference
//!    count held by every ring, so no ring can touch unmapped memory.
//! 2. **Each frame has exactly one owner** at any time: the free list (user),
//!    the fill ring (kernel), a closure it is lent to (user, for the duration
//!    of the call), or the TX ring until its completion comes back (kernel).
//!    [`Xsk`] keeps counts of each and checks the sum in debug builds.
//! 3. **Descriptors stay inside their frame.** Every descriptor handed to the
//!    kernel was produced by xsk-rs for this UMEM (at creation, by the RX ring
//!    or by the completion ring); lengths are only set through xsk-rs, which
//!    clamps them to the frame.
//! 4. **A ring is used by one thread.** [`Xsk`] is `Send` but all methods take
//!    `&mut self`; the poll loop that owns it is the only user. The
//!    producer/consumer index protocol with the kernel (Acquire on the peer's
//!    index, Release when publishing ours) is libxdp's ring helpers.
//! 5. **Kernel calls get valid arguments.** Pointers passed to the kernel
//!    point at initialised values that live for the whole call.
//! 6. **Shared words stay mapped and are accessed atomically.** A
//!    [`SharedWords`] owns one `MAP_SHARED` mapping (of an mmapable BPF array
//!    map) from `mmap` to its `Drop`, and every borrow it hands out is tied
//!    to it, so no reference outlives the mapping. While mapped, the kernel
//!    keeps the map (and its pages) alive, even after the fd is closed and
//!    the program unloaded. The mapping is page-aligned and words are 8
//!    bytes apart, so each is aligned for `u64`; `AtomicU64` has the size
//!    and alignment of `u64`. Threads of this process touch the words only
//!    through `AtomicU64` operations. The other parties, the XDP program
//!    (which only reads, one aligned 64-bit load per word) and writers in
//!    other processes (through the same map, with aligned 64-bit stores or
//!    atomics), never make a torn or non-atomic access that Rust would see.

pub mod link;
mod shared_words;
mod socket;
mod sockopt;

pub use shared_words::SharedWords;
pub use socket::{BindMode, Frame, KernelStats, RxAction, Xsk, XskConfig, XskError, XskStats};

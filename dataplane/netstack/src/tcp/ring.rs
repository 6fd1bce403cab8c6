//! Stream bytes of connections: a send ring (written by the application,
//! read at any offset for (re)transmission, released by ACKs) and a receive
//! ring (written at any offset in or out of order, read in order). Both are
//! made of fixed-size chunks from a per-loop [`ChunkPool`], so an idle
//! connection holds no buffer memory and the loop's total is bounded (the
//! global memory budget).
//!
//! Chunks are aligned to stream offsets: chunk `i` of a ring covers
//! `[base + i·C, base + (i+1)·C)` with `base` a multiple of the chunk size
//! `C`, so finding a byte is a shift and a mask. A ring that becomes empty
//! (everything acknowledged, everything read) returns all its chunks to the
//! pool at once.
//!
//! Rings do not own their pool, so they cannot give chunks back when
//! dropped: call [`SendRing::clear`] / [`RecvRing::clear`] before dropping a
//! ring that may hold data, or the pool's budget shrinks by what it held
//! (the memory itself is freed either way).
//!
//! Chunks are allocated when the pool's free list is empty and recycled
//! afterwards; [`ChunkPool::preallocate`] fills the free list up front so
//! that the steady state allocates nothing.

use std::collections::VecDeque;

type Chunk = Box<[u8]>;

/// Which kind of ring a chunk is for: a send ring's chunk leaves the
/// receive reserve alone and keeps its old contents (they are overwritten
/// before being read); a receive ring's may use the whole budget and is
/// zeroed (see [`RecvRing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Send,
    Recv,
}

/// Chunks shared by every connection of one poll loop.
#[derive(Debug)]
pub struct ChunkPool {
    chunk_size: usize,
    shift: u32,
    max_bytes: usize,
    /// Bytes in chunks currently held by rings.
    in_use: usize,
    /// Bytes the applications above hold in buffers of their own (HTTP,
    /// TLS, HTTP/2): they share the budget, so the rings get less.
    external: usize,
    /// Chunks given back, handed out again before allocating new ones.
    free: Vec<Chunk>,
}

impl ChunkPool {
    /// Chunks of `chunk_size` bytes (a power of two), at most `max_bytes`
    /// handed out at once. A `chunk_size` that is not a power of two is
    /// rounded up to one (and 0 to 1).
    pub fn new(chunk_size: usize, max_bytes: usize) -> Self {
        let chunk_size = chunk_size
            .max(1)
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1));
        Self {
            chunk_size,
            shift: chunk_size.trailing_zeros(),
            max_bytes,
            in_use: 0,
            external: 0,
            free: Vec::new(),
        }
    }
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
    /// Bytes in chunks currently held by rings.
    pub fn in_use(&self) -> usize {
        self.in_use
    }
    /// Sets the bytes held outside the rings by the applications (see
    /// `external`); counted against the budget from now on.
    pub fn set_external(&mut self, bytes: usize) {
        self.external = bytes;
    }
    /// Bytes held outside the rings by the applications.
    pub fn external(&self) -> usize {
        self.external
    }
    /// Bytes that can still be handed out (whole chunks only).
    pub fn available(&self) -> usize {
        let left = self
            .max_bytes
            .saturating_sub(self.in_use)
            .saturating_sub(self.external);
        left - left % self.chunk_size
    }
    /// The most bytes ever handed out at once.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
    /// Allocate free chunks now for up to `bytes` (capped by what can still
    /// be handed out), so that later writes do not allocate.
    pub fn preallocate(&mut self, bytes: usize) {
        let held = self.free.len().saturating_mul(self.chunk_size);
        let want = bytes.min(self.available()).saturating_sub(held);
        let n = want.div_ceil(self.chunk_size);
        self.free.reserve(n);
        for _ in 0..n {
            self.free
                .push(vec![0u8; self.chunk_size].into_boxed_slice());
        }
    }
    /// Chunks sitting in the free list.
    pub fn free_chunks(&self) -> usize {
        self.free.len()
    }

    fn mask(&self) -> u64 {
        self.chunk_size as u64 - 1
    }
    /// Bytes of the budget only receive rings may take: a quarter.
    ///
    /// Without it, when the send data of many connections fills the pools
    /// at both ends of bidirectional transfers, neither end can store the
    /// data whose ACK would free the other's: every connection stalls
    /// until it times out. With it, received data always finds room, the
    /// application reads it, its ACK releases send data at the peer. (Linux
    /// keeps a per-socket minimum, tcp_rmem[0], under memory pressure.)
    pub fn receive_reserve(&self) -> usize {
        let r = self.max_bytes / 4;
        r - r % self.chunk_size
    }
    /// Bytes send rings can still take (whole chunks, the receive reserve
    /// left aside).
    pub fn available_for_send(&self) -> usize {
        self.available().saturating_sub(self.receive_reserve())
    }
    /// A chunk for `holder`, if its share of the budget allows one more.
    fn alloc(&mut self, holder: Holder) -> Option<Chunk> {
        let room = match holder {
            Holder::Send => self.available_for_send(),
            Holder::Recv => self.available(),
        };
        if room < self.chunk_size {
            return None;
        }
        self.in_use += self.chunk_size;
        match self.free.pop() {
            Some(mut c) => {
                if holder == Holder::Recv {
                    c.fill(0);
                }
                Some(c)
            }
            None => Some(vec![0u8; self.chunk_size].into_boxed_slice()),
        }
    }
    fn release(&mut self, chunk: Chunk) {
        // A chunk from another pool (a caller mixing pools) is dropped
        // rather than recycled at the wrong size.
        self.in_use = self.in_use.saturating_sub(self.chunk_size);
        if chunk.len() == self.chunk_size {
            self.free.push(chunk);
        }
    }
}

/// Application data from the oldest unacknowledged byte to the newest.
#[derive(Debug)]
pub struct SendRing {
    limit: usize,
    /// Stream offset of the first byte of `chunks[0]` (chunk aligned).
    base: u64,
    start: u64,
    end: u64,
    chunks: VecDeque<Chunk>,
}

impl SendRing {
    /// A ring that holds at most `limit` bytes. Allocates nothing yet.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            base: 0,
            start: 0,
            end: 0,
            chunks: VecDeque::new(),
        }
    }
    /// Append up to `data.len()` bytes, as many as the limit and the pool
    /// allow; returns how many.
    pub fn write(&mut self, pool: &mut ChunkPool, data: &[u8]) -> usize {
        let cs = pool.chunk_size();
        let want = data.len().min(self.free_space());
        // Never let `end` overflow the stream offset space.
        let want = want.min(usize::try_from(u64::MAX - self.end).unwrap_or(usize::MAX));
        if self.chunks.is_empty() {
            self.base = self.end & !pool.mask();
        }
        let mut done = 0;
        while done < want {
            let rel = self.end - self.base;
            let idx = (rel >> pool.shift) as usize;
            let at = (rel & pool.mask()) as usize;
            if idx >= self.chunks.len() {
                match pool.alloc(Holder::Send) {
                    Some(c) => self.chunks.push_back(c),
                    None => break,
                }
            }
            let Some(chunk) = self.chunks.get_mut(idx) else {
                break;
            };
            let n = (cs - at).min(want - done);
            chunk[at..at + n].copy_from_slice(&data[done..done + n]);
            done += n;
            self.end += n as u64;
        }
        done
    }
    /// Copy bytes starting at stream offset `offset` into `out`; returns
    /// how many (fewer at the end of the data, 0 outside `[start, end)`).
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> usize {
        if offset < self.start || offset >= self.end || self.chunks.is_empty() {
            return 0;
        }
        let avail = usize::try_from(self.end - offset).unwrap_or(usize::MAX);
        let want = out.len().min(avail);
        let cs = self.chunks[0].len();
        let shift = cs.trailing_zeros();
        let mask = cs as u64 - 1;
        let mut done = 0;
        while done < want {
            let rel = offset + done as u64 - self.base;
            let idx = (rel >> shift) as usize;
            let at = (rel & mask) as usize;
            let Some(chunk) = self.chunks.get(idx) else {
                break;
            };
            let n = (cs - at).min(want - done);
            out[done..done + n].copy_from_slice(&chunk[at..at + n]);
            done += n;
        }
        done
    }
    /// Release everything below stream offset `upto` (acknowledged).
    /// Offsets below `start` are a no-op; beyond `end` release everything.
    pub fn release(&mut self, pool: &mut ChunkPool, upto: u64) {
        if upto <= self.start {
            return;
        }
        self.start = upto.min(self.end);
        if self.start == self.end {
            self.clear_chunks(pool);
            return;
        }
        let cs = pool.chunk_size() as u64;
        while self.base.saturating_add(cs) <= self.start {
            match self.chunks.pop_front() {
                Some(c) => pool.release(c),
                None => break,
            }
            self.base += cs;
        }
    }
    /// Drop all data (a connection reset or closed) and give every chunk
    /// back; `start` jumps to `end`.
    pub fn clear(&mut self, pool: &mut ChunkPool) {
        self.start = self.end;
        self.clear_chunks(pool);
    }
    fn clear_chunks(&mut self, pool: &mut ChunkPool) {
        while let Some(c) = self.chunks.pop_front() {
            pool.release(c);
        }
    }
    /// Stream offset of the oldest byte held.
    pub fn start(&self) -> u64 {
        self.start
    }
    /// Stream offset one past the newest byte held.
    pub fn end(&self) -> u64 {
        self.end
    }
    pub fn len(&self) -> usize {
        (self.end() - self.start()) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes the application may still write (by the ring's limit; the
    /// pool may allow fewer).
    pub fn free_space(&self) -> usize {
        self.limit.saturating_sub(self.len())
    }
    /// The most bytes the ring holds.
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Change the limit (bytes already held stay even above a smaller one).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }
    /// Chunks currently held.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
}

/// Received bytes from the application's read point on, in or out of order.
///
/// The ring does not track which bytes arrived (the
/// [`Assembler`](super::assembler::Assembler) does); it stores them.
/// Chunks are zeroed when handed to a receive ring, so a read up to a
/// reassembly point past the bytes actually written yields zeros, never
/// another connection's data.
#[derive(Debug)]
pub struct RecvRing {
    limit: usize,
    /// Stream offset of the first byte of `chunks[0]` (chunk aligned).
    base: u64,
    read: u64,
    /// One past the highest byte stored.
    high: u64,
    /// End of the bytes known to be contiguous from the read point (see
    /// [`RecvRing::window`]).
    in_order: u64,
    chunks: VecDeque<Option<Chunk>>,
}

impl RecvRing {
    /// A ring that holds at most `limit` bytes beyond the read point (the
    /// receive window). Allocates nothing yet.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            base: 0,
            read: 0,
            high: 0,
            in_order: 0,
            chunks: VecDeque::new(),
        }
    }
    /// Store `data` at stream offset `offset` (clipped to
    /// `[read_offset, read_offset + limit)`); returns the bytes stored.
    ///
    /// The bytes stored are `[max(offset, read_offset), that + returned)`:
    /// the front is clipped by the read point, the back by the window or
    /// by the pool running out of chunks.
    pub fn write_at(&mut self, pool: &mut ChunkPool, offset: u64, data: &[u8]) -> usize {
        let cs = pool.chunk_size();
        let right = self.right_edge();
        let data_end = offset.saturating_add(data.len() as u64);
        let from = offset.max(self.read);
        let to = data_end.min(right);
        if from >= to {
            return 0;
        }
        if self.chunks.is_empty() {
            self.base = self.read & !pool.mask();
        }
        let skip = (from - offset) as usize;
        let want = (to - from) as usize;
        let mut done = 0;
        while done < want {
            let rel = from + done as u64 - self.base;
            let idx = (rel >> pool.shift) as usize;
            let at = (rel & pool.mask()) as usize;
            while self.chunks.len() <= idx {
                self.chunks.push_back(None);
            }
            let slot = &mut self.chunks[idx];
            if slot.is_none() {
                match pool.alloc(Holder::Recv) {
                    Some(c) => *slot = Some(c),
                    None => break,
                }
            }
            let Some(chunk) = slot.as_mut() else {
                break;
            };
            let n = (cs - at).min(want - done);
            chunk[at..at + n].copy_from_slice(&data[skip + done..skip + done + n]);
            done += n;
        }
        self.trim_tail();
        if done == 0 {
            return 0;
        }
        let stored_end = from + done as u64;
        self.high = self.high.max(stored_end);
        if from <= self.in_order {
            self.in_order = self.in_order.max(stored_end);
        }
        done
    }
    /// Copy in-order bytes up to stream offset `readable_end` (the
    /// reassembly point) into `out`, releasing them; returns how many.
    pub fn read(&mut self, pool: &mut ChunkPool, readable_end: u64, out: &mut [u8]) -> usize {
        let end = readable_end.min(self.right_edge());
        if end <= self.read {
            return 0;
        }
        self.in_order = self.in_order.max(end);
        let avail = usize::try_from(end - self.read).unwrap_or(usize::MAX);
        let want = out.len().min(avail);
        let cs = pool.chunk_size();
        let mut done = 0;
        while done < want {
            let rel = self.read + done as u64 - self.base;
            let idx = (rel >> pool.shift) as usize;
            let at = (rel & pool.mask()) as usize;
            let n = (cs - at).min(want - done);
            match self.chunks.get(idx) {
                Some(Some(chunk)) => out[done..done + n].copy_from_slice(&chunk[at..at + n]),
                // Never written: the caller's reassembly point is ahead of
                // the data. Zeros, as a fresh chunk would hold.
                _ => out[done..done + n].fill(0),
            }
            done += n;
        }
        self.read += done as u64;
        if self.read >= self.high {
            self.high = self.read;
            self.clear_chunks(pool);
        } else {
            let cs = cs as u64;
            while self.base.saturating_add(cs) <= self.read {
                match self.chunks.pop_front() {
                    Some(Some(c)) => pool.release(c),
                    Some(None) => {}
                    None => break,
                }
                self.base += cs;
            }
        }
        done
    }
    /// Drop everything stored and give every chunk back (the read point
    /// stays; a closed or reset connection).
    pub fn clear(&mut self, pool: &mut ChunkPool) {
        self.high = self.read;
        self.in_order = self.read;
        self.clear_chunks(pool);
    }
    fn clear_chunks(&mut self, pool: &mut ChunkPool) {
        while let Some(slot) = self.chunks.pop_front() {
            if let Some(c) = slot {
                pool.release(c);
            }
        }
    }
    /// Drop trailing empty slots left by a write that got no chunk.
    fn trim_tail(&mut self) {
        while let Some(None) = self.chunks.back() {
            self.chunks.pop_back();
        }
    }
    /// Stream offset of the next byte the application will read.
    pub fn read_offset(&self) -> u64 {
        self.read
    }
    /// Free space from the read point: the window to advertise.
    ///
    /// `limit` minus the bytes from the read point to the end of the data
    /// the ring knows to be in order: writes that extend the in-order data
    /// and the `readable_end` of the last [`RecvRing::read`]. Out-of-order
    /// data that a later segment made contiguous counts only from the next
    /// `read`; an engine with its own reassembly point should use
    /// [`RecvRing::window_at`], which is exact.
    pub fn window(&self) -> usize {
        self.window_at(self.in_order)
    }
    /// The window to advertise when the reassembly point (RCV.NXT as a
    /// stream offset) is `rcv_nxt`: from there to the right edge, which
    /// never moves left.
    pub fn window_at(&self, rcv_nxt: u64) -> usize {
        let used = rcv_nxt.max(self.read);
        usize::try_from(self.right_edge().saturating_sub(used)).unwrap_or(usize::MAX)
    }
    /// `read_offset + limit`: one past the last byte the ring will store.
    pub fn right_edge(&self) -> u64 {
        self.read.saturating_add(self.limit as u64)
    }
    /// One past the highest byte stored (the read point when empty).
    pub fn high(&self) -> u64 {
        self.high
    }
    /// Whether no byte beyond the read point is stored.
    pub fn is_empty(&self) -> bool {
        self.high <= self.read
    }
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Chunks currently held.
    pub fn chunks(&self) -> usize {
        self.chunks.iter().filter(|c| c.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(from: u64, n: usize) -> Vec<u8> {
        (0..n as u64)
            .map(|i| ((from + i) * 7 % 251) as u8)
            .collect()
    }

    #[test]
    fn pool_rounds_and_caps() {
        let p = ChunkPool::new(1000, 5000);
        assert_eq!(p.chunk_size(), 1024);
        assert_eq!(p.available(), 4096);
        assert_eq!(p.in_use(), 0);
        assert_eq!(ChunkPool::new(0, 10).chunk_size(), 1);
        let mut p = ChunkPool::new(64, 256);
        let a = p.alloc(Holder::Recv).unwrap();
        assert_eq!((p.in_use(), p.available()), (64, 192));
        let b = p.alloc(Holder::Recv).unwrap();
        let c = p.alloc(Holder::Recv).unwrap();
        let d = p.alloc(Holder::Recv).unwrap();
        assert!(p.alloc(Holder::Recv).is_none());
        assert_eq!(p.available(), 0);
        for x in [a, b, c, d] {
            p.release(x);
        }
        assert_eq!((p.in_use(), p.available(), p.free_chunks()), (0, 256, 4));
    }

    #[test]
    fn pool_recycles_without_allocating() {
        let mut p = ChunkPool::new(64, 64 * 8);
        p.preallocate(64 * 3 + 1);
        assert_eq!(p.free_chunks(), 4);
        p.preallocate(10_000);
        assert_eq!(p.free_chunks(), 8);
        let mut r = SendRing::new(1000);
        assert_eq!(r.write(&mut p, &[1; 200]), 200);
        assert_eq!(p.free_chunks(), 4);
        assert_eq!(p.in_use(), 256);
    }

    #[test]
    fn send_write_read_release() {
        let mut p = ChunkPool::new(16, 1 << 20);
        let mut r = SendRing::new(100);
        assert_eq!(r.chunks(), 0);
        let data = bytes(0, 150);
        assert_eq!(r.write(&mut p, &data), 100);
        assert_eq!(
            (r.start(), r.end(), r.len(), r.free_space()),
            (0, 100, 100, 0)
        );
        assert_eq!(r.chunks(), 7);
        assert_eq!(p.in_use(), 112);
        let mut out = [0u8; 40];
        assert_eq!(r.read_at(10, &mut out), 40);
        assert_eq!(&out[..], &data[10..50]);
        assert_eq!(r.read_at(90, &mut out), 10);
        assert_eq!(&out[..10], &data[90..100]);
        assert_eq!(r.read_at(100, &mut out), 0);
        r.release(&mut p, 33);
        assert_eq!((r.start(), r.len(), r.free_space()), (33, 67, 33));
        assert_eq!(r.chunks(), 5);
        assert_eq!(r.read_at(32, &mut out), 0);
        assert_eq!(r.read_at(33, &mut out[..1]), 1);
        assert_eq!(out[0], data[33]);
        r.release(&mut p, 10); // below start: nothing
        assert_eq!(r.start(), 33);
        assert_eq!(r.write(&mut p, &data[100..]), 33);
        assert_eq!(r.end(), 133);
        let mut all = [0u8; 200];
        assert_eq!(r.read_at(33, &mut all), 100);
        assert_eq!(&all[..100], &data[33..133]);
        r.release(&mut p, 1000); // beyond end: everything
        assert_eq!(
            (r.start(), r.end(), r.chunks(), p.in_use()),
            (133, 133, 0, 0)
        );
        assert!(r.is_empty());
        // Writing again starts at the old end, in a fresh aligned chunk.
        assert_eq!(r.write(&mut p, &data[..5]), 5);
        assert_eq!(r.read_at(133, &mut out), 5);
        assert_eq!(&out[..5], &data[..5]);
        assert_eq!(p.in_use(), 16);
        r.clear(&mut p);
        assert_eq!((r.start(), r.end(), p.in_use()), (138, 138, 0));
    }

    #[test]
    fn application_bytes_take_their_share_of_the_budget() {
        let mut p = ChunkPool::new(64, 256);
        p.set_external(100);
        // 156 bytes left: two whole chunks; the send side keeps the
        // receive reserve (64) aside.
        assert_eq!((p.available(), p.available_for_send()), (128, 64));
        let mut r = SendRing::new(1024);
        assert_eq!(r.write(&mut p, &[1; 200]), 64);
        // Given back: 192 left, 128 of them for send rings.
        p.set_external(0);
        assert_eq!(r.write(&mut p, &[1; 200]), 128);
        assert_eq!((p.in_use(), p.external()), (192, 0), "rings only");
    }

    #[test]
    fn send_write_stops_at_pool_budget() {
        let mut p = ChunkPool::new(16, 40); // two chunks
        let mut r = SendRing::new(1000);
        assert_eq!(r.write(&mut p, &[7; 50]), 32);
        assert_eq!(p.available(), 0);
        assert_eq!(r.write(&mut p, &[7; 5]), 0);
        r.release(&mut p, 16);
        assert_eq!(p.in_use(), 16);
        assert_eq!(r.write(&mut p, &[8; 20]), 16);
        assert_eq!((r.start(), r.end()), (16, 48));
    }

    #[test]
    fn send_rings_leave_a_quarter_of_the_budget_to_receive_rings() {
        let mut p = ChunkPool::new(16, 128); // 8 chunks, 2 reserved
        assert_eq!(p.receive_reserve(), 32);
        let mut s = SendRing::new(1000);
        assert_eq!(s.write(&mut p, &[1; 200]), 96);
        assert_eq!((p.available(), p.available_for_send()), (32, 0));
        let mut r = RecvRing::new(1000);
        assert_eq!(r.write_at(&mut p, 0, &[2; 40]), 32);
        assert_eq!(p.available(), 0);
    }

    #[test]
    fn recv_in_order() {
        let mut p = ChunkPool::new(8, 1 << 20);
        let mut r = RecvRing::new(20);
        let data = bytes(0, 64);
        assert_eq!(r.window(), 20);
        assert_eq!(r.write_at(&mut p, 0, &data[..12]), 12);
        assert_eq!(r.window(), 8);
        assert_eq!(r.write_at(&mut p, 12, &data[12..40]), 8); // window
        assert_eq!(r.window(), 0);
        let mut out = [0u8; 64];
        assert_eq!(r.read(&mut p, 20, &mut out[..5]), 5);
        assert_eq!(&out[..5], &data[..5]);
        assert_eq!((r.read_offset(), r.window(), r.window_at(20)), (5, 5, 5));
        assert_eq!(r.read(&mut p, 20, &mut out), 15);
        assert_eq!(&out[..15], &data[5..20]);
        assert!(r.is_empty());
        assert_eq!((r.chunks(), p.in_use()), (0, 0));
        assert_eq!(r.window(), 20);
    }

    #[test]
    fn recv_out_of_order_and_clipping() {
        let mut p = ChunkPool::new(8, 1 << 20);
        let mut r = RecvRing::new(32);
        let data = bytes(0, 64);
        // A hole at [0, 10).
        assert_eq!(r.write_at(&mut p, 20, &data[20..28]), 8);
        assert_eq!(r.chunks(), 2);
        assert_eq!(r.high(), 28);
        assert_eq!(r.window(), 32);
        assert_eq!(r.window_at(0), 32);
        assert_eq!(r.write_at(&mut p, 10, &data[10..20]), 10);
        assert_eq!(r.write_at(&mut p, 0, &data[0..10]), 10);
        // Known contiguous only up to 10 (the write that started at the
        // read point) until a read says otherwise.
        assert_eq!(r.window(), 22);
        assert_eq!(r.window_at(28), 4);
        // Past the right edge: clipped.
        assert_eq!(r.write_at(&mut p, 30, &data[30..40]), 2);
        assert_eq!(r.write_at(&mut p, 32, &data[32..40]), 0);
        let mut out = [0u8; 64];
        assert_eq!(r.read(&mut p, 28, &mut out), 28);
        assert_eq!(&out[..28], &data[..28]);
        assert_eq!(r.read_offset(), 28);
        assert!(!r.is_empty()); // [30, 32) is held
        assert_eq!(r.chunks(), 1);
        // Old data is clipped at the read point.
        assert_eq!(r.write_at(&mut p, 20, &data[20..30]), 2);
        assert_eq!(r.read(&mut p, 32, &mut out), 4);
        assert_eq!(&out[..4], &data[28..32]);
        assert_eq!((r.chunks(), p.in_use()), (0, 0));
        assert_eq!(r.window(), 32);
        assert_eq!(r.right_edge(), 64);
    }

    #[test]
    fn recv_reads_zeros_for_unwritten_and_recycled() {
        let mut p = ChunkPool::new(8, 1 << 20);
        let mut a = RecvRing::new(64);
        a.write_at(&mut p, 0, &[0xAA; 16]);
        a.clear(&mut p);
        assert_eq!(p.in_use(), 0);
        let mut b = RecvRing::new(64);
        b.write_at(&mut p, 4, &[1, 2]);
        let mut out = [9u8; 8];
        assert_eq!(b.read(&mut p, 8, &mut out), 8);
        assert_eq!(out, [0, 0, 0, 0, 1, 2, 0, 0]);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn recv_pool_exhaustion_stores_a_prefix() {
        let mut p = ChunkPool::new(8, 16);
        let mut r = RecvRing::new(100);
        assert_eq!(r.write_at(&mut p, 4, &[5; 30]), 12);
        assert_eq!(r.high(), 16);
        assert_eq!(r.write_at(&mut p, 40, &[5; 4]), 0);
        assert_eq!(r.chunks(), 2);
        let mut other = RecvRing::new(100);
        assert_eq!(other.write_at(&mut p, 0, &[1]), 0);
        assert_eq!(other.chunks(), 0);
    }

    #[test]
    fn huge_offsets_do_not_overflow() {
        let mut p = ChunkPool::new(8, 1 << 20);
        let mut r = RecvRing::new(100);
        assert_eq!(r.write_at(&mut p, u64::MAX - 2, &[1; 10]), 0);
        let mut out = [0u8; 4];
        assert_eq!(r.read(&mut p, u64::MAX, &mut out), 4);
        let s = SendRing::new(10);
        assert_eq!(s.read_at(u64::MAX, &mut out), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum SendOp {
            Write(usize),
            Release(u64),
            Read(u64, usize),
        }

        fn send_op() -> impl Strategy<Value = SendOp> {
            prop_oneof![
                (0usize..200).prop_map(SendOp::Write),
                (0u64..300).prop_map(SendOp::Release),
                (0u64..300, 0usize..200).prop_map(|(o, n)| SendOp::Read(o, n)),
            ]
        }

        #[derive(Clone, Debug)]
        enum RecvOp {
            Write(u64, usize),
            Read(u64, usize),
        }

        fn recv_op() -> impl Strategy<Value = RecvOp> {
            prop_oneof![
                (0u64..250, 0usize..120).prop_map(|(o, n)| RecvOp::Write(o, n)),
                (0u64..150, 0usize..120).prop_map(|(o, n)| RecvOp::Read(o, n)),
            ]
        }

        proptest! {
            #[test]
            fn send_ring_matches_model(
                shift in 0u32..7,
                budget in 0usize..1024,
                limit in 0usize..400,
                ops in proptest::collection::vec(send_op(), 1..60),
            ) {
                let mut p = ChunkPool::new(1 << shift, budget);
                let mut r = SendRing::new(limit);
                // Model: the whole stream, and the held window [start, end).
                let mut stream: Vec<u8> = Vec::new();
                let mut start = 0u64;
                for op in ops {
                    match op {
                        SendOp::Write(n) => {
                            let data = bytes(stream.len() as u64, n);
                            let w = r.write(&mut p, &data);
                            prop_assert!(w <= n);
                            prop_assert!(stream.len() as u64 - start + w as u64 <= limit as u64);
                            if w < n {
                                // Short only at the limit or the budget.
                                let cs = p.chunk_size() as u64;
                                let end = stream.len() as u64 + w as u64;
                                prop_assert!(
                                    r.free_space() == 0
                                        || (p.available_for_send() < p.chunk_size()
                                            && end.is_multiple_of(cs))
                                );
                            }
                            stream.extend_from_slice(&data[..w]);
                        }
                        SendOp::Release(upto) => {
                            r.release(&mut p, upto);
                            start = start.max(upto.min(stream.len() as u64));
                        }
                        SendOp::Read(off, n) => {
                            let mut out = vec![0u8; n];
                            let got = r.read_at(off, &mut out);
                            let end = stream.len() as u64;
                            let expect = if off < start || off >= end {
                                0
                            } else {
                                n.min((end - off) as usize)
                            };
                            prop_assert_eq!(got, expect);
                            if got > 0 {
                                let off = off as usize;
                                prop_assert_eq!(&out[..got], &stream[off..off + got]);
                            }
                        }
                    }
                    prop_assert_eq!(r.start(), start);
                    prop_assert_eq!(r.end(), stream.len() as u64);
                    prop_assert_eq!(p.in_use(), r.chunks() * p.chunk_size());
                    prop_assert!(p.in_use() <= budget);
                    if r.is_empty() {
                        prop_assert_eq!(r.chunks(), 0);
                    } else {
                        // Only chunks that overlap [start, end).
                        let cs = p.chunk_size() as u64;
                        let need = (r.end() - 1) / cs - r.start() / cs + 1;
                        prop_assert_eq!(r.chunks() as u64, need);
                    }
                }
            }

            #[test]
            fn recv_ring_matches_model(
                shift in 0u32..7,
                budget in 0usize..1024,
                limit in 0usize..200,
                ops in proptest::collection::vec(recv_op(), 1..60),
            ) {
                let mut p = ChunkPool::new(1 << shift, budget);
                let mut r = RecvRing::new(limit);
                // Model: what each stream byte holds once stored (None: never).
                let mut model: Vec<Option<u8>> = vec![None; 16_384];
                let mut read = 0u64;
                for op in ops {
                    match op {
                        RecvOp::Write(off, n) => {
                            let data = bytes(off, n);
                            let w = r.write_at(&mut p, off, &data);
                            let from = off.max(read);
                            let to = (off + n as u64).min(read + limit as u64);
                            prop_assert!(w as u64 <= to.saturating_sub(from));
                            if (w as u64) < to.saturating_sub(from) {
                                prop_assert!(p.available() < p.chunk_size());
                            }
                            for i in from..from + w as u64 {
                                model[i as usize] = Some(data[(i - off) as usize]);
                            }
                        }
                        RecvOp::Read(ahead, n) => {
                            let readable = read + ahead;
                            let mut out = vec![0u8; n];
                            let got = r.read(&mut p, readable, &mut out);
                            let cap = readable.min(read + limit as u64).saturating_sub(read);
                            prop_assert_eq!(got as u64, (n as u64).min(cap));
                            for (i, b) in out[..got].iter().enumerate() {
                                let at = read as usize + i;
                                prop_assert_eq!(*b, model[at].unwrap_or(0));
                            }
                            for m in &mut model[read as usize..read as usize + got] {
                                *m = None;
                            }
                            read += got as u64;
                        }
                    }
                    prop_assert_eq!(r.read_offset(), read);
                    prop_assert_eq!(p.in_use(), r.chunks() * p.chunk_size());
                    prop_assert!(p.in_use() <= budget);
                    let any = model.iter().any(|m| m.is_some());
                    prop_assert_eq!(r.is_empty(), !any);
                    if !any {
                        prop_assert_eq!(r.chunks(), 0);
                    }
                    prop_assert!(r.window() <= limit);
                }
            }
        }
    }
}

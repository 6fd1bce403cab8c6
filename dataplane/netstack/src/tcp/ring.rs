//! Stream bytes of connections: a send ring (written by the application,
//! read at any offset for (re)transmission, released by ACKs) and a receive
//! ring (written at any offset in or out of order, read in order). Both are
//! made of fixed-size chunks from a per-loop [`ChunkPool`], so an idle
//! connection holds no buffer memory and the loop's total is bounded (the
//! global memory budget). STUB: bodies come with the components branch.

/// Chunks shared by every connection of one poll loop.
#[derive(Debug)]
pub struct ChunkPool {
    chunk_size: usize,
    max_bytes: usize,
}

impl ChunkPool {
    /// Chunks of `chunk_size` bytes (a power of two), at most `max_bytes`
    /// handed out at once.
    pub fn new(chunk_size: usize, max_bytes: usize) -> Self {
        Self {
            chunk_size,
            max_bytes,
        }
    }
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
    /// Bytes in chunks currently held by rings.
    pub fn in_use(&self) -> usize {
        let _ = self.max_bytes;
        todo!("components branch")
    }
    /// Bytes that can still be handed out.
    pub fn available(&self) -> usize {
        todo!("components branch")
    }
}

/// Application data from the oldest unacknowledged byte to the newest.
#[derive(Debug)]
pub struct SendRing {
    limit: usize,
}

impl SendRing {
    /// A ring that holds at most `limit` bytes. Allocates nothing yet.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
    /// Append up to `data.len()` bytes, as many as the limit and the pool
    /// allow; returns how many.
    pub fn write(&mut self, _pool: &mut ChunkPool, _data: &[u8]) -> usize {
        let _ = self.limit;
        todo!("components branch")
    }
    /// Copy bytes starting at stream offset `offset` into `out`; returns
    /// how many (fewer at the end of the data).
    pub fn read_at(&self, _offset: u64, _out: &mut [u8]) -> usize {
        todo!("components branch")
    }
    /// Release everything below stream offset `upto` (acknowledged).
    pub fn release(&mut self, _pool: &mut ChunkPool, _upto: u64) {
        todo!("components branch")
    }
    /// Stream offset of the oldest byte held.
    pub fn start(&self) -> u64 {
        todo!("components branch")
    }
    /// Stream offset one past the newest byte held.
    pub fn end(&self) -> u64 {
        todo!("components branch")
    }
    pub fn len(&self) -> usize {
        (self.end() - self.start()) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes the application may still write.
    pub fn free_space(&self) -> usize {
        todo!("components branch")
    }
}

/// Received bytes from the application's read point on, in or out of order.
#[derive(Debug)]
pub struct RecvRing {
    limit: usize,
}

impl RecvRing {
    /// A ring that holds at most `limit` bytes beyond the read point (the
    /// receive window). Allocates nothing yet.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
    /// Store `data` at stream offset `offset` (clipped to
    /// `[read_offset, read_offset + limit)`); returns the bytes stored.
    pub fn write_at(&mut self, _pool: &mut ChunkPool, _offset: u64, _data: &[u8]) -> usize {
        let _ = self.limit;
        todo!("components branch")
    }
    /// Copy in-order bytes up to stream offset `readable_end` (the
    /// reassembly point) into `out`, releasing them; returns how many.
    pub fn read(&mut self, _pool: &mut ChunkPool, _readable_end: u64, _out: &mut [u8]) -> usize {
        todo!("components branch")
    }
    /// Stream offset of the next byte the application will read.
    pub fn read_offset(&self) -> u64 {
        todo!("components branch")
    }
    /// Free space from the read point: the window to advertise.
    pub fn window(&self) -> usize {
        todo!("components branch")
    }
}

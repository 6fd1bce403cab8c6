//! 64-bit words shared with the kernel, BPF programs and other processes
//! through a `MAP_SHARED` mapping of a file descriptor: in sluice an
//! mmapable BPF array map (`BPF_F_MMAPABLE`, the gateway's `health` map) that
//! the poll loops read without a syscall; a memfd in the tests.
//!
//! Word `i` is the 8 bytes at offset `8 * i` of the file (of the map's value
//! area, for an array map of `u64` values). Every access goes through
//! [`AtomicU64`], so readers and writers in this process are data-race free
//! among themselves; see invariant 6 in the crate doc for the other parties.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

const WORD: usize = std::mem::size_of::<u64>();

/// `words` 64-bit words of a file (a BPF array map) mapped shared, read-write.
/// Unmapped on drop. The mapping keeps what it maps alive on its own: the fd
/// it was made from may be closed right after [`SharedWords::map`].
pub struct SharedWords {
    /// Start of the mapping: page-aligned, `map_len` bytes, `words` of them used.
    ptr: NonNull<AtomicU64>,
    words: usize,
    map_len: usize,
}

// SAFETY: `SharedWords` owns its mapping (nothing else unmaps it) and only
// hands out `&AtomicU64`, which may be used from any thread; moving the owner
// to another thread moves nothing but the pointer (invariant 6).
unsafe impl Send for SharedWords {}
// SAFETY: shared references only give `&AtomicU64`, and `AtomicU64` is `Sync`:
// concurrent access from several threads is by atomic operations only
// (invariant 6).
unsafe impl Sync for SharedWords {}

fn page_size() -> io::Result<usize> {
    // SAFETY: sysconf takes a plain integer and touches no memory of ours
    // (invariant 5).
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page <= 0 {
        return Err(io::Error::other("sysconf(_SC_PAGESIZE) failed"));
    }
    Ok(page as usize)
}

impl SharedWords {
    /// Maps the first `words` 64-bit words of `fd`:
    /// `mmap(NULL, words * 8 rounded up to the page size, PROT_READ |
    /// PROT_WRITE, MAP_SHARED, fd, 0)`.
    ///
    /// For a BPF map, `fd` must be an array map created with
    /// `BPF_F_MMAPABLE`, value size 8 and at least `words` entries (the
    /// kernel refuses anything else with `EINVAL`), opened read-write. For a
    /// file, it must be at least that many pages long.
    pub fn map(fd: BorrowedFd<'_>, words: usize) -> io::Result<Self> {
        if words == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mapping zero shared words",
            ));
        }
        let page = page_size()?;
        let map_len = words
            .checked_mul(WORD)
            .and_then(|bytes| bytes.checked_next_multiple_of(page))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{words} shared words overflow the address space"),
                )
            })?;
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint, no
        // MAP_FIXED), so no existing memory of this process is replaced; the
        // length is non-zero and `fd` is a live descriptor borrowed for the
        // call (invariant 5). What the mapping may be used for is established
        // below and kept by `SharedWords` (invariant 6).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        // Mappings start on a page boundary, which is more than u64 needs.
        debug_assert_eq!(addr as usize % std::mem::align_of::<AtomicU64>(), 0);
        Ok(Self {
            ptr,
            words,
            map_len,
        })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words
    }

    /// Never true: a mapping has at least one word.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Word `i`. Panics if `i >= len()`.
    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(
            i < self.words,
            "shared word {i} out of range ({} words)",
            self.words
        );
        // SAFETY: invariant 6. `i < words`, so the word lies inside the
        // mapping (`words * 8 <= map_len`), which stays mapped for as long as
        // `self`, and so for the returned borrow; the address is aligned for
        // u64 (page-aligned start, 8-byte stride); AtomicU64 has the size and
        // alignment of u64 and the memory is only ever accessed atomically
        // from this process.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    /// Every word, in order.
    pub fn as_slice(&self) -> &[AtomicU64] {
        // SAFETY: invariant 6, for all `words` words at once: inside the
        // mapping, aligned, alive as long as `self`, accessed atomically only.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }
}

impl fmt::Debug for SharedWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedWords")
            .field("words", &self.words)
            .field("map_len", &self.map_len)
            .finish()
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`map_len` are exactly the mapping made in `map`, owned
        // by `self` and unmapped only here; no borrow of a word outlives
        // `self` (invariant 6).
        let ret = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
        debug_assert_eq!(ret, 0, "munmap: {}", io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

    /// An anonymous file of `len` zero bytes.
    fn memfd(len: u64) -> File {
        let fd = memfd_create(c"sluice-shared-words", MemFdCreateFlag::MFD_CLOEXEC)
            .expect("memfd_create");
        let f = File::from(fd);
        f.set_len(len).expect("ftruncate");
        f
    }

    #[test]
    fn words_are_the_file_in_native_order() {
        let page = page_size().unwrap();
        let f = memfd(page as u64);
        let w = SharedWords::map(f.as_fd(), 5).unwrap();
        assert_eq!((w.len(), w.is_empty()), (5, false));
        assert_eq!(w.map_len, page, "rounded up to one page");
        w.word(0).store(0x0102_0304_0506_0708, Ordering::Release);
        w.word(4).store(u64::MAX - 1, Ordering::Relaxed);
        w.word(1).fetch_or(1, Ordering::Relaxed);

        let mut bytes = [0u8; 40];
        f.read_at(&mut bytes, 0).unwrap();
        let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(
            [word(0), word(1), word(2), word(3), word(4)],
            [0x0102_0304_0506_0708, 1, 0, 0, u64::MAX - 1]
        );

        // Writes to the file show through the mapping (MAP_SHARED).
        f.write_at(&7u64.to_ne_bytes(), 3 * 8).unwrap();
        assert_eq!(w.word(3).load(Ordering::Acquire), 7);
        let all: Vec<u64> = w
            .as_slice()
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        assert_eq!(all, [0x0102_0304_0506_0708, 1, 0, 7, u64::MAX - 1]);
    }

    #[test]
    fn two_mappings_share_and_outlive_the_fd() {
        let page = page_size().unwrap();
        let f = memfd(2 * page as u64);
        let words = page / 8 + 1; // spills into the second page
        let a = SharedWords::map(f.as_fd(), words).unwrap();
        let b = SharedWords::map(f.as_fd(), words).unwrap();
        assert_eq!(a.map_len, 2 * page);
        drop(f); // the mappings keep the file
        a.word(words - 1).store(42, Ordering::Release);
        assert_eq!(b.word(words - 1).load(Ordering::Acquire), 42);
        drop(a);
        assert_eq!(b.word(words - 1).load(Ordering::Acquire), 42);
    }

    #[test]
    fn threads_update_atomically() {
        let f = memfd(page_size().unwrap() as u64);
        let w = Arc::new(SharedWords::map(f.as_fd(), 2).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = Arc::clone(&w);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        w.word(1).fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.word(1).load(Ordering::Relaxed), 40_000);
        assert_eq!(w.word(0).load(Ordering::Relaxed), 0);
    }

    #[test]
    #[should_panic(expected = "shared word 3 out of range (3 words)")]
    fn out_of_range_panics() {
        let f = memfd(page_size().unwrap() as u64);
        let w = SharedWords::map(f.as_fd(), 3).unwrap();
        w.word(3);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let f = memfd(page_size().unwrap() as u64);
        assert_eq!(
            SharedWords::map(f.as_fd(), 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            SharedWords::map(f.as_fd(), usize::MAX / 4)
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        // Opened read-only: no shared writable mapping.
        let ro = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        let e = SharedWords::map(ro.as_fd(), 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        // Not mappable at all: a pipe (write end, so not EACCES).
        let (_r, w) = nix::unistd::pipe().unwrap();
        let e = SharedWords::map(w.as_fd(), 1).unwrap_err();
        assert!(e.raw_os_error().is_some(), "{e}");
    }
}

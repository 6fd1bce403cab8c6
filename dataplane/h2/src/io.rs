//! The in-memory transport h2 runs on, and the waker that tells the app
//! h2 wants to be polled again.
//!
//! h2 is written against tokio's `AsyncRead`/`AsyncWrite`. Here they are
//! two byte buffers shared with the app: reads take what `on_read` put in
//! (Pending when there is none), writes append to the output (Pending when
//! it holds `write_cap` bytes) that `poll_write` drains. Every waker h2
//! stores is the app's one waker, which only sets a flag: the app polls
//! again while it is set.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use sluice_app::Time;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::scan::{Frame, Scanner, DATA, GOAWAY, HEADERS, RST_STREAM};

/// Set when anything h2 waits on happened (a waker was woken).
#[derive(Debug, Default)]
pub(crate) struct WakeFlag(AtomicBool);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl WakeFlag {
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Frames h2 wrote, counted by scanning the output (h2 does not tell).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    pub data: u64,
    pub headers: u64,
    pub resets: u64,
    /// Error code of the first GOAWAY.
    pub goaway: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct IoState {
    input: Vec<u8>,
    in_pos: usize,
    eof: bool,
    out: Vec<u8>,
    out_pos: usize,
    write_cap: usize,
    /// h2 got Pending from a write (the output is full).
    write_blocked: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    out_scan: Scanner,
    pub sent: Sent,
}

impl IoState {
    pub fn new(write_cap: usize) -> Self {
        IoState {
            input: Vec::new(),
            in_pos: 0,
            eof: false,
            out: Vec::new(),
            out_pos: 0,
            write_cap,
            write_blocked: false,
            reader: None,
            writer: None,
            out_scan: Scanner::new(false),
            sent: Sent::default(),
        }
    }

    pub fn buffered_in(&self) -> usize {
        self.input.len() - self.in_pos
    }

    pub fn buffered_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Allocated bytes of both buffers.
    pub fn capacity(&self) -> usize {
        self.input.capacity() + self.out.capacity()
    }

    /// h2 is waiting for room in the output.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked
    }

    pub fn push_input(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.in_pos > 0 {
            self.input.drain(..self.in_pos);
            self.in_pos = 0;
        }
        self.input.extend_from_slice(data);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Input stays unread from now on (the connection is going away).
    pub fn discard_input(&mut self) {
        self.input.clear();
        self.in_pos = 0;
    }

    /// Output that will never be sent (the connection is reset).
    pub fn discard_output(&mut self) {
        self.out = Vec::new();
        self.out_pos = 0;
    }

    pub fn set_eof(&mut self) {
        self.eof = true;
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Moves output into `buf`; returns how many bytes.
    pub fn take_output(&mut self, buf: &mut [u8]) -> usize {
        let n = self.buffered_out().min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        if n > 0 && self.write_blocked {
            self.write_blocked = false;
            if let Some(w) = self.writer.take() {
                w.wake();
            }
        }
        n
    }

    /// Gives the buffers' memory back when they are empty (an idle
    /// connection holds no buffer).
    pub fn release_empty(&mut self) {
        if self.buffered_in() == 0 && self.input.capacity() > 0 {
            self.input = Vec::new();
            self.in_pos = 0;
        }
        if self.buffered_out() == 0 && self.out.capacity() > 0 {
            self.out = Vec::new();
            self.out_pos = 0;
        }
    }

    fn room(&self) -> usize {
        self.write_cap.saturating_sub(self.buffered_out())
    }

    fn append(&mut self, data: &[u8]) {
        if self.out_pos > 0 && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > 0 && self.out.len() + data.len() > self.out.capacity() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        self.out.extend_from_slice(data);
        let sent = &mut self.sent;
        // Time is not used on this side.
        self.out_scan.feed(data, Time::ZERO, |f: &Frame| {
            match f.ty {
                DATA if f.len > 0 => sent.data += 1,
                HEADERS => sent.headers += 1,
                RST_STREAM => sent.resets += 1,
                GOAWAY if sent.goaway.is_none() => sent.goaway = Some(f.error_code()),
                _ => {}
            }
            true
        });
    }
}

/// h2's end of the transport.
#[derive(Debug)]
pub(crate) struct Transport(pub Rc<RefCell<IoState>>);

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        let avail = s.buffered_in();
        if avail == 0 {
            if s.eof {
                return Poll::Ready(Ok(()));
            }
            s.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = avail.min(buf.remaining());
        let at = s.in_pos;
        buf.put_slice(&s.input[at..at + n]);
        s.in_pos += n;
        if s.in_pos == s.input.len() {
            s.input.clear();
            s.in_pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        let n = s.room().min(buf.len());
        if n == 0 && !buf.is_empty() {
            s.write_blocked = true;
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        s.append(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if s.room() == 0 && total > 0 {
            s.write_blocked = true;
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut n = 0;
        for b in bufs {
            let k = s.room().min(b.len());
            s.append(&b[..k]);
            n += k;
            if k < b.len() {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// h2 is done writing; `close()` turns Graceful once the output is
    /// drained.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

//! A sans-IO scanner of the HTTP/2 frame layer: it reads the 9-byte frame
//! headers of a byte stream, skips the payloads, and reports each frame
//! once its last byte went by. It decodes nothing else (no HPACK), so it
//! cannot fail: any byte sequence is "frames", and the connection judges whether they
//! are valid. The flood guard and the head timeout run on what it reports,
//! before the connection parses the bytes.

use sluice_app::Time;

pub(crate) const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PING: u8 = 0x6;
#[cfg(test)]
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;

pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY_FLAG: u8 = 0x20;

/// A frame that went by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub len: u32,
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    /// DATA, HEADERS or CONTINUATION whose data or header block fragment
    /// is empty once padding and priority fields are taken off.
    pub empty: bool,
    /// The first 8 payload bytes (fewer if the payload is shorter): a
    /// GOAWAY's last stream id and error code, a padded frame's pad length.
    pub head: [u8; 8],
    /// A SETTINGS frame sets SETTINGS_INITIAL_WINDOW_SIZE above 2^31 - 1.
    pub window_overflow: bool,
}

impl Frame {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The error code of a GOAWAY (or RST_STREAM) frame.
    #[cfg(test)]
    pub fn error_code(&self) -> u32 {
        let at = if self.ty == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes([
            self.head[at],
            self.head[at + 1],
            self.head[at + 2],
            self.head[at + 3],
        ])
    }
}

#[derive(Debug)]
pub(crate) struct Scanner {
    /// Preface bytes still to skip.
    preface_left: usize,
    /// When the first byte of the preface arrived (a head timeout runs
    /// while it is incomplete).
    preface_since: Option<Time>,
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    /// When the first byte of the frame header being read arrived.
    hdr_since: Time,
    /// The frame whose payload is being skipped, and how much is left.
    cur: Option<Frame>,
    left: u32,
    got: u32,
    /// A header block (HEADERS without END_HEADERS, then CONTINUATION) is
    /// open since the first byte of its HEADERS frame header.
    block_since: Option<Time>,
    /// The SETTINGS parameter being read (6 bytes: id, value).
    param: [u8; 6],
    param_len: usize,
}

impl Scanner {
    /// `preface`: the stream starts with the 24-byte client preface (the
    /// inbound side); the connection checks its bytes.
    pub fn new(preface: bool) -> Self {
        Scanner {
            preface_left: if preface { PREFACE_LEN } else { 0 },
            preface_since: None,
            hdr: [0; HEADER_LEN],
            hdr_len: 0,
            hdr_since: Time::ZERO,
            cur: None,
            left: 0,
            got: 0,
            block_since: None,
            param: [0; 6],
            param_len: 0,
        }
    }

    /// Preface bytes not yet seen.
    pub fn preface_left(&self) -> usize {
        self.preface_left
    }

    /// Since when a request head may be in progress: the preface or a
    /// frame header is incomplete (a HEADERS frame may be starting), or a
    /// header block is open.
    pub fn head_since(&self) -> Option<Time> {
        if self.preface_left > 0 {
            return self.preface_since;
        }
        if let Some(t) = self.block_since {
            return Some(t);
        }
        if self.hdr_len > 0 {
            return Some(self.hdr_since);
        }
        None
    }

    /// Scans `data`, calling `on_frame` for every frame it completes, in
    /// order. Stops after a call that returns false.
    pub fn feed(&mut self, mut data: &[u8], now: Time, mut on_frame: impl FnMut(&Frame) -> bool) {
        if self.preface_left > 0 && !data.is_empty() {
            self.preface_since.get_or_insert(now);
            let n = self.preface_left.min(data.len());
            self.preface_left -= n;
            data = &data[n..];
        }
        while !data.is_empty() {
            if let Some(mut f) = self.cur {
                let n = (self.left as usize).min(data.len());
                let at = self.got as usize;
                if at < 8 {
                    let k = (8 - at).min(n);
                    f.head[at..at + k].copy_from_slice(&data[..k]);
                }
                if f.ty == SETTINGS {
                    for &b in &data[..n] {
                        self.param[self.param_len] = b;
                        self.param_len += 1;
                        if self.param_len == 6 {
                            self.param_len = 0;
                            let p = &self.param;
                            let id = u16::from_be_bytes([p[0], p[1]]);
                            let val = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
                            f.window_overflow |= id == 0x4 && val > (1 << 31) - 1;
                        }
                    }
                }
                self.got += n as u32;
                self.left -= n as u32;
                data = &data[n..];
                if self.left > 0 {
                    self.cur = Some(f);
                    continue;
                }
                self.cur = None;
                if !self.complete(f, &mut on_frame) {
                    return;
                }
                continue;
            }
            if self.hdr_len == 0 {
                self.hdr_since = now;
            }
            let n = (HEADER_LEN - self.hdr_len).min(data.len());
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&data[..n]);
            self.hdr_len += n;
            data = &data[n..];
            if self.hdr_len < HEADER_LEN {
                continue;
            }
            self.hdr_len = 0;
            let h = &self.hdr;
            let f = Frame {
                len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                ty: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                empty: false,
                head: [0; 8],
                window_overflow: false,
            };
            self.param_len = 0;
            if f.ty == HEADERS && self.block_since.is_none() {
                self.block_since = Some(self.hdr_since);
            }
            if f.len == 0 {
                if !self.complete(f, &mut on_frame) {
                    return;
                }
            } else {
                self.cur = Some(f);
                self.left = f.len;
                self.got = 0;
            }
        }
    }

    fn complete(&mut self, mut f: Frame, on_frame: &mut impl FnMut(&Frame) -> bool) -> bool {
        if matches!(f.ty, HEADERS | CONTINUATION) && f.has(END_HEADERS) {
            self.block_since = None;
        }
        f.empty = match f.ty {
            DATA => fragment_len(&f, false) == Some(0),
            HEADERS => fragment_len(&f, f.has(PRIORITY_FLAG)) == Some(0),
            CONTINUATION => f.len == 0,
            _ => false,
        };
        on_frame(&f)
    }
}

/// Length of a DATA or HEADERS frame's content once padding (and the
/// priority fields) are taken off; None if the padding does not fit (h2
/// answers that with PROTOCOL_ERROR).
fn fragment_len(f: &Frame, priority: bool) -> Option<u32> {
    let mut len = f.len;
    if f.has(PADDED) {
        if len == 0 {
            return None;
        }
        len = len.checked_sub(1 + u32::from(f.head[0]))?;
    }
    if priority {
        len = len.checked_sub(5)?;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = len.to_be_bytes()[1..].to_vec();
        v.push(ty);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn scan_all(s: &mut Scanner, data: &[u8], step: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        for c in data.chunks(step.max(1)) {
            s.feed(c, Time::ZERO, |f| {
                out.push(*f);
                true
            });
        }
        out
    }

    #[test]
    fn frames_at_any_split() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
        stream.extend(frame(DATA, 0, 1, &[]));
        stream.extend(frame(DATA, PADDED, 3, &[2, 0, 0]));
        stream.extend(frame(DATA, PADDED, 3, &[1, 7, 0]));
        stream.extend(frame(HEADERS, PRIORITY_FLAG, 5, &[0, 0, 0, 1, 9]));
        stream.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 7, 0, 0, 0, 11, 1, 2]));
        stream.extend(frame(CONTINUATION, END_HEADERS, 5, &[]));
        for step in [1, 2, 5, 9, 10, 1000] {
            let mut s = Scanner::new(true);
            let fs = scan_all(&mut s, &stream, step);
            let kinds: Vec<(u8, bool)> = fs.iter().map(|f| (f.ty, f.empty)).collect();
            assert_eq!(
                kinds,
                [
                    (SETTINGS, false),
                    (DATA, true),
                    (DATA, true),
                    (DATA, false),
                    (HEADERS, true),
                    (GOAWAY, false),
                    (CONTINUATION, true)
                ],
                "step {step}"
            );
            assert_eq!(fs[5].error_code(), 11);
            assert_eq!(s.head_since(), None);
        }
    }

    #[test]
    fn head_since_covers_open_blocks_and_partial_headers() {
        let mut s = Scanner::new(true);
        assert_eq!(s.head_since(), None);
        s.feed(b"PRI * HTTP", Time::from_millis(1), |_| true);
        assert_eq!(s.head_since(), Some(Time::from_millis(1)));
        s.feed(b"/2.0\r\n\r\nSM\r\n\r\n", Time::from_millis(2), |_| true);
        assert_eq!(s.head_since(), None);
        let h = frame(HEADERS, 0, 1, &[0x82]);
        s.feed(&h[..3], Time::from_millis(3), |_| true);
        assert_eq!(s.head_since(), Some(Time::from_millis(3)));
        s.feed(&h[3..], Time::from_millis(4), |_| true);
        assert_eq!(s.head_since(), Some(Time::from_millis(3)));
        s.feed(
            &frame(CONTINUATION, 0, 1, &[0x84]),
            Time::from_millis(5),
            |_| true,
        );
        assert_eq!(s.head_since(), Some(Time::from_millis(3)));
        s.feed(
            &frame(CONTINUATION, END_HEADERS, 1, &[0x86]),
            Time::from_millis(6),
            |_| true,
        );
        assert_eq!(s.head_since(), None);
    }

    #[test]
    fn settings_window_overflow() {
        let mut p = vec![0, 1, 0, 0, 0, 0];
        p.extend([0, 4, 0x80, 0, 0, 0]);
        for (payload, bad) in [
            (&p[..6], false),
            (&p[..], true),
            (&[0, 4, 0x7f, 0xff, 0xff, 0xff][..], false),
        ] {
            for step in [1, 4, 100] {
                let mut s = Scanner::new(false);
                let fs = scan_all(&mut s, &frame(SETTINGS, 0, 0, payload), step);
                assert_eq!(fs.len(), 1);
                assert_eq!(fs[0].window_overflow, bad);
            }
        }
    }

    #[test]
    fn stops_when_asked() {
        let mut s = Scanner::new(false);
        let mut data = frame(PING, 0, 0, &[0; 8]);
        data.extend(frame(PING, 0, 0, &[0; 8]));
        let mut n = 0;
        s.feed(&data, Time::ZERO, |_| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
    }
}

//! The HTTP/2 frame layer (RFC 9113 §4, §6, §7), sans IO.
//!
//! - [`parse`] turns one frame (header + whole payload) into a [`Frame`]
//!   that borrows its payload, after every size, padding and stream-id
//!   rule of §4.2 and §6 is checked; what it rejects comes back as a
//!   [`FrameError`] that says whether the connection or only the stream
//!   dies. Rules that need connection state (header-block sequencing,
//!   stream states, flow-control windows) are the caller's.
//! - [`parse_from`] and [`FrameReader`] cut a byte stream into frames:
//!   `parse_from` parses in place when a whole frame is in the caller's
//!   slice (the common case: no copy), `FrameReader` buffers only the
//!   frames that straddle reads.
//! - `write_*` append whole frames to a `Vec<u8>`, splitting DATA and
//!   header blocks at the peer's maximum frame size.
//! - [`Settings`] holds a peer's SETTINGS and validates updates (§6.5.2).
//!
//! The client connection preface ([`PREFACE`]) is not a frame: the server
//! side checks and skips it before handing bytes to this layer.

use std::fmt;

/// Length of a frame header (§4.1).
pub const HEADER_LEN: usize = 9;
/// The client connection preface (§3.4), sent before the first frame.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_FRAME_SIZE until a SETTINGS frame changes it, and its
/// floor: a payload this long is always allowed (§4.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE (the 24-bit length field).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The largest flow-control window (§6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Initial window of the connection and of new streams (§6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

// Frame types (§6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

// Flags (§6). Their meaning depends on the frame type.
/// DATA, HEADERS: the sender's last frame on the stream.
pub const END_STREAM: u8 = 0x1;
/// SETTINGS, PING: an acknowledgement.
pub const ACK: u8 = 0x1;
/// HEADERS, PUSH_PROMISE, CONTINUATION: the field block ends here.
pub const END_HEADERS: u8 = 0x4;
/// DATA, HEADERS, PUSH_PROMISE: a pad length byte leads the payload.
pub const PADDED: u8 = 0x8;
/// HEADERS: priority fields follow (after the pad length). Named with a
/// suffix because `PRIORITY` is the frame type.
pub const PRIORITY_FLAG: u8 = 0x20;

/// SETTINGS parameter identifiers (§6.5.2, RFC 8441 §3).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// RFC 9113 §7 error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    NoError = 0,
    ProtocolError,
    InternalError,
    FlowControlError,
    SettingsTimeout,
    StreamClosed,
    FrameSizeError,
    RefusedStream,
    Cancel,
    CompressionError,
    ConnectError,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
}

impl ErrorCode {
    /// The code for a wire value; `None` for codes this RFC does not
    /// define, which callers must not treat as special (§7: they may be
    /// treated as INTERNAL_ERROR).
    pub fn from_u32(v: u32) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            0x0 => NoError,
            0x1 => ProtocolError,
            0x2 => InternalError,
            0x3 => FlowControlError,
            0x4 => SettingsTimeout,
            0x5 => StreamClosed,
            0x6 => FrameSizeError,
            0x7 => RefusedStream,
            0x8 => Cancel,
            0x9 => CompressionError,
            0xa => ConnectError,
            0xb => EnhanceYourCalm,
            0xc => InadequateSecurity,
            0xd => Http11Required,
            _ => return None,
        })
    }
}

/// A decoded frame header (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Payload length (24 bits).
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// The stream id with the reserved bit cleared: receivers must ignore
    /// that bit (§4.1).
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: read_u31(&b[5..9]),
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Priority fields of a HEADERS or PRIORITY frame (§6.3). RFC 9113
/// deprecates the scheme, but the fields must still be parsed and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    pub dependency: u32,
    pub exclusive: bool,
    /// The wire value: the weight minus one (0..=255 stands for 1..=256).
    pub weight: u8,
}

/// A parsed frame, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `data` is without padding. `flow_len`: the whole payload length
    /// incl. padding: what counts against flow-control windows (§6.9.1).
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        flow_len: u32,
    },
    /// `fragment` is without padding and priority fields; more of the
    /// field block follows in CONTINUATION frames unless `end_headers`.
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
        fragment: &'a [u8],
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    /// `code` as sent: unknown codes are legal (§7).
    RstStream {
        stream: u32,
        code: u32,
    },
    Settings {
        ack: bool,
        params: SettingsParams<'a>,
    },
    PushPromise {
        stream: u32,
        end_headers: bool,
        promised: u32,
        fragment: &'a [u8],
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    /// Unknown frame types are ignored (§4.1, §5.5); only their place
    /// matters (one inside a field block is a connection error, §6.10).
    Unknown {
        kind: u8,
        stream: u32,
    },
}

/// What a frame that breaks the rules costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Tear the connection down with GOAWAY(code).
    Connection(ErrorCode),
    /// Reset this one stream with RST_STREAM(code); the connection stays up.
    Stream(u32, ErrorCode),
}

/// The parameters of a SETTINGS frame: a view over its 6-byte entries
/// (16-bit id, 32-bit value), iterated in wire order because order
/// matters when an id repeats (§6.5.3: the last value wins).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsParams<'a> {
    bytes: &'a [u8],
}

impl<'a> SettingsParams<'a> {
    /// The view over a SETTINGS payload; `None` unless its length is a
    /// multiple of 6.
    pub fn new(bytes: &'a [u8]) -> Option<SettingsParams<'a>> {
        (bytes.len() % 6 == 0).then_some(SettingsParams { bytes })
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.bytes.len() / 6
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// (id, value) pairs in wire order.
    pub fn iter(&self) -> SettingsIter<'a> {
        SettingsIter {
            chunks: self.bytes.chunks_exact(6),
        }
    }
}

impl<'a> IntoIterator for SettingsParams<'a> {
    type Item = (u16, u32);
    type IntoIter = SettingsIter<'a>;

    fn into_iter(self) -> SettingsIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for SettingsParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over [`SettingsParams`].
#[derive(Clone, Debug)]
pub struct SettingsIter<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for SettingsIter<'_> {
    type Item = (u16, u32);

    fn next(&mut self) -> Option<(u16, u32)> {
        let c = self.chunks.next()?;
        Some((
            u16::from_be_bytes([c[0], c[1]]),
            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for SettingsIter<'_> {}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A stream id or window increment: the top bit is reserved and ignored.
fn read_u31(b: &[u8]) -> u32 {
    read_u32(b) & MAX_WINDOW
}

fn conn(code: ErrorCode) -> FrameError {
    FrameError::Connection(code)
}

/// Rejects a frame longer than the SETTINGS_MAX_FRAME_SIZE we advertised
/// (§4.2). Call it on the header alone, before buffering the payload: that
/// bounds what a peer can make us hold. A connection error even for DATA
/// (the RFC would allow a stream error there), so no payload has to be
/// skipped.
pub fn check_len(head: &Head, max_frame_size: u32) -> Result<(), FrameError> {
    if head.len > max_frame_size {
        return Err(conn(ErrorCode::FrameSizeError));
    }
    Ok(())
}

/// Parses a frame whose header and whole payload (`payload.len() ==
/// head.len`) arrived. `max_frame_size` is the SETTINGS_MAX_FRAME_SIZE
/// *we* advertised.
pub fn parse<'a>(
    head: Head,
    payload: &'a [u8],
    max_frame_size: u32,
) -> Result<Frame<'a>, FrameError> {
    debug_assert_eq!(
        payload.len(),
        head.len as usize,
        "payload is not the frame's"
    );
    check_len(&head, max_frame_size)?;
    let stream = head.stream;
    // Frames that belong to a stream, and frames that belong to the
    // connection (§6.x: each such mismatch is a PROTOCOL_ERROR).
    match head.kind {
        DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION if stream == 0 => {
            return Err(conn(ErrorCode::ProtocolError));
        }
        SETTINGS | PING | GOAWAY if stream != 0 => {
            return Err(conn(ErrorCode::ProtocolError));
        }
        _ => {}
    }
    let len = payload.len();
    Ok(match head.kind {
        DATA => Frame::Data {
            stream,
            end_stream: head.has(END_STREAM),
            data: unpad(&head, payload, 0)?,
            flow_len: head.len,
        },
        HEADERS => {
            let prio = head.has(PRIORITY_FLAG);
            let body = unpad(&head, payload, if prio { 5 } else { 0 })?;
            let (priority, fragment) = if prio {
                let p = read_priority(&body[..5]);
                // §5.3.1 calls this a stream error, but a field block we
                // do not decode would desynchronise the HPACK context for
                // the whole connection (§4.3), so it ends the connection.
                if p.dependency == stream {
                    return Err(conn(ErrorCode::ProtocolError));
                }
                (Some(p), &body[5..])
            } else {
                (None, body)
            };
            Frame::Headers {
                stream,
                end_stream: head.has(END_STREAM),
                end_headers: head.has(END_HEADERS),
                priority,
                fragment,
            }
        }
        PRIORITY => {
            if len != 5 {
                return Err(FrameError::Stream(stream, ErrorCode::FrameSizeError));
            }
            let priority = read_priority(payload);
            if priority.dependency == stream {
                return Err(FrameError::Stream(stream, ErrorCode::ProtocolError));
            }
            Frame::Priority { stream, priority }
        }
        RST_STREAM => {
            if len != 4 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            Frame::RstStream {
                stream,
                code: read_u32(payload),
            }
        }
        SETTINGS => {
            let ack = head.has(ACK);
            if ack && len != 0 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            let params = SettingsParams::new(payload).ok_or(conn(ErrorCode::FrameSizeError))?;
            Frame::Settings { ack, params }
        }
        PUSH_PROMISE => {
            let body = unpad(&head, payload, 4)?;
            Frame::PushPromise {
                stream,
                end_headers: head.has(END_HEADERS),
                promised: read_u31(body),
                fragment: &body[4..],
            }
        }
        PING => {
            let data: [u8; 8] = payload
                .try_into()
                .map_err(|_| conn(ErrorCode::FrameSizeError))?;
            Frame::Ping {
                ack: head.has(ACK),
                data,
            }
        }
        GOAWAY => {
            if len < 8 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            Frame::GoAway {
                last_stream: read_u31(payload),
                code: read_u32(&payload[4..]),
                debug: &payload[8..],
            }
        }
        WINDOW_UPDATE => {
            if len != 4 {
                return Err(conn(ErrorCode::FrameSizeError));
            }
            let increment = read_u31(payload);
            if increment == 0 {
                return Err(if stream == 0 {
                    conn(ErrorCode::ProtocolError)
                } else {
                    FrameError::Stream(stream, ErrorCode::ProtocolError)
                });
            }
            Frame::WindowUpdate { stream, increment }
        }
        CONTINUATION => Frame::Continuation {
            stream,
            end_headers: head.has(END_HEADERS),
            fragment: payload,
        },
        kind => Frame::Unknown { kind, stream },
    })
}

/// The payload of a DATA, HEADERS or PUSH_PROMISE frame without its pad
/// length byte and padding, still starting with `fixed` bytes of fields
/// (priority, promised stream id). A payload too short for the pad length
/// and fields is a FRAME_SIZE_ERROR (§4.2: too small for mandatory
/// data); padding that leaves too little is a PROTOCOL_ERROR (§6.1, §6.2,
/// §6.6). Both are connection errors: these frames carry a field block
/// or count against the connection's window.
fn unpad<'a>(head: &Head, payload: &'a [u8], fixed: usize) -> Result<&'a [u8], FrameError> {
    let padded = head.has(PADDED);
    let lead = usize::from(padded);
    if payload.len() < lead + fixed {
        return Err(conn(ErrorCode::FrameSizeError));
    }
    if !padded {
        return Ok(payload);
    }
    let pad = usize::from(payload[0]);
    if pad > payload.len() - 1 - fixed {
        return Err(conn(ErrorCode::ProtocolError));
    }
    Ok(&payload[1..payload.len() - pad])
}

fn read_priority(b: &[u8]) -> Priority {
    Priority {
        dependency: read_u31(b),
        exclusive: b[0] & 0x80 != 0,
        weight: b[4],
    }
}

/// Parses the frame at the start of `input` in place, when all of it is
/// there: the zero-copy path. `None` when `input` holds less than a whole
/// frame: feed the rest to a [`FrameReader`] (which copies). A header
/// that announces a frame longer than `max_frame_size` is an error at
/// once, without waiting for the payload. Returns the result and the
/// bytes it used.
///
/// The receive loop: while the reader is empty, take frames with
/// `parse_from`; once it returns `None`, `push` the remainder into the
/// reader; when the reader yields a frame, handle it, `consume()`, and go
/// on with the input left:
///
/// ```
/// use sluice_h2codec::frame::*;
///
/// /// Hands each frame of a read to `handle`, which returns false to stop
/// /// (after a connection error).
/// fn on_read(
///     reader: &mut FrameReader,
///     mut input: &[u8],
///     mut handle: impl FnMut(Result<Frame<'_>, FrameError>) -> bool,
/// ) {
///     while !input.is_empty() {
///         if reader.buffered() == 0 {
///             if let Some((frame, used)) = parse_from(input, DEFAULT_MAX_FRAME_SIZE) {
///                 if !handle(frame) {
///                     return;
///                 }
///                 input = &input[used..];
///                 continue;
///             }
///         }
///         input = &input[reader.push(input)..];
///         if let Some(frame) = reader.frame() {
///             if !handle(frame) {
///                 return;
///             }
///             reader.consume();
///         }
///     }
/// }
///
/// let mut bytes = Vec::new();
/// write_ping(&mut bytes, false, [1; 8]);
/// write_settings_ack(&mut bytes);
/// let mut reader = FrameReader::new(DEFAULT_MAX_FRAME_SIZE);
/// let mut seen = Vec::new();
/// for read in [&bytes[..5], &bytes[5..20], &bytes[20..]] {
///     on_read(&mut reader, read, |f| {
///         seen.push(format!("{:?}", f.unwrap()));
///         true
///     });
/// }
/// assert_eq!(
///     seen,
///     [
///         "Ping { ack: false, data: [1, 1, 1, 1, 1, 1, 1, 1] }",
///         "Settings { ack: true, params: [] }",
///     ]
/// );
/// ```
pub fn parse_from(
    input: &[u8],
    max_frame_size: u32,
) -> Option<(Result<Frame<'_>, FrameError>, usize)> {
    let head = Head::parse(input.get(..HEADER_LEN)?.try_into().ok()?);
    if let Err(e) = check_len(&head, max_frame_size) {
        return Some((Err(e), HEADER_LEN));
    }
    let end = HEADER_LEN + head.len as usize;
    let payload = input.get(HEADER_LEN..end)?;
    Some((parse(head, payload, max_frame_size), end))
}

/// Accumulates input and yields whole frames. Holds at most one frame's
/// payload (bounded by the max frame size we advertise) plus a header.
///
/// For frames split across reads; whole frames in the input are cheaper
/// through [`parse_from`], which does not copy. Once it reported a
/// [`FrameError::Connection`], the stream of bytes cannot be trusted to
/// stay in sync: stop feeding it (an oversized frame stays reported, and
/// `push` takes nothing more).
#[derive(Debug)]
pub struct FrameReader {
    max_frame_size: u32,
    /// Header bytes, then payload bytes, of the current frame.
    buf: Vec<u8>,
}

impl FrameReader {
    /// `max_frame_size`: the SETTINGS_MAX_FRAME_SIZE we advertised.
    pub fn new(max_frame_size: u32) -> FrameReader {
        FrameReader {
            max_frame_size,
            buf: Vec::new(),
        }
    }

    /// The current frame's header once all of it arrived.
    fn head(&self) -> Option<Head> {
        let h = self.buf.get(..HEADER_LEN)?;
        Some(Head::parse(h.try_into().ok()?))
    }

    /// Copies what it can use of `input` into its buffer; returns bytes
    /// consumed. It consumes only up to the end of the current frame, and
    /// nothing once a frame is complete until `consume()`.
    pub fn push(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        if self.buf.len() < HEADER_LEN {
            used = (HEADER_LEN - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..used]);
        }
        let Some(head) = self.head() else {
            return used;
        };
        if check_len(&head, self.max_frame_size).is_err() {
            return used;
        }
        let want = HEADER_LEN + head.len as usize - self.buf.len();
        // One allocation per frame at most, no more than it needs (a no-op
        // once the buffer has grown to the usual frame size).
        self.buf.reserve_exact(want);
        let n = want.min(input.len() - used);
        self.buf.extend_from_slice(&input[used..used + n]);
        used + n
    }

    /// The complete frame now buffered, if any, parsed; call `consume()`
    /// after handling it. Checks the length against max_frame_size from
    /// the header alone.
    pub fn frame(&self) -> Option<Result<Frame<'_>, FrameError>> {
        let head = self.head()?;
        if let Err(e) = check_len(&head, self.max_frame_size) {
            return Some(Err(e));
        }
        let payload = &self.buf[HEADER_LEN..];
        (payload.len() == head.len as usize).then(|| parse(head, payload, self.max_frame_size))
    }

    /// Drops the complete frame (keeping the allocation for the next
    /// one); does nothing while the frame is incomplete or oversized.
    pub fn consume(&mut self) {
        if let Some(head) = self.head() {
            if head.len <= self.max_frame_size && self.buf.len() == HEADER_LEN + head.len as usize {
                self.buf.clear();
            }
        }
    }

    /// Bytes held: header and payload of the current frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Changes the limit (for after the peer acknowledged a new
    /// SETTINGS_MAX_FRAME_SIZE). It applies from the next header on.
    pub fn set_max_frame_size(&mut self, max_frame_size: u32) {
        self.max_frame_size = max_frame_size;
    }
}

/// A peer's (or our own) SETTINGS (§6.5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub header_table_size: u32,
    pub enable_push: bool,
    /// `None`: unlimited.
    pub max_concurrent_streams: Option<u32>,
    pub initial_window_size: u32,
    pub max_frame_size: u32,
    /// `None`: unlimited.
    pub max_header_list_size: Option<u32>,
}

impl Default for Settings {
    /// The values in force before any SETTINGS frame (§6.5.2).
    fn default() -> Settings {
        Settings {
            header_table_size: 4096,
            enable_push: true,
            max_concurrent_streams: None,
            initial_window_size: DEFAULT_WINDOW,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: None,
        }
    }
}

impl Settings {
    /// Applies a received SETTINGS frame's params in order (a repeated id:
    /// the last value wins). Errors: ENABLE_PUSH not 0/1 →
    /// Connection(ProtocolError); INITIAL_WINDOW_SIZE > 2^31-1 →
    /// Connection(FlowControlError); MAX_FRAME_SIZE outside [16384,
    /// 2^24-1] → Connection(ProtocolError). On error nothing changes.
    /// Unknown ids are ignored (§6.5.2), as is ENABLE_CONNECT_PROTOCOL,
    /// which this struct does not hold.
    ///
    /// A changed `initial_window_size` also shifts the windows of open
    /// streams (§6.9.2): the caller compares before and after.
    pub fn apply(&mut self, params: SettingsParams<'_>) -> Result<(), FrameError> {
        let mut s = *self;
        for (id, v) in params {
            match id {
                setting::HEADER_TABLE_SIZE => s.header_table_size = v,
                setting::ENABLE_PUSH => {
                    s.enable_push = match v {
                        0 => false,
                        1 => true,
                        _ => return Err(conn(ErrorCode::ProtocolError)),
                    }
                }
                setting::MAX_CONCURRENT_STREAMS => s.max_concurrent_streams = Some(v),
                setting::INITIAL_WINDOW_SIZE => {
                    if v > MAX_WINDOW {
                        return Err(conn(ErrorCode::FlowControlError));
                    }
                    s.initial_window_size = v;
                }
                setting::MAX_FRAME_SIZE => {
                    if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&v) {
                        return Err(conn(ErrorCode::ProtocolError));
                    }
                    s.max_frame_size = v;
                }
                setting::MAX_HEADER_LIST_SIZE => s.max_header_list_size = Some(v),
                _ => {}
            }
        }
        *self = s;
        Ok(())
    }
}

fn head_bytes(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_MAX_FRAME_SIZE as usize, "frame length {len}");
    let l = (len as u32).to_be_bytes();
    let s = (stream & MAX_WINDOW).to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

/// Appends a frame header. `len` must fit the 24-bit field; the stream
/// id's reserved bit is sent as 0 (§4.1).
pub fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&head_bytes(len, kind, flags, stream));
}

pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    write_head(out, params.len() * 6, SETTINGS, 0, 0);
    for &(id, v) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_head(out, 0, SETTINGS, ACK, 0);
}

pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    write_head(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

/// `increment` must be in 1..=2^31-1 (0 is an error at the receiver).
pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!(
        (1..=MAX_WINDOW).contains(&increment),
        "increment {increment}"
    );
    write_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    write_head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

/// `debug` is cut to what fits in a frame of DEFAULT_MAX_FRAME_SIZE, the
/// size every peer accepts: it is diagnostics only, and a GOAWAY the peer
/// rejects would hide the error code.
pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode, debug: &[u8]) {
    let debug = &debug[..debug.len().min(DEFAULT_MAX_FRAME_SIZE as usize - 8)];
    write_head(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
    out.extend_from_slice(debug);
}

/// The largest payload to write: the peer's SETTINGS_MAX_FRAME_SIZE, kept
/// within the length field and above 0 so splitting always progresses.
fn chunk_size(max_frame_size: u32) -> usize {
    max_frame_size.clamp(1, MAX_MAX_FRAME_SIZE) as usize
}

/// DATA frames for `data`, split at `max_frame_size` (the peer's);
/// END_STREAM on the last if asked (an empty `data` with end_stream
/// writes one empty DATA frame, without it nothing). Flow control is the
/// caller's: `data` must fit the windows.
pub fn write_data(
    out: &mut Vec<u8>,
    stream: u32,
    data: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    if data.is_empty() {
        if end_stream {
            write_head(out, 0, DATA, END_STREAM, stream);
        }
        return;
    }
    let max = chunk_size(max_frame_size);
    out.reserve(data.len() + data.len().div_ceil(max) * HEADER_LEN);
    let mut chunks = data.chunks(max).peekable();
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        let flags = if last && end_stream { END_STREAM } else { 0 };
        write_head(out, c.len(), DATA, flags, stream);
        out.extend_from_slice(c);
    }
}

/// HEADERS then CONTINUATION frames carrying `block`, split at
/// `max_frame_size` (the peer's); END_HEADERS on the last, END_STREAM (if
/// asked) on the HEADERS frame, where §8.1 puts it.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let max = chunk_size(max_frame_size);
    out.reserve(block.len() + block.len().div_ceil(max).max(1) * HEADER_LEN);
    let mut chunks = block.chunks(max);
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if block.len() <= max {
        flags |= END_HEADERS;
    }
    write_head(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut rest = chunks.peekable();
    while let Some(c) = rest.next() {
        let flags = if rest.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        write_head(out, c.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(c);
    }
}

/// Writes a HEADERS frame's 9-byte head with a length to be patched
/// later: for callers that HPACK-encode straight into `out` after it (the
/// common case: no copy of the block). Returns the offset of the head;
/// [`finish_headers`] completes the frame.
pub fn begin_headers(out: &mut Vec<u8>, stream: u32) -> usize {
    let at = out.len();
    write_head(out, 0, HEADERS, 0, stream);
    at
}

/// Completes the HEADERS frame [`begin_headers`] started at `at`, whose
/// field block is everything in `out` after its head: patches length and
/// flags, and if the block exceeds `max_frame_size` (the peer's), splits
/// it into HEADERS + CONTINUATION frames in place (the rare path: it moves
/// the bytes once).
pub fn finish_headers(out: &mut Vec<u8>, at: usize, end_stream: bool, max_frame_size: u32) {
    debug_assert_eq!(out[at + 3], HEADERS, "not a frame from begin_headers");
    let stream = read_u31(&out[at + 5..at + HEADER_LEN]);
    let block_at = at + HEADER_LEN;
    let len = out.len() - block_at;
    let max = chunk_size(max_frame_size);
    let es = if end_stream { END_STREAM } else { 0 };
    if len <= max {
        out[at..block_at].copy_from_slice(&head_bytes(len, HEADERS, es | END_HEADERS, stream));
        return;
    }
    // Chunk i (of n) moves from block_at + i*max to block_at + i*(max+9),
    // after its own header: further for later chunks, so move the last
    // first.
    let n = len.div_ceil(max);
    out.resize(out.len() + (n - 1) * HEADER_LEN, 0);
    for i in (1..n).rev() {
        let src = block_at + i * max;
        let clen = max.min(len - i * max);
        let frame_at = at + i * (HEADER_LEN + max);
        out.copy_within(src..src + clen, frame_at + HEADER_LEN);
        let flags = if i == n - 1 { END_HEADERS } else { 0 };
        out[frame_at..frame_at + HEADER_LEN].copy_from_slice(&head_bytes(
            clen,
            CONTINUATION,
            flags,
            stream,
        ));
    }
    out[at..block_at].copy_from_slice(&head_bytes(max, HEADERS, es, stream));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_split_in_place_matches_write_headers() {
        for (len, max) in [(0, 5), (5, 5), (6, 5), (10, 5), (11, 5), (40_000, 16_384)] {
            let block: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut want = b"prefix".to_vec();
            write_headers(&mut want, 7, &block, true, max);
            let mut got = b"prefix".to_vec();
            let at = begin_headers(&mut got, 7);
            got.extend_from_slice(&block);
            finish_headers(&mut got, at, true, max);
            assert_eq!(got, want, "len {len} max {max}");
        }
    }
}

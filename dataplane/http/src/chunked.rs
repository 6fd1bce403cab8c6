//! Strict decoder of the chunked transfer coding (RFC 9112 §7.1), streaming:
//! framing is consumed byte by byte, chunk data is handed out as ranges of
//! the input so the caller can copy it where it goes (or drop it).

use std::ops::Range;

/// Longest chunk extension accepted per chunk (bytes after the size).
pub(crate) const MAX_CHUNK_EXT: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits; `digits` read so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: BWS / chunk-ext up to CR.
    Ext {
        size: u64,
        len: u32,
        semi: bool,
        quoted: bool,
        escape: bool,
    },
    /// Saw the CR ending the chunk-size line.
    SizeLf {
        size: u64,
    },
    /// Inside chunk-data.
    Data {
        remaining: u64,
    },
    /// After chunk-data: expecting CR.
    DataCr,
    /// After chunk-data CR: expecting LF.
    DataLf,
    /// Start of a trailer line (or the empty line ending the message).
    TrailerStart,
    /// Inside a trailer field line; `name` false until the colon.
    TrailerLine {
        colon: bool,
        name_len: u32,
    },
    /// Saw CR ending a trailer line (`last`: the empty line).
    TrailerLf {
        last: bool,
    },
    Done,
}

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// Bad framing: 400.
    Malformed,
    /// Trailer section larger than the head limit: 431.
    TrailerTooLarge,
}

/// Progress of one [`ChunkedDecoder::advance`] call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Input bytes consumed (framing and data).
    pub consumed: usize,
    /// Chunk data within the input (empty if none).
    pub data: Range<usize>,
    /// The last chunk and the trailer section have been read.
    pub done: bool,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    trailer_bytes: usize,
    max_trailer: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl ChunkedDecoder {
    pub fn new(max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            trailer_bytes: 0,
            max_trailer,
        }
    }

    /// Consumes framing from `input` until chunk data starts (then returns
    /// up to `room` bytes of it as `data`), the body ends, or the input runs
    /// out. Consumes nothing past the end of the body.
    pub fn advance(&mut self, input: &[u8], room: usize) -> Result<Progress, ChunkError> {
        use ChunkError::Malformed;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Data { remaining } => {
                    let n = (input.len() - i).min(room);
                    let n = if (n as u64) > remaining {
                        remaining as usize
                    } else {
                        n
                    };
                    if n == 0 {
                        break;
                    }
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                    return Ok(Progress {
                        consumed: i + n,
                        data: i..i + n,
                        done: false,
                    });
                }
                State::Size { size, digits } => match hex(b) {
                    Some(v) => {
                        if size >> 60 != 0 {
                            return Err(Malformed); // would overflow u64
                        }
                        State::Size {
                            size: size << 4 | v,
                            digits: digits.saturating_add(1),
                        }
                    }
                    None if digits == 0 => return Err(Malformed),
                    None => match b {
                        b';' | b' ' | b'\t' => State::Ext {
                            size,
                            len: 1,
                            semi: b == b';',
                            quoted: false,
                            escape: false,
                        },
                        b'\r' => State::SizeLf { size },
                        _ => return Err(Malformed),
                    },
                },
                State::Ext {
                    size,
                    len,
                    semi,
                    quoted,
                    escape,
                } => {
                    if len >= MAX_CHUNK_EXT {
                        return Err(Malformed);
                    }
                    let len = len + 1;
                    if !semi {
                        // BWS before the first ';'
                        match b {
                            b' ' | b'\t' | b';' => State::Ext {
                                size,
                                len,
                                semi: b == b';',
                                quoted,
                                escape,
                            },
                            _ => return Err(Malformed),
                        }
                    } else if escape {
                        if b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80 {
                            State::Ext {
                                size,
                                len,
                                semi,
                                quoted,
                                escape: false,
                            }
                        } else {
                            return Err(Malformed);
                        }
                    } else if quoted {
                        match b {
                            b'"' => State::Ext {
                                size,
                                len,
                                semi,
                                quoted: false,
                                escape: false,
                            },
                            b'\\' => State::Ext {
                                size,
                                len,
                                semi,
                                quoted,
                                escape: true,
                            },
                            b'\t' | 0x20..=0x7e | 0x80..=0xff => State::Ext {
                                size,
                                len,
                                semi,
                                quoted,
                                escape,
                            },
                            _ => return Err(Malformed),
                        }
                    } else {
                        match b {
                            b'\r' => State::SizeLf { size },
                            b'"' => State::Ext {
                                size,
                                len,
                                semi,
                                quoted: true,
                                escape: false,
                            },
                            b';' | b'=' | b' ' | b'\t' => State::Ext {
                                size,
                                len,
                                semi,
                                quoted,
                                escape,
                            },
                            _ if is_tchar(b) => State::Ext {
                                size,
                                len,
                                semi,
                                quoted,
                                escape,
                            },
                            _ => return Err(Malformed),
                        }
                    }
                }
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data { remaining: size }
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(Malformed);
                    }
                    State::DataLf
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    State::Size { size: 0, digits: 0 }
                }
                State::TrailerStart => {
                    self.count_trailer()?;
                    match b {
                        b'\r' => State::TrailerLf { last: true },
                        _ if is_tchar(b) => State::TrailerLine {
                            colon: false,
                            name_len: 1,
                        },
                        _ => return Err(Malformed),
                    }
                }
                State::TrailerLine { colon, name_len } => {
                    self.count_trailer()?;
                    match b {
                        b'\r' if colon => State::TrailerLf { last: false },
                        b':' if !colon => State::TrailerLine {
                            colon: true,
                            name_len,
                        },
                        _ if !colon && is_tchar(b) => State::TrailerLine {
                            colon,
                            name_len: name_len + 1,
                        },
                        b'\t' | 0x20..=0x7e | 0x80..=0xff if colon => {
                            State::TrailerLine { colon, name_len }
                        }
                        _ => return Err(Malformed),
                    }
                }
                State::TrailerLf { last } => {
                    self.count_trailer()?;
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    if last {
                        self.state = State::Done;
                        return Ok(Progress {
                            consumed: i + 1,
                            data: 0..0,
                            done: true,
                        });
                    }
                    State::TrailerStart
                }
                State::Done => {
                    return Ok(Progress {
                        consumed: i,
                        data: 0..0,
                        done: true,
                    })
                }
            };
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            data: 0..0,
            done: self.state == State::Done,
        })
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer {
            Err(ChunkError::TrailerTooLarge)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes with `room` bytes of
    /// room per call; returns the data and whether the body ended, and the
    /// bytes consumed.
    fn decode(
        input: &[u8],
        step: usize,
        room: usize,
    ) -> Result<(Vec<u8>, bool, usize), ChunkError> {
        let mut d = ChunkedDecoder::new(1024);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let p = d.advance(&input[pos..end], room)?;
            out.extend_from_slice(&input[pos..end][p.data.clone()]);
            pos += p.consumed;
            if p.done {
                return Ok((out, true, pos));
            }
            assert!(p.consumed > 0 || room == 0);
        }
        Ok((out, false, pos))
    }

    #[test]
    fn decodes_at_every_step_and_room() {
        let body =
            b"5\r\nhello\r\n1;a=b;c=\"q\\\"x\"\r\n \r\n00A\r\n0123456789\r\n0\r\nT: v\r\n\r\nNEXT";
        for step in 1..body.len() {
            for room in [1, 2, 3, 7, 100] {
                let (out, done, pos) = decode(body, step, room).unwrap();
                assert_eq!(out, b"hello 0123456789");
                assert!(done);
                assert_eq!(&body[pos..], b"NEXT");
            }
        }
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"5\n",
            b"5 \r\nhello\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"5\r\nhelloX",
            b"5\r\nhello\n",
            b"5;\x01\r\n",
            b"5;a=\"\x7f\"\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nT: \x01\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nT: v\n",
        ] {
            assert_eq!(
                decode(bad, 1, 100).unwrap_err(),
                ChunkError::Malformed,
                "{bad:?}"
            );
        }
        // The largest chunk size that fits: framing fine, waits for data.
        let (out, done, _) = decode(b"ffffffffffffffff\r\nab", 1, 100).unwrap();
        assert_eq!((out.as_slice(), done), (&b"ab"[..], false));
    }

    #[test]
    fn limits_trailers_and_extensions() {
        let mut t = b"0\r\n".to_vec();
        while t.len() < 2000 {
            t.extend_from_slice(b"X-T: 0123456789\r\n");
        }
        t.extend_from_slice(b"\r\n");
        assert_eq!(decode(&t, 7, 10).unwrap_err(), ChunkError::TrailerTooLarge);
        let mut e = b"1;".to_vec();
        e.resize(MAX_CHUNK_EXT as usize + 10, b'a');
        assert_eq!(decode(&e, 100, 10).unwrap_err(), ChunkError::Malformed);
    }
}

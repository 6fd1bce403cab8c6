//! TCP options: MSS (RFC 9293), window scale and timestamps (RFC 7323),
//! SACK-permitted and SACK blocks (RFC 2018), NOP and end-of-list.
//!
//! Unknown options are skipped by [`TcpOptions::parse`] (and yielded as
//! [`TcpOption::Unknown`] by the iterator). Any option whose length byte is
//! below 2, runs past the options area, or does not match its kind's fixed
//! length is `Malformed`.
//!
//! [`TcpOptions::emit`] writes the options in the layout Linux uses
//! (`tcp_options_write`), so segments the kernel sent re-emit byte for byte:
//! MSS; SACK-permitted+timestamps as `04 02 08 0a` (or NOP NOP before a lone
//! timestamp, or NOP NOP before a lone SACK-permitted); NOP + window scale;
//! NOP NOP + SACK blocks. Every item is 4-byte aligned, so no padding.
use super::{get_u16, get_u32, set_u16, set_u32, SeqNumber};
use crate::WireError;

pub const KIND_EOL: u8 = 0;
pub const KIND_NOP: u8 = 1;
pub const KIND_MSS: u8 = 2;
pub const KIND_WINDOW_SCALE: u8 = 3;
pub const KIND_SACK_PERMITTED: u8 = 4;
pub const KIND_SACK: u8 = 5;
pub const KIND_TIMESTAMP: u8 = 8;
/// Most bytes of options a TCP header can hold.
pub const MAX_OPTIONS_LEN: usize = 40;
/// Most SACK blocks that fit in the options area.
pub const MAX_SACK_BLOCKS: usize = 4;

/// Up to four SACK blocks `(left edge, right edge)`, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SackBlocks {
    blocks: [(SeqNumber, SeqNumber); MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    pub const EMPTY: Self = Self {
        blocks: [(SeqNumber(0), SeqNumber(0)); MAX_SACK_BLOCKS],
        len: 0,
    };

    /// Blocks from a slice; `Malformed` for more than four.
    pub fn new(blocks: &[(SeqNumber, SeqNumber)]) -> Result<Self, WireError> {
        let mut s = Self::EMPTY;
        for b in blocks {
            s.push(*b)?;
        }
        Ok(s)
    }

    /// Append a block; `Malformed` when four are already there.
    pub fn push(&mut self, block: (SeqNumber, SeqNumber)) -> Result<(), WireError> {
        let slot = self
            .blocks
            .get_mut(usize::from(self.len))
            .ok_or(WireError::Malformed)?;
        *slot = block;
        self.len += 1;
        Ok(())
    }

    pub fn as_slice(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.blocks[..usize::from(self.len).min(MAX_SACK_BLOCKS)]
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Parse the data of a SACK option (a multiple of 8 bytes, 1..=4 blocks).
    fn parse(data: &[u8]) -> Result<Self, WireError> {
        if data.is_empty() || !data.len().is_multiple_of(8) || data.len() > 8 * MAX_SACK_BLOCKS {
            return Err(WireError::Malformed);
        }
        let mut s = Self::EMPTY;
        for b in data.chunks_exact(8) {
            s.push((SeqNumber(get_u32(b, 0)), SeqNumber(get_u32(b, 4))))?;
        }
        Ok(s)
    }
}

impl core::fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// One TCP option as found on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    SackRange(SackBlocks),
    Timestamp { tsval: u32, tsecr: u32 },
    Unknown { kind: u8, data: &'a [u8] },
}

impl<'a> TcpOption<'a> {
    /// Parse the option at the start of `buf`; returns it and the bytes after.
    pub fn parse(buf: &'a [u8]) -> Result<(Self, &'a [u8]), WireError> {
        let (&kind, rest) = buf.split_first().ok_or(WireError::Truncated)?;
        match kind {
            KIND_EOL => return Ok((Self::EndOfList, rest)),
            KIND_NOP => return Ok((Self::NoOperation, rest)),
            _ => {}
        }
        let &len = rest.first().ok_or(WireError::Malformed)?;
        let len = usize::from(len);
        if len < 2 || len > buf.len() {
            return Err(WireError::Malformed);
        }
        let (opt, after) = buf.split_at(len);
        let data = &opt[2..];
        let fixed = |n: usize| {
            if len == n {
                Ok(())
            } else {
                Err(WireError::Malformed)
            }
        };
        let o = match kind {
            KIND_MSS => {
                fixed(4)?;
                Self::MaxSegmentSize(get_u16(data, 0))
            }
            KIND_WINDOW_SCALE => {
                fixed(3)?;
                Self::WindowScale(data[0])
            }
            KIND_SACK_PERMITTED => {
                fixed(2)?;
                Self::SackPermitted
            }
            KIND_SACK => Self::SackRange(SackBlocks::parse(data)?),
            KIND_TIMESTAMP => {
                fixed(10)?;
                Self::Timestamp {
                    tsval: get_u32(data, 0),
                    tsecr: get_u32(data, 4),
                }
            }
            _ => Self::Unknown { kind, data },
        };
        Ok((o, after))
    }

    /// Bytes this option takes on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            Self::EndOfList | Self::NoOperation => 1,
            Self::MaxSegmentSize(_) => 4,
            Self::WindowScale(_) => 3,
            Self::SackPermitted => 2,
            Self::SackRange(b) => 2 + 8 * b.len(),
            Self::Timestamp { .. } => 10,
            Self::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Write the option at the start of `buf`; returns its length.
    /// `Malformed` for an unknown option whose data is over 253 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        match self {
            Self::EndOfList => b[0] = KIND_EOL,
            Self::NoOperation => b[0] = KIND_NOP,
            Self::MaxSegmentSize(mss) => {
                b[..2].copy_from_slice(&[KIND_MSS, 4]);
                set_u16(b, 2, *mss);
            }
            Self::WindowScale(ws) => b.copy_from_slice(&[KIND_WINDOW_SCALE, 3, *ws]),
            Self::SackPermitted => b.copy_from_slice(&[KIND_SACK_PERMITTED, 2]),
            Self::SackRange(blocks) => {
                b[..2].copy_from_slice(&[KIND_SACK, len as u8]);
                for (i, (l, r)) in blocks.as_slice().iter().enumerate() {
                    set_u32(b, 2 + 8 * i, l.0);
                    set_u32(b, 6 + 8 * i, r.0);
                }
            }
            Self::Timestamp { tsval, tsecr } => {
                b[..2].copy_from_slice(&[KIND_TIMESTAMP, 10]);
                set_u32(b, 2, *tsval);
                set_u32(b, 6, *tsecr);
            }
            Self::Unknown { kind, data } => {
                let l = u8::try_from(len).map_err(|_| WireError::Malformed)?;
                b[..2].copy_from_slice(&[*kind, l]);
                b[2..].copy_from_slice(data);
            }
        }
        Ok(len)
    }
}

/// Iterator over the options of a header. Stops after end-of-list, at the
/// end of the area, or after yielding an error.
#[derive(Clone, Debug)]
pub struct TcpOptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionsIter<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        Self { rest: options }
    }
}

impl<'a> Iterator for TcpOptionsIter<'a> {
    type Item = Result<TcpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((o, rest)) => {
                self.rest = if o == TcpOption::EndOfList { &[] } else { rest };
                Some(Ok(o))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// A timestamps option's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpTimestamp {
    pub tsval: u32,
    pub tsecr: u32,
}

/// The options the stack uses, parsed from or to be written into a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub sack_blocks: SackBlocks,
    pub timestamp: Option<TcpTimestamp>,
}

impl TcpOptions {
    /// Parse an options area. Unknown options are skipped; a repeated option
    /// keeps its last value. `Malformed` as described in the module docs.
    pub fn parse(raw: &[u8]) -> Result<Self, WireError> {
        let mut o = Self::default();
        for opt in TcpOptionsIter::new(raw) {
            match opt? {
                TcpOption::MaxSegmentSize(v) => o.mss = Some(v),
                TcpOption::WindowScale(v) => o.window_scale = Some(v),
                TcpOption::SackPermitted => o.sack_permitted = true,
                TcpOption::SackRange(b) => o.sack_blocks = b,
                TcpOption::Timestamp { tsval, tsecr } => {
                    o.timestamp = Some(TcpTimestamp { tsval, tsecr })
                }
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(o)
    }

    /// Bytes [`emit`](Self::emit) writes (always a multiple of 4).
    pub fn buffer_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.timestamp.is_some() {
            n += 12;
        } else if self.sack_permitted {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        if !self.sack_blocks.is_empty() {
            n += 4 + 8 * self.sack_blocks.len();
        }
        n
    }

    /// Write the options, in Linux's layout, at the start of `buf`; returns
    /// the length. `Malformed` when they exceed the 40-byte options area
    /// (e.g. timestamps with four SACK blocks).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        if len > MAX_OPTIONS_LEN {
            return Err(WireError::Malformed);
        }
        let b = buf.get_mut(..len).ok_or(WireError::Truncated)?;
        let mut at = 0;
        if let Some(mss) = self.mss {
            at += TcpOption::MaxSegmentSize(mss).emit(&mut b[at..])?;
        }
        if let Some(ts) = self.timestamp {
            if self.sack_permitted {
                at += TcpOption::SackPermitted.emit(&mut b[at..])?;
            } else {
                b[at..at + 2].copy_from_slice(&[KIND_NOP, KIND_NOP]);
                at += 2;
            }
            at += TcpOption::Timestamp {
                tsval: ts.tsval,
                tsecr: ts.tsecr,
            }
            .emit(&mut b[at..])?;
        } else if self.sack_permitted {
            b[at..at + 2].copy_from_slice(&[KIND_NOP, KIND_NOP]);
            at += 2;
            at += TcpOption::SackPermitted.emit(&mut b[at..])?;
        }
        if let Some(ws) = self.window_scale {
            b[at] = KIND_NOP;
            at += 1;
            at += TcpOption::WindowScale(ws).emit(&mut b[at..])?;
        }
        if !self.sack_blocks.is_empty() {
            b[at..at + 2].copy_from_slice(&[KIND_NOP, KIND_NOP]);
            at += 2;
            at += TcpOption::SackRange(self.sack_blocks).emit(&mut b[at..])?;
        }
        debug_assert_eq!(at, len);
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Options of the kernel's SYN in tests/fixtures/tcp4.pcap.
    const LINUX_SYN: [u8; 20] = [
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0xac, 0x97, 0x5c, 0xc8, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    #[test]
    fn linux_syn_round_trip() {
        let o = TcpOptions::parse(&LINUX_SYN).unwrap();
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(
            o.timestamp,
            Some(TcpTimestamp {
                tsval: 2_895_600_840,
                tsecr: 0
            })
        );
        assert_eq!(o.window_scale, Some(10));
        assert!(o.sack_blocks.is_empty());
        let mut buf = [0u8; 40];
        assert_eq!(o.emit(&mut buf).unwrap(), 20);
        assert_eq!(&buf[..20], &LINUX_SYN);
        let items: Vec<_> = TcpOptionsIter::new(&LINUX_SYN)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            items,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp {
                    tsval: 2_895_600_840,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(10),
            ]
        );
    }

    #[test]
    fn layouts() {
        let mut buf = [0u8; 40];
        let sack_only = TcpOptions {
            mss: Some(1440),
            sack_permitted: true,
            window_scale: Some(7),
            ..Default::default()
        };
        let n = sack_only.emit(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[2, 4, 5, 0xa0, 1, 1, 4, 2, 1, 3, 3, 7],
            "Linux SYN without timestamps"
        );
        let data = TcpOptions {
            timestamp: Some(TcpTimestamp { tsval: 1, tsecr: 2 }),
            sack_blocks: SackBlocks::new(&[
                (SeqNumber(10), SeqNumber(20)),
                (SeqNumber(30), SeqNumber(40)),
            ])
            .unwrap(),
            ..Default::default()
        };
        let n = data.emit(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[
                1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0,
                0, 30, 0, 0, 0, 40
            ]
        );
        assert_eq!(TcpOptions::parse(&buf[..n]).unwrap(), data);
        let mut too_big = data;
        too_big.sack_blocks = SackBlocks::new(&[(SeqNumber(1), SeqNumber(2)); 4]).unwrap();
        assert_eq!(too_big.buffer_len(), 48);
        assert_eq!(too_big.emit(&mut buf), Err(WireError::Malformed));
        assert_eq!(data.emit(&mut buf[..31]), Err(WireError::Truncated));
        assert_eq!(
            SackBlocks::new(&[(SeqNumber(1), SeqNumber(2)); 5]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn unknown_skipped_eol_stops() {
        // TFO cookie (34, len 6), NOP, EOL, then garbage that is never read.
        let raw = [34, 6, 1, 2, 3, 4, 1, 0, 0xff, 0xff];
        assert_eq!(TcpOptions::parse(&raw).unwrap(), TcpOptions::default());
        let items: Vec<_> = TcpOptionsIter::new(&raw).collect();
        assert_eq!(
            items,
            [
                Ok(TcpOption::Unknown {
                    kind: 34,
                    data: &[1, 2, 3, 4]
                }),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::EndOfList)
            ]
        );
        let mut buf = [0u8; 6];
        let o = TcpOption::Unknown {
            kind: 34,
            data: &[1, 2, 3, 4],
        };
        assert_eq!(o.emit(&mut buf), Ok(6));
        assert_eq!(&buf, &raw[..6]);
    }

    #[test]
    fn malformed_lengths() {
        let bad: [&[u8]; 12] = [
            &[2],                         // kind without length
            &[2, 1],                      // length < 2
            &[2, 0],                      // length 0
            &[34, 5, 1, 2],               // runs past the area
            &[2, 3, 5],                   // MSS length 3
            &[2, 5, 5, 0xb4, 0],          // MSS length 5
            &[3, 4, 7, 0],                // WS length 4
            &[4, 3, 0],                   // SACK-permitted length 3
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // TS length 9
            &[5, 2],                      // SACK with no block
            &[5, 9, 0, 0, 0, 0, 0, 0, 0], // SACK not a multiple of 8
            &[5, 6, 0, 0, 0, 0],          // SACK length 6
        ];
        for b in bad {
            assert_eq!(TcpOptions::parse(b), Err(WireError::Malformed), "{b:?}");
        }
        let mut it = TcpOptionsIter::new(&[1, 2, 1]);
        assert_eq!(it.next(), Some(Ok(TcpOption::NoOperation)));
        assert_eq!(it.next(), Some(Err(WireError::Malformed)));
        assert_eq!(it.next(), None);
        assert_eq!(TcpOption::parse(&[]), Err(WireError::Truncated));
    }
}

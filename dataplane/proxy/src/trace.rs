//! W3C Trace Context (`traceparent`) and `x-request-id` for the upstream
//! hop: continue the client's trace with a new span id, or start one.

use sluice_lb::SplitMix64;

/// A parsed `traceparent`: what the next hop keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn parse_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = hex_nibble(pair[0])? << 4 | hex_nibble(pair[1])?;
    }
    Some(out)
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

impl TraceParent {
    /// `version-traceid-parentid-flags` (W3C Trace Context §3.2). Version
    /// ff is invalid; a later version is read by its first four fields.
    /// All-zero ids and uppercase hex are invalid.
    pub fn parse(v: &[u8]) -> Option<Self> {
        let v = v.trim_ascii();
        if v.len() < 55 {
            return None;
        }
        let version: [u8; 1] = parse_hex(&v[..2])?;
        if version[0] == 0xff || (version[0] == 0 && v.len() != 55) {
            return None;
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        let trace_id: [u8; 16] = parse_hex(&v[3..35])?;
        let parent_id: [u8; 8] = parse_hex(&v[36..52])?;
        let flags: [u8; 1] = parse_hex(&v[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags: flags[0],
        })
    }

    /// The header value for the next hop with span `span_id` (version 00).
    pub fn child(&self, span_id: [u8; 8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(55);
        out.extend_from_slice(b"00-");
        push_hex(&mut out, &self.trace_id);
        out.push(b'-');
        push_hex(&mut out, &span_id);
        out.push(b'-');
        push_hex(&mut out, &[self.flags]);
        out
    }
}

/// 8 random bytes that are not all zero.
pub fn span_id(rng: &mut SplitMix64) -> [u8; 8] {
    loop {
        let v = rng.next_u64().to_be_bytes();
        if v != [0; 8] {
            return v;
        }
    }
}

/// A new trace: random id, sampled (the gateway records the request).
pub fn new_trace(rng: &mut SplitMix64) -> TraceParent {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&span_id(rng));
    trace_id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    TraceParent {
        trace_id,
        parent_id: span_id(rng),
        flags: 0x01,
    }
}

/// An `x-request-id` in the UUID version 4 layout.
pub fn request_id(rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    b[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = Vec::with_capacity(36);
    for (i, chunk) in [&b[..4], &b[4..6], &b[6..8], &b[8..10], &b[10..]]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        push_hex(&mut out, chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example_and_makes_a_child() {
        let t = TraceParent::parse(GOOD).unwrap();
        assert_eq!(t.flags, 1);
        let child = t.child([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            child,
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01".to_vec()
        );
        assert_eq!(TraceParent::parse(&child).unwrap().trace_id, t.trace_id);
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        for bad in [
            &b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(
                TraceParent::parse(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version with more fields is read by its first four.
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert_eq!(TraceParent::parse(later).unwrap().flags, 0);
    }

    #[test]
    fn new_ids_are_well_formed() {
        let mut rng = SplitMix64::new(7);
        let t = new_trace(&mut rng);
        let v = t.child(span_id(&mut rng));
        assert_eq!(TraceParent::parse(&v).unwrap().trace_id, t.trace_id);
        assert!(v.ends_with(b"-01"));
        let id = request_id(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(id[14], b'4');
        assert!(matches!(id[19], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(request_id(&mut rng), id);
    }
}

//! Generator frames: a template per size, patched per packet, and the
//! parsing of echoes.
//!
//! Payload layout (after the UDP header), all little-endian:
//!
//! | offset | bytes | field                                            |
//! |--------|-------|--------------------------------------------------|
//! | 0      | 4     | run id, never 0 (echoes of other runs ignored)   |
//! | 4      | 4     | sequence number (low 32 bits)                    |
//! | 8      | 8     | send time, ns since the run's epoch              |
//! | 16     | ...   | filler: byte i = (i + seq) mod 251               |
//!
//! 16 bytes of header keep the smallest IPv4 frame at 58 bytes, so the
//! classic 64-byte test (60 bytes without FCS) fits. The filler depends on
//! the sequence number so a reply carrying another packet's bytes is caught
//! by `--verify`.

use std::net::IpAddr;

use sluice_netstack::checksum;

pub const HEADER_LEN: usize = 16;
const ETH_LEN: usize = 14;
const UDP_LEN: usize = 8;

/// Addresses and ports of a flow set.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dst_port: u16,
}

impl Endpoints {
    fn ip_len(&self) -> usize {
        if self.src.is_ipv4() {
            20
        } else {
            40
        }
    }

    /// Smallest frame that holds the headers and the payload header.
    pub fn min_frame(&self) -> usize {
        ETH_LEN + self.ip_len() + UDP_LEN + HEADER_LEN
    }
}

/// A ready-made frame of one size; [`Template::write`] copies it and
/// patches the per-packet fields.
#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    l4: usize,
    payload: usize,
    /// Ones'-complement sum of the pseudo-header, the UDP header (source
    /// port 0, checksum 0) and the constant payload header; the per-packet
    /// words are added to it.
    base_sum: u16,
}

impl Template {
    pub fn new(ep: &Endpoints, frame_len: usize, run_id: u32) -> Result<Self, String> {
        if frame_len < ep.min_frame() {
            return Err(format!(
                "frame size {frame_len} is below the minimum {} for these headers",
                ep.min_frame()
            ));
        }
        let l3 = ETH_LEN;
        let l4 = l3 + ep.ip_len();
        let payload = l4 + UDP_LEN;
        let udp_len = frame_len - l4;
        let mut b = vec![0u8; frame_len];
        b[0..6].copy_from_slice(&ep.dst_mac);
        b[6..12].copy_from_slice(&ep.src_mac);
        match (ep.src, ep.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let ip = &mut b[l3..l4];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((frame_len - l3) as u16).to_be_bytes());
                ip[6] = 0x40; // DF
                ip[8] = 64;
                ip[9] = 17;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let c = checksum::checksum(ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                let ip = &mut b[l3..l4];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
                ip[6] = 17;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
            }
            _ => return Err("source and destination must be the same IP family".into()),
        }
        b[l4 + 2..l4 + 4].copy_from_slice(&ep.dst_port.to_be_bytes());
        b[l4 + 4..l4 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        if run_id == 0 {
            return Err("run id 0 is reserved".into());
        }
        b[payload..payload + 4].copy_from_slice(&run_id.to_le_bytes());
        let pseudo = checksum::pseudo_header(&ep.src, &ep.dst, 17, udp_len as u32);
        let base_sum = checksum::add(pseudo, checksum::sum(&b[l4..payload + 4]));
        Ok(Self {
            bytes: b,
            l4,
            payload,
            base_sum,
        })
    }

    /// Write packet `seq` from source port `src_port`, sent at `sent_ns`,
    /// into `buf`; returns the frame length.
    #[inline]
    pub fn write(&self, buf: &mut [u8], src_port: u16, seq: u64, sent_ns: u64) -> usize {
        let len = self.bytes.len();
        let out = &mut buf[..len];
        out.copy_from_slice(&self.bytes);
        let p = self.payload;
        out[p + 4..p + 8].copy_from_slice(&(seq as u32).to_le_bytes());
        out[p + 8..p + 16].copy_from_slice(&sent_ns.to_le_bytes());
        fill(&mut out[p + HEADER_LEN..], seq as u32);
        out[self.l4..self.l4 + 2].copy_from_slice(&src_port.to_be_bytes());
        let sum = checksum::add(
            checksum::add(self.base_sum, src_port),
            checksum::sum(&out[p + 4..]),
        );
        let mut c = checksum::finish(sum);
        if c == 0 {
            c = 0xffff; // 0 means "no checksum" in UDP
        }
        out[self.l4 + 6..self.l4 + 8].copy_from_slice(&c.to_be_bytes());
        len
    }
}

fn fill(buf: &mut [u8], seq: u32) {
    let start = (seq % 251) as usize;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((start + i) % 251) as u8;
    }
}

fn filler_matches(filler: &[u8], seq: u32) -> bool {
    let start = (seq % 251) as usize;
    filler
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((start + i) % 251) as u8)
}

fn checksums_ok(frame: &[u8], cls: &sluice_netstack::frame::Classified) -> bool {
    sluice_netstack::echo::verify_checksums(frame, cls).is_ok()
}

/// An echo that came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    pub seq: u32,
    pub sent_ns: u64,
    /// The filler matched the sequence number (always true without verify).
    pub intact: bool,
}

/// Parse an echo of one of our packets; `None` for anything else.
pub fn parse_echo(frame: &[u8], run_id: u32, verify: bool) -> Option<Echo> {
    let cls = sluice_netstack::frame::classify(frame).ok()?;
    let sluice_netstack::frame::L4::Udp { .. } = cls.l4 else {
        return None;
    };
    let p = cls.l4_offset + UDP_LEN;
    let end = cls.l4_offset + cls.l4_len;
    if end < p + HEADER_LEN || frame.len() < end {
        return None;
    }
    let payload = &frame[p..end];
    if payload[0..4] != run_id.to_le_bytes() {
        return None;
    }
    let seq = u32::from_le_bytes(payload[4..8].try_into().ok()?);
    let sent_ns = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    let intact =
        !verify || (filler_matches(&payload[HEADER_LEN..], seq) && checksums_ok(frame, &cls));
    Some(Echo {
        seq,
        sent_ns,
        intact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(v6: bool) -> Endpoints {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            ("2001:2::1".parse().unwrap(), "2001:2::100".parse().unwrap())
        } else {
            (
                "198.18.0.1".parse().unwrap(),
                "198.18.0.100".parse().unwrap(),
            )
        };
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src,
            dst,
            dst_port: 7,
        }
    }

    #[test]
    fn frames_verify_and_parse_back() {
        for v6 in [false, true] {
            let e = ep(v6);
            assert_eq!(e.min_frame(), if v6 { 78 } else { 58 });
            for size in [e.min_frame(), 100, 512, 1514] {
                let t = Template::new(&e, size, 7).unwrap();
                let mut buf = vec![0u8; 2048];
                for seq in [0u64, 1, 250, 251, 123_456_789] {
                    let n = t.write(&mut buf, 40000 + (seq % 13) as u16, seq, seq * 3);
                    let frame = &buf[..n];
                    let cls = sluice_netstack::frame::classify(frame).unwrap();
                    sluice_netstack::echo::verify_checksums(frame, &cls)
                        .unwrap_or_else(|e| panic!("v6={v6} size={size} seq={seq}: {e}"));
                    let echo = parse_echo(frame, 7, true).unwrap();
                    assert_eq!(
                        echo,
                        Echo {
                            seq: seq as u32,
                            sent_ns: seq * 3,
                            intact: true
                        }
                    );
                    assert!(
                        parse_echo(frame, 8, true).is_none(),
                        "other run id accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn corruption_is_caught() {
        let e = ep(false);
        let t = Template::new(&e, 200, 1).unwrap();
        let mut buf = vec![0u8; 256];
        let n = t.write(&mut buf, 40000, 5, 0);
        buf[n - 1] ^= 0xff;
        assert!(!parse_echo(&buf[..n], 1, true).unwrap().intact);
    }

    #[test]
    fn too_small_is_an_error() {
        let e = ep(true);
        assert!(Template::new(&e, e.min_frame() - 1, 0).is_err());
    }
}

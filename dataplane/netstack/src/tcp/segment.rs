//! Segments as the engine sees them: a checked view of an incoming TCP
//! segment, and the writer of an outgoing IP packet (header + TCP).

use core::net::{IpAddr, SocketAddr};

use super::types::Transmit;
use crate::wire::ipv4::Ipv4Options;
use crate::wire::{
    IpProtocol, Ipv4Repr, Ipv6Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
};

/// Hop limit / TTL of everything we send.
pub const HOP_LIMIT: u8 = 64;

/// An incoming segment whose header, data offset and options were checked.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub opts: TcpOptions,
    pub payload: &'a [u8],
}

impl<'a> Segment<'a> {
    /// None for a segment too short for its header, a data offset below 5,
    /// malformed options, or a port 0.
    pub fn parse(buf: &'a [u8]) -> Option<Self> {
        let p = TcpPacket::new_checked(buf).ok()?;
        let opts = TcpOptions::parse(p.options()).ok()?;
        if p.src_port() == 0 || p.dst_port() == 0 {
            return None;
        }
        let hlen = p.header_len();
        Some(Segment {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            opts,
            payload: buf.get(hlen..)?,
        })
    }

    /// Sequence space occupied: payload plus SYN and FIN.
    pub fn len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.flags.syn()) + u32::from(self.flags.fin())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn tsval(&self) -> Option<u32> {
        self.opts.timestamp.map(|t| t.tsval)
    }
}

/// The header of an outgoing segment.
#[derive(Clone, Copy, Debug)]
pub struct OutSegment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub opts: TcpOptions,
    pub payload_len: usize,
}

/// Room an IP header of this family takes.
pub fn ip_header_len(ipv6: bool) -> usize {
    if ipv6 {
        crate::wire::ipv6::HEADER_LEN
    } else {
        crate::wire::ipv4::HEADER_LEN
    }
}

/// Write the IP packet for `seg` into `buf`; `payload` fills the payload
/// in place. None if it does not fit or the addresses mix families.
pub fn emit(
    buf: &mut [u8],
    seg: &OutSegment,
    ident: u16,
    payload: impl FnOnce(&mut [u8]),
) -> Option<Transmit> {
    let repr = TcpRepr {
        src_port: seg.src.port(),
        dst_port: seg.dst.port(),
        seq_number: seg.seq,
        ack_number: seg.ack,
        flags: seg.flags,
        window_len: seg.window,
        urgent_pointer: 0,
        options: seg.opts,
        payload_len: seg.payload_len,
    };
    let tcp_len = repr.buffer_len();
    let (src, dst) = (seg.src.ip(), seg.dst.ip());
    let hlen = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::TCP,
                payload_len: tcp_len,
                hop_limit: HOP_LIMIT,
                dscp: 0,
                ecn: 0,
                ident,
                dont_frag: true,
                options: Ipv4Options::NONE,
            };
            if buf.len() < ip.buffer_len() + tcp_len {
                return None;
            }
            ip.emit(buf).ok()?
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::TCP,
                payload_len: tcp_len,
                hop_limit: HOP_LIMIT,
                traffic_class: 0,
                flow_label: 0,
            };
            if buf.len() < ip.buffer_len() + tcp_len {
                return None;
            }
            ip.emit(buf).ok()?
        }
        _ => return None,
    };
    let n = repr.emit(buf.get_mut(hlen..)?, &src, &dst, payload).ok()?;
    Some(Transmit {
        len: hlen + n,
        src,
        dst,
    })
}

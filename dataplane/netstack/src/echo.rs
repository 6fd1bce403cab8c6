//! In-place replies of the built-in echo services, and checksum
//! verification of a classified frame.
//!
//! These run per packet in the poll loop: no allocation, and no panic for
//! any frame, even one that does not match the `Classified` passed with it
//! (every access is bounds-checked; a mismatch makes the rewriters do
//! nothing and `verify_checksums` return `Truncated`).
//!
//! The rewriters do not judge whether a reply is appropriate (for example a
//! request sent to a multicast or broadcast address): that is policy for the
//! caller.
use crate::checksum;
use crate::frame::{l4_protocol, Classified, L4};
use crate::wire::{get_u16, icmpv4, icmpv6, set_u16, IpProtocol};
use crate::WireError;

/// TTL / hop limit of every reply.
pub const REPLY_HOP_LIMIT: u8 = 64;

/// Verify the IPv4 header checksum and the transport checksum of a classified frame.
///
/// UDP with a zero checksum is accepted over IPv4 (no checksum) and rejected
/// over IPv6. Transports other than UDP, TCP, ICMP and ICMPv6 have only the
/// IPv4 header checksum checked. Errors: `BadChecksum`, or `Truncated` when
/// `c` does not describe `frame`.
#[inline]
pub fn verify_checksums(frame: &[u8], c: &Classified) -> Result<(), WireError> {
    let l3 = frame.get(c.l3_offset..).ok_or(WireError::Truncated)?;
    // Source and destination are adjacent in both headers: the
    // pseudo-header's address part is one sum over that block.
    let addrs = if c.ipv6 {
        l3.get(8..40).ok_or(WireError::Truncated)?
    } else {
        let ihl = usize::from(l3.first().ok_or(WireError::Truncated)? & 0x0f) * 4;
        let hdr = l3.get(..ihl).ok_or(WireError::Truncated)?;
        if ihl < 20 || !checksum::is_valid(checksum::sum(hdr)) {
            return Err(WireError::BadChecksum);
        }
        &hdr[12..20]
    };
    let l4 = c.l4_bytes(frame).ok_or(WireError::Truncated)?;
    // Not a closure: an outlined closure made LLVM spill `c` to the stack
    // with narrow stores and reload it wide (a store-forwarding stall).
    #[inline(always)]
    fn valid(addrs: &[u8], proto: IpProtocol, data: &[u8]) -> bool {
        // The length may be added whole: folding reduces modulo 0xffff,
        // the same as adding its two 16-bit halves (RFC 8200 §8.1).
        let ph = u64::from(checksum::sum(addrs)) + u64::from(proto.0) + data.len() as u64;
        checksum::is_valid(checksum::add(checksum::fold(ph), checksum::sum(data)))
    }
    let ok = match c.l4 {
        L4::Udp { .. } => {
            let ulen = usize::from(get_u16(l4.get(..8).ok_or(WireError::Truncated)?, 4));
            if ulen < 8 {
                return Err(WireError::Malformed); // only with a foreign `c`
            }
            let dgram = l4.get(..ulen).ok_or(WireError::Truncated)?;
            if get_u16(dgram, 6) == 0 {
                !c.ipv6
            } else {
                valid(addrs, IpProtocol::UDP, dgram)
            }
        }
        L4::Tcp { .. } => valid(addrs, IpProtocol::TCP, l4),
        L4::EchoRequest if c.ipv6 => valid(addrs, IpProtocol::ICMPV6, l4),
        L4::EchoRequest => checksum::is_valid(checksum::sum(l4)),
        L4::Other(_) => match l4_protocol(frame, c) {
            Some(IpProtocol::ICMPV6) if c.ipv6 => valid(addrs, IpProtocol::ICMPV6, l4),
            Some(IpProtocol::ICMP) if !c.ipv6 => checksum::is_valid(checksum::sum(l4)),
            Some(_) => true,
            None => return Err(WireError::Truncated),
        },
    };
    if ok {
        Ok(())
    } else {
        Err(WireError::BadChecksum)
    }
}

/// Turn a UDP datagram into its echo in place: swap MACs, addresses and
/// ports, reset TTL / hop limit, keep VLAN tags; checksums stay valid.
///
/// The swaps are checksum-neutral and the TTL is not in the UDP
/// pseudo-header, so only the IPv4 header checksum changes (incrementally).
/// Does nothing unless `c.l4` is UDP.
#[inline]
pub fn udp_echo_in_place(frame: &mut [u8], c: &Classified) {
    if !matches!(c.l4, L4::Udp { .. }) || !fits(frame, c, 4) {
        return;
    }
    let (s, d) = frame[c.l4_offset..c.l4_offset + 4].split_at_mut(2);
    s.swap_with_slice(d);
    swap_l2_l3(frame, c);
}

/// Turn an ICMP / ICMPv6 echo request into its reply in place.
///
/// Type 8 → 0 (ICMPv4) or 128 → 129 (ICMPv6) with an incremental checksum
/// update (the ICMPv6 pseudo-header is unchanged by the address swap), MACs
/// and addresses swapped, TTL / hop limit reset. Does nothing unless
/// `c.l4` is `EchoRequest`.
#[inline]
pub fn icmp_echo_in_place(frame: &mut [u8], c: &Classified) {
    if c.l4 != L4::EchoRequest || !fits(frame, c, 4) {
        return;
    }
    let h = &mut frame[c.l4_offset..c.l4_offset + 4];
    let reply = if c.ipv6 {
        icmpv6::TYPE_ECHO_REPLY
    } else {
        icmpv4::TYPE_ECHO_REPLY
    };
    let old = get_u16(h, 0);
    let new = u16::from(reply) << 8 | (old & 0xff);
    h[0] = reply;
    let mut check = checksum::update_u16(get_u16(h, 2), old, new);
    if check == 0 && !c.ipv6 {
        // RFC 1624 eqn. 3 yields 0x0000 where a recompute yields 0xffff when
        // the whole message is zero (echo reply, id 0, seq 0, no data); only
        // 0xffff verifies then. ICMPv6 cannot hit this: its pseudo-header
        // is never zero.
        check = zero_message_checksum(frame, c);
    }
    if let Some(h) = frame.get_mut(c.l4_offset..c.l4_offset.saturating_add(4)) {
        set_u16(h, 2, check);
    }
    swap_l2_l3(frame, c);
}

/// True when every byte a rewrite touches is inside `frame`: the MACs, the
/// IP header's fixed part and `l4_bytes` of the transport header. Checked
/// up front so a rewrite is all or nothing.
#[inline]
fn fits(frame: &[u8], c: &Classified, l4_bytes: usize) -> bool {
    let ip = if c.ipv6 { 40 } else { 20 };
    let l3_end = c.l3_offset.checked_add(ip);
    let l4_end = c.l4_offset.checked_add(l4_bytes);
    matches!((l3_end, l4_end), (Some(a), Some(b)) if a <= frame.len() && b <= frame.len() && frame.len() >= 12)
}

/// 0xffff if the ICMP message of `c` is all zeros outside its checksum
/// field, else 0.
#[cold]
fn zero_message_checksum(frame: &[u8], c: &Classified) -> u16 {
    match c.l4_bytes(frame) {
        Some(m) if m.len() >= 4 && is_zero(&m[..2]) && is_zero(&m[4..]) => 0xffff,
        _ => 0,
    }
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Swap MACs and IP addresses, set TTL / hop limit to 64.
#[inline]
fn swap_l2_l3(frame: &mut [u8], c: &Classified) {
    if let Some(macs) = frame.get_mut(..12) {
        let (d, s) = macs.split_at_mut(6);
        d.swap_with_slice(s);
    }
    if c.ipv6 {
        if let Some(h) = frame.get_mut(c.l3_offset..c.l3_offset.saturating_add(40)) {
            h[7] = REPLY_HOP_LIMIT;
            let (s, d) = h[8..40].split_at_mut(16);
            s.swap_with_slice(d);
        }
    } else if let Some(h) = frame.get_mut(c.l3_offset..c.l3_offset.saturating_add(20)) {
        let old = get_u16(h, 8);
        h[8] = REPLY_HOP_LIMIT;
        let check = checksum::update_u16(get_u16(h, 10), old, get_u16(h, 8));
        set_u16(h, 10, check);
        let (s, d) = h[12..20].split_at_mut(4);
        s.swap_with_slice(d);
    }
}

//! The built-in services and the per-frame work of a poll loop.
//!
//! Each loop owns a copy of the [`Services`] table: lookups touch no shared
//! memory. Frames are handled in place: classify, look up, verify, rewrite,
//! transmit the same frame.

use std::net::{IpAddr, SocketAddr};

use sluice_netstack::echo;
use sluice_netstack::frame::{classify, Classified, L4};
use sluice_netstack::WireError;

use crate::stats::Counters;

/// What a listener does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    UdpEcho,
}

/// What the loop does with a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it back out (rewritten in place).
    Transmit,
    /// Recycle it.
    Drop,
    /// A TCP segment: the loop's TCP stack takes it (and the frame is
    /// recycled once the stack has copied what it keeps).
    Tcp(Classified),
}

/// A UDP or TCP listener: address (IPv4-mapped when IPv4) and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listener {
    addr: [u8; 16],
    udp: bool,
    port: u16,
    service: Service,
}

/// Listeners and VIPs of one poll loop. Few entries: a linear scan over a
/// contiguous array beats hashing here.
#[derive(Clone, Debug, Default)]
pub struct Services {
    listeners: Vec<Listener>,
    /// VIPs that answer ICMP echo.
    icmp_echo: Vec<[u8; 16]>,
}

/// An address in the form the BPF maps and [`Classified`] use.
pub fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Services {
    pub fn add_udp(&mut self, at: SocketAddr, service: Service) {
        self.listeners.push(Listener {
            addr: mapped(at.ip()),
            udp: true,
            port: at.port(),
            service,
        });
    }

    pub fn add_icmp_echo(&mut self, addr: IpAddr) {
        let addr = mapped(addr);
        if !self.icmp_echo.contains(&addr) {
            self.icmp_echo.push(addr);
        }
    }

    #[inline]
    fn udp(&self, addr: &[u8; 16], port: u16) -> Option<Service> {
        self.listeners
            .iter()
            .find(|l| l.udp && l.port == port && &l.addr == addr)
            .map(|l| l.service)
    }

    /// Handle one received frame in place: transmit it (rewritten), drop
    /// it, or pass a TCP segment on to the loop's TCP stack.
    #[inline]
    pub fn handle(&self, frame: &mut [u8], c: &mut Counters) -> Verdict {
        let cls = match classify(frame) {
            Ok(cls) => cls,
            Err(e) => {
                count_drop(c, e);
                return Verdict::Drop;
            }
        };
        if let L4::Tcp { .. } = cls.l4 {
            return Verdict::Tcp(cls);
        }
        let transmit = match cls.l4 {
            L4::Udp { dst_port, .. } => match self.udp(&cls.dst_addr, dst_port) {
                Some(Service::UdpEcho) => self.reply(frame, &cls, c, echo::udp_echo_in_place),
                None => {
                    c.drop_no_service += 1;
                    false
                }
            },
            L4::EchoRequest if self.icmp_echo.contains(&cls.dst_addr) => {
                self.reply(frame, &cls, c, echo::icmp_echo_in_place)
            }
            _ => {
                c.drop_no_service += 1;
                false
            }
        };
        if transmit {
            Verdict::Transmit
        } else {
            Verdict::Drop
        }
    }

    #[inline]
    fn reply(
        &self,
        frame: &mut [u8],
        cls: &Classified,
        c: &mut Counters,
        rewrite: fn(&mut [u8], &Classified),
    ) -> bool {
        if let Err(e) = echo::verify_checksums(frame, cls) {
            count_drop(c, e);
            return false;
        }
        rewrite(frame, cls);
        c.echoed += 1;
        true
    }
}

fn count_drop(c: &mut Counters, e: WireError) {
    match e {
        WireError::Truncated | WireError::Malformed => c.drop_malformed += 1,
        WireError::BadChecksum => c.drop_bad_checksum += 1,
        WireError::Unsupported => c.drop_unsupported += 1,
    }
}

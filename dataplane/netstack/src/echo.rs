//! In-place replies of the built-in echo services (STUB: signatures only).
use crate::frame::Classified;
use crate::WireError;

/// Verify the IPv4 header checksum and the transport checksum of a classified frame.
pub fn verify_checksums(_frame: &[u8], _c: &Classified) -> Result<(), WireError> {
    todo!("netstack helper")
}

/// Turn a UDP datagram into its echo in place: swap MACs, addresses and
/// ports, reset TTL / hop limit, keep VLAN tags; checksums stay valid.
pub fn udp_echo_in_place(_frame: &mut [u8], _c: &Classified) {
    todo!("netstack helper")
}

/// Turn an ICMP / ICMPv6 echo request into its reply in place.
pub fn icmp_echo_in_place(_frame: &mut [u8], _c: &Classified) {
    todo!("netstack helper")
}

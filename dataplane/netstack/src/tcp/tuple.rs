//! The 4-tuple that names a connection.

use core::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// Local and remote address and port of a connection, as seen by this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FourTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl FourTuple {
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        Self { local, remote }
    }

    /// The same connection seen from the other end.
    pub fn reversed(&self) -> Self {
        Self {
            local: self.remote,
            remote: self.local,
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }

    /// The 36 bytes keyed hashes (SYN cookies, ownership) run over:
    /// local address (16, IPv4-mapped), remote address (16), local port,
    /// remote port (big-endian).
    pub fn key_bytes(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[0..16].copy_from_slice(&mapped(self.local.ip()));
        b[16..32].copy_from_slice(&mapped(self.remote.ip()));
        b[32..34].copy_from_slice(&self.local.port().to_be_bytes());
        b[34..36].copy_from_slice(&self.remote.port().to_be_bytes());
        b
    }
}

impl Hash for FourTuple {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.key_bytes());
    }
}

fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_and_key_bytes() {
        let t = FourTuple::new(
            "198.18.0.100:80".parse().unwrap(),
            "198.18.0.1:40000".parse().unwrap(),
        );
        assert_eq!(t.reversed().reversed(), t);
        let k = t.key_bytes();
        assert_eq!(&k[10..12], &[0xff, 0xff]);
        assert_eq!(&k[12..16], &[198, 18, 0, 100]);
        assert_eq!(&k[32..36], &[0, 80, 0x9c, 0x40]);
        assert_ne!(t.key_bytes(), t.reversed().key_bytes());
    }
}

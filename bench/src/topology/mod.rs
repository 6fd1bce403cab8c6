//! The test and benchmark topology: network namespaces, veth pairs, a bridge.
//!
//! ```text
//! One-arm layout ({p} = prefix, default "sl"):
//!
//!  ns {p}-client                 ns {p}-br                      ns {p}-backend
//!  client0 ─────────────veth──── p-client ┐                 ┌── backend0
//!  198.18.0.1/24                          ├─ br0 (bridge) ──┤   198.18.0.3/24
//!  2001:2::1/64                  p-gw ────┘   └─ p-backend ─┘   2001:2::3/64
//!                                 │  GRO on, XDP_PASS placeholder
//!  ns {p}-gw                      │
//!  gw0 ─────────────────veth──────┘
//!  198.18.0.2/24, 2001:2::2/64    kernel address of the gateway namespace
//!  VIPs 198.18.0.100, 2001:2::100 on no interface: the gateway's XDP answers
//!                                 ARP/ND for them; XDP native + AF_XDP on gw0
//!
//! Direct pair (packet rate):
//!
//!  ns {p}-rgen                                   ns {p}-rdut
//!  rgen0 ───────────────────veth──────────────── rdut0
//!  198.19.0.1/24, 2001:2:1::1/64                 198.19.0.2/24, 2001:2:1::2/64
//!  GRO on, XDP_PASS placeholder                  VIPs 198.19.0.100, 2001:2:1::100
//! ```
//!
//! Every veth has `--queues` RX and TX queues. Kernel-side endpoints have TX
//! checksum offload off (AF_XDP would otherwise see partial checksums), IPv6
//! DAD off, loopback up. The peers of the two XDP interfaces (`p-gw`, `rgen0`)
//! get GRO on and a tiny XDP_PASS program: on veth, an XDP_TX from `gw0`/`rdut0`
//! is counted as sent but never arrives unless the peer runs an XDP program
//! of its own (see [`peer_xdp`]). With more than one queue, the same peers
//! get a tc program that spreads flows over the queues by hash, as a NIC's
//! RSS would (see [`rss`]).

mod bpf_object;
mod down;
pub mod peer_xdp;
pub mod rss;
mod status;
mod up;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use down::DownReport;
pub use status::{LinkStatus, NamespaceStatus, Status, XdpStatus};

/// Prefix of the default topology (`sl-client`, `sl-gw`, ...).
pub const DEFAULT_PREFIX: &str = "sl";
/// RX and TX queues per veth unless `--queues` says otherwise.
pub const DEFAULT_QUEUES: u32 = 2;
/// Most queues a veth accepts here (the kernel's limit is 4096).
pub const MAX_QUEUES: u32 = 64;
/// Longest accepted prefix.
pub const MAX_PREFIX_LEN: usize = 24;

/// Interface names. Every interface lives in its own namespace, so the names
/// are the same in every topology whatever its prefix.
pub mod ifname {
    /// Client's veth, in `{p}-client`.
    pub const CLIENT: &str = "client0";
    /// Backend's veth, in `{p}-backend`.
    pub const BACKEND: &str = "backend0";
    /// Gateway's veth, in `{p}-gw`: the gateway attaches XDP and AF_XDP here.
    pub const GW: &str = "gw0";
    /// The bridge, in `{p}-br`.
    pub const BRIDGE: &str = "br0";
    /// Bridge port facing the client, in `{p}-br`.
    pub const BR_CLIENT: &str = "p-client";
    /// Bridge port facing the backend, in `{p}-br`.
    pub const BR_BACKEND: &str = "p-backend";
    /// Bridge port facing the gateway (peer of `gw0`), in `{p}-br`.
    pub const BR_GW: &str = "p-gw";
    /// Generator end of the direct pair, in `{p}-rgen`.
    pub const RGEN: &str = "rgen0";
    /// Device-under-test end of the direct pair, in `{p}-rdut`.
    pub const RDUT: &str = "rdut0";
}

/// Addresses. All from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub const PREFIX_V4: u8 = 24;
    pub const PREFIX_V6: u8 = 64;

    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
    /// The gateway namespace's kernel address (on `gw0`).
    pub const GW_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    pub const GW_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    pub const BACKEND_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
    pub const BACKEND_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
    /// Gateway VIPs: on no kernel interface; the gateway's XDP answers ARP/ND.
    pub const GW_VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    pub const GW_VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);

    pub const RGEN_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
    pub const RGEN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 1, 0, 0, 0, 0, 1);
    pub const RDUT_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
    pub const RDUT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 1, 0, 0, 0, 0, 2);
    /// Direct-pair VIPs, answered by the XDP program on `rdut0`.
    pub const RDUT_VIP_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 100);
    pub const RDUT_VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 1, 0, 0, 0, 0, 0x100);
}

/// The six namespaces of a topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Backend,
    Gateway,
    Bridge,
    Rgen,
    Rdut,
}

impl Role {
    /// In creation order (the bridge first: the veths are made from there).
    pub const ALL: [Role; 6] = [
        Role::Bridge,
        Role::Client,
        Role::Backend,
        Role::Gateway,
        Role::Rgen,
        Role::Rdut,
    ];

    /// What follows `{prefix}-` in the namespace name.
    pub fn suffix(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Backend => "backend",
            Role::Gateway => "gw",
            Role::Bridge => "br",
            Role::Rgen => "rgen",
            Role::Rdut => "rdut",
        }
    }
}

/// One end of the topology that carries addresses: a namespace, its veth,
/// that veth's peer, and the kernel addresses.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub role: Role,
    pub ifname: &'static str,
    pub peer_role: Role,
    pub peer_ifname: &'static str,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Endpoint {
    pub fn addrs(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.v4), IpAddr::V6(self.v6)]
    }
}

/// The addressed ends, in the order `up` configures them.
pub const ENDPOINTS: [Endpoint; 5] = [
    Endpoint {
        role: Role::Client,
        ifname: ifname::CLIENT,
        peer_role: Role::Bridge,
        peer_ifname: ifname::BR_CLIENT,
        v4: addr::CLIENT_V4,
        v6: addr::CLIENT_V6,
    },
    Endpoint {
        role: Role::Backend,
        ifname: ifname::BACKEND,
        peer_role: Role::Bridge,
        peer_ifname: ifname::BR_BACKEND,
        v4: addr::BACKEND_V4,
        v6: addr::BACKEND_V6,
    },
    Endpoint {
        role: Role::Gateway,
        ifname: ifname::GW,
        peer_role: Role::Bridge,
        peer_ifname: ifname::BR_GW,
        v4: addr::GW_V4,
        v6: addr::GW_V6,
    },
    Endpoint {
        role: Role::Rgen,
        ifname: ifname::RGEN,
        peer_role: Role::Rdut,
        peer_ifname: ifname::RDUT,
        v4: addr::RGEN_V4,
        v6: addr::RGEN_V6,
    },
    Endpoint {
        role: Role::Rdut,
        ifname: ifname::RDUT,
        peer_role: Role::Rgen,
        peer_ifname: ifname::RGEN,
        v4: addr::RDUT_V4,
        v6: addr::RDUT_V6,
    },
];

/// An interface in the namespace of a role.
pub type LinkEnd = (Role, &'static str);

/// The four veth pairs; `up` creates each pair from its first end.
pub const VETH_PAIRS: [(LinkEnd, LinkEnd); 4] = [
    (
        (Role::Bridge, ifname::BR_CLIENT),
        (Role::Client, ifname::CLIENT),
    ),
    (
        (Role::Bridge, ifname::BR_BACKEND),
        (Role::Backend, ifname::BACKEND),
    ),
    ((Role::Bridge, ifname::BR_GW), (Role::Gateway, ifname::GW)),
    ((Role::Rgen, ifname::RGEN), (Role::Rdut, ifname::RDUT)),
];

/// Bridge ports, all in `{p}-br`.
pub const BRIDGE_PORTS: [&str; 3] = [ifname::BR_CLIENT, ifname::BR_BACKEND, ifname::BR_GW];

/// Peers of the interfaces where XDP runs (`gw0`, `rdut0`): GRO on and the
/// XDP_PASS placeholder (see [`peer_xdp`]).
pub const XDP_PEERS: [LinkEnd; 2] = [(Role::Bridge, ifname::BR_GW), (Role::Rgen, ifname::RGEN)];

/// Errors in topology arguments.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "invalid prefix `{0}`: use 1-{MAX_PREFIX_LEN} characters from a-z, A-Z, 0-9, '_' and '-', starting with a letter"
    )]
    BadPrefix(String),
    #[error("invalid queue count {0}: use 1..={MAX_QUEUES}")]
    BadQueues(u32),
}

/// A topology: its namespace prefix and the queue count of its veths.
#[derive(Clone, Debug)]
pub struct Topology {
    prefix: String,
    queues: u32,
    peer_xdp: bool,
}

impl Topology {
    /// A topology named by `prefix` with `queues` RX/TX queues per veth and
    /// the XDP_PASS placeholder on the XDP peers.
    pub fn new(prefix: &str, queues: u32) -> Result<Self, TopologyError> {
        validate_prefix(prefix)?;
        if queues == 0 || queues > MAX_QUEUES {
            return Err(TopologyError::BadQueues(queues));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            queues,
            peer_xdp: true,
        })
    }

    /// The default topology (`sl`, 2 queues).
    pub fn default_topology() -> Self {
        Self::new(DEFAULT_PREFIX, DEFAULT_QUEUES).expect("default prefix is valid")
    }

    /// Whether `up` attaches the XDP_PASS placeholder to the XDP peers
    /// (default true; without it, XDP_TX from `gw0`/`rdut0` does not reach
    /// the other side on kernel 6.18).
    pub fn with_peer_xdp(mut self, on: bool) -> Self {
        self.peer_xdp = on;
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn queues(&self) -> u32 {
        self.queues
    }

    pub fn peer_xdp(&self) -> bool {
        self.peer_xdp
    }

    /// `{prefix}-{role}`.
    pub fn ns(&self, role: Role) -> String {
        format!("{}-{}", self.prefix, role.suffix())
    }

    pub fn client_ns(&self) -> String {
        self.ns(Role::Client)
    }
    pub fn backend_ns(&self) -> String {
        self.ns(Role::Backend)
    }
    pub fn gw_ns(&self) -> String {
        self.ns(Role::Gateway)
    }
    pub fn bridge_ns(&self) -> String {
        self.ns(Role::Bridge)
    }
    pub fn rgen_ns(&self) -> String {
        self.ns(Role::Rgen)
    }
    pub fn rdut_ns(&self) -> String {
        self.ns(Role::Rdut)
    }

    /// All namespace names, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        Role::ALL.iter().map(|r| self.ns(*r)).collect()
    }

    /// Namespaces named `{prefix}-*` that currently exist (including any this
    /// code did not create).
    pub fn existing_namespaces(&self) -> std::io::Result<Vec<String>> {
        let start = format!("{}-", self.prefix);
        Ok(crate::netns::list()?
            .into_iter()
            .filter(|n| n.starts_with(&start))
            .collect())
    }
}

fn validate_prefix(prefix: &str) -> Result<(), TopologyError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(TopologyError::BadPrefix(prefix.to_string()))
    }
}

/// Fails with a clear message unless running as root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if nix::unistd::Uid::effective().is_root() {
        Ok(())
    } else {
        anyhow::bail!(
            "{what} needs root (network namespaces, veths, XDP): run it with sudo or as root"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("slt42", 4).unwrap();
        assert_eq!(t.client_ns(), "slt42-client");
        assert_eq!(t.gw_ns(), "slt42-gw");
        assert_eq!(t.bridge_ns(), "slt42-br");
        assert_eq!(t.rdut_ns(), "slt42-rdut");
        assert_eq!(t.namespaces().len(), 6);
        assert_eq!(t.queues(), 4);
    }

    #[test]
    fn bad_prefixes_and_queue_counts_are_rejected() {
        for p in [
            "",
            "-x",
            "1abc",
            "a/b",
            "a b",
            &"x".repeat(MAX_PREFIX_LEN + 1),
        ] {
            assert!(Topology::new(p, 2).is_err(), "{p:?} accepted");
        }
        assert!(Topology::new("sl", 0).is_err());
        assert!(Topology::new("sl", MAX_QUEUES + 1).is_err());
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        for e in ENDPOINTS {
            assert!(e.ifname.len() < 16 && e.peer_ifname.len() < 16);
        }
        assert!(ifname::BRIDGE.len() < 16);
    }

    #[test]
    fn addresses_are_in_the_benchmarking_ranges() {
        for e in ENDPOINTS {
            let [a, b, ..] = e.v4.octets();
            assert!(a == 198 && (b == 18 || b == 19), "{}", e.v4);
            let s = e.v6.segments();
            assert!(s[0] == 0x2001 && s[1] == 2 && s[2] <= 1, "{}", e.v6);
        }
        assert_ne!(addr::GW_VIP_V4, addr::GW_V4);
    }
}

//! sluice's XDP programs and their typed userspace side (STUB: the API the
//! dataplane and bench code against; the bpf helper fills it in).
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

pub use sluice_xsk::link::XdpAttachMode as XdpMode;

/// Counter indices of the gateway program, mirrored from `enum sluice_xdp_counter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum XdpCounter {
    PassNonIp = 0,
    PassNeighOther,
    PassNotVip,
    PassVipUnbound,
    RedirectListener,
    RedirectLocalPort,
    RedirectIcmpEcho,
    TxArpReply,
    TxNeighAdvert,
    DropMalformedEth,
    DropMalformedArp,
    DropMalformedIp,
    DropMalformedL4,
    DropFragment,
    DropNoSocket,
    AbortedInternal,
}

/// Packets and bytes of every counter, summed over CPUs.
#[derive(Clone, Debug, Default)]
pub struct XdpCounters {
    pub packets: Vec<u64>,
    pub bytes: Vec<u64>,
}

/// VIP flags (`SLUICE_VIP_*`).
pub const VIP_ANSWER_NEIGH: u32 = 1;
pub const VIP_ICMP_ECHO: u32 = 2;
pub const VIP_LOCAL_PORTS: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Proto {
    Tcp,
    Udp,
}

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("{0}")]
    Other(String),
}

/// A network interface as the kernel knows it.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    pub rx_queues: u32,
}

impl Interface {
    pub fn lookup(_name: &str) -> Result<Self, BpfError> {
        todo!()
    }
}

pub struct GatewayOptions {
    pub iface: Interface,
    pub mode: XdpMode,
    /// Defaults to /sys/fs/bpf/sluice/IFACE.
    pub pin_dir: Option<PathBuf>,
}

/// The gateway XDP program loaded, attached to one interface, maps pinned.
/// Dropping it detaches the program and removes the pins.
pub struct Gateway {}

impl Gateway {
    pub fn attach(_opts: &GatewayOptions) -> Result<Self, BpfError> {
        todo!()
    }
    pub fn pin_dir(&self) -> &Path {
        todo!()
    }
    pub fn set_config(&self, _mac: [u8; 6], _local_ports: Option<(u16, u16)>) -> Result<(), BpfError> {
        todo!()
    }
    pub fn add_vip(&self, _addr: IpAddr, _flags: u32) -> Result<(), BpfError> {
        todo!()
    }
    pub fn add_listener(&self, _addr: IpAddr, _proto: L4Proto, _port: u16, _service_id: u32) -> Result<(), BpfError> {
        todo!()
    }
    pub fn register_socket(&self, _queue: u32, _xsk: BorrowedFd<'_>) -> Result<(), BpfError> {
        todo!()
    }
    pub fn counters(&self) -> Result<XdpCounters, BpfError> {
        todo!()
    }
    pub fn detach(self) -> Result<(), BpfError> {
        todo!()
    }
}

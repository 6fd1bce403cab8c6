//! sluice's XDP programs and their typed userspace side.
//!
//! Two programs, written in C under `src/bpf/` and compiled by build.rs:
//!
//! - the **gateway** (`sluice_xdp`): steers TCP/UDP for configured listeners,
//!   the local port range and ICMP echo of the VIPs into the AF_XDP socket of
//!   the receiving queue, answers ARP / neighbour solicitations for VIPs,
//!   passes everything else to the kernel, and counts every packet once under
//!   the reason of its verdict ([`XdpCounter`]). [`Gateway`] loads it,
//!   attaches it through a BPF link and pins its maps; [`GatewayProgram`] is
//!   the same program loaded but not attached (for tests); [`GatewayMaps`]
//!   opens the pins from another process. Its `health` map (routing/health
//!   words, layout in sluice_abi.h, [`HEALTH_FLAGS`] and friends) is mapped
//!   into the process with [`Gateway::health_words`] as a [`SharedWords`];
//!   while [`HEALTH_ALL_EJECTED`] is set the program refuses new TCP
//!   connections to listeners with a RST ([`XdpCounter::TxRstNoBackend`]).
//! - the **reflector** (`sluice_reflect`): sends UDP to one address back with
//!   XDP_TX, the in-kernel ceiling for benchmarks ([`Reflector`]).
//! - **chaos** (`sluice_chaos`, XDP ingress, and `sluice_chaos_tc`, TCX
//!   egress): drops, drops SYN-ACKs, rewrites MSS, forges RSTs, corrupts and
//!   duplicates packets on any interface ([`Chaos`]), for tests and fault
//!   rehearsals.
//!
//! Shared layouts are declared once in `include/sluice_abi.h` and mirrored in
//! [`abi`]; tests compare both against the objects' BTF.
#![forbid(unsafe_code)]

pub mod abi;
mod chaos;
mod error;
mod gateway;
mod iface;
pub mod object;
mod reflector;
pub mod system;

pub use abi::ChaosCounter;
pub use abi::{
    Counter, ReflectorCounter, XdpAction, XdpCounter, HEALTH_ALL_EJECTED,
    HEALTH_FIRST_CLUSTER_WORD, HEALTH_FLAGS, HEALTH_GENERATION, HEALTH_WORDS, MAX_QUEUES,
    VIP_ANSWER_NEIGH, VIP_ICMP_ECHO, VIP_LOCAL_PORTS,
};
pub use chaos::{
    ppm_from_percent, Chaos, ChaosConfig, ChaosCounters, ChaosOptions, ChaosProgram, SynackDrop,
};
pub use error::{BpfError, Result};
pub use gateway::{
    read_pinned_counters, Gateway, GatewayMaps, GatewayOptions, GatewayProgram, L4Proto, TestRun,
    XdpCounters,
};
pub use iface::{format_mac, parse_mac, IdList, Interface};
pub use reflector::{Reflector, ReflectorCounters, ReflectorProgram};
pub use sluice_xsk::link::XdpAttachMode as XdpMode;
pub use sluice_xsk::SharedWords;

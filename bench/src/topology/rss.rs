//! Receive-side scaling for the XDP interfaces, emulated on their peers.
//!
//! A NIC picks the RX queue of a frame by hashing its flow. A veth has no
//! such hash: the queue a frame arrives on is the TX queue its peer sent it
//! on, and for frames the bridge forwards to `p-gw` the kernel picks that
//! queue from a recorded RX queue or the sender's hash in ways that, on
//! kernel 6.18, put every TCP flow from the client's kernel stack on
//! queue 0 of `gw0` (24 of 24 connections, measured; queue 1 saw none). A
//! second queue would then never see TCP, and multi-queue correctness would
//! go untested.
//!
//! So the topology attaches a small tc program to the egress of each XDP
//! peer (`p-gw`, `rgen0`) that sets the TX queue (hence the RX queue on the
//! other end) to the flow hash modulo the queue count: `bpf_get_hash_recalc`
//! is the sender's socket hash when it has one, the 4-tuple hash otherwise.
//! Like a NIC's RSS, a flow stays on one queue; unlike it, a Linux peer that
//! rehashes its socket (after an RTO, for instance) moves its flow to
//! another queue. sluice must handle that anyway (a rehashing peer, RSS
//! reprogrammed), and its handoff does. AF_XDP copy-mode transmit (the
//! generator) bypasses tc and keeps choosing its queues itself.
//!
//! Topologies with one queue get no program.

use std::path::Path;

use anyhow::Context;

use super::bpf_object::TempBpfObject;
use crate::exec::Shell;

/// Name of the program as the kernel shows it.
pub const PROG_NAME: &str = "sluice_rss";

/// Source of the program; `QUEUES` is defined on the clang command line.
/// No headers: only the `__sk_buff` fields it touches, at their UAPI
/// offsets.
pub const SOURCE: &str = r#"/* sluice-bench: RSS emulation on veth (see bench/src/topology/rss.rs). */
#define SEC(name) __attribute__((section(name), used))
typedef unsigned int u32;
struct __sk_buff { u32 len, pkt_type, mark, queue_mapping; };
static u32 (*bpf_get_hash_recalc)(struct __sk_buff *) = (void *)34;
SEC("tc") int sluice_rss(struct __sk_buff *skb)
{
	skb->queue_mapping = bpf_get_hash_recalc(skb) % QUEUES;
	return 0; /* TC_ACT_OK */
}
char _license[] SEC("license") = "GPL";
"#;

/// The compiled program, in a temporary directory removed on drop.
pub struct RssObject(TempBpfObject);

impl RssObject {
    /// Compiles [`SOURCE`] for `queues` queues with clang.
    pub fn build(sh: &Shell, queues: u32) -> anyhow::Result<Self> {
        TempBpfObject::build(sh, "rss", SOURCE, &[format!("-DQUEUES={queues}")])
            .map(Self)
            .context("building the RSS emulation program for the XDP peers")
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Attaches (or replaces) the program on the egress of `ifname` in `ns`.
pub fn attach(sh: &Shell, obj: &RssObject, ns: &str, ifname: &str) -> anyhow::Result<()> {
    sh.in_netns(ns, "tc", ["qdisc", "replace", "dev", ifname, "clsact"])
        .with_context(|| format!("adding the clsact qdisc to {ns}/{ifname}"))?;
    sh.run(
        crate::netns::command(ns, "tc")
            .args([
                "filter",
                "replace",
                "dev",
                ifname,
                "egress",
                "pref",
                "1",
                "handle",
                "1",
                "bpf",
                "direct-action",
                "obj",
            ])
            .arg(obj.path())
            .args(["sec", "tc"]),
    )
    .with_context(|| format!("attaching the RSS emulation to {ns}/{ifname}"))?;
    Ok(())
}

/// Removes the program (and the clsact qdisc) from `ifname` in `ns`: frames
/// then leave on the queue the kernel picks.
pub fn detach(sh: &Shell, ns: &str, ifname: &str) -> anyhow::Result<()> {
    sh.in_netns(ns, "tc", ["qdisc", "del", "dev", ifname, "clsact"])
        .with_context(|| format!("removing the RSS emulation from {ns}/{ifname}"))?;
    Ok(())
}

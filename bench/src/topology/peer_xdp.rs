//! The XDP_PASS placeholder attached to the peer of each XDP interface.
//!
//! Checked on kernel 6.18 with an XDP program on `gw0` that answers UDP with
//! XDP_TX (bench/tests/xdp_tx.rs and scripts/veth-xdp-facts.sh):
//! - peer `p-gw` with neither GRO nor an XDP program: every XDP_TX fails
//!   (`rx_queue_N_xdp_tx_errors` on `gw0`, dropped on `p-gw`): veth can only
//!   hand an XDP frame to a peer that runs NAPI;
//! - peer with `gro on` (NAPI, no program): XDP_TX counts as sent, no error,
//!   yet the frames never reach the bridge, not even after later traffic.
//!   So GRO is not sufficient. Likely cause (from reading drivers/net/veth.c,
//!   not verified further): the XDP_TX flush only schedules the peer's NAPI
//!   when the peer has an XDP program;
//! - peer with an XDP program that returns XDP_PASS (GRO on or off): every
//!   frame arrives. That is what this module attaches.
//!
//! AF_XDP TX in copy mode should not need any of this: it transmits an skb
//! through the device's normal xmit, not through XDP_TX (from reading the
//! kernel code; not tested here, this crate has no AF_XDP socket yet).
//!
//! The placeholder is attached through netlink (`ip link set dev IF xdpdrv
//! obj ...`). A program that later wants the interface through a BPF link
//! (e.g. the AF_XDP generator on `rgen0`) gets EBUSY until [`detach`] removes
//! it. The program is built with `clang` from the source below (no headers
//! needed) into a temporary file.

use std::path::Path;

use anyhow::Context;

use super::bpf_object::TempBpfObject;
use crate::exec::Shell;

/// Name of the placeholder program as the kernel shows it.
/// sluice's loader recognises this name: a generator or gateway attaching to
/// an interface that carries the placeholder replaces it (the replacement is
/// an XDP program too, so the peer keeps receiving XDP_TX frames).
pub const PROG_NAME: &str = sluice_bpf::system::PEER_PLACEHOLDER_PROG;

/// Source of the placeholder program.
pub const SOURCE: &str = r#"/* sluice-bench: XDP_PASS placeholder for the peer of an XDP veth.
 * Its only job is to exist: XDP_TX frames from the other end of the veth
 * arrive only when this end runs an XDP program. */
#define SEC(name) __attribute__((section(name), used))
struct xdp_md;
SEC("xdp") int sluice_peer(struct xdp_md *ctx) { return 2; /* XDP_PASS */ }
char _license[] SEC("license") = "GPL";
"#;

/// The compiled placeholder, in a temporary directory removed on drop.
pub struct PeerPassObject(TempBpfObject);

impl PeerPassObject {
    /// Compiles [`SOURCE`] with clang.
    pub fn build(sh: &Shell) -> anyhow::Result<Self> {
        TempBpfObject::build(sh, "peer-pass", SOURCE, &[])
            .map(Self)
            .context("building the XDP_PASS placeholder for the XDP peers (or use --no-peer-xdp)")
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Attaches the placeholder in native mode to `ifname` in namespace `ns`.
pub fn attach(sh: &Shell, obj: &PeerPassObject, ns: &str, ifname: &str) -> anyhow::Result<()> {
    sh.run(
        crate::exec::ip_command(Some(ns), ["link", "set", "dev", ifname, "xdpdrv", "obj"])
            .arg(obj.path())
            .args(["sec", "xdp"]),
    )
    .with_context(|| format!("attaching the XDP_PASS placeholder to {ns}/{ifname}"))?;
    Ok(())
}

/// Removes whatever XDP program is attached through netlink in native mode
/// to `ifname` in namespace `ns` (no error if there is none).
pub fn detach(sh: &Shell, ns: &str, ifname: &str) -> anyhow::Result<()> {
    sh.ip(Some(ns), ["link", "set", "dev", ifname, "xdpdrv", "off"])
        .with_context(|| format!("detaching XDP from {ns}/{ifname}"))?;
    Ok(())
}

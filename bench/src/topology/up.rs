//! `topo up`: create or complete a topology; undo this run's work on failure.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::peer_xdp::{self, PeerPassObject};
use super::rss::{self, RssObject};
use super::status::{query_links, LinkStatus};
use super::{
    addr, ifname, require_root, LinkEnd, Role, Topology, BRIDGE_PORTS, ENDPOINTS, VETH_PAIRS,
    XDP_PEERS,
};
use crate::exec::Shell;
use crate::netns;

/// Something `up` created in this run, undone in reverse order on failure.
enum Undo {
    Netns(String),
    Link { ns: String, ifname: &'static str },
}

impl Topology {
    /// Creates whatever of the topology is missing and (re)applies every
    /// setting. Running it on a complete topology changes nothing. If a step
    /// fails, what this run created is removed again and the error says
    /// which command failed.
    pub fn up(&self, sh: &Shell) -> anyhow::Result<()> {
        require_root("topo up")?;
        for (tool, arg) in [
            ("ip", "-V"),
            ("ethtool", "--version"),
            ("sysctl", "--version"),
        ] {
            sh.require_tool(tool, arg)?;
        }
        let obj = if self.peer_xdp {
            sh.require_tool("clang", "--version").context(
                "the XDP_PASS placeholder for the XDP peers needs clang (or use --no-peer-xdp)",
            )?;
            Some(PeerPassObject::build(sh)?)
        } else {
            None
        };
        let rss_obj = if self.queues > 1 {
            sh.require_tool("clang", "--version")
                .context("the RSS emulation for more than one queue needs clang")?;
            sh.require_tool("tc", "-V")?;
            Some(RssObject::build(sh, self.queues)?)
        } else {
            None
        };
        // Pins made under `ip netns exec` (which remounts /sys) are only
        // shared through a bpffs outside /sys.
        sluice_bpf::system::ensure_shared_bpffs().context("mounting the shared bpffs")?;
        let mut undo = Vec::new();
        let result = self.build(sh, obj.as_ref(), rss_obj.as_ref(), &mut undo);
        if let Err(err) = result {
            let summary = rollback(sh, undo);
            return Err(err.context(format!("topo up `{}` failed; {summary}", self.prefix)));
        }
        Ok(())
    }

    fn build(
        &self,
        sh: &Shell,
        obj: Option<&PeerPassObject>,
        rss_obj: Option<&RssObject>,
        undo: &mut Vec<Undo>,
    ) -> anyhow::Result<()> {
        for role in Role::ALL {
            let ns = self.ns(role);
            if !netns::exists(&ns) {
                sh.ip(None, ["netns", "add", &ns])?;
                undo.push(Undo::Netns(ns.clone()));
            }
            sh.ip(Some(&ns), ["link", "set", "dev", "lo", "up"])?;
            if role == Role::Bridge {
                // The bridge namespace forwards frames and has no addresses:
                // no IPv6 there keeps it from sending RS/MLD of its own.
                sysctl(sh, &ns, "net.ipv6.conf.default.disable_ipv6", "1")?;
                sysctl(sh, &ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
                // A switch, not a firewall: where br_netfilter is loaded,
                // bridged frames would pass iptables, which validates (and
                // drops) bad IP headers and costs CPU on every packet.
                for table in ["iptables", "ip6tables", "arptables"] {
                    sysctl_if_present(sh, &ns, &format!("net.bridge.bridge-nf-call-{table}"), "0")?;
                }
            } else {
                // DAD off so IPv6 addresses are usable the moment they exist.
                sysctl(sh, &ns, "net.ipv6.conf.default.accept_dad", "0")?;
                sysctl(sh, &ns, "net.ipv6.conf.all.accept_dad", "0")?;
            }
        }

        self.ensure_bridge(sh, undo)?;
        for ((a_role, a_if), (b_role, b_if)) in VETH_PAIRS {
            self.ensure_veth(sh, (a_role, a_if), (b_role, b_if), undo)?;
        }

        let br = self.bridge_ns();
        for port in BRIDGE_PORTS {
            sh.ip(
                Some(&br),
                ["link", "set", "dev", port, "master", ifname::BRIDGE],
            )?;
            sh.ip(Some(&br), ["link", "set", "dev", port, "up"])?;
        }
        sh.ip(Some(&br), ["link", "set", "dev", ifname::BRIDGE, "up"])?;

        for ep in ENDPOINTS {
            let ns = self.ns(ep.role);
            // Kernel senders on veth leave L4 checksums partial; AF_XDP would
            // hand such frames over as they are. Full checksums on the wire.
            ethtool_k(sh, &ns, ep.ifname, "tx", "off")?;
            sysctl(
                sh,
                &ns,
                &format!("net.ipv6.conf.{}.accept_dad", ep.ifname),
                "0",
            )?;
            let v4 = format!("{}/{}", ep.v4, addr::PREFIX_V4);
            let v6 = format!("{}/{}", ep.v6, addr::PREFIX_V6);
            sh.ip(Some(&ns), ["addr", "replace", &v4, "dev", ep.ifname])?;
            sh.ip(
                Some(&ns),
                ["addr", "replace", &v6, "dev", ep.ifname, "nodad"],
            )?;
            sh.ip(Some(&ns), ["link", "set", "dev", ep.ifname, "up"])?;
        }

        for (role, ifname) in XDP_PEERS {
            let ns = self.ns(role);
            ethtool_k(sh, &ns, ifname, "gro", "on")?;
            if let Some(obj) = obj {
                let link = find_link(sh, &ns, ifname)?;
                match link.and_then(|l| l.xdp) {
                    None => peer_xdp::attach(sh, obj, &ns, ifname)?,
                    Some(x) if x.prog_name == peer_xdp::PROG_NAME => {}
                    Some(x) => eprintln!(
                        "topo up: leaving XDP program `{}` (id {}) on {ns}/{ifname} in place",
                        x.prog_name, x.prog_id
                    ),
                }
            }
            if let Some(rss_obj) = rss_obj {
                rss::attach(sh, rss_obj, &ns, ifname)?;
            }
        }
        self.wait_links_up(sh, Duration::from_secs(5))
    }

    /// Waits until the kernel reports every veth and the bridge as UP (link
    /// state changes reach `operstate` asynchronously).
    fn wait_links_up(&self, sh: &Shell, timeout: Duration) -> anyhow::Result<()> {
        let mut want: Vec<(Role, &str)> = ENDPOINTS.iter().map(|e| (e.role, e.ifname)).collect();
        want.extend(BRIDGE_PORTS.iter().map(|p| (Role::Bridge, *p)));
        want.push((Role::Bridge, ifname::BRIDGE));
        let deadline = Instant::now() + timeout;
        loop {
            let mut down = Vec::new();
            for (role, ifname) in &want {
                let ns = self.ns(*role);
                let state = find_link(sh, &ns, ifname)?.map(|l| l.operstate);
                if state.as_deref() != Some("UP") {
                    down.push(format!(
                        "{ns}/{ifname} ({})",
                        state.as_deref().unwrap_or("missing")
                    ));
                }
            }
            if down.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("links not UP after {timeout:?}: {}", down.join(", "));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ensure_bridge(&self, sh: &Shell, undo: &mut Vec<Undo>) -> anyhow::Result<()> {
        let ns = self.bridge_ns();
        match find_link(sh, &ns, ifname::BRIDGE)? {
            Some(l) if l.kind.as_deref() == Some("bridge") => {}
            Some(l) => bail!(
                "{ns}/{} exists but is a {} device, not a bridge: run `sluice-bench topo down --prefix {}` first",
                ifname::BRIDGE,
                l.kind.as_deref().unwrap_or("plain"),
                self.prefix
            ),
            None => {
                sh.ip(Some(&ns), ["link", "add", ifname::BRIDGE, "type", "bridge"])?;
                undo.push(Undo::Link {
                    ns: ns.clone(),
                    ifname: ifname::BRIDGE,
                });
            }
        }
        // Forward at once (no STP listening/learning delay); flood multicast
        // so IPv6 neighbour solicitations reach every port.
        sh.ip(
            Some(&ns),
            [
                "link",
                "set",
                "dev",
                ifname::BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        )?;
        Ok(())
    }

    fn ensure_veth(
        &self,
        sh: &Shell,
        (a_role, a_if): LinkEnd,
        (b_role, b_if): LinkEnd,
        undo: &mut Vec<Undo>,
    ) -> anyhow::Result<()> {
        let (a_ns, b_ns) = (self.ns(a_role), self.ns(b_role));
        let a = find_link(sh, &a_ns, a_if)?;
        let b = find_link(sh, &b_ns, b_if)?;
        let q = self.queues.to_string();
        match (a, b) {
            (None, None) => {
                sh.ip(
                    Some(&a_ns),
                    [
                        "link",
                        "add",
                        a_if,
                        "numrxqueues",
                        &q,
                        "numtxqueues",
                        &q,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        b_if,
                        "netns",
                        &b_ns,
                        "numrxqueues",
                        &q,
                        "numtxqueues",
                        &q,
                    ],
                )?;
                undo.push(Undo::Link {
                    ns: a_ns,
                    ifname: a_if,
                });
            }
            (Some(a), Some(b)) => {
                for (ns, l) in [(&a_ns, &a), (&b_ns, &b)] {
                    if l.kind.as_deref() != Some("veth") {
                        bail!(
                            "{ns}/{} exists but is not a veth: run `sluice-bench topo down --prefix {}` first",
                            l.name,
                            self.prefix
                        );
                    }
                    if l.rx_queues != Some(self.queues) || l.tx_queues != Some(self.queues) {
                        bail!(
                            "{ns}/{} exists with {}/{} RX/TX queues, not {}: run `sluice-bench topo down --prefix {}` first",
                            l.name,
                            opt(l.rx_queues),
                            opt(l.tx_queues),
                            self.queues,
                            self.prefix
                        );
                    }
                }
            }
            (Some(_), None) | (None, Some(_)) => bail!(
                "only one end of the veth pair {a_ns}/{a_if} <-> {b_ns}/{b_if} exists: \
                 run `sluice-bench topo down --prefix {}` first",
                self.prefix
            ),
        }
        Ok(())
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

fn find_link(sh: &Shell, ns: &str, ifname: &str) -> anyhow::Result<Option<LinkStatus>> {
    Ok(query_links(sh, ns)?.into_iter().find(|l| l.name == ifname))
}

/// Like [`sysctl`], but a key the kernel does not have (its module is not
/// loaded) is not an error.
fn sysctl_if_present(sh: &Shell, ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    sh.in_netns(ns, "sysctl", ["-e", "-q", "-w", &format!("{key}={value}")])?;
    Ok(())
}

fn sysctl(sh: &Shell, ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    sh.in_netns(ns, "sysctl", ["-q", "-w", &format!("{key}={value}")])?;
    Ok(())
}

fn ethtool_k(sh: &Shell, ns: &str, ifname: &str, feature: &str, state: &str) -> anyhow::Result<()> {
    sh.in_netns(ns, "ethtool", ["-K", ifname, feature, state])?;
    Ok(())
}

/// Undoes `undo` in reverse; returns a summary for the error message.
fn rollback(sh: &Shell, undo: Vec<Undo>) -> String {
    if undo.is_empty() {
        return "nothing had been created, nothing to roll back".to_string();
    }
    let created_ns: Vec<String> = undo
        .iter()
        .filter_map(|u| match u {
            Undo::Netns(ns) => Some(ns.clone()),
            Undo::Link { .. } => None,
        })
        .collect();
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for u in undo.into_iter().rev() {
        let (what, res) = match u {
            Undo::Netns(ns) => {
                let r = sh.ip(None, ["netns", "del", &ns]);
                (format!("namespace {ns}"), r)
            }
            Undo::Link { ns, ifname } => {
                // Links inside namespaces this run created go with them.
                if created_ns.contains(&ns) || !netns::exists(&ns) {
                    continue;
                }
                let r = sh.ip(Some(&ns), ["link", "del", "dev", ifname]);
                (format!("link {ns}/{ifname}"), r)
            }
        };
        match res {
            Ok(_) => removed.push(what),
            Err(e) => failed.push(format!("{what}: {e}")),
        }
    }
    let mut s = format!("rolled back: removed {}", removed.join(", "));
    if !failed.is_empty() {
        s.push_str(&format!("; could NOT remove {}", failed.join("; ")));
    }
    s
}

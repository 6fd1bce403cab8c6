//! Start-up of the reverse proxy's upstream side: the configuration, the
//! source addresses and ports of upstream connections, and the next hops
//! that the kernel keeps resolved for them (docs/proxy.md).
//!
//! The dataplane asks the kernel for the route to every backend and keeps a
//! managed neighbour entry for each next hop (see [`crate::netlink`]). A
//! thread reads the kernel's table and tells every loop the Ethernet header
//! of each backend, again whenever it changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sluice_config::{Config, ListenerProtocol};
use tracing::{info, warn};

use crate::cli::Args;
use crate::handoff::Postman;
use crate::neigh::L2Header;
use crate::netlink::{Netlink, NextHops};
use crate::services::mapped;
use crate::tcp_service::UpstreamSource;

/// How long start-up waits for the backends' next hops to resolve.
const RESOLVE_WAIT: Duration = Duration::from_secs(3);
/// How often the table is read while every next hop is resolved, and
/// while one is not.
const REFRESH: Duration = Duration::from_secs(1);
const REFRESH_UNRESOLVED: Duration = Duration::from_millis(100);

/// The proxy configuration from `--config` and `--proxy`, validated; None
/// when neither is given.
pub fn load_config(args: &Args) -> Result<Option<Config>> {
    let p = &args.proxy;
    if p.config.is_none() && p.proxy_flags.is_empty() {
        return Ok(None);
    }
    let mut config = match &p.config {
        Some(path) => Config::load(path).map_err(|e| anyhow!("{e}"))?,
        None => Config::default(),
    };
    config
        .add_proxy_flags(&p.proxy_flags)
        .map_err(|e| anyhow!("{e}"))?;
    config.validate().map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow!("{}", lines.join("\n"))
    })?;
    Ok(Some(config))
}

/// Listeners the configuration adds to the command line's.
pub fn add_listeners(args: &mut Args, config: &Config) {
    for l in &config.listeners {
        match l.protocol {
            ListenerProtocol::Http => args.http.push(l.address),
            ListenerProtocol::Tls => args.tls.tls.push(l.address),
        }
    }
}

/// Every backend address of the configuration, once each.
fn destinations(config: &Config) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for c in &config.clusters {
        for e in &c.endpoints {
            let ip = e.address.ip();
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Routes to the backends, and the source addresses and ports upstream
/// connections use.
pub fn resolve(
    args: &Args,
    ifindex: u32,
    iface: &str,
    config: &Config,
) -> Result<(UpstreamSource, NextHops)> {
    let dests = destinations(config);
    let nl = Netlink::open().context("opening a netlink socket for the routes to the backends")?;
    let hops = NextHops::new(nl, ifindex, &dests)
        .with_context(|| format!("looking up the routes to the backends through {iface}"))?;
    let mut addrs = args.proxy.upstream_source.clone();
    for c in &config.clusters {
        if let Some(s) = c.source {
            if !addrs.contains(&s) {
                addrs.push(s);
            }
        }
    }
    for v6 in [false, true] {
        let Some(dst) = dests.iter().find(|d| d.is_ipv6() == v6) else {
            continue;
        };
        if addrs.iter().any(|a| a.is_ipv6() == v6) {
            continue;
        }
        let src = hops
            .route(*dst)
            .and_then(|r| r.prefsrc)
            .ok_or_else(|| {
                anyhow!(
                    "no source address for the {} backends: the kernel's route to {dst} has none; give --upstream-source ADDR",
                    if v6 { "IPv6" } else { "IPv4" }
                )
            })?;
        addrs.push(src);
    }
    let ports = args.proxy.upstream_ports.clone();
    let all_listeners = args.http.iter().chain(&args.tls.tls);
    for at in all_listeners {
        if addrs.contains(&at.ip()) && ports.contains(&at.port()) {
            bail!(
                "listener {at} is inside --upstream-ports {}-{} on an upstream source address: pick a port outside the range",
                ports.start(),
                ports.end()
            );
        }
    }
    warn_kernel_port_overlap(&ports);
    info!(sources = ?addrs, ports = %format!("{}-{}", ports.start(), ports.end()), backends = dests.len(), "upstream connections");
    Ok((UpstreamSource { addrs, ports }, hops))
}

/// The kernel picks its own ephemeral ports from ip_local_port_range: on a
/// shared source address, a kernel socket in our range would see its
/// replies steered into the loops.
fn warn_kernel_port_overlap(ports: &std::ops::RangeInclusive<u16>) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut it = text
        .split_whitespace()
        .filter_map(|x| x.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next()) {
        if lo <= *ports.end() && *ports.start() <= hi {
            warn!(
                "--upstream-ports {}-{} overlaps the kernel's net.ipv4.ip_local_port_range {lo}-{hi}: kernel connections from a shared source address may lose their replies to the loops",
                ports.start(),
                ports.end()
            );
        }
    }
}

/// Whether `addr` is assigned to an interface of this namespace (the
/// kernel answers ARP/ND for it).
pub fn is_kernel_address(addr: IpAddr) -> bool {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    addrs.into_iter().any(|a| {
        a.address.is_some_and(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                == Some(addr)
        })
    })
}

/// Wait for the next hops at start-up; destinations still unresolved are
/// named (their connections fail until the kernel resolves them).
pub fn wait_resolved(hops: &mut NextHops) -> Result<()> {
    let missing = hops
        .wait_resolved(RESOLVE_WAIT)
        .context("reading the kernel's neighbour table")?;
    if !missing.is_empty() {
        warn!(unresolved = ?missing, "backends whose next hop did not answer ARP/ND within {RESOLVE_WAIT:?}: connections to them fail until it does");
    }
    Ok(())
}

/// The thread that follows the kernel's neighbour table and tells the
/// loops. Returns the managed entries to the kernel when `stop` is set.
pub fn spawn_follower(
    mut hops: NextHops,
    postman: Postman,
    mac: [u8; 6],
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("sluice-neigh".into())
        .spawn(move || {
            let mut told: HashMap<IpAddr, Option<[u8; 6]>> = HashMap::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let mut unresolved = false;
                    match hops.refresh() {
                        Ok(list) => {
                            for (dst, hop_mac) in list {
                                unresolved |= hop_mac.is_none();
                                if told.get(&dst) == Some(&hop_mac) {
                                    continue;
                                }
                                let header =
                                    hop_mac.map(|m| L2Header::ethernet(m, mac, dst.is_ipv6()));
                                if postman.broadcast_neighbour(mapped(dst), header) {
                                    told.insert(dst, hop_mac);
                                }
                            }
                        }
                        Err(e) => warn!("reading the kernel's neighbour table: {e}"),
                    }
                    next = Instant::now()
                        + if unresolved {
                            REFRESH_UNRESOLVED
                        } else {
                            REFRESH
                        };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Err(e) = hops.close() {
                warn!("removing the managed neighbour entries: {e}");
            }
        })
        .expect("spawning the neighbour thread")
}

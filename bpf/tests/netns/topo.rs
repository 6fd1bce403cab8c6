//! Two network namespaces joined by a veth pair, removed on drop (also when
//! a test panics). Names start with `slb-t<pid>-`, so namespaces left by a
//! killed run are recognised and removed by the next one.

use std::process::Command;

/// Runs a command, failing with its output if it fails.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("running {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// gateway namespace `gw` with interface `gw0`, peer namespace `peer` with
/// `peer0` = 198.18.N.2/24 and 2001:2:0:N::2/64 (N in hex there). The gateway side has no
/// addresses: its VIPs are 198.18.N.1 and 2001:2:0:N::1, answered by XDP.
pub struct Topology {
    pub gw: String,
    pub peer: String,
}

pub const GW_IF: &str = "gw0";
pub const PEER_IF: &str = "peer0";

impl Topology {
    pub fn create(net: u8) -> Result<Self, String> {
        let pid = std::process::id();
        let topo = Topology {
            gw: format!("slb-t{pid}-{net}g"),
            peer: format!("slb-t{pid}-{net}p"),
        };
        // From here on, dropping `topo` removes whatever was created.
        sh(&["ip", "netns", "add", &topo.gw])?;
        sh(&["ip", "netns", "add", &topo.peer])?;
        let (gw, peer) = (topo.gw.as_str(), topo.peer.as_str());
        sh(&[
            "ip", "-n", gw, "link", "add", GW_IF, "type", "veth", "peer", "name", PEER_IF, "netns",
            peer,
        ])?;
        sh(&["ip", "-n", gw, "link", "set", "lo", "up"])?;
        sh(&["ip", "-n", peer, "link", "set", "lo", "up"])?;
        sh(&["ip", "-n", gw, "link", "set", GW_IF, "up"])?;
        sh(&[
            "ip",
            "-n",
            peer,
            "addr",
            "add",
            &format!("198.18.{net}.2/24"),
            "dev",
            PEER_IF,
        ])?;
        sh(&[
            "ip",
            "-n",
            peer,
            "addr",
            "add",
            // The group in hex, as scenarios.rs builds it (`Ipv6Addr::new(.., net, ..)`).
            &format!("2001:2:0:{net:x}::2/64"),
            "dev",
            PEER_IF,
            "nodad",
        ])?;
        sh(&["ip", "-n", peer, "link", "set", PEER_IF, "up"])?;
        // Full checksums from the kernel sender (AF_XDP and the reflector see
        // the frames as they are), see DESIGN.md.
        sh(&[
            "ip", "netns", "exec", peer, "ethtool", "-K", PEER_IF, "tx", "off",
        ])?;
        Ok(topo)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.gw, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Removes `slb-t<pid>-*` namespaces whose process is gone.
pub fn remove_stale_namespaces() {
    let Ok(list) = sh(&["ip", "netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("slb-t") else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing stale test namespace {name}");
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

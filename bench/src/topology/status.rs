//! `topo status`: what exists, as `ip -j` and `ethtool -k` report it.

use std::fmt;

use anyhow::Context;
use serde_json::Value;

use super::{Role, Topology};
use crate::exec::Shell;
use crate::netns;

/// The XDP program attached to a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpStatus {
    /// "drv", "skb", "hw" or "multi".
    pub mode: String,
    pub prog_id: u64,
    pub prog_name: String,
}

/// One link in a namespace.
#[derive(Clone, Debug, Default)]
pub struct LinkStatus {
    pub name: String,
    /// `linkinfo.info_kind`: "veth", "bridge", ...; None for plain devices (lo).
    pub kind: Option<String>,
    pub operstate: String,
    pub mtu: u32,
    pub rx_queues: Option<u32>,
    pub tx_queues: Option<u32>,
    pub mac: String,
    pub master: Option<String>,
    pub xdp: Option<XdpStatus>,
    /// Addresses as `addr/prefixlen`, global scope only.
    pub addrs: Vec<String>,
    /// `tx-checksumming` from `ethtool -k` (status only).
    pub tx_csum: Option<bool>,
    /// `generic-receive-offload` from `ethtool -k` (status only).
    pub gro: Option<bool>,
}

/// One namespace of the topology.
#[derive(Clone, Debug)]
pub struct NamespaceStatus {
    pub name: String,
    pub role: Role,
    pub exists: bool,
    pub links: Vec<LinkStatus>,
}

/// The whole topology.
#[derive(Clone, Debug)]
pub struct Status {
    pub prefix: String,
    pub namespaces: Vec<NamespaceStatus>,
}

impl Status {
    /// Whether every namespace of the topology exists.
    pub fn complete(&self) -> bool {
        self.namespaces.iter().all(|n| n.exists)
    }

    /// The link `ifname` in the namespace of `role`, if it exists.
    pub fn link(&self, role: Role, ifname: &str) -> Option<&LinkStatus> {
        self.namespaces
            .iter()
            .find(|n| n.role == role)?
            .links
            .iter()
            .find(|l| l.name == ifname)
    }
}

impl Topology {
    /// Reads the state of every namespace, link and address of the topology.
    pub fn status(&self, sh: &Shell) -> anyhow::Result<Status> {
        let mut namespaces = Vec::new();
        for role in Role::ALL {
            let name = self.ns(role);
            let exists = netns::exists(&name);
            let mut links = Vec::new();
            if exists {
                links = query_links(sh, &name)?;
                links.retain(|l| l.name != "lo");
                for l in &mut links {
                    if let Ok(out) = sh.in_netns(&name, "ethtool", ["-k", &l.name]) {
                        l.tx_csum = feature(&out, "tx-checksumming");
                        l.gro = feature(&out, "generic-receive-offload");
                    }
                }
            }
            namespaces.push(NamespaceStatus {
                name,
                role,
                exists,
                links,
            });
        }
        Ok(Status {
            prefix: self.prefix.clone(),
            namespaces,
        })
    }
}

/// Links of namespace `ns` with their addresses (`ip -j -d link` + `ip -j addr`).
pub(crate) fn query_links(sh: &Shell, ns: &str) -> anyhow::Result<Vec<LinkStatus>> {
    let links = sh.ip(Some(ns), ["-j", "-d", "link", "show"])?;
    let addrs = sh.ip(Some(ns), ["-j", "addr", "show"])?;
    parse_links(&links, &addrs)
        .with_context(|| format!("parsing `ip -j` output for namespace {ns}"))
}

fn parse_links(links_json: &str, addrs_json: &str) -> anyhow::Result<Vec<LinkStatus>> {
    let links: Value = serde_json::from_str(links_json)?;
    let addrs: Value = serde_json::from_str(addrs_json)?;
    let mut out = Vec::new();
    for l in links
        .as_array()
        .context("`ip -j link` did not print an array")?
    {
        let name = str_field(l, "ifname").unwrap_or_default();
        let mut status = LinkStatus {
            kind: l
                .pointer("/linkinfo/info_kind")
                .and_then(Value::as_str)
                .map(str::to_string),
            operstate: str_field(l, "operstate").unwrap_or_else(|| "?".into()),
            mtu: u32_field(l, "mtu").unwrap_or(0),
            rx_queues: u32_field(l, "num_rx_queues"),
            tx_queues: u32_field(l, "num_tx_queues"),
            mac: str_field(l, "address").unwrap_or_default(),
            master: str_field(l, "master"),
            xdp: l.get("xdp").and_then(parse_xdp),
            name,
            ..LinkStatus::default()
        };
        if let Some(entry) = addrs.as_array().and_then(|a| {
            a.iter()
                .find(|a| str_field(a, "ifname").as_deref() == Some(&status.name))
        }) {
            for ai in entry
                .get("addr_info")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if str_field(ai, "scope").as_deref() != Some("global") {
                    continue;
                }
                if let (Some(local), Some(len)) =
                    (str_field(ai, "local"), u32_field(ai, "prefixlen"))
                {
                    status.addrs.push(format!("{local}/{len}"));
                }
            }
        }
        out.push(status);
    }
    Ok(out)
}

fn parse_xdp(x: &Value) -> Option<XdpStatus> {
    let mode = match x.get("mode").and_then(Value::as_u64)? {
        1 => "drv",
        2 => "skb",
        3 => "hw",
        4 => "multi",
        _ => "?",
    };
    let prog = x.get("prog").or_else(|| x.pointer("/attached/0/prog"))?;
    Some(XdpStatus {
        mode: mode.to_string(),
        prog_id: prog.get("id").and_then(Value::as_u64).unwrap_or(0),
        prog_name: str_field(prog, "name").unwrap_or_default(),
    })
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn u32_field(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// `on`/`off` of `name` in `ethtool -k` output.
fn feature(ethtool_k: &str, name: &str) -> Option<bool> {
    ethtool_k.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k.trim() != name {
            return None;
        }
        match v.split_whitespace().next()? {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        }
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = self.namespaces.iter().filter(|n| n.exists).count();
        writeln!(
            f,
            "topology `{}`: {present}/{} namespaces present",
            self.prefix,
            self.namespaces.len()
        )?;
        let header = [
            "NAMESPACE",
            "LINK",
            "KIND",
            "STATE",
            "MTU",
            "RXQ/TXQ",
            "MASTER",
            "TX-CSUM",
            "GRO",
            "XDP",
            "ADDRESSES",
        ];
        let onoff = |b: Option<bool>| match b {
            Some(true) => "on".to_string(),
            Some(false) => "off".to_string(),
            None => "-".to_string(),
        };
        let mut rows: Vec<Vec<String>> = Vec::new();
        for ns in &self.namespaces {
            if !ns.exists {
                let mut row = vec![ns.name.clone(), "(missing)".into()];
                row.resize(header.len(), String::new());
                rows.push(row);
                continue;
            }
            if ns.links.is_empty() {
                let mut row = vec![ns.name.clone(), "(no links)".into()];
                row.resize(header.len(), String::new());
                rows.push(row);
            }
            for (i, l) in ns.links.iter().enumerate() {
                let queues = match (l.rx_queues, l.tx_queues) {
                    (Some(r), Some(t)) => format!("{r}/{t}"),
                    _ => "-".into(),
                };
                let xdp = l.xdp.as_ref().map_or_else(
                    || "-".to_string(),
                    |x| format!("{} {} (id {})", x.mode, x.prog_name, x.prog_id),
                );
                let addrs = if l.addrs.is_empty() {
                    "-".to_string()
                } else {
                    l.addrs.join(" ")
                };
                rows.push(vec![
                    if i == 0 {
                        ns.name.clone()
                    } else {
                        String::new()
                    },
                    l.name.clone(),
                    l.kind.clone().unwrap_or_else(|| "-".into()),
                    l.operstate.clone(),
                    l.mtu.to_string(),
                    queues,
                    l.master.clone().unwrap_or_else(|| "-".into()),
                    onoff(l.tx_csum),
                    onoff(l.gro),
                    xdp,
                    addrs,
                ]);
            }
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(cell);
                } else {
                    s.push_str(&format!("{cell:<w$}  "));
                }
            }
            writeln!(f, "{}", s.trim_end())
        };
        let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        line(f, &header)?;
        for row in &rows {
            line(f, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINKS: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"operstate":"UNKNOWN",
       "address":"00:00:00:00:00:00","num_tx_queues":1,"num_rx_queues":1},
      {"ifindex":2,"ifname":"gw0","mtu":1500,"operstate":"UP","address":"6e:ec:36:77:dc:91",
       "linkinfo":{"info_kind":"veth"},"num_tx_queues":2,"num_rx_queues":2,
       "xdp":{"mode":1,"prog":{"id":101,"name":"xdp_udp_reflect","tag":"195c"},
              "attached":[{"mode":1,"prog":{"id":101,"name":"xdp_udp_reflect"}}]}},
      {"ifindex":5,"ifname":"p-gw","mtu":1500,"operstate":"UP","master":"br0","address":"42:ab:40:f3:11:39",
       "linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"},"num_tx_queues":4,"num_rx_queues":4}
    ]"#;
    const ADDRS: &str = r#"[
      {"ifindex":2,"ifname":"gw0","addr_info":[
        {"family":"inet","local":"198.18.0.2","prefixlen":24,"scope":"global"},
        {"family":"inet6","local":"2001:2::2","prefixlen":64,"scope":"global"},
        {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}
    ]"#;

    #[test]
    fn parses_ip_json() {
        let links = parse_links(LINKS, ADDRS).unwrap();
        assert_eq!(links.len(), 3);
        let gw = &links[1];
        assert_eq!(gw.name, "gw0");
        assert_eq!(gw.kind.as_deref(), Some("veth"));
        assert_eq!((gw.rx_queues, gw.tx_queues), (Some(2), Some(2)));
        assert_eq!(gw.addrs, ["198.18.0.2/24", "2001:2::2/64"]);
        let xdp = gw.xdp.as_ref().unwrap();
        assert_eq!(
            (xdp.mode.as_str(), xdp.prog_id, xdp.prog_name.as_str()),
            ("drv", 101, "xdp_udp_reflect")
        );
        assert_eq!(links[2].master.as_deref(), Some("br0"));
        assert!(links[2].xdp.is_none());
    }

    #[test]
    fn reads_ethtool_features() {
        let out = "Features for gw0:\nrx-checksumming: on\ntx-checksumming: off\n\ttx-checksum-ipv4: off [fixed]\ngeneric-receive-offload: on\n";
        assert_eq!(feature(out, "tx-checksumming"), Some(false));
        assert_eq!(feature(out, "generic-receive-offload"), Some(true));
        assert_eq!(feature(out, "tx-checksum-ipv4"), Some(false));
        assert_eq!(feature(out, "nope"), None);
    }

    #[test]
    fn renders_a_table_with_missing_namespaces() {
        let links = parse_links(LINKS, ADDRS).unwrap();
        let status = Status {
            prefix: "sl".into(),
            namespaces: vec![
                NamespaceStatus {
                    name: "sl-gw".into(),
                    role: Role::Gateway,
                    exists: true,
                    links: links[1..].to_vec(),
                },
                NamespaceStatus {
                    name: "sl-rdut".into(),
                    role: Role::Rdut,
                    exists: false,
                    links: vec![],
                },
            ],
        };
        let text = status.to_string();
        assert!(text.contains("1/2 namespaces present"), "{text}");
        assert!(text.contains("drv xdp_udp_reflect (id 101)"), "{text}");
        assert!(
            text.contains("sl-rdut") && text.contains("(missing)"),
            "{text}"
        );
        assert!(!status.complete());
        assert!(status.link(Role::Gateway, "p-gw").is_some());
    }
}

//! `topo up|status|down` end to end (root). Each test uses its own prefix.

mod common;

use std::net::{IpAddr, UdpSocket};

use common::*;
use serde_json::Value;
use sluice_bench::exec::Shell;
use sluice_bench::netns;
use sluice_bench::topology::{
    addr, ifname, peer_xdp, rss, Role, Topology, BRIDGE_PORTS, ENDPOINTS, XDP_PEERS,
};

fn ip_json(ns: &str, args: &[&str]) -> Value {
    let out = Shell::default().ip(Some(ns), args).expect("ip -j");
    serde_json::from_str(&out).expect("ip -j output is JSON")
}

fn sysctl(ns: &str, key: &str) -> String {
    Shell::default()
        .in_netns(ns, "sysctl", ["-n", key])
        .expect("sysctl -n")
        .trim()
        .to_string()
}

/// Everything `up` promises, checked from the outside.
fn check_topology(topo: &Topology, queues: u32) {
    let sh = Shell::default();
    let status = topo.status(&sh).expect("status");
    assert!(status.complete(), "{status}");

    for ep in ENDPOINTS {
        let ns = topo.ns(ep.role);
        let l = status
            .link(ep.role, ep.ifname)
            .unwrap_or_else(|| panic!("{ns}/{} missing\n{status}", ep.ifname));
        assert_eq!(l.kind.as_deref(), Some("veth"), "{ns}/{}", l.name);
        assert_eq!(
            (l.rx_queues, l.tx_queues),
            (Some(queues), Some(queues)),
            "{ns}/{}",
            l.name
        );
        assert_eq!(l.operstate, "UP", "{ns}/{}", l.name);
        assert_eq!(
            l.tx_csum,
            Some(false),
            "{ns}/{}: tx checksumming must be off",
            l.name
        );
        let want = [
            format!("{}/{}", ep.v4, addr::PREFIX_V4),
            format!("{}/{}", ep.v6, addr::PREFIX_V6),
        ];
        for a in &want {
            assert!(
                l.addrs.contains(a),
                "{ns}/{}: {a} missing in {:?}",
                l.name,
                l.addrs
            );
        }
        assert_eq!(
            sysctl(&ns, &format!("net.ipv6.conf.{}.accept_dad", ep.ifname)),
            "0"
        );
        // nodad: no address is tentative.
        let addrs = ip_json(&ns, &["-j", "addr", "show", "dev", ep.ifname]);
        let text = addrs.to_string();
        assert!(
            !text.contains("tentative"),
            "{ns}: tentative address: {text}"
        );
        // Loopback up.
        let lo = ip_json(&ns, &["-j", "link", "show", "dev", "lo"]);
        assert!(
            lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "{ns}: lo down"
        );
        // The only kernel addresses are ours: no VIP anywhere.
        for vip in [
            addr::GW_VIP_V4.to_string(),
            addr::GW_VIP_V6.to_string(),
            addr::RDUT_VIP_V4.to_string(),
            addr::RDUT_VIP_V6.to_string(),
        ] {
            assert!(
                !l.addrs.iter().any(|a| a.starts_with(&format!("{vip}/"))),
                "{ns}: VIP {vip} configured"
            );
        }
    }
    for port in BRIDGE_PORTS {
        let l = status
            .link(Role::Bridge, port)
            .unwrap_or_else(|| panic!("{port} missing"));
        assert_eq!(l.master.as_deref(), Some(ifname::BRIDGE), "{port}");
        assert_eq!(
            (l.rx_queues, l.tx_queues),
            (Some(queues), Some(queues)),
            "{port}"
        );
        assert_eq!(l.operstate, "UP", "{port}");
    }
    for (role, name) in XDP_PEERS {
        let l = status.link(role, name).unwrap();
        assert_eq!(l.gro, Some(true), "{name}: GRO");
        let x = l
            .xdp
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no XDP placeholder"));
        assert_eq!(
            (x.mode.as_str(), x.prog_name.as_str()),
            ("drv", peer_xdp::PROG_NAME)
        );
    }
    // RSS emulation on the peers' egress: the flow hash picks the queue.
    for (role, name) in XDP_PEERS {
        let filters = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &topo.ns(role),
                "tc",
                "filter",
                "show",
                "dev",
                name,
                "egress",
            ])
            .output()
            .expect("running tc");
        let filters = String::from_utf8_lossy(&filters.stdout);
        assert_eq!(
            filters.contains(rss::PROG_NAME),
            queues > 1,
            "{name}: RSS emulation with {queues} queues: {filters}"
        );
    }
    for (role, name) in [(Role::Gateway, ifname::GW), (Role::Rdut, ifname::RDUT)] {
        assert!(
            status.link(role, name).unwrap().xdp.is_none(),
            "{name} must be left free for the gateway"
        );
    }

    // Bridge: no STP, no forward delay, no multicast snooping.
    let br = ip_json(
        &topo.bridge_ns(),
        &["-j", "-d", "link", "show", "dev", ifname::BRIDGE],
    );
    let info = &br[0]["linkinfo"]["info_data"];
    assert_eq!(info["stp_state"], 0, "{info}");
    assert_eq!(info["forward_delay"], 0, "{info}");
    assert_eq!(info["mcast_snooping"], 0, "{info}");

    // Connectivity, v4 and v6.
    let client = topo.client_ns();
    for a in [
        addr::GW_V4.into(),
        addr::GW_V6.into(),
        addr::BACKEND_V4.into(),
        addr::BACKEND_V6.into(),
    ] {
        assert!(ping(&client, a), "{client} cannot ping {a}");
    }
    let backend = topo.backend_ns();
    for a in [IpAddr::from(addr::GW_V4), addr::GW_V6.into()] {
        assert!(ping(&backend, a), "{backend} cannot ping {a}");
    }
    let rgen = topo.rgen_ns();
    for a in [IpAddr::from(addr::RDUT_V4), addr::RDUT_V6.into()] {
        assert!(ping(&rgen, a), "{rgen} cannot ping {a}");
    }
}

#[test]
fn up_status_idempotent_down() {
    require_root();
    let prefix = test_prefix("a");
    let topo = Topology::new(&prefix, 3).unwrap();
    let _guard = TopoGuard { topo: topo.clone() };

    let out = run_bin_ok(&["topo", "up", "--prefix", &prefix, "--queues", "3"]);
    assert!(out.contains("is up"), "{out}");
    check_topology(&topo, 3);

    // The in-process netns helper: a socket bound in the client namespace
    // gets the client's address, which the root namespace does not have.
    let sock = netns::run_in(&topo.client_ns(), || UdpSocket::bind((addr::CLIENT_V4, 0)))
        .unwrap()
        .expect("bind 198.18.0.1 inside the client namespace");
    assert_eq!(
        sock.local_addr().unwrap().ip(),
        IpAddr::from(addr::CLIENT_V4)
    );
    assert!(
        UdpSocket::bind((addr::CLIENT_V4, 0)).is_err(),
        "198.18.0.1 leaked into the root namespace"
    );

    // `status` shows every namespace, link and the placeholders.
    let status = run_bin_ok(&["topo", "status", "--prefix", &prefix]);
    for needle in topo.namespaces().iter().map(String::as_str).chain([
        ifname::CLIENT,
        ifname::GW,
        ifname::BACKEND,
        ifname::BR_GW,
        ifname::RGEN,
        ifname::RDUT,
        "198.18.0.2/24",
        "2001:2:1::2/64",
        "6/6 namespaces present",
        peer_xdp::PROG_NAME,
    ]) {
        assert!(status.contains(needle), "status lacks {needle}:\n{status}");
    }

    // Up again: nothing recreated (same ifindex and MAC), still complete.
    let before = ip_json(&topo.gw_ns(), &["-j", "link", "show", "dev", ifname::GW]);
    run_bin_ok(&["topo", "up", "--prefix", &prefix, "--queues", "3"]);
    let after = ip_json(&topo.gw_ns(), &["-j", "link", "show", "dev", ifname::GW]);
    assert_eq!(before[0]["ifindex"], after[0]["ifindex"]);
    assert_eq!(before[0]["address"], after[0]["address"]);
    check_topology(&topo, 3);

    // Up with another queue count: a clear error, and nothing torn down.
    let out = run_bin(&["topo", "up", "--prefix", &prefix, "--queues", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queues") && err.contains("topo down"), "{err}");
    assert_eq!(topo.existing_namespaces().unwrap().len(), 6);

    // Down leaves nothing; down again is fine.
    let out = run_bin_ok(&["topo", "down", "--prefix", &prefix]);
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(topo.existing_namespaces().unwrap(), Vec::<String>::new());
    let out = run_bin_ok(&["topo", "down", "--prefix", &prefix]);
    assert!(out.contains("nothing to delete"), "{out}");
    let status = run_bin_ok(&["topo", "status", "--prefix", &prefix]);
    assert!(status.contains("0/6 namespaces present"), "{status}");
}

#[test]
fn failed_up_rolls_back_what_it_created() {
    require_root();
    let prefix = test_prefix("b");
    let topo = Topology::new(&prefix, 2).unwrap();
    let _guard = TopoGuard { topo: topo.clone() };
    let sh = Shell::default();

    // A namespace of the topology already exists and holds a non-veth (a bridge)
    // `rdut0`: up must fail at the direct pair, after creating the rest.
    let rdut = topo.rdut_ns();
    sh.ip(None, ["netns", "add", &rdut]).unwrap();
    sh.ip(Some(&rdut), ["link", "add", ifname::RDUT, "type", "bridge"])
        .unwrap();

    let out = run_bin(&["topo", "up", "--prefix", &prefix]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rolled back") && err.contains(ifname::RDUT),
        "{err}"
    );

    // What up created is gone; what existed before is still there.
    assert_eq!(
        topo.existing_namespaces().unwrap(),
        vec![rdut.clone()],
        "{err}"
    );
    let links = ip_json(&rdut, &["-j", "link", "show", "dev", ifname::RDUT]);
    assert_eq!(links[0]["ifname"], ifname::RDUT);

    sh.ip(None, ["netns", "del", &rdut]).unwrap();
    assert!(topo.existing_namespaces().unwrap().is_empty());
}

#[test]
fn bad_arguments_are_rejected_before_touching_anything() {
    let out = run_bin(&["topo", "up", "--prefix", "bad/prefix"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid prefix"));
    let out = run_bin(&["topo", "up", "--prefix", "slq", "--queues", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue"));
}

//! Golden-packet tests (Katran style): a table of frames, each with the
//! verdict, the one counter it must increment, and for XDP_TX the exact frame
//! the program must send back. Run through BPF_PROG_TEST_RUN against the
//! loaded (not attached) programs with their maps filled in. Needs root.

mod cases;
#[path = "../common/mod.rs"]
mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use cases::*;
use common::frames::*;
use libbpf_rs::MapCore;
use sluice_bpf::abi;
use sluice_bpf::{
    GatewayProgram, L4Proto, ReflectorCounter, ReflectorProgram, XdpAction, XdpCounter,
    VIP_ANSWER_NEIGH, VIP_ICMP_ECHO, VIP_LOCAL_PORTS,
};

/// A loaded gateway with the test VIPs, listeners and config, and an AF_XDP
/// socket registered for queue 0.
struct Fixture {
    prog: GatewayProgram,
    _socket: sluice_xsk::Xsk,
}

fn fixture() -> Fixture {
    common::require_root();
    common::init_tracing();
    let prog = GatewayProgram::load().expect("loading the gateway program");
    let maps = prog.maps();
    maps.set_config(GW_MAC, Some((LOCAL_LO, LOCAL_HI))).unwrap();
    let all = VIP_ANSWER_NEIGH | VIP_ICMP_ECHO | VIP_LOCAL_PORTS;
    for (vip, flags) in [
        (IpAddr::V4(VIP4), all),
        (IpAddr::V6(VIP6), all),
        (IpAddr::V4(QUIET4), 0),
        (IpAddr::V6(QUIET6), 0),
    ] {
        maps.add_vip(vip, flags).unwrap();
    }
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        maps.add_listener(vip, L4Proto::Udp, UDP_LISTEN, 1).unwrap();
        maps.add_listener(vip, L4Proto::Tcp, TCP_LISTEN, 2).unwrap();
    }
    let socket = common::private_probe_socket();
    maps.register_socket(0, socket.fd()).unwrap();
    Fixture {
        prog,
        _socket: socket,
    }
}

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|l| {
            l.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one case; returns a description of what went wrong, if anything.
fn run_case(prog: &GatewayProgram, c: &Case) -> Option<String> {
    let before = prog.maps().counters().unwrap();
    let run = prog.test_run(&c.input).unwrap();
    let delta = prog.maps().counters().unwrap().since(&before);
    let mut errors = Vec::new();

    if run.action() != Some(c.action) {
        errors.push(format!(
            "verdict {:?} (code {}), expected {:?}",
            run.action(),
            run.code,
            c.action
        ));
    }
    for (counter, v) in delta.iter() {
        let want = if counter == c.counter {
            abi::Counter {
                packets: 1,
                bytes: c.input.len() as u64,
            }
        } else {
            abi::Counter::default()
        };
        if v != want {
            errors.push(format!(
                "counter {} moved by {v:?}, expected {want:?}",
                counter.name()
            ));
        }
    }
    let expected = c.output.as_ref().unwrap_or(&c.input);
    if &run.frame != expected {
        errors.push(format!(
            "frame differs\n  got:\n{}\n  expected:\n{}",
            hex(&run.frame),
            hex(expected)
        ));
    }
    (!errors.is_empty()).then(|| format!("{}: {}", c.name, errors.join("; ")))
}

#[test]
fn golden_packets() {
    let fx = fixture();
    let cases = cases();
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(&fx.prog, c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden packets failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} golden packets passed", cases.len());
}

#[test]
fn steered_without_socket_is_dropped() {
    let fx = fixture();
    fx.prog.maps().unregister_socket(0).unwrap();
    fx.prog.maps().unregister_socket(0).unwrap(); // idempotent
    let cases = [
        case(
            "UDP to a listener, no socket",
            udp4(VIP4, UDP_LISTEN),
            XdpAction::Drop,
            XdpCounter::DropNoSocket,
        ),
        case(
            "TCP to the local range, no socket",
            tcp6(VIP6, LOCAL_LO),
            XdpAction::Drop,
            XdpCounter::DropNoSocket,
        ),
        case(
            "echo request, no socket",
            echo4(VIP4, 8),
            XdpAction::Drop,
            XdpCounter::DropNoSocket,
        ),
    ];
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(&fx.prog, c)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn map_changes_take_effect() {
    let fx = fixture();
    let maps = fx.prog.maps();

    assert!(maps
        .remove_listener(IpAddr::V4(VIP4), L4Proto::Udp, UDP_LISTEN)
        .unwrap());
    assert!(!maps
        .remove_listener(IpAddr::V4(VIP4), L4Proto::Udp, UDP_LISTEN)
        .unwrap());
    let c = case(
        "removed listener",
        udp4(VIP4, UDP_LISTEN),
        XdpAction::Pass,
        XdpCounter::PassVipUnbound,
    );
    assert_eq!(run_case(&fx.prog, &c), None);

    assert_eq!(
        maps.vip(IpAddr::V4(VIP4)).unwrap(),
        Some(VIP_ANSWER_NEIGH | VIP_ICMP_ECHO | VIP_LOCAL_PORTS)
    );
    assert!(maps.remove_vip(IpAddr::V4(VIP4)).unwrap());
    assert_eq!(maps.vip(IpAddr::V4(VIP4)).unwrap(), None);
    let c = case(
        "removed VIP",
        tcp4(VIP4, TCP_LISTEN),
        XdpAction::Pass,
        XdpCounter::PassNotVip,
    );
    assert_eq!(run_case(&fx.prog, &c), None);

    // A zero MAC switches the neighbour responder off.
    maps.set_config([0; 6], None).unwrap();
    let c = case(
        "ARP, responder off",
        arp_request(&[], QUIET4),
        XdpAction::Pass,
        XdpCounter::PassNeighOther,
    );
    assert_eq!(run_case(&fx.prog, &c), None);
    let c = case(
        "NS, responder off",
        ns_frame(&[], VIP6, true, false, 255),
        XdpAction::Pass,
        XdpCounter::PassNeighOther,
    );
    assert_eq!(run_case(&fx.prog, &c), None);
    // And no local port range.
    let c = case(
        "local range off",
        tcp6(VIP6, LOCAL_LO),
        XdpAction::Pass,
        XdpCounter::PassVipUnbound,
    );
    assert_eq!(run_case(&fx.prog, &c), None);

    assert!(
        maps.add_vip(IpAddr::V4(VIP4), 1 << 7).is_err(),
        "unknown flags are refused"
    );
    assert!(
        maps.set_config(GW_MAC, Some((10, 5))).is_err(),
        "empty ranges are refused"
    );
    assert!(maps
        .register_socket(sluice_bpf::MAX_QUEUES, fx._socket.fd())
        .is_err());
}

#[test]
fn loaded_maps_match_the_abi() {
    use std::mem::size_of;
    common::require_root();
    let prog = GatewayProgram::load().unwrap();
    assert_eq!(
        prog.maps().config().unwrap(),
        abi::Config::default(),
        "the config starts zeroed"
    );
    let expected = [
        ("xsks", 4, 4, abi::MAX_QUEUES),
        (
            "vips",
            size_of::<abi::VipKey>(),
            size_of::<abi::VipValue>(),
            abi::MAX_VIPS,
        ),
        (
            "listeners",
            size_of::<abi::ListenerKey>(),
            size_of::<abi::ListenerValue>(),
            abi::MAX_LISTENERS,
        ),
        ("config", 4, size_of::<abi::Config>(), 1),
        (
            "counters",
            4,
            size_of::<abi::Counter>(),
            XdpCounter::COUNT as u32,
        ),
        ("health", 4, 8, abi::HEALTH_WORDS),
    ];
    let handles = prog.maps().raw_handles();
    assert_eq!(handles.len(), expected.len());
    for ((name, map), (want_name, key, value, entries)) in handles.iter().zip(expected) {
        assert_eq!(*name, want_name);
        assert_eq!(
            (
                map.key_size() as usize,
                map.value_size() as usize,
                map.max_entries()
            ),
            (key, value, entries),
            "map {name}: (key size, value size, entries)"
        );
        let flags = map.info().unwrap().info.map_flags;
        let mmapable = flags & libbpf_rs::libbpf_sys::BPF_F_MMAPABLE != 0;
        assert_eq!(mmapable, *name == "health", "map {name}: flags {flags:#x}");
    }
}

// --- health words and the refusal of new connections ------------------------------

#[test]
fn health_words_are_the_bpf_map() {
    common::require_root();
    let prog = GatewayProgram::load().unwrap();
    let words = prog.maps().health_words().expect("mapping the health map");
    assert_eq!(words.len(), abi::HEALTH_WORDS as usize);
    let (name, map) = prog.maps().raw_handles()[5];
    assert_eq!(name, "health");
    let lookup = |i: u32| {
        let v = map
            .lookup(&i.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .unwrap()
            .expect("array entries always exist");
        u64::from_ne_bytes(v.try_into().unwrap())
    };

    // mmap writes are what the syscall reads, word i at key i ...
    let last = abi::HEALTH_WORDS - 1;
    words
        .word(5)
        .store(0xdead_beef_0000_0001, Ordering::Release);
    words.word(last as usize).store(42, Ordering::Release);
    assert_eq!(
        (lookup(5), lookup(last), lookup(4)),
        (0xdead_beef_0000_0001, 42, 0)
    );
    // ... and the other way round.
    map.update(
        &9u32.to_ne_bytes(),
        &77u64.to_ne_bytes(),
        libbpf_rs::MapFlags::ANY,
    )
    .unwrap();
    assert_eq!(words.word(9).load(Ordering::Acquire), 77);

    // More words than the map has: refused by the kernel.
    let e = sluice_bpf::SharedWords::map(prog.maps().health_fd(), abi::HEALTH_WORDS as usize + 1)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc_einval()), "{e}");

    // The mapping keeps the map alive after the program and every fd are gone.
    let second = prog.maps().health_words().unwrap();
    drop(prog);
    assert_eq!(words.word(5).load(Ordering::Acquire), 0xdead_beef_0000_0001);
    words.word(6).fetch_add(3, Ordering::AcqRel);
    assert_eq!(second.word(6).load(Ordering::Acquire), 3);
}

fn libc_einval() -> i32 {
    nix::errno::Errno::EINVAL as i32
}

/// Independent checks of a refusal, beyond the byte-exact comparison: MACs
/// swapped and VLAN tags kept, addresses and ports swapped, RST|ACK, SEQ 0,
/// ACK = SYN's SEQ + 1 + data, no options, window 0, valid checksums.
fn check_rst(input: &[u8], out: &[u8], syn_seq: u32, data: u32) -> Result<(), String> {
    let mut l3 = 12;
    while matches!(
        u16::from_be_bytes([out[l3], out[l3 + 1]]),
        ETH_P_8021Q | ETH_P_8021AD
    ) {
        l3 += 4;
    }
    let ethertype = u16::from_be_bytes([out[l3], out[l3 + 1]]);
    l3 += 2;
    let mut errors = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            errors.push(what.to_string());
        }
    };
    check(
        out[..6] == input[6..12] && out[6..12] == input[..6],
        "MACs swapped",
    );
    check(out[12..l3] == input[12..l3], "VLAN tags and ethertype kept");
    let (tcp, pseudo) = if ethertype == ETH_P_IP {
        let ip = &out[l3..l3 + 20];
        check(checksum(ip) == 0, "IPv4 header checksum");
        check(
            ip[0] == 0x45 && ip[8] == 64 && ip[9] == IPPROTO_TCP,
            "IPv4 header",
        );
        check(
            u16::from_be_bytes([ip[2], ip[3]]) == 40,
            "IPv4 total length",
        );
        check(
            ip[12..16] == VIP4.octets() && ip[16..20] == PEER4.octets(),
            "IPv4 addresses",
        );
        let ip4 = V4::new(VIP4, PEER4, IPPROTO_TCP);
        (&out[l3 + 20..], ip4.pseudo(20))
    } else {
        let ip = &out[l3..l3 + 40];
        check(
            ip[0] >> 4 == 6 && ip[6] == IPPROTO_TCP && ip[7] == 64,
            "IPv6 header",
        );
        check(
            u16::from_be_bytes([ip[4], ip[5]]) == 20,
            "IPv6 payload length",
        );
        check(
            ip[8..24] == VIP6.octets() && ip[24..40] == PEER6.octets(),
            "IPv6 addresses",
        );
        (&out[l3 + 40..], pseudo6(VIP6, PEER6, IPPROTO_TCP, 20))
    };
    check(tcp.len() == 20, "20 bytes of TCP, nothing after");
    let be16 = |i: usize| u16::from_be_bytes([tcp[i], tcp[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes(tcp[i..i + 4].try_into().unwrap());
    check(be16(0) == TCP_LISTEN && be16(2) == 50000, "ports swapped");
    check(be32(4) == 0, "SEQ 0");
    check(
        be32(8) == syn_seq.wrapping_add(1).wrapping_add(data),
        "ACK = SEQ + 1 + data",
    );
    check(tcp[12] == 5 << 4, "data offset 5");
    check(tcp[13] == TCP_RST | TCP_ACK, "flags RST|ACK");
    check(be16(14) == 0 && be16(18) == 0, "window 0, urgent 0");
    let mut all = pseudo;
    all.extend_from_slice(tcp);
    check(checksum(&all) == 0, "TCP checksum");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("RST: {}", errors.join(", ")))
    }
}

#[test]
fn syn_refused_while_all_ejected() {
    let fx = fixture();
    let words = fx
        .prog
        .maps()
        .health_words()
        .expect("mapping the health map");
    let flags = words.word(abi::HEALTH_FLAGS);
    assert_eq!(flags.load(Ordering::Acquire), 0, "the map starts zeroed");
    let steered = || {
        [
            case(
                "IPv4 SYN to a listener, not ejected",
                tcp4(VIP4, TCP_LISTEN),
                XdpAction::Redirect,
                XdpCounter::RedirectListener,
            ),
            case(
                "IPv6 SYN to a listener, not ejected",
                tcp6(VIP6, TCP_LISTEN),
                XdpAction::Redirect,
                XdpCounter::RedirectListener,
            ),
        ]
    };
    let mut failures: Vec<String> = steered()
        .iter()
        .filter_map(|c| run_case(&fx.prog, c))
        .collect();

    flags.store(abi::HEALTH_ALL_EJECTED, Ordering::Release);
    let refusals = refusal_cases();
    for (c, seq, data) in &refusals {
        failures.extend(run_case(&fx.prog, c));
        let out = fx.prog.test_run(&c.input).unwrap();
        if let Err(e) = check_rst(&c.input, &out.frame, *seq, *data) {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    let others = not_refused_cases();
    failures.extend(others.iter().filter_map(|c| run_case(&fx.prog, c)));

    // The program reads the flags word alone: a write in progress (odd
    // sequence) changes nothing.
    words
        .word(abi::HEALTH_GENERATION)
        .store(1, Ordering::Release);
    failures.extend(run_case(&fx.prog, &refusals[0].0));
    words
        .word(abi::HEALTH_GENERATION)
        .store(2, Ordering::Release);

    // Other bits do not refuse; clearing the flag steers SYNs again.
    flags.store(!abi::HEALTH_ALL_EJECTED, Ordering::Release);
    failures.extend(steered().iter().filter_map(|c| run_case(&fx.prog, c)));
    flags.store(0, Ordering::Release);
    failures.extend(steered().iter().filter_map(|c| run_case(&fx.prog, c)));

    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} refusals and {} segments steered while all ejected passed",
        refusals.len(),
        others.len()
    );
}

// --- reflector ------------------------------------------------------------------

#[test]
fn reflector_golden_packets() {
    common::require_root();
    common::init_tracing();
    let prog = ReflectorProgram::load().unwrap();
    let port = 7777;
    let run = |frame: &[u8]| {
        let before = prog.counters().unwrap();
        let r = prog.test_run(frame).unwrap();
        let after = prog.counters().unwrap();
        let moved: Vec<_> = ReflectorCounter::ALL
            .iter()
            .filter(|&&c| after[c].packets != before[c].packets)
            .copied()
            .collect();
        (r, moved)
    };

    // Disabled until a target is set.
    let (r, moved) = run(&udp4(VIP4, port));
    assert_eq!(
        (r.action(), moved),
        (Some(XdpAction::Pass), vec![ReflectorCounter::Passed])
    );

    // IPv4: MACs, addresses and ports swapped, TTL 64, checksums valid.
    prog.set_target(SocketAddr::new(IpAddr::V4(VIP4), port))
        .unwrap();
    let mut ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
    ip.ttl = 3;
    let seg = udp(50000, port, b"reflect me");
    let seg = with_l4_checksum(seg.clone(), &ip.pseudo(seg.len()), 6);
    let input = eth(GW_MAC, PEER_MAC, &[], ETH_P_IP, &ip.build(&seg));
    let back_ip = V4 {
        src: VIP4,
        dst: PEER4,
        ttl: 64,
        ..ip.clone()
    };
    let back_seg = udp(port, 50000, b"reflect me");
    let back_seg = with_l4_checksum(back_seg.clone(), &back_ip.pseudo(back_seg.len()), 6);
    assert_eq!(&back_seg[6..8], &seg[6..8], "swapping is checksum-neutral");
    let expected = eth(PEER_MAC, GW_MAC, &[], ETH_P_IP, &back_ip.build(&back_seg));
    let (r, moved) = run(&input);
    assert_eq!(
        (r.action(), moved),
        (Some(XdpAction::Tx), vec![ReflectorCounter::Reflected])
    );
    assert_eq!(hex(&r.frame), hex(&expected), "reflected IPv4 frame");

    // Other port, other address, a fragment: passed.
    for (what, f) in [
        ("other port", udp4(VIP4, port + 1)),
        ("other address", udp4(OTHER4, port)),
        ("TCP", tcp4(VIP4, port)),
        ("fragment", {
            let mut ip = V4::new(PEER4, VIP4, IPPROTO_UDP);
            ip.frag = 0x2000;
            v4_frame(&[], &ip, &udp(50000, port, b"frag"))
        }),
    ] {
        let (r, moved) = run(&f);
        assert_eq!(
            (r.action(), moved),
            (Some(XdpAction::Pass), vec![ReflectorCounter::Passed]),
            "{what}"
        );
        assert_eq!(r.frame, f, "{what}: frame untouched");
    }

    // IPv6, behind a VLAN tag.
    prog.set_target(SocketAddr::new(IpAddr::V6(VIP6), port))
        .unwrap();
    let seg = udp(50000, port, b"reflect me");
    let seg = with_l4_checksum(
        seg.clone(),
        &pseudo6(PEER6, VIP6, IPPROTO_UDP, seg.len()),
        6,
    );
    let input = eth(
        GW_MAC,
        PEER_MAC,
        &[VLAN],
        ETH_P_IPV6,
        &ipv6(PEER6, VIP6, IPPROTO_UDP, 5, &seg),
    );
    let back = udp(port, 50000, b"reflect me");
    let back = with_l4_checksum(
        back.clone(),
        &pseudo6(VIP6, PEER6, IPPROTO_UDP, back.len()),
        6,
    );
    let expected = eth(
        PEER_MAC,
        GW_MAC,
        &[VLAN],
        ETH_P_IPV6,
        &ipv6(VIP6, PEER6, IPPROTO_UDP, 64, &back),
    );
    let (r, moved) = run(&input);
    assert_eq!(
        (r.action(), moved),
        (Some(XdpAction::Tx), vec![ReflectorCounter::Reflected])
    );
    assert_eq!(hex(&r.frame), hex(&expected), "reflected IPv6 frame");
}

#[test]
fn checksum_of_rfc1071_example() {
    // RFC 1071 section 3: the words sum to 0xddf2; the checksum is its complement.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(checksum(&data), !0xddf2);
}

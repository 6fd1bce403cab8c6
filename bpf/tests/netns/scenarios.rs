//! The scenarios, run inside the gateway namespace (`gw0` is the veth end,
//! the peer namespace is `$SLB_PEER_NS`, the subnet number `$SLB_NET`).

use std::fs;
use std::io::ErrorKind;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libbpf_rs::{ObjectBuilder, Xdp, XdpFlags};
use sluice_bpf::object::gateway_maps;
use sluice_bpf::{
    read_pinned_counters, BpfError, Gateway, GatewayOptions, GatewayProgram, Interface, L4Proto,
    Reflector, ReflectorCounter, XdpCounter, XdpMode, HEALTH_ALL_EJECTED, HEALTH_FLAGS,
    VIP_ANSWER_NEIGH, VIP_ICMP_ECHO,
};
use sluice_xsk::{Xsk, XskConfig};

use crate::topo::{sh, GW_IF, PEER_IF};

type R = Result<(), String>;

/// Every scenario and the modes it runs in (`None`: mode-independent).
pub const SCENARIOS: &[(&str, &[Option<XdpMode>])] = &[
    (
        "attach_detach",
        &[Some(XdpMode::Native), Some(XdpMode::Skb)],
    ),
    ("neighbours", &[Some(XdpMode::Native), Some(XdpMode::Skb)]),
    (
        "steer_to_socket",
        &[Some(XdpMode::Native), Some(XdpMode::Skb)],
    ),
    ("reflector", &[Some(XdpMode::Native), Some(XdpMode::Skb)]),
    (
        "refuse_when_all_ejected",
        &[Some(XdpMode::Native), Some(XdpMode::Skb)],
    ),
    ("kill9_then_reattach", &[Some(XdpMode::Native)]),
    ("stale_netlink_program", &[Some(XdpMode::Skb)]),
    (
        "foreign_program",
        &[Some(XdpMode::Native), Some(XdpMode::Skb)],
    ),
    ("native_unsupported", &[None]),
    ("unprivileged", &[None]),
    ("shared_pin_dir", &[Some(XdpMode::Skb)]),
];

/// The MAC the gateway answers with (not gw0's own, to tell them apart).
const GW_ANSWER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0xaa];
const FOREIGN_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/foreign_pass.bpf.o"));

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

struct Ctx {
    mode: Option<XdpMode>,
    peer: String,
    net: u8,
}

impl Ctx {
    fn mode(&self) -> XdpMode {
        self.mode.expect("scenario runs with a mode")
    }
    fn vip4(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 1)
    }
    fn peer4(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.net, 2)
    }
    fn vip6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 2, 0, self.net as u16, 0, 0, 0, 1)
    }
    fn peer6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 2, 0, self.net as u16, 0, 0, 0, 2)
    }
    fn in_peer(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["ip", "netns", "exec", self.peer.as_str()];
        all.extend_from_slice(args);
        sh(&all)
    }
    fn gateway(&self) -> Result<Gateway, String> {
        let iface = Interface::lookup(GW_IF).map_err(|e| e.to_string())?;
        Gateway::attach(&GatewayOptions::new(iface, self.mode()))
            .map_err(|e| format!("attach: {e}"))
    }
    /// veth: frames sent with XDP_TX in native mode land in the peer's XDP
    /// ring, but the peer's NAPI is only kicked if the peer has an XDP
    /// program (kernel 6.18 veth_xdp_flush); GRO on is not enough, the
    /// frames then wait for the next packet. So the peer gets an XDP_PASS
    /// program.
    fn peer_napi_for_native_tx(&self) -> R {
        if self.mode == Some(XdpMode::Native) {
            let path = std::env::temp_dir().join(format!("slb-pass-{}.bpf.o", std::process::id()));
            fs::write(&path, FOREIGN_OBJECT).map_err(|e| e.to_string())?;
            let res = sh(&[
                "ip",
                "-n",
                &self.peer,
                "link",
                "set",
                "dev",
                PEER_IF,
                "xdpdrv",
                "obj",
                path.to_str().unwrap(),
                "sec",
                "xdp",
            ]);
            let _ = fs::remove_file(&path);
            res?;
        }
        Ok(())
    }
    /// Static neighbour entries on the peer for programs that do not answer ARP/ND.
    fn peer_static_neigh(&self, mac: &[u8; 6]) -> R {
        let mac = sluice_bpf::format_mac(mac);
        for vip in [self.vip4().to_string(), self.vip6().to_string()] {
            sh(&[
                "ip", "-n", &self.peer, "neigh", "replace", &vip, "lladdr", &mac, "dev", PEER_IF,
            ])?;
        }
        Ok(())
    }
}

pub fn run_child(name: &str, mode: Option<XdpMode>) -> ExitCode {
    let ctx = Ctx {
        mode,
        peer: std::env::var("SLB_PEER_NS").expect("SLB_PEER_NS"),
        net: std::env::var("SLB_NET")
            .expect("SLB_NET")
            .parse()
            .expect("SLB_NET"),
    };
    let result = match name {
        "attach_detach" => attach_detach(&ctx),
        "neighbours" => neighbours(&ctx),
        "steer_to_socket" => steer_to_socket(&ctx),
        "reflector" => reflector(&ctx),
        "refuse_when_all_ejected" => refuse_when_all_ejected(&ctx),
        "kill9_then_reattach" => kill9_then_reattach(&ctx),
        "stale_netlink_program" => stale_netlink_program(&ctx),
        "foreign_program" => foreign_program(&ctx),
        "native_unsupported" => native_unsupported(&ctx),
        "unprivileged" => unprivileged(&ctx),
        "shared_pin_dir" => shared_pin_dir(&ctx),
        other => Err(format!("unknown scenario {other}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scenario {name} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// --- observations -------------------------------------------------------------

/// What `ip -d link show` says is attached: (program id, mode word).
fn attached(iface: &str) -> Result<Option<(u32, String)>, String> {
    let out = sh(&["ip", "-d", "link", "show", "dev", iface])?;
    let Some(pos) = out.find("prog/xdp id ") else {
        return Ok(None);
    };
    let id: u32 = out[pos + 12..]
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unparsable ip output: {out}"))?;
    let mode = if out.contains(" xdpgeneric ") {
        "xdpgeneric"
    } else if out.contains(" xdp ") {
        "xdp"
    } else {
        "?"
    };
    Ok(Some((id, mode.to_string())))
}

fn expected_ip_mode(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Native => "xdp",
        XdpMode::Skb => "xdpgeneric",
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool, String>) -> R {
    let deadline = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_bpffs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
        .unwrap_or(false)
}

fn check_attached(gw: &Gateway, mode: XdpMode) -> R {
    let id = gw.program().prog_id().map_err(|e| e.to_string())?;
    let (seen, ip_mode) = attached(GW_IF)?.ok_or("ip link shows no XDP program")?;
    ensure!(seen == id, "ip link shows program {seen}, ours is {id}");
    ensure!(
        ip_mode == expected_ip_mode(mode),
        "ip link shows mode {ip_mode} for {mode:?}"
    );
    let net = sh(&["bpftool", "net", "show", "dev", GW_IF])?;
    let word = if mode == XdpMode::Native {
        "driver"
    } else {
        "generic"
    };
    ensure!(
        net.contains(&format!("{word} id {id}")),
        "bpftool net shows:\n{net}"
    );
    let prog = sh(&["bpftool", "prog", "show", "id", &id.to_string()])?;
    ensure!(
        prog.contains("name sluice_xdp"),
        "bpftool prog shows:\n{prog}"
    );
    Ok(())
}

// --- scenarios ------------------------------------------------------------------

fn attach_detach(ctx: &Ctx) -> R {
    let mode = ctx.mode();
    let iface = Interface::lookup(GW_IF).map_err(|e| e.to_string())?;
    let sys_mac =
        fs::read_to_string(format!("/sys/class/net/{GW_IF}/address")).map_err(|e| e.to_string())?;
    ensure!(
        sluice_bpf::format_mac(&iface.mac) == sys_mac.trim(),
        "MAC {iface:?} vs {sys_mac}"
    );
    ensure!(iface.rx_queues >= 1, "rx queues of {iface:?}");
    let err = Interface::lookup("slbnope0").unwrap_err().to_string();
    ensure!(err == "no such interface 'slbnope0'", "lookup error: {err}");

    // ip netns exec gives a fresh /sys without bpffs: attach must mount it.
    let gw = ctx.gateway()?;
    ensure!(is_bpffs(Path::new("/sys/fs/bpf")), "bpffs was not mounted");
    check_attached(&gw, mode)?;
    let pin_dir = gw.pin_dir().to_path_buf();
    ensure!(
        pin_dir == Path::new("/sys/fs/bpf/sluice").join(GW_IF),
        "pin dir {pin_dir:?}"
    );
    for name in gateway_maps::ALL {
        ensure!(
            pin_dir.join(name).exists(),
            "map {name} not pinned in {pin_dir:?}"
        );
    }
    ensure!(
        gw.maps().config().map_err(|e| e.to_string())?.mac == iface.mac,
        "config MAC is not gw0's"
    );

    // Another process reads the counters from the pins.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--read-counters", pin_dir.to_str().unwrap()])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("counters read"),
        "second process: {text}"
    );

    // A second instance on the same interface is refused by the lock.
    match ctx.gateway() {
        Err(e) if e.contains("another sluice instance") && e.contains("is held") => {}
        Err(e) => return Err(format!("second attach failed the wrong way: {e}")),
        Ok(_) => return Err("a second gateway attached to the same interface".into()),
    }
    let iface2 = Interface::lookup(GW_IF).unwrap();
    match Reflector::attach(&iface2, mode, SocketAddr::new(IpAddr::V4(ctx.vip4()), 9)) {
        Err(BpfError::Busy(_)) => {}
        Err(e) => return Err(format!("reflector while gateway attached: {e}")),
        Ok(_) => return Err("the reflector attached next to the gateway".into()),
    }

    gw.detach().map_err(|e| format!("detach: {e}"))?;
    ensure!(attached(GW_IF)?.is_none(), "still attached after detach");
    ensure!(!pin_dir.exists(), "{pin_dir:?} left behind");
    ensure!(
        !Path::new("/sys/fs/bpf/sluice").exists(),
        "/sys/fs/bpf/sluice left behind"
    );

    // Lock released; this time drop does the teardown, with a custom pin dir.
    let custom = PathBuf::from("/sys/fs/bpf/slb-custom").join(GW_IF);
    let opts = GatewayOptions {
        pin_dir: Some(custom.clone()),
        ..GatewayOptions::new(iface.clone(), mode)
    };
    let gw = Gateway::attach(&opts).map_err(|e| format!("re-attach: {e}"))?;
    ensure!(
        custom.join("counters").exists(),
        "not pinned under {custom:?}"
    );
    drop(gw);
    ensure!(attached(GW_IF)?.is_none(), "still attached after drop");
    ensure!(!custom.exists(), "{custom:?} left behind");
    let _ = fs::remove_dir("/sys/fs/bpf/slb-custom");

    // A pin dir outside bpffs is refused.
    let opts = GatewayOptions {
        pin_dir: Some(PathBuf::from("/tmp/slb-not-bpffs")),
        ..GatewayOptions::new(iface, mode)
    };
    match Gateway::attach(&opts) {
        Err(e) if e.to_string().contains("not on a bpf filesystem") => Ok(()),
        Err(e) => Err(format!("pin dir outside bpffs: wrong error {e}")),
        Ok(_) => Err("attached with a pin dir outside bpffs".into()),
    }
}

fn neighbours(ctx: &Ctx) -> R {
    let gw = ctx.gateway()?;
    gw.set_config(GW_ANSWER_MAC, None)
        .map_err(|e| e.to_string())?;
    gw.add_vip(IpAddr::V4(ctx.vip4()), VIP_ANSWER_NEIGH)
        .map_err(|e| e.to_string())?;
    gw.add_vip(IpAddr::V6(ctx.vip6()), VIP_ANSWER_NEIGH)
        .map_err(|e| e.to_string())?;
    ctx.peer_napi_for_native_tx()?;

    let want = sluice_bpf::format_mac(&GW_ANSWER_MAC);
    for (ping, vip) in [
        ("-4", ctx.vip4().to_string()),
        ("-6", ctx.vip6().to_string()),
    ] {
        // Nothing answers the echo itself; the ping is only there to make the
        // peer resolve the VIP.
        let _ = Command::new("ip")
            .args(["netns", "exec", &ctx.peer, "ping", ping, "-c1", "-W1", &vip])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let mut last = String::new();
        wait_until(
            &format!("the peer to learn {vip}"),
            Duration::from_secs(3),
            || {
                last = sh(&["ip", "-n", &ctx.peer, "neigh", "show", &vip, "dev", PEER_IF])?;
                Ok(last.contains(&format!("lladdr {want}")))
            },
        )
        .map_err(|e| format!("{e}; neighbour entry: '{}'", last.trim()))?;
    }
    let c = gw.counters().map_err(|e| e.to_string())?;
    ensure!(
        c[XdpCounter::TxArpReply].packets >= 1,
        "no ARP reply counted:\n{c}"
    );
    ensure!(
        c[XdpCounter::TxNeighAdvert].packets >= 1,
        "no neighbour advert counted:\n{c}"
    );
    ensure!(c[XdpCounter::AbortedInternal].packets == 0, "aborted:\n{c}");
    Ok(())
}

/// Sends `n` UDP datagrams from the peer to `dst`, with bash's /dev/udp.
fn peer_send_udp(ctx: &Ctx, dst: Ipv4Addr, port: u16, n: usize) -> R {
    let script = format!("for i in $(seq {n}); do echo sluice > /dev/udp/{dst}/{port}; done");
    ctx.in_peer(&["bash", "-c", &script]).map(|_| ())
}

fn steer_to_socket(ctx: &Ctx) -> R {
    let gw = ctx.gateway()?;
    let vip = IpAddr::V4(ctx.vip4());
    gw.add_vip(vip, VIP_ICMP_ECHO).map_err(|e| e.to_string())?;
    gw.add_listener(vip, L4Proto::Udp, 9000, 7)
        .map_err(|e| e.to_string())?;
    ctx.peer_static_neigh(&gw.iface().mac)?;

    let mut sockets = Vec::new();
    for q in 0..gw.iface().rx_queues {
        let s = Xsk::open(GW_IF, q, &XskConfig::small())
            .map_err(|e| format!("binding AF_XDP to {GW_IF} queue {q}: {e}"))?;
        gw.register_socket(q, s.fd()).map_err(|e| e.to_string())?;
        sockets.push(s);
    }
    let before = gw.counters().map_err(|e| e.to_string())?;
    peer_send_udp(ctx, ctx.vip4(), 9000, 5)?;
    peer_send_udp(ctx, ctx.vip4(), 9001, 2)?;
    let mut c = before.clone();
    wait_until("7 packets counted", Duration::from_secs(2), || {
        c = gw.counters().map_err(|e| e.to_string())?.since(&before);
        Ok(c[XdpCounter::RedirectListener].packets + c[XdpCounter::PassVipUnbound].packets >= 7)
    })
    .map_err(|e| format!("{e}:\n{c}"))?;
    ensure!(
        c[XdpCounter::RedirectListener].packets == 5,
        "listener:\n{c}"
    );
    ensure!(
        c[XdpCounter::PassVipUnbound].packets == 2,
        "unbound port:\n{c}"
    );
    ensure!(c[XdpCounter::DropNoSocket].packets == 0, "no socket:\n{c}");

    // Without sockets, steered packets are dropped and counted as such.
    for q in 0..gw.iface().rx_queues {
        gw.unregister_socket(q).map_err(|e| e.to_string())?;
    }
    let before = gw.counters().map_err(|e| e.to_string())?;
    peer_send_udp(ctx, ctx.vip4(), 9000, 3)?;
    wait_until("3 drops counted", Duration::from_secs(2), || {
        let c = gw.counters().map_err(|e| e.to_string())?.since(&before);
        Ok(c[XdpCounter::DropNoSocket].packets == 3)
    })?;
    drop(sockets);
    Ok(())
}

/// From the peer namespace: send `payload` to `dst` and wait for it back.
fn peer_udp_round_trip(ctx: &Ctx, src: IpAddr, dst: SocketAddr) -> R {
    let peer = ctx.peer.clone();
    std::thread::spawn(move || -> R {
        let ns = fs::File::open(format!("/run/netns/{peer}")).map_err(|e| e.to_string())?;
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| e.to_string())?;
        let sock = UdpSocket::bind(SocketAddr::new(src, 0)).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let payload = b"reflect me, sluice";
        sock.send_to(payload, dst)
            .map_err(|e| format!("send to {dst}: {e}"))?;
        let mut buf = [0u8; 64];
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no reply from {dst}: {e}"))?;
        ensure!(
            from == dst && &buf[..n] == payload,
            "reply {:?} from {from}",
            &buf[..n]
        );
        Ok(())
    })
    .join()
    .map_err(|_| "peer thread panicked".to_string())?
}

/// From the peer namespace: a kernel TCP connect() to `dst`; the error kind
/// if it fails.
fn peer_tcp_connect(ctx: &Ctx, dst: SocketAddr, timeout: Duration) -> Result<(), ErrorKind> {
    let peer = ctx.peer.clone();
    std::thread::spawn(move || {
        let ns = fs::File::open(format!("/run/netns/{peer}")).map_err(|e| e.kind())?;
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| std::io::Error::from(e).kind())?;
        TcpStream::connect_timeout(&dst, timeout)
            .map(|_| ())
            .map_err(|e| e.kind())
    })
    .join()
    .unwrap_or(Err(ErrorKind::Other))
}

/// A kernel TCP client on the peer: while the health flags say ALL_EJECTED,
/// its connect() is refused (the peer's kernel accepted the XDP-built
/// RST|ACK: checksums and ACK right); once cleared, its SYN is steered into
/// the AF_XDP socket again (where nothing answers: the connect times out).
fn refuse_when_all_ejected(ctx: &Ctx) -> R {
    const PORT: u16 = 8443;
    let gw = ctx.gateway()?;
    let e = |e: BpfError| e.to_string();
    let dsts = [
        SocketAddr::new(IpAddr::V4(ctx.vip4()), PORT),
        SocketAddr::new(IpAddr::V6(ctx.vip6()), PORT),
    ];
    for dst in &dsts {
        gw.add_vip(dst.ip(), 0).map_err(e)?;
        gw.add_listener(dst.ip(), L4Proto::Tcp, PORT, 1)
            .map_err(e)?;
    }
    ctx.peer_static_neigh(&gw.iface().mac)?;
    ctx.peer_napi_for_native_tx()?;
    let mut sockets = Vec::new();
    for q in 0..gw.iface().rx_queues {
        let s = Xsk::open(GW_IF, q, &XskConfig::small())
            .map_err(|e| format!("binding AF_XDP to {GW_IF} queue {q}: {e}"))?;
        gw.register_socket(q, s.fd()).map_err(e)?;
        sockets.push(s);
    }
    let words = gw.health_words().map_err(e)?;

    words
        .word(HEALTH_FLAGS)
        .store(HEALTH_ALL_EJECTED, Ordering::Release);
    for dst in dsts {
        let before = gw.counters().map_err(e)?;
        let r = peer_tcp_connect(ctx, dst, Duration::from_secs(3));
        let c = gw.counters().map_err(e)?.since(&before);
        ensure!(
            r == Err(ErrorKind::ConnectionRefused),
            "connect to {dst} while all ejected: {r:?}, expected refused:\n{c}"
        );
        ensure!(
            c[XdpCounter::TxRstNoBackend].packets >= 1
                && c[XdpCounter::RedirectListener].packets == 0,
            "{dst}:\n{c}"
        );
    }

    words.word(HEALTH_FLAGS).store(0, Ordering::Release);
    for dst in dsts {
        let before = gw.counters().map_err(e)?;
        let r = peer_tcp_connect(ctx, dst, Duration::from_millis(700));
        let c = gw.counters().map_err(e)?.since(&before);
        ensure!(
            r == Err(ErrorKind::TimedOut),
            "connect to {dst} with the flag cleared: {r:?}, expected a timeout:\n{c}"
        );
        ensure!(
            c[XdpCounter::RedirectListener].packets >= 1
                && c[XdpCounter::TxRstNoBackend].packets == 0,
            "{dst}:\n{c}"
        );
    }
    let c = gw.counters().map_err(e)?;
    ensure!(c[XdpCounter::AbortedInternal].packets == 0, "aborted:\n{c}");
    drop(sockets);
    Ok(())
}

fn reflector(ctx: &Ctx) -> R {
    let iface = Interface::lookup(GW_IF).map_err(|e| e.to_string())?;
    let v4 = SocketAddr::new(IpAddr::V4(ctx.vip4()), 7777);
    let refl = Reflector::attach(&iface, ctx.mode(), v4).map_err(|e| format!("attach: {e}"))?;
    ctx.peer_static_neigh(&iface.mac)?;
    ctx.peer_napi_for_native_tx()?;

    peer_udp_round_trip(ctx, IpAddr::V4(ctx.peer4()), v4)?;
    let v6 = SocketAddr::new(IpAddr::V6(ctx.vip6()), 7777);
    refl.program().set_target(v6).map_err(|e| e.to_string())?;
    peer_udp_round_trip(ctx, IpAddr::V6(ctx.peer6()), v6)?;
    let c = refl.counters().map_err(|e| e.to_string())?;
    ensure!(
        c[ReflectorCounter::Reflected].packets == 2,
        "reflected: {c:?}"
    );
    refl.detach().map_err(|e| e.to_string())?;
    ensure!(attached(GW_IF)?.is_none(), "reflector still attached");
    Ok(())
}

/// Kills the holder on drop, so a failing scenario leaves no process behind.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill9_then_reattach(ctx: &Ctx) -> R {
    let mode = ctx.mode();
    let mut holder = Holder(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--holder",
                if mode == XdpMode::Native {
                    "native"
                } else {
                    "skb"
                },
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let mut line = String::new();
    BufReader::new(holder.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    ensure!(line.starts_with("READY"), "holder said '{line}'");
    let (old_id, _) = attached(GW_IF)?.ok_or("holder's program not attached")?;
    let pin = Path::new("/sys/fs/bpf/sluice").join(GW_IF).join("counters");
    let old_ino = fs::metadata(&pin)
        .map_err(|e| format!("holder's pin: {e}"))?
        .ino();

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.0.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| e.to_string())?;
    let _ = holder.0.wait();
    // The link died with its last fd: nothing attached, but the pins stay.
    wait_until(
        "the program to go with the process",
        Duration::from_secs(3),
        || Ok(attached(GW_IF)?.is_none()),
    )?;
    ensure!(
        pin.exists(),
        "pins vanished with the process (they should be stale)"
    );

    let gw = ctx.gateway()?;
    check_attached(&gw, mode)?;
    let new_id = gw.program().prog_id().unwrap();
    ensure!(new_id != old_id, "same program id {new_id}");
    let new_ino = fs::metadata(&pin).map_err(|e| e.to_string())?.ino();
    ensure!(new_ino != old_ino, "stale pin not replaced");
    drop(gw);
    ensure!(!pin.exists(), "pin left after drop");
    Ok(())
}

fn stale_netlink_program(ctx: &Ctx) -> R {
    let iface = Interface::lookup(GW_IF).map_err(|e| e.to_string())?;
    {
        // What an older tool or a crashed netlink-based run leaves behind.
        let prog = GatewayProgram::load().map_err(|e| e.to_string())?;
        Xdp::new(prog.prog_fd())
            .attach(iface.index as i32, XdpFlags::SKB_MODE)
            .map_err(|e| format!("netlink attach: {e}"))?;
    }
    let (stale_id, _) = attached(GW_IF)?.ok_or("netlink program not attached")?;
    let gw = ctx.gateway()?;
    check_attached(&gw, ctx.mode())?;
    ensure!(
        gw.program().prog_id().unwrap() != stale_id,
        "stale program still attached"
    );
    drop(gw);
    ensure!(attached(GW_IF)?.is_none(), "attached after drop");
    Ok(())
}

fn foreign_program(ctx: &Ctx) -> R {
    let iface = Interface::lookup(GW_IF).map_err(|e| e.to_string())?;
    let mut builder = ObjectBuilder::default();
    let obj = builder
        .open_memory(FOREIGN_OBJECT)
        .and_then(|o| o.load())
        .map_err(|e| format!("loading the foreign program: {e}"))?;
    let prog = obj.progs().next().ok_or("no program")?;
    let flags = || match ctx.mode() {
        XdpMode::Native => XdpFlags::DRV_MODE,
        XdpMode::Skb => XdpFlags::SKB_MODE,
    };
    let xdp = Xdp::new(prog.as_fd());
    xdp.attach(iface.index as i32, flags())
        .map_err(|e| format!("netlink attach: {e}"))?;
    let (id, _) = attached(GW_IF)?.ok_or("foreign program not attached")?;

    let result = ctx.gateway();
    let refl = Reflector::attach(
        &iface,
        XdpMode::Skb,
        SocketAddr::new(IpAddr::V4(ctx.vip4()), 9),
    );
    xdp.detach(iface.index as i32, flags())
        .map_err(|e| e.to_string())?;
    match result {
        Err(e)
            if e.contains(&format!("XDP program id {id} 'foreign_pass'"))
                && e.contains("detach it first") => {}
        Err(e) => return Err(format!("wrong error for a foreign program: {e}")),
        Ok(_) => return Err("attached over a foreign program".into()),
    }
    ensure!(
        matches!(refl, Err(BpfError::ForeignProgram { prog_id, .. }) if prog_id == id),
        "reflector over a foreign program: {:?}",
        refl.err()
    );
    ensure!(attached(GW_IF)?.is_none(), "foreign program left attached");
    Ok(())
}

fn native_unsupported(_ctx: &Ctx) -> R {
    // A bridge has no native XDP (and this kernel has no dummy driver).
    sh(&["ip", "link", "add", "slbbr0", "type", "bridge"])?;
    sh(&["ip", "link", "set", "slbbr0", "up"])?;
    let iface = Interface::lookup("slbbr0").map_err(|e| e.to_string())?;
    let native = Gateway::attach(&GatewayOptions::new(iface.clone(), XdpMode::Native));
    let skb = Gateway::attach(&GatewayOptions::new(iface, XdpMode::Skb));
    let skb = skb.map(drop);
    let _ = sh(&["ip", "link", "del", "slbbr0"]);
    match native {
        Err(e) if e.to_string().contains("use --xdp-mode skb") => {}
        Err(e) => return Err(format!("wrong error for native on a bridge: {e}")),
        Ok(_) => return Err("native XDP attached to a bridge".into()),
    }
    skb.map_err(|e| format!("skb mode on a bridge: {e}"))
}

fn unprivileged(_ctx: &Ctx) -> R {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(std::env::current_exe().unwrap())
        .arg("--try-attach")
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.code() == Some(3)
            && text.contains("needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW")
            && text.contains("not running as root"),
        "unprivileged attach: {} {text}",
        out.status
    );
    Ok(())
}

/// Two instances on different interfaces given the same pin dir (as two
/// namespaces with the same interface name sharing one bpffs would be): the
/// second must not take the first's pins for stale ones.
fn shared_pin_dir(ctx: &Ctx) -> R {
    let dir = PathBuf::from("/sys/fs/bpf/slb-shared");
    let first = Gateway::attach(&GatewayOptions {
        pin_dir: Some(dir.clone()),
        ..GatewayOptions::new(Interface::lookup(GW_IF).unwrap(), ctx.mode())
    })
    .map_err(|e| format!("first: {e}"))?;
    let ino = fs::metadata(dir.join("counters"))
        .map_err(|e| e.to_string())?
        .ino();
    sh(&["ip", "link", "add", "slbbr0", "type", "bridge"])?;
    let second = Interface::lookup("slbbr0")
        .map_err(|e| e.to_string())
        .and_then(|i| {
            Gateway::attach(&GatewayOptions {
                pin_dir: Some(dir.clone()),
                ..GatewayOptions::new(i, XdpMode::Skb)
            })
            .map_err(|e| e.to_string())
        });
    let _ = sh(&["ip", "link", "del", "slbbr0"]);
    match second {
        Err(e) if e.contains("belongs to a running program") => {}
        Err(e) => return Err(format!("second instance: wrong error {e}")),
        Ok(_) => return Err("second instance took over a live pin dir".into()),
    }
    let now = fs::metadata(dir.join("counters"))
        .map_err(|e| e.to_string())?
        .ino();
    ensure!(now == ino, "the first instance's pins were replaced");
    drop(first);
    ensure!(!dir.exists(), "{dir:?} left behind");
    Ok(())
}

// --- helper processes ------------------------------------------------------------

/// Attaches the gateway to gw0 and waits to be killed.
pub fn holder(mode: XdpMode) -> ExitCode {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let iface = Interface::lookup(GW_IF).expect("gw0");
    let gw = Gateway::attach(&GatewayOptions::new(iface, mode)).expect("holder attach");
    println!("READY {}", std::process::id());
    loop {
        std::thread::sleep(Duration::from_secs(60));
        let _ = &gw;
    }
}

pub fn read_counters(dir: &str) -> ExitCode {
    match read_pinned_counters(Path::new(dir)) {
        Ok(c) => {
            println!("counters read: {} packets in total", c.total().packets);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Tries to attach to gw0 (run without privileges): exit 3 with the error.
pub fn try_attach() -> ExitCode {
    let iface = match Interface::lookup(GW_IF) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match Gateway::attach(&GatewayOptions::new(iface, XdpMode::Skb)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{e}");
            ExitCode::from(3)
        }
    }
}

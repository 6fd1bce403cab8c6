//! End-to-end checks of the TCP engine through its components: two
//! endpoints over an in-memory link that drops packets (reassembly and the
//! SACK scoreboard), SYN cookies on IPv6, and per-core ephemeral ports.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sluice_netstack::tcp::ports::EphemeralPorts;
use sluice_netstack::tcp::{ConnId, Endpoint, EndpointConfig, Event, Handled};
use sluice_netstack::time::Time;

struct Net {
    eps: [Endpoint; 2],
    addrs: [IpAddr; 2],
    queue: VecDeque<(usize, IpAddr, IpAddr, Vec<u8>)>,
    now: Time,
    rng: u64,
    /// Drop one packet in `loss` (0: none).
    loss: u64,
}

impl Net {
    fn new(cfgs: [EndpointConfig; 2], addrs: [IpAddr; 2], loss: u64) -> Self {
        let now = Time::from_millis(1_000_000);
        let [a, b] = cfgs;
        Net {
            eps: [Endpoint::new(a, now), Endpoint::new(b, now)],
            addrs,
            queue: VecDeque::new(),
            now,
            rng: 0x9e37_79b9_7f4a_7c15,
            loss,
        }
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Move every queued packet; then advance time to the next timer.
    fn step(&mut self) {
        let mut buf = [0u8; 2048];
        for i in 0..2 {
            while let Some(tx) = self.eps[i].poll_transmit(self.now, &mut buf) {
                let ip = &buf[..tx.len];
                let hl = if tx.src.is_ipv4() {
                    usize::from(ip[0] & 0xf) * 4
                } else {
                    40
                };
                let to = self.addrs.iter().position(|a| *a == tx.dst).unwrap();
                let drop = self.loss != 0 && self.rand().is_multiple_of(self.loss);
                if !drop {
                    self.queue
                        .push_back((to, tx.src, tx.dst, ip[hl..].to_vec()));
                }
            }
        }
        if self.queue.is_empty() {
            let next = self.eps.iter().filter_map(|e| e.poll_timeout()).min();
            self.now = next
                .unwrap_or(self.now + Duration::from_millis(10))
                .max(self.now);
            for e in &mut self.eps {
                e.handle_timeout(self.now);
            }
            return;
        }
        self.now += Duration::from_micros(100);
        while let Some((to, src, dst, seg)) = self.queue.pop_front() {
            let e = &mut self.eps[to];
            if e.handle_segment(self.now, src, dst, &seg) == Handled::NoConnection {
                let _ = e.handle_unowned(self.now, src, dst, &seg);
            }
        }
    }
}

fn cfg() -> EndpointConfig {
    EndpointConfig {
        isn_key: [7; 16],
        cookie_key: [9; 16],
        ..EndpointConfig::default()
    }
}

/// Send `len` bytes from endpoint 0 to endpoint 1 and check them; returns
/// the server endpoint's accepted connection.
fn transfer(net: &mut Net, client: ConnId, len: usize) -> ConnId {
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 977) as u8).collect();
    let mut sent = 0;
    let mut got = Vec::with_capacity(len);
    let mut server = None;
    let mut connected = false;
    let mut buf = vec![0u8; 65536];
    let port = net.eps[0].info(client).unwrap().tuple.local.port();
    for _ in 0..2_000_000 {
        while let Some(ev) = net.eps[0].poll_event() {
            if ev == Event::Connected(client) {
                connected = true;
            }
            assert!(!matches!(ev, Event::Reset(..)), "client reset");
        }
        while let Some(ev) = net.eps[1].poll_event() {
            match ev {
                Event::Accepted(id) if net.eps[1].info(id).unwrap().tuple.remote.port() == port => {
                    server = Some(id)
                }
                Event::Reset(..) => panic!("server reset"),
                _ => {}
            }
        }
        if connected && sent < len {
            sent += net.eps[0].write(client, &data[sent..]).unwrap();
        }
        if let Some(s) = server {
            loop {
                let n = net.eps[1].read(s, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        if got.len() == len {
            assert!(got == data, "data differs");
            return server.unwrap();
        }
        net.step();
    }
    panic!("transfer stalled at {} of {len} bytes", got.len());
}

#[test]
fn lossy_transfer_with_sack_v4() {
    let a: IpAddr = "198.18.0.1".parse().unwrap();
    let b: IpAddr = "198.18.0.2".parse().unwrap();
    let mut net = Net::new([cfg(), cfg()], [a, b], 20);
    net.eps[1].listen(SocketAddr::new(b, 80), 16).unwrap();
    let now = net.now;
    let c = net.eps[0].connect(now, a, SocketAddr::new(b, 80)).unwrap();
    transfer(&mut net, c, 1 << 20);
    let (cs, ss) = (net.eps[0].stats(), net.eps[1].stats());
    assert!(ss.ooo_segments > 0, "no out-of-order data: {ss:?}");
    assert!(cs.retransmits > 0);
    assert!(cs.fast_retransmits > 0, "no fast retransmit: {cs:?}");
}

#[test]
fn syn_cookie_handshake_v6() {
    let a: IpAddr = "2001:2::1".parse().unwrap();
    let b: IpAddr = "2001:2::2".parse().unwrap();
    let mut net = Net::new([cfg(), cfg()], [a, b], 0);
    // Backlog 1: the first SYN makes a SYN-RECEIVED connection, the second
    // (in the same flight) gets a cookie.
    net.eps[1].listen(SocketAddr::new(b, 443), 1).unwrap();
    let now = net.now;
    let _first = net.eps[0].connect(now, a, SocketAddr::new(b, 443)).unwrap();
    let c = net.eps[0].connect(now, a, SocketAddr::new(b, 443)).unwrap();
    let s = transfer(&mut net, c, 200_000);
    let ss = net.eps[1].stats();
    assert_eq!(ss.cookies_sent, 1);
    assert_eq!(ss.cookies_accepted, 1);
    assert_eq!(ss.cookies_rejected, 0);
    let (ci, si) = (net.eps[0].info(c).unwrap(), net.eps[1].info(s).unwrap());
    assert_eq!(ci.tuple.reversed(), si.tuple);
}

#[test]
fn ephemeral_ports_belong_to_core() {
    let a: IpAddr = "198.18.0.1".parse().unwrap();
    let b: IpAddr = "198.18.0.2".parse().unwrap();
    let mut c = cfg();
    c.core = 1;
    c.cores = 3;
    c.ephemeral_ports = 40_000..=40_029;
    let now = Time::from_millis(1);
    let mut ep = Endpoint::new(c, now);
    let remote = SocketAddr::new(b, 80);
    let mut ports = Vec::new();
    for _ in 0..10 {
        let id = ep.connect(now, a, remote).unwrap();
        let p = ep.info(id).unwrap().tuple.local.port();
        assert_eq!(EphemeralPorts::owner(p, 3), 1);
        ports.push(p);
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 10);
    assert!(ep.connect(now, a, remote).is_err());
}

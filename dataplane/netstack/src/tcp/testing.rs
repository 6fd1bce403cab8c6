//! Invariant harness shared by the cargo-fuzz target `tcp_segment` and the
//! tests that replay its seeds: arbitrary segments (raw, or built relative
//! to a live connection so they reach deep states), application calls and
//! clock advances fed to an [`Endpoint`] with a listener and an established
//! connection. Panics if an invariant breaks:
//!
//! - no panic anywhere in the engine;
//! - everything `poll_transmit` writes fits the buffer, is a valid IPv4
//!   packet (header checksum, length) carrying a TCP segment with a valid
//!   checksum and options that parse;
//! - `mem_in_use` never exceeds the memory budget, `conn_count` never
//!   exceeds `max_connections`, output per step is bounded;
//! - `poll_timeout` never lies in the past after `handle_timeout`.
//!
//! Input: a list of records `[op, a, b, len, bytes[len]]`.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use super::{ConnId, Endpoint, EndpointConfig, Event, Handled};
use crate::time::Time;
use crate::wire::{Ipv4Packet, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr};

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const PORT: u16 = 443;
const PEER_PORT: u16 = 40_000;
const PEER_ISS: u32 = 0x4000_0000;

struct Harness {
    ep: Endpoint,
    now: Time,
    conns: Vec<ConnId>,
    /// The established connection's sequence state as the peer sees it.
    peer_nxt: u32,
    our_iss: u32,
    peer_ts: u32,
    budget: usize,
    max_conns: usize,
}

fn config() -> EndpointConfig {
    EndpointConfig {
        memory_budget: 128 * 1024,
        send_buffer: 16 * 1024,
        recv_buffer: 16 * 1024,
        chunk_size: 1024,
        backlog: 2,
        max_connections: 16,
        time_wait_max: 8,
        max_pending_replies: 32,
        max_ooo_ranges: 4,
        max_sack_ranges: 4,
        keepalive: Some(super::Keepalive {
            idle: Duration::from_secs(5),
            interval: Duration::from_secs(1),
            count: 2,
        }),
        syn_retries: 2,
        max_retries: 4,
        ..EndpointConfig::default()
    }
}

fn tcp(src: SocketAddr, dst: SocketAddr, repr: &TcpRepr, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; repr.buffer_len()];
    if repr
        .emit(&mut b, &src.ip(), &dst.ip(), |p| {
            let n = p.len().min(payload.len());
            p[..n].copy_from_slice(&payload[..n]);
        })
        .is_err()
    {
        return Vec::new();
    }
    b
}

impl Harness {
    fn new() -> Self {
        let cfg = config();
        let budget = cfg.memory_budget;
        let max_conns = cfg.max_connections;
        let now = Time::from_millis(10_000);
        let mut ep = Endpoint::new(cfg, now);
        ep.listen(SocketAddr::new(SERVER, PORT), 0).expect("listen");
        let mut h = Harness {
            ep,
            now,
            conns: Vec::new(),
            peer_nxt: PEER_ISS + 1,
            our_iss: 0,
            peer_ts: 1000,
            budget,
            max_conns,
        };
        // Handshake for the established connection.
        let syn = TcpRepr {
            src_port: PEER_PORT,
            dst_port: PORT,
            seq_number: SeqNumber(PEER_ISS),
            ack_number: SeqNumber(0),
            flags: TcpFlags::SYN,
            window_len: 65_535,
            urgent_pointer: 0,
            options: TcpOptions {
                mss: Some(1000),
                window_scale: Some(2),
                sack_permitted: true,
                timestamp: Some(crate::wire::TcpTimestamp {
                    tsval: h.peer_ts,
                    tsecr: 0,
                }),
                ..TcpOptions::default()
            },
            payload_len: 0,
        };
        h.deliver(&tcp(h.peer(), h.local(), &syn, &[]));
        let mut buf = [0u8; 1500];
        while let Some(tx) = h.ep.poll_transmit(h.now, &mut buf) {
            let ip = Ipv4Packet::new_checked(&buf[..tx.len]).expect("ipv4");
            let p = TcpPacket::new_checked(ip.payload()).expect("tcp");
            if p.syn() && p.ack() {
                h.our_iss = p.seq_number().0;
            }
        }
        h.peer_ts += 1;
        h.send_rel(0, 1, TcpFlags::ACK, 65_535, &[], true);
        h.events();
        assert_eq!(h.conns.len(), 1, "handshake established the connection");
        h
    }

    fn local(&self) -> SocketAddr {
        SocketAddr::new(SERVER, PORT)
    }

    fn peer(&self) -> SocketAddr {
        SocketAddr::new(CLIENT, PEER_PORT)
    }

    fn deliver(&mut self, seg: &[u8]) {
        if self.ep.handle_segment(self.now, CLIENT, SERVER, seg) == Handled::NoConnection {
            let _ = self.ep.handle_unowned(self.now, CLIENT, SERVER, seg);
        }
    }

    /// A segment of the established connection, sequence numbers relative
    /// to the peer's next byte and our ISN.
    fn send_rel(
        &mut self,
        seq_off: i32,
        ack_off: u32,
        flags: TcpFlags,
        window: u16,
        payload: &[u8],
        ts: bool,
    ) {
        let mut options = TcpOptions::default();
        if ts {
            options.timestamp = Some(crate::wire::TcpTimestamp {
                tsval: self.peer_ts,
                tsecr: 0,
            });
        }
        let repr = TcpRepr {
            src_port: PEER_PORT,
            dst_port: PORT,
            seq_number: SeqNumber(self.peer_nxt.wrapping_add(seq_off as u32)),
            ack_number: SeqNumber(self.our_iss.wrapping_add(ack_off)),
            flags,
            window_len: window,
            urgent_pointer: 0,
            options,
            payload_len: payload.len(),
        };
        let b = tcp(self.peer(), self.local(), &repr, payload);
        self.deliver(&b);
    }

    fn events(&mut self) {
        while let Some(e) = self.ep.poll_event() {
            match e {
                Event::Accepted(id) | Event::Connected(id) if !self.conns.contains(&id) => {
                    self.conns.push(id);
                }
                Event::Closed(id, _) | Event::Reset(id, _) => {
                    let _ = self.ep.close(id);
                    self.conns.retain(|c| *c != id);
                }
                _ => {}
            }
        }
    }

    fn check(&mut self) {
        self.events();
        let mut buf = [0u8; 1500];
        let mut n = 0;
        while let Some(tx) = self.ep.poll_transmit(self.now, &mut buf) {
            n += 1;
            assert!(n < 10_000, "unbounded output");
            assert!(tx.len <= buf.len());
            let pkt = &buf[..tx.len];
            let ip = Ipv4Packet::new_checked(pkt).expect("output is IPv4");
            assert!(ip.verify_checksum(), "IPv4 checksum");
            assert_eq!(usize::from(ip.total_len()), tx.len, "IPv4 length");
            assert_eq!(IpAddr::V4(ip.src_addr()), tx.src);
            assert_eq!(IpAddr::V4(ip.dst_addr()), tx.dst);
            let p = TcpPacket::new_checked(ip.payload()).expect("output is TCP");
            assert!(p.verify_checksum(&tx.src, &tx.dst), "TCP checksum");
            TcpRepr::parse(&p, &tx.src, &tx.dst).expect("output options parse");
            if p.rst() {
                assert!(p.payload().is_empty(), "RST with data");
            }
        }
        assert!(self.ep.mem_in_use() <= self.budget, "memory budget");
        assert!(self.ep.conn_count() <= self.max_conns, "connection limit");
        self.events();
    }
}

/// Run one input through the harness (panics when an invariant breaks).
pub fn exercise(data: &[u8]) {
    let mut h = Harness::new();
    h.check();
    let mut rest = data;
    let mut steps = 0;
    while rest.len() >= 4 && steps < 512 {
        steps += 1;
        let (op, a, b, len) = (rest[0], rest[1], rest[2], usize::from(rest[3]));
        let body = &rest[4..4 + len.min(rest.len() - 4)];
        rest = &rest[4 + body.len()..];
        match op % 8 {
            // Raw bytes as a TCP segment from the peer (ports patched in
            // when `a` is odd so it reaches the connection or listener).
            0 => {
                let mut seg = body.to_vec();
                if a & 1 == 1 && seg.len() >= 4 {
                    let sp = if a & 2 == 0 {
                        PEER_PORT
                    } else {
                        40_000 + u16::from(b)
                    };
                    seg[0..2].copy_from_slice(&sp.to_be_bytes());
                    seg[2..4].copy_from_slice(&PORT.to_be_bytes());
                }
                h.deliver(&seg);
            }
            // A segment of the established connection: flags from `a`,
            // sequence offset from `b`, payload from the body.
            1 => {
                let flags = TcpFlags(u16::from(a) & 0x3f);
                let seq_off = i32::from(b as i8) * 64;
                let ack_off = 1 + u32::from(body.first().copied().unwrap_or(0)) * 97;
                let window = u16::from(body.get(1).copied().unwrap_or(255)) << 8;
                h.peer_ts = h.peer_ts.wrapping_add(u32::from(a >> 6));
                h.send_rel(seq_off, ack_off, flags, window, body, b & 0x80 == 0);
            }
            // In-order data from the peer (advances the peer's sequence).
            2 => {
                h.peer_ts = h.peer_ts.wrapping_add(1);
                let ack = 1 + u32::from(a) * 64;
                h.send_rel(0, ack, TcpFlags::ACK | TcpFlags::PSH, 65_535, body, true);
                h.peer_nxt = h.peer_nxt.wrapping_add(body.len() as u32);
            }
            // A SYN from some client port (backlog, SYN cookies).
            3 => {
                let repr = TcpRepr {
                    src_port: 41_000 + u16::from(a),
                    dst_port: PORT,
                    seq_number: SeqNumber(u32::from(b) << 16),
                    ack_number: SeqNumber(0),
                    flags: if b & 1 == 0 {
                        TcpFlags::SYN
                    } else {
                        TcpFlags::ACK
                    },
                    window_len: 1024,
                    urgent_pointer: 0,
                    options: TcpOptions {
                        mss: Some(536 + u16::from(a)),
                        ..TcpOptions::default()
                    },
                    payload_len: 0,
                };
                let src = SocketAddr::new(CLIENT, repr.src_port);
                let seg = tcp(src, SocketAddr::new(SERVER, PORT), &repr, &[]);
                h.deliver(&seg);
            }
            // Application calls on a connection.
            4 => {
                if let Some(&id) = h.conns.get(usize::from(a) % h.conns.len().max(1)) {
                    match b % 6 {
                        0 | 1 => {
                            let _ = h.ep.write(id, body);
                        }
                        2 => {
                            let mut out = [0u8; 4096];
                            let _ = h.ep.read(id, &mut out);
                        }
                        3 => {
                            let _ = h.ep.shutdown(id);
                        }
                        4 => {
                            let _ = h.ep.close(id);
                            h.conns.retain(|c| *c != id);
                        }
                        _ => {
                            let _ = h.ep.abort(id);
                            h.conns.retain(|c| *c != id);
                        }
                    }
                }
            }
            // An active open.
            5 => {
                let remote = SocketAddr::new(CLIENT, 1 + u16::from(a));
                if let Ok(id) = h.ep.connect(h.now, SERVER, remote) {
                    h.conns.push(id);
                }
            }
            // Advance the clock and run the timers.
            _ => {
                let ms = u64::from(a) * u64::from(b).max(1) * 4;
                h.now += Duration::from_millis(ms);
                if matches!(h.ep.poll_timeout(), Some(t) if t <= h.now) {
                    h.ep.handle_timeout(h.now);
                    if let Some(t) = h.ep.poll_timeout() {
                        assert!(t > h.now, "timer due after handle_timeout");
                    }
                }
            }
        }
        h.check();
    }
    // Wind down: everything must end and free its memory.
    for id in core::mem::take(&mut h.conns) {
        let _ = h.ep.abort(id);
    }
    h.check();
    for _ in 0..64 {
        h.now += Duration::from_secs(120);
        h.ep.handle_timeout(h.now);
        h.check();
        for id in core::mem::take(&mut h.conns) {
            let _ = h.ep.abort(id);
        }
    }
    assert_eq!(
        h.ep.conn_count(),
        0,
        "connections left after wind-down: {:?}",
        h.ep.stats()
    );
    assert_eq!(h.ep.mem_in_use(), 0, "memory left after wind-down");
}

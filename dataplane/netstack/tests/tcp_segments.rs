//! The TCP engine against a scripted peer: segments built by hand, and the
//! engine's output checked field by field and option byte by option byte.
//! Virtual time only.

mod common;

use std::time::Duration;

use common::tcp::*;
use sluice_netstack::tcp::isn;
use sluice_netstack::tcp::{ConnId, EndpointConfig, Event, State};
use sluice_netstack::wire::{TcpFlags, TcpOptions, TcpTimestamp};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
const RST: TcpFlags = TcpFlags::RST;
const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);
const PSHACK: TcpFlags = TcpFlags(TcpFlags::PSH.0 | TcpFlags::ACK.0);

/// The peer's ISN in every script.
const PISS: u32 = 0x1000_0000;
/// The peer's first TSval.
const PTS: u32 = 5_000;

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn full_syn_opts() -> TcpOptions {
    TcpOptions {
        mss: Some(1400),
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: Some(TcpTimestamp {
            tsval: PTS,
            tsecr: 0,
        }),
        ..TcpOptions::default()
    }
}

fn ts(tsval: u32, tsecr: u32) -> TcpOptions {
    TcpOptions {
        timestamp: Some(TcpTimestamp { tsval, tsecr }),
        ..TcpOptions::default()
    }
}

/// A listening engine (plain config unless given).
fn server(cfg: EndpointConfig) -> Scripted {
    let mut s = Scripted::new(cfg);
    s.ep.listen(s.local, 0).unwrap();
    s
}

/// What the engine's TSval is at the scripted clock.
fn our_tsval(s: &Scripted) -> u32 {
    (s.now.as_millis() as u32).wrapping_add(isn::ts_offset(&s.key(), &s.tuple()))
}

/// A passive handshake with `syn_opts`; returns the connection, the
/// engine's ISS and the SYN-ACK.
fn accept_with(s: &mut Scripted, syn_opts: TcpOptions, ack_opts: TcpOptions) -> (ConnId, u32, Out) {
    s.send(Seg::new(SYN, PISS, 0).opts(syn_opts));
    let synack = s.out1();
    let iss = synack.seq.0;
    s.now += Duration::from_millis(5);
    s.send(Seg::new(ACK, PISS + 1, iss + 1).opts(ack_opts));
    let ev = s.take_events();
    let id = match ev.as_slice() {
        [Event::Accepted(id)] => *id,
        e => panic!("expected Accepted, got {e:?}"),
    };
    (id, iss, synack)
}

/// Handshake without SACK (data paths that need no reassembly map).
fn accept_plain(s: &mut Scripted) -> (ConnId, u32) {
    let (id, iss, _) = accept_with(
        s,
        TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        },
        TcpOptions::default(),
    );
    (id, iss)
}

// ---- handshake --------------------------------------------------------------

#[test]
fn syn_ack_negotiates_mss_wscale_timestamps_sack_byte_exact() {
    let mut s = server(EndpointConfig::default());
    s.send(Seg::new(SYN, PISS, 0).opts(full_syn_opts()));
    let o = s.out1();
    assert_eq!(o.src, s.local);
    assert_eq!(o.dst, s.peer);
    assert_eq!(o.flags, SYNACK);
    // RFC 6528 ISN.
    let iss = isn::isn(&s.key(), &s.tuple(), s.now);
    assert_eq!(o.seq.0, iss);
    assert_eq!(o.ack.0, PISS + 1);
    // Unscaled window in a SYN (RFC 7323 §2.2): 256 KiB buffer caps at 65535.
    assert_eq!(o.window, 65_535);
    let tsval = our_tsval(&s);
    let mut want = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    want.extend(be(tsval));
    want.extend(be(PTS));
    // 256 KiB needs shift 3 to fit 16 bits.
    want.extend([1, 3, 3, 3]);
    assert_eq!(o.opt_bytes, want);
    assert!(o.payload.is_empty());
}

#[test]
fn syn_ack_without_peer_options_carries_only_mss() {
    let mut s = server(EndpointConfig::default());
    s.send(Seg::new(SYN, PISS, 0).window(8192));
    let o = s.out1();
    assert_eq!(o.flags, SYNACK);
    assert_eq!(o.ack.0, PISS + 1);
    assert_eq!(o.opt_bytes, vec![2, 4, 0x05, 0xb4]);
    s.send(Seg::new(ACK, PISS + 1, o.seq.0 + 1).window(8192));
    let id = match s.take_events().as_slice() {
        [Event::Accepted(id)] => *id,
        e => panic!("{e:?}"),
    };
    let info = s.ep.info(id).unwrap();
    assert_eq!(info.state, State::Established);
    // RFC 9293 §3.7.1: no MSS option means 536.
    assert_eq!(info.mss, 536);
    assert!(!info.timestamps && !info.sack);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (0, 0));
    assert_eq!(info.snd_wnd, 8192);
}

#[test]
fn syn_ack_over_ipv6_announces_mss_minus_20() {
    let mut s = server(EndpointConfig::default());
    s.local = std::net::SocketAddr::new(SERVER_IP6, SERVER_PORT);
    s.peer = std::net::SocketAddr::new(CLIENT_IP6, 40_000);
    s.ep.listen(s.local, 0).unwrap();
    s.send(Seg::new(SYN, PISS, 0));
    let o = s.out1();
    assert_eq!(o.flags, SYNACK);
    assert_eq!(o.opt_bytes, vec![2, 4, 0x05, 0xa0]);
}

#[test]
fn negotiated_options_reach_the_connection() {
    let mut s = server(EndpointConfig::default());
    let (id, _, _) = accept_with(&mut s, full_syn_opts(), ts(PTS + 1, 0));
    let info = s.ep.info(id).unwrap();
    assert!(info.timestamps && info.sack);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (7, 3));
    // min(1400, 1460) less 12 bytes of timestamps.
    assert_eq!(info.mss, 1388);
    // The handshake ACK's window is scaled by the peer's shift.
    assert_eq!(info.snd_wnd, 65_535 << 7);
}

#[test]
fn config_without_options_offers_none() {
    let cfg = EndpointConfig {
        timestamps: false,
        sack: false,
        window_scaling: false,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    s.send(Seg::new(SYN, PISS, 0).opts(full_syn_opts()));
    let o = s.out1();
    assert_eq!(o.opt_bytes, vec![2, 4, 0x05, 0xb4]);
}

#[test]
fn active_open_syn_byte_exact_and_syn_ack_completes() {
    let mut s = Scripted::new(EndpointConfig::default());
    let id = s.ep.connect(s.now, s.local, s.peer).unwrap();
    let o = s.out1();
    assert_eq!(o.flags, SYN);
    assert_eq!(o.seq.0, isn::isn(&s.key(), &s.tuple(), s.now));
    assert_eq!(o.ack.0, 0);
    assert_eq!(o.window, 65_535);
    let mut want = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    want.extend(be(our_tsval(&s)));
    want.extend(be(0));
    want.extend([1, 3, 3, 3]);
    assert_eq!(o.opt_bytes, want);
    assert_eq!(s.state(id), State::SynSent);
    // SYN-ACK without SACK (so no reassembly is involved), with TS and WS.
    s.now += Duration::from_millis(20);
    let mut opts = full_syn_opts();
    opts.sack_permitted = false;
    opts.timestamp = Some(TcpTimestamp {
        tsval: PTS,
        tsecr: our_tsval(&s) - 20,
    });
    s.send(Seg::new(SYNACK, PISS, o.seq.0 + 1).opts(opts).window(1000));
    assert_eq!(s.take_events(), vec![Event::Connected(id)]);
    let a = s.out1();
    assert_eq!(a.flags, ACK);
    assert_eq!(a.seq.0, o.seq.0 + 1);
    assert_eq!(a.ack.0, PISS + 1);
    assert_eq!(a.window, 32_768);
    let mut want = vec![1, 1, 8, 10];
    want.extend(be(our_tsval(&s)));
    want.extend(be(PTS));
    assert_eq!(a.opt_bytes, want);
    let info = s.ep.info(id).unwrap();
    assert_eq!(info.state, State::Established);
    assert_eq!(info.snd_wnd, 1000 << 7);
    assert_eq!(info.srtt, Some(Duration::from_millis(20)));
}

#[test]
fn syn_sent_rejects_bad_ack_with_rst() {
    let mut s = Scripted::new(EndpointConfig::default());
    let id = s.ep.connect(s.now, s.local, s.peer).unwrap();
    let iss = s.out1().seq.0;
    s.send(Seg::new(SYNACK, PISS, iss + 100));
    let r = s.out1();
    assert_eq!(r.flags, RST);
    assert_eq!(r.seq.0, iss + 100);
    assert_eq!(s.state(id), State::SynSent);
    // RST with an acceptable ACK resets.
    s.send(Seg::new(TcpFlags(RST.0 | ACK.0), 0, iss + 1));
    assert_eq!(s.take_events(), vec![Event::Reset(id, s.tuple())]);
}

#[test]
fn syn_retransmits_with_doubling_rto_then_gives_up() {
    let cfg = EndpointConfig {
        syn_retries: 3,
        ..EndpointConfig::default()
    };
    let mut s = Scripted::new(cfg);
    let id = s.ep.connect(s.now, s.local, s.peer).unwrap();
    let first = s.out1();
    let mut gaps = Vec::new();
    for _ in 0..3 {
        gaps.push(s.next_timer());
        let o = s.out1();
        assert_eq!(o.flags, SYN);
        assert_eq!(o.seq, first.seq);
        // Each retransmission carries a fresh TSval.
        assert_eq!(o.opts.timestamp.unwrap().tsval, our_tsval(&s));
    }
    assert_eq!(
        gaps,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4)
        ]
    );
    assert_eq!(s.next_timer(), Duration::from_secs(8));
    s.assert_silent();
    assert_eq!(s.take_events(), vec![Event::Reset(id, s.tuple())]);
    assert_eq!(s.ep.stats().rto, 3);
}

#[test]
fn syn_received_answers_retransmitted_syn_and_retransmits_syn_ack() {
    let mut s = server(EndpointConfig::default());
    s.send(Seg::new(SYN, PISS, 0));
    let a = s.out1();
    s.send(Seg::new(SYN, PISS, 0));
    let b = s.out1();
    assert_eq!((b.flags, b.seq, b.ack), (SYNACK, a.seq, a.ack));
    // Unanswered: retransmitted after the initial RTO.
    assert_eq!(s.next_timer(), Duration::from_secs(1));
    let c = s.out1();
    assert_eq!((c.flags, c.seq), (SYNACK, a.seq));
    assert_eq!(s.ep.conn_count(), 1);
}

#[test]
fn syn_received_bad_ack_gets_rst() {
    let mut s = server(EndpointConfig::default());
    s.send(Seg::new(SYN, PISS, 0));
    let iss = s.out1().seq.0;
    s.send(Seg::new(ACK, PISS + 1, iss + 7));
    let r = s.out1();
    assert_eq!((r.flags, r.seq.0, r.window), (RST, iss + 7, 0));
    assert!(r.opt_bytes.is_empty());
}

#[test]
fn rst_exact_resets_established() {
    let mut s = server(EndpointConfig::default());
    let (id, _) = accept_plain(&mut s);
    s.send(Seg::new(RST, PISS + 1, 0));
    assert_eq!(s.take_events(), vec![Event::Reset(id, s.tuple())]);
    s.assert_silent();
    assert_eq!(
        s.ep.write(id, b"x"),
        Err(sluice_netstack::tcp::TcpError::Reset)
    );
    s.ep.close(id).unwrap();
    assert_eq!(s.ep.conn_count(), 0);
    assert_eq!(s.ep.mem_in_use(), 0);
}

#[test]
fn rst_out_of_window_is_dropped_silently() {
    let mut s = server(EndpointConfig::default());
    let (id, _) = accept_plain(&mut s);
    s.send(Seg::new(RST, PISS + 1 + 10_000_000, 0));
    s.send(Seg::new(RST, PISS, 0));
    s.assert_silent();
    assert!(s.take_events().is_empty());
    assert_eq!(s.state(id), State::Established);
    assert_eq!(s.ep.stats().challenge_acks_sent, 0);
}

#[test]
fn out_of_window_data_is_answered_with_an_ack_and_dropped() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    // Old data (already "received": below RCV.NXT).
    s.send(Seg::new(PSHACK, PISS + 1 - 100, iss + 1).data(&[1; 50]));
    let a = s.out1();
    assert_eq!((a.flags, a.seq.0, a.ack.0), (ACK, iss + 1, PISS + 1));
    // Beyond the window.
    s.send(Seg::new(PSHACK, PISS + 1 + 1_000_000, iss + 1).data(&[1; 50]));
    let a = s.out1();
    assert_eq!((a.flags, a.ack.0), (ACK, PISS + 1));
    assert_eq!(s.ep.info(id).unwrap().recv_queued, 0);
    assert!(s.ep.stats().dup_segments >= 1);
}

#[test]
fn paws_drops_old_timestamp_and_acks() {
    let cfg = EndpointConfig {
        sack: false,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (id, iss, _) = accept_with(&mut s, full_syn_opts(), ts(PTS + 10, 0));
    // TS.Recent is PTS+10 now; PTS+5 is older: dropped, ACKed.
    s.send(
        Seg::new(PSHACK, PISS + 1, iss + 1)
            .opts(ts(PTS + 5, 0))
            .data(b"old"),
    );
    let a = s.out1();
    assert_eq!((a.flags, a.ack.0), (ACK, PISS + 1));
    let mut want = vec![1, 1, 8, 10];
    want.extend(be(our_tsval(&s)));
    want.extend(be(PTS + 10));
    assert_eq!(a.opt_bytes, want);
    assert_eq!(s.ep.info(id).unwrap().bytes_received, 0);
    assert_eq!(s.ep.stats().paws_drops, 1);
}

#[test]
fn peer_close_then_our_close_last_ack() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.send(Seg::new(FIN, PISS + 1, iss + 1));
    assert_eq!(s.take_events(), vec![Event::PeerFinished(id)]);
    let a = s.out1();
    assert_eq!((a.flags, a.seq.0, a.ack.0), (ACK, iss + 1, PISS + 2));
    assert_eq!(s.state(id), State::CloseWait);
    s.ep.close(id).unwrap();
    let f = s.out1();
    assert_eq!((f.flags, f.seq.0, f.ack.0), (FIN, iss + 1, PISS + 2));
    assert_eq!(s.ep.conn_count(), 1);
    s.send(Seg::new(ACK, PISS + 2, iss + 2));
    s.assert_silent();
    assert_eq!(s.ep.conn_count(), 0);
    assert_eq!(s.ep.time_wait_count(), 0);
    assert_eq!(s.ep.mem_in_use(), 0);
}

#[test]
fn our_close_fin_wait_then_time_wait_and_expiry() {
    let cfg = EndpointConfig {
        time_wait: Duration::from_secs(60),
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (id, iss) = accept_plain(&mut s);
    s.ep.shutdown(id).unwrap();
    let f = s.out1();
    assert_eq!((f.flags, f.seq.0, f.ack.0), (FIN, iss + 1, PISS + 1));
    assert_eq!(s.state(id), State::FinWait1);
    s.send(Seg::new(ACK, PISS + 1, iss + 2));
    s.assert_silent();
    assert_eq!(s.state(id), State::FinWait2);
    // Half-close: the peer may still send (FIN-WAIT-2 receives).
    s.send(Seg::new(FIN, PISS + 1, iss + 2));
    let ev = s.take_events();
    assert_eq!(
        ev,
        vec![Event::PeerFinished(id), Event::Closed(id, s.tuple())]
    );
    let a = s.out1();
    assert_eq!((a.flags, a.seq.0, a.ack.0), (ACK, iss + 2, PISS + 2));
    assert_eq!(s.ep.time_wait_count(), 1);
    s.ep.close(id).unwrap();
    assert_eq!(s.ep.conn_count(), 0);
    // A retransmitted FIN in TIME_WAIT is ACKed again.
    s.now += Duration::from_secs(1);
    s.send(Seg::new(FIN, PISS + 1, iss + 2));
    let a = s.out1();
    assert_eq!((a.flags, a.seq.0, a.ack.0), (ACK, iss + 2, PISS + 2));
    // 2·MSL after entry the entry goes.
    s.advance(Duration::from_secs(58));
    assert_eq!(s.ep.time_wait_count(), 1);
    s.advance(Duration::from_secs(1));
    assert_eq!(s.ep.time_wait_count(), 0);
    assert_eq!(s.ep.poll_timeout(), None);
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.ep.shutdown(id).unwrap();
    let f = s.out1();
    assert_eq!(f.flags, FIN);
    // The peer's FIN crosses ours (it has not seen our FIN).
    s.send(Seg::new(FIN, PISS + 1, iss + 1));
    assert_eq!(s.state(id), State::Closing);
    let a = s.out1();
    assert_eq!((a.flags, a.seq.0, a.ack.0), (ACK, iss + 2, PISS + 2));
    s.send(Seg::new(ACK, PISS + 2, iss + 2));
    assert_eq!(s.ep.time_wait_count(), 1);
    let ev = s.take_events();
    assert!(ev.contains(&Event::Closed(id, s.tuple())), "{ev:?}");
}

#[test]
fn syn_in_time_wait_with_newer_timestamp_reopens() {
    let cfg = EndpointConfig {
        sack: false,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (id, iss, _) = accept_with(&mut s, full_syn_opts(), ts(PTS + 1, 0));
    s.ep.shutdown(id).unwrap();
    let _ = s.out1();
    s.send(Seg::new(FIN, PISS + 1, iss + 2).opts(ts(PTS + 2, 0)));
    let _ = s.out();
    assert_eq!(s.ep.time_wait_count(), 1);
    s.ep.close(id).unwrap();
    s.now += Duration::from_secs(1);
    s.send(Seg::new(SYN, PISS + 100_000, 0).opts(TcpOptions {
        timestamp: Some(TcpTimestamp {
            tsval: PTS + 1000,
            tsecr: 0,
        }),
        ..full_syn_opts()
    }));
    let o = s.out1();
    assert_eq!((o.flags, o.ack.0), (SYNACK, PISS + 100_001));
    assert_eq!(s.ep.time_wait_count(), 0);
    assert_eq!(s.ep.stats().time_wait_reuse, 1);
}

#[test]
fn rst_exact_in_syn_received_drops_the_embryo() {
    let mut s = server(EndpointConfig::default());
    s.send(Seg::new(SYN, PISS, 0));
    let _ = s.out1();
    assert_eq!(s.ep.conn_count(), 1);
    s.send(Seg::new(RST, PISS + 1, 0));
    s.assert_silent();
    // The application never saw it: no event, nothing left to release.
    assert!(s.take_events().is_empty());
    assert_eq!(s.ep.conn_count(), 0);
    assert_eq!(s.ep.poll_timeout(), None);
}

#[test]
fn unanswered_syn_ack_gives_up_and_frees_the_embryo() {
    let cfg = EndpointConfig {
        syn_retries: 2,
        backlog: 1,
        syn_cookies: false,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    s.send(Seg::new(SYN, PISS, 0));
    let _ = s.out1();
    assert_eq!(s.next_timer(), Duration::from_secs(1));
    assert_eq!(s.out1().flags, SYNACK);
    assert_eq!(s.next_timer(), Duration::from_secs(2));
    assert_eq!(s.out1().flags, SYNACK);
    assert_eq!(s.next_timer(), Duration::from_secs(4));
    s.assert_silent();
    assert!(s.take_events().is_empty());
    assert_eq!(s.ep.conn_count(), 0);
    // The backlog slot is free again: a new SYN gets a SYN-ACK.
    s.peer.set_port(40_001);
    s.send(Seg::new(SYN, PISS, 0));
    assert_eq!(s.out1().flags, SYNACK);
}

#[test]
fn fin_carried_with_data_is_consumed_at_once() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.send(Seg::new(TcpFlags(FIN.0 | TcpFlags::PSH.0), PISS + 1, iss + 1).data(b"last words"));
    assert_eq!(
        s.take_events(),
        vec![Event::Readable(id), Event::PeerFinished(id)]
    );
    let a = s.out1();
    // The ACK covers the data and the FIN.
    assert_eq!(
        (a.flags, a.seq.0, a.ack.0),
        (ACK, iss + 1, PISS + 1 + 10 + 1)
    );
    assert_eq!(s.state(id), State::CloseWait);
    let mut buf = [0u8; 32];
    assert_eq!(s.ep.read(id, &mut buf), Ok(10));
    assert_eq!(&buf[..10], b"last words");
}

#[test]
fn pure_ack_after_rto_carries_snd_max_not_the_rolled_back_snd_nxt() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    assert_eq!(s.ep.write(id, &[7u8; 3 * 1460]), Ok(3 * 1460));
    let segs = s.out();
    assert_eq!(segs.len(), 3);
    // RTO: go back to SND.UNA, one segment (cwnd is 1 MSS now).
    s.next_timer();
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (iss + 1, 1460));
    // The peer's data (nothing acknowledged) gets a delayed pure ACK. Its
    // sequence number must be the highest sent: the peer may already hold
    // everything up to it, and would find a lower one unacceptable
    // (RFC 9293 §3.10.7.4), drop it and answer with its own ACK.
    s.send(Seg::new(PSHACK, PISS + 1, iss + 1).data(b"0123456789"));
    s.advance(Duration::from_millis(40));
    let a = s.out1();
    assert_eq!(a.flags, ACK);
    assert!(a.payload.is_empty());
    assert_eq!((a.seq.0, a.ack.0), (iss + 1 + 3 * 1460, PISS + 11));
}

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
    // A RST without an ACK, or with an unacceptable one, is ignored.
    s.send(Seg::new(RST, 0, 0));
    s.send(Seg::new(TcpFlags(RST.0 | ACK.0), 0, iss + 100));
    assert_eq!(s.state(id), State::SynSent);
    assert_eq!((s.ep.stats().rst_in, s.ep.stats().rst_ignored), (0, 2));
    // RST with an acceptable ACK resets.
    s.send(Seg::new(TcpFlags(RST.0 | ACK.0), 0, iss + 1));
    assert_eq!(s.take_events(), vec![Event::Reset(id, s.tuple())]);
    assert_eq!((s.ep.stats().rst_in, s.ep.stats().rst_ignored), (1, 2));
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
    assert_eq!(s.ep.stats().rst_in, 1);
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
    // Rejected: `rst_in` counts accepted RSTs only.
    assert_eq!((s.ep.stats().rst_in, s.ep.stats().rst_ignored), (0, 2));
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
fn out_of_window_pure_acks_are_answered_at_most_every_500_ms() {
    let mut s = server(EndpointConfig::default());
    let (_, iss) = accept_plain(&mut s);
    let far = PISS + 1 + 1_000_000;
    // A flood of out-of-window pure ACKs gets one answer ...
    s.send(Seg::new(ACK, far, iss + 1));
    let a = s.out1();
    assert_eq!((a.flags, a.seq.0, a.ack.0), (ACK, iss + 1, PISS + 1));
    for _ in 0..10 {
        s.send(Seg::new(ACK, far, iss + 1));
        s.assert_silent();
    }
    assert_eq!(s.ep.stats().oow_acks_suppressed, 10);
    // ... while out-of-window data is always answered ...
    s.send(Seg::new(PSHACK, far, iss + 1).data(&[1; 10]));
    assert_eq!(s.out1().ack.0, PISS + 1);
    // ... and after 500 ms a pure ACK is answered again.
    s.advance(Duration::from_millis(499));
    s.send(Seg::new(ACK, far, iss + 1));
    s.assert_silent();
    s.advance(Duration::from_millis(1));
    s.send(Seg::new(ACK, far, iss + 1));
    assert_eq!(s.out1().ack.0, PISS + 1);
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
    // A RST does not end TIME_WAIT (RFC 1337), and is not counted as accepted.
    s.send(Seg::new(RST, PISS + 2, 0));
    s.assert_silent();
    assert_eq!(s.ep.time_wait_count(), 1);
    assert_eq!((s.ep.stats().rst_in, s.ep.stats().rst_ignored), (0, 1));
    // 2·MSL after entry the entry goes, and says so (a loop that shares
    // flows keeps the tuple claimed until then).
    assert!(s.ep.in_time_wait(&s.tuple()));
    let _ = s.take_events();
    s.advance(Duration::from_secs(58));
    assert_eq!(s.ep.time_wait_count(), 1);
    assert_eq!(s.take_events(), vec![]);
    s.advance(Duration::from_secs(1));
    assert_eq!(s.ep.time_wait_count(), 0);
    assert!(!s.ep.in_time_wait(&s.tuple()));
    assert_eq!(s.take_events(), vec![Event::TimeWaitEnded(s.tuple())]);
    assert_eq!(s.ep.poll_timeout(), None);
}

/// Only segments that pass the acceptability and ACK checks count as
/// validated (the loop re-learns a peer's link-layer address from them
/// alone); an out-of-window one does not.
#[test]
fn segments_validated_counts_only_acceptable_segments() {
    let mut s = server(EndpointConfig::default());
    let (_id, iss) = accept_plain(&mut s);
    let v0 = s.ep.stats().segments_validated;
    assert!(v0 >= 1, "the handshake's ACK is validated");
    s.send(Seg::new(ACK, PISS + 1, iss + 1).data(b"abc"));
    let _ = s.out();
    assert_eq!(s.ep.stats().segments_validated, v0 + 1);
    // Far outside the window: a challenge ACK at most, nothing validated.
    s.send(Seg::new(ACK, PISS + 1_000_000_000, iss + 1).data(b"zz"));
    let _ = s.out();
    assert_eq!(s.ep.stats().segments_validated, v0 + 1);
    // An ACK for data never sent fails the ACK check.
    s.send(Seg::new(ACK, PISS + 4, iss + 1_000_000));
    let _ = s.out();
    assert_eq!(s.ep.stats().segments_validated, v0 + 1);
}

/// After `shutdown` the receive side stays open (a server's lingering
/// close relies on it): data the peer sends before and after it
/// acknowledges our FIN is acknowledged and readable, never reset, and the
/// peer's FIN then ends the connection in TIME_WAIT. After `close` the
/// same data is answered with a RST (nobody will read it).
#[test]
fn data_after_shutdown_is_received_but_after_close_is_reset() {
    let no_rst = |o: &[Out]| assert!(o.iter().all(|o| o.flags.0 & RST.0 == 0), "{o:?}");
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.ep.shutdown(id).unwrap();
    assert_eq!(s.out1().flags, FIN);
    // FIN-WAIT-1: two segments, ACKed at once (every second segment).
    s.send(Seg::new(PSHACK, PISS + 1, iss + 1).data(&[1; 1000]));
    s.send(Seg::new(PSHACK, PISS + 1001, iss + 1).data(&[2; 1000]));
    let o = s.out();
    no_rst(&o);
    assert_eq!(o.last().map(|a| a.ack.0), Some(PISS + 2001), "{o:?}");
    assert_eq!(s.state(id), State::FinWait1);
    let mut buf = [0u8; 4096];
    assert_eq!(s.ep.read(id, &mut buf).unwrap(), 2000);
    // FIN-WAIT-2: the peer acknowledged our FIN and goes on sending.
    s.send(Seg::new(PSHACK, PISS + 2001, iss + 2).data(&[3; 1000]));
    s.send(Seg::new(PSHACK, PISS + 3001, iss + 2).data(&[4; 1000]));
    let o = s.out();
    no_rst(&o);
    assert_eq!(o.last().map(|a| a.ack.0), Some(PISS + 4001), "{o:?}");
    assert_eq!(s.state(id), State::FinWait2);
    assert_eq!(s.ep.read(id, &mut buf).unwrap(), 2000);
    s.send(Seg::new(FIN, PISS + 4001, iss + 2));
    let o = s.out();
    no_rst(&o);
    assert_eq!(o.last().map(|a| a.ack.0), Some(PISS + 4002), "{o:?}");
    let ev = s.take_events();
    assert!(ev.contains(&Event::PeerFinished(id)), "{ev:?}");
    assert!(ev.contains(&Event::Closed(id, s.tuple())), "{ev:?}");
    s.ep.close(id).unwrap();
    assert_eq!(s.ep.conn_count(), 0);
    assert_eq!(s.ep.time_wait_count(), 1);
    assert_eq!(s.ep.mem_in_use(), 0);
    assert_eq!(s.ep.stats().rst_out, 0);

    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.ep.close(id).unwrap();
    assert_eq!(s.out1().flags, FIN);
    s.send(Seg::new(PSHACK, PISS + 1, iss + 2).data(&[1; 1000]));
    let r = s.out1();
    assert_eq!((r.flags.0 & RST.0 != 0, r.seq.0), (true, iss + 2), "{r:?}");
    assert_eq!(s.ep.conn_count(), 0);
    assert_eq!(s.ep.stats().rst_out, 1);
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

/// One Reset event for the embryo's 4-tuple, its handle already invalid.
fn assert_embryo_reset(s: &mut Scripted) {
    match s.take_events().as_slice() {
        [Event::Reset(id, t)] => {
            assert_eq!(*t, s.tuple());
            assert!(s.ep.info(*id).is_err());
            assert!(s.ep.close(*id).is_err());
        }
        e => panic!("expected one Reset, got {e:?}"),
    }
}

#[test]
fn rst_exact_in_syn_received_drops_the_embryo() {
    let mut s = server(EndpointConfig::default());
    s.send(Seg::new(SYN, PISS, 0));
    let _ = s.out1();
    assert_eq!(s.ep.conn_count(), 1);
    s.send(Seg::new(RST, PISS + 1, 0));
    s.assert_silent();
    // The application never saw it: nothing left to release, but the
    // Reset event carries the 4-tuple for the poll loop's directory.
    assert_embryo_reset(&mut s);
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
    assert_embryo_reset(&mut s);
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

// ---- RFC 5961 ---------------------------------------------------------------

/// The challenge ACK of an established plain connection.
fn assert_challenge_ack(o: &Out, iss: u32) {
    assert_eq!((o.flags, o.seq.0, o.ack.0), (ACK, iss + 1, PISS + 1));
    assert!(o.payload.is_empty() && o.opt_bytes.is_empty());
}

#[test]
fn rst_in_window_not_exact_gets_challenge_ack() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.send(Seg::new(RST, PISS + 1 + 100, 0));
    assert_challenge_ack(&s.out1(), iss);
    assert_eq!(s.state(id), State::Established);
    assert_eq!(s.ep.stats().challenge_acks_sent, 1);
    assert!(s.take_events().is_empty());
    // Answered with a challenge ACK, not accepted.
    assert_eq!((s.ep.stats().rst_in, s.ep.stats().rst_ignored), (0, 1));
}

#[test]
fn syn_in_established_gets_challenge_ack() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    // Any sequence number, in window or not (RFC 5961 §4.2).
    s.send(Seg::new(SYN, PISS + 1 + 5, 0));
    assert_challenge_ack(&s.out1(), iss);
    s.send(Seg::new(SYN, PISS - 70_000, 0));
    assert_challenge_ack(&s.out1(), iss);
    assert_eq!(s.state(id), State::Established);
}

#[test]
fn data_with_unsent_ack_gets_challenge_ack_and_is_dropped() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.send(Seg::new(PSHACK, PISS + 1, iss + 1000).data(b"blind"));
    assert_challenge_ack(&s.out1(), iss);
    assert_eq!(s.ep.info(id).unwrap().bytes_received, 0);
    assert_eq!(s.ep.stats().bad_acks, 1);
    // Too old an ACK (below SND.UNA - MAX.SND.WND) likewise (RFC 5961 §5.2).
    s.send(Seg::new(PSHACK, PISS + 1, iss.wrapping_sub(200_000)).data(b"blind"));
    assert_challenge_ack(&s.out1(), iss);
    assert_eq!(s.ep.info(id).unwrap().bytes_received, 0);
}

#[test]
fn challenge_acks_are_rate_limited() {
    let cfg = EndpointConfig {
        challenge_ack_rate: 1,
        challenge_ack_burst: 2,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (_, iss) = accept_plain(&mut s);
    for i in 0..5 {
        s.send(Seg::new(RST, PISS + 10 + i, 0));
    }
    let v = s.out();
    assert_eq!(v.len(), 1, "challenge ACKs coalesce per connection: {v:?}");
    assert_challenge_ack(&v[0], iss);
    assert_eq!(s.ep.stats().challenge_acks_sent, 2);
    assert_eq!(s.ep.stats().challenge_acks_suppressed, 3);
    // A second later the bucket has a token again.
    s.advance(Duration::from_secs(1));
    s.send(Seg::new(RST, PISS + 50, 0));
    assert_challenge_ack(&s.out1(), iss);
}

// ---- data, ACKs, SACK -------------------------------------------------------

#[test]
fn delayed_ack_fires_after_the_configured_delay_or_on_the_second_segment() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.send(Seg::new(PSHACK, PISS + 1, iss + 1).data(&[1; 100]));
    s.assert_silent();
    s.advance(Duration::from_millis(39));
    s.assert_silent();
    s.advance(Duration::from_millis(1));
    let a = s.out1();
    assert_eq!((a.flags, a.seq.0, a.ack.0), (ACK, iss + 1, PISS + 101));
    // Every second full segment is ACKed at once (RFC 9293 §3.8.6.3).
    s.send(Seg::new(PSHACK, PISS + 101, iss + 1).data(&[2; 1460]));
    s.assert_silent();
    s.send(Seg::new(PSHACK, PISS + 1561, iss + 1).data(&[3; 1460]));
    let a = s.out1();
    assert_eq!(a.ack.0, PISS + 3021);
    let mut buf = vec![0u8; 4000];
    assert_eq!(s.ep.read(id, &mut buf), Ok(3020));
    assert_eq!(&buf[..100], &[1; 100][..]);
    assert_eq!(&buf[1560..3020], &[3; 1460][..]);
}

#[test]
fn established_data_and_ack_byte_exact() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    assert_eq!(s.ep.write(id, b"hello"), Ok(5));
    let d = s.out1();
    assert_eq!(
        (d.flags, d.seq.0, d.ack.0, d.window),
        (PSHACK, iss + 1, PISS + 1, 65_535)
    );
    assert_eq!(d.payload, b"hello");
    assert!(d.opt_bytes.is_empty());
    s.send(Seg::new(ACK, PISS + 1, iss + 6));
    s.assert_silent();
    let info = s.ep.info(id).unwrap();
    assert_eq!((info.bytes_acked, info.send_queued), (5, 0));
    assert_eq!(s.ep.poll_timeout(), None);
}

fn sack_blocks(blocks: &[(u32, u32)]) -> TcpOptions {
    let mut o = TcpOptions::default();
    for &(l, r) in blocks {
        o.sack_blocks
            .push((
                sluice_netstack::wire::SeqNumber(l),
                sluice_netstack::wire::SeqNumber(r),
            ))
            .unwrap();
    }
    o
}

#[test]
fn out_of_order_data_is_acked_at_once_with_sack_blocks_most_recent_first() {
    let mut s = server(EndpointConfig::default());
    let (id, iss, _) = accept_with(&mut s, full_syn_opts(), ts(PTS + 1, 0));
    let base = PISS + 1;
    s.send(
        Seg::new(PSHACK, base + 1000, iss + 1)
            .opts(ts(PTS + 2, 0))
            .data(&[9; 100]),
    );
    let a = s.out1();
    assert_eq!((a.flags, a.ack.0), (ACK, base));
    // TS.Recent did not move (the segment is above Last.ACK.sent).
    let mut want = vec![1, 1, 8, 10];
    want.extend(be(our_tsval(&s)));
    want.extend(be(PTS + 1));
    want.extend([1, 1, 5, 10]);
    want.extend(be(base + 1000));
    want.extend(be(base + 1100));
    assert_eq!(a.opt_bytes, want);
    s.send(
        Seg::new(PSHACK, base + 2000, iss + 1)
            .opts(ts(PTS + 3, 0))
            .data(&[8; 100]),
    );
    let a = s.out1();
    assert_eq!(
        a.opts
            .sack_blocks
            .as_slice()
            .iter()
            .map(|b| (b.0 .0, b.1 .0))
            .collect::<Vec<_>>(),
        vec![(base + 2000, base + 2100), (base + 1000, base + 1100)]
    );
    // Filling the first hole advances RCV.NXT over the first block.
    s.send(
        Seg::new(PSHACK, base, iss + 1)
            .opts(ts(PTS + 4, 0))
            .data(&[7; 1000]),
    );
    let a = s.out1();
    assert_eq!(a.ack.0, base + 1100);
    assert_eq!(
        a.opts
            .sack_blocks
            .as_slice()
            .iter()
            .map(|b| (b.0 .0, b.1 .0))
            .collect::<Vec<_>>(),
        vec![(base + 2000, base + 2100)]
    );
    assert_eq!(s.ep.info(id).unwrap().recv_queued, 1100);
    assert!(s.ep.stats().ooo_segments >= 2);
}

fn no_ts() -> EndpointConfig {
    EndpointConfig {
        timestamps: false,
        ..EndpointConfig::default()
    }
}

/// A passive handshake with a peer offering SACK and MSS 1000 (no
/// timestamps); returns the connection and the engine's ISS.
fn accept_sack(s: &mut Scripted) -> (ConnId, u32) {
    let syn = TcpOptions {
        mss: Some(1000),
        sack_permitted: true,
        ..TcpOptions::default()
    };
    let (id, iss, _) = accept_with(s, syn, TcpOptions::default());
    (id, iss)
}

#[test]
fn sack_from_peer_drives_retransmission_of_the_hole_only() {
    let mut s = server(no_ts());
    let (id, iss) = accept_sack(&mut s);
    assert_eq!(s.ep.write(id, &[5u8; 5000]), Ok(5000));
    let segs = s.out();
    assert_eq!(segs.len(), 5);
    let d = iss + 1;
    // The first segment is lost; the peer SACKs the other four.
    let o = sack_blocks(&[(d + 1000, d + 5000)]);
    s.send(Seg::new(ACK, PISS + 1, d).opts(o));
    let v = s.out();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!((v[0].seq.0, v[0].payload.len()), (d, 1000));
    assert_eq!(s.ep.stats().fast_retransmits, 1);
    s.send(Seg::new(ACK, PISS + 1, d + 5000));
    s.assert_silent();
    assert_eq!(s.ep.info(id).unwrap().bytes_acked, 5000);
}

/// A SACK handshake without timestamps, MSS 1000, then 1000 bytes sent
/// and acknowledged. The handshake's RTT is the minimum, 5 ms, so RACK's
/// reordering window is 1.25 ms.
fn accept_sack_with_rtt(s: &mut Scripted) -> (ConnId, u32) {
    let (id, iss) = accept_sack(s);
    assert_eq!(s.ep.write(id, &[1u8; 1000]), Ok(1000));
    s.out1();
    s.advance(Duration::from_millis(10));
    s.send(Seg::new(ACK, PISS + 1, iss + 1001));
    s.assert_silent();
    (id, iss)
}

#[test]
fn sack_on_a_data_segment_starts_recovery() {
    let mut s = server(no_ts());
    let (id, iss) = accept_sack_with_rtt(&mut s);
    assert_eq!(s.ep.write(id, &[5u8; 4000]), Ok(4000));
    assert_eq!(s.out().len(), 4);
    let d = iss + 1001;
    // The peer is sending too: its SACK rides on data, so it is never a
    // duplicate ACK, and still shows the first segment lost.
    let o = sack_blocks(&[(d + 1000, d + 4000)]);
    s.send(Seg::new(PSHACK, PISS + 1, d).data(b"hello").opts(o));
    let v = s.out();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(
        (v[0].seq.0, v[0].ack.0, v[0].payload.len()),
        (d, PISS + 6, 1000)
    );
    assert_eq!(s.ep.stats().fast_retransmits, 1);
}

#[test]
fn one_sacked_segment_retransmits_snd_una_after_a_quarter_rtt() {
    let mut s = server(no_ts());
    let (id, iss) = accept_sack_with_rtt(&mut s);
    assert_eq!(s.ep.write(id, &[6u8; 2000]), Ok(2000));
    assert_eq!(s.out().len(), 2);
    let d = iss + 1001;
    // Two segments in flight: never three duplicate ACKs, and one SACKed
    // segment is not IsLost. RACK: the later segment arrived, so after the
    // reordering window the first is lost.
    s.advance(Duration::from_millis(10));
    s.send(Seg::new(ACK, PISS + 1, d).opts(sack_blocks(&[(d + 1000, d + 2000)])));
    s.assert_silent();
    assert_eq!(s.next_timer(), Duration::from_micros(1250));
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (d, 1000));
    assert_eq!(s.ep.stats().fast_retransmits, 1);
    assert_eq!(s.ep.stats().rto, 0);
}

#[test]
fn a_lost_retransmission_is_sent_again_once_later_data_is_sacked() {
    let mut s = server(no_ts());
    let (id, iss) = accept_sack_with_rtt(&mut s);
    assert_eq!(s.ep.write(id, &[7u8; 5000]), Ok(5000));
    assert_eq!(s.out().len(), 5);
    let d = iss + 1001;
    s.advance(Duration::from_millis(10));
    s.send(Seg::new(ACK, PISS + 1, d).opts(sack_blocks(&[(d + 1000, d + 5000)])));
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (d, 1000));
    // New data goes out after the retransmission ...
    assert_eq!(s.ep.write(id, &[8u8; 1000]), Ok(1000));
    let n = s.out1();
    assert_eq!((n.seq.0, n.payload.len()), (d + 5000, 1000));
    // ... and arrives while the retransmission does not: it is lost too.
    s.advance(Duration::from_millis(13));
    s.send(Seg::new(ACK, PISS + 1, d).opts(sack_blocks(&[(d + 1000, d + 6000)])));
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len(), r.payload[0]), (d, 1000, 7));
    let st = s.ep.stats();
    assert_eq!(
        (st.lost_retransmits, st.fast_retransmits, st.rto),
        (1, 1, 0)
    );
    s.send(Seg::new(ACK, PISS + 1, d + 6000));
    s.assert_silent();
    assert_eq!(s.ep.info(id).unwrap().bytes_acked, 7000);
}

#[test]
fn a_tail_loss_probe_draws_the_sack_that_repairs_the_tail_before_the_rto() {
    let mut s = server(no_ts());
    let (id, iss) = accept_sack_with_rtt(&mut s);
    assert_eq!(s.ep.write(id, &[3u8; 3000]), Ok(3000));
    assert_eq!(s.out().len(), 3);
    let d = iss + 1001;
    // The last two segments are lost: nothing above SND.UNA to SACK.
    s.advance(Duration::from_millis(5));
    s.send(Seg::new(ACK, PISS + 1, d + 1000));
    s.assert_silent();
    // No ACK for two SRTTs: the probe resends the last segment.
    let waited = s.next_timer();
    assert!(waited < Duration::from_millis(200), "{waited:?}");
    let p = s.out1();
    assert_eq!((p.seq.0, p.payload.len()), (d + 2000, 1000));
    // Its SACK shows the hole; after the reordering window it is resent.
    s.send(Seg::new(ACK, PISS + 1, d + 1000).opts(sack_blocks(&[(d + 2000, d + 3000)])));
    s.assert_silent();
    assert_eq!(s.next_timer(), Duration::from_micros(1250));
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (d + 1000, 1000));
    s.send(Seg::new(ACK, PISS + 1, d + 3000));
    s.assert_silent();
    let st = s.ep.stats();
    assert_eq!(
        (st.tail_loss_probes, st.fast_retransmits, st.rto),
        (1, 1, 0)
    );
}

/// A receiver that stopped reading holds its window shut and delays its
/// ACKs (Linux does not ACK at once when its window would not grow). The
/// sender is held back by that window, not by loss: no probe (Linux arms
/// none when cwnd has room and data waits), else every delayed ACK draws a
/// spurious retransmission, reported back as a D-SACK.
#[test]
fn no_tail_loss_probe_while_the_peers_window_holds_data_back() {
    let mut s = server(no_ts());
    let (id, iss) = accept_sack_with_rtt(&mut s);
    let d = iss + 1001;
    s.send(Seg::new(ACK, PISS + 1, d).window(2000));
    s.assert_silent();
    assert_eq!(s.ep.write(id, &[4u8; 6000]), Ok(6000));
    assert_eq!(s.out().len(), 2);
    // Well past 2·SRTT (20 ms), short of the RTO: nothing is resent.
    s.advance(Duration::from_millis(60));
    s.assert_silent();
    s.send(Seg::new(ACK, PISS + 1, d + 2000).window(2000));
    assert_eq!(s.out().len(), 2);
    s.advance(Duration::from_millis(60));
    s.assert_silent();
    s.send(Seg::new(ACK, PISS + 1, d + 4000).window(2000));
    assert_eq!(s.out().len(), 2);
    // All data sent, the window no longer the limit: the tail is probed
    // after 2·SRTT (SRTT now includes the delayed ACKs), before the RTO.
    s.next_timer();
    assert_eq!(s.out1().seq.0, d + 5000);
    s.send(Seg::new(ACK, PISS + 1, d + 6000).window(2000));
    s.assert_silent();
    let st = s.ep.stats();
    assert_eq!((st.tail_loss_probes, st.rto, st.retransmits), (1, 0, 1));
}

#[test]
fn after_an_rto_only_the_holes_are_sent_again() {
    let mut s = server(no_ts());
    let (id, iss) = accept_sack(&mut s);
    assert_eq!(s.ep.write(id, &[9u8; 5000]), Ok(5000));
    assert_eq!(s.out().len(), 5);
    let d = iss + 1;
    // Every ACK is lost. After two SRTTs (the handshake's 5 ms) plus 2 ms
    // the tail loss probe resends the last segment; its ACK is lost too,
    // and the RTO fires.
    assert_eq!(s.next_timer(), Duration::from_millis(12));
    let p = s.out1();
    assert_eq!((p.seq.0, p.payload.len()), (d + 4000, 1000));
    assert_eq!(s.ep.stats().tail_loss_probes, 1);
    assert_eq!(s.next_timer(), Duration::from_millis(188));
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (d, 1000));
    assert_eq!(s.ep.stats().rto, 1);
    // The peer held 1000..2000 and 3000..4000 and now 0..1000: the holes
    // left are 2000..3000 and 4000..5000, and only those go again, not
    // the SACKed 3000..4000 (going back to SND.UNA would send it).
    s.send(Seg::new(ACK, PISS + 1, d + 2000).opts(sack_blocks(&[(d + 3000, d + 4000)])));
    let v: Vec<(u32, usize)> = s.out().iter().map(|o| (o.seq.0, o.payload.len())).collect();
    assert_eq!(v, vec![(d + 2000, 1000), (d + 4000, 1000)]);
    s.send(Seg::new(ACK, PISS + 1, d + 5000));
    s.assert_silent();
    assert_eq!(s.ep.info(id).unwrap().bytes_acked, 5000);
}

#[test]
fn sack_blocks_come_out_of_the_payload_not_on_top_of_the_mss() {
    let mut s = server(EndpointConfig::default());
    let (id, iss, _) = accept_with(&mut s, full_syn_opts(), ts(PTS + 1, 0));
    let base = PISS + 1;
    // Three holes in what the peer sends: our segments carry three SACK
    // blocks (28 bytes) besides the timestamp (12).
    for (i, k) in [1000u32, 2000, 3000].iter().enumerate() {
        s.send(
            Seg::new(PSHACK, base + k, iss + 1)
                .opts(ts(PTS + 2 + i as u32, 0))
                .data(&[9; 100]),
        );
    }
    s.out();
    assert_eq!(s.ep.write(id, &[4u8; 4000]), Ok(4000));
    let segs = s.out();
    let mut sent = 0;
    for o in &segs {
        assert_eq!(o.opts.sack_blocks.as_slice().len(), 3);
        assert_eq!(o.opt_bytes.len(), 40);
        // The peer's MSS (1400) bounds data plus options (RFC 6691).
        assert!(
            o.payload.len() + o.opt_bytes.len() <= 1400,
            "{} bytes of data with {} of options",
            o.payload.len(),
            o.opt_bytes.len()
        );
        sent += o.payload.len();
    }
    assert_eq!(segs[0].payload.len(), 1360);
    assert_eq!(sent, 4000);
}

#[test]
fn fast_retransmit_on_third_duplicate_ack() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    assert_eq!(s.ep.write(id, &[4u8; 5 * 1460]), Ok(5 * 1460));
    assert_eq!(s.out().len(), 5);
    let d = iss + 1;
    s.send(Seg::new(ACK, PISS + 1, d));
    s.assert_silent();
    s.send(Seg::new(ACK, PISS + 1, d));
    s.assert_silent();
    s.send(Seg::new(ACK, PISS + 1, d));
    let r = s.out1();
    assert_eq!((r.flags, r.seq.0, r.payload.len()), (PSHACK, d, 1460));
    assert_eq!(s.ep.stats().fast_retransmits, 1);
    let info = s.ep.info(id).unwrap();
    assert!(info.ssthresh < 10 * 1460, "{info:?}");
}

#[test]
fn data_rto_backs_off_exponentially() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    assert_eq!(s.ep.write(id, b"payload"), Ok(7));
    let first = s.out1();
    let mut gaps = Vec::new();
    for _ in 0..4 {
        gaps.push(s.next_timer());
        let r = s.out1();
        assert_eq!((r.seq, r.payload.clone()), (first.seq, b"payload".to_vec()));
    }
    let ms = |m| Duration::from_millis(m);
    assert_eq!(gaps, vec![ms(200), ms(400), ms(800), ms(1600)]);
    assert_eq!(s.ep.stats().rto, 4);
    // An ACK resets the backoff.
    s.send(Seg::new(ACK, PISS + 1, iss + 8));
    assert_eq!(s.ep.info(id).unwrap().rto, ms(200));
}

#[test]
fn zero_window_probes_back_off_and_stop_when_the_window_opens() {
    let mut s = server(EndpointConfig::default());
    let (id, iss) = accept_plain(&mut s);
    s.send(Seg::new(ACK, PISS + 1, iss + 1).window(0));
    assert_eq!(s.ep.write(id, b"stuck"), Ok(5));
    s.assert_silent();
    assert_eq!(s.next_timer(), Duration::from_millis(200));
    let p = s.out1();
    // A probe: one byte below SND.UNA, no data (the Linux style).
    assert_eq!((p.flags, p.seq.0, p.ack.0), (ACK, iss, PISS + 1));
    assert!(p.payload.is_empty());
    s.send(Seg::new(ACK, PISS + 1, iss + 1).window(0));
    assert_eq!(s.next_timer(), Duration::from_millis(400));
    assert_eq!(s.out1().seq.0, iss);
    assert_eq!(s.ep.stats().zero_window_probes, 2);
    s.send(Seg::new(ACK, PISS + 1, iss + 1).window(1000));
    let d = s.out1();
    assert_eq!((d.seq.0, d.payload.as_slice()), (iss + 1, &b"stuck"[..]));
}

#[test]
fn keepalive_probes_then_reset() {
    let cfg = EndpointConfig {
        keepalive: Some(sluice_netstack::tcp::Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(2),
            count: 2,
        }),
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (id, iss) = accept_plain(&mut s);
    assert_eq!(s.next_timer(), Duration::from_secs(10));
    let p = s.out1();
    assert_eq!((p.flags, p.seq.0, p.ack.0), (ACK, iss, PISS + 1));
    assert_eq!(s.next_timer(), Duration::from_secs(2));
    assert_eq!(s.out1().seq.0, iss);
    // An answer restarts the idle timer.
    s.send(Seg::new(ACK, PISS + 1, iss + 1));
    assert_eq!(s.next_timer(), Duration::from_secs(10));
    let _ = s.out1();
    assert_eq!(s.next_timer(), Duration::from_secs(2));
    let _ = s.out1();
    assert_eq!(s.next_timer(), Duration::from_secs(2));
    let r = s.out1();
    assert_eq!(
        (r.flags, r.seq.0, r.ack.0),
        (TcpFlags(RST.0 | ACK.0), iss + 1, PISS + 1)
    );
    assert_eq!(s.take_events(), vec![Event::Reset(id, s.tuple())]);
    assert_eq!(s.ep.stats().keepalive_timeouts, 1);
}

// ---- SYN cookies ------------------------------------------------------------

#[test]
fn syn_cookies_when_backlog_full_and_cookie_ack_restores_options() {
    let cfg = EndpointConfig {
        backlog: 1,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    s.send(Seg::new(SYN, PISS, 0));
    assert_eq!(s.out1().flags, SYNACK);
    assert_eq!(s.ep.conn_count(), 1);
    // The backlog is full: the next SYN gets a cookie, no state.
    s.peer.set_port(40_001);
    s.send(Seg::new(SYN, PISS, 0).opts(full_syn_opts()));
    let c = s.out1();
    assert_eq!((c.flags, c.ack.0, c.window), (SYNACK, PISS + 1, 65_535));
    assert_eq!(s.ep.conn_count(), 1);
    assert_eq!(s.ep.stats().cookies_sent, 1);
    let t = c.opts.timestamp.unwrap();
    let mut want = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    want.extend(be(t.tsval));
    want.extend(be(PTS));
    want.extend([1, 3, 3, 3]);
    assert_eq!(c.opt_bytes, want);
    // A forged ACK is rejected with a RST.
    s.send(Seg::new(ACK, PISS + 1, c.seq.0.wrapping_add(77)).opts(ts(PTS + 1, t.tsval)));
    assert_eq!(s.out1().flags, RST);
    assert_eq!(s.ep.stats().cookies_rejected, 1);
    assert_eq!(s.ep.conn_count(), 1);
    // The real ACK makes an ESTABLISHED connection with the SYN's options.
    s.send(Seg::new(ACK, PISS + 1, c.seq.0 + 1).opts(ts(PTS + 1, t.tsval)));
    let id = match s.take_events().as_slice() {
        [Event::Accepted(id)] => *id,
        e => panic!("{e:?}"),
    };
    assert_eq!(s.ep.stats().cookies_accepted, 1);
    let info = s.ep.info(id).unwrap();
    assert_eq!(info.state, State::Established);
    assert!(info.timestamps && info.sack);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (7, 3));
    // The cookie's MSS table has 1400: exact, less 12 bytes of timestamps.
    assert_eq!(info.mss, 1400 - 12);
    // And it carries data.
    s.send(
        Seg::new(PSHACK, PISS + 1, c.seq.0 + 1)
            .opts(ts(PTS + 2, t.tsval))
            .data(b"hi"),
    );
    assert_eq!(s.ep.info(id).unwrap().recv_queued, 2);
}

#[test]
fn backlog_full_without_cookies_drops_syn() {
    let cfg = EndpointConfig {
        backlog: 1,
        syn_cookies: false,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    s.send(Seg::new(SYN, PISS, 0));
    let _ = s.out1();
    s.peer.set_port(40_001);
    s.send(Seg::new(SYN, PISS, 0));
    s.assert_silent();
    assert_eq!(s.ep.stats().backlog_drops, 1);
}

// ---- memory -----------------------------------------------------------------

#[test]
fn memory_budget_caps_writes_and_the_offered_window() {
    let cfg = EndpointConfig {
        memory_budget: 16 * 1024,
        chunk_size: 4096,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (id, _) = accept_plain(&mut s);
    let n = s.ep.write(id, &[0u8; 100_000]).unwrap();
    assert!(n <= 16 * 1024, "{n}");
    assert!(s.ep.mem_in_use() <= 16 * 1024);
    // With the pool full, no window is offered beyond what it can hold.
    let _ = s.out();
    assert!(s.ep.info(id).unwrap().rcv_wnd <= 16 * 1024);
}

#[test]
fn a_write_that_fills_the_send_buffer_exactly_gets_writable_when_acked() {
    let cfg = EndpointConfig {
        send_buffer: 4 * 1400,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (id, iss) = accept_plain(&mut s);
    assert_eq!(s.ep.write(id, &[7u8; 4 * 1400]), Ok(4 * 1400));
    let sent = s.out();
    assert!(!sent.is_empty());
    let acked: u32 = sent.iter().map(|o| o.payload.len() as u32).sum();
    s.take_events();
    s.send(Seg::new(ACK, PISS + 1, iss + 1 + acked));
    assert_eq!(s.take_events(), vec![Event::Writable(id)]);
}

/// A peer that sends up to the furthest edge it was offered (Linux does,
/// having sent before a later ACK rounds the scaled window down) into an
/// application that never reads: every byte inside an offered edge is
/// taken, the edge shown moves left by less than one scale unit, and a
/// pure ACK carrying the peer's next sequence is still processed at a
/// zero window.
#[test]
fn bytes_inside_any_offered_edge_are_taken_at_a_closing_scaled_window() {
    let mut s = server(EndpointConfig::default());
    let syn = TcpOptions {
        mss: Some(1400),
        window_scale: Some(7),
        ..TcpOptions::default()
    };
    let (id, iss, synack) = accept_with(&mut s, syn, TcpOptions::default());
    let shift = synack.opts.window_scale.expect("window scaling offered");
    assert!(shift > 0);
    let mut furthest = u32::from(synack.window);
    let mut sent = 0u32;
    for _ in 0..1000 {
        let len = 1001.min(furthest - sent);
        if len == 0 {
            break;
        }
        s.send(Seg::new(PSHACK, PISS + 1 + sent, iss + 1).data(&vec![9u8; len as usize]));
        sent += len;
        s.advance(Duration::from_millis(50));
        for o in s.out() {
            let acked = o.ack.0.wrapping_sub(PISS + 1);
            assert_eq!(acked, sent, "bytes inside an offered edge were dropped");
            let edge = acked + (u32::from(o.window) << shift);
            assert!(edge + (1 << shift) > furthest, "{edge} vs {furthest}");
            furthest = furthest.max(edge);
        }
    }
    assert_eq!(furthest, sent, "the window never closed");
    // Our data, then the peer's ACK of it at a zero window.
    assert_eq!(s.ep.write(id, b"reply"), Ok(5));
    let d = s.out1();
    assert_eq!(d.window, 0);
    s.send(Seg::new(ACK, PISS + 1 + sent, iss + 6));
    assert_eq!(s.ep.info(id).unwrap().send_queued, 0, "the ACK was dropped");
}

#[test]
fn unanswered_zero_window_probes_end_the_connection() {
    let cfg = EndpointConfig {
        max_retries: 3,
        ..EndpointConfig::default()
    };
    let mut s = server(cfg);
    let (id, iss) = accept_plain(&mut s);
    s.send(Seg::new(ACK, PISS + 1, iss + 1).window(0));
    assert_eq!(s.ep.write(id, b"stuck"), Ok(5));
    // Answered probes go on as long as the peer answers.
    for _ in 0..6 {
        s.next_timer();
        assert_eq!(s.out1().seq.0, iss);
        s.send(Seg::new(ACK, PISS + 1, iss + 1).window(0));
    }
    assert_eq!(s.state(id), State::Established);
    // Unanswered: after max_retries probes, a RST and a Reset event.
    for _ in 0..3 {
        s.next_timer();
        assert_eq!(s.out1().seq.0, iss);
    }
    s.next_timer();
    let r = s.out1();
    assert_eq!(
        (r.flags, r.seq.0, r.ack.0),
        (TcpFlags(RST.0 | ACK.0), iss + 1, PISS + 1)
    );
    assert_eq!(s.take_events(), vec![Event::Reset(id, s.tuple())]);
    s.ep.close(id).unwrap();
    assert_eq!(s.ep.conn_count(), 0);
    assert_eq!(s.ep.mem_in_use(), 0);
}

/// A writer held back by its send buffer, not by cwnd (everything it wrote
/// is sent, the window has room): the buffer grows to two congestion
/// windows, up to `send_buffer_max` (Linux's tcp_sndbuf_expand).
#[test]
fn a_send_buffer_that_holds_the_writer_back_grows_to_two_windows() {
    let grows = |max: usize| {
        let mut s = server(EndpointConfig {
            send_buffer: 4000,
            send_buffer_max: max,
            ..no_ts()
        });
        let (id, iss) = accept_sack(&mut s);
        assert_eq!(s.ep.write(id, &[1u8; 10_000]), Ok(4000));
        assert_eq!(s.out().len(), 4);
        s.advance(Duration::from_millis(1));
        s.send(Seg::new(ACK, PISS + 1, iss + 1 + 4000));
        s.assert_silent();
        let info = s.ep.info(id).unwrap();
        (info.send_buffer, info.cwnd as usize)
    };
    let (buffer, cwnd) = grows(64_000);
    assert_eq!(buffer, 2 * cwnd);
    assert!(buffer > 4000);
    // Capped by the maximum; none at all when the maximum is the start.
    assert_eq!(grows(12_000).0, 12_000);
    assert_eq!(grows(4000).0, 4000);
}

/// Not when cwnd is what holds the data back: a bigger buffer would only
/// queue more.
#[test]
fn a_send_buffer_does_not_grow_while_cwnd_is_full() {
    let mut s = server(EndpointConfig {
        send_buffer: 40_000,
        send_buffer_max: 1 << 20,
        ..no_ts()
    });
    let (id, iss) = accept_sack(&mut s);
    assert_eq!(s.ep.write(id, &[1u8; 40_000]), Ok(40_000));
    let sent = s.out().len();
    let cwnd = s.ep.info(id).unwrap().cwnd as usize;
    assert_eq!(sent * 1000, cwnd, "the first flight fills cwnd");
    s.advance(Duration::from_millis(1));
    s.send(Seg::new(ACK, PISS + 1, iss + 1 + 1000));
    assert_eq!(s.ep.info(id).unwrap().send_buffer, 40_000);
}

/// A SACK, timestamp and window-scale (peer shift 7) connection with
/// 8000 bytes written: six segments go out, the peer ACKs the first two
/// and shrinks its window to zero (Linux does, when the application
/// lowers SO_RCVBUF), discarding the rest of the flight. Returns the
/// connection and the rel-1 base of our data.
fn data_in_flight_when_the_window_shrinks_to_zero(s: &mut Scripted) -> (ConnId, u32) {
    let (id, iss, _) = accept_with(s, full_syn_opts(), ts(PTS + 1, 0));
    let d = iss + 1;
    let data: Vec<u8> = (0..8000u32).map(|i| i as u8).collect();
    assert_eq!(s.ep.write(id, &data), Ok(8000));
    let v: Vec<(u32, usize)> = s
        .out()
        .iter()
        .map(|o| (o.seq.0 - d, o.payload.len()))
        .collect();
    assert_eq!(
        v,
        vec![
            (0, 1388),
            (1388, 1388),
            (2776, 1388),
            (4164, 1388),
            (5552, 1388),
            (6940, 1060)
        ]
    );
    s.advance(Duration::from_millis(5));
    let tsecr = our_tsval(s) - 5;
    s.send(
        Seg::new(ACK, PISS + 1, d + 2776)
            .window(0)
            .opts(ts(PTS + 2, tsecr)),
    );
    s.assert_silent();
    // The tail loss probe (the last segment) goes into the closed window.
    assert_eq!(s.next_timer(), Duration::from_millis(12));
    let p = s.out1();
    assert_eq!((p.seq.0 - d, p.payload.len()), (6612, 1388));
    (id, d)
}

/// The peer, its window shut, answers each segment with the same ACK.
fn ack_at_zero_window(s: &mut Scripted, ack: u32) {
    s.send(Seg::new(ACK, PISS + 1, ack).window(0).opts(ts(PTS + 3, 0)));
    s.assert_silent();
}

/// The Linux-client stall: the RTOs resend SND.UNA into the zero window
/// (a full segment, then one byte each: the go-back), and the peer
/// discards each. When it opens its window (same ACK, window > 0),
/// SND.UNA goes again at once, within the window, and the RTO restarts
/// from its base. Before, the one-byte go-back had moved SND.NXT past the
/// discarded byte: the open window got data from SND.UNA + 1, and the
/// byte at SND.UNA waited for the backed-off RTO (10 s in the capture).
#[test]
fn snd_una_goes_again_at_once_when_a_shrunk_zero_window_opens() {
    let mut s = server(EndpointConfig::default());
    let (id, d) = data_in_flight_when_the_window_shrinks_to_zero(&mut s);
    let una = d + 2776;
    let mut gaps = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..4 {
        gaps.push(s.next_timer());
        let r = s.out1();
        sent.push((r.seq.0 - d, r.payload.len()));
        ack_at_zero_window(&mut s, una);
    }
    let ms = |m| Duration::from_millis(m);
    assert_eq!(gaps, vec![ms(188), ms(400), ms(800), ms(1600)]);
    assert_eq!(sent, vec![(2776, 1388), (2776, 1), (2776, 1), (2776, 1)]);
    let st = s.ep.stats();
    assert_eq!((st.rto, st.zero_window_probes), (4, 0));
    assert_eq!(s.ep.info(id).unwrap().rto, ms(3200));

    // The window opens: 3 << 7 = 384 bytes, SND.UNA not acknowledged.
    s.advance(ms(100));
    s.send(Seg::new(ACK, PISS + 1, una).window(3).opts(ts(PTS + 4, 0)));
    let r = s.out1();
    assert_eq!((r.flags, r.seq.0, r.ack.0), (PSHACK, una, PISS + 1));
    let want: Vec<u8> = (2776..2776 + 384u32).map(|i| i as u8).collect();
    assert_eq!(r.payload, want);
    s.assert_silent();
    // The RTO restarts from its base: if this one is lost too, SND.UNA
    // goes again after 200 ms, not 3.2 s.
    assert_eq!(s.ep.info(id).unwrap().rto, ms(200));
    assert_eq!(s.next_timer(), ms(200));
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (una, 384));
    // Acknowledged: the go-back goes on from there, one window at a time.
    s.send(
        Seg::new(ACK, PISS + 1, una + 384)
            .window(3)
            .opts(ts(PTS + 5, 0)),
    );
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (una + 384, 384));
    assert_eq!(s.ep.stats().rto, 5);
}

/// The same after a single RTO, whose SACK recovery resent the segment at
/// SND.UNA into the zero window: HighRxt had moved past it, so the open
/// window got the next hole (SND.UNA + 1388) and SND.UNA waited until
/// lost-retransmission detection saw it, an RTT later at best.
#[test]
fn sack_recovery_resends_snd_una_at_once_when_a_shrunk_zero_window_opens() {
    let mut s = server(EndpointConfig::default());
    let (id, d) = data_in_flight_when_the_window_shrinks_to_zero(&mut s);
    let una = d + 2776;
    assert_eq!(s.next_timer(), Duration::from_millis(188));
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (una, 1388));
    ack_at_zero_window(&mut s, una);
    s.advance(Duration::from_millis(50));
    s.send(Seg::new(ACK, PISS + 1, una).window(3).opts(ts(PTS + 4, 0)));
    let r = s.out1();
    assert_eq!((r.flags, r.seq.0, r.payload.len()), (PSHACK, una, 384));
    s.assert_silent();
    assert_eq!(s.ep.info(id).unwrap().rto, Duration::from_millis(200));
    // Acknowledged: the holes above follow, within the window.
    s.send(
        Seg::new(ACK, PISS + 1, una + 384)
            .window(3)
            .opts(ts(PTS + 5, 0)),
    );
    let r = s.out1();
    assert_eq!((r.seq.0, r.payload.len()), (una + 384, 384));
    assert_eq!(s.ep.stats().rto, 1);
}

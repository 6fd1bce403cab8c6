//! sluice-tls against a real rustls client, in memory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use rustls::{AlertDescription, HandshakeKind, ProtocolVersion};
use sluice_app::{App, Close, Time};
use sluice_tls::{new_ticket_key_line, TlsError, TlsServer, TlsSettings};

use common::*;

fn alert(pipe: &Pipe) -> Option<AlertDescription> {
    match &pipe.client_error {
        Some(rustls::Error::AlertReceived(a)) => Some(*a),
        _ => None,
    }
}

#[test]
fn alpn_picks_h2_then_http11_and_none_means_http11() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test", "*.b.test"]);
    let mut h = Harness::new(settings(&[&a]));

    // (offered by the client, agreed)
    type AlpnCase = (&'static [&'static [u8]], Option<&'static [u8]>);
    let cases: [AlpnCase; 4] = [
        (&[b"h2", b"http/1.1"], Some(b"h2")),
        // Server order: h2 wins whatever the client prefers.
        (&[b"http/1.1", b"h2"], Some(b"h2")),
        (&[b"http/1.1"], Some(b"http/1.1")),
        (&[], None),
    ];
    for (offered, expected) in cases {
        let config = client_config(
            &pki,
            ClientOptions {
                alpn: offered,
                ..Default::default()
            },
        );
        let mut pipe = h.connect(&config, "a.test");
        assert!(pipe.handshake_ok(), "{offered:?}: {:?}", pipe.client_error);
        assert_eq!(pipe.client.alpn_protocol(), expected);
        assert_eq!(
            pipe.client.protocol_version(),
            Some(ProtocolVersion::TLSv1_3)
        );
        let ctx = h.last_context();
        assert_eq!(ctx.alpn.as_deref(), expected);
        assert_eq!(ctx.sni.as_deref(), Some("a.test"));
        assert!(ctx.tls);
        assert_eq!(ctx.spiffe_id, None);
        pipe.echo(b"hello");
    }
    let tls = h.stats().tls;
    assert_eq!((tls.alpn_h2, tls.alpn_http11, tls.alpn_none), (2, 1, 1));
    assert_eq!(tls.handshakes_full, 4);

    // ALPN offered, none of ours: refused (RFC 7301).
    let config = client_config(
        &pki,
        ClientOptions {
            alpn: &[b"smtp"],
            ..Default::default()
        },
    );
    let pipe = h.connect(&config, "a.test");
    assert_eq!(alert(&pipe), Some(AlertDescription::NoApplicationProtocol));
    assert_eq!(h.stats().tls.alert_no_application_protocol, 1);
    assert_eq!(h.stats().tls.handshake_failures, 1);
}

#[test]
fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let pki = Pki::new();
    let c = pki.server("c", &["c.test"]);
    let a = pki.server("a", &["a.test", "*.b.test"]);
    let cn_only = pki.server_with("cn", &[], Some("cn.test"), &rcgen::PKCS_ECDSA_P256_SHA256);
    let mut h = Harness::new(settings(&[&c, &a, &cn_only]));
    let config = client_config(
        &pki,
        ClientOptions {
            accept_any: true,
            ..Default::default()
        },
    );

    let cases = [
        ("c.test", &c),
        ("a.test", &a),
        ("x.b.test", &a),
        ("A.Test", &a),
        // A wildcard covers one label, not its parent nor two labels.
        ("b.test", &c),
        ("y.x.b.test", &c),
        ("unknown.test", &c),
        // An IP address: the client sends no SNI.
        ("192.0.2.1", &c),
        // Common name only when there is no SAN.
        ("cn.test", &cn_only),
    ];
    for (name, expected) in cases {
        let pipe = h.connect(&config, name);
        assert!(pipe.handshake_ok(), "{name}: {:?}", pipe.client_error);
        let sent = &pipe.client.peer_certificates().unwrap()[0];
        assert_eq!(sent, &expected.der, "{name}");
    }
    assert_eq!(h.last_context().sni.as_deref(), Some("cn.test"));
}

#[test]
fn a_name_with_two_certificates_gets_one_the_client_can_verify() {
    let pki = Pki::new();
    let rsa = pki.server_with("rsa", &["dual.test"], None, &rcgen::PKCS_RSA_SHA256);
    let ecdsa = pki.server("ecdsa", &["dual.test"]);
    let mut h = Harness::new(settings(&[&rsa, &ecdsa]));
    let any = client_config(
        &pki,
        ClientOptions {
            accept_any: true,
            ..Default::default()
        },
    );
    let pipe = h.connect(&any, "dual.test");
    assert_eq!(pipe.client.peer_certificates().unwrap()[0], rsa.der);
    let ecdsa_only = client_config(
        &pki,
        ClientOptions {
            accept_any: true,
            ecdsa_only: true,
            ..Default::default()
        },
    );
    let pipe = h.connect(&ecdsa_only, "dual.test");
    assert!(pipe.handshake_ok(), "{:?}", pipe.client_error);
    assert_eq!(pipe.client.peer_certificates().unwrap()[0], ecdsa.der);
}

#[test]
fn certificate_verifies_for_its_names() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test", "*.b.test"]);
    let mut h = Harness::new(settings(&[&a]));
    let config = client_config(&pki, ClientOptions::default());
    assert!(h.connect(&config, "x.b.test").handshake_ok());
    let pipe = h.connect(&config, "c.test");
    assert!(matches!(
        pipe.client_error,
        Some(rustls::Error::InvalidCertificate(_))
    ));
}

#[test]
fn rsa_and_ed25519_keys_work() {
    let pki = Pki::new();
    let rsa = pki.server_with("rsa", &["rsa.test"], None, &rcgen::PKCS_RSA_SHA256);
    let ed = pki.server_with("ed", &["ed.test"], None, &rcgen::PKCS_ED25519);
    let mut h = Harness::new(settings(&[&rsa, &ed]));
    let config = client_config(&pki, ClientOptions::default());
    for name in ["rsa.test", "ed.test"] {
        let mut pipe = h.connect(&config, name);
        assert!(pipe.handshake_ok(), "{name}: {:?}", pipe.client_error);
        pipe.echo(name.as_bytes());
    }
}

#[test]
fn tls12_is_refused_by_default_and_accepted_with_the_flag() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let tls12_client = client_config(
        &pki,
        ClientOptions {
            tls12_only: true,
            ..Default::default()
        },
    );

    let mut h = Harness::new(settings(&[&a]));
    let pipe = h.connect(&tls12_client, "a.test");
    assert_eq!(alert(&pipe), Some(AlertDescription::ProtocolVersion));
    assert!(!pipe.server.is_established());
    // The alert was flushed; then a FIN.
    assert_eq!(pipe.server_close(), Close::Graceful);
    let tls = h.stats().tls;
    assert_eq!((tls.handshake_failures, tls.alert_protocol_version), (1, 1));

    let mut h = Harness::new(TlsSettings {
        allow_tls12: true,
        ..settings(&[&a])
    });
    let mut pipe = h.connect(&tls12_client, "a.test");
    assert!(pipe.handshake_ok(), "{:?}", pipe.client_error);
    assert_eq!(
        pipe.client.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_eq!(h.last_context().alpn.as_deref(), Some(&b"h2"[..]));
    pipe.echo(b"over TLS 1.2");
    // TLS 1.2 session tickets resume too.
    let pipe = h.connect(&tls12_client, "a.test");
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(h.stats().tls.handshakes_resumed, 1);
    // TLS 1.3 clients still get TLS 1.3.
    let pipe = h.connect(&client_config(&pki, ClientOptions::default()), "a.test");
    assert_eq!(
        pipe.client.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn tickets_resume_on_another_server_sharing_the_key_file() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let keys = pki.path("ticket.keys");
    let with_keys = TlsSettings {
        ticket_keys_file: Some(keys.clone()),
        ..settings(&[&a])
    };

    // Missing: created with one fresh key, readable by its owner only.
    let mut first = Harness::new(with_keys.clone());
    let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&keys).unwrap();
    let key_lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(key_lines.len(), 1);
    assert_eq!(key_lines[0].len(), 64);

    let config = client_config(&pki, ClientOptions::default());
    let mut pipe = first.connect(&config, "a.test");
    assert!(pipe.handshake_ok());
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Full));
    pipe.echo(b"x"); // the client reads the tickets that followed the handshake

    // A second process (a restart) loading the same file resumes.
    let mut second = Harness::new(with_keys);
    let mut pipe = second.connect(&config, "a.test");
    assert!(pipe.handshake_ok(), "{:?}", pipe.client_error);
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Resumed));
    pipe.echo(b"resumed");
    let tls = second.stats().tls;
    assert_eq!((tls.handshakes_full, tls.handshakes_resumed), (0, 1));
    assert_eq!(second.last_context().alpn.as_deref(), Some(&b"h2"[..]));

    // Without a key file each process has its own key: no resumption.
    let mut other = Harness::new(settings(&[&a]));
    let pipe = other.connect(&config, "a.test");
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Full));
}

#[test]
fn rotated_keys_decrypt_old_tickets_until_removed() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let keys = pki.path("ticket.keys");
    let (k1, k2, k3) = (
        new_ticket_key_line().unwrap(),
        new_ticket_key_line().unwrap(),
        new_ticket_key_line().unwrap(),
    );
    write(&keys, &format!("# first key\n{k1}\n"));
    let mut h = Harness::new(TlsSettings {
        ticket_keys_file: Some(keys.clone()),
        ..settings(&[&a])
    });
    let client_a = client_config(&pki, ClientOptions::default());
    let client_b = client_config(&pki, ClientOptions::default());
    for config in [&client_a, &client_b] {
        let mut pipe = h.connect(config, "a.test");
        assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Full));
        pipe.echo(b"tickets under k1");
    }

    // A new first key: old tickets still open, new ones are sealed by k2.
    write(&keys, &format!("{k2}\n{k1}\n"));
    h.server.reload().unwrap();
    let mut pipe = h.connect(&client_a, "a.test");
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Resumed));
    pipe.echo(b"tickets under k2");

    // k1 removed: a k2 ticket resumes, a k1 ticket is a full handshake.
    write(&keys, &format!("{k2}\n"));
    h.server.reload().unwrap();
    let pipe = h.connect(&client_a, "a.test");
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Resumed));
    let pipe = h.connect(&client_b, "a.test");
    assert!(pipe.handshake_ok());
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Full));

    write(&keys, &format!("{k3}\n"));
    h.server.reload().unwrap();
    let pipe = h.connect(&client_a, "a.test");
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Full));
    let tls = h.stats().tls;
    assert_eq!((tls.handshakes_full, tls.handshakes_resumed), (4, 2));
}

fn mtls_settings(pki: &Pki, files: &ServerFiles, allow: &[&str]) -> TlsSettings {
    TlsSettings {
        client_ca_file: Some(pki.ca_path.clone()),
        spiffe_allow: allow.iter().map(|s| s.to_string()).collect(),
        ticket_keys_file: Some(pki.path("mtls.keys")),
        ..settings(&[files])
    }
}

#[test]
fn mtls_accepts_an_allowed_spiffe_id_and_hands_it_to_the_app() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(mtls_settings(&pki, &a, &["spiffe://good.test/ns/web/"]));
    let good = pki.client(SPIFFE_GOOD);
    let config = client_config(
        &pki,
        ClientOptions {
            cert: Some(&good),
            ..Default::default()
        },
    );
    let mut pipe = h.connect(&config, "a.test");
    assert!(pipe.handshake_ok(), "{:?}", pipe.client_error);
    pipe.echo(b"authenticated");
    assert_eq!(h.last_context().spiffe_id.as_deref(), Some(SPIFFE_GOOD));
    assert_eq!(h.stats().tls.client_certs_accepted, 1);

    // A resumed session keeps its verified identity.
    let pipe = h.connect(&config, "a.test");
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(h.last_context().spiffe_id.as_deref(), Some(SPIFFE_GOOD));
}

#[test]
fn mtls_refuses_other_trust_domains_other_cas_and_no_certificate() {
    let pki = Pki::new();
    let other_ca = Pki::with_ca_name("another test CA");
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(mtls_settings(&pki, &a, &["spiffe://good.test/ns/web/"]));

    let other_domain = pki.client(SPIFFE_OTHER);
    let foreign = other_ca.client(SPIFFE_GOOD);
    let cases = [
        (Some(&other_domain), AlertDescription::AccessDenied),
        (Some(&foreign), AlertDescription::UnknownCA),
        (None, AlertDescription::CertificateRequired),
    ];
    for (cert, expected) in cases {
        let config = client_config(
            &pki,
            ClientOptions {
                cert,
                ..Default::default()
            },
        );
        let mut pipe = h.connect(&config, "a.test");
        // TLS 1.3: the client finished its side before the server judged
        // its certificate; the alert arrives with its first read.
        pipe.client_sends(b"let me in");
        pipe.run();
        assert_eq!(alert(&pipe), Some(expected));
        assert!(!pipe.server.is_established());
        assert_eq!(pipe.server_close(), Close::Graceful);
        assert!(pipe.received.is_empty());
    }
    let tls = h.stats().tls;
    assert_eq!(tls.handshake_failures, 3);
    assert_eq!(tls.client_certs_refused, 3);
    assert_eq!(
        (
            tls.alert_access_denied,
            tls.alert_unknown_ca,
            tls.alert_certificate_required
        ),
        (1, 1, 1)
    );
    assert!(h.contexts.borrow().is_empty());
}

#[test]
fn mtls_without_an_allow_list_takes_any_certificate_of_the_ca() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(mtls_settings(&pki, &a, &[]));
    let other_domain = pki.client(SPIFFE_OTHER);
    let config = client_config(
        &pki,
        ClientOptions {
            cert: Some(&other_domain),
            ..Default::default()
        },
    );
    let mut pipe = h.connect(&config, "a.test");
    pipe.echo(b"hi");
    assert_eq!(h.last_context().spiffe_id.as_deref(), Some(SPIFFE_OTHER));
}

#[test]
fn tickets_do_not_carry_over_to_a_stricter_client_policy() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let keys = pki.path("shared.keys");
    let good = pki.client(SPIFFE_GOOD);
    let config = client_config(
        &pki,
        ClientOptions {
            cert: Some(&good),
            ..Default::default()
        },
    );

    // Issued by a server that asks for no certificate...
    let mut open = Harness::new(TlsSettings {
        ticket_keys_file: Some(keys.clone()),
        ..settings(&[&a])
    });
    let mut pipe = open.connect(&config, "a.test");
    pipe.echo(b"anonymous");

    // ...a ticket does not resume where certificates are required: the
    // client goes through a full handshake and its certificate is checked.
    let mut strict = Harness::new(TlsSettings {
        ticket_keys_file: Some(keys),
        ..mtls_settings(&pki, &a, &["spiffe://good.test/"])
    });
    let mut pipe = strict.connect(&config, "a.test");
    pipe.echo(b"verified");
    assert_eq!(pipe.client.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(
        strict.last_context().spiffe_id.as_deref(),
        Some(SPIFFE_GOOD)
    );
}

#[test]
fn reload_switches_new_connections_and_keeps_old_ones() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let c = pki.server("c", &["c.test"]);
    let live = pki.server("live", &["a.test"]); // the files reloaded
    let mut h = Harness::new(settings(&[&live]));
    // A new client each time: a resumed session would show the
    // certificate of the session it resumes.
    let config = || {
        client_config(
            &pki,
            ClientOptions {
                accept_any: true,
                ..Default::default()
            },
        )
    };

    let mut old = h.connect(&config(), "a.test");
    assert_eq!(old.client.peer_certificates().unwrap()[0], live.der);
    old.echo(b"before");

    std::fs::copy(&c.cert, &live.cert).unwrap();
    std::fs::copy(&c.key, &live.key).unwrap();
    h.server.reload().unwrap();
    assert_eq!(h.server.generation(), 1);
    let new = h.connect(&config(), "a.test");
    assert_eq!(new.client.peer_certificates().unwrap()[0], c.der);
    old.echo(b"old connection still works");

    // A broken file: the reload fails naming it, the last good material stays.
    std::fs::copy(&a.cert, &live.cert).unwrap();
    write(&live.key, "-----BEGIN PRIVATE KEY-----\nnot base64\n");
    let err = h.server.reload().unwrap_err().to_string();
    assert!(err.contains(live.key.to_str().unwrap()), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert_eq!(h.server.generation(), 1);
    let after = h.connect(&config(), "a.test");
    assert_eq!(after.client.peer_certificates().unwrap()[0], c.der);
    old.echo(b"still");
}

#[test]
fn handshake_timeout_aborts() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(settings(&[&a]));
    let mut idle = h.tls_loop.accept(Time::from_millis(1000)).unwrap();
    assert_eq!(idle.deadline(), Some(Time::from_millis(11_000)));
    idle.on_timeout(Time::from_millis(10_999));
    assert_eq!(idle.close(), Close::No);
    idle.on_timeout(Time::from_millis(11_000));
    assert_eq!(idle.close(), Close::Abort);
    assert_eq!(idle.deadline(), None);

    // Half a ClientHello, then nothing: the same.
    let config = client_config(&pki, ClientOptions::default());
    let mut pipe = h.open(&config, "a.test");
    let mut hello = Vec::new();
    pipe.client.write_tls(&mut hello).unwrap();
    assert_eq!(
        pipe.server.on_read(Time::ZERO, &hello[..hello.len() / 2]),
        hello.len() / 2
    );
    assert!(!pipe.server.wants_write());
    pipe.server.on_timeout(Time::ZERO + Duration::from_secs(10));
    assert_eq!(pipe.server.close(), Close::Abort);

    let tls = h.stats().tls;
    assert_eq!((tls.handshake_timeouts, tls.handshake_failures), (2, 0));

    // After the handshake the application's deadline rules (none here).
    let pipe = h.connect(&config, "a.test");
    assert_eq!(pipe.server.deadline(), None);
}

#[test]
fn a_megabyte_each_way_through_small_writes() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(settings(&[&a]));
    let config = client_config(&pki, ClientOptions::default());
    let mut pipe = h.open(&config, "a.test");
    pipe.segment = 1000;
    pipe.run();
    assert!(pipe.handshake_ok());

    let mut data = vec![0u8; 1 << 20];
    let mut x: u32 = 0x1234_5678;
    for byte in &mut data {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    pipe.echo(&data);
    assert_eq!(pipe.received.len(), data.len());
    // Backpressure held: the echo app keeps 16 KiB, rustls about 32 KiB.
    assert!(
        pipe.peak_server_memory < 128 * 1024,
        "{}",
        pipe.peak_server_memory
    );

    // Idle again: small.
    assert!(pipe.server.is_idle());
    pipe.server.release_idle_memory();
    assert!(pipe.server.memory() < 16 * 1024, "{}", pipe.server.memory());
}

#[test]
fn a_stalled_app_pushes_back_on_the_peer() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(settings(&[&a]));
    let config = client_config(&pki, ClientOptions::default());
    let mut pipe = h.connect(&config, "a.test");
    assert!(pipe.handshake_ok());
    let baseline = pipe.server.memory();

    // The app takes nothing: TLS stops taking ciphertext once rustls holds
    // a bounded amount of plaintext, the rest stays with "TCP".
    h.paused.set(true);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    pipe.client_sends(&data);
    pipe.run();
    assert!(
        pipe.untaken_by_server() > 100_000,
        "{}",
        pipe.untaken_by_server()
    );
    let held = pipe.peak_server_memory - baseline;
    assert!(held < 48 * 1024, "{held}");
    assert!(!pipe.server.is_idle());
    assert_eq!(pipe.server.on_read(Time::ZERO, b"more"), 0);

    h.paused.set(false);
    pipe.run();
    assert_eq!(pipe.received, data);

    // Plaintext held while paused reaches the app through poll_write when
    // no more ciphertext comes.
    h.paused.set(true);
    pipe.client_sends(b"held in rustls");
    pipe.run();
    assert_eq!(pipe.untaken_by_server(), 0);
    h.paused.set(false);
    assert!(pipe.server.wants_write());
    pipe.run();
    assert!(pipe.received.ends_with(b"held in rustls"));
}

#[test]
fn close_notify_both_ways() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(settings(&[&a]));
    let config = client_config(&pki, ClientOptions::default());
    let mut pipe = h.connect(&config, "a.test");
    std::io::Write::write_all(&mut pipe.client.writer(), b"last words").unwrap();
    pipe.client.send_close_notify();
    pipe.run();
    // The echo app saw the end after the data, echoed, closed; TLS sent
    // close_notify before saying Graceful.
    assert_eq!(pipe.received, b"last words");
    assert!(pipe.client_saw_close_notify);
    assert_eq!(pipe.server_close(), Close::Graceful);
    assert_eq!(pipe.unread_by_client(), 0);

    // A TCP FIN without close_notify also ends the input.
    let mut pipe = h.connect(&config, "a.test");
    pipe.echo(b"x");
    pipe.server.on_read_eof(Time::ZERO);
    pipe.run();
    assert!(pipe.client_saw_close_notify);
    assert_eq!(pipe.server_close(), Close::Graceful);

    // A FIN before the handshake completed: FIN back, no failure counted.
    let mut early = h.tls_loop.accept(Time::ZERO).unwrap();
    early.on_read_eof(Time::ZERO);
    assert_eq!(early.close(), Close::Graceful);
    assert_eq!(h.stats().tls.handshake_failures, 0);
}

#[test]
fn garbage_gets_an_alert_and_a_close() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(settings(&[&a]));
    let mut app = h.tls_loop.accept(Time::ZERO).unwrap();
    let junk = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    assert_eq!(app.on_read(Time::ZERO, junk), junk.len());
    assert!(app.wants_write());
    assert_eq!(app.close(), Close::No);
    let mut out = [0u8; 100];
    let n = app.poll_write(Time::ZERO, &mut out);
    // A plaintext alert record: type 21.
    assert!(n > 0 && out[0] == 21, "{:?}", &out[..n]);
    assert_eq!(app.close(), Close::Graceful);
    // More input is dropped, not buffered.
    assert_eq!(app.on_read(Time::ZERO, junk), junk.len());
    assert_eq!(h.stats().tls.handshake_failures, 1);
}

#[test]
fn startup_errors_are_one_line_naming_the_file() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let c = pki.server("c", &["c.test"]);
    let one_line = |settings: TlsSettings| -> String {
        let err: TlsError = TlsServer::new(settings).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    };

    let missing = pki.path("missing.crt");
    let text = one_line(TlsSettings::new(&missing, &a.key));
    assert!(text.starts_with(missing.to_str().unwrap()), "{text}");
    assert!(text.contains("No such file"), "{text}");

    // The key file given as the certificate.
    let text = one_line(TlsSettings::new(&a.key, &a.key));
    assert!(
        text.ends_with("no certificate (no PEM CERTIFICATE block)"),
        "{text}"
    );

    let text = one_line(TlsSettings::new(&a.cert, &a.cert));
    assert!(text.contains("a.crt: no private key"), "{text}");

    let text = one_line(TlsSettings::new(&a.cert, &c.key));
    assert!(
        text.ends_with(&format!(
            "c.key: the key does not match the certificate in {}",
            a.cert.display()
        )),
        "{text}"
    );

    // An X25519 key: valid PKCS#8, but it cannot sign.
    let x25519 = pki.path("x25519.key");
    write(
        &x25519,
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VuBCIEIAgUqYfPD9ixJ0OOb/9GHAQHF+zsTjFaXoDXjDMtGItG\n\
         -----END PRIVATE KEY-----\n",
    );
    let text = one_line(TlsSettings::new(&a.cert, &x25519));
    assert!(
        text.contains("x25519.key: unsupported or malformed private key"),
        "{text}"
    );

    let keys = pki.path("bad.keys");
    write(
        &keys,
        &format!("# keys\n{}\nnot-a-key\n", new_ticket_key_line().unwrap()),
    );
    let text = one_line(TlsSettings {
        ticket_keys_file: Some(keys),
        ..settings(&[&a])
    });
    assert!(
        text.ends_with("bad.keys: line 3: expected 64 hex characters (32 bytes), found 9"),
        "{text}"
    );

    let text = one_line(TlsSettings {
        spiffe_allow: vec!["spiffe://good.test/".into()],
        ..settings(&[&a])
    });
    assert!(
        text.starts_with("--tls-spiffe-allow needs --tls-client-ca"),
        "{text}"
    );

    let text = one_line(TlsSettings {
        client_ca_file: Some(a.key.clone()),
        ..settings(&[&a])
    });
    assert!(text.contains("a.key: no certificate"), "{text}");

    let text = one_line(TlsSettings::default());
    assert!(
        text.contains("at least one --tls-cert/--tls-key pair"),
        "{text}"
    );

    let text = one_line(TlsSettings {
        max_fragment_size: Some(20),
        ..settings(&[&a])
    });
    assert!(text.contains("must be 32 to 16389"), "{text}");
}

#[test]
fn small_records_with_a_max_fragment_size() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(TlsSettings {
        max_fragment_size: Some(512),
        ..settings(&[&a])
    });
    let config = client_config(&pki, ClientOptions::default());
    let mut pipe = h.open(&config, "a.test");
    pipe.segment = 700;
    pipe.run();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    pipe.echo(&data);
}

#[test]
fn drain_during_the_handshake_reaches_the_app() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test"]);
    let mut h = Harness::new(settings(&[&a]));
    let config = client_config(&pki, ClientOptions::default());
    let mut pipe = h.open(&config, "a.test");
    pipe.server.drain(Time::ZERO);
    pipe.run();
    // The app was drained as it was made: it closed, close_notify went out.
    assert!(pipe.handshake_ok());
    assert!(pipe.client_saw_close_notify);
    assert_eq!(pipe.server_close(), Close::Graceful);
}

#[test]
fn fuzz_entry_survives_odd_input() {
    sluice_tls::fuzz_server_bytes(&[]);
    sluice_tls::fuzz_server_bytes(&[1]);
    sluice_tls::fuzz_server_bytes(b"\x07\x16\x03\x01\x00\x05hello");
    let mut x: u64 = 42;
    for len in [10usize, 100, 1000, 5000] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        sluice_tls::fuzz_server_bytes(&data);
    }
    // A real ClientHello, split in 3-byte segments.
    let pki = Pki::new();
    let config = client_config(&pki, ClientOptions::default());
    let mut client =
        rustls::ClientConnection::new(config, "fuzz.test".try_into().unwrap()).unwrap();
    let mut hello = vec![3u8];
    client.write_tls(&mut hello).unwrap();
    sluice_tls::fuzz_server_bytes(&hello);
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<TlsServer>();
    is::<Arc<TlsServer>>();
}

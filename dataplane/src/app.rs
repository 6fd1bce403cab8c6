//! Start-up, the reporter, and shutdown.
//!
//! Order matters: signal handlers first (a Ctrl-C during start-up still
//! cleans up), then the XDP program and its maps, then one pinned thread per
//! queue that opens its own socket (so the UMEM is first touched on its own
//! core) and hands a duplicate of the socket's fd back for the XSKMAP. On
//! shutdown the loops stop and close their sockets, then the program is
//! detached and its pins removed, then the final counters are printed.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam::channel;
use sluice_bpf::{Gateway, GatewayOptions, IdList, Interface, L4Proto, XdpMode};
use sluice_xsk::{BindMode, Xsk, XskConfig};
use tracing::{error, info, warn};

use crate::apps::{AppsSetup, Listener};
use crate::cli::{Args, BindArg, CongestionArg, SynCookiesArg, XdpModeArg};
use crate::handoff::{self, Directory, Mailbox};
use crate::report;
use crate::services::{Service, Services};
use crate::stats::{Counters, QueueLabel, SharedCounters};
use crate::tcp_service::{Clock, TcpService, TcpSetup, UpstreamSource};
use crate::upstream;
use crate::worker::{self, LoopConfig};
use sluice_proxy::record::Latency;
use sluice_proxy::ProxySpec;

/// Forwarded segments a loop's mailbox holds before the sender drops them.
const MAILBOX_CAPACITY: usize = 4096;

/// How often the reporter wakes to check for a stop or a dead loop.
const REPORTER_TICK: Duration = Duration::from_millis(50);

struct Loop {
    label: QueueLabel,
    shared: Arc<SharedCounters>,
    handle: JoinHandle<Counters>,
}

pub fn run(mut args: Args) -> Result<()> {
    let proxy_config = upstream::load_config(&args)?;
    if let Some(c) = &proxy_config {
        upstream::add_listeners(&mut args, c);
        if args.http.is_empty() && args.tls.tls.is_empty() {
            bail!("routes need a listener to serve them: give --http ADDR:PORT, --tls ADDR:PORT or a [[listener]]");
        }
    }
    let iface = Interface::lookup(&args.iface)?;
    let queues = select_queues(&args, &iface)?;
    let cores = select_cores(&args, queues.len())?;
    let xsk_config = XskConfig {
        frame_size: args.frame_size,
        frame_count: args.umem_frames,
        ring_size: args.ring_size,
        bind: match args.bind {
            BindArg::Auto => BindMode::Auto,
            BindArg::Copy => BindMode::Copy,
            BindArg::Zerocopy => BindMode::ZeroCopy,
        },
        need_wakeup: args.need_wakeup,
        busy_poll_budget: args.busy_poll.then_some(args.batch),
    };
    xsk_config.validate()?;
    if args.batch == 0 || args.batch > args.ring_size {
        bail!(
            "--batch must be between 1 and --ring-size ({}), got {}",
            args.ring_size,
            args.batch
        );
    }
    let services = build_services(&args);
    if args.udp_echo.is_empty() && args.http.is_empty() && args.tls.tls.is_empty() {
        warn!("no services configured (--udp-echo, --http, --tls): the loops will only count what reaches them");
    }
    let proxy_spec = proxy_config
        .as_ref()
        .map(|c| {
            ProxySpec::from_config(c)
                .map(Arc::new)
                .map_err(|e| anyhow!("{e}"))
        })
        .transpose()?;
    let upstream = proxy_config
        .as_ref()
        .map(|c| upstream::resolve(&args, iface.index, &iface.name, c))
        .transpose()?;
    let access_log = match proxy_config
        .as_ref()
        .and_then(|c| c.proxy.access_log.as_deref())
    {
        Some(path) => Some(crate::access_log::spawn(path)?),
        None => None,
    };
    let latency: Vec<Arc<std::sync::Mutex<Latency>>> = match &proxy_spec {
        Some(s) => (0..queues.len())
            .map(|_| {
                Arc::new(std::sync::Mutex::new(Latency::new(
                    s.routes.len(),
                    s.clusters.len(),
                )))
            })
            .collect(),
        None => Vec::new(),
    };
    let (mut tcp, mailboxes) = build_tcp(
        &args,
        queues.len(),
        proxy_spec.clone(),
        upstream.as_ref().map(|(source, _)| source.clone()),
        None,
        access_log.as_ref().map(|(tx, _)| tx.clone()),
        latency.clone(),
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once (status 1).
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    // SIGHUP: reload the TLS material (the reporter thread does it; the
    // loops pick it up at their next accept).
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;

    let gateway = Gateway::attach(&GatewayOptions {
        iface: iface.clone(),
        mode: match args.xdp_mode {
            XdpModeArg::Native => XdpMode::Native,
            XdpModeArg::Skb => XdpMode::Skb,
        },
        pin_dir: args.pin_dir.clone(),
    })?;
    configure_gateway(
        &gateway,
        &iface,
        &args,
        upstream.as_ref().map(|(source, _)| source),
    )?;
    // The health board lives in the XDP program's `health` map, mapped
    // into this process: the loops read it, the decision component writes
    // it, and the program refuses new connections when its all-ejected
    // flag is set. Every backend is eligible until the decision component
    // says otherwise.
    let health = match &proxy_spec {
        Some(spec) => {
            let words: Arc<dyn sluice_proxy::board::Words> =
                Arc::new(MapWords(gateway.health_words()?));
            let board =
                Arc::new(sluice_proxy::board::Board::new(spec, words).map_err(|e| anyhow!("{e}"))?);
            let (tx, rx) = channel::bounded(crate::health::BATCH_QUEUE);
            Some((board, tx, rx))
        }
        None => None,
    };
    if let (Some(t), Some((board, tx, _))) = (tcp.as_mut(), &health) {
        t.health = Some((Arc::clone(board), tx.clone()));
    }
    let backends_view: crate::health::View = Arc::default();
    let health_thread = match (&health, &proxy_spec, &proxy_config, tcp.as_ref()) {
        (Some((board, _, rx)), Some(spec), Some(config), Some(t)) => Some(crate::health::spawn(
            Arc::clone(spec),
            config,
            Arc::clone(board),
            rx.clone(),
            t.clock,
            Arc::clone(&stop),
            u64::from_le_bytes(random_key()?[..8].try_into().unwrap_or_default()),
            Arc::clone(&backends_view),
        )?),
        _ => None,
    };
    drop(health);
    let neigh_follower = match (upstream, tcp.as_ref()) {
        (Some((_, mut hops)), Some(t)) => {
            upstream::wait_resolved(&mut hops)?;
            Some(upstream::spawn_follower(
                hops,
                t.postman.clone(),
                iface.mac,
                Arc::clone(&stop),
            ))
        }
        _ => None,
    };

    let loop_config = LoopConfig {
        batch: args.batch as usize,
        busy_poll: args.busy_poll,
        poll_timeout: args.poll_timeout(),
        drain_timeout: Duration::from_secs(args.drain_timeout_secs.into()),
    };
    let (loops, start_error) = start_loops(
        &gateway,
        &iface,
        &queues,
        &cores,
        &xsk_config,
        &services,
        tcp.as_ref(),
        mailboxes,
        &loop_config,
        &stop,
    );
    if let Some(e) = start_error {
        stop.store(true, Ordering::Relaxed);
        for l in loops {
            let _ = l.handle.join();
        }
        if let Some(f) = neigh_follower {
            let _ = f.join();
        }
        if let Some(h) = health_thread {
            let _ = h.join();
        }
        drop(gateway);
        return Err(e);
    }
    info!(
        iface = %iface.name,
        queues = ?queues,
        cores = ?cores,
        pin_dir = %gateway.pin_dir().display(),
        "serving; SIGINT or SIGTERM to stop"
    );

    let tls = tcp.as_ref().and_then(|t| t.apps.tls.clone());
    let latency_names = proxy_spec.as_ref().map(|s| {
        (
            s.route_names.clone(),
            s.clusters
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
        )
    });
    let failure = report_until_stopped(
        &args,
        &loops,
        &gateway,
        &stop,
        tls.as_deref(),
        &reload,
        latency_names
            .as_ref()
            .map(|(r, c)| (latency.as_slice(), r.as_slice(), c.as_slice())),
        proxy_spec.is_some().then_some(&backends_view),
    );
    stop.store(true, Ordering::Relaxed);

    let labels: Vec<QueueLabel> = loops.iter().map(|l| l.label).collect();
    let mut finals = Vec::with_capacity(loops.len());
    let mut panicked = None;
    for l in loops {
        match l.handle.join() {
            Ok(c) => finals.push(c),
            Err(_) => {
                panicked = Some(l.label.queue);
                finals.push(l.shared.snapshot());
            }
        }
    }
    if let Some(f) = neigh_follower {
        let _ = f.join();
    }
    if let Some(h) = health_thread {
        let _ = h.join();
    }
    // Every sender of the access log is gone with the loops and the setup:
    // the writer flushes and ends.
    drop(tcp);
    if let Some((tx, h)) = access_log {
        drop(tx);
        let _ = h.join();
    }
    let xdp = gateway.counters().ok();
    gateway
        .detach()
        .context("detaching the XDP program and removing its pins")?;
    info!("XDP program detached, pins removed");
    report::final_report(args.stats_format, &labels, &finals, xdp.as_ref());

    if let Some(q) = panicked {
        bail!("the poll loop of queue {q} panicked");
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(())
}

/// An error as the one line `main` prints: each cause of the chain after
/// ": ", unless the text so far already says it. Messages that embed their
/// source (`... ({source}); use --xdp-mode skb`) would otherwise show it
/// twice, as anyhow's `{:#}` does.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn build_services(args: &Args) -> Services {
    let mut s = Services::default();
    for addr in &args.udp_echo {
        s.add_udp(*addr, Service::UdpEcho);
        if !args.no_icmp_echo {
            s.add_icmp_echo(addr.ip());
        }
    }
    for addr in args.http.iter().chain(&args.tls.tls) {
        if !args.no_icmp_echo {
            s.add_icmp_echo(addr.ip());
        }
    }
    s
}

fn configure_gateway(
    gateway: &Gateway,
    iface: &Interface,
    args: &Args,
    upstream: Option<&UpstreamSource>,
) -> Result<()> {
    gateway.set_config(
        iface.mac,
        upstream.map(|u| (*u.ports.start(), *u.ports.end())),
    )?;
    let mut vip_flags = sluice_bpf::VIP_ANSWER_NEIGH;
    if !args.no_icmp_echo {
        vip_flags |= sluice_bpf::VIP_ICMP_ECHO;
    }
    let listeners = args
        .udp_echo
        .iter()
        .map(|at| (at, L4Proto::Udp))
        .chain(args.http.iter().map(|at| (at, L4Proto::Tcp)))
        .chain(args.tls.tls.iter().map(|at| (at, L4Proto::Tcp)));
    let mut vips: Vec<(std::net::IpAddr, u32)> = Vec::new();
    for (id, (at, proto)) in listeners.enumerate() {
        if !vips.iter().any(|(a, _)| *a == at.ip()) {
            vips.push((at.ip(), vip_flags));
        }
        gateway.add_listener(at.ip(), proto, at.port(), id as u32)?;
    }
    // Replies to upstream connections: steered by port range. The kernel
    // answers ARP/ND for its own addresses; XDP for the others.
    for addr in upstream.map(|u| u.addrs.as_slice()).unwrap_or_default() {
        match vips.iter_mut().find(|(a, _)| a == addr) {
            Some((_, flags)) => *flags |= sluice_bpf::VIP_LOCAL_PORTS,
            None => {
                let mut flags = sluice_bpf::VIP_LOCAL_PORTS;
                if !upstream::is_kernel_address(*addr) {
                    flags |= sluice_bpf::VIP_ANSWER_NEIGH;
                }
                vips.push((*addr, flags));
            }
        }
    }
    for (addr, flags) in vips {
        gateway.add_vip(addr, flags)?;
    }
    Ok(())
}

/// 16 random bytes from the kernel, for the stack's keyed hashes.
fn random_key() -> Result<[u8; 16]> {
    use std::io::Read;
    let mut key = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("reading /dev/urandom for the TCP secrets")?;
    Ok(key)
}

/// The TCP stack's configuration shared by every loop, and one mailbox per
/// loop for segments that land on the wrong queue. None without --http.
fn build_tcp(
    args: &Args,
    nloops: usize,
    proxy: Option<Arc<ProxySpec>>,
    upstream: Option<UpstreamSource>,
    health: Option<(
        Arc<sluice_proxy::board::Board>,
        channel::Sender<crate::health::Batch>,
    )>,
    access_log: Option<channel::Sender<String>>,
    latency: Vec<Arc<std::sync::Mutex<Latency>>>,
) -> Result<(Option<TcpSetup>, Vec<Mailbox>)> {
    let tls = build_tls(args)?;
    if args.http.is_empty() && args.tls.tls.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut seen = std::collections::HashSet::new();
    let listeners: Vec<(std::net::SocketAddr, Listener)> = args
        .http
        .iter()
        .map(|at| (*at, Listener::Http))
        .chain(args.tls.tls.iter().map(|at| (*at, Listener::Tls)))
        .collect();
    for (at, kind) in &listeners {
        let flag = match kind {
            Listener::Http => "--http",
            Listener::Tls => "--tls",
        };
        if !seen.insert(*at) {
            bail!("{flag} {at}: that address and port is already given (--http and --tls listeners must differ)");
        }
        if at.ip().is_unspecified() || at.ip().is_multicast() || at.port() == 0 {
            bail!("{flag} {at}: give a unicast address and a non-zero port");
        }
    }
    let t = &args.tcp;
    let mut engine = sluice_netstack::tcp::EndpointConfig {
        mss: t.tcp_mss,
        send_buffer: t.tcp_send_buffer_kib as usize * 1024,
        send_buffer_max: t.tcp_send_buffer_max_kib as usize * 1024,
        recv_buffer: t.tcp_recv_buffer_kib as usize * 1024,
        backlog: t.tcp_backlog,
        syn_cookies: t.tcp_syn_cookies != SynCookiesArg::Never,
        congestion: match t.tcp_cc {
            CongestionArg::Cubic => sluice_netstack::tcp::cc::Algorithm::Cubic,
            CongestionArg::Newreno => sluice_netstack::tcp::cc::Algorithm::NewReno,
        },
        memory_budget: t.tcp_memory_mib as usize * 1024 * 1024,
        max_connections: t.tcp_max_connections as usize,
        time_wait_max: t.tcp_time_wait_max as usize,
        isn_key: random_key()?,
        cookie_key: random_key()?,
        ..Default::default()
    };
    if let Some(u) = &upstream {
        engine.ephemeral_ports = u.ports.clone();
    }
    if t.tcp_syn_cookies == SynCookiesArg::Always {
        engine.backlog = 0;
    }
    let keepalive = args.keepalive();
    if let Some(idle) = keepalive.tcp_keepalive {
        engine.keepalive = Some(sluice_netstack::tcp::Keepalive {
            idle,
            ..Default::default()
        });
    }
    let (mailboxes, postman) =
        handoff::channels(nloops, MAILBOX_CAPACITY).context("creating the handoff mailboxes")?;
    let mtu = interface_mtu(&args.iface);
    if usize::from(t.tcp_mss) + 40 > mtu {
        warn!(
            mtu,
            "--tcp-mss {} does not fit the MTU of {} with IPv4 and TCP headers: segments are cut to the MTU",
            t.tcp_mss,
            args.iface
        );
    }
    let apps = AppsSetup {
        http: sluice_http::ServerConfig::default(),
        http_timeouts: sluice_http::Timeouts {
            idle: keepalive.http_idle,
            head: secs(args.http_head_timeout_secs),
            progress: secs(args.http_request_timeout_secs),
        },
        h2: build_h2(args, &keepalive),
        tls,
    };
    Ok((
        Some(TcpSetup {
            engine,
            listeners,
            apps,
            clock: Clock::new(),
            directory: Arc::new(Directory::default()),
            postman,
            mtu,
            send_timeout: secs(args.send_timeout_secs),
            upstream,
            proxy,
            health,
            access_log,
            latency,
        }),
        mailboxes,
    ))
}

/// The TLS material of --tls listeners, loaded once for every loop; None
/// without --tls. Each problem is one line naming its file.
fn build_tls(args: &Args) -> Result<Option<Arc<sluice_tls::TlsServer>>> {
    let t = &args.tls;
    if t.tls.is_empty() {
        if !t.tls_cert.is_empty() || !t.tls_key.is_empty() || t.tls_client_ca.is_some() {
            warn!("--tls-cert, --tls-key and --tls-client-ca do nothing without a --tls listener");
        }
        return Ok(None);
    }
    if t.tls_cert.is_empty() {
        bail!("--tls needs a certificate: give --tls-cert FILE and --tls-key FILE");
    }
    if t.tls_cert.len() != t.tls_key.len() {
        bail!(
            "--tls-cert and --tls-key come in pairs: {} certificate(s), {} key(s)",
            t.tls_cert.len(),
            t.tls_key.len()
        );
    }
    let settings = sluice_tls::TlsSettings {
        certs: t
            .tls_cert
            .iter()
            .cloned()
            .zip(t.tls_key.iter().cloned())
            .collect(),
        allow_tls12: t.tls12,
        ticket_keys_file: t.tls_ticket_keys.clone(),
        client_ca_file: t.tls_client_ca.clone(),
        spiffe_allow: t.tls_spiffe_allow.clone(),
        handshake_timeout: Duration::from_secs(t.tls_handshake_timeout_secs.into()),
        max_fragment_size: None,
    };
    let server = sluice_tls::TlsServer::new(settings).map_err(|e| anyhow!("{e}"))?;
    Ok(Some(Arc::new(server)))
}

/// HTTP/2 settings from the --h2-* flags and the keepalive policy.
fn build_h2(args: &Args, keepalive: &crate::cli::KeepalivePolicy) -> sluice_h2::H2Config {
    let h = &args.h2;
    sluice_h2::H2Config {
        initial_stream_window: h.h2_stream_window,
        connection_window: h.h2_connection_window,
        max_frame_size: h.h2_max_frame_size,
        max_concurrent_streams: h.h2_max_concurrent_streams,
        max_header_list_size: h.h2_max_header_list,
        max_send_buffer: h.h2_max_send_buffer as usize,
        ping_interval: keepalive.h2_ping_interval,
        ping_timeout: keepalive.h2_ping_timeout,
        idle_timeout: keepalive.h2_idle,
        stall_timeout: Duration::from_secs(h.h2_stall_timeout_secs.into()),
        head_timeout: secs(args.http_head_timeout_secs).unwrap_or(Duration::from_secs(86_400)),
        ..Default::default()
    }
}

/// The interface's MTU from sysfs (this process's network namespace);
/// Ethernet's 1500 if it cannot be read.
fn interface_mtu(iface: &str) -> usize {
    match std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    {
        Some(m) if m >= 576 => m,
        _ => {
            warn!("cannot read the MTU of {iface}; assuming 1500");
            1500
        }
    }
}

/// A flag in seconds where 0 means "never".
fn secs(n: u32) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n.into()))
}

fn select_queues(args: &Args, iface: &Interface) -> Result<Vec<u32>> {
    let available = iface.rx_queues;
    let queues = match &args.queues {
        Some(q) => q.0.clone(),
        None => (0..available).collect(),
    };
    if queues.is_empty() {
        bail!("{} reports no RX queues", iface.name);
    }
    if let Some(bad) = queues.iter().find(|&&q| q >= available) {
        bail!(
            "queue {bad} does not exist on {} (it has {available} RX queue{}: 0-{})",
            iface.name,
            if available == 1 { "" } else { "s" },
            available.saturating_sub(1)
        );
    }
    Ok(queues)
}

fn select_cores(args: &Args, nqueues: usize) -> Result<Vec<usize>> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .ok_or_else(|| anyhow!("cannot read this process's CPU affinity"))?
        .into_iter()
        .map(|c| c.id)
        .collect();
    match &args.cores {
        Some(IdList(cores)) => {
            if cores.len() != nqueues {
                bail!(
                    "--cores names {} core{} for {nqueues} queue{}: give one core per queue",
                    cores.len(),
                    if cores.len() == 1 { "" } else { "s" },
                    if nqueues == 1 { "" } else { "s" },
                );
            }
            let cores: Vec<usize> = cores.iter().map(|&c| c as usize).collect();
            if let Some(bad) = cores.iter().find(|c| !allowed.contains(c)) {
                bail!("core {bad} is not one this process may run on (allowed: {allowed:?})");
            }
            Ok(cores)
        }
        None => {
            if allowed.is_empty() {
                bail!("no CPU is available to this process");
            }
            if nqueues > allowed.len() {
                warn!(
                    "{nqueues} queues but only {} CPUs: some poll loops share a core",
                    allowed.len()
                );
            }
            Ok((0..nqueues).map(|i| allowed[i % allowed.len()]).collect())
        }
    }
}

type Ready = Result<(OwnedFd, BindMode)>;

#[allow(clippy::too_many_arguments)]
fn start_loops(
    gateway: &Gateway,
    iface: &Interface,
    queues: &[u32],
    cores: &[usize],
    xsk_config: &XskConfig,
    services: &Services,
    tcp: Option<&TcpSetup>,
    mailboxes: Vec<Mailbox>,
    loop_config: &LoopConfig,
    stop: &Arc<AtomicBool>,
) -> (Vec<Loop>, Option<anyhow::Error>) {
    let mut loops = Vec::with_capacity(queues.len());
    let mut first_error = None;
    let nloops = queues.len() as u16;
    let mut mailboxes = mailboxes.into_iter();
    for (index, (&queue, &core)) in queues.iter().zip(cores).enumerate() {
        let tcp = tcp.cloned().zip(mailboxes.next());
        let (ready_tx, ready_rx) = channel::bounded::<Ready>(1);
        let shared = Arc::new(SharedCounters::default());
        let handle = {
            let (iface, xsk_config, services, loop_config) = (
                iface.name.clone(),
                xsk_config.clone(),
                services.clone(),
                loop_config.clone(),
            );
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(stop));
            std::thread::Builder::new()
                .name(format!("sluice-q{queue}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        let _ = ready_tx.send(Err(anyhow!(
                            "cannot pin queue {queue}'s loop to core {core}"
                        )));
                        return Counters::default();
                    }
                    let mut tcp = match tcp
                        .map(|(setup, mailbox)| {
                            TcpService::new(&setup, index as u16, nloops, mailbox)
                        })
                        .transpose()
                    {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Counters::default();
                        }
                    };
                    let mut xsk = match Xsk::open(&iface, queue, &xsk_config) {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return Counters::default();
                        }
                    };
                    // Frames on the fill ring before the socket is in the
                    // XSKMAP, or the first packets find none and are dropped.
                    xsk.refill(0);
                    let fd = xsk.fd().try_clone_to_owned().map_err(anyhow::Error::from);
                    let _ = ready_tx.send(fd.map(|fd| (fd, xsk.bind_mode())));
                    worker::run(
                        &mut xsk,
                        &services,
                        tcp.as_mut(),
                        &loop_config,
                        &shared,
                        &stop,
                    )
                })
                .expect("spawning a poll-loop thread")
        };
        loops.push(Loop {
            label: QueueLabel { queue, core },
            shared,
            handle,
        });
        let ready = ready_rx
            .recv()
            .map_err(|_| anyhow!("the poll loop of queue {queue} died during start-up"))
            .and_then(|r| r);
        match ready {
            Ok((fd, mode)) => {
                if let Err(e) = gateway.register_socket(queue, fd.as_fd()) {
                    first_error = Some(e.into());
                    break;
                }
                info!(queue, core, bind = ?mode, "AF_XDP socket bound");
            }
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    (loops, first_error)
}

/// Print counters every interval until a signal arrives or a loop dies.
/// Returns the error that ended the run early, if any.
/// The `health` map's words as the proxy's board sees them.
struct MapWords(sluice_bpf::SharedWords);

impl sluice_proxy::board::Words for MapWords {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn word(&self, i: usize) -> &std::sync::atomic::AtomicU64 {
        self.0.word(i)
    }
}

type LatencySlots<'a> = (
    &'a [Arc<std::sync::Mutex<Latency>>],
    &'a [String],
    &'a [String],
);

#[allow(clippy::too_many_arguments)]
fn report_until_stopped(
    args: &Args,
    loops: &[Loop],
    gateway: &Gateway,
    stop: &AtomicBool,
    tls: Option<&sluice_tls::TlsServer>,
    reload: &AtomicBool,
    latency: Option<LatencySlots<'_>>,
    backends: Option<&crate::health::View>,
) -> Option<anyhow::Error> {
    let started = Instant::now();
    let labels: Vec<QueueLabel> = loops.iter().map(|l| l.label).collect();
    let mut before: Vec<Counters> = vec![Counters::default(); loops.len()];
    let mut last = started;
    let interval = args.stats_interval();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(REPORTER_TICK);
        if reload.swap(false, Ordering::Relaxed) {
            match tls.map(|t| t.reload()) {
                Some(Ok(())) => {
                    info!("SIGHUP: TLS certificates, keys, client CA and ticket keys reloaded")
                }
                Some(Err(e)) => {
                    error!("SIGHUP: TLS reload failed, keeping the last good material: {e}")
                }
                None => info!("SIGHUP: nothing to reload (no --tls listener)"),
            }
        }
        if stop.load(Ordering::Relaxed) {
            // Loops finishing now are obeying the stop, not dying.
            break;
        }
        if let Some(dead) = loops.iter().find(|l| l.handle.is_finished()) {
            return Some(anyhow!(
                "the poll loop of queue {} stopped unexpectedly",
                dead.label.queue
            ));
        }
        let Some(interval) = interval else { continue };
        let now = Instant::now();
        if now.duration_since(last) < interval {
            continue;
        }
        let snapshot: Vec<Counters> = loops.iter().map(|l| l.shared.snapshot()).collect();
        let xdp = gateway.counters().ok();
        // The interval's latency, merged over the loops.
        let merged = latency.map(|(slots, routes, clusters)| {
            let mut acc = Latency::new(routes.len(), clusters.len());
            for s in slots {
                if let Ok(mut l) = s.lock() {
                    l.drain_into(&mut acc);
                }
            }
            (acc, routes, clusters)
        });
        let report_latency = merged
            .as_ref()
            .map(|(acc, routes, clusters)| report::LatencyReport {
                latency: acc,
                routes,
                clusters,
            });
        report::interval_report(
            report::ReportStyle {
                format: args.stats_format,
                tcp: !args.http.is_empty() || !args.tls.tls.is_empty(),
            },
            now.duration_since(started),
            now.duration_since(last),
            &labels,
            &snapshot,
            &before,
            xdp.as_ref(),
            report_latency.as_ref(),
            backends
                .and_then(|b| b.lock().ok().map(|v| v.clone()))
                .as_ref(),
        );
        before = snapshot;
        last = now;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_and_the_xdp_program_agree_on_the_health_words() {
        use sluice_proxy::board;
        assert_eq!(board::GENERATION_WORD, sluice_bpf::HEALTH_GENERATION);
        assert_eq!(board::FLAGS_WORD, sluice_bpf::HEALTH_FLAGS);
        assert_eq!(
            board::FIRST_CLUSTER_WORD,
            sluice_bpf::HEALTH_FIRST_CLUSTER_WORD
        );
        assert_eq!(board::ALL_EJECTED, sluice_bpf::HEALTH_ALL_EJECTED);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the driver of lo does not support native XDP ({source}); use --xdp-mode skb")]
    struct Embeds {
        source: std::io::Error,
    }

    fn eopnotsupp() -> std::io::Error {
        std::io::Error::from_raw_os_error(95)
    }

    #[test]
    fn error_line_says_each_cause_once() {
        let e = anyhow::Error::new(Embeds {
            source: eopnotsupp(),
        });
        let os = eopnotsupp().to_string();
        let line = error_line(&e);
        assert_eq!(line.matches(&os).count(), 1, "{line}");
        assert_eq!(
            line,
            format!("the driver of lo does not support native XDP ({os}); use --xdp-mode skb")
        );
        // Causes not yet said are kept, in order.
        let e = anyhow::Error::new(eopnotsupp()).context("attaching to gw0");
        assert_eq!(error_line(&e), format!("attaching to gw0: {os}"));
        let e = e.context("starting");
        assert_eq!(error_line(&e), format!("starting: attaching to gw0: {os}"));
    }
}

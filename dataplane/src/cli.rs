//! Command-line flags of `sluice-dataplane` and their validation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sluice_bpf::IdList;

/// sluice dataplane: XDP steering into AF_XDP sockets, one pinned poll loop
/// per NIC queue.
///
/// Attaches sluice's XDP program to --iface, opens one AF_XDP socket per
/// queue, and runs the built-in services on addresses the kernel need not
/// own (the XDP program answers ARP and neighbour solicitations for them).
/// Counters are printed every --stats-interval and at exit. SIGINT/SIGTERM
/// stop the loops, detach the program and remove its pinned maps.
#[derive(Parser, Debug, Clone)]
#[command(name = "sluice-dataplane", version, about, long_about)]
pub struct Args {
    /// Network interface to attach to (e.g. eth0).
    #[arg(long, value_name = "IFACE")]
    pub iface: String,

    /// NIC queues to serve: a list and/or ranges, e.g. "0", "0-3", "0,2,4-5".
    /// Default: every RX queue of the interface.
    #[arg(long, value_name = "LIST")]
    pub queues: Option<IdList>,

    /// CPU cores to pin the poll loops to, one per queue, same syntax as
    /// --queues. Default: spread over the CPUs this process may run on.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<IdList>,

    /// Where the XDP program runs: in the driver (native) or on the generic
    /// skb path (skb), for drivers without XDP support.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    pub xdp_mode: XdpModeArg,

    /// AF_XDP bind mode: zerocopy needs driver support; auto tries zerocopy
    /// and falls back to copy.
    #[arg(long, value_enum, default_value_t = BindArg::Auto)]
    pub bind: BindArg,

    /// Bytes per UMEM frame (power of two, 2048-65536). Bounds the largest
    /// frame the loop can receive.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub frame_size: u32,

    /// UMEM frames per queue; at least twice --ring-size.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pub umem_frames: u32,

    /// Entries in each AF_XDP ring (RX, TX, fill, completion): power of two.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub ring_size: u32,

    /// Most frames taken from the RX ring per loop iteration.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch: u32,

    /// Never sleep: spin on the rings (one core at 100%), and ask the kernel
    /// to busy-poll the device from our syscalls (SO_PREFER_BUSY_POLL).
    #[arg(long)]
    pub busy_poll: bool,

    /// How long an idle loop sleeps in ppoll() before looking again, in
    /// microseconds (ignored with --busy-poll).
    #[arg(long, default_value_t = 1000, value_name = "USECS")]
    pub poll_timeout_us: u64,

    /// Bind with XDP_USE_NEED_WAKEUP, so the loop makes a syscall only when
    /// the kernel asks for one.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub need_wakeup: bool,

    /// bpffs directory for the program's pinned maps.
    /// Default: /sys/fs/bpf/sluice/IFACE.
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,

    /// Seconds between counter reports; 0 reports only at exit.
    #[arg(long, default_value_t = 1.0, value_name = "SECS", value_parser = parse_seconds)]
    pub stats_interval: f64,

    /// Counter report format: a human table, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = StatsFormat::Human)]
    pub stats_format: StatsFormat,

    /// UDP echo service on ADDR:PORT (IPv4, or [IPv6]:PORT); repeatable. The
    /// address becomes a VIP: ARP/ND and ICMP echo are answered for it.
    #[arg(long = "udp-echo", value_name = "ADDR:PORT", value_parser = parse_service_addr)]
    pub udp_echo: Vec<SocketAddr>,

    /// Do not answer ICMP/ICMPv6 echo requests to VIPs.
    #[arg(long)]
    pub no_icmp_echo: bool,

    /// HTTP/1.1 server on ADDR:PORT (IPv4, or [IPv6]:PORT) over sluice's own
    /// TCP stack; repeatable. Routes: GET /bytes/N (N bytes, byte i = i mod
    /// 251), POST /echo (the body back), GET /health. The address becomes a
    /// VIP like --udp-echo's.
    #[arg(long = "http", value_name = "ADDR:PORT", value_parser = parse_service_addr)]
    pub http: Vec<SocketAddr>,

    /// Close an HTTP keep-alive connection idle this long between requests
    /// (HTTP/1.1; HTTP/2 has --h2-idle-timeout-secs); 0: never. Default:
    /// --keepalive-secs, else 60.
    #[arg(long, value_name = "SECS")]
    pub http_idle_timeout_secs: Option<u32>,

    /// One keepalive policy K, from which the rest is derived unless set on
    /// its own: connections without a request close after K
    /// (--http-idle-timeout-secs, --h2-idle-timeout-secs); an HTTP/2 PING
    /// after K/2 (at least 5) of silence (--h2-ping-interval-secs) must be
    /// answered within K/4, between 5 and 20 (--h2-ping-timeout-secs); TCP
    /// keepalive probes after K plus that (--tcp-keepalive-secs).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=86400))]
    pub keepalive_secs: Option<u32>,

    /// On SIGINT/SIGTERM, how long open TCP connections get to finish: new
    /// connections are refused, HTTP/2 connections get GOAWAY, HTTP/1.1
    /// ones close after the request in flight; what is left at the end is
    /// reset. A second signal exits at once. 0: stop at once.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub drain_timeout_secs: u32,

    /// Reset a connection that has output to send but could write none for
    /// this long: the peer stopped reading (nginx's send_timeout). Covers
    /// every protocol, HTTP/2 and TLS included; 0: never.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub send_timeout_secs: u32,

    /// A request head must be complete this long after its first byte
    /// (else 408), however steadily it trickles in (slowloris); like nginx's
    /// client_header_timeout. 0: never.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub http_head_timeout_secs: u32,

    /// Give up on an HTTP connection that moves no bytes for this long inside
    /// a request or response (a half-sent body, stalled readers); 0: never.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub http_request_timeout_secs: u32,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub h2: H2Args,

    #[command(flatten)]
    pub tcp: TcpArgs,
}

/// Flags of the reverse proxy (docs/proxy.md).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Proxy")]
pub struct ProxyArgs {
    /// Reverse-proxy configuration: a TOML file of listeners, routes and
    /// clusters (docs/proxy.md). Errors name the file, line and column.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A route and a cluster in one flag, for quick starts:
    /// PREFIX=SCHEME://ADDR:PORT[,ADDR:PORT...], scheme http (h2c, https
    /// and h2 are planned); repeatable.
    #[arg(long = "proxy", value_name = "PREFIX=URL")]
    pub proxy_flags: Vec<String>,

    /// Local port range of upstream connections, LO-HI. Replies to these
    /// ports on the source addresses are steered by XDP into the loops
    /// (port p belongs to loop p % loops, whatever queue the NIC picks).
    /// When a source address is also the kernel's, keep the range outside
    /// the kernel's net.ipv4.ip_local_port_range (32768-60999 by default).
    #[arg(long, default_value = "61000-65535", value_name = "LO-HI", value_parser = parse_port_range)]
    pub upstream_ports: RangeInclusive<u16>,

    /// Source address of upstream connections, one per family; repeatable.
    /// Default: the kernel's preferred source on the route to the backends
    /// (the interface's own address).
    #[arg(long = "upstream-source", value_name = "ADDR")]
    pub upstream_source: Vec<IpAddr>,
}

/// Flags of TLS termination (docs/tls.md).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// HTTPS on ADDR:PORT (IPv4, or [IPv6]:PORT); repeatable. TLS 1.3 (1.2
    /// with --tls12), ALPN h2 then http/1.1, the same routes as --http. The
    /// address becomes a VIP.
    #[arg(long = "tls", value_name = "ADDR:PORT", value_parser = parse_service_addr)]
    pub tls: Vec<SocketAddr>,

    /// Certificate chain (PEM); repeatable, each with its --tls-key in the
    /// same order. Chosen by SNI from its names; the first is the default.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Vec<PathBuf>,

    /// Private key (PEM: PKCS#8, SEC1 or PKCS#1) of the --tls-cert in the
    /// same position; repeatable.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Vec<PathBuf>,

    /// Also allow TLS 1.2 (ECDHE with AEAD suites only).
    #[arg(long)]
    pub tls12: bool,

    /// Session ticket keys shared by every loop and across restarts: loaded
    /// from FILE, or FILE is created (mode 0600) with a fresh key. The first
    /// key encrypts, every key decrypts (docs/tls.md: format, rotation).
    /// Without it: one random key per process.
    #[arg(long, value_name = "FILE")]
    pub tls_ticket_keys: Option<PathBuf>,

    /// Require client certificates signed by a CA in FILE (PEM) (mTLS).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// With --tls-client-ca: accept only clients whose certificate has a
    /// SPIFFE ID (URI SAN) starting with PREFIX; repeatable.
    #[arg(long, value_name = "PREFIX", requires = "tls_client_ca")]
    pub tls_spiffe_allow: Vec<String>,

    /// A TLS handshake must finish within this long of the connection.
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub tls_handshake_timeout_secs: u32,
}

/// Flags of HTTP/2 (docs/http2.md); h2c on --http listeners, h2 by ALPN on
/// --tls ones.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "HTTP/2")]
pub struct H2Args {
    /// Initial flow-control window of each stream (SETTINGS_INITIAL_WINDOW_SIZE).
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..=0x7fff_ffff))]
    pub h2_stream_window: u32,

    /// Flow-control window of the whole connection.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(65_535..=0x7fff_ffff))]
    pub h2_connection_window: u32,

    /// Largest frame payload the peer may send (SETTINGS_MAX_FRAME_SIZE).
    #[arg(long, default_value_t = 16_384, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(16_384..=16_777_215))]
    pub h2_max_frame_size: u32,

    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub h2_max_concurrent_streams: u32,

    /// Largest decoded header list of a request (SETTINGS_MAX_HEADER_LIST_SIZE).
    #[arg(long, default_value_t = 32 * 1024, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..=16 << 20))]
    pub h2_max_header_list: u32,

    /// Response bytes buffered per stream ahead of the peer's window.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..=64 << 20))]
    pub h2_max_send_buffer: u32,

    /// Send a PING after this many seconds without input; 0: never.
    /// Default: --keepalive-secs / 2 (at least 5), else never.
    #[arg(long, value_name = "SECS")]
    pub h2_ping_interval_secs: Option<u32>,

    /// Close a connection whose PING is not answered within this long.
    /// Default: --keepalive-secs / 4 between 5 and 20, else 20.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub h2_ping_timeout_secs: Option<u32>,

    /// Close (GOAWAY) a connection with no open stream for this long; 0:
    /// never. Default: --keepalive-secs, else 60.
    #[arg(long, value_name = "SECS")]
    pub h2_idle_timeout_secs: Option<u32>,

    /// Reset a stream whose response waits this long behind a zero
    /// flow-control window the client does not open (slow read).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=86400))]
    pub h2_stall_timeout_secs: u32,
}

/// Flags of the TCP stack (per poll loop unless said otherwise).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "TCP stack")]
pub struct TcpArgs {
    /// MSS this side advertises and sends at most (IPv4; IPv6 gets 20 less).
    #[arg(long, default_value_t = 1460, value_name = "BYTES",
          value_parser = clap::value_parser!(u16).range(536..=8960))]
    pub tcp_mss: u16,

    /// Send buffer per connection: unacknowledged plus not yet sent bytes.
    #[arg(long, default_value_t = 256, value_name = "KIB",
          value_parser = clap::value_parser!(u32).range(4..=65536))]
    pub tcp_send_buffer_kib: u32,

    /// The most a send buffer grows to: while a connection is held back by
    /// its send buffer and not by its congestion window, the buffer grows
    /// to two congestion windows (Linux's send-buffer autotuning). At or
    /// below --tcp-send-buffer-kib, buffers do not grow.
    #[arg(long, default_value_t = 4096, value_name = "KIB",
          value_parser = clap::value_parser!(u32).range(4..=65536))]
    pub tcp_send_buffer_max_kib: u32,

    /// Receive window per connection (window scaling is used above 64 KiB).
    #[arg(long, default_value_t = 256, value_name = "KIB",
          value_parser = clap::value_parser!(u32).range(4..=65536))]
    pub tcp_recv_buffer_kib: u32,

    /// Buffer memory all connections of one loop may hold together; when it
    /// runs out, windows shrink and new data waits. Data waiting to be sent
    /// may take three quarters of it; the rest is kept for received data.
    #[arg(long, default_value_t = 1024, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(1..=1048576))]
    pub tcp_memory_mib: u32,

    /// Connections one loop keeps at most (all states but TIME_WAIT).
    #[arg(long, default_value_t = 262144, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_max_connections: u32,

    /// Half-open connections per listener before SYN cookies take over.
    #[arg(long, default_value_t = 4096, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_backlog: u32,

    /// SYN cookies: when the backlog is full (auto), for every SYN
    /// (always), or never (excess SYNs are dropped).
    #[arg(long, value_enum, default_value_t = SynCookiesArg::Auto)]
    pub tcp_syn_cookies: SynCookiesArg,

    /// Congestion control.
    #[arg(long, value_enum, default_value_t = CongestionArg::Cubic)]
    pub tcp_cc: CongestionArg,

    /// Keepalive probes after this many idle seconds; 0 turns them off.
    /// Default: --keepalive-secs plus the PING timeout, else off.
    #[arg(long, value_name = "SECS")]
    pub tcp_keepalive_secs: Option<u32>,

    /// TIME_WAIT entries one loop keeps at most (the oldest are reused).
    #[arg(long, default_value_t = 65536, value_name = "N")]
    pub tcp_time_wait_max: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SynCookiesArg {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CongestionArg {
    Cubic,
    Newreno,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Native,
    Skb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BindArg {
    Auto,
    Copy,
    Zerocopy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    Human,
    Json,
}

/// Timers derived from --keepalive-secs where not set on their own
/// (`Some(0)` and None both mean "never" in the results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepalivePolicy {
    pub tcp_keepalive: Option<Duration>,
    pub h2_ping_interval: Option<Duration>,
    pub h2_ping_timeout: Duration,
    pub http_idle: Option<Duration>,
    pub h2_idle: Option<Duration>,
}

impl Args {
    /// The keepalive policy: each knob as given, else derived from
    /// --keepalive-secs, else its own default.
    pub fn keepalive(&self) -> KeepalivePolicy {
        let k = self.keepalive_secs;
        let secs = |given: Option<u32>, derived: Option<u32>, default: u32| {
            let s = given.or(derived).unwrap_or(default);
            (s > 0).then(|| Duration::from_secs(s.into()))
        };
        // docs/http2.md "--keepalive-secs" says why these ratios.
        let ping_timeout = self
            .h2
            .h2_ping_timeout_secs
            .or(k.map(|k| (k / 4).clamp(5, 20)))
            .unwrap_or(20);
        KeepalivePolicy {
            tcp_keepalive: secs(
                self.tcp.tcp_keepalive_secs,
                k.map(|k| k.saturating_add(ping_timeout)),
                0,
            ),
            h2_ping_interval: secs(self.h2.h2_ping_interval_secs, k.map(|k| (k / 2).max(5)), 0),
            h2_ping_timeout: Duration::from_secs(ping_timeout.into()),
            http_idle: secs(self.http_idle_timeout_secs, k, 60),
            h2_idle: secs(self.h2.h2_idle_timeout_secs, k, 60),
        }
    }

    pub fn stats_interval(&self) -> Option<Duration> {
        (self.stats_interval > 0.0).then(|| Duration::from_secs_f64(self.stats_interval))
    }

    pub fn poll_timeout(&self) -> Duration {
        Duration::from_micros(self.poll_timeout_us)
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86400.0).contains(&v) {
        return Err(format!("{s:?} must be between 0 and 86400 seconds"));
    }
    Ok(v)
}

const ADDR_PORT_EXPECTED: &str =
    "expected ADDR:PORT or [IPv6]:PORT, e.g. 198.18.0.100:80 or [2001:2::100]:80";

/// A service address (`--udp-echo`, `--http`): `IPV4:PORT` or
/// `[IPV6]:PORT`, port 1-65535. The address becomes a VIP, so it must be
/// one a peer can send to: no scope id, not unspecified, not multicast.
/// Each error says what was wrong and what is expected.
/// `LO-HI`, both 1-65535, LO <= HI, at least 2 ports.
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    const EXPECTED: &str = "expected LO-HI, two ports 1-65535 with LO < HI (such as 61000-65535)";
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} has no '-'; {EXPECTED}"))?;
    let port = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(n as u16),
            Ok(n) => Err(format!("port {n} out of range; {EXPECTED}")),
            Err(_) => Err(format!("{p:?} is not a port number; {EXPECTED}")),
        }
    };
    let (lo, hi) = (port(lo)?, port(hi)?);
    if lo >= hi {
        return Err(format!("{lo}-{hi} is empty or one port; {EXPECTED}"));
    }
    Ok(lo..=hi)
}

pub fn parse_service_addr(s: &str) -> Result<SocketAddr, String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "no ']' closes the IPv6 address; {ADDR_PORT_EXPECTED}"
            ));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(if after.is_empty() {
                format!("missing port; {ADDR_PORT_EXPECTED}")
            } else {
                format!("{after:?} after ']' is not ':PORT'; {ADDR_PORT_EXPECTED}")
            });
        };
        if let Some((_, scope)) = host.split_once('%') {
            return Err(format!(
                "scope id '%{scope}' not allowed: a VIP is a global address, not bound to one link"
            ));
        }
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IPv6 address; {ADDR_PORT_EXPECTED}"))?;
        (IpAddr::V6(ip), port)
    } else if s.parse::<IpAddr>().is_ok() {
        let hint = if s.contains(':') {
            " (an IPv6 address with a port is written in brackets: [ADDR]:PORT)"
        } else {
            ""
        };
        return Err(format!("missing port{hint}; {ADDR_PORT_EXPECTED}"));
    } else if let Some((host, port)) = s.rsplit_once(':') {
        if host.contains(':') {
            return Err(format!(
                "an IPv6 address with a port is written in brackets, [ADDR]:PORT; {ADDR_PORT_EXPECTED}"
            ));
        }
        let ip: Ipv4Addr = host
            .parse()
            .map_err(|_| format!("{host:?} is not an IPv4 address; {ADDR_PORT_EXPECTED}"))?;
        (IpAddr::V4(ip), port)
    } else {
        return Err(format!("missing port; {ADDR_PORT_EXPECTED}"));
    };
    if port.is_empty() {
        return Err(format!("missing port; {ADDR_PORT_EXPECTED}"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "port {port:?} is not a number; {ADDR_PORT_EXPECTED}"
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("port {port} out of range: ports are 1-65535")),
    };
    if host.is_unspecified() {
        return Err(format!(
            "{host} is the unspecified address: a VIP must be an address peers send to"
        ));
    }
    if host.is_multicast() {
        return Err(format!(
            "{host} is a multicast address: a VIP must be a unicast address"
        ));
    }
    Ok(SocketAddr::new(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "sluice-dataplane",
            "--iface",
            "veth0",
            "--queues",
            "0-1",
            "--udp-echo",
            "198.18.0.100:7",
            "--udp-echo",
            "[2001:2::100]:7",
            "--need-wakeup",
            "false",
            "--http",
            "198.18.0.100:80",
            "--tcp-cc",
            "newreno",
        ])
        .unwrap();
        assert_eq!(a.http.len(), 1);
        assert_eq!(a.tcp.tcp_cc, CongestionArg::Newreno);
        assert_eq!(a.tcp.tcp_mss, 1460);
        assert_eq!(a.queues, Some(IdList(vec![0, 1])));
        assert_eq!(a.udp_echo.len(), 2);
        assert!(!a.need_wakeup);
        assert_eq!(a.stats_interval(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn keepalive_policy_derives_every_timer_and_each_knob_overrides() {
        let parse = |extra: &[&str]| {
            let mut v = vec!["sluice-dataplane", "--iface", "x"];
            v.extend_from_slice(extra);
            Args::try_parse_from(v).unwrap().keepalive()
        };
        let s = Duration::from_secs;
        let none = parse(&[]);
        assert_eq!(
            none,
            KeepalivePolicy {
                tcp_keepalive: None,
                h2_ping_interval: None,
                h2_ping_timeout: s(20),
                http_idle: Some(s(60)),
                h2_idle: Some(s(60)),
            }
        );
        let k = parse(&["--keepalive-secs", "60"]);
        assert_eq!(
            k,
            KeepalivePolicy {
                tcp_keepalive: Some(s(75)),
                h2_ping_interval: Some(s(30)),
                h2_ping_timeout: s(15),
                http_idle: Some(s(60)),
                h2_idle: Some(s(60)),
            }
        );
        let short = parse(&["--keepalive-secs", "4"]);
        assert_eq!(
            (short.h2_ping_interval, short.h2_ping_timeout),
            (Some(s(5)), s(5))
        );
        assert_eq!(parse(&["--keepalive-secs", "600"]).h2_ping_timeout, s(20));
        let o = parse(&[
            "--keepalive-secs",
            "30",
            "--tcp-keepalive-secs",
            "0",
            "--h2-idle-timeout-secs",
            "0",
            "--http-idle-timeout-secs",
            "7",
            "--h2-ping-timeout-secs",
            "3",
        ]);
        assert_eq!(o.tcp_keepalive, None);
        assert_eq!(o.h2_idle, None);
        assert_eq!(o.http_idle, Some(s(7)));
        assert_eq!(o.h2_ping_timeout, s(3));
        assert_eq!(o.h2_ping_interval, Some(s(15)));
    }

    #[test]
    fn bad_flags_are_rejected() {
        for bad in [
            vec!["--iface", "x", "--udp-echo", "198.18.0.100"],
            vec!["--iface", "x", "--xdp-mode", "hw"],
            vec!["--iface", "x", "--stats-interval", "-1"],
            vec!["--iface", "x", "--queues", "1-0"],
            vec!["--udp-echo", "198.18.0.100:7"],
            vec!["--iface", "x", "--http", "198.18.0.100"],
            vec!["--iface", "x", "--tcp-mss", "100"],
            vec!["--iface", "x", "--tcp-backlog", "0"],
            vec!["--iface", "x", "--tcp-syn-cookies", "maybe"],
            vec!["--iface", "x", "--http", "[fe80::1%2]:80"],
        ] {
            let argv = std::iter::once("sluice-dataplane").chain(bad.iter().copied());
            assert!(Args::try_parse_from(argv).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn port_ranges_parse_and_errors_say_what_is_wrong() {
        assert_eq!(parse_port_range("61000-65535"), Ok(61000..=65535));
        assert_eq!(parse_port_range("1-2"), Ok(1..=2));
        for (s, said) in [
            ("61000", "has no '-'"),
            ("0-10", "port 0 out of range"),
            ("10-70000", "port 70000 out of range"),
            ("a-10", "\"a\" is not a port number"),
            ("10-10", "10-10 is empty or one port"),
            ("20-10", "20-10 is empty or one port"),
        ] {
            let e = parse_port_range(s).expect_err(s);
            assert!(
                e.contains(said) && e.contains("expected LO-HI"),
                "{s:?}: {e}"
            );
        }
    }

    #[test]
    fn service_addresses_parse() {
        for (s, want) in [
            ("198.18.0.100:80", "198.18.0.100:80"),
            ("[2001:2::100]:80", "[2001:2::100]:80"),
            ("10.0.0.1:65535", "10.0.0.1:65535"),
            ("[::ffff:198.18.0.100]:7", "[::ffff:198.18.0.100]:7"),
        ] {
            assert_eq!(parse_service_addr(s), Ok(want.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn service_address_errors_say_what_is_wrong() {
        let expected = "expected ADDR:PORT or [IPv6]:PORT";
        for (s, said) in [
            ("1.2.3.4", "missing port"),
            ("1.2.3.4:", "missing port"),
            ("[2001:2::100]", "missing port"),
            ("[2001:2::100]:", "missing port"),
            (
                "2001:2::100",
                "missing port (an IPv6 address with a port is written in brackets",
            ),
            ("2001:2::100:80", "written in brackets"),
            ("[::1:80", "no ']' closes the IPv6 address"),
            ("[::1]80", "\"80\" after ']' is not ':PORT'"),
            ("[1.2.3.4]:80", "\"1.2.3.4\" is not an IPv6 address"),
            ("1.2.3:80", "\"1.2.3\" is not an IPv4 address"),
            ("gateway:80", "\"gateway\" is not an IPv4 address"),
            ("1.2.3.4:http", "port \"http\" is not a number"),
            ("", "missing port"),
        ] {
            let e = parse_service_addr(s).expect_err(s);
            assert!(e.contains(said), "{s:?}: {e}");
            assert!(e.contains(expected), "{s:?}: {e}");
        }
        for (s, said) in [
            (
                "198.18.0.100:99999",
                "port 99999 out of range: ports are 1-65535",
            ),
            ("198.18.0.100:0", "port 0 out of range"),
            ("[2001:2::100]:70000", "port 70000 out of range"),
            (
                "[fe80::1%2]:80",
                "scope id '%2' not allowed: a VIP is a global address",
            ),
            ("[fe80::1%eth0]:80", "scope id '%eth0' not allowed"),
            ("0.0.0.0:80", "unspecified"),
            ("[::]:80", "unspecified"),
            ("224.0.0.1:80", "multicast"),
            ("[ff02::1]:80", "multicast"),
        ] {
            let e = parse_service_addr(s).expect_err(s);
            assert!(e.contains(said), "{s:?}: {e}");
        }
    }
}

//! The engine's public vocabulary: configuration, handles, events, errors,
//! counters and per-connection information.

use core::net::{IpAddr, SocketAddr};
use core::ops::RangeInclusive;
use core::time::Duration;

use super::cc::Algorithm;
use super::rtt::RttConfig;
use super::tuple::FourTuple;

/// Keepalive probing (RFC 9293 §3.8.4). Off unless configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is reset.
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            count: 9,
        }
    }
}

/// Everything an [`Endpoint`](super::Endpoint) is configured with. Every
/// field has a default; secrets must come from the caller (the defaults are
/// zero keys, fine for tests only).
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// MSS we announce over IPv4 (IPv6 announces 20 bytes less).
    pub mss: u16,
    /// Per-connection send buffer, bytes, at the start (part of the
    /// per-connection memory budget).
    pub send_buffer: usize,
    /// The most a send buffer grows to (autotuning, as Linux's
    /// tcp_sndbuf_expand): while the writer is held back by the buffer,
    /// not by cwnd, the buffer grows to two congestion windows. Equal to
    /// `send_buffer` (or smaller) turns growth off.
    pub send_buffer_max: usize,
    /// Per-connection receive buffer limit, bytes (the largest window we
    /// advertise; part of the per-connection memory budget).
    pub recv_buffer: usize,
    /// Backlog of a `listen` call that passes 0.
    pub backlog: u32,
    /// Answer with SYN cookies when a listener's backlog (its SYN-RECEIVED
    /// connections) is full; when false such SYNs are dropped.
    pub syn_cookies: bool,
    /// Congestion controller of new connections.
    pub congestion: Algorithm,
    /// Longest an ACK is delayed (RFC 9293 §3.8.6.3 allows up to 500 ms).
    pub delayed_ack: Duration,
    /// Keepalive; `None` (the default) turns it off.
    pub keepalive: Option<Keepalive>,
    /// Most TIME_WAIT entries kept; the oldest is dropped beyond it.
    pub time_wait_max: usize,
    /// How long a TIME_WAIT entry lives (2·MSL).
    pub time_wait: Duration,
    /// Orphaned FIN-WAIT-2 (closed by the application) lifetime.
    pub fin_wait2_timeout: Duration,
    /// Global memory budget of the stream buffers of all connections.
    pub memory_budget: usize,
    /// Chunk size of the buffer pool (a power of two).
    pub chunk_size: usize,
    /// RFC 5961 §7 challenge ACKs: per second and burst (shared by all
    /// connections of the endpoint).
    pub challenge_ack_rate: u32,
    pub challenge_ack_burst: u32,
    /// RSTs sent for segments without a connection: per second and burst.
    pub rst_rate: u32,
    pub rst_burst: u32,
    /// Key of the RFC 6528 ISN function and of timestamp offsets.
    pub isn_key: [u8; 16],
    /// Key of SYN cookies (the same on every core of a host).
    pub cookie_key: [u8; 16],
    /// Ephemeral ports for active opens, and this endpoint's core among
    /// `cores` (a port p belongs to core p % cores).
    pub ephemeral_ports: RangeInclusive<u16>,
    pub core: u16,
    pub cores: u16,
    /// RTO estimator bounds.
    pub rtt: RttConfig,
    /// SYN / SYN-ACK retransmissions before giving up.
    pub syn_retries: u32,
    /// Data retransmissions (RTO backoffs) before giving up.
    pub max_retries: u32,
    /// Offer (and accept) timestamps, SACK and window scaling.
    pub timestamps: bool,
    pub sack: bool,
    pub window_scaling: bool,
    /// Most out-of-order ranges held per connection (receive side).
    pub max_ooo_ranges: usize,
    /// Most SACK ranges remembered per connection (send side).
    pub max_sack_ranges: usize,
    /// Timer wheel resolution.
    pub timer_tick: Duration,
    /// Most connections (all states but TIME_WAIT).
    pub max_connections: usize,
    /// Most queued stateless replies (RSTs, cookie SYN-ACKs, TIME_WAIT ACKs).
    pub max_pending_replies: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            mss: 1460,
            send_buffer: 256 * 1024,
            send_buffer_max: 4 * 1024 * 1024,
            recv_buffer: 256 * 1024,
            backlog: 1024,
            syn_cookies: true,
            congestion: Algorithm::Cubic,
            delayed_ack: Duration::from_millis(40),
            keepalive: None,
            time_wait_max: 65_536,
            time_wait: Duration::from_secs(30),
            fin_wait2_timeout: Duration::from_secs(60),
            memory_budget: 256 * 1024 * 1024,
            chunk_size: 4096,
            challenge_ack_rate: 1000,
            challenge_ack_burst: 100,
            rst_rate: 10_000,
            rst_burst: 1000,
            isn_key: [0; 16],
            cookie_key: [0; 16],
            ephemeral_ports: 32768..=60999,
            core: 0,
            cores: 1,
            rtt: RttConfig::default(),
            syn_retries: 6,
            max_retries: 15,
            timestamps: true,
            sack: true,
            window_scaling: true,
            max_ooo_ranges: 32,
            max_sack_ranges: 32,
            timer_tick: Duration::from_millis(1),
            max_connections: 1 << 20,
            max_pending_replies: 4096,
        }
    }
}

/// A connection handle: a slab slot and its generation, so a stale handle
/// never reaches a newer connection in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

impl ConnId {
    /// The slot index (dense, small: usable as an index in the caller's own
    /// per-connection tables).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The handle as one number (for callers that name connections in
    /// their own types), and back.
    pub fn to_bits(self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.slot)
    }

    pub fn from_bits(bits: u64) -> Self {
        Self {
            slot: bits as u32,
            gen: (bits >> 32) as u32,
        }
    }
}

/// RFC 9293 connection states (LISTEN lives in the listener table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

impl State {
    pub const COUNT: usize = 10;

    pub fn index(self) -> usize {
        self as usize
    }

    /// ESTABLISHED and later: a SYN was received and acknowledged.
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::SynSent | State::SynReceived | State::Closed)
    }
}

/// What the application learns from [`Endpoint::poll_event`](super::Endpoint::poll_event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A passive open completed (the handshake's ACK arrived).
    Accepted(ConnId),
    /// An active open completed.
    Connected(ConnId),
    /// New in-order data can be read.
    Readable(ConnId),
    /// Send space freed after a write that did not fit.
    Writable(ConnId),
    /// The peer sent FIN: after the data already readable, no more comes.
    PeerFinished(ConnId),
    /// The connection ended in order (entered TIME_WAIT or CLOSED). Data
    /// not yet read can still be read until `close`.
    Closed(ConnId, FourTuple),
    /// The connection ended abnormally: RST received or sent, or the peer
    /// stopped answering (retransmissions or keepalives exhausted).
    Reset(ConnId, FourTuple),
    /// A TIME_WAIT entry ended (expired or evicted; not when a new SYN
    /// took it over): the 4-tuple is free. A loop that shares flows with
    /// others keeps claiming a tuple until then, so a FIN retransmitted
    /// onto another queue still reaches this TIME_WAIT and gets its ACK.
    TimeWaitEnded(FourTuple),
}

/// Errors of the application-facing calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    /// The handle does not name a live connection (closed and released, or
    /// from another endpoint).
    #[error("no such connection")]
    InvalidConn,
    /// The address is already listened on, or the 4-tuple is in use.
    #[error("address in use")]
    AddrInUse,
    /// The local and remote addresses are not of the same family, or an
    /// address is unspecified where it must not be.
    #[error("invalid address")]
    InvalidAddr,
    /// No ephemeral port left for this core and remote.
    #[error("no ephemeral port available")]
    NoPorts,
    /// The connection table is full.
    #[error("too many connections")]
    TooManyConnections,
    /// Not listened on.
    #[error("not listening")]
    NotListening,
    /// Writing after `shutdown`, or reading/writing in a state that does
    /// not allow it.
    #[error("invalid state")]
    InvalidState,
    /// The connection was reset.
    #[error("connection reset")]
    Reset,
}

/// Result of [`Endpoint::handle_segment`](super::Endpoint::handle_segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A connection or TIME_WAIT entry of this endpoint took the segment.
    Consumed,
    /// Nothing here for this 4-tuple; the endpoint is unchanged.
    NoConnection,
}

/// Result of [`Endpoint::handle_unowned`](super::Endpoint::handle_unowned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unowned {
    /// A SYN to a listener: a SYN-RECEIVED connection was made.
    Created(FourTuple),
    /// A valid SYN-cookie ACK: an ESTABLISHED connection was made.
    CookieAccepted(FourTuple),
    /// The backlog is full: a SYN-cookie SYN-ACK was queued; no state kept.
    CookieSent,
    /// A RST was queued; no state kept.
    Reset,
    /// Dropped silently (a RST, malformed, rate-limited...).
    Dropped,
}

/// One IP packet written by [`Endpoint::poll_transmit`](super::Endpoint::poll_transmit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Bytes written at the start of the buffer (IP header + TCP).
    pub len: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// A snapshot of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub tuple: FourTuple,
    pub state: State,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub srtt: Option<Duration>,
    pub rto: Duration,
    /// The MSS we send with (payload bytes per segment).
    pub mss: u32,
    pub snd_wnd: u32,
    pub rcv_wnd: u32,
    pub retransmits: u64,
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub timestamps: bool,
    pub sack: bool,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// Bytes written but not yet acknowledged.
    pub send_queued: usize,
    /// The send buffer's current size (it grows, see
    /// [`EndpointConfig::send_buffer_max`]).
    pub send_buffer: usize,
    /// Bytes received in order and not yet read.
    pub recv_queued: usize,
}

/// Counters of one endpoint. All monotonic except the gauges at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub segments_in: u64,
    /// Segments that passed the acceptability and ACK checks of an open
    /// connection (RFC 9293, RFC 5961): proof the sender is the peer, not
    /// an off-path spoofer. The loop only re-learns a peer's link-layer
    /// address from such segments.
    pub segments_validated: u64,
    pub segments_out: u64,
    /// Segments dropped for bad lengths, options or address families.
    pub malformed: u64,
    pub retransmits: u64,
    pub rto: u64,
    pub fast_retransmits: u64,
    /// Retransmissions found lost again (data sent after them was SACKed)
    /// and sent once more without waiting for the RTO.
    pub lost_retransmits: u64,
    /// Tail loss probes sent (RFC 8985 §7): no ACK for two SRTTs.
    pub tail_loss_probes: u64,
    pub cookies_sent: u64,
    pub cookies_accepted: u64,
    pub cookies_rejected: u64,
    pub challenge_acks_sent: u64,
    pub challenge_acks_suppressed: u64,
    /// RSTs accepted: they reset a connection (sequence number exactly
    /// RCV.NXT, or an acceptable ACK in SYN-SENT). Rejected ones (out of
    /// window, in window but inexact, in TIME_WAIT, for no connection) are
    /// not counted; the in-window ones drew a challenge ACK.
    pub rst_in: u64,
    /// RSTs that reset nothing: out of window, in window but inexact (a
    /// challenge ACK went out), without ACK in SYN-SENT, in TIME_WAIT
    /// (RFC 1337), or for no connection. Blind injection shows up here.
    pub rst_ignored: u64,
    pub rst_out: u64,
    pub rst_suppressed: u64,
    /// Out-of-window pure ACKs left unanswered by the rate limit.
    pub oow_acks_suppressed: u64,
    pub paws_drops: u64,
    pub bad_acks: u64,
    pub ooo_segments: u64,
    pub ooo_dropped: u64,
    pub dup_segments: u64,
    pub backlog_drops: u64,
    pub time_wait_reuse: u64,
    pub time_wait_evicted: u64,
    pub replies_dropped: u64,
    pub keepalive_timeouts: u64,
    pub zero_window_probes: u64,
    pub connects: u64,
    pub accepts: u64,
    /// Gauges.
    pub mem_in_use: u64,
    pub conns_by_state: [u64; State::COUNT],
    pub time_wait_entries: u64,
}

/// Where an active open comes from: an address (the port is picked from
/// this core's ephemeral range) or an address and port (0 = pick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

impl From<SocketAddr> for LocalAddr {
    fn from(a: SocketAddr) -> Self {
        LocalAddr(a)
    }
}

impl From<IpAddr> for LocalAddr {
    fn from(ip: IpAddr) -> Self {
        LocalAddr(SocketAddr::new(ip, 0))
    }
}

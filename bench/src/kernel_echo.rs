//! Kernel-socket UDP echo: the baseline sluice's AF_XDP echo is compared to.
//!
//! One thread, optionally pinned to a core, serves every listening socket:
//! `recvmmsg` a batch, `sendmmsg` the same buffers back to their senders.
//! Datagrams larger than `buf_size` are counted as truncated and not echoed.
//! Between batches it waits in `poll(2)` (or spins with `spin`), waking at
//! least every 100 ms to check the stop flag and the deadline.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, MsgFlags, MultiHeaders,
    SockaddrStorage,
};
use nix::sys::time::TimeVal;

/// How to run the echo.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Addresses to bind (IPv4 and IPv6; IPv6 sockets are v6-only).
    pub listen: Vec<SocketAddr>,
    /// Core to pin the echo thread to.
    pub core: Option<usize>,
    /// Datagrams per recvmmsg/sendmmsg.
    pub batch: usize,
    /// Bytes per receive buffer; larger datagrams are truncated and dropped.
    pub buf_size: usize,
    /// Busy-poll the sockets instead of sleeping in poll(2).
    pub spin: bool,
    /// SO_RCVBUF and SO_SNDBUF, if set.
    pub sock_buf: Option<usize>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            core: None,
            batch: 64,
            buf_size: 2048,
            spin: false,
            sock_buf: None,
            duration: None,
        }
    }
}

/// Why the echo stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Signal,
    Duration,
}

/// Counters and CPU time of one run.
#[derive(Clone, Debug, Default)]
pub struct EchoStats {
    pub rx_packets: u64,
    /// UDP payload bytes received, at full length for truncated datagrams.
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Datagrams larger than the receive buffer (not echoed).
    pub truncated: u64,
    /// Datagrams the kernel refused to send.
    pub tx_errors: u64,
    /// The most recent sendmmsg error, if any.
    pub last_tx_error: Option<Errno>,
    /// recvmmsg calls that returned at least one datagram.
    pub rx_batches: u64,
    pub wall: Duration,
    /// User and system CPU time of the process during the run (getrusage).
    pub cpu_user: Duration,
    pub cpu_sys: Duration,
    pub core: Option<usize>,
    pub stop: Option<StopReason>,
}

impl EchoStats {
    /// Share of one core the process used while it ran, 0.0 to 1.0 (or more
    /// if other threads were busy).
    pub fn cpu_share(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall == 0.0 {
            0.0
        } else {
            (self.cpu_user + self.cpu_sys).as_secs_f64() / wall
        }
    }

    /// One JSON object, for scripts and the `run` orchestrator.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rx_packets": self.rx_packets,
            "rx_bytes": self.rx_bytes,
            "tx_packets": self.tx_packets,
            "tx_bytes": self.tx_bytes,
            "truncated": self.truncated,
            "tx_errors": self.tx_errors,
            "last_tx_error": self.last_tx_error.map(|e| format!("{e}")),
            "rx_batches": self.rx_batches,
            "wall_s": self.wall.as_secs_f64(),
            "cpu_user_s": self.cpu_user.as_secs_f64(),
            "cpu_sys_s": self.cpu_sys.as_secs_f64(),
            "cpu_share": self.cpu_share(),
            "core": self.core,
            "stop": match self.stop {
                Some(StopReason::Signal) => "signal",
                Some(StopReason::Duration) => "duration",
                None => "error",
            },
        })
    }
}

impl std::fmt::Display for EchoStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wall = self.wall.as_secs_f64();
        let rate = if wall > 0.0 {
            self.rx_packets as f64 / wall
        } else {
            0.0
        };
        writeln!(
            f,
            "rx {} packets {} bytes ({:.0} pkt/s, {:.1} pkt/batch) | tx {} packets {} bytes | truncated {} | tx errors {}{}",
            self.rx_packets,
            self.rx_bytes,
            rate,
            if self.rx_batches > 0 { self.rx_packets as f64 / self.rx_batches as f64 } else { 0.0 },
            self.tx_packets,
            self.tx_bytes,
            self.truncated,
            self.tx_errors,
            self.last_tx_error.map_or_else(String::new, |e| format!(" (last: {e})"))
        )?;
        write!(
            f,
            "cpu user {:.3} s sys {:.3} s over {:.3} s wall ({:.1}% of a core{})",
            self.cpu_user.as_secs_f64(),
            self.cpu_sys.as_secs_f64(),
            wall,
            100.0 * self.cpu_share(),
            self.core
                .map_or_else(String::new, |c| format!(", pinned to core {c}"))
        )
    }
}

/// Pins the calling thread to `core`.
pub fn pin_to_core(core: usize) -> anyhow::Result<()> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    if core >= CpuSet::count() || !allowed.is_set(core).unwrap_or(false) {
        let list: Vec<String> = (0..CpuSet::count())
            .filter(|c| allowed.is_set(*c).unwrap_or(false))
            .map(|c| c.to_string())
            .collect();
        bail!(
            "core {core} is not available to this process (allowed: {})",
            list.join(",")
        );
    }
    let mut set = CpuSet::new();
    set.set(core).context("CpuSet::set")?;
    sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pinning to core {core}"))?;
    Ok(())
}

/// Bound sockets, ready to run.
pub struct EchoServer {
    cfg: EchoConfig,
    sockets: Vec<UdpSocket>,
}

/// Receive-side bookkeeping for one datagram of a batch.
#[derive(Clone, Copy)]
struct Slot {
    index: usize,
    len: usize,
    addr: Option<SockaddrStorage>,
}

impl EchoServer {
    /// Binds every `listen` address.
    pub fn bind(cfg: EchoConfig) -> anyhow::Result<Self> {
        if cfg.listen.is_empty() {
            bail!("kernel-echo needs at least one --listen address");
        }
        if cfg.batch == 0 || cfg.buf_size == 0 {
            bail!("batch and buffer size must be at least 1");
        }
        let mut sockets = Vec::new();
        for addr in &cfg.listen {
            let sock = UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"))?;
            if let Some(n) = cfg.sock_buf {
                setsockopt(&sock, sockopt::RcvBuf, &n).context("SO_RCVBUF")?;
                setsockopt(&sock, sockopt::SndBuf, &n).context("SO_SNDBUF")?;
            }
            sockets.push(sock);
        }
        Ok(Self { cfg, sockets })
    }

    /// The bound addresses (with the ports the kernel chose for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Echoes until `stop` is set or the configured duration has passed.
    /// Pins the calling thread first if a core is configured.
    pub fn run(&mut self, stop: &AtomicBool) -> anyhow::Result<EchoStats> {
        if let Some(core) = self.cfg.core {
            pin_to_core(core)?;
        }
        let batch = self.cfg.batch;
        let buf_size = self.cfg.buf_size;
        let mut bufs = vec![0u8; batch * buf_size];
        // One set of receive headers per socket: nix's recvmmsg does not reset
        // msg_namelen, so headers that last received a 16-byte IPv4 address
        // would truncate the next IPv6 source address to 16 bytes.
        let mut rx_hdrs: Vec<MultiHeaders<SockaddrStorage>> = self
            .sockets
            .iter()
            .map(|_| MultiHeaders::preallocate(batch, None))
            .collect();
        let mut tx_hdrs = MultiHeaders::<SockaddrStorage>::preallocate(batch, None);
        let mut slots: Vec<Slot> = Vec::with_capacity(batch);
        let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(batch);
        let mut stats = EchoStats {
            core: self.cfg.core,
            ..EchoStats::default()
        };
        let fds: Vec<RawFd> = self.sockets.iter().map(|s| s.as_raw_fd()).collect();
        let mut pfds: Vec<PollFd<'_>> = self
            .sockets
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();

        // Which sockets to drain this round; always all of them when spinning.
        let mut ready = vec![true; fds.len()];

        let usage0 = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
        let start = Instant::now();
        let deadline = self.cfg.duration.map(|d| start + d);
        stats.stop = loop {
            if stop.load(Ordering::Relaxed) {
                break Some(StopReason::Signal);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Some(StopReason::Duration);
            }
            if !self.cfg.spin {
                let wait = deadline.map_or(Duration::from_millis(100), |d| {
                    (d - now).min(Duration::from_millis(100))
                });
                let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
                match poll(&mut pfds, PollTimeout::from(ms)) {
                    Ok(0) | Err(Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(e) => return Err(e).context("poll"),
                }
                for (r, p) in ready.iter_mut().zip(&pfds) {
                    *r = p
                        .revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR));
                }
            }
            for ((&fd, &is_ready), rx_hdrs) in fds.iter().zip(&ready).zip(&mut rx_hdrs) {
                if !is_ready {
                    continue;
                }
                // Drain this socket, a bounded number of batches at a time so
                // one busy socket cannot starve the others.
                for _ in 0..64 {
                    let n = recv_batch(fd, &mut bufs, buf_size, rx_hdrs, &mut slots, &mut stats)?;
                    if n > 0 {
                        send_batch(
                            fd,
                            &bufs,
                            buf_size,
                            &mut tx_hdrs,
                            &slots,
                            &mut addrs,
                            &mut stats,
                        )?;
                    }
                    if n < batch {
                        break;
                    }
                }
            }
        };
        stats.wall = start.elapsed();
        let usage1 = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
        stats.cpu_user = tv_delta(usage0.user_time(), usage1.user_time());
        stats.cpu_sys = tv_delta(usage0.system_time(), usage1.system_time());
        Ok(stats)
    }
}

fn tv_delta(a: TimeVal, b: TimeVal) -> Duration {
    let us = |t: TimeVal| t.tv_sec() as i128 * 1_000_000 + t.tv_usec() as i128;
    Duration::from_micros(u64::try_from((us(b) - us(a)).max(0)).unwrap_or(0))
}

/// One non-blocking recvmmsg into `bufs`; fills `slots` with the datagrams
/// to echo and returns how many datagrams arrived (truncated ones included).
fn recv_batch(
    fd: RawFd,
    bufs: &mut [u8],
    buf_size: usize,
    hdrs: &mut MultiHeaders<SockaddrStorage>,
    slots: &mut Vec<Slot>,
    stats: &mut EchoStats,
) -> anyhow::Result<usize> {
    slots.clear();
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
        .chunks_exact_mut(buf_size)
        .map(|c| [IoSliceMut::new(c)])
        .collect();
    // Interrupted or empty: the caller polls again.
    // MSG_TRUNC: the length reported is the datagram's, even when it did not fit.
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
    let res = match recvmmsg(fd, hdrs, iovs.iter_mut(), flags, None) {
        Err(Errno::EINTR | Errno::EAGAIN) => return Ok(0),
        other => other.context("recvmmsg")?,
    };
    let mut n = 0;
    for (index, msg) in res.enumerate() {
        n += 1;
        stats.rx_packets += 1;
        stats.rx_bytes += msg.bytes as u64;
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            stats.truncated += 1;
            continue;
        }
        slots.push(Slot {
            index,
            len: msg.bytes,
            addr: msg.address,
        });
    }
    if n > 0 {
        stats.rx_batches += 1;
    }
    Ok(n)
}

/// Sends every slot back to its sender with sendmmsg (blocking socket).
fn send_batch(
    fd: RawFd,
    bufs: &[u8],
    buf_size: usize,
    hdrs: &mut MultiHeaders<SockaddrStorage>,
    slots: &[Slot],
    addrs: &mut Vec<Option<SockaddrStorage>>,
    stats: &mut EchoStats,
) -> anyhow::Result<()> {
    let mut start = 0;
    while start < slots.len() {
        let pending = &slots[start..];
        let iovs: Vec<[IoSlice<'_>; 1]> = pending
            .iter()
            .map(|s| {
                [IoSlice::new(
                    &bufs[s.index * buf_size..s.index * buf_size + s.len],
                )]
            })
            .collect();
        addrs.clear();
        addrs.extend(pending.iter().map(|s| s.addr));
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        match sendmmsg(fd, hdrs, &iovs, &*addrs, no_cmsgs, MsgFlags::empty()) {
            Ok(res) => {
                let sent = res.count();
                for s in &pending[..sent] {
                    stats.tx_packets += 1;
                    stats.tx_bytes += s.len as u64;
                }
                start += sent.max(1);
                if sent == 0 {
                    stats.tx_errors += 1;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                // Only with a non-blocking socket; drop what is left.
                stats.tx_errors += pending.len() as u64;
                stats.last_tx_error = Some(Errno::EAGAIN);
                break;
            }
            Err(e) => {
                // The first pending datagram failed (e.g. EMSGSIZE): skip it.
                stats.tx_errors += 1;
                stats.last_tx_error = Some(e);
                start += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Echo on loopback (no namespaces, no root): every size comes back intact.
    #[test]
    fn echoes_on_loopback() {
        let cfg = EchoConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            batch: 8,
            buf_size: 1500,
            ..EchoConfig::default()
        };
        let mut server = EchoServer::bind(cfg).unwrap();
        let addr = server.local_addrs()[0];
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || server.run(&stop2).unwrap());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut sent_bytes = 0u64;
        let sizes = [0usize, 1, 64, 1000, 1500];
        for (i, &size) in sizes.iter().enumerate() {
            let msg: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
            client.send_to(&msg, addr).unwrap();
            let mut buf = [0u8; 2000];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, addr);
            assert_eq!(&buf[..n], &msg[..], "size {size}");
            sent_bytes += size as u64;
        }
        // Too large for the 1500-byte buffer: counted, not echoed.
        client.send_to(&[0u8; 1501], addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let stats = t.join().unwrap();
        assert_eq!(stats.rx_packets, sizes.len() as u64 + 1);
        assert_eq!(stats.tx_packets, sizes.len() as u64);
        assert_eq!(stats.tx_bytes, sent_bytes);
        assert_eq!(stats.truncated, 1);
        assert_eq!(stats.stop, Some(StopReason::Signal));
    }

    /// Regression: receive headers shared between an IPv4 and an IPv6 socket
    /// truncated the IPv6 source address, so the echo went nowhere.
    #[test]
    fn echoes_v6_after_v4_on_the_same_server() {
        let cfg = EchoConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
            ..EchoConfig::default()
        };
        let mut server = EchoServer::bind(cfg).unwrap();
        let addrs = server.local_addrs();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || server.run(&stop2).unwrap());
        for (addr, bind) in [
            (addrs[0], "127.0.0.1:0"),
            (addrs[1], "[::1]:0"),
            (addrs[0], "127.0.0.1:0"),
        ] {
            let client = UdpSocket::bind(bind).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            client.send_to(b"ping", addr).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = client.recv_from(&mut buf).expect("echo");
            assert_eq!((&buf[..n], from), (&b"ping"[..], addr));
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(t.join().unwrap().tx_packets, 3);
    }

    #[test]
    fn spinning_echo_stops_after_duration() {
        let cfg = EchoConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            duration: Some(Duration::from_millis(200)),
            spin: true,
            ..EchoConfig::default()
        };
        let mut server = EchoServer::bind(cfg).unwrap();
        let stats = server.run(&AtomicBool::new(false)).unwrap();
        assert_eq!(stats.stop, Some(StopReason::Duration));
        assert!(stats.wall >= Duration::from_millis(200));
    }
}

//! The chaos program: a fault injector for any interface (this project's
//! replacement for netem). See `src/bpf/chaos.bpf.c` for what it does to
//! packets and in which order.
//!
//! [`Chaos::attach`] loads it, writes the configuration and attaches the XDP
//! program (ingress) and, unless turned off, the TCX egress program
//! (duplication) through BPF links. Both links are file descriptors owned by
//! the [`Chaos`] value: dropping it detaches everything, and so does the
//! process exiting in any way (panic, SIGKILL); no qdisc or tc filter is ever
//! created.

use std::fmt;
use std::net::IpAddr;
use std::ops::Index;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use sluice_xsk::link::{TcxDirection, TcxLink, XdpLink};

use crate::abi::{
    self, addr16, AbiType, Be16, ChaosConfigValue, ChaosCounter, ChaosState, Counter,
};
use crate::error::{BpfError, Result};
use crate::gateway::{attach_error, detach_link, TestRun};
use crate::iface::Interface;
use crate::object::{self, chaos_maps, Loaded};
use crate::system::{self, InterfaceLock};
use crate::XdpMode;

/// Which SYN-ACKs to drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynackDrop {
    /// Every SYN-ACK: no connection through the interface completes.
    All,
    /// The first N after the configuration was written (1..u32::MAX-1);
    /// later ones pass, so connections complete by retransmission.
    First(u32),
}

/// What the chaos program does. Rates are in parts per million (see
/// [`ppm_from_percent`]); `Default` does nothing but count TCP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChaosConfig {
    /// Drop matching packets on ingress.
    pub drop_ppm: u32,
    /// Drop SYN-ACKs on ingress.
    pub drop_synack: Option<SynackDrop>,
    /// Rewrite the MSS option of incoming SYNs and SYN-ACKs (checksum fixed).
    pub mss: Option<u16>,
    /// Turn incoming TCP segments (not SYN, not RST) into RSTs.
    pub rst_ppm: u32,
    /// Added to the sequence number of forged RSTs (0: the segment's own,
    /// which the receiver accepts; other values are out of place and draw
    /// a challenge ACK or are ignored, RFC 5961).
    pub rst_seq_offset: u32,
    /// Flip the last byte of incoming L4 segments, leaving the checksum stale
    /// (the receiver drops them).
    pub corrupt_ppm: u32,
    /// Send matching outgoing packets twice (needs the egress hook).
    pub dup_ppm: u32,
    /// Act on every IPv4/IPv6 packet (ICMP, UDP, ...), not only TCP.
    pub all_ip: bool,
    /// Only TCP/UDP with this source or destination port.
    pub port: Option<u16>,
    /// Only packets with this source or destination address.
    pub addr: Option<IpAddr>,
}

/// A percentage (0..=100, fractions allowed) in parts per million.
pub fn ppm_from_percent(percent: f64) -> Result<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(BpfError::Invalid(format!(
            "percentage {percent} is out of range: give a number from 0 to 100"
        )));
    }
    Ok((percent * 10_000.0).round() as u32)
}

impl ChaosConfig {
    /// Checks ranges and builds the map value.
    pub fn to_value(&self) -> Result<ChaosConfigValue> {
        for (name, ppm) in [
            ("drop", self.drop_ppm),
            ("rst", self.rst_ppm),
            ("corrupt", self.corrupt_ppm),
            ("dup", self.dup_ppm),
        ] {
            if ppm > abi::CHAOS_PPM_MAX {
                return Err(BpfError::Invalid(format!(
                    "{name} rate {ppm} ppm is above {} (100%)",
                    abi::CHAOS_PPM_MAX
                )));
            }
        }
        let synack_drop = match self.drop_synack {
            None => 0,
            Some(SynackDrop::All) => abi::CHAOS_SYNACK_ALL,
            Some(SynackDrop::First(n)) if n == 0 || n == abi::CHAOS_SYNACK_ALL => {
                return Err(BpfError::Invalid(format!(
                    "drop the first {n} SYN-ACKs: give 1 to {}, or all",
                    abi::CHAOS_SYNACK_ALL - 1
                )))
            }
            Some(SynackDrop::First(n)) => n,
        };
        if self.mss == Some(0) {
            return Err(BpfError::Invalid("MSS 0 is not a valid MSS".into()));
        }
        let mut flags = 0;
        if self.all_ip {
            flags |= abi::CHAOS_ALL_IP;
        }
        if self.port.is_some() {
            flags |= abi::CHAOS_PORT;
        }
        if self.addr.is_some() {
            flags |= abi::CHAOS_ADDR;
        }
        if self.mss.is_some() {
            flags |= abi::CHAOS_MSS;
        }
        Ok(ChaosConfigValue {
            addr: self.addr.map(addr16).unwrap_or_default(),
            flags,
            drop_ppm: self.drop_ppm,
            synack_drop,
            rst_ppm: self.rst_ppm,
            rst_seq_offset: self.rst_seq_offset,
            corrupt_ppm: self.corrupt_ppm,
            dup_ppm: self.dup_ppm,
            port: Be16::new(self.port.unwrap_or(0)),
            mss: self.mss.unwrap_or(0),
        })
    }
}

/// How and where to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChaosOptions {
    /// XDP mode of the ingress program.
    pub mode: XdpMode,
    /// Attach the TCX egress program (needed for duplication).
    pub dup_hook: bool,
    /// Attach to the interface of this named network namespace
    /// (`/run/netns/NAME`), entered with setns(2) on a short-lived thread.
    pub netns: Option<String>,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        Self {
            mode: XdpMode::Native,
            dup_hook: true,
            netns: None,
        }
    }
}

/// The chaos counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChaosCounters {
    values: [Counter; ChaosCounter::COUNT],
}

impl ChaosCounters {
    pub fn get(&self, c: ChaosCounter) -> Counter {
        self.values[c as usize]
    }

    /// Packets of counter `c`.
    pub fn packets(&self, c: ChaosCounter) -> u64 {
        self.values[c as usize].packets
    }
}

impl Index<ChaosCounter> for ChaosCounters {
    type Output = Counter;
    fn index(&self, c: ChaosCounter) -> &Counter {
        &self.values[c as usize]
    }
}

impl fmt::Display for ChaosCounters {
    /// `seen=.. dropped=.. ...` (packets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in ChaosCounter::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", c.label(), self.packets(*c))?;
        }
        Ok(())
    }
}

/// The chaos object loaded into the kernel, attached to nothing.
pub struct ChaosProgram {
    loaded: Loaded,
    tc_fd: OwnedFd,
    config: MapHandle,
    state: MapHandle,
    counters: MapHandle,
}

impl ChaosProgram {
    /// Loads both programs; they do nothing until [`Self::update`].
    pub fn load() -> Result<Self> {
        let loaded = Loaded::load("sluice_chaos", object::CHAOS_OBJECT, object::CHAOS_PROG)?;
        let tc_fd = loaded.other_prog_fd(object::CHAOS_TC_PROG)?;
        let config = loaded.map(chaos_maps::CONFIG)?;
        let state = loaded.map(chaos_maps::STATE)?;
        let counters = loaded.map(chaos_maps::COUNTERS)?;
        Ok(Self {
            loaded,
            tc_fd,
            config,
            state,
            counters,
        })
    }

    /// Writes the configuration and restarts the SYN-ACK count (a new
    /// `First(n)` drops n more).
    pub fn update(&self, cfg: &ChaosConfig) -> Result<()> {
        let value = cfg.to_value()?;
        let zero = 0u32.to_ne_bytes();
        self.state
            .update(&zero, &ChaosState::default().to_bytes(), MapFlags::ANY)
            .map_err(|e| BpfError::libbpf("writing chaos_state", e))?;
        self.config
            .update(&zero, &value.to_bytes(), MapFlags::ANY)
            .map_err(|e| BpfError::libbpf("writing chaos_config", e))
    }

    pub fn counters(&self) -> Result<ChaosCounters> {
        let mut out = ChaosCounters::default();
        for c in ChaosCounter::ALL {
            out.values[c.index() as usize] = object::sum_percpu_counter(&self.counters, c.index())?;
        }
        Ok(out)
    }

    /// The XDP (ingress) program.
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.loaded.prog_fd.as_fd()
    }

    /// The TCX egress program.
    pub fn tc_prog_fd(&self) -> BorrowedFd<'_> {
        self.tc_fd.as_fd()
    }

    /// Runs the XDP program once over `frame` (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun> {
        let (code, frame) = self.loaded.test_run(object::CHAOS_PROG, frame)?;
        Ok(TestRun { code, frame })
    }
}

/// The chaos program attached to an interface. Dropping it detaches both
/// programs.
pub struct Chaos {
    program: ChaosProgram,
    iface: String,
    ifindex: u32,
    netns: Option<String>,
    xdp: Option<XdpLink>,
    tcx: Option<TcxLink>,
    lock: Option<InterfaceLock>,
    /// The topology's XDP_PASS placeholder this replaced, put back on
    /// teardown (without it XDP_TX toward this interface stops arriving).
    placeholder: Option<system::DisplacedPlaceholder>,
}

/// What attaching inside the target namespace produced.
struct Attached {
    ifindex: u32,
    xdp: XdpLink,
    tcx: Option<TcxLink>,
    lock: InterfaceLock,
    placeholder: Option<system::DisplacedPlaceholder>,
}

impl Chaos {
    /// [`Self::attach_with`] with the default options: native XDP, egress
    /// hook on, this thread's network namespace.
    pub fn attach(iface: &str, cfg: &ChaosConfig) -> Result<Self> {
        Self::attach_with(iface, cfg, &ChaosOptions::default())
    }

    /// Checks the configuration, loads, configures and attaches. Takes the
    /// interface lock that the gateway and the reflector take (one XDP
    /// program per interface); a stale sluice program attached through
    /// netlink, or the topology's XDP_PASS placeholder, is replaced.
    pub fn attach_with(iface: &str, cfg: &ChaosConfig, opts: &ChaosOptions) -> Result<Self> {
        cfg.to_value()?;
        system::check_capabilities()?;
        let program = ChaosProgram::load()?;
        program.update(cfg)?;
        let attached = match &opts.netns {
            None => attach_here(&program, iface, opts)?,
            Some(ns) => in_netns(ns, || attach_here(&program, iface, opts))??,
        };
        tracing::info!(
            iface,
            netns = opts.netns.as_deref().unwrap_or("-"),
            mode = ?opts.mode,
            egress = attached.tcx.is_some(),
            "sluice chaos attached"
        );
        Ok(Self {
            program,
            iface: iface.to_string(),
            ifindex: attached.ifindex,
            netns: opts.netns.clone(),
            xdp: Some(attached.xdp),
            tcx: attached.tcx,
            lock: Some(attached.lock),
            placeholder: attached.placeholder,
        })
    }

    /// Replaces the configuration (the filter too) while attached.
    pub fn update(&self, cfg: &ChaosConfig) -> Result<()> {
        self.program.update(cfg)
    }

    pub fn counters(&self) -> Result<ChaosCounters> {
        self.program.counters()
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Whether the egress (duplication) program is attached.
    pub fn has_egress_hook(&self) -> bool {
        self.tcx.is_some()
    }

    pub fn program(&self) -> &ChaosProgram {
        &self.program
    }

    /// Detaches now, reporting errors (dropping detaches too, silently).
    pub fn detach(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        let mut first = None;
        if let Some(link) = self.tcx.take() {
            if let Err(e) = link.detach() {
                if e.raw_os_error() != Some(nix::errno::Errno::ENOLINK as i32) {
                    let e = BpfError::io(format!("detaching the TCX link from {}", self.iface), e);
                    tracing::error!("detaching sluice chaos: {e}");
                    first.get_or_insert(e);
                }
            }
        }
        if let Some(link) = self.xdp.take() {
            detach_link(link, &self.iface, &mut |e| {
                tracing::error!("detaching sluice chaos: {e}");
                first.get_or_insert(e);
            });
        }
        if let Some(p) = self.placeholder.take() {
            // Netlink attaches by ifindex: from inside the namespace.
            let ifindex = self.ifindex;
            let restored = match &self.netns {
                None => p.restore(ifindex),
                Some(ns) => in_netns(ns, || p.restore(ifindex)).and_then(|r| r),
            };
            match restored {
                Ok(()) => tracing::info!("XDP_PASS placeholder restored on {}", self.iface),
                Err(e) => {
                    tracing::error!("restoring the XDP_PASS placeholder: {e}");
                    first.get_or_insert(e);
                }
            }
        }
        self.lock.take();
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Runs `f` on a scoped thread that entered network namespace `name`.
fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = std::path::Path::new("/run/netns").join(name);
    let file = std::fs::File::open(&path).map_err(|e| {
        BpfError::Invalid(format!(
            "network namespace '{name}' does not exist ({}: {e}); see `ip netns list`",
            path.display()
        ))
    })?;
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("chaos-{name}"))
            .spawn_scoped(s, move || -> Result<T> {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    BpfError::errno(format!("setns into network namespace {name}"), e)
                })?;
                Ok(f())
            })
            .map_err(|e| BpfError::io("starting a thread for setns", e))?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Lock, clear the way and attach, in the calling thread's namespace. Only
/// the interface index is looked up (if_nametoindex): on a thread that
/// entered a namespace with setns, /sys still shows the process's namespace.
fn attach_here(program: &ChaosProgram, name: &str, opts: &ChaosOptions) -> Result<Attached> {
    if name.is_empty() || name.len() > 15 || name.contains('/') {
        return Err(BpfError::NoSuchInterface(name.to_string()));
    }
    let ifindex = nix::net::if_::if_nametoindex(name)
        .map_err(|_| BpfError::NoSuchInterface(name.to_string()))?;
    let lock = InterfaceLock::acquire(name)?;
    let iface = Interface {
        name: name.to_string(),
        index: ifindex,
        mac: [0; 6],
        rx_queues: 1,
    };
    let placeholder = system::clear_stale_xdp(program.prog_fd(), &iface)?;
    let xdp = match XdpLink::attach(program.prog_fd(), ifindex, opts.mode) {
        Ok(x) => x,
        Err(e) => {
            if let Some(p) = &placeholder {
                let _ = p.restore(ifindex);
            }
            return Err(attach_error(name, opts.mode, e));
        }
    };
    let tcx = if opts.dup_hook {
        Some(
            TcxLink::attach(program.tc_prog_fd(), ifindex, TcxDirection::Egress).map_err(|e| {
                BpfError::io(
                    format!("attaching the chaos tc egress program to {name} (TCX, kernel >= 6.6)"),
                    e,
                )
            })?,
        )
    } else {
        None
    };
    Ok(Attached {
        ifindex,
        xdp,
        tcx,
        lock,
        placeholder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_convert_and_validate() {
        assert_eq!(ppm_from_percent(0.0).unwrap(), 0);
        assert_eq!(ppm_from_percent(30.0).unwrap(), 300_000);
        assert_eq!(ppm_from_percent(0.0001).unwrap(), 1);
        assert_eq!(ppm_from_percent(100.0).unwrap(), 1_000_000);
        for bad in [-0.1, 100.01, f64::NAN, f64::INFINITY] {
            let e = ppm_from_percent(bad).unwrap_err().to_string();
            assert!(e.contains("0 to 100"), "{e}");
        }
    }

    #[test]
    fn config_maps_to_the_value() {
        let cfg = ChaosConfig {
            drop_ppm: 10,
            drop_synack: Some(SynackDrop::First(3)),
            mss: Some(536),
            all_ip: true,
            port: Some(80),
            addr: Some("198.18.0.1".parse().unwrap()),
            ..Default::default()
        };
        let v = cfg.to_value().unwrap();
        assert_eq!(
            v.flags,
            abi::CHAOS_ALL_IP | abi::CHAOS_PORT | abi::CHAOS_ADDR | abi::CHAOS_MSS
        );
        assert_eq!((v.drop_ppm, v.synack_drop, v.mss), (10, 3, 536));
        assert_eq!(v.port.get(), 80);
        let all = ChaosConfig {
            drop_synack: Some(SynackDrop::All),
            ..Default::default()
        };
        assert_eq!(all.to_value().unwrap().synack_drop, u32::MAX);
        assert_eq!(ChaosConfig::default().to_value().unwrap().flags, 0);
    }

    #[test]
    fn bad_configs_are_refused() {
        for cfg in [
            ChaosConfig {
                drop_ppm: 1_000_001,
                ..Default::default()
            },
            ChaosConfig {
                drop_synack: Some(SynackDrop::First(0)),
                ..Default::default()
            },
            ChaosConfig {
                mss: Some(0),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(cfg.to_value(), Err(BpfError::Invalid(_))),
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn counters_display_every_label() {
        let s = ChaosCounters::default().to_string();
        assert!(s.starts_with("seen=0 dropped=0 synack_dropped=0"), "{s}");
        assert!(s.ends_with("duplicated=0"), "{s}");
    }
}

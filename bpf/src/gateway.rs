//! The gateway XDP program: loading it, its maps, attaching it to an
//! interface with a BPF link, pinning, and tearing all of it down.

use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::ops::Index;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use sluice_xsk::link::XdpLink;
use sluice_xsk::SharedWords;

use crate::abi::{
    addr16, AbiType, Be16, Config, Counter, ListenerKey, ListenerValue, VipKey, VipValue,
    XdpAction, XdpCounter, HEALTH_WORDS, MAX_QUEUES, VIP_ANSWER_NEIGH, VIP_ICMP_ECHO,
    VIP_LOCAL_PORTS,
};
use crate::error::{BpfError, Result};
use crate::iface::Interface;
use crate::object::{self, gateway_maps, Loaded};
use crate::system::{self, InterfaceLock};
use crate::XdpMode;

/// Transport protocol of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4Proto {
    Tcp,
    Udp,
}

impl L4Proto {
    /// The IP protocol number (`IPPROTO_TCP` / `IPPROTO_UDP`).
    pub fn ip_proto(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// Packets and bytes of every gateway counter, summed over CPUs. Index it
/// with an [`XdpCounter`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    values: [Counter; XdpCounter::COUNT],
}

impl XdpCounters {
    pub fn get(&self, c: XdpCounter) -> Counter {
        self.values[c as usize]
    }
    /// Every counter with its value, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (XdpCounter, Counter)> + '_ {
        XdpCounter::ALL.iter().map(move |&c| (c, self.get(c)))
    }
    /// Sum of every counter: all packets the program saw.
    pub fn total(&self) -> Counter {
        self.values.iter().fold(Counter::default(), |a, &b| a + b)
    }
    /// Sum of the counters whose verdict is `action`.
    pub fn verdict_total(&self, action: XdpAction) -> Counter {
        self.iter()
            .filter(|(c, _)| c.verdict() == action)
            .fold(Counter::default(), |a, (_, b)| a + b)
    }
    /// What happened since `earlier` (per counter, saturating).
    pub fn since(&self, earlier: &XdpCounters) -> XdpCounters {
        let mut out = self.clone();
        for (v, e) in out.values.iter_mut().zip(earlier.values.iter()) {
            *v = v.saturating_sub(*e);
        }
        out
    }
}

impl Index<XdpCounter> for XdpCounters {
    type Output = Counter;
    fn index(&self, c: XdpCounter) -> &Counter {
        &self.values[c as usize]
    }
}

impl fmt::Display for XdpCounters {
    /// One line per non-zero counter: `label packets bytes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (c, v) in self.iter().filter(|(_, v)| v.packets != 0) {
            writeln!(
                f,
                "{:<22} {:>12} pkts {:>14} bytes",
                c.label(),
                v.packets,
                v.bytes
            )?;
        }
        Ok(())
    }
}

/// The gateway's maps, either from a freshly loaded program or opened from
/// their pins by another process. Every writer of the maps goes through this.
#[derive(Debug)]
pub struct GatewayMaps {
    xsks: MapHandle,
    vips: MapHandle,
    listeners: MapHandle,
    config: MapHandle,
    counters: MapHandle,
    health: MapHandle,
}

fn check_flags(flags: u32) -> Result<()> {
    let known = VIP_ANSWER_NEIGH | VIP_ICMP_ECHO | VIP_LOCAL_PORTS;
    if flags & !known != 0 {
        return Err(BpfError::Invalid(format!(
            "unknown VIP flags {:#x} (known: {known:#x})",
            flags & !known
        )));
    }
    Ok(())
}

impl GatewayMaps {
    fn from_loaded(loaded: &Loaded) -> Result<Self> {
        Ok(Self {
            xsks: loaded.map(gateway_maps::XSKS)?,
            vips: loaded.map(gateway_maps::VIPS)?,
            listeners: loaded.map(gateway_maps::LISTENERS)?,
            config: loaded.map(gateway_maps::CONFIG)?,
            counters: loaded.map(gateway_maps::COUNTERS)?,
            health: loaded.map(gateway_maps::HEALTH)?,
        })
    }

    /// Opens the maps a running gateway pinned under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        let open = |name: &str| {
            let path = pin_dir.join(name);
            MapHandle::from_pinned_path(&path)
                .map_err(|e| BpfError::libbpf(format!("opening pinned map {}", path.display()), e))
        };
        Ok(Self {
            xsks: open(gateway_maps::XSKS)?,
            vips: open(gateway_maps::VIPS)?,
            listeners: open(gateway_maps::LISTENERS)?,
            config: open(gateway_maps::CONFIG)?,
            counters: open(gateway_maps::COUNTERS)?,
            health: open(gateway_maps::HEALTH)?,
        })
    }

    /// The libbpf handles of the maps, by name, in [`gateway_maps::ALL`] order
    /// (for inspection; writers should use the typed methods).
    pub fn raw_handles(&self) -> [(&'static str, &MapHandle); 6] {
        [
            (gateway_maps::XSKS, &self.xsks),
            (gateway_maps::VIPS, &self.vips),
            (gateway_maps::LISTENERS, &self.listeners),
            (gateway_maps::CONFIG, &self.config),
            (gateway_maps::COUNTERS, &self.counters),
            (gateway_maps::HEALTH, &self.health),
        ]
    }

    /// The fd of the `health` map (an mmapable array of
    /// [`HEALTH_WORDS`](crate::abi::HEALTH_WORDS) `u64`s, layout in
    /// sluice_abi.h), borrowed from these maps.
    pub fn health_fd(&self) -> BorrowedFd<'_> {
        self.health.as_fd()
    }

    /// The `health` map mapped into this process: every word readable and
    /// writable as an `AtomicU64` without a syscall, seen by the XDP program
    /// (which reads [`HEALTH_FLAGS`](crate::abi::HEALTH_FLAGS)). The mapping
    /// keeps the map alive on its own: it may outlive these handles, the
    /// [`Gateway`] and the pins.
    pub fn health_words(&self) -> Result<SharedWords> {
        SharedWords::map(self.health_fd(), HEALTH_WORDS as usize)
            .map_err(|e| BpfError::io("mapping the health map (mmap)", e))
    }

    /// The whole `config` entry.
    pub fn config(&self) -> Result<Config> {
        let bytes = self
            .config
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| BpfError::libbpf("reading the config map", e))?
            .ok_or_else(|| BpfError::Other("config map has no entry 0".into()))?;
        Config::decode(&bytes)
            .ok_or_else(|| BpfError::Other("config entry of the wrong size".into()))
    }

    /// Writes the whole `config` entry.
    pub fn write_config(&self, cfg: &Config) -> Result<()> {
        self.config
            .update(&0u32.to_ne_bytes(), &cfg.to_bytes(), MapFlags::ANY)
            .map_err(|e| BpfError::libbpf("writing the config map", e))
    }

    /// Source MAC of ARP replies / neighbour adverts, and the local port
    /// range (inclusive) steered for VIPs with [`VIP_LOCAL_PORTS`]; `None`
    /// disables the range.
    pub fn set_config(&self, mac: [u8; 6], local_ports: Option<(u16, u16)>) -> Result<()> {
        let (lo, hi) = match local_ports {
            Some((lo, hi)) if lo > hi || hi == 0 => {
                return Err(BpfError::Invalid(format!(
                    "empty local port range {lo}-{hi}"
                )))
            }
            Some(range) => range,
            None => (0, 0),
        };
        let mut cfg = self.config()?;
        cfg.mac = mac;
        cfg.local_port_lo = Be16::new(lo);
        cfg.local_port_hi = Be16::new(hi);
        self.write_config(&cfg)
    }

    /// Adds or replaces a VIP with `VIP_*` flags.
    pub fn add_vip(&self, addr: IpAddr, flags: u32) -> Result<()> {
        check_flags(flags)?;
        let key = VipKey { addr: addr16(addr) };
        self.vips
            .update(
                &key.to_bytes(),
                &VipValue { flags }.to_bytes(),
                MapFlags::ANY,
            )
            .map_err(|e| BpfError::libbpf(format!("adding VIP {addr}"), e))
    }

    /// Removes a VIP (its listeners stay, but match nothing while it is gone).
    /// Returns whether it was there.
    pub fn remove_vip(&self, addr: IpAddr) -> Result<bool> {
        let key = VipKey { addr: addr16(addr) };
        delete(&self.vips, &key.to_bytes(), &format!("removing VIP {addr}"))
    }

    /// Flags of a VIP, if it is one.
    pub fn vip(&self, addr: IpAddr) -> Result<Option<u32>> {
        let key = VipKey { addr: addr16(addr) };
        let v = self
            .vips
            .lookup(&key.to_bytes(), MapFlags::ANY)
            .map_err(|e| BpfError::libbpf(format!("looking up VIP {addr}"), e))?;
        Ok(v.and_then(|b| VipValue::decode(&b)).map(|v| v.flags))
    }

    fn listener_key(addr: IpAddr, proto: L4Proto, port: u16) -> ListenerKey {
        ListenerKey {
            addr: addr16(addr),
            port: Be16::new(port),
            proto: proto.ip_proto(),
            pad: 0,
        }
    }

    /// Steers `proto` to `addr:port` into the AF_XDP sockets. The address
    /// must also be a VIP (see [`GatewayMaps::add_vip`]) to match.
    pub fn add_listener(
        &self,
        addr: IpAddr,
        proto: L4Proto,
        port: u16,
        service_id: u32,
    ) -> Result<()> {
        let key = Self::listener_key(addr, proto, port);
        self.listeners
            .update(
                &key.to_bytes(),
                &ListenerValue { service_id }.to_bytes(),
                MapFlags::ANY,
            )
            .map_err(|e| {
                BpfError::libbpf(format!("adding listener {proto:?} {addr} port {port}"), e)
            })
    }

    /// Returns whether the listener was there.
    pub fn remove_listener(&self, addr: IpAddr, proto: L4Proto, port: u16) -> Result<bool> {
        let key = Self::listener_key(addr, proto, port);
        delete(
            &self.listeners,
            &key.to_bytes(),
            &format!("removing listener {proto:?} {addr} port {port}"),
        )
    }

    /// Puts an AF_XDP socket bound to receive queue `queue` into `xsks`.
    pub fn register_socket(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<()> {
        if queue >= MAX_QUEUES {
            return Err(BpfError::Invalid(format!(
                "queue {queue} out of range (the xsks map has {MAX_QUEUES} entries)"
            )));
        }
        let fd = xsk.as_raw_fd() as u32;
        self.xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| {
                BpfError::libbpf(format!("registering the AF_XDP socket of queue {queue}"), e)
            })
    }

    /// Removes the socket of `queue` (if any: the kernel does not say);
    /// steered packets on that queue are then dropped (DROP_NO_SOCKET).
    pub fn unregister_socket(&self, queue: u32) -> Result<()> {
        let what = format!("unregistering the socket of queue {queue}");
        delete(&self.xsks, &queue.to_ne_bytes(), &what).map(|_| ())
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters> {
        let mut out = XdpCounters::default();
        for c in XdpCounter::ALL {
            out.values[c.index() as usize] = object::sum_percpu_counter(&self.counters, c.index())?;
        }
        Ok(out)
    }
}

fn delete(map: &MapHandle, key: &[u8], what: &str) -> Result<bool> {
    match map.delete(key) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(BpfError::libbpf(what, e)),
    }
}

/// Reads the counters of a gateway running in another process from its pins.
pub fn read_pinned_counters(pin_dir: &Path) -> Result<XdpCounters> {
    let path = pin_dir.join(gateway_maps::COUNTERS);
    let map = MapHandle::from_pinned_path(&path)
        .map_err(|e| BpfError::libbpf(format!("opening pinned map {}", path.display()), e))?;
    let mut out = XdpCounters::default();
    for c in XdpCounter::ALL {
        out.values[c.index() as usize] = object::sum_percpu_counter(&map, c.index())?;
    }
    Ok(out)
}

/// Result of one BPF_PROG_TEST_RUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The raw return value of the program.
    pub code: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

impl TestRun {
    pub fn action(&self) -> Option<XdpAction> {
        XdpAction::from_code(self.code)
    }
}

/// The gateway program loaded into the kernel with its maps, attached to
/// nothing. [`Gateway`] attaches one; tests run frames through it.
pub struct GatewayProgram {
    loaded: Loaded,
    maps: GatewayMaps,
}

impl GatewayProgram {
    /// Loads (verifies) the program and creates its maps. The config starts
    /// zeroed: no neighbour answers, no local port range.
    pub fn load() -> Result<Self> {
        let loaded = Loaded::load(
            "sluice_gateway",
            object::GATEWAY_OBJECT,
            object::GATEWAY_PROG,
        )?;
        let maps = GatewayMaps::from_loaded(&loaded)?;
        Ok(Self { loaded, maps })
    }

    pub fn maps(&self) -> &GatewayMaps {
        &self.maps
    }

    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.loaded.prog_fd.as_fd()
    }

    /// Kernel id of the loaded program.
    pub fn prog_id(&self) -> Result<u32> {
        libbpf_rs::Program::id_from_fd(self.prog_fd())
            .map_err(|e| BpfError::libbpf("reading the program id", e))
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN, receive queue
    /// 0). Counters count it like a received packet.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun> {
        let (code, frame) = self.loaded.test_run(object::GATEWAY_PROG, frame)?;
        Ok(TestRun { code, frame })
    }
}

/// Options of [`Gateway::attach`].
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    pub iface: Interface,
    pub mode: XdpMode,
    /// Defaults to /sys/fs/bpf/sluice/IFACE.
    pub pin_dir: Option<PathBuf>,
}

impl GatewayOptions {
    pub fn new(iface: Interface, mode: XdpMode) -> Self {
        Self {
            iface,
            mode,
            pin_dir: None,
        }
    }
}

/// Things to undo, in order, when the gateway goes away.
struct Attachment {
    link: Option<XdpLink>,
    pinned: Vec<PathBuf>,
    lock: Option<InterfaceLock>,
}

/// The gateway XDP program loaded, attached to one interface through a BPF
/// link, maps pinned. Dropping it (or [`Gateway::detach`]) detaches the
/// program, removes the pins and releases the interface lock; if the process
/// dies instead, the kernel detaches the program when the link's fd closes
/// and the next [`Gateway::attach`] removes the stale pins.
pub struct Gateway {
    program: GatewayProgram,
    iface: Interface,
    mode: XdpMode,
    pin_dir: PathBuf,
    attachment: Attachment,
}

impl Gateway {
    /// Preflight (capabilities, interface, bpffs, lock, stale state), load,
    /// configure (source MAC = the interface's), pin, attach.
    pub fn attach(opts: &GatewayOptions) -> Result<Self> {
        system::check_capabilities()?;
        let iface = Interface::lookup(&opts.iface.name)?;
        if iface.index != opts.iface.index {
            return Err(BpfError::Invalid(format!(
                "interface {} now has index {}, not {} (was it re-created?)",
                iface.name, iface.index, opts.iface.index
            )));
        }
        let pin_dir = opts
            .pin_dir
            .clone()
            .unwrap_or_else(|| system::default_pin_dir(&iface.name));
        system::ensure_bpffs(&pin_dir)?;
        let lock = InterfaceLock::acquire(&iface.name)?;

        let program = GatewayProgram::load()?;
        system::clear_stale_xdp(program.prog_fd(), &iface)?;
        system::remove_stale_pins(&pin_dir, &gateway_maps::ALL)?;

        let mut gw = Gateway {
            program,
            iface,
            mode: opts.mode,
            pin_dir,
            attachment: Attachment {
                link: None,
                pinned: Vec::new(),
                lock: Some(lock),
            },
        };
        // From here on, an error drops `gw`, which undoes what was done.
        gw.program.maps.set_config(gw.iface.mac, None)?;
        gw.pin_maps()?;
        let link = XdpLink::attach(gw.program.prog_fd(), gw.iface.index, gw.mode)
            .map_err(|e| attach_error(&gw.iface.name, gw.mode, e))?;
        gw.attachment.link = Some(link);
        tracing::info!(
            iface = %gw.iface.name,
            mode = ?gw.mode,
            pin_dir = %gw.pin_dir.display(),
            "sluice gateway XDP program attached"
        );
        Ok(gw)
    }

    fn pin_maps(&mut self) -> Result<()> {
        fs::create_dir_all(&self.pin_dir)
            .map_err(|e| BpfError::io(format!("creating pin dir {}", self.pin_dir.display()), e))?;
        let handles: Vec<(&'static str, MapHandle)> = self
            .program
            .maps
            .raw_handles()
            .iter()
            .map(|(name, h)| {
                MapHandle::try_from(*h)
                    .map(|h| (*name, h))
                    .map_err(|e| BpfError::libbpf(format!("duplicating map {name}"), e))
            })
            .collect::<Result<_>>()?;
        for (name, mut handle) in handles {
            let path = self.pin_dir.join(name);
            handle.pin(&path).map_err(|e| {
                BpfError::libbpf(format!("pinning map {name} at {}", path.display()), e)
            })?;
            self.attachment.pinned.push(path);
        }
        Ok(())
    }

    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub fn maps(&self) -> &GatewayMaps {
        &self.program.maps
    }

    pub fn program(&self) -> &GatewayProgram {
        &self.program
    }

    /// See [`GatewayMaps::set_config`].
    pub fn set_config(&self, mac: [u8; 6], local_ports: Option<(u16, u16)>) -> Result<()> {
        self.program.maps.set_config(mac, local_ports)
    }

    pub fn add_vip(&self, addr: IpAddr, flags: u32) -> Result<()> {
        self.program.maps.add_vip(addr, flags)
    }

    pub fn remove_vip(&self, addr: IpAddr) -> Result<bool> {
        self.program.maps.remove_vip(addr)
    }

    pub fn add_listener(
        &self,
        addr: IpAddr,
        proto: L4Proto,
        port: u16,
        service_id: u32,
    ) -> Result<()> {
        self.program
            .maps
            .add_listener(addr, proto, port, service_id)
    }

    pub fn remove_listener(&self, addr: IpAddr, proto: L4Proto, port: u16) -> Result<bool> {
        self.program.maps.remove_listener(addr, proto, port)
    }

    pub fn register_socket(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<()> {
        if queue >= self.iface.rx_queues {
            tracing::warn!(
                "registering a socket for queue {queue}, but {} has {} receive queues",
                self.iface.name,
                self.iface.rx_queues
            );
        }
        self.program.maps.register_socket(queue, xsk)
    }

    pub fn unregister_socket(&self, queue: u32) -> Result<()> {
        self.program.maps.unregister_socket(queue)
    }

    pub fn counters(&self) -> Result<XdpCounters> {
        self.program.maps.counters()
    }

    /// See [`GatewayMaps::health_words`].
    pub fn health_words(&self) -> Result<SharedWords> {
        self.program.maps.health_words()
    }

    /// Detaches the program, removes the pins and the pin dir, releases the
    /// lock. Reports the first error but always does every step.
    pub fn detach(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        let mut first: Option<BpfError> = None;
        let mut note = |e: BpfError| {
            tracing::error!("detaching sluice gateway: {e}");
            first.get_or_insert(e);
        };
        if let Some(link) = self.attachment.link.take() {
            detach_link(link, &self.iface.name, &mut note);
        }
        for path in self.attachment.pinned.drain(..) {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    note(BpfError::io(format!("unpinning {}", path.display()), e));
                }
            }
        }
        if self.attachment.lock.is_some() {
            remove_dir_if_empty(&self.pin_dir, &mut note);
            if self.pin_dir.parent() == Some(Path::new(system::DEFAULT_PIN_ROOT)) {
                remove_dir_if_empty(Path::new(system::DEFAULT_PIN_ROOT), &mut note);
            }
        }
        if self.attachment.lock.take().is_some() {
            tracing::info!(iface = %self.iface.name, "sluice gateway detached");
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Detaches a link; one whose interface is already gone (ENOLINK) is fine.
pub(crate) fn detach_link(link: XdpLink, iface: &str, note: &mut impl FnMut(BpfError)) {
    if let Err(e) = link.detach() {
        if e.raw_os_error() != Some(nix::errno::Errno::ENOLINK as i32) {
            note(BpfError::io(
                format!("detaching the XDP link from {iface}"),
                e,
            ));
        }
    }
}

fn remove_dir_if_empty(dir: &Path, note: &mut impl FnMut(BpfError)) {
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
            ) => {}
        Err(e) => note(BpfError::io(format!("removing {}", dir.display()), e)),
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Errors were logged by teardown; Drop cannot report them.
        let _ = self.teardown();
    }
}

/// Maps an attach failure to an error that says what to do.
pub(crate) fn attach_error(iface: &str, mode: XdpMode, e: std::io::Error) -> BpfError {
    match (mode, e.raw_os_error()) {
        (XdpMode::Native, Some(code)) if code == nix::errno::Errno::EOPNOTSUPP as i32 => {
            BpfError::NativeUnsupported {
                iface: iface.to_string(),
                source: e,
            }
        }
        (_, Some(code))
            if code == nix::errno::Errno::EBUSY as i32
                || code == nix::errno::Errno::EEXIST as i32 =>
        {
            BpfError::Busy(format!(
                "attaching to {iface}: another XDP program is already attached ({e}); \
                 see `ip -d link show dev {iface}` or `bpftool net`"
            ))
        }
        _ => BpfError::io(
            format!("attaching the XDP program to {iface} in {mode:?} mode"),
            e,
        ),
    }
}

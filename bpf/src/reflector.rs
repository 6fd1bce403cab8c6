//! The UDP reflector: the in-kernel ceiling for benchmarks.

use std::net::SocketAddr;
use std::ops::Index;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use sluice_xsk::link::XdpLink;

use crate::abi::{addr16, AbiType, Be16, Counter, ReflectorConfig, ReflectorCounter};
use crate::error::{BpfError, Result};
use crate::gateway::{attach_error, detach_link, TestRun};
use crate::iface::Interface;
use crate::object::{self, reflector_maps, Loaded};
use crate::system::{self, InterfaceLock};
use crate::XdpMode;

/// Packets and bytes of the reflector's counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReflectorCounters {
    values: [Counter; ReflectorCounter::COUNT],
}

impl ReflectorCounters {
    pub fn get(&self, c: ReflectorCounter) -> Counter {
        self.values[c as usize]
    }
}

impl Index<ReflectorCounter> for ReflectorCounters {
    type Output = Counter;
    fn index(&self, c: ReflectorCounter) -> &Counter {
        &self.values[c as usize]
    }
}

/// The reflector loaded into the kernel, attached to nothing.
pub struct ReflectorProgram {
    loaded: Loaded,
    config: MapHandle,
    counters: MapHandle,
}

impl ReflectorProgram {
    /// Loads the program; it reflects nothing until [`Self::set_target`].
    pub fn load() -> Result<Self> {
        let loaded = Loaded::load(
            "sluice_reflector",
            object::REFLECTOR_OBJECT,
            object::REFLECTOR_PROG,
        )?;
        let config = loaded.map(reflector_maps::CONFIG)?;
        let counters = loaded.map(reflector_maps::COUNTERS)?;
        Ok(Self {
            loaded,
            config,
            counters,
        })
    }

    /// Reflect UDP to `addr` (IPv4 or IPv6); port 0 disables.
    pub fn set_target(&self, addr: SocketAddr) -> Result<()> {
        let cfg = ReflectorConfig {
            addr: addr16(addr.ip()),
            port: Be16::new(addr.port()),
            pad: 0,
        };
        self.config
            .update(&0u32.to_ne_bytes(), &cfg.to_bytes(), MapFlags::ANY)
            .map_err(|e| BpfError::libbpf("writing reflector_config", e))
    }

    pub fn counters(&self) -> Result<ReflectorCounters> {
        let mut out = ReflectorCounters::default();
        for c in ReflectorCounter::ALL {
            out.values[c.index() as usize] = object::sum_percpu_counter(&self.counters, c.index())?;
        }
        Ok(out)
    }

    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.loaded.prog_fd.as_fd()
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun> {
        let (code, frame) = self.loaded.test_run(object::REFLECTOR_PROG, frame)?;
        Ok(TestRun { code, frame })
    }
}

/// The reflector attached to an interface through a BPF link. Dropping it
/// detaches it; nothing is pinned.
pub struct Reflector {
    program: ReflectorProgram,
    iface: Interface,
    link: Option<XdpLink>,
    lock: Option<InterfaceLock>,
}

impl Reflector {
    /// Preflight, load, point at `addr`, attach in `mode`. Takes the same
    /// interface lock as the gateway.
    pub fn attach(iface: &Interface, mode: XdpMode, addr: SocketAddr) -> Result<Self> {
        system::check_capabilities()?;
        let iface = Interface::lookup(&iface.name)?;
        let lock = InterfaceLock::acquire(&iface.name)?;
        let program = ReflectorProgram::load()?;
        system::clear_stale_xdp(program.prog_fd(), &iface)?;
        program.set_target(addr)?;
        let link = XdpLink::attach(program.prog_fd(), iface.index, mode)
            .map_err(|e| attach_error(&iface.name, mode, e))?;
        tracing::info!(iface = %iface.name, ?mode, %addr, "sluice reflector attached");
        Ok(Self {
            program,
            iface,
            link: Some(link),
            lock: Some(lock),
        })
    }

    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    pub fn program(&self) -> &ReflectorProgram {
        &self.program
    }

    pub fn counters(&self) -> Result<ReflectorCounters> {
        self.program.counters()
    }

    pub fn detach(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        let mut first = None;
        if let Some(link) = self.link.take() {
            detach_link(link, &self.iface.name, &mut |e| {
                tracing::error!("detaching sluice reflector: {e}");
                first.get_or_insert(e);
            });
        }
        self.lock.take();
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

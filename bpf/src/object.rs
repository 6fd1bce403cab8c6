//! The compiled XDP objects (built by build.rs, embedded here) and loading
//! them through libbpf-rs.
//!
//! Map and program names are declared once, here, as constants; loading
//! resolves every one of them and fails if the object lacks any, so a rename
//! in C shows up as a load error naming the missing map.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Once;

use libbpf_rs::{MapCore, MapHandle, Object, ObjectBuilder, PrintLevel};

use crate::error::{BpfError, Result};

/// gateway.bpf.c compiled and linked (BTF kept, DWARF stripped).
pub const GATEWAY_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gateway.bpf.o"));
/// reflector.bpf.c compiled and linked.
pub const REFLECTOR_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reflector.bpf.o"));
/// chaos.bpf.c compiled and linked.
pub const CHAOS_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/chaos.bpf.o"));

/// Name of the gateway's XDP entry program.
pub const GATEWAY_PROG: &str = "sluice_xdp";
/// Name of the reflector's XDP program.
pub const REFLECTOR_PROG: &str = "sluice_reflect";
/// Name of the chaos XDP program (ingress).
pub const CHAOS_PROG: &str = "sluice_chaos";
/// Name of the chaos tc program (TCX egress, duplication).
pub const CHAOS_TC_PROG: &str = "sluice_chaos_tc";

/// Names of the gateway's maps, as in gateway_maps.h and under the pin dir.
pub mod gateway_maps {
    pub const XSKS: &str = "xsks";
    pub const VIPS: &str = "vips";
    pub const LISTENERS: &str = "listeners";
    pub const CONFIG: &str = "config";
    pub const COUNTERS: &str = "counters";
    /// The mmapable routing/health words (`SLUICE_HEALTH_*` in sluice_abi.h).
    pub const HEALTH: &str = "health";
    /// Every map that is pinned, in pinning order.
    pub const ALL: [&str; 6] = [XSKS, VIPS, LISTENERS, CONFIG, COUNTERS, HEALTH];
}

/// Names of the reflector's maps.
pub mod reflector_maps {
    pub const CONFIG: &str = "reflector_config";
    pub const COUNTERS: &str = "reflector_counters";
}

/// Names of the chaos program's maps.
pub mod chaos_maps {
    pub const CONFIG: &str = "chaos_config";
    pub const STATE: &str = "chaos_state";
    pub const COUNTERS: &str = "chaos_counters";
}

/// Sends libbpf's messages (including verifier logs on a failed load) to
/// `tracing` instead of stderr. Installed once, on the first load.
pub fn route_libbpf_logs_to_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        fn log(level: PrintLevel, msg: String) {
            let msg = msg.trim_end();
            match level {
                PrintLevel::Warn => tracing::warn!(target: "libbpf", "{msg}"),
                PrintLevel::Info => tracing::info!(target: "libbpf", "{msg}"),
                PrintLevel::Debug => tracing::debug!(target: "libbpf", "{msg}"),
            }
        }
        libbpf_rs::set_print(Some((PrintLevel::Debug, log)));
    });
}

/// An object loaded into the kernel (programs verified, maps created), not
/// attached anywhere.
pub(crate) struct Loaded {
    pub object: Object,
    pub prog_fd: OwnedFd,
}

impl Loaded {
    pub fn load(name: &str, bytes: &[u8], prog: &str) -> Result<Self> {
        route_libbpf_logs_to_tracing();
        let ctx = |what: &str| format!("{what} BPF object {name}");
        let mut builder = ObjectBuilder::default();
        builder
            .name(name)
            .map_err(|e| BpfError::libbpf(ctx("naming"), e))?;
        let open = builder
            .open_memory(bytes)
            .map_err(|e| BpfError::libbpf(ctx("opening"), e))?;
        let object = open.load().map_err(|e| {
            BpfError::libbpf(ctx("loading (verifier log at WARN, target libbpf)"), e)
        })?;
        let prog_fd = {
            let p = object.progs().find(|p| p.name() == prog).ok_or_else(|| {
                BpfError::Other(format!("BPF object {name} has no program {prog}"))
            })?;
            p.as_fd()
                .try_clone_to_owned()
                .map_err(|e| BpfError::io(format!("duplicating the fd of program {prog}"), e))?
        };
        Ok(Self { object, prog_fd })
    }

    /// A duplicate of the fd of another program of the object.
    pub fn other_prog_fd(&self, prog: &str) -> Result<OwnedFd> {
        let p = self
            .object
            .progs()
            .find(|p| p.name() == prog)
            .ok_or_else(|| BpfError::Other(format!("BPF object has no program {prog}")))?;
        p.as_fd()
            .try_clone_to_owned()
            .map_err(|e| BpfError::io(format!("duplicating the fd of program {prog}"), e))
    }

    /// An owned handle of the map called `name`.
    pub fn map(&self, name: &str) -> Result<MapHandle> {
        let map = self
            .object
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| BpfError::Other(format!("BPF object has no map {name}")))?;
        MapHandle::try_from(&map)
            .map_err(|e| BpfError::libbpf(format!("duplicating map {name}"), e))
    }

    /// Runs `prog` once on `frame` through BPF_PROG_TEST_RUN (no interface,
    /// rx_queue_index 0). Returns the action code and the frame as the
    /// program left it.
    pub fn test_run(&self, prog: &str, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let p = self
            .object
            .progs_mut()
            .find(|p| p.name() == prog)
            .ok_or_else(|| BpfError::Other(format!("no program {prog}")))?;
        // Room for programs that grow the frame (the NA reply grows by 8).
        let mut out = vec![0u8; frame.len() + 256];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let output = p
            .test_run(input)
            .map_err(|e| BpfError::libbpf(format!("BPF_PROG_TEST_RUN of {prog}"), e))?;
        let action = output.return_value;
        let len = output.data.map(|d| d.len()).unwrap_or(0);
        out.truncate(len);
        Ok((action, out))
    }
}

/// Sum of a per-CPU array entry of `struct sluice_counter` values.
pub(crate) fn sum_percpu_counter(map: &MapHandle, index: u32) -> Result<crate::abi::Counter> {
    use crate::abi::{AbiType, Counter};
    let per_cpu = map
        .lookup_percpu(&index.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .map_err(|e| BpfError::libbpf(format!("reading counter {index}"), e))?
        .unwrap_or_default();
    let mut sum = Counter::default();
    for bytes in per_cpu {
        let c = Counter::decode(&bytes).ok_or_else(|| {
            BpfError::Other(format!(
                "counter value of {} bytes, expected {}",
                bytes.len(),
                std::mem::size_of::<Counter>()
            ))
        })?;
        sum += c;
    }
    Ok(sum)
}

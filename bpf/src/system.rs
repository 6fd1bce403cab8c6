//! What has to be true of the host before sluice attaches, and the state a
//! crashed run may have left: capabilities, bpffs, the per-interface lock,
//! stale pins, stale or foreign XDP programs.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use libbpf_rs::query::{LinkInfoIter, LinkTypeInfo, ProgInfoIter, ProgInfoQueryOptions};
use libbpf_rs::MapCore;
use libbpf_rs::{Xdp, XdpFlags};
use nix::fcntl::{Flock, FlockArg};

use crate::error::{BpfError, Result};
use crate::iface::Interface;

/// Where bpffs is normally mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Parent of the default pin directories (`/sys/fs/bpf/sluice/IFACE`).
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sluice";
/// Directory of the per-interface lock files.
pub const LOCK_DIR: &str = "/run/sluice";

/// Names of the XDP programs sluice attaches (as the kernel reports them,
/// at most 15 characters).
pub const OUR_PROGRAMS: [&str; 3] = [
    crate::object::GATEWAY_PROG,
    crate::object::REFLECTOR_PROG,
    crate::object::CHAOS_PROG,
];

/// The XDP_PASS placeholder `sluice-bench topo up` puts on the peers of XDP
/// veths (XDP_TX frames only reach a veth end that runs an XDP program).
/// Attaching one of our programs replaces it without complaint.
pub const PEER_PLACEHOLDER_PROG: &str = "sluice_peer";

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Effective capabilities of this process (CapEff in /proc/self/status).
fn effective_caps() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| BpfError::io("reading /proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| BpfError::Other("no CapEff line in /proc/self/status".into()))
}

/// Fails unless the process can load BPF programs (CAP_BPF, or CAP_SYS_ADMIN
/// on older kernels), attach them to interfaces (CAP_NET_ADMIN) and open the
/// AF_XDP sockets they steer into (CAP_NET_RAW).
pub fn check_capabilities() -> Result<()> {
    let caps = effective_caps()?;
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let who = if nix::unistd::geteuid().is_root() {
        "running as root, but"
    } else {
        "not running as root, and"
    };
    Err(BpfError::Permission(format!(
        "sluice needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW to load and attach XDP programs and \
         open AF_XDP sockets: {who} the effective capabilities (CapEff {caps:016x}) lack {}; run as \
         root or grant them (setcap cap_bpf,cap_net_admin,cap_net_raw+ep; mounting bpffs also needs \
         cap_sys_admin)",
        missing.join(" and ")
    )))
}

/// Whether `path` is on a bpf filesystem.
pub fn is_bpffs(path: &Path) -> Result<bool> {
    let st = nix::sys::statfs::statfs(path)
        .map_err(|e| BpfError::errno(format!("statfs {}", path.display()), e))?;
    Ok(st.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

/// Makes sure `pin_dir` can hold pins: if it lies under /sys/fs/bpf and no
/// bpffs is mounted there, mounts one (and logs it); if it lies elsewhere,
/// its nearest existing ancestor must be on a bpffs.
pub fn ensure_bpffs(pin_dir: &Path) -> Result<()> {
    let root = Path::new(BPFFS_ROOT);
    if pin_dir.starts_with(root) {
        if !is_bpffs(root)? {
            nix::mount::mount(
                Some("bpf"),
                root,
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| BpfError::errno(format!("mounting bpffs on {BPFFS_ROOT}"), e))?;
            tracing::info!(
                "bpffs was not mounted: mounted it on {BPFFS_ROOT} (under `ip netns exec`, which \
                 remounts /sys, such a mount and its pins are private to this process tree; \
                 give --pin-dir on a bpffs mounted outside /sys, e.g. {SHARED_BPFFS}, to share them)"
            );
        }
        return Ok(());
    }
    let mut probe = pin_dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    if is_bpffs(&probe)? {
        Ok(())
    } else {
        Err(BpfError::Invalid(format!(
            "pin dir {} is not on a bpf filesystem ({} is not bpffs); use a directory under {BPFFS_ROOT}",
            pin_dir.display(),
            probe.display()
        )))
    }
}

/// A bpffs outside /sys that `ip netns exec` does not hide: the namespace
/// topology mounts it so pins made inside a namespace stay visible outside.
pub const SHARED_BPFFS: &str = "/run/sluice/bpffs";

/// Mount a bpffs on [`SHARED_BPFFS`] unless one is there already.
pub fn ensure_shared_bpffs() -> Result<PathBuf> {
    let dir = Path::new(SHARED_BPFFS);
    fs::create_dir_all(dir).map_err(|e| BpfError::io(format!("creating {SHARED_BPFFS}"), e))?;
    if !is_bpffs(dir)? {
        nix::mount::mount(
            Some("bpf"),
            dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| BpfError::errno(format!("mounting bpffs on {SHARED_BPFFS}"), e))?;
        tracing::info!("mounted bpffs on {SHARED_BPFFS}");
    }
    Ok(dir.to_path_buf())
}

/// Default pin directory of an interface.
pub fn default_pin_dir(iface: &str) -> PathBuf {
    Path::new(DEFAULT_PIN_ROOT).join(iface)
}

fn netns_inode(path: &str) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Lock file of an interface: `/run/sluice/IFACE.lock` in the initial network
/// namespace, `/run/sluice/IFACE@netns-INODE.lock` in any other, or when the
/// initial one cannot be told (interface names repeat across namespaces,
/// /run usually does not). The namespace is the calling thread's
/// (`/proc/thread-self`): a thread that entered another namespace with
/// setns(2) locks that namespace's interface, not the process's.
pub fn lock_path(iface: &str) -> PathBuf {
    let ours = netns_inode("/proc/thread-self/ns/net").or_else(|| netns_inode("/proc/self/ns/net"));
    let init = netns_inode("/proc/1/ns/net");
    let name = match (ours, init) {
        (Some(o), Some(i)) if o == i => format!("{iface}.lock"),
        (Some(o), _) => format!("{iface}@netns-{o}.lock"),
        (None, _) => format!("{iface}.lock"),
    };
    Path::new(LOCK_DIR).join(name)
}

/// An exclusive flock on an interface's lock file. The kernel releases it
/// when the process exits, however it exits, so it is never stale. A clean
/// release also removes the file (while still holding the lock; acquirers
/// check that the file they locked is still the one at the path).
#[derive(Debug)]
pub struct InterfaceLock {
    path: PathBuf,
    lock: Option<Flock<File>>,
}

impl InterfaceLock {
    pub fn acquire(iface: &str) -> Result<Self> {
        let path = lock_path(iface);
        fs::create_dir_all(LOCK_DIR)
            .map_err(|e| BpfError::io(format!("creating {LOCK_DIR}"), e))?;
        for _ in 0..8 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| BpfError::io(format!("opening lock file {}", path.display()), e))?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let holder = if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    };
                    return Err(BpfError::Busy(format!(
                        "another sluice instance{holder} drives interface {iface}: lock {} is held",
                        path.display()
                    )));
                }
                Err((_, e)) => {
                    return Err(BpfError::errno(format!("locking {}", path.display()), e))
                }
            };
            // The previous holder may have removed the file between our open
            // and our flock: then we hold a lock on a file nobody else sees.
            let same = match (lock.metadata(), fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            // Record the holder for the message above; failures are cosmetic.
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = writeln!(lock, "{}", std::process::id());
            return Ok(Self {
                path,
                lock: Some(lock),
            });
        }
        Err(BpfError::Busy(format!(
            "lock file {} keeps being replaced; another sluice instance is starting or stopping",
            path.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InterfaceLock {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!("removing lock file {}: {e}", self.path.display());
            }
            drop(lock);
        }
    }
}

/// Ids of the loaded programs that use the map pinned at `pin`, if any.
fn pinned_map_users(pin: &Path) -> Vec<u32> {
    let Ok(map) = libbpf_rs::MapHandle::from_pinned_path(pin) else {
        return Vec::new();
    };
    let Ok(info) = map.info() else {
        return Vec::new();
    };
    let id = info.info.id;
    let opts = ProgInfoQueryOptions::default().include_map_ids(true);
    ProgInfoIter::with_query_opts(opts)
        .filter(|p| p.map_ids.contains(&id))
        .map(|p| p.id)
        .collect()
}

/// Removes pins a crashed run left in `pin_dir`: only the names in `maps`;
/// any other entry is an error (the directory is not ours), and so are pins
/// whose maps a loaded program still uses (a live sluice elsewhere, e.g. in
/// another network namespace with the same interface name).
pub fn remove_stale_pins(pin_dir: &Path, maps: &[&str]) -> Result<()> {
    let entries = match fs::read_dir(pin_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BpfError::io(format!("listing {}", pin_dir.display()), e)),
    };
    let mut ours = Vec::new();
    let mut foreign = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BpfError::io(format!("listing {}", pin_dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if maps.contains(&name.as_str()) {
            ours.push(entry.path());
        } else {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        return Err(BpfError::Invalid(format!(
            "pin dir {} holds entries sluice did not create ({}); remove them or choose another --pin-dir",
            pin_dir.display(),
            foreign.join(", ")
        )));
    }
    for pin in &ours {
        // A program of a process killed a moment ago is freed asynchronously.
        let mut users = pinned_map_users(pin);
        for _ in 0..20 {
            if users.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            users = pinned_map_users(pin);
        }
        if !users.is_empty() {
            return Err(BpfError::Busy(format!(
                "pin {} belongs to a running program (id {}): another sluice instance uses pin dir {}; \
                 choose another --pin-dir",
                pin.display(),
                users.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(", "),
                pin_dir.display()
            )));
        }
    }
    for pin in ours {
        tracing::warn!(
            "removing stale pin {} (left by a sluice run that did not exit cleanly)",
            pin.display()
        );
        fs::remove_file(&pin)
            .map_err(|e| BpfError::io(format!("removing stale pin {}", pin.display()), e))?;
    }
    Ok(())
}

/// An XDP program attached to an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedXdp {
    pub prog_id: u32,
    pub name: String,
    pub mode: XdpAttachKind,
    /// Attached through a BPF link (owned by a live process) rather than netlink.
    pub via_link: bool,
}

/// Where an attached program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachKind {
    Driver,
    Generic,
    Offload,
}

impl XdpAttachKind {
    fn name(self) -> &'static str {
        match self {
            Self::Driver => "native (driver)",
            Self::Generic => "skb (generic)",
            Self::Offload => "offload",
        }
    }
    fn ip_flag(self) -> &'static str {
        match self {
            Self::Driver => "xdpdrv",
            Self::Generic => "xdpgeneric",
            Self::Offload => "xdpoffload",
        }
    }
    fn flags(self) -> XdpFlags {
        match self {
            Self::Driver => XdpFlags::DRV_MODE,
            Self::Generic => XdpFlags::SKB_MODE,
            Self::Offload => XdpFlags::HW_MODE,
        }
    }
}

/// The XDP programs attached to `ifindex`, in every mode. `any_prog` is any
/// program fd (libbpf-rs's query API wants one; it is not used).
pub fn attached_programs(
    any_prog: std::os::fd::BorrowedFd<'_>,
    ifindex: u32,
) -> Result<Vec<AttachedXdp>> {
    let opts = Xdp::new(any_prog)
        .query(ifindex as i32, XdpFlags::NONE)
        .map_err(|e| BpfError::libbpf(format!("querying XDP programs of ifindex {ifindex}"), e))?;
    let mut found = Vec::new();
    for (id, mode) in [
        (opts.drv_prog_id, XdpAttachKind::Driver),
        (opts.skb_prog_id, XdpAttachKind::Generic),
        (opts.hw_prog_id, XdpAttachKind::Offload),
    ] {
        if id == 0 {
            continue;
        }
        let name = ProgInfoIter::default()
            .find(|p| p.id == id)
            .map(|p| p.name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "?".to_string());
        let via_link = LinkInfoIter::default().any(|l| {
            l.prog_id == id && matches!(l.info, LinkTypeInfo::Xdp(ref x) if x.ifindex == ifindex)
        });
        found.push(AttachedXdp {
            prog_id: id,
            name,
            mode,
            via_link,
        });
    }
    Ok(found)
}

/// The topology's XDP_PASS placeholder, detached to make room for one of our
/// programs: [`DisplacedPlaceholder::restore`] puts it back (from inside the
/// interface's network namespace).
#[derive(Debug)]
pub struct DisplacedPlaceholder {
    fd: std::os::fd::OwnedFd,
    mode: XdpAttachKind,
}

impl DisplacedPlaceholder {
    pub fn restore(&self, ifindex: u32) -> Result<()> {
        Xdp::new(self.fd.as_fd())
            .attach(ifindex as i32, self.mode.flags())
            .map_err(|e| BpfError::libbpf("re-attaching the XDP_PASS placeholder", e))
    }
}

/// Clears the way for attaching: a sluice program attached through netlink
/// (left by an older or crashed tool) is detached with a warning; a sluice
/// program held by a live link, or any foreign program, is an error. The
/// topology's placeholder is detached and returned, to be restored.
pub fn clear_stale_xdp(
    any_prog: std::os::fd::BorrowedFd<'_>,
    iface: &Interface,
) -> Result<Option<DisplacedPlaceholder>> {
    let mut displaced = None;
    for p in attached_programs(any_prog.as_fd(), iface.index)? {
        let ours = OUR_PROGRAMS.contains(&p.name.as_str());
        if p.name == PEER_PLACEHOLDER_PROG && !p.via_link {
            tracing::info!(
                "replacing the topology's XDP_PASS placeholder (id {}) on {}",
                p.prog_id,
                iface.name
            );
            // A reference taken before detaching keeps the program alive,
            // so whoever replaced it can put it back.
            displaced = libbpf_rs::Program::fd_from_id(p.prog_id)
                .ok()
                .map(|fd| DisplacedPlaceholder { fd, mode: p.mode });
            Xdp::new(any_prog)
                .detach(iface.index as i32, p.mode.flags())
                .map_err(|e| {
                    BpfError::libbpf(
                        format!("detaching placeholder XDP program id {}", p.prog_id),
                        e,
                    )
                })?;
        } else if ours && !p.via_link {
            tracing::warn!(
                "detaching stale sluice XDP program id {} '{}' from {} ({} mode), attached through netlink",
                p.prog_id,
                p.name,
                iface.name,
                p.mode.name()
            );
            Xdp::new(any_prog)
                .detach(iface.index as i32, p.mode.flags())
                .map_err(|e| {
                    BpfError::libbpf(format!("detaching stale XDP program id {}", p.prog_id), e)
                })?;
        } else if ours {
            return Err(BpfError::Busy(format!(
                "interface {} already has sluice XDP program id {} '{}' attached through a BPF link \
                 by a live process ({} mode); stop that process first",
                iface.name,
                p.prog_id,
                p.name,
                p.mode.name()
            )));
        } else {
            return Err(BpfError::ForeignProgram {
                iface: iface.name.clone(),
                prog_id: p.prog_id,
                prog_name: p.name,
                mode: p.mode.name(),
                ip_flag: p.mode.ip_flag(),
            });
        }
    }
    Ok(displaced)
}

//! Errors of sluice-bpf. Each says what was being done and, where it helps,
//! what to do about it.

use std::io;

pub type Result<T, E = BpfError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// No interface of that name in this network namespace.
    #[error("no such interface '{0}'")]
    NoSuchInterface(String),

    /// The process lacks the capabilities to load and attach XDP programs.
    #[error("{0}")]
    Permission(String),

    /// Another sluice instance holds the interface's lock.
    #[error("{0}")]
    Busy(String),

    /// Some other XDP program is attached to the interface.
    #[error(
        "interface {iface} already has XDP program id {prog_id} '{prog_name}' attached in {mode} mode; \
         sluice will not replace a program it did not attach (detach it first, e.g. \
         `ip link set dev {iface} {ip_flag} off`)"
    )]
    ForeignProgram {
        iface: String,
        prog_id: u32,
        prog_name: String,
        mode: &'static str,
        ip_flag: &'static str,
    },

    /// Native mode requested on a driver without XDP support.
    #[error("the driver of {iface} does not support native XDP ({source}); use --xdp-mode skb")]
    NativeUnsupported { iface: String, source: io::Error },

    /// A call into libbpf failed.
    #[error("{context}: {source}")]
    Libbpf {
        context: String,
        source: libbpf_rs::Error,
    },

    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },

    /// An argument out of range (queue index, VIP flags, ...).
    #[error("{0}")]
    Invalid(String),

    #[error("{0}")]
    Other(String),
}

impl BpfError {
    pub(crate) fn libbpf(context: impl Into<String>, source: libbpf_rs::Error) -> Self {
        Self::Libbpf {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn errno(context: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Self::io(context, io::Error::from_raw_os_error(errno as i32))
    }
}

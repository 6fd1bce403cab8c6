//! sluice-bench: network-namespace topologies, kernel baselines and (later)
//! the AF_XDP generator and the benchmark orchestrator.
//!
//! - [`topology`]: the namespaces, veths, bridge and addresses every test and
//!   benchmark runs on; names and addresses are constants there.
//! - [`netns`]: run a command or a closure inside a named network namespace.
//! - [`kernel_echo`]: recvmmsg/sendmmsg UDP echo, the kernel-socket baseline.
//! - [`gen`]: the AF_XDP UDP generator and echo sink.
//! - [`exec`]: running `ip`/`ethtool`/`sysctl` with errors that say what failed.
//! - [`harness`]: what the server benchmarks share (servers pinned and
//!   stopped by PID, CPU windows, nginx's configuration).
//! - [`http_bench`], [`tls_bench`], [`proxy_bench`]: `run http`, `run tls`
//!   and `run proxy`;
//!   [`tls_client`] is the latter's handshake and idle-connection client.
//! - [`interrupt`]: SIGINT/SIGTERM during `run ...`: waits cut short, the
//!   error that unwinds through the cleanup, the final message.
#![forbid(unsafe_code)]

pub mod cpu;
pub mod echo_bench;
pub mod exec;
pub mod gen;
pub mod harness;
pub mod http_bench;
pub mod interrupt;
pub mod kernel_echo;
pub mod netns;
pub mod proxy_bench;
pub mod tls_bench;
pub mod tls_client;
pub mod topology;

//! sluice's per-core engine: XDP steering, pinned AF_XDP poll loops and the
//! built-in services. The binary is a thin wrapper around [`app::run`].
#![forbid(unsafe_code)]

pub mod access_log;
pub mod app;
pub mod apps;
pub mod cli;
pub mod handoff;
pub mod health;
pub mod neigh;
pub mod netlink;
pub mod report;
pub mod services;
pub mod stats;
pub mod tcp_service;
pub mod upstream;
pub mod worker;

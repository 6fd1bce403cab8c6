//! TCP: the sans-IO engine the poll loops drive (issue 3).
//!
//! Components with their own tests (each file's doc says what it owns):
//! congestion control (`cc`), the RFC 6298 estimator (`rtt`), the timer
//! wheel, SYN cookies, rate limiting, ephemeral ports, the receive-side
//! reassembly map (`assembler`), the sender's SACK scoreboard and the byte
//! rings that hold stream data (`ring`).

pub mod assembler;
pub mod cc;
mod conn;
mod endpoint;
pub mod isn;
pub mod ports;
pub mod ratelimit;
pub mod ring;
pub mod rtt;
pub mod scoreboard;
pub mod segment;
pub mod syncookie;
pub mod testing;
pub mod timer_wheel;
pub mod tuple;
pub mod types;

pub use cc::Algorithm;
pub use endpoint::Endpoint;
pub use tuple::FourTuple;
pub use types::{
    ConnId, ConnInfo, EndpointConfig, EndpointStats, Event, Handled, Keepalive, LocalAddr, State,
    TcpError, Transmit, Unowned,
};

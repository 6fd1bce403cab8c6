//! Health and outlier detection: the decision component and what the loops
//! need to follow its decisions (see the crate docs for what runs where).

mod cluster;
mod config;
mod outcome;
mod probe;
mod window;

pub use cluster::{BackendState, BackendView, ClusterHealth, ProbeGrant};
pub use config::{
    ActiveHealthConfig, FailureRateConfig, HealthConfig, InitialHealth, OutlierConfig,
};
pub use outcome::{GatewayFailure, HealthCheck, Outcome, OutcomeKind};
pub use probe::{LoopView, ProbeTokens};

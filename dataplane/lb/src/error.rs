//! Configuration errors: every constructor validates its input once, so the
//! request path never has to.

use core::fmt;

/// Why a balancer, table or health configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A cluster needs at least one backend.
    NoBackends,
    /// More backends than a `u16` backend index can name.
    TooManyBackends(usize),
    /// Weights are at least 1; backend `.0` has 0.
    ZeroWeight(usize),
    /// Maglev's table size must be prime.
    NotPrime(usize),
    /// Maglev's table needs at least one slot per backend (and should have
    /// about 100 per backend for even shares).
    TableTooSmall { table_size: usize, backends: usize },
    /// Two Maglev backends have the same address: the table would depend
    /// on their input order.
    DuplicateAddress(String),
    /// A health or outlier setting is out of range; the text says which.
    Invalid(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoBackends => write!(f, "cluster has no backends"),
            ConfigError::TooManyBackends(n) => {
                write!(f, "{n} backends: at most {} per cluster", u16::MAX)
            }
            ConfigError::ZeroWeight(i) => write!(f, "backend {i} has weight 0 (minimum 1)"),
            ConfigError::NotPrime(m) => write!(f, "Maglev table size {m} is not prime"),
            ConfigError::TableTooSmall {
                table_size,
                backends,
            } => write!(
                f,
                "Maglev table size {table_size} is smaller than the {backends} backends"
            ),
            ConfigError::DuplicateAddress(a) => write!(f, "backend address {a} appears twice"),
            ConfigError::Invalid(what) => write!(f, "invalid setting: {what}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks a per-backend weight list shared by the balancers.
pub(crate) fn check_weights(weights: &[u32]) -> Result<(), ConfigError> {
    if weights.is_empty() {
        return Err(ConfigError::NoBackends);
    }
    if weights.len() > usize::from(u16::MAX) {
        return Err(ConfigError::TooManyBackends(weights.len()));
    }
    match weights.iter().position(|w| *w == 0) {
        Some(i) => Err(ConfigError::ZeroWeight(i)),
        None => Ok(()),
    }
}

//! sluice's proxy configuration: listeners, routes, clusters and global
//! proxy settings.
//!
//! A configuration comes from a TOML file (`--config FILE`,
//! [`Config::from_toml_str`], [`Config::load`]) and/or one-line `--proxy`
//! flags ([`parse_proxy_flag`], [`Config::add_proxy_flags`]), and is
//! checked by [`Config::validate`]. The same types serialize whole with
//! serde, so the control process can validate a configuration and send it
//! to the dataplane as a [`Snapshot`] with a generation number.
//!
//! Errors name the file, line and column of the offending value and say
//! what was expected:
//!
//! ```text
//! sluice.toml:12:6: cluster "api": lb: expected one of round_robin, least_request, maglev, found "rr"
//! ```
//!
//! The schema, its defaults and the error format are described in the
//! crate's README.md; `examples/sluice.toml` is a complete, commented file.
//! No I/O except [`Config::load`]; no unsafe.

mod duration;
mod error;
mod flags;
mod keyword;
mod model;
pub mod router;
mod validate;

pub use duration::{format_duration, parse_duration, DisplayDuration};
pub use error::{ConfigError, Position};
pub use flags::{parse_proxy_flag, PROXY_CLUSTER_NAME};
pub use model::{
    defaults, CircuitBreaker, Cluster, Endpoint, HashOn, HealthCheck, LbPolicy, Listener,
    ListenerProtocol, OutlierDetection, PoolLimits, ProxySettings, RetryBudget, RetryOn, Route,
    StatusRange, UpstreamProtocol, UpstreamTls,
};
pub use router::{RouteMatch, Router};

use error::{render_context, route_label, Doc};
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml::de::DeTable;

/// A whole proxy configuration. In TOML the arrays are written as
/// `[[listener]]`, `[[route]]` and `[[cluster]]`; JSON uses the same keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses to accept connections on; more may come from CLI flags.
    #[serde(default, rename = "listener", skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
    /// Routing rules; see [`router`] for how one is chosen.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Named backend sets.
    #[serde(default, rename = "cluster", skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<Cluster>,
    /// Settings for every proxied request.
    #[serde(default)]
    pub proxy: ProxySettings,
}

/// What the control process sends the dataplane: a configuration and its
/// generation, which increases with every change. Deserializing does not
/// validate: the receiver calls [`Config::validate`] before use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Increases with every configuration the control process sends.
    pub generation: u64,
    /// The configuration of this generation.
    pub config: Config,
}

impl Config {
    /// Parses and validates a TOML document. `file_name` is only used in
    /// error messages. On failure returns the first error in document
    /// order; [`Config::from_toml_str_all`] returns them all.
    pub fn from_toml_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_all(text, file_name).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`Config::from_toml_str`], with every validation error: those
    /// on values written in the file by position, then those on defaulted
    /// values (a syntax or type error stops parsing, so it comes alone).
    /// The vector is never empty.
    pub fn from_toml_str_all(text: &str, file_name: &str) -> Result<Config, Vec<ConfigError>> {
        let with_file = |mut e: ConfigError| {
            e.file = Some(file_name.to_string());
            e
        };
        let root = DeTable::parse(text).map_err(|e| {
            let mut message = e.message().to_string();
            if let Some(key) = e
                .span()
                .filter(|_| message == "duplicate key")
                .and_then(|s| text.get(s))
            {
                message = format!("duplicate key {key:?}");
            }
            let mut err = ConfigError::new(Vec::new(), String::new(), message);
            err.position = e.span().map(|s| Position::of_offset(text, s.start));
            vec![with_file(err)]
        })?;
        let doc = Doc { text, root: &root };
        let config =
            Config::deserialize(toml::de::Deserializer::from(root.clone())).map_err(|e| {
                let (segs, position) = match e.span() {
                    Some(s) => (
                        doc.path_at(s.start),
                        Some(Position::of_offset(text, s.start)),
                    ),
                    None => (Vec::new(), None),
                };
                let context = render_context(&segs, |kind, i| doc.label(kind, i));
                let mut err = ConfigError::new(segs, context, error::reword(e.message()));
                err.position = position;
                vec![with_file(err)]
            })?;
        match config.validate() {
            Ok(()) => Ok(config),
            Err(errors) => {
                let mut located: Vec<(bool, ConfigError)> = errors
                    .into_iter()
                    .map(|mut e| {
                        let found = doc.position_of(&e.segs);
                        e.position = found.map(|(p, _)| p);
                        (found.is_some_and(|(_, exact)| exact), with_file(e))
                    })
                    .collect();
                // Errors on values written in the file first, in document
                // order; then those on defaulted values (located at their
                // section) and those not in the file at all. The sort is
                // stable, so errors at one position keep rule order.
                located.sort_by_key(|(exact, e)| (!exact, e.position.is_none(), e.position));
                let errors = located.into_iter().map(|(_, e)| e).collect();
                Err(errors)
            }
        }
    }

    /// Reads and parses a TOML file; errors name it as given.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut err = ConfigError::new(Vec::new(), String::new(), format!("cannot read: {e}"));
            err.file = Some(name.clone());
            err
        })?;
        Config::from_toml_str(&text, &name)
    }

    /// Checks the rules that span values: every route names a cluster,
    /// names and addresses are unique, ranges hold, timeouts are positive
    /// and nest, `-tls` protocols have a `[cluster.tls]`, Maglev has
    /// `hash_on`, and so on. Returns every problem found, in rule order,
    /// without file positions (the parser adds those).
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let issues = self.issues();
        if issues.is_empty() {
            return Ok(());
        }
        Err(issues
            .into_iter()
            .map(|i| {
                let context = render_context(&i.segs, |kind, idx| self.label(kind, idx));
                ConfigError::new(i.segs, context, i.message)
            })
            .collect())
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Serializes as TOML that [`Config::from_toml_str`] reads back to an
    /// equal `Config` (every default written out).
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    fn label(&self, kind: &str, index: usize) -> Option<String> {
        match kind {
            "cluster" => self
                .clusters
                .get(index)
                .filter(|c| !c.name.is_empty())
                .map(|c| format!("{:?}", c.name)),
            "listener" => self
                .listeners
                .get(index)
                .map(|l| format!("{:?}", l.address.to_string())),
            "route" => self
                .routes
                .get(index)
                .map(|r| route_label(r.method.as_deref(), r.host.as_deref(), &r.prefix)),
            _ => None,
        }
    }
}

impl Snapshot {
    /// Validates the carried configuration (see [`Config::validate`]).
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        self.config.validate()
    }
}

#[cfg(test)]
mod tests;

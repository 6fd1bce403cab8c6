//! The one-line form of a route and its cluster, for the command line:
//! `--proxy PREFIX=SCHEME://ADDR:PORT[,ADDR:PORT...]`.

use crate::error::{ConfigError, Seg};
use crate::model::{parse_socket_addr, Cluster, Endpoint, Route, UpstreamProtocol};
use crate::Config;

/// Schemes of the one-line form and the cluster protocol each means.
const SCHEMES: &[(&str, UpstreamProtocol)] = &[
    ("http", UpstreamProtocol::Http1),
    ("h2c", UpstreamProtocol::H2c),
    ("https", UpstreamProtocol::Http1Tls),
    ("h2", UpstreamProtocol::H2Tls),
];

/// Cluster name [`parse_proxy_flag`] gives; [`Config::add_proxy_flags`]
/// replaces it with a unique `proxy-N`.
pub const PROXY_CLUSTER_NAME: &str = "proxy";

/// Parses `PREFIX=SCHEME://ADDR:PORT[,ADDR:PORT...]` into a route and a
/// cluster with every other setting at its default (for `https` and `h2`,
/// a default `[cluster.tls]`: the system CA bundle, no SNI, so the
/// backend's certificate must name its IP address). Schemes: `http`
/// (http1), `h2c`, `https` (http1-tls), `h2` (h2-tls). IPv6 as
/// `[2001:2::10]:8080`. The cluster is named [`PROXY_CLUSTER_NAME`].
pub fn parse_proxy_flag(s: &str) -> Result<(Route, Cluster), String> {
    const FORM: &str = "PREFIX=SCHEME://ADDR:PORT[,ADDR:PORT...]";
    let Some((prefix, target)) = s.split_once('=') else {
        return Err(format!("{s:?}: expected {FORM} (no '=')"));
    };
    if !prefix.starts_with('/') {
        return Err(format!(
            "{s:?}: the path prefix must start with '/', found {prefix:?}"
        ));
    }
    let Some((scheme, list)) = target.split_once("://") else {
        return Err(format!(
            "{s:?}: expected {FORM} (no \"://\" after the scheme)"
        ));
    };
    let Some(&(_, protocol)) = SCHEMES.iter().find(|(name, _)| *name == scheme) else {
        return Err(format!(
            "{s:?}: unknown scheme {scheme:?} (expected one of http, h2c, https, h2)"
        ));
    };
    if list.is_empty() {
        return Err(format!("{s:?}: no backend address after \"{scheme}://\""));
    }
    let mut endpoints = Vec::new();
    for addr in list.split(',') {
        if addr.is_empty() {
            return Err(format!("{s:?}: empty backend address in the list"));
        }
        let addr = addr.strip_suffix('/').unwrap_or(addr);
        let address = parse_socket_addr(addr).map_err(|e| format!("{s:?}: {e}"))?;
        endpoints.push(Endpoint::new(address));
    }
    let route = Route::new(prefix, PROXY_CLUSTER_NAME);
    let cluster = Cluster::new(PROXY_CLUSTER_NAME, protocol, endpoints);
    Ok((route, cluster))
}

impl Config {
    /// Appends one route and one cluster per `--proxy` flag, in order.
    /// Clusters are named `proxy-1`, `proxy-2`, ... by the flag's position,
    /// skipping names the configuration already has. Checks each flag's
    /// syntax only: call [`Config::validate`] once every source is merged
    /// (a flag's prefix may duplicate a file's route, for one).
    pub fn add_proxy_flags(&mut self, flags: &[String]) -> Result<(), ConfigError> {
        // Parse every flag first so an error leaves the config unchanged.
        let parsed = flags
            .iter()
            .enumerate()
            .map(|(i, flag)| {
                parse_proxy_flag(flag).map_err(|message| {
                    ConfigError::new(
                        vec![Seg::Key(format!("--proxy[{i}]"))],
                        "--proxy".to_string(),
                        message,
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut n = 0;
        for (mut route, mut cluster) in parsed {
            let name = loop {
                n += 1;
                let name = format!("{PROXY_CLUSTER_NAME}-{n}");
                if !self.clusters.iter().any(|c| c.name == name) {
                    break name;
                }
            };
            route.cluster.clone_from(&name);
            cluster.name = name;
            self.routes.push(route);
            self.clusters.push(cluster);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{defaults, LbPolicy};

    fn err(s: &str) -> String {
        parse_proxy_flag(s).unwrap_err()
    }

    #[test]
    fn schemes() {
        for (scheme, protocol) in [
            ("http", UpstreamProtocol::Http1),
            ("h2c", UpstreamProtocol::H2c),
            ("https", UpstreamProtocol::Http1Tls),
            ("h2", UpstreamProtocol::H2Tls),
        ] {
            let (r, c) = parse_proxy_flag(&format!("/api={scheme}://198.18.1.10:8080")).unwrap();
            assert_eq!(c.protocol, protocol);
            assert_eq!(c.tls.is_some(), protocol.is_tls());
            assert_eq!(r.prefix, "/api");
            assert_eq!(r.cluster, c.name);
        }
    }

    #[test]
    fn endpoints_v4_and_v6_with_defaults() {
        let (r, c) =
            parse_proxy_flag("/=h2c://198.18.1.10:8080,[2001:2::10]:8080,198.18.1.11:80/").unwrap();
        let addrs: Vec<String> = c.endpoints.iter().map(|e| e.address.to_string()).collect();
        assert_eq!(
            addrs,
            ["198.18.1.10:8080", "[2001:2::10]:8080", "198.18.1.11:80"]
        );
        assert!(c.endpoints.iter().all(|e| e.weight == 1));
        assert_eq!(c.lb, LbPolicy::RoundRobin);
        assert_eq!(r.timeout, defaults::ROUTE_TIMEOUT);
        assert_eq!(r.host, None);
    }

    #[test]
    fn errors() {
        assert_eq!(
            err("/api"),
            "\"/api\": expected PREFIX=SCHEME://ADDR:PORT[,ADDR:PORT...] (no '=')"
        );
        assert_eq!(
            err("api=http://198.18.1.10:80"),
            "\"api=http://198.18.1.10:80\": the path prefix must start with '/', found \"api\""
        );
        assert_eq!(
            err("/=ftp://198.18.1.10:21"),
            "\"/=ftp://198.18.1.10:21\": unknown scheme \"ftp\" (expected one of http, h2c, https, h2)"
        );
        assert_eq!(
            err("/=198.18.1.10:80"),
            "\"/=198.18.1.10:80\": expected PREFIX=SCHEME://ADDR:PORT[,ADDR:PORT...] (no \"://\" after the scheme)"
        );
        assert_eq!(
            err("/=http://"),
            "\"/=http://\": no backend address after \"http://\""
        );
        assert_eq!(
            err("/=http://198.18.1.10:80,"),
            "\"/=http://198.18.1.10:80,\": empty backend address in the list"
        );
        assert_eq!(
            err("/=http://backend:80"),
            "\"/=http://backend:80\": expected IP:PORT like \"198.18.1.10:8080\" or \"[2001:2::10]:8080\", found \"backend:80\" (host names are not resolved: use an IP address)"
        );
        assert_eq!(
            err("/=http://198.18.1.10"),
            "\"/=http://198.18.1.10\": expected IP:PORT like \"198.18.1.10:8080\" or \"[2001:2::10]:8080\", found \"198.18.1.10\" (the port is missing)"
        );
        assert_eq!(
            err("/=http://2001:2::10:80"),
            "\"/=http://2001:2::10:80\": expected IP:PORT like \"198.18.1.10:8080\" or \"[2001:2::10]:8080\", found \"2001:2::10:80\" (write IPv6 as [ADDR]:PORT)"
        );
    }

    #[test]
    fn add_names_clusters_uniquely_and_validates_after() {
        let mut c = Config::default();
        c.clusters.push(Cluster::new(
            "proxy-2",
            UpstreamProtocol::Http1,
            vec![Endpoint::new("198.18.1.9:80".parse().unwrap())],
        ));
        c.add_proxy_flags(&[
            "/a=http://198.18.1.10:80".to_string(),
            "/b=h2c://198.18.1.11:80".to_string(),
        ])
        .unwrap();
        let names: Vec<&str> = c.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["proxy-2", "proxy-1", "proxy-3"]);
        assert_eq!(c.routes[0].cluster, "proxy-1");
        assert_eq!(c.routes[1].cluster, "proxy-3");
        c.validate().unwrap();

        c.add_proxy_flags(&["/a=http://198.18.1.12:80".to_string()])
            .unwrap();
        let errs = c.validate().unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "route \"/a\": prefix: same host, method and prefix as route[0], so this route would never match"
        );
    }

    #[test]
    fn add_reports_the_flag() {
        let mut c = Config::default();
        let e = c
            .add_proxy_flags(&["/ok=http://198.18.1.10:80".into(), "/x=http:/y".into()])
            .unwrap_err();
        assert_eq!(c, Config::default(), "nothing appended");
        assert_eq!(
            e.to_string(),
            "--proxy: \"/x=http:/y\": expected PREFIX=SCHEME://ADDR:PORT[,ADDR:PORT...] (no \"://\" after the scheme)"
        );
        assert_eq!(e.path(), "--proxy[1]");
    }
}

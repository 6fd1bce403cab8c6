//! Choosing a route for a request.
//!
//! A route matches when its host (if any), method (if any) and prefix all
//! match. Among the routes that match, the most specific wins, compared in
//! this order:
//!
//! 1. host: exact beats wildcard beats none; between wildcards the longer
//!    suffix wins (`*.api.example.com` over `*.example.com`);
//! 2. the longer prefix;
//! 3. a route with a method over one without;
//! 4. the earlier route in the file.
//!
//! Host comes first as with Envoy's virtual hosts and HAProxy's host ACLs,
//! but unlike Envoy a request whose host has routes none of which match
//! the path falls through to less specific hosts (so a host-less `/`
//! route is a default for every host).
//!
//! Hosts compare ASCII case-insensitively after dropping a `:port` and a
//! trailing dot from the request's host. The path is compared as received,
//! up to any `?`: no percent-decoding and no dot-segment removal, so the
//! caller must reject or normalize such paths before routing.

use crate::{Config, Route};

/// How specific a route is; higher wins. Depends only on the route, so
/// routes can be sorted once and the first match taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// 2 exact, 1 wildcard, 0 none.
    host_class: u8,
    /// Length of the wildcard's suffix (or exact name).
    host_len: usize,
    prefix_len: usize,
    has_method: bool,
}

fn rank(r: &Route) -> Rank {
    let (host_class, host_len) = match r.host.as_deref() {
        None => (0, 0),
        Some(h) if h.starts_with("*.") => (1, h.len() - 1),
        Some(h) => (2, h.len()),
    };
    Rank {
        host_class,
        host_len,
        prefix_len: r.prefix.len(),
        has_method: r.method.is_some(),
    }
}

/// Drops `:port` (and the brackets' content stays whole for IPv6
/// literals) and a trailing dot.
fn normalize_host(host: &str) -> &str {
    let host = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

fn host_matches(pattern: Option<&str>, host: Option<&str>) -> bool {
    let Some(pattern) = pattern else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    let host = host.as_bytes();
    match pattern.strip_prefix('*') {
        // `*.example.com`: a non-empty label sequence before the suffix.
        Some(suffix) => {
            let suffix = suffix.as_bytes();
            host.len() > suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => host.eq_ignore_ascii_case(pattern.as_bytes()),
    }
}

fn route_matches(r: &Route, host: Option<&str>, method: &str, path: &str) -> bool {
    path.starts_with(r.prefix.as_str())
        && r.method.as_deref().is_none_or(|m| m == method)
        && host_matches(r.host.as_deref(), host)
}

fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The result of [`Router::route`]: indexes into `Config::routes` and
/// `Config::clusters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the route.
    pub route: usize,
    /// Index of its cluster.
    pub cluster: usize,
}

/// Routes sorted most specific first, with their clusters resolved to
/// indexes: built once per configuration (per poll loop), then each lookup
/// is a scan without allocation.
#[derive(Debug, Clone)]
pub struct Router {
    entries: Vec<(RouteMatch, Route)>,
}

impl Router {
    /// Compiles the routes of a validated configuration. A route whose
    /// cluster does not exist (which validation refuses) is left out.
    pub fn new(config: &Config) -> Router {
        let mut entries: Vec<(RouteMatch, Route)> = config
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let cluster = config.clusters.iter().position(|c| c.name == r.cluster)?;
                Some((RouteMatch { route: i, cluster }, r.clone()))
            })
            .collect();
        // Stable sort: equal ranks keep file order.
        entries.sort_by_key(|(_, r)| std::cmp::Reverse(rank(r)));
        Router { entries }
    }

    /// The route for a request, per the module's rules. `host` is the
    /// Host header or `:authority`, `path` the request-target's path (a
    /// query is ignored).
    pub fn route(&self, host: Option<&str>, method: &str, path: &str) -> Option<RouteMatch> {
        let host = host.map(normalize_host);
        let path = strip_query(path);
        self.entries
            .iter()
            .find(|(_, r)| route_matches(r, host, method, path))
            .map(|(m, _)| *m)
    }

    /// Number of routes compiled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no route was compiled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Config {
    /// The route for a request, by the rules of the [`router`](crate::router)
    /// module. Scans every route; the dataplane builds a [`Router`] once
    /// instead.
    pub fn route_for(&self, host: Option<&str>, method: &str, path: &str) -> Option<&Route> {
        let host = host.map(normalize_host);
        let path = strip_query(path);
        // max_by_key keeps the last of equal maxima; iterate in reverse so
        // the earliest route wins a tie.
        self.routes
            .iter()
            .rev()
            .filter(|r| route_matches(r, host, method, path))
            .max_by_key(|r| rank(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cluster, Endpoint, UpstreamProtocol};

    fn config(routes: &[(&str, Option<&str>, Option<&str>)]) -> Config {
        let mut c = Config::default();
        for (k, (prefix, host, method)) in routes.iter().enumerate() {
            let name = format!("c{k}");
            let mut r = Route::new(*prefix, name.clone());
            r.host = host.map(str::to_string);
            r.method = method.map(str::to_string);
            c.routes.push(r);
            c.clusters.push(Cluster::new(
                name,
                UpstreamProtocol::Http1,
                vec![Endpoint::new("198.18.1.10:8080".parse().unwrap())],
            ));
        }
        c.validate().unwrap();
        c
    }

    /// Both lookups, checked to agree; the route index or None.
    fn pick(c: &Config, host: Option<&str>, method: &str, path: &str) -> Option<usize> {
        let by_router = Router::new(c).route(host, method, path);
        let by_scan = c
            .route_for(host, method, path)
            .map(|r| c.routes.iter().position(|x| std::ptr::eq(x, r)).unwrap());
        assert_eq!(
            by_router.map(|m| m.route),
            by_scan,
            "{host:?} {method} {path}"
        );
        if let Some(m) = by_router {
            assert_eq!(
                m.cluster, m.route,
                "clusters are c0, c1, ... in route order"
            );
        }
        by_scan
    }

    #[test]
    fn longest_prefix_wins() {
        let c = config(&[
            ("/", None, None),
            ("/api/", None, None),
            ("/api/v2/", None, None),
        ]);
        assert_eq!(pick(&c, None, "GET", "/index.html"), Some(0));
        assert_eq!(pick(&c, None, "GET", "/api/x"), Some(1));
        assert_eq!(pick(&c, None, "GET", "/api/v2/x?q=/api"), Some(2));
        assert_eq!(
            pick(&c, None, "GET", "/api"),
            Some(0),
            "'/api/' needs the slash"
        );
    }

    #[test]
    fn prefix_is_a_plain_string_prefix() {
        let c = config(&[("/api", None, None)]);
        assert_eq!(pick(&c, None, "GET", "/apis"), Some(0));
        assert_eq!(pick(&c, None, "GET", "/ap"), None);
        assert_eq!(
            pick(&c, None, "GET", "/x?/api"),
            None,
            "the query is not the path"
        );
    }

    #[test]
    fn exact_host_beats_wildcard_beats_none() {
        let c = config(&[
            ("/", None, None),
            ("/", Some("*.example.com"), None),
            ("/", Some("api.example.com"), None),
            ("/", Some("*.eu.example.com"), None),
        ]);
        assert_eq!(pick(&c, Some("api.example.com"), "GET", "/"), Some(2));
        assert_eq!(pick(&c, Some("API.Example.COM:8443"), "GET", "/"), Some(2));
        assert_eq!(pick(&c, Some("api.example.com."), "GET", "/"), Some(2));
        assert_eq!(pick(&c, Some("www.example.com"), "GET", "/"), Some(1));
        assert_eq!(
            pick(&c, Some("a.eu.example.com"), "GET", "/"),
            Some(3),
            "longer suffix"
        );
        assert_eq!(
            pick(&c, Some("example.com"), "GET", "/"),
            Some(0),
            "wildcard needs a label"
        );
        assert_eq!(pick(&c, Some("other.org"), "GET", "/"), Some(0));
        assert_eq!(pick(&c, None, "GET", "/"), Some(0));
        assert_eq!(pick(&c, Some("[2001:db8::1]:443"), "GET", "/"), Some(0));
    }

    #[test]
    fn host_beats_prefix_length_and_falls_through() {
        let c = config(&[
            ("/api/", None, None),
            ("/", Some("example.com"), None),
            ("/static/", Some("example.com"), None),
        ]);
        assert_eq!(pick(&c, Some("example.com"), "GET", "/api/x"), Some(1));
        assert_eq!(pick(&c, Some("example.com"), "GET", "/static/a"), Some(2));
        let c = config(&[
            ("/api/", None, None),
            ("/static/", Some("example.com"), None),
        ]);
        assert_eq!(
            pick(&c, Some("example.com"), "GET", "/api/x"),
            Some(0),
            "no route of the host matches the path: fall through"
        );
    }

    #[test]
    fn method_specific_beats_any_at_equal_prefix() {
        let c = config(&[
            ("/api/", None, None),
            ("/api/", None, Some("POST")),
            ("/", None, Some("GET")),
        ]);
        assert_eq!(pick(&c, None, "POST", "/api/x"), Some(1));
        assert_eq!(
            pick(&c, None, "GET", "/api/x"),
            Some(0),
            "longer prefix first"
        );
        assert_eq!(pick(&c, None, "GET", "/x"), Some(2));
        assert_eq!(
            pick(&c, None, "get", "/x"),
            None,
            "methods are case-sensitive"
        );
    }

    #[test]
    fn ties_go_to_the_earlier_route() {
        // Two matching routes of equal rank are duplicates, which
        // validation refuses; a hand-built pair still resolves the same
        // way every time.
        let mut c = config(&[("/a", None, None), ("/b", None, None)]);
        c.routes[1].prefix = "/a".into();
        assert_eq!(pick(&c, None, "GET", "/a"), Some(0));
    }

    #[test]
    fn no_routes_no_match() {
        let c = Config::default();
        assert!(Router::new(&c).is_empty());
        assert_eq!(pick(&c, None, "GET", "/"), None);
    }

    #[test]
    fn routes_to_missing_clusters_are_left_out() {
        let mut c = config(&[("/", None, None)]);
        c.routes[0].cluster = "gone".into();
        let r = Router::new(&c);
        assert_eq!(r.len(), 0);
        assert_eq!(r.route(None, "GET", "/"), None);
    }
}

//! Parser, validation and serde tests. Every error test checks the whole
//! message, line:column included.

use super::*;
use std::net::SocketAddr;
use std::time::Duration;

const EXAMPLE: &str = include_str!("../examples/sluice.toml");

/// Three lines: a valid cluster "api" to refer to.
const API: &str = "[[cluster]]\nname = \"api\"\nendpoints = [\"198.18.1.10:8080\"]\n";

fn parse(text: &str) -> Config {
    Config::from_toml_str(text, "sluice.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match Config::from_toml_str(text, "sluice.toml") {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn all_errs(text: &str) -> Vec<String> {
    Config::from_toml_str_all(text, "sluice.toml")
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ------------------------------------------------------------ the example

#[test]
fn example_file_parses() {
    let c = parse(EXAMPLE);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[1].address, addr("[2001:2::100]:443"));
    assert_eq!(c.listeners[1].protocol, ListenerProtocol::Tls);
    assert_eq!(c.proxy.spiffe_header.as_deref(), Some("x-client-spiffe-id"));
    assert_eq!(c.proxy.access_log.as_deref(), Some("-"));

    assert_eq!(c.routes.len(), 4);
    let r = &c.routes[1];
    assert_eq!(r.host.as_deref(), Some("*.example.com"));
    assert_eq!(r.timeout, Duration::from_secs(2));
    assert_eq!(r.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(r.retries, 2);
    assert_eq!(
        r.retry_on,
        [
            RetryOn::ConnectFailure,
            RetryOn::RefusedStream,
            RetryOn::GatewayError
        ]
    );
    assert_eq!(c.routes[2].method.as_deref(), Some("POST"));
    assert_eq!(c.routes[2].timeout, Duration::from_secs(60));

    let api = c.cluster("api").unwrap();
    assert_eq!(api.protocol, UpstreamProtocol::H2c);
    assert_eq!(
        api.endpoints,
        [
            Endpoint::new(addr("198.18.1.10:8080")),
            Endpoint {
                address: addr("198.18.1.11:8080"),
                weight: 3
            }
        ]
    );
    assert_eq!(api.lb, LbPolicy::LeastRequest);
    assert_eq!(api.source, Some("198.18.0.100".parse().unwrap()));
    let hc = api.health_check.as_ref().unwrap();
    assert_eq!(
        hc.expected_status,
        [
            StatusRange {
                first: 200,
                last: 299
            },
            StatusRange {
                first: 304,
                last: 304
            }
        ]
    );
    assert!(hc.expected_status.iter().any(|s| s.contains(304)));
    assert_eq!(api.outlier.failure_rate_threshold, 0.5);
    assert_eq!(api.retry_budget.percent, 20.0);

    let stat = c.cluster("static").unwrap();
    let tls = stat.tls.as_ref().unwrap();
    assert_eq!(tls.sni.as_deref(), Some("static.backend.example"));
    assert_eq!(
        tls.spiffe_id.as_deref(),
        Some("spiffe://example.org/static")
    );

    let sessions = c.cluster("sessions").unwrap();
    assert_eq!(sessions.hash_on, Some(HashOn::Header("x-user".into())));
    assert_eq!(sessions.protocol, defaults::CLUSTER_PROTOCOL);
}

#[test]
fn example_values_written_out_equal_the_defaults() {
    // The example documents the defaults; keep them in step.
    let c = parse(EXAMPLE);
    let api = c.cluster("api").unwrap();
    assert_eq!(api.pool, PoolLimits::default());
    assert_eq!(api.outlier, OutlierDetection::default());
    assert_eq!(api.breaker, CircuitBreaker::default());
    assert_eq!(api.retry_budget, RetryBudget::default());
    assert_eq!(api.connect_timeout, defaults::CONNECT_TIMEOUT);
    assert_eq!(api.idle_timeout, defaults::IDLE_TIMEOUT);
    let hc = api.health_check.as_ref().unwrap();
    let d = HealthCheck::default();
    assert_eq!(
        (hc.path.as_str(), hc.interval, hc.timeout),
        (d.path.as_str(), d.interval, d.timeout)
    );
    assert_eq!(
        (hc.healthy_threshold, hc.unhealthy_threshold),
        (d.healthy_threshold, d.unhealthy_threshold)
    );
}

#[test]
fn example_routing() {
    let c = parse(EXAMPLE);
    let router = Router::new(&c);
    let cluster_of = |host: Option<&str>, method: &str, path: &str| {
        let m = router.route(host, method, path).unwrap();
        assert_eq!(
            Some(&c.routes[m.route]),
            c.route_for(host, method, path),
            "Router and route_for agree"
        );
        c.clusters[m.cluster].name.clone()
    };
    assert_eq!(cluster_of(None, "GET", "/index.html"), "static");
    assert_eq!(cluster_of(Some("www.example.com"), "GET", "/api/x"), "api");
    assert_eq!(cluster_of(Some("example.org"), "GET", "/api/x"), "static");
    assert_eq!(
        cluster_of(Some("api.example.com"), "POST", "/api/upload/1"),
        "api"
    );
    assert_eq!(
        c.route_for(Some("api.example.com"), "POST", "/api/upload/1")
            .unwrap()
            .retries,
        0
    );
    assert_eq!(
        c.route_for(Some("api.example.com"), "GET", "/api/upload/1")
            .unwrap()
            .retries,
        2
    );
    assert_eq!(cluster_of(Some("x"), "GET", "/session/abc"), "sessions");
}

// ---------------------------------------------------------------- defaults

#[test]
fn empty_document_is_an_empty_config() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(Config::default().proxy.request_id, defaults::REQUEST_ID);
}

#[test]
fn minimal_sections_take_the_defaults() {
    let c = parse(&format!(
        "[[listener]]\naddress = \"198.18.0.100:80\"\n\n[[route]]\nprefix = \"/\"\ncluster = \"api\"\n\n{API}"
    ));
    assert_eq!(c.listeners[0].protocol, defaults::LISTENER_PROTOCOL);
    assert_eq!(c.routes[0], Route::new("/", "api"));
    assert_eq!(c.routes[0].timeout, Duration::from_secs(15));
    assert_eq!(c.routes[0].retries, 1);
    assert_eq!(
        c.clusters[0],
        Cluster::new(
            "api",
            UpstreamProtocol::Http1,
            vec![Endpoint::new(addr("198.18.1.10:8080"))]
        )
    );
    assert_eq!(c.clusters[0].health_check, None);
    assert!(c.clusters[0].outlier.enabled);
    assert_eq!(c.proxy, ProxySettings::default());
}

#[test]
fn empty_sections_take_the_defaults() {
    let c = parse(&format!(
        "{API}protocol = \"h2-tls\"\n[cluster.tls]\n[cluster.health_check]\n[cluster.pool]\n[proxy]\n"
    ));
    let api = &c.clusters[0];
    assert_eq!(api.tls, Some(UpstreamTls::default()));
    assert_eq!(
        api.tls.as_ref().unwrap().ca.to_str(),
        Some(defaults::TLS_CA)
    );
    assert_eq!(api.health_check, Some(HealthCheck::default()));
    assert_eq!(api.pool, PoolLimits::default());
}

#[test]
fn names_are_lowercased_where_case_does_not_matter() {
    let c = parse(&format!(
        "[proxy]\nspiffe_header = \"X-Client-Spiffe-Id\"\n[[route]]\nprefix = \"/\"\nhost = \"API.Example.com\"\nmethod = \"GET\"\ncluster = \"api\"\n{API}lb = \"maglev\"\nhash_on = \"header:X-User\"\n"
    ));
    assert_eq!(c.proxy.spiffe_header.as_deref(), Some("x-client-spiffe-id"));
    assert_eq!(c.routes[0].host.as_deref(), Some("api.example.com"));
    assert_eq!(
        c.routes[0].method.as_deref(),
        Some("GET"),
        "methods keep their case"
    );
    assert_eq!(c.clusters[0].hash_on, Some(HashOn::Header("x-user".into())));
}

// ------------------------------------------------------------------- serde

#[test]
fn snapshot_round_trips_through_json() {
    let snap = Snapshot {
        generation: 42,
        config: parse(EXAMPLE),
    };
    let json = serde_json::to_string(&snap).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    back.validate().unwrap();
    // The wire form uses the configuration's spellings.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["generation"], 42);
    assert_eq!(v["config"]["route"][1]["timeout"], "2s");
    assert_eq!(v["config"]["route"][1]["retry_on"][2], "gateway-error");
    assert_eq!(v["config"]["cluster"][0]["lb"], "least_request");
    assert_eq!(
        v["config"]["cluster"][0]["endpoints"][0],
        "198.18.1.10:8080"
    );
    assert_eq!(v["config"]["cluster"][0]["endpoints"][1]["weight"], 3);
    assert_eq!(
        v["config"]["cluster"][0]["health_check"]["expected_status"][0],
        "2xx"
    );
    assert_eq!(
        v["config"]["cluster"][0]["health_check"]["expected_status"][1],
        304
    );
    assert_eq!(v["config"]["cluster"][2]["hash_on"], "header:x-user");
    assert_eq!(v["config"]["listener"][1]["address"], "[2001:2::100]:443");
    assert!(
        v["config"]["route"][0].get("host").is_none(),
        "None is left out"
    );
}

#[test]
fn json_snapshot_refuses_unknown_keys() {
    let e = serde_json::from_str::<Snapshot>(r#"{"generation":1,"config":{},"extra":0}"#)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("unknown field `extra`"), "{e}");
    let e = serde_json::from_str::<Snapshot>(r#"{"generation":1,"config":{"proxy":{"x":1}}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("unknown field `x`"), "{e}");
}

#[test]
fn json_snapshot_is_validated_by_the_receiver() {
    let json = r#"{"generation":7,"config":{"route":[{"prefix":"/","cluster":"nope"}]}}"#;
    let snap: Snapshot = serde_json::from_str(json).unwrap();
    assert_eq!(snap.config.routes[0].timeout, defaults::ROUTE_TIMEOUT);
    let errs = snap.validate().unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "route \"/\": cluster: unknown cluster \"nope\" (no [[cluster]] is defined)"
    );
}

#[test]
fn toml_round_trip() {
    let c = parse(EXAMPLE);
    let text = c.to_toml_string().unwrap();
    assert_eq!(parse(&text), c, "{text}");
}

#[test]
fn durations_serialize_in_the_input_form() {
    let c = parse(&format!(
        "[[route]]\nprefix = \"/\"\ncluster = \"api\"\ntimeout = \"1.5s\"\nper_try_timeout = \"250ms\"\n{API}"
    ));
    let json = serde_json::to_value(&c.routes[0]).unwrap();
    assert_eq!(json["timeout"], "1500ms");
    assert_eq!(json["per_try_timeout"], "250ms");
}

// ---------------------------------------------------------------- load()

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("sluice-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[proxy]\nrequest_id = 1\n").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:2:14: proxy.request_id: expected a boolean, found integer 1",
            path.display()
        )
    );
    std::fs::write(&path, EXAMPLE).unwrap();
    assert_eq!(Config::load(&path).unwrap(), parse(EXAMPLE));
    std::fs::remove_dir_all(&dir).unwrap();

    let missing = dir.join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(
        e.file.as_deref(),
        Some(missing.display().to_string().as_str())
    );
    assert!(e.message.starts_with("cannot read: "), "{e}");
}

// ------------------------------------------------------ syntax and shape

#[test]
fn syntax_errors_have_positions() {
    assert_eq!(
        err("[[route]]\nprefix = \"/\"\ncluster = \n"),
        "sluice.toml:3:11: string values must be quoted, expected literal string"
    );
    assert_eq!(
        err("[proxy]\naccess_log = \"a\"\naccess_log = \"b\"\n"),
        "sluice.toml:3:1: duplicate key \"access_log\""
    );
    assert_eq!(
        err("[[cluster]]\nname = \"a\"\n[cluster]\n"),
        "sluice.toml:3:2: duplicate key \"cluster\""
    );
    assert_eq!(
        err("[proxy\n"),
        "sluice.toml:1:7: unclosed table, expected `]`"
    );
    assert_eq!(
        err("[proxy]\nrequest_id = tru\n"),
        "sluice.toml:2:14: invalid boolean, expected `true`"
    );
}

#[test]
fn keyword_errors() {
    assert_eq!(
        err(&format!("{API}lb = \"rr\"\n")),
        "sluice.toml:4:6: cluster \"api\": lb: expected one of round_robin, least_request, maglev, found \"rr\""
    );
    assert_eq!(
        err(&format!("{API}protocol = \"h3\"\n")),
        "sluice.toml:4:12: cluster \"api\": protocol: expected one of http1, h2c, http1-tls, h2-tls, found \"h3\""
    );
    assert_eq!(
        err("[[listener]]\naddress = \"198.18.0.100:443\"\nprotocol = \"https\"\n"),
        "sluice.toml:3:12: listener \"198.18.0.100:443\": protocol: expected one of http, tls, found \"https\""
    );
    assert_eq!(
        err("[[route]]\nprefix = \"/\"\ncluster = \"api\"\nretry_on = [\"reset\", \"timeout\"]\n"),
        "sluice.toml:4:22: route \"/\": retry_on[1]: expected one of connect-failure, refused-stream, reset, retriable-503, 5xx, gateway-error, found \"timeout\""
    );
    assert_eq!(
        err(&format!("{API}lb = 3\n")),
        "sluice.toml:4:6: cluster \"api\": lb: expected one of round_robin, least_request, maglev, found integer 3"
    );
}

#[test]
fn unknown_keys_are_errors() {
    assert_eq!(
        err("listeners = []\n"),
        "sluice.toml:1:1: unknown key \"listeners\" (expected one of listener, route, cluster, proxy)"
    );
    assert_eq!(
        err(&format!("{API}lbb = \"maglev\"\n")),
        "sluice.toml:4:1: cluster \"api\": unknown key \"lbb\" (expected one of name, protocol, endpoints, lb, hash_on, source, connect_timeout, idle_timeout, pool, tls, health_check, outlier, breaker, retry_budget)"
    );
    assert_eq!(
        err(&format!("{API}[cluster.pool]\nmax_conns = 3\n")),
        "sluice.toml:5:1: cluster \"api\": pool: unknown key \"max_conns\" (expected one of max_connections, max_streams_per_connection, max_idle)"
    );
    assert_eq!(
        err("[[cluster]]\nname = \"api\"\nendpoints = [{ address = \"198.18.1.10:80\", wieght = 2 }]\n"),
        "sluice.toml:3:44: cluster \"api\": endpoints[0]: unknown key \"wieght\" (expected address or weight)"
    );
    assert_eq!(
        err("[proxy]\nrequest-id = false\n"),
        "sluice.toml:2:1: proxy: unknown key \"request-id\" (expected one of spiffe_header, access_log, request_id)"
    );
}

#[test]
fn missing_keys() {
    assert_eq!(
        err("[[route]]\nprefix = \"/api\"\n"),
        "sluice.toml:1:1: route \"/api\": missing required key \"cluster\""
    );
    assert_eq!(
        err(&format!(
            "{API}[[cluster]]\nendpoints = [\"198.18.1.11:80\"]\n"
        )),
        "sluice.toml:4:1: cluster[1]: missing required key \"name\""
    );
}

#[test]
fn type_errors() {
    assert_eq!(
        err("[[route]]\nprefix = \"/\"\ncluster = \"api\"\nretries = \"2\"\n"),
        "sluice.toml:4:11: route \"/\": retries: expected u32, found string \"2\""
    );
    assert_eq!(
        err("[[route]]\nprefix = \"/\"\ncluster = \"api\"\nretries = -1\n"),
        "sluice.toml:4:11: route \"/\": retries: expected u32, found integer -1"
    );
    assert_eq!(
        err(&format!("{API}[cluster.retry_budget]\npercent = \"20%\"\n")),
        "sluice.toml:5:11: cluster \"api\": retry_budget.percent: expected f64, found string \"20%\""
    );
}

#[test]
fn duration_errors() {
    assert_eq!(
        err(&format!("{API}connect_timeout = 5\n")),
        "sluice.toml:4:19: cluster \"api\": connect_timeout: expected a duration string with a unit, like \"5s\" or \"5ms\", found integer 5"
    );
    assert_eq!(
        err(&format!("{API}idle_timeout = \"60 s\"\n")),
        "sluice.toml:4:16: cluster \"api\": idle_timeout: duration \"60 s\": unknown unit \" s\" (expected us, ms, s, m or h)"
    );
    assert_eq!(
        err("[[route]]\nprefix = \"/\"\ncluster = \"api\"\ntimeout = \"-1s\"\n"),
        "sluice.toml:4:11: route \"/\": timeout: negative duration \"-1s\""
    );
}

#[test]
fn address_errors() {
    assert_eq!(
        err("[[cluster]]\nname = \"api\"\nendpoints = [\"backend.internal:80\"]\n"),
        "sluice.toml:3:14: cluster \"api\": endpoints[0]: expected IP:PORT like \"198.18.1.10:8080\" or \"[2001:2::10]:8080\", found \"backend.internal:80\" (host names are not resolved: use an IP address)"
    );
    assert_eq!(
        err("[[listener]]\naddress = \"2001:2::100:443\"\n"),
        "sluice.toml:2:11: listener \"2001:2::100:443\": address: expected IP:PORT like \"198.18.1.10:8080\" or \"[2001:2::10]:8080\", found \"2001:2::100:443\" (write IPv6 as [ADDR]:PORT)"
    );
    assert_eq!(
        err(&format!("{API}source = \"198.18.0.100:0\"\n")),
        "sluice.toml:4:10: cluster \"api\": source: expected an IP address like \"198.18.0.100\" or \"2001:2::100\" (no port), found \"198.18.0.100:0\""
    );
    assert_eq!(
        err(&format!("{API}lb = \"maglev\"\nhash_on = \"cookie:sid\"\n")),
        "sluice.toml:5:11: cluster \"api\": hash_on: expected \"header:NAME\" or \"client_address\", found \"cookie:sid\""
    );
    assert_eq!(
        err(&format!("{API}[cluster.health_check]\nexpected_status = [\"2xx\", \"20\"]\n")),
        "sluice.toml:5:27: cluster \"api\": health_check.expected_status[1]: expected a status like 200, \"2xx\" or \"200-399\", found \"20\""
    );
}

// -------------------------------------------------------------- validation

#[test]
fn route_rules() {
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\ncluster = \"apx\"\n{API}[[cluster]]\nname = \"web\"\nendpoints = [\"198.18.1.12:80\"]\n")),
        "sluice.toml:3:11: route \"/\": cluster: unknown cluster \"apx\" (clusters: api, web)"
    );
    assert_eq!(
        err(&format!(
            "[[route]]\nprefix = \"api\"\ncluster = \"api\"\n{API}"
        )),
        "sluice.toml:2:10: route \"api\": prefix: must start with '/', found \"api\""
    );
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/a?b\"\ncluster = \"api\"\n{API}")),
        "sluice.toml:2:10: route \"/a?b\": prefix: \"/a?b\": a path prefix cannot contain '?', '#', spaces or control characters"
    );
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\nhost = \"example.com:443\"\ncluster = \"api\"\n{API}")),
        "sluice.toml:3:8: route \"example.com:443/\": host: expected a lowercase host name like \"example.com\" or \"*.example.com\" (no port), found \"example.com:443\""
    );
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\nhost = \"api.*.com\"\ncluster = \"api\"\n{API}")),
        "sluice.toml:3:8: route \"api.*.com/\": host: expected a lowercase host name like \"example.com\" or \"*.example.com\" (no port), found \"api.*.com\""
    );
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\nmethod = \"GET POST\"\ncluster = \"api\"\n{API}")),
        "sluice.toml:3:10: route GET POST \"/\": method: expected an HTTP method like \"GET\", found \"GET POST\""
    );
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\ncluster = \"api\"\n[[route]]\nprefix = \"/\"\ncluster = \"api\"\n{API}")),
        "sluice.toml:5:10: route \"/\": prefix: same host, method and prefix as route[0], so this route would never match"
    );
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\ncluster = \"api\"\nretry_on = [\"reset\", \"5xx\", \"reset\"]\n{API}")),
        "sluice.toml:4:29: route \"/\": retry_on[2]: \"reset\" is listed twice"
    );
}

#[test]
fn route_timeouts() {
    assert_eq!(
        err(&format!(
            "[[route]]\nprefix = \"/\"\ncluster = \"api\"\ntimeout = \"0s\"\n{API}"
        )),
        "sluice.toml:4:11: route \"/\": timeout: must be greater than 0"
    );
    assert_eq!(
        err(&format!(
            "[[route]]\nprefix = \"/\"\ncluster = \"api\"\nper_try_timeout = \"0ms\"\n{API}"
        )),
        "sluice.toml:4:19: route \"/\": per_try_timeout: must be greater than 0"
    );
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\ncluster = \"api\"\ntimeout = \"1s\"\nper_try_timeout = \"1.5s\"\n{API}")),
        "sluice.toml:5:19: route \"/\": per_try_timeout: 1500ms is longer than the route's timeout 1s"
    );
    // Against the default timeout (15s), which is not in the file.
    assert_eq!(
        err(&format!("[[route]]\nprefix = \"/\"\ncluster = \"api\"\nper_try_timeout = \"20s\"\n{API}")),
        "sluice.toml:4:19: route \"/\": per_try_timeout: 20s is longer than the route's timeout 15s"
    );
}

#[test]
fn cluster_name_rules() {
    assert_eq!(
        err(&format!(
            "{API}[[cluster]]\nname = \"api\"\nendpoints = [\"198.18.1.11:80\"]\n"
        )),
        "sluice.toml:5:8: cluster \"api\": name: duplicate cluster name \"api\" (also cluster[0])"
    );
    assert_eq!(
        err("[[cluster]]\nname = \"my api\"\nendpoints = [\"198.18.1.11:80\"]\n"),
        "sluice.toml:2:8: cluster \"my api\": name: expected letters, digits, '-', '_' or '.', found \"my api\""
    );
}

#[test]
fn endpoint_rules() {
    assert_eq!(
        err("[[cluster]]\nname = \"api\"\nendpoints = []\n"),
        "sluice.toml:3:13: cluster \"api\": endpoints: at least one endpoint is required"
    );
    assert_eq!(
        err("[[cluster]]\nname = \"api\"\nendpoints = [\"198.18.1.10:0\"]\n"),
        "sluice.toml:3:14: cluster \"api\": endpoints[0]: 198.18.1.10:0: port must not be 0"
    );
    assert_eq!(
        err("[[cluster]]\nname = \"api\"\nendpoints = [\"198.18.1.10:80\", \"0.0.0.0:80\"]\n"),
        "sluice.toml:3:32: cluster \"api\": endpoints[1]: 0.0.0.0:80: cannot connect to an unspecified or multicast address"
    );
    assert_eq!(
        err("[[cluster]]\nname = \"api\"\nendpoints = [\"198.18.1.10:80\", { address = \"198.18.1.10:80\", weight = 2 }]\n"),
        "sluice.toml:3:32: cluster \"api\": endpoints[1]: 198.18.1.10:80 is listed twice"
    );
    assert_eq!(
        err("[[cluster]]\nname = \"api\"\nendpoints = [{ address = \"198.18.1.10:80\", weight = 0 }]\n"),
        "sluice.toml:3:53: cluster \"api\": endpoints[0].weight: must be between 1 and 10000, found 0"
    );
    assert_eq!(
        err(&format!("{API}source = \"2001:2::100\"\n")),
        "sluice.toml:4:10: cluster \"api\": source: source 2001:2::100 and endpoint 198.18.1.10:8080 are of different address families"
    );
}

#[test]
fn lb_rules() {
    assert_eq!(
        err(&format!("{API}lb = \"maglev\"\n")),
        "sluice.toml:4:6: cluster \"api\": lb: lb \"maglev\" needs hash_on (\"header:NAME\" or \"client_address\")"
    );
    assert_eq!(
        err(&format!("{API}hash_on = \"client_address\"\n")),
        "sluice.toml:4:11: cluster \"api\": hash_on: hash_on is only used with lb \"maglev\" (lb is \"round_robin\")"
    );
    assert_eq!(
        err(&format!("{API}lb = \"maglev\"\nhash_on = \"header:host\"\n")),
        "sluice.toml:5:11: cluster \"api\": hash_on: \"host\" is managed by the proxy and cannot be used here"
    );
    parse(&format!(
        "{API}lb = \"maglev\"\nhash_on = \"client_address\"\n"
    ));
}

#[test]
fn cluster_timeouts_and_pool() {
    assert_eq!(
        err(&format!("{API}connect_timeout = \"0s\"\n")),
        "sluice.toml:4:19: cluster \"api\": connect_timeout: must be greater than 0"
    );
    assert_eq!(
        err(&format!("{API}[cluster.pool]\nmax_connections = 0\n")),
        "sluice.toml:5:19: cluster \"api\": pool.max_connections: must be at least 1"
    );
    assert_eq!(
        err(&format!("{API}[cluster.pool]\nmax_idle = 65\n")),
        "sluice.toml:5:12: cluster \"api\": pool.max_idle: 65 is more than pool.max_connections 64"
    );
    assert_eq!(
        err(&format!(
            "{API}[cluster.pool]\nmax_connections = 8\nmax_idle = 9\n"
        )),
        "sluice.toml:6:12: cluster \"api\": pool.max_idle: 9 is more than pool.max_connections 8"
    );
}

#[test]
fn defaults_that_follow_another_key() {
    // Changing one key alone never trips a rule on another's default.
    let c = parse(&format!(
        "{API}[cluster.pool]\nmax_connections = 8\n[cluster.health_check]\ninterval = \"500ms\"\n[cluster.outlier]\nbase_ejection = \"10m\"\n[cluster.retry_budget]\nbackoff_base = \"1s\"\n"
    ));
    let api = &c.clusters[0];
    assert_eq!(api.pool.max_idle, 8);
    assert_eq!(
        api.health_check.as_ref().unwrap().timeout,
        Duration::from_millis(500)
    );
    assert_eq!(api.outlier.max_ejection, Duration::from_secs(600));
    assert_eq!(api.retry_budget.backoff_max, Duration::from_secs(10));
    // And the plain defaults are the documented ones.
    assert_eq!(PoolLimits::default().max_idle, defaults::POOL_MAX_IDLE);
    assert_eq!(HealthCheck::default().timeout, defaults::HEALTH_TIMEOUT);
    assert_eq!(
        OutlierDetection::default().max_ejection,
        defaults::MAX_EJECTION
    );
    assert_eq!(
        RetryBudget::default().backoff_max,
        Duration::from_millis(250)
    );
}

#[test]
fn tls_rules() {
    assert_eq!(
        err(&format!("{API}protocol = \"h2-tls\"\n")),
        "sluice.toml:4:12: cluster \"api\": protocol: protocol \"h2-tls\" needs a [cluster.tls] section"
    );
    assert_eq!(
        err(&format!("{API}protocol = \"h2c\"\n[cluster.tls]\nsni = \"b.example\"\n")),
        "sluice.toml:5:1: cluster \"api\": tls: [cluster.tls] is only used with protocol \"http1-tls\" or \"h2-tls\" (protocol is \"h2c\")"
    );
    let tls = format!("{API}protocol = \"http1-tls\"\n[cluster.tls]\n");
    assert_eq!(
        err(&format!("{tls}client_cert = \"c.pem\"\n")),
        "sluice.toml:6:15: cluster \"api\": tls.client_cert: client_cert needs client_key (both or neither)"
    );
    assert_eq!(
        err(&format!("{tls}client_key = \"c.key\"\n")),
        "sluice.toml:6:14: cluster \"api\": tls.client_key: client_key needs client_cert (both or neither)"
    );
    assert_eq!(
        err(&format!("{tls}sni = \"b.example:443\"\n")),
        "sluice.toml:6:7: cluster \"api\": tls.sni: expected a lowercase host name like \"backend.example\", found \"b.example:443\""
    );
    assert_eq!(
        err(&format!("{tls}spiffe_id = \"spiffe://example.org/\"\n")),
        "sluice.toml:6:13: cluster \"api\": tls.spiffe_id: expected \"spiffe://TRUST-DOMAIN/PATH\", found \"spiffe://example.org/\""
    );
    assert_eq!(
        err(&format!("{tls}ca = \"\"\n")),
        "sluice.toml:6:6: cluster \"api\": tls.ca: must be the path of a PEM file"
    );
    parse(&format!("{tls}spiffe_id = \"spiffe://example.org\"\n"));
    parse(&format!("{tls}spiffe_id = \"spiffe://example.org/ns/prod/sa/api\"\nclient_cert = \"c\"\nclient_key = \"k\"\n"));
}

#[test]
fn health_check_rules() {
    let hc = format!("{API}[cluster.health_check]\n");
    assert_eq!(
        err(&format!("{hc}path = \"healthz\"\n")),
        "sluice.toml:5:8: cluster \"api\": health_check.path: expected a path starting with '/', found \"healthz\""
    );
    assert_eq!(
        err(&format!("{hc}timeout = \"3s\"\n")),
        "sluice.toml:5:11: cluster \"api\": health_check.timeout: 3s is longer than health_check.interval 2s"
    );
    assert_eq!(
        err(&format!("{hc}interval = \"0s\"\ntimeout = \"0s\"\n")),
        "sluice.toml:5:12: cluster \"api\": health_check.interval: must be greater than 0"
    );
    assert_eq!(
        err(&format!("{hc}unhealthy_threshold = 0\n")),
        "sluice.toml:5:23: cluster \"api\": health_check.unhealthy_threshold: must be at least 1"
    );
    assert_eq!(
        err(&format!("{hc}expected_status = []\n")),
        "sluice.toml:5:19: cluster \"api\": health_check.expected_status: at least one status is required"
    );
    assert_eq!(
        err(&format!("{hc}expected_status = [\"299-200\"]\n")),
        "sluice.toml:5:20: cluster \"api\": health_check.expected_status[0]: 299-200: expected statuses between 100 and 599, low to high"
    );
    assert_eq!(
        err(&format!("{hc}expected_status = [42]\n")),
        "sluice.toml:5:20: cluster \"api\": health_check.expected_status[0]: expected an HTTP status code, found 42"
    );
}

#[test]
fn outlier_breaker_budget_rules() {
    assert_eq!(
        err(&format!("{API}[cluster.outlier]\nfailure_rate_threshold = 50\n")),
        "sluice.toml:5:26: cluster \"api\": outlier.failure_rate_threshold: must be between 0 and 1 (a fraction; 0 turns it off), found 50"
    );
    assert_eq!(
        err(&format!("{API}[cluster.outlier]\nmax_ejection = \"10s\"\n")),
        "sluice.toml:5:16: cluster \"api\": outlier.max_ejection: 10s is shorter than outlier.base_ejection 30s"
    );
    assert_eq!(
        err(&format!("{API}[cluster.outlier]\nmax_ejection_percent = 101\n")),
        "sluice.toml:5:24: cluster \"api\": outlier.max_ejection_percent: must be between 0 and 100, found 101"
    );
    assert_eq!(
        err(&format!("{API}[cluster.outlier]\nhalf_open_probes = 0\n")),
        "sluice.toml:5:20: cluster \"api\": outlier.half_open_probes: must be at least 1"
    );
    assert_eq!(
        err(&format!("{API}[cluster.breaker]\nmax_requests = 0\n")),
        "sluice.toml:5:16: cluster \"api\": breaker.max_requests: must be at least 1"
    );
    assert_eq!(
        err(&format!("{API}[cluster.retry_budget]\npercent = 120.0\n")),
        "sluice.toml:5:11: cluster \"api\": retry_budget.percent: must be between 0 and 100, found 120"
    );
    assert_eq!(
        err(&format!("{API}[cluster.retry_budget]\nbackoff_max = \"10ms\"\n")),
        "sluice.toml:5:15: cluster \"api\": retry_budget.backoff_max: 10ms is shorter than retry_budget.backoff_base 25ms"
    );
    // Each detector off: allowed.
    parse(&format!("{API}[cluster.outlier]\nenabled = false\nconsecutive_5xx = 0\nconsecutive_gateway_failures = 0\nfailure_rate_threshold = 0.0\n"));
}

#[test]
fn listener_rules() {
    assert_eq!(
        err("[[listener]]\naddress = \"198.18.0.100:80\"\n[[listener]]\naddress = \"198.18.0.100:80\"\nprotocol = \"tls\"\n"),
        "sluice.toml:4:11: listener \"198.18.0.100:80\": address: duplicate listener address 198.18.0.100:80 (also listener[0])"
    );
    assert_eq!(
        err("[[listener]]\naddress = \"[::]:0\"\n"),
        "sluice.toml:2:11: listener \"[::]:0\": address: port must not be 0"
    );
}

#[test]
fn proxy_rules() {
    assert_eq!(
        err("[proxy]\nspiffe_header = \"x client\"\n"),
        "sluice.toml:2:17: proxy.spiffe_header: \"x client\" is not a valid lowercase header name"
    );
    assert_eq!(
        err("[proxy]\nspiffe_header = \"Connection\"\n"),
        "sluice.toml:2:17: proxy.spiffe_header: \"connection\" is managed by the proxy and cannot be used here"
    );
    assert_eq!(
        err("[proxy]\naccess_log = \"\"\n"),
        "sluice.toml:2:14: proxy.access_log: must be a file path or \"-\" for standard output"
    );
}

#[test]
fn all_errors_in_document_order() {
    let text = format!(
        "[[route]]\nprefix = \"x\"\ncluster = \"nope\"\n{API}connect_timeout = \"0s\"\n[[listener]]\naddress = \"198.18.0.100:0\"\n"
    );
    assert_eq!(
        all_errs(&text),
        [
            "sluice.toml:2:10: route \"x\": prefix: must start with '/', found \"x\"",
            "sluice.toml:3:11: route \"x\": cluster: unknown cluster \"nope\" (clusters: api)",
            "sluice.toml:7:19: cluster \"api\": connect_timeout: must be greater than 0",
            "sluice.toml:9:11: listener \"198.18.0.100:0\": address: port must not be 0",
        ]
    );
    // The first of them is what from_toml_str returns.
    assert_eq!(err(&text), all_errs(&text)[0]);
}

#[test]
fn validate_without_a_file_has_no_positions() {
    let mut c = Config::default();
    c.routes.push(Route::new("/", "api"));
    c.clusters
        .push(Cluster::new("api", UpstreamProtocol::H2Tls, Vec::new()));
    c.clusters[0].tls = None;
    let errs = c.validate().unwrap_err();
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "cluster \"api\": endpoints: at least one endpoint is required",
            "cluster \"api\": protocol: protocol \"h2-tls\" needs a [cluster.tls] section",
        ]
    );
    assert_eq!(errs[1].path(), "cluster[0].protocol");
    assert!(errs
        .iter()
        .all(|e| e.file.is_none() && e.position.is_none()));
}

#[test]
fn code_built_configs_must_keep_names_lowercase() {
    let mut c = parse(&format!(
        "[[route]]\nprefix = \"/\"\ncluster = \"api\"\n{API}"
    ));
    c.routes[0].host = Some("Example.com".into());
    c.proxy.spiffe_header = Some("X-Id".into());
    let errs = c.validate().unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn json_nulls_are_absent_values() {
    let json = r#"{"generation":1,"config":{
        "route":[{"prefix":"/","cluster":"api","host":null,"method":null,"per_try_timeout":null}],
        "cluster":[{"name":"api","endpoints":["198.18.1.10:80"],"source":null,"hash_on":null,"tls":null}],
        "proxy":{"spiffe_header":null,"access_log":null}}}"#;
    let snap: Snapshot = serde_json::from_str(json).unwrap();
    assert_eq!(snap.config.routes[0], Route::new("/", "api"));
    assert_eq!(snap.config.clusters[0].source, None);
    assert_eq!(snap.config.proxy, ProxySettings::default());
    snap.validate().unwrap();
}

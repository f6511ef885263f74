//! docker-compose's `observability` profile and the files under `deploy/`:
//! every Prometheus scrape target is a compose service at the port where its
//! environment makes it serve /metrics, and every such service is scraped;
//! the alert rules and Grafana's provisioning reach the container through the
//! compose mounts; the dashboard names the provisioned data source; the
//! tools are official pinned images, and the services send traces to Jaeger
//! only when told. Then the check that needs the running system: every
//! metric the dashboard and the alert rules query is exposed by the services
//! after one checkout, started in-process the way the launcher tests do.
//! Compose helpers come from `deployment.rs`; [`paid_checkout`] runs one
//! checkout to its credit through any running system, for other tests too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::pb::{CheckoutStatus, StartCheckoutRequest, WatchCheckoutRequest};
use checkout_contract::trace::TRACEPARENT;
use serde_yaml::Value;
use stack::StackConfig;
use stack::system::{self, DEMO_USER_ID, Running};

use crate::deployment::{compose, published_ports, readme_section, repo, services};
use crate::launcher::{authed, eur_balance, pay};

/// The compose services that serve /metrics, and the variable naming the
/// listener that serves it (the live test below scrapes those listeners).
const METRICS_LISTENERS: &[(&str, &str)] = &[
    ("gateway", "GATEWAY_ADMIN_LISTEN"),
    ("checkout", "CHECKOUT_WEBHOOK_LISTEN"),
    ("blazing_sun", "BLAZING_SUN_LISTEN"),
];

const PROFILE: &str = "observability";

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is YAML: {e}", path.display()))
}

fn prometheus_config() -> Value {
    yaml(&repo().join("deploy/prometheus/prometheus.yml"))
}

fn alert_rules() -> Value {
    yaml(&repo().join("deploy/prometheus/alerts.yml"))
}

fn dashboard() -> serde_json::Value {
    let path = repo().join("deploy/grafana/dashboards/checkout.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is JSON: {e}", path.display()))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .map(|s| s.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// Where `container_path` of `service` comes from on the host, through its
/// bind mounts (`./host:/container[:ro]`), which must be read-only.
fn host_path(compose: &Value, service: &str, container_path: &str) -> PathBuf {
    for mount in strings(&compose["services"][service]["volumes"]) {
        let mut parts = mount.split(':');
        let (Some(host), Some(inside)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !host.starts_with("./") {
            continue; // a named volume
        }
        if let Some(rest) = container_path.strip_prefix(inside) {
            if !(rest.is_empty() || rest.starts_with('/')) {
                continue;
            }
            assert_eq!(
                parts.next(),
                Some("ro"),
                "{service}: mount {mount} must be read-only"
            );
            return repo()
                .join(host.trim_start_matches("./"))
                .join(rest.trim_start_matches('/'));
        }
    }
    panic!("{service}: no bind mount holds {container_path}")
}

/// `host:port` of every scrape target, with its job: static targets and the
/// names Docker's DNS resolves to every replica.
fn scrape_targets(config: &Value) -> Vec<(String, String, u16)> {
    let mut targets = Vec::new();
    for job in config["scrape_configs"].as_sequence().unwrap() {
        let name = job["job_name"].as_str().unwrap().to_owned();
        assert!(
            job.get("metrics_path")
                .is_none_or(|p| p.as_str() == Some("/metrics")),
            "{name}: the services serve /metrics"
        );
        assert!(
            job.get("scheme").is_none_or(|s| s.as_str() == Some("http")),
            "{name}: the services serve plain HTTP"
        );
        let mut found = 0;
        for sc in job["static_configs"].as_sequence().into_iter().flatten() {
            for target in strings(&sc["targets"]) {
                let (host, port) = target
                    .rsplit_once(':')
                    .unwrap_or_else(|| panic!("{name}: target {target} needs a port"));
                targets.push((name.clone(), host.to_owned(), port.parse().unwrap()));
                found += 1;
            }
        }
        for sd in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            assert_eq!(sd["type"].as_str(), Some("A"), "{name}: A records");
            let port = u16::try_from(sd["port"].as_u64().expect("a port")).unwrap();
            for host in strings(&sd["names"]) {
                targets.push((name.clone(), host.to_owned(), port));
                found += 1;
            }
        }
        assert!(found > 0, "{name}: scrapes nothing");
    }
    targets
}

/// The port in a compose `0.0.0.0:PORT` listen variable.
fn listen_port(compose: &Value, service: &str, var: &str) -> u16 {
    let listen = compose["services"][service]["environment"][var]
        .as_str()
        .unwrap_or_else(|| panic!("{service} sets {var}"));
    assert!(
        listen.starts_with("0.0.0.0:"),
        "{service} {var}={listen}: Prometheus reaches it from another container"
    );
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

fn profiles(compose: &Value, service: &str) -> Vec<String> {
    strings(&compose["services"][service]["profiles"])
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn prometheus_scrapes_every_service_where_it_serves_metrics() {
    let compose = compose();
    let config = prometheus_config();
    let names = services(&compose);
    let mut scraped = BTreeSet::new();
    for (job, host, port) in scrape_targets(&config) {
        assert!(
            names.contains(&host),
            "job {job}: {host} is not a docker-compose service"
        );
        let p = profiles(&compose, &host);
        assert!(
            p.is_empty() || p.iter().any(|p| p == PROFILE),
            "job {job}: {host} runs only in profiles {p:?}"
        );
        let (_, var) = METRICS_LISTENERS
            .iter()
            .find(|(s, _)| *s == host)
            .unwrap_or_else(|| panic!("job {job}: {host} serves no /metrics"));
        assert_eq!(
            port,
            listen_port(&compose, &host, var),
            "job {job}: {host} serves /metrics on its {var}"
        );
        scraped.insert(host);
    }
    for (service, _) in METRICS_LISTENERS {
        assert!(
            scraped.contains(*service),
            "Prometheus does not scrape {service}"
        );
    }

    // The config and rule files reach the container where Prometheus reads them.
    let command = strings(&compose["services"]["prometheus"]["command"]);
    let config_file = command
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .expect("prometheus is given --config.file");
    assert_eq!(
        host_path(&compose, "prometheus", config_file),
        repo().join("deploy/prometheus/prometheus.yml")
    );
    let config_dir = Path::new(config_file).parent().unwrap();
    let rules = strings(&config["rule_files"]);
    assert!(!rules.is_empty(), "prometheus.yml loads the alert rules");
    for rule_file in rules {
        let inside = config_dir.join(rule_file);
        let on_host = host_path(&compose, "prometheus", inside.to_str().unwrap());
        assert!(
            on_host.is_file(),
            "{rule_file}: {} does not exist",
            on_host.display()
        );
    }
    let groups = alert_rules()["groups"].as_sequence().unwrap().clone();
    let alerts: Vec<&str> = groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["alert"].as_str().expect("every rule is an alert"))
        .collect();
    assert!(alerts.len() >= 5, "{alerts:?}");
}

#[test]
fn grafana_is_provisioned_with_the_dashboard_and_the_data_source_it_names() {
    let compose = compose();
    let provisioning = host_path(&compose, "grafana", "/etc/grafana/provisioning");
    assert_eq!(provisioning, repo().join("deploy/grafana/provisioning"));

    // The data source: Prometheus at the compose service and its port.
    let sources = yaml(&provisioning.join("datasources/prometheus.yml"));
    let mut uids = BTreeSet::new();
    for source in sources["datasources"].as_sequence().unwrap() {
        assert_eq!(source["type"].as_str(), Some("prometheus"));
        let url = url::Url::parse(source["url"].as_str().unwrap()).unwrap();
        let host = url.host_str().unwrap();
        assert!(
            profiles(&compose, host).iter().any(|p| p == PROFILE),
            "{url}: {host} is the observability profile's Prometheus"
        );
        let args = strings(&compose["services"][host]["command"]);
        assert!(
            !args.iter().any(|a| a.starts_with("--web.listen-address")),
            "Prometheus listens on its default port"
        );
        assert_eq!(url.port(), Some(9090), "{url}");
        assert!(
            published_ports(&compose, host)
                .iter()
                .any(|p| p.container == 9090),
            "Prometheus' UI is published"
        );
        uids.insert(source["uid"].as_str().expect("a fixed uid").to_owned());
    }

    // The dashboards provider reads the folder the dashboard is mounted in.
    let providers = yaml(&provisioning.join("dashboards/checkout.yml"));
    let provider = &providers["providers"][0];
    let folder = host_path(
        &compose,
        "grafana",
        provider["options"]["path"].as_str().unwrap(),
    );
    assert_eq!(folder, repo().join("deploy/grafana/dashboards"));
    assert!(folder.join("checkout.json").is_file());
    let home =
        compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
            .as_str()
            .unwrap();
    assert!(host_path(&compose, "grafana", home).is_file(), "{home}");

    // Every panel and query names the provisioned data source; the layout fits.
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["uid"].is_string());
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{title}: wider than the dashboard"
        );
        if panel["type"] == "row" {
            continue;
        }
        let uid = panel["datasource"]["uid"].as_str().unwrap_or_default();
        assert!(
            uids.contains(uid),
            "{title}: data source {uid:?}, provisioned {uids:?}"
        );
        for target in panel["targets"].as_array().unwrap() {
            let uid = target["datasource"]["uid"].as_str().unwrap_or(uid);
            assert!(uids.contains(uid), "{title}: query data source {uid:?}");
            assert!(target["expr"].is_string(), "{title}: a PromQL expr");
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
}

#[test]
fn the_tools_are_official_pinned_images_and_traces_go_to_jaeger_only_when_asked() {
    let compose = compose();
    for (service, image) in [
        ("prometheus", "prom/prometheus:"),
        ("grafana", "grafana/grafana:"),
        ("jaeger", "jaegertracing/jaeger:"),
    ] {
        let s = &compose["services"][service];
        let named = s["image"].as_str().unwrap();
        let tag = named
            .strip_prefix(image)
            .unwrap_or_else(|| panic!("{service}: {named} is not {image}..."));
        assert!(
            tag.trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit()),
            "{service}: pin a version, not {tag:?}"
        );
        assert_eq!(profiles(&compose, service), [PROFILE], "{service}");
    }
    // Jaeger takes OTLP/gRPC on 4317 from the other containers and the host.
    let args = strings(&compose["services"]["jaeger"]["command"]).join(" ");
    assert!(
        args.contains("receivers.otlp.protocols.grpc.endpoint=0.0.0.0:4317"),
        "{args}"
    );
    for port in [4317, 16686] {
        assert!(
            published_ports(&compose, "jaeger")
                .iter()
                .any(|p| p.container == port),
            "jaeger publishes {port}"
        );
    }
    // Each service names itself; with nothing set, nothing is exported.
    let mut names = BTreeSet::new();
    for (service, _) in METRICS_LISTENERS {
        let env = &compose["services"][*service]["environment"];
        assert_eq!(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str(),
            Some("${OTEL_EXPORTER_OTLP_ENDPOINT:-}"),
            "{service}: exports only when the caller sets the endpoint"
        );
        let name = env["OTEL_SERVICE_NAME"].as_str().unwrap();
        assert!(names.insert(name.to_owned()), "{service}: {name} taken");
    }
    let file = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert!(
        file.contains("OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317"),
        "the compose file says how to send traces to its Jaeger"
    );
}

/// PromQL words that are not metric names: aggregation operators (which may
/// be followed by `by (...)` before their parenthesis), other keywords, and
/// [`LABEL_LISTS`].
const PROMQL_KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Series Prometheus makes itself, not the services.
const PROMETHEUS_SERIES: &[&str] = &["up"];

/// The metric names a PromQL expression selects: its identifiers outside
/// strings, label matchers (`{...}`) and ranges (`[...]`), less function
/// names (followed by `(`), keywords, the label names of `by (...)` and the
/// like, numbers, durations and Grafana's `$variables`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings, matchers and ranges out.
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    let mut depth = 0;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth > 0 => {}
            _ => plain.push(c),
        }
    }
    assert_eq!(depth, 0, "unbalanced braces or brackets in {expr}");
    assert_eq!(
        plain.matches('(').count(),
        plain.matches(')').count(),
        "unbalanced parentheses in {expr}"
    );

    let bytes = plain.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let word = |i: usize| {
            let mut end = i;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'_' | b':' | b'.'))
            {
                end += 1;
            }
            end
        };
        if c.is_ascii_digit() || c == b'$' {
            i = word(i + 1); // a number, a duration or a Grafana variable
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == b'_' || c == b':') {
            i += 1;
            continue;
        }
        let end = word(i);
        let ident = &plain[i..end];
        i = end;
        let next = plain[end..].trim_start().chars().next();
        if LABEL_LISTS.contains(&ident) && next == Some('(') {
            // `by (...)` and the like: label names up to the closing parenthesis.
            i = plain[i..].find(')').map_or(plain.len(), |p| i + p + 1);
            continue;
        }
        if next == Some('(') || PROMQL_KEYWORDS.contains(&ident) || LABEL_LISTS.contains(&ident) {
            continue;
        }
        names.insert(ident.to_owned());
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, endpoint) (rate(a_seconds_bucket{method="x(y)",b=~"c|d"}[$__rate_interval])))
           + sum by () (e_total)
           / on(job) group_left(instance) b_total offset 5m > bool 1e3
           or sum(c_bytes) without (instance) and max(d:recorded[5m:1m]) unless vector(0)"#,
    );
    let expected: BTreeSet<String> = [
        "a_seconds_bucket",
        "b_total",
        "c_bytes",
        "d:recorded",
        "e_total",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
}

/// Every PromQL expression of the dashboard's panels and the alert rules,
/// with where it is (`panel "..."`, `alert ...`).
fn queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let place = format!("panel {:?}", panel["title"].as_str().unwrap());
            queries.push((place, target["expr"].as_str().unwrap().to_owned()));
        }
    }
    for group in alert_rules()["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let place = format!("alert {}", rule["alert"].as_str().unwrap());
            queries.push((place, rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    queries
}

/// Every metric name the queries select, with the places that query it.
fn queried_metrics() -> BTreeMap<String, Vec<String>> {
    let mut queried: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, expr) in queries() {
        for name in metric_names(&expr) {
            queried.entry(name).or_default().push(place.clone());
        }
    }
    for generated in PROMETHEUS_SERIES {
        queried.remove(*generated);
    }
    queried
}

/// `(metric, label)` for every label a selector's matchers name
/// (`metric{label="..."}`): outside quotes, every word inside the braces.
fn matcher_labels(expr: &str) -> BTreeSet<(String, String)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut pairs = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut metric = String::new();
    let mut inside = false;
    let mut word = String::new();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            while let Some((_, d)) = chars.next() {
                if d == '\\' {
                    chars.next();
                } else if d == c {
                    break;
                }
            }
            continue;
        }
        if is_name(c) {
            word.push(c);
            continue;
        }
        if inside && !word.is_empty() {
            pairs.insert((metric.clone(), std::mem::take(&mut word)));
        }
        word.clear();
        match c {
            '{' => {
                let before = expr[..i].trim_end();
                let start = before.rfind(|c| !is_name(c)).map_or(0, |p| p + 1);
                metric = before[start..].to_owned();
                inside = !metric.is_empty();
            }
            '}' => inside = false,
            _ => {}
        }
    }
    pairs
}

#[test]
fn matcher_labels_are_read_out_of_promql() {
    let pairs = matcher_labels(
        r#"sum by (le) (rate(a_bucket{method="x{y}",code!~"O,K"}[5m])) / b_total {outcome = "ok"} + c"#,
    );
    let expected: BTreeSet<(String, String)> = [
        ("a_bucket", "method"),
        ("a_bucket", "code"),
        ("b_total", "outcome"),
    ]
    .map(|(m, l)| (m.to_owned(), l.to_owned()))
    .into();
    assert_eq!(pairs, expected);
}

#[test]
fn series_labels_are_read_out_of_the_exposition() {
    let mut labels = BTreeMap::new();
    series_labels(
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"u,o}te\"} 3\nx_total{c=\"\"} 0\ny 1\nz_bucket{le=\"+Inf\"} 2\n",
        &mut labels,
    );
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(labels["x_total"], names(&["a", "b", "c"]));
    assert_eq!(labels["z_bucket"], names(&["le"]));
    assert!(!labels.contains_key("y"));
}

/// The label names of every series line of a Prometheus text exposition,
/// by series name (`x_bucket`, `x_count` apart).
fn series_labels(text: &str, into: &mut BTreeMap<String, BTreeSet<String>>) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = into.entry(name.to_owned()).or_default();
        let mut rest = rest;
        while let Some((label, value)) = rest.split_once("=\"") {
            labels.insert(label.trim_start_matches(',').trim().to_owned());
            // Past the quoted value (escapes included).
            let mut end = 0;
            let mut escaped = false;
            for (i, c) in value.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            rest = &value[end..];
            if rest.starts_with('}') {
                break;
            }
        }
    }
}

/// `# TYPE name kind` lines of a Prometheus text exposition.
fn families(text: &str, into: &mut BTreeMap<String, String>) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                into.insert(name.to_owned(), kind.to_owned());
            }
        }
    }
}

/// Whether the exposition has `name`: a family, or a histogram's or
/// summary's `_bucket`, `_sum` or `_count` series.
fn exposed(families: &BTreeMap<String, String>, name: &str) -> bool {
    families.contains_key(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|base| {
                matches!(
                    families.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
            })
        })
}

/// Where one running system answers: the gateway's gRPC, blazing_sun's
/// HTTP and the Stripe emulator, and a token for the demo user.
pub(crate) struct Endpoints<'a> {
    pub gateway: SocketAddr,
    pub blazing_sun: SocketAddr,
    pub emulator: SocketAddr,
    pub token: &'a str,
}

impl<'a> Endpoints<'a> {
    /// A system the launcher started in this process.
    pub fn of(running: &'a Running) -> Self {
        Self {
            gateway: running.gateway,
            blazing_sun: running.blazing_sun,
            emulator: running.emulator.expect("emulator by default"),
            token: &running.demo_user_token,
        }
    }
}

/// One checkout of `amount` EUR cents for the demo user through a running
/// system, to its credit: StartCheckout (with `traceparent` when given),
/// `session_created` on WatchCheckout, payment at the emulator, `success`,
/// and the balance up by exactly the amount. Returns the request_id.
pub(crate) async fn paid_checkout(
    at: &Endpoints<'_>,
    amount: i64,
    traceparent: Option<&str>,
) -> String {
    let bs = format!("http://{}", at.blazing_sun);
    let http = reqwest::Client::new();
    let before = eur_balance(&http, &bs, at.token).await;
    let mut client = CheckoutGatewayClient::connect(format!("http://{}", at.gateway))
        .await
        .unwrap();
    let mut start = authed(
        StartCheckoutRequest {
            user_id: DEMO_USER_ID,
            amount_cents: amount,
            currency: "eur".into(),
            success_url: format!("{bs}/?checkout=success"),
            cancel_url: format!("{bs}/?checkout=cancel"),
            ..Default::default()
        },
        at.token,
    );
    if let Some(header) = traceparent {
        start
            .metadata_mut()
            .insert(TRACEPARENT, header.parse().unwrap());
    }
    let request_id = client
        .start_checkout(start)
        .await
        .expect("StartCheckout")
        .into_inner()
        .request_id;
    let watch = WatchCheckoutRequest {
        request_id: request_id.clone(),
        resume_after: None,
    };
    let mut stream = client
        .watch_checkout(authed(watch, at.token))
        .await
        .expect("WatchCheckout")
        .into_inner();
    let mut next_status = async || {
        let update = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("an update within 60 s")
            .expect("the stream goes on")
            .expect("an update");
        update.event.expect("an event")
    };
    let created = next_status().await;
    assert_eq!(created.status(), CheckoutStatus::SessionCreated);
    let session_id = created.session_id.expect("a session");
    pay(&http, &format!("http://{}", at.emulator), &session_id).await;
    assert_eq!(next_status().await.status(), CheckoutStatus::Success);
    testkit::eventually("the credit", Duration::from_secs(60), || {
        let (http, bs) = (&http, &bs);
        async move { (eur_balance(http, bs, at.token).await == before + amount).then_some(()) }
    })
    .await;
    request_id
}

/// What the three /metrics endpoints serve together: the families with
/// their type, and the label names of each series.
#[derive(Default)]
struct Scrape {
    families: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// Starts the whole system in-process, runs one paid checkout, and scrapes
/// the three listeners compose's Prometheus scrapes (METRICS_LISTENERS)
/// until `problems` finds none or 60 s have passed (consumer lag arrives
/// with librdkafka's statistics, every few seconds). Returns the problems
/// of the last scrape.
async fn problems_after_a_checkout(problems: impl Fn(&Scrape) -> Vec<String>) -> Vec<String> {
    let data = tempfile::tempdir().unwrap();
    let running = system::start(StackConfig::on_free_ports(data.path().to_path_buf()))
        .await
        .expect("stack starts");
    paid_checkout(&Endpoints::of(&running), 900, None).await;
    let endpoints = [
        format!("http://{}/metrics", running.gateway_admin),
        format!("http://{}/metrics", running.webhook),
        format!("http://{}/metrics", running.blazing_sun),
    ];
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let found = loop {
        let mut scrape = Scrape::default();
        for url in &endpoints {
            let response = http.get(url).send().await.unwrap();
            let status = response.status();
            assert!(status.is_success(), "{url}: {status}");
            let text = response.text().await.unwrap();
            families(&text, &mut scrape.families);
            series_labels(&text, &mut scrape.labels);
        }
        let found = problems(&scrape);
        if found.is_empty() || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    running
        .run_until_stopped(async {})
        .await
        .expect("clean shutdown");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_alerts_query_is_exposed() {
    testkit::init_tracing();
    let queried = queried_metrics();
    // The extraction finds what it must, so an empty list cannot pass.
    for name in [
        "gateway_rpc_duration_seconds_bucket",
        "gateway_broker_up",
        "kafka_consumer_lag_messages",
        "checkout_finished_published_total",
    ] {
        assert!(queried.contains_key(name), "{name} not in {queried:?}");
    }
    // The labels the selectors' matchers name, checked where the metric has
    // series (a labelled family with none yet cannot tell).
    let mut labelled = BTreeMap::new();
    for (place, expr) in queries() {
        for pair in matcher_labels(&expr) {
            labelled.entry(pair).or_insert(place.clone());
        }
    }
    let problems = problems_after_a_checkout(|scrape| {
        let mut problems: Vec<String> = queried
            .iter()
            .filter(|(name, _)| !exposed(&scrape.families, name))
            .map(|(name, places)| format!("  {name} not exposed: {}", places.join(", ")))
            .collect();
        for ((metric, label), place) in &labelled {
            if let Some(has) = scrape.labels.get(metric)
                && !has.contains(label)
            {
                problems.push(format!(
                    "  {metric} has no label {label} (has {has:?}): {place}"
                ));
            }
        }
        problems
    })
    .await;
    assert!(
        problems.is_empty(),
        "queried by the dashboard or the alerts, not served by the services after 60 s:\n{}",
        problems.join("\n")
    );
}

/// The metric names in the first column of the section's tables.
fn documented_metrics(section: &str) -> BTreeSet<String> {
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|row| {
            let cell = row.split('|').next().unwrap_or_default();
            cell.split('`')
                .step_by(2)
                .map(|n| n.trim_matches([',', ' ']).to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|n| {
            n.contains('_')
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_lists_every_metric_the_services_expose() {
    testkit::init_tracing();
    let section = readme_section("Operating it");
    let documented = documented_metrics(&section);
    assert!(documented.len() > 20, "{documented:?}");
    // Listed but not served: a rename the README missed. Served but not
    // listed: a metric nobody documented.
    let problems = problems_after_a_checkout(|scrape| {
        let mut problems: Vec<String> = documented
            .iter()
            .filter(|name| !scrape.families.contains_key(*name))
            .map(|name| format!("  {name}: in the README, not served"))
            .collect();
        problems.extend(
            scrape
                .families
                .keys()
                .filter(|name| !documented.contains(*name))
                .map(|name| format!("  {name}: served, not in the README's metrics list")),
        );
        problems
    })
    .await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

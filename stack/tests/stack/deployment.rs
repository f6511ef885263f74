//! What can be checked of the deployment files without a Docker engine:
//! docker-compose.yml's environment against the variables each binary
//! really reads, its ports against the listen addresses, the topic and group
//! names against `topics.rs`, and shellcheck on every shell script; the
//! rules for a user's machine: ports on 127.0.0.1 only, restart policies and
//! grace periods, replicas that can scale, the README's compose walkthrough
//! using hosts and origins the compose file allows, the real-Stripe override
//! requiring secrets of its own, LF endings for shell scripts, and only broker
//! properties as `KAFKA_*` variables on the broker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use checkout_contract::HostAllowlist;
use checkout_contract::topics::{PARTITIONS, consumer_groups, topic};
use serde_yaml::Value;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn compose() -> Value {
    compose_file("docker-compose.yml")
}

fn real_stripe() -> Value {
    compose_file("docker-compose.real-stripe.yml")
}

fn compose_file(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(name)).unwrap();
    let mut value: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name} is YAML: {e}"));
    value.apply_merge().expect("merge keys resolve");
    // Merges nest one level (environment: <<: *kafka-env).
    for (_, service) in value["services"].as_mapping_mut().unwrap().iter_mut() {
        service.apply_merge().unwrap();
        if let Some(env) = service.get_mut("environment") {
            env.apply_merge().unwrap();
        }
    }
    value
}

/// Every `"UPPER_CASE"` string literal in the Rust files under `dirs`: the
/// names a crate's configuration reads (they are all read through
/// `EnvReader` with literal names).
fn names_in(dirs: &[&str]) -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for d in dirs {
        walk(&repo().join(d), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for literal in text.split('"').skip(1).step_by(2) {
            let is_name = literal.len() > 3
                && literal.contains('_')
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if is_name {
                names.insert(literal.to_owned());
            }
        }
    }
    names
}

fn env_of(compose: &Value, service: &str) -> BTreeSet<String> {
    compose["services"][service]["environment"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{service} has an environment mapping"))
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_compose_variable_is_one_the_binary_reads() {
    let compose = compose();
    let shared = names_in(&["src"]); // KAFKA_* from the contract crate
    for (service, crate_dir, must_set) in [
        (
            "gateway",
            "gateway/src",
            &["KAFKA_BOOTSTRAP_SERVERS", "JWT_SECRET", "GATEWAY_LISTEN"][..],
        ),
        (
            "checkout",
            "checkout/src",
            &[
                "KAFKA_BOOTSTRAP_SERVERS",
                "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRET",
                "STRIPE_API_BASE",
                "CHECKOUT_CONSUMER_GROUP",
            ][..],
        ),
        (
            "blazing_sun",
            "blazing_sun/src",
            &[
                "KAFKA_BOOTSTRAP_SERVERS",
                "DATABASE_URL",
                "JWT_SECRET",
                "BLAZING_SUN_LISTEN",
            ][..],
        ),
        (
            "stripe-emulator",
            "stripe_emulator/src",
            &[
                "STRIPE_EMULATOR_LISTEN",
                "STRIPE_EMULATOR_WEBHOOK_URL",
                "STRIPE_WEBHOOK_SECRET",
            ][..],
        ),
    ] {
        let mut read = names_in(&[crate_dir]);
        read.extend(shared.iter().cloned());
        read.insert("RUST_LOG".into()); // telemetry's EnvFilter
        let set = env_of(&compose, service);
        for name in &set {
            assert!(
                read.contains(name),
                "{service}: docker-compose.yml sets {name}, which the binary never reads"
            );
        }
        for name in must_set {
            assert!(
                set.contains(*name),
                "{service}: docker-compose.yml must set {name}"
            );
        }
    }
}

#[test]
fn compose_ports_match_the_listen_addresses_and_seed_names() {
    let compose = compose();
    for (service, var) in [
        ("gateway", "GATEWAY_LISTEN"),
        ("gateway", "GATEWAY_ADMIN_LISTEN"),
        ("checkout", "CHECKOUT_WEBHOOK_LISTEN"),
        ("blazing_sun", "BLAZING_SUN_LISTEN"),
        ("stripe-emulator", "STRIPE_EMULATOR_LISTEN"),
    ] {
        let listen = compose["services"][service]["environment"][var]
            .as_str()
            .unwrap();
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{service} {var}={listen} must listen on all interfaces in a container"
        );
        let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
        // The worker's webhook is published only for real Stripe's CLI (the
        // emulator reaches it on the compose network).
        let file = if service == "checkout" {
            real_stripe()
        } else {
            compose.clone()
        };
        let published = published_ports(&file, service);
        assert!(
            published.iter().any(|p| p.container == port),
            "{service}: {var} port {port} not published in {published:?}"
        );
    }
    assert!(
        compose["services"]["checkout"].get("ports").is_none(),
        "the worker publishes no port, so it scales"
    );
    assert_eq!(
        compose["services"]["checkout"]["environment"]["CHECKOUT_CONSUMER_GROUP"].as_str(),
        Some(consumer_groups::CHECKOUT_SERVICE)
    );
    let webhook =
        compose["services"]["stripe-emulator"]["environment"]["STRIPE_EMULATOR_WEBHOOK_URL"]
            .as_str()
            .unwrap();
    assert_eq!(webhook, "http://checkout:8081/webhooks/stripe");
    for service in ["checkout", "blazing_sun", "gateway"] {
        assert_eq!(
            compose["services"][service]["environment"]["KAFKA_BOOTSTRAP_SERVERS"].as_str(),
            Some("kafka:9092")
        );
    }
}

#[test]
fn kafka_entrypoint_creates_the_seed_topics_with_three_partitions() {
    let script = std::fs::read_to_string(repo().join("kafka/entrypoint.sh")).unwrap();
    let topics_line = script
        .lines()
        .find(|l| l.starts_with("CHECKOUT_TOPICS="))
        .expect("CHECKOUT_TOPICS is defined");
    for t in [topic::CHECKOUT_REQUESTS, topic::CHECKOUT_FINISHED] {
        assert!(topics_line.contains(t), "{t} missing from {topics_line}");
    }
    // The seed's bug: it defines CHECKOUT_TOPICS but loops over $TOPICS.
    assert!(
        script.contains("for TOPIC in $CHECKOUT_TOPICS"),
        "the loop must go over what is defined"
    );
    assert!(script.contains("--if-not-exists"));
    assert!(script.contains(&format!("CHECKOUT_TOPIC_PARTITIONS:-{PARTITIONS}")));
    let compose = compose();
    assert_eq!(
        default_of(
            compose["services"]["kafka"]["environment"]["CHECKOUT_TOPIC_PARTITIONS"]
                .as_str()
                .unwrap()
        ),
        PARTITIONS.to_string()
    );
}

#[test]
fn shellcheck_passes_on_every_shell_script() {
    let mut scripts = vec![repo().join(".ci/run")];
    for dir in ["scripts", "kafka"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "sh") {
                scripts.push(entry.path());
            }
        }
    }
    assert!(scripts.len() >= 5, "{scripts:?}");
    let output = Command::new("shellcheck")
        .args(&scripts)
        .output()
        .expect("shellcheck must be installed (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// One `ports:` entry in its short form (`[IP:]HOST[-HOST_END]:CONTAINER`).
#[derive(Debug)]
pub(crate) struct Published {
    ip: Option<String>,
    host: std::ops::RangeInclusive<u16>,
    pub(crate) container: u16,
}

pub(crate) fn published_ports(compose: &Value, service: &str) -> Vec<Published> {
    let Some(ports) = compose["services"][service].get("ports") else {
        return Vec::new();
    };
    ports
        .as_sequence()
        .unwrap_or_else(|| panic!("{service}: ports is a list"))
        .iter()
        .map(|p| {
            let text = p
                .as_str()
                .unwrap_or_else(|| panic!("{service}: use the short \"IP:HOST:CONTAINER\" form"));
            let parts: Vec<&str> = text.split(':').collect();
            let (ip, host, container) = match parts[..] {
                [ip, host, container] => (Some(ip.to_owned()), host, container),
                [host, container] => (None, host, container),
                _ => panic!("{service}: cannot read port {text:?}"),
            };
            let (first, last) = host.split_once('-').unwrap_or((host, host));
            Published {
                ip,
                host: first.parse().unwrap()..=last.parse().unwrap(),
                container: container.parse().unwrap(),
            }
        })
        .collect()
}

pub(crate) fn services(compose: &Value) -> Vec<String> {
    compose["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_port_is_published_on_loopback_only() {
    for (name, file) in [
        ("docker-compose.yml", compose()),
        ("docker-compose.real-stripe.yml", real_stripe()),
    ] {
        let mut seen = 0;
        for service in services(&file) {
            for p in published_ports(&file, &service) {
                seen += 1;
                assert_eq!(
                    p.ip.as_deref(),
                    Some("127.0.0.1"),
                    "{name} {service}: {p:?} must be published on 127.0.0.1 only"
                );
            }
        }
        assert!(seen > 0, "{name} publishes nothing?");
    }
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert!(
        text.contains("THE DEFAULTS ARE FOR A LAPTOP"),
        "the file says its defaults are for a laptop"
    );
}

/// `stop_grace_period` as seconds (`20s`, `1m30s`).
fn seconds(value: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in value.chars() {
        match c {
            '0'..='9' => number.push(c),
            'm' => total += number.drain(..).as_str().parse::<u64>().unwrap() * 60,
            's' => total += number.drain(..).as_str().parse::<u64>().unwrap(),
            _ => panic!("cannot read duration {value:?}"),
        }
    }
    assert!(number.is_empty(), "duration {value:?} needs a unit");
    total
}

#[test]
fn every_service_restarts_and_gets_time_to_stop() {
    let compose = compose();
    let names = services(&compose);
    for service in [
        "kafka",
        "postgres",
        "gateway",
        "checkout",
        "blazing_sun",
        "stripe-emulator",
    ] {
        assert!(names.iter().any(|n| n == service), "{service} missing");
    }
    for service in &names {
        let s = &compose["services"][service.as_str()];
        let restart = s["restart"].as_str();
        assert!(
            matches!(restart, Some("unless-stopped" | "always")),
            "{service}: restart {restart:?}; after a reboot everything must come back"
        );
        let grace = s["stop_grace_period"]
            .as_str()
            .map(seconds)
            .unwrap_or_else(|| {
                panic!("{service}: no stop_grace_period (Docker's default is 10 s)")
            });
        // The services drain for 10 s (CHECKOUT_/GATEWAY_SHUTDOWN_GRACE_MS)
        // and close their Kafka clients within 5 s more.
        assert!(grace > 15, "{service}: stop_grace_period {grace} s");
    }
    assert!(
        seconds(
            compose["services"]["kafka"]["stop_grace_period"]
                .as_str()
                .unwrap()
        ) >= 30
    );
    let pg = compose["services"]["postgres"]["healthcheck"]["test"][1]
        .as_str()
        .unwrap();
    assert!(
        pg.contains("pg_isready -h 127.0.0.1"),
        "over TCP, not the first boot's socket-only server: {pg}"
    );
}

#[test]
fn kafka_is_healthy_once_its_topics_exist_without_starting_a_jvm() {
    let compose = compose();
    let check = compose["services"]["kafka"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !check.contains("/opt/kafka/bin"),
        "a JVM every interval: {check}"
    );
    let script = std::fs::read_to_string(repo().join("kafka/entrypoint.sh")).unwrap();
    let ready = script
        .lines()
        .find_map(|l| l.strip_prefix("READY="))
        .expect("the entrypoint names its ready marker");
    assert!(check.contains(&format!("test -f {ready}")), "{check}");
    assert!(check.contains("/dev/tcp/127.0.0.1/9092"), "{check}");
    let created = script.find("for TOPIC in").unwrap();
    let touched = script.find("touch \"$READY\"").expect("marker written");
    assert!(touched > created, "the marker comes after the topics");
    assert!(
        script.contains("rm -f \"$READY\""),
        "a restart starts unready"
    );
}

#[test]
fn only_broker_properties_are_kafka_variables_on_the_broker() {
    // The apache/kafka image turns every KAFKA_* variable into a broker
    // property; these are the ones we mean.
    const BROKER_PROPERTIES: &[&str] = &[
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_LOG_DIRS",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
        "KAFKA_NUM_PARTITIONS",
    ];
    let compose = compose();
    let env = env_of(&compose, "kafka");
    for name in env.iter().filter(|n| n.starts_with("KAFKA_")) {
        assert!(
            BROKER_PROPERTIES.contains(&name.as_str()),
            "kafka sets {name}, which the image would turn into a broker property"
        );
    }
    assert!(env.contains("CLUSTER_ID"), "an explicit KRaft cluster id");
    // Every variable the entrypoint reads is set on the service, and none is KAFKA_*.
    let script = std::fs::read_to_string(repo().join("kafka/entrypoint.sh")).unwrap();
    let read: BTreeSet<&str> = script
        .split("${")
        .skip(1)
        .map(|rest| rest.split([':', '}']).next().unwrap())
        .collect();
    assert!(read.contains("CHECKOUT_BOOTSTRAP_SERVERS"), "{read:?}");
    for name in read {
        assert!(!name.starts_with("KAFKA_"), "entrypoint.sh reads {name}");
        assert!(
            env.contains(name),
            "entrypoint.sh reads {name}, compose does not set it"
        );
    }
}

#[test]
fn gateway_checkout_and_blazing_sun_can_run_several_replicas() {
    let compose = compose();
    for service in ["gateway", "checkout", "blazing_sun"] {
        for p in published_ports(&compose, service) {
            assert!(
                p.host.end() > p.host.start(),
                "{service}: a fixed host port {p:?} stops a second replica (--scale)"
            );
        }
    }
    for (service, var) in [
        ("checkout", "CHECKOUT_GROUP_INSTANCE_ID"),
        ("blazing_sun", "BLAZING_SUN_GROUP_INSTANCE_ID"),
    ] {
        let id = compose["services"][service]["environment"][var]
            .as_str()
            .unwrap();
        assert!(
            id.contains("{hostname}"),
            "{service}: replicas need distinct {var}: {id}"
        );
    }
    // No two services' host port ranges overlap, in either file set.
    let mut all = Vec::new();
    for file in [compose.clone(), real_stripe()] {
        for service in services(&file) {
            for p in published_ports(&file, &service) {
                all.push((service.clone(), p.host));
            }
        }
    }
    for (i, (a, ra)) in all.iter().enumerate() {
        for (b, rb) in &all[i + 1..] {
            assert!(
                ra.end() < rb.start() || rb.end() < ra.start(),
                "{a} {ra:?} and {b} {rb:?} overlap"
            );
        }
    }
    let readme = compose_section();
    assert!(
        readme.contains("--scale checkout=3 --scale blazing_sun=2 --scale gateway=2"),
        "the README shows replicas"
    );
    assert!(readme.contains("sit idle"), "and says when they idle");
    let file = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert!(
        file.contains("--scale checkout=3"),
        "the compose file shows replicas"
    );
}

/// The README's docker-compose section.
fn compose_section() -> String {
    readme_section("docker-compose")
}

/// The README's `## {heading}` section, to its next `## ` heading.
pub(crate) fn readme_section(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has a {heading:?} section"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The value of a `${NAME:-default}` compose variable: its default.
fn default_of(value: &str) -> &str {
    value
        .strip_prefix("${")
        .and_then(|v| v.split_once(":-"))
        .map_or(value, |(_, d)| d.trim_end_matches('}'))
}

#[test]
fn the_readme_compose_walkthrough_uses_hosts_and_origins_compose_allows() {
    let compose = compose();
    let section = compose_section();
    let walkthrough = section
        .split("```bash\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the compose section has a bash walkthrough");
    // Every http:// URL and every bare host:port (grpcurl's target), with
    // placeholders like <session_id> filled in.
    let urls: Vec<url::Url> = walkthrough
        .split(|c: char| c.is_whitespace() || "\"'`()".contains(c))
        .map(|w| w.trim_end_matches([',', '.']).replace(['<', '>'], ""))
        .filter_map(|w| {
            if w.starts_with("http://") {
                Some(url::Url::parse(&w).unwrap())
            } else if (w.starts_with("localhost:") || w.starts_with("127.0.0.1:"))
                && w[w.find(':').unwrap() + 1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            {
                Some(url::Url::parse(&format!("http://{w}/")).unwrap())
            } else {
                None
            }
        })
        .collect();
    assert!(urls.len() >= 8, "{urls:?}");
    for port in [8080, 50051, 12111] {
        assert!(
            urls.iter().any(|u| u.port() == Some(port)),
            "{port}: {urls:?}"
        );
    }
    let mut ports = BTreeSet::new();
    for service in services(&compose) {
        for p in published_ports(&compose, &service) {
            ports.insert(*p.host.start());
        }
    }
    for url in &urls {
        let host = url.host_str().unwrap();
        assert!(matches!(host, "localhost" | "127.0.0.1"), "{url}");
        let port = url.port().unwrap();
        assert!(ports.contains(&port), "{url}: port {port} is not published");
    }
    // Redirect URLs: allowed by every service's CHECKOUT_REDIRECT_HOSTS.
    for service in ["gateway", "checkout", "blazing_sun"] {
        let hosts = default_of(
            compose["services"][service]["environment"]["CHECKOUT_REDIRECT_HOSTS"]
                .as_str()
                .unwrap(),
        );
        let allow = HostAllowlist::parse(&hosts.split(',').collect::<Vec<_>>()).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            assert!(
                allow.allows(host),
                "{service} must allow {host} (walkthrough, page)"
            );
        }
        for url in urls
            .iter()
            .filter(|u| u.query().is_some_and(|q| q.contains("checkout=")))
        {
            assert!(allow.allows(url.host_str().unwrap()), "{service}: {url}");
        }
    }
    // The balance page's origins (port 8080, any loopback name): allowed by
    // the gateway's CORS list, for every blazing_sun replica's port.
    let origins: BTreeSet<&str> =
        compose["services"]["gateway"]["environment"]["GATEWAY_CORS_ORIGINS"]
            .as_str()
            .unwrap()
            .split(',')
            .collect();
    let pages: Vec<_> = urls.iter().filter(|u| u.port() == Some(8080)).collect();
    assert!(
        pages
            .iter()
            .any(|u| u.path() == "/" && u.fragment().is_some()),
        "{pages:?}"
    );
    for page in pages {
        let origin = page.origin().ascii_serialization();
        assert!(
            origins.contains(origin.as_str()),
            "{origin} not in {origins:?}"
        );
    }
    for p in published_ports(&compose, "blazing_sun") {
        for port in p.host {
            for host in ["localhost", "127.0.0.1"] {
                let origin = format!("http://{host}:{port}");
                assert!(
                    origins.contains(origin.as_str()),
                    "{origin} not in {origins:?}"
                );
            }
        }
    }
    // Tokens come from the image's checkout-stack, signed with the service's secret.
    assert!(
        section
            .contains("docker compose run --rm --no-deps -T gateway checkout-stack token --user 1")
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("--bin checkout-stack"));
}

#[test]
fn the_real_stripe_override_requires_secrets_of_its_own() {
    let file = real_stripe();
    for (service, var) in [
        ("gateway", "JWT_SECRET"),
        ("blazing_sun", "JWT_SECRET"),
        ("checkout", "STRIPE_SECRET_KEY"),
        ("checkout", "STRIPE_WEBHOOK_SECRET"),
    ] {
        let value = file["services"][service]["environment"][var]
            .as_str()
            .unwrap_or_else(|| panic!("{service} {var} unset in the override"));
        assert!(
            value.starts_with(&format!("${{{var}:?")),
            "{service} {var}={value}: no public default against real Stripe"
        );
    }
    assert_eq!(
        file["services"]["checkout"]["environment"]["STRIPE_API_BASE"].as_str(),
        Some("https://api.stripe.com/")
    );
    assert!(file["services"]["stripe-emulator"]["profiles"].is_sequence());
}

#[test]
fn shell_scripts_are_lf_and_secrets_stay_out_of_the_image() {
    let mut scripts = vec![".ci/run".to_owned(), "kafka/entrypoint.sh".to_owned()];
    for entry in std::fs::read_dir(repo().join("scripts")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "sh") {
            scripts.push(format!("scripts/{}", entry.file_name().to_string_lossy()));
        }
    }
    let output = Command::new("git")
        .current_dir(repo())
        .args(["check-attr", "eol", "--"])
        .args(&scripts)
        .output()
        .expect("git runs");
    let answer = String::from_utf8_lossy(&output.stdout);
    for script in &scripts {
        assert!(
            answer.contains(&format!("{script}: eol: lf")),
            ".gitattributes must pin {script} to LF:\n{answer}"
        );
        let bytes = std::fs::read(repo().join(script)).unwrap();
        assert!(!bytes.contains(&b'\r'), "{script} has CR characters");
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == ".env"),
        ".env must not reach the image"
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    if dockerfile.contains("RUN --mount") {
        assert_eq!(
            dockerfile.lines().next(),
            Some("# syntax=docker/dockerfile:1"),
            "RUN --mount needs the BuildKit frontend, named on the first line"
        );
    }
}

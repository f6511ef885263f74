//! What can be checked of the deployment files without a Docker engine:
//! docker-compose.yml's environment against the variables each binary
//! really reads, its ports against the listen addresses, the topic and group
//! names against `topics.rs`, and shellcheck on every shell script.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use checkout_contract::topics::{PARTITIONS, consumer_groups, topic};
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut value: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
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
        let port = listen.rsplit(':').next().unwrap();
        let ports: Vec<&str> = compose["services"][service]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(
            ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
            "{service}: {var} port {port} not published in {ports:?}"
        );
    }
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
        compose["services"]["kafka"]["environment"]["CHECKOUT_TOPIC_PARTITIONS"].as_u64(),
        Some(3)
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

//! `checkout-stack`'s command line, run as the binary: `--help` of the
//! launcher and of its subcommands lists every setting with its variable
//! and default, `--version` works, a typo gets a suggestion and exit 64, and
//! a flag wins over its variable.

use std::process::{Command, Output};

use checkout_contract::auth::JwtVerifier;
use checkout_contract::cli::{Group, TELEMETRY, missing_from_help};
use checkout_contract::secret::Secret;
use stack::config::{MONITOR_SETTINGS, SETTINGS, TOKEN_SETTINGS};

fn stack(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_checkout-stack"))
        .args(args)
        .env_remove("JWT_SECRET")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .envs(env.iter().copied())
        .output()
        .expect("checkout-stack runs")
}

fn help_of(args: &[&str]) -> String {
    let output = stack(args, &[]);
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn assert_lists(help: &str, groups: &[Group]) {
    let missing = missing_from_help(help, groups);
    assert!(missing.is_empty(), "{missing:#?}\n{help}");
}

#[test]
fn help_lists_every_setting_of_the_launcher_and_each_subcommand() {
    let help = help_of(&["--help"]);
    assert_lists(&help, SETTINGS);
    for setting in TELEMETRY.settings {
        assert!(help.contains(setting.env), "{}: {help}", setting.env);
    }
    for command in ["topics", "tail", "lag", "dlq", "token"] {
        assert!(help.contains(command), "{command}: {help}");
    }
    for args in [
        &["topics", "--help"][..],
        &["tail", "--help"],
        &["lag", "--help"],
        &["dlq", "replay", "--help"],
    ] {
        assert_lists(&help_of(args), MONITOR_SETTINGS);
    }
    assert!(help_of(&["tail", "--help"]).contains("--from-beginning"));
    assert!(help_of(&["lag", "--help"]).contains("--topic <TOPIC>"));
    assert_lists(&help_of(&["token", "--help"]), TOKEN_SETTINGS);
}

#[test]
fn version_prints_the_crate_version() {
    let version = help_of(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("checkout-stack {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_typo_gets_a_suggestion_and_exit_64() {
    for args in [
        &["lag", "blazing-sun-main", "--kafka-bootstrp-servers", "x"][..],
        &["--gateway-listn", "127.0.0.1:1"],
        &["tokn", "--user", "1"],
    ] {
        let output = stack(args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains("tip: a similar"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_flag_wins_over_its_variable() {
    let from_env = "secret-from-the-environment";
    let from_flag = "secret-from-the-command-line";
    let output = stack(
        &["token", "--user", "3", "--jwt-secret", from_flag],
        &[("JWT_SECRET", from_env)],
    );
    assert!(output.status.success(), "{output:?}");
    let jwt = String::from_utf8(output.stdout).unwrap();
    assert!(
        JwtVerifier::new(&Secret::new(from_flag))
            .verify(jwt.trim())
            .is_ok()
    );
    assert!(
        JwtVerifier::new(&Secret::new(from_env))
            .verify(jwt.trim())
            .is_err()
    );

    // The launcher's settings too: a bad flag is reported under its variable
    // although the variable itself is fine.
    let bad = stack(
        &["--gateway-listen", "not-an-address"],
        &[("GATEWAY_LISTEN", "127.0.0.1:50051"), ("RUST_LOG", "off")],
    );
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("GATEWAY_LISTEN=\"not-an-address\""));
}

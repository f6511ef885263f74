//! The `blazing_sun` binary: a bad configuration (`LOG_FORMAT` too) exits 64
//! naming every bad variable.

use std::process::Command;

#[test]
fn bad_config_exits_64_listing_every_bad_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_blazing_sun"))
        .env_clear()
        .env("DATABASE_URL", "mysql://nope")
        .env("BLAZING_SUN_LISTEN", "not-an-address")
        .env("BLAZING_SUN_BATCH_SIZE", "0")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "DATABASE_URL",
        "JWT_SECRET",
        "BLAZING_SUN_LISTEN",
        "BLAZING_SUN_BATCH_SIZE",
    ] {
        assert!(stderr.contains(name), "{name} missing from:\n{stderr}");
    }
}

#[test]
fn an_unknown_log_format_exits_64_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_blazing_sun"))
        .env_clear()
        .env("LOG_FORMAT", "xml")
        .env("JWT_SECRET", "s")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"LOG_FORMAT="xml": must be `text` (the default) or `json`"#),
        "{stderr}"
    );
}

/// `--help` lists every setting with its flag, variable and default, and
/// the environment-only logging and tracing variables.
#[test]
fn help_lists_every_setting_with_its_variable_and_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_blazing_sun"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).unwrap();
    let missing = checkout_contract::cli::missing_from_help(&help, blazing_sun::config::SETTINGS);
    assert!(missing.is_empty(), "{missing:#?}\n{help}");
    for setting in checkout_contract::cli::TELEMETRY.settings {
        assert!(help.contains(setting.env), "{}: {help}", setting.env);
    }
}

#[test]
fn version_typos_and_a_flag_over_its_variable() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_blazing_sun"))
            .env_clear()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("the binary runs")
    };
    let version = run(&["--version"], &[]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("blazing_sun {}", env!("CARGO_PKG_VERSION"))
    );

    let typo = run(&["--databse-url", "sqlite::memory:"], &[]);
    assert_eq!(typo.status.code(), Some(64), "{typo:?}");
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("tip: a similar argument exists: '--database-url'"),
        "{stderr}"
    );

    // The variable is fine; the flag, which wins, is not: it is reported
    // under the variable's name.
    let bad_flag = run(
        &["--blazing-sun-batch-size", "0"],
        &[("JWT_SECRET", "s"), ("BLAZING_SUN_BATCH_SIZE", "10")],
    );
    assert_eq!(bad_flag.status.code(), Some(64), "{bad_flag:?}");
    let stderr = String::from_utf8_lossy(&bad_flag.stderr);
    assert!(
        stderr.contains("BLAZING_SUN_BATCH_SIZE: must be between"),
        "{stderr}"
    );
    // The other way round: flags stand in for a bad and a missing variable,
    // only the bad flag is left to report (and nothing starts).
    let fixed = run(
        &[
            "--blazing-sun-batch-size",
            "10",
            "--jwt-secret",
            "s",
            "--blazing-sun-listen",
            "not-an-address",
        ],
        &[("BLAZING_SUN_BATCH_SIZE", "0")],
    );
    assert_eq!(fixed.status.code(), Some(64), "{fixed:?}");
    let stderr = String::from_utf8_lossy(&fixed.stderr);
    assert!(
        stderr.contains("BLAZING_SUN_LISTEN")
            && !stderr.contains("BLAZING_SUN_BATCH_SIZE")
            && !stderr.contains("JWT_SECRET"),
        "{stderr}"
    );
}

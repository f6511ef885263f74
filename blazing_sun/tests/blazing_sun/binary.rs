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

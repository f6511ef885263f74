//! `checkout-stack token`, run as the binary a compose user runs: the token
//! it prints passes the contract's verifier with the same `JWT_SECRET`, and
//! a missing or short secret or a bad argument exits 64 with a clear message.

use std::process::{Command, Output};

use checkout_contract::auth::{JwtVerifier, Role};
use checkout_contract::domain::UserId;
use checkout_contract::secret::Secret;

const SECRET: &str = "token-test-secret-0123456789";

fn token(args: &[&str], secret: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_checkout-stack"));
    command.arg("token").args(args).env_remove("JWT_SECRET");
    if let Some(secret) = secret {
        command.env("JWT_SECRET", secret);
    }
    command.output().expect("checkout-stack runs")
}

fn printed(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "only the token: {stdout:?}");
    stdout.trim().to_owned()
}

fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn prints_a_user_token_the_contract_verifies() {
    let jwt = printed(&token(&["--user", "42"], Some(SECRET)));
    let principal = JwtVerifier::new(&Secret::new(SECRET))
        .verify(&jwt)
        .expect("signed with JWT_SECRET");
    assert_eq!(principal.role, Role::User);
    assert_eq!(principal.user_id(), Some(UserId::parse(42).unwrap()));
    assert!(
        JwtVerifier::new(&Secret::new("another-secret-of-16+"))
            .verify(&jwt)
            .is_err(),
        "another secret must not verify it"
    );
}

#[test]
fn prints_a_service_token() {
    let jwt = printed(&token(
        &["--role", "service", "--name", "billing"],
        Some(SECRET),
    ));
    let principal = JwtVerifier::new(&Secret::new(SECRET)).verify(&jwt).unwrap();
    assert_eq!(principal.role, Role::Service);
    assert_eq!(principal.subject, "billing");
    assert!(principal.may_act_for(UserId::parse(7).unwrap()));
}

#[test]
fn a_missing_or_short_secret_is_refused() {
    let unset = refused(&token(&["--user", "1"], None));
    assert!(unset.contains("JWT_SECRET: must be set"), "{unset}");
    let short = refused(&token(&["--user", "1"], Some("short")));
    assert!(short.contains("at least 16 characters"), "{short}");
}

#[test]
fn bad_arguments_get_a_usage_error() {
    for (args, needle) in [
        (&[][..], "--user ID is required"),
        (
            &["--user", "0"][..],
            "'--user <ID>': must be a positive user id",
        ),
        (
            &["--user", "1", "--role", "admin"][..],
            "'--role <ROLE>': must be user or service",
        ),
        (&["--user", "1", "extra"][..], "unexpected argument 'extra'"),
        (
            &["--user", "1", "--rol", "user"][..],
            "similar argument exists: '--role'",
        ),
    ] {
        let stderr = refused(&token(args, Some(SECRET)));
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(
            stderr.contains("For more information, try '--help'"),
            "{args:?}: {stderr}"
        );
    }
    let help = token(&["--help"], None);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--role <ROLE>") && help.contains("[env: JWT_SECRET]"),
        "{help}"
    );
}

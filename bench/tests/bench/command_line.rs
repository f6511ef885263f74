//! `checkout-bench`'s command line, run as the binary: every scenario is a
//! subcommand with its own `--help`, `--version` works, a typo gets a
//! suggestion and exit 64. Nothing is measured.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_checkout-bench"))
        .args(args)
        .output()
        .expect("checkout-bench runs")
}

fn stdout_of(args: &[&str]) -> String {
    let output = bench(args);
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

const SCENARIOS: [&str; 9] = [
    "start",
    "ledger",
    "worker",
    "e2e",
    "watch",
    "tail",
    "scale",
    "stripe-tls",
    "all",
];

#[test]
fn every_scenario_has_its_own_help() {
    let help = stdout_of(&["--help"]);
    for scenario in SCENARIOS {
        assert!(
            help.contains(&format!("  {scenario} ")),
            "{scenario}: {help}"
        );
        let own = stdout_of(&[scenario, "--help"]);
        assert!(
            own.contains(&format!("Usage: checkout-bench {scenario}")) && own.contains("--smoke"),
            "{scenario}: {own}"
        );
    }
    let scale = stdout_of(&["scale", "--help"]);
    assert!(scale.contains("--scale-limits <lifted|N,...>"), "{scale}");
}

#[test]
fn version_and_typos() {
    assert_eq!(
        stdout_of(&["--version"]).trim(),
        format!("checkout-bench {}", env!("CARGO_PKG_VERSION"))
    );
    for (args, tip) in [
        (&["watch", "--watch-stream", "10"][..], "'--watch-streams'"),
        (&["ledgr"][..], "'ledger'"),
    ] {
        let output = bench(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains("tip:") && stderr.contains(tip),
            "{args:?}: {stderr}"
        );
    }
    let bad = bench(&["scale", "--scale-workers", "9"]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("a count from 1 to 8"));
}

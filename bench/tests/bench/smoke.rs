//! One test per scenario, `--smoke` options, JSON written to a temp dir.

use bench::{Options, Scenario};

async fn smoke(scenario: Scenario) -> bench::Report {
    testkit::init_tracing();
    let out = tempfile::tempdir().expect("temp dir");
    let options = Options::smoke(out.path().to_path_buf());
    let mut reports = bench::run(scenario, &options)
        .await
        .unwrap_or_else(|e| panic!("{} failed: {e:#}", scenario.name()));
    assert_eq!(reports.len(), 1);
    let report = reports.remove(0);
    let json = out.path().join(format!("{}.json", scenario.name()));
    assert!(json.is_file(), "{} was not written", json.display());
    assert!(!report.rows.is_empty(), "no rows:\n{}", report.render());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_measures_every_target_at_each_smoke_level() {
    let report = smoke(Scenario::Start).await;
    for row in report.data.as_array().expect("rows") {
        for target in ["raw_produce", "grpc_floor", "start_checkout"] {
            let ok = row[target]["ok"].as_u64().unwrap_or(0);
            assert!(ok > 0, "{target} measured nothing:\n{}", report.render());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_open_loop_runs_at_a_share_of_the_closed_loop_capacity() {
    testkit::init_tracing();
    let out = tempfile::tempdir().expect("temp dir");
    let mut options = Options::smoke(out.path().to_path_buf());
    options.rates = vec![bench::load::Rate::OfCapacity(0.5)];
    let report = bench::run(Scenario::Start, &options)
        .await
        .unwrap_or_else(|e| panic!("start --rate 50% failed: {e:#}"));
    let rows = report[0].data.as_array().expect("rows");
    let render = report[0].render();
    // The closed loop's two smoke levels first, then the open loop.
    assert_eq!(rows.len(), 3, "{render}");
    let open = &rows[2];
    assert_eq!(open["loop"], "open", "{render}");
    let capacity = open["closed_capacity_per_sec"].as_f64().unwrap_or(0.0);
    assert!(capacity > 0.0, "{render}");
    assert!(
        (open["rate_per_sec"].as_f64().unwrap_or(0.0) - capacity / 2.0).abs() < 1e-6,
        "{render}"
    );
    for target in ["raw_produce", "grpc_floor", "start_checkout"] {
        assert!(
            open["sends"][target]["scheduled"].as_u64().unwrap_or(0) > 0,
            "{target} scheduled nothing:\n{render}"
        );
        assert!(
            open[target]["ok"].as_u64().unwrap_or(0) > 0,
            "{target} measured nothing:\n{render}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_measures_both_databases_and_keeps_exactly_once() {
    let report = smoke(Scenario::Ledger).await;
    let rows = report.data.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{}", report.render());
    for row in rows {
        for figure in [
            "plain_insert_per_sec",
            "store_apply_per_sec",
            "consumer_credits_per_sec",
        ] {
            assert!(
                row[figure].as_f64().unwrap_or(0.0) > 0.0,
                "{figure} is zero:\n{}",
                report.render()
            );
        }
        assert_eq!(row["exactly_once"], true, "{}", report.render());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_creates_sessions_without_duplicates() {
    let report = smoke(Scenario::Worker).await;
    assert!(
        report.data["sessions_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{}",
        report.render()
    );
    assert_eq!(report.data["duplicates"], 0, "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_measures_session_created_and_pay_to_success() {
    let report = smoke(Scenario::E2e).await;
    for row in report.data.as_array().expect("rows") {
        for stage in ["session_created", "pay_to_success"] {
            assert!(
                row[stage]["ok"].as_u64().unwrap_or(0) > 0,
                "{stage} measured nothing:\n{}",
                report.render()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_to_open_streams() {
    testkit::init_tracing();
    let out = tempfile::tempdir().expect("temp dir");
    let mut options = Options::smoke(out.path().to_path_buf());
    // The gateway runs as `checkout-bench serve-gateway`, a process of its own.
    options.exe = Some(env!("CARGO_BIN_EXE_checkout-bench").into());
    let report = bench::run(Scenario::Watch, &options)
        .await
        .unwrap_or_else(|e| panic!("watch failed: {e:#}"));
    for row in report[0].data.as_array().expect("rows") {
        assert!(
            row["opened"].as_u64().unwrap_or(0) > 0,
            "{}",
            report[0].render()
        );
        assert!(
            row["delivery"]["ok"].as_u64().unwrap_or(0) > 0,
            "{}",
            report[0].render()
        );
    }
}

/// `scale` runs the `gateway`, `checkout` and `blazing_sun` binaries found
/// next to `checkout-bench` (`cargo nextest run --workspace` builds them;
/// alone: `cargo build -p gateway -p checkout -p blazing_sun`): one of
/// each, the limit lifted, a few checkouts end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_runs_the_service_binaries_end_to_end() {
    testkit::init_tracing();
    let out = tempfile::tempdir().expect("temp dir");
    let mut options = Options::smoke(out.path().to_path_buf());
    options.exe = Some(env!("CARGO_BIN_EXE_checkout-bench").into());
    let report = bench::run(Scenario::Scale, &options)
        .await
        .unwrap_or_else(|e| panic!("scale failed: {e:#}"));
    let rows = report[0].data["configurations"]
        .as_array()
        .expect("configurations");
    let render = report[0].render();
    assert_eq!(rows.len(), 1, "{render}");
    let row = &rows[0];
    assert_eq!(
        (row["workers"].as_u64(), row["gateways"].as_u64()),
        (Some(1), Some(1)),
        "{render}"
    );
    for figure in ["sessions_per_sec", "credits_per_sec"] {
        assert!(
            row[figure].as_f64().unwrap_or(0.0) > 0.0,
            "{figure} is zero:\n{render}"
        );
    }
    assert!(
        row["start_to_credit"]["ok"].as_u64().unwrap_or(0) > 0,
        "{render}"
    );
    assert_eq!(row["errors"], 0, "{render}");
    // Every process measured (a quiet one may use less than the 10 ms a
    // clock tick counts in so short a window; the broker never does).
    for process in ["gateway 1", "checkout 1", "blazing_sun", "broker", "bench"] {
        assert!(
            row["cpu_cores"][process].is_number(),
            "no CPU figure for {process}:\n{render}"
        );
    }
    assert!(
        row["cpu_cores"]["broker"].as_f64().unwrap_or(0.0) > 0.0,
        "{render}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_tls_measures_every_client_and_counts_connections() {
    let report = smoke(Scenario::StripeTls).await;
    let rows = report.data.as_array().expect("rows");
    assert_eq!(
        rows.len(),
        10,
        "5 clients x 2 smoke levels:\n{}",
        report.render()
    );
    for row in rows {
        assert!(
            row["sample"]["ok"].as_u64().unwrap_or(0) > 0,
            "{} measured nothing:\n{}",
            row["client"],
            report.render()
        );
        assert_eq!(row["sample"]["errors"], 0, "{}", report.render());
    }
    // A client that keeps no connection opens one per call.
    let no_pool = rows
        .iter()
        .find(|r| r["client"] == "no pool, https")
        .expect("no pool, https");
    assert_eq!(
        no_pool["connections_per_100_calls"].as_f64(),
        Some(100.0),
        "{}",
        report.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_measures_a_gateway_following_both_topics_and_its_index() {
    testkit::init_tracing();
    let out = tempfile::tempdir().expect("temp dir");
    let mut options = Options::smoke(out.path().to_path_buf());
    options.exe = Some(env!("CARGO_BIN_EXE_checkout-bench").into());
    let reports = bench::run(Scenario::Tail, &options)
        .await
        .unwrap_or_else(|e| panic!("tail failed: {e:#}"));
    let report = &reports[0];
    let rate = &report.data["rates"][0];
    assert_eq!(rate["caught_up"], true, "{}", report.render());
    assert!(
        rate["records_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{}",
        report.render()
    );
    assert!(
        report.data["index"]["entries"].as_f64().unwrap_or(0.0) > 0.0,
        "{}",
        report.render()
    );
}

//! The balance page in a real browser: Debian's headless `chromium`, driven
//! through `chromedriver` (WebDriver, via fantoccini) against the launcher on
//! free ports. Top up -> the emulator's hosted page -> Pay -> back on the
//! page, which streams the status over gRPC-Web until `success` and shows the
//! balance up by exactly the amount; then a second browser cancels and sees
//! the failure, and a third pays with a payment that fails later (`failed`
//! streamed from the gateway). Screenshots of the final pages land in
//! `target/browser-test/`.
//!
//! Also: the committed bundle `blazing_sun/assets/topup.js` was built from
//! the current `web/` and `proto/` sources (`scripts/build-web.sh`).
//!
//! Needs `chromium` and `chromedriver` on the PATH (`scripts/setup.sh`
//! installs Debian's `chromium` and `chromium-driver`); fails loudly without.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use sha2::{Digest, Sha256};
use stack::StackConfig;
use stack::system;
use tokio::process::{Child, Command};

/// Top-up amount typed into the page, and the same in minor units.
const AMOUNT: &str = "12.34";
const AMOUNT_CENTS: i64 = 1234;
/// Generous: a loaded 2-core machine runs the whole stack and a browser.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("stack/ has a parent")
        .to_path_buf()
}

/// `target/browser-test/`, next to cargo's own test output.
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("browser-test");
    std::fs::create_dir_all(&dir).expect("create target/browser-test");
    dir
}

/// Files under `dir` (relative to the root) whose name ends with `ext`, recursively.
fn files(root: &Path, dir: &str, ext: &str, skip: Option<&str>, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let entry = entry.unwrap();
        let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
        if skip.is_some_and(|s| rel == s) {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            files(root, &rel, ext, skip, out);
        } else if rel.ends_with(ext) {
            out.push(rel);
        }
    }
}

/// The same hash `scripts/build-web.sh` writes into the bundle's first line:
/// SHA-256 over "path NUL content NUL" of every source, sorted by path.
fn sources_hash(root: &Path) -> String {
    let mut paths: Vec<String> = [
        "web/package.json",
        "web/package-lock.json",
        "web/buf.gen.yaml",
        "web/tsconfig.json",
    ]
    .map(str::to_owned)
    .to_vec();
    files(root, "web/src", ".ts", Some("web/src/gen"), &mut paths);
    files(root, "proto", ".proto", None, &mut paths);
    paths.sort();
    let mut hash = Sha256::new();
    for path in &paths {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(root.join(path)).unwrap());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

#[test]
fn bundle_is_up_to_date() {
    let root = repo_root();
    let bundle = std::fs::read_to_string(root.join("blazing_sun/assets/topup.js")).unwrap();
    let header = bundle.lines().next().unwrap_or_default();
    let recorded = header
        .split("sources-sha256: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sources-sha256 in the bundle's first line: {header}"));
    assert_eq!(
        recorded,
        sources_hash(&root),
        "blazing_sun/assets/topup.js is stale: web/ or proto/ changed since it was built; \
         run scripts/build-web.sh and commit the bundle"
    );
    assert!(
        bundle.len() < 256 * 1024,
        "bundle unexpectedly large: {} bytes",
        bundle.len()
    );
}

/// `chromedriver` on a free port, killed when dropped.
struct Driver {
    url: String,
    _child: Child,
}

async fn start_chromedriver() -> Driver {
    let port = testkit::free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start chromedriver ({e}): install Debian's chromium and \
                 chromium-driver (scripts/setup.sh does)"
            )
        });
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    testkit::eventually("chromedriver ready", STEP_TIMEOUT, || {
        let request = http.get(format!("{url}/status")).send();
        async move {
            let body: serde_json::Value = request.await.ok()?.json().await.ok()?;
            (body["value"]["ready"] == true).then_some(())
        }
    })
    .await;
    Driver { url, _child: child }
}

/// A fresh headless chromium (its own profile directory) through `driver`.
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed: apt-get install chromium chromium-driver (scripts/setup.sh)");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--window-size=1000,1100",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("chromedriver starts a chromium session");
    client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(30)),
            Some(Duration::ZERO),
        ))
        .await
        .expect("set timeouts");
    client
}

async fn status(client: &Client) -> Option<(String, String)> {
    let el = client.find(Locator::Id("status")).await.ok()?;
    let status = el.attr("data-status").await.ok()??;
    let text = el.text().await.ok()?;
    Some((status, text))
}

/// The EUR balance the page shows, once it has loaded it.
async fn shown_balance(client: &Client) -> i64 {
    testkit::eventually("the page shows the balance", STEP_TIMEOUT, || async {
        let el = client
            .find(Locator::Css("#balances li[data-currency=eur]"))
            .await
            .ok()?;
        el.attr("data-cents").await.ok()??.parse().ok()
    })
    .await
}

async fn current_url(client: &Client) -> Option<String> {
    client.current_url().await.ok().map(|u| u.to_string())
}

/// Top up [`AMOUNT`] on the page and land on the emulator's hosted page.
async fn top_up_to_hosted_page(client: &Client, page: &str, emulator: &str) -> i64 {
    client.goto(page).await.expect("open the balance page");
    let before = shown_balance(client).await;
    let amount = client.find(Locator::Id("amount")).await.unwrap();
    amount.send_keys(AMOUNT).await.unwrap();
    client
        .find(Locator::Id("topup"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let hosted = format!("{emulator}/pay/");
    testkit::eventually("the emulator's hosted page", STEP_TIMEOUT, || async {
        let url = current_url(client).await?;
        if !url.starts_with(&hosted) {
            // Fail fast with the page's own words if the top-up failed.
            if let Some((s, text)) = status(client).await {
                assert!(s != "error" && s != "failed", "top-up failed: {s}: {text}");
            }
            return None;
        }
        client.find(Locator::Css("button[value=paid]")).await.ok()
    })
    .await;
    before
}

async fn click_hosted(client: &Client, action: &str) {
    client
        .find(Locator::Css(&format!("button[value={action}]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for a terminal status on the page after returning from the hosted page.
async fn final_status(client: &Client, page_origin: &str) -> (String, String) {
    testkit::eventually(
        "a final status on the balance page",
        STEP_TIMEOUT,
        || async {
            let url = current_url(client).await?;
            if !url.starts_with(page_origin) {
                return None;
            }
            let (s, text) = status(client).await?;
            assert!(s != "error", "the page reports an error: {text}");
            // `success` first shows "confirming" until the ledger has the credit.
            let done = (s == "success" && text.contains("added")) || s == "failed";
            done.then_some((s, text))
        },
    )
    .await
}

async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    let path = output_dir().join(name);
    std::fs::write(&path, png).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn top_up_pay_and_cancel_in_headless_chromium() {
    testkit::init_tracing();
    let data = tempfile::tempdir().unwrap();
    let running = system::start(StackConfig::on_free_ports(data.path().to_path_buf()))
        .await
        .expect("stack starts");
    let origin = format!("http://{}", running.blazing_sun);
    let emulator = format!("http://{}", running.emulator.expect("emulator by default"));
    let page = format!("{origin}/#token={}", running.demo_user_token);
    let driver = start_chromedriver().await;

    // Run 1: pay.
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let before = top_up_to_hosted_page(&client, &page, &emulator).await;
    click_hosted(&client, "paid").await;
    let (s, text) = final_status(&client, &origin).await;
    let shot = screenshot(&client, "top-up-paid.png").await;
    assert_eq!(s, "success", "{text} (see {})", shot.display());
    assert!(text.contains("€12.34 added"), "{text}");
    assert_eq!(shown_balance(&client).await, before + AMOUNT_CENTS);
    assert!(
        client
            .find(Locator::Css("#ledger tr[data-request-id]"))
            .await
            .is_ok(),
        "the ledger lists the top-up"
    );
    // The token moved from the URL into sessionStorage.
    assert!(!current_url(&client).await.unwrap().contains("token="));
    client.close().await.unwrap();

    // Run 2: cancel, in a fresh browser.
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let before = top_up_to_hosted_page(&client, &page, &emulator).await;
    click_hosted(&client, "cancel").await;
    let (s, text) = final_status(&client, &origin).await;
    let shot = screenshot(&client, "top-up-cancelled.png").await;
    assert_eq!(s, "failed", "{text} (see {})", shot.display());
    assert!(text.contains("cancelled"), "{text}");
    assert_eq!(shown_balance(&client).await, before);
    client.close().await.unwrap();

    // Run 3: the payment fails after the redirect (the emulator's "Pay later
    // (fails)"): `failed` arrives over the gRPC-Web stream.
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let before = top_up_to_hosted_page(&client, &page, &emulator).await;
    click_hosted(&client, "async_failed").await;
    let (s, text) = final_status(&client, &origin).await;
    let shot = screenshot(&client, "top-up-payment-failed.png").await;
    assert_eq!(s, "failed", "{text} (see {})", shot.display());
    assert!(!text.contains("cancelled"), "{text}");
    assert_eq!(shown_balance(&client).await, before);
    client.close().await.unwrap();

    // Run 4: a yen balance (credited through the API; JPY has no minor
    // unit below the yen) shows as whole yen, by the exponent the API sends.
    let http = reqwest::Client::new();
    let token = &running.demo_user_token;
    let (session, _) = crate::launcher::start_top_up(&http, &origin, token, 1000, "jpy").await;
    crate::launcher::pay(&http, &emulator, &session).await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    client.goto(&page).await.unwrap();
    let yen = testkit::eventually("the page shows the yen balance", STEP_TIMEOUT, || async {
        let el = client
            .find(Locator::Css("#balances li[data-currency=jpy]"))
            .await
            .ok()?;
        (el.attr("data-cents").await.ok()?? == "1000").then_some(el)
    })
    .await;
    assert_eq!(yen.text().await.unwrap(), "¥1,000");
    let eur = client
        .find(Locator::Css("#balances li[data-currency=eur]"))
        .await
        .unwrap();
    assert_eq!(eur.text().await.unwrap(), "€12.34");
    let amounts = client
        .find_all(Locator::Css("#ledger td.amount"))
        .await
        .unwrap();
    let mut shown = Vec::new();
    for a in amounts {
        shown.push(a.text().await.unwrap());
    }
    assert!(shown.contains(&"¥1,000".to_owned()), "{shown:?}");
    screenshot(&client, "balances-eur-and-jpy.png").await;
    client.close().await.unwrap();

    drop(driver);
    running
        .run_until_stopped(async {})
        .await
        .expect("clean shutdown");
}

//! Slow-loris clients on the webhook port: one that never finishes its
//! headers and one that never finishes its body are cut off after the read
//! timeouts, while a normal delivery on another connection is served.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Options, spawn_app_with};

const TIMEOUT: Duration = Duration::from_millis(500);

/// Writes `head`, then waits for the server to answer or close; returns
/// what it sent back and how long that took.
async fn stall(addr: &str, head: &str) -> (String, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // Bounded by the test: the server must end the connection by itself.
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server cut the slow client off")
        .ok();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let app = spawn_app_with(Options {
        webhook_client_timeout: TIMEOUT,
        ..Options::default()
    })
    .await;
    let addr = app
        .webhook_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    let slow_headers = tokio::spawn({
        let addr = addr.clone();
        async move { stall(&addr, "POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\n").await }
    });
    let slow_body = tokio::spawn({
        let addr = addr.clone();
        async move {
            stall(
                &addr,
                "POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nstripe-signature: t=1,v1=00\r\ncontent-length: 1000\r\n\r\n{\"id\":",
            )
            .await
        }
    });

    // Meanwhile a normal (unsigned) delivery is answered at once.
    let answered = app
        .http
        .post(&app.webhook_url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::BAD_REQUEST);

    let (answer, took) = slow_headers.await.unwrap();
    assert!(
        took >= TIMEOUT / 2,
        "cut off after the timeout, not before: {took:?}"
    );
    assert!(!answer.contains(" 200 "), "{answer}");
    let (answer, took) = slow_body.await.unwrap();
    assert!(took >= TIMEOUT / 2, "{took:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "closed or a 4xx: {answer}"
    );
    assert!(app.finished_events().is_empty(), "nothing published");
}

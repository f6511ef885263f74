//! `rejoin`: how long a SIGKILLed group consumer's replacement takes to own
//! every partition, on a broker of its own (`TEST_BROKER`, `BROKER_BIN`), as a dynamic or a
//! static (`group.instance.id`) member. The measurement behind the fault
//! suite's immediate worker restarts (see `tests/faults/suite.rs`).
//!
//! ```text
//! cargo run -p faults --example rejoin -- <rounds> <session_ms> dynamic|static
//! ```
//!
//! It starts one consumer process (this binary, `child` mode) on a 3-partition
//! topic, then `rounds` times: SIGKILLs it, starts the next one at once and
//! prints when that one holds all 3 partitions (`None`: not within 45 s) and
//! every assignment change in the 12 s after.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use checkout_contract::kafka::{GroupInstanceId, KafkaConfig, ensure_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};

const PARTITIONS: usize = 3;
const USAGE: &str = "usage: rejoin <rounds> <session_ms> dynamic|static";

/// The consumer process: prints `ASSIGNED <partitions> <ms since start>` on each change.
fn child(bootstrap: &str, topic: &str, group: &str, session_ms: &str, instance: Option<&str>) {
    let mut kafka = KafkaConfig::new(bootstrap, "rejoin");
    kafka.enable_idempotence = false;
    let instance = instance.map(|i| GroupInstanceId::parse(i, None).expect("instance id"));
    let consumer: BaseConsumer = kafka
        .member_config(group, instance.as_ref())
        .set("session.timeout.ms", session_ms)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let t0 = Instant::now();
    let mut last = usize::MAX;
    loop {
        let _ = consumer.poll(Duration::from_millis(50));
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if n != last {
            last = n;
            println!("ASSIGNED {n} {}", t0.elapsed().as_millis());
            std::io::stdout().flush().expect("stdout");
        }
    }
}

/// Starts a consumer process; its assignment changes arrive on the receiver.
fn spawn(args: &[String]) -> (Child, mpsc::Receiver<(usize, u128)>) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("child")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("consumer process");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut fields = line.split_whitespace().skip(1);
            if let (Some(Ok(n)), Some(Ok(ms))) = (
                fields.next().map(str::parse::<usize>),
                fields.next().map(str::parse::<u128>),
            ) && tx.send((n, ms)).is_err()
            {
                return;
            }
        }
    });
    (child, rx)
}

/// Milliseconds (since the process started) until it held every partition.
fn wait_full(rx: &mpsc::Receiver<(usize, u128)>, limit: Duration) -> Option<u128> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok((n, ms)) if n == PARTITIONS => return Some(ms),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Every assignment change within `window`.
fn changes(rx: &mpsc::Receiver<(usize, u128)>, window: Duration) -> Vec<(usize, u128)> {
    let until = Instant::now() + window;
    let mut seen = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(change) => seen.push(change),
            Err(_) => break,
        }
    }
    seen
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, bootstrap, topic, group, session_ms, rest @ ..] = args.as_slice()
        && mode == "child"
    {
        child(
            bootstrap,
            topic,
            group,
            session_ms,
            rest.first().map(String::as_str),
        );
        return ExitCode::SUCCESS;
    }
    let (Some(Ok(rounds)), Some(Ok(session_ms)), Some(kind)) = (
        args.first().map(|a| a.parse::<usize>()),
        args.get(1).map(|a| a.parse::<u32>()),
        args.get(2).filter(|k| *k == "dynamic" || *k == "static"),
    ) else {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    };
    let broker = testkit::broker::TestBroker::start().await;
    let mut kafka = broker.config("rejoin");
    kafka.enable_idempotence = false;
    let topic = testkit::unique("rejoin");
    ensure_topics(&kafka, &[&topic], 3).await.expect("topic");
    let mut child_args = vec![
        broker.bootstrap(),
        topic,
        testkit::unique("rejoin-group"),
        session_ms.to_string(),
    ];
    if kind == "static" {
        child_args.push("rejoin-1".into());
    }

    let (mut current, mut rx) = spawn(&child_args);
    println!(
        "{kind} session={session_ms}ms first start: all partitions after {:?} ms",
        wait_full(&rx, Duration::from_secs(60))
    );
    for round in 1..=rounds {
        // Pacing: the member heartbeats a while before it dies.
        std::thread::sleep(Duration::from_secs(2));
        current.kill().expect("SIGKILL");
        current.wait().expect("reap");
        (current, rx) = spawn(&child_args);
        let full = wait_full(&rx, Duration::from_secs(45));
        println!(
            "{kind} session={session_ms}ms restart {round}: all partitions after {full:?} ms; then {:?}",
            changes(&rx, Duration::from_secs(12))
        );
    }
    let _ = current.kill();
    let _ = current.wait();
    ExitCode::SUCCESS
}

//! The parts the `worker` and `e2e` scenarios run: the Stripe emulator (over
//! HTTP only, as Stripe), the checkout worker with its webhook wired to the
//! emulator, and optionally the gateway, all on the bench's own Tansu.

use std::time::Duration;

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::secret::Secret;
use checkout_contract::shutdown::{Stop, drain_all};
use tokio::task::JoinSet;

use crate::infra::Kafka;

const WEBHOOK_SECRET: &str = "whsec_checkout_bench";
const JWT_SECRET: &str = "checkout-bench-jwt-secret";

/// The running parts; [`System::stop`] ends them.
pub struct System {
    pub kafka: Kafka,
    pub emulator: stripe_emulator::Handle,
    /// The gateway's gRPC address, when started with one.
    pub gateway: Option<std::net::SocketAddr>,
    /// A service-role bearer token for the gateway.
    pub token: String,
    stop: Stop,
    tasks: JoinSet<()>,
}

/// What to start.
pub struct Setup {
    pub stripe_latency: Duration,
    /// The worker's client-side limit on Stripe calls per second.
    pub rate_limit: f64,
    pub with_gateway: bool,
    pub broker: crate::infra::BrokerChoice,
}

impl System {
    /// Starts broker, emulator, worker (and gateway).
    ///
    /// # Errors
    /// When a part cannot start.
    pub async fn start(setup: Setup) -> anyhow::Result<Self> {
        let kafka = Kafka::start(setup.broker).await?;
        let stop = Stop::new();
        let mut tasks = JoinSet::new();

        let emulator = stripe_emulator::Emulator::build(stripe_emulator::Config::default())
            .await
            .map_err(|e| anyhow::anyhow!("stripe emulator: {e}"))?;
        let handle = emulator.handle();
        handle
            .set_faults(stripe_emulator::config::Faults {
                latency_ms: u64::try_from(setup.stripe_latency.as_millis())?,
                ..Default::default()
            })
            .map_err(|bad| anyhow::anyhow!("bad faults: {bad:?}"))?;
        let api_base = emulator.api_base();
        let run = emulator.run_until_stopped(stop.when_stopped());
        tasks.spawn(async move {
            let _ = run.await;
        });

        let mut config = checkout::Config::new(
            kafka.config.bootstrap_servers.clone(),
            api_base,
            Secret::new("sk_test_checkout_bench".to_owned()),
            Secret::new(WEBHOOK_SECRET.to_owned()),
        );
        config.kafka = kafka.config.clone();
        config.topics = kafka.topics.clone();
        config.consumer_group = format!("bench-checkout-{}", uuid::Uuid::new_v4().simple());
        config.stripe.rate_limit = setup.rate_limit;
        let worker = checkout::Application::build(config).await?;
        handle.set_webhook(
            Some(format!("http://{}/webhooks/stripe", worker.webhook_addr())),
            Some(WEBHOOK_SECRET.to_owned()),
        );
        let run = worker.run_until_stopped(stop.when_stopped());
        tasks.spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "checkout worker stopped");
            }
        });

        let secret = Secret::new(JWT_SECRET.to_owned());
        let token = JwtIssuer::new(&secret).issue(
            "checkout-bench",
            Role::Service,
            Duration::from_secs(24 * 3600),
        );
        let gateway = if setup.with_gateway {
            let config = gateway::Config::new(
                kafka.config.clone(),
                kafka.topics.clone(),
                gateway::AuthMode::Jwt(secret),
            );
            let gw = gateway::Gateway::build(config).await?;
            let addr = gw.grpc_addr();
            let run = gw.run_until_stopped(stop.when_stopped());
            tasks.spawn(async move {
                let _ = run.await;
            });
            Some(addr)
        } else {
            None
        };
        Ok(Self {
            kafka,
            emulator: handle,
            gateway,
            token,
            stop,
            tasks,
        })
    }

    /// Stops every part and waits (at most 20 s) for them.
    pub async fn stop(mut self) {
        self.stop.stop();
        drain_all(
            "bench parts",
            Duration::from_secs(20),
            &mut self.tasks,
            drop,
        )
        .await;
    }
}

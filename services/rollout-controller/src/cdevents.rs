//! CDEvents (spec v0.4) about releases, as CloudEvents 1.0 in structured JSON mode
//! (`application/cloudevents+json`), sent to an HTTP sink.
//!
//! Structured mode: the whole event (envelope + CDEvent) is one JSON document, so a receiver can
//! store, log or forward it as is without mapping `ce-*` headers back; CDEvents' own payload
//! already repeats the envelope's id, source, type and time in `context`.
//!
//! Delivery never blocks a reconcile: `Sink::send` puts the event on a bounded queue (a full queue
//! drops it, counted and logged) and one task drains it, retrying connection errors, 5xx and 429
//! with exponential backoff up to `max_attempts`. Ids are derived from the rollout uid, the
//! revision and the outcome, so a retried or re-sent event carries the same id.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The CDEvents spec version these events follow.
pub const SPEC_VERSION: &str = "0.4.1";
/// `context.source` and the CloudEvent `source`: the same for every replica, so that the
/// (source, id) pair a receiver de-duplicates on does not change with the leader.
pub const SOURCE: &str = "/payplane/rollout-controller";

/// How a release ended, in the CDEvents service vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first version of a service (the Rollout adopted its Deployment).
    Deployed,
    /// A canary was promoted.
    Upgraded,
    /// A canary was aborted: the service is back on (stays on) the stable version.
    RolledBack,
}

impl Outcome {
    pub fn event_type(self) -> &'static str {
        match self {
            Outcome::Deployed => "dev.cdevents.service.deployed.0.2.0",
            Outcome::Upgraded => "dev.cdevents.service.upgraded.0.2.0",
            Outcome::RolledBack => "dev.cdevents.service.rolledback.0.2.0",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Outcome::Deployed => "deployed",
            Outcome::Upgraded => "upgraded",
            Outcome::RolledBack => "rolledback",
        }
    }
}

/// One release outcome of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub outcome: Outcome,
    /// The Rollout's uid: with `revision` and `outcome`, the event id.
    pub rollout_uid: String,
    /// The template hash the outcome is about (the promoted or aborted one).
    pub revision: String,
    pub namespace: String,
    /// The service: the released Deployment's name.
    pub service: String,
    pub environment: String,
    /// The image the service runs after this outcome.
    pub image: String,
    pub timestamp: DateTime<Utc>,
}

/// The stable event id: a UUID v5 of uid, revision and outcome.
pub fn event_id(rollout_uid: &str, revision: &str, outcome: Outcome) -> String {
    let name = format!("{rollout_uid}/{revision}/{}", outcome.key());
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// The package URL of an OCI image reference: `pkg:oci/<name>@<digest>?repository_url=<repo>`,
/// with the tag as the `tag` qualifier (the purl OCI type's version is the digest; without a
/// digest the tag is all there is).
pub fn image_purl(image: &str) -> String {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    // A tag is after the last ':' that follows the last '/' (a registry may have a port).
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    let name = repository.rsplit('/').next().unwrap_or(repository).to_lowercase();
    let mut purl = format!("pkg:oci/{name}");
    if let Some(d) = digest {
        purl.push('@');
        purl.push_str(&d.replace(':', "%3A"));
    }
    // Qualifiers sorted by key.
    let mut qualifiers = vec![format!("repository_url={}", repository.to_lowercase())];
    if let Some(t) = tag {
        qualifiers.push(format!("tag={t}"));
    }
    purl.push('?');
    purl.push_str(&qualifiers.join("&"));
    purl
}

/// The CloudEvent (structured mode) carrying the CDEvent for `release`.
pub fn cloud_event(release: &Release) -> Value {
    let id = event_id(&release.rollout_uid, &release.revision, release.outcome);
    let time = release.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true);
    let type_ = release.outcome.event_type();
    let subject_id = format!("{}/{}", release.namespace, release.service);
    let cdevent = json!({
        "context": {
            "version": SPEC_VERSION,
            "id": id,
            "source": SOURCE,
            "type": type_,
            "timestamp": time,
        },
        "subject": {
            "id": subject_id,
            "source": SOURCE,
            "type": "service",
            "content": {
                "environment": {"id": release.environment},
                "artifactId": image_purl(&release.image),
            },
        },
    });
    json!({
        "specversion": "1.0",
        "id": id,
        "source": SOURCE,
        "type": type_,
        "subject": subject_id,
        "time": time,
        "datacontenttype": "application/json",
        "data": cdevent,
    })
}

/// The delivery settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The sink's URL (HTTP POST).
    pub sink: String,
    /// `subject.content.environment.id`; None: the Rollout's namespace.
    pub environment: Option<String>,
    /// Events waiting for delivery; beyond this they are dropped.
    pub queue: usize,
    /// Attempts per event, the first included.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Per attempt.
    pub timeout: Duration,
}

impl Config {
    pub fn new(sink: String) -> Self {
        Self {
            sink,
            environment: None,
            queue: 256,
            max_attempts: 8,
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based): initial · 2^(attempt−1), capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What one attempt's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Connection error, timeout, 5xx, 429: try again later.
    Retry,
    /// Any other status (4xx): the request itself is wrong; retrying will not help.
    Reject,
}

/// `status`: the HTTP status, None for a transport error (no response).
pub fn classify(status: Option<u16>) -> Verdict {
    match status {
        None => Verdict::Retry,
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(429) => Verdict::Retry,
        Some(s) if s >= 500 => Verdict::Retry,
        Some(_) => Verdict::Reject,
    }
}

/// Counters of the delivery (registered by `ControllerMetrics`).
#[derive(Debug, Clone, Default)]
pub struct SinkMetrics {
    pub sent: Counter,
    pub failed: Counter,
    pub dropped: Counter,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Value>,
    environment: Option<String>,
    metrics: SinkMetrics,
}

impl Sink {
    /// Starts the sender task (it ends once every `Sink` is dropped and the queue is drained).
    pub fn spawn(config: Config, metrics: SinkMetrics) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let sink = Self {
            tx,
            environment: config.environment.clone(),
            metrics: metrics.clone(),
        };
        let handle = tokio::spawn(deliver(config, rx, metrics));
        (sink, handle)
    }

    /// The environment id for a Rollout in `namespace`.
    pub fn environment(&self, namespace: &str) -> String {
        self.environment.clone().unwrap_or_else(|| namespace.to_owned())
    }

    /// Queues the event for `release`; drops it (counted, logged) if the queue is full.
    pub fn send(&self, release: &Release) {
        let event = cloud_event(release);
        if let Err(e) = self.tx.try_send(event) {
            self.metrics.dropped.inc();
            let (mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event)) = e;
            tracing::warn!(
                id = %event["id"], type_ = %event["type"], subject = %event["subject"],
                "CDEvent dropped: the delivery queue is full"
            );
        }
    }
}

async fn deliver(config: Config, mut rx: mpsc::Receiver<Value>, metrics: SinkMetrics) {
    let http = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the CDEvents HTTP client: events are not sent");
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        let body = event.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = http
                .post(&config.sink)
                .header(reqwest::header::CONTENT_TYPE, "application/cloudevents+json")
                .body(body.clone())
                .send()
                .await;
            let (status, error) = match &result {
                Ok(r) => (Some(r.status().as_u16()), None),
                Err(e) => (None, Some(e.to_string())),
            };
            match classify(status) {
                Verdict::Delivered => {
                    metrics.sent.inc();
                    tracing::debug!(id = %event["id"], type_ = %event["type"], attempt, "CDEvent sent");
                    break;
                }
                Verdict::Retry if attempt < config.max_attempts => {
                    let wait = config.backoff.delay(attempt);
                    tracing::debug!(id = %event["id"], ?status, ?error, attempt, ?wait, "CDEvent not delivered, retrying");
                    tokio::time::sleep(wait).await;
                }
                verdict => {
                    metrics.failed.inc();
                    tracing::warn!(
                        id = %event["id"], type_ = %event["type"], ?status, ?error, attempt, ?verdict,
                        "CDEvent not delivered: giving up"
                    );
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(outcome: Outcome) -> Release {
        Release {
            outcome,
            rollout_uid: "0b9f6a3e-uid".into(),
            revision: "5d8c7f".into(),
            namespace: "payments".into(),
            service: "accounting".into(),
            environment: "prod-eu".into(),
            image: "registry.example.com:5000/payplane/accounting:1.4.2@sha256:abcdef".into(),
            timestamp: "2026-11-22T07:40:00.123Z".parse().unwrap(),
        }
    }

    #[test]
    fn the_cloud_event_carries_a_cdevent_with_the_spec_fields() {
        let e = cloud_event(&release(Outcome::Upgraded));
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "dev.cdevents.service.upgraded.0.2.0");
        assert_eq!(e["source"], SOURCE);
        assert_eq!(e["time"], "2026-11-22T07:40:00.123Z");
        assert_eq!(e["datacontenttype"], "application/json");
        let ctx = &e["data"]["context"];
        assert_eq!(ctx["version"], "0.4.1");
        assert_eq!(ctx["id"], e["id"]);
        assert_eq!(ctx["source"], SOURCE);
        assert_eq!(ctx["type"], "dev.cdevents.service.upgraded.0.2.0");
        assert_eq!(ctx["timestamp"], "2026-11-22T07:40:00.123Z");
        let subject = &e["data"]["subject"];
        assert_eq!(subject["id"], "payments/accounting");
        assert_eq!(subject["source"], SOURCE);
        assert_eq!(subject["type"], "service");
        assert_eq!(subject["content"]["environment"]["id"], "prod-eu");
        assert_eq!(
            subject["content"]["artifactId"],
            "pkg:oci/accounting@sha256%3Aabcdef?repository_url=registry.example.com:5000/payplane/accounting&tag=1.4.2"
        );
        assert_eq!(
            cloud_event(&release(Outcome::Deployed))["type"],
            "dev.cdevents.service.deployed.0.2.0"
        );
        assert_eq!(
            cloud_event(&release(Outcome::RolledBack))["data"]["context"]["type"],
            "dev.cdevents.service.rolledback.0.2.0"
        );
    }

    #[test]
    fn ids_are_stable_per_uid_revision_and_outcome() {
        let a = cloud_event(&release(Outcome::Upgraded));
        let mut later = release(Outcome::Upgraded);
        later.timestamp = Utc::now();
        assert_eq!(cloud_event(&later)["id"], a["id"], "a re-sent event keeps its id");
        assert_ne!(cloud_event(&release(Outcome::RolledBack))["id"], a["id"]);
        let mut other = release(Outcome::Upgraded);
        other.revision = "other".into();
        assert_ne!(cloud_event(&other)["id"], a["id"]);
        other = release(Outcome::Upgraded);
        other.rollout_uid = "another-uid".into();
        assert_ne!(cloud_event(&other)["id"], a["id"]);
        assert!(uuid::Uuid::parse_str(a["id"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn image_references_become_oci_purls() {
        assert_eq!(
            image_purl("localhost/payplane/busybox:1.0"),
            "pkg:oci/busybox?repository_url=localhost/payplane/busybox&tag=1.0"
        );
        assert_eq!(
            image_purl("ghcr.io/acme/Accounting@sha256:0b31"),
            "pkg:oci/accounting@sha256%3A0b31?repository_url=ghcr.io/acme/accounting"
        );
        assert_eq!(image_purl("busybox"), "pkg:oci/busybox?repository_url=busybox");
        assert_eq!(
            image_purl("localhost:5000/busybox"),
            "pkg:oci/busybox?repository_url=localhost:5000/busybox"
        );
    }

    #[test]
    fn retries_on_transport_errors_5xx_and_429_only() {
        assert_eq!(classify(Some(200)), Verdict::Delivered);
        assert_eq!(classify(Some(202)), Verdict::Delivered);
        assert_eq!(classify(None), Verdict::Retry);
        assert_eq!(classify(Some(503)), Verdict::Retry);
        assert_eq!(classify(Some(500)), Verdict::Retry);
        assert_eq!(classify(Some(429)), Verdict::Retry);
        assert_eq!(classify(Some(400)), Verdict::Reject);
        assert_eq!(classify(Some(404)), Verdict::Reject);
        assert_eq!(classify(Some(413)), Verdict::Reject);
        assert_eq!(classify(Some(301)), Verdict::Reject);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
        };
        let delays: Vec<_> = (1..=6).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(b.delay(100), Duration::from_secs(5), "no overflow");
    }
}

//! CDEvents delivery against a real local HTTP receiver: retries on 503, no retry on 400, a full
//! queue drops. `cargo test -p payplane-rollout-controller --test cdevents`

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use payplane_rollout_controller::cdevents::{Backoff, Config, Outcome, Release, Sink, SinkMetrics};
use serde_json::Value;

/// A CloudEvents receiver answering with the given statuses in turn (the last one repeats),
/// recording every request's content type and body.
#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Vec<u16>>,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Self, String) {
        let this = Self {
            answers: Arc::new(answers.to_vec()),
            requests: Arc::default(),
        };
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(this.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (this, url)
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut requests = r.requests.lock().unwrap();
    requests.push((content_type, serde_json::from_str(&body).unwrap_or(Value::Null)));
    let i = (requests.len() - 1).min(r.answers.len() - 1);
    StatusCode::from_u16(r.answers[i]).unwrap()
}

fn config(url: String) -> Config {
    Config {
        queue: 16,
        max_attempts: 5,
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
        timeout: Duration::from_secs(5),
        ..Config::new(url)
    }
}

fn release(outcome: Outcome) -> Release {
    Release {
        outcome,
        rollout_uid: "6c1e0d7a-uid".into(),
        revision: "7f9d5b".into(),
        namespace: "payments".into(),
        service: "accounting".into(),
        environment: "payments".into(),
        image: "localhost/payplane/accounting:2.0".into(),
        timestamp: chrono::Utc::now(),
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_503s_then_accepted_delivers_the_event_once() {
    let (receiver, url) = Receiver::start(&[503, 503, 202]).await;
    let metrics = SinkMetrics::default();
    let (sink, _task) = Sink::spawn(config(url), metrics.clone());
    sink.send(&release(Outcome::Upgraded));
    wait_for("the event accepted", || metrics.sent.get() == 1).await;
    // Nothing more arrives afterwards.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "two refused attempts, one accepted");
    assert!(
        requests.iter().all(|(_, e)| e["id"] == requests[0].1["id"]),
        "every attempt carries the same id"
    );
    let (content_type, event) = &requests[2];
    assert_eq!(content_type, "application/cloudevents+json");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "dev.cdevents.service.upgraded.0.2.0");
    assert_eq!(
        event["data"]["context"]["type"],
        "dev.cdevents.service.upgraded.0.2.0"
    );
    assert_eq!(event["data"]["subject"]["id"], "payments/accounting");
    assert_eq!(
        event["data"]["subject"]["content"]["artifactId"],
        "pkg:oci/accounting?repository_url=localhost/payplane/accounting&tag=2.0"
    );
    assert_eq!(
        event["data"]["subject"]["content"]["environment"]["id"],
        "payments"
    );
    assert_eq!(metrics.failed.get(), 0);
    assert_eq!(metrics.dropped.get(), 0);
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_attempts_are_capped() {
    let (rejecting, url) = Receiver::start(&[400]).await;
    let metrics = SinkMetrics::default();
    let (sink, _task) = Sink::spawn(config(url), metrics.clone());
    sink.send(&release(Outcome::RolledBack));
    wait_for("the event given up", || metrics.failed.get() == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rejecting.requests().len(), 1, "a 400 is final");

    let (failing, url) = Receiver::start(&[500]).await;
    let metrics = SinkMetrics::default();
    let (sink, _task) = Sink::spawn(config(url), metrics.clone());
    sink.send(&release(Outcome::RolledBack));
    wait_for("the event given up", || metrics.failed.get() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failing.requests().len(), 5, "max_attempts, then no more");
    assert_eq!(metrics.sent.get(), 0);

    // A refused connection is retried too (then given up).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", closed.local_addr().unwrap());
    drop(closed);
    let metrics = SinkMetrics::default();
    let (sink, _task) = Sink::spawn(config(url), metrics.clone());
    let started = tokio::time::Instant::now();
    sink.send(&release(Outcome::Deployed));
    wait_for("the event given up", || metrics.failed.get() == 1).await;
    // 20 + 40 + 80 + 100 ms of backoff between the five attempts.
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    let (receiver, url) = Receiver::start(&[202]).await;
    let metrics = SinkMetrics::default();
    let (sink, _task) = Sink::spawn(
        Config {
            queue: 1,
            ..config(url)
        },
        metrics.clone(),
    );
    // Single-threaded runtime: the sender task cannot take the first event before we yield.
    sink.send(&release(Outcome::Deployed));
    sink.send(&release(Outcome::Upgraded));
    sink.send(&release(Outcome::RolledBack));
    assert_eq!(metrics.dropped.get(), 2);
    wait_for("the queued event sent", || metrics.sent.get() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1["type"], "dev.cdevents.service.deployed.0.2.0");
}

//! The load engine behind `payplane load`, usable from tests and benchmarks: sends
//! `CreatePayment` to the gateway at a fixed rate or from N concurrent clients, records latency
//! and errors by gRPC code, and reads back the final state of (a sample of) the payments made.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use payplane_cli::load::{LoadPlan, Live, Mode, run};
//! let target = "127.0.0.1:50051".parse()?;
//! let channel = payplane_runtime::balance::channel(&target, &Default::default(), None)?;
//! let plan = LoadPlan { mode: Mode::Rate(500.0), count: Some(5_000), ..LoadPlan::default() };
//! let summary = run(channel, "127.0.0.1:50051", &plan, &Live::default(), Default::default()).await;
//! println!("{}", summary.render());
//! # Ok(()) }
//! ```

pub mod mix;
pub mod pace;
pub mod stats;

use std::{
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use payplane_proto::payment::v1::{
    CreatePaymentRequest, GetPaymentRequest, PaymentStatus, payment_service_client::PaymentServiceClient,
};
use payplane_runtime::{BalancedChannel, code_name, retry::is_transport_failure};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tower::retry::backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;

pub use self::{
    mix::PaymentMix,
    pace::Pacer,
    stats::{FinalStates, LatencySummary, Stats, Summary},
};

/// How payments are sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Open loop: this many sends per second whatever the answers take (at most
    /// `max_in_flight` outstanding). Latency is measured from when a send was due, so a
    /// saturated gateway shows up in the percentiles instead of lowering the rate unseen.
    Rate(f64),
    /// Closed loop: this many clients, each sending its next payment when the last is answered.
    Concurrency(usize),
}

#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub mode: Mode,
    /// Stop after this many payments...
    pub count: Option<u64>,
    /// ...or after this long, whichever comes first. With neither, runs until cancelled.
    pub duration: Option<Duration>,
    /// Cap on outstanding calls in rate mode.
    pub max_in_flight: usize,
    /// Deadline of each CreatePayment.
    pub timeout: Duration,
    pub mix: PaymentMix,
    /// How many created payments to read back with GetPayment at the end (a uniform sample).
    pub check_states: usize,
    /// How long to keep re-reading payments that are still PENDING.
    pub settle_timeout: Duration,
    /// Seed of the payment generator (random when absent).
    pub seed: Option<u64>,
    /// How many times a CreatePayment that failed in the transport
    /// ([`payplane_runtime::retry::is_transport_failure`]) is sent again, with the same
    /// idempotency key and body and a backoff, before it counts as failed; 0: never.
    pub retries: u32,
}

/// Backoff between the attempts of one payment: exponential from the first to the second,
/// with jitter.
const RETRY_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

impl Default for LoadPlan {
    fn default() -> Self {
        Self {
            mode: Mode::Concurrency(8),
            count: Some(1000),
            duration: None,
            max_in_flight: 1024,
            timeout: Duration::from_secs(10),
            mix: PaymentMix::default(),
            check_states: 1000,
            settle_timeout: Duration::from_secs(10),
            seed: None,
            retries: 3,
        }
    }
}

/// The running totals, shared with whoever draws progress.
#[derive(Clone, Default)]
pub struct Live {
    sent: Arc<AtomicU64>,
    stats: Arc<Mutex<Stats>>,
}

impl Live {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// A copy of the totals so far.
    pub fn snapshot(&self) -> Stats {
        self.stats().clone()
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A uniform sample of at most `cap` created payment ids (reservoir sampling).
struct Reservoir {
    cap: usize,
    seen: u64,
    ids: Vec<String>,
    rng: StdRng,
}

impl Reservoir {
    fn offer(&mut self, id: String) {
        self.seen += 1;
        if self.ids.len() < self.cap {
            self.ids.push(id);
        } else if self.cap > 0 {
            let slot = self.rng.random_range(0..self.seen);
            if let Some(s) = self.ids.get_mut(slot as usize) {
                *s = id;
            }
        }
    }
}

struct Shared {
    live: Live,
    created: Mutex<Reservoir>,
    /// (trace id, payment id) of the first payment answered SUCCEEDED.
    sample: OnceLock<(String, String)>,
    timeout: Duration,
    retries: u32,
    backoff: ExponentialBackoffMaker,
}

impl Shared {
    /// Sends one payment; after a failure in the transport (see [`is_transport_failure`]: the
    /// connection or stream broke, or no gateway could take the call), sends it again after a
    /// backoff, up to `retries` times, and records the failure only when they are used up.
    ///
    /// Sending it again is safe because it is the same request: CreatePayment is idempotent by
    /// idempotency key, so if an earlier attempt reached the gateway (its answer lost on the
    /// way back), the gateway answers with that payment (`replayed`) instead of making another.
    /// UNAVAILABLE is retried wherever it comes from (gRPC's code for "transient, retry with
    /// backoff"); the gateway's other answers (business errors, its own INTERNAL) and deadlines
    /// are not, so that they show up as they are. Retries are counted in the summary.
    async fn create(
        &self,
        mut client: PaymentServiceClient<BalancedChannel>,
        req: CreatePaymentRequest,
        since: Instant,
    ) {
        let mut backoff = self.backoff.clone().make_backoff();
        let mut retries_left = self.retries;
        let result = loop {
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(self.timeout);
            match client.create_payment(request).await {
                Err(status) if retries_left > 0 && is_transport_failure(&status) => {
                    retries_left -= 1;
                    self.live.stats().record_retry(code_name(status.code()));
                    backoff.next_backoff().await;
                }
                result => break result,
            }
        };
        let retried = retries_left < self.retries;
        let latency = since.elapsed();
        match result {
            Ok(response) => {
                let trace_id = response
                    .metadata()
                    .get("x-trace-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let answer = response.into_inner();
                let payment = answer.payment.unwrap_or_default();
                let status = status_name(payment.status);
                self.live
                    .stats()
                    .record_ok(latency, status, retried, answer.replayed);
                if status == "SUCCEEDED" {
                    let trace = trace_id.unwrap_or_else(|| payment.trace_id.clone());
                    if !trace.is_empty() {
                        let _ = self.sample.set((trace, payment.payment_id.clone()));
                    }
                }
                if !payment.payment_id.is_empty() {
                    self.created
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .offer(payment.payment_id);
                }
            }
            Err(status) => {
                let sent_at = unix_ms_at(since);
                self.live
                    .stats()
                    .record_error(latency, code_name(status.code()), sent_at)
            }
        }
    }
}

/// The wall-clock time of `instant` (a moment in the past), in milliseconds since the Unix epoch.
fn unix_ms_at(instant: Instant) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.saturating_sub(instant.elapsed()).as_millis()).unwrap_or(u64::MAX)
}

/// `SUCCEEDED`, `FAILED`, `PENDING` (or `UNSPECIFIED`).
pub fn status_name(status: i32) -> &'static str {
    let name = PaymentStatus::try_from(status)
        .unwrap_or(PaymentStatus::Unspecified)
        .as_str_name();
    name.strip_prefix("PAYMENT_STATUS_").unwrap_or(name)
}

/// Runs `plan` against the gateway behind `channel`; `gateway` names it in the summary.
/// Cancelling `stop` ends sending early (the calls in flight still finish and count).
pub async fn run(
    channel: BalancedChannel,
    gateway: &str,
    plan: &LoadPlan,
    live: &Live,
    stop: CancellationToken,
) -> Summary {
    let client = PaymentServiceClient::new(channel);
    let seed = plan.seed.unwrap_or_else(rand::random);
    let shared = Arc::new(Shared {
        live: live.clone(),
        created: Mutex::new(Reservoir {
            cap: plan.check_states,
            seen: 0,
            ids: Vec::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
        }),
        sample: OnceLock::new(),
        timeout: plan.timeout,
        retries: plan.retries,
        backoff: ExponentialBackoffMaker::new(RETRY_BACKOFF.0, RETRY_BACKOFF.1, 0.5, HasherRng::default())
            .expect("a valid backoff"),
    });
    let start = Instant::now();
    let started_at_unix_ms = unix_ms_at(start);
    let deadline = plan.duration.map(|d| start + d);
    let mut tasks = JoinSet::new();

    match plan.mode {
        Mode::Rate(rate) => {
            let mut rng = StdRng::seed_from_u64(seed);
            let permits = Arc::new(Semaphore::new(plan.max_in_flight.max(1)));
            let mut pacer = Pacer::new(start, rate);
            let mut n = 0u64;
            loop {
                let due = pacer.next_due();
                if plan.count.is_some_and(|c| n >= c) || deadline.is_some_and(|d| due >= d) {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(due) => {}
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let req = plan.mix.request(n, &mut rng);
                live.sent.fetch_add(1, Ordering::Relaxed);
                let (shared, client) = (shared.clone(), client.clone());
                tasks.spawn(async move {
                    shared.create(client, req, due).await;
                    drop(permit);
                });
                n += 1;
                while tasks.try_join_next().is_some() {}
            }
        }
        Mode::Concurrency(clients) => {
            let next = Arc::new(AtomicU64::new(0));
            for worker in 0..clients.max(1) {
                let (shared, client, next, stop) =
                    (shared.clone(), client.clone(), next.clone(), stop.clone());
                let (count, mix) = (plan.count, plan.mix.clone());
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(worker as u64));
                tasks.spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let over =
                            count.is_some_and(|c| n >= c) || deadline.is_some_and(|d| Instant::now() >= d);
                        if over || stop.is_cancelled() {
                            break;
                        }
                        let req = mix.request(n, &mut rng);
                        shared.live.sent.fetch_add(1, Ordering::Relaxed);
                        shared.create(client.clone(), req, Instant::now()).await;
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();

    let ids = std::mem::take(&mut shared.created.lock().unwrap_or_else(|p| p.into_inner()).ids);
    let final_states = if plan.check_states > 0 {
        Some(read_final_states(&client, ids, plan.settle_timeout, plan.timeout).await)
    } else {
        None
    };
    let stats = live.snapshot();
    let sample = shared.sample.get().cloned();
    Summary {
        gateway: gateway.to_owned(),
        mode: match plan.mode {
            Mode::Rate(_) => "rate",
            Mode::Concurrency(_) => "concurrency",
        },
        target_rate: match plan.mode {
            Mode::Rate(r) => Some(r),
            Mode::Concurrency(_) => None,
        },
        concurrency: match plan.mode {
            Mode::Rate(_) => None,
            Mode::Concurrency(n) => Some(n),
        },
        elapsed_seconds: elapsed.as_secs_f64(),
        sent: live.sent(),
        completed: stats.completed,
        ok: stats.ok,
        errors: stats.errors.clone(),
        failed_calls: stats.failed_calls.clone(),
        started_at_unix_ms,
        retries: stats.retries.clone(),
        answered_after_retry: stats.answered_after_retry,
        replayed: stats.replayed,
        throughput_per_second: stats.completed as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_ms: stats.latency_summary(),
        response_statuses: stats.statuses.clone(),
        final_states,
        sample_trace_id: sample.as_ref().map(|s| s.0.clone()),
        sample_payment_id: sample.map(|s| s.1),
    }
}

/// GetPayment on every id (16 at a time); PENDING ones are re-read every 500 ms until they
/// finish or `settle_timeout` passes.
async fn read_final_states(
    client: &PaymentServiceClient<BalancedChannel>,
    ids: Vec<String>,
    settle_timeout: Duration,
    call_timeout: Duration,
) -> FinalStates {
    let mut states = FinalStates {
        checked: ids.len() as u64,
        ..Default::default()
    };
    let deadline = Instant::now() + settle_timeout;
    let mut pending = ids;
    loop {
        let answers: Vec<(String, Result<i32, tonic::Code>)> = futures::stream::iter(pending)
            .map(|payment_id| {
                let mut client = client.clone();
                async move {
                    let mut request = tonic::Request::new(GetPaymentRequest {
                        payment_id: payment_id.clone(),
                    });
                    request.set_timeout(call_timeout);
                    let status = client
                        .get_payment(request)
                        .await
                        .map(|r| r.into_inner().payment.map_or(0, |p| p.status))
                        .map_err(|s| s.code());
                    (payment_id, status)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut still = Vec::new();
        for (id, answer) in answers {
            match answer.map(status_name) {
                Ok("SUCCEEDED") => states.succeeded += 1,
                Ok("FAILED") => states.failed += 1,
                Ok(_) => still.push(id),
                Err(code) => *states.errors.entry(code_name(code).to_owned()).or_default() += 1,
            }
        }
        if still.is_empty() || Instant::now() >= deadline {
            states.pending = still.len() as u64;
            return states;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        pending = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_keeps_a_bounded_uniform_sample() {
        let mut r = Reservoir {
            cap: 100,
            seen: 0,
            ids: Vec::new(),
            rng: StdRng::seed_from_u64(3),
        };
        for i in 0..10_000 {
            r.offer(i.to_string());
        }
        assert_eq!(r.ids.len(), 100);
        assert_eq!(r.seen, 10_000);
        // A uniform sample of 0..10000 has about half its members above 5000 (sd 5).
        let high = r.ids.iter().filter(|s| s.parse::<u32>().unwrap() >= 5000).count();
        assert!((30..=70).contains(&high), "{high}");
        let mut none = Reservoir {
            cap: 0,
            seen: 0,
            ids: Vec::new(),
            rng: StdRng::seed_from_u64(3),
        };
        none.offer("x".into());
        assert!(none.ids.is_empty());
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(PaymentStatus::Succeeded as i32), "SUCCEEDED");
        assert_eq!(status_name(PaymentStatus::Pending as i32), "PENDING");
        assert_eq!(status_name(99), "UNSPECIFIED");
    }
}

//! The simulator: channel settings, the book of decisions and its journal, randomness and
//! metrics behind one cheap-to-clone handle that both gRPC services share.
//!
//! Order of a charge: unknown channel → NOT_FOUND; outage → UNAVAILABLE; injected error
//! (error_rate) → UNAVAILABLE; then the decision is made (or the remembered one taken),
//! journaled and applied, and only then the configured latency is slept before answering. So a
//! caller that gives up during the latency (its deadline) finds the decision with GetCharge, as
//! with a real acquirer that answered too late.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    domain::{
        book::{Book, ChargeInput, ChargeRecord, Decision, Event, Outcome, RefundInput, RefundRecord},
        channel::ChannelSettings,
        draw,
    },
    error::Error,
    store::Journal,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    channel: String,
    outcome: &'static str,
}

/// `channel_sim_charges_total` and `channel_sim_refunds_total` by channel and outcome
/// (approved, declined, replayed, rejected, unavailable, outage).
#[derive(Clone, Default)]
pub struct SimMetrics {
    charges: Family<OutcomeLabels, Counter>,
    refunds: Family<OutcomeLabels, Counter>,
}

impl SimMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "channel_sim_charges",
            "Charge calls by channel and outcome",
            self.charges.clone(),
        );
        registry.register(
            "channel_sim_refunds",
            "Refund calls by channel and outcome",
            self.refunds.clone(),
        );
    }

    fn count(family: &Family<OutcomeLabels, Counter>, channel: &str, outcome: &'static str) {
        family
            .get_or_create(&OutcomeLabels {
                channel: channel.to_owned(),
                outcome,
            })
            .inc();
    }
}

#[derive(Clone, Copy)]
enum Op {
    Charge,
    Refund,
}

#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    channels: RwLock<BTreeMap<String, ChannelSettings>>,
    state: Mutex<State>,
    /// Errors and latencies; decisions use per-request generators (see `domain::draw`).
    rng: Mutex<StdRng>,
    seed: u64,
    metrics: SimMetrics,
}

struct State {
    book: Book,
    journal: Option<Journal>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State is only mutated after every fallible step, so a panic cannot leave it half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Simulator {
    /// A simulator with these channels. `seed` makes answers reproducible; `state_file` keeps
    /// every decision across restarts (replayed here).
    pub fn new(
        channels: Vec<ChannelSettings>,
        seed: Option<u64>,
        state_file: Option<&Path>,
        metrics: SimMetrics,
    ) -> Result<Self, Error> {
        let mut book = Book::default();
        let journal = match state_file {
            Some(path) => {
                let (journal, events) = Journal::open(path)?;
                let count = events.len();
                events.into_iter().for_each(|e| book.apply(e));
                tracing::info!(path = %path.display(), decisions = count, "state file replayed");
                Some(journal)
            }
            None => None,
        };
        let seed = seed.unwrap_or_else(rand::random);
        Ok(Self {
            inner: Arc::new(Inner {
                channels: RwLock::new(channels.into_iter().map(|c| (c.id.clone(), c)).collect()),
                state: Mutex::new(State { book, journal }),
                rng: Mutex::new(StdRng::seed_from_u64(seed)),
                seed,
                metrics,
            }),
        })
    }

    pub fn channel(&self, id: &str) -> Result<ChannelSettings, Error> {
        let channels = self.inner.channels.read().unwrap_or_else(|p| p.into_inner());
        channels
            .get(id)
            .cloned()
            .ok_or_else(|| Error::UnknownChannel(id.to_owned()))
    }

    /// Sets (or adds) a channel's settings, effective for the next call.
    pub fn configure(&self, settings: ChannelSettings) -> ChannelSettings {
        tracing::info!(?settings, "channel reconfigured");
        let mut channels = self.inner.channels.write().unwrap_or_else(|p| p.into_inner());
        channels.insert(settings.id.clone(), settings.clone());
        settings
    }

    pub fn channels(&self) -> Vec<ChannelSettings> {
        self.inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Outage and injected errors, then the latency to sleep after deciding.
    fn admit(&self, settings: &ChannelSettings, op: Op) -> Result<Duration, Error> {
        let family = match op {
            Op::Charge => &self.inner.metrics.charges,
            Op::Refund => &self.inner.metrics.refunds,
        };
        if settings.outage {
            SimMetrics::count(family, &settings.id, "outage");
            return Err(Error::Outage(settings.id.clone()));
        }
        let mut rng = lock(&self.inner.rng);
        if rng.random::<f64>() < settings.error_rate {
            SimMetrics::count(family, &settings.id, "unavailable");
            return Err(Error::Injected(settings.id.clone()));
        }
        Ok(settings.sample_latency(&mut *rng))
    }

    /// Journals a new decision, then applies it; a replayed one is returned as is.
    fn commit<T: Clone>(
        state: &mut State,
        decision: &Decision<T>,
        event: fn(T) -> Event,
    ) -> Result<(), Error> {
        if let Decision::New(record) = decision {
            let event = event(record.clone());
            if let Some(journal) = &mut state.journal {
                journal.append(&event)?;
            }
            state.book.apply(event);
        }
        Ok(())
    }

    pub async fn charge(&self, input: ChargeInput) -> Result<Decision<ChargeRecord>, Error> {
        let settings = self.channel(&input.channel_id)?;
        let latency = self.admit(&settings, Op::Charge)?;
        let channel = settings.id.clone();
        let decided = {
            let mut state = lock(&self.inner.state);
            let seed = self.inner.seed;
            let request_id = input.request_id.clone();
            let decision = state.book.charge(input, Utc::now(), || {
                draw::decide_charge(seed, &channel, &request_id, settings.decline_rate)
            });
            decision
                .map_err(Error::from)
                .and_then(|d| Self::commit(&mut state, &d, Event::Charge).map(|()| d))
        };
        let outcome = match &decided {
            Ok(Decision::Replay(_)) => "replayed",
            Ok(Decision::New(r)) if r.outcome == Outcome::Approved => "approved",
            Ok(Decision::New(_)) => "declined",
            Err(_) => "rejected",
        };
        SimMetrics::count(&self.inner.metrics.charges, &channel, outcome);
        let decision = decided?;
        tokio::time::sleep(latency).await;
        Ok(decision)
    }

    pub async fn refund(&self, input: RefundInput) -> Result<Decision<RefundRecord>, Error> {
        let settings = self.channel(&input.channel_id)?;
        let latency = self.admit(&settings, Op::Refund)?;
        let decided = {
            let mut state = lock(&self.inner.state);
            let decision = state.book.refund(input, Utc::now());
            decision
                .map_err(Error::from)
                .and_then(|d| Self::commit(&mut state, &d, Event::Refund).map(|()| d))
        };
        let outcome = match &decided {
            Ok(Decision::Replay(_)) => "replayed",
            Ok(Decision::New(_)) => "approved",
            Err(_) => "rejected",
        };
        SimMetrics::count(&self.inner.metrics.refunds, &settings.id, outcome);
        let decision = decided?;
        tokio::time::sleep(latency).await;
        Ok(decision)
    }

    /// The decision for a request id on a channel (charges, and refunds too: recovery of a
    /// refund asks the same question). Fails only in an outage: a real acquirer's status API is
    /// down with the rest of it.
    pub fn lookup(&self, channel_id: &str, request_id: &str) -> Result<Option<Event>, Error> {
        let settings = self.channel(channel_id)?;
        if settings.outage {
            return Err(Error::Outage(settings.id));
        }
        Ok(lock(&self.inner.state).book.lookup(channel_id, request_id))
    }

    /// Approved charges and refunds of a channel and currency in `[from, to)`.
    pub fn statement(
        &self,
        channel_id: &str,
        currency: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Event>, Error> {
        self.channel(channel_id)?;
        Ok(lock(&self.inner.state)
            .book
            .statement(channel_id, currency, from, to))
    }

    /// How many decisions the simulator remembers.
    pub fn decisions(&self) -> u64 {
        lock(&self.inner.state).book.len()
    }
}

//! Runs the saga of `domain::saga` against the real services: performs each action with a
//! deadline, retries what is safe to retry within the payment's budget, and persists every step
//! (under the lease) before the next call.

use std::{
    collections::HashSet,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use payplane_core::{
    accounts::AccountRef,
    ids::{self, Step as IdStep},
};
use payplane_proto::{
    accounting::v1::{
        CreateAccountResult, CreateAccountsRequest, CreateTransfersRequest, Transfer,
        ledger_service_client::LedgerServiceClient,
    },
    channel::v1::{
        ChargeOutcome, ChargeRequest, GetChargeRequest, RefundRequest,
        channel_service_client::ChannelServiceClient,
    },
    common::v1::Money,
    routing::v1::{
        Outcome as RouteOutcome, ReportOutcomeRequest, RouteRequest,
        routing_service_client::RoutingServiceClient,
    },
    settlement::v1::{
        ClearedItem, ItemKind, RecordClearedRequest, settlement_service_client::SettlementServiceClient,
    },
};
use payplane_runtime::BalancedChannel;
use tonic::{Code, Request, Status};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    domain::{
        Action, Mode, NewPayment, Outcome, Revision, Status as PayStatus,
        ledger::{self, HoldResult, PaymentLegs, PostResult},
        refund::{self, RefundAction, RefundOutcome},
        saga,
    },
    error::{Error, Result},
    metrics::GatewayMetrics,
    store::{Inserted, PaymentRow, RefundInserted, RefundRow, Store},
};

/// Clients of the services the saga calls, over per-request balanced, traced channels.
#[derive(Clone)]
pub struct Clients {
    pub routing: RoutingServiceClient<BalancedChannel>,
    pub ledger: LedgerServiceClient<BalancedChannel>,
    pub settlement: SettlementServiceClient<BalancedChannel>,
    pub channel: ChannelServiceClient<BalancedChannel>,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Time a payment (or a recovery attempt of it) may spend on calls before it is left for the
    /// recovery loop.
    pub budget: Duration,
    /// Deadline of one call to routing, accounting or settlement.
    pub call_deadline: Duration,
    /// Deadline of one call to a channel (acquirers are slow).
    pub charge_deadline: Duration,
    /// Added to the budget for the lease, so that no call of a lease holder is still in flight
    /// when another worker takes over.
    pub lease_margin: Duration,
    pub hold_timeout_secs: u32,
    pub revision: Revision,
}

impl EngineConfig {
    pub fn lease(&self) -> Duration {
        self.budget + self.lease_margin
    }
}

/// Why an action stopped without an outcome.
enum Stop {
    /// Unavailable or too slow within the budget: the state stays, the recovery loop retries.
    Transient(String),
    Fatal(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fatal(e)
    }
}

/// Codes after which re-sending the same request is safe and may succeed. Every call of the saga
/// is idempotent by an id derived from the payment, so even INTERNAL (a downstream database
/// restart) and CANCELLED (a server killed mid-call) are retried.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
    )
}

fn money(minor_units: i64, currency: &str) -> Option<Money> {
    Some(Money {
        minor_units,
        currency: currency.to_string(),
    })
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub struct Engine {
    store: Store,
    clients: Clients,
    cfg: EngineConfig,
    metrics: GatewayMetrics,
    /// Accounts known to exist in the ledger (revision 2 only): CreateAccounts once per account.
    known_accounts: Mutex<HashSet<Uuid>>,
}

impl Engine {
    pub fn new(store: Store, clients: Clients, cfg: EngineConfig, metrics: GatewayMetrics) -> Self {
        Self {
            store,
            clients,
            cfg,
            metrics,
            known_accounts: Mutex::new(HashSet::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// Persists a payment PENDING and runs its saga; or, for a known key, returns the original.
    pub async fn create(&self, new: NewPayment, trace_id: &str) -> Result<(PaymentRow, bool)> {
        let id = ids::new_time_ordered();
        let owner = Uuid::new_v4();
        match self
            .store
            .insert_payment(id, &new, trace_id, owner, self.cfg.lease())
            .await?
        {
            Inserted::Existing(row) => {
                if let Some(field) = row.request.first_difference(&new) {
                    return Err(Error::IdempotencyConflict {
                        key: new.idempotency_key,
                        field,
                    });
                }
                tracing::Span::current().record("payment.id", tracing::field::display(row.id));
                Ok((row, true))
            }
            Inserted::New(row) => {
                tracing::Span::current().record("payment.id", tracing::field::display(row.id));
                Ok((self.drive(row, owner, Mode::Live).await?, false))
            }
        }
    }

    /// Walks the saga from the payment's persisted step until it is final, the budget runs out
    /// or a downstream service stays unavailable. `owner` must hold the payment's lease.
    pub async fn drive(&self, mut p: PaymentRow, owner: Uuid, mode: Mode) -> Result<PaymentRow> {
        let deadline = Instant::now() + self.cfg.budget;
        loop {
            let action = saga::next_action(&p.saga, mode);
            if action == Action::Nothing {
                return Ok(p);
            }
            let started = Instant::now();
            let span = tracing::info_span!("saga.step", action = action.name(), payment.id = %p.id, step = p.saga.step.name());
            let outcome = match self.perform(action, &p, deadline).instrument(span).await {
                Ok(o) => o,
                Err(Stop::Transient(why)) => {
                    self.metrics
                        .record_step(action.name(), "transient", started.elapsed());
                    tracing::warn!(payment.id = %p.id, action = action.name(), %why, "left in flight for the recovery loop");
                    return Ok(p);
                }
                Err(Stop::Fatal(e)) => {
                    self.metrics
                        .record_step(action.name(), "error", started.elapsed());
                    return Err(e);
                }
            };
            self.metrics.record_step(action.name(), "ok", started.elapsed());
            if mode == Mode::Recovery {
                self.metrics.record_recovery("payment", action.name());
            }
            let next = saga::apply(&p.saga, outcome, self.cfg.revision)?;
            match self
                .store
                .save_saga(p.id, owner, &next, self.cfg.hold_timeout_secs)
                .await?
            {
                Some(row) => p = row,
                None => {
                    // Another worker took the payment over after our lease ran out; it decides from
                    // what the services answer, so just report where it is now.
                    tracing::warn!(payment.id = %p.id, "lease lost; another worker drives the payment");
                    return self
                        .store
                        .get_payment(p.id)
                        .await?
                        .ok_or_else(|| Error::NotFound(p.id.to_string()));
                }
            }
            if p.saga.is_final() {
                self.metrics
                    .record_final("payment", p.saga.status.name(), &p.saga.failure_reason);
                tracing::info!(payment.id = %p.id, status = p.saga.status.name(), reason = %p.saga.failure_reason, "payment final");
            }
        }
    }

    /// Calls `f` with a per-attempt timeout until it answers, retrying retryable codes with
    /// backoff while the budget lasts. A non-retryable status is returned for the caller to read.
    async fn call<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        per_call: Duration,
        mut f: F,
    ) -> Result<Result<T, Status>, Stop>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut backoff = Duration::from_millis(20);
        let mut last = String::from("budget exhausted before the first attempt");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < Duration::from_millis(5) {
                return Err(Stop::Transient(format!("{what}: {last}")));
            }
            let timeout = per_call.min(remaining);
            let result = match tokio::time::timeout(timeout, f(timeout)).await {
                Ok(r) => r,
                Err(_) => Err(Status::deadline_exceeded(format!("no answer within {timeout:?}"))),
            };
            match result {
                Ok(response) => return Ok(Ok(response.into_inner())),
                Err(s) if retryable(s.code()) => {
                    last = format!("{:?}: {}", s.code(), s.message());
                    let jitter =
                        Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
                    let pause = (backoff + jitter).min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(s) => return Ok(Err(s)),
            }
        }
    }

    fn request<T>(body: T, timeout: Duration) -> Request<T> {
        let mut r = Request::new(body);
        r.set_timeout(timeout);
        r
    }

    fn legs<'a>(&self, p: &'a PaymentRow) -> PaymentLegs<'a> {
        PaymentLegs {
            payment_id: p.id,
            payer_id: &p.request.payer_id,
            channel_id: &p.saga.channel_id,
            currency: p.request.currency,
            amount: p.request.amount,
            fee: p.saga.fee,
            // Fixed when the payment was routed; older rows without one use ours.
            hold_timeout_secs: if p.hold_timeout_secs > 0 {
                p.hold_timeout_secs
            } else {
                self.cfg.hold_timeout_secs
            },
        }
    }

    async fn perform(&self, action: Action, p: &PaymentRow, deadline: Instant) -> Result<Outcome, Stop> {
        let cfg = &self.cfg;
        let currency = p.request.currency.code();
        match action {
            Action::Route => {
                let body = RouteRequest {
                    payment_id: p.id.to_string(),
                    amount: money(p.request.amount, currency),
                    method: p.request.method as i32,
                    card_bin: p.request.card_bin.clone(),
                    merchant_id: p.request.merchant_id.clone(),
                    scene: p.request.scene.clone(),
                    excluded_channel_ids: vec![],
                };
                let answer = self
                    .call("route", deadline, cfg.call_deadline, |t| {
                        let mut c = self.clients.routing.clone();
                        let req = Self::request(body.clone(), t);
                        async move { c.route(req).await }
                    })
                    .await;
                match answer {
                    Ok(Ok(r)) => {
                        let fee = r.fee.as_ref().map_or(0, |f| f.minor_units);
                        if r.channel_id.is_empty() || fee < 0 || fee > p.request.amount {
                            return Err(Stop::Fatal(Error::Anomaly(format!(
                                "routing answered channel {:?} with fee {fee} for amount {}",
                                r.channel_id, p.request.amount
                            ))));
                        }
                        if let Some(f) = &r.fee
                            && !f.currency.is_empty()
                            && f.currency != currency
                        {
                            return Err(Stop::Fatal(Error::Anomaly(format!(
                                "routing fee in {} for a {currency} payment",
                                f.currency
                            ))));
                        }
                        tracing::info!(channel = %r.channel_id, fee, rule = %r.rule, reason = %r.reason, "routed");
                        Ok(Outcome::Routed {
                            channel_id: r.channel_id,
                            fee,
                        })
                    }
                    Ok(Err(s))
                        if matches!(
                            s.code(),
                            Code::FailedPrecondition | Code::InvalidArgument | Code::NotFound
                        ) =>
                    {
                        Ok(Outcome::NoRoute {
                            reason: s.message().to_string(),
                        })
                    }
                    Ok(Err(s)) => Err(Stop::Fatal(Error::Anomaly(format!(
                        "routing: {:?} {}",
                        s.code(),
                        s.message()
                    )))),
                    // Route moves nothing: failing now is safe and better than a payment that
                    // waits for routing to come back.
                    Err(Stop::Transient(why)) => {
                        tracing::warn!(%why, "routing unavailable");
                        Ok(Outcome::RoutingUnavailable)
                    }
                    Err(stop) => Err(stop),
                }
            }
            Action::Hold => {
                let legs = self.legs(p);
                self.ensure_accounts(&legs.accounts(), deadline, false).await?;
                let batch = vec![legs.hold()];
                match ledger::classify_hold(&self.create_transfers("hold", &batch, deadline).await?) {
                    HoldResult::Held => Ok(Outcome::Held),
                    HoldResult::AccountsMissing => {
                        // The ledger lost accounts we thought it had (e.g. a fresh database).
                        self.ensure_accounts(&legs.accounts(), deadline, true).await?;
                        match ledger::classify_hold(&self.create_transfers("hold", &batch, deadline).await?) {
                            HoldResult::Held => Ok(Outcome::Held),
                            HoldResult::Rejected(code) | HoldResult::Anomaly(code)
                                if code == "id_already_failed" =>
                            {
                                Ok(Outcome::HoldRejected { code })
                            }
                            other => Err(Stop::Fatal(Error::Anomaly(format!(
                                "hold after creating accounts: {other:?}"
                            )))),
                        }
                    }
                    HoldResult::Rejected(code) => Ok(Outcome::HoldRejected { code }),
                    HoldResult::Anomaly(code) => Err(Stop::Fatal(Error::Anomaly(format!("hold: {code}")))),
                }
            }
            Action::Charge => {
                let started = Instant::now();
                let body = ChargeRequest {
                    channel_id: p.saga.channel_id.clone(),
                    request_id: ids::derive(p.id, IdStep::Charge).to_string(),
                    payment_id: p.id.to_string(),
                    amount: money(p.request.amount, currency),
                    method: p.request.method as i32,
                    payer_id: p.request.payer_id.clone(),
                    merchant_id: p.request.merchant_id.clone(),
                };
                let answer = self
                    .call("charge", deadline, cfg.charge_deadline, |t| {
                        let mut c = self.clients.channel.clone();
                        let req = Self::request(body.clone(), t);
                        async move { c.charge(req).await }
                    })
                    .await;
                let (outcome, report) = match answer {
                    Ok(Ok(r)) => match ChargeOutcome::try_from(r.outcome) {
                        Ok(ChargeOutcome::Approved) => (
                            Ok(Outcome::Approved {
                                reference: r.channel_reference,
                            }),
                            RouteOutcome::Succeeded,
                        ),
                        Ok(ChargeOutcome::Declined) => (
                            Ok(Outcome::Declined { code: r.decline_code }),
                            RouteOutcome::Declined,
                        ),
                        _ => (
                            Err(Stop::Fatal(Error::Anomaly(format!(
                                "channel answered outcome {}",
                                r.outcome
                            )))),
                            RouteOutcome::Error,
                        ),
                    },
                    // The channel refused the request itself (unknown channel, bad amount): it
                    // charged nothing.
                    Ok(Err(s))
                        if matches!(
                            s.code(),
                            Code::InvalidArgument
                                | Code::FailedPrecondition
                                | Code::NotFound
                                | Code::OutOfRange
                        ) =>
                    {
                        (
                            Ok(Outcome::Declined {
                                code: format!("channel_refused_{:?}", s.code()),
                            }),
                            RouteOutcome::Error,
                        )
                    }
                    Ok(Err(s)) => (
                        Err(Stop::Fatal(Error::Anomaly(format!(
                            "channel: {:?} {}",
                            s.code(),
                            s.message()
                        )))),
                        RouteOutcome::Error,
                    ),
                    Err(Stop::Transient(why)) => {
                        let report = if why.contains("DeadlineExceeded") {
                            RouteOutcome::Timeout
                        } else {
                            RouteOutcome::Error
                        };
                        (Err(Stop::Transient(why)), report)
                    }
                    Err(stop) => (Err(stop), RouteOutcome::Error),
                };
                self.report_outcome(p, report, started.elapsed());
                outcome
            }
            Action::ResolveCharge => {
                let body = GetChargeRequest {
                    channel_id: p.saga.channel_id.clone(),
                    request_id: ids::derive(p.id, IdStep::Charge).to_string(),
                };
                let answer = self
                    .call("get_charge", deadline, cfg.call_deadline, |t| {
                        let mut c = self.clients.channel.clone();
                        let req = Self::request(body.clone(), t);
                        async move { c.get_charge(req).await }
                    })
                    .await?;
                match answer {
                    Ok(r) if !r.found => Ok(Outcome::NotCharged),
                    Ok(r) => match ChargeOutcome::try_from(r.outcome) {
                        Ok(ChargeOutcome::Approved) => Ok(Outcome::Approved {
                            reference: r.channel_reference,
                        }),
                        Ok(ChargeOutcome::Declined) => Ok(Outcome::Declined {
                            code: "unknown".into(),
                        }),
                        _ => Err(Stop::Fatal(Error::Anomaly(format!(
                            "GetCharge answered outcome {}",
                            r.outcome
                        )))),
                    },
                    Err(s) if s.code() == Code::NotFound => Ok(Outcome::NotCharged),
                    Err(s) => Err(Stop::Fatal(Error::Anomaly(format!(
                        "GetCharge: {:?} {}",
                        s.code(),
                        s.message()
                    )))),
                }
            }
            Action::Post => {
                let legs = self.legs(p);
                let batch = legs.post_batch();
                match ledger::classify_post(
                    &self.create_transfers("post", &batch, deadline).await?,
                    batch.len(),
                ) {
                    PostResult::Posted => Ok(Outcome::Posted),
                    PostResult::Rejected(code) => {
                        tracing::error!(payment.id = %p.id, %code, "approved charge whose hold cannot be posted; refunding at the channel");
                        Ok(Outcome::PostRejected { code })
                    }
                    PostResult::Anomaly(code) => Err(Stop::Fatal(Error::Anomaly(format!("post: {code}")))),
                }
            }
            Action::Void => {
                let legs = self.legs(p);
                let errors = self.create_transfers("void", &[legs.void()], deadline).await?;
                match ledger::classify_void(&errors) {
                    Ok(()) => Ok(Outcome::Voided),
                    Err(code) => Err(Stop::Fatal(Error::Anomaly(format!("void: {code}")))),
                }
            }
            Action::RecordCleared => {
                let cleared_at = p
                    .cleared_at
                    .ok_or_else(|| Error::Anomaly("posted payment without cleared_at".into()))?;
                let item = ClearedItem {
                    item_id: ids::derive(p.id, IdStep::SettlementItem).to_string(),
                    kind: ItemKind::Payment as i32,
                    payment_id: p.id.to_string(),
                    channel_id: p.saga.channel_id.clone(),
                    merchant_id: p.request.merchant_id.clone(),
                    amount: money(p.request.amount, currency),
                    fee: money(p.saga.fee, currency),
                    channel_reference: p.saga.channel_reference.clone(),
                    cleared_at: Some(timestamp(cleared_at)),
                    window_id: String::new(),
                };
                self.record_cleared(item, deadline).await?;
                Ok(Outcome::Recorded)
            }
            Action::CompensateCharge => {
                let body = RefundRequest {
                    channel_id: p.saga.channel_id.clone(),
                    request_id: ids::derive(p.id, IdStep::ChannelRefund).to_string(),
                    charge_request_id: ids::derive(p.id, IdStep::Charge).to_string(),
                    amount: money(p.request.amount, currency),
                };
                match self.channel_refund(body, deadline).await? {
                    RefundOutcome::Approved { .. } => Ok(Outcome::Compensated),
                    other => Err(Stop::Fatal(Error::Anomaly(format!(
                        "compensating refund answered {other:?}"
                    )))),
                }
            }
            Action::Abandon => Ok(Outcome::Abandoned),
            Action::Finish => Ok(Outcome::Finished),
            Action::Nothing => unreachable!("drive stops before Nothing"),
        }
    }

    async fn create_transfers(
        &self,
        what: &str,
        batch: &[Transfer],
        deadline: Instant,
    ) -> Result<Vec<payplane_proto::accounting::v1::CreateTransferError>, Stop> {
        let body = CreateTransfersRequest {
            transfers: batch.to_vec(),
        };
        match self
            .call(what, deadline, self.cfg.call_deadline, |t| {
                let mut c = self.clients.ledger.clone();
                let req = Self::request(body.clone(), t);
                async move { c.create_transfers(req).await }
            })
            .await?
        {
            Ok(r) => Ok(r.errors),
            Err(s) => Err(Stop::Fatal(Error::Anomaly(format!(
                "{what}: ledger answered {:?} {}",
                s.code(),
                s.message()
            )))),
        }
    }

    /// Creates the accounts not known to exist (all of them when `force` or in revision 1).
    async fn ensure_accounts(&self, refs: &[AccountRef], deadline: Instant, force: bool) -> Result<(), Stop> {
        let cache = self.cfg.revision == Revision::V2 && !force;
        let missing: Vec<&AccountRef> = {
            let known = self.known_accounts.lock().unwrap_or_else(|e| e.into_inner());
            refs.iter()
                .filter(|r| !cache || !known.contains(&r.id()))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let body = CreateAccountsRequest {
            accounts: missing.iter().map(|r| ledger::account(r)).collect(),
        };
        let answer = self
            .call("create_accounts", deadline, self.cfg.call_deadline, |t| {
                let mut c = self.clients.ledger.clone();
                let req = Self::request(body.clone(), t);
                async move { c.create_accounts(req).await }
            })
            .await?;
        let errors = answer
            .map_err(|s| {
                Stop::Fatal(Error::Anomaly(format!(
                    "create accounts: {:?} {}",
                    s.code(),
                    s.message()
                )))
            })?
            .errors;
        for e in &errors {
            use CreateAccountResult as R;
            // Existing with other flags or user data (created by another service) is still an
            // account we can post to.
            match R::try_from(e.result) {
                Ok(
                    R::Exists
                    | R::ExistsWithDifferentFlags
                    | R::ExistsWithDifferentUserData128
                    | R::ExistsWithDifferentUserData64
                    | R::ExistsWithDifferentUserData32,
                ) => {}
                other => {
                    return Err(Stop::Fatal(Error::Anomaly(format!(
                        "create account {}: {other:?}",
                        missing
                            .get(e.index as usize)
                            .map(|r| r.name())
                            .unwrap_or_default()
                    ))));
                }
            }
        }
        let mut known = self.known_accounts.lock().unwrap_or_else(|e| e.into_inner());
        known.extend(missing.iter().map(|r| r.id()));
        Ok(())
    }

    async fn record_cleared(&self, item: ClearedItem, deadline: Instant) -> Result<(), Stop> {
        let body = RecordClearedRequest { item: Some(item) };
        match self
            .call("record_cleared", deadline, self.cfg.call_deadline, |t| {
                let mut c = self.clients.settlement.clone();
                let req = Self::request(body.clone(), t);
                async move { c.record_cleared(req).await }
            })
            .await?
        {
            Ok(_) => Ok(()),
            Err(s) => Err(Stop::Fatal(Error::Anomaly(format!(
                "RecordCleared: {:?} {}",
                s.code(),
                s.message()
            )))),
        }
    }

    async fn channel_refund(&self, body: RefundRequest, deadline: Instant) -> Result<RefundOutcome, Stop> {
        let answer = self
            .call("channel_refund", deadline, self.cfg.charge_deadline, |t| {
                let mut c = self.clients.channel.clone();
                let req = Self::request(body.clone(), t);
                async move { c.refund(req).await }
            })
            .await?;
        match answer {
            Ok(r) => match ChargeOutcome::try_from(r.outcome) {
                Ok(ChargeOutcome::Approved) => Ok(RefundOutcome::Approved {
                    reference: r.channel_reference,
                }),
                Ok(ChargeOutcome::Declined) => Ok(RefundOutcome::Declined { code: r.decline_code }),
                _ => Err(Stop::Fatal(Error::Anomaly(format!(
                    "channel refund answered outcome {}",
                    r.outcome
                )))),
            },
            Err(s)
                if matches!(
                    s.code(),
                    Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::OutOfRange
                ) =>
            {
                Ok(RefundOutcome::Declined {
                    code: format!("channel_refused_{:?}", s.code()),
                })
            }
            Err(s) => Err(Stop::Fatal(Error::Anomaly(format!(
                "channel refund: {:?} {}",
                s.code(),
                s.message()
            )))),
        }
    }

    /// Feeds the channel's outcome back to routing, off the critical path (best effort).
    fn report_outcome(&self, p: &PaymentRow, outcome: RouteOutcome, latency: Duration) {
        let mut routing = self.clients.routing.clone();
        let body = ReportOutcomeRequest {
            payment_id: p.id.to_string(),
            channel_id: p.saga.channel_id.clone(),
            outcome: outcome as i32,
            latency_ms: latency.as_millis().min(u128::from(u32::MAX)) as u32,
            method: p.request.method as i32,
            currency: p.request.currency.code().to_string(),
        };
        let timeout = self.cfg.call_deadline;
        tokio::spawn(
            async move {
                if let Err(s) = routing.report_outcome(Self::request(body, timeout)).await {
                    tracing::debug!(code = ?s.code(), "ReportOutcome failed (best effort)");
                }
            }
            .instrument(tracing::Span::current()),
        );
    }

    // ---- refunds ----

    /// Accepts a refund (or replays its key) and runs it.
    pub async fn refund(
        &self,
        payment_id: Uuid,
        key: &str,
        requested: Option<i64>,
        reason: &str,
        trace_id: &str,
    ) -> Result<(RefundRow, bool)> {
        let owner = Uuid::new_v4();
        match self
            .store
            .insert_refund(
                payment_id,
                key,
                requested,
                reason,
                trace_id,
                owner,
                self.cfg.lease(),
            )
            .await?
        {
            RefundInserted::Existing(r, _) => Ok((r, true)),
            RefundInserted::New(r, p) => Ok((self.drive_refund(r, &p, owner).await?, false)),
        }
    }

    /// Walks a refund's saga (the same in a request and in recovery: every step is re-sent).
    pub async fn drive_refund(&self, mut r: RefundRow, p: &PaymentRow, owner: Uuid) -> Result<RefundRow> {
        let deadline = Instant::now() + self.cfg.budget;
        let currency = p.request.currency.code();
        loop {
            let action = refund::next_refund_action(&r.state);
            let started = Instant::now();
            let name = match action {
                RefundAction::Nothing => return Ok(r),
                RefundAction::ChannelRefund => "refund_channel",
                RefundAction::LedgerTransfer => "refund_ledger",
                RefundAction::RecordCleared => "refund_record_cleared",
            };
            let result: Result<RefundOutcome, Stop> = async {
                match action {
                    RefundAction::ChannelRefund => {
                        let body = RefundRequest {
                            channel_id: p.saga.channel_id.clone(),
                            request_id: ids::derive(r.id, IdStep::ChannelRefund).to_string(),
                            charge_request_id: ids::derive(p.id, IdStep::Charge).to_string(),
                            amount: money(r.amount, currency),
                        };
                        self.channel_refund(body, deadline).await
                    }
                    RefundAction::LedgerTransfer => {
                        let legs = self.legs(p);
                        self.ensure_accounts(&legs.accounts(), deadline, false).await?;
                        let errors = self
                            .create_transfers(
                                "refund",
                                &[ledger::refund_transfer(&legs, r.id, r.amount)],
                                deadline,
                            )
                            .await?;
                        match ledger::classify_single(&errors) {
                            Ok(()) => Ok(RefundOutcome::Transferred),
                            Err(code) => Err(Stop::Fatal(Error::Anomaly(format!("refund transfer: {code}")))),
                        }
                    }
                    RefundAction::RecordCleared => {
                        let cleared_at = r
                            .cleared_at
                            .ok_or_else(|| Error::Anomaly("refund without cleared_at".into()))?;
                        let item = ClearedItem {
                            item_id: ids::derive(r.id, IdStep::SettlementItem).to_string(),
                            kind: ItemKind::Refund as i32,
                            payment_id: p.id.to_string(),
                            channel_id: p.saga.channel_id.clone(),
                            merchant_id: p.request.merchant_id.clone(),
                            amount: money(r.amount, currency),
                            fee: None,
                            channel_reference: r.state.channel_reference.clone(),
                            cleared_at: Some(timestamp(cleared_at)),
                            window_id: String::new(),
                        };
                        self.record_cleared(item, deadline).await?;
                        Ok(RefundOutcome::Recorded)
                    }
                    RefundAction::Nothing => unreachable!(),
                }
            }
            .instrument(
                tracing::info_span!("refund.step", action = name, refund.id = %r.id, payment.id = %p.id),
            )
            .await;
            let outcome = match result {
                Ok(o) => o,
                Err(Stop::Transient(why)) => {
                    self.metrics.record_step(name, "transient", started.elapsed());
                    tracing::warn!(refund.id = %r.id, %why, "refund left in flight for the recovery loop");
                    return Ok(r);
                }
                Err(Stop::Fatal(e)) => {
                    self.metrics.record_step(name, "error", started.elapsed());
                    return Err(e);
                }
            };
            self.metrics.record_step(name, "ok", started.elapsed());
            let next = refund::apply_refund(&r.state, outcome.clone()).ok_or_else(|| {
                Error::Anomaly(format!(
                    "refund outcome {outcome:?} cannot follow {:?}",
                    r.state.step
                ))
            })?;
            match self.store.save_refund(&r, owner, &next).await? {
                Some(row) => r = row,
                None => {
                    tracing::warn!(refund.id = %r.id, "refund lease lost");
                    return Ok(r);
                }
            }
            if r.state.status != PayStatus::Pending {
                self.metrics
                    .record_final("refund", r.state.status.name(), &r.state.failure_reason);
            }
        }
    }
}

/// The engine as shared by the API and the recovery loop.
pub type SharedEngine = Arc<Engine>;

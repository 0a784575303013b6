//! `RoutingService` over gRPC: validate, decide in memory, map.

use std::{cell::RefCell, sync::Arc, time::SystemTime};

use payplane_core::{Currency, Violations};
use payplane_proto::{
    common::v1::{Money, PaymentMethod},
    routing::v1::{
        self as pb, ChannelState, GetPolicyRequest, GetPolicyResponse, ListChannelsRequest,
        ListChannelsResponse, ReportOutcomeRequest, ReportOutcomeResponse, RouteRequest, RouteResponse,
        RouteStrategy, ValidatePolicyRequest, ValidatePolicyResponse, routing_service_server::RoutingService,
    },
};
use rand::{SeedableRng, rngs::SmallRng};
use tonic::{Request, Response, Status};

use crate::{
    domain::{Method, Now, RouteInput, StateChange, Strategy, parse_policy, version_of},
    error::Error,
    metrics::{OutcomeLabels, ReasonLabel},
    state::Router,
};

thread_local! {
    // A fast per-thread generator: decisions need no cryptographic randomness and no lock.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

#[derive(Clone)]
pub struct RoutingGrpc {
    router: Arc<Router>,
}

impl RoutingGrpc {
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
    }
}

pub fn method_from_proto(value: i32) -> Option<Method> {
    match PaymentMethod::try_from(value).ok()? {
        PaymentMethod::Unspecified => None,
        PaymentMethod::DebitCard => Some(Method::DebitCard),
        PaymentMethod::CreditCard => Some(Method::CreditCard),
        PaymentMethod::QrCode => Some(Method::QrCode),
        PaymentMethod::BankTransfer => Some(Method::BankTransfer),
        PaymentMethod::Wallet => Some(Method::Wallet),
    }
}

fn method_to_proto(m: Method) -> i32 {
    (match m {
        Method::DebitCard => PaymentMethod::DebitCard,
        Method::CreditCard => PaymentMethod::CreditCard,
        Method::QrCode => PaymentMethod::QrCode,
        Method::BankTransfer => PaymentMethod::BankTransfer,
        Method::Wallet => PaymentMethod::Wallet,
    }) as i32
}

fn strategy_to_proto(s: Strategy) -> i32 {
    (match s {
        Strategy::Fixed => RouteStrategy::Fixed,
        Strategy::Priority => RouteStrategy::Priority,
        Strategy::VolumeSplit => RouteStrategy::VolumeSplit,
        Strategy::SuccessRate => RouteStrategy::SuccessRate,
        Strategy::Exploration => RouteStrategy::Exploration,
        Strategy::RecoveryProbe => RouteStrategy::RecoveryProbe,
    }) as i32
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn timestamp_ms(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn policy_errors(errors: Vec<crate::domain::PolicyError>) -> Vec<pb::PolicyError> {
    errors
        .into_iter()
        .map(|e| pb::PolicyError {
            line: e.line,
            column: e.column,
            path: e.path,
            message: e.message,
        })
        .collect()
}

/// Validated route request: the parts the decision needs.
struct ValidRoute {
    amount: i64,
    currency: Currency,
    method: Method,
}

fn validate_route(req: &RouteRequest) -> Result<ValidRoute, Error> {
    let mut v = Violations::new();
    v.id("payment_id", &req.payment_id);
    let money = v.positive_money("amount", req.amount.as_ref());
    let method = method_from_proto(req.method);
    if method.is_none() {
        v.add(
            "method",
            "is required: one of DEBIT_CARD, CREDIT_CARD, QR_CODE, BANK_TRANSFER, WALLET",
        );
    }
    if !req.card_bin.is_empty()
        && (!(6..=8).contains(&req.card_bin.len()) || !req.card_bin.bytes().all(|b| b.is_ascii_digit()))
    {
        v.add("card_bin", "must be the first 6 to 8 digits of the card number");
    }
    v.name("merchant_id", &req.merchant_id);
    if !req.scene.is_empty() {
        v.name("scene", &req.scene);
    }
    for (i, c) in req.excluded_channel_ids.iter().enumerate() {
        v.name(&format!("excluded_channel_ids[{i}]"), c);
    }
    match (money, method) {
        (Some((amount, currency)), Some(method)) if v.is_empty() => Ok(ValidRoute {
            amount,
            currency,
            method,
        }),
        _ => Err(Error::InvalidArgument(v)),
    }
}

impl RoutingGrpc {
    fn route_inner(&self, req: RouteRequest) -> Result<Response<RouteResponse>, Status> {
        let valid = validate_route(&req)?;
        let loaded = self.router.current();
        let input = RouteInput {
            amount: valid.amount,
            currency: valid.currency.code(),
            method: valid.method,
            card_bin: &req.card_bin,
            merchant: &req.merchant_id,
            scene: &req.scene,
            excluded: &req.excluded_channel_ids,
        };
        let decided = RNG.with(|rng| loaded.engine.route(&input, Now::system(), &mut *rng.borrow_mut()));
        let decision = match decided {
            Ok(d) => d,
            Err(no_route) => {
                self.router
                    .metrics
                    .no_route
                    .get_or_create(&ReasonLabel {
                        reason: no_route.kind.code(),
                    })
                    .inc();
                tracing::info!(payment_id = %req.payment_id, reason = %no_route, "no channel can serve the payment");
                return Err(Error::NoRoute(no_route).into());
            }
        };
        loaded.count_decision(decision.channel, decision.strategy);
        let channel = &loaded.engine.policy.channels[decision.channel];
        tracing::debug!(payment_id = %req.payment_id, channel = %channel.id, reason = %decision.reason, "routed");
        Ok(Response::new(RouteResponse {
            channel_id: channel.id.clone(),
            fee: Some(Money {
                minor_units: decision.fee,
                currency: valid.currency.code().to_owned(),
            }),
            strategy: strategy_to_proto(decision.strategy),
            rule: decision.rule,
            score: decision.score,
            reason: decision.reason,
            policy_version: loaded.version.clone(),
        }))
    }
}

#[tonic::async_trait]
impl RoutingService for RoutingGrpc {
    async fn route(&self, request: Request<RouteRequest>) -> Result<Response<RouteResponse>, Status> {
        let started = std::time::Instant::now();
        let result = self.route_inner(request.into_inner());
        self.router
            .metrics
            .route_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn report_outcome(
        &self,
        request: Request<ReportOutcomeRequest>,
    ) -> Result<Response<ReportOutcomeResponse>, Status> {
        let req = request.into_inner();
        let mut v = Violations::new();
        v.id("payment_id", &req.payment_id);
        v.name("channel_id", &req.channel_id);
        let outcome = pb::Outcome::try_from(req.outcome).unwrap_or(pb::Outcome::Unspecified);
        if outcome == pb::Outcome::Unspecified {
            v.add(
                "outcome",
                "is required: one of SUCCEEDED, DECLINED, ERROR, TIMEOUT",
            );
        }
        // Method and currency are optional: without them only the channel-wide window learns.
        if !req.currency.is_empty() && req.currency.parse::<Currency>().is_err() {
            v.add("currency", format!("unsupported currency {:?}", req.currency));
        }
        if req.method != 0 && method_from_proto(req.method).is_none() {
            v.add("method", format!("unknown payment method {}", req.method));
        }
        if !v.is_empty() {
            return Err(Error::InvalidArgument(v).into());
        }
        let loaded = self.router.current();
        let Some(channel) = loaded.engine.policy.channel_index(&req.channel_id) else {
            return Err(Error::NotFound {
                what: "channel",
                id: req.channel_id,
            }
            .into());
        };
        // A decline is the channel working as it should; errors and timeouts are its failures.
        let success = matches!(outcome, pb::Outcome::Succeeded | pb::Outcome::Declined);
        let outcome_name = match outcome {
            pb::Outcome::Succeeded => "succeeded",
            pb::Outcome::Declined => "declined",
            pb::Outcome::Error => "error",
            _ => "timeout",
        };
        self.router
            .metrics
            .outcomes
            .get_or_create(&OutcomeLabels {
                channel: req.channel_id.clone(),
                outcome: outcome_name,
            })
            .inc();
        let currency = (!req.currency.is_empty()).then_some(req.currency.as_str());
        let now = Now::system();
        let change = loaded
            .engine
            .record(channel, method_from_proto(req.method), currency, success, now.ms);
        match change {
            Some(StateChange::Eliminated { rate, best }) => {
                tracing::warn!(channel = %req.channel_id, rate, best = ?best, "channel eliminated for a low success rate; probing for recovery")
            }
            Some(StateChange::Readmitted { rate, best }) => {
                tracing::info!(channel = %req.channel_id, rate, best = ?best, "channel recovered and readmitted")
            }
            None => {}
        }
        self.router.update_channel_gauges(&loaded, channel);
        Ok(Response::new(ReportOutcomeResponse {}))
    }

    async fn list_channels(
        &self,
        _request: Request<ListChannelsRequest>,
    ) -> Result<Response<ListChannelsResponse>, Status> {
        let loaded = self.router.current();
        let engine = &loaded.engine;
        let channels = engine
            .policy
            .channels
            .iter()
            .zip(&engine.stats)
            .map(|(c, stats)| {
                let (s, n) = stats.overall.snapshot();
                let eliminated_since = stats.eliminated_since_ms();
                let state = if !c.enabled {
                    ChannelState::Disabled
                } else if eliminated_since.is_some() {
                    ChannelState::Eliminated
                } else {
                    ChannelState::Active
                };
                pb::Channel {
                    channel_id: c.id.clone(),
                    display_name: c.display_name.clone(),
                    currencies: c.currencies.clone(),
                    methods: c.methods.iter().map(|m| method_to_proto(*m)).collect(),
                    min_amount_minor_units: c.min_amount,
                    max_amount_minor_units: c.max_amount,
                    fee: Some(pb::Fee {
                        fixed_minor_units: c.fee.fixed_minor_units,
                        rate_bps: c.fee.rate_bps,
                    }),
                    state: state as i32,
                    success_rate: if n > 0 { f64::from(s) / f64::from(n) } else { 0.0 },
                    window_size: n,
                    eliminated_since: eliminated_since.map(timestamp_ms),
                }
            })
            .collect();
        Ok(Response::new(ListChannelsResponse {
            channels,
            policy_version: loaded.version.clone(),
        }))
    }

    async fn get_policy(
        &self,
        _request: Request<GetPolicyRequest>,
    ) -> Result<Response<GetPolicyResponse>, Status> {
        let loaded = self.router.current();
        Ok(Response::new(GetPolicyResponse {
            version: loaded.version.clone(),
            yaml: loaded.yaml.clone(),
            loaded_at: Some(timestamp(loaded.loaded_at)),
            source: loaded.source.clone(),
        }))
    }

    async fn validate_policy(
        &self,
        request: Request<ValidatePolicyRequest>,
    ) -> Result<Response<ValidatePolicyResponse>, Status> {
        let req = request.into_inner();
        if req.yaml.trim().is_empty() {
            let mut v = Violations::new();
            v.add("yaml", "is required: the policy document to check");
            return Err(Error::InvalidArgument(v).into());
        }
        let version = version_of(&req.yaml);
        let (valid, errors) = match parse_policy(&req.yaml) {
            Ok(_) => (true, Vec::new()),
            Err(errors) => (false, policy_errors(errors)),
        };
        Ok(Response::new(ValidatePolicyResponse {
            valid,
            errors,
            version,
        }))
    }
}

//! Fault injection for release drills: a version that fails a share of its calls with
//! UNAVAILABLE, or answers late, so that the rollout controller's analysis can be shown to
//! catch it on a real cluster. Off unless `FAULT_UNAVAILABLE_RATIO` or `FAULT_DELAY` is set;
//! a server with faults on says so in a warning at start-up.
//!
//! Failures are spread evenly rather than drawn at random (call n fails when ⌊(n+1)·r⌋ >
//! ⌊n·r⌋), so that a drill injects exactly the configured share however short it is.
//! Health checks and reflection are never faulted: the pod must stay Ready for its calls to be
//! judged.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use clap::Args;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::config::parse_duration;

/// Injected faults (release drills only; both off by default).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct FaultArgs {
    /// Share of calls (0 to 1) answered UNAVAILABLE without reaching the service.
    #[arg(long, env = "FAULT_UNAVAILABLE_RATIO", default_value_t = 0.0, value_parser = parse_ratio)]
    pub fault_unavailable_ratio: f64,

    /// Delay added before every call reaches the service.
    #[arg(long, env = "FAULT_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub fault_delay: Duration,
}

impl FaultArgs {
    pub fn is_active(&self) -> bool {
        self.fault_unavailable_ratio > 0.0 || !self.fault_delay.is_zero()
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(r) => Err(format!("{r} is not a share between 0 and 1")),
        Err(_) => Err(format!("'{s}' is not a number between 0 and 1 (e.g. 0.05)")),
    }
}

/// Whether call `n` (counting from 0) is one of the failed share `ratio`.
fn fails(n: u64, ratio: f64) -> bool {
    ((n + 1) as f64 * ratio).floor() > (n as f64 * ratio).floor()
}

/// Paths that are never faulted (health and reflection).
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

#[derive(Clone, Debug)]
pub struct FaultLayer {
    args: FaultArgs,
    calls: Arc<AtomicU64>,
}

impl FaultLayer {
    pub fn new(args: FaultArgs) -> Self {
        Self {
            args,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fault<S> {
    inner: S,
    layer: FaultLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S, ReqBody> Service<http::Request<ReqBody>> for Fault<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let args = &self.layer.args;
        if !args.is_active() || exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let n = self.layer.calls.fetch_add(1, Ordering::Relaxed);
        let fail = fails(n, args.fault_unavailable_ratio);
        let delay = args.fault_delay;
        // The ready inner service is taken for this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if fail {
                return Ok(
                    tonic::Status::unavailable("injected fault (FAULT_UNAVAILABLE_RATIO)").into_http(),
                );
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_exactly_the_configured_share_evenly() {
        let failed: Vec<u64> = (0..100).filter(|&n| fails(n, 0.05)).collect();
        assert_eq!(failed, vec![19, 39, 59, 79, 99]);
        assert_eq!((0..1000).filter(|&n| fails(n, 0.0)).count(), 0);
        assert_eq!((0..1000).filter(|&n| fails(n, 1.0)).count(), 1000);
        assert_eq!((0..1000).filter(|&n| fails(n, 0.333)).count(), 333);
    }

    #[test]
    fn ratios_outside_zero_to_one_are_refused_with_the_reason() {
        assert_eq!(parse_ratio("0.05"), Ok(0.05));
        assert!(parse_ratio("1.5").unwrap_err().contains("between 0 and 1"));
        assert!(parse_ratio("five").unwrap_err().contains("e.g. 0.05"));
    }

    #[test]
    fn health_and_reflection_are_exempt() {
        assert!(exempt("/grpc.health.v1.Health/Check"));
        assert!(exempt(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!exempt("/payplane.accounting.v1.LedgerService/CreateTransfers"));
    }
}

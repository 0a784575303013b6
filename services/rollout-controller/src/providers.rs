//! Measurement providers: Prometheus (PromQL over HTTP), a scrape of the canary's and the
//! stable's own `/metrics`, and the guards (the ledger's `CheckInvariants`, the payment success
//! rate). Each turns into one [`Measurement`]; provider trouble is an `Error` measurement (counted
//! against `consecutiveErrorLimit`), never a failure.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt, api::ListParams};
use payplane_proto::accounting::v1::{CheckInvariantsRequest, ledger_service_client::LedgerServiceClient};

use crate::{
    analysis::format_time,
    crd::{
        GroupBy, Measurement, MeasurementPhase, Metric, PaymentSuccessRateProvider, PrometheusProvider,
        ScrapeProvider, TRACK_LABEL,
    },
    judge::{self, JudgeConfig, Sample, Taxonomy, Verdict},
};

const HANDLED: &str = "grpc_server_handled";
const HANDLING_BUCKETS: &str = "grpc_server_handling_seconds";
const DEFAULT_ADMIN_PORT: u16 = 9090;
const PAYMENT_SERVICE: &str = "payplane.payment.v1.PaymentService";

/// What a measurement needs to know about the rollout.
pub struct Target<'a> {
    pub namespace: &'a str,
    pub rollout: &'a str,
    /// Key of the analysis run's metric for scrape baselines (rollout uid / run / metric).
    pub baseline_key: String,
    /// matchLabels of the referenced Deployment: stable and canary pods.
    pub selector: &'a BTreeMap<String, String>,
    pub canary_revision: &'a str,
    pub stable_revision: &'a str,
}

/// Shared clients and the scrape baselines (in memory: after a leader change the first scrape
/// of a metric takes a new baseline and judges nothing).
pub struct Providers {
    pub kube: Client,
    pub http: reqwest::Client,
    baselines: Mutex<HashMap<String, HashMap<String, PodCounters>>>,
}

impl Providers {
    pub fn new(kube: Client) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("a reqwest client with timeouts only always builds");
        Self {
            kube,
            http,
            baselines: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the baselines of a rollout (a new canary revision).
    pub fn reset(&self, rollout_uid: &str) {
        self.lock().retain(|k, _| !k.starts_with(rollout_uid));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, PodCounters>>> {
        self.baselines.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn measure(&self, metric: &Metric, target: &Target<'_>) -> Measurement {
        let p = &metric.provider;
        let result = if let Some(prom) = &p.prometheus {
            self.prometheus(prom, target).await
        } else if let Some(scrape) = &p.scrape {
            self.scrape(scrape, target).await
        } else if let Some(ledger) = &p.ledger_invariants {
            ledger_invariants(
                ledger.address.as_deref().unwrap_or_default(),
                ledger.ledger.unwrap_or(0),
            )
            .await
        } else if let Some(pay) = &p.payment_success_rate {
            self.payment_success_rate(pay, target).await
        } else {
            Err("no provider".to_owned())
        };
        let (phase, value) = result.unwrap_or_else(|e| (MeasurementPhase::Error, e));
        Measurement {
            phase,
            value,
            finished_at: format_time(Utc::now()),
        }
    }

    async fn prometheus(
        &self,
        prom: &PrometheusProvider,
        t: &Target<'_>,
    ) -> Result<(MeasurementPhase, String), String> {
        let address = prom.address.as_deref().unwrap_or_default().trim_end_matches('/');
        let query = prom
            .query
            .replace("{{namespace}}", t.namespace)
            .replace("{{rollout}}", t.rollout)
            .replace("{{canaryRevision}}", t.canary_revision)
            .replace("{{stableRevision}}", t.stable_revision);
        let response = self
            .http
            .get(format!("{address}/api/v1/query"))
            .query(&[("query", query.as_str())])
            .send()
            .await
            .map_err(|e| format!("prometheus {address}: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("prometheus {address}: {e}"))?;
        if !status.is_success() || body["status"] != "success" {
            return Err(format!(
                "prometheus {address} answered {status}: {}",
                body["error"]
            ));
        }
        Ok(prometheus_verdict(&body["data"], prom.min, prom.max))
    }

    async fn pods(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Result<Vec<Pod>, String> {
        let selector = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = Api::<Pod>::namespaced(self.kube.clone(), namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| format!("listing pods {selector}: {e}"))?;
        Ok(pods.items.into_iter().filter(is_ready).collect())
    }

    /// Scrapes every ready pod; returns (pod uid, track is canary, counters).
    async fn scrape_pods(
        &self,
        pods: &[Pod],
        port: u16,
        path: &str,
        grpc_service: Option<&str>,
    ) -> Result<Vec<(String, bool, PodCounters)>, String> {
        let scrapes = pods.iter().map(|pod| async move {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            let url = format!("http://{ip}:{port}{path}");
            let text = self
                .http
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("scraping {} at {url}: {e}", pod.name_any()))?
                .text()
                .await
                .map_err(|e| format!("scraping {} at {url}: {e}", pod.name_any()))?;
            let canary = pod.labels().get(TRACK_LABEL).is_some_and(|t| t == "canary");
            Ok::<_, String>((
                pod.uid().unwrap_or_else(|| pod.name_any()),
                canary,
                parse_counters(&text, grpc_service)?,
            ))
        });
        futures::future::try_join_all(scrapes).await
    }

    fn deltas(&self, key: &str, current: &[(String, bool, PodCounters)]) -> Option<Vec<(bool, PodCounters)>> {
        since_baseline(self.lock().entry(key.to_owned()).or_default(), current)
    }

    async fn scrape(
        &self,
        scrape: &ScrapeProvider,
        t: &Target<'_>,
    ) -> Result<(MeasurementPhase, String), String> {
        let pods = self.pods(t.namespace, t.selector).await?;
        let port = scrape.port.unwrap_or(DEFAULT_ADMIN_PORT);
        let current = self
            .scrape_pods(
                &pods,
                port,
                scrape.path.as_deref().unwrap_or("/metrics"),
                scrape.grpc_service.as_deref(),
            )
            .await?;
        let Some(deltas) = self.deltas(&t.baseline_key, &current) else {
            return Ok((
                MeasurementPhase::Pending,
                format!(
                    "baseline taken from {} pods; judging from the next scrape",
                    current.len()
                ),
            ));
        };
        let taxonomy = scrape
            .failure_codes
            .as_ref()
            .map(Taxonomy::new)
            .unwrap_or_default();
        let (canary, stable) = split_samples(&deltas, scrape.group_by.unwrap_or_default(), &taxonomy);
        let config = judge_config(scrape);
        let j = judge::judge(&canary, &stable, &config);
        let phase = match j.verdict {
            Verdict::Pass => MeasurementPhase::Successful,
            Verdict::Fail => MeasurementPhase::Failed,
            Verdict::Inconclusive => MeasurementPhase::Inconclusive,
        };
        Ok((phase, j.summary))
    }

    async fn payment_success_rate(
        &self,
        pay: &PaymentSuccessRateProvider,
        t: &Target<'_>,
    ) -> Result<(MeasurementPhase, String), String> {
        let pods = self.pods(t.namespace, &pay.selector).await?;
        if pods.is_empty() {
            return Err(format!("no ready pod matches {:?}", pay.selector));
        }
        let service = pay.grpc_service.as_deref().unwrap_or(PAYMENT_SERVICE);
        let current = self
            .scrape_pods(
                &pods,
                pay.port.unwrap_or(DEFAULT_ADMIN_PORT),
                "/metrics",
                Some(service),
            )
            .await?;
        let Some(deltas) = self.deltas(&t.baseline_key, &current) else {
            return Ok((
                MeasurementPhase::Pending,
                "baseline taken; judging from the next scrape".into(),
            ));
        };
        let taxonomy = pay.failure_codes.as_ref().map(Taxonomy::new).unwrap_or_default();
        let mut all = Sample::default();
        for (_, counters) in &deltas {
            for by_code in counters.handled.values() {
                add_calls(&mut all, by_code, &taxonomy);
            }
        }
        Ok(success_rate_verdict(
            &all,
            pay.min_success_rate.unwrap_or(0.99),
            pay.min_samples.unwrap_or(50),
        ))
    }
}

/// Calls per pod since the metric's first scrape of this canary (its baseline): the judge
/// sees every call since the analysis began, so evidence accumulates and a small error rate
/// becomes significant as calls add up. The first scrape only records the baseline (None).
///
/// A pod first seen later (a canary pod that just turned Ready, a scale-up) or restarted
/// (counters went down) joins from the scrape that first sees it: its first calls, slow
/// while connections and caches warm up, would otherwise make every new version look slower.
fn since_baseline(
    baseline: &mut HashMap<String, PodCounters>,
    current: &[(String, bool, PodCounters)],
) -> Option<Vec<(bool, PodCounters)>> {
    if baseline.is_empty() {
        baseline.extend(current.iter().map(|(uid, _, c)| (uid.clone(), c.clone())));
        return None;
    }
    Some(
        current
            .iter()
            .map(|(uid, canary, now)| {
                let delta = baseline.get(uid).and_then(|before| now.minus(before));
                let delta = delta.unwrap_or_else(|| {
                    baseline.insert(uid.clone(), now.clone());
                    PodCounters::default()
                });
                (*canary, delta)
            })
            .collect(),
    )
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.pod_ip.as_ref()).is_some()
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn judge_config(scrape: &ScrapeProvider) -> JudgeConfig {
    let d = JudgeConfig::default();
    let Some(j) = &scrape.judge else { return d };
    JudgeConfig {
        confidence: j.confidence.unwrap_or(d.confidence),
        min_samples: j.min_samples.unwrap_or(d.min_samples),
        max_error_rate_increase: j.max_error_rate_increase.unwrap_or(d.max_error_rate_increase),
        min_success_rate: j.min_success_rate.or(d.min_success_rate),
        latency_min_effect: match j.latency_min_effect {
            Some(e) if e <= 0.0 => None,
            Some(e) => Some(e),
            None => d.latency_min_effect,
        },
    }
}

/// The payment guard's verdict: a floor on the success rate over enough calls.
pub fn success_rate_verdict(sample: &Sample, floor: f64, min_samples: u64) -> (MeasurementPhase, String) {
    if sample.requests < min_samples {
        return (
            MeasurementPhase::Inconclusive,
            format!("{} payment calls, need {min_samples}", sample.requests),
        );
    }
    let rate = 1.0 - sample.failures as f64 / sample.requests as f64;
    let text = format!(
        "payment success rate {:.2}% over {} calls (floor {:.2}%)",
        rate * 100.0,
        sample.requests,
        floor * 100.0
    );
    if rate < floor {
        (MeasurementPhase::Failed, text)
    } else {
        (MeasurementPhase::Successful, text)
    }
}

/// Interprets a Prometheus `data` object: the first value against min/max; no data is
/// inconclusive (never a pass).
pub fn prometheus_verdict(
    data: &serde_json::Value,
    min: Option<f64>,
    max: Option<f64>,
) -> (MeasurementPhase, String) {
    let value = match data["resultType"].as_str() {
        Some("scalar") => data["result"][1].as_str().map(str::to_owned),
        Some("vector") => data["result"][0]["value"][1].as_str().map(str::to_owned),
        _ => None,
    };
    let Some(raw) = value else {
        return (MeasurementPhase::Inconclusive, "query returned no data".into());
    };
    let Ok(v) = raw.parse::<f64>() else {
        return (
            MeasurementPhase::Error,
            format!("query returned `{raw}`, not a number"),
        );
    };
    if v.is_nan() {
        return (
            MeasurementPhase::Inconclusive,
            "query returned NaN (no traffic?)".into(),
        );
    }
    let below = min.is_some_and(|m| v < m);
    let above = max.is_some_and(|m| v > m);
    let bounds = format!(
        "min {}, max {}",
        min.map_or("-".into(), |m| m.to_string()),
        max.map_or("-".into(), |m| m.to_string())
    );
    if below || above {
        (MeasurementPhase::Failed, format!("{v} outside {bounds}"))
    } else {
        (MeasurementPhase::Successful, format!("{v} within {bounds}"))
    }
}

/// Counters of one pod, by the `version` label: calls by gRPC code and latency buckets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodCounters {
    /// version → gRPC code → calls.
    pub handled: BTreeMap<String, BTreeMap<String, f64>>,
    /// version → upper bound (as text, e.g. "0.005" or "+Inf") → cumulative count.
    pub buckets: BTreeMap<String, BTreeMap<String, f64>>,
}

impl PodCounters {
    /// `self − before`, or None when any counter went down (the pod restarted).
    fn minus(&self, before: &PodCounters) -> Option<PodCounters> {
        let sub = |now: &BTreeMap<String, BTreeMap<String, f64>>,
                   then: &BTreeMap<String, BTreeMap<String, f64>>| {
            let mut out = BTreeMap::new();
            for (version, series) in now {
                let mut m = BTreeMap::new();
                for (k, v) in series {
                    let prev = then.get(version).and_then(|s| s.get(k)).copied().unwrap_or(0.0);
                    if *v < prev {
                        return None;
                    }
                    m.insert(k.clone(), v - prev);
                }
                out.insert(version.clone(), m);
            }
            Some(out)
        };
        Some(PodCounters {
            handled: sub(&self.handled, &before.handled)?,
            buckets: sub(&self.buckets, &before.buckets)?,
        })
    }
}

/// Parses a pod's exposition (OpenMetrics or Prometheus text) into its gRPC counters, keeping
/// only `grpc_service` when given.
pub fn parse_counters(text: &str, grpc_service: Option<&str>) -> Result<PodCounters, String> {
    let lines = text.lines().map(|l| Ok::<_, std::io::Error>(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| format!("unparsable metrics: {e}"))?;
    let mut out = PodCounters::default();
    for sample in scrape.samples {
        if let Some(want) = grpc_service
            && sample.labels.get("grpc_service") != Some(want)
        {
            continue;
        }
        let version = sample.labels.get("version").unwrap_or("").to_owned();
        let name = sample.metric.as_str();
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v)
                if name == HANDLED || name == "grpc_server_handled_total" =>
            {
                let code = sample.labels.get("grpc_code").unwrap_or("UNKNOWN").to_owned();
                *out.handled.entry(version).or_default().entry(code).or_default() += v;
            }
            prometheus_parse::Value::Histogram(buckets) if name == HANDLING_BUCKETS => {
                let series = out.buckets.entry(version).or_default();
                for b in buckets {
                    let le = if b.less_than.is_infinite() {
                        "+Inf".to_owned()
                    } else {
                        b.less_than.to_string()
                    };
                    *series.entry(le).or_default() += b.count;
                }
            }
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v)
                if name == "grpc_server_handling_seconds_bucket" =>
            {
                // Parsers that do not group histogram lines give the buckets one by one.
                let le = sample.labels.get("le").unwrap_or("+Inf").to_owned();
                *out.buckets.entry(version).or_default().entry(le).or_default() += v;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn add_calls(sample: &mut Sample, by_code: &BTreeMap<String, f64>, taxonomy: &Taxonomy) {
    for (code, calls) in by_code {
        let calls = calls.round().max(0.0) as u64;
        sample.requests += calls;
        if taxonomy.is_failure(code) {
            sample.failures += calls;
        }
    }
}

/// Adds cumulative buckets to a sample as non-cumulative `(upper bound, count)` pairs.
fn add_buckets(sample: &mut Sample, cumulative: &BTreeMap<String, f64>) {
    let mut bounds: Vec<(f64, f64)> = cumulative
        .iter()
        .map(|(le, c)| {
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                },
                *c,
            )
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut below = 0.0;
    for (bound, count) in bounds {
        let n = (count - below).round().max(0.0) as u64;
        below = count.max(below);
        if n > 0 {
            match sample.latency.iter_mut().find(|(v, _)| *v == bound) {
                Some((_, c)) => *c += n,
                None => sample.latency.push((bound, n)),
            }
        }
    }
}

/// Splits per-pod deltas into canary and stable samples: by the pod's track, or by the `version`
/// label (the versions reported by canary pods are the canary's).
pub fn split_samples(
    deltas: &[(bool, PodCounters)],
    group_by: GroupBy,
    taxonomy: &Taxonomy,
) -> (Sample, Sample) {
    let canary_versions: Vec<&String> = deltas
        .iter()
        .filter(|(canary, _)| *canary)
        .flat_map(|(_, c)| c.handled.keys().chain(c.buckets.keys()))
        .collect();
    let (mut canary, mut stable) = (Sample::default(), Sample::default());
    for (is_canary_pod, counters) in deltas {
        for (version, by_code) in &counters.handled {
            let to_canary = match group_by {
                GroupBy::Track => *is_canary_pod,
                GroupBy::Version => canary_versions.contains(&version),
            };
            add_calls(
                if to_canary { &mut canary } else { &mut stable },
                by_code,
                taxonomy,
            );
        }
        for (version, buckets) in &counters.buckets {
            let to_canary = match group_by {
                GroupBy::Track => *is_canary_pod,
                GroupBy::Version => canary_versions.contains(&version),
            };
            add_buckets(if to_canary { &mut canary } else { &mut stable }, buckets);
        }
    }
    (canary, stable)
}

/// The ledger guard: `CheckInvariants` on accounting. A violation fails (and aborts the
/// rollout at once); an unreachable ledger is an error.
pub async fn ledger_invariants(address: &str, ledger: u32) -> Result<(MeasurementPhase, String), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(address.to_owned())
        .map_err(|e| format!("ledger address `{address}`: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to the ledger at {address}: {e}"))?;
    let response = LedgerServiceClient::new(channel)
        .check_invariants(CheckInvariantsRequest { ledger })
        .await
        .map_err(|s| {
            format!(
                "CheckInvariants at {address}: {} {}",
                payplane_runtime::code_name(s.code()),
                s.message()
            )
        })?
        .into_inner();
    if response.ok {
        let transfers: u64 = response.ledgers.iter().map(|l| l.transfer_count).sum();
        Ok((
            MeasurementPhase::Successful,
            format!(
                "ledger invariants hold over {} ledgers, {transfers} transfers",
                response.ledgers.len()
            ),
        ))
    } else {
        let first = response
            .violations
            .first()
            .map(|v| v.detail.clone())
            .unwrap_or_default();
        Ok((
            MeasurementPhase::Failed,
            format!(
                "{} ledger invariant violations, first: {first}",
                response.violation_count.max(1)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::{
        encoding::EncodeLabelSet,
        metrics::{counter::Counter, family::Family, histogram::Histogram},
        registry::{Registry, Unit},
    };

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct CodeLabels {
        grpc_service: String,
        grpc_method: String,
        grpc_code: &'static str,
    }

    /// The exposition as payplane_runtime::Metrics writes it (same crate, same registration).
    fn exposition(version: &str, calls: &[(&'static str, u64, f64)]) -> String {
        let labels = [
            ("service".into(), "accounting".into()),
            ("version".into(), std::borrow::Cow::Owned(version.to_owned())),
        ];
        let mut registry = Registry::with_labels(labels.into_iter());
        let handled = Family::<CodeLabels, Counter>::default();
        let handling = Family::<CodeLabels, Histogram>::new_with_constructor(
            (|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
            }) as fn() -> Histogram,
        );
        registry.register("grpc_server_handled", "calls", handled.clone());
        registry.register_with_unit("grpc_server_handling", "latency", Unit::Seconds, handling.clone());
        for &(code, n, seconds) in calls {
            let l = CodeLabels {
                grpc_service: "payplane.accounting.v1.LedgerService".into(),
                grpc_method: "CreateTransfers".into(),
                grpc_code: code,
            };
            for _ in 0..n {
                handled.get_or_create(&l).inc();
                handling.get_or_create(&l).observe(seconds);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn parses_the_runtime_exposition() {
        let text = exposition(
            "1.2.0",
            &[
                ("OK", 90, 0.004),
                ("UNAVAILABLE", 10, 0.002),
                ("FAILED_PRECONDITION", 5, 0.003),
            ],
        );
        let c = parse_counters(&text, Some("payplane.accounting.v1.LedgerService")).unwrap();
        assert_eq!(c.handled["1.2.0"]["OK"], 90.0);
        assert_eq!(c.handled["1.2.0"]["UNAVAILABLE"], 10.0);
        assert_eq!(c.buckets["1.2.0"]["0.005"], 105.0, "cumulative: {:?}", c.buckets);
        assert_eq!(c.buckets["1.2.0"]["+Inf"], 105.0);
        let none = parse_counters(&text, Some("payplane.payment.v1.PaymentService")).unwrap();
        assert!(none.handled.is_empty());
    }

    #[test]
    fn deltas_by_track_feed_the_judge() {
        let before = parse_counters(&exposition("1", &[("OK", 100, 0.004)]), None).unwrap();
        let stable_now = parse_counters(&exposition("1", &[("OK", 1100, 0.004)]), None).unwrap();
        let canary_now = parse_counters(
            &exposition("2", &[("OK", 95, 0.004), ("UNAVAILABLE", 5, 0.001)]),
            None,
        )
        .unwrap();
        let deltas = vec![(false, stable_now.minus(&before).unwrap()), (true, canary_now)];
        let (canary, stable) = split_samples(&deltas, GroupBy::Track, &Taxonomy::default());
        assert_eq!((canary.requests, canary.failures), (100, 5));
        assert_eq!((stable.requests, stable.failures), (1000, 0));
        assert_eq!(stable.latency, vec![(0.005, 1000)]);
        assert_eq!(
            judge::judge(&canary, &stable, &JudgeConfig::default()).verdict,
            Verdict::Fail
        );
        // By version: the canary pod's version "2" is the canary wherever it is reported.
        let (canary_v, stable_v) = split_samples(&deltas, GroupBy::Version, &Taxonomy::default());
        assert_eq!(canary_v, canary);
        assert_eq!(stable_v, stable);
    }

    #[test]
    fn a_restarted_pod_counts_from_zero() {
        let before = parse_counters(&exposition("1", &[("OK", 100, 0.004)]), None).unwrap();
        let after = parse_counters(&exposition("1", &[("OK", 10, 0.004)]), None).unwrap();
        assert_eq!(after.minus(&before), None);
    }

    #[test]
    fn evidence_accumulates_from_the_baseline_and_late_pods_join_when_first_seen() {
        let at = |ok: u64, bad: u64| {
            parse_counters(
                &exposition("2", &[("OK", ok, 0.004), ("UNAVAILABLE", bad, 0.001)]),
                None,
            )
            .unwrap()
        };
        let mut baseline = HashMap::new();
        let stable = |n| ("stable".to_owned(), false, at(n, 0));
        assert_eq!(
            since_baseline(&mut baseline, &[stable(1000)]),
            None,
            "the first scrape judges nothing"
        );
        // The canary pod appears: its calls before this scrape (its warm-up) are not counted.
        let d = since_baseline(&mut baseline, &[stable(1100), ("canary".into(), true, at(40, 2))]).unwrap();
        let (canary, stable_side) = split_samples(&d, GroupBy::Track, &Taxonomy::default());
        assert_eq!((canary.requests, stable_side.requests), (0, 100));
        // Then every call since the baseline counts, on both tracks: evidence accumulates.
        let d = since_baseline(
            &mut baseline,
            &[stable(1300), ("canary".into(), true, at(138, 4))],
        )
        .unwrap();
        let (canary, stable_side) = split_samples(&d, GroupBy::Track, &Taxonomy::default());
        assert_eq!((canary.requests, canary.failures), (100, 2));
        assert_eq!(stable_side.requests, 300);
        // A restart (counters went down) re-joins from the scrape that sees it.
        let d = since_baseline(&mut baseline, &[stable(1400), ("canary".into(), true, at(5, 0))]).unwrap();
        let (canary, _) = split_samples(&d, GroupBy::Track, &Taxonomy::default());
        assert_eq!(canary.requests, 0);
    }

    #[test]
    fn prometheus_results() {
        let vector =
            serde_json::json!({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "0.97"]}]});
        assert_eq!(
            prometheus_verdict(&vector, Some(0.99), None).0,
            MeasurementPhase::Failed
        );
        assert_eq!(
            prometheus_verdict(&vector, Some(0.95), Some(1.0)).0,
            MeasurementPhase::Successful
        );
        let empty = serde_json::json!({"resultType": "vector", "result": []});
        assert_eq!(
            prometheus_verdict(&empty, Some(0.95), None).0,
            MeasurementPhase::Inconclusive
        );
        let scalar = serde_json::json!({"resultType": "scalar", "result": [1.0, "NaN"]});
        assert_eq!(
            prometheus_verdict(&scalar, Some(0.95), None).0,
            MeasurementPhase::Inconclusive
        );
    }

    #[test]
    fn payment_floor() {
        let s = Sample {
            requests: 1000,
            failures: 20,
            latency: vec![],
        };
        assert_eq!(success_rate_verdict(&s, 0.99, 50).0, MeasurementPhase::Failed);
        assert_eq!(success_rate_verdict(&s, 0.95, 50).0, MeasurementPhase::Successful);
        assert_eq!(
            success_rate_verdict(&Sample { requests: 10, ..s }, 0.95, 50).0,
            MeasurementPhase::Inconclusive
        );
    }
}

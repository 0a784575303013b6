//! The custom resources: `Rollout` and `AnalysisTemplate` in `payplane.io/v1alpha1`.
//!
//! Fields a user may get wrong are optional in the schema and checked by [`crate::validate`],
//! so that a mistake becomes a condition naming the field instead of a rejected apply with an
//! OpenAPI message, and the CRD stays stable as rules evolve.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "payplane.io";
/// Label put on canary pods (and the canary Deployment's selector) so that analysis can tell
/// the tracks apart; the Service selects both tracks because it ignores this label.
pub const TRACK_LABEL: &str = "payplane.io/track";
/// One-shot requests for the controller (`kubectl annotate rollout x payplane.io/request=abort`).
/// Values: `abort`, `retry`, `promote` (finish the current step), `promote-full` (skip to
/// promotion), `resume` (leave an indefinite or inconclusive pause), `undo` (back to the
/// previous revision) or `undo:<revision>`. The controller removes it once handled.
pub const REQUEST_ANNOTATION: &str = "payplane.io/request";
/// On the canary Deployment and the ControllerRevisions: the pod-template hash.
pub const REVISION_HASH_ANNOTATION: &str = "payplane.io/revision-hash";
/// Labels the ControllerRevisions kept for a Rollout.
pub const ROLLOUT_LABEL: &str = "payplane.io/rollout";
pub const FINALIZER: &str = "rollouts.payplane.io/cleanup";

/// A canary release of the Deployment `spec.deploymentName`. The controller pauses that
/// Deployment, so a new pod template (a chart upgrade) does not roll out by itself: it becomes a
/// canary Deployment `<deploymentName>-canary` and walks `spec.strategy.canary.steps`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "payplane.io",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    shortname = "ro",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Step","type":"integer","jsonPath":".status.currentStepIndex"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.weight"}"#,
    printcolumn = r#"{"name":"Stable","type":"string","jsonPath":".status.stableRevision"}"#,
    printcolumn = r#"{"name":"Canary","type":"string","jsonPath":".status.canaryRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Name of the Deployment (same namespace) that the chart renders.
    #[serde(default)]
    pub deployment_name: String,
    /// Pause/resume: while true no step advances (abort, failing analysis and guards still act).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    #[serde(default)]
    pub strategy: Strategy,
    /// How many past revisions are kept (ControllerRevisions) for `undo`. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// Seconds a setWeight step may wait for the canary's pods to become ready before the rollout
    /// aborts. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    #[serde(default)]
    pub canary: CanaryStrategy,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Walked in order; after the last one the canary is promoted.
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    /// Background analysis: runs from the first step until promotion. A failure aborts at once,
    /// even during a pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRef>,
    /// How a weight becomes a canary replica count. The stable keeps its replicas (and its HPA);
    /// the canary gets `stable · w / (100 − w)` replicas so that it serves w% of the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_rounding: Option<Rounding>,
}

/// Rounding of the canary replica count (`up` is the default: a step never gets less than the
/// weight it asks for, like a rolling update's maxSurge).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Rounding {
    #[default]
    Up,
    Down,
    Nearest,
}

/// Exactly one of the fields.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of requests for the canary, 1–100, increasing along the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    /// Wait: for `duration` (e.g. `30s`, `5m`), or until `promote`/`resume` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Run an analysis and advance once it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// Templates by name, and/or metrics inline.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRef {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<AnalysisTemplateSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// An AnalysisTemplate in the Rollout's namespace.
    pub template_name: String,
}

/// Metrics to measure, by name.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "payplane.io",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    shortname = "at"
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

/// One metric, measured every `interval`, with Argo Rollouts' limits.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    /// Time between measurements (e.g. `10s`). Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time before the first measurement. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// Measurements to take. Default: 1 in a step, unbounded in the background.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The metric fails when failed measurements exceed this. Default 0; -1 never fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i32>,
    /// The metric errors when consecutive provider errors exceed this. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<u32>,
    /// The metric is inconclusive (the rollout pauses) when inconclusive measurements exceed
    /// this. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    #[serde(default)]
    pub provider: Provider,
}

/// Exactly one of the fields.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeProvider>,
    /// Guard: the ledger's `CheckInvariants`. A broken invariant fails the metric at once,
    /// whatever `failureLimit` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_invariants: Option<LedgerInvariantsProvider>,
    /// Guard: the payment success rate of the gateway pods. Below the floor fails at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_success_rate: Option<PaymentSuccessRateProvider>,
}

/// An instant PromQL query; the first value of the result is compared with `min`/`max`. An empty
/// result is inconclusive. `{{namespace}}`, `{{rollout}}`, `{{canaryRevision}}` and
/// `{{stableRevision}}` in the query are replaced.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusProvider {
    /// e.g. `http://prometheus.monitoring:9090`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Scrapes the canary's and the stable's own `/metrics` (the runtime's `grpc_server_handled_total`
/// and `grpc_server_handling_seconds`), takes deltas between scrapes and runs the judge.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeProvider {
    /// Admin port of the pods. Default 9090.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How samples are assigned to canary and stable. Default `track`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    /// Only calls of this gRPC service (e.g. `payplane.accounting.v1.LedgerService`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_codes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSpec>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GroupBy {
    /// By the pod's `payplane.io/track` label.
    #[default]
    Track,
    /// By the metrics' `version` label: the version reported by the canary pods is the canary,
    /// every other version is the stable.
    Version,
}

/// The judge's settings; see `judge::JudgeConfig`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgeSpec {
    /// Default 0.98.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Calls needed on each side; fewer is inconclusive. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// Default 0.01 (one percentage point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate_increase: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_success_rate: Option<f64>,
    /// P(canary slower) at which a significant latency difference fails. Default 0.6; 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_min_effect: Option<f64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerInvariantsProvider {
    /// gRPC address of accounting, e.g. `http://accounting:50051`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Only this ledger; 0 or absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSuccessRateProvider {
    /// Labels of the gateway pods (same namespace). Required.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Default `payplane.payment.v1.PaymentService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_service: Option<String>,
    /// Floor of the success rate. Default 0.99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_success_rate: Option<f64>,
    /// Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_codes: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Status

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// The stable serves everything and no canary runs.
    #[default]
    Healthy,
    /// Steps are being walked.
    Progressing,
    /// Waiting: a pause step, `spec.paused`, or an inconclusive analysis.
    Paused,
    /// The last step is done; the stable Deployment is rolling to the new template.
    Promoting,
    /// Aborted: the canary is scaled to zero; waits for `retry` or a new revision.
    Degraded,
    /// The spec is invalid; see the InvalidSpec condition.
    InvalidSpec,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pod-template hash the stable runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Pod-template hash being released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// The last hash aborted; it is not released again until `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_revision: Option<String>,
    /// Index into steps; equal to the number of steps once all are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<u32>,
    /// RFC 3339 time the current step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// Weight the current step asks for.
    #[serde(default)]
    pub desired_weight: i32,
    /// Share of ready canary pods among ready pods, in percent: the request share.
    #[serde(default)]
    pub weight: i32,
    #[serde(default)]
    pub canary_replicas: i32,
    #[serde(default)]
    pub stable_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// Set on abort (request, failed analysis, progress deadline); cleared by `retry` or a new
    /// revision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// ControllerRevision number of the canary (or of the stable when healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<AnalysisRunStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PauseReason {
    /// A `pause` step.
    CanaryPauseStep,
    /// An analysis was inconclusive; `promote` continues, `abort` rolls back.
    InconclusiveAnalysis,
    /// `spec.paused`.
    UserPaused,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Progressing`, `Healthy`, `Paused`, `Aborted`, `InvalidSpec`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AnalysisPhase {
    #[default]
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl AnalysisPhase {
    pub fn is_terminal(self) -> bool {
        self != AnalysisPhase::Running
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// `background` or `step-<index>`.
    pub name: String,
    pub phase: AnalysisPhase,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricStatus>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    pub name: String,
    pub phase: AnalysisPhase,
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub successful: u32,
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub inconclusive: u32,
    #[serde(default)]
    pub error: u32,
    #[serde(default)]
    pub consecutive_error: u32,
    /// A guard metric's failure (a broken invariant) fails it regardless of `failureLimit`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guard_tripped: bool,
    /// The last 10 measurements, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MeasurementPhase {
    Successful,
    Failed,
    Inconclusive,
    Error,
    /// Prepared the next measurement without judging (a scrape's baseline): it sets the time of
    /// the next one and counts towards nothing.
    Pending,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: MeasurementPhase,
    /// The evidence: the value, or the judge's summary, or the error.
    pub value: String,
    pub finished_at: String,
}

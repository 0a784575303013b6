//! The custom resources: `Rollout`, `AnalysisTemplate`, `FreezePolicy` and `ReleasePlan` in
//! `payplane.io/v1alpha1`.
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
/// previous revision) or `undo:<revision>`. The controller removes it once handled. In governed
/// namespaces it needs `payplane.io/requested-by` (the requester's own name) with it.
pub const REQUEST_ANNOTATION: &str = "payplane.io/request";
/// On the Rollout, with `request`: who asks (enforced equal to the requester by the admission
/// policy in governed namespaces). The audit trail names them as the actor of what the request
/// did; elsewhere the name is recorded as unverified. Consumed with the request.
pub const REQUESTED_BY_ANNOTATION: &str = "payplane.io/requested-by";
/// On the canary Deployment and the ControllerRevisions: the pod-template hash.
pub const REVISION_HASH_ANNOTATION: &str = "payplane.io/revision-hash";
/// Labels the ControllerRevisions kept for a Rollout.
pub const ROLLOUT_LABEL: &str = "payplane.io/rollout";
pub const FINALIZER: &str = "rollouts.payplane.io/cleanup";
/// On the referenced Deployment: who changed its pod template (started the release). The
/// ValidatingAdmissionPolicy in `charts/rollout-controller/policies/` only admits a template change
/// whose value is the requester's own user name.
pub const RELEASED_BY_ANNOTATION: &str = "payplane.io/released-by";
/// On the Rollout: an approval of the pending `approval` step, by the user named (enforced equal to
/// the requester by the admission policy). Consumed by the controller.
pub const APPROVED_BY_ANNOTATION: &str = "payplane.io/approved-by";
/// On the Rollout, with `approved-by`: the approver's groups, comma-separated (enforced equal to
/// the requester's groups by the admission policy); needed only for `group:` approvers.
pub const APPROVER_GROUPS_ANNOTATION: &str = "payplane.io/approver-groups";
/// On the Rollout: an emergency release through freeze windows, with the reason as value; honoured
/// only with `freeze-override-by` (enforced equal to the requester). Consumed by the controller and
/// valid for the revision in flight.
pub const FREEZE_OVERRIDE_ANNOTATION: &str = "payplane.io/freeze-override";
pub const FREEZE_OVERRIDE_BY_ANNOTATION: &str = "payplane.io/freeze-override-by";
/// Namespace label: the admission policy binding enforces the identity annotations in namespaces
/// that carry it (`enforced`). Without it approvals and overrides are refused, since their names
/// would be free text.
pub const GOVERNANCE_LABEL: &str = "payplane.io/governance";
pub const GOVERNANCE_ENFORCED: &str = "enforced";
/// On a Deployment whose template a ReleasePlan changed: the plan's name. While that plan releases
/// the Deployment's Rollout, the Rollout adds the plan's shared analysis to its background
/// analysis.
pub const RELEASE_PLAN_ANNOTATION: &str = "payplane.io/release-plan";

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
    /// Windows in which nothing advances (abort and rollback still act), in addition to the
    /// cluster's FreezePolicies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze_windows: Vec<FreezeWindow>,
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
    /// Wait for an approval (`payplane.io/approved-by`, set by the approver themself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalStep>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStep {
    /// The approver must not be the person who started the release (`payplane.io/released-by` on
    /// the Deployment): four eyes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_different_person: bool,
    /// Who may approve: user names, or `group:<name>`. Empty: any user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

/// A window in which releases do not advance. Exactly one of `daily`, `weekly`,
/// `lastBusinessDayOfMonth`, `dates`. Times are wall-clock times in `timeZone`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeWindow {
    pub name: String,
    /// IANA time zone, e.g. `Asia/Shanghai`. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Every day from `start` to `end` (`HH:MM`; an end at or before the start ends the next day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<TimeRange>,
    /// On the listed days (`Mon`…`Sun`), from `start` to `end` (crossing midnight as for daily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<WeeklyRange>,
    /// The last business day (Mon–Fri, not a listed holiday) of every month; the whole day unless
    /// `start`/`end` say otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_business_day_of_month: Option<BusinessDayRange>,
    /// A dated window: `YYYY-MM-DD` (whole days, the end day included) or `YYYY-MM-DDTHH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dates: Option<DateRange>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeRange {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`, or `24:00`.
    pub end: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeeklyRange {
    /// `Mon`, `Tue`, … (or full names), the days the window starts on.
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BusinessDayRange {
    /// Default `00:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Default `24:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// `YYYY-MM-DD` dates that are not business days.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DateRange {
    pub start: String,
    pub end: String,
}

/// A coordinated release of several services, in order: each member's Rollout releases the
/// member's new template only after the previous member was promoted; when one fails, the members
/// already promoted by this plan are rolled back, last first. Immutable once started.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "payplane.io",
    version = "v1alpha1",
    kind = "ReleasePlan",
    namespaced,
    status = "ReleasePlanStatus",
    shortname = "rp",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentIndex"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePlanSpec {
    /// Released in this order (dependencies first, e.g. accounting before gateway).
    #[serde(default)]
    pub services: Vec<PlanService>,
    /// Shared analysis: while the plan releases a member, that member's Rollout runs these metrics
    /// in its background analysis too (names prefixed `plan/`), so a failing plan-wide check
    /// aborts whichever member is in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRef>,
}

/// One member: its Rollout (same namespace) and the change to its Deployment's first container.
/// At least one of `image` and `env`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanService {
    /// Name of the member's Rollout.
    #[serde(default)]
    pub rollout: String,
    /// A tag (`1.4.2`: replaces the tag of the first container's image) or a full image reference
    /// (anything with `/`, `:` or `@`: taken whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Environment variables set (added or replaced) on the first container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<PlanEnvVar>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanEnvVar {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PlanPhase {
    /// Not started (or the spec is invalid: see the InvalidSpec condition).
    #[default]
    Pending,
    /// Releasing the members in order.
    Progressing,
    /// Every member promoted.
    Succeeded,
    /// A member failed: rolling back the members this plan promoted, last first.
    RollingBack,
    /// Every member is back on the revision it had before the plan.
    RolledBack,
    /// A rollback could not be completed; see the message.
    Failed,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MemberPhase {
    #[default]
    Pending,
    /// Its Rollout releases the plan's template.
    Releasing,
    Promoted,
    /// Its release was aborted (by its Rollout: analysis, progress deadline, abort request).
    Aborted,
    /// Promoted by this plan, then rolled back to `fromRevision`.
    RolledBack,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePlanStatus {
    #[serde(default)]
    pub phase: PlanPhase,
    /// Index of the member being released (or rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hash of the spec the plan started with; a different spec afterwards is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<MemberStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub rollout: String,
    #[serde(default)]
    pub phase: MemberPhase,
    /// The stable pod-template hash before the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<String>,
    /// The ControllerRevision number of `fromRevision` (what a rollback undoes to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_release: Option<i64>,
    /// The pod-template hash the plan released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When its Deployment was back on `fromRevision` and its Rollout Healthy there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_at: Option<String>,
    /// The plan asked the Rollout for `undo:<fromRelease>`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo_requested: bool,
    /// The plan asked for `promote-full` of the undo's canary (once: refused, e.g. in a freeze
    /// window, the canary walks its steps).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Freeze windows for the Rollouts of the selected namespaces (all when no selector).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "payplane.io",
    version = "v1alpha1",
    kind = "FreezePolicy",
    shortname = "fp",
    status = "FreezePolicyStatus",
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FreezePolicySpec {
    /// Labels the namespace must carry (all of them). Absent or empty: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    #[serde(default)]
    pub windows: Vec<FreezeWindow>,
}

/// Written by the controller: a `Valid` condition naming every field in error (a policy that is
/// not valid holds the Rollouts it applies to).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
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
    /// P(canary slower) at which a significant latency difference fails. Default 0.75; 0 disables.
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
    /// RFC 3339 time all traffic was back on the stable after the abort: the canary scaled to 0
    /// with no pod left serving. Cleared with `abort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_at: Option<String>,
    /// ControllerRevision number of the canary (or of the stable when healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<AnalysisRunStatus>,
    /// Who started the release in flight (`payplane.io/released-by` on the Deployment when its
    /// template changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    /// Approvals given for the release in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRecord>,
    /// The freeze window holding the release, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeHold>,
    /// The next freeze window that applies to this Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_freeze: Option<NextFreeze>,
    /// An emergency override of the freeze windows for the release in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_override: Option<FreezeOverride>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// Index of the approval step.
    pub step: u32,
    pub by: String,
    pub at: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeHold {
    /// Name(s) of the window(s) in force now.
    pub window: String,
    /// Where they are defined: `FreezePolicy/<name>` or `spec.freezeWindows`.
    pub source: String,
    /// RFC 3339 end of the freeze (overlapping and adjacent windows merged); absent when an
    /// invalid FreezePolicy holds the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextFreeze {
    pub window: String,
    pub source: String,
    pub start: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeOverride {
    pub by: String,
    pub reason: String,
    /// The revision it was given for.
    pub revision: String,
    pub at: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PauseReason {
    /// A `pause` step.
    CanaryPauseStep,
    /// An analysis was inconclusive; `promote` continues, `abort` rolls back.
    InconclusiveAnalysis,
    /// `spec.paused`.
    UserPaused,
    /// A freeze window is in force; see `status.freeze`.
    FreezeWindow,
    /// An `approval` step waits for `payplane.io/approved-by`.
    AwaitingApproval,
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

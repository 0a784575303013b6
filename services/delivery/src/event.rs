//! `ReleaseEvent` (`payplane.io/v1alpha1`): one object per transition of a release, written once
//! by the rollout controller (or by the CLI on behalf of a person) and never edited.
//!
//! The controller builds one [`ReleaseContext`] per release (what does not change between its
//! transitions: rollout, service, release number, pod-template hash, images, chart version,
//! commit) and asks it for each event in turn:
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use payplane_delivery::event::{EventKind, ImageRef, ReleaseContext, SYSTEM_ACTOR};
//!
//! let release = ReleaseContext::new("accounting", "accounting", 7, "5d8f9c7b6")
//!     .with_images(vec![ImageRef::new("accounting", "registry.local/payplane/accounting:1.8.0")])
//!     .with_chart_version("1.8.0")
//!     .with_commit("3f1c2e9", Utc.with_ymd_and_hms(2026, 10, 1, 8, 0, 0).unwrap());
//! let at = Utc.with_ymd_and_hms(2026, 10, 2, 9, 0, 0).unwrap();
//! let started = release.event(0, EventKind::Started, "alice", at).into_resource();
//! assert_eq!(started.metadata.name.as_deref(), Some("accounting-r7-0000"));
//! let weight = release
//!     .event(1, EventKind::WeightChanged, SYSTEM_ACTOR, at)
//!     .with_step(0)
//!     .with_weight(10)
//!     .into_resource();
//! assert_eq!(weight.spec.weight, Some(10));
//! ```
//!
//! Write it with [`record`] (a create; a name that exists already means the transition was
//! recorded before, by a retried reconcile, and counts as success). After a restart, the next
//! sequence of a release is [`next_sequence`] of the events listed with [`release_selector`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::{CustomResource, api::ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The actor of what the controller decides by itself.
pub const SYSTEM_ACTOR: &str = "system:rollout-controller";
pub const ROLLOUT_LABEL: &str = "payplane.io/rollout";
pub const RELEASE_LABEL: &str = "payplane.io/release";
pub const SERVICE_LABEL: &str = "payplane.io/service";
/// OCI image labels the commit and its time are read from.
pub const OCI_REVISION_LABEL: &str = "org.opencontainers.image.revision";
pub const OCI_CREATED_LABEL: &str = "org.opencontainers.image.created";

/// One transition of one release of a Rollout. Append-only: the apiserver refuses any change to
/// the spec (CEL rule `self == oldSelf`), and the controller never deletes one (the namespace's
/// retention policy decides how long the trail is kept).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "payplane.io",
    version = "v1alpha1",
    kind = "ReleaseEvent",
    namespaced,
    shortname = "rev",
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service"}"#,
    printcolumn = r#"{"name":"Release","type":"integer","jsonPath":".spec.release"}"#,
    printcolumn = r#"{"name":"Seq","type":"integer","jsonPath":".spec.sequence"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".spec.weight"}"#,
    printcolumn = r#"{"name":"Actor","type":"string","jsonPath":".spec.actor"}"#,
    printcolumn = r#"{"name":"Time","type":"date","jsonPath":".spec.time"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "ReleaseEvents are append-only: create a new event instead of changing one"
}]))]
pub struct ReleaseEventSpec {
    /// Name of the Rollout (same namespace).
    pub rollout: String,
    /// The application (chart) name the release belongs to.
    pub service: String,
    /// The release number: the ControllerRevision number of the canary (`status.revision`).
    pub release: u64,
    /// The pod-template hash being released.
    pub revision: String,
    /// Order of this event inside its release, from 0.
    pub sequence: u32,
    /// When the transition happened (RFC 3339, UTC).
    #[schemars(with = "String")]
    pub time: DateTime<Utc>,
    /// Who caused it: a username, or `system:rollout-controller`.
    pub actor: String,
    pub kind: EventKind,
    /// Index of the canary step, when the event belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// Share of requests on the canary after this event, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The evidence of an `AnalysisMeasured` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisEvidence>,
    /// Why (abort reason, pause reason, approval comment, freeze window...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_version: Option<String>,
    /// Source commit, from the image label `org.opencontainers.image.revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Commit time, from the image label `org.opencontainers.image.created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub commit_time: Option<DateTime<Utc>>,
}

/// What happened. Terminal kinds (which end a release, the last one wins) are `Promoted`,
/// `Aborted`, `RolledBack`, `Superseded` and `Undone`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum EventKind {
    /// A new pod template became a canary.
    Started,
    /// A canary step began (`step` set; `weight` for setWeight steps).
    StepReached,
    /// The share of requests on the canary changed (`weight` set).
    WeightChanged,
    /// One analysis measurement (`analysis` set).
    AnalysisMeasured,
    Paused,
    Resumed,
    /// A person approved a gate (production promotion, second approver).
    GateApproved,
    /// A freeze window began: nothing advances but rollback.
    Frozen,
    Unfrozen,
    /// All traffic on the canary's revision: it is the new stable.
    Promoted,
    /// The release was stopped (request, failed analysis, deadline); `reason` says why.
    Aborted,
    /// All traffic is back on the stable revision after an abort or an undo.
    RolledBack,
    /// A newer pod template replaced this one before it finished.
    Superseded,
    /// A promoted release was reverted to a previous revision (`payplane.io/request=undo`).
    Undone,
}

impl EventKind {
    pub const ALL: [EventKind; 14] = [
        Self::Started,
        Self::StepReached,
        Self::WeightChanged,
        Self::AnalysisMeasured,
        Self::Paused,
        Self::Resumed,
        Self::GateApproved,
        Self::Frozen,
        Self::Unfrozen,
        Self::Promoted,
        Self::Aborted,
        Self::RolledBack,
        Self::Superseded,
        Self::Undone,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Promoted | Self::Aborted | Self::RolledBack | Self::Superseded | Self::Undone
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "Started",
            Self::StepReached => "StepReached",
            Self::WeightChanged => "WeightChanged",
            Self::AnalysisMeasured => "AnalysisMeasured",
            Self::Paused => "Paused",
            Self::Resumed => "Resumed",
            Self::GateApproved => "GateApproved",
            Self::Frozen => "Frozen",
            Self::Unfrozen => "Unfrozen",
            Self::Promoted => "Promoted",
            Self::Aborted => "Aborted",
            Self::RolledBack => "RolledBack",
            Self::Superseded => "Superseded",
            Self::Undone => "Undone",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measurement of an analysis metric.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisEvidence {
    pub metric: String,
    /// `prometheus`, `scrape`, `ledger`...
    pub provider: String,
    /// The query as sent (PromQL, metric name...).
    #[serde(default)]
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    Successful,
    Failed,
    Inconclusive,
}

/// One container image of the release.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    pub container: String,
    pub image: String,
    /// `sha256:...`, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn new(container: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            container: container.into(),
            image: image.into(),
            digest: None,
        }
    }

    pub fn with_digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = Some(digest.into());
        self
    }
}

/// The object name of an event: `<rollout>-r<release>-<sequence:04>`, e.g. `accounting-r7-0003`.
/// Deterministic, so that recording the same transition twice is an `AlreadyExists`.
pub fn event_name(rollout: &str, release: u64, sequence: u32) -> String {
    format!("{rollout}-r{release}-{sequence:04}")
}

/// The labels every event carries, for `kubectl get rev -l payplane.io/service=accounting`.
pub fn event_labels(rollout: &str, release: u64, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ROLLOUT_LABEL.to_owned(), rollout.to_owned()),
        (RELEASE_LABEL.to_owned(), release.to_string()),
        (SERVICE_LABEL.to_owned(), service.to_owned()),
    ])
}

/// Label selector of one release's events: `payplane.io/rollout=<rollout>,payplane.io/release=<n>`.
pub fn release_selector(rollout: &str, release: u64) -> String {
    format!("{ROLLOUT_LABEL}={rollout},{RELEASE_LABEL}={release}")
}

/// The sequence the next event of `rollout`'s `release` gets: one past the highest recorded
/// among `events` (0 when there is none). Events of other releases are ignored.
pub fn next_sequence(events: &[ReleaseEvent], rollout: &str, release: u64) -> u32 {
    events
        .iter()
        .filter(|e| e.spec.rollout == rollout && e.spec.release == release)
        .map(|e| e.spec.sequence + 1)
        .max()
        .unwrap_or(0)
}

/// Records one transition: creates the event in `api`'s namespace. `Ok(true)` when this call
/// created it, `Ok(false)` when an event of that name exists already (the transition was
/// recorded before: a retried reconcile). Never updates an event.
pub async fn record(api: &kube::Api<ReleaseEvent>, spec: ReleaseEventSpec) -> Result<bool, kube::Error> {
    match api
        .create(&kube::api::PostParams::default(), &spec.into_resource())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(false),
        Err(e) => Err(e),
    }
}

/// What all events of one release share. Build it once per release, then call
/// [`ReleaseContext::event`] for each transition.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseContext {
    pub rollout: String,
    pub service: String,
    pub release: u64,
    pub revision: String,
    pub images: Vec<ImageRef>,
    pub chart_version: Option<String>,
    pub commit: Option<String>,
    pub commit_time: Option<DateTime<Utc>>,
}

impl ReleaseContext {
    pub fn new(
        rollout: impl Into<String>,
        service: impl Into<String>,
        release: u64,
        revision: impl Into<String>,
    ) -> Self {
        Self {
            rollout: rollout.into(),
            service: service.into(),
            release,
            revision: revision.into(),
            images: Vec::new(),
            chart_version: None,
            commit: None,
            commit_time: None,
        }
    }

    pub fn with_images(mut self, images: Vec<ImageRef>) -> Self {
        self.images = images;
        self
    }

    pub fn with_chart_version(mut self, version: impl Into<String>) -> Self {
        self.chart_version = Some(version.into());
        self
    }

    pub fn with_commit(mut self, commit: impl Into<String>, time: DateTime<Utc>) -> Self {
        self.commit = Some(commit.into());
        self.commit_time = Some(time);
        self
    }

    /// Commit and commit time from an image's OCI labels (`org.opencontainers.image.revision`,
    /// `org.opencontainers.image.created`); a missing or unparsable label leaves the field empty.
    pub fn with_oci_labels(mut self, labels: &BTreeMap<String, String>) -> Self {
        self.commit = labels.get(OCI_REVISION_LABEL).cloned();
        self.commit_time = labels
            .get(OCI_CREATED_LABEL)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        self
    }

    /// The event `sequence` of this release. Sequences start at 0 and grow by one per event.
    pub fn event(
        &self,
        sequence: u32,
        kind: EventKind,
        actor: impl Into<String>,
        time: DateTime<Utc>,
    ) -> ReleaseEventSpec {
        ReleaseEventSpec {
            rollout: self.rollout.clone(),
            service: self.service.clone(),
            release: self.release,
            revision: self.revision.clone(),
            sequence,
            time,
            actor: actor.into(),
            kind,
            step: None,
            weight: None,
            analysis: None,
            reason: None,
            images: self.images.clone(),
            chart_version: self.chart_version.clone(),
            commit: self.commit.clone(),
            commit_time: self.commit_time,
        }
    }
}

impl ReleaseEventSpec {
    pub fn with_step(mut self, step: u32) -> Self {
        self.step = Some(step);
        self
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }

    pub fn with_analysis(mut self, analysis: AnalysisEvidence) -> Self {
        self.analysis = Some(analysis);
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn name(&self) -> String {
        event_name(&self.rollout, self.release, self.sequence)
    }

    /// The resource to create, named and labelled (namespace: the `Api` you create it with).
    pub fn into_resource(self) -> ReleaseEvent {
        ReleaseEvent {
            metadata: ObjectMeta {
                name: Some(self.name()),
                labels: Some(event_labels(&self.rollout, self.release, &self.service)),
                ..ObjectMeta::default()
            },
            spec: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use kube::CustomResourceExt;

    use super::*;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 2, h, 0, 0).unwrap()
    }

    #[test]
    fn names_and_labels_follow_the_scheme() {
        assert_eq!(event_name("accounting", 12, 3), "accounting-r12-0003");
        assert_eq!(event_name("gw", 1, 12345), "gw-r1-12345");
        let labels = event_labels("accounting-ro", 12, "accounting");
        assert_eq!(labels[ROLLOUT_LABEL], "accounting-ro");
        assert_eq!(labels[RELEASE_LABEL], "12");
        assert_eq!(labels[SERVICE_LABEL], "accounting");
    }

    #[test]
    fn sequences_continue_after_the_highest_recorded() {
        let ctx = ReleaseContext::new("acc", "accounting", 7, "h");
        let other = ReleaseContext::new("acc", "accounting", 8, "h2");
        let events: Vec<_> = [
            ctx.event(0, EventKind::Started, "a", at(1)),
            ctx.event(3, EventKind::Paused, "a", at(2)),
            other.event(9, EventKind::Started, "a", at(3)),
        ]
        .into_iter()
        .map(ReleaseEventSpec::into_resource)
        .collect();
        assert_eq!(next_sequence(&events, "acc", 7), 4);
        assert_eq!(next_sequence(&events, "acc", 8), 10);
        assert_eq!(next_sequence(&events, "acc", 9), 0);
        assert_eq!(next_sequence(&events, "other", 7), 0);
        assert_eq!(
            release_selector("acc", 7),
            "payplane.io/rollout=acc,payplane.io/release=7"
        );
    }

    #[test]
    fn the_spec_serializes_in_camel_case_with_rfc3339_times() {
        let ctx = ReleaseContext::new("acc", "accounting", 7, "abc123")
            .with_images(vec![ImageRef::new("app", "r/acc:1").with_digest("sha256:00")])
            .with_chart_version("1.8.0")
            .with_oci_labels(&BTreeMap::from([
                (OCI_REVISION_LABEL.to_owned(), "deadbeef".to_owned()),
                (
                    OCI_CREATED_LABEL.to_owned(),
                    "2026-10-01T08:00:00+02:00".to_owned(),
                ),
            ]));
        let ev = ctx
            .event(2, EventKind::AnalysisMeasured, SYSTEM_ACTOR, at(9))
            .with_step(1)
            .with_analysis(AnalysisEvidence {
                metric: "success-rate".into(),
                provider: "scrape".into(),
                query: "grpc_server_handled_total".into(),
                value: Some(0.93),
                verdict: Verdict::Failed,
            })
            .into_resource();
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["apiVersion"], "payplane.io/v1alpha1");
        assert_eq!(v["kind"], "ReleaseEvent");
        assert_eq!(v["metadata"]["name"], "acc-r7-0002");
        assert_eq!(v["spec"]["time"], "2026-10-02T09:00:00Z");
        assert_eq!(v["spec"]["commitTime"], "2026-10-01T06:00:00Z");
        assert_eq!(v["spec"]["chartVersion"], "1.8.0");
        assert_eq!(v["spec"]["kind"], "AnalysisMeasured");
        assert_eq!(v["spec"]["analysis"]["verdict"], "Failed");
        assert_eq!(v["spec"]["images"][0]["digest"], "sha256:00");
        assert!(v["spec"].get("weight").is_none(), "absent options are omitted");
        let back: ReleaseEvent = serde_json::from_value(v).unwrap();
        assert_eq!((back.metadata, back.spec), (ev.metadata, ev.spec));
    }

    #[test]
    fn a_bad_oci_time_leaves_the_commit_time_empty() {
        let ctx = ReleaseContext::new("a", "a", 1, "h").with_oci_labels(&BTreeMap::from([
            (OCI_REVISION_LABEL.to_owned(), "c".to_owned()),
            (OCI_CREATED_LABEL.to_owned(), "yesterday".to_owned()),
        ]));
        assert_eq!((ctx.commit.as_deref(), ctx.commit_time), (Some("c"), None));
    }

    #[test]
    fn the_crd_is_namespaced_with_print_columns() {
        let crd = ReleaseEvent::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("releaseevents.payplane.io"));
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            ["Service", "Release", "Seq", "Kind", "Weight", "Actor", "Time"]
        );
        assert!(v.subresources.is_none(), "no status: events are immutable");
        let spec = serde_json::to_value(&v.schema.as_ref().unwrap().open_api_v3_schema).unwrap()["properties"]
            ["spec"]
            .clone();
        assert_eq!(
            spec["x-kubernetes-validations"][0]["rule"], "self == oldSelf",
            "the apiserver refuses edits"
        );
    }
}

//! Spec validation, no I/O: every problem names the field and says why, so that the Rollout's
//! `InvalidSpec` condition and event tell the author what to fix.

use std::{collections::BTreeMap, fmt, time::Duration};

use crate::{
    crd::{AnalysisRef, AnalysisTemplateSpec, Metric, RolloutSpec},
    judge::GRPC_CODES,
};

/// One problem: the field's path (`spec.strategy.canary.steps[2].setWeight`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Joins problems into one condition message.
pub fn message(problems: &[Invalid]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses `30s`, `5m`, `1h 30m` (humantime). A bare number is seconds, as in Argo Rollouts.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 30s, 5m"))
}

/// Validates `spec` against the AnalysisTemplates that exist in its namespace.
pub fn validate(spec: &RolloutSpec, templates: &BTreeMap<String, AnalysisTemplateSpec>) -> Vec<Invalid> {
    let mut out = Vec::new();
    fn bad(out: &mut Vec<Invalid>, field: String, reason: &str) {
        out.push(Invalid {
            field,
            reason: reason.to_owned(),
        });
    }
    if spec.deployment_name.trim().is_empty() {
        bad(
            &mut out,
            "spec.deploymentName".into(),
            "is required: the name of the Deployment to release",
        );
    }
    let canary = &spec.strategy.canary;
    if canary.steps.is_empty() {
        bad(
            &mut out,
            "spec.strategy.canary.steps".into(),
            "needs at least one step",
        );
    }
    let mut last_weight: Option<(usize, i32)> = None;
    for (i, step) in canary.steps.iter().enumerate() {
        let path = format!("spec.strategy.canary.steps[{i}]");
        let set = [
            step.set_weight.is_some(),
            step.pause.is_some(),
            step.analysis.is_some(),
            step.approval.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            bad(
                &mut out,
                path.clone(),
                "must have exactly one of setWeight, pause, analysis, approval",
            );
        }
        if let Some(approval) = &step.approval {
            for (j, a) in approval.approvers.iter().enumerate() {
                let name = a.strip_prefix("group:").unwrap_or(a);
                if name.trim().is_empty() || name.contains(',') {
                    bad(
                        &mut out,
                        format!("{path}.approval.approvers[{j}]"),
                        &format!("`{a}` is not a user name or `group:<name>`"),
                    );
                }
            }
        }
        if let Some(w) = step.set_weight {
            if !(0..=100).contains(&w) {
                bad(
                    &mut out,
                    format!("{path}.setWeight"),
                    &format!("{w} is out of range 0–100"),
                );
            } else if let Some((j, prev)) = last_weight
                && w <= prev
            {
                bad(
                    &mut out,
                    format!("{path}.setWeight"),
                    &format!("{w} is not above the weight {prev} of steps[{j}]: weights must increase"),
                );
            }
            last_weight = Some((i, w));
        }
        if let Some(pause) = &step.pause
            && let Some(d) = &pause.duration
            && let Err(e) = parse_duration(d)
        {
            bad(&mut out, format!("{path}.pause.duration"), &e);
        }
        if let Some(analysis) = &step.analysis {
            out.extend(validate_analysis(
                &format!("{path}.analysis"),
                analysis,
                templates,
            ));
        }
    }
    if let Some(analysis) = &canary.analysis {
        out.extend(validate_analysis(
            "spec.strategy.canary.analysis",
            analysis,
            templates,
        ));
    }
    let (_, problems) =
        crate::freeze::parse(&spec.freeze_windows, "spec.freezeWindows", "spec.freezeWindows");
    out.extend(problems);
    out
}

pub fn validate_analysis(
    path: &str,
    analysis: &AnalysisRef,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
) -> Vec<Invalid> {
    let mut out = Vec::new();
    if analysis.templates.is_empty() && analysis.inline.is_none() {
        out.push(Invalid {
            field: path.to_owned(),
            reason: "needs templates or inline metrics".into(),
        });
    }
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    for (i, t) in analysis.templates.iter().enumerate() {
        let tpath = format!("{path}.templates[{i}].templateName");
        match templates.get(&t.template_name) {
            None => out.push(Invalid {
                field: tpath,
                reason: format!(
                    "AnalysisTemplate `{}` does not exist in this namespace",
                    t.template_name
                ),
            }),
            Some(template) => {
                for (m, metric) in template.metrics.iter().enumerate() {
                    let mpath = format!(
                        "{tpath} → AnalysisTemplate {}: spec.metrics[{m}]",
                        t.template_name
                    );
                    check_unique(&mut out, &mut names, metric, &mpath);
                    out.extend(validate_metric(&mpath, metric));
                }
                if template.metrics.is_empty() {
                    out.push(Invalid {
                        field: tpath,
                        reason: "the template has no metrics".into(),
                    });
                }
            }
        }
    }
    if let Some(inline) = &analysis.inline {
        if inline.metrics.is_empty() {
            out.push(Invalid {
                field: format!("{path}.inline.metrics"),
                reason: "needs at least one metric".into(),
            });
        }
        for (m, metric) in inline.metrics.iter().enumerate() {
            let mpath = format!("{path}.inline.metrics[{m}]");
            check_unique(&mut out, &mut names, metric, &mpath);
            out.extend(validate_metric(&mpath, metric));
        }
    }
    out
}

fn check_unique<'a>(
    out: &mut Vec<Invalid>,
    names: &mut BTreeMap<&'a str, String>,
    metric: &'a Metric,
    path: &str,
) {
    if let Some(first) = names.insert(&metric.name, path.to_owned()) {
        out.push(Invalid {
            field: format!("{path}.name"),
            reason: format!(
                "`{}` is also the name of {first}; metric names must be unique",
                metric.name
            ),
        });
    }
}

/// Checks one metric (also used to validate AnalysisTemplates on their own).
pub fn validate_metric(path: &str, metric: &Metric) -> Vec<Invalid> {
    let mut out = Vec::new();
    let mut bad = |field: &str, reason: String| {
        out.push(Invalid {
            field: format!("{path}.{field}"),
            reason,
        })
    };
    if metric.name.trim().is_empty() {
        bad("name", "is required".into());
    }
    for (field, value) in [
        ("interval", &metric.interval),
        ("initialDelay", &metric.initial_delay),
    ] {
        if let Some(v) = value
            && let Err(e) = parse_duration(v)
        {
            bad(field, e);
        }
    }
    if let Some(0) = metric.count {
        bad("count", "must be at least 1".into());
    }
    if let Some(limit) = metric.failure_limit
        && limit < -1
    {
        bad(
            "failureLimit",
            format!("{limit} is below -1 (-1 disables the limit)"),
        );
    }
    let p = &metric.provider;
    let set = [
        p.prometheus.is_some(),
        p.scrape.is_some(),
        p.ledger_invariants.is_some(),
        p.payment_success_rate.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        bad(
            "provider",
            "must have exactly one of prometheus, scrape, ledgerInvariants, paymentSuccessRate".into(),
        );
    }
    if let Some(prom) = &p.prometheus {
        match prom.address.as_deref().map(str::trim) {
            None | Some("") => bad(
                "provider.prometheus.address",
                "is required: the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090".into(),
            ),
            Some(a) if !(a.starts_with("http://") || a.starts_with("https://")) => bad(
                "provider.prometheus.address",
                format!("`{a}` must start with http:// or https://"),
            ),
            Some(_) => {}
        }
        if prom.query.trim().is_empty() {
            bad("provider.prometheus.query", "is required".into());
        }
        match (prom.min, prom.max) {
            (None, None) => bad(
                "provider.prometheus",
                "needs min or max: without a threshold every measurement would be inconclusive".into(),
            ),
            (Some(min), Some(max)) if min > max => {
                bad("provider.prometheus.min", format!("{min} is above max {max}"))
            }
            _ => {}
        }
    }
    if let Some(scrape) = &p.scrape {
        if let Some(codes) = &scrape.failure_codes {
            check_codes(&mut bad, "provider.scrape.failureCodes", codes);
        }
        if let Some(judge) = &scrape.judge {
            if let Some(c) = judge.confidence
                && !(c > 0.5 && c < 1.0)
            {
                bad(
                    "provider.scrape.judge.confidence",
                    format!("{c} must be in (0.5, 1)"),
                );
            }
            if let Some(0) = judge.min_samples {
                bad("provider.scrape.judge.minSamples", "must be at least 1".into());
            }
            for (field, v) in [
                ("maxErrorRateIncrease", judge.max_error_rate_increase),
                ("minSuccessRate", judge.min_success_rate),
                ("latencyMinEffect", judge.latency_min_effect),
            ] {
                if let Some(v) = v
                    && !(0.0..=1.0).contains(&v)
                {
                    bad(
                        &format!("provider.scrape.judge.{field}"),
                        format!("{v} must be in [0, 1]"),
                    );
                }
            }
        }
        if let Some(path) = &scrape.path
            && !path.starts_with('/')
        {
            bad("provider.scrape.path", format!("`{path}` must start with /"));
        }
    }
    if let Some(ledger) = &p.ledger_invariants {
        match ledger.address.as_deref().map(str::trim) {
            None | Some("") => bad(
                "provider.ledgerInvariants.address",
                "is required, e.g. http://accounting:50051".into(),
            ),
            Some(a) if !(a.starts_with("http://") || a.starts_with("https://")) => bad(
                "provider.ledgerInvariants.address",
                format!("`{a}` must start with http:// or https://"),
            ),
            Some(_) => {}
        }
    }
    if let Some(pay) = &p.payment_success_rate {
        if pay.selector.is_empty() {
            bad(
                "provider.paymentSuccessRate.selector",
                "is required: the labels of the gateway pods".into(),
            );
        }
        if let Some(v) = pay.min_success_rate
            && !(0.0..=1.0).contains(&v)
        {
            bad(
                "provider.paymentSuccessRate.minSuccessRate",
                format!("{v} must be in [0, 1]"),
            );
        }
        if let Some(codes) = &pay.failure_codes {
            check_codes(&mut bad, "provider.paymentSuccessRate.failureCodes", codes);
        }
    }
    out
}

fn check_codes(bad: &mut impl FnMut(&str, String), field: &str, codes: &[String]) {
    for (i, code) in codes.iter().enumerate() {
        if !GRPC_CODES.contains(&code.to_ascii_uppercase().as_str()) {
            bad(
                &format!("{field}[{i}]"),
                format!("`{code}` is not a gRPC status code name (e.g. UNAVAILABLE)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CanaryStep, PauseStep, PrometheusProvider, Provider, ScrapeProvider, TemplateRef};

    fn weight(w: i32) -> CanaryStep {
        CanaryStep {
            set_weight: Some(w),
            ..Default::default()
        }
    }

    fn spec(steps: Vec<CanaryStep>) -> RolloutSpec {
        let mut s = RolloutSpec {
            deployment_name: "accounting".into(),
            ..Default::default()
        };
        s.strategy.canary.steps = steps;
        s
    }

    fn fields(problems: &[Invalid]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    fn prom_metric(address: Option<&str>) -> Metric {
        Metric {
            name: "success".into(),
            provider: Provider {
                prometheus: Some(PrometheusProvider {
                    address: address.map(Into::into),
                    query: "up".into(),
                    min: Some(1.0),
                    max: None,
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_good_spec_is_valid() {
        let pause = CanaryStep {
            pause: Some(PauseStep {
                duration: Some("30s".into()),
            }),
            ..Default::default()
        };
        let s = spec(vec![weight(10), pause, weight(50), weight(100)]);
        assert_eq!(validate(&s, &BTreeMap::new()), vec![]);
    }

    #[test]
    fn weights_out_of_range_name_the_step() {
        let p = validate(&spec(vec![weight(10), weight(150)]), &BTreeMap::new());
        assert_eq!(fields(&p), ["spec.strategy.canary.steps[1].setWeight"]);
        assert!(p[0].reason.contains("out of range"), "{}", p[0]);
        let p = validate(&spec(vec![weight(-5)]), &BTreeMap::new());
        assert_eq!(fields(&p), ["spec.strategy.canary.steps[0].setWeight"]);
    }

    #[test]
    fn weights_must_increase() {
        let p = validate(&spec(vec![weight(20), weight(20), weight(10)]), &BTreeMap::new());
        assert_eq!(
            fields(&p),
            [
                "spec.strategy.canary.steps[1].setWeight",
                "spec.strategy.canary.steps[2].setWeight"
            ]
        );
        assert!(p[0].reason.contains("must increase"), "{}", p[0]);
    }

    #[test]
    fn a_step_needs_exactly_one_kind() {
        let both = CanaryStep {
            set_weight: Some(10),
            pause: Some(PauseStep::default()),
            ..Default::default()
        };
        let p = validate(&spec(vec![both, CanaryStep::default()]), &BTreeMap::new());
        assert_eq!(
            fields(&p),
            ["spec.strategy.canary.steps[0]", "spec.strategy.canary.steps[1]"]
        );
    }

    #[test]
    fn missing_deployment_name_and_bad_duration() {
        let mut s = spec(vec![CanaryStep {
            pause: Some(PauseStep {
                duration: Some("soon".into()),
            }),
            ..Default::default()
        }]);
        s.deployment_name = String::new();
        let p = validate(&s, &BTreeMap::new());
        assert_eq!(
            fields(&p),
            [
                "spec.deploymentName",
                "spec.strategy.canary.steps[0].pause.duration"
            ]
        );
    }

    #[test]
    fn unknown_analysis_template_is_named() {
        let step = CanaryStep {
            analysis: Some(AnalysisRef {
                templates: vec![TemplateRef {
                    template_name: "nope".into(),
                }],
                inline: None,
            }),
            ..Default::default()
        };
        let p = validate(&spec(vec![weight(10), step]), &BTreeMap::new());
        assert_eq!(
            fields(&p),
            ["spec.strategy.canary.steps[1].analysis.templates[0].templateName"]
        );
        assert!(p[0].reason.contains("`nope` does not exist"), "{}", p[0]);
    }

    #[test]
    fn promql_without_address_is_invalid_inline_and_in_templates() {
        let inline = AnalysisRef {
            inline: Some(AnalysisTemplateSpec {
                metrics: vec![prom_metric(None)],
            }),
            ..Default::default()
        };
        let mut s = spec(vec![weight(10)]);
        s.strategy.canary.analysis = Some(inline);
        let p = validate(&s, &BTreeMap::new());
        assert_eq!(
            fields(&p),
            ["spec.strategy.canary.analysis.inline.metrics[0].provider.prometheus.address"]
        );

        let templates = BTreeMap::from([(
            "success".to_owned(),
            AnalysisTemplateSpec {
                metrics: vec![prom_metric(Some("prometheus:9090"))],
            },
        )]);
        let step = CanaryStep {
            analysis: Some(AnalysisRef {
                templates: vec![TemplateRef {
                    template_name: "success".into(),
                }],
                inline: None,
            }),
            ..Default::default()
        };
        let p = validate(&spec(vec![step]), &templates);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].field
                .ends_with("AnalysisTemplate success: spec.metrics[0].provider.prometheus.address"),
            "{}",
            p[0]
        );
        assert!(p[0].reason.contains("http://"), "{}", p[0]);
    }

    #[test]
    fn provider_and_judge_settings_are_checked() {
        let mut metric = prom_metric(Some("http://p:9090"));
        metric.provider.scrape = Some(ScrapeProvider::default());
        let p = validate_metric("m", &metric);
        assert_eq!(fields(&p), ["m.provider"]);

        let scrape = ScrapeProvider {
            failure_codes: Some(vec!["UNAVAILABLE".into(), "BROKEN".into()]),
            judge: Some(crate::crd::JudgeSpec {
                confidence: Some(1.5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let metric = Metric {
            name: "errors".into(),
            failure_limit: Some(-2),
            provider: Provider {
                scrape: Some(scrape),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = validate_metric("m", &metric);
        assert_eq!(
            fields(&p),
            [
                "m.failureLimit",
                "m.provider.scrape.failureCodes[1]",
                "m.provider.scrape.judge.confidence"
            ]
        );
    }

    #[test]
    fn duplicate_metric_names_are_rejected() {
        let inline = AnalysisRef {
            inline: Some(AnalysisTemplateSpec {
                metrics: vec![prom_metric(Some("http://p")), prom_metric(Some("http://p"))],
            }),
            ..Default::default()
        };
        let step = CanaryStep {
            analysis: Some(inline),
            ..Default::default()
        };
        let p = validate(&spec(vec![step]), &BTreeMap::new());
        assert_eq!(
            fields(&p),
            ["spec.strategy.canary.steps[0].analysis.inline.metrics[1].name"]
        );
    }

    #[test]
    fn freeze_windows_and_approvers_name_the_field() {
        use crate::crd::{ApprovalStep, DateRange, FreezeWindow, TimeRange};
        let gate = CanaryStep {
            approval: Some(ApprovalStep {
                require_different_person: true,
                approvers: vec!["carol".into(), "group:".into(), "a,b".into()],
            }),
            ..Default::default()
        };
        let mut s = spec(vec![weight(10), gate, weight(50)]);
        s.freeze_windows = vec![
            FreezeWindow {
                name: "cutoff".into(),
                time_zone: Some("Asia/Shanghai".into()),
                daily: Some(TimeRange {
                    start: "22:30".into(),
                    end: "23:30".into(),
                }),
                ..Default::default()
            },
            FreezeWindow {
                name: "tz".into(),
                time_zone: Some("Asia/Beijing".into()),
                daily: Some(TimeRange {
                    start: "22:30".into(),
                    end: "23:30".into(),
                }),
                ..Default::default()
            },
            FreezeWindow {
                name: "holiday".into(),
                dates: Some(DateRange {
                    start: "2026-10-07".into(),
                    end: "2026-10-01".into(),
                }),
                ..Default::default()
            },
        ];
        let problems = validate(&s, &BTreeMap::new());
        assert_eq!(
            fields(&problems),
            [
                "spec.strategy.canary.steps[1].approval.approvers[1]",
                "spec.strategy.canary.steps[1].approval.approvers[2]",
                "spec.freezeWindows[1].timeZone",
                "spec.freezeWindows[2].dates.end",
            ],
            "{problems:?}"
        );
        // An approval step with another kind is not one step.
        let mut both = weight(20);
        both.approval = Some(ApprovalStep::default());
        assert_eq!(
            fields(&validate(&spec(vec![both]), &BTreeMap::new())),
            ["spec.strategy.canary.steps[0]"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("five").is_err());
    }
}

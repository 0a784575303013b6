//! From a YAML document to a validated [`Policy`], or every error found, each with its line,
//! column and dotted path. YAML syntax comes from `marked-yaml` (spans on every node); this
//! module walks the marked tree so that it can keep going after an error and report them all.

use std::collections::{HashMap, HashSet};

use marked_yaml::{LoaderOptions, Node, Span, types::MarkedMappingNode};
use payplane_core::Currency;
use sha2::{Digest, Sha256};

use super::policy::{
    BinRange, Channel, Conditions, Elimination, Fee, Method, Policy, RouteTarget, Rule, SuccessRate,
    TimeWindow,
};

/// One problem in a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based; 0 when not tied to a place.
    pub line: u32,
    pub column: u32,
    /// Dotted path, e.g. `rules[2].route.split.unionpay`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.path.is_empty()) {
            (0, true) => write!(f, "{}", self.message),
            (0, false) => write!(f, "{}: {}", self.path, self.message),
            (_, true) => write!(f, "{}:{}: {}", self.line, self.column, self.message),
            (_, false) => write!(
                f,
                "{}:{}: {}: {}",
                self.line, self.column, self.path, self.message
            ),
        }
    }
}

/// The version of a document: the first 12 hex digits of the SHA-256 of its bytes, so every
/// replica reading the same ConfigMap reports the same version.
pub fn version_of(yaml: &str) -> String {
    let digest = Sha256::digest(yaml.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Parses and validates a policy document.
pub fn parse_policy(yaml: &str) -> Result<Policy, Vec<PolicyError>> {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .toplevel_mapping();
    let root = match marked_yaml::parse_yaml_with_options(0, yaml, options) {
        Ok(node) => node,
        Err(e) => return Err(vec![load_error(&e)]),
    };
    let mut cx = Cx::default();
    let policy = cx.policy(&root);
    cx.errors.sort_by_key(|e| (e.line, e.column));
    match policy {
        Some(policy) if cx.errors.is_empty() => Ok(policy),
        _ => Err(cx.errors),
    }
}

fn load_error(e: &marked_yaml::LoadError) -> PolicyError {
    use marked_yaml::LoadError as L;
    let (marker, message) = match e {
        L::TopLevelMustBeMapping(m) => (
            Some(*m),
            "the document must be a mapping (channels, rules, ...)".to_owned(),
        ),
        L::TopLevelMustBeSequence(m) => (Some(*m), "the document must be a sequence".to_owned()),
        L::UnexpectedAnchor(m) => (
            Some(*m),
            "anchors and aliases are not supported in a policy".to_owned(),
        ),
        L::MappingKeyMustBeScalar(m) => (Some(*m), "mapping keys must be plain scalars".to_owned()),
        L::UnexpectedTag(m) => (Some(*m), "YAML tags are not supported in a policy".to_owned()),
        L::ScanError(m, scan) => (Some(*m), format!("invalid YAML: {}", scan.info())),
        L::DuplicateKey(inner) => {
            let first = inner.prev_key.span().start().map(|m| m.line()).unwrap_or(0);
            (
                inner.key.span().start().copied(),
                format!(
                    "duplicate key `{}` (first defined on line {first})",
                    inner.key.as_str()
                ),
            )
        }
    };
    let (line, column) = marker
        .map(|m| (m.line() as u32, m.column() as u32))
        .unwrap_or((0, 0));
    PolicyError {
        line,
        column,
        path: String::new(),
        message,
    }
}

fn position(span: &Span) -> (u32, u32) {
    span.start()
        .map(|m| (m.line() as u32, m.column() as u32))
        .unwrap_or((0, 0))
}

const TOP_KEYS: &[&str] = &["time_zone", "channels", "rules", "default_route", "success_rate"];
const CHANNEL_KEYS: &[&str] = &[
    "id",
    "name",
    "currencies",
    "methods",
    "min_amount",
    "max_amount",
    "fee",
    "enabled",
];
const FEE_KEYS: &[&str] = &["fixed", "rate_bps"];
const RULE_KEYS: &[&str] = &["name", "priority", "when", "route", "success_rate", "rules"];
const WHEN_KEYS: &[&str] = &[
    "currencies",
    "methods",
    "min_amount",
    "max_amount",
    "card_bins",
    "merchants",
    "scenes",
    "time_of_day",
];
const ROUTE_KEYS: &[&str] = &["fixed", "priority", "split"];
const TIME_KEYS: &[&str] = &["from", "to"];
const SR_KEYS: &[&str] = &[
    "enabled",
    "window",
    "bucket_min_samples",
    "exploration_percent",
    "prior_success_rate",
    "prior_weight",
    "elimination",
];
const ELIM_KEYS: &[&str] = &[
    "enabled",
    "min_gap",
    "min_success_rate",
    "min_samples",
    "probe_interval_ms",
    "recovery_samples",
];

/// BIN ranges of a rule with where each was written.
type BinSpans = Vec<(BinRange, Span, String)>;

/// A channel reference waiting for the registry to be complete.
struct ChannelRef {
    id: String,
    span: Span,
    path: String,
}

/// Where a rule's BIN ranges were, for the overlap check among siblings.
struct BinSite {
    rule: String,
    line: u32,
    priority: i32,
    currencies: Option<Vec<String>>,
    methods: Option<Vec<Method>>,
    ranges: Vec<(BinRange, Span, String)>,
}

#[derive(Default)]
struct Cx {
    errors: Vec<PolicyError>,
    channel_ids: HashMap<String, usize>,
    channel_lines: HashMap<String, u32>,
    rule_names: HashMap<String, u32>,
}

impl Cx {
    fn error(&mut self, span: &Span, path: &str, message: impl Into<String>) {
        let (line, column) = position(span);
        self.errors.push(PolicyError {
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn mapping<'a>(&mut self, node: &'a Node, path: &str, allowed: &[&str]) -> Option<&'a MarkedMappingNode> {
        let Some(map) = node.as_mapping() else {
            self.error(node.span(), path, "expected a mapping");
            return None;
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    key.span(),
                    &join(path, key.as_str()),
                    format!(
                        "unknown field `{}`; expected one of: {}",
                        key.as_str(),
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(map)
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match node.as_scalar() {
            Some(s) if !s.as_str().is_empty() => Some(s.as_str().to_owned()),
            Some(_) => {
                self.error(node.span(), path, "must not be empty");
                None
            }
            None => {
                self.error(node.span(), path, "expected a string");
                None
            }
        }
    }

    fn identifier(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.string(node, path)?;
        if s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            self.error(
                node.span(),
                path,
                format!("`{s}` must be 1 to 64 characters of letters, digits, '.', '_' or '-'"),
            );
            return None;
        }
        Some(s)
    }

    fn integer(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        let value = node
            .as_scalar()
            .and_then(|s| s.as_str().replace('_', "").parse::<i64>().ok());
        match value {
            Some(v) if (min..=max).contains(&v) => Some(v),
            Some(v) => {
                self.error(node.span(), path, format!("{v} is out of range {min}..={max}"));
                None
            }
            None => {
                self.error(node.span(), path, "expected an integer");
                None
            }
        }
    }

    fn number(&mut self, node: &Node, path: &str, min: f64, max: f64) -> Option<f64> {
        let value = node
            .as_scalar()
            .and_then(|s| s.as_str().parse::<f64>().ok())
            .filter(|v| v.is_finite());
        match value {
            Some(v) if (min..=max).contains(&v) => Some(v),
            Some(v) => {
                self.error(node.span(), path, format!("{v} is out of range {min}..={max}"));
                None
            }
            None => {
                self.error(node.span(), path, "expected a number");
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        let value = node.as_scalar().and_then(|s| s.as_bool());
        if value.is_none() {
            self.error(node.span(), path, "expected true or false");
        }
        value
    }

    fn list<'a>(&mut self, node: &'a Node, path: &str) -> Option<Vec<(&'a Node, String)>> {
        match node.as_sequence() {
            Some(seq) if seq.is_empty() => {
                self.error(node.span(), path, "must not be empty");
                None
            }
            Some(seq) => Some(
                seq.iter()
                    .enumerate()
                    .map(|(i, n)| (n, format!("{path}[{i}]")))
                    .collect(),
            ),
            None => {
                self.error(node.span(), path, "expected a list");
                None
            }
        }
    }

    fn currencies(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.list(node, path)?;
        let mut out = Vec::new();
        for (n, p) in items {
            let Some(code) = self.string(n, &p) else { continue };
            match code.parse::<Currency>() {
                Ok(_) if out.contains(&code) => self.error(n.span(), &p, format!("{code} is listed twice")),
                Ok(_) => out.push(code),
                Err(e) => self.error(n.span(), &p, e.to_string()),
            }
        }
        Some(out)
    }

    fn methods(&mut self, node: &Node, path: &str) -> Option<Vec<Method>> {
        let items = self.list(node, path)?;
        let mut out = Vec::new();
        for (n, p) in items {
            let Some(name) = self.string(n, &p) else { continue };
            match Method::from_name(&name) {
                Some(m) if out.contains(&m) => self.error(n.span(), &p, format!("{name} is listed twice")),
                Some(m) => out.push(m),
                None => {
                    let known: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                    self.error(
                        n.span(),
                        &p,
                        format!("unknown method `{name}`; expected one of: {}", known.join(", ")),
                    )
                }
            }
        }
        Some(out)
    }

    fn identifiers(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.list(node, path)?;
        Some(
            items
                .into_iter()
                .filter_map(|(n, p)| self.identifier(n, &p))
                .collect(),
        )
    }

    fn policy(&mut self, root: &Node) -> Option<Policy> {
        let map = self.mapping(root, "", TOP_KEYS)?;

        let time_zone = match map.get_node("time_zone") {
            Some(n) => self
                .string(n, "time_zone")
                .and_then(|s| match s.parse::<chrono_tz::Tz>() {
                    Ok(tz) => Some(tz),
                    Err(_) => {
                        self.error(
                            n.span(),
                            "time_zone",
                            format!("unknown time zone `{s}`; use an IANA name like Asia/Shanghai"),
                        );
                        None
                    }
                }),
            None => Some(chrono_tz::UTC),
        };

        let mut channels = Vec::new();
        match map.get_node("channels") {
            Some(n) => {
                for (item, path) in self.list(n, "channels").unwrap_or_default() {
                    if let Some(c) = self.channel(item, &path) {
                        if let Some(first) = self.channel_lines.get(&c.id).copied() {
                            self.error(
                                item.span(),
                                &join(&path, "id"),
                                format!("channel `{}` is defined twice (first on line {first})", c.id),
                            );
                        } else {
                            self.channel_lines.insert(c.id.clone(), position(item.span()).0);
                            channels.push(c);
                        }
                    }
                }
            }
            None => self.error(root.span(), "channels", "is required: the channel registry"),
        }
        // Positions in `channels`, now that the registry is known.
        let index: HashMap<String, usize> = channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        self.channel_ids = index.clone();

        let success_rate = match map.get_node("success_rate") {
            Some(n) => self.success_rate(n, "success_rate"),
            None => Some(SuccessRate::default()),
        };
        let sr_default = success_rate.as_ref().map(|s| s.enabled).unwrap_or(true);

        let mut refs = Vec::new();
        let mut rules = Vec::new();
        if let Some(n) = map.get_node("rules") {
            match n.as_sequence() {
                Some(seq) => {
                    let mut sites = Vec::new();
                    for (i, item) in seq.iter().enumerate() {
                        let path = format!("rules[{i}]");
                        let (rule, site) = self.rule(item, &path, sr_default, &mut refs);
                        sites.extend(site);
                        rules.extend(rule);
                    }
                    self.check_bin_overlaps(&sites);
                }
                None => self.error(n.span(), "rules", "expected a list of rules"),
            }
        }

        let default_route = match map.get_node("default_route") {
            Some(n) => self.route(n, "default_route", &mut refs),
            None => {
                self.error(
                    root.span(),
                    "default_route",
                    "is required: the route used when no rule matches",
                );
                None
            }
        };

        // Every channel a route names must be in the registry.
        for r in &refs {
            if !index.contains_key(&r.id) {
                let known: Vec<_> = channels.iter().map(|c| c.id.as_str()).collect();
                self.error(
                    &r.span,
                    &r.path,
                    format!(
                        "unknown channel `{}`; the registry has: {}",
                        r.id,
                        known.join(", ")
                    ),
                );
            }
        }

        let mut policy = Policy {
            time_zone: time_zone?,
            channels,
            rules,
            default_route: default_route?,
            success_rate: success_rate?,
        };
        resolve_rules(&mut policy.rules);
        Some(policy)
    }

    fn channel(&mut self, node: &Node, path: &str) -> Option<Channel> {
        let map = self.mapping(node, path, CHANNEL_KEYS)?;
        let id = self
            .required(map, node, path, "id")
            .and_then(|n| self.identifier(n, &join(path, "id")));
        let display_name = match map.get_node("name") {
            Some(n) => self.string(n, &join(path, "name")),
            None => id.clone(),
        };
        let currencies = self
            .required(map, node, path, "currencies")
            .and_then(|n| self.currencies(n, &join(path, "currencies")));
        let methods = self
            .required(map, node, path, "methods")
            .and_then(|n| self.methods(n, &join(path, "methods")));
        let min_amount = match map.get_node("min_amount") {
            Some(n) => self.integer(n, &join(path, "min_amount"), 1, i64::MAX),
            None => Some(1),
        };
        let max_amount = match map.get_node("max_amount") {
            Some(n) => self.integer(n, &join(path, "max_amount"), 1, i64::MAX),
            None => Some(i64::MAX),
        };
        if let (Some(lo), Some(hi), Some(n)) = (min_amount, max_amount, map.get_node("max_amount"))
            && hi < lo
        {
            self.error(
                n.span(),
                &join(path, "max_amount"),
                format!("{hi} is below min_amount {lo}"),
            );
        }
        let fee = match map.get_node("fee") {
            Some(n) => self.fee(n, &join(path, "fee")),
            None => Some(Fee::default()),
        };
        let enabled = match map.get_node("enabled") {
            Some(n) => self.boolean(n, &join(path, "enabled")),
            None => Some(true),
        };
        Some(Channel {
            id: id?,
            display_name: display_name?,
            currencies: currencies?,
            methods: methods?,
            min_amount: min_amount?,
            max_amount: max_amount?,
            fee: fee?,
            enabled: enabled?,
        })
    }

    fn required<'a>(
        &mut self,
        map: &'a MarkedMappingNode,
        node: &Node,
        path: &str,
        key: &str,
    ) -> Option<&'a Node> {
        let found = map.get_node(key);
        if found.is_none() {
            self.error(node.span(), &join(path, key), "is required");
        }
        found
    }

    fn fee(&mut self, node: &Node, path: &str) -> Option<Fee> {
        let map = self.mapping(node, path, FEE_KEYS)?;
        let fixed = match map.get_node("fixed") {
            Some(n) => self.integer(n, &join(path, "fixed"), 0, 1_000_000_000),
            None => Some(0),
        };
        let rate = match map.get_node("rate_bps") {
            Some(n) => self.integer(n, &join(path, "rate_bps"), 0, 10_000),
            None => Some(0),
        };
        Some(Fee {
            fixed_minor_units: fixed?,
            rate_bps: u32::try_from(rate?).ok()?,
        })
    }

    fn success_rate(&mut self, node: &Node, path: &str) -> Option<SuccessRate> {
        let map = self.mapping(node, path, SR_KEYS)?;
        let d = SuccessRate::default();
        let mut ok = true;
        let mut sr = d.clone();
        macro_rules! field {
            ($key:literal, $target:expr, $read:expr) => {
                if let Some(n) = map.get_node($key) {
                    match $read(self, n, &join(path, $key)) {
                        Some(v) => $target = v,
                        None => ok = false,
                    }
                }
            };
        }
        field!("enabled", sr.enabled, |cx: &mut Self, n: &Node, p: &str| cx
            .boolean(n, p));
        field!("window", sr.window, |cx: &mut Self, n: &Node, p: &str| cx
            .integer(n, p, 10, 10_000)
            .map(|v| v as u32));
        field!(
            "bucket_min_samples",
            sr.bucket_min_samples,
            |cx: &mut Self, n: &Node, p: &str| cx.integer(n, p, 1, 10_000).map(|v| v as u32)
        );
        field!(
            "exploration_percent",
            sr.exploration_percent,
            |cx: &mut Self, n: &Node, p: &str| cx.number(n, p, 0.0, 50.0)
        );
        field!(
            "prior_success_rate",
            sr.prior_success_rate,
            |cx: &mut Self, n: &Node, p: &str| cx.number(n, p, 0.0, 1.0)
        );
        field!(
            "prior_weight",
            sr.prior_weight,
            |cx: &mut Self, n: &Node, p: &str| cx.number(n, p, 0.0, 1_000.0)
        );
        if let Some(n) = map.get_node("elimination") {
            let p = join(path, "elimination");
            match self.elimination(n, &p, &d.elimination) {
                Some(e) => sr.elimination = e,
                None => ok = false,
            }
        }
        if ok && sr.bucket_min_samples > sr.window {
            let span = map
                .get_node("bucket_min_samples")
                .map(|n| *n.span())
                .unwrap_or_else(|| *node.span());
            self.error(
                &span,
                &join(path, "bucket_min_samples"),
                format!("{} exceeds the window of {}", sr.bucket_min_samples, sr.window),
            );
            ok = false;
        }
        if ok && sr.elimination.min_samples > sr.window {
            self.error(
                node.span(),
                &join(path, "elimination.min_samples"),
                format!(
                    "{} exceeds the window of {}",
                    sr.elimination.min_samples, sr.window
                ),
            );
            ok = false;
        }
        ok.then_some(sr)
    }

    fn elimination(&mut self, node: &Node, path: &str, d: &Elimination) -> Option<Elimination> {
        let map = self.mapping(node, path, ELIM_KEYS)?;
        let mut e = d.clone();
        let mut ok = true;
        macro_rules! field {
            ($key:literal, $target:expr, $read:expr) => {
                if let Some(n) = map.get_node($key) {
                    match $read(self, n, &join(path, $key)) {
                        Some(v) => $target = v,
                        None => ok = false,
                    }
                }
            };
        }
        field!("enabled", e.enabled, |cx: &mut Self, n: &Node, p: &str| cx
            .boolean(n, p));
        field!("min_gap", e.min_gap, |cx: &mut Self, n: &Node, p: &str| cx
            .number(n, p, 0.0, 1.0));
        field!(
            "min_success_rate",
            e.min_success_rate,
            |cx: &mut Self, n: &Node, p: &str| cx.number(n, p, 0.0, 1.0)
        );
        field!(
            "min_samples",
            e.min_samples,
            |cx: &mut Self, n: &Node, p: &str| cx.integer(n, p, 1, 10_000).map(|v| v as u32)
        );
        field!(
            "probe_interval_ms",
            e.probe_interval_ms,
            |cx: &mut Self, n: &Node, p: &str| cx.integer(n, p, 10, 3_600_000).map(|v| v as u64)
        );
        field!(
            "recovery_samples",
            e.recovery_samples,
            |cx: &mut Self, n: &Node, p: &str| cx.integer(n, p, 1, 1_000).map(|v| v as u32)
        );
        ok.then_some(e)
    }

    fn rule(
        &mut self,
        node: &Node,
        path: &str,
        sr_default: bool,
        refs: &mut Vec<ChannelRef>,
    ) -> (Option<Rule>, Option<BinSite>) {
        let Some(map) = self.mapping(node, path, RULE_KEYS) else {
            return (None, None);
        };
        let name = self
            .required(map, node, path, "name")
            .and_then(|n| self.identifier(n, &join(path, "name")));
        if let (Some(name), Some(n)) = (&name, map.get_node("name")) {
            let line = position(n.span()).0;
            if let Some(first) = self.rule_names.insert(name.clone(), line) {
                self.error(
                    n.span(),
                    &join(path, "name"),
                    format!("rule name `{name}` is used twice (first on line {first})"),
                );
            }
        }
        let priority = match map.get_node("priority") {
            Some(n) => self
                .integer(n, &join(path, "priority"), -1_000_000, 1_000_000)
                .map(|v| v as i32),
            None => Some(0),
        };
        let when = match map.get_node("when") {
            Some(n) => self.conditions(n, &join(path, "when")),
            None => Some((Conditions::default(), Vec::new())),
        };
        let route = match map.get_node("route") {
            Some(n) => self.route(n, &join(path, "route"), refs).map(Some),
            None => Some(None),
        };
        let success_rate = match map.get_node("success_rate") {
            Some(n) => self.boolean(n, &join(path, "success_rate")),
            None => Some(sr_default),
        };
        let mut children = Vec::new();
        if let Some(n) = map.get_node("rules") {
            let p = join(path, "rules");
            match n.as_sequence() {
                Some(seq) => {
                    let mut sites = Vec::new();
                    for (i, item) in seq.iter().enumerate() {
                        let (rule, site) = self.rule(
                            item,
                            &format!("{p}[{i}]"),
                            success_rate.unwrap_or(sr_default),
                            refs,
                        );
                        sites.extend(site);
                        children.extend(rule);
                    }
                    self.check_bin_overlaps(&sites);
                }
                None => self.error(n.span(), &p, "expected a list of rules"),
            }
        }
        if map.get_node("route").is_none() && map.get_node("rules").is_none() {
            self.error(
                node.span(),
                path,
                "a rule needs a `route`, nested `rules`, or both",
            );
        }
        // The BIN site is checked even when the rule has other errors, so all are reported.
        let site = when
            .as_ref()
            .filter(|(_, bins)| !bins.is_empty())
            .map(|(c, bins)| BinSite {
                rule: name.clone().unwrap_or_default(),
                line: position(node.span()).0,
                priority: priority.unwrap_or(0),
                currencies: c.currencies.clone(),
                methods: c.methods.clone(),
                ranges: bins.clone(),
            });
        let rule = (|| {
            let (when, _) = when?;
            Some(Rule {
                name: name?,
                priority: priority?,
                when,
                route: route?,
                success_rate: success_rate?,
                rules: children,
            })
        })();
        (rule, site)
    }

    fn conditions(&mut self, node: &Node, path: &str) -> Option<(Conditions, BinSpans)> {
        let map = self.mapping(node, path, WHEN_KEYS)?;
        let mut c = Conditions::default();
        let mut ok = true;
        let mut bins = Vec::new();
        if let Some(n) = map.get_node("currencies") {
            c.currencies = self.currencies(n, &join(path, "currencies"));
            ok &= c.currencies.is_some();
        }
        if let Some(n) = map.get_node("methods") {
            c.methods = self.methods(n, &join(path, "methods"));
            ok &= c.methods.is_some();
        }
        if let Some(n) = map.get_node("min_amount") {
            c.min_amount = self.integer(n, &join(path, "min_amount"), 0, i64::MAX);
            ok &= c.min_amount.is_some();
        }
        if let Some(n) = map.get_node("max_amount") {
            c.max_amount = self.integer(n, &join(path, "max_amount"), 0, i64::MAX);
            ok &= c.max_amount.is_some();
            if let (Some(lo), Some(hi)) = (c.min_amount, c.max_amount)
                && hi < lo
            {
                self.error(
                    n.span(),
                    &join(path, "max_amount"),
                    format!("{hi} is below min_amount {lo}: the rule can never match"),
                );
                ok = false;
            }
        }
        if let Some(n) = map.get_node("card_bins") {
            let p = join(path, "card_bins");
            let mut ranges = Vec::new();
            for (item, ip) in self.list(n, &p).unwrap_or_default() {
                match self.string(item, &ip).map(|s| parse_bin_range(&s)) {
                    Some(Ok(r)) => {
                        ranges.push(r);
                        bins.push((r, *item.span(), ip));
                    }
                    Some(Err(why)) => {
                        self.error(item.span(), &ip, why);
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            ok &= !ranges.is_empty();
            c.card_bins = Some(ranges);
        }
        if let Some(n) = map.get_node("merchants") {
            c.merchants = self.identifiers(n, &join(path, "merchants"));
            ok &= c.merchants.is_some();
        }
        if let Some(n) = map.get_node("scenes") {
            c.scenes = self.identifiers(n, &join(path, "scenes"));
            ok &= c.scenes.is_some();
        }
        if let Some(n) = map.get_node("time_of_day") {
            let p = join(path, "time_of_day");
            c.time_of_day = self.time_window(n, &p);
            ok &= c.time_of_day.is_some();
        }
        ok.then_some((c, bins))
    }

    fn time_window(&mut self, node: &Node, path: &str) -> Option<TimeWindow> {
        let map = self.mapping(node, path, TIME_KEYS)?;
        let read = |cx: &mut Self, key: &str| {
            let n = cx.required(map, node, path, key)?;
            let p = join(path, key);
            let s = cx.string(n, &p)?;
            match parse_hh_mm(&s) {
                Some(m) => Some(m),
                None => {
                    cx.error(
                        n.span(),
                        &p,
                        format!("`{s}` is not a time of day HH:MM (00:00 to 24:00)"),
                    );
                    None
                }
            }
        };
        let from = read(self, "from");
        let to = read(self, "to");
        let (from, to) = (from?, to?);
        if from == to {
            self.error(node.span(), path, "from and to are equal: the window is empty");
            return None;
        }
        Some(TimeWindow {
            from_minute: from,
            to_minute: to,
        })
    }

    fn route(&mut self, node: &Node, path: &str, refs: &mut Vec<ChannelRef>) -> Option<RouteTarget> {
        let map = self.mapping(node, path, ROUTE_KEYS)?;
        let kinds: Vec<&str> = ROUTE_KEYS
            .iter()
            .copied()
            .filter(|k| map.get_node(k).is_some())
            .collect();
        if kinds.len() != 1 {
            self.error(
                node.span(),
                path,
                format!(
                    "a route has exactly one of fixed, priority, split (found {})",
                    if kinds.is_empty() {
                        "none".to_owned()
                    } else {
                        kinds.join(", ")
                    }
                ),
            );
            return None;
        }
        let mut reference = |cx: &mut Self, n: &Node, p: String| -> Option<usize> {
            let id = cx.identifier(n, &p)?;
            let found = cx.channel_ids.get(&id).copied();
            refs.push(ChannelRef {
                id,
                span: *n.span(),
                path: p,
            });
            found
        };
        match kinds[0] {
            "fixed" => {
                let n = map.get_node("fixed")?;
                reference(self, n, join(path, "fixed")).map(RouteTarget::Fixed)
            }
            "priority" => {
                let p = join(path, "priority");
                let items = self.list(map.get_node("priority")?, &p)?;
                let mut out = Vec::new();
                let mut ok = true;
                for (n, ip) in items {
                    match reference(self, n, ip.clone()) {
                        Some(c) if out.contains(&c) => {
                            self.error(n.span(), &ip, "channel listed twice");
                            ok = false;
                        }
                        Some(c) => out.push(c),
                        None => ok = false,
                    }
                }
                ok.then_some(RouteTarget::Priority(out))
            }
            _ => {
                let p = join(path, "split");
                let split_node = map.get_node("split")?;
                let Some(split) = split_node.as_mapping() else {
                    self.error(split_node.span(), &p, "expected a mapping of channel: weight in percent, e.g. {unionpay: 70, netsunion: 30}");
                    return None;
                };
                let mut out = Vec::new();
                let mut ok = true;
                let mut total: i64 = 0;
                for (key, value) in split.iter() {
                    let kp = join(&p, key.as_str());
                    let key_node = Node::Scalar(key.clone());
                    let channel = reference(self, &key_node, kp.clone());
                    let weight = self.integer(value, &kp, 0, 100);
                    if let Some(w) = weight {
                        total += w;
                    }
                    match (channel, weight) {
                        (Some(c), Some(w)) => out.push((c, w as u8)),
                        _ => ok = false,
                    }
                }
                if split.is_empty() {
                    self.error(split_node.span(), &p, "must not be empty");
                    return None;
                }
                if total != 100 && ok {
                    self.error(
                        split_node.span(),
                        &p,
                        format!("weights add up to {total}, not 100"),
                    );
                    ok = false;
                }
                ok.then_some(RouteTarget::Split(out))
            }
        }
    }

    /// Sibling rules whose BIN ranges overlap, with equal priority and conditions that could
    /// both match the same payment, are ambiguous: only document order would decide.
    fn check_bin_overlaps(&mut self, sites: &[BinSite]) {
        for (i, a) in sites.iter().enumerate() {
            for b in &sites[i + 1..] {
                if a.priority != b.priority {
                    continue;
                }
                if disjoint(&a.currencies, &b.currencies) || disjoint(&a.methods, &b.methods) {
                    continue;
                }
                for (ra, _, _) in &a.ranges {
                    for (rb, span, path) in &b.ranges {
                        if ra.overlaps(rb) {
                            self.error(
                                span,
                                path,
                                format!(
                                    "card BIN range {} of rule `{}` overlaps {} of rule `{}` (line {}) at the same priority; give one rule a higher `priority` to say which wins",
                                    rb.describe(),
                                    b.rule,
                                    ra.describe(),
                                    a.rule,
                                    a.line
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn disjoint<T: PartialEq>(a: &Option<Vec<T>>, b: &Option<Vec<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => !a.iter().any(|x| b.contains(x)),
        _ => false,
    }
}

/// Sorts siblings by priority (highest first; stable, so document order breaks ties).
fn resolve_rules(rules: &mut [Rule]) {
    rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
    for r in rules.iter_mut() {
        resolve_rules(&mut r.rules);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `"622200-622299"` or `"4"` (a single prefix); both ends of a range have the same length, 1
/// to 8 digits.
pub fn parse_bin_range(s: &str) -> Result<BinRange, String> {
    let (low, high) = s
        .split_once('-')
        .map(|(a, b)| (a.trim(), b.trim()))
        .unwrap_or((s.trim(), s.trim()));
    let digits_ok = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(low) || !digits_ok(high) {
        return Err(format!(
            "`{s}` is not a BIN prefix or range of 1 to 8 digits, e.g. 622200-622299"
        ));
    }
    if low.len() != high.len() {
        return Err(format!(
            "`{s}`: both ends of a BIN range need the same number of digits"
        ));
    }
    let (lo, hi) = (
        low.parse::<u32>().map_err(|e| e.to_string())?,
        high.parse::<u32>().map_err(|e| e.to_string())?,
    );
    if hi < lo {
        return Err(format!("`{s}`: the range is reversed"));
    }
    Ok(BinRange {
        digits: low.len() as u8,
        low: lo,
        high: hi,
    })
}

fn parse_hh_mm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Every channel id a rule tree refers to must exist; used by tests and by the check tool to
/// count rules.
pub fn count_rules(rules: &[Rule]) -> usize {
    rules.iter().map(|r| 1 + count_rules(&r.rules)).sum()
}

/// Channel ids that no rule and no default route can reach (useful for the check tool).
pub fn unreachable_channels(policy: &Policy) -> Vec<String> {
    fn walk(rules: &[Rule], seen: &mut HashSet<usize>) {
        for r in rules {
            if let Some(t) = &r.route {
                seen.extend(t.channels());
            }
            walk(&r.rules, seen);
        }
    }
    let mut seen: HashSet<usize> = policy.default_route.channels().into_iter().collect();
    walk(&policy.rules, &mut seen);
    policy
        .channels
        .iter()
        .enumerate()
        .filter(|(i, _)| !seen.contains(i))
        .map(|(_, c)| c.id.clone())
        .collect()
}

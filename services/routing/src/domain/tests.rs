//! Tests of the rule tree, the volume split, success-rate routing and the policy validation.

use rand::{SeedableRng, rngs::StdRng};

use super::*;

const DEFAULT_POLICY: &str = include_str!("../../policy/default.yaml");

fn engine(yaml: &str) -> Engine {
    Engine::new(parse_policy(yaml).unwrap_or_else(|e| panic!("{e:#?}")), None)
}

fn input<'a>(amount: i64, currency: &'a str, method: Method) -> RouteInput<'a> {
    RouteInput {
        amount,
        currency,
        method,
        card_bin: "",
        merchant: "m-1",
        scene: "ecommerce",
        excluded: &[],
    }
}

/// 2026-11-22 12:00 in Shanghai.
fn noon() -> Now {
    Now::from_ms(1_795_320_000_000)
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn channel_of(e: &Engine, d: &Decision) -> String {
    e.policy.channels[d.channel].id.clone()
}

#[test]
fn the_default_policy_is_valid() {
    let e = engine(DEFAULT_POLICY);
    assert_eq!(e.policy.channels.len(), 4);
    assert!(parse::unreachable_channels(&e.policy).is_empty());
}

#[test]
fn rule_tree_picks_the_first_matching_rule_by_priority_then_order() {
    let e = engine(DEFAULT_POLICY);
    let mut r = rng();
    // Priority 10 beats the BIN rule written before... after it in the document.
    let big = RouteInput {
        card_bin: "62220012",
        ..input(20_000_000, "CNY", Method::DebitCard)
    };
    let d = e.route(&big, noon(), &mut r).unwrap();
    assert_eq!(
        (d.rule.as_str(), d.strategy, channel_of(&e, &d).as_str()),
        ("large-transfers", Strategy::Priority, "bank-direct")
    );

    let unionpay_card = RouteInput {
        card_bin: "62220012",
        ..input(10_000, "CNY", Method::CreditCard)
    };
    let d = e.route(&unionpay_card, noon(), &mut r).unwrap();
    assert_eq!(d.rule, "unionpay-cards");

    let visa = RouteInput {
        card_bin: "41111111",
        ..input(10_000, "USD", Method::CreditCard)
    };
    let d = e.route(&visa, noon(), &mut r).unwrap();
    assert_eq!(
        (d.rule.as_str(), d.strategy, channel_of(&e, &d).as_str()),
        ("international-cards", Strategy::Fixed, "unionpay")
    );

    let sub = RouteInput {
        scene: "subscription",
        ..input(10_000, "USD", Method::BankTransfer)
    };
    let d = e.route(&sub, noon(), &mut r).unwrap();
    assert_eq!(
        (d.rule.as_str(), channel_of(&e, &d).as_str()),
        ("subscriptions", "bank-direct")
    );

    // Nested: a child rule wins over its parent's own route.
    let d = e
        .route(&input(10_000, "HKD", Method::Wallet), noon(), &mut r)
        .unwrap();
    assert_eq!(d.rule, "hkd-wallets");
    let d = e
        .route(&input(10_000, "HKD", Method::DebitCard), noon(), &mut r)
        .unwrap();
    assert_eq!((d.rule.as_str(), d.strategy), ("hkd", Strategy::VolumeSplit));

    // No rule matches: the default route.
    let d = e
        .route(&input(10_000, "USD", Method::DebitCard), noon(), &mut r)
        .unwrap();
    assert_eq!(d.rule, "default");
    // The fee is fixed + rate: unionpay 38 bps of 100.00 = 0.38.
    assert_eq!(d.fee, 38);
}

#[test]
fn time_of_day_is_read_in_the_policy_time_zone() {
    let e = engine(DEFAULT_POLICY);
    let mut r = rng();
    let qr = input(10_000, "CNY", Method::QrCode);
    // 2026-11-22 15:45 UTC is 23:45 in Shanghai: inside the cut-off window.
    let cutoff = Now::from_ms(1_795_320_000_000 + (11 * 60 + 45) * 60_000);
    let d = e.route(&qr, cutoff, &mut r).unwrap();
    assert_eq!(
        (d.rule.as_str(), channel_of(&e, &d).as_str()),
        ("cny-qr-cutoff", "netsunion")
    );
    let d = e.route(&qr, noon(), &mut r).unwrap();
    assert_eq!(d.rule, "cny-wallets");
}

#[test]
fn volume_split_holds_within_tolerance_over_many_decisions() {
    let e = engine(DEFAULT_POLICY);
    let mut r = rng();
    let n = 100_000;
    let mut netsunion = 0;
    for _ in 0..n {
        let d = e
            .route(&input(10_000, "CNY", Method::Wallet), noon(), &mut r)
            .unwrap();
        assert_eq!(d.strategy, Strategy::VolumeSplit);
        if channel_of(&e, &d) == "netsunion" {
            netsunion += 1;
        }
    }
    let share = f64::from(netsunion) / f64::from(n);
    // 70/30 split; the binomial standard deviation at n = 100k is 0.0014.
    assert!((share - 0.70).abs() < 0.01, "netsunion share {share}");
}

#[test]
fn split_leaves_out_ineligible_channels_and_renormalises() {
    let e = engine(DEFAULT_POLICY);
    let mut r = rng();
    // The wallet acquirer's limit is 50,000.00: above it, netsunion takes all.
    for _ in 0..200 {
        let d = e
            .route(&input(6_000_000, "CNY", Method::Wallet), noon(), &mut r)
            .unwrap();
        assert_eq!(channel_of(&e, &d), "netsunion");
        assert!(d.reason.contains("left out"), "{}", d.reason);
    }
}

#[test]
fn no_route_names_why() {
    let e = engine(DEFAULT_POLICY);
    let mut r = rng();
    let err = e
        .route(&input(10_000, "JPY", Method::DebitCard), noon(), &mut r)
        .unwrap_err();
    assert_eq!(err.kind, NoRouteKind::Currency);
    let err = e
        .route(&input(10_000, "USD", Method::Wallet), noon(), &mut r)
        .unwrap_err();
    assert_eq!(err.kind, NoRouteKind::Method, "{err}");
    let err = e
        .route(&input(2_000_000_000, "USD", Method::DebitCard), noon(), &mut r)
        .unwrap_err();
    assert_eq!(err.kind, NoRouteKind::AmountLimit, "{err}");
    assert!(
        err.to_string()
            .contains("bank-direct: amount 2000000000 is outside its limits 100..=1000000000"),
        "{err}"
    );
    let excluded = vec!["unionpay".to_owned(), "bank-direct".to_owned()];
    let all_excluded = RouteInput {
        excluded: &excluded,
        ..input(10_000, "USD", Method::DebitCard)
    };
    assert_eq!(
        e.route(&all_excluded, noon(), &mut r).unwrap_err().kind,
        NoRouteKind::Excluded
    );
}

#[test]
fn excluded_channel_falls_to_the_next() {
    let e = engine(DEFAULT_POLICY);
    let mut r = rng();
    let excluded = vec!["unionpay".to_owned()];
    let req = RouteInput {
        excluded: &excluded,
        ..input(10_000, "USD", Method::DebitCard)
    };
    for _ in 0..100 {
        assert_eq!(
            channel_of(&e, &e.route(&req, noon(), &mut r).unwrap()),
            "bank-direct"
        );
    }
}

#[test]
fn a_rule_without_eligible_channels_falls_back_to_the_default_route() {
    let yaml = DEFAULT_POLICY.replace("      fixed: unionpay\n", "      fixed: wallet\n");
    let e = engine(&yaml);
    let mut r = rng();
    let visa = RouteInput {
        card_bin: "41111111",
        ..input(10_000, "USD", Method::CreditCard)
    };
    let d = e.route(&visa, noon(), &mut r).unwrap();
    assert_eq!(channel_of(&e, &d), "unionpay");
    assert!(
        d.reason.contains("fell back to the default route"),
        "{}",
        d.reason
    );
}

#[test]
fn success_rate_prefers_the_better_channel_and_explores_a_little() {
    let e = engine(DEFAULT_POLICY);
    let (unionpay, bank) = (0, 2);
    for i in 0..100 {
        e.record(unionpay, Some(Method::DebitCard), Some("USD"), i % 10 != 0, 0); // 90%
        e.record(bank, Some(Method::DebitCard), Some("USD"), i % 20 != 0, 0); // 95%
    }
    let mut r = rng();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..10_000 {
        let d = e
            .route(&input(10_000, "USD", Method::DebitCard), noon(), &mut r)
            .unwrap();
        *counts.entry((channel_of(&e, &d), d.strategy)).or_insert(0) += 1;
    }
    let exploit = counts[&("bank-direct".to_owned(), Strategy::SuccessRate)];
    let explored: i32 = counts
        .iter()
        .filter(|((_, s), _)| *s == Strategy::Exploration)
        .map(|(_, n)| n)
        .sum();
    assert!(
        !counts.contains_key(&("unionpay".to_owned(), Strategy::SuccessRate)),
        "{counts:?}"
    );
    assert!(
        (200..=400).contains(&explored),
        "3% exploration, got {explored}: {counts:?}"
    );
    assert_eq!(exploit + explored, 10_000);
}

#[test]
fn bucket_window_overrides_the_channel_window_once_full_enough() {
    let e = engine(DEFAULT_POLICY);
    let (unionpay, bank) = (0, 2);
    // Overall both at 90%, but bank-direct is poor at USD debit cards specifically.
    for i in 0..100 {
        e.record(unionpay, Some(Method::DebitCard), Some("USD"), i % 10 != 0, 0);
        e.record(bank, Some(Method::DebitCard), Some("CNY"), true, 0);
    }
    for i in 0..40 {
        e.record(bank, Some(Method::DebitCard), Some("USD"), i % 2 == 0, 0);
    }
    let usd = e.score(bank, stats::bucket_index(Method::DebitCard, "USD"));
    let cny = e.score(bank, stats::bucket_index(Method::DebitCard, "CNY"));
    assert!(usd < 0.6 && cny > 0.9, "usd {usd} cny {cny}");
}

#[test]
fn a_failing_channel_is_eliminated_probed_and_readmitted() {
    let e = engine(DEFAULT_POLICY);
    let (unionpay, bank) = (0, 2);
    for _ in 0..100 {
        e.record(bank, Some(Method::DebitCard), Some("USD"), true, 0);
    }
    let mut eliminated_at = None;
    for i in 0..100 {
        if let Some(StateChange::Eliminated { .. }) =
            e.record(unionpay, Some(Method::DebitCard), Some("USD"), false, 1_000)
        {
            eliminated_at = Some(i);
            break;
        }
    }
    assert_eq!(
        eliminated_at,
        Some(19),
        "eliminated once min_samples (20) outcomes are in"
    );
    let mut r = rng();
    let excluded = vec!["bank-direct".to_owned()];
    let only_unionpay = RouteInput {
        excluded: &excluded,
        ..input(10_000, "USD", Method::DebitCard)
    };
    // Eliminated and no probe due yet: nothing can serve.
    let err = e.route(&only_unionpay, Now::from_ms(1_500), &mut r).unwrap_err();
    assert_eq!(err.kind, NoRouteKind::AllEliminated);
    // A probe is due one interval after elimination, once.
    let d = e.route(&only_unionpay, Now::from_ms(2_000), &mut r).unwrap();
    assert_eq!(d.strategy, Strategy::RecoveryProbe);
    assert!(e.route(&only_unionpay, Now::from_ms(2_001), &mut r).is_err());
    // Good probes readmit it: 5 nats at ln(0.775/0.9625) = -0.217 per success, 24 of them.
    let mut readmitted = false;
    for i in 0..24u64 {
        readmitted |= matches!(
            e.record(unionpay, Some(Method::DebitCard), Some("USD"), true, 3_000 + i),
            Some(StateChange::Readmitted { .. })
        );
    }
    assert!(readmitted);
    assert!(!e.stats[unionpay].is_eliminated());
    assert_eq!(e.stats[unionpay].overall.snapshot(), (20, 20));
}

// ---- drop detection (CUSUM) over many seeds: a two-channel policy, outcomes fed directly ----

fn two_channels() -> Engine {
    engine(crate::simulation::SIM_POLICY)
}

/// Feeds `n` outcomes of `rate` to `channel` and `peer_n` of `peer_rate` to channel 1 - `channel`
/// per step; returns the step at which `stop` first held.
fn feed(
    e: &Engine,
    rng: &mut StdRng,
    (channel, rate): (usize, f64),
    peer_rate: f64,
    steps: u32,
    stop: impl Fn(&Engine) -> bool,
) -> Option<u32> {
    use rand::Rng as _;
    for step in 1..=steps {
        e.record(
            1 - channel,
            Some(Method::DebitCard),
            Some("CNY"),
            rng.random::<f64>() < peer_rate,
            0,
        );
        e.record(
            channel,
            Some(Method::DebitCard),
            Some("CNY"),
            rng.random::<f64>() < rate,
            0,
        );
        if stop(e) {
            return Some(step);
        }
    }
    None
}

#[test]
fn a_healthy_channel_is_not_eliminated_by_noise() {
    // 90% beside a 95% peer (and 92%, and equal channels): 200 seeds × 10,000 outcomes each, 2·10^6
    // outcomes per pair of rates, with the peer's rate itself estimated from its window.
    for (rate, peer) in [(0.90, 0.95), (0.92, 0.95), (0.90, 0.90), (0.95, 0.90)] {
        let mut suspected_steps = 0u64;
        for seed in 0..200 {
            let e = two_channels();
            let mut r = StdRng::seed_from_u64(seed);
            let eliminated = feed(&e, &mut r, (0, rate), peer, 10_000, |e| {
                e.stats[0].is_eliminated() || e.stats[1].is_eliminated()
            });
            assert_eq!(eliminated, None, "{rate} beside {peer}, seed {seed}");
            suspected_steps += u64::from(e.is_suspected(0));
        }
        // Suspicion is cheap and reversible but should be rare for a channel above its peer.
        if rate > peer {
            assert!(
                suspected_steps <= 2,
                "{rate} beside {peer}: suspected at the end in {suspected_steps} of 200"
            );
        }
    }
}

#[test]
fn a_drop_is_suspected_within_a_few_dozen_outcomes_and_then_eliminated() {
    let (mut suspect, mut eliminate) = (Vec::new(), Vec::new());
    for seed in 0..500 {
        let e = two_channels();
        let mut r = StdRng::seed_from_u64(seed);
        // Both have a full window (A at 95%, B at 90%), then A browns out to 60%.
        feed(&e, &mut r, (0, 0.95), 0.90, 100, |_| false);
        assert!(!e.is_suspected(0) && !e.stats[0].is_eliminated(), "seed {seed}");
        let s = feed(&e, &mut r, (0, 0.60), 0.90, 1_000, |e| e.is_suspected(0));
        let s = s.unwrap_or_else(|| panic!("seed {seed}: never suspected"));
        // Once suspected its score is its post-change rate: below B's.
        assert!(
            e.score(0, None) < e.score(1, None),
            "seed {seed}: {} vs {}",
            e.score(0, None),
            e.score(1, None)
        );
        let x = feed(&e, &mut r, (0, 0.60), 0.90, 1_000, |e| e.stats[0].is_eliminated());
        suspect.push(s);
        eliminate.push(s + x.unwrap_or_else(|| panic!("seed {seed}: never eliminated")));
    }
    suspect.sort_unstable();
    eliminate.sort_unstable();
    let pct = |v: &[u32], p: usize| v[(v.len() - 1) * p / 100];
    println!(
        "suspected after {} / {} / {} outcomes (median / p90 / max), eliminated after {} / {} / {}",
        pct(&suspect, 50),
        pct(&suspect, 90),
        pct(&suspect, 100),
        pct(&eliminate, 50),
        pct(&eliminate, 90),
        pct(&eliminate, 100)
    );
    assert!(pct(&suspect, 50) <= 15, "{suspect:?}");
    assert!(pct(&suspect, 90) <= 40, "{suspect:?}");
    // Elimination waits for much stronger evidence, against a pessimistic peer rate.
    assert!(pct(&eliminate, 50) <= 150, "{eliminate:?}");
    assert!(pct(&eliminate, 100) <= 800, "{eliminate:?}");
}

#[test]
fn a_recovered_channel_is_readmitted_and_a_failing_one_stays_out() {
    let (mut readmitted_after, mut lucky) = (Vec::new(), 0);
    for seed in 0..500 {
        for probe_rate in [0.95, 0.60] {
            let e = two_channels();
            let mut r = StdRng::seed_from_u64(seed);
            feed(&e, &mut r, (0, 0.95), 0.90, 100, |_| false);
            feed(&e, &mut r, (0, 0.0), 0.90, 100, |e| e.stats[0].is_eliminated())
                .unwrap_or_else(|| panic!("seed {seed}: a failing channel is eliminated"));
            // 200 probe outcomes (about three minutes of probes at one a second).
            let back = feed(&e, &mut r, (0, probe_rate), 0.90, 200, |e| {
                !e.stats[0].is_eliminated()
            });
            if probe_rate > 0.9 {
                readmitted_after.push(back.unwrap_or_else(|| panic!("seed {seed}: never readmitted")));
            } else if back.is_some() {
                lucky += 1;
            }
        }
    }
    readmitted_after.sort_unstable();
    println!(
        "recovered channel readmitted after {} / {} probes (median / max); 60% channel readmitted in {lucky} of 500",
        readmitted_after[250], readmitted_after[499]
    );
    assert!(readmitted_after[499] <= 75, "{readmitted_after:?}");
    assert!(
        lucky <= 5,
        "a 60% channel readmitted by luck in {lucky} of 500 runs"
    );
}

#[test]
fn reload_keeps_statistics_of_unchanged_channels() {
    let first = engine(DEFAULT_POLICY);
    for _ in 0..10 {
        first.record(0, None, None, true, 0);
    }
    let second = Engine::new(
        parse_policy(&DEFAULT_POLICY.replace("rate_bps: 38", "rate_bps: 40")).unwrap(),
        Some(&first),
    );
    assert_eq!(second.stats[0].overall.snapshot(), (10, 10));
    let resized = Engine::new(
        parse_policy(&DEFAULT_POLICY.replace("window: 100 ", "window: 200 ")).unwrap(),
        Some(&first),
    );
    assert_eq!(resized.stats[0].overall.snapshot(), (0, 0));
}

// ---- validation ----

fn errors(yaml: &str) -> Vec<PolicyError> {
    parse_policy(yaml).expect_err("policy should be invalid")
}

#[test]
fn bad_yaml_is_reported_with_its_line() {
    let errs = errors("channels:\n  - id: a\n    currencies: [CNY\nrules: []\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 3, "{errs:?}");
    assert!(errs[0].message.starts_with("invalid YAML"), "{errs:?}");
}

#[test]
fn every_semantic_error_is_listed_with_line_and_path() {
    let yaml = r#"time_zone: Mars/Olympus
channels:
  - id: unionpay
    currencies: [CNY, XXX]
    methods: [debit_card, telepathy]
    fee: { fixed: 0, rate_bps: 38 }
  - id: bank-direct
    currencies: [CNY]
    methods: [debit_card]
    colour: blue
rules:
  - name: bins-a
    when:
      card_bins: ["622200-622299"]
    route:
      fixed: unionpay
  - name: bins-b
    when:
      card_bins: ["62225000-62225999"]
    route:
      priority: [bank-direct, nowhere]
  - name: split-bad
    route:
      split: { unionpay: 70, bank-direct: 20 }
default_route:
  fixed: unionpay
"#;
    let errs = errors(yaml);
    let find = |needle: &str| {
        errs.iter()
            .find(|e| e.message.contains(needle))
            .unwrap_or_else(|| panic!("no error with {needle:?} in {errs:#?}"))
    };
    assert_eq!(find("unknown time zone").line, 1);
    let xxx = find("unsupported currency");
    assert_eq!((xxx.line, xxx.path.as_str()), (4, "channels[0].currencies[1]"));
    assert_eq!(find("unknown method `telepathy`").line, 5);
    assert_eq!(find("unknown field `colour`").line, 10);
    let overlap = find("overlaps");
    assert_eq!(
        (overlap.line, overlap.path.as_str()),
        (19, "rules[1].when.card_bins[0]")
    );
    let unknown = find("unknown channel `nowhere`");
    assert_eq!(
        (unknown.line, unknown.path.as_str()),
        (21, "rules[1].route.priority[1]")
    );
    let split = find("add up to 90, not 100");
    assert_eq!((split.line, split.path.as_str()), (24, "rules[2].route.split"));
    assert_eq!(errs.len(), 7, "{errs:#?}");
    assert!(errs.windows(2).all(|w| w[0].line <= w[1].line), "sorted by line");
}

#[test]
fn overlapping_bins_are_fine_with_a_priority_or_disjoint_conditions() {
    let base = DEFAULT_POLICY.to_owned();
    let with = |extra: &str| base.replace("\nrules:\n", &format!("\nrules:\n{extra}"));
    // A higher priority says which rule wins.
    let ok = with(
        "  - name: vip-bins\n    priority: 5\n    when: { card_bins: [\"622200-622299\"], currencies: [CNY], methods: [debit_card] }\n    route: { fixed: bank-direct }\n",
    );
    assert!(parse_policy(&ok).is_ok(), "{:?}", parse_policy(&ok).err());
    // Different currencies cannot both match.
    let ok = with(
        "  - name: usd-bins\n    when: { card_bins: [\"622200-622299\"], currencies: [USD] }\n    route: { fixed: bank-direct }\n",
    );
    assert!(parse_policy(&ok).is_ok());
    let bad = with(
        "  - name: cny-bins\n    when: { card_bins: [\"622200-622299\"], currencies: [CNY] }\n    route: { fixed: bank-direct }\n",
    );
    assert!(errors(&bad).iter().any(|e| e.message.contains("overlaps")));
}

#[test]
fn structural_errors_are_reported() {
    let errs = errors("channels: []\n");
    assert!(
        errs.iter()
            .any(|e| e.path == "channels" && e.message.contains("must not be empty")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.path == "default_route" && e.message.contains("required")),
        "{errs:?}"
    );
    let dup = DEFAULT_POLICY.replace("  - id: wallet\n", "  - id: unionpay\n");
    assert!(errors(&dup).iter().any(|e| e.message.contains("defined twice")));
    let dup_key = "time_zone: UTC\ntime_zone: UTC\n";
    assert!(errors(dup_key)[0].message.contains("duplicate key"));
    let two_kinds = DEFAULT_POLICY.replace(
        "  priority: [unionpay, bank-direct, netsunion, wallet]",
        "  priority: [unionpay]\n  fixed: unionpay",
    );
    assert!(
        errors(&two_kinds)
            .iter()
            .any(|e| e.message.contains("exactly one of fixed, priority, split"))
    );
}

#[test]
fn version_is_a_short_content_hash() {
    let v = version_of(DEFAULT_POLICY);
    assert_eq!(v.len(), 12);
    assert_eq!(v, version_of(DEFAULT_POLICY));
    assert_ne!(v, version_of(&format!("{DEFAULT_POLICY}\n# changed\n")));
}

//! Criterion benchmark of the in-memory decision (`cargo bench -p payplane-routing`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use payplane_routing::domain::{Engine, Method, Now, RouteInput, parse_policy};
use rand::{SeedableRng, rngs::SmallRng};

const POLICY: &str = include_str!("../policy/default.yaml");

fn input(amount: i64, currency: &'static str, method: Method, card_bin: &'static str) -> RouteInput<'static> {
    RouteInput {
        amount,
        currency,
        method,
        card_bin,
        merchant: "merchant-1",
        scene: "ecommerce",
        excluded: &[],
    }
}

fn decisions(c: &mut Criterion) {
    let engine = Engine::new(parse_policy(POLICY).expect("default policy"), None);
    for ch in 0..engine.policy.channels.len() {
        for i in 0..100 {
            engine.record(ch, Some(Method::DebitCard), Some("USD"), i % 10 != 0, 0);
        }
    }
    let mut rng = SmallRng::seed_from_u64(1);
    let now = Now::system();
    let mut group = c.benchmark_group("route");
    for (name, req) in [
        ("success_rate", input(10_000, "USD", Method::DebitCard, "")),
        ("volume_split", input(10_000, "CNY", Method::Wallet, "")),
        (
            "fixed_bin_rule",
            input(100_000, "USD", Method::CreditCard, "41111111"),
        ),
        ("nested_rule", input(10_000, "HKD", Method::Wallet, "")),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(engine.route(black_box(&req), now, &mut rng).ok()))
        });
    }
    group.finish();
    c.bench_function("report_outcome", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(engine.record(0, Some(Method::DebitCard), Some("USD"), !i.is_multiple_of(10), 0))
        })
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);

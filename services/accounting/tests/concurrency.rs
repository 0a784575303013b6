//! Many clients, two service processes on one database, hot accounts, every request retried
//! (often concurrently on the other replica): balances equal the expected sums, every id is
//! applied exactly once, invariants hold.

mod common;

use std::collections::HashMap;

use common::*;
use payplane_accounting::domain::{AccountFlags, CreateTransferResult as R, Transfer};
use rand::{Rng, SeedableRng, rngs::StdRng};

const CLIENTS: u128 = 16;
const REQUESTS: u128 = 30;
const HOT: u128 = 10;
const PAYERS: u128 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_hot_accounts_retries() {
    let db = database("acct_conc").await;
    let a = start(&db, &[]).await;
    let b = start(&db, &[]).await;
    let urls = [a.grpc_url(), b.grpc_url()];
    let mut c = client(&a).await;
    let hot: Vec<u128> = (1..=HOT).collect();
    let payers: Vec<u128> = (100..100 + PAYERS).collect();
    let accounts: Vec<_> = hot
        .iter()
        .chain(&payers)
        .map(|id| account(*id, 1, AccountFlags::default()))
        .collect();
    assert_eq!(create_accounts(&mut c, &accounts).await, vec![]);

    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let urls = urls.clone();
        let (hot, payers) = (hot.clone(), payers.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64);
            let mut applied: Vec<Transfer> = Vec::new();
            for seq in 0..REQUESTS {
                let base = (client + 1) << 80 | seq << 16;
                let mut batch = Vec::new();
                if seq % 5 == 4 {
                    // A hold and its partial post, linked: both or neither.
                    let mut hold = transfer(
                        base | 1,
                        payers[rng.random_range(0..payers.len())],
                        hot[rng.random_range(0..hot.len())],
                        40,
                    );
                    hold.flags.pending = true;
                    hold.flags.linked = true;
                    let mut post = transfer(base | 2, 0, 0, rng.random_range(1..=40));
                    post.pending_id = hold.id;
                    post.ledger = 0;
                    post.code = 0;
                    post.flags.post_pending_transfer = true;
                    batch.extend([hold, post]);
                } else {
                    for i in 0..rng.random_range(1..=5u128) {
                        let t = transfer(
                            base | (i + 1),
                            payers[rng.random_range(0..payers.len())],
                            hot[rng.random_range(0..hot.len())],
                            rng.random_range(1..=1000),
                        );
                        batch.push(t);
                    }
                }
                let first = rng.random_range(0..2);
                let results = if rng.random_bool(0.5) {
                    // The same request on both replicas at once, as a client retrying after a
                    // timeout whose first attempt is still in flight.
                    let (x, y) = tokio::join!(
                        create_transfers_retrying(&urls[first], &batch),
                        create_transfers_retrying(&urls[1 - first], &batch)
                    );
                    vec![x, y]
                } else {
                    let x = create_transfers_retrying(&urls[first], &batch).await;
                    let y = create_transfers_retrying(&urls[1 - first], &batch).await;
                    assert_eq!(y.len(), batch.len(), "the retry finds every event: {y:?}");
                    vec![x, y]
                };
                for r in &results {
                    assert!(
                        r.iter().all(|(_, code)| *code == R::Exists as i32),
                        "only created or exists: {r:?}"
                    );
                }
                // Exactly one of the attempts created each event.
                for i in 0..batch.len() as u32 {
                    let exists = results.iter().filter(|r| r.iter().any(|(j, _)| *j == i)).count();
                    assert_eq!(exists, 1, "event {i} created exactly once: {results:?}");
                }
                applied.extend(batch);
            }
            applied
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }

    // Expected balances from what the clients sent, computed independently.
    let mut expected: HashMap<u128, (u64, u64)> = HashMap::new(); // id -> (debits_posted, credits_posted)
    let holds: HashMap<u128, &Transfer> = all
        .iter()
        .filter(|t| t.flags.pending)
        .map(|t| (t.id, t))
        .collect();
    for t in &all {
        let (dr, cr, amount) = if t.flags.pending {
            continue;
        } else if t.flags.post_pending_transfer {
            let h = holds[&t.pending_id];
            (h.debit_account_id, h.credit_account_id, t.amount)
        } else {
            (t.debit_account_id, t.credit_account_id, t.amount)
        };
        expected.entry(dr).or_default().0 += amount;
        expected.entry(cr).or_default().1 += amount;
    }
    let ids: Vec<u128> = hot.iter().chain(&payers).copied().collect();
    for acc in lookup_accounts(&mut c, &ids).await {
        let (d, cr) = expected.get(&acc.id).copied().unwrap_or_default();
        assert_eq!(
            (
                acc.debits_posted,
                acc.credits_posted,
                acc.debits_pending,
                acc.credits_pending
            ),
            (d, cr, 0, 0),
            "account {}",
            acc.id
        );
    }
    let ids: Vec<u128> = all.iter().map(|t| t.id).collect();
    let stored = lookup_transfers(&mut c, &ids).await;
    assert_eq!(stored.len(), all.len(), "every transfer stored once");
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count as usize, all.len(), "no transfer applied twice");
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT timestamp) FROM transfers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(distinct, count, "timestamps unique across replicas");
    assert_invariants(&mut c).await;
}

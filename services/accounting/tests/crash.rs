//! SIGKILL the service in the middle of batches, restart it, clients retry: every acknowledged
//! transfer is present, nothing is applied twice, invariants hold.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use payplane_accounting::domain::{AccountFlags, CreateTransferResult as R};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::RwLock;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_batches_then_retry() {
    let db = database("acct_crash").await;
    let mut service = start(&db, &[]).await;
    let url = Arc::new(RwLock::new(service.grpc_url()));
    let mut c = client(&service).await;
    let hot: Vec<u128> = (1..=4).collect();
    let payers: Vec<u128> = (10..18).collect();
    let accounts: Vec<_> = hot
        .iter()
        .chain(&payers)
        .map(|id| account(*id, 1, AccountFlags::default()))
        .collect();
    assert_eq!(create_accounts(&mut c, &accounts).await, vec![]);

    // Kills are timed by progress, not by the clock, so they land mid-run on a fast machine
    // and on a loaded one alike.
    const CLIENTS: u128 = 8;
    const BATCHES: u128 = 60;
    let acked_batches = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let url = url.clone();
        let acked_batches = acked_batches.clone();
        let (hot, payers) = (hot.clone(), payers.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64);
            let mut acknowledged = Vec::new();
            for seq in 0..BATCHES {
                let batch: Vec<_> = (0..rng.random_range(20..200u128))
                    .map(|i| {
                        let id = (client + 1) << 80 | seq << 20 | (i + 1);
                        transfer(id, payers[rng.random_range(0..payers.len())], hot[rng.random_range(0..hot.len())], rng.random_range(1..=100))
                    })
                    .collect();
                // Retry until acknowledged, following the service to its new address.
                let results = loop {
                    let target = url.read().await.clone();
                    let attempt = async {
                        let mut c = payplane_proto::accounting::v1::ledger_service_client::LedgerServiceClient::connect(target)
                            .await
                            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                        create_transfers(&mut c, &batch).await
                    };
                    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                        Ok(Ok(r)) => break r,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
                assert!(results.iter().all(|(_, code)| *code == R::Exists as i32), "created or exists only: {results:?}");
                acknowledged.extend(batch);
                acked_batches.fetch_add(1, Ordering::Relaxed);
            }
            acknowledged
        }));
    }

    let total = (CLIENTS * BATCHES) as usize;
    for kill in 1..=2 {
        while acked_batches.load(Ordering::Relaxed) < total * kill / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The kill must land while clients are still sending, or the test proves nothing.
        assert!(
            tasks.iter().any(|t| !t.is_finished()),
            "clients finished before the kill"
        );
        service.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        service = start(&db, &[]).await;
        *url.write().await = service.grpc_url();
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.expect("client"));
    }
    let mut c = client(&service).await;
    let ids: Vec<u128> = acknowledged.iter().map(|t| t.id).collect();
    let stored = lookup_transfers(&mut c, &ids).await;
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "every acknowledged transfer is present"
    );
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        count as usize,
        acknowledged.len(),
        "nothing applied twice or left over"
    );
    let total: u64 = acknowledged.iter().map(|t| t.amount).sum();
    let balances = lookup_accounts(&mut c, &hot).await;
    assert_eq!(balances.iter().map(|a| a.credits_posted).sum::<u64>(), total);
    assert_invariants(&mut c).await;
}

//! Load tool for the ledger: prints throughput and latency, never asserts on them.
//!
//! ```text
//! ledger-bench --target http://127.0.0.1:50051 --database-url "$DATABASE_URL_OF_THE_SERVICE"
//! ```
//!
//! Scenarios: (1) batched: `--clients` clients sending batches of `--batch-sizes` transfers
//! between `--accounts` accounts; (2) single-hot: `--hot-clients` clients sending one transfer
//! per request, each crediting one of `--hot-accounts` accounts. With `--database-url` it also
//! prints the PostgreSQL durability settings and checks that the number of transfers stored
//! grew by exactly the number acknowledged (a benchmark must not silently drop work).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use payplane_proto::accounting::v1::{
    self as pb, CreateAccountsRequest, CreateTransfersRequest, ledger_service_client::LedgerServiceClient,
};
use rand::Rng;
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(about = "Prints the ledger's throughput and latency")]
struct Args {
    /// The accounting service.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// The service's database, to print its settings and verify the stored counts.
    #[arg(long)]
    database_url: Option<String>,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    batch_sizes: Vec<usize>,
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    #[arg(long, default_value_t = 64)]
    hot_clients: usize,
    #[arg(long, default_value_t = 10)]
    hot_accounts: usize,
    /// HTTP/2 connections shared by the clients.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Skip the batched scenario.
    #[arg(long)]
    only_hot: bool,
}

fn uuid_string() -> String {
    uuid::Uuid::from_u128(rand::rng().random::<u128>() | 1).to_string()
}

async fn create_accounts(c: &mut LedgerServiceClient<Channel>, n: usize, ledger: u32) -> Result<Vec<String>> {
    let ids: Vec<String> = (0..n).map(|_| uuid_string()).collect();
    for chunk in ids.chunks(8000) {
        let accounts = chunk
            .iter()
            .map(|id| pb::Account {
                id: id.clone(),
                ledger,
                code: 1,
                ..Default::default()
            })
            .collect();
        let r = c
            .create_accounts(CreateAccountsRequest { accounts })
            .await?
            .into_inner();
        if !r.errors.is_empty() {
            bail!("creating accounts: {:?}", &r.errors[..r.errors.len().min(3)]);
        }
    }
    Ok(ids)
}

struct Outcome {
    transfers: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// `clients` tasks, each sending requests built by `make` until the time is up.
async fn run(
    channels: &[Channel],
    clients: usize,
    seconds: u64,
    make: impl Fn() -> Vec<pb::Transfer> + Send + Sync + Clone + 'static,
) -> Result<Outcome> {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut c = LedgerServiceClient::new(channels[i % channels.len()].clone());
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut transfers = 0u64;
            while Instant::now() < end {
                let batch = make();
                let n = batch.len() as u64;
                let t0 = Instant::now();
                // The server caps connection age: a call cut by a closing connection is re-sent
                // with the same ids (idempotent), and its latency includes the retry.
                let r = loop {
                    match c
                        .create_transfers(CreateTransfersRequest {
                            transfers: batch.clone(),
                        })
                        .await
                    {
                        Ok(r) => break r.into_inner(),
                        Err(e)
                            if matches!(
                                e.code(),
                                tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
                            ) =>
                        {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                latencies.push(t0.elapsed());
                let exists = pb::CreateTransferResult::Exists as i32;
                if r.errors.iter().any(|e| e.result != exists) {
                    bail!("transfers failed: {:?}", &r.errors[..r.errors.len().min(3)]);
                }
                transfers += n;
            }
            Ok::<_, anyhow::Error>((transfers, latencies))
        }));
    }
    let mut out = Outcome {
        transfers: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (n, l) = t.await??;
        out.transfers += n;
        out.latencies.extend(l);
    }
    out.elapsed = start.elapsed();
    out.latencies.sort();
    Ok(out)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name:<40} {:>9.0} transfers/s  {:>8} requests  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} transfers in {:.1} s)",
        o.transfers as f64 / o.elapsed.as_secs_f64(),
        o.latencies.len(),
        percentile(&o.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&o.latencies, 0.99).as_secs_f64() * 1e3,
        o.transfers,
        o.elapsed.as_secs_f64(),
    );
}

async fn stored_transfers(pool: Option<&sqlx::PgPool>) -> Result<Option<i64>> {
    match pool {
        Some(p) => Ok(Some(
            sqlx::query_scalar("SELECT count(*) FROM transfers")
                .fetch_one(p)
                .await?,
        )),
        None => Ok(None),
    }
}

async fn verify(pool: Option<&sqlx::PgPool>, before: Option<i64>, acknowledged: u64) -> Result<()> {
    if let (Some(before), Some(after)) = (before, stored_transfers(pool).await?) {
        let grew = (after - before) as u64;
        if grew != acknowledged {
            bail!("{acknowledged} transfers acknowledged but the table grew by {grew}");
        }
        println!("{:<40} stored transfers grew by {grew} = acknowledged", "");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let pool = match &args.database_url {
        Some(url) => Some(
            sqlx::PgPool::connect(url)
                .await
                .context("connecting to --database-url")?,
        ),
        None => None,
    };
    if let Some(p) = &pool {
        for setting in [
            "server_version",
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "shared_buffers",
        ] {
            let v: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(p)
                .await?;
            println!("postgres {setting} = {v}");
        }
    }
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Channel::from_shared(args.target.clone())?
                .connect()
                .await
                .context("connecting to --target")?,
        );
    }
    let mut c = LedgerServiceClient::new(channels[0].clone());
    let ledger = rand::rng().random_range(1000..1_000_000u32);

    if !args.only_hot {
        let accounts = std::sync::Arc::new(create_accounts(&mut c, args.accounts, ledger).await?);
        for &size in &args.batch_sizes {
            let accounts = accounts.clone();
            let make = move || {
                let mut rng = rand::rng();
                (0..size)
                    .map(|_| {
                        let dr = rng.random_range(0..accounts.len());
                        let cr = (dr + rng.random_range(1..accounts.len())) % accounts.len();
                        pb::Transfer {
                            id: uuid_string(),
                            debit_account_id: accounts[dr].clone(),
                            credit_account_id: accounts[cr].clone(),
                            amount: rng.random_range(1..10_000),
                            ledger,
                            code: 1,
                            ..Default::default()
                        }
                    })
                    .collect()
            };
            let before = stored_transfers(pool.as_ref()).await?;
            let o = run(&channels, args.clients, args.seconds, make).await?;
            report(&format!("batched: {} clients x {size}/request", args.clients), &o);
            verify(pool.as_ref(), before, o.transfers).await?;
        }
    }

    let payers = std::sync::Arc::new(create_accounts(&mut c, 1000, ledger + 1).await?);
    let hot = std::sync::Arc::new(create_accounts(&mut c, args.hot_accounts, ledger + 1).await?);
    let make = move || {
        let mut rng = rand::rng();
        vec![pb::Transfer {
            id: uuid_string(),
            debit_account_id: payers[rng.random_range(0..payers.len())].clone(),
            credit_account_id: hot[rng.random_range(0..hot.len())].clone(),
            amount: rng.random_range(1..10_000),
            ledger: ledger + 1,
            code: 1,
            ..Default::default()
        }]
    };
    let before = stored_transfers(pool.as_ref()).await?;
    let o = run(&channels, args.hot_clients, args.seconds, make).await?;
    report(
        &format!(
            "single: {} clients x 1/request, {} hot",
            args.hot_clients, args.hot_accounts
        ),
        &o,
    );
    verify(pool.as_ref(), before, o.transfers).await?;
    Ok(())
}

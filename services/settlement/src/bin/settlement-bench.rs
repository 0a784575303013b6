//! Prints settlement figures (never a pass/fail test):
//! - domain, N items (default 1,000,000): window assignment, closing (totals, netting, postings,
//!   pacs.009 + CSV rendering), statement rendering, parsing and reconciliation;
//! - service path (needs DATABASE_URL): the real gRPC server on PostgreSQL in this process,
//!   RecordCleared throughput with concurrent clients, then CloseWindow and ReconcileStatement of
//!   a window bulk-loaded to N items.
//!
//! `cargo run --release -p payplane-settlement --bin settlement-bench -- [items] [recorded] [concurrency]`

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use payplane_core::Currency;
use payplane_proto::{
    common::v1::Money,
    settlement::v1::{
        self as pb, CloseWindowRequest, ReconcileStatementRequest, RecordClearedRequest, StatementFormat,
        settlement_service_client::SettlementServiceClient,
        settlement_service_server::SettlementServiceServer,
    },
};
use payplane_runtime::{GrpcServer, ServerArgs};
use payplane_settlement::{
    domain::{
        Item, ItemKind,
        instructions::{self, InstructionHeader},
        netting::{self, WindowTotals},
        postings,
        reconcile::{self, OurItem},
        statement::{self, Direction, StatementEntry, StatementHeader},
        window::Calendar,
    },
    grpc::SettlementApi,
    service::Settlement,
    store::{MIGRATOR, Store},
};
use sqlx::{AssertSqlSafe, Connection, PgConnection, postgres::PgPoolOptions};
use uuid::Uuid;

const CHANNEL: &str = "unionpay";
const MERCHANTS: u64 = 1_000;

fn cleared_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-21T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Deterministic pseudo-random items: 1,000 merchants, one in 20 a refund.
fn items(n: usize, currency: Currency) -> Vec<Item> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let refund = x.is_multiple_of(20);
            let amount = 100 + (x >> 20) as i64 % 500_000;
            Item {
                item_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | i as u128),
                kind: if refund {
                    ItemKind::Refund
                } else {
                    ItemKind::Payment
                },
                payment_id: Uuid::from_u128(0x0190_0000_0000_7000_9000_0000_0000_0000 | i as u128),
                channel_id: CHANNEL.into(),
                merchant_id: format!("m-{:04}", (x >> 40) % MERCHANTS),
                currency,
                amount,
                fee: if refund { 0 } else { amount * 6 / 1000 },
                channel_reference: format!("R{i:09}"),
                cleared_at: cleared_at(),
            }
        })
        .collect()
}

/// The channel's view: every item, except that one in 1,000 is missing, one in 1,000 has another
/// amount, and one in 1,000 is listed twice; plus 100 entries we never saw.
fn statement_entries(items: &[Item]) -> Vec<StatementEntry> {
    let mut out = Vec::with_capacity(items.len() + items.len() / 1000 + 100);
    for (i, item) in items.iter().enumerate() {
        if i % 1000 == 1 {
            continue;
        }
        let direction = if item.kind == ItemKind::Payment {
            Direction::Credit
        } else {
            Direction::Debit
        };
        let amount = if i % 1000 == 2 {
            item.amount + 1
        } else {
            item.amount
        };
        let e = StatementEntry {
            channel_reference: item.channel_reference.clone(),
            direction,
            amount,
            booked_at: item.cleared_at,
        };
        if i % 1000 == 3 {
            out.push(e.clone());
        }
        out.push(e);
    }
    for k in 0..100 {
        out.push(StatementEntry {
            channel_reference: format!("X{k:06}"),
            direction: Direction::Credit,
            amount: 1,
            booked_at: cleared_at(),
        });
    }
    out
}

fn statement_header(currency: Currency) -> StatementHeader {
    StatementHeader {
        statement_id: "BENCH".into(),
        channel_id: CHANNEL.into(),
        currency,
        from: cleared_at(),
        to: cleared_at(),
        created_at: cleared_at(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64())
}

fn domain(n: usize, calendar: &Calendar, currency: Currency) {
    println!("== domain, {n} items ==");
    let items = items(n, currency);
    let t = Instant::now();
    let mut assigned = 0usize;
    for item in &items {
        assigned += calendar
            .assign(&item.channel_id, currency, item.cleared_at)
            .window_id
            .len();
    }
    let d = t.elapsed();
    println!(
        "window assignment          {} ({}) [{assigned}]",
        secs(d),
        rate(n, d)
    );

    let window_id = calendar.assign(CHANNEL, currency, cleared_at()).window_id;
    let spec = calendar.window(
        CHANNEL,
        currency,
        calendar.assign(CHANNEL, currency, cleared_at()).business_date,
    );
    let t = Instant::now();
    let totals = WindowTotals::from_items(&items).expect("no overflow");
    let positions = netting::multilateral(&totals.obligations(CHANNEL)).unwrap();
    let plan = postings::plan(&window_id, CHANNEL, currency, &totals, 0).unwrap();
    let header = InstructionHeader {
        window_id: &window_id,
        currency,
        business_date: spec.business_date,
        cut_off_at: spec.cut_off_at,
        value_date: spec.value_date,
    };
    let ins = instructions::instructions(&window_id, &positions);
    let xml = instructions::render_pacs009(&header, &ins);
    let csv = instructions::render_csv(&header, &ins);
    let d = t.elapsed();
    println!(
        "close (totals, netting, {} postings, pacs.009 {} B + CSV {} B)  {} ({})",
        plan.len(),
        xml.len(),
        csv.len(),
        secs(d),
        rate(n, d)
    );
    assert_eq!(positions.iter().map(|p| p.net).sum::<i64>(), 0);

    let entries = statement_entries(&items);
    let t = Instant::now();
    let camt = statement::render_camt053(&statement_header(currency), &entries);
    println!(
        "render camt.053 ({} lines, {} MB)  {}",
        entries.len(),
        camt.len() / 1_000_000,
        secs(t.elapsed())
    );
    let t = Instant::now();
    let parsed = statement::parse_camt053(&camt).expect("valid statement");
    let d_parse = t.elapsed();
    println!(
        "parse camt.053             {} ({})",
        secs(d_parse),
        rate(entries.len(), d_parse)
    );
    let csv_doc = statement::render_csv(&statement_header(currency), &entries);
    let t = Instant::now();
    let parsed_csv = statement::parse_csv(&csv_doc).expect("valid statement");
    let d = t.elapsed();
    println!(
        "parse CSV ({} MB)           {} ({})",
        csv_doc.len() / 1_000_000,
        secs(d),
        rate(entries.len(), d)
    );
    assert_eq!(parsed.lines.len(), parsed_csv.lines.len());
    let ours: Vec<OurItem> = items
        .iter()
        .map(|i| OurItem {
            item_id: i.item_id,
            channel_reference: i.channel_reference.clone(),
            kind: i.kind,
            amount: i.amount,
        })
        .collect();
    let t = Instant::now();
    let report = reconcile::reconcile(&window_id, currency, "sha", &parsed.lines, &ours);
    let json = reconcile::render_json(&report);
    let text = reconcile::render_text(&report);
    let d = t.elapsed();
    let s = &report.summary;
    println!(
        "reconcile + JSON/text report  {} ({}) matched {} mismatch {} duplicate {} unexpected {} missing {} (JSON {} B, text {} B)",
        secs(d),
        rate(n, d),
        s.matched,
        s.amount_mismatch,
        s.duplicate,
        s.unexpected_at_channel,
        s.missing_at_channel,
        json.len(),
        text.len()
    );
    println!(
        "reconcile total (parse camt.053 + classify + report)  {}",
        secs(d_parse + d)
    );
}

async fn service(
    n: usize,
    recorded: usize,
    concurrency: usize,
    calendar: Calendar,
    currency: Currency,
) -> anyhow::Result<()> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!(
            "== service path skipped: DATABASE_URL is not set (ci/devenv up && eval \"$(ci/devenv env)\") =="
        );
        return Ok(());
    };
    let name = format!("bench_settlement_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await?;
    let db_url = match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("DATABASE_URL has no database name"),
    };
    let pool = PgPoolOptions::new().max_connections(16).connect(&db_url).await?;
    MIGRATOR.run(&pool).await?;
    let service = Settlement {
        store: Store::new(pool.clone()),
        calendar: calendar.clone(),
        ledger: None,
    };
    // Long calls (closing or reconciling a million items) must not meet the connection-age limit.
    let mut args = ServerArgs::local("bench");
    args.max_connection_age = Duration::from_secs(3600);
    let server = GrpcServer::new("settlement", &args).add_service(
        SettlementServiceServer::new(SettlementApi { service }).max_decoding_message_size(1 << 30),
    );
    let listeners = server.bind().await?;
    let addr = listeners.grpc_addr()?;
    let shutdown = server.shutdown_handle();
    let serving = tokio::spawn(server.serve_with(listeners));
    let client = SettlementServiceClient::connect(format!("http://{addr}"))
        .await?
        .max_decoding_message_size(1 << 30)
        .max_encoding_message_size(1 << 30);

    println!(
        "== service path (gRPC in-process, PostgreSQL {}) ==",
        url.split('@').next_back().unwrap_or("?")
    );
    let all = items(n, currency);
    let proto = |i: &Item| pb::ClearedItem {
        item_id: i.item_id.to_string(),
        kind: if i.kind == ItemKind::Payment {
            pb::ItemKind::Payment as i32
        } else {
            pb::ItemKind::Refund as i32
        },
        payment_id: i.payment_id.to_string(),
        channel_id: i.channel_id.clone(),
        merchant_id: i.merchant_id.clone(),
        amount: Some(Money {
            minor_units: i.amount,
            currency: currency.code().into(),
        }),
        fee: Some(Money {
            minor_units: i.fee,
            currency: currency.code().into(),
        }),
        channel_reference: i.channel_reference.clone(),
        cleared_at: Some(prost_types::Timestamp {
            seconds: i.cleared_at.timestamp(),
            nanos: 0,
        }),
        window_id: String::new(),
    };
    let recorded = recorded.min(n);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..concurrency {
        let mut c = client.clone();
        let mine: Vec<pb::ClearedItem> = all[..recorded]
            .iter()
            .skip(k)
            .step_by(concurrency)
            .map(proto)
            .collect();
        tasks.push(tokio::spawn(async move {
            for item in mine {
                c.record_cleared(RecordClearedRequest { item: Some(item) })
                    .await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let d = t.elapsed();
    println!(
        "RecordCleared {recorded} items, {concurrency} concurrent clients  {} ({})",
        secs(d),
        rate(recorded, d)
    );

    // Bulk-load the rest of the window straight into the table, then close and reconcile it.
    let window_id = calendar.assign(CHANNEL, currency, cleared_at()).window_id;
    let t = Instant::now();
    for chunk in all[recorded..].chunks(50_000) {
        let ids: Vec<Uuid> = chunk.iter().map(|i| i.item_id).collect();
        let kinds: Vec<i16> = chunk.iter().map(|i| i.kind.code()).collect();
        let pids: Vec<Uuid> = chunk.iter().map(|i| i.payment_id).collect();
        let merchants: Vec<&str> = chunk.iter().map(|i| i.merchant_id.as_str()).collect();
        let amounts: Vec<i64> = chunk.iter().map(|i| i.amount).collect();
        let fees: Vec<i64> = chunk.iter().map(|i| i.fee).collect();
        let refs: Vec<&str> = chunk.iter().map(|i| i.channel_reference.as_str()).collect();
        sqlx::query(
            "INSERT INTO settlement_items (item_id, kind, payment_id, channel_id, merchant_id, currency, amount, fee, channel_reference, cleared_at, window_id) \
             SELECT i, k, p, $8, m, $9, a, f, r, $10, $11 FROM unnest($1::uuid[], $2::smallint[], $3::uuid[], $4::text[], $5::bigint[], $6::bigint[], $7::text[]) AS t(i, k, p, m, a, f, r)",
        )
        .bind(&ids).bind(&kinds).bind(&pids).bind(&merchants).bind(&amounts).bind(&fees).bind(&refs)
        .bind(CHANNEL).bind(currency.code()).bind(cleared_at()).bind(&window_id)
        .execute(&pool)
        .await?;
    }
    println!(
        "bulk load to {n} items (setup, not a figure of the service)  {}",
        secs(t.elapsed())
    );
    sqlx::query("ANALYZE settlement_items").execute(&pool).await?;

    let mut c = client.clone();
    let t = Instant::now();
    let closed = c
        .close_window(CloseWindowRequest {
            window_id: window_id.clone(),
        })
        .await?
        .into_inner();
    let d = t.elapsed();
    println!(
        "CloseWindow of {} items ({} postings planned, no ledger)  {}",
        closed.window.map(|w| w.item_count).unwrap_or(0),
        closed.ledger_transfer_ids.len(),
        secs(d)
    );

    let entries = statement_entries(&all);
    let doc = statement::render_csv(&statement_header(currency), &entries);
    let t = Instant::now();
    let report = c
        .reconcile_statement(ReconcileStatementRequest {
            window_id: window_id.clone(),
            format: StatementFormat::Csv as i32,
            document: doc.clone(),
        })
        .await?
        .into_inner()
        .report
        .unwrap_or_default();
    let d = t.elapsed();
    let s = report.summary.unwrap_or_default();
    println!(
        "ReconcileStatement CSV, {} lines ({} MB) vs {n} items  {} (matched {}, breaks {})",
        entries.len(),
        doc.len() / 1_000_000,
        secs(d),
        s.matched,
        report.breaks.len()
    );

    shutdown.trigger();
    let _ = serving.await;
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(1_000_000);
    let recorded = args.get(1).copied().unwrap_or(20_000);
    let concurrency = args.get(2).copied().unwrap_or(16);
    let currency: Currency = "CNY".parse()?;
    let calendar =
        Calendar::parse("Asia/Shanghai", "00:00/T+1", "unionpay=23:00/T+1").map_err(anyhow::Error::msg)?;
    println!(
        "settlement-bench: {n} items, {recorded} recorded through gRPC by {concurrency} clients; {} CPUs",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0)
    );
    domain(n, &calendar, currency);
    service(n, recorded, concurrency, calendar, currency).await
}

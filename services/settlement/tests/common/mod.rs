//! Shared helpers: the real `settlement` binary on a fresh PostgreSQL database.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use payplane_proto::{
    common::v1::Money,
    settlement::v1::{
        ClearedItem, ItemKind, RecordClearedRequest, settlement_service_client::SettlementServiceClient,
    },
};
use payplane_testkit::{ServiceProcess, TestDatabase};
use tonic::transport::Channel;
use uuid::Uuid;

/// Shanghai, unionpay cut-off 23:00 T+1, others midnight T+0.
pub const SHANGHAI_ENV: &[(&str, &str)] = &[
    ("SETTLEMENT_TIME_ZONE", "Asia/Shanghai"),
    ("SETTLEMENT_CHANNEL_CUT_OFFS", "unionpay=23:00/T+1"),
    ("SETTLEMENT_DEFAULT_CUT_OFF", "00:00/T+0"),
];

pub type Client = SettlementServiceClient<Channel>;

pub struct Settlement {
    pub process: ServiceProcess,
    pub db: TestDatabase,
    pub client: Client,
}

/// Starts `settlement` on its own database with automatic closing off and `env` on top.
pub async fn start(prefix: &str, env: &[(&str, &str)]) -> Settlement {
    let db = TestDatabase::create(prefix).await.expect("test database");
    start_on(db, env).await
}

pub async fn start_on(db: TestDatabase, env: &[(&str, &str)]) -> Settlement {
    let mut vars: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SETTLEMENT_AUTO_CLOSE_AFTER", "0s".into()),
        ("LOG_FORMAT", "text".into()),
        ("RUST_LOG", "warn".into()),
    ];
    vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let process = ServiceProcess::start("settlement", &vars, &[])
        .await
        .expect("settlement starts");
    let client = SettlementServiceClient::connect(process.grpc_url())
        .await
        .expect("connect")
        .max_decoding_message_size(512 * 1024 * 1024)
        .max_encoding_message_size(512 * 1024 * 1024);
    Settlement { process, db, client }
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn money(minor_units: i64, currency: &str) -> Option<Money> {
    Some(Money {
        minor_units,
        currency: currency.into(),
    })
}

/// A payment item with ids derived from `n`, so that the same `n` is the same item.
pub fn payment(n: u128, channel: &str, merchant: &str, amount: i64, fee: i64, at: &str) -> ClearedItem {
    let payment_id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n);
    ClearedItem {
        item_id: payplane_core::ids::derive(payment_id, payplane_core::ids::Step::SettlementItem).to_string(),
        kind: ItemKind::Payment as i32,
        payment_id: payment_id.to_string(),
        channel_id: channel.into(),
        merchant_id: merchant.into(),
        amount: money(amount, "CNY"),
        fee: money(fee, "CNY"),
        channel_reference: format!("REF-{n}"),
        cleared_at: Some(ts(t(at))),
        window_id: String::new(),
    }
}

pub fn refund(n: u128, channel: &str, merchant: &str, amount: i64, at: &str) -> ClearedItem {
    let refund_id = Uuid::from_u128(0x0190_0000_0000_7000_9000_0000_0000_0000 | n);
    ClearedItem {
        item_id: payplane_core::ids::derive(refund_id, payplane_core::ids::Step::SettlementItem).to_string(),
        kind: ItemKind::Refund as i32,
        payment_id: refund_id.to_string(),
        channel_id: channel.into(),
        merchant_id: merchant.into(),
        amount: money(amount, "CNY"),
        fee: None,
        channel_reference: format!("RFD-{n}"),
        cleared_at: Some(ts(t(at))),
        window_id: String::new(),
    }
}

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Records `item` and returns the window it went to.
pub async fn record(client: &mut Client, item: ClearedItem) -> String {
    client
        .record_cleared(RecordClearedRequest { item: Some(item) })
        .await
        .expect("record")
        .into_inner()
        .item
        .unwrap()
        .window_id
}

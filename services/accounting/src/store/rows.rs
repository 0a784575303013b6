//! Row <-> domain conversions. u64 values are stored bit-cast in bigint where they may exceed
//! i64 (user_data_64, timestamps stay far below 2^63 until the year 2262).

use sqlx::{Row, postgres::PgRow};
use uuid::Uuid;

use crate::domain::{Account, AccountFlags, Id, Transfer, TransferFlags};

pub fn uuid(id: Id) -> Uuid {
    Uuid::from_u128(id)
}

pub fn u64_to_i64(v: u64) -> i64 {
    v as i64
}

pub fn account_from_row(row: &PgRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: row.try_get::<Uuid, _>("id")?.as_u128(),
        ledger: row.try_get::<i64, _>("ledger")? as u32,
        code: row.try_get::<i32, _>("code")? as u32,
        flags: AccountFlags::from_bits(row.try_get("flags")?),
        debits_pending: row.try_get::<i64, _>("debits_pending")? as u64,
        debits_posted: row.try_get::<i64, _>("debits_posted")? as u64,
        credits_pending: row.try_get::<i64, _>("credits_pending")? as u64,
        credits_posted: row.try_get::<i64, _>("credits_posted")? as u64,
        user_data_128: row.try_get::<Uuid, _>("user_data_128")?.as_u128(),
        user_data_64: row.try_get::<i64, _>("user_data_64")? as u64,
        user_data_32: row.try_get::<i64, _>("user_data_32")? as u32,
        timestamp: row.try_get::<i64, _>("timestamp")? as u64,
    })
}

pub fn transfer_from_row(row: &PgRow) -> Result<Transfer, sqlx::Error> {
    Ok(Transfer {
        id: row.try_get::<Uuid, _>("id")?.as_u128(),
        debit_account_id: row.try_get::<Uuid, _>("debit_account_id")?.as_u128(),
        credit_account_id: row.try_get::<Uuid, _>("credit_account_id")?.as_u128(),
        amount: row.try_get::<i64, _>("amount")? as u64,
        pending_id: row.try_get::<Uuid, _>("pending_id")?.as_u128(),
        user_data_128: row.try_get::<Uuid, _>("user_data_128")?.as_u128(),
        user_data_64: row.try_get::<i64, _>("user_data_64")? as u64,
        user_data_32: row.try_get::<i64, _>("user_data_32")? as u32,
        timeout: row.try_get::<i64, _>("timeout")? as u32,
        ledger: row.try_get::<i64, _>("ledger")? as u32,
        code: row.try_get::<i32, _>("code")? as u32,
        flags: TransferFlags::from_bits(row.try_get("flags")?),
        timestamp: row.try_get::<i64, _>("timestamp")? as u64,
    })
}

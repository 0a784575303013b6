//! `database::connect_and_migrate` against the dev environment's PostgreSQL: two versions
//! starting at once apply each migration exactly once (sqlx's advisory lock).
#![cfg(feature = "postgres")]

use std::time::Duration;

use payplane_runtime::{DatabaseArgs, database::connect_and_migrate};
use sqlx::{Connection, PgConnection, migrate::Migrator};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "DATABASE_URL is not set: this test needs the dev environment's PostgreSQL. Run \
             `ci/devenv up`, then `eval \"$(ci/devenv env)\"`, then the tests."
            )
        })
}

/// `url` pointing at database `name` instead.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a postgres URL with a database");
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_versions_migrating_at_once_apply_each_migration_once() {
    let url = database_url();
    let run: String = (0..4).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    // Hex from rand only: safe to splice into DDL, which takes no bind parameters.
    let name = format!("payplane_runtime_test_{run}");
    let mut admin = PgConnection::connect(&url)
        .await
        .expect("connects to the dev PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("creates a scratch database");

    let dir = std::env::temp_dir().join(format!("payplane-runtime-migrations-{run}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Run twice, either migration would fail: the table exists / the key is taken.
    std::fs::write(
        dir.join("1_accounts.sql"),
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY);",
    )
    .expect("write");
    std::fs::write(dir.join("2_seed.sql"), "INSERT INTO accounts (id) VALUES (1);").expect("write");
    let migrator = Migrator::new(dir.as_path()).await.expect("reads migrations");

    let args = DatabaseArgs {
        database_url: with_database(&url, &name),
        database_max_connections: 2,
        database_acquire_timeout: Duration::from_secs(10),
    };
    let (stable, canary) = tokio::join!(
        connect_and_migrate(&args, &migrator),
        connect_and_migrate(&args, &migrator)
    );
    let (stable, canary) = (
        stable.expect("first migrates"),
        canary.expect("second migrates too"),
    );

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&stable)
        .await
        .expect("query");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&canary)
        .await
        .expect("query");
    assert_eq!((applied, accounts), (2, 1));

    stable.close().await;
    canary.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .expect("drops it");
    let _ = std::fs::remove_dir_all(&dir);
}

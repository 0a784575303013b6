//! PostgreSQL: a pool from [`DatabaseArgs`], with the service's migrations applied.

use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};

use crate::{config::DatabaseArgs, error::Result};

/// Connects a pool and runs `migrator` (e.g. `sqlx::migrate!()`). sqlx holds a PostgreSQL
/// advisory lock while migrating, so two versions starting at once (a canary) is safe.
pub async fn connect_and_migrate(args: &DatabaseArgs, migrator: &Migrator) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(args.database_max_connections)
        .acquire_timeout(args.database_acquire_timeout)
        .connect(&args.database_url)
        .await?;
    migrator.run(&pool).await?;
    tracing::info!(migrations = migrator.iter().count(), "database migrated");
    Ok(pool)
}

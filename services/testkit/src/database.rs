use anyhow::{Context, Result, bail};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The PostgreSQL server for tests, from `DATABASE_URL`.
///
/// Tests need a real PostgreSQL: start one with `ci/devenv up` and `eval "$(ci/devenv env)"`.
/// A missing variable fails the test rather than skipping it, so a test run can never pass by
/// testing nothing.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run `ci/devenv up && eval \"$(ci/devenv env)\"` first")
    })
}

/// A database created for one test, named `t_<prefix>_<random>`, on the server of `DATABASE_URL`.
/// It is dropped when the value is dropped (best effort, on a separate thread), so a failed test
/// leaves its data behind only if the process is killed.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create(prefix: &str) -> Result<Self> {
        let admin_url = database_url();
        let name = format!("t_{}_{}", sanitize(prefix), uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("connecting to DATABASE_URL={admin_url}"))?;
        // Identifiers cannot be bound as parameters; the name is ours (prefix sanitised + uuid).
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await?;
        let url = replace_database(&admin_url, &name)?;
        Ok(Self { name, url, admin_url })
    }

    /// Connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        // Drop runs inside the test's runtime; a fresh runtime on its own thread avoids
        // blocking (or panicking) in it.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = conn
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

fn sanitize(prefix: &str) -> String {
    prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(20)
        .collect::<String>()
        .to_lowercase()
}

/// Swaps the database name in a `postgres://user:pass@host:port/db?params` URL.
fn replace_database(url: &str, database: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let Some(scheme_end) = base.find("://") else {
        bail!("DATABASE_URL is not a URL: {url}")
    };
    let path_start = base[scheme_end + 3..].find('/').map(|i| i + scheme_end + 3);
    let host_part = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_and_keeps_parameters() {
        assert_eq!(
            replace_database("postgres://u:p@127.0.0.1:55432/payplane?sslmode=disable", "t_x").unwrap(),
            "postgres://u:p@127.0.0.1:55432/t_x?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://u@h:1", "d").unwrap(),
            "postgres://u@h:1/d"
        );
    }
}

//! Group commit: one task per replica takes every request queued while the previous transaction
//! ran (up to a size cap, optionally waiting a short window for more) and applies them all in one
//! database transaction. Under load the groups grow by themselves, so a hot account costs one
//! row update per group instead of one per transfer.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::write::{GroupStats, Job, JobResult, apply_group};
use crate::error::Error;

#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// Stop adding requests to a group past this many events.
    pub max_events: usize,
    /// After the first request, wait up to this long for more (zero: take only what is queued).
    pub window: Duration,
    /// Expire at most this many pending transfers per transaction.
    pub expire_limit: usize,
    /// Release drills only: see [`crate::config::Config::fault_lose_minor_unit`].
    pub fault_lose_minor_unit: bool,
}

struct Submission {
    job: Job,
    reply: oneshot::Sender<Result<JobResult, Error>>,
}

/// Handle to the replica's committer task. Cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Submission>,
}

/// Called after each group with its size, for metrics.
pub type Observer = Box<dyn Fn(&GroupStats, usize, Duration) + Send + Sync>;

impl Committer {
    pub fn start(
        pool: PgPool,
        config: GroupConfig,
        observer: Observer,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let handle = tokio::spawn(run(pool, config, rx, observer));
        (Self { tx }, handle)
    }

    pub async fn submit(&self, job: Job) -> Result<JobResult, Error> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Submission { job, reply })
            .await
            .map_err(|_| Error::Unavailable("ledger is shutting down"))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("ledger is shutting down"))?
    }
}

async fn run(pool: PgPool, config: GroupConfig, mut rx: mpsc::Receiver<Submission>, observer: Observer) {
    while let Some(first) = rx.recv().await {
        let mut events = first.job.events();
        let mut group = vec![first];
        let deadline = tokio::time::Instant::now() + config.window;
        while events < config.max_events {
            let next = match rx.try_recv() {
                Ok(s) => Some(s),
                Err(_) if config.window.is_zero() => None,
                Err(_) => tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten(),
            };
            let Some(s) = next else { break };
            events += s.job.events();
            group.push(s);
        }
        let jobs: Vec<&Job> = group.iter().map(|s| &s.job).collect();
        let started = std::time::Instant::now();
        match apply_group(&pool, &jobs, config.expire_limit, config.fault_lose_minor_unit).await {
            Ok((results, stats)) => {
                let p = &stats.phases;
                tracing::debug!(
                    requests = group.len(),
                    events = stats.events,
                    accounts = stats.accounts_touched,
                    lock_us = p.lock.as_micros() as u64,
                    load_us = p.load.as_micros() as u64,
                    apply_us = p.apply.as_micros() as u64,
                    write_us = p.write.as_micros() as u64,
                    commit_us = p.commit.as_micros() as u64,
                    "group committed"
                );
                observer(&stats, group.len(), started.elapsed());
                for (s, r) in group.into_iter().zip(results) {
                    let _ = s.reply.send(Ok(r));
                }
            }
            Err(e) => {
                // Nothing of the group was committed (or the commit's fate is unknown): every
                // caller gets the error and retries with the same ids, which is safe.
                tracing::error!(error = %e, requests = group.len(), "group commit failed");
                for s in group {
                    let _ = s.reply.send(Err(Error::from(&e)));
                }
            }
        }
    }
}

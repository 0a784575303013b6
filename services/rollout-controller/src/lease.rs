//! Leader election on a `coordination.k8s.io/v1` Lease, on kube primitives only
//! (kube-leader-election needs kube 4). client-go's algorithm, simplified:
//!
//! - acquire: create the Lease, or take it over once `renewTime + leaseDurationSeconds` has
//!   passed; every write carries the resourceVersion read, so of two candidates only one wins;
//! - renew every `renew_every` while leading; a failed or lost renewal steps down at once;
//! - step down on shutdown by releasing the Lease (holder cleared), so that a successor need not
//!   wait for expiry.
//!
//! The state is published on a watch channel; the reconciler writes only while it reads `true`.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per process, e.g. the pod name.
    pub identity: String,
    /// How long a lease holds without renewal (client-go default 15 s).
    pub lease_duration: Duration,
    /// Renewal / retry period (client-go retries every 2 s).
    pub renew_every: Duration,
}

/// Who is leading, as seen by this process.
#[derive(Clone, Debug)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// Always leader (single replica, `--leader-elect=false`).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive so receivers never see a closed channel.
        std::mem::forget(tx);
        Self(rx)
    }

    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until this process leads.
    pub async fn acquired(&mut self) {
        let _ = self.0.wait_for(|l| *l).await;
    }

    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

/// Starts the election loop; it runs until `stop`, then releases the Lease if held.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    stop: CancellationToken,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        loop {
            let leading = match try_acquire_or_renew(&api, &config).await {
                Ok(leading) => leading,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %config.name, "lease request failed");
                    false
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(identity = %config.identity, leading, "leadership changed");
            }
            tx.send_replace(leading);
            tokio::select! {
                () = tokio::time::sleep(config.renew_every) => {}
                () = stop.cancelled() => break,
                // Everyone who asked is gone (the process is dying): stop renewing, and let the
                // Lease expire as after a crash.
                () = tx.closed() => return,
            }
        }
        if *tx.borrow() {
            tx.send_replace(false);
            if let Err(e) = release(&api, &config).await {
                tracing::warn!(error = %e, "releasing the lease failed; a successor waits for its expiry");
            }
        }
    });
    (Leadership(rx), handle)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn expired(spec: &LeaseSpec, at: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15).into());
    renewed.0 + duration < at
}

/// One round: returns whether this process holds the Lease afterwards.
pub async fn try_acquire_or_renew(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let seconds = config.lease_duration.as_secs().max(1) as i32;
    let existing = api.get_opt(&config.name).await?;
    let Some(mut lease) = existing else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mine = holder.as_deref() == Some(config.identity.as_str());
    if !mine && holder.is_some() && !expired(spec, Timestamp::now()) {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(seconds);
    // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up if this process holds it.
pub async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    spec.acquire_time = None;
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let t = Timestamp::from_second(1_795_000_000).unwrap();
        let spec = LeaseSpec {
            renew_time: Some(MicroTime(t)),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(!expired(&spec, t + SignedDuration::from_secs(15)));
        assert!(expired(&spec, t + SignedDuration::from_secs(16)));
        assert!(expired(&LeaseSpec::default(), t), "never renewed");
    }
}

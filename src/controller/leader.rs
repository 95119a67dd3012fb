//! Leader election with a `coordination.k8s.io/v1` Lease: the holder renews it every few
//! seconds; another replica takes it over once it has not been renewed for its duration.
//! Updates carry the resourceVersion read, so two replicas cannot both win a take-over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

pub struct Lease {
    api: Api<LeaseObject>,
    name: String,
    identity: String,
    /// How long a Lease not renewed stays held.
    duration_secs: i32,
    leader: Arc<AtomicBool>,
}

impl Lease {
    pub fn new(api: Api<LeaseObject>, name: String, identity: String, duration_secs: u16) -> Lease {
        Lease {
            api,
            name,
            identity,
            duration_secs: i32::from(duration_secs.max(2)),
            leader: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Renew a few times per duration.
    fn renew_every(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.duration_secs).unwrap_or(15) * 1000 / 5)
    }

    /// True while this replica holds the Lease.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.leader.clone()
    }

    /// Try to acquire or renew forever; pokes `changed` when leadership changes.
    pub async fn run(&self, changed: mpsc::Sender<()>) {
        loop {
            let now_leader = match self.attempt().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "cannot renew the Lease");
                    // Keep leading only while our last renewal is still valid: give up early.
                    false
                }
            };
            let was = self.leader.swap(now_leader, Ordering::AcqRel);
            if was != now_leader {
                tracing::info!(lease = %self.name, identity = %self.identity, leader = now_leader, "leadership changed");
                let _ = changed.try_send(());
            }
            tokio::time::sleep(self.renew_every()).await;
        }
    }

    /// Give the Lease up if we hold it (on shutdown): a standby takes it on its next try.
    pub async fn release(&self) {
        self.leader.store(false, Ordering::Release);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the Lease"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "cannot release the Lease"),
        }
    }

    async fn attempt(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let Some(mut lease) = current else {
            let lease = LeaseObject {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, 0, Some(now))),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        if holder == self.identity {
            lease.spec = Some(self.spec(now, transitions, spec.acquire_time.map(|t| t.0)));
        } else {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(self.duration_secs));
            let expired = match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
                Some(t) => t.0 + SignedDuration::from_secs(duration) < now,
                None => true,
            };
            if !expired && !holder.is_empty() {
                return Ok(false);
            }
            lease.spec = Some(self.spec(now, transitions + 1, Some(now)));
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<Timestamp>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_secs),
            acquire_time: acquired.map(MicroTime),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

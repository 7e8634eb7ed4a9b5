//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_crds::{KafkaGateway, KafkaTopic};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use smq_client::{SmqClient, SmqConfig};

use crate::metrics::Metrics;

/// Field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "kafka-operator";

pub struct Context {
    pub client: Client,
    pub topics: Store<KafkaTopic>,
    pub gateways: Store<KafkaGateway>,
    pub smq: SmqPool,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub topic_memo: crate::topic::memo::TopicMemo,
    /// Image and pull secrets of KafkaGateways that do not set them.
    pub gateway_defaults: crate::gateway::resources::GatewayDefaults,
}

fn build_event(warning: bool, reason: &str, message: &str, action: &str) -> Event {
    Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(message.chars().take(1000).collect()),
        action: action.to_string(),
        secondary: None,
    }
}

impl Context {
    /// Records an Event; a failure is logged and otherwise ignored, since an Event is never worth
    /// failing (and retrying) a reconcile for.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        message: &str,
        action: &str,
    ) {
        let ev = build_event(warning, reason, message, action);
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not record an Event");
        }
    }

    /// Records an Event without waiting for the API server, so the reconcile that caused it does
    /// not hold one of the controller's concurrency slots for it.
    pub fn event_in_background<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        message: &str,
        action: &str,
    ) {
        let ev = build_event(warning, reason, message, action);
        let recorder = self.recorder.clone();
        let reference = obj.object_ref(&());
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, reason = ev.reason, "could not record an Event");
            }
        });
    }
}

/// One SMQ client per master address, shared by all reconciles: a client per reconcile would
/// open a connection per topic (the Redpanda operator's TIME_WAIT pile-up).
#[derive(Default)]
pub struct SmqPool {
    clients: Mutex<HashMap<String, SmqClient>>,
}

impl SmqPool {
    pub fn get(&self, master: &str) -> SmqClient {
        // Every holder does one lookup or insert, so a poisoned map is still consistent.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(master.to_string())
            .or_insert_with(|| SmqClient::new(SmqConfig::with_master(master)))
            .clone()
    }
}

/// `base` plus up to 10% random jitter, so objects created together do not resync together.
pub fn jittered(base: Duration) -> Duration {
    let extra = base.as_millis() as u64 / 10;
    base + Duration::from_millis(if extra == 0 {
        0
    } else {
        rand::random_range(0..=extra)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(600));
            assert!(
                d >= Duration::from_secs(600) && d <= Duration::from_secs(660),
                "{d:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}

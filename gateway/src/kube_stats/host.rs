//! The gateway as the reporter sees it: its partitions' offsets from the store, its leadership
//! and writes in the gateway's metrics.

use std::sync::Arc;

use kafka_kube_stats::{Figures, Host};

use std::collections::BTreeMap;

use crate::cluster::peer::led_offsets;
use crate::cluster::{Cluster, Member};
use crate::error::{GatewayError, GatewayResult};
use crate::metrics::Metrics;
use crate::storage::Store;

pub(super) struct StoreHost {
    pub(super) store: Arc<Store>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) cluster: Arc<Cluster>,
}

impl Host for StoreHost {
    type Error = GatewayError;

    async fn writes_any_partition(&self) -> bool {
        self.store.writes_any_partition().await
    }

    /// This gateway's figures, with those of partitions another gateway leads asked from it (its
    /// own may be stale: only the leader's move). A peer that does not answer leaves ours.
    async fn partitions(&self, topic: &str) -> GatewayResult<Option<Vec<Figures>>> {
        let Some(t) = self.store.topic(topic).await? else {
            return Ok(None);
        };
        let mut figures: Vec<Figures> = t
            .partitions
            .iter()
            .enumerate()
            .map(|(index, p)| Figures {
                partition: index as i32,
                high_watermark: p.high_water_mark(),
                log_start_offset: p.log_start(),
            })
            .collect();
        let mut peers: BTreeMap<i32, Member> = BTreeMap::new();
        for f in &figures {
            if let Some(m) = self.cluster.peer_leader(topic, f.partition) {
                peers.insert(m.node_id, m);
            }
        }
        for peer in peers.values() {
            match led_offsets(peer, topic).await {
                Ok(led) => {
                    for l in led {
                        if let Some(f) = figures.get_mut(l.partition as usize) {
                            f.high_watermark = l.high_water_mark;
                            f.log_start_offset = l.log_start_offset;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(topic, peer = peer.node_id, error = %e, "reading a peer's partition offsets failed; reporting ours")
                }
            }
        }
        Ok(Some(figures))
    }

    fn set_leading(&self, leading: bool) {
        self.metrics.stats_leader.set(i64::from(leading));
    }

    fn status_written(&self, ok: bool) {
        self.metrics.status_write(ok);
    }
}

//! The gateway as the reporter sees it: its partitions' offsets from the store, its leadership
//! and writes in the gateway's metrics.

use std::sync::Arc;

use kafka_kube_stats::{Figures, Host};

use crate::error::{GatewayError, GatewayResult};
use crate::metrics::Metrics;
use crate::storage::Store;

pub(super) struct StoreHost {
    pub(super) store: Arc<Store>,
    pub(super) metrics: Arc<Metrics>,
}

impl Host for StoreHost {
    type Error = GatewayError;

    async fn writes_any_partition(&self) -> bool {
        self.store.writes_any_partition().await
    }

    async fn partitions(&self, topic: &str) -> GatewayResult<Option<Vec<Figures>>> {
        Ok(self.store.topic(topic).await?.map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(|(index, p)| Figures {
                    partition: index as i32,
                    high_watermark: p.high_water_mark(),
                    log_start_offset: p.log_start(),
                })
                .collect()
        }))
    }

    fn set_leading(&self, leading: bool) {
        self.metrics.stats_leader.set(i64::from(leading));
    }

    fn status_written(&self, ok: bool) {
        self.metrics.status_write(ok);
    }
}

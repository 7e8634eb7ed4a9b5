//! What the reporter needs from the gateway it runs in.

use std::fmt::Display;
use std::future::Future;

use crate::Figures;

pub trait Host: Send + Sync + 'static {
    type Error: Display;

    /// Whether this gateway writes any partition now. Only the gateway that writes a partition
    /// knows its current high water mark, so the election prefers such a gateway.
    fn writes_any_partition(&self) -> impl Future<Output = bool> + Send;

    /// This gateway's offsets of every partition of the Kafka topic, or None when the topic does
    /// not exist (yet). May have to ask the backend, hence the error.
    fn partitions(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<Option<Vec<Figures>>, Self::Error>> + Send;

    /// Whether this gateway is the elected reporter now (the gateway's `stats_leader` gauge).
    fn set_leading(&self, leading: bool);

    /// One status write done, or failed (the gateway's `topic_status_writes` counter).
    fn status_written(&self, ok: bool);
}

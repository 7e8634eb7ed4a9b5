//! Deletion requests from the operator (`deletionPolicy: Delete`): the operator writes one to the
//! filer (`smq_client::DeletionRequest`), and a gateway deletes the topic exactly as DeleteTopics
//! does (offsets, catalog, SMQ files) and removes the request. A failure is written into the
//! request, where the operator reports it as a condition, and retried.

use std::sync::Arc;
use std::time::Duration;

use crate::error::GatewayError;
use crate::protocol::{Context, delete_topic};

/// How often the requests are looked at.
const EVERY: Duration = Duration::from_secs(3);

/// Serves deletion requests until the task is dropped.
pub async fn serve_deletion_requests(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = one_pass(&ctx).await {
            tracing::warn!(error = %e, "reading topic deletion requests failed; will retry");
        }
    }
}

async fn one_pass(ctx: &Context) -> Result<(), GatewayError> {
    let client = ctx.store.client();
    let namespace = &ctx.store.settings().namespace;
    for (name, mut request) in client.topic_deletion_requests(namespace).await? {
        match delete_topic(ctx, &name).await {
            // Gone already (deleted by DeleteTopics, or never created): the request is done.
            Ok(()) | Err(GatewayError::UnknownTopicOrPartition(_)) => {
                tracing::info!(topic = %name, by = %request.requested_by, "deleted the topic on request");
                client
                    .remove_topic_deletion_request(namespace, &name)
                    .await?;
            }
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "deleting a topic on request failed; will retry");
                request.failed_attempts += 1;
                request.last_error = Some(e.to_string());
                client
                    .put_topic_deletion_request(namespace, &name, &request)
                    .await?;
            }
        }
    }
    Ok(())
}

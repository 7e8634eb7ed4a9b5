use std::sync::atomic::Ordering;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use super::Context;
use crate::error::{GatewayError, GatewayResult};

/// Gives idempotent producers an id. Transactions are not supported, so a transactional id is
/// refused rather than silently ignored.
pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: InitProducerIdRequest,
) -> GatewayResult<InitProducerIdResponse> {
    if req.transactional_id.is_some() {
        return Ok(InitProducerIdResponse::default()
            .with_error_code(GatewayError::NotSupported("transactions".into()).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1));
    }
    // A producer re-initialising with its id gets the next epoch; a new one gets a new id.
    let (id, epoch) = if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        (req.producer_id.0, req.producer_epoch.saturating_add(1))
    } else {
        (ctx.next_producer_id.fetch_add(1, Ordering::Relaxed), 0)
    };
    Ok(InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch))
}

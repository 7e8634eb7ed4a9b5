//! AlterConfigs (the older, whole-set form): a topic's configs become exactly those given.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayError;

const TOPIC: i8 = 2;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: AlterConfigsRequest,
) -> crate::error::GatewayResult<AlterConfigsResponse> {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let r = if res.resource_type != TOPIC {
            Err(GatewayError::InvalidConfig(format!(
                "resource type {} cannot be altered (only topics)",
                res.resource_type
            )))
        } else {
            let set: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            ctx.store
                .alter_topic_configs(res.resource_name.as_str(), set, req.validate_only)
                .await
        };
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err(e) = r {
            out = out
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.to_string())));
        }
        responses.push(out);
    }
    Ok(AlterConfigsResponse::default().with_responses(responses))
}

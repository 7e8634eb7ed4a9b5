//! IncrementalAlterConfigs: SET and DELETE of topic configs (APPEND and SUBTRACT apply to list
//! configs, which topics here do not have).

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
};

use super::{Context, sb};
use crate::error::{GatewayError, GatewayResult};

const TOPIC: i8 = 2;
const SET: i8 = 0;
const DELETE: i8 = 1;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: IncrementalAlterConfigsRequest,
) -> GatewayResult<IncrementalAlterConfigsResponse> {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let r = async {
            if res.resource_type != TOPIC {
                return Err(GatewayError::InvalidConfig(format!(
                    "resource type {} cannot be altered (only topics)",
                    res.resource_type
                )));
            }
            let name = res.resource_name.as_str();
            let t = ctx
                .store
                .topic(name)
                .await?
                .ok_or_else(|| GatewayError::UnknownTopicOrPartition(name.to_string()))?;
            let mut set: BTreeMap<String, String> = t.configs().set;
            for c in &res.configs {
                let key = c.name.to_string();
                match (c.config_operation, &c.value) {
                    (SET, Some(v)) => {
                        set.insert(key, v.to_string());
                    }
                    (SET, None) | (DELETE, _) => {
                        set.remove(&key);
                    }
                    (op, _) => {
                        return Err(GatewayError::InvalidConfig(format!(
                            "operation {op} on {key}: APPEND and SUBTRACT apply only to list configs"
                        )));
                    }
                }
            }
            ctx.store
                .alter_topic_configs(name, set, req.validate_only)
                .await
        }
        .await;
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
    Ok(IncrementalAlterConfigsResponse::default().with_responses(responses))
}

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::{GatewayError, GatewayResult};
use crate::storage::topic_config_known;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources: DYNAMIC_TOPIC_CONFIG = 1, DEFAULT_CONFIG = 5.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: DescribeConfigsRequest,
) -> GatewayResult<DescribeConfigsResponse> {
    let mut results = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let wanted = |k: &str| keys.as_ref().is_none_or(|ks| ks.iter().any(|x| x == k));
        let result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let r = match res.resource_type {
            TOPIC => match ctx.store.topic(&res.resource_name).await {
                Ok(Some(t)) => Ok({
                    let configs = t.configs();
                    topic_config_known()
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, _)| {
                            let default = configs.is_default(k);
                            DescribeConfigsResourceResult::default()
                                .with_name(sb(*k))
                                .with_value(configs.get(k).map(sb))
                                .with_config_source(if default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_TOPIC
                                })
                        })
                        .collect()
                }),
                Ok(None) => Err(GatewayError::UnknownTopicOrPartition(
                    res.resource_name.to_string(),
                )),
                Err(e) => Err(e),
            },
            BROKER => Ok([
                (
                    "auto.create.topics.enable",
                    ctx.store.settings().auto_create_topics.to_string(),
                ),
                (
                    "num.partitions",
                    ctx.store.settings().default_partitions.to_string(),
                ),
                (
                    "message.max.bytes",
                    ctx.store.settings().max_message_bytes.to_string(),
                ),
            ]
            .into_iter()
            .filter(|(k, _)| wanted(k))
            .map(|(k, v)| {
                DescribeConfigsResourceResult::default()
                    .with_name(sb(k))
                    .with_value(Some(sb(v)))
                    .with_read_only(true)
                    .with_config_source(SOURCE_DEFAULT)
            })
            .collect()),
            other => Err(GatewayError::InvalidConfig(format!(
                "resource type {other} is not supported"
            ))),
        };
        results.push(match r {
            Ok(configs) => result.with_configs(configs),
            Err(e) => result
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.to_string()))),
        });
    }
    Ok(DescribeConfigsResponse::default().with_results(results))
}

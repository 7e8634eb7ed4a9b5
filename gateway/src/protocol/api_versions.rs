use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, RequestHeader};

use super::{Context, SUPPORTED};
use crate::error::GatewayResult;

pub async fn handle(
    _ctx: &Context,
    _header: &RequestHeader,
    _req: ApiVersionsRequest,
) -> GatewayResult<ApiVersionsResponse> {
    Ok(response(0))
}

/// The advertised APIs, derived from the handler table.
pub fn response(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            SUPPORTED
                .iter()
                .map(|(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*min)
                        .with_max_version(*max)
                })
                .collect(),
        )
}

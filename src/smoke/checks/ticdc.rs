//! TiCDC hops through the OpenAPI v2 client of `crate::ticdc_api`.

use std::time::Duration;

use crate::ticdc_api::{TicdcClient, describe_lag, now_ms};

/// `GET /api/v2/health` answers 200 within `deadline`.
pub async fn health(client: &TicdcClient, deadline: Duration) -> anyhow::Result<String> {
    client.wait_healthy(deadline).await?;
    Ok(format!("TiCDC {} healthy", client.base()))
}

/// The changefeed is `normal` within `deadline`; `failed` ends the wait with its error.
pub async fn changefeed_normal(
    client: &TicdcClient,
    id: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let info = client
        .wait_normal(id, None, deadline, Duration::from_secs(1))
        .await?;
    Ok(format!(
        "changefeed {id} normal, {}",
        describe_lag(&info, now_ms())
    ))
}

//! TiCDC OpenAPI v2 client and `cdcmon changefeed ensure` (issue 3): placeholder until then.

/// Flags of `cdcmon changefeed ensure`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangefeedEnsureArgs {}

pub async fn run_ensure(_args: ChangefeedEnsureArgs) -> anyhow::Result<()> {
    anyhow::bail!("cdcmon changefeed ensure is not implemented yet")
}

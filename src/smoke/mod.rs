//! `cdcmon smoke` (issue 3): placeholder until then.

/// Flags of `cdcmon smoke`.
#[derive(Debug, Clone, clap::Args)]
pub struct SmokeArgs {}

pub async fn run(_args: SmokeArgs) -> anyhow::Result<()> {
    anyhow::bail!("cdcmon smoke is not implemented yet")
}

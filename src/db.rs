//! `cdcmon db init` (issue 3): owned by the setup-commands work; placeholder until then.

/// Flags of `cdcmon db init`.
#[derive(Debug, Clone, clap::Args)]
pub struct DbInitArgs {}

pub async fn run(_args: DbInitArgs) -> anyhow::Result<()> {
    anyhow::bail!("cdcmon db init is not implemented yet")
}

//! The `cdcmon` binary: parse flags, start logging, dispatch. Logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use cdcmon::cli::{ChangefeedCommand, Cli, Command, DbCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = cdcmon::cli::init_logging(cli.log_format, &cli.log) {
        eprintln!("cdcmon: {err:#}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One readable line: the error and its causes, joined.
            eprintln!("cdcmon: {err:#}");
            // 3 for a changefeed that cannot resume (systemd is told not to retry it), else 1.
            ExitCode::from(cdcmon::ticdc_api::exit_code(&err))
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    if let Command::Decode(args) = &command {
        // Synchronous and short-lived: no runtime needed.
        return cdcmon::decode_cmd::run(args, &mut std::io::stdout().lock());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        match command {
            Command::Consume(args) => {
                let shutdown = CancellationToken::new();
                cdcmon::shutdown::cancel_on_signals(shutdown.clone())?;
                cdcmon::consumer::run(args, shutdown, cdcmon::consumer::exit_on_stop_overrun).await
            }
            Command::Decode(_) => unreachable!("handled above"),
            Command::Smoke(args) => cdcmon::smoke::run(args).await,
            Command::Db(DbCommand::Init(args)) => cdcmon::db::run(args).await,
            Command::Changefeed(ChangefeedCommand::Ensure(args)) => {
                cdcmon::ticdc_api::run_ensure(args).await
            }
            Command::Demo(args) => {
                let shutdown = CancellationToken::new();
                cdcmon::shutdown::cancel_on_signals(shutdown.clone())?;
                cdcmon::demo::run(args, shutdown).await
            }
        }
    })
}

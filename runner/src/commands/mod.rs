//! One module per subcommand; each exports one `run`.

mod build;
pub(crate) mod diff;
mod image;
mod init;
mod lock;
mod vary;
mod verify;

use anyhow::{Context as _, Result};

use crate::cli::{Cli, Command};
use crate::engine::Engine;
use crate::exit::Exit;
use crate::printer::Printer;

/// Runs the parsed command line.
pub async fn run(cli: Cli, printer: &Printer) -> Result<Exit> {
    crate::signal::install();
    match cli.command {
        Command::Build(args) => build::run(&cli.global, args, printer).await,
        Command::Image(cmd) => image::run(&cli.global, cmd, printer).await,
        Command::Lock(args) => lock::run(&cli.global, args, printer).await,
        Command::Verify(args) => verify::run(&cli.global, args, printer).await,
        Command::Diff(args) => diff::run(&cli.global, args, printer).await,
        Command::Init { force } => init::run(&cli.global, force, printer).await,
    }
}

/// Connects to the engine the global options select.
async fn connect(global: &crate::cli::GlobalArgs) -> Result<Engine> {
    Engine::connect(global.engine.as_ref()).await.context("no container engine")
}

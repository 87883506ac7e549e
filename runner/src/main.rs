//! `repro-run`: hermetic, reproducible builds in Docker or Podman.
//!
//! # Layout
//!
//! - `main` (this file): parses arguments, sets up logging, calls
//!   [`commands::run`] and maps the outcome to the documented exit codes
//!   ([`exit`]). Nothing else decides an exit code.
//! - [`cache`]: small JSON caches (image digests, engine facts, whether an
//!   engine sees this machine's files).
//! - [`cli`]: the clap definitions; their doc comments are the `--help` text.
//! - [`commands`]: one module per subcommand, each with one `run`.
//! - [`engine`]: the bollard client, behind a narrow set of calls, and the
//!   guard that owns each container.
//! - [`images`]: built-in image recipes, import, and rootfs digests.
//! - [`prepare`]: base image + toolchain packages → toolchain image.
//! - [`source`]: the project's files → a normalised tar for `/src`, or the
//!   same tree staged on this machine for a bind mount (a copy, or an EROFS
//!   image), hashed as the tar would be without making one.
//! - [`trees`]: staged trees kept between builds, found by their digest
//!   (guessed from a fingerprint of the sources), and their eviction.
//! - [`direct`]: a file written with direct I/O on a thread of its own
//!   (a new kept image).
//! - [`staging`]: the staged tree's directory, its overlay over a kept
//!   tree, the mount check, and outputs read back from it.
//! - [`pipe`]: a bounded in-process pipe between threads.
//! - [`outputs`]: a tar stream from the container → a safe output directory.
//! - [`printer`]: all user-facing output (stdout for data, stderr for the rest).
//! - [`signal`]: Ctrl-C and SIGTERM, as a future every long step races.

mod cache;
mod cli;
mod commands;
mod direct;
mod engine;
mod exit;
mod images;
mod outputs;
mod pipe;
mod prepare;
mod printer;
mod profiles;
mod signal;
mod source;
mod staging;
mod trees;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.global.verbose);
    let printer = printer::Printer::new(cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            printer.error(&anyhow::Error::new(err).context("cannot start the async runtime"));
            return exit::Exit::Usage.into();
        }
    };
    let result = runtime.block_on(commands::run(cli, &printer));
    // Dropping the runtime here (not exiting the process) lets every guard
    // run before we leave.
    drop(runtime);
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            printer.error(&err);
            exit::classify(&err).into()
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,repro_run=info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPRO_RUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

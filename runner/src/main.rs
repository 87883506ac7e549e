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
//! - [`engine`]: the engine interface in the project's own types (a
//!   container spec, an exit state, capabilities) and its one
//!   implementation, the Docker Engine API (Docker, Podman);
//!   the guard that owns each container; orphans of a killed run.
//! - [`entry`]: the static entry helper every build command runs through
//!   (the exact environment and umask, on any image).
//! - [`images`]: built-in image recipes, the base image a manifest names,
//!   import, and rootfs digests.
//! - [`locking`]: repro.lock made and followed (what `lock` and `build`
//!   share): drift, reuse of a matching lock, the toolchain it names.
//! - [`toolchain`]: resolving (the one container with a network), the
//!   package store, and preparing toolchain images from it offline.
//! - [`project`]: the manifest, its profile and directory; atomic writes.
//! - [`pipeline`]: one hermetic build, resolved build in, outcome out;
//!   what `build` calls, and `lock` and `verify` will.
//! - [`sources`]: the project's files → `/src`, behind one door: walked,
//!   normalised and digested once, then mounted from this machine (over a
//!   tree kept from an earlier build, where it can) or uploaded as a tar.
//! - [`outputs`]: a tar stream from the container → a safe output directory.
//! - [`printer`]: all user-facing output (stdout for data, stderr for the rest).
//! - [`signal`]: Ctrl-C and SIGTERM, as a future every long step races.
//!
//! # One build, through the modules
//!
//! ```text
//!   cli ─▶ commands::build ─ manifest + profile (core) ─▶ BuildPlan
//!            │  locking::ensure ─ repro.lock (core::lock) ─▶ env_id
//!            │    images::base_image ─▶ images (recipe, import, digest)
//!            │    toolchain::resolve (the one container with a network;
//!            │      only when the lock is missing or drifted) ─▶ store
//!            │    toolchain::prepare (from the store, network off)
//!            ▼
//!          pipeline::run ─▶ sources::place ─▶ engine::create (ContainerSpec)
//!                        ─▶ engine::run ─▶ ExitState, the log
//!                        ─▶ sources::Placed::output ─▶ outputs::extract
//!                        ─▶ sources::Placed::release (container, stage)
//!            ▼
//!          commands::build ─▶ the record (core::record), the printer
//! ```

mod cache;
mod cli;
mod commands;
mod engine;
mod entry;
mod exit;
mod images;
mod locking;
mod outputs;
mod pipeline;
mod printer;
mod profiles;
mod project;
mod signal;
mod sources;
mod toolchain;

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

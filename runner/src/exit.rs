//! The one exit-code policy.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success / reproducible |
//! | 1    | not reproducible; repro.lock and repro.toml disagree (`lock --check`, `build --locked`) |
//! | 2    | usage, manifest or lock error |
//! | 3    | engine unreachable or engine error |
//! | 4    | the build failed (non-zero exit, timeout), or a declared output is missing or cannot be collected |
//! | 5    | `verify`: the environment drifted from the record's (env_id, base or toolchain rootfs, sources) |
//! | 130  | interrupted (Ctrl-C or SIGTERM); containers were removed |
//!
//! Errors are classified by marker types found anywhere in their chain, so
//! code deep down only has to attach the right marker once.

use std::process::ExitCode;

/// What the process exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything went well.
    Success,
    /// 1: the builds differ, or the lock does not hold what the manifest
    /// asks for.
    NotReproducible,
    /// 2: bad arguments, manifest or lock.
    Usage,
    /// 3: the engine is unreachable or failed.
    Engine,
    /// 4: the build command failed.
    BuildFailed,
    /// 5: `verify` rebuilt in another environment than the record's.
    Drifted,
    /// 130: interrupted by a signal.
    Interrupted,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(match e {
            Exit::Success => 0,
            Exit::NotReproducible => 1,
            Exit::Usage => 2,
            Exit::Engine => 3,
            Exit::BuildFailed => 4,
            Exit::Drifted => 5,
            Exit::Interrupted => 130,
        })
    }
}

/// Marker: the engine could not be reached or refused a request.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Marker: repro.lock does not hold what repro.toml asks for (or what
/// this machine prepares), where the lock must be followed as it is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Drift(pub String);

/// Marker: the build command ran and failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildFailed(pub String);

/// Marker: a declared output the build made could not be collected (an
/// entry refused, the tar unreadable, a write to the output directory
/// failed). It counts as a failed build, unless a more precise marker
/// (engine, interruption) is found under it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OutputFailed(pub anyhow::Error);

/// Marker: a signal asked us to stop.
#[derive(Debug, thiserror::Error)]
#[error("interrupted; every container this run started has been removed")]
pub struct Interrupted;

/// The exit code for an error.
///
/// Anything without a marker is a usage error (exit 2).
pub fn classify(err: &anyhow::Error) -> Exit {
    let mut fallback = Exit::Usage;
    for cause in err.chain() {
        if cause.is::<Interrupted>() {
            return Exit::Interrupted;
        }
        if cause.is::<BuildFailed>() {
            return Exit::BuildFailed;
        }
        if cause.is::<Drift>() {
            return Exit::NotReproducible;
        }
        if cause.is::<EngineError>() || from_the_engine(cause) {
            return Exit::Engine;
        }
        if cause.is::<OutputFailed>() {
            fallback = Exit::BuildFailed;
        }
    }
    fallback
}

/// An engine's error, also one that a stream from the engine (a download,
/// an export) carries inside an `io::Error`: that error's `source()` skips
/// what it wraps, so the chain alone never shows it.
fn from_the_engine(cause: &(dyn std::error::Error + 'static)) -> bool {
    let engine = |e: &(dyn std::error::Error + 'static)| crate::engine::is_engine_failure(e);
    engine(cause)
        || cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).is_some_and(|inner| engine(inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn markers_anywhere_in_the_chain_decide() {
        let e = Err::<(), _>(EngineError("down".into())).context("building").unwrap_err();
        assert_eq!(classify(&e), Exit::Engine);
        let e = Err::<(), _>(BuildFailed("exit 2".into())).context("x").unwrap_err();
        assert_eq!(classify(&e), Exit::BuildFailed);
        assert_eq!(classify(&anyhow::Error::new(Interrupted)), Exit::Interrupted);
        assert_eq!(classify(&anyhow::anyhow!("bad manifest")), Exit::Usage);
    }

    #[test]
    fn an_output_that_cannot_be_collected_is_a_failed_build() {
        let io = std::io::Error::from(std::io::ErrorKind::IsADirectory);
        let e = anyhow::Error::new(OutputFailed(anyhow::Error::new(io).context("cannot open out/f")))
            .context("cannot collect the output `out/f`");
        assert_eq!(classify(&e), Exit::BuildFailed);
        // The marker adds no text of its own.
        assert_eq!(format!("{e:#}"), "cannot collect the output `out/f`: cannot open out/f: is a directory");
        // An engine failure under it (a download that broke) stays one.
        let engine = std::io::Error::other(crate::engine::an_api_error_for_tests());
        let e = anyhow::Error::new(OutputFailed(anyhow::Error::new(engine).context("cannot read the output tar")));
        assert_eq!(classify(&e), Exit::Engine);
    }
}

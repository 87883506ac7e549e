//! The one exit-code policy.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success / reproducible |
//! | 1    | not reproducible (the commands that compare builds, when they come) |
//! | 2    | usage, manifest or lock error |
//! | 3    | engine unreachable or engine error |
//! | 4    | the build command itself failed (non-zero exit, timeout) |
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
    /// 1: the builds differ (for the commands that compare builds; none
    /// uses it yet).
    #[allow(dead_code)]
    NotReproducible,
    /// 2: bad arguments, manifest or lock.
    Usage,
    /// 3: the engine is unreachable or failed.
    Engine,
    /// 4: the build command failed.
    BuildFailed,
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
            Exit::Interrupted => 130,
        })
    }
}

/// Marker: the engine could not be reached or refused a request.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Marker: the build command ran and failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildFailed(pub String);

/// Marker: a signal asked us to stop.
#[derive(Debug, thiserror::Error)]
#[error("interrupted; every container this run started has been removed")]
pub struct Interrupted;

/// The exit code for an error.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.is::<Interrupted>() {
            return Exit::Interrupted;
        }
        if cause.is::<BuildFailed>() {
            return Exit::BuildFailed;
        }
        if cause.is::<EngineError>() || crate::engine::is_engine_failure(cause) {
            return Exit::Engine;
        }
    }
    Exit::Usage
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
}

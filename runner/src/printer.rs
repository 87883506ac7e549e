//! All user-facing output goes through here: data to stdout, progress and
//! errors to stderr. `--quiet` silences progress, never data or errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Where user output goes.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    quiet: bool,
}

impl Printer {
    /// A printer; `quiet` drops progress messages and build logs.
    pub fn new(quiet: bool) -> Self {
        Printer { quiet }
    }

    /// One line of data (digests, listings) on stdout.
    pub fn data(&self, line: impl std::fmt::Display) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = writeln!(out, "{line}");
    }

    /// One progress line on stderr.
    pub fn status(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Raw build-log bytes on stderr.
    pub fn log(&self, bytes: &[u8]) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(bytes);
        }
    }

    /// Whether progress is shown at all.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// An error and its causes, then any hint, on stderr.
    pub fn error(&self, err: &anyhow::Error) {
        let mut text = format!("error: {err}");
        for cause in err.chain().skip(1) {
            let cause = cause.to_string();
            // Markers repeat their inner message; say each thing once.
            if !text.contains(&cause) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
        }
        eprintln!("{text}");
    }
}

impl Printer {
    /// A progress line that overwrites itself on a terminal.
    pub fn progress(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
        }
    }
}

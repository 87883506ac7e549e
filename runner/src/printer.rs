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

/// The last lines of a log, for error messages.
#[derive(Default)]
pub struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 8 * 1024;

    /// Appends log bytes, keeping only the end.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * Self::KEEP {
            self.bytes.drain(..self.bytes.len() - Self::KEEP);
        }
    }

    /// The last 20 lines, indented.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return "    (no output)".to_owned();
        }
        let start = lines.len().saturating_sub(20);
        lines[start..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::Tail;

    #[test]
    fn tail_keeps_the_last_twenty_lines() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text();
        assert!(text.starts_with("    line 80\n"));
        assert!(text.ends_with("    line 99"));
    }
}

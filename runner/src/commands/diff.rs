//! `repro-run diff A B`: two build records, or two locks, compared field by
//! field (`repro_run_core::diff`), each difference filed under what it
//! blames; or two output trees (directories, such as the `out/` of two
//! rebuilds verify kept), compared file by file and each difference
//! explained (`repro_run_core::compare`), as verify compares them.
//!
//! Which of the two a file is, is read from its content, not its name:
//! records get renamed (`linux.json`, `ci-1234.json`) and locks get
//! copied out of their project. A record is JSON whose `format` is
//! [`RECORD_FORMAT`]; a lock is TOML that [`Lock::parse`] reads. Anything
//! else is refused with what it looked like, so that a wrong path (the
//! manifest, a verify report) is caught rather than compared.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use repro_run_core::compare;
use repro_run_core::diff::{self, Finding};
use repro_run_core::lock::{Lock, LOCK_FORMAT};
use repro_run_core::record::{BuildRecord, RECORD_FORMAT};
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::exit::Exit;
use crate::printer::Printer;

/// The JSON report's format version.
const REPORT_FORMAT: &str = "repro-run-diff-v1";

/// `repro-run diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The first record, lock, or output tree (a directory).
    pub a: PathBuf,
    /// The second.
    pub b: PathBuf,
    /// `text` (default) or `json`.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
}

/// How `diff` prints its findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// One header per area, one line per difference.
    Text,
    /// `{"format": "repro-run-diff-v1", "kind": ..., "findings": [...]}`.
    Json,
}

/// What a file given to `diff` holds.
#[derive(Debug)]
enum Input {
    Record(Box<BuildRecord>),
    Lock(Box<Lock>),
}

impl Input {
    fn kind(&self) -> &'static str {
        match self {
            Input::Record(_) => "a build record",
            Input::Lock(_) => "a lock",
        }
    }
}

/// The JSON report.
#[derive(Serialize)]
struct Report<'a> {
    format: &'static str,
    /// `records` or `locks`.
    kind: &'static str,
    findings: &'a [Finding],
}

/// Runs `repro-run diff`: exit 0 when A and B do not differ, 1 when they
/// do, 2 when either cannot be read or they are not of one kind.
pub async fn run(_global: &GlobalArgs, args: DiffArgs, printer: &Printer) -> Result<Exit> {
    match (args.a.is_dir(), args.b.is_dir()) {
        (true, true) => return trees(&args, printer),
        (true, false) | (false, true) => {
            let (dir, file) = if args.a.is_dir() { (&args.a, &args.b) } else { (&args.b, &args.a) };
            bail!(
                "{} is a directory and {} is not: diff compares two output trees, two build records or two locks",
                dir.display(),
                file.display()
            )
        }
        (false, false) => {}
    }
    let a = read_input(&args.a)?;
    let b = read_input(&args.b)?;
    let (kind, findings) = match (&a, &b) {
        (Input::Record(a), Input::Record(b)) => ("records", diff::records(a, b)),
        (Input::Lock(a), Input::Lock(b)) => ("locks", diff::locks(a, b)),
        _ => bail!(
            "{} is {} and {} is {}: diff compares two build records or two locks",
            args.a.display(),
            a.kind(),
            args.b.display(),
            b.kind()
        ),
    };
    match args.format {
        DiffFormat::Text => {
            for line in diff::render_text(&findings).lines() {
                printer.data(line);
            }
        }
        DiffFormat::Json => {
            let report = Report { format: REPORT_FORMAT, kind, findings: &findings };
            printer.data(serde_json::to_string_pretty(&report).context("cannot write the report as JSON")?);
        }
    }
    Ok(if findings.is_empty() { Exit::Success } else { Exit::NotReproducible })
}

/// Two output trees, file by file: each difference explained.
fn trees(args: &DiffArgs, printer: &Printer) -> Result<Exit> {
    let clues = super::verify::clues();
    let comparison = compare::compare_trees(&args.a, &args.b, &clues)
        .with_context(|| format!("cannot compare {} with {}", args.a.display(), args.b.display()))?;
    match args.format {
        DiffFormat::Text => printer.data(&comparison),
        DiffFormat::Json => {
            let report = TreeReport { format: REPORT_FORMAT, kind: "trees", comparison: &comparison };
            printer.data(serde_json::to_string_pretty(&report).context("cannot write the report as JSON")?);
        }
    }
    Ok(if comparison.is_reproducible() { Exit::Success } else { Exit::NotReproducible })
}

/// The JSON report of two trees.
#[derive(Serialize)]
struct TreeReport<'a> {
    format: &'static str,
    /// `trees`.
    kind: &'static str,
    comparison: &'a compare::TreeComparison,
}

/// Reads a record or a lock; errors name the path.
fn read_input(path: &Path) -> Result<Input> {
    let bytes = fs_err::read(path)?;
    detect(&bytes).with_context(|| format!("cannot compare {}", path.display()))
}

/// Which of the two `bytes` are, from their content; an error says what
/// they looked like instead.
fn detect(bytes: &[u8]) -> Result<Input> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        bail!("it is a binary file, not a build record (JSON) or a lock (TOML)");
    };
    if text.trim().is_empty() {
        bail!("it is empty: a build record (JSON) or a lock (TOML) was expected");
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => return record(text, &json),
        // JSON starts with `{`; TOML never does.
        Err(e) if text.trim_start().starts_with('{') => {
            return Err(anyhow!(e).context("it is not valid JSON (a build record cut short or corrupted?)"));
        }
        Err(_) => {}
    }
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        bail!(
            "it is neither a build record (JSON) nor a lock (TOML); it starts with `{}`",
            first.chars().take(60).collect::<String>()
        );
    };
    if table.get("format").is_none() && table.contains_key("image") && table.contains_key("build") {
        bail!(
            "it looks like a repro.toml manifest, not a lock: diff compares build records (repro-out.json) or \
             locks (repro.lock)"
        );
    }
    let lock = Lock::parse(text).context(format!("it is not a {LOCK_FORMAT} lock this repro-run can read"))?;
    Ok(Input::Lock(Box::new(lock)))
}

/// A record from parsed JSON, or why it is not one.
fn record(text: &str, json: &serde_json::Value) -> Result<Input> {
    let Some(object) = json.as_object() else {
        bail!("it is JSON but not a build record: a record is an object with \"format\": \"{RECORD_FORMAT}\"");
    };
    match object.get("format") {
        None => bail!("it is JSON but not a build record: it has no \"format\" (a record has \"{RECORD_FORMAT}\")"),
        Some(serde_json::Value::String(f)) if f == RECORD_FORMAT => {
            let record = BuildRecord::from_json(text)
                .map_err(|e| anyhow!(e).context(format!("it is not a valid {RECORD_FORMAT} record (corrupted?)")))?;
            Ok(Input::Record(Box::new(record)))
        }
        Some(serde_json::Value::String(f)) if f.starts_with("repro-run-record-") => bail!(
            "it is a build record of format {f}, which this repro-run does not read: it reads {RECORD_FORMAT} \
             (upgrade repro-run, or rebuild to write the record again)"
        ),
        Some(f) => bail!(
            "it is JSON of format {f}, not a build record (a record has \"format\": \"{RECORD_FORMAT}\"; \
             diff compares two records or two locks)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!("{:#}", detect(text.as_bytes()).unwrap_err())
    }

    #[test]
    fn what_a_file_is_comes_from_its_content() {
        insta::assert_snapshot!(error_of(""), @"it is empty: a build record (JSON) or a lock (TOML) was expected");
        insta::assert_snapshot!(format!("{:#}", detect(b"\x7fELF\x02\x01\x01\x00\xff").unwrap_err()),
            @"it is a binary file, not a build record (JSON) or a lock (TOML)");
        insta::assert_snapshot!(error_of("{\"format\": \"repro-run-record-v1\", \"env_id\": "),
            @"it is not valid JSON (a build record cut short or corrupted?): EOF while parsing a value at line 1 column 44");
        insta::assert_snapshot!(error_of("{\"format\": \"repro-run-record-v1\"}"),
            @"it is not a valid repro-run-record-v1 record (corrupted?): missing field `env_id` at line 1 column 33");
        insta::assert_snapshot!(error_of("{\"format\": \"repro-run-record-v9\"}"),
            @"it is a build record of format repro-run-record-v9, which this repro-run does not read: it reads repro-run-record-v1 (upgrade repro-run, or rebuild to write the record again)");
        insta::assert_snapshot!(error_of("{\"format\": \"repro-run-verify-v1\", \"outcome\": \"reproducible\"}"),
            @r#"it is JSON of format "repro-run-verify-v1", not a build record (a record has "format": "repro-run-record-v1"; diff compares two records or two locks)"#);
        insta::assert_snapshot!(error_of("{\"env_id\": \"x\"}"),
            @r#"it is JSON but not a build record: it has no "format" (a record has "repro-run-record-v1")"#);
        insta::assert_snapshot!(error_of("[1, 2]"),
            @r#"it is JSON but not a build record: a record is an object with "format": "repro-run-record-v1""#);
        insta::assert_snapshot!(error_of("[image]\nname = \"busybox\"\n[build]\ncommand = \"make\"\n"),
            @"it looks like a repro.toml manifest, not a lock: diff compares build records (repro-out.json) or locks (repro.lock)");
        insta::assert_snapshot!(error_of("format = \"repro-lock-v2\"\n"),
            @r#"it is not a repro-lock-v1 lock this repro-run can read: line 1, column 10: format "repro-lock-v2" is not one this repro-run reads (it reads "repro-lock-v1"): upgrade repro-run to read this lock, or run `repro-run lock` to rewrite it as repro-lock-v1"#);
        insta::assert_snapshot!(error_of("hello world\n"),
            @"it is neither a build record (JSON) nor a lock (TOML); it starts with `hello world`");
    }
}

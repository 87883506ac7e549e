//! `repro-run verify`'s report: what the rebuilds gave, which of four
//! outcomes that is, and the same report as text, JSON, JUnit and
//! markdown (docs/verify.md specifies the JSON, `repro-run-verify-v1`).
//!
//! The runner does the rebuilds and the comparisons
//! ([`crate::compare::compare_trees`]); everything here is pure, so that
//! every format is snapshot-tested on fixed reports.
//!
//! The four outcomes are kept apart because each sends the reader to
//! another place: a build that failed is a build problem (its log), an
//! environment that drifted explains any difference before the artifacts
//! are looked at (the lock, the base, the sources), and only artifacts
//! that differ in the same environment say the build is not reproducible.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::compare::{Change, Explanation, FileDifference, Format, TreeComparison};
use crate::digest::Digest;
use crate::lock::Lock;
use crate::record::BuildRecord;

/// The report's format version: the `format` field of its JSON.
pub const REPORT_FORMAT: &str = "repro-run-verify-v1";

/// Which of the outcomes a verify had; each has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every rebuild gave the reference's artifacts (exit 0).
    Reproducible,
    /// The artifacts differ in the same environment (exit 1).
    Differs,
    /// A rebuild failed (exit 4): there is nothing to compare.
    BuildFailed,
    /// The rebuilds' environment is not the record's (exit 5): env_id,
    /// base or toolchain rootfs, or sources differ.
    Drifted,
}

impl Outcome {
    /// The report's first line.
    pub fn headline(self) -> &'static str {
        match self {
            Outcome::Reproducible => "reproducible",
            Outcome::Differs => "NOT reproducible: the artifacts differ",
            Outcome::BuildFailed => "not verified: a build failed",
            Outcome::Drifted => "not verified: the environment drifted from the record's",
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: &'static str,
    /// The outcome.
    pub outcome: Outcome,
    /// The manifest verified.
    pub manifest: String,
    /// The lock's env_id: the environment every rebuild ran in.
    pub env_id: Digest,
    /// What the rebuilds were compared with.
    pub reference: Reference,
    /// The environment fields where the rebuilds are not the record's.
    pub drift: Vec<EnvDrift>,
    /// Each rebuild.
    pub runs: Vec<Run>,
    /// Every artifact path of the reference or of any rebuild, sorted.
    pub artifacts: Vec<String>,
    /// Where the rebuilds' outputs, records and logs were kept, if they were.
    pub kept: Option<String>,
}

/// What the rebuilds were compared with.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reference {
    /// A build record; with its output tree where it is still beside it
    /// and hashes to the record's digest, else by the record's hashes.
    Record {
        /// The record's path.
        path: String,
        /// Its outputs, when they were found.
        outputs: Option<String>,
    },
    /// The first rebuild (verify without a record).
    FirstRebuild,
}

/// One field of the environment that is not the record's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvDrift {
    /// The record's field (`env_id`, `image.rootfs`, `source_digest`, ...).
    pub field: String,
    /// The record's value.
    pub record: String,
    /// The rebuilds'.
    pub rebuild: String,
}

/// One rebuild.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// 1, 2, ...
    pub run: usize,
    /// Its artifacts' digest, when it built.
    pub artifacts_digest: Option<Digest>,
    /// Why it failed, when it did.
    pub failed: Option<String>,
    /// Its outputs (`out/`), record and log.
    pub dir: String,
    /// How its outputs compare with the reference; `None` for the
    /// reference itself, and when a build failed.
    pub comparison: Option<TreeComparison>,
    /// diffoscope's output for each differing file (`--diffoscope`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diffoscope: Vec<Diffoscope>,
}

/// Where diffoscope's text for one differing file is.
#[derive(Clone, Debug, Serialize)]
pub struct Diffoscope {
    /// The artifact's path.
    pub path: String,
    /// diffoscope's text output, or why there is none.
    pub output: String,
}

impl Report {
    /// The report for these rebuilds: the outcome follows from them (a
    /// failed build first, then drift, then differing artifacts).
    pub fn new(
        manifest: String,
        env_id: Digest,
        reference: Reference,
        drift: Vec<EnvDrift>,
        runs: Vec<Run>,
        reference_artifacts: &[String],
        run_artifacts: &[Vec<String>],
    ) -> Report {
        let outcome = if runs.iter().any(|r| r.failed.is_some()) {
            Outcome::BuildFailed
        } else if !drift.is_empty() {
            Outcome::Drifted
        } else if runs.iter().any(|r| r.comparison.as_ref().is_some_and(|c| !c.is_reproducible())) {
            Outcome::Differs
        } else {
            Outcome::Reproducible
        };
        let mut artifacts: Vec<String> =
            reference_artifacts.iter().chain(run_artifacts.iter().flatten()).cloned().collect();
        artifacts.sort();
        artifacts.dedup();
        Report { format: REPORT_FORMAT, outcome, manifest, env_id, reference, drift, runs, artifacts, kept: None }
    }

    /// The report as JSON (`repro-run-verify-v1`).
    pub fn to_json(&self) -> String {
        // A report holds only strings, numbers and digests: it always
        // serialises.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Each artifact with the differences the rebuilds found in it.
    fn by_artifact(&self) -> Vec<(&str, Vec<(usize, &FileDifference)>)> {
        let mut map: BTreeMap<&str, Vec<(usize, &FileDifference)>> =
            self.artifacts.iter().map(|a| (a.as_str(), Vec::new())).collect();
        for run in &self.runs {
            for d in run.comparison.iter().flat_map(|c| &c.differences) {
                map.entry(d.path.as_str()).or_default().push((run.run, d));
            }
        }
        map.into_iter().collect()
    }
}

/// The environment fields where `rebuild` (made from `lock`) is not `record`.
pub fn env_drift(record: &BuildRecord, lock: &Lock, rebuild: Option<&BuildRecord>) -> Vec<EnvDrift> {
    let mut out = Vec::new();
    let mut check = |field: &str, a: String, b: String| {
        if a != b {
            out.push(EnvDrift { field: field.to_owned(), record: a, rebuild: b });
        }
    };
    let show = |d: Option<Digest>| d.map_or_else(|| "(none)".to_owned(), |d| d.to_string());
    check("env_id", record.env_id.to_string(), lock.env_id().to_string());
    check("image.rootfs", show(record.image.rootfs), lock.base.rootfs.to_string());
    check("image.toolchain_rootfs", show(record.image.toolchain_rootfs), lock.toolchain.rootfs.to_string());
    if let Some(r) = rebuild {
        check("source_digest", record.source_digest.to_string(), r.source_digest.to_string());
    }
    out
}

/// How a rebuild's artifacts compare with a record's when the record's
/// files are not at hand: by path, mode, link target and hash. A content
/// difference can then only say that the hashes differ.
pub fn compare_records(reference: &BuildRecord, rebuild: &BuildRecord) -> TreeComparison {
    fn index(r: &BuildRecord) -> BTreeMap<String, &crate::record::Artifact> {
        r.artifacts.iter().map(|a| (a.path.clone(), a)).collect()
    }
    let (a, b) = (index(reference), index(rebuild));
    let mut differences = Vec::new();
    let mut identical = 0;
    let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for path in paths {
        let change = match (a.get(path), b.get(path)) {
            (Some(_), None) => Change::Removed,
            (None, Some(_)) => Change::Added,
            (Some(x), Some(y)) if x.link != y.link => Change::Link {
                a: x.link.clone().unwrap_or_else(|| "(a file)".to_owned()),
                b: y.link.clone().unwrap_or_else(|| "(a file)".to_owned()),
            },
            (Some(x), Some(y)) if x.mode != y.mode => Change::Mode { a: x.mode.clone(), b: y.mode.clone() },
            (Some(x), Some(y)) if x.blake3 != y.blake3 => Change::Content(Explanation {
                format: Format::Binary,
                size: (x.size, y.size),
                details: vec![crate::compare::Detail::Note {
                    text: format!(
                        "blake3 {} in the record, {} in the rebuild; the record's outputs are not beside it, so \
                         only the hashes compare (keep repro-out/ beside the record, or verify without --record, \
                         to see how the bytes differ)",
                        short(&x.blake3),
                        short(&y.blake3)
                    ),
                }],
                causes: Vec::new(),
            }),
            _ => {
                identical += 1;
                continue;
            }
        };
        differences.push(FileDifference { path: path.clone(), change });
    }
    TreeComparison { identical, differences }
}

/// The first 16 hex digits of a hash.
fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// Colours for the text report (ANSI), or none.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Colour when `on` (a terminal, and `NO_COLOR` unset).
    pub fn new(on: bool) -> Style {
        Style { on }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// The human report: the outcome, the reference, any drift, then each
/// rebuild and each differing file with its explanation.
pub fn render_text(report: &Report, style: Style) -> String {
    let headline = match report.outcome {
        Outcome::Reproducible => style.paint("1;32", report.outcome.headline()),
        Outcome::Differs => style.paint("1;31", report.outcome.headline()),
        Outcome::BuildFailed | Outcome::Drifted => style.paint("1;33", report.outcome.headline()),
    };
    let mut out = format!("{headline}\n");
    let _ = writeln!(out, "  manifest   {}", report.manifest);
    let _ = writeln!(out, "  env_id     {}", report.env_id);
    let _ = writeln!(out, "  reference  {} (a in each difference, the rebuild b)", reference_text(&report.reference));
    for d in &report.drift {
        let _ = writeln!(out, "  drift {}: the record has {}, the rebuild {}", d.field, d.record, d.rebuild);
    }
    for run in &report.runs {
        let _ = writeln!(out, "  {}", run_line(run));
        for line in run.failed.iter().flat_map(|why| why.lines().skip(1)) {
            let _ = writeln!(out, "    {line}");
        }
        for d in run.comparison.iter().flat_map(|c| &c.differences) {
            for line in d.to_string().lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        for d in &run.diffoscope {
            let _ = writeln!(out, "    diffoscope on {}: {}", d.path, d.output);
        }
    }
    if let Some(kept) = &report.kept {
        let _ = writeln!(out, "  kept       {kept} (each rebuild's out/, record.json and build.log)");
    }
    out
}

/// How the reference reads in a report.
fn reference_text(reference: &Reference) -> String {
    match reference {
        Reference::Record { path, outputs: Some(outputs) } => format!("{path} (its outputs in {outputs})"),
        Reference::Record { path, outputs: None } => {
            format!("{path} (its outputs are not beside it, or not the record's: by hashes only)")
        }
        Reference::FirstRebuild => "rebuild 1".to_owned(),
    }
}

/// A rebuild's one-line summary.
fn run_line(run: &Run) -> String {
    match (&run.failed, &run.comparison) {
        (Some(why), _) => format!("rebuild {}: failed: {}", run.run, why.lines().next().unwrap_or_default()),
        (None, Some(c)) if c.is_reproducible() => {
            format!("rebuild {}: the same artifacts ({} file(s))", run.run, c.identical)
        }
        (None, Some(c)) => {
            format!("rebuild {}: {} difference(s), {} file(s) the same", run.run, c.differences.len(), c.identical)
        }
        (None, None) => format!(
            "rebuild {}: the reference, artifacts {}",
            run.run,
            run.artifacts_digest.map(|d| d.to_string()).unwrap_or_default()
        ),
    }
}

/// The report as JUnit XML: one test suite, a test case for the
/// environment, one per rebuild that failed, and one per artifact, whose
/// failure text is the explanation.
pub fn render_junit(report: &Report) -> String {
    let mut cases = Vec::new();
    let failure =
        |message: &str, body: &str| format!("      <failure message=\"{}\">{}</failure>\n", xml(message), xml(body));
    let env_failure = (!report.drift.is_empty()).then(|| {
        let body: Vec<String> = report
            .drift
            .iter()
            .map(|d| format!("{}: the record has {}, the rebuild {}", d.field, d.record, d.rebuild))
            .collect();
        failure("the environment drifted from the record's", &body.join("\n"))
    });
    cases.push(("environment".to_owned(), env_failure));
    for run in &report.runs {
        if let Some(why) = &run.failed {
            cases.push((format!("rebuild {}", run.run), Some(failure("the build failed", why))));
        }
    }
    for (path, diffs) in report.by_artifact() {
        let failed = (!diffs.is_empty()).then(|| {
            let body: Vec<String> = diffs.iter().map(|(run, d)| format!("rebuild {run}: {d}")).collect();
            failure(&format!("{path} differs"), &body.join("\n"))
        });
        cases.push((format!("artifact {path}"), failed));
    }
    let failures = cases.iter().filter(|(_, f)| f.is_some()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"repro-run verify\" tests=\"{}\" failures=\"{failures}\">", cases.len());
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
        xml(&report.manifest),
        cases.len()
    );
    let _ = writeln!(out, "    <properties>");
    let _ = writeln!(out, "      <property name=\"outcome\" value=\"{}\"/>", xml(report.outcome.headline()));
    let _ = writeln!(out, "      <property name=\"env_id\" value=\"{}\"/>", report.env_id);
    let _ = writeln!(out, "    </properties>");
    for (name, failed) in &cases {
        match failed {
            None => {
                let _ = writeln!(out, "    <testcase classname=\"repro-run.verify\" name=\"{}\"/>", xml(name));
            }
            Some(f) => {
                let _ = writeln!(out, "    <testcase classname=\"repro-run.verify\" name=\"{}\">", xml(name));
                out.push_str(f);
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Text escaped for XML attributes and character data; characters XML 1.0
/// cannot hold (control characters from a binary diff) become `\u{..}`.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The report as GitHub-flavoured markdown (a step summary): the outcome,
/// a table of the artifacts, and each difference's explanation folded.
pub fn render_markdown(report: &Report) -> String {
    let mark = match report.outcome {
        Outcome::Reproducible => "✅",
        Outcome::Differs => "❌",
        Outcome::BuildFailed | Outcome::Drifted => "⚠️",
    };
    let mut out = format!("### {mark} repro-run verify: {}\n\n", report.outcome.headline());
    let _ = writeln!(out, "- manifest: `{}`", report.manifest);
    let _ = writeln!(out, "- env_id: `{}`", report.env_id);
    let _ = writeln!(out, "- reference: {}", reference_text(&report.reference));
    for run in &report.runs {
        let _ = writeln!(out, "- {}", run_line(run));
    }
    if let Some(kept) = &report.kept {
        let _ = writeln!(out, "- kept: `{kept}`");
    }
    if !report.drift.is_empty() {
        out.push_str("\n| drifted field | record | rebuild |\n|---|---|---|\n");
        for d in &report.drift {
            let _ = writeln!(out, "| `{}` | `{}` | `{}` |", d.field, cell(&d.record), cell(&d.rebuild));
        }
    }
    let artifacts = report.by_artifact();
    if !artifacts.is_empty() && report.outcome != Outcome::BuildFailed {
        out.push_str("\n| artifact | result |\n|---|---|\n");
        for (path, diffs) in &artifacts {
            let result = match diffs.first() {
                None => "same".to_owned(),
                Some((_, d)) => cell(d.change.to_string().lines().next().unwrap_or_default()),
            };
            let _ = writeln!(out, "| `{}` | {result} |", cell(path));
        }
    }
    for (path, diffs) in artifacts.iter().filter(|(_, d)| !d.is_empty()) {
        let _ = write!(out, "\n<details><summary><code>{}</code></summary>\n\n```text\n", html(path));
        for (run, d) in diffs {
            let _ = writeln!(out, "rebuild {run}: {}", d.to_string().replace("```", "'''"));
        }
        out.push_str("```\n\n</details>\n");
    }
    for run in report.runs.iter().filter(|r| r.failed.is_some()) {
        let why = run.failed.as_deref().unwrap_or_default().replace("```", "'''");
        let _ = write!(out, "\n**rebuild {} failed:**\n\n```text\n{why}\n```\n", run.run);
    }
    out
}

/// Text for a markdown table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Text escaped for HTML.
fn html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Cause, Detail};

    fn digest(n: u8) -> Digest {
        Digest::of_bytes(&[n])
    }

    /// A report with one reproducible file and one that differs in a
    /// date, in a tar.gz member.
    fn differing() -> Report {
        let stamp = FileDifference {
            path: "out/stamp.txt".to_owned(),
            change: Change::Content(Explanation {
                format: Format::Text,
                size: (30, 30),
                details: vec![Detail::TextDiff {
                    unified: "@@ -1 +1 @@\n-built 2026-12-02 10:00:01\n+built 2026-12-02 10:00:07\n".to_owned(),
                }],
                causes: vec![Cause::Timestamp {
                    value: "2026-12-02 10:00:07".to_owned(),
                    near: "2026-12-02T10:00:09Z".to_owned(),
                }],
            }),
        };
        let runs = vec![
            Run {
                run: 1,
                artifacts_digest: Some(digest(1)),
                failed: None,
                dir: "/p/repro-verify/run-1".to_owned(),
                comparison: None,
                diffoscope: Vec::new(),
            },
            Run {
                run: 2,
                artifacts_digest: Some(digest(2)),
                failed: None,
                dir: "/p/repro-verify/run-2".to_owned(),
                comparison: Some(TreeComparison { identical: 1, differences: vec![stamp] }),
                diffoscope: Vec::new(),
            },
        ];
        let names = vec!["out/hello".to_owned(), "out/stamp.txt".to_owned()];
        let mut report = Report::new(
            "p/repro.toml".to_owned(),
            digest(9),
            Reference::FirstRebuild,
            Vec::new(),
            runs,
            &names,
            std::slice::from_ref(&names),
        );
        report.kept = Some("/p/repro-verify".to_owned());
        report
    }

    #[test]
    fn outcomes_are_kept_apart() {
        let r = differing();
        assert_eq!(r.outcome, Outcome::Differs);
        let mut runs = r.runs.clone();
        runs[1].failed = Some("exit 3".to_owned());
        runs[1].comparison = None;
        let failed = Report::new(String::new(), digest(9), Reference::FirstRebuild, Vec::new(), runs, &[], &[]);
        assert_eq!(failed.outcome, Outcome::BuildFailed);
        let drift = vec![EnvDrift { field: "env_id".to_owned(), record: "a".to_owned(), rebuild: "b".to_owned() }];
        let drifted = Report::new(String::new(), digest(9), Reference::FirstRebuild, drift, r.runs.clone(), &[], &[]);
        assert_eq!(drifted.outcome, Outcome::Drifted);
        let mut same = r.runs.clone();
        same[1].comparison = Some(TreeComparison { identical: 2, differences: Vec::new() });
        let same = Report::new(String::new(), digest(9), Reference::FirstRebuild, Vec::new(), same, &[], &[]);
        assert_eq!(same.outcome, Outcome::Reproducible);
    }

    #[test]
    fn text_report() {
        insta::assert_snapshot!(render_text(&differing(), Style::new(false)));
        assert!(render_text(&differing(), Style::new(true)).starts_with("\x1b[1;31mNOT reproducible"));
    }

    #[test]
    fn junit_report() {
        insta::assert_snapshot!(render_junit(&differing()));
    }

    #[test]
    fn markdown_report() {
        insta::assert_snapshot!(render_markdown(&differing()));
    }

    #[test]
    fn json_report() {
        insta::assert_snapshot!(differing().to_json());
    }

    #[test]
    fn xml_escapes_what_xml_cannot_hold() {
        assert_eq!(xml("a<b & \"c\"\x01"), "a&lt;b &amp; &quot;c&quot;\\u{1}");
    }
}

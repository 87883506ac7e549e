//! `verify --vary`: controlled variations of the fixed settings, the
//! search for the variations that change a build's artifacts, and its
//! report.
//!
//! # Layout
//!
//! - [`Variation`]: the closed set of what can be varied, each with one
//!   fixed experiment value beside the control's (the fixed settings of
//!   every build), so that every step can be replayed.
//! - [`parse_set`]: `--vary` values (`all`, `NAME`, `-NAME`) into a set;
//!   the items add up, in order, and nothing resets the set.
//! - [`search`]: given the tests (an oracle: a set of variations in, the
//!   files that differ from the control out), the smallest sets
//!   responsible, in few builds (docs/verify.md, "Variations").
//! - [`VaryReport`]: the report, as text, JSON and one self-contained HTML
//!   page.
//!
//! No engine here: the runner applies each variation (through the
//! container spec and the entry helper) and runs the builds.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::Serialize;

use crate::compare::TreeComparison;
use crate::digest::Digest;

/// The vary report's format version: the `format` field of its JSON.
pub const VARY_FORMAT: &str = "repro-run-vary-v1";

/// Where the build path variation puts the sources: longer and deeper
/// than `/src`.
pub const VARIED_SOURCE_DIR: &str = "/build/repro-run-vary/a/longer/and/deeper/path";
/// The varied hostname.
pub const VARIED_HOSTNAME: &str = "vary-host";
/// The varied NIS domain name (the control has none).
pub const VARIED_DOMAINNAME: &str = "vary.invalid";
/// The varied umask.
pub const VARIED_UMASK: &str = "0002";
/// The varied time zone: UTC+14, far east of the control's UTC, written
/// as a POSIX rule so that it holds without tzdata in the image.
pub const VARIED_TZ: &str = "LINT-14";
/// The varied `HOME`: a path that does not exist, as reprotest's.
pub const VARIED_HOME: &str = "/nonexistent/repro-run-vary";
/// The entry the path variation appends to `PATH`.
pub const VARIED_PATH_ENTRY: &str = "/nonexistent/repro-run-vary/bin";
/// The variables the environment variation adds (unless the build sets
/// them itself).
pub const VARIED_ENV: [(&str, &str); 2] = [("CAPTURE_ENVIRONMENT", "i_capture_the_environment"), ("USER", "vary")];
/// The clock of the clock variation (libfaketime's `FAKETIME`): an
/// absolute start, 2,000,000,000 s after the epoch, so that each replay
/// starts at the same time.
pub const VARIED_FAKETIME: &str = "@2033-05-18 03:33:20";
/// The CPUs of the CPU variation: one, by the cpuset.
pub const VARIED_CPUSET: &str = "0";

/// What `--vary` can vary. Each has one control value (the fixed setting
/// every build has) and one experiment value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variation {
    /// The directory the sources are in, and the working directory.
    BuildPath,
    /// The hostname, and the domain name.
    Hostname,
    /// The build user's uid and gid (the sources owned accordingly).
    User,
    /// The umask.
    Umask,
    /// `TZ`.
    Timezone,
    /// `LANG` and `LC_ALL`: another locale installed in the image.
    Locale,
    /// The CPUs the build may run on.
    Cpus,
    /// Extra environment variables.
    Env,
    /// `HOME`.
    Home,
    /// `PATH`, with an extra entry.
    Path,
    /// The order in which directories list their entries.
    DirOrder,
    /// The time of the clock (libfaketime).
    Clock,
}

impl Variation {
    /// Every variation, in the order reports list them.
    pub const ALL: [Variation; 12] = [
        Variation::BuildPath,
        Variation::Hostname,
        Variation::User,
        Variation::Umask,
        Variation::Timezone,
        Variation::Locale,
        Variation::Cpus,
        Variation::Env,
        Variation::Home,
        Variation::Path,
        Variation::DirOrder,
        Variation::Clock,
    ];

    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Variation::BuildPath => "build-path",
            Variation::Hostname => "hostname",
            Variation::User => "user",
            Variation::Umask => "umask",
            Variation::Timezone => "timezone",
            Variation::Locale => "locale",
            Variation::Cpus => "cpus",
            Variation::Env => "env",
            Variation::Home => "home",
            Variation::Path => "path",
            Variation::DirOrder => "dir-order",
            Variation::Clock => "clock",
        }
    }
}

impl fmt::Display for Variation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a `--vary` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaryError {
    /// A name that is no variation.
    #[error("unknown variation `{0}`: expected `all`, or one of {names}, each optionally with a leading `-` to leave it out", names = names())]
    Unknown(String),
    /// An empty item (`a,,b`).
    #[error("an empty variation in `{0}`: give names separated by commas, such as `hostname,umask`")]
    Empty(String),
    /// What is left is nothing.
    #[error("--vary {0}: that leaves no variation to test\n  hint: `--vary all`, or name some, such as `--vary hostname,umask`")]
    Nothing(String),
}

fn names() -> String {
    Variation::ALL.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
}

impl FromStr for Variation {
    type Err = VaryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variation::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| VaryError::Unknown(s.to_owned()))
    }
}

/// The set `--vary` asks for, from its values in order (each a comma
/// list): `all` adds every variation, `NAME` (or `+NAME`) adds one, and
/// `-NAME` takes one out. A list whose first item takes one out starts
/// from `all` (`--vary -clock` is everything but the clock). Items only
/// ever add to or take from the set so far: a later `--vary` never resets
/// what an earlier one said (reprotest's `--variations=user` does, which
/// silently drops the rest).
pub fn parse_set(values: &[String]) -> Result<BTreeSet<Variation>, VaryError> {
    let mut set = BTreeSet::new();
    let mut first = true;
    for value in values {
        for item in value.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(VaryError::Empty(value.clone()));
            }
            if let Some(name) = item.strip_prefix('-') {
                let v: Variation = name.parse()?;
                if first {
                    set.extend(Variation::ALL);
                }
                set.remove(&v);
            } else if item == "all" {
                set.extend(Variation::ALL);
            } else {
                set.insert(item.strip_prefix('+').unwrap_or(item).parse()?);
            }
            first = false;
        }
    }
    if set.is_empty() {
        return Err(VaryError::Nothing(values.join(",")));
    }
    Ok(set)
}

/// What one test (a build with some variations applied) gave, against
/// the first control build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestResult {
    /// The build ran; these artifacts differ from the control's (noise,
    /// what differs between the two controls, left out).
    Built(BTreeSet<String>),
    /// The build failed or hung: why.
    Failed(String),
}

impl TestResult {
    /// Whether this test changed anything.
    pub fn differs(&self) -> bool {
        match self {
            TestResult::Built(files) => !files.is_empty(),
            TestResult::Failed(_) => true,
        }
    }

    fn files(&self) -> BTreeSet<String> {
        match self {
            TestResult::Built(files) => files.clone(),
            TestResult::Failed(_) => BTreeSet::new(),
        }
    }
}

/// A set of variations the search found responsible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Culprit {
    /// One variation, or several that change the artifacts only together.
    pub variations: Vec<Variation>,
    /// The artifacts it changes.
    pub files: Vec<String>,
    /// How the search knows: `alone` (a test of just these changed the
    /// artifacts), or `without` (everything else together did not).
    pub shown_by: ShownBy,
    /// The build failed under it: why (for the clock, "incompatible").
    pub failed: Option<String>,
}

/// What showed a culprit responsible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShownBy {
    /// A test of it alone changed the artifacts.
    Alone,
    /// Every variation together changed them, and every one but it
    /// together did not.
    Without,
}

/// Finds the smallest sets of `all` (already tested together: `all_result`,
/// which differs) responsible for the difference, with `test`.
///
/// Each round splits the set still known to change the artifacts in
/// halves and keeps a half that changes them alone (else the other, whose
/// change is then implied) down to one variation, then tests everything
/// else together: when that reproduces, the search is over; when it does
/// not, there is more to find in it, and the next round searches there. A
/// variation that was only implied, and whose removal leaves a difference,
/// is tested alone; when it changes nothing alone the difference is an
/// interaction, and ddmin finds the smallest set that makes it. With one
/// responsible variation among n, that is at most ⌈log₂ n⌉ + 1 tests.
pub fn search<E>(
    all: &[Variation],
    all_result: &TestResult,
    mut test: impl FnMut(&[Variation]) -> Result<TestResult, E>,
) -> Result<Vec<Culprit>, E> {
    let mut culprits = Vec::new();
    let mut rest: Vec<Variation> = all.to_vec();
    let mut rest_result = all_result.clone();
    while !rest.is_empty() && rest_result.differs() {
        let (x, alone) = halve(&rest, &rest_result, &mut test)?;
        let without: Vec<Variation> = rest.iter().copied().filter(|v| *v != x).collect();
        let without_result = if without.is_empty() { TestResult::Built(BTreeSet::new()) } else { test(&without)? };
        let (found, shown_by) = match alone {
            Some(alone) => (Some(alone), ShownBy::Alone),
            None if !without_result.differs() => (None, ShownBy::Without),
            None => {
                let alone = test(&[x])?;
                (alone.differs().then_some(alone), ShownBy::Alone)
            }
        };
        match found {
            Some(alone) => culprits.push(culprit(vec![x], &alone, shown_by)),
            None if shown_by == ShownBy::Without => {
                // Everything but `x` reproduces: what `rest` changed, `x` did.
                let mut files = rest_result.files();
                files.retain(|f| !without_result.files().contains(f));
                let r = match &rest_result {
                    TestResult::Failed(why) => TestResult::Failed(why.clone()),
                    TestResult::Built(_) => TestResult::Built(files),
                };
                culprits.push(culprit(vec![x], &r, ShownBy::Without));
            }
            None => {
                // `x` alone changes nothing: an interaction within `rest`.
                let (set, result) = ddmin(&rest, &rest_result, &mut test)?;
                let without: Vec<Variation> = rest.iter().copied().filter(|v| !set.contains(v)).collect();
                culprits.push(culprit(set, &result, ShownBy::Alone));
                rest_result = if without.is_empty() { TestResult::Built(BTreeSet::new()) } else { test(&without)? };
                rest = without;
                continue;
            }
        }
        rest = without;
        rest_result = without_result;
    }
    Ok(culprits)
}

fn culprit(mut variations: Vec<Variation>, result: &TestResult, shown_by: ShownBy) -> Culprit {
    variations.sort();
    let failed = match result {
        TestResult::Failed(why) => Some(why.clone()),
        TestResult::Built(_) => None,
    };
    Culprit { variations, files: result.files().into_iter().collect(), shown_by, failed }
}

/// Halves `set` (known to differ: `result`) down to one variation: the
/// variation, and its own result when a test of it alone showed it.
fn halve<E>(
    set: &[Variation],
    result: &TestResult,
    test: &mut impl FnMut(&[Variation]) -> Result<TestResult, E>,
) -> Result<(Variation, Option<TestResult>), E> {
    let mut set = set.to_vec();
    let mut known = Some(result.clone());
    while set.len() > 1 {
        let (a, b) = set.split_at(set.len() / 2);
        let r = test(a)?;
        if r.differs() {
            set = a.to_vec();
            known = Some(r);
        } else {
            set = b.to_vec();
            known = None;
        }
    }
    Ok((set[0], known))
}

/// Zeller's ddmin: a 1-minimal subset of `set` (known to differ) that
/// still differs, and its result.
fn ddmin<E>(
    set: &[Variation],
    result: &TestResult,
    test: &mut impl FnMut(&[Variation]) -> Result<TestResult, E>,
) -> Result<(Vec<Variation>, TestResult), E> {
    let (mut set, mut result, mut n) = (set.to_vec(), result.clone(), 2usize);
    'outer: while set.len() >= 2 {
        let chunks: Vec<Vec<Variation>> = set.chunks(set.len().div_ceil(n)).map(<[_]>::to_vec).collect();
        for chunk in &chunks {
            let r = test(chunk)?;
            if r.differs() {
                (set, result, n) = (chunk.clone(), r, 2);
                continue 'outer;
            }
        }
        if chunks.len() > 2 {
            for chunk in &chunks {
                let complement: Vec<Variation> = set.iter().copied().filter(|v| !chunk.contains(v)).collect();
                let r = test(&complement)?;
                if r.differs() {
                    (set, result, n) = (complement, r, (n - 1).max(2));
                    continue 'outer;
                }
            }
        }
        if n >= set.len() {
            break;
        }
        n = (n * 2).min(set.len());
    }
    Ok((set, result))
}

/// How verify --vary ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VaryOutcome {
    /// Two controls and every experiment gave the same artifacts (exit 0).
    Reproducible,
    /// The controls differ, or a variation changes the artifacts (exit 1).
    Differs,
    /// A control build failed (exit 4).
    BuildFailed,
}

impl VaryOutcome {
    /// The report's first line.
    pub fn headline(self) -> &'static str {
        match self {
            VaryOutcome::Reproducible => "reproducible under every variation tested",
            VaryOutcome::Differs => "NOT reproducible",
            VaryOutcome::BuildFailed => "not verified: a control build failed",
        }
    }
}

/// What became of one variation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Tested, and not responsible for any difference.
    Holds,
    /// Tested, and (alone or with others) responsible.
    Responsible,
    /// The build failed or hung under it (the clock: libfaketime and the
    /// build do not go together).
    Incompatible {
        /// Why.
        why: String,
    },
    /// Not tested: this image or machine gives it no effect (why).
    Ineffective {
        /// Why.
        why: String,
    },
}

/// One variation in the report: its two values and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VariationReport {
    /// The variation.
    pub name: Variation,
    /// The control's value.
    pub control: String,
    /// The experiment's value.
    pub experiment: String,
    /// What became of it.
    #[serde(flatten)]
    pub status: Status,
}

/// One build of a verify --vary.
#[derive(Clone, Debug, Serialize)]
pub struct Test {
    /// 1-based, in the order they ran (control 1 and 2 first).
    pub number: usize,
    /// What it is: `control`, `experiment`.
    pub role: &'static str,
    /// The variations applied.
    pub variations: Vec<Variation>,
    /// The artifacts that differ from control 1 (noise left out).
    pub files: Vec<String>,
    /// Why it failed, if it did.
    pub failed: Option<String>,
    /// Its outputs, record and log, when kept.
    pub dir: String,
}

/// The whole report of verify --vary.
#[derive(Clone, Debug, Serialize)]
pub struct VaryReport {
    /// [`VARY_FORMAT`].
    pub format: &'static str,
    /// The outcome.
    pub outcome: VaryOutcome,
    /// The manifest verified.
    pub manifest: String,
    /// The lock's env_id.
    pub env_id: Digest,
    /// Where the builds ran: engine, its version, the host.
    pub environment: Vec<(String, String)>,
    /// Each variation asked for.
    pub variations: Vec<VariationReport>,
    /// Artifacts that differ between the two controls: not reproducible at
    /// all, and blamed on no variation.
    pub noise: Vec<String>,
    /// What the search found responsible.
    pub culprits: Vec<Culprit>,
    /// Each build, in order.
    pub tests: Vec<Test>,
    /// How each differing artifact differs: the controls' comparison (for
    /// noise) and, per culprit, the comparison of the test that showed it.
    pub explanations: Vec<Explained>,
    /// The number of builds.
    pub builds: usize,
    /// Where the builds were kept, if they were.
    pub kept: Option<String>,
}

/// A comparison with control 1, and what it is of.
#[derive(Clone, Debug, Serialize)]
pub struct Explained {
    /// `noise (control 2)`, or the culprit's variations.
    pub of: String,
    /// The test compared with control 1.
    pub test: usize,
    /// The comparison.
    pub comparison: TreeComparison,
}

impl VaryReport {
    /// The report as pretty JSON (`repro-run-vary-v1`, docs/verify.md).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn joined(vs: &[Variation]) -> String {
    vs.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(" + ")
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Holds => "holds".to_owned(),
        Status::Responsible => "RESPONSIBLE".to_owned(),
        Status::Incompatible { why } => format!("incompatible: {why}"),
        Status::Ineffective { why } => format!("ineffective, not tested: {why}"),
    }
}

fn test_line(t: &Test) -> String {
    let what = if t.variations.is_empty() { "no variation".to_owned() } else { joined(&t.variations) };
    let result = match (&t.failed, t.files.is_empty()) {
        (Some(why), _) => format!("failed: {}", why.lines().next().unwrap_or_default()),
        (None, true) if t.number == 1 => "the reference".to_owned(),
        (None, true) => "same artifacts".to_owned(),
        (None, false) => format!("differs: {}", t.files.join(", ")),
    };
    format!("build {} ({}, {what}): {result}", t.number, t.role)
}

/// The human report: the outcome, the culprits, each variation, each
/// build, and each difference explained.
pub fn render_text(report: &VaryReport) -> String {
    let mut out = format!("{}\n", report.outcome.headline());
    let _ = writeln!(out, "  manifest   {}", report.manifest);
    let _ = writeln!(out, "  env_id     {}", report.env_id);
    let _ = writeln!(out, "  builds     {}", report.builds);
    if !report.noise.is_empty() {
        let _ = writeln!(
            out,
            "  not reproducible at all (two control builds differ, blamed on no variation): {}",
            report.noise.join(", ")
        );
    }
    for c in &report.culprits {
        let how = match c.shown_by {
            ShownBy::Alone => "alone",
            ShownBy::Without => "everything else together reproduces",
        };
        match &c.failed {
            Some(why) => {
                let _ = writeln!(out, "  {} breaks the build ({how}): {}", joined(&c.variations), first_line(why));
            }
            None => {
                let _ = writeln!(out, "  {} changes {} ({how})", joined(&c.variations), c.files.join(", "));
            }
        }
    }
    out.push_str("  variations:\n");
    for v in &report.variations {
        let _ = writeln!(out, "    {:<11} {}", v.name.as_str(), status_text(&v.status));
        let _ = writeln!(out, "                control {}; experiment {}", v.control, v.experiment);
    }
    out.push_str("  builds:\n");
    for t in &report.tests {
        let _ = writeln!(out, "    {}", test_line(t));
    }
    for e in &report.explanations {
        let _ = writeln!(out, "  {} (build {} against build 1):", e.of, e.test);
        for d in &e.comparison.differences {
            for line in d.to_string().lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    if let Some(kept) = &report.kept {
        let _ = writeln!(out, "  kept       {kept} (each build's out/, record.json and build.log)");
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// One self-contained HTML page: no script, no network, no external asset.
pub fn render_html(report: &VaryReport) -> String {
    let (mark, colour) = match report.outcome {
        VaryOutcome::Reproducible => ("✔", "#1a7f37"),
        VaryOutcome::Differs => ("✘", "#cf222e"),
        VaryOutcome::BuildFailed => ("⚠", "#9a6700"),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\">\n<title>repro-run verify --vary: {title}</title>\n<style>\n\
         body{{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1f2328}}\n\
         h1{{font-size:1.6em;color:{colour}}} h2{{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}}\n\
         table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:.3em .6em;border-bottom:1px solid \
         #eaeef2;vertical-align:top}}\n\
         code,pre{{font:13px ui-monospace,monospace}} td code{{overflow-wrap:anywhere}}\n\
         pre{{background:#f6f8fa;padding:.8em;overflow-x:auto}} small{{color:#59636e}}\n\
         .responsible{{color:#cf222e;font-weight:600}} .holds{{color:#1a7f37}} .ineffective,.incompatible{{color:#9a6700}}\n\
         .culprit{{background:#ffebe9;border-left:4px solid #cf222e;padding:.5em 1em;margin:.5em 0}}\n\
         </style>\n</head>\n<body>\n<h1>{mark} {title}</h1>\n",
        title = esc(report.outcome.headline()),
    );
    out.push_str("<table>\n");
    let mut facts = vec![
        ("manifest".to_owned(), report.manifest.clone()),
        ("env_id".to_owned(), report.env_id.to_string()),
        ("builds".to_owned(), report.builds.to_string()),
    ];
    facts.extend(report.environment.iter().cloned());
    if let Some(kept) = &report.kept {
        facts.push(("kept".to_owned(), kept.clone()));
    }
    for (k, v) in &facts {
        let _ = writeln!(out, "<tr><th>{}</th><td><code>{}</code></td></tr>", esc(k), esc(v));
    }
    out.push_str("</table>\n");
    if !report.culprits.is_empty() || !report.noise.is_empty() {
        out.push_str("<h2>What breaks it</h2>\n");
    }
    if !report.noise.is_empty() {
        let _ = writeln!(
            out,
            "<div class=\"culprit\"><b>not reproducible at all</b>: two control builds differ in {}; no variation \
             is blamed for these</div>",
            code_list(&report.noise)
        );
    }
    for c in &report.culprits {
        let what = match &c.failed {
            Some(why) => format!("breaks the build: {}", esc(first_line(why))),
            None => format!("changes {}", code_list(&c.files)),
        };
        let how = match c.shown_by {
            ShownBy::Alone => "shown by a build with it alone",
            ShownBy::Without => "every other variation together reproduces",
        };
        let _ = writeln!(
            out,
            "<div class=\"culprit\"><b>{}</b> {what} <small>({how})</small></div>",
            esc(&joined(&c.variations))
        );
    }
    out.push_str(
        "<h2>Variations</h2>\n<table>\n<tr><th>variation</th><th>result</th><th>control</th><th>experiment</th></tr>\n",
    );
    for v in &report.variations {
        let class = match v.status {
            Status::Holds => "holds",
            Status::Responsible => "responsible",
            Status::Incompatible { .. } => "incompatible",
            Status::Ineffective { .. } => "ineffective",
        };
        let result = match &v.status {
            Status::Holds => "holds".to_owned(),
            Status::Responsible => "<b>responsible</b>".to_owned(),
            Status::Incompatible { why } => format!("incompatible<br><small>{}</small>", esc(why)),
            Status::Ineffective { why } => format!("ineffective, not tested<br><small>{}</small>", esc(why)),
        };
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"{class}\">{result}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            v.name,
            esc(&v.control),
            esc(&v.experiment)
        );
    }
    out.push_str(
        "</table>\n<h2>Builds</h2>\n<table>\n<tr><th>#</th><th>role</th><th>variations</th><th>result</th></tr>\n",
    );
    for t in &report.tests {
        let result = match (&t.failed, t.files.is_empty()) {
            (Some(why), _) => format!("failed: {}", esc(first_line(why))),
            (None, true) if t.number == 1 => "the reference".to_owned(),
            (None, true) => "same artifacts".to_owned(),
            (None, false) => format!("differs: {}", code_list(&t.files)),
        };
        let vars = if t.variations.is_empty() { "none".to_owned() } else { esc(&joined(&t.variations)) };
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td><td>{vars}</td><td>{result}</td></tr>", t.number, t.role);
    }
    out.push_str("</table>\n");
    if !report.explanations.is_empty() {
        out.push_str("<h2>Each file explained</h2>\n");
    }
    for e in &report.explanations {
        let _ = writeln!(out, "<h3>{} <small>(build {} against build 1)</small></h3>", esc(&e.of), e.test);
        for d in &e.comparison.differences {
            let _ = writeln!(out, "<pre>{}</pre>", esc(d.to_string().trim_end()));
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn code_list(files: &[String]) -> String {
    files.iter().map(|f| format!("<code>{}</code>", esc(f))).collect::<Vec<_>>().join(", ")
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn set(values: &[&str]) -> Result<Vec<&'static str>, String> {
        let values: Vec<String> = values.iter().map(|s| (*s).to_owned()).collect();
        parse_set(&values).map(|s| s.into_iter().map(Variation::as_str).collect()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_set_adds_up_and_never_resets() {
        assert_eq!(set(&["hostname,umask"]), Ok(vec!["hostname", "umask"]));
        assert_eq!(set(&["all"]).map(|s| s.len()), Ok(12));
        assert_eq!(set(&["-clock"]).map(|s| s.contains(&"clock") || s.len() != 11), Ok(false));
        // A later --vary adds to the set; it does not start a new one.
        assert_eq!(set(&["hostname", "umask"]), Ok(vec!["hostname", "umask"]));
        assert_eq!(set(&["all", "-clock", "-locale"]).map(|s| s.len()), Ok(10));
        assert_eq!(set(&["hostname,-hostname,user"]), Ok(vec!["user"]));
        insta::assert_snapshot!(set(&["hostnam"]).unwrap_err(), @"unknown variation `hostnam`: expected `all`, or one of `build-path`, `hostname`, `user`, `umask`, `timezone`, `locale`, `cpus`, `env`, `home`, `path`, `dir-order`, `clock`, each optionally with a leading `-` to leave it out");
        insta::assert_snapshot!(set(&["hostname,-hostname"]).unwrap_err(), @r"
        --vary hostname,-hostname: that leaves no variation to test
          hint: `--vary all`, or name some, such as `--vary hostname,umask`
        ");
        assert!(set(&["hostname,,umask"]).unwrap_err().contains("empty variation"));
    }

    /// An oracle over a model build: each file changes when all the
    /// variations of one of its causes are applied; it counts its calls.
    struct Model {
        causes: BTreeMap<&'static str, Vec<Vec<Variation>>>,
        calls: usize,
    }

    impl Model {
        fn test(&mut self, vs: &[Variation]) -> Result<TestResult, ()> {
            self.calls += 1;
            let files = self
                .causes
                .iter()
                .filter(|(_, causes)| causes.iter().any(|c| c.iter().all(|v| vs.contains(v))))
                .map(|(f, _)| (*f).to_owned())
                .collect();
            Ok(TestResult::Built(files))
        }
    }

    /// What a search found: each culprit's variations and files.
    type Found = Vec<(Vec<Variation>, Vec<String>)>;

    fn run(causes: &[(&'static str, Vec<Vec<Variation>>)]) -> (Found, usize) {
        let mut model = Model { causes: causes.iter().cloned().collect(), calls: 0 };
        let all = Variation::ALL;
        let first = model.test(&all).unwrap();
        model.calls = 0;
        let found = search(&all, &first, |vs| model.test(vs)).unwrap();
        (found.into_iter().map(|c| (c.variations, c.files)).collect(), model.calls)
    }

    #[test]
    fn one_culprit_is_found_in_log2_n_plus_1_tests() {
        for v in Variation::ALL {
            let (found, calls) = run(&[("out/f", vec![vec![v]])]);
            assert_eq!(found, vec![(vec![v], vec!["out/f".to_owned()])], "{v}");
            // ⌈log₂ 12⌉ + 1 = 5.
            assert!(calls <= 5, "{v}: {calls} tests");
        }
    }

    #[test]
    fn two_culprits_of_one_file_are_both_named() {
        let (found, _) = run(&[("out/id", vec![vec![Variation::Hostname], vec![Variation::User]])]);
        let names: Vec<Vec<Variation>> = found.iter().map(|f| f.0.clone()).collect();
        assert_eq!(names, vec![vec![Variation::Hostname], vec![Variation::User]]);
    }

    /// Halving ends on the clock by elimination (the half with the
    /// hostname changes nothing alone), and everything but the clock
    /// reproduces: the clock is named, as necessary, without a build of
    /// its own; its partner is not (docs/verify.md says so).
    #[test]
    fn an_interaction_found_by_elimination_names_the_necessary_one() {
        let (found, calls) = run(&[("out/x", vec![vec![Variation::Hostname, Variation::Clock]])]);
        assert_eq!(found, vec![(vec![Variation::Clock], vec!["out/x".to_owned()])]);
        assert!(calls <= 5);
    }

    /// When a variation reached by elimination is not the whole story
    /// (everything else still differs) and changes nothing alone, ddmin
    /// finds the set that does it together.
    #[test]
    fn an_interaction_left_over_is_named_as_one_set() {
        let pair = vec![Variation::Home, Variation::Path];
        let causes = [("out/x", vec![vec![Variation::BuildPath, Variation::Clock]]), ("out/y", vec![pair.clone()])];
        let (found, _) = run(&causes);
        // Halving ends on `path` (the half with `home` changes nothing),
        // whose removal still leaves out/x, and which changes nothing
        // alone: ddmin names home + path; the clock, by elimination, last.
        let expected = vec![(pair, vec!["out/y".to_owned()]), (vec![Variation::Clock], vec!["out/x".to_owned()])];
        assert_eq!(found, expected);
    }

    /// A report as a failing verify --vary gives it: one culprit, one
    /// ineffective variation, the builds.
    fn report() -> VaryReport {
        use crate::compare::{Change, FileDifference};
        let test = |number, role, variations: Vec<Variation>, files: &[&str]| Test {
            number,
            role,
            variations,
            files: files.iter().map(|f| (*f).to_owned()).collect(),
            failed: None,
            dir: format!("repro-verify/build-{number}"),
        };
        let all = vec![Variation::Hostname, Variation::Umask];
        let mode = FileDifference {
            path: "out/data.txt".to_owned(),
            change: Change::Mode { a: "0644".to_owned(), b: "0664".to_owned() },
        };
        VaryReport {
            format: VARY_FORMAT,
            outcome: VaryOutcome::Differs,
            manifest: "repro.toml".to_owned(),
            env_id: Digest::from_hash(blake3::hash(b"env")),
            environment: vec![("engine".to_owned(), "docker 20.10.24".to_owned())],
            variations: vec![
                VariationReport {
                    name: Variation::Hostname,
                    control: "repro-run".to_owned(),
                    experiment: "vary-host".to_owned(),
                    status: Status::Holds,
                },
                VariationReport {
                    name: Variation::Umask,
                    control: "0022".to_owned(),
                    experiment: "0002".to_owned(),
                    status: Status::Responsible,
                },
                VariationReport {
                    name: Variation::Clock,
                    control: "the real time".to_owned(),
                    experiment: format!("FAKETIME={VARIED_FAKETIME}"),
                    status: Status::Ineffective { why: "static <binaries>".to_owned() },
                },
            ],
            noise: vec![],
            culprits: vec![Culprit {
                variations: vec![Variation::Umask],
                files: vec!["out/data.txt".to_owned()],
                shown_by: ShownBy::Without,
                failed: None,
            }],
            tests: vec![
                test(1, "control", vec![], &[]),
                test(2, "control", vec![], &[]),
                test(3, "experiment", all, &["out/data.txt"]),
                test(4, "experiment", vec![Variation::Hostname], &[]),
            ],
            explanations: vec![Explained {
                of: "umask".to_owned(),
                test: 3,
                comparison: TreeComparison { identical: 1, differences: vec![mode] },
            }],
            builds: 4,
            kept: Some("repro-verify".to_owned()),
        }
    }

    #[test]
    fn the_reports_say_what_broke_it() {
        let r = report();
        insta::assert_snapshot!("vary_text", render_text(&r));
        insta::assert_snapshot!("vary_json", r.to_json());
        let html = render_html(&r);
        insta::assert_snapshot!("vary_html", html);
        // Self-contained: no script, nothing fetched; text escaped.
        assert!(!html.contains("<script") && !html.contains("http") && !html.contains("src="));
        assert!(html.contains("static &lt;binaries&gt;"));
    }

    #[test]
    fn nothing_to_find_costs_no_test() {
        let (found, calls) = run(&[]);
        assert!(found.is_empty());
        assert_eq!(calls, 0);
    }

    #[test]
    fn a_failure_under_one_variation_names_it() {
        let all = Variation::ALL;
        let oracle = |vs: &[Variation]| -> Result<TestResult, ()> {
            Ok(if vs.contains(&Variation::Clock) {
                TestResult::Failed("hung".into())
            } else {
                TestResult::Built(BTreeSet::new())
            })
        };
        let found = search(&all, &TestResult::Failed("hung".into()), oracle).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].variations, vec![Variation::Clock]);
        assert_eq!(found[0].failed.as_deref(), Some("hung"));
    }
}

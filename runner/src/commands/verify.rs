//! `repro-run verify`: rebuild from repro.lock, compare, and say which of
//! four outcomes it is (reproducible, the artifacts differ, a build
//! failed, the environment drifted) and, per differing file, how.
//!
//! The rebuilds are `build`'s own ([`build::prepare`] once with
//! `--locked`, then [`pipeline::run`] per rebuild), so that verify tests
//! exactly what `build` makes. The report is `repro_run_core::verify`'s.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use futures_util::StreamExt as _;
use repro_run_core::compare::{self, Change, Context as Clues, TreeComparison};
use repro_run_core::digest::{self, TreeKind};
use repro_run_core::hermetic;
use repro_run_core::lock::Lock;
use repro_run_core::record::{BuildRecord, EngineFacts, HostFacts, Timings, RECORD_FORMAT};
use repro_run_core::verify::{self, Diffoscope, Outcome, Reference, Report, Run, Style};

use super::build::{self, Where};
use crate::cli::{GlobalArgs, VerifyArgs, VerifyFormat};
use crate::exit::{BuildFailed, Exit, OutputFailed};
use crate::pipeline::{self, ResolvedBuild};
use crate::printer::Printer;
use crate::project::{abs, load_project, parent_dir};
use crate::{outputs, project};

/// Runs `repro-run verify`.
pub async fn run(global: &GlobalArgs, args: VerifyArgs, printer: &Printer) -> Result<Exit> {
    let dir = load_project(&global.manifest)?.dir;
    let record = args.record.as_deref().map(read_record).transpose()?;
    let runs = args.runs.unwrap_or(if record.is_some() { 1 } else { 2 });
    if runs == 0 || (record.is_none() && runs < 2) {
        bail!(
            "--runs {runs}: without --record, verify compares rebuilds with each other, so it needs at least 2\n  \
             hint: give --runs 2 or more, or --record FILE to compare with a record"
        );
    }
    let vary = (!args.vary.is_empty()).then(|| repro_run_core::vary::parse_set(&args.vary)).transpose()?;
    match (args.format, vary.is_some()) {
        (VerifyFormat::Html, false) => {
            bail!(
                "--format html is the report of --vary
  hint: add --vary all, or use --format text, json, junit or markdown"
            )
        }
        (VerifyFormat::Junit | VerifyFormat::Markdown, true) => {
            bail!(
                "--vary reports as text, json or html
  hint: use --format html for a page to share"
            )
        }
        _ => {}
    }
    if args.diffoscope && which("diffoscope").is_none() {
        bail!("--diffoscope: diffoscope is not on PATH\n  hint: install it (Debian: apt-get install diffoscope), or drop --diffoscope");
    }
    let keep = abs(&args.keep.clone().unwrap_or_else(|| dir.join("repro-verify")))?;
    let fresh = tempfile::Builder::new()
        .prefix(".repro-verify-")
        .tempdir_in(parent_dir(&keep))
        .with_context(|| format!("cannot make a directory beside {}", keep.display()))?;
    // Not sources: the rebuilds' directory, an earlier verify's, and what
    // `build` wrote (its outputs, record and log, by default or beside
    // --record), as `build` leaves them out of its own sources.
    let unused = fresh.path().join("record.json");
    let mut excluded = vec![keep.clone(), fresh.path().to_owned()];
    let default_record = dir.join("repro-out.json");
    for r in std::iter::once(&default_record).chain(args.record.as_ref()) {
        excluded.extend([r.clone(), r.with_extension(""), r.with_extension("log")]);
    }
    // A lock is followed as it is (a drifted repro.toml is an error, not a
    // relock: verify must rebuild what was locked); a project with none is
    // locked first, as `build` does.
    let locked = crate::locking::path_beside(&global.manifest).exists();
    let at = Where { out: fresh.path(), record: &unused, locked, sources: &args.sources, also_exclude: &excluded };
    let prepared = build::prepare(global, at, printer).await?;
    if let Some((path, r)) = &record {
        same_project(path, r, &prepared.build.plan)?;
    }
    let (engine, template, lock) = (prepared.engine.clone(), prepared.build.clone(), prepared.lock.clone());
    let prepare_ms = prepared.prepare_ms;
    let facts = prepared.facts().await?;
    if let Some(asked) = vary {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let ready = super::vary::Ready {
            global,
            engine,
            template,
            lock,
            facts,
            prepare_ms,
            fresh,
            keep,
            keep_asked: args.keep.is_some(),
            format: args.format,
            jobs: args.jobs.unwrap_or(cores).max(1),
        };
        return super::vary::run(ready, asked, printer).await;
    }

    printer.status(format!("verify: {runs} rebuild(s) from repro.lock (env_id {})", lock.env_id()));
    let rebuild = |i: usize| {
        let mut b = template.clone();
        let run_dir = fresh.path().join(format!("run-{i}"));
        b.out_parent = fresh.path().to_owned();
        b.log_path = run_dir.join("build.log");
        let (engine, lock, facts) = (&engine, &lock, facts.clone());
        async move { (i, rebuild_once(engine, b, &run_dir, lock, facts, prepare_ms, printer).await) }
    };
    // Without a record, the first rebuild is the reference and runs alone,
    // and the others start in a later second of the clock than the one it
    // ended in: every time it wrote, to the second, is then earlier than
    // any the others write, however much faster they get going (a warm
    // source tree, say). It costs at most a second.
    let first = if record.is_none() { 2 } else { 1 };
    let mut results = Vec::new();
    if record.is_none() {
        results.push(rebuild(1).await);
        next_second().await;
    }
    // A reference that did not build leaves nothing to compare with.
    let rest: Vec<usize> = if results.iter().any(|(_, r)| r.is_err()) { Vec::new() } else { (first..=runs).collect() };
    let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, runs);
    results.extend(futures_util::stream::iter(rest).map(rebuild).buffer_unordered(parallel).collect::<Vec<_>>().await);
    results.sort_by_key(|(i, _)| *i);

    let mut report = assemble(global, fresh.path(), record.as_ref(), &lock, results)?;
    if args.diffoscope {
        diffoscope(&mut report, fresh.path(), printer).await;
    }
    keep_or_drop(&mut report, fresh, &keep, args.keep.is_some())?;
    print(&report, args.format, printer);
    Ok(exit_of(report.outcome))
}

/// The exit code of each outcome (the table in `crate::exit`).
fn exit_of(outcome: Outcome) -> Exit {
    match outcome {
        Outcome::Reproducible => Exit::Success,
        Outcome::Differs => Exit::NotReproducible,
        Outcome::BuildFailed => Exit::BuildFailed,
        Outcome::Drifted => Exit::Drifted,
    }
}

/// One rebuild, its outputs, record and log in `run_dir`.
pub(super) async fn rebuild_once(
    engine: &crate::engine::Engine,
    build: ResolvedBuild,
    run_dir: &Path,
    lock: &Lock,
    facts: (EngineFacts, HostFacts),
    prepare_ms: u64,
    printer: &Printer,
) -> Result<BuildRecord> {
    let i = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    fs_err::create_dir_all(run_dir)?;
    printer.status(format!("{i}: building (log in {})", build.log_path.display()));
    let started = std::time::Instant::now();
    // The builds' logs would interleave on stderr: each goes to its file.
    let outcome = pipeline::run(engine, &build, &Printer::new(true)).await?;
    let timings = Timings { prepare_ms, total_ms: started.elapsed().as_millis() as u64, ..Default::default() };
    let record = build::record_of(lock, &build.plan, &outcome, build.image.clone(), facts, timings);
    outputs::replace_dir(outcome.outputs, &run_dir.join("out"))?;
    project::write_atomic(&run_dir.join("record.json"), record.to_json().as_bytes())?;
    printer.status(format!("{i}: built, artifacts {}", record.artifacts_digest));
    Ok(record)
}

/// What the comparison may blame: the fixed paths and hostname of every
/// build, and the time now (the rebuilds ran minutes ago at most; for
/// `diff` of two trees, a time within two days of now still counts).
pub(super) fn clues() -> Clues {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Clues {
        build_paths: vec![hermetic::SOURCE_DIR.to_owned(), hermetic::HOME.to_owned()],
        hostnames: vec![hermetic::HOSTNAME.to_owned()],
        times: vec![now],
    }
}

/// Reads a record, with errors that say what is wrong with it (exit 2).
fn read_record(path: &Path) -> Result<(PathBuf, BuildRecord)> {
    let text = fs_err::read_to_string(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a build record: it is not JSON\n  hint: give the record `repro-run build` wrote \
             (repro-out.json beside repro.toml)",
            path.display()
        )
    })?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(RECORD_FORMAT) => {}
        Some(other) => bail!(
            "{} is a record of format `{other}`; this repro-run reads `{RECORD_FORMAT}`\n  hint: verify it with the \
             repro-run that wrote it, or make a new record with `repro-run build`",
            path.display()
        ),
        None => bail!(
            "{} is not a build record: it has no `format`\n  hint: give the record `repro-run build` wrote \
             (repro-out.json beside repro.toml)",
            path.display()
        ),
    }
    let record = BuildRecord::from_json(&text)
        .with_context(|| format!("{} is not a valid {RECORD_FORMAT} record", path.display()))?;
    Ok((path.to_owned(), record))
}

/// A record of another project is refused rather than compared: every
/// field would differ, and none of it would mean anything.
fn same_project(path: &Path, record: &BuildRecord, plan: &hermetic::BuildPlan) -> Result<()> {
    if record.command != plan.command || record.image.name != plan.image {
        bail!(
            "{} was made by another project: its command is {:?} on `{}`, this manifest's is {:?} on `{}`\n  \
             hint: give the record of this project's build (repro-out.json beside its repro.toml), or the \
             --manifest it was built from",
            path.display(),
            record.command,
            record.image.name,
            plan.command,
            plan.image
        );
    }
    Ok(())
}

/// A record's outputs: the directory of its name without `.json`
/// (`repro-out/` for `repro-out.json`, as `build` writes them), when it
/// hashes to the record's artifacts digest.
fn record_outputs(path: &Path, record: &BuildRecord) -> Option<PathBuf> {
    let out = path.with_extension("");
    let digest = digest::digest_dir(&out, TreeKind::Artifacts).ok()?;
    (digest == record.artifacts_digest).then_some(out)
}

/// Builds the report: each rebuild compared with the reference (a
/// record's outputs, else its hashes, else the first rebuild).
fn assemble(
    global: &GlobalArgs,
    runs_dir: &Path,
    record: Option<&(PathBuf, BuildRecord)>,
    lock: &Lock,
    results: Vec<(usize, Result<BuildRecord>)>,
) -> Result<Report> {
    let clues = clues();
    let reference_tree = record.and_then(|(p, r)| record_outputs(p, r));
    let mut runs = Vec::new();
    let mut built = Vec::new();
    for (i, result) in results {
        let dir = runs_dir.join(format!("run-{i}"));
        let mut run = Run {
            run: i,
            artifacts_digest: None,
            failed: None,
            dir: dir.display().to_string(),
            comparison: None,
            diffoscope: Vec::new(),
        };
        match result {
            Ok(r) => {
                run.artifacts_digest = Some(r.artifacts_digest);
                built.push(Some(r));
            }
            // Only a build that failed is an outcome; anything else (the
            // engine, an interruption) is an error with its own exit code.
            Err(e) if is_build_failure(&e) => {
                run.failed = Some(format!("{e:#}"));
                built.push(None);
            }
            Err(e) => return Err(e),
        }
        runs.push(run);
    }
    let failed = runs.iter().any(|r| r.failed.is_some());
    if !failed {
        let first = runs_dir.join("run-1").join("out");
        for (run, rebuilt) in runs.iter_mut().zip(&built) {
            let out = Path::new(&run.dir).join("out");
            run.comparison = match (&reference_tree, record, rebuilt) {
                (Some(tree), _, _) => Some(compare_dirs(tree, &out, &clues)?),
                (None, Some((_, r)), Some(rebuilt)) => Some(verify::compare_records(r, rebuilt)),
                (None, None, _) if run.run > 1 => Some(compare_dirs(&first, &out, &clues)?),
                _ => None,
            };
        }
    }
    let paths = |r: &BuildRecord| r.artifacts.iter().map(|a| a.path.clone()).collect::<Vec<_>>();
    let reference_artifacts = match record {
        Some((_, r)) => paths(r),
        None => built.first().and_then(Option::as_ref).map(paths).unwrap_or_default(),
    };
    let run_artifacts: Vec<Vec<String>> = built.iter().flatten().map(paths).collect();
    let drift = match record {
        Some((_, r)) => verify::env_drift(r, lock, built.iter().flatten().next()),
        None => Vec::new(),
    };
    let reference = match record {
        Some((path, _)) => Reference::Record {
            path: path.display().to_string(),
            outputs: reference_tree.map(|t| t.display().to_string()),
        },
        None => Reference::FirstRebuild,
    };
    Ok(Report::new(
        global.manifest.display().to_string(),
        lock.env_id(),
        reference,
        drift,
        runs,
        &reference_artifacts,
        &run_artifacts,
    ))
}

/// Waits for the next second of the wall clock.
pub(super) async fn next_second() {
    let into =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_nanos(u64::from(1_000_000_000 - into))).await;
}

/// Whether a rebuild's error is the build failing (an outcome), not the
/// engine or an interruption (an error with its own exit code).
pub(super) fn is_build_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<BuildFailed>() || c.is::<OutputFailed>())
}

/// [`compare::compare_trees`], with the paths in its error.
pub(super) fn compare_dirs(a: &Path, b: &Path, clues: &Clues) -> Result<TreeComparison> {
    compare::compare_trees(a, b, clues).with_context(|| format!("cannot compare {} with {}", a.display(), b.display()))
}

/// Hands each differing pair of files to diffoscope, its text output into
/// `diffoscope/run-N/<path>.txt` among the rebuilds.
async fn diffoscope(report: &mut Report, runs_dir: &Path, printer: &Printer) {
    // The reference tree `assemble` found (and hashed): the record's
    // outputs, else the first rebuild's. A record whose outputs are not at
    // hand has no files to hand over.
    let reference = match &report.reference {
        Reference::Record { outputs: Some(outputs), .. } => PathBuf::from(outputs),
        Reference::Record { outputs: None, .. } => return,
        Reference::FirstRebuild => runs_dir.join("run-1").join("out"),
    };
    for run in &mut report.runs {
        let Some(c) = &run.comparison else { continue };
        let paths: Vec<String> =
            c.differences.iter().filter(|d| matches!(d.change, Change::Content(_))).map(|d| d.path.clone()).collect();
        for path in paths {
            let output = runs_dir.join("diffoscope").join(format!("run-{}", run.run)).join(format!("{path}.txt"));
            let (a, b) = (reference.join(&path), Path::new(&run.dir).join("out").join(&path));
            printer.status(format!("diffoscope: {path} (rebuild {})", run.run));
            let said = run_diffoscope(&a, &b, &output).await;
            let output = match said {
                Ok(()) => output.display().to_string(),
                Err(e) => format!("diffoscope failed: {e:#}"),
            };
            run.diffoscope.push(Diffoscope { path, output });
        }
    }
}

/// One diffoscope run; its exit code 1 means "they differ", not failure.
async fn run_diffoscope(a: &Path, b: &Path, output: &Path) -> Result<()> {
    fs_err::create_dir_all(parent_dir(output))?;
    let ran = tokio::process::Command::new("diffoscope")
        .arg("--text")
        .arg(output)
        .arg("--no-progress")
        .arg(a)
        .arg(b)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run diffoscope")?;
    match ran.status.code() {
        Some(0 | 1) => Ok(()),
        _ => bail!("{}: {}", ran.status, String::from_utf8_lossy(&ran.stderr).trim()),
    }
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// Moves the builds in `fresh` to `keep`, in place of what an earlier
/// verify kept there; where they were.
pub(super) fn move_kept(fresh: tempfile::TempDir, keep: &Path) -> Result<PathBuf> {
    if fs_err::symlink_metadata(keep).is_ok() {
        fs_err::remove_dir_all(keep)
            .with_context(|| format!("cannot replace the builds an earlier verify kept in {}", keep.display()))?;
    }
    let from = fresh.keep();
    fs_err::rename(&from, keep)?;
    Ok(from)
}

/// Keeps the rebuilds where the user asked (`--keep`), or, for a verify
/// that did not reproduce, in the default place; a reproducible verify
/// without --keep leaves nothing behind.
fn keep_or_drop(report: &mut Report, fresh: tempfile::TempDir, keep: &Path, asked: bool) -> Result<()> {
    if !asked && report.outcome == Outcome::Reproducible {
        return Ok(());
    }
    let from = move_kept(fresh, keep)?;
    let moved = |p: &str| match Path::new(p).strip_prefix(&from) {
        Ok(rel) => keep.join(rel).display().to_string(),
        Err(_) => p.to_owned(),
    };
    let (from_text, keep_text) = (from.display().to_string(), keep.display().to_string());
    for run in &mut report.runs {
        run.dir = moved(&run.dir);
        // A failure names the log where it was written.
        run.failed = run.failed.take().map(|why| why.replace(&from_text, &keep_text));
        for d in &mut run.diffoscope {
            d.output = moved(&d.output);
        }
    }
    report.kept = Some(keep.display().to_string());
    Ok(())
}

/// The report on stdout, in the asked format; and as markdown in
/// `$GITHUB_STEP_SUMMARY` when that is set.
fn print(report: &Report, format: VerifyFormat, printer: &Printer) {
    use std::io::IsTerminal as _;
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let text = match format {
        VerifyFormat::Text => verify::render_text(report, Style::new(colour)),
        VerifyFormat::Json => report.to_json(),
        VerifyFormat::Junit => verify::render_junit(report),
        VerifyFormat::Markdown => verify::render_markdown(report),
        // Refused without --vary, before any build.
        VerifyFormat::Html => verify::render_text(report, Style::new(colour)),
    };
    printer.data(text.trim_end());
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty()) {
        let appended = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .and_then(|mut f| std::io::Write::write_all(&mut f, verify::render_markdown(report).as_bytes()));
        if let Err(e) = appended {
            printer.status(format!("warning: cannot append the report to GITHUB_STEP_SUMMARY: {e}"));
        }
    }
}

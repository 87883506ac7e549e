//! `repro-run build`: one hermetic build, from manifest to record.
//!
//! This resolves what the build needs and writes what it made; the build
//! itself is [`pipeline::run`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use repro_run_core::hermetic::BuildPlan;
use repro_run_core::manifest::{Network, SourceDateEpoch};
use repro_run_core::record::{BuildRecord, EngineFacts, HostFacts, ImageFacts, Timings, RECORD_FORMAT};

use repro_run_core::lock::{Lock, LockInputs};

use crate::cli::{BuildArgs, GlobalArgs, SourceArgs};
use crate::engine::Engine;
use crate::exit::{Drift, Exit};
use crate::pipeline::{self, ResolvedBuild, Varied};
use crate::printer::Printer;
use crate::project::{abs, git_commit_time, load_project, parent_dir, write_atomic};
use crate::sources::{self, SourceOptions};
use crate::{locking, outputs};

/// A build resolved and ready to run through the [`pipeline`]: what
/// `build` runs once (and `verify`, next, several times).
pub struct Prepared {
    /// The engine.
    pub engine: Engine,
    /// repro.lock as it holds.
    pub lock: Lock,
    /// The build, with the outputs and log where `build` puts them.
    pub build: ResolvedBuild,
    /// When the command started.
    pub started: Instant,
    /// How long resolving took.
    pub prepare_ms: u64,
    /// The engine's and host's facts, asked for meanwhile.
    asked: tokio::task::JoinHandle<Result<(EngineFacts, HostFacts)>>,
}

impl Prepared {
    /// The facts of the engine and host, for a record.
    pub async fn facts(self) -> Result<(EngineFacts, HostFacts)> {
        self.asked.await.context("the engine version task panicked")?
    }
}

/// Where `build` writes, and how it follows the lock.
pub struct Where<'a> {
    /// The artifacts' directory.
    pub out: &'a Path,
    /// The record.
    pub record: &'a Path,
    /// Build only from repro.lock as it is (`--locked`).
    pub locked: bool,
    /// How the sources go in.
    pub sources: &'a SourceArgs,
    /// More paths in the project that are not sources.
    pub also_exclude: &'a [PathBuf],
}

/// Resolves a build: manifest, profile, repro.lock (locking first where
/// `!locked`), base and toolchain images, sources, settings.
pub async fn prepare(global: &GlobalArgs, at: Where<'_>, printer: &Printer) -> Result<Prepared> {
    let started = Instant::now();
    let project = load_project(&global.manifest)?;
    let lock_path = locking::path_beside(&global.manifest);
    let existing = locking::read(&lock_path)?;
    let log_path = at.record.with_extension("log");
    // A ping where the engine's facts are cached; the facts that go into
    // the record are asked for meanwhile (see Engine::ask_facts), and the
    // containers of a repro-run that was killed are removed meanwhile too.
    let engine = super::connect(global).await?;
    let asked = tokio::spawn({
        let engine = engine.clone();
        async move { engine.ask_facts().await }
    });
    let orphans = tokio::spawn({
        let engine = engine.clone();
        async move { engine.remove_orphans().await }
    });
    let source_dir = project.dir.join(&project.manifest.source.path);
    if !source_dir.is_dir() {
        bail!(
            "the source directory {} does not exist\n  hint: fix `path` under [source] in {}",
            source_dir.display(),
            global.manifest.display()
        );
    }
    let sde = match project.manifest.build.source_date_epoch {
        SourceDateEpoch::Fixed(n) => n,
        SourceDateEpoch::GitCommit => git_commit_time(&source_dir).await?,
    };
    let mut plan = BuildPlan::new(&project.manifest, project.profile.as_ref(), None, sde);
    let wanted = LockInputs::new(&project.manifest, &plan);
    match (&existing, at.locked) {
        (None, true) => {
            return Err(Drift(format!(
                "there is no {}, and --locked builds only from a lock\n  hint: run `repro-run lock` and commit \
                 repro.lock",
                lock_path.display()
            ))
            .into())
        }
        (Some((lock, _)), true) => locking::check_drift(lock, &wanted, &lock_path)?,
        (None, false) => printer.status(format!("no {}: locking first", lock_path.display())),
        (Some((lock, _)), false) => {
            let drift = lock.drift(&wanted);
            if !drift.is_empty() {
                let fields: Vec<&str> = drift.iter().map(|d| d.field.as_str()).collect();
                printer.status(format!(
                    "repro.toml changed since repro.lock was written ({}): relocking",
                    fields.join(", ")
                ));
            }
        }
    }
    if plan.network == Network::Bridge {
        printer.status("warning: [build] network = \"bridge\": this build can reach the network");
    }
    let options = locking::Options { frozen: at.locked, ..Default::default() };
    let locked = locking::ensure(&engine, &wanted, existing.as_ref().map(|(l, _)| l), options, printer).await?;
    if !at.locked && locking::write(&lock_path, &locked.lock, existing.as_ref().map(|(_, t)| t.as_str()))? {
        printer.status(format!("wrote {} (env_id {})", lock_path.display(), locked.lock.env_id()));
    }
    plan.image_rootfs = Some(locked.lock.base.rootfs);
    let prepare_ms = ms(started);
    report_orphans(orphans.await.context("the orphan task panicked")?, printer);

    let stage_base = match at.sources.stage_dir.clone() {
        Some(dir) => abs(&dir)?,
        None => abs(&sources::default_stage_base()?)?,
    };
    let build = ResolvedBuild {
        sources: SourceOptions {
            root: source_dir,
            // A stage directory inside the project is not a source either.
            exclude_paths: [at.out, at.record, &log_path, &lock_path]
                .into_iter()
                .chain(at.also_exclude.iter().map(PathBuf::as_path))
                .map(abs)
                .chain([Ok(stage_base.clone())])
                .collect::<Result<_>>()?,
            exclude_patterns: project.manifest.source.exclude.clone(),
            source_date_epoch: sde,
            owner: project.manifest.build.user,
            dir: plan.workdir.to_owned(),
        },
        transfer: sources::Settings {
            transfer: at.sources.sources,
            stage_base,
            cache_budget: at.sources.source_cache.0,
        },
        image: locked.toolchain_image.clone(),
        project: project.dir.clone(),
        out_parent: parent_dir(at.out).to_owned(),
        log_path: log_path.clone(),
        plan,
        varied: Varied::default(),
    };
    Ok(Prepared { engine, lock: locked.lock, build, started, prepare_ms, asked })
}

/// Runs `repro-run build`: [`prepare`], then the [`pipeline`], then the
/// record and the outputs in place.
pub async fn run(global: &GlobalArgs, args: BuildArgs, printer: &Printer) -> Result<Exit> {
    let dir = load_project(&global.manifest)?.dir;
    let out = args.out.unwrap_or_else(|| dir.join("repro-out"));
    let record_path = args.record.unwrap_or_else(|| dir.join("repro-out.json"));
    let at = Where { out: &out, record: &record_path, locked: args.locked, sources: &args.sources, also_exclude: &[] };
    let prepared = prepare(global, at, printer).await?;
    let (engine, build) = (&prepared.engine, &prepared.build);
    let outcome = pipeline::run(engine, build, printer).await?;
    for w in &outcome.warnings {
        printer.status(format!("warning: {w}"));
    }
    // Podman may still be answering `/version`: that wait shows in no
    // phase. It comes before the outputs move, so that a failure here
    // leaves the old ones.
    let timings = Timings { prepare_ms: prepared.prepare_ms, total_ms: ms(prepared.started), ..Default::default() };
    let (lock, plan, image) = (prepared.lock.clone(), build.plan.clone(), build.image.clone());
    let facts = prepared.facts().await?;
    let record = record_of(&lock, &plan, &outcome, image, facts, timings);
    outputs::replace_dir(outcome.outputs, &out)
        .with_context(|| format!("cannot move the artifacts into {}", out.display()))?;
    write_atomic(&record_path, record.to_json().as_bytes())?;
    report(&record, &out, &record_path, printer);
    Ok(Exit::Success)
}

/// Says which containers of a killed repro-run were removed.
fn report_orphans(removed: Result<Vec<String>>, printer: &Printer) {
    match removed {
        Ok(removed) if !removed.is_empty() => printer.status(format!(
            "removed {} container(s) left by a repro-run that was killed: {}",
            removed.len(),
            removed.join(" ")
        )),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot look for containers left by a killed repro-run: {e:#}"),
    }
}

/// The record of a successful build; `timings` brings `prepare_ms` and
/// `total_ms`, the outcome the phases.
pub fn record_of(
    lock: &Lock,
    plan: &BuildPlan,
    outcome: &pipeline::BuildOutcome,
    toolchain: String,
    (engine, host): (repro_run_core::record::EngineFacts, repro_run_core::record::HostFacts),
    timings: Timings,
) -> BuildRecord {
    let t = outcome.timings;
    BuildRecord {
        format: RECORD_FORMAT.to_owned(),
        env_id: lock.env_id(),
        source_digest: outcome.source_digest,
        command: plan.command.clone(),
        exit_code: outcome.exit_code,
        artifacts: outcome.artifacts.clone(),
        artifacts_digest: outcome.artifacts_digest,
        log_digest: outcome.log_digest,
        image: ImageFacts {
            name: plan.image.clone(),
            rootfs: Some(lock.base.rootfs),
            toolchain_image_id: toolchain,
            toolchain_rootfs: Some(lock.toolchain.rootfs),
            packages: lock.installed(),
        },
        engine,
        host,
        timings: Timings {
            source_ms: t.source_ms,
            upload_ms: t.upload_ms,
            run_ms: t.run_ms,
            collect_ms: t.collect_ms,
            remove_ms: t.remove_ms,
            ..timings
        },
    }
}

/// Prints the artifacts (stdout) and the summary (stderr).
fn report(record: &BuildRecord, out: &Path, record_path: &Path, printer: &Printer) {
    for a in &record.artifacts {
        printer.data(format!("{}  {}", a.blake3, a.path));
    }
    printer.status(format!(
        "built {} artifact(s) in {:.1} s on {} {}\n  env_id    {}\n  artifacts {}\n  outputs   {}\n  record    {}",
        record.artifacts.len(),
        record.timings.total_ms as f64 / 1000.0,
        record.engine.kind,
        record.engine.version,
        record.env_id,
        record.artifacts_digest,
        out.display(),
        record_path.display()
    ));
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

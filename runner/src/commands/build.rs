//! `repro-run build`: one hermetic build, from manifest to record.
//!
//! This resolves what the build needs and writes what it made; the build
//! itself is [`pipeline::run`].

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use repro_run_core::hermetic::BuildPlan;
use repro_run_core::manifest::{Network, SourceDateEpoch};
use repro_run_core::record::{BuildRecord, ImageFacts, Timings, RECORD_FORMAT};

use repro_run_core::lock::{Lock, LockInputs};

use crate::cli::{BuildArgs, GlobalArgs};
use crate::exit::{Drift, Exit};
use crate::pipeline::{self, ResolvedBuild};
use crate::printer::Printer;
use crate::project::{abs, git_commit_time, load_project, parent_dir, write_atomic};
use crate::sources::{self, SourceOptions};
use crate::{locking, outputs};

/// Runs `repro-run build`: resolves the build (manifest, profile, base
/// and toolchain images, sources, settings), runs it through the
/// [`pipeline`], and writes the record.
pub async fn run(global: &GlobalArgs, args: BuildArgs, printer: &Printer) -> Result<Exit> {
    let started = Instant::now();
    let project = load_project(&global.manifest)?;
    let lock_path = locking::path_beside(&global.manifest);
    let existing = locking::read(&lock_path)?;
    let out = args.out.unwrap_or_else(|| project.dir.join("repro-out"));
    let record_path = args.record.unwrap_or_else(|| project.dir.join("repro-out.json"));
    let log_path = record_path.with_extension("log");

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
    match (&existing, args.locked) {
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
    let options = locking::Options { frozen: args.locked, ..Default::default() };
    let locked = locking::ensure(&engine, &wanted, existing.as_ref().map(|(l, _)| l), options, printer).await?;
    if !args.locked && locking::write(&lock_path, &locked.lock, existing.as_ref().map(|(_, t)| t.as_str()))? {
        printer.status(format!("wrote {} (env_id {})", lock_path.display(), locked.lock.env_id()));
    }
    plan.image_rootfs = Some(locked.lock.base.rootfs);
    let toolchain = locked.toolchain_image.clone();
    let prepare_ms = ms(started);
    report_orphans(orphans.await.context("the orphan task panicked")?, printer);

    let stage_base = match args.stage_dir {
        Some(dir) => abs(&dir)?,
        None => abs(&sources::default_stage_base()?)?,
    };
    let build = ResolvedBuild {
        sources: SourceOptions {
            root: source_dir,
            // A stage directory inside the project is not a source either.
            exclude_paths: vec![abs(&out)?, abs(&record_path)?, abs(&log_path)?, abs(&lock_path)?, stage_base.clone()],
            exclude_patterns: project.manifest.source.exclude.clone(),
            source_date_epoch: sde,
            owner: project.manifest.build.user,
        },
        transfer: sources::Settings { transfer: args.sources, stage_base, cache_budget: args.source_cache.0 },
        image: toolchain.clone(),
        project: project.dir.clone(),
        out_parent: parent_dir(&out).to_owned(),
        log_path: log_path.clone(),
        plan,
    };
    let outcome = pipeline::run(&engine, &build, printer).await?;
    for w in &outcome.warnings {
        printer.status(format!("warning: {w}"));
    }
    // Podman may still be answering `/version`: that wait shows in no
    // phase. It comes before the outputs move, so that a failure here
    // leaves the old ones.
    let (engine_facts, host) = asked.await.context("the engine version task panicked")??;
    let timings = Timings { prepare_ms, total_ms: ms(started), ..Default::default() };
    let record = record_of(&locked.lock, &build.plan, &outcome, toolchain, (engine_facts, host), timings);
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
fn record_of(
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
        image: ImageFacts { name: plan.image.clone(), rootfs: Some(lock.base.rootfs), toolchain_image_id: toolchain },
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

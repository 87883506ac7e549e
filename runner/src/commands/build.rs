//! `repro-run build`: one hermetic build, from manifest to record.
//!
//! This resolves what the build needs and writes what it made; the build
//! itself is [`pipeline::run`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use repro_run_core::hermetic::BuildPlan;
use repro_run_core::manifest::{Manifest, Network, SourceDateEpoch};
use repro_run_core::record::{BuildRecord, ImageFacts, Timings, RECORD_FORMAT};

use crate::cli::{BuildArgs, GlobalArgs};
use crate::exit::Exit;
use crate::pipeline::{self, ResolvedBuild};
use crate::printer::Printer;
use crate::sources::{self, SourceOptions};
use crate::{images, outputs, prepare, profiles};

/// Runs `repro-run build`: resolves the build (manifest, profile, base
/// and toolchain images, sources, settings), runs it through the
/// [`pipeline`], and writes the record.
pub async fn run(global: &GlobalArgs, args: BuildArgs, printer: &Printer) -> Result<Exit> {
    let started = Instant::now();
    let project = load_project(&global.manifest)?;
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
    let (base, base_digest) = pinned_base(&engine, &project, &global.manifest, printer).await?;
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
    let plan = BuildPlan::new(&project.manifest, project.profile.as_ref(), Some(base_digest), sde);
    if plan.network == Network::Bridge {
        printer.status("warning: [build] network = \"bridge\": this build can reach the network");
    }
    let toolchain = prepare::toolchain_image(&engine, &base, &plan.packages, printer).await?;
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
            exclude_paths: vec![abs(&out)?, abs(&record_path)?, abs(&log_path)?, stage_base.clone()],
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
    let record = record_of(&build.plan, &outcome, base_digest, toolchain, (engine_facts, host), timings);
    outputs::replace_dir(outcome.outputs, &out)
        .with_context(|| format!("cannot move the artifacts into {}", out.display()))?;
    write_atomic(&record_path, record.to_json().as_bytes())?;
    report(&record, &out, &record_path, printer);
    Ok(Exit::Success)
}

/// The base image the manifest names, made on first use, and its rootfs
/// digest, which must be the manifest's pin where it has one.
async fn pinned_base(
    engine: &crate::engine::Engine,
    project: &Project,
    manifest_path: &Path,
    printer: &Printer,
) -> Result<(prepare::BaseImage, repro_run_core::digest::Digest)> {
    let base = prepare::base_image(engine, &project.manifest.image.name, printer).await?;
    let base_digest = images::digest_image(engine, &base.reference, false, printer).await?;
    if let Some(pin) = project.manifest.image.rootfs {
        if pin != base_digest {
            bail!(
                "image `{}` has rootfs {base_digest}, but {} pins {pin}\n  hint: rebuild or import the image the pin \
                 names, or, if the new image is the one you want, set `rootfs = \"{base_digest}\"` under [image]",
                base.reference,
                manifest_path.display()
            );
        }
    }
    Ok((base, base_digest))
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
    plan: &BuildPlan,
    outcome: &pipeline::BuildOutcome,
    base_digest: repro_run_core::digest::Digest,
    toolchain: String,
    (engine, host): (repro_run_core::record::EngineFacts, repro_run_core::record::HostFacts),
    timings: Timings,
) -> BuildRecord {
    let t = outcome.timings;
    BuildRecord {
        format: RECORD_FORMAT.to_owned(),
        env_id: plan.env_id(),
        source_digest: outcome.source_digest,
        command: plan.command.clone(),
        exit_code: outcome.exit_code,
        artifacts: outcome.artifacts.clone(),
        artifacts_digest: outcome.artifacts_digest,
        log_digest: outcome.log_digest,
        image: ImageFacts { name: plan.image.clone(), rootfs: Some(base_digest), toolchain_image_id: toolchain },
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

/// A manifest, its directory and its profile.
struct Project {
    manifest: Manifest,
    profile: Option<repro_run_core::profile::Profile>,
    dir: PathBuf,
}

fn load_project(path: &Path) -> Result<Project> {
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no manifest at {}\n  hint: write a repro.toml there (see examples/hello-c/repro.toml), or point at one \
             with --manifest FILE",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let manifest = Manifest::parse(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
    let profile = manifest.toolchain.profile.as_deref().map(profiles::load).transpose()?;
    let dir = abs(path)?.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    Ok(Project { manifest, profile, dir })
}

/// The committer time of `HEAD` in `dir`, for `source_date_epoch = "git"`.
async fn git_commit_time(dir: &Path) -> Result<u64> {
    let out = tokio::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(dir)
        .output()
        .await
        .context("source_date_epoch = \"git\" needs git, which cannot be run")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<u64>() {
        Ok(n) if out.status.success() => Ok(n),
        _ => bail!(
            "source_date_epoch = \"git\", but {} has no git commit ({})\n  hint: commit the sources, or give a \
             number of seconds",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut tmp = tempfile::Builder::new()
        .prefix(".repro-run-")
        .tempfile_in(parent_dir(path))
        .with_context(|| format!("cannot write beside {}", path.display()))?;
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `path` made absolute, with its parent's symlinks resolved when the parent
/// exists, so that it compares equal to paths found by walking the project.
fn abs(path: &Path) -> Result<PathBuf> {
    let path = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
        if let Ok(parent) = parent.canonicalize() {
            return Ok(parent.join(name));
        }
    }
    Ok(path)
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

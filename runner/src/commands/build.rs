//! `repro-run build`: one hermetic build, from manifest to record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use repro_run_core::digest::{self, Digest, TreeKind};
use repro_run_core::hermetic::{self, BuildPlan};
use repro_run_core::manifest::{Manifest, Network, SourceDateEpoch};
use repro_run_core::record::{BuildRecord, ImageFacts, Timings, RECORD_FORMAT};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::cli::{BuildArgs, GlobalArgs, SourceTransfer};
use crate::engine::{ContainerGuard, Engine, LABEL_PROJECT};
use crate::exit::{BuildFailed, Exit};
use crate::prepare::{self, Tail};
use crate::printer::Printer;
use crate::source::SourceOptions;
use crate::staging::{self, StageDir};
use crate::trees::{self, TreeCache};
use crate::{images, outputs, profiles, signal, source};

/// Runs `repro-run build`.
pub async fn run(global: &GlobalArgs, args: BuildArgs, printer: &Printer) -> Result<Exit> {
    let started = Instant::now();
    let project = load_project(&global.manifest)?;
    let out = args.out.unwrap_or_else(|| project.dir.join("repro-out"));
    let record_path = args.record.unwrap_or_else(|| project.dir.join("repro-out.json"));
    let log_path = record_path.with_extension("log");

    // A ping where the engine's facts are cached; the facts that go into
    // the record are asked for meanwhile (see Engine::ask_facts).
    let engine = super::connect(global).await?;
    let asked = tokio::spawn({
        let engine = engine.clone();
        async move { engine.ask_facts().await }
    });
    let base = prepare::base_image(&engine, &project.manifest.image.name, printer).await?;
    let base_digest = images::digest_image(&engine, &base.reference, false, printer).await?;
    if let Some(pin) = project.manifest.image.rootfs {
        if pin != base_digest {
            bail!(
                "image `{}` has rootfs {base_digest}, but {} pins {pin}\n  hint: rebuild or import the image the pin \
                 names, or, if the new image is the one you want, set `rootfs = \"{base_digest}\"` under [image]",
                base.reference,
                global.manifest.display()
            );
        }
    }
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

    let stage_base = match args.stage_dir {
        Some(dir) => abs(&dir)?,
        None => abs(&StageDir::default_base()?)?,
    };
    let sources = SourceOptions {
        root: source_dir,
        // A stage directory inside the project is not a source either.
        exclude_paths: vec![abs(&out)?, abs(&record_path)?, abs(&log_path)?, stage_base.clone()],
        exclude_patterns: project.manifest.source.exclude.clone(),
        source_date_epoch: sde,
        owner: project.manifest.build.user,
    };

    let labels = HashMap::from([(LABEL_PROJECT.to_owned(), project.dir.display().to_string())]);
    let body = container_body(&plan, &toolchain);
    let placed = place_sources(&engine, args.sources, &stage_base, args.source_cache.0, &sources, body, labels).await?;
    printer.status(format!(
        "sources: {} entries, {} ({})",
        placed.entries,
        placed.digest,
        match placed.way {
            Way::Mounted(_, Kept::No) => "mounted",
            Way::Mounted(_, Kept::Found { .. }) => "mounted, tree kept from an earlier build",
            Way::Mounted(_, Kept::Added) => "mounted, tree kept for later builds",
            Way::Uploaded(_) => "uploaded",
        }
    ));
    let guard = placed.guard;
    let id = guard.id().to_owned();
    // Made only now, so that the walk of the sources cannot see them.
    let made = tempfile::Builder::new()
        .prefix(".repro-out.tmp-")
        .tempdir_in(parent_dir(&out))
        .with_context(|| format!("cannot create a staging directory beside {}", out.display()))
        .and_then(|dir| Ok((dir, BuildLog::new(parent_dir(&log_path))?)));
    let (out_staging, mut log) = match made {
        Ok(made) => made,
        Err(e) => {
            guard.remove().await;
            return Err(e);
        }
    };
    let outcome =
        signal::cancellable(run_in_container(&engine, &id, &plan, &placed.way, out_staging.path(), &mut log, printer))
            .await;
    let remove_started = Instant::now();
    // The staged tree goes while the engine removes the container.
    let (stage, kept) = match placed.way {
        Way::Mounted(stage, kept) => (Some(stage), Some(kept)),
        Way::Uploaded(_) => (None, None),
    };
    let stage_removed = tokio::task::spawn_blocking(move || stage.map(StageDir::remove));
    guard.remove().await;
    if stage_removed.await.is_err() {
        tracing::warn!("the task removing the staging directory panicked");
    }
    // A tree written and not needed goes after the engine's last sync,
    // which would otherwise wait for its freed blocks.
    if tokio::task::spawn_blocking(move || drop(kept)).await.is_err() {
        tracing::warn!("the task removing a source tree not needed panicked");
    }
    let remove_ms = ms(remove_started);
    // Whatever happened, the log of this run is kept: it says why.
    let tail = log.tail.text();
    let log_digest = log.persist(&log_path)?;
    let outcome = outcome?;

    if outcome.exit_code != 0 {
        return Err(BuildFailed(format!(
            "the build command exited with {}; the last lines of its log (all of it is in {}):\n{tail}",
            outcome.exit_code,
            log_path.display(),
        ))
        .into());
    }
    for w in &outcome.warnings {
        printer.status(format!("warning: {w}"));
    }

    let collect_started = Instant::now();
    let staging_path = out_staging.path().to_owned();
    let known = outcome.hashes;
    let (artifacts, artifacts_digest) = tokio::task::spawn_blocking(move || -> Result<_> {
        let t = Instant::now();
        let artifacts = outputs::hash_tree(&staging_path, &known)?;
        tracing::debug!("artifacts hashed in {} ms", ms(t));
        let t = Instant::now();
        let d = digest::digest_dir(&staging_path, TreeKind::Artifacts)?;
        tracing::debug!("artifacts digested in {} ms", ms(t));
        Ok((artifacts, d))
    })
    .await
    .context("the hashing task panicked")??;
    let collect_ms = outcome.collect_ms + ms(collect_started);
    // Podman may still be answering `/version`: that wait shows in no
    // phase. It comes before the outputs move, so that a failure here
    // leaves the old ones.
    let (engine_facts, host) = asked.await.context("the engine version task panicked")??;
    outputs::replace_dir(out_staging, &out)
        .with_context(|| format!("cannot move the artifacts into {}", out.display()))?;
    let record = BuildRecord {
        format: RECORD_FORMAT.to_owned(),
        env_id: plan.env_id(),
        source_digest: placed.digest,
        command: plan.command.clone(),
        exit_code: outcome.exit_code,
        artifacts,
        artifacts_digest,
        log_digest,
        image: ImageFacts { name: plan.image.clone(), rootfs: Some(base_digest), toolchain_image_id: toolchain },
        engine: engine_facts,
        host,
        timings: Timings {
            prepare_ms,
            source_ms: placed.source_ms,
            upload_ms: outcome.upload_ms,
            run_ms: outcome.run_ms,
            collect_ms,
            remove_ms,
            total_ms: ms(started),
        },
    };
    write_atomic(&record_path, record.to_json().as_bytes())?;
    let engine_facts = &record.engine;

    for a in &record.artifacts {
        printer.data(format!("{}  {}", a.blake3, a.path));
    }
    printer.status(format!(
        "built {} artifact(s) in {:.1} s on {} {}\n  env_id    {}\n  artifacts {}\n  outputs   {}\n  record    {}",
        record.artifacts.len(),
        record.timings.total_ms as f64 / 1000.0,
        engine_facts.kind,
        engine_facts.version,
        record.env_id,
        record.artifacts_digest,
        out.display(),
        record_path.display()
    ));
    Ok(Exit::Success)
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

/// The build container, created, with the sources on their way in.
struct Placed {
    guard: ContainerGuard,
    digest: Digest,
    entries: usize,
    /// Time spent making the normalised tree or tar (and, over a kept
    /// tree, creating the container meanwhile).
    source_ms: u64,
    way: Way,
}

/// How the sources reach `/src`.
enum Way {
    /// Staged here and bind-mounted: nothing left to do before the start.
    Mounted(StageDir, Kept),
    /// A tar to upload before the start.
    Uploaded(source::SourceTar),
}

/// Creates the build container with the sources mounted (see
/// [`crate::staging`]) when `how` and the engine allow, else with the
/// sources as a tar to upload.
async fn place_sources(
    engine: &Engine,
    how: SourceTransfer,
    stage_base: &Path,
    cache_budget: u64,
    sources: &SourceOptions,
    body: ContainerCreateBody,
    labels: HashMap<String, String>,
) -> Result<Placed> {
    let identity = engine.socket_identity();
    let hint = "hint: use --sources upload, which works with any engine";
    let cached = identity.as_deref().and_then(|id| staging::cached_verdict(id, stage_base));
    let mut cannot = match how {
        SourceTransfer::Upload => Some("--sources upload".to_owned()),
        SourceTransfer::Mount | SourceTransfer::Auto => staging::unmountable_because(&engine.endpoint, sources.owner),
    };
    // `auto` asks the engine once, and remembers the answer below; `mount`
    // asks every time, because it was asked for.
    if cannot.is_none() && (how == SourceTransfer::Mount || cached.is_none()) {
        cannot = staging::placement_forbids(&engine.placement().await?);
        if let (Some(id), Some(_)) = (&identity, &cannot) {
            staging::remember_verdict(id, stage_base, false);
        }
    }
    if cannot.is_none() && how == SourceTransfer::Auto && cached == Some(false) {
        cannot = Some("this engine could not see this machine's files before (remembered in mounts.json)".into());
    }
    if let Some(why) = cannot {
        if how == SourceTransfer::Mount {
            bail!("cannot mount the sources: {why}\n  {hint}");
        }
        tracing::debug!("uploading the sources: {why}");
        return upload_sources(engine, sources, body, labels).await;
    }

    let t = Instant::now();
    let (stage, staged, kept, created) =
        stage_sources(engine, stage_base, cache_budget, sources, &body, &labels).await?;
    let source_ms = ms(t);

    // Over a kept tree, the container comes back created and confirmed.
    let confirmed = match created {
        Some(confirmed) => confirmed,
        None => match create_mounted(engine, &stage, body.clone(), labels.clone()).await? {
            Ok(guard) => confirm_mounted(engine, guard, &stage, sources.source_date_epoch).await?,
            Err(why) => Err(why),
        },
    };
    let why = match confirmed {
        Ok(guard) => {
            if let (Some(id), false) = (&identity, cached == Some(true)) {
                staging::remember_verdict(id, stage_base, true);
            }
            let way = Way::Mounted(stage, kept);
            return Ok(Placed { guard, digest: staged.digest, entries: staged.entries, source_ms, way });
        }
        Err(why) => why,
    };
    if let Some(id) = &identity {
        staging::remember_verdict(id, stage_base, false);
    }
    stage.remove();
    if how == SourceTransfer::Mount {
        bail!("cannot mount the sources into a container of the engine at {}: {why}\n  {hint}", engine.endpoint);
    }
    tracing::info!("the engine cannot mount this machine's files ({why}); uploading the sources instead");
    upload_sources(engine, sources, body, labels).await
}

/// Whether mounted sources are a kept tree (see [`crate::trees`]).
enum Kept {
    /// A copy of this build's own.
    No,
    /// A tree an earlier build kept, and the tree this build wrote before
    /// it found that one, if it did: removed when the engine is done with
    /// the container ([`trees::Dropped`]).
    Found {
        /// Held for its drop.
        _written: Option<trees::Dropped>,
    },
    /// A tree staged now and kept.
    Added,
}

/// A container made, or why the engine refused its mounts.
type Created = Result<ContainerGuard, String>;

/// Stages the sources in `base` for a mount: over a kept tree when this
/// process can mount an overlay and `cache_budget` is not 0 (see
/// [`crate::trees`]), else as a copy of its own. Over a kept tree, the
/// container is created while the tree is read (and, the first time,
/// written), and comes back too: creating it costs the build no time of
/// its own then.
async fn stage_sources(
    engine: &Engine,
    base: &Path,
    cache_budget: u64,
    sources: &SourceOptions,
    body: &ContainerCreateBody,
    labels: &HashMap<String, String>,
) -> Result<(StageDir, source::Staged, Kept, Option<Created>)> {
    let cannot = match cache_budget {
        0 => Some("--source-cache 0".to_owned()),
        _ => trees::cannot_overlay(base),
    };
    let copy = |base: PathBuf, s: SourceOptions| async move {
        let copied = tokio::task::spawn_blocking(move || -> Result<_> {
            let stage = StageDir::new(&base)?;
            let staged = source::stage(&s, stage.path())?;
            Ok((stage, staged, Kept::No, None))
        });
        copied.await.context("the staging task panicked")?
    };
    if let Some(why) = cannot {
        tracing::debug!("staging a copy of the sources, not keeping the tree: {why}");
        return copy(base.to_owned(), sources.clone()).await;
    }

    let mut stage = StageDir::skeleton(base, sources)?;
    let (b, s) = (base.to_owned(), sources.clone());
    let found = tokio::task::spawn_blocking(move || -> Result<_> {
        let cache = TreeCache::new(&b, cache_budget);
        let walked = source::walk_sources(&s)?;
        // Read only, when the sources look unchanged since a tree was kept;
        // else read once while a new tree is written.
        let fingerprint = source::fingerprint(&s, &walked)?;
        if cache.expected(&fingerprint).is_some() {
            let read = source::digest(&s, &walked)?;
            if let Some(tree) = cache.find(&read.digest)? {
                cache.remember(&fingerprint, &read.digest);
                return Ok((tree, read, Kept::Found { _written: None }, cache));
            }
        }
        let (tree, staged, added) = cache.add(&s, &walked, cache.form_for_new())?;
        cache.remember(&fingerprint, &staged.digest);
        let kept = match added {
            trees::Added::New => Kept::Added,
            trees::Added::Found(dropped) => Kept::Found { _written: dropped },
        };
        Ok((tree, staged, kept, cache))
    });
    let created = match create_mounted(engine, &stage, body.clone(), labels.clone()).await {
        Ok(Ok(guard)) => confirm_mount_point(engine, guard, &mut stage).await,
        other => other,
    };
    let found = found.await.context("the staging task panicked").and_then(|found| found);
    let ((tree, staged, kept, cache), created) = match (found, created) {
        (Ok(found), Ok(created)) => (found, created),
        (Err(e), created) => {
            if let Ok(Ok(guard)) = created {
                guard.remove().await;
            }
            return Err(e);
        }
        (Ok(_), Err(e)) => return Err(e),
    };
    if let Err(e) = stage.mount_tree(tree) {
        tracing::warn!("{e:#}; staging a copy of the sources instead");
        if let Ok(guard) = created {
            guard.remove().await;
        }
        stage.remove();
        return copy(base.to_owned(), sources.clone()).await;
    }
    // What this build added (a tree, a hint) may push older ones past
    // their bounds: they go while the build runs.
    stage.evict_meanwhile(cache);
    Ok((stage, staged, kept, Some(created)))
}

/// Creates the build container with the staged directory mounted:
/// `Ok(Err(why))` when the engine refuses the mounts.
async fn create_mounted(
    engine: &Engine,
    stage: &StageDir,
    body: ContainerCreateBody,
    labels: HashMap<String, String>,
) -> Result<Created> {
    let mut body = body;
    if let Some(hc) = body.host_config.as_mut() {
        hc.mounts = Some(stage.mounts());
    }
    match engine.create(body, labels).await {
        Ok(guard) => Ok(Ok(guard)),
        // A refused bind mount (Docker checks that the source exists where
        // it runs); any other refusal is not about the mount.
        Err(e) if format!("{e:#}").contains("mount") => Ok(Err(format!("{e:#}"))),
        Err(e) => Err(e),
    }
}

/// Checks that the container sees what is mounted at the staged `src/`
/// (see [`StageDir::place_mount_probe`]): `Ok(Err(why))` when it does not
/// (the container is removed then).
async fn confirm_mount_point(engine: &Engine, guard: ContainerGuard, stage: &mut StageDir) -> Result<Created> {
    let probe = format!("{}/{}", hermetic::SOURCE_DIR, staging::PROBE);
    let asked = match stage.place_mount_probe() {
        Ok(()) => engine.path_exists(guard.id(), &probe).await,
        Err(e) => Err(e),
    };
    let cleared = stage.clear_mount_probe();
    match (asked, cleared) {
        (Ok(true), Ok(())) => Ok(Ok(guard)),
        (Ok(false), Ok(())) => {
            guard.remove().await;
            Ok(Err(format!("the container does not see what is mounted at {}", stage.src().display())))
        }
        (Err(e), _) | (_, Err(e)) => {
            guard.remove().await;
            Err(e)
        }
    }
}

/// Checks that the container sees the staged directory, by asking the
/// engine for a file only the staged directory holds: `Ok(Err(why))` when
/// it does not (the container is removed then).
async fn confirm_mounted(
    engine: &Engine,
    guard: ContainerGuard,
    stage: &StageDir,
    source_date_epoch: u64,
) -> Result<Created> {
    let asked = match stage.place_probe() {
        Ok(()) => engine.path_exists(guard.id(), &stage.probe()).await,
        Err(e) => Err(e),
    };
    let ready = match asked {
        Ok(true) => stage.clear_probe(source_date_epoch).map(|()| true),
        other => other,
    };
    match ready {
        Ok(true) => Ok(Ok(guard)),
        Ok(false) => {
            guard.remove().await;
            Ok(Err(format!("the container does not see {}", stage.path().display())))
        }
        Err(e) => {
            guard.remove().await;
            Err(e)
        }
    }
}

async fn upload_sources(
    engine: &Engine,
    sources: &SourceOptions,
    body: ContainerCreateBody,
    labels: HashMap<String, String>,
) -> Result<Placed> {
    let t = Instant::now();
    let s = sources.clone();
    let tar =
        tokio::task::spawn_blocking(move || source::build(&s)).await.context("the source tar task panicked")??;
    let source_ms = ms(t);
    let guard = engine.create(body, labels).await?;
    Ok(Placed { guard, digest: tar.digest, entries: tar.entries, source_ms, way: Way::Uploaded(tar) })
}

/// The container that runs the build: every hermetic setting is here.
fn container_body(plan: &BuildPlan, image: &str) -> ContainerCreateBody {
    // Engines add variables of their own (HOSTNAME; Podman also `container`):
    // `env -i` starts the command with exactly the plan's environment, the
    // same on every engine.
    let mut cmd = vec!["env".to_owned(), "-i".to_owned()];
    cmd.extend(plan.env_list());
    cmd.extend(plan.command.iter().cloned());
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd),
        entrypoint: Some(vec![]),
        env: Some(plan.env_list()),
        working_dir: Some(hermetic::SOURCE_DIR.to_owned()),
        user: Some(plan.user.clone()),
        hostname: Some(hermetic::HOSTNAME.to_owned()),
        domainname: Some(String::new()),
        network_disabled: Some(plan.network == Network::None),
        host_config: Some(HostConfig {
            network_mode: Some(plan.network.as_str().to_owned()),
            tmpfs: Some(HashMap::from([(plan.tmpfs.to_owned(), "rw,nosuid,nodev,mode=1777".to_owned())])),
            memory: plan.limits.memory_bytes.map(|b| b as i64),
            // Swap counts against the limit, so the limit means what it says.
            memory_swap: plan.limits.memory_bytes.map(|b| b as i64),
            nano_cpus: plan.limits.millicpus.map(|m| (m * 1_000_000) as i64),
            ulimits: Some(
                [("nofile", plan.limits.nofile), ("nproc", plan.limits.nproc)]
                    .into_iter()
                    .map(|(name, n)| ResourcesUlimits {
                        name: Some(name.into()),
                        soft: Some(n as i64),
                        hard: Some(n as i64),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The build log as it streams: to stderr, into a temporary file beside its
/// final place (so memory stays flat however much a build prints), into a
/// hash, and its end kept for error messages.
struct BuildLog {
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    hasher: blake3::Hasher,
    tail: Tail,
}

impl BuildLog {
    fn new(dir: &Path) -> Result<BuildLog> {
        let file = tempfile::Builder::new()
            .prefix(".repro-run-log-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create the build log in {}", dir.display()))?;
        Ok(BuildLog { file: std::io::BufWriter::new(file), hasher: blake3::Hasher::new(), tail: Tail::default() })
    }

    fn push(&mut self, chunk: &[u8], printer: &Printer) -> Result<()> {
        use std::io::Write as _;
        printer.log(chunk);
        self.tail.push(chunk);
        self.hasher.update(chunk);
        self.file.write_all(chunk).context("cannot write the build log")
    }

    /// Moves the log to `path`; its blake3.
    fn persist(self, path: &Path) -> Result<Digest> {
        let file = self.file.into_inner().map_err(|e| e.into_error()).context("cannot write the build log")?;
        file.persist(path).with_context(|| format!("cannot save the build log as {}", path.display()))?;
        Ok(Digest::from_hash(self.hasher.finalize()))
    }
}

struct Outcome {
    exit_code: i64,
    warnings: Vec<String>,
    /// Hashes made while the outputs were written.
    hashes: HashMap<PathBuf, repro_run_core::record::ContentHashes>,
    upload_ms: u64,
    run_ms: u64,
    collect_ms: u64,
}

async fn run_in_container(
    engine: &Engine,
    id: &str,
    plan: &BuildPlan,
    sources: &Way,
    staging: &Path,
    log: &mut BuildLog,
    printer: &Printer,
) -> Result<Outcome> {
    let t = Instant::now();
    if let Way::Uploaded(tar) = sources {
        let file = tokio::fs::File::open(tar.file.path()).await.context("cannot reopen the source tar")?;
        engine.upload(id, "/", ReaderStream::with_capacity(file, 256 * 1024)).await?;
    }
    let upload_ms = ms(t);

    let t = Instant::now();
    let timeout = Duration::from_secs(plan.limits.timeout_secs);
    let ran = tokio::time::timeout(timeout, engine.run(id, |chunk| log.push(chunk, printer))).await;
    let Ok(state) = ran else {
        // The caller removes the container, which stops the command.
        return Err(BuildFailed(format!(
            "the build did not finish within its timeout of {} s and was stopped; the last lines of its log:\n{}\n  \
             hint: raise `timeout` under [limits] in the manifest",
            plan.limits.timeout_secs,
            log.tail.text()
        ))
        .into());
    };
    let (exit_code, oom_killed) = state?;
    if let Some(limit) = plan.limits.memory_bytes {
        // Engines flag an OOM kill of the container's first process; a child
        // killed at the limit shows only as SIGKILL (137) from its parent.
        if exit_code != 0 && (oom_killed || exit_code == 137) {
            return Err(BuildFailed(format!(
                "the build ran out of memory: it was killed (exit {exit_code}) at the memory limit of {} MiB; the \
                 last lines of its log:\n{}\n  hint: raise `memory` under [limits] in the manifest",
                limit >> 20,
                log.tail.text()
            ))
            .into());
        }
    }
    let run_ms = ms(t);
    let mut outcome =
        Outcome { exit_code, warnings: Vec::new(), hashes: HashMap::new(), upload_ms, run_ms, collect_ms: 0 };
    if exit_code != 0 {
        return Ok(outcome);
    }

    let t = Instant::now();
    for output in &plan.outputs {
        let spec = outputs::OutputSpec::new(output)?;
        let path = if spec.fetch.is_empty() {
            hermetic::SOURCE_DIR.to_owned()
        } else {
            format!("{}/{}", hermetic::SOURCE_DIR, spec.fetch)
        };
        let missing = || {
            BuildFailed(format!(
                "the build succeeded but did not create the declared output `{output}` ({path})\n  hint: fix [build] \
                 outputs in the manifest, or make the build write there"
            ))
        };
        // Mounted sources are read here, straight from the staged tree,
        // unless a link the build made is in the way: the engine resolves
        // those inside the container.
        let local = match sources {
            Way::Mounted(stage, _) => staging::local_output(&stage.src(), &spec.fetch),
            Way::Uploaded(_) => None,
        };
        let reader: Box<dyn std::io::Read + Send> = match local {
            Some(Ok(reader)) => Box::new(reader),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing().into()),
            Some(Err(e)) => return Err(e).with_context(|| format!("cannot read the output `{output}`")),
            None => {
                if !engine.path_exists(id, &path).await? {
                    return Err(missing().into());
                }
                Box::new(SyncIoBridge::new(StreamReader::new(Box::pin(engine.download(id, &path)))))
            }
        };
        let staging = staging.to_owned();
        let done = tokio::task::spawn_blocking(move || outputs::extract(reader, &staging, &spec))
            .await
            .context("the extraction task panicked")?
            .with_context(|| format!("cannot collect the output `{output}`"))?;
        if done.entries == 0 {
            return Err(BuildFailed(format!(
                "the build succeeded but the output glob `{output}` matched nothing under {path}\n  hint: fix [build] \
                 outputs in the manifest"
            ))
            .into());
        }
        outcome.warnings.extend(done.warnings);
        outcome.hashes.extend(done.hashes);
    }
    outcome.collect_ms = ms(t);
    Ok(outcome)
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

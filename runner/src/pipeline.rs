//! One hermetic build: a resolved build (plan, toolchain image, sources,
//! settings) in, its outcome (artifacts, digests, log, timings) out.
//!
//! `repro-run build` calls [`run`] once; `lock` and `verify` will call it
//! several times, also at once with different settings: each call has its
//! own container, stage directory, output directory and log, and shares no
//! mutable state with another.
//!
//! ```text
//!   ResolvedBuild ─▶ spec (every hermetic setting, the entry helper)
//!                 ─▶ sources::place     container created, sources mounted or to upload
//!                 ─▶ Placed::upload     (an upload only)
//!                 ─▶ Engine::run        log streamed to stderr, a file and a hash
//!                 ─▶ Placed::output     each declared output into a fresh directory
//!                 ─▶ Placed::release    container and stage removed, on every path
//!                 ─▶ hash the artifacts ─▶ BuildOutcome
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use repro_run_core::digest::{self, Digest, TreeKind};
use repro_run_core::hermetic::BuildPlan;
use repro_run_core::record::{Artifact, ContentHashes};

use crate::engine::{ContainerSpec, Engine, ExitState, Mount, MountSource, Resources, Security, Tmpfs, LABEL_PROJECT};
use crate::exit::{BuildFailed, Interrupted};
use crate::printer::Printer;
use crate::printer::Tail;
use crate::sources::{self, Placed, SourceOptions};
use crate::{entry, outputs};

/// Everything one build needs, resolved.
#[derive(Clone, Debug)]
pub struct ResolvedBuild {
    /// The plan: command, environment, user, limits, outputs.
    pub plan: BuildPlan,
    /// The toolchain image the build runs in (an engine id or reference).
    pub image: String,
    /// What goes into `/src`, and how it is stamped.
    pub sources: SourceOptions,
    /// How the sources go in.
    pub transfer: sources::Settings,
    /// The project directory, for the container's label.
    pub project: PathBuf,
    /// Where this build's outputs are collected: a fresh directory is
    /// made in this one.
    pub out_parent: PathBuf,
    /// Where the build log goes; kept whatever happens.
    pub log_path: PathBuf,
    /// What `verify --vary` changes beyond the plan (the plan itself
    /// carries the varied hostname, user, umask, paths and environment).
    pub varied: Varied,
}

/// Settings of a varied build that the plan has no field for; all `None`
/// for every other build.
#[derive(Clone, Debug, Default)]
pub struct Varied {
    /// The NIS domain name.
    pub domainname: Option<&'static str>,
    /// The CPUs the build may run on.
    pub cpuset: Option<&'static str>,
    /// libfaketime on this machine, mounted read-only at
    /// [`FAKETIME_IN_CONTAINER`] (the plan's environment preloads it).
    pub faketime: Option<PathBuf>,
    /// A timeout shorter than the plan's (a build may hang under a fake
    /// clock).
    pub timeout_secs: Option<u64>,
}

/// Where a varied build finds libfaketime.
pub const FAKETIME_IN_CONTAINER: &str = "/.repro-run/libfaketime.so.1";

/// What a successful build produced.
pub struct BuildOutcome {
    /// The collected outputs, in a directory of their own (removed on drop
    /// unless the caller moves it into place).
    pub outputs: tempfile::TempDir,
    /// Every artifact, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// The `repro-tree-v1` digest (artifact variant) of the outputs.
    pub artifacts_digest: Digest,
    /// The sources' digest.
    pub source_digest: Digest,
    /// The blake3 of the build log.
    pub log_digest: Digest,
    /// The command's exit code (0).
    pub exit_code: i64,
    /// Warnings about the outputs (skipped special files).
    pub warnings: Vec<String>,
    /// Milliseconds: source, upload, run, collect, remove.
    pub timings: PhaseTimes,
}

/// Where one build's time went, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseTimes {
    /// Making the normalised tree or tar (and creating the container).
    pub source_ms: u64,
    /// Uploading the sources (an upload only).
    pub upload_ms: u64,
    /// Running the command.
    pub run_ms: u64,
    /// Collecting and hashing the outputs.
    pub collect_ms: u64,
    /// Removing the container and the stage.
    pub remove_ms: u64,
}

/// Runs one build. The container and everything staged for it are gone
/// when this returns, on every path; the log is at `build.log_path`
/// whatever happened.
pub async fn run(engine: &Engine, build: &ResolvedBuild, printer: &Printer) -> Result<BuildOutcome> {
    let helper = tokio::task::spawn_blocking(entry::installed).await.context("the entry helper task panicked")??;
    let spec = container_spec(&build.plan, &build.image, &build.project, &helper, &build.varied);
    let mut placed = sources::place(engine, &build.transfer, &build.sources, &spec).await?;
    printer.status(format!("sources: {} entries, {} ({})", placed.entries, placed.digest, placed.how()));
    // Made only now, so that the walk of the sources cannot see them.
    let made = tempfile::Builder::new()
        .prefix(".repro-out.tmp-")
        .tempdir_in(&build.out_parent)
        .with_context(|| format!("cannot create a directory for the outputs in {}", build.out_parent.display()))
        .and_then(|dir| Ok((dir, BuildLog::new(parent_dir(&build.log_path))?)));
    let (out_dir, mut log) = match made {
        Ok(made) => made,
        Err(e) => {
            placed.release(engine).await;
            return Err(e);
        }
    };
    let timeout = build.varied.timeout_secs.unwrap_or(build.plan.limits.timeout_secs);
    let ran = run_in_container(engine, &mut placed, &build.plan, timeout, out_dir.path(), &mut log, printer).await;
    let (source_digest, entries_ms) = (placed.digest, placed.source_ms);
    let remove_started = Instant::now();
    placed.release(engine).await;
    let remove_ms = ms(remove_started);
    // Whatever happened, the log of this run is kept: it says why.
    let tail = log.tail.text();
    let log_digest = log.persist(&build.log_path)?;
    let ran = ran?;
    if ran.exit_code != 0 {
        return Err(BuildFailed(format!(
            "the build command exited with {}; the last lines of its log (all of it is in {}):\n{tail}",
            ran.exit_code,
            build.log_path.display(),
        ))
        .into());
    }

    let collect_started = Instant::now();
    let dir = out_dir.path().to_owned();
    let known = ran.hashes;
    let (artifacts, artifacts_digest) = tokio::task::spawn_blocking(move || -> Result<_> {
        let artifacts = outputs::hash_tree(&dir, &known)?;
        Ok((artifacts, digest::digest_dir(&dir, TreeKind::Artifacts)?))
    })
    .await
    .context("the hashing task panicked")?
    // The outputs are this build's: reading them back is part of it.
    .map_err(|e| crate::exit::OutputFailed(e.context("cannot hash the collected outputs")))?;
    Ok(BuildOutcome {
        outputs: out_dir,
        artifacts,
        artifacts_digest,
        source_digest,
        log_digest,
        exit_code: ran.exit_code,
        warnings: ran.warnings,
        timings: PhaseTimes {
            source_ms: entries_ms,
            upload_ms: ran.upload_ms,
            run_ms: ran.run_ms,
            collect_ms: ran.collect_ms + ms(collect_started),
            remove_ms,
        },
    })
}

/// The container that runs the build: every hermetic setting is here.
///
/// The command runs through the project's entry helper (mounted
/// read-only at [`entry::PATH_IN_CONTAINER`]), which sets exactly the
/// plan's environment and umask and execs it: engines add variables of
/// their own (`HOSTNAME`; Podman also `container`), and an image need not
/// hold an `env` or a shell. The container drops every capability, runs
/// with `no-new-privileges`, a pids limit and, with mounted sources, a
/// read-only root filesystem (docs/manifest.md, "Least privilege").
fn container_spec(plan: &BuildPlan, image: &str, project: &Path, helper: &Path, varied: &Varied) -> ContainerSpec {
    let umask = u32::from_str_radix(plan.umask, 8).ok();
    let mut mounts = vec![Mount {
        source: MountSource::HostPath(helper.to_owned()),
        target: entry::PATH_IN_CONTAINER.to_owned(),
        read_only: true,
    }];
    if let Some(lib) = &varied.faketime {
        mounts.push(Mount {
            source: MountSource::HostPath(lib.clone()),
            target: FAKETIME_IN_CONTAINER.to_owned(),
            read_only: true,
        });
    }
    ContainerSpec {
        image: image.to_owned(),
        argv: entry::argv(umask, &plan.env_list(), &plan.command),
        env: plan.env_list(),
        user: Some(plan.user.clone()),
        hostname: Some(plan.hostname.to_owned()),
        domainname: varied.domainname.map(str::to_owned),
        workdir: Some(plan.workdir.to_owned()),
        mounts,
        tmpfs: vec![Tmpfs { target: plan.tmpfs.to_owned(), options: "rw,nosuid,nodev,mode=1777".to_owned() }],
        network: plan.network,
        limits: Resources {
            memory_bytes: plan.limits.memory_bytes,
            millicpus: plan.limits.millicpus,
            pids: Some(plan.limits.pids),
            nofile: Some(plan.limits.nofile),
            nproc: Some(plan.limits.nproc),
            cpuset: varied.cpuset.map(str::to_owned),
        },
        // The plan's sandbox (and so the `env_id`) says what this does;
        // `sources` makes the root writable again for an upload.
        security: Security {
            drop_all_capabilities: plan.sandbox.capabilities.is_empty(),
            no_new_privileges: plan.sandbox.no_new_privileges,
            read_only_rootfs: true,
        },
        labels: BTreeMap::from([(LABEL_PROJECT.to_owned(), project.display().to_string())]),
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

/// What the container's run gave.
struct Ran {
    exit_code: i64,
    warnings: Vec<String>,
    /// Hashes made while the outputs were written.
    hashes: HashMap<PathBuf, ContentHashes>,
    upload_ms: u64,
    run_ms: u64,
    collect_ms: u64,
}

async fn run_in_container(
    engine: &Engine,
    placed: &mut Placed,
    plan: &BuildPlan,
    timeout_secs: u64,
    out_dir: &Path,
    log: &mut BuildLog,
    printer: &Printer,
) -> Result<Ran> {
    let t = Instant::now();
    placed.upload(engine).await?;
    let upload_ms = ms(t);

    let t = Instant::now();
    let timeout = Duration::from_secs(timeout_secs);
    let state = engine.run(placed.guard.id(), Some(timeout), |chunk| log.push(chunk, printer)).await?;
    let run_ms = ms(t);
    let out_of_memory = |code: i64| {
        BuildFailed(format!(
            "the build ran out of memory: it was killed (exit {code}) at the memory limit of {} MiB; the last lines \
             of its log:\n{}\n  hint: raise `memory` under [limits] in the manifest",
            plan.limits.memory_bytes.unwrap_or(0) >> 20,
            log.tail.text()
        ))
    };
    let exit_code = match state {
        ExitState::Exited(code) => code,
        ExitState::OutOfMemory(code) => return Err(out_of_memory(code).into()),
        ExitState::TimedOut => {
            // The caller removes the container, which stops the command.
            return Err(BuildFailed(format!(
                "the build did not finish within its timeout of {} s and was stopped; the last lines of its log:\n{}\n  \
                 hint: raise `timeout` under [limits] in the manifest",
                timeout_secs,
                log.tail.text()
            ))
            .into());
        }
        ExitState::Interrupted => return Err(Interrupted.into()),
    };
    // Engines flag an OOM kill of the container's first process; a child
    // killed at the limit shows only as SIGKILL (137) from its parent.
    if exit_code == 137 && plan.limits.memory_bytes.is_some() {
        return Err(out_of_memory(exit_code).into());
    }
    let mut ran = Ran { exit_code, warnings: Vec::new(), hashes: HashMap::new(), upload_ms, run_ms, collect_ms: 0 };
    if exit_code != 0 {
        return Ok(ran);
    }

    let t = Instant::now();
    for output in &plan.outputs {
        let spec = outputs::OutputSpec::new(output)?;
        let at = sources::in_container(plan.workdir, &spec.fetch);
        let Some(reader) = placed.output(engine, &spec.fetch).await? else {
            return Err(BuildFailed(format!(
                "the build succeeded but did not create the declared output `{output}` ({at})\n  hint: fix [build] \
                 outputs in the manifest, or make the build write there"
            ))
            .into());
        };
        let out_dir = out_dir.to_owned();
        let done = tokio::task::spawn_blocking(move || outputs::extract(reader, &out_dir, &spec))
            .await
            .context("the extraction task panicked")?
            .with_context(|| format!("cannot collect the output `{output}`"))?;
        if done.entries == 0 {
            return Err(BuildFailed(format!(
                "the build succeeded but the output glob `{output}` matched nothing under {at}\n  hint: fix [build] \
                 outputs in the manifest"
            ))
            .into());
        }
        ran.warnings.extend(done.warnings);
        ran.hashes.extend(done.hashes);
    }
    ran.collect_ms = ms(t);
    Ok(ran)
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    // Tests panic to fail, and their panics name what they touch.
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]

    use super::*;
    use crate::cli::SourceTransfer;
    use crate::engine::EngineSelector;
    use repro_run_core::hermetic;
    use repro_run_core::manifest::Manifest;

    /// A resolved build of a busybox project in `dir` whose command writes
    /// `out/who` with `text`; its stage directory and outputs in `dir` too.
    fn resolved(dir: &Path, image: &str, text: &str, transfer: SourceTransfer) -> ResolvedBuild {
        let project = dir.join("p");
        fs_err::create_dir_all(&project).unwrap();
        fs_err::write(project.join("input"), text).unwrap();
        let manifest = Manifest::parse(
            "[image]\nname = \"busybox\"\n[build]\ncommand = \"mkdir -p out && cat input > out/who && hostname > \
             out/host\"\noutputs = [\"out\"]\n",
        )
        .unwrap();
        let plan = BuildPlan::new(&manifest, None, None, 0);
        ResolvedBuild {
            sources: SourceOptions {
                root: project.clone(),
                exclude_paths: vec![],
                exclude_patterns: vec![],
                source_date_epoch: 0,
                owner: (1000, 1000),
                dir: hermetic::SOURCE_DIR.to_owned(),
            },
            transfer: sources::Settings { transfer, stage_base: dir.join("stage"), cache_budget: 1 << 30 },
            image: image.to_owned(),
            project,
            out_parent: dir.to_owned(),
            log_path: dir.join("build.log"),
            plan,
            varied: Varied::default(),
        }
    }

    /// Builds at once in one process, each with its own settings (mounted
    /// and uploaded sources, other sources and outputs), do not meet: each
    /// gets its own outputs and log, and no container is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs an engine"]
    async fn builds_at_once_keep_to_themselves() {
        let engines = std::env::var("REPRO_RUN_TEST_ENGINES").unwrap_or_else(|_| "docker,podman".into());
        for name in engines.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let engine = Engine::connect(Some(&name.parse::<EngineSelector>().unwrap())).await.unwrap();
            let printer = Printer::new(true);
            let base = crate::images::base_image(&engine, "busybox", &printer).await.unwrap();
            let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
            let ways = [SourceTransfer::Auto, SourceTransfer::Upload, SourceTransfer::Auto];
            let builds: Vec<ResolvedBuild> = dirs
                .iter()
                .zip(ways)
                .enumerate()
                .map(|(i, (d, way))| resolved(d.path(), &base.id, &format!("build {i}\n"), way))
                .collect();
            let (a, b, c) = tokio::join!(
                run(&engine, &builds[0], &printer),
                run(&engine, &builds[1], &printer),
                run(&engine, &builds[2], &printer)
            );
            for (i, outcome) in [a, b, c].into_iter().enumerate() {
                let outcome = outcome.unwrap_or_else(|e| panic!("build {i} on {name}: {e:#}"));
                let who = fs_err::read_to_string(outcome.outputs.path().join("out/who")).unwrap();
                assert_eq!(who, format!("build {i}\n"), "on {name}");
                assert_eq!(fs_err::read_to_string(outcome.outputs.path().join("out/host")).unwrap(), "repro-run\n");
                assert!(builds[i].log_path.is_file(), "build {i} kept no log");
                assert!(outcome.outputs.path().starts_with(dirs[i].path()), "the outputs went elsewhere");
            }
            for d in &dirs {
                let listed = std::process::Command::new(name)
                    .args(["ps", "-aq", "--filter"])
                    .arg(format!("label=org.repro-run.project={}", d.path().join("p").display()))
                    .output()
                    .unwrap();
                assert!(listed.stdout.is_empty(), "{name} keeps a container of {}", d.path().display());
            }
        }
    }
}

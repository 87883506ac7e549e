//! The sources: walked, normalised and digested once, then put at `/src`
//! of the build container in one of two ways, behind one door
//! ([`place`], then [`Placed`]'s methods):
//!
//! - **mounted**: staged on this machine and bind-mounted, when the
//!   engine sees this machine's files ([`staging`]); as root, over a tree
//!   kept from an earlier build of the same content ([`trees`]), so that
//!   a rebuild writes nothing but what the build writes;
//! - **engine-mounted**: for a caller that cannot mount (not root: a
//!   member of the `docker` group), the engine keeps the tree in a volume
//!   and mounts the overlay over it itself ([`volumes`]);
//! - **uploaded**: a normalised tar sent through the engine's archive API
//!   ([`walk::build`]), which works with any engine.
//!
//! Either way the build sees the same tree (sorted, stamped with
//! `SOURCE_DATE_EPOCH`, owned by the build user), and the record gets the
//! same digest. The parts:
//!
//! ```text
//!   walk     the walk (ignore files, excludes), the fingerprint, the
//!            digest, the upload tar, the copy, the kept image
//!   staging  the private stage directory, its mounts and probes, and
//!            outputs read back from it
//!   trees    kept trees: found by digest, added, evicted (LRU, budget)
//!   volumes  kept trees for a caller that cannot mount: the engine's
//!            volumes, and an overlay the engine mounts itself
//!   direct   O_DIRECT writing of a kept image
//!   pipe     a bounded in-memory pipe between two threads
//! ```

mod direct;
mod pipe;
mod staging;
mod trees;
mod volumes;
mod walk;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use repro_run_core::digest::Digest;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::cli::SourceTransfer;
use crate::engine::{ContainerGuard, ContainerSpec, Engine, MountSource};
use staging::StageDir;
use trees::TreeCache;
pub use walk::SourceOptions;

/// How the sources go in, as the user chose.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--sources`.
    pub transfer: SourceTransfer,
    /// `--stage-dir`: where staging directories and kept trees go.
    pub stage_base: PathBuf,
    /// `--source-cache`: the bytes of kept trees at most; 0 keeps none.
    pub cache_budget: u64,
}

impl Placed {
    /// How the sources went in, for the user.
    pub fn how(&self) -> &'static str {
        match self.way {
            Way::Mounted(_, Kept::No) => "mounted",
            Way::Mounted(_, Kept::Found { .. }) => "mounted, tree kept from an earlier build",
            Way::Mounted(_, Kept::Added) => "mounted, tree kept for later builds",
            Way::Uploaded(..) => "uploaded",
            Way::Volumes(ref v) if v.added => "mounted by the engine, tree kept for later builds",
            Way::Volumes(_) => "mounted by the engine, tree kept from an earlier build",
        }
    }

    /// Sends the sources, if they are to be uploaded; before the start.
    pub async fn upload(&self, engine: &Engine) -> Result<()> {
        let Way::Uploaded(tar, files) = &self.way else { return Ok(()) };
        let file = tokio::fs::File::open(tar.file.path()).await.context("cannot reopen the source tar")?;
        engine.upload(self.guard.id(), "/", ReaderStream::with_capacity(file, 256 * 1024)).await?;
        if !files.is_empty() {
            let files = files.clone();
            let tar = tokio::task::spawn_blocking(move || walk::tar_of_files(&files))
                .await
                .context("the tar task panicked")??;
            let stream = futures_util::stream::once(async move { std::io::Result::Ok(bytes::Bytes::from(tar)) });
            engine.upload(self.guard.id(), "/", stream).await?;
        }
        Ok(())
    }

    /// The output at `fetch` (relative to `/src`; empty for `/src`
    /// itself) as a tar stream whose top entry is its last component, once
    /// the container has stopped; `None` when it does not exist.
    ///
    /// Mounted sources are read here, straight from the staged tree,
    /// unless a link the build made is in the way: the engine resolves
    /// those inside the container, as it does every uploaded output.
    pub async fn output(&mut self, engine: &Engine, fetch: &str) -> Result<Option<Box<dyn std::io::Read + Send>>> {
        let path = in_container(&self.dir, fetch);
        let build = self.guard.id();
        let (local, from) = match &mut self.way {
            Way::Mounted(stage, _) => (staging::local_output(&stage.src(), fetch), build),
            Way::Uploaded(..) => (None, build),
            Way::Volumes(v) => (None, v.reader(engine, build).await?),
        };
        match local {
            Some(Ok(reader)) => Ok(Some(Box::new(reader))),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Some(Err(e)) => {
                let e = anyhow::Error::new(e).context(format!("cannot read {path} from the staged sources"));
                Err(crate::exit::OutputFailed(e).into())
            }
            None => {
                if !engine.path_exists(from, &path).await? {
                    return Ok(None);
                }
                let stream = Box::pin(engine.download(from, &path));
                Ok(Some(Box::new(SyncIoBridge::new(StreamReader::new(stream)))))
            }
        }
    }

    /// Removes the container and everything staged for it; what cannot be
    /// removed is logged with the command that does it.
    pub async fn release(self, engine: &Engine) {
        // The staged tree goes while the engine removes the container.
        let (stage, kept, volumes) = match self.way {
            Way::Mounted(stage, kept) => (Some(stage), Some(kept), None),
            Way::Uploaded(..) => (None, None, None),
            Way::Volumes(v) => (None, None, Some(*v)),
        };
        let stage_removed = tokio::task::spawn_blocking(move || stage.map(StageDir::remove));
        self.guard.remove().await;
        if let Some(volumes) = volumes {
            volumes.remove(engine).await;
        }
        if stage_removed.await.is_err() {
            tracing::warn!("the task removing the staging directory panicked");
        }
        // A tree written and not needed goes after the engine's last sync,
        // which would otherwise wait for its freed blocks.
        if tokio::task::spawn_blocking(move || drop(kept)).await.is_err() {
            tracing::warn!("the task removing a source tree not needed panicked");
        }
    }
}

/// Creates the build container from `spec` with the sources mounted (see
/// [`staging`]) when `settings` and the engine allow, else with the
/// sources as a tar to upload ([`Placed::upload`]).
pub async fn place(
    engine: &Engine,
    settings: &Settings,
    sources: &SourceOptions,
    spec: &ContainerSpec,
) -> Result<Placed> {
    let (how, stage_base, cache_budget) = (settings.transfer, settings.stage_base.as_path(), settings.cache_budget);
    if how != SourceTransfer::Upload && cache_budget > 0 {
        if let Some(why) = trees::cannot_overlay(stage_base) {
            if let Some(placed) = engine_mounted(engine, settings, sources, spec, &why).await? {
                return Ok(placed);
            }
        }
    }
    let identity = engine.identity();
    let hint = "hint: use --sources upload, which works with any engine";
    let cached = identity.as_deref().and_then(|id| staging::cached_verdict(id, stage_base));
    let mut cannot = match how {
        SourceTransfer::Upload => Some("--sources upload".to_owned()),
        SourceTransfer::Mount | SourceTransfer::Auto => staging::cannot_stage_for(sources.owner),
    };
    // `auto` asks the engine once, and remembers the answer below; `mount`
    // asks every time, because it was asked for.
    if cannot.is_none() && (how == SourceTransfer::Mount || cached.is_none()) {
        cannot = engine.capabilities().await?.not_local_because;
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
        return upload_sources(engine, sources, spec).await;
    }

    let t = Instant::now();
    let (stage, staged, kept, created) = stage_sources(engine, stage_base, cache_budget, sources, spec).await?;
    let source_ms = ms(t);

    // Over a kept tree, the container comes back created and confirmed.
    let confirmed = match created {
        Some(confirmed) => confirmed,
        None => match create_mounted(engine, &stage, &sources.dir, spec).await? {
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
            let dir = sources.dir.clone();
            return Ok(Placed { guard, digest: staged.digest, entries: staged.entries, source_ms, way, dir });
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
    upload_sources(engine, sources, spec).await
}

/// The build container, created, with the sources on their way in.
pub struct Placed {
    /// The container.
    pub guard: ContainerGuard,
    /// The sources' `repro-tree-v1` digest (artifact variant).
    pub digest: Digest,
    /// Files, links and directories in the sources.
    pub entries: usize,
    /// Time spent making the normalised tree or tar (and, over a kept
    /// tree, creating the container meanwhile).
    pub source_ms: u64,
    way: Way,
    /// Where the sources are in the container.
    dir: String,
}

/// How the sources reach `/src`.
enum Way {
    /// Staged here and bind-mounted: nothing left to do before the start.
    Mounted(StageDir, Kept),
    /// A tar to upload before the start, and the files that the spec
    /// mounted read-only from this machine, to upload beside it: (host
    /// path, path in the container).
    Uploaded(walk::SourceTar, Vec<(PathBuf, String)>),
    /// Over a tree the engine keeps, mounted by the engine.
    Volumes(Box<volumes::BuildVolumes>),
}

/// Whether mounted sources are a kept tree (see [`trees`]).
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
/// [`trees`]), else as a copy of its own. Over a kept tree, the
/// container is created while the tree is read (and, the first time,
/// written), and comes back too: creating it costs the build no time of
/// its own then.
async fn stage_sources(
    engine: &Engine,
    base: &Path,
    cache_budget: u64,
    sources: &SourceOptions,
    spec: &ContainerSpec,
) -> Result<(StageDir, walk::Staged, Kept, Option<Created>)> {
    let cannot = match cache_budget {
        0 => Some("--source-cache 0".to_owned()),
        _ => trees::cannot_overlay(base),
    };
    let copy = |base: PathBuf, s: SourceOptions| async move {
        let copied = tokio::task::spawn_blocking(move || -> Result<_> {
            let stage = StageDir::new(&base)?;
            let staged = walk::stage(&s, stage.path())?;
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
        let walked = walk::walk_sources(&s)?;
        // Read only, when the sources look unchanged since a tree was kept;
        // else read once while a new tree is written.
        let fingerprint = walk::fingerprint(&s, &walked)?;
        if cache.expected(&fingerprint).is_some() {
            let read = walk::digest(&s, &walked)?;
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
    let created = match create_mounted(engine, &stage, &sources.dir, spec).await {
        Ok(Ok(guard)) => confirm_mount_point(engine, guard, &mut stage, &sources.dir).await,
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
async fn create_mounted(engine: &Engine, stage: &StageDir, src_at: &str, spec: &ContainerSpec) -> Result<Created> {
    let mut spec = spec.clone();
    spec.mounts.extend(stage.mounts(src_at));
    match engine.create(&spec).await {
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
async fn confirm_mount_point(
    engine: &Engine,
    guard: ContainerGuard,
    stage: &mut StageDir,
    src_at: &str,
) -> Result<Created> {
    let probe = format!("{src_at}/{}", staging::PROBE);
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

async fn upload_sources(engine: &Engine, sources: &SourceOptions, spec: &ContainerSpec) -> Result<Placed> {
    let t = Instant::now();
    let s = sources.clone();
    let tar = tokio::task::spawn_blocking(move || walk::build(&s)).await.context("the source tar task panicked")??;
    let source_ms = ms(t);
    // The archive API unpacks into the container's own layer, never into
    // a read-only root (docs/manifest.md, "Least privilege"); what the
    // spec mounts from this machine is uploaded too.
    let mut spec = spec.clone();
    spec.security.read_only_rootfs = false;
    let mut files = Vec::new();
    spec.mounts.retain(|m| match &m.source {
        MountSource::HostPath(p) if m.read_only && p.is_file() => {
            files.push((p.clone(), m.target.clone()));
            false
        }
        _ => true,
    });
    let guard = engine.create(&spec).await?;
    let (digest, entries, dir) = (tar.digest, tar.entries, sources.dir.clone());
    Ok(Placed { guard, digest, entries, source_ms, way: Way::Uploaded(tar, files), dir })
}

/// The sources over a tree the engine keeps, when this process cannot
/// mount (`why`) and the engine can do it ([`volumes`]); `None` when the
/// engine or the image cannot.
async fn engine_mounted(
    engine: &Engine,
    settings: &Settings,
    sources: &SourceOptions,
    spec: &ContainerSpec,
    why: &str,
) -> Result<Option<Placed>> {
    if let Err(not) = engine_keeps_trees(engine).await? {
        tracing::debug!("the engine cannot keep the source tree: {not}");
        return Ok(None);
    }
    tracing::debug!("the engine keeps the source tree: {why}");
    let placed = match volumes::place(engine, &settings.stage_base, settings.cache_budget, sources, spec).await {
        // A refused mount (the entry helper's bind mount, in a mount
        // namespace the engine does not see): `auto` uploads instead.
        Err(e) if settings.transfer == SourceTransfer::Auto && format!("{e:#}").contains("mount") => {
            tracing::info!("the engine cannot mount the sources ({e:#}); uploading them instead");
            return Ok(None);
        }
        placed => placed.with_context(|| {
            format!("cannot have the engine mount the sources\n  hint: use --sources upload ({why})")
        })?,
    };
    match placed {
        Ok(placed) => Ok(Some(placed)),
        Err(not) if settings.transfer == SourceTransfer::Mount => {
            bail!("cannot mount the sources: {not}\n  hint: use --sources upload, which works with any engine")
        }
        Err(not) => {
            tracing::info!("uploading the sources: {not}");
            Ok(None)
        }
    }
}

/// Whether the engine can keep source trees in volumes and mount an
/// overlay of them itself ([`volumes`]): `Ok(Err(why))` when it cannot.
/// The answer is cached per engine.
async fn engine_keeps_trees(engine: &Engine) -> Result<Result<(), String>> {
    let cache = crate::cache::JsonCache::<bool>::open("overlay-volumes.json");
    let id = engine.identity();
    if let Some(true) = id.as_deref().and_then(|id| cache.get(id)) {
        return Ok(Ok(()));
    }
    let caps = engine.capabilities().await?;
    let verdict = match (caps.sees_local_files, caps.overlay_volumes) {
        (true, true) => Ok(()),
        (false, _) => Err(caps.not_local_because.unwrap_or_else(|| "the engine does not see this machine".into())),
        (_, false) => Err("the engine cannot mount an overlay volume (rootless, or not Linux)".to_owned()),
    };
    // Only a yes is kept: a no is asked again, and its reason told.
    if let (Some(id), true) = (id.as_deref(), verdict.is_ok()) {
        cache.put(id, true);
    }
    Ok(verdict)
}

/// `<dir>/<fetch>` (`dir` is where the sources are, `/src`), or `dir` for
/// an empty `fetch`: where an output is in the container.
pub fn in_container(dir: &str, fetch: &str) -> String {
    match fetch {
        "" => dir.to_owned(),
        f => format!("{dir}/{f}"),
    }
}

/// Where staging directories go by default: `builds/` in the cache
/// directory.
pub fn default_stage_base() -> Result<PathBuf> {
    StageDir::default_base()
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

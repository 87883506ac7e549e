//! Kept source trees for a caller that cannot mount: the engine keeps them,
//! and mounts the overlay itself.
//!
//! Root mounts an overlay over a kept tree on its own ([`super::trees`]).
//! Anyone else who reaches a local engine (a member of the `docker`
//! group, any uid; rootful Podman's socket) cannot, and cannot give files
//! to the build user either. The engine can do both, as root, on its own
//! machine:
//!
//! - a kept tree is a named volume, `repro-run-tree-<uid>-<digest>`, filled
//!   once through the archive API with the normalised tar (so owners and
//!   modes are the tar's) and then never written again;
//! - each build gets a plain volume for the overlay's upper and work
//!   directories (made in it by a never-started container through the
//!   archive API, owned by the build user), and a volume of the `local`
//!   driver with `type=overlay` whose lower layer is the kept tree: the
//!   daemon mounts it at `/src` when the container starts;
//! - `HOME` is `home/` of that upper volume (the build user's, empty),
//!   bind-mounted by the engine through a third volume;
//! - outputs come back through the archive API, as with an upload; the
//!   build's volumes go with the container, and what the build wrote goes
//!   with them (the caller could not delete the build user's files).
//!
//! Which trees are kept, their size and when they were used last are
//! marker files in `volumes/` of the stage directory, written only once a
//! tree is complete: a volume without its marker is incomplete and filled
//! anew. A build holds a shared lock (`.lock-<digest>`) while it uses a
//! tree, so that eviction (least recently used first, past
//! `--source-cache`) never removes a tree under a running build; a fill
//! holds an exclusive one on `.fill-<digest>`, which a build of the same
//! sources waits for before it looks again.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, Result};
use repro_run_core::digest::Digest;
use repro_run_core::hermetic;
use rustix::fs::FlockOperation;
use tokio_util::io::ReaderStream;

use super::walk::{self, SourceOptions};
use crate::engine::{ContainerSpec, Engine, Mount, MountSource};

/// Where the upper volume is mounted in the container that prepares it.
const UP_AT: &str = "/.repro-run/up";
/// Where a tree volume is mounted in the container that fills it.
const TREE_AT: &str = "/.repro-run/tree";

/// The volumes of one build, removed after its container.
pub struct BuildVolumes {
    /// The overlay at `/src`, the bind of `HOME`, then the volume that
    /// holds the upper, work and `HOME` directories.
    names: Vec<String>,
    /// The build container's spec, for [`BuildVolumes::reader`].
    spec: ContainerSpec,
    /// A container that keeps the overlay mounted while outputs are read.
    holder: Option<crate::engine::ContainerGuard>,
    /// The shared lock on the kept tree's marker, held while it is used.
    _tree_lock: fs_err::File,
    /// Whether the tree was filled by this build.
    pub added: bool,
}

impl BuildVolumes {
    /// Removes the volumes (the container that used them is gone); a
    /// failure is logged with the command that finishes the job.
    pub async fn remove(self, engine: &Engine) {
        if let Some(holder) = self.holder {
            holder.remove().await;
        }
        remove_all(engine, &self.names).await;
    }

    /// Where outputs are read from once the build container has stopped:
    /// the build container itself on Docker, which mounts a container's
    /// volumes to read them; on Podman, which mounts a volume of the
    /// `local` driver only while a container that uses it runs, a container
    /// started now that only holds the same mounts (the entry helper's
    /// `--hold`; its start is the `collect` phase of 5c in docs/bench.md).
    pub async fn reader<'a>(&'a mut self, engine: &Engine, build: &'a str) -> Result<&'a str> {
        if engine.kind != repro_run_core::engine::EngineKind::Podman {
            return Ok(build);
        }
        if self.holder.is_none() {
            let mut spec = self.spec.clone();
            spec.argv = vec![crate::entry::PATH_IN_CONTAINER.to_owned(), "--hold".to_owned()];
            let guard = engine.create(&spec).await?;
            if let Err(e) = engine.start(guard.id()).await {
                guard.remove().await;
                return Err(e);
            }
            self.holder = Some(guard);
        }
        Ok(self.holder.as_ref().map_or(build, |h| h.id()))
    }
}

/// Creates the build container from `spec` with `/src` an overlay the
/// engine mounts over the kept tree of these sources, filling that tree
/// first if no build kept it; `Ok(Err(why))` when this image cannot have
/// its sources so (nothing is left then).
pub async fn place(
    engine: &Engine,
    stage_base: &Path,
    cache_budget: u64,
    sources: &SourceOptions,
    spec: &ContainerSpec,
) -> Result<Result<super::Placed, String>> {
    let t = Instant::now();
    let markers = stage_base.join("volumes");
    fs_err::create_dir_all(&markers)?;
    fs_err::set_permissions(&markers, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    // The upper volume is made while the sources are read.
    let up = prepare_upper(engine, spec, sources);
    let s = sources.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<_> {
        let walked = walk::walk_sources(&s)?;
        walk::digest(&s, &walked)
    });
    let (up, read) = tokio::join!(up, read);
    let mut names = Vec::new();
    let result = async {
        let (up, image_has_src) = up?;
        names.push(up.name.clone());
        // Podman gives a new volume the owner, mode and times of the
        // image's own directory where it mounts it: over an image with a
        // `/src` (usually root's), the build could not write there.
        if image_has_src && engine.kind == repro_run_core::engine::EngineKind::Podman {
            return Ok(Err(format!(
                "image `{}` has a {} of its own, whose owner Podman would give the engine-mounted sources",
                spec.image, sources.dir
            )));
        }
        let read = read.context("the source reading task panicked")??;
        let (tree, lock, added) = kept_tree(engine, &markers, sources, &read.digest, spec).await?;
        let mut spec = spec.clone();
        spec.mounts.extend(mounts(engine, &tree, &up, &sources.dir, &mut names).await?);
        let guard = engine.create(&spec).await?;
        anyhow::Ok(Ok((guard, read, lock, added, spec)))
    }
    .await;
    match result {
        Ok(Ok((guard, read, lock, added, spec))) => {
            evict(engine, &markers, cache_budget, &read.digest).await;
            let volumes = BuildVolumes { names, spec, holder: None, _tree_lock: lock, added };
            Ok(Ok(super::Placed {
                guard,
                digest: read.digest,
                entries: read.entries,
                source_ms: t.elapsed().as_millis() as u64,
                way: super::Way::Volumes(Box::new(volumes)),
                dir: sources.dir.clone(),
            }))
        }
        Ok(Err(why)) => {
            remove_all(engine, &names).await;
            Ok(Err(why))
        }
        Err(e) => {
            remove_all(engine, &names).await;
            Err(e)
        }
    }
}

async fn remove_all(engine: &Engine, names: &[String]) {
    for name in names {
        if let Err(e) = engine.remove_volume(name).await {
            tracing::warn!("{e:#}; remove it with `{} volume rm {name}`", engine.kind);
        }
    }
}

/// The volumes of `/src` (the overlay of `tree` under `up`'s upper) and
/// of `HOME` (`up`'s `home/`), made now and named in `names`, as mounts.
async fn mounts(
    engine: &Engine,
    tree: &crate::engine::Volume,
    up: &crate::engine::Volume,
    src_at: &str,
    names: &mut Vec<String>,
) -> Result<Vec<Mount>> {
    let overlay = format!("repro-run-src-{}", random_suffix());
    let layers =
        format!("lowerdir={}/src,upperdir={}/upper,workdir={}/work", tree.mountpoint, up.mountpoint, up.mountpoint);
    let options = [("type", "overlay".to_owned()), ("device", "overlay".to_owned()), ("o", layers)];
    engine.create_volume(&overlay, &options, &[], true).await?;
    names.insert(0, overlay.clone());
    // `HOME` is `home/` of the upper volume, bind-mounted by the engine
    // (a tmpfs would do, but Podman 4.3 takes no `uid=` for one).
    let home = format!("repro-run-home-{}", random_suffix());
    let bind = [("type", "none".to_owned()), ("o", "bind".to_owned()), ("device", format!("{}/home", up.mountpoint))];
    engine.create_volume(&home, &bind, &[], true).await?;
    names.insert(1, home.clone());
    Ok(vec![
        Mount { source: MountSource::Volume(overlay), target: src_at.to_owned(), read_only: false },
        Mount { source: MountSource::Volume(home), target: hermetic::HOME.to_owned(), read_only: false },
    ])
}

/// A plain volume holding `upper/` (the build user's, stamped like the
/// tree's top directory, which it stands in for at `/src`), `work/`, and
/// `home/`, the build's `HOME` (the build user's, stamped alike); and
/// whether the image has a `/src` of its own.
async fn prepare_upper(
    engine: &Engine,
    spec: &ContainerSpec,
    sources: &SourceOptions,
) -> Result<(crate::engine::Volume, bool)> {
    let name = format!("repro-run-up-{}", random_suffix());
    let volume = engine.create_volume(&name, &[], &[], true).await?;
    let mut tar = tar::Builder::new(Vec::new());
    for (dir, owner, mode) in [("upper", sources.owner, 0o755), ("work", (0, 0), 0o700), ("home", sources.owner, 0o755)]
    {
        let mut h = walk::header(tar::EntryType::Directory, mode, sources.source_date_epoch, owner);
        tar.append_data(&mut h, dir, std::io::empty()).context("cannot make a tar")?;
    }
    let bytes = tar.into_inner().context("cannot make a tar")?;
    let tar = futures_util::stream::once(async move { Ok(bytes.into()) });
    let filled = fill(engine, spec, &name, UP_AT, tar, Some(&sources.dir)).await;
    match filled {
        Ok(has_src) => Ok((volume, has_src)),
        Err(e) => {
            if let Err(e) = engine.remove_volume(&name).await {
                tracing::warn!("{e:#}");
            }
            Err(e)
        }
    }
}

/// Unpacks `tar` into the volume `name` through a never-started container
/// of `spec`'s image, which is removed again; and whether the image holds
/// `look_for`, when given.
async fn fill<S>(
    engine: &Engine,
    spec: &ContainerSpec,
    name: &str,
    at: &str,
    tar: S,
    look_for: Option<&str>,
) -> Result<bool>
where
    S: futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
{
    let filler = ContainerSpec {
        image: spec.image.clone(),
        // Never started: any command will do.
        argv: vec!["/.repro-run/never-started".to_owned()],
        mounts: vec![Mount { source: MountSource::Volume(name.to_owned()), target: at.to_owned(), read_only: false }],
        labels: spec.labels.clone(),
        ..Default::default()
    };
    let guard = engine.create(&filler).await?;
    let done = async {
        engine.upload(guard.id(), at, tar).await.with_context(|| format!("cannot fill volume `{name}`"))?;
        match look_for {
            Some(path) => engine.path_exists(guard.id(), path).await,
            None => Ok(false),
        }
    }
    .await;
    guard.remove().await;
    done
}

/// The kept tree of `digest`, filled now if no build kept it: the volume,
/// the shared lock on its marker, and whether it was filled now.
async fn kept_tree(
    engine: &Engine,
    markers: &Path,
    sources: &SourceOptions,
    digest: &Digest,
    spec: &ContainerSpec,
) -> Result<(crate::engine::Volume, fs_err::File, bool)> {
    let hex = digest.to_hex();
    let marker = markers.join(&hex);
    let name = tree_volume(&hex);
    // A shared lock while the tree is used, which eviction respects; an
    // exclusive one on another file while it is filled, which a build of
    // the same sources waits for (on a blocking thread) before it looks
    // again.
    let lock = open_lock(&markers.join(format!(".lock-{hex}")))?;
    flock(&lock, FlockOperation::LockShared)?;
    if marker.is_file() {
        if let Some(volume) = engine.volume(&name).await? {
            touch(&marker);
            return Ok((volume, lock, false));
        }
    }
    let filling = open_lock(&markers.join(format!(".fill-{hex}")))?;
    let filling = tokio::task::spawn_blocking(move || flock(&filling, FlockOperation::LockExclusive).map(|()| filling))
        .await
        .context("the locking task panicked")??;
    if marker.is_file() {
        if let Some(volume) = engine.volume(&name).await? {
            touch(&marker);
            return Ok((volume, lock, false));
        }
    }
    // A volume without its marker was not filled to the end.
    engine.remove_volume(&name).await?;
    let labels = [
        (crate::engine::LABEL_TREE, digest.to_string()),
        (crate::engine::LABEL_MARKERS, markers.display().to_string()),
    ];
    let volume = engine.create_volume(&name, &[], &labels, false).await?;
    let s = sources.clone();
    let tar = tokio::task::spawn_blocking(move || walk::build(&s)).await.context("the source tar task panicked")??;
    if tar.digest != *digest {
        anyhow::bail!("the sources changed while they were read ({digest}, then {}); build again", tar.digest);
    }
    let file = tokio::fs::File::open(tar.file.path()).await.context("cannot reopen the source tar")?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    if let Err(e) = fill(engine, spec, &name, TREE_AT, ReaderStream::with_capacity(file, 256 * 1024), None).await {
        if let Err(e) = engine.remove_volume(&name).await {
            tracing::warn!("{e:#}");
        }
        return Err(e);
    }
    let tmp = markers.join(format!(".{hex}.new"));
    fs_err::write(&tmp, size.to_string())?;
    fs_err::rename(&tmp, &marker)?;
    drop(filling);
    Ok((volume, lock, true))
}

fn open_lock(path: &Path) -> Result<fs_err::File> {
    Ok(fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(path)?)
}

/// Removes the least recently used kept trees past `budget` bytes, never
/// `current` and never one a build holds; and this user's tree volumes
/// of this stage directory that have no marker, left by a fill that was
/// killed.
async fn evict(engine: &Engine, markers: &Path, budget: u64, current: &Digest) {
    let prefix = tree_volume("");
    // Only the trees whose markers belong here: another stage directory
    // keeps its own.
    let here = format!("{}={}", crate::engine::LABEL_MARKERS, markers.display());
    match engine.volumes_labelled(&here).await {
        Ok(names) => {
            for name in names {
                let Some(hex) = name.strip_prefix(&prefix) else { continue };
                if markers.join(hex).is_file() || hex == current.to_hex() {
                    continue;
                }
                if remove_tree(engine, markers, hex).await {
                    tracing::debug!("removed {name}, a kept tree whose filling was stopped");
                }
            }
        }
        Err(e) => tracing::debug!("cannot list the kept trees: {e:#}"),
    }
    let Ok(entries) = fs_err::read_dir(markers) else { return };
    let mut trees: Vec<(SystemTime, u64, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let used = e.metadata().ok()?.modified().ok()?;
            let size = fs_err::read_to_string(e.path()).ok()?.trim().parse().ok()?;
            Some((used, size, name))
        })
        .collect();
    let mut total: u64 = trees.iter().map(|t| t.1).sum();
    trees.sort();
    for (_, size, hex) in trees {
        if total <= budget {
            break;
        }
        if hex == current.to_hex() {
            continue;
        }
        if remove_tree(engine, markers, &hex).await {
            total = total.saturating_sub(size);
            tracing::debug!("evicted the kept tree {hex}");
        }
    }
}

/// Removes the kept tree `hex` (its volume, marker and lock files) unless
/// a build holds it; whether it went.
async fn remove_tree(engine: &Engine, markers: &Path, hex: &str) -> bool {
    let lock_path = markers.join(format!(".lock-{hex}"));
    let Ok(lock) = open_lock(&lock_path) else { return false };
    if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
        return false;
    }
    if let Err(e) = engine.remove_volume(&tree_volume(hex)).await {
        tracing::warn!("cannot remove a kept source tree: {e:#}");
        return false;
    }
    for file in [hex.to_owned(), format!(".fill-{hex}")] {
        let _ = fs_err::remove_file(markers.join(file));
    }
    let _ = fs_err::remove_file(&lock_path);
    true
}

/// The volume of the kept tree with digest `hex`, of this user's.
fn tree_volume(hex: &str) -> String {
    format!("repro-run-tree-{}-{hex}", rustix::process::getuid().as_raw())
}

fn flock(file: &fs_err::File, op: FlockOperation) -> Result<()> {
    rustix::fs::flock(file, op).with_context(|| format!("cannot lock {}", file.path().display()))
}

fn touch(path: &Path) {
    let now = filetime::FileTime::now();
    if let Err(e) = filetime::set_file_mtime(path, now) {
        tracing::debug!("cannot date {}: {e}", path.display());
    }
}

/// 16 hex digits, fresh for each call.
fn random_suffix() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{:?} {} {n}", SystemTime::now(), std::process::id());
    let mut n = [0u8; 8];
    n.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..8]);
    format!("{:016x}", u64::from_le_bytes(n))
}

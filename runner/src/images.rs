//! Base images: built-in recipes, import of rootfs tarballs, and rootfs
//! digests of engine images (cached by the engine's content-addressed id).

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use repro_run_core::digest::{self, Digest, TreeKind};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::cache::JsonCache;
use crate::engine::{ContainerSpec, Engine};
use crate::printer::Printer;
use crate::signal;

/// A recipe compiled into the binary.
struct BuiltinRecipe {
    name: &'static str,
    script: &'static str,
    about: &'static str,
}

const BUILTIN: &[BuiltinRecipe] = &[
    BuiltinRecipe {
        name: "busybox",
        script: include_str!("../../images/busybox/build-rootfs"),
        about: "a static busybox; for fast tests (needs busybox-static)",
    },
    BuiltinRecipe {
        name: "debian-bookworm",
        script: include_str!("../../images/debian-bookworm/build-rootfs"),
        about: "debootstrap --variant=minbase bookworm (needs root and debootstrap)",
    },
];

/// Where a recipe's script comes from.
pub enum Recipe {
    /// Compiled into the binary.
    Builtin(&'static str),
    /// A directory holding an executable `build-rootfs`.
    Dir(PathBuf),
}

impl Recipe {
    /// A built-in recipe name, or a directory with a `build-rootfs`.
    pub fn find(name_or_dir: &str) -> Result<Recipe> {
        let path = Path::new(name_or_dir);
        if path.join("build-rootfs").is_file() {
            return Ok(Recipe::Dir(path.to_owned()));
        }
        if let Some(b) = BUILTIN.iter().find(|b| b.name == name_or_dir) {
            return Ok(Recipe::Builtin(b.name));
        }
        bail!(
            "no image recipe `{name_or_dir}`: use one of {} or a directory holding an executable \
             build-rootfs",
            builtin_list()
        )
    }

    /// The recipe's name: the built-in name or the directory's name.
    pub fn name(&self) -> String {
        match self {
            Recipe::Builtin(n) => (*n).to_owned(),
            Recipe::Dir(d) => d
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "custom".to_owned()),
        }
    }

    /// The tag a recipe's image gets unless told otherwise.
    pub fn default_tag(&self) -> String {
        format!("repro-run/{}:latest", self.name())
    }
}

/// `busybox, debian-bookworm` with what each is.
pub fn builtin_list() -> String {
    BUILTIN.iter().map(|b| format!("`{}` ({})", b.name, b.about)).collect::<Vec<_>>().join(", ")
}

/// The built-in recipe called `name`.
fn builtin(name: &str) -> Option<&'static BuiltinRecipe> {
    BUILTIN.iter().find(|b| b.name == name)
}

/// The engine reference an image name stands for, wherever a name is
/// taken (a manifest's `[image] name`, `image digest`, `--tag`): a built-in
/// recipe name is its image, `busybox` → `repro-run/busybox:latest`; any
/// other name is the engine's.
pub fn reference(name: &str) -> String {
    match builtin(name) {
        Some(b) => Recipe::Builtin(b.name).default_tag(),
        None => name.to_owned(),
    }
}

/// The image of the built-in recipe `name`, made and imported on first
/// use: (reference, image id). `None` when `name` is no built-in recipe.
pub async fn builtin_image(engine: &Engine, name: &str, printer: &Printer) -> Result<Option<(String, String)>> {
    // Never a directory of that name: a manifest's name is no path.
    let Some(b) = builtin(name) else { return Ok(None) };
    let recipe = Recipe::Builtin(b.name);
    let reference = recipe.default_tag();
    if let Some(id) = engine.image_id(&reference).await? {
        return Ok(Some((reference, id)));
    }
    let (id, digest) = build_recipe(engine, &recipe, &reference, printer).await?;
    printer.status(format!("image {reference}: rootfs {digest}"));
    Ok(Some((reference, id)))
}

/// The base image a manifest names, present in the engine.
pub struct BaseImage {
    /// The reference the engine knows it by.
    pub reference: String,
    /// The engine's id.
    pub id: String,
}

/// Finds the base image; a built-in recipe name is built and imported on
/// first use.
pub async fn base_image(engine: &Engine, name: &str, printer: &Printer) -> Result<BaseImage> {
    if let Some((reference, id)) = builtin_image(engine, name, printer).await? {
        return Ok(BaseImage { reference, id });
    }
    match engine.image_id(name).await? {
        Some(id) => Ok(BaseImage { reference: name.to_owned(), id }),
        None => bail!(
            "image `{name}` is neither a built-in recipe ({}) nor an image in the {} engine\n  hint: use \
             `name = \"debian-bookworm\"`, build an image with `repro-run image build <recipe-dir>`, or import \
             a rootfs with `repro-run image import <rootfs.tar> --tag {name}`",
            builtin_list(),
            engine.kind
        ),
    }
}

/// Runs the recipe into a temporary rootfs tarball, imports it as `tag`,
/// digests the image and caches the digest. Returns (image id, digest).
pub async fn build_recipe(engine: &Engine, recipe: &Recipe, tag: &str, printer: &Printer) -> Result<(String, Digest)> {
    let work =
        tempfile::Builder::new().prefix("repro-run-image-").tempdir().context("cannot create a temporary directory")?;
    let script = match recipe {
        Recipe::Builtin(name) => {
            let b = BUILTIN.iter().find(|b| b.name == *name).context("unknown built-in recipe")?;
            let p = work.path().join("build-rootfs");
            fs_err::write(&p, b.script)?;
            p
        }
        Recipe::Dir(d) => d.join("build-rootfs"),
    };
    let tarball = work.path().join("rootfs.tar");
    printer.status(format!("building image {tag} from recipe {}", recipe.name()));
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg(&script).arg(&tarball).kill_on_drop(true).stdin(Stdio::null());
    if printer.is_quiet() {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        // The recipe's output is progress, so all of it goes to stderr.
        let err = std::io::stderr().as_fd().try_clone_to_owned().context("cannot duplicate stderr")?;
        cmd.stdout(Stdio::from(err));
    }
    let status =
        signal::cancellable(async { cmd.status().await.with_context(|| format!("cannot run {}", script.display())) })
            .await?;
    if !status.success() {
        bail!("image recipe {} failed ({status}); its output above says why", recipe.name());
    }
    let id = import_file(engine, &tarball, tag).await?;
    let digest = digest_image(engine, tag, true, printer).await?;
    Ok((id, digest))
}

/// Imports a rootfs tarball (plain or gzip; the engine detects which) as `tag`.
pub async fn import_file(engine: &Engine, tarball: &Path, tag: &str) -> Result<String> {
    let file = tokio::fs::File::open(tarball).await.with_context(|| format!("cannot open {}", tarball.display()))?;
    signal::cancellable(engine.import(tag, ReaderStream::with_capacity(file, 256 * 1024))).await
}

/// Imports a directory as `tag`, streaming a tar of it (owners, modes and
/// links as they are on disk) straight to the engine.
pub async fn import_dir(engine: &Engine, dir: &Path, tag: &str) -> Result<String> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    let dir = dir.to_owned();
    let producer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut builder = tar::Builder::new(SyncIoBridge::new(writer));
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Complete);
        builder.append_dir_all(".", &dir).with_context(|| format!("cannot read {}", dir.display()))?;
        builder.into_inner().context("cannot finish the tar stream")?;
        Ok(())
    });
    let id = signal::cancellable(engine.import(tag, ReaderStream::with_capacity(reader, 256 * 1024))).await;
    producer.await.context("the tar writer panicked")??;
    id
}

/// The `repro-tree-v1` digest of an engine image: the export of a created,
/// never-started container streams straight into the digest. Cached by the
/// image id, which is content-addressed, unless `no_cache`.
pub async fn digest_image(engine: &Engine, reference: &str, no_cache: bool, printer: &Printer) -> Result<Digest> {
    let Some(id) = engine.image_id(reference).await? else {
        bail!(
            "the {} engine has no image `{reference}`: build one with `repro-run image build <recipe>` or import a \
             rootfs with `repro-run image import <rootfs.tar> --tag {reference}`",
            engine.kind
        );
    };
    // Image id → rootfs digest; ids are content-addressed, so never stale.
    let cache = JsonCache::<Digest>::open(DIGESTS);
    if !no_cache {
        if let Some(d) = cache.get(&id) {
            return Ok(d);
        }
    }
    let spec = ContainerSpec {
        image: id.clone(),
        // Never started: any command will do, but imported images have none.
        argv: vec!["/repro-run-never-started".into()],
        ..Default::default()
    };
    let guard = engine.create(&spec).await?;
    let result = signal::cancellable(digest_container(engine, guard.id(), printer)).await;
    guard.remove().await;
    let digest = result.with_context(|| format!("cannot digest image `{reference}`"))?;
    cache.put(&id, digest);
    Ok(digest)
}

/// The cache of image digests, by image id.
const DIGESTS: &str = "image-digests.json";

/// Records that the image `id` has rootfs `digest` (the digest of the
/// container it was committed from: the same files).
pub fn remember_digest(id: &str, digest: Digest) {
    JsonCache::<Digest>::open(DIGESTS).put(id, digest);
}

/// The rootfs digest of a created container: read from its filesystem as
/// the engine mounts it, where this process can see that
/// ([`Engine::mount_rootfs`]: Podman on this machine), else from its
/// export. The digest is the same either way (docs/tree-digest.md: a
/// directory and a tar of it digest alike).
pub async fn digest_container(engine: &Engine, id: &str, printer: &Printer) -> Result<Digest> {
    match engine.mount_rootfs(id).await {
        Ok(Some(root)) => {
            tracing::debug!("digesting the container's filesystem mounted at {}", root.display());
            let dir = root.clone();
            let digest = tokio::task::spawn_blocking(move || digest::digest_dir(&dir, TreeKind::Rootfs)).await;
            engine.unmount_rootfs(id).await;
            let digest = digest.context("the digest task panicked")?;
            return digest.with_context(|| format!("cannot digest the mounted filesystem {}", root.display()));
        }
        Ok(None) => {}
        Err(e) => tracing::debug!("cannot have the container's filesystem mounted ({e:#}); reading its export"),
    }
    tracing::debug!("digesting the export of the container");
    digest_stream(engine.export(id), TreeKind::Rootfs, printer).await
}

/// Digests a tar byte stream on a blocking thread, without buffering it.
pub async fn digest_stream<S>(stream: S, kind: TreeKind, printer: &Printer) -> Result<Digest>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let progress = Progress::new(printer);
    let counter = progress.clone();
    let counted = stream.map_ok(move |b| {
        counter.add(b.len());
        b
    });
    let reader = StreamReader::new(Box::pin(counted));
    let bridge = SyncIoBridge::new(reader);
    let digest =
        tokio::task::spawn_blocking(move || digest::digest_tar(bridge, kind)).await.context("the digest task panicked");
    progress.finish();
    Ok(digest??)
}

/// Bytes-and-throughput progress on stderr, when stderr is a terminal.
#[derive(Clone)]
struct Progress {
    inner: Option<std::sync::Arc<std::sync::Mutex<(u64, std::time::Instant, std::time::Instant)>>>,
}

impl Progress {
    fn new(printer: &Printer) -> Self {
        use std::io::IsTerminal as _;
        let on = !printer.is_quiet() && std::io::stderr().is_terminal();
        let now = std::time::Instant::now();
        Progress { inner: on.then(|| std::sync::Arc::new(std::sync::Mutex::new((0, now, now)))) }
    }

    /// Ends the progress line, if one was drawn.
    fn finish(&self) {
        let Some(inner) = &self.inner else { return };
        let Ok(g) = inner.lock() else { return };
        if g.0 > 0 && g.1 != g.2 {
            Printer::new(false).progress("");
        }
    }

    fn add(&self, n: usize) {
        let Some(inner) = &self.inner else { return };
        let Ok(mut g) = inner.lock() else { return };
        g.0 += n as u64;
        if g.2.elapsed().as_millis() >= 200 {
            g.2 = std::time::Instant::now();
            let secs = g.1.elapsed().as_secs_f64().max(0.001);
            let mib = g.0 as f64 / (1024.0 * 1024.0);
            Printer::new(false).progress(format!("digesting: {mib:.1} MiB, {:.1} MiB/s", mib / secs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_name_stands_for_its_image_and_other_names_for_themselves() {
        assert_eq!(reference("busybox"), "repro-run/busybox:latest");
        assert_eq!(reference("debian-bookworm"), "repro-run/debian-bookworm:latest");
        assert_eq!(reference("repro-run/debian-bookworm:latest"), "repro-run/debian-bookworm:latest");
        assert_eq!(reference("debian:bookworm"), "debian:bookworm");
        for b in BUILTIN {
            assert_eq!(reference(b.name), Recipe::Builtin(b.name).default_tag());
        }
    }
}

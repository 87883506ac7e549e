//! Staged source trees kept between builds, keyed by their digest, and
//! overlay mounts that give each build a private, writable view of one.
//!
//! Writing a 10,000-file tree costs far more than reading and hashing it:
//! every file is an inode to allocate and later to delete, and on some
//! disks that is seconds. Yet most builds see a tree they have seen before:
//! a second build to compare, a CI re-run, a developer building twice. So
//! a staged tree is not deleted after the build. It stays in `trees/`
//! under the stage directory, named by the digest of its normalised tar,
//! read-only to builds: each build mounts an overlay whose lower layer is
//! the kept tree and whose upper layer is the build's own stage directory
//! ([`super::staging::StageDir::mount_tree`]). The build writes where it
//! likes; the kept tree never changes.
//!
//! A kept tree is one EROFS image, `trees/<hex>.erofs` ([`Form::Image`]),
//! written in the pass that hashes the sources, and mounted read-only; on a
//! kernel that cannot mount an image file, a directory `trees/<hex>/src`
//! ([`Form::Dir`]).
//!
//! A build reads and hashes the sources every time (the digest goes into
//! the record). Whether it also writes a new tree while it reads them is a
//! guess made from their fingerprint ([`walk::fingerprint`]: paths,
//! inodes, sizes, times, no content): `hints/<fingerprint>` names the tree
//! the same fingerprint led to last ([`TreeCache::expected`]). With a hint,
//! the build only reads, and uses the kept tree of the digest it gets
//! (reading again to write a tree only when the guess was wrong). Without
//! one, it writes the tree under `trees/.new-*` in the same pass, and
//! renames it to its digest when complete, so a half-written tree is never
//! found; or drops it, when a tree of that digest is kept already.
//!
//! Locks: a build holds a shared `flock` on the tree it uses, and the
//! writer of a new tree an exclusive one, so that eviction (which takes an
//! exclusive lock without waiting) never removes a tree in use. Trees are
//! evicted least recently used first (a tree's mtime is its last use) once
//! their sizes add up to more than the budget (`--source-cache`); the tree
//! in use is always kept.
//!
//! Mounting needs `CAP_SYS_ADMIN`; without it ([`cannot_overlay`]), a build
//! stages its own copy instead.

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use repro_run_core::digest::Digest;
use rustix::fs::FlockOperation;

use super::walk::{self, SourceOptions, Staged, Walked};
use repro_run_core::erofs;

/// Where kept trees live, under the stage directory.
const TREES: &str = "trees";
/// A tree's size in bytes, beside its `src/`, for eviction.
const SIZE_FILE: &str = "size";
/// The name of an image is its digest and this.
const IMAGE_SUFFIX: &str = ".erofs";
/// Where hints live, under the stage directory: `hints/<fingerprint>`
/// holds the digest of the sources last read with that fingerprint.
const HINTS: &str = "hints";
/// Hints kept at most; the oldest go first.
const MAX_HINTS: usize = 256;

/// Whether this kernel mounts an EROFS image file (no loop device): a
/// one-directory image is written in `dir`, mounted and unmounted.
fn images_mount(dir: &Path) -> Result<()> {
    if !kernel_has("erofs") {
        anyhow::bail!("the kernel has no erofs filesystem (see /proc/filesystems)");
    }
    fs_err::create_dir_all(dir)?;
    let probe = tempfile::Builder::new().prefix(".new-probe-").tempdir_in(dir)?;
    // Locked like a tree being written, so that no eviction sweeps it away.
    let lock = fs_err::File::open(probe.path())?;
    rustix::fs::flock(&lock, FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", probe.path().display()))?;
    let image = probe.path().join("probe.erofs");
    let root = erofs::Meta { mode: 0o755, uid: 0, gid: 0, mtime: 0 };
    let file = fs_err::File::create(&image)?;
    erofs::ImageWriter::new(file, root)?.finish()?;
    let mnt = probe.path().join("mnt");
    fs_err::create_dir(&mnt)?;
    rustix::mount::mount(&image, &mnt, "erofs", rustix::mount::MountFlags::RDONLY, None)
        .with_context(|| format!("cannot mount the image file {}", image.display()))?;
    rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH)
        .with_context(|| format!("cannot unmount {}", mnt.display()))?;
    Ok(())
}

/// Whether `/proc/filesystems` lists `fs`.
fn kernel_has(fs: &str) -> bool {
    let known = fs_err::read_to_string("/proc/filesystems").unwrap_or_default();
    known.lines().any(|l| l.split_whitespace().last() == Some(fs))
}

/// Why an overlay cannot be mounted by this process, if it cannot.
pub fn cannot_overlay(stage_base: &Path) -> Option<String> {
    // CAP_SYS_ADMIN is bit 21 of the effective capabilities.
    let caps = walk::own_status("CapEff").and_then(|hex| u64::from_str_radix(&hex, 16).ok());
    if caps.is_none_or(|c| c & (1 << 21) == 0) {
        return Some("this process lacks CAP_SYS_ADMIN, which mounting an overlay needs".to_owned());
    }
    if !kernel_has("overlay") {
        return Some("the kernel has no overlay filesystem (see /proc/filesystems)".to_owned());
    }
    // Overlay options are separated by commas and lower layers by colons.
    let path = stage_base.as_os_str().as_bytes();
    if path.iter().any(|b| b",:\\".contains(b)) || std::str::from_utf8(path).is_err() {
        return Some(format!("the stage directory {} has a name overlay options cannot hold", stage_base.display()));
    }
    None
}

/// How a kept tree is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `trees/<hex>.erofs`: an EROFS image of the normalised tar (its
    /// `src/` is the tree), mounted read-only. One file to write and to
    /// remove; needs a kernel that mounts an image file (Linux 6.12).
    Image,
    /// `trees/<hex>/src`: the tree as files, for other kernels.
    Dir,
}

/// The kept trees under one stage directory.
pub struct TreeCache {
    dir: PathBuf,
    hints: PathBuf,
    budget: u64,
}

/// A kept tree, locked for as long as this value lives.
pub struct Tree {
    path: PathBuf,
    form: Form,
    /// Holds the lock (shared while in use, exclusive while being written).
    _lock: fs_err::File,
}

impl Tree {
    /// The image file, or the directory holding `src/`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the tree is stored.
    pub fn form(&self) -> Form {
        self.form
    }

    /// Locks `path` (shared) and marks it used now; `None` when it is gone
    /// or not a complete tree.
    fn open(path: PathBuf, form: Form) -> Result<Option<Tree>> {
        let lock = match fs_err::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        rustix::fs::flock(&lock, FlockOperation::LockShared)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        // Eviction renames a tree away before it removes it: a tree found
        // and locked under its name is whole.
        let whole = match form {
            Form::Image => path.is_file(),
            Form::Dir => path.join("src").is_dir(),
        };
        if !whole {
            return Ok(None);
        }
        let now = filetime::FileTime::now();
        filetime::set_file_mtime(&path, now).with_context(|| format!("cannot date {}", path.display()))?;
        Ok(Some(Tree { path, form, _lock: lock }))
    }
}

/// What [`TreeCache::add`] did with the tree it wrote.
pub enum Added {
    /// Kept it: the tree is new.
    New,
    /// Found a tree of the same digest kept already, and gave that one; the
    /// tree written is to go, when [`Dropped`] says.
    Found(Option<Dropped>),
}

/// A tree written and then not needed, still locked (no eviction touches
/// it), removed when this value is dropped. A build holds it until the
/// engine is done with the container: freeing a tree's blocks takes time,
/// and on a disk mounted with `discard` it makes the engine's next sync
/// (at the container's start or removal) wait too (figures in
/// docs/bench.md, the run of 2026-11-30).
pub struct Dropped {
    path: PathBuf,
    _lock: fs_err::File,
}

impl Drop for Dropped {
    fn drop(&mut self) {
        remove_logged(&self.path);
    }
}

impl TreeCache {
    /// The kept trees in `stage_base`, at most `budget` bytes of them (the
    /// tree in use is kept whatever its size).
    pub fn new(stage_base: &Path, budget: u64) -> TreeCache {
        TreeCache { dir: stage_base.join(TREES), hints: stage_base.join(HINTS), budget }
    }

    fn path_of(&self, digest: &Digest, form: Form) -> PathBuf {
        match form {
            Form::Image => self.dir.join(format!("{}{IMAGE_SUFFIX}", digest.to_hex())),
            Form::Dir => self.dir.join(digest.to_hex()),
        }
    }

    /// The digest the sources had when last read with this fingerprint
    /// ([`walk::fingerprint`]), if a tree of it is still kept: then the
    /// sources are most likely unchanged, and a build reads and digests
    /// them before it writes anything. Otherwise it writes a new tree while
    /// it reads them, in one pass, and drops it if a tree of the same digest
    /// turns out to be kept (as for a fresh clone of a commit built before).
    pub fn expected(&self, fingerprint: &Digest) -> Option<Digest> {
        let hint = fs_err::read_to_string(self.hints.join(fingerprint.to_hex())).ok()?;
        let digest: Digest = format!("blake3:{}", hint.trim()).parse().ok()?;
        let kept = [Form::Image, Form::Dir].into_iter().any(|form| self.path_of(&digest, form).exists());
        kept.then_some(digest)
    }

    /// Notes that the sources of `fingerprint` were `digest`, for
    /// [`TreeCache::expected`]. A hint that cannot be written is only
    /// logged: it saves time, nothing more.
    pub fn remember(&self, fingerprint: &Digest, digest: &Digest) {
        let path = self.hints.join(fingerprint.to_hex());
        if fs_err::read_to_string(&path).is_ok_and(|hint| hint.trim() == digest.to_hex()) {
            // Known: only marked as used now, for pruning.
            if let Err(e) = filetime::set_file_mtime(&path, filetime::FileTime::now()) {
                tracing::debug!("cannot date the hint {}: {e}", path.display());
            }
            return;
        }
        let written = private_dir(&self.hints).and_then(|()| {
            let mut new = tempfile::Builder::new().prefix(".new-").tempfile_in(&self.hints)?;
            new.write_all(digest.to_hex().as_bytes())?;
            new.persist(&path).map_err(|e| e.error)?;
            Ok(())
        });
        if let Err(e) = written {
            tracing::debug!("cannot keep the hint {}: {e}", path.display());
        }
    }

    /// The kept tree of `digest`, locked, if there is one.
    pub fn find(&self, digest: &Digest) -> Result<Option<Tree>> {
        for form in [Form::Image, Form::Dir] {
            if let Some(tree) = Tree::open(self.path_of(digest, form), form)? {
                return Ok(Some(tree));
            }
        }
        Ok(None)
    }

    /// How a new tree is kept here: an image when this kernel mounts image
    /// files, else a directory.
    /// `REPRO_RUN_TREE_FORM=dir` keeps them as directories regardless.
    pub fn form_for_new(&self) -> Form {
        static FORM: std::sync::OnceLock<Form> = std::sync::OnceLock::new();
        if std::env::var_os("REPRO_RUN_TREE_FORM").is_some_and(|v| v == "dir") {
            return Form::Dir;
        }
        *FORM.get_or_init(|| match images_mount(&self.dir) {
            Ok(()) => Form::Image,
            Err(why) => {
                tracing::debug!("keeping source trees as directories: {why:#}");
                Form::Dir
            }
        })
    }

    /// Stages the sources into a new kept tree of `form`, and returns it
    /// locked with what the staging found (its digest names the tree), and
    /// whether it is new: when a tree of that digest is kept already, that
    /// one is returned and the new one is dropped ([`Added::Found`]).
    pub fn add(&self, opts: &SourceOptions, walked: &Walked, form: Form) -> Result<(Tree, Staged, Added)> {
        private_dir(&self.dir)?;
        let (new, lock, staged) = match form {
            Form::Image => {
                let new = tempfile::Builder::new()
                    .prefix(".new-")
                    .suffix(IMAGE_SUFFIX)
                    .tempfile_in(&self.dir)
                    .with_context(|| format!("cannot create a file in {}", self.dir.display()))?;
                let lock = fs_err::File::open(new.path())?;
                rustix::fs::flock(&lock, FlockOperation::LockExclusive)
                    .with_context(|| format!("cannot lock {}", new.path().display()))?;
                let out = fs_err::File::from_parts(
                    new.as_file().try_clone().context("cannot reopen the new image")?,
                    new.path(),
                );
                let staged = walk::image(opts, walked, out)?;
                let (_, path) = new.keep().context("cannot keep the new image")?;
                (path, lock, staged)
            }
            Form::Dir => {
                let new = tempfile::Builder::new()
                    .prefix(".new-")
                    .tempdir_in(&self.dir)
                    .with_context(|| format!("cannot create a directory in {}", self.dir.display()))?;
                let lock = fs_err::File::open(new.path())?;
                rustix::fs::flock(&lock, FlockOperation::LockExclusive)
                    .with_context(|| format!("cannot lock {}", new.path().display()))?;
                let staged = walk::stage(opts, new.path())?;
                // The tree is `src/` alone; each build makes its own `HOME`.
                fs_err::remove_dir_all(new.path().join(walk::home_parent()))?;
                fs_err::write(new.path().join(SIZE_FILE), staged.bytes.to_string())?;
                (new.keep(), lock, staged)
            }
        };

        if let Some(kept) = self.find(&staged.digest)? {
            tracing::debug!("a tree of {} is kept already; dropping the new one", staged.digest);
            return Ok((kept, staged, Added::Found(Some(Dropped { path: new, _lock: lock }))));
        }
        // On the disk before it has its name, so that a crash never leaves
        // a named tree with holes. An image was written directly: only its
        // size and extents are left to write. A directory: one sync of the
        // filesystem, cheaper than one per file.
        let synced = match form {
            Form::Image => rustix::fs::fdatasync(&lock),
            Form::Dir => rustix::fs::syncfs(&lock),
        };
        if let Err(e) = synced {
            remove_logged(&new);
            return Err(anyhow::Error::new(e).context(format!("cannot sync {}", new.display())));
        }
        let path = self.path_of(&staged.digest, form);
        // A directory is not renamed over one that exists; an image is, and
        // the builds that use the one it replaces keep it open.
        match fs_err::rename(&new, &path) {
            Ok(()) => {
                rustix::fs::flock(&lock, FlockOperation::LockShared)
                    .with_context(|| format!("cannot lock {}", path.display()))?;
                filetime::set_file_mtime(&path, filetime::FileTime::now())
                    .with_context(|| format!("cannot date {}", path.display()))?;
                Ok((Tree { path, form, _lock: lock }, staged, Added::New))
            }
            // Another build kept the same tree meanwhile: use that one.
            Err(e) if path.is_dir() => {
                tracing::debug!("{e}: another build kept this tree first");
                remove_logged(&new);
                let tree = Tree::open(path, form)?.context("a kept tree went away while it was found")?;
                Ok((tree, staged, Added::Found(None)))
            }
            Err(e) => {
                remove_logged(&new);
                Err(e.into())
            }
        }
    }

    /// Removes the least recently used trees until the rest fit the budget,
    /// never one that is in use (locked), and what a stopped build left.
    pub fn evict(&self) {
        let Ok(entries) = fs_err::read_dir(&self.dir) else { return };
        let mut trees = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.as_bytes();
            if name.starts_with(b".new-") || name.starts_with(b".old-") {
                // Left by a build that was killed (a live one holds a lock).
                if let Some(lock) = try_lock(&path) {
                    remove_logged(&path);
                    drop(lock);
                }
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let size = if meta.is_file() {
                Some(meta.len())
            } else {
                fs_err::read_to_string(path.join(SIZE_FILE)).ok().and_then(|s| s.trim().parse().ok())
            };
            trees.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), size.unwrap_or(0u64), path));
        }
        trees.sort_by_key(|t| std::cmp::Reverse(t.0));
        let mut total = 0u64;
        for (i, (_, size, path)) in trees.iter().enumerate() {
            total = total.saturating_add(*size);
            if i == 0 || total <= self.budget {
                continue;
            }
            let Some(lock) = try_lock(path) else {
                tracing::debug!("kept {}: a build is using it", path.display());
                continue;
            };
            // Renamed first, so that no build finds it half removed.
            let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let old = self.dir.join(format!(".old-{name}-{}", std::process::id()));
            match fs_err::rename(path, &old) {
                Ok(()) => {
                    tracing::debug!("evicting the kept source tree {}", path.display());
                    remove_logged(&old);
                    total -= size;
                }
                Err(e) => tracing::warn!("cannot evict a kept source tree: {e}"),
            }
            drop(lock);
        }
        self.prune_hints();
    }

    /// Removes the hints of trees no longer kept, and the oldest beyond
    /// [`MAX_HINTS`].
    fn prune_hints(&self) {
        let Ok(entries) = fs_err::read_dir(&self.hints) else { return };
        let mut hints = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let stale = name.as_bytes().starts_with(b".new-")
                && entry
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 3600);
            let Some(fingerprint) = name.to_str().and_then(|n| format!("blake3:{n}").parse::<Digest>().ok()) else {
                if stale {
                    remove_logged(&path);
                }
                continue;
            };
            match self.expected(&fingerprint) {
                Some(_) => {
                    hints.push((entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH), path))
                }
                None => remove_logged(&path),
            }
        }
        hints.sort_by_key(|h| std::cmp::Reverse(h.0));
        for (_, path) in hints.iter().skip(MAX_HINTS) {
            remove_logged(path);
        }
    }
}

/// Makes `dir` (and its parents) if need be, readable by its owner only:
/// `trees/` and `hints/`.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs_err::create_dir_all(dir)?;
    fs_err::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
}

/// An exclusive lock on `dir`, if nobody holds one.
pub(crate) fn try_lock(dir: &Path) -> Option<fs_err::File> {
    let f = fs_err::File::open(dir).ok()?;
    rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(f)
}

/// Removes a directory or a file, logging a failure.
pub(crate) fn remove_logged(dir: &Path) {
    let removed = match fs_err::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(dir),
        Ok(_) => fs_err::remove_file(dir),
        Err(e) => Err(e),
    };
    if let Err(e) = removed {
        tracing::warn!("could not remove {}: {e}; remove it with `rm -rf {}`", dir.display(), dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(root: &Path) -> SourceOptions {
        SourceOptions {
            root: root.to_owned(),
            exclude_paths: Vec::new(),
            exclude_patterns: Vec::new(),
            source_date_epoch: 7,
            owner: (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw()),
            dir: repro_run_core::hermetic::SOURCE_DIR.to_owned(),
        }
    }

    fn project(files: &[(&str, usize)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in files {
            fs_err::write(dir.path().join(name), vec![b'x'; *len]).unwrap();
        }
        dir
    }

    #[test]
    fn a_kept_tree_is_found_by_its_digest_and_is_the_staged_tree() {
        let base = tempfile::tempdir().unwrap();
        let cache = TreeCache::new(base.path(), 1 << 30);
        let p = project(&[("a", 3), ("b", 5)]);
        let walked = walk::walk_sources(&opts(p.path())).unwrap();
        let read = walk::digest(&opts(p.path()), &walked).unwrap();
        let digest = read.digest;
        assert!(cache.find(&digest).unwrap().is_none());
        let (tree, staged, _) =
            cache.add(&opts(p.path()), &walk::walk_sources(&opts(p.path())).unwrap(), Form::Dir).unwrap();
        assert_eq!((&staged.digest, staged.entries, staged.bytes), (&digest, read.entries, 8));
        let dir = base.path().join("trees").join(digest.to_hex());
        assert_eq!((tree.path(), tree.form()), (dir.as_path(), Form::Dir));
        assert_eq!(fs_err::read(dir.join("src/b")).unwrap(), b"xxxxx");
        assert!(!dir.join("home").exists(), "the kept tree holds no HOME");
        drop(tree);
        let found = cache.find(&digest).unwrap().expect("the tree is kept");
        assert_eq!(found.path(), dir);
        let names: Vec<_> =
            fs_err::read_dir(base.path().join("trees")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(digest.to_hex())], "no temporary directory is left");
    }

    #[test]
    fn a_kept_image_is_found_by_its_digest() {
        let base = tempfile::tempdir().unwrap();
        let cache = TreeCache::new(base.path(), 1 << 30);
        let p = project(&[("a", 3)]);
        let (tree, staged, _) =
            cache.add(&opts(p.path()), &walk::walk_sources(&opts(p.path())).unwrap(), Form::Image).unwrap();
        let file = base.path().join("trees").join(format!("{}.erofs", staged.digest.to_hex()));
        assert_eq!((tree.path(), tree.form()), (file.as_path(), Form::Image));
        let len = fs_err::metadata(&file).unwrap().len();
        assert!(len > 0 && len % repro_run_core::erofs::BLOCK == 0, "an image of {len} bytes");
        drop(tree);
        let found = cache.find(&staged.digest).unwrap().expect("the image is kept");
        assert_eq!((found.path(), found.form()), (file.as_path(), Form::Image));
        let names: Vec<_> =
            fs_err::read_dir(base.path().join("trees")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }

    #[test]
    fn eviction_keeps_the_newest_trees_within_the_budget_and_any_in_use() {
        let base = tempfile::tempdir().unwrap();
        let cache = TreeCache::new(base.path(), 250);
        let mut trees = Vec::new();
        for (i, len) in [100usize, 100, 100, 100].into_iter().enumerate() {
            let p = project(&[(&format!("f{i}"), len)]);
            let (tree, _, _) =
                cache.add(&opts(p.path()), &walk::walk_sources(&opts(p.path())).unwrap(), Form::Dir).unwrap();
            // Distinct last uses, oldest first.
            let t = filetime::FileTime::from_unix_time(1_000_000 + i as i64, 0);
            filetime::set_file_mtime(tree.path(), t).unwrap();
            trees.push(tree.path().to_owned());
        }
        // The oldest is in use, so it stays although it is over the budget.
        let in_use = cache.find(&format!("blake3:{}", digest_hex(&trees[0])).parse().unwrap()).unwrap().unwrap();
        filetime::set_file_mtime(in_use.path(), filetime::FileTime::from_unix_time(999, 0)).unwrap();
        fs_err::create_dir_all(base.path().join("trees/.new-stale/src")).unwrap();
        fs_err::write(base.path().join("trees/.new-stale.erofs"), b"").unwrap();
        cache.evict();
        let kept = |p: &PathBuf| p.is_dir();
        assert_eq!(trees.iter().map(kept).collect::<Vec<_>>(), vec![true, false, true, true]);
        assert!(!base.path().join("trees/.new-stale").exists(), "a killed build's leftovers go");
        assert!(!base.path().join("trees/.new-stale.erofs").exists(), "a killed build's leftovers go");
        drop(in_use);
        cache.evict();
        assert_eq!(trees.iter().map(kept).collect::<Vec<_>>(), vec![false, false, true, true]);
    }

    #[test]
    fn a_tree_kept_already_is_not_written_again() {
        let base = tempfile::tempdir().unwrap();
        let cache = TreeCache::new(base.path(), 1 << 30);
        let (p, q) = (project(&[("a", 3)]), project(&[("a", 3)]));
        let (first, staged, new) =
            cache.add(&opts(p.path()), &walk::walk_sources(&opts(p.path())).unwrap(), Form::Image).unwrap();
        assert!(matches!(new, Added::New));
        let (again, staged_again, found) =
            cache.add(&opts(q.path()), &walk::walk_sources(&opts(q.path())).unwrap(), Form::Image).unwrap();
        let Added::Found(Some(dropped)) = found else { panic!("a copy of the same sources finds the kept tree") };
        assert_eq!((again.path(), &staged_again.digest), (first.path(), &staged.digest));
        let names = || -> Vec<_> {
            fs_err::read_dir(base.path().join("trees")).unwrap().map(|e| e.unwrap().file_name()).collect()
        };
        cache.evict();
        assert_eq!(names().len(), 2, "the image written waits, locked, for its holder: {:?}", names());
        drop(dropped);
        assert_eq!(names().len(), 1, "the image written is dropped: {:?}", names());
    }

    #[test]
    fn a_hint_names_the_tree_of_a_fingerprint_while_it_is_kept() {
        let base = tempfile::tempdir().unwrap();
        let cache = TreeCache::new(base.path(), 1);
        let p = project(&[("a", 3)]);
        let walked = walk::walk_sources(&opts(p.path())).unwrap();
        let fingerprint = walk::fingerprint(&opts(p.path()), &walked).unwrap();
        assert_eq!(cache.expected(&fingerprint), None);
        let (tree, staged, _) = cache.add(&opts(p.path()), &walked, Form::Dir).unwrap();
        cache.remember(&fingerprint, &staged.digest);
        assert_eq!(cache.expected(&fingerprint), Some(staged.digest));
        let hint = base.path().join("hints").join(fingerprint.to_hex());
        assert_eq!(fs_err::read_to_string(&hint).unwrap(), staged.digest.to_hex());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs_err::metadata(base.path().join("hints")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "hints/ is private");
        // Remembered again: only its date moves, which pruning goes by.
        filetime::set_file_mtime(&hint, filetime::FileTime::from_unix_time(1_000_000, 0)).unwrap();
        cache.remember(&fingerprint, &staged.digest);
        let dated = filetime::FileTime::from_last_modification_time(&fs_err::metadata(&hint).unwrap());
        assert!(dated.unix_seconds() > 1_000_000, "the hint is not dated now");
        // A newer tree makes the budget of one byte evict this one, and its
        // hint goes with it.
        drop(tree);
        let q = project(&[("b", 3)]);
        let (_newer, _, _) =
            cache.add(&opts(q.path()), &walk::walk_sources(&opts(q.path())).unwrap(), Form::Dir).unwrap();
        cache.evict();
        assert_eq!(cache.expected(&fingerprint), None);
        assert!(!hint.exists(), "the hint of an evicted tree is removed");
    }

    #[test]
    fn the_newest_hints_are_kept_up_to_a_bound() {
        let base = tempfile::tempdir().unwrap();
        let cache = TreeCache::new(base.path(), 1 << 30);
        let p = project(&[("a", 3)]);
        let (_tree, staged, _) =
            cache.add(&opts(p.path()), &walk::walk_sources(&opts(p.path())).unwrap(), Form::Image).unwrap();
        let prints: Vec<Digest> = (0..MAX_HINTS + 4).map(|i| Digest::of_bytes(&i.to_le_bytes())).collect();
        for (i, fingerprint) in prints.iter().enumerate() {
            cache.remember(fingerprint, &staged.digest);
            let hint = base.path().join("hints").join(fingerprint.to_hex());
            filetime::set_file_mtime(hint, filetime::FileTime::from_unix_time(1_000_000 + i as i64, 0)).unwrap();
        }
        cache.evict();
        let kept: Vec<bool> = prints.iter().map(|f| cache.expected(f).is_some()).collect();
        assert_eq!(kept.iter().filter(|k| **k).count(), MAX_HINTS);
        assert!(kept[..4].iter().all(|k| !k), "the four oldest go");
    }

    fn digest_hex(p: &Path) -> String {
        p.file_name().unwrap().to_str().unwrap().to_owned()
    }
}

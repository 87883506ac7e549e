//! Staged source trees kept between builds, keyed by their digest, and
//! overlay mounts that give each build a private, writable view of one.
//!
//! Writing a 10,000-file tree costs far more than reading and hashing it:
//! every file is an inode to allocate and later to delete, and on some
//! disks that is seconds. Yet most builds see a tree they have seen before:
//! `verify` rebuilds the same sources, CI jobs re-run, a developer builds
//! twice. So a staged tree is not deleted after the build. It stays in
//! `trees/<hex>/src` under the stage directory, named by the digest of its
//! normalised tar, and read-only to builds: each build mounts an overlay
//! whose lower layer is the kept tree and whose upper layer is the build's
//! own stage directory ([`crate::staging::StageDir::overlaid`]). The build
//! writes where it likes; the kept tree never changes.
//!
//! A build first reads and hashes the sources (the digest goes into the
//! record anyway). If a tree of that digest is kept, nothing is written.
//! Otherwise the tree is staged once into `trees/.new-*` and renamed to its
//! digest when complete, so a half-written tree is never found.
//!
//! Locks: a build holds a shared `flock` on the tree it uses, and the
//! writer of a new tree an exclusive one, so that eviction (which takes an
//! exclusive lock without waiting) never removes a tree in use. Trees are
//! evicted least recently used first (a tree's directory mtime is its last
//! use) once their sizes add up to more than the budget
//! (`--source-cache`); the tree in use is always kept.
//!
//! Mounting an overlay needs `CAP_SYS_ADMIN`; without it ([`usable`]), a
//! build stages its own copy as before.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use repro_run_core::digest::Digest;
use rustix::fs::FlockOperation;

use crate::source::{self, SourceOptions, Staged};

/// Where kept trees live, under the stage directory.
const TREES: &str = "trees";
/// A tree's size in bytes, beside its `src/`, for eviction.
const SIZE_FILE: &str = "size";

/// Why an overlay cannot be mounted by this process, if it cannot.
pub fn cannot_overlay(stage_base: &Path) -> Option<String> {
    // CAP_SYS_ADMIN is bit 21 of the effective capabilities.
    let caps = source::own_status("CapEff").and_then(|hex| u64::from_str_radix(&hex, 16).ok());
    if caps.is_none_or(|c| c & (1 << 21) == 0) {
        return Some("this process lacks CAP_SYS_ADMIN, which mounting an overlay needs".to_owned());
    }
    let known = fs_err::read_to_string("/proc/filesystems").unwrap_or_default();
    if !known.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        return Some("the kernel has no overlay filesystem (see /proc/filesystems)".to_owned());
    }
    // Overlay options are separated by commas and lower layers by colons.
    let path = stage_base.as_os_str().as_bytes();
    if path.iter().any(|b| b",:\\".contains(b)) || std::str::from_utf8(path).is_err() {
        return Some(format!("the stage directory {} has a name overlay options cannot hold", stage_base.display()));
    }
    None
}

/// The kept trees under one stage directory.
pub struct TreeCache {
    dir: PathBuf,
    budget: u64,
}

/// A kept tree, locked for as long as this value lives.
pub struct Tree {
    dir: PathBuf,
    /// Holds the lock (shared while in use, exclusive while being written).
    _lock: fs_err::File,
}

impl Tree {
    /// The tree: the overlay's lower layer.
    pub fn src(&self) -> PathBuf {
        self.dir.join("src")
    }

    /// Locks `dir` (shared) and marks it used now; `None` when it is gone or
    /// not a complete tree.
    fn open(dir: PathBuf) -> Result<Option<Tree>> {
        let lock = match fs_err::File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        rustix::fs::flock(&lock, FlockOperation::LockShared)
            .with_context(|| format!("cannot lock {}", dir.display()))?;
        // Eviction renames a tree away before it removes it: a tree found
        // and locked under its name is whole, unless it lost its files.
        if !dir.join("src").is_dir() {
            return Ok(None);
        }
        let now = filetime::FileTime::now();
        filetime::set_file_mtime(&dir, now).with_context(|| format!("cannot date {}", dir.display()))?;
        Ok(Some(Tree { dir, _lock: lock }))
    }
}

impl TreeCache {
    /// The kept trees in `stage_base`, at most `budget` bytes of them (the
    /// tree in use is kept whatever its size).
    pub fn new(stage_base: &Path, budget: u64) -> TreeCache {
        TreeCache { dir: stage_base.join(TREES), budget }
    }

    /// The kept tree of `digest`, locked, if there is one.
    pub fn find(&self, digest: &Digest) -> Result<Option<Tree>> {
        Tree::open(self.dir.join(digest.to_hex()))
    }

    /// Stages the sources into a new kept tree, and returns it locked with
    /// what the staging found (its digest names the tree).
    pub fn add(&self, opts: &SourceOptions) -> Result<(Tree, Staged)> {
        fs_err::create_dir_all(&self.dir)?;
        fs_err::set_permissions(&self.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let new = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&self.dir)
            .with_context(|| format!("cannot create a directory in {}", self.dir.display()))?;
        let lock = fs_err::File::open(new.path())?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", new.path().display()))?;
        let staged = source::stage(opts, new.path())?;
        // The tree is `src/` alone; each build makes its own `HOME`.
        let home = hermetic_home_root(new.path());
        fs_err::remove_dir_all(&home)?;
        fs_err::write(new.path().join(SIZE_FILE), staged.bytes.to_string())?;

        let dir = self.dir.join(staged.digest.to_hex());
        let new = new.keep();
        match fs_err::rename(&new, &dir) {
            Ok(()) => {
                rustix::fs::flock(&lock, FlockOperation::LockShared)
                    .with_context(|| format!("cannot lock {}", dir.display()))?;
                filetime::set_file_mtime(&dir, filetime::FileTime::now())
                    .with_context(|| format!("cannot date {}", dir.display()))?;
                Ok((Tree { dir, _lock: lock }, staged))
            }
            // Another build kept the same tree meanwhile: use that one.
            Err(e) if dir.is_dir() => {
                tracing::debug!("{e}: another build kept this tree first");
                remove_logged(&new);
                let tree = Tree::open(dir)?.context("a kept tree went away while it was found")?;
                Ok((tree, staged))
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
            let size = fs_err::read_to_string(path.join(SIZE_FILE)).ok().and_then(|s| s.trim().parse().ok());
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
    }
}

/// `dir/home`, the parent of the staged `HOME`.
fn hermetic_home_root(dir: &Path) -> PathBuf {
    let home = repro_run_core::hermetic::HOME.trim_start_matches('/');
    dir.join(home.split('/').next().unwrap_or("home"))
}

/// An exclusive lock on `dir`, if nobody holds one.
pub(crate) fn try_lock(dir: &Path) -> Option<fs_err::File> {
    let f = fs_err::File::open(dir).ok()?;
    rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(f)
}

fn remove_logged(dir: &Path) {
    if let Err(e) = fs_err::remove_dir_all(dir) {
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
        let read = source::digest(&opts(p.path())).unwrap();
        let digest = read.digest;
        assert!(cache.find(&digest).unwrap().is_none());
        let (tree, staged) = cache.add(&opts(p.path())).unwrap();
        assert_eq!((&staged.digest, staged.entries, staged.bytes), (&digest, read.entries, 8));
        assert_eq!(tree.src(), base.path().join("trees").join(digest.to_hex()).join("src"));
        assert_eq!(fs_err::read(tree.src().join("b")).unwrap(), b"xxxxx");
        assert!(!tree.dir.join("home").exists(), "the kept tree holds no HOME");
        drop(tree);
        let found = cache.find(&digest).unwrap().expect("the tree is kept");
        assert_eq!(found.src(), base.path().join("trees").join(digest.to_hex()).join("src"));
        let names: Vec<_> =
            fs_err::read_dir(base.path().join("trees")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(digest.to_hex())], "no temporary directory is left");
    }

    #[test]
    fn eviction_keeps_the_newest_trees_within_the_budget_and_any_in_use() {
        let base = tempfile::tempdir().unwrap();
        let cache = TreeCache::new(base.path(), 250);
        let mut digests = Vec::new();
        for (i, len) in [100usize, 100, 100, 100].into_iter().enumerate() {
            let p = project(&[(&format!("f{i}"), len)]);
            let (tree, staged) = cache.add(&opts(p.path())).unwrap();
            // Distinct last uses, oldest first.
            let t = filetime::FileTime::from_unix_time(1_000_000 + i as i64, 0);
            filetime::set_file_mtime(&tree.dir, t).unwrap();
            digests.push(staged.digest);
        }
        // The oldest is in use, so it stays although it is over the budget.
        let in_use = cache.find(&digests[0]).unwrap().unwrap();
        filetime::set_file_mtime(&in_use.dir, filetime::FileTime::from_unix_time(999, 0)).unwrap();
        fs_err::create_dir_all(base.path().join("trees/.new-stale/src")).unwrap();
        cache.evict();
        let kept = |d: &Digest| base.path().join("trees").join(d.to_hex()).is_dir();
        assert_eq!(digests.iter().map(kept).collect::<Vec<_>>(), vec![true, false, true, true]);
        assert!(!base.path().join("trees/.new-stale").exists(), "a killed build's leftovers go");
        drop(in_use);
        cache.evict();
        assert_eq!(digests.iter().map(kept).collect::<Vec<_>>(), vec![false, false, true, true]);
    }
}

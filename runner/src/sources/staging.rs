//! Sources staged on this machine and bind-mounted into the build container.
//!
//! Uploading a tree through the engine's archive API makes the engine unpack
//! it file by file inside the container's layer (a 10,000-file tree takes
//! seconds), and removing that container deletes it again. When the engine
//! runs on this machine, repro-run instead writes the normalised tree itself
//! into a private directory under the cache directory and bind-mounts it at
//! `/src` (and the empty `HOME` beside it). The build sees the same tree,
//! with the same owners, modes and mtimes, and the record gets the same
//! source digest; only the way in differs.
//!
//! Whether the engine sees this machine's files is not assumed. Its `/info`
//! must name this host and no user-id remapping
//! ([`crate::engine::Capabilities::sees_local_files`]);
//! then the container is created with the mounts and the engine is asked
//! for a file that only the staged directory holds ([`PROBE`]). A Docker
//! engine elsewhere refuses the mount; Podman creates the missing directory
//! on its own machine and then lacks the file. Either way the build falls
//! back to an upload (with `--sources auto`), and the answer is cached per
//! engine socket and stage directory, so that an engine is asked once.
//!
//! The staging directory is owned by a [`StageDir`]: removed on every path,
//! a failure to remove logged with the path, never hidden. Outputs are read
//! back from it directly once the container has stopped ([`local_output`]),
//! never following a link the build made.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result};
use repro_run_core::hermetic;

use super::pipe;
use super::trees::{self, Form, Tree, TreeCache};
use super::walk::SourceOptions;
use crate::cache::{self, JsonCache};
use crate::engine::{Mount, MountSource};

/// A file put in the staged `HOME` before the container starts, and removed
/// before it runs: if the engine sees it, it sees the staged directory.
pub const PROBE: &str = ".repro-run-mount-check";

/// A private directory holding `src/` and `home/build/` for one build.
///
/// `src/` is either a copy of the sources ([`StageDir::new`], then
/// [`super::walk::stage`]) or an overlay mount over a kept tree
/// ([`StageDir::skeleton`], then [`StageDir::mount_tree`]), whose writes
/// land in `upper/`.
pub struct StageDir {
    dir: Option<tempfile::TempDir>,
    /// The kept tree under the overlay at `src/`, locked while it is used.
    tree: Option<Tree>,
    /// What is mounted in the directory, in the order it was mounted.
    mounts: Vec<PathBuf>,
    /// Eviction of other kept trees, joined before this one goes.
    evicting: Option<std::thread::JoinHandle<()>>,
    /// An exclusive lock on the directory: a live build's is never swept.
    _lock: fs_err::File,
}

impl StageDir {
    /// A new, empty staging directory in `base`.
    pub fn new(base: &Path) -> Result<StageDir> {
        fs_err::create_dir_all(base)?;
        let dir = tempfile::Builder::new()
            .prefix("repro-run-")
            .tempdir_in(base)
            .with_context(|| format!("cannot create a staging directory in {}", base.display()))?;
        let lock = fs_err::File::open(dir.path())?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", dir.path().display()))?;
        Ok(StageDir { dir: Some(dir), tree: None, mounts: Vec::new(), evicting: None, _lock: lock })
    }

    /// A staging directory in `base` for an overlay at `src/`: the
    /// directories the container's mounts need (`src/`, `home/build/`,
    /// empty), made before the tree is known, so that the container can be
    /// created meanwhile. [`StageDir::mount_tree`] completes it. `HOME` and
    /// the overlay's top directory (`upper/`) are stamped like the tree's.
    pub fn skeleton(base: &Path, opts: &SourceOptions) -> Result<StageDir> {
        sweep(base);
        let stage = StageDir::new(base)?;
        let dir = stage.path().to_owned();
        let (upper, work, src) = (dir.join("upper"), dir.join("work"), stage.src());
        let mtime = filetime::FileTime::from_unix_time(opts.source_date_epoch as i64, 0);
        for d in [&upper, &work, &src] {
            fs_err::create_dir(d)?;
        }
        let home = stage.home();
        fs_err::create_dir_all(&home)?;
        for d in [&upper, &home] {
            fs_err::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
            std::os::unix::fs::lchown(d, Some(opts.owner.0), Some(opts.owner.1))
                .with_context(|| format!("cannot give {} to the build user", d.display()))?;
            filetime::set_file_times(d, mtime, mtime).with_context(|| format!("cannot date {}", d.display()))?;
        }
        Ok(stage)
    }

    /// Mounts the overlay at `src/` of a [`StageDir::skeleton`]: the kept
    /// `tree` below (an image is mounted read-only at `lower/` first), the
    /// build's writes in `upper/` above.
    pub fn mount_tree(&mut self, tree: Tree) -> Result<()> {
        use rustix::mount::{mount, MountFlags};
        let dir = self.path().to_owned();
        let (upper, work, src) = (dir.join("upper"), dir.join("work"), self.src());
        let src_in_tree = hermetic::SOURCE_DIR.trim_start_matches('/');
        let lower = match tree.form() {
            Form::Dir => tree.path().join(src_in_tree),
            Form::Image => {
                let at = dir.join("lower");
                fs_err::create_dir(&at)?;
                mount(tree.path(), &at, "erofs", MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID, None)
                    .with_context(|| format!("cannot mount the image {} at {}", tree.path().display(), at.display()))?;
                self.mounts.push(at.clone());
                at.join(src_in_tree)
            }
        };
        let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let options = std::ffi::CString::new(options).context("a stage path holds a NUL byte")?;
        mount("overlay", &src, "overlay", MountFlags::empty(), options.as_c_str())
            .with_context(|| format!("cannot mount an overlay of {} at {}", lower.display(), src.display()))?;
        self.mounts.push(src);
        self.tree = Some(tree);
        Ok(())
    }

    /// Evicts kept trees on a thread of its own; this directory waits for
    /// it before it goes.
    pub fn evict_meanwhile(&mut self, cache: TreeCache) {
        self.evicting = Some(std::thread::spawn(move || cache.evict()));
    }

    /// Where staging directories go by default: `builds/` in the cache
    /// directory.
    pub fn default_base() -> Result<PathBuf> {
        let dir = cache::dir().context(
            "neither XDG_CACHE_HOME nor HOME is set, so there is no cache directory to stage the sources in\n  hint: \
             set one, or give --stage-dir",
        )?;
        Ok(dir.join("builds"))
    }

    /// The staging directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// The staged sources, mounted at `/src`.
    pub fn src(&self) -> PathBuf {
        self.path().join(hermetic::SOURCE_DIR.trim_start_matches('/'))
    }

    /// The staged `HOME`.
    pub fn home(&self) -> PathBuf {
        self.path().join(hermetic::HOME.trim_start_matches('/'))
    }

    /// The bind mounts that put the staged tree where the build expects
    /// it: the sources at `src_at`, `HOME` at its place.
    pub fn mounts(&self, src_at: &str) -> Vec<Mount> {
        [(self.src(), src_at), (self.home(), hermetic::HOME)]
            .into_iter()
            .map(|(source, target)| Mount {
                source: MountSource::HostPath(source),
                target: target.to_owned(),
                read_only: false,
            })
            .collect()
    }

    /// Where [`PROBE`] goes, as a path in the container: in the staged
    /// `HOME`.
    pub fn probe(&self) -> String {
        format!("{}/{PROBE}", hermetic::HOME)
    }

    /// Puts [`PROBE`] in the staged `HOME`.
    pub fn place_probe(&self) -> Result<()> {
        fs_err::OpenOptions::new().write(true).create_new(true).open(self.home().join(PROBE))?;
        Ok(())
    }

    /// Takes [`PROBE`] away again, and gives `HOME` back its mtime.
    pub fn clear_probe(&self, mtime: u64) -> Result<()> {
        let t = filetime::FileTime::from_unix_time(mtime as i64, 0);
        let home = self.home();
        fs_err::remove_file(home.join(PROBE))?;
        filetime::set_file_times(&home, t, t).with_context(|| format!("cannot date {}", home.display()))
    }

    /// Mounts a small tmpfs at the empty `src/` of a
    /// [`StageDir::skeleton`], holding [`PROBE`]: an engine that sees this
    /// file at `/src` sees the mounts made here, as the overlay will be. So
    /// the engine can be asked before the tree is known, while it is read.
    pub fn place_mount_probe(&mut self) -> Result<()> {
        use rustix::mount::{mount, MountFlags};
        let src = self.src();
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        mount("tmpfs", &src, "tmpfs", flags, c"size=64k,mode=0755")
            .with_context(|| format!("cannot mount a tmpfs at {}", src.display()))?;
        self.mounts.push(src.clone());
        fs_err::write(src.join(PROBE), b"")?;
        Ok(())
    }

    /// Unmounts what [`StageDir::place_mount_probe`] mounted.
    pub fn clear_mount_probe(&mut self) -> Result<()> {
        let src = self.src();
        rustix::mount::unmount(&src, rustix::mount::UnmountFlags::DETACH)
            .with_context(|| format!("cannot unmount the tmpfs at {}", src.display()))?;
        self.mounts.retain(|m| *m != src);
        Ok(())
    }

    /// Removes the directory and everything the build wrote into it. A
    /// failure is logged with the path, never hidden.
    pub fn remove(mut self) {
        self.tear_down();
    }

    fn tear_down(&mut self) {
        if let Some(evicting) = self.evicting.take() {
            if evicting.join().is_err() {
                tracing::warn!("the thread evicting kept source trees panicked");
            }
        }
        let Some(dir) = self.dir.take() else { return };
        while let Some(at) = self.mounts.pop() {
            if let Err(e) = rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH) {
                // Removing the directory now would delete through the mount.
                let path = dir.keep();
                tracing::warn!(
                    "cannot unmount {}: {e}; remove it with `umount {} && rm -rf {}`",
                    at.display(),
                    at.display(),
                    path.display()
                );
                return;
            }
        }
        self.tree = None;
        remove_logged(dir);
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// Removes the overlaid staging directories of builds that were killed: a
/// live build holds its directory's lock.
fn sweep(base: &Path) {
    let Ok(entries) = fs_err::read_dir(base) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().as_bytes().starts_with(b"repro-run-") || !path.join("upper").is_dir() {
            continue;
        }
        let Some(lock) = trees::try_lock(&path) else { continue };
        let mut unmounted = true;
        for at in [path.join(hermetic::SOURCE_DIR.trim_start_matches('/')), path.join("lower")] {
            match rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH) {
                // EINVAL: not a mount point (any more); ENOENT: never made.
                Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    tracing::warn!("cannot unmount {}, left by a stopped build: {e}", at.display());
                    unmounted = false;
                }
            }
        }
        if unmounted {
            tracing::debug!("removing {}, left by a build that was stopped", path.display());
            trees::remove_logged(&path);
        }
        drop(lock);
    }
}

fn remove_logged(dir: tempfile::TempDir) {
    let path = dir.keep();
    let mut result = fs_err::remove_dir_all(&path);
    if result.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
        // A build may leave read-only directories; without root, their
        // contents cannot go until they are writable again.
        make_writable(&path);
        result = fs_err::remove_dir_all(&path);
    }
    match result {
        Ok(()) => tracing::debug!("removed the staging directory {}", path.display()),
        Err(err) => {
            tracing::warn!("could not remove the staging directory: {err}; remove it with `rm -rf {}`", path.display())
        }
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = fs_err::symlink_metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs_err::read_dir(dir) {
        for e in entries.flatten() {
            make_writable(&e.path());
        }
    }
}

/// Why this process cannot stage files for the build user `owner`, if
/// it cannot: only root, or a process of the build user's own ids, gives
/// the staged files to the build user.
pub fn cannot_stage_for(owner: (u32, u32)) -> Option<String> {
    let (uid, gid) = current_ids();
    if uid != 0 && (uid, gid) != owner {
        return Some(format!(
            "this process (uid {uid}, gid {gid}) cannot give the staged files to the build user {}:{}",
            owner.0, owner.1
        ));
    }
    None
}

fn current_ids() -> (u32, u32) {
    // The owner of a file this process creates: its filesystem uid and gid,
    // the last of the four ids on the `Uid:` and `Gid:` lines.
    let fs_id = |key| super::walk::own_status(key)?.split_whitespace().nth(3)?.parse().ok();
    (fs_id("Uid").unwrap_or(u32::MAX), fs_id("Gid").unwrap_or(u32::MAX))
}

/// Cached verdicts: can the engine behind this socket (by its identity)
/// see files staged in `base`?
pub fn cached_verdict(identity: &str, base: &Path) -> Option<bool> {
    JsonCache::<bool>::open("mounts.json").get(&format!("{identity} {}", base.display()))
}

/// Remembers a verdict (see [`cached_verdict`]).
pub fn remember_verdict(identity: &str, base: &Path, sees_files: bool) {
    JsonCache::<bool>::open("mounts.json").put(&format!("{identity} {}", base.display()), sees_files);
}

/// An output read straight from the staged `/src`, as a tar stream shaped
/// like the engine's archive of the same path (its last component is the
/// top entry). `None` when any component of `fetch` is a link (the build
/// made it, so it is resolved inside the container by the engine, never
/// here); `Some(Err)` when the output does not exist.
pub fn local_output(src: &Path, fetch: &str) -> Option<std::io::Result<pipe::Reader>> {
    let mut path = src.to_path_buf();
    let mut top = hermetic::SOURCE_DIR.trim_start_matches('/').to_owned();
    for c in Path::new(fetch).components() {
        let Component::Normal(name) = c else { return None };
        match fs_err::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return None,
            Err(e) => return Some(Err(e)),
        }
        path.push(name);
        top = name.to_string_lossy().into_owned();
    }
    match fs_err::symlink_metadata(&path) {
        Ok(m) if m.is_dir() || m.is_file() => {}
        Ok(_) => return None,
        Err(e) => return Some(Err(e)),
    }
    let top = Path::new(&top).to_path_buf();
    let (writer, reader) = pipe::pipe();
    std::thread::spawn(move || {
        let mut tar = tar::Builder::new(writer);
        let written = append_tree(&mut tar, &path, &top).and_then(|()| tar.into_inner()).and_then(|w| w.finish());
        match written {
            Ok(()) => {}
            // The extraction stopped first, and reports why.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
            // The extraction sees a truncated tar; this says what broke it.
            Err(err) => tracing::warn!("cannot read the output {}: {err}", path.display()),
        }
    });
    Some(Ok(reader))
}

/// Appends `path` as `name`, and everything under it, never following a
/// link: a link is stored as a link, a fifo or device node as itself (the
/// extraction skips those with a warning), a socket not at all.
fn append_tree(tar: &mut tar::Builder<pipe::Writer>, path: &Path, name: &Path) -> std::io::Result<()> {
    let meta = fs_err::symlink_metadata(path)?;
    let ft = meta.file_type();
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_size(0);
    if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut h, name, std::io::empty())?;
        let mut children: Vec<_> =
            fs_err::read_dir(path)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        children.sort();
        for child in children {
            append_tree(tar, &path.join(&child), &name.join(&child))?;
        }
    } else if ft.is_file() {
        let f = fs_err::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        tar.append_data(&mut h, name, f)?;
    } else if ft.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        let target = fs_err::read_link(path)?;
        super::walk::append_symlink(tar, &mut h, name, target.as_os_str().as_bytes())?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        let kind = if ft.is_fifo() {
            tar::EntryType::Fifo
        } else if ft.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        };
        h.set_entry_type(kind);
        tar.append_data(&mut h, name, std::io::empty())?;
    } else {
        tracing::warn!("{}: skipped, a socket is not an artifact", name.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    fn entries(reader: pipe::Reader) -> Vec<String> {
        let mut a = tar::Archive::new(reader);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| format!(" -> {}", l.display())).unwrap_or_default();
                format!("{:?} {}{link}", e.header().entry_type(), e.path().unwrap().display())
            })
            .collect()
    }

    #[test]
    fn local_outputs_are_tarred_like_the_engine_does_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs_err::create_dir_all(src.join("out/sub")).unwrap();
        fs_err::write(src.join("out/sub/a"), "a").unwrap();
        std::os::unix::fs::symlink("/etc", src.join("out/etc")).unwrap();
        std::os::unix::fs::symlink("/etc", src.join("evil")).unwrap();

        let listed = entries(local_output(&src, "out").unwrap().unwrap());
        assert_eq!(listed, ["Directory out", "Symlink out/etc -> /etc", "Directory out/sub", "Regular out/sub/a"]);
        let listed = entries(local_output(&src, "").unwrap().unwrap());
        assert_eq!(listed[0], "Directory src");
        // A file alone is its own top entry.
        let mut r = local_output(&src, "out/sub/a").unwrap().unwrap();
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).unwrap();
        assert_eq!(entries(pipe_of(bytes)), ["Regular a"]);
        // A path through a link the build made is the engine's to resolve.
        assert!(local_output(&src, "evil").is_none());
        assert!(local_output(&src, "evil/passwd").is_none());
        assert!(local_output(&src, "out/etc/passwd").is_none());
        // A missing output is an error that names it.
        let err = local_output(&src, "nope").unwrap().err().unwrap();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    fn pipe_of(bytes: Vec<u8>) -> pipe::Reader {
        let (mut w, r) = pipe::pipe();
        std::thread::spawn(move || {
            w.write_all(&bytes).unwrap();
            w.finish().unwrap();
        });
        r
    }

    #[test]
    fn the_ids_read_from_proc_are_those_a_new_file_gets() {
        let made = tempfile::tempfile().unwrap().metadata().unwrap();
        assert_eq!(current_ids(), (made.uid(), made.gid()));
    }

    #[test]
    fn a_stage_dir_is_removed_even_when_the_build_left_it_read_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().unwrap();
        let stage = StageDir::new(base.path()).unwrap();
        let path = stage.path().to_owned();
        fs_err::create_dir_all(path.join("src/ro")).unwrap();
        fs_err::write(path.join("src/ro/f"), "x").unwrap();
        fs_err::set_permissions(path.join("src/ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        stage.remove();
        assert!(!path.exists());
        assert!(base.path().exists());
    }
}

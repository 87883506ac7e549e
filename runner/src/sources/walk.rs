//! The project's files → a normalised tar for `/src`.
//!
//! The build must see the same tree on every machine, so the tar is made
//! canonical: entries sorted by path bytes, every mtime = SOURCE_DATE_EPOCH,
//! owner = the build user, modes reduced to 0755 (anything executable, and
//! directories) or 0644. `.gitignore`, `.ignore` and `.git/info/exclude` are
//! respected, `.git` itself is left out, and so are the paths passed as
//! `exclude` (the output directory and the record, when they sit inside the
//! project). The tar also creates the build user's empty `HOME`.
//!
//! The tar is uploaded through the engine ([`build`]). Or the same entries
//! are written as files into a staging directory that is bind-mounted
//! ([`stage`]; see [`super::staging`]), or as an EROFS image kept for later
//! builds ([`image`]; see [`super::trees`]), or only digested ([`digest()`]).
//! Those three make no tar: each file is read once and its entry handed to
//! [`digest::TreeBuilder`], which gives the digest of the tar that would
//! hold it. All four give the same digest for the same tree (the tests
//! compare them).

use std::io::{BufWriter, Read, Seek as _, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::{Context as _, Result};
use repro_run_core::digest::{self, Digest, TreeKind};
use repro_run_core::erofs;
use repro_run_core::hermetic;

use super::direct::DirectWriter;

/// A finished source tar on disk.
pub struct SourceTar {
    /// The tar file (deleted on drop).
    pub file: tempfile::NamedTempFile,
    /// `repro-tree-v1` (artifact variant) of the tar's content.
    pub digest: Digest,
    /// Number of files, links and directories under `src/`.
    pub entries: usize,
}

/// What goes into the source tar, and how it is stamped.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// The project directory whose files go in.
    pub root: PathBuf,
    /// Absolute paths left out (the output directory, the record, the log,
    /// the stage directory).
    pub exclude_paths: Vec<PathBuf>,
    /// gitignore-style patterns left out (`[source] exclude`).
    pub exclude_patterns: Vec<String>,
    /// The mtime of every entry.
    pub source_date_epoch: u64,
    /// Owner of every entry under `src/` and of `HOME`.
    pub owner: (u32, u32),
    /// Where the sources are in the container: `/src`, or elsewhere under
    /// `verify --vary build-path`. Kept trees and stage directories keep
    /// their own layout (`src/`); only the mounts and an upload follow it.
    pub dir: String,
}

/// Builds the normalised tar of the sources in a temporary file, for an
/// upload.
pub fn build(opts: &SourceOptions) -> Result<SourceTar> {
    let Walked { root, paths } = walk_sources(opts)?;
    let mut file = tempfile::Builder::new()
        .prefix("repro-run-src-")
        .suffix(".tar")
        .tempfile()
        .context("cannot create a temporary file for the source tar")?;
    let (out, Count { entries, .. }) = write_tree(&root, &paths, opts, BufWriter::new(file.as_file_mut()))?;
    out.into_inner().map_err(|e| e.into_error()).context("cannot finish the source tar")?;

    let f = file.as_file_mut();
    f.seek(SeekFrom::Start(0)).context("cannot rewind the source tar")?;
    let digest = digest::digest_tar(std::io::BufReader::new(&*f), TreeKind::Artifacts)
        .context("cannot digest the source tar")?;
    Ok(SourceTar { file, digest, entries })
}

/// A tar holding each `(host file, path in the container)`, for files
/// that a container gets by upload instead of a mount: owned by root,
/// mode and bytes as on this machine, the parent directories 0755.
pub fn tar_of_files(files: &[(PathBuf, String)]) -> Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut tar = tar::Builder::new(Vec::new());
    for (host, target) in files {
        let name = Path::new(target.trim_start_matches('/'));
        let mut parents: Vec<&Path> = name.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()).collect();
        parents.reverse();
        for p in parents {
            append_dir(&mut tar, p, (0, 0), 0)?;
        }
        let bytes = fs_err::read(host)?;
        let mode = fs_err::metadata(host)?.permissions().mode() & 0o7777;
        let mut h = header(tar::EntryType::Regular, mode, 0, (0, 0));
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, name, bytes.as_slice())
            .with_context(|| format!("cannot add {} to a tar", host.display()))?;
    }
    tar.into_inner().context("cannot finish a tar")
}

/// What staging (or only reading) the sources found.
pub struct Staged {
    /// `repro-tree-v1` (artifact variant) of the normalised tar: the same
    /// digest [`build`] gives for the same tree.
    pub digest: Digest,
    /// Number of files, links and directories under `src/`.
    pub entries: usize,
    /// The files' bytes, in all.
    pub bytes: u64,
}

/// The sources' paths, walked once: what [`digest()`] and [`image`] read.
pub struct Walked {
    root: PathBuf,
    paths: Vec<(PathBuf, Kind)>,
}

/// Walks the sources (sorted, with the ignore files and excludes applied).
pub fn walk_sources(opts: &SourceOptions) -> Result<Walked> {
    let root = fs_err::canonicalize(&opts.root)?;
    let mut paths = walk(&root, &opts.exclude_paths, &opts.exclude_patterns)?;
    paths.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    Ok(Walked { root, paths })
}

/// The parent of `HOME` in the tar (`home`, owned by root; `HOME` itself
/// is the build user's).
pub(crate) fn home_parent() -> &'static Path {
    let home = hermetic::HOME.trim_start_matches('/');
    Path::new(home.split('/').next().unwrap_or("home"))
}

/// A source file's mode in the tree: 0755 if any execute bit is set, else
/// 0644.
fn tree_mode(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// A fingerprint of the walked sources as they stand on disk: each path
/// with its inode's identity, size, mode, mtime and ctime (which any write
/// changes), and the owner and mtime the tree is stamped with. Reading no
/// file, it costs one `lstat` per entry. It only guesses: the same
/// fingerprint almost surely means the same content, but builds still read
/// and digest the sources ([`super::trees::TreeCache::expected`]).
pub fn fingerprint(opts: &SourceOptions, walked: &Walked) -> Result<Digest> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    // Gathered, then hashed at once: faster than 10,000 small updates.
    let mut h = Vec::with_capacity(walked.paths.len() * 96);
    h.extend_from_slice(b"repro-run source fingerprint 1\0");
    h.extend_from_slice(walked.root.as_os_str().as_bytes());
    h.extend_from_slice(&opts.source_date_epoch.to_le_bytes());
    h.extend_from_slice(&opts.owner.0.to_le_bytes());
    h.extend_from_slice(&opts.owner.1.to_le_bytes());
    // Each name is looked up in its directory, opened once for a run of
    // its entries: half the time of a lookup from the root.
    let mut dir: Option<(&Path, rustix::fd::OwnedFd)> = None;
    for (rel, _) in &walked.paths {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = match &dir {
            Some((p, fd)) if *p == parent => fd,
            _ => {
                let path = walked.root.join(parent);
                let fd = rustix::fs::open(&path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .with_context(|| format!("cannot open the source directory {}", path.display()))?;
                &dir.insert((parent, fd)).1
            }
        };
        let name = rel.file_name().unwrap_or(rel.as_os_str());
        let st = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .with_context(|| format!("cannot stat the source {}", walked.root.join(rel).display()))?;
        h.push(0);
        h.extend_from_slice(rel.as_os_str().as_bytes());
        h.push(0);
        for n in [st.st_dev, st.st_ino, st.st_size as u64, u64::from(st.st_mode)] {
            h.extend_from_slice(&n.to_le_bytes());
        }
        for n in [st.st_mtime, st.st_mtime_nsec as i64, st.st_ctime, st.st_ctime_nsec as i64] {
            h.extend_from_slice(&n.to_le_bytes());
        }
    }
    Ok(Digest::of_bytes(&h))
}

/// The digest of the normalised tar of the sources, with its number of
/// entries and bytes, without writing the tar or the files anywhere: the key
/// under which an unchanged tree is found again ([`super::trees`]).
pub fn digest(opts: &SourceOptions, walked: &Walked) -> Result<Staged> {
    read(opts, walked, Sink::Nowhere)
}

/// Writes the normalised tree of the sources as an EROFS image to `out`
/// ([`repro_run_core::erofs`]; the tar's `home/` and `src/` are its top
/// directories, written with direct I/O, [`DirectWriter`]), and digests it
/// meanwhile.
pub fn image(opts: &SourceOptions, walked: &Walked, out: fs_err::File) -> Result<Staged> {
    let top = erofs::Meta { mode: 0o755, uid: 0, gid: 0, mtime: opts.source_date_epoch };
    let out = DirectWriter::new(out)?;
    tracing::debug!(
        "writing the image of the sources {}",
        if out.is_direct() { "directly" } else { "through the page cache" }
    );
    let image = erofs::ImageWriter::new(out, top)?;
    read(opts, walked, Sink::Image(Box::new(Imager { image, mtime: opts.source_date_epoch })))
}

/// Writes the normalised tree of the sources into the empty directory `dest`,
/// as `dest/src` and `dest/home/build`, with the owners, modes and mtimes
/// the tar would give them, and digests it meanwhile.
pub fn stage(opts: &SourceOptions, dest: &Path) -> Result<Staged> {
    let walked = walk_sources(opts)?;
    let (to_stager, todo) = std::sync::mpsc::sync_channel::<Op>(64);
    let stager = Stager::new(dest, opts);
    std::thread::scope(|s| {
        let staging = s.spawn(move || stager.run(todo));
        let read = read(opts, &walked, Sink::Stage(to_stager));
        let staged = staging.join().map_err(|_| anyhow::anyhow!("the staging thread panicked"))?;
        // The staging thread's error explains why the others stopped.
        staged?;
        read
    })
}

/// Reads each source file once, on this thread, and hands the entries, in
/// the tar's order, to a thread that digests them and passes them on to
/// `sink`. The digest is the one [`build`]'s tar gets, without making the
/// tar: the entries go to [`digest::TreeBuilder`] as they are.
fn read(opts: &SourceOptions, walked: &Walked, sink: Sink) -> Result<Staged> {
    let (ops, todo) = std::sync::mpsc::sync_channel::<Op>(64);
    std::thread::scope(|s| {
        let taker = s.spawn(move || take(todo, opts.owner, sink));
        let read = send_entries(walked, ops);
        let digest = taker.join().map_err(|_| anyhow::anyhow!("the source digest thread panicked"))?;
        // The taking thread's error explains why this one could not hand
        // it more.
        let digest = digest?;
        let Count { entries, bytes } = read?;
        Ok(Staged { digest, entries, bytes })
    })
}

/// Reads the walked sources and sends them to `ops`: the tar's three top
/// directories, then the entries under `src/`.
fn send_entries(walked: &Walked, ops: SyncSender<Op>) -> Result<Count> {
    let stopped = || anyhow::anyhow!("the source digest thread stopped");
    let send = |op: Op| ops.send(op).map_err(|_| stopped());
    let src = Path::new(hermetic::SOURCE_DIR.trim_start_matches('/'));
    send(Op::PlainDir(home_parent().to_owned()))?;
    send(Op::Dir(PathBuf::from(hermetic::HOME.trim_start_matches('/'))))?;
    send(Op::Dir(src.to_owned()))?;
    let mut entries = 0;
    let mut bytes = 0;
    for (rel, kind) in &walked.paths {
        if crate::signal::stop_requested() {
            return Err(crate::exit::Interrupted.into());
        }
        let abs = walked.root.join(rel);
        let name = src.join(rel);
        match kind {
            Kind::Dir => send(Op::Dir(name))?,
            Kind::Symlink => send(Op::Symlink(name, fs_err::read_link(&abs)?))?,
            Kind::File => {
                let mut f = fs_err::File::open(&abs)?;
                let meta = f.metadata()?;
                let mode = tree_mode(&meta);
                let size = meta.len();
                bytes += size;
                let changed = || format!("{} changed while it was read: build again", abs.display());
                if size <= SMALL_FILE {
                    let mut buf = vec![0; size as usize];
                    f.read_exact(&mut buf).with_context(changed)?;
                    send(Op::File(name, mode, buf))?;
                } else {
                    send(Op::Open(name, mode, size))?;
                    let mut left = size;
                    while left > 0 {
                        let mut buf = vec![0; left.min(SMALL_FILE) as usize];
                        f.read_exact(&mut buf).with_context(changed)?;
                        left -= buf.len() as u64;
                        send(Op::Data(buf))?;
                    }
                    send(Op::Close)?;
                }
            }
        }
        entries += 1;
    }
    Ok(Count { entries, bytes })
}

/// Where the entries go besides the digest.
enum Sink {
    /// Nowhere: only the digest is wanted.
    Nowhere,
    Image(Box<Imager>),
    /// On to the thread that stages the files.
    Stage(SyncSender<Op>),
}

/// Digests the entries from `todo` and passes them on to `sink`, until the
/// sender is gone.
fn take(todo: Receiver<Op>, owner: (u32, u32), mut sink: Sink) -> Result<Digest> {
    let mut tree = digest::TreeBuilder::new(TreeKind::Artifacts);
    let ids = (u64::from(owner.0), u64::from(owner.1));
    let mut open: Option<(Vec<u8>, u32, u64, blake3::Hasher)> = None;
    for op in todo {
        match &op {
            Op::PlainDir(name) => tree.dir(bytes(name), 0o755, 0, 0)?,
            Op::Dir(name) => tree.dir(bytes(name), 0o755, ids.0, ids.1)?,
            Op::Symlink(name, target) => tree.symlink(bytes(name), bytes(target), ids.0, ids.1)?,
            Op::File(name, mode, data) => tree.file(bytes(name), *mode, ids, data.len() as u64, blake3::hash(data))?,
            Op::Open(name, mode, size) => open = Some((bytes(name).to_vec(), *mode, *size, blake3::Hasher::new())),
            Op::Data(data) => {
                open.as_mut().context("source data without a file")?.3.update(data);
            }
            Op::Close => {
                let (name, mode, size, hasher) = open.take().context("a source file closed twice")?;
                tree.file(&name, mode, ids, size, hasher.finalize())?;
            }
        }
        match &mut sink {
            Sink::Nowhere => {}
            Sink::Image(imager) => imager.take(&op, owner)?,
            Sink::Stage(to) => to.send(op).map_err(|_| anyhow::anyhow!("the staging thread stopped"))?,
        }
    }
    if let Sink::Image(imager) = sink {
        imager.finish()?;
    }
    Ok(tree.finish()?)
}

/// A path's bytes, as the tar and the image hold them.
fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// Writes the entries into an EROFS image.
struct Imager {
    image: erofs::ImageWriter<DirectWriter>,
    mtime: u64,
}

impl Imager {
    fn take(&mut self, op: &Op, (uid, gid): (u32, u32)) -> Result<()> {
        let meta = |mode: u16, (uid, gid)| erofs::Meta { mode, uid, gid, mtime: self.mtime };
        let image = &mut self.image;
        match op {
            Op::PlainDir(name) => image.dir(bytes(name), meta(0o755, (0, 0)))?,
            Op::Dir(name) => image.dir(bytes(name), meta(0o755, (uid, gid)))?,
            Op::Symlink(name, target) => image.symlink(bytes(name), bytes(target), meta(0o777, (uid, gid)))?,
            Op::File(name, mode, data) => image.file(bytes(name), meta(*mode as u16, (uid, gid)), data)?,
            Op::Open(name, mode, size) => image.begin_file(bytes(name), meta(*mode as u16, (uid, gid)), *size)?,
            Op::Data(data) => image.append(data)?,
            Op::Close => image.end_file()?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let out = self.image.finish().context("cannot write the image of the sources")?;
        out.finish().context("cannot write the image of the sources")?;
        Ok(())
    }
}

/// What [`write_tree`] wrote.
struct Count {
    /// Files, links and directories under `src/`.
    entries: usize,
    /// The files' bytes.
    bytes: u64,
}

/// Writes the normalised tar of `paths` (relative to `root`, sorted) to
/// `out`.
fn write_tree<W: Write>(root: &Path, paths: &[(PathBuf, Kind)], opts: &SourceOptions, out: W) -> Result<(W, Count)> {
    let mut tar = tar::Builder::new(out);
    let mtime = opts.source_date_epoch;
    let owner = opts.owner;
    append_dir(&mut tar, home_parent(), (0, 0), mtime)?;
    append_dir(&mut tar, Path::new(hermetic::HOME.trim_start_matches('/')), owner, mtime)?;
    let src = Path::new(opts.dir.trim_start_matches('/'));
    // The parents of a deeper source directory are root's, as `/` is.
    for parent in src.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()).collect::<Vec<_>>().into_iter().rev() {
        append_dir(&mut tar, parent, (0, 0), mtime)?;
    }
    append_dir(&mut tar, src, owner, mtime)?;

    let mut entries = 0;
    let mut bytes = 0;
    for (rel, kind) in paths {
        if crate::signal::stop_requested() {
            return Err(crate::exit::Interrupted.into());
        }
        let abs = root.join(rel);
        let name = src.join(rel);
        match kind {
            Kind::Dir => append_dir(&mut tar, &name, owner, mtime)?,
            Kind::Symlink => {
                let target = fs_err::read_link(&abs)?;
                let mut h = header(tar::EntryType::Symlink, 0o777, mtime, owner);
                append_symlink(&mut tar, &mut h, &name, target.as_os_str().as_bytes())
                    .with_context(|| format!("cannot add the link {} to the source tar", abs.display()))?;
            }
            Kind::File => {
                let f = fs_err::File::open(&abs)?;
                let meta = f.metadata()?;
                let mut h = header(tar::EntryType::Regular, tree_mode(&meta), mtime, owner);
                h.set_size(meta.len());
                bytes += meta.len();
                tar.append_data(&mut h, &name, f)
                    .with_context(|| format!("cannot add {} to the sources", abs.display()))?;
            }
        }
        entries += 1;
    }
    let out = tar.into_inner().context("cannot finish the source tar")?;
    Ok((out, Count { entries, bytes }))
}

/// The entries of the sources, in the tar's order.
enum Op {
    /// A directory owned by root (the parent of `HOME`).
    PlainDir(PathBuf),
    /// A directory of the build user.
    Dir(PathBuf),
    Symlink(PathBuf, PathBuf),
    /// A whole small file.
    File(PathBuf, u32, Vec<u8>),
    /// A large file of a mode and size: opened, written in pieces, closed.
    Open(PathBuf, u32, u64),
    Data(Vec<u8>),
    Close,
}

/// Files up to this size are read whole and handed on in one piece; larger
/// ones go in pieces of this size.
const SMALL_FILE: u64 = 1 << 20;

/// Writes staged entries under `dir`, stamped like the tar's.
struct Stager {
    dir: PathBuf,
    owner: (u32, u32),
    mtime: filetime::FileTime,
    /// This process's umask, or `None` when unknown.
    umask: Option<u32>,
    /// Directories, stamped last (writing into one changes its mtime).
    dirs: Vec<PathBuf>,
    /// The large file being written.
    open: Option<fs_err::File>,
}

impl Stager {
    fn new(dir: &Path, opts: &SourceOptions) -> Stager {
        Stager {
            dir: dir.to_owned(),
            owner: opts.owner,
            mtime: filetime::FileTime::from_unix_time(opts.source_date_epoch as i64, 0),
            umask: current_umask(),
            dirs: Vec::new(),
            open: None,
        }
    }

    /// Writes one entry.
    fn take(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::PlainDir(name) => fs_err::create_dir(self.dir.join(name))?,
            Op::Dir(name) => self.make_dir(name)?,
            Op::Symlink(name, target) => self.symlink(name, target)?,
            Op::File(name, mode, data) => {
                let mut f = self.file(name, *mode)?;
                f.write_all(data)?;
                self.stamp(&f)?;
            }
            Op::Open(name, mode, _) => self.open = Some(self.file(name, *mode)?),
            Op::Data(data) => self.open.as_mut().context("staged data without a file")?.write_all(data)?,
            Op::Close => {
                let f = self.open.take().context("staged close without a file")?;
                self.stamp(&f)?;
            }
        }
        Ok(())
    }

    /// Writes the entries from `todo` until the sender is gone.
    fn run(mut self, todo: Receiver<Op>) -> Result<()> {
        for op in todo {
            self.take(&op)?;
        }
        self.finish()
    }

    /// Dates the directories, now that nothing more is written into them.
    fn finish(self) -> Result<()> {
        for d in self.dirs.iter().rev() {
            filetime::set_file_times(d, self.mtime, self.mtime)
                .with_context(|| format!("cannot date {}", d.display()))?;
        }
        Ok(())
    }

    fn give(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(self.owner.0), Some(self.owner.1))
            .with_context(|| format!("cannot give {} to the build user", path.display()))
    }

    fn make_dir(&mut self, name: &Path) -> Result<()> {
        let path = self.dir.join(name);
        fs_err::create_dir(&path)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        self.give(&path)?;
        self.dirs.push(path);
        Ok(())
    }

    fn symlink(&self, name: &Path, target: &Path) -> Result<()> {
        let path = self.dir.join(name);
        std::os::unix::fs::symlink(target, &path)
            .with_context(|| format!("cannot create the symlink {}", path.display()))?;
        self.give(&path)?;
        filetime::set_symlink_file_times(&path, self.mtime, self.mtime)
            .with_context(|| format!("cannot date {}", path.display()))
    }

    fn file(&self, name: &Path, mode: u32) -> Result<fs_err::File> {
        use fs_err::os::unix::fs::OpenOptionsExt as _;
        let path = self.dir.join(name);
        let f = fs_err::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path)?;
        if self.umask.is_none_or(|m| m & mode != 0) {
            // The umask took bits away.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        std::os::unix::fs::fchown(f.file(), Some(self.owner.0), Some(self.owner.1))
            .with_context(|| format!("cannot give {} to the build user", path.display()))?;
        Ok(f)
    }

    fn stamp(&self, f: &fs_err::File) -> Result<()> {
        filetime::set_file_handle_times(f.file(), Some(self.mtime), Some(self.mtime))
            .with_context(|| format!("cannot date {}", f.path().display()))
    }
}

/// The umask, from `/proc/self/status` (reading it through `umask(2)` would
/// mean setting it).
fn current_umask() -> Option<u32> {
    u32::from_str_radix(&own_status("Umask")?, 8).ok()
}

/// The value of `key` in `/proc/self/status`, trimmed.
pub(crate) fn own_status(key: &str) -> Option<String> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    Some(value.trim().to_owned())
}

/// What a walked path is.
#[derive(Clone, Copy)]
enum Kind {
    Dir,
    File,
    Symlink,
}

fn walk(root: &Path, exclude: &[PathBuf], patterns: &[String]) -> Result<Vec<(PathBuf, Kind)>> {
    let exclude: Vec<PathBuf> = exclude.to_vec();
    // Overrides are whitelists; a `!` turns a pattern into an exclusion.
    let mut overrides = ignore::overrides::OverrideBuilder::new(root);
    for p in patterns {
        overrides.add(&format!("!{p}")).with_context(|| format!("source.exclude `{p}` is not a valid pattern"))?;
    }
    let overrides = overrides.build().context("source.exclude has an invalid pattern")?;
    let walker = ignore::WalkBuilder::new(root)
        .overrides(overrides)
        .hidden(false)
        .parents(false)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(move |e| e.file_name() != ".git" && !exclude.iter().any(|x| x == e.path()))
        .build();
    let mut out = Vec::new();
    for entry in walker {
        if crate::signal::stop_requested() {
            return Err(crate::exit::Interrupted.into());
        }
        let entry = entry.with_context(|| format!("cannot read the project directory {}", root.display()))?;
        if entry.depth() == 0 {
            continue;
        }
        let rel = entry.path().strip_prefix(root).context("walked outside the project")?.to_owned();
        let Some(ft) = entry.file_type() else { continue };
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            tracing::warn!("skipping {}: not a file, directory or symlink", entry.path().display());
            continue;
        };
        out.push((rel, kind));
    }
    Ok(out)
}

pub(super) fn header(kind: tar::EntryType, mode: u32, mtime: u64, (uid, gid): (u32, u32)) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_size(0);
    h
}

/// Appends a symlink whose target is kept byte for byte. (`tar`'s own
/// `append_link` normalises the target as a path: `/` would become `//`.)
/// A target over 100 bytes goes in a GNU long-link entry first.
pub fn append_symlink<W: Write>(
    tar: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &Path,
    target: &[u8],
) -> std::io::Result<()> {
    const FIELD: usize = 100;
    if target.len() > FIELD {
        let mut long = tar::Header::new_gnu();
        if let Some(gnu) = long.as_gnu_mut() {
            gnu.name[..13].copy_from_slice(b"././@LongLink");
        }
        long.set_entry_type(tar::EntryType::GNULongLink);
        long.set_mode(0o644);
        long.set_uid(0);
        long.set_gid(0);
        long.set_mtime(0);
        long.set_size(target.len() as u64 + 1);
        long.set_cksum();
        tar.append(&long, target.chain(&[0u8][..]))?;
        h.set_link_name_literal(&target[..FIELD])?;
    } else {
        h.set_link_name_literal(target)?;
    }
    h.set_size(0);
    tar.append_data(h, name, std::io::empty())
}

fn append_dir<W: std::io::Write>(tar: &mut tar::Builder<W>, name: &Path, owner: (u32, u32), mtime: u64) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, mtime, owner);
    tar.append_data(&mut h, name, std::io::empty())
        .with_context(|| format!("cannot add the directory {} to the source tar", name.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(tar: &SourceTar) -> Vec<String> {
        let mut f = fs_err::File::open(tar.file.path()).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                format!(
                    "{} {:o} {}:{} {}",
                    e.path().unwrap().display(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn tar_is_sorted_owned_and_dated_and_respects_ignores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs_err::write(p.join("b.c"), "int main;").unwrap();
        fs_err::create_dir(p.join("a")).unwrap();
        fs_err::write(p.join("a/run.sh"), "#!/bin/sh").unwrap();
        fs_err::set_permissions(p.join("a/run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
        fs_err::write(p.join(".gitignore"), "*.o\n").unwrap();
        fs_err::write(p.join("x.o"), "obj").unwrap();
        fs_err::create_dir(p.join(".git")).unwrap();
        fs_err::write(p.join(".git/HEAD"), "ref").unwrap();
        fs_err::create_dir(p.join("repro-out")).unwrap();
        std::os::unix::fs::symlink("b.c", p.join("link")).unwrap();

        fs_err::write(p.join("notes.log"), "x").unwrap();
        let canon = p.canonicalize().unwrap();
        let excluded = [canon.join("repro-out")];
        let patterns = ["*.log".to_owned()];
        let opts = SourceOptions {
            root: p.to_owned(),
            exclude_paths: excluded.to_vec(),
            exclude_patterns: patterns.to_vec(),
            source_date_epoch: 1234,
            owner: (1000, 1000),
            dir: hermetic::SOURCE_DIR.to_owned(),
        };
        let tar = build(&opts).unwrap();
        insta::assert_snapshot!(listing(&tar).join("\n"), @r"
        home 755 0:0 1234
        home/build 755 1000:1000 1234
        src 755 1000:1000 1234
        src/.gitignore 644 1000:1000 1234
        src/a 755 1000:1000 1234
        src/a/run.sh 755 1000:1000 1234
        src/b.c 644 1000:1000 1234
        src/link 777 1000:1000 1234
        ");
        assert_eq!(tar.entries, 5);
        // The same tree gives the same digest.
        assert_eq!(tar.digest, build(&opts).unwrap().digest);
    }

    /// A project with the odd cases: an executable, a file larger than
    /// SMALL_FILE, links to `/`, to `a//b/` and over 100 bytes, an ignored
    /// file. Owned by this process, so that the tests need no root.
    fn odd_project() -> (tempfile::TempDir, SourceOptions, Vec<u8>, String) {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs_err::create_dir_all(p.join("a/b")).unwrap();
        fs_err::write(p.join("a/b/small.c"), "int x;").unwrap();
        fs_err::write(p.join("a/run.sh"), "#!/bin/sh").unwrap();
        fs_err::set_permissions(p.join("a/run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
        // Larger than SMALL_FILE: goes through in pieces.
        let big: Vec<u8> = (0..(SMALL_FILE as usize * 2 + 5)).map(|i| (i % 253) as u8).collect();
        fs_err::write(p.join("big.bin"), &big).unwrap();
        std::os::unix::fs::symlink("a/b/small.c", p.join("link")).unwrap();
        // Targets kept byte for byte, however odd or long.
        std::os::unix::fs::symlink("/", p.join("root")).unwrap();
        std::os::unix::fs::symlink("a//b/", p.join("odd")).unwrap();
        let long = format!("{}/end", "x".repeat(150));
        std::os::unix::fs::symlink(&long, p.join("long")).unwrap();
        fs_err::write(p.join(".gitignore"), "*.o\n").unwrap();
        fs_err::write(p.join("x.o"), "obj").unwrap();
        let me = tempfile::tempfile().unwrap().metadata().unwrap();
        let opts = SourceOptions {
            root: p.to_owned(),
            exclude_paths: Vec::new(),
            exclude_patterns: Vec::new(),
            source_date_epoch: 1_700_000_000,
            owner: (me.uid(), me.gid()),
            dir: hermetic::SOURCE_DIR.to_owned(),
        };
        (dir, opts, big, long)
    }

    /// The image of a tree, mounted, is the tar: same digest, same bytes.
    #[test]
    #[ignore = "needs root, to mount the image, and fsck.erofs"]
    fn an_image_of_the_sources_mounts_as_the_tar() {
        let (dir, opts, big, long) = odd_project();
        std::os::unix::fs::symlink("..", dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"))).unwrap();
        for d in 0..3 {
            for f in 0..400 {
                fs_err::create_dir_all(dir.path().join(format!("many/d{d}"))).unwrap();
                fs_err::write(dir.path().join(format!("many/d{d}/file-{f:04}.txt")), f.to_string()).unwrap();
            }
        }
        let tar = build(&opts).unwrap();
        let work = tempfile::tempdir().unwrap();
        let img = work.path().join("src.erofs");
        let walked = walk_sources(&opts).unwrap();
        let staged = image(&opts, &walked, fs_err::File::create(&img).unwrap()).unwrap();
        assert_eq!((&staged.digest, staged.entries), (&tar.digest, tar.entries));
        let mnt = work.path().join("mnt");
        fs_err::create_dir(&mnt).unwrap();
        rustix::mount::mount(&img, &mnt, "erofs", rustix::mount::MountFlags::RDONLY, None).unwrap();
        let seen = (
            digest::digest_dir(&mnt, TreeKind::Artifacts).unwrap(),
            fs_err::read(mnt.join("src/big.bin")).unwrap(),
            fs_err::read_link(mnt.join("src/long")).unwrap(),
            fs_err::read_to_string(mnt.join("src/many/d2/file-0399.txt")).unwrap(),
        );
        rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty()).unwrap();
        // erofs-utils' own checker agrees (scripts/engine-up installs it).
        let fsck = std::process::Command::new("fsck.erofs").arg(&img).output().expect("fsck.erofs (erofs-utils) runs");
        assert!(fsck.status.success(), "fsck.erofs: {}", String::from_utf8_lossy(&fsck.stderr));
        assert_eq!(seen.0, tar.digest, "the mounted image is the tar");
        assert_eq!(seen.1, big);
        assert_eq!(seen.2, Path::new(&long));
        assert_eq!(seen.3, "399");
    }

    #[test]
    fn a_fingerprint_changes_with_any_write_and_with_the_place() {
        let (dir, opts, _, _) = odd_project();
        let print = |opts: &SourceOptions| fingerprint(opts, &walk_sources(opts).unwrap()).unwrap();
        let first = print(&opts);
        assert_eq!(print(&opts), first, "nothing changed");
        // The same bytes written again: the content is the same, the
        // fingerprint is not (a write changes the ctime).
        let small = dir.path().join("a/b/small.c");
        let text = fs_err::read(&small).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs_err::write(&small, &text).unwrap();
        let rewritten = print(&opts);
        assert_ne!(rewritten, first);
        // A copy elsewhere is another set of files.
        let copy = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", dir.path().display()))
            .arg(copy.path())
            .status();
        assert!(status.unwrap().success());
        let elsewhere = SourceOptions { root: copy.path().to_owned(), ..opts.clone() };
        assert_ne!(print(&elsewhere), rewritten);
        assert_eq!(
            digest(&elsewhere, &walk_sources(&elsewhere).unwrap()).unwrap().digest,
            digest(&opts, &walk_sources(&opts).unwrap()).unwrap().digest,
            "while the digest is the same"
        );
        let later = SourceOptions { source_date_epoch: opts.source_date_epoch + 1, ..opts.clone() };
        assert_ne!(print(&later), rewritten, "the stamp counts");
    }

    #[test]
    fn a_staged_tree_is_the_tar_unpacked() {
        use std::os::unix::fs::MetadataExt as _;
        let (_dir, opts, big, long) = odd_project();
        let me = tempfile::tempfile().unwrap().metadata().unwrap();
        let tar = build(&opts).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let staged = stage(&opts, dest.path()).unwrap();
        assert_eq!(staged.digest, tar.digest);
        assert_eq!(staged.entries, tar.entries);
        // What is on disk is what the tar holds.
        assert_eq!(digest::digest_dir(dest.path(), TreeKind::Artifacts).unwrap(), tar.digest);
        assert_eq!(fs_err::read(dest.path().join("src/big.bin")).unwrap(), big);
        assert!(!dest.path().join("src/x.o").exists());
        for (rel, mode) in [
            ("src", 0o755),
            ("src/a", 0o755),
            ("src/a/run.sh", 0o755),
            ("src/a/b/small.c", 0o644),
            ("home/build", 0o755),
        ] {
            let m = fs_err::symlink_metadata(dest.path().join(rel)).unwrap();
            assert_eq!((m.mode() & 0o7777, m.mtime(), m.uid()), (mode, 1_700_000_000, me.uid()), "{rel}");
        }
        let link = fs_err::symlink_metadata(dest.path().join("src/link")).unwrap();
        assert_eq!(link.mtime(), 1_700_000_000);
        assert_eq!(fs_err::read_link(dest.path().join("src/link")).unwrap(), Path::new("a/b/small.c"));
        let mut a = tar::Archive::new(fs_err::File::open(tar.file.path()).unwrap());
        let mut in_tar = std::collections::BTreeMap::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            if let Some(l) = e.link_name_bytes() {
                in_tar.insert(e.path().unwrap().display().to_string(), String::from_utf8(l.into_owned()).unwrap());
            }
        }
        for (name, target) in [("root", "/"), ("odd", "a//b/"), ("long", long.as_str())] {
            assert_eq!(in_tar[&format!("src/{name}")], target, "in the tar");
            assert_eq!(fs_err::read_link(dest.path().join("src").join(name)).unwrap(), Path::new(target), "staged");
        }
    }
}

//! The project's files → a normalised tar for `/src`.
//!
//! The build must see the same tree on every machine, so the tar is made
//! canonical: entries sorted by path bytes, every mtime = SOURCE_DATE_EPOCH,
//! owner = the build user, modes reduced to 0755 (anything executable, and
//! directories) or 0644. `.gitignore`, `.ignore` and `.git/info/exclude` are
//! respected, `.git` itself is left out, and so are the paths passed as
//! `exclude` (the output directory and the record, when they sit inside the
//! project). The tar also creates the build user's empty `HOME`.

use std::io::{BufWriter, Seek as _, SeekFrom};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use repro_run_core::digest::{self, Digest, TreeKind};
use repro_run_core::hermetic;

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
pub struct SourceOptions<'a> {
    /// Absolute paths left out (the output directory, the record, the log).
    pub exclude_paths: &'a [PathBuf],
    /// gitignore-style patterns left out (`[source] exclude`).
    pub exclude_patterns: &'a [String],
    /// The mtime of every entry.
    pub source_date_epoch: u64,
    /// Owner of every entry under `src/` and of `HOME`.
    pub owner: (u32, u32),
}

/// Builds the normalised tar of `root`.
pub fn build(root: &Path, opts: &SourceOptions<'_>) -> Result<SourceTar> {
    let root = fs_err::canonicalize(root)?;
    let mut paths = walk(&root, opts.exclude_paths, opts.exclude_patterns)?;
    paths.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));

    let mut file = tempfile::Builder::new()
        .prefix("repro-run-src-")
        .suffix(".tar")
        .tempfile()
        .context("cannot create a temporary file for the source tar")?;
    let mut tar = tar::Builder::new(BufWriter::new(file.as_file_mut()));
    let mtime = opts.source_date_epoch;
    let owner = opts.owner;
    let home = hermetic::HOME.trim_start_matches('/');
    append_dir(&mut tar, Path::new(home.split('/').next().unwrap_or("home")), (0, 0), mtime)?;
    append_dir(&mut tar, Path::new(home), owner, mtime)?;
    let src = Path::new(hermetic::SOURCE_DIR.trim_start_matches('/'));
    append_dir(&mut tar, src, owner, mtime)?;

    let mut entries = 0;
    for (rel, kind) in &paths {
        let abs = root.join(rel);
        let name = src.join(rel);
        match kind {
            Kind::Dir => append_dir(&mut tar, &name, owner, mtime)?,
            Kind::Symlink => {
                let target = fs_err::read_link(&abs)?;
                let mut h = header(tar::EntryType::Symlink, 0o777, mtime, owner);
                tar.append_link(&mut h, &name, &target)
                    .with_context(|| format!("cannot add the link {} to the source tar", abs.display()))?;
            }
            Kind::File => {
                let f = fs_err::File::open(&abs)?;
                let meta = f.metadata()?;
                let exec = meta.permissions().mode() & 0o111 != 0;
                let mut h = header(tar::EntryType::Regular, if exec { 0o755 } else { 0o644 }, mtime, owner);
                h.set_size(meta.len());
                tar.append_data(&mut h, &name, f)
                    .with_context(|| format!("cannot add {} to the source tar", abs.display()))?;
            }
        }
        entries += 1;
    }
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .context("cannot finish the source tar")?;

    let f = file.as_file_mut();
    f.seek(SeekFrom::Start(0)).context("cannot rewind the source tar")?;
    let digest = digest::digest_tar(std::io::BufReader::new(&*f), TreeKind::Artifacts)
        .context("cannot digest the source tar")?;
    Ok(SourceTar { file, digest, entries })
}

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

fn header(kind: tar::EntryType, mode: u32, mtime: u64, (uid, gid): (u32, u32)) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_size(0);
    h
}

fn append_dir<W: std::io::Write>(tar: &mut tar::Builder<W>, name: &Path, owner: (u32, u32), mtime: u64) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, mtime, owner);
    tar.append_data(&mut h, name, std::io::empty())
        .with_context(|| format!("cannot add the directory {} to the source tar", name.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

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
            exclude_paths: &excluded,
            exclude_patterns: &patterns,
            source_date_epoch: 1234,
            owner: (1000, 1000),
        };
        let tar = build(p, &opts).unwrap();
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
        assert_eq!(tar.digest, build(p, &opts).unwrap().digest);
    }
}

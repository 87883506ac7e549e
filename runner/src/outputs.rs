//! Build outputs: a tar stream from the container → a safe output directory.
//!
//! The tar comes from the build, and the build is not trusted. Extraction
//! therefore never follows a link on the host, never writes outside the
//! staging directory, strips setuid/setgid/sticky bits (with a warning),
//! skips fifos and device nodes (with a warning), and keeps names that are
//! not UTF-8. Everything lands in a staging directory next to the final one,
//! which replaces the old output only when complete, so a failed build never
//! leaves half an output where a good one stood.

use std::ffi::OsStr;
use std::io::{Read, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use repro_run_core::record::{hash_content, text_and_bytes, Artifact, ContentHasher, ContentHashes};

use crate::exit::OutputFailed;

/// What one output's extraction did.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Things the user should know (stripped bits, skipped entries).
    pub warnings: Vec<String>,
    /// Entries written.
    pub entries: usize,
    /// The hashes of the regular files written, by path relative to the
    /// staging directory, made while they were written (see [`hash_tree`]).
    pub hashes: Vec<(PathBuf, ContentHashes)>,
}

/// What the extraction tells the hashing thread, in order.
enum Hashing {
    File(PathBuf),
    Piece(Vec<u8>),
    End,
}

/// Bytes read from the tar at a time, for a file's content.
const PIECE: u64 = 256 * 1024;

/// An output as declared: a path, or a glob with the directory to fetch.
pub struct OutputSpec {
    /// The directory (or file) under `/src` to download; `""` is `/src`.
    pub fetch: String,
    /// For a glob, what to keep of it (matched against paths relative to
    /// `/src`; a match on a directory keeps all below it).
    pub filter: Option<globset::GlobMatcher>,
}

impl OutputSpec {
    /// Splits a declared output into what to fetch and what to keep.
    pub fn new(output: &str) -> Result<OutputSpec> {
        if !repro_run_core::manifest::is_glob(output) {
            return Ok(OutputSpec { fetch: output.to_owned(), filter: None });
        }
        let literal: Vec<&str> = output.split('/').take_while(|c| !repro_run_core::manifest::is_glob(c)).collect();
        let glob = globset::GlobBuilder::new(output)
            .literal_separator(true)
            .build()
            .with_context(|| format!("output `{output}` is not a valid glob"))?;
        Ok(OutputSpec { fetch: literal.join("/"), filter: Some(glob.compile_matcher()) })
    }
}

/// Extracts one output's tar (as `GET /containers/{id}/archive` returns it:
/// the fetched path's last component is the top entry) into `staging`,
/// under the output's own path relative to `/src`.
pub fn extract(reader: impl Read, staging: &Path, spec: &OutputSpec) -> Result<Extracted> {
    // File contents are hashed on a second thread while they are written,
    // so that collecting a large output does not read it back for that.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Hashing>(16);
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut done = Vec::new();
            let mut current: Option<(PathBuf, ContentHasher)> = None;
            for msg in rx {
                match msg {
                    Hashing::File(rel) => current = Some((rel, ContentHasher::default())),
                    Hashing::Piece(piece) => {
                        if let Some((_, h)) = current.as_mut() {
                            h.update(&piece);
                        }
                    }
                    Hashing::End => done.extend(current.take().map(|(rel, h)| (rel, h.finish()))),
                }
            }
            done
        });
        let extracted = extract_hashing(reader, staging, spec, &tx);
        drop(tx);
        let hashes = hasher.join().map_err(|_| anyhow::anyhow!("the hashing thread panicked"))?;
        extracted.map(|done| Extracted { hashes, ..done })
    })
    // The build made the output and it did not reach the output directory:
    // a build failure (exit 4), not a usage error, whatever stopped it.
    .map_err(|err| OutputFailed(err).into())
}

/// The extraction loop. Long, and kept in one piece on purpose: each tar
/// entry goes through every safety check in order (a relative path, no
/// link among its parents, setuid bits stripped, what was there removed
/// first, a link kept as a link, hard links only inside the outputs, other
/// kinds skipped with a warning), and splitting it would hide which check
/// guards which write.
fn extract_hashing(
    reader: impl Read,
    staging: &Path,
    spec: &OutputSpec,
    hashing: &std::sync::mpsc::SyncSender<Hashing>,
) -> Result<Extracted> {
    let stopped = || anyhow::anyhow!("the hashing thread stopped");
    let mut done = Extracted::default();
    let warnings = &mut done.warnings;
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    // `out/bin` arrives as `bin/...`, `/src` as `src/...` and the file
    // `d/f` as `f` alone: re-root each entry at the fetched path.
    let prefix: PathBuf = Path::new(&spec.fetch).components().collect();
    let reroot = |rel: PathBuf| {
        let below: PathBuf = rel.components().skip(1).collect();
        // The top entry is the fetched path itself. `join("")` would add a
        // trailing `/`, and a file cannot be created under a name that ends
        // in one.
        if below.as_os_str().is_empty() {
            prefix.clone()
        } else {
            prefix.join(below)
        }
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("cannot read the output tar from the engine")? {
        let mut entry = entry.context("the output tar from the engine is corrupt")?;
        let raw = entry.path_bytes().into_owned();
        let rel = safe_relative(&raw).with_context(|| {
            format!(
                "refusing output entry `{}`: it would land outside the output directory",
                String::from_utf8_lossy(&raw)
            )
        })?;
        let rel = reroot(rel);
        if rel.as_os_str().is_empty() {
            continue;
        }
        if let Some(filter) = &spec.filter {
            if !rel.ancestors().any(|a| !a.as_os_str().is_empty() && filter.is_match(a)) {
                continue;
            }
        }
        done.entries += 1;
        let dest = staging.join(&rel);
        ensure_real_parents(staging, &rel)?;
        let header = entry.header();
        // Some engines put the file-type bits in the mode field too.
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let shown = rel.display().to_string();
        let special = mode & 0o7000;
        match header.entry_type() {
            tar::EntryType::Directory => {
                if special != 0 {
                    warnings.push(format!("{shown}: stripped setuid/setgid/sticky bits ({mode:04o})"));
                }
                match fs_err::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => bail!("output entry `{shown}` is both a directory and something else"),
                    Err(_) => fs_err::create_dir(&dest)?,
                }
                dir_modes.push((dest, mode & 0o777));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if special != 0 {
                    warnings.push(format!("{shown}: stripped setuid/setgid/sticky bits ({mode:04o})"));
                }
                remove_existing(&dest)?;
                let mut f = fs_err::OpenOptions::new().write(true).create_new(true).open(&dest)?;
                hashing.send(Hashing::File(rel.clone())).map_err(|_| stopped())?;
                loop {
                    let mut piece = Vec::with_capacity(PIECE as usize);
                    (&mut entry).take(PIECE).read_to_end(&mut piece).context("cannot read the output tar")?;
                    if piece.is_empty() {
                        break;
                    }
                    f.write_all(&piece).with_context(|| format!("cannot write {}", dest.display()))?;
                    hashing.send(Hashing::Piece(piece)).map_err(|_| stopped())?;
                }
                hashing.send(Hashing::End).map_err(|_| stopped())?;
                f.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .with_context(|| format!("output symlink `{shown}` has no target"))?
                    .into_owned();
                remove_existing(&dest)?;
                // Kept as a link, never followed: a link to /etc/passwd stays a
                // link and its target is never read.
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest)
                    .with_context(|| format!("cannot create the symlink {}", dest.display()))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .with_context(|| format!("output hard link `{shown}` has no target"))?
                    .into_owned();
                let target_rel = safe_relative(&target)
                    .map(reroot)
                    .with_context(|| format!("refusing hard link `{shown}`: its target is outside the output"))?;
                let target_abs = staging.join(&target_rel);
                ensure_real_parents(staging, &target_rel)?;
                if !fs_err::symlink_metadata(&target_abs).map(|m| m.is_file()).unwrap_or(false) {
                    bail!(
                        "refusing hard link `{shown}`: its target `{}` is not a file in the output",
                        target_rel.display()
                    );
                }
                remove_existing(&dest)?;
                fs_err::copy(&target_abs, &dest)?;
            }
            other => {
                warnings.push(format!("{shown}: skipped, a {other:?} is not an artifact"));
            }
        }
    }
    // Directory modes last, deepest first, so a read-only directory does not
    // stop its own contents from being written.
    for (dir, mode) in dir_modes.into_iter().rev() {
        fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700))?;
    }
    Ok(done)
}

/// A tar path made relative and checked: no `..`, no root, no prefix.
fn safe_relative(raw: &[u8]) -> Option<PathBuf> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Every ancestor of `rel` inside `root` must be a real directory (created
/// here if missing), never a symlink: otherwise an entry `a -> /etc` followed
/// by `a/passwd` would write outside.
fn ensure_real_parents(root: &Path, rel: &Path) -> Result<()> {
    let mut cur = root.to_path_buf();
    let Some(parent) = rel.parent() else { return Ok(()) };
    for c in parent.components() {
        cur.push(c);
        match fs_err::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "refusing output entry `{}`: `{}` is not a directory (a build-made link is never followed)",
                rel.display(),
                cur.strip_prefix(root).unwrap_or(&cur).display()
            ),
            Err(_) => fs_err::create_dir(&cur)?,
        }
    }
    Ok(())
}

fn remove_existing(path: &Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => bail!("output entry `{}` is both a directory and a file", path.display()),
        Ok(_) => fs_err::remove_file(path).map_err(Into::into),
        Err(_) => Ok(()),
    }
}

/// Hashes every file and link under `dir`, sorted by path bytes. A file
/// whose hashes were made as it was written (`known`, by path relative to
/// `dir`) and whose size still matches is not read again.
pub fn hash_tree(dir: &Path, known: &std::collections::HashMap<PathBuf, ContentHashes>) -> Result<Vec<Artifact>> {
    // Sorted by the raw path bytes, which the record's text may not show.
    let mut out: Vec<(Vec<u8>, Artifact)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let meta = fs_err::symlink_metadata(&path)?;
            let rel = path.strip_prefix(dir).context("hashed outside the output")?.as_os_str().as_bytes().to_vec();
            let (path_text, path_bytes) = text_and_bytes(&rel);
            let mode = format!("{:04o}", meta.permissions().mode() & 0o7777);
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = fs_err::read_link(&path)?;
                let target = target.as_os_str().as_bytes();
                let h = hash_content(target)?;
                let (link, link_bytes) = text_and_bytes(target);
                let artifact = Artifact {
                    path: path_text,
                    path_bytes,
                    size: 0,
                    mode,
                    blake3: h.blake3,
                    sha256: h.sha256,
                    link: Some(link),
                    link_bytes,
                };
                out.push((rel, artifact));
            } else {
                let rel_path = Path::new(std::ffi::OsStr::from_bytes(&rel));
                let h = match known.get(rel_path).filter(|h| h.size == meta.len()) {
                    Some(h) => h.clone(),
                    None => hash_content(fs_err::File::open(&path)?)?,
                };
                let artifact = Artifact {
                    path: path_text,
                    path_bytes,
                    size: h.size,
                    mode,
                    blake3: h.blake3,
                    sha256: h.sha256,
                    link: None,
                    link_bytes: None,
                };
                out.push((rel, artifact));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, a)| a).collect())
}

/// Moves `staging` into place at `out`, replacing what was there only once
/// the new tree is complete.
pub fn replace_dir(staging: tempfile::TempDir, out: &Path) -> Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let old = tempfile::Builder::new().prefix(".repro-out.old-").tempdir_in(parent)?;
    let had_old = fs_err::symlink_metadata(out).is_ok();
    if had_old {
        fs_err::rename(out, old.path().join("previous"))?;
    }
    let staging = staging.keep();
    if let Err(err) = fs_err::rename(&staging, out) {
        // Put the old output back: nothing lost.
        if had_old {
            let _ = fs_err::rename(old.path().join("previous"), out);
        }
        let _ = fs_err::remove_dir_all(&staging);
        return Err(err.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, std::str::from_utf8(data).unwrap()).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extracts_files_dirs_and_links_under_the_output_path() {
        let staging = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("bin/", tar::EntryType::Directory, b"", 0o755),
            ("bin/hello", tar::EntryType::Regular, b"hi", 0o4755),
            ("bin/link", tar::EntryType::Symlink, b"/etc/passwd", 0o777),
            ("bin/fifo", tar::EntryType::Fifo, b"", 0o644),
        ]);
        let done = extract(&t[..], staging.path(), &OutputSpec::new("out/bin").unwrap()).unwrap();
        let warnings = done.warnings;
        let hello = staging.path().join("out/bin/hello");
        assert_eq!(fs_err::read(&hello).unwrap(), b"hi");
        assert_eq!(fs_err::metadata(&hello).unwrap().permissions().mode() & 0o7777, 0o755);
        assert_eq!(fs_err::read_link(staging.path().join("out/bin/link")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let arts = hash_tree(staging.path(), &Default::default()).unwrap();
        let paths: Vec<&str> = arts.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["out/bin/hello", "out/bin/link"]);
        // The link's target was hashed as text, never read.
        assert_eq!(arts[1].size, 0);
        assert_eq!(arts[1].link.as_deref(), Some("/etc/passwd"));
    }

    #[test]
    fn files_are_hashed_as_they_are_written_and_not_read_again() {
        let staging = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(PIECE as usize * 3 + 7)).map(|i| (i % 251) as u8).collect();
        let t = tar_of(&[
            ("out/", tar::EntryType::Directory, b"", 0o755),
            ("out/big", tar::EntryType::Regular, &big, 0o644),
            ("out/empty", tar::EntryType::Regular, b"", 0o644),
        ]);
        let done = extract(&t[..], staging.path(), &OutputSpec::new("out").unwrap()).unwrap();
        let known: std::collections::HashMap<_, _> = done.hashes.into_iter().collect();
        assert_eq!(known[Path::new("out/big")], hash_content(&big[..]).unwrap());
        assert_eq!(known[Path::new("out/empty")], hash_content(&b""[..]).unwrap());
        let arts = hash_tree(staging.path(), &known).unwrap();
        assert_eq!(arts[0].blake3, blake3::hash(&big).to_hex().as_str());

        // A known hash is taken as it is when the size matches (the file is
        // not read again), and ignored when it does not.
        let mut fake = known.clone();
        fake.get_mut(Path::new("out/big")).unwrap().blake3 = "not read again".into();
        assert_eq!(hash_tree(staging.path(), &fake).unwrap()[0].blake3, "not read again");
        fake.get_mut(Path::new("out/big")).unwrap().size += 1;
        assert_eq!(hash_tree(staging.path(), &fake).unwrap()[0].blake3, blake3::hash(&big).to_hex().as_str());
    }

    /// Extracts `entries` for `output`: entries written, and the artifact paths.
    fn extracted(output: &str, entries: &[(&str, tar::EntryType, &[u8], u32)]) -> (usize, Vec<String>) {
        let staging = tempfile::tempdir().unwrap();
        let done = extract(&tar_of(entries)[..], staging.path(), &OutputSpec::new(output).unwrap()).unwrap();
        (done.entries, hash_tree(staging.path(), &Default::default()).unwrap().into_iter().map(|a| a.path).collect())
    }

    #[test]
    fn globs_keep_what_they_match() {
        assert_eq!(OutputSpec::new("out/*.bin").unwrap().fetch, "out");
        let (entries, paths) = extracted(
            "out/*.bin",
            &[
                ("out/", tar::EntryType::Directory, b"", 0o755),
                ("out/a.bin", tar::EntryType::Regular, b"a", 0o644),
                ("out/b.txt", tar::EntryType::Regular, b"b", 0o644),
                ("out/sub/", tar::EntryType::Directory, b"", 0o755),
                ("out/sub/c.bin", tar::EntryType::Regular, b"c", 0o644),
            ],
        );
        assert_eq!(entries, 1);
        assert_eq!(paths, ["out/a.bin"]);

        // A glob at the top fetches /src; a matched directory keeps its tree.
        assert_eq!(OutputSpec::new("d*").unwrap().fetch, "");
        let (_, paths) = extracted(
            "d*",
            &[
                ("src/", tar::EntryType::Directory, b"", 0o755),
                ("src/dist/", tar::EntryType::Directory, b"", 0o755),
                ("src/dist/x", tar::EntryType::Regular, b"x", 0o644),
                ("src/main.c", tar::EntryType::Regular, b"m", 0o644),
            ],
        );
        assert_eq!(paths, ["dist/x"]);
    }

    #[test]
    fn a_file_at_the_top_lands_under_its_own_name() {
        // Both the staged tree and the engine give a file alone as its own
        // top entry: `/src/hello` arrives as `hello`.
        let (entries, paths) = extracted("hello", &[("hello", tar::EntryType::Regular, b"\x7fELF", 0o755)]);
        assert_eq!((entries, paths), (1, vec!["hello".to_owned()]));
    }

    #[test]
    fn a_nested_file_lands_under_its_parents() {
        // `/src/d/f` arrives as `f`; `d/` is made for it.
        let staging = tempfile::tempdir().unwrap();
        let t = tar_of(&[("f", tar::EntryType::Regular, b"nested", 0o640)]);
        let done = extract(&t[..], staging.path(), &OutputSpec::new("d/f").unwrap()).unwrap();
        assert_eq!(done.entries, 1);
        assert_eq!(done.hashes, [(PathBuf::from("d/f"), hash_content(&b"nested"[..]).unwrap())]);
        let f = staging.path().join("d/f");
        assert_eq!(fs_err::read(&f).unwrap(), b"nested");
        assert_eq!(fs_err::metadata(&f).unwrap().permissions().mode() & 0o777, 0o640);
        let arts = hash_tree(staging.path(), &done.hashes.into_iter().collect()).unwrap();
        assert_eq!(arts.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(), ["d/f"]);
        assert_eq!(arts[0].blake3, blake3::hash(b"nested").to_hex().as_str());
    }

    #[test]
    fn a_directory_lands_with_all_below_it() {
        let (entries, paths) = extracted(
            "out",
            &[
                ("out/", tar::EntryType::Directory, b"", 0o755),
                ("out/a", tar::EntryType::Regular, b"a", 0o644),
                ("out/sub/", tar::EntryType::Directory, b"", 0o755),
                ("out/sub/b", tar::EntryType::Regular, b"b", 0o644),
            ],
        );
        assert_eq!(entries, 4);
        assert_eq!(paths, ["out/a", "out/sub/b"]);
        // A nested directory arrives under its last component.
        let (_, paths) = extracted(
            "build/out",
            &[("out/", tar::EntryType::Directory, b"", 0o755), ("out/a", tar::EntryType::Regular, b"a", 0o644)],
        );
        assert_eq!(paths, ["build/out/a"]);
    }

    #[test]
    fn several_outputs_land_side_by_side() {
        let staging = tempfile::tempdir().unwrap();
        let outputs: [(&str, Vec<u8>); 4] = [
            ("hello", tar_of(&[("hello", tar::EntryType::Regular, b"h", 0o755)])),
            ("d/f", tar_of(&[("f", tar::EntryType::Regular, b"f", 0o644)])),
            (
                "out",
                tar_of(&[
                    ("out/", tar::EntryType::Directory, b"", 0o755),
                    ("out/x", tar::EntryType::Regular, b"x", 0o644),
                ]),
            ),
            (
                "d/*.txt",
                tar_of(&[
                    ("d/", tar::EntryType::Directory, b"", 0o755),
                    ("d/f", tar::EntryType::Regular, b"f", 0o644),
                    ("d/t.txt", tar::EntryType::Regular, b"t", 0o644),
                ]),
            ),
        ];
        for (output, t) in &outputs {
            let done = extract(&t[..], staging.path(), &OutputSpec::new(output).unwrap()).unwrap();
            assert!(done.entries > 0, "{output}");
        }
        let arts = hash_tree(staging.path(), &Default::default()).unwrap();
        assert_eq!(arts.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(), ["d/f", "d/t.txt", "hello", "out/x"]);
    }

    #[test]
    fn a_refused_output_is_a_failed_build_not_a_usage_error() {
        let staging = tempfile::tempdir().unwrap();
        let t = tar_of(&[("../x", tar::EntryType::Regular, b"pwn", 0o644)]);
        let err = extract(&t[..], staging.path(), &OutputSpec::new("x").unwrap()).unwrap_err();
        assert_eq!(crate::exit::classify(&err), crate::exit::Exit::BuildFailed);
    }

    #[test]
    fn refuses_to_write_through_a_link_or_outside() {
        let staging = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("o/", tar::EntryType::Directory, b"", 0o755),
            ("o/evil", tar::EntryType::Symlink, b"/tmp", 0o777),
            ("o/evil/x", tar::EntryType::Regular, b"pwn", 0o644),
        ]);
        let o = OutputSpec::new("o").unwrap();
        let err = extract(&t[..], staging.path(), &o).unwrap_err();
        assert!(format!("{err:#}").contains("is not a directory"), "{err:#}");
        let t = tar_of(&[("../x", tar::EntryType::Regular, b"pwn", 0o644)]);
        let err = extract(&t[..], staging.path(), &o).unwrap_err();
        assert!(format!("{err:#}").contains("outside the output directory"), "{err:#}");
    }
}

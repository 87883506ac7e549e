//! The package store: every `.deb` that `repro-run lock` fetched, kept by
//! its sha256 under `<cache dir>/packages/sha256/<hex>` (docs/lock.md, "The
//! package store").
//!
//! A file gets its name only after its bytes hashed to that name, so a
//! name always means its content; a file that no longer does (a disk
//! error, a hand edit) is found before any preparation uses it, and named.
//! The store outlives the mirror: once a version is here, no mirror is
//! asked for it again, and `--export-store` carries it to other machines.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use repro_run_core::lock::LockedPackage;
use repro_run_core::packages::deb_file_name;
use sha2::{Digest as _, Sha256};

/// The store of one user.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// A locked package whose file is not in the store.
#[derive(Clone, Debug)]
pub struct Missing(pub LockedPackage);

impl Store {
    /// The store in repro-run's cache directory (`XDG_CACHE_HOME`, else
    /// `~/.cache`).
    pub fn open() -> Result<Store> {
        let cache =
            crate::cache::dir().context("neither XDG_CACHE_HOME nor HOME is set, so there is no package store")?;
        Ok(Store { dir: cache.join("packages").join("sha256") })
    }

    /// Where the file of `sha256` is, or would be.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// The locked packages (from = locked) whose file is absent. A file
    /// that is there but damaged is not missing: [`Store::debs_tar`] names
    /// it, rather than a download quietly replacing it.
    pub fn missing(&self, packages: &[LockedPackage]) -> Vec<Missing> {
        packages
            .iter()
            .filter(|p| p.sha256.as_deref().is_some_and(|sha| !self.path(sha).exists()))
            .map(|p| Missing(p.clone()))
            .collect()
    }

    /// Reads a file into the store, checking its sha256 and size on the
    /// way; `what` names it in errors. Nothing is left behind on failure.
    pub fn insert(&self, reader: impl Read, sha256: &str, size: u64, what: &str) -> Result<PathBuf> {
        let target = self.path(sha256);
        fs_err::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.dir)
            .with_context(|| format!("cannot write into the package store {}", self.dir.display()))?;
        let (got_sha, got_size) = copy_hashing(reader, tmp.as_file_mut())
            .with_context(|| format!("cannot write {what} into the package store {}", self.dir.display()))?;
        if got_sha != sha256 || got_size != size {
            bail!(
                "{what} has sha256 {got_sha} and {got_size} bytes, but the package index says {sha256} and {size} \
                 bytes: the download is damaged or not the locked package"
            );
        }
        tmp.as_file().sync_data().with_context(|| format!("cannot write {}", target.display()))?;
        tmp.persist(&target).with_context(|| format!("cannot write {}", target.display()))?;
        Ok(target)
    }

    /// The bytes of a locked package's file, checked against its sha256
    /// and size (`None` for a package of the base, which has no file).
    fn read_checked(&self, p: &LockedPackage) -> Result<Option<Vec<u8>>> {
        let (Some(sha), Some(size)) = (p.sha256.as_deref(), p.size) else { return Ok(None) };
        let path = self.path(sha);
        let file = fs_err::File::open(&path).with_context(|| missing_hint(p))?;
        let mut bytes = Vec::with_capacity(size as usize);
        let (got_sha, got_size) =
            copy_hashing(file, &mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
        if got_sha != sha || got_size != size {
            bail!(
                "the package store's file {} ({} {} {}) has sha256 {got_sha} and {got_size} bytes, not the \
                 {sha} and {size} bytes that repro.lock pins: the file is damaged\n  hint: delete it; the next \
                 `repro-run lock` fetches it again (or import a store that holds it)",
                path.display(),
                p.name,
                p.version,
                p.arch
            );
        }
        Ok(Some(bytes))
    }

    /// A tar of the locked packages' files, each checked against its sha256
    /// and size, named as apt names them
    /// (`name_version_arch.deb`) under `dir` (a relative path), for an
    /// upload into the preparation container.
    pub fn debs_tar(&self, packages: &[LockedPackage], dir: &str) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        let parts: Vec<&str> = dir.split('/').collect();
        for i in 1..=parts.len() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header.clone(), format!("{}/", parts[..i].join("/")), std::io::empty())?;
        }
        for p in packages {
            // Each file is read once: checked, then put in the tar.
            let Some(bytes) = self.read_checked(p)? else { continue };
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(bytes.len() as u64);
            tar.append_data(&mut h, format!("{dir}/{}", deb_file_name(&p.installed())), bytes.as_slice())?;
        }
        Ok(tar.into_inner()?)
    }

    /// Writes the files of `packages` into a tar at `out` as
    /// `packages/sha256/<hex>`, and `extra` entries (name, file) after
    /// them.
    pub fn export(&self, packages: &[LockedPackage], extra: &[(&str, &Path)], out: &Path) -> Result<usize> {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".repro-run-store-")
            .tempfile_in(parent)
            .with_context(|| format!("cannot write beside {}", out.display()))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(tmp));
        let mut count = 0;
        for p in packages {
            let Some(sha) = p.sha256.as_deref() else { continue };
            let path = self.path(sha);
            let mut file = fs_err::File::open(&path).with_context(|| missing_hint(p))?;
            tar.append_file(format!("packages/sha256/{sha}"), file.file_mut())
                .with_context(|| format!("cannot write {}", out.display()))?;
            count += 1;
        }
        for (name, path) in extra {
            let mut file = fs_err::File::open(path)?;
            tar.append_file(name, file.file_mut()).with_context(|| format!("cannot write {}", out.display()))?;
        }
        let tmp = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(out).with_context(|| format!("cannot write {}", out.display()))?;
        Ok(count)
    }

    /// Reads an export: each `packages/sha256/<hex>` is checked against its
    /// name on the way in; any other entry is handed to `other` (name,
    /// reader). Returns how many packages came in.
    pub fn import(&self, file: &Path, mut other: impl FnMut(&str, &mut dyn Read) -> Result<()>) -> Result<usize> {
        let reader = fs_err::File::open(file)?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(reader));
        let mut count = 0;
        for entry in archive.entries().with_context(|| format!("{} is not a tar", file.display()))? {
            let mut entry = entry.with_context(|| format!("cannot read {}", file.display()))?;
            let name = entry.path()?.to_string_lossy().into_owned();
            if let Some(sha) = name.strip_prefix("packages/sha256/") {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    bail!("{} holds `{name}`, which is not named by a sha256", file.display());
                }
                let size = entry.size();
                self.insert(&mut entry, sha, size, &format!("`{name}` of {}", file.display()))?;
                count += 1;
            } else if entry.header().entry_type().is_file() {
                other(&name, &mut entry)?;
            }
        }
        Ok(count)
    }
}

fn missing_hint(p: &LockedPackage) -> String {
    format!(
        "{} {} ({}) is not in the package store\n  hint: run `repro-run lock` where the mirror has it, or import a \
         store that holds it: `repro-run lock --import-store FILE`",
        p.name, p.version, p.arch
    )
}

/// Copies `reader` to `writer`; the sha256 (hex) and length of the bytes.
fn copy_hashing(mut reader: impl Read, writer: &mut impl Write) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use repro_run_core::lock::Origin;

    fn package(content: &[u8]) -> LockedPackage {
        LockedPackage {
            name: "hello".into(),
            version: "2.10-3".into(),
            arch: "amd64".into(),
            from: Origin::Locked,
            sha256: Some(hex::encode(Sha256::digest(content))),
            size: Some(content.len() as u64),
        }
    }

    #[test]
    fn a_file_is_named_by_its_hash_and_checked_on_the_way_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store { dir: dir.path().join("sha256") };
        let p = package(b"a deb");
        assert_eq!(store.missing(std::slice::from_ref(&p)).len(), 1);
        let sha = p.sha256.clone().unwrap();
        let err = store.insert(&b"a deb, truncated"[..6], &sha, 5, "hello_2.10-3_amd64.deb").unwrap_err();
        assert!(format!("{err:#}").contains("hello_2.10-3_amd64.deb has sha256"), "{err:#}");
        // Nothing half-written is left.
        assert_eq!(fs_err::read_dir(&store.dir).unwrap().count(), 0);
        store.insert(&b"a deb"[..], &sha, 5, "hello").unwrap();
        assert!(store.missing(std::slice::from_ref(&p)).is_empty());
        store.debs_tar(std::slice::from_ref(&p), "debs").unwrap();
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store { dir: dir.path().to_owned() };
        let p = package(b"a deb");
        fs_err::write(store.path(p.sha256.as_deref().unwrap()), b"a dex").unwrap();
        let err = format!("{:#}", store.debs_tar(std::slice::from_ref(&p), "debs").unwrap_err());
        assert!(err.contains(&store.path(p.sha256.as_deref().unwrap()).display().to_string()), "{err}");
        assert!(err.contains("hello 2.10-3 amd64"), "{err}");
    }

    #[test]
    fn an_export_imports_into_another_store() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Store { dir: dir.path().join("a") }, Store { dir: dir.path().join("b") });
        let p = package(b"a deb");
        a.insert(&b"a deb"[..], p.sha256.as_deref().unwrap(), 5, "x").unwrap();
        let extra = dir.path().join("base.tar");
        fs_err::write(&extra, b"rootfs").unwrap();
        let out = dir.path().join("store.tar");
        assert_eq!(a.export(std::slice::from_ref(&p), &[("base/rootfs.tar", &extra)], &out).unwrap(), 1);
        let mut seen = Vec::new();
        let n = b
            .import(&out, |name, r| {
                let mut s = String::new();
                r.read_to_string(&mut s)?;
                seen.push((name.to_owned(), s));
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(seen, [("base/rootfs.tar".to_owned(), "rootfs".to_owned())]);
        b.debs_tar(&[p], "debs").unwrap();
    }
}

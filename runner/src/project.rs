//! The project a command works on: the manifest, its profile and its
//! directory, and the small file chores every command shares.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use repro_run_core::manifest::Manifest;

use crate::profiles;

/// A manifest, its directory and its profile.
pub struct Project {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Its profile, if it names one.
    pub profile: Option<repro_run_core::profile::Profile>,
    /// The manifest's directory, absolute.
    pub dir: PathBuf,
}

/// Reads the manifest at `path` and its profile.
pub fn load_project(path: &Path) -> Result<Project> {
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no manifest at {}\n  hint: write a repro.toml there (see examples/hello-c/repro.toml), or point at one \
             with --manifest FILE",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let manifest = Manifest::parse(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
    let profile = manifest.toolchain.profile.as_deref().map(profiles::load).transpose()?;
    let dir = abs(path)?.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    Ok(Project { manifest, profile, dir })
}

/// The committer time of `HEAD` in `dir`, for `source_date_epoch = "git"`.
pub async fn git_commit_time(dir: &Path) -> Result<u64> {
    let out = tokio::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(dir)
        .output()
        .await
        .context("source_date_epoch = \"git\" needs git, which cannot be run")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<u64>() {
        Ok(n) if out.status.success() => Ok(n),
        _ => bail!(
            "source_date_epoch = \"git\", but {} has no git commit ({})\n  hint: commit the sources, or give a \
             number of seconds",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Writes a file by renaming a complete temporary file over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut tmp = tempfile::Builder::new()
        .prefix(".repro-run-")
        .tempfile_in(parent_dir(path))
        .with_context(|| format!("cannot write beside {}", path.display()))?;
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The directory a path is in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `path` made absolute, with its parent's symlinks resolved when the parent
/// exists, so that it compares equal to paths found by walking the project.
pub fn abs(path: &Path) -> Result<PathBuf> {
    let path = std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
        if let Ok(parent) = parent.canonicalize() {
            return Ok(parent.join(name));
        }
    }
    Ok(path)
}

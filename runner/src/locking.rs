//! repro.lock, made and followed: what `repro-run lock` writes and what
//! `repro-run build` builds on (docs/lock.md).
//!
//! One function, [`ensure`], takes a manifest's plan and the lock beside
//! it (if any) to the lock that holds now and the toolchain image it
//! names. A lock whose base and toolchain inputs still match keeps its
//! package versions, whatever changed in `[build]`: the store then has
//! their files, and no container gets the network.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use repro_run_core::digest::Digest;
use repro_run_core::lock::{Lock, LockInputs, LockedBase, LockedToolchain, LOCK_FILE};

use crate::engine::Engine;
use crate::exit::Drift;
use crate::images;
use crate::images::BaseImage;
use crate::printer::Printer;
use crate::toolchain::{self, store::Store};

/// How far [`ensure`] may go.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Resolve anew, taking the mirror's current versions.
    pub update: bool,
    /// Never give a container the network: fail where that would be needed.
    pub offline: bool,
    /// Follow the lock as it is: a drifted manifest or a base image that is
    /// not the locked one fails (exit 1) instead of relocking.
    pub frozen: bool,
}

/// The lock that holds, and what it stands on.
pub struct Locked {
    /// The lock as it holds now.
    pub lock: Lock,
    /// The toolchain image's id.
    pub toolchain_image: String,
    /// A reference to it: its tag, or the base's when nothing is installed.
    pub toolchain_reference: String,
    /// The base image.
    pub base: BaseImage,
}

/// The lock file beside a manifest.
pub fn path_beside(manifest: &Path) -> PathBuf {
    manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join(LOCK_FILE)
}

/// Reads and checks the lock at `path`; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<(Lock, String)>> {
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let lock = Lock::parse(&text).with_context(|| format!("{} is not a valid lock", path.display()))?;
    Ok(Some((lock, text)))
}

/// Fails with the drift between a lock and what the manifest asks, if any.
pub fn check_drift(lock: &Lock, wanted: &LockInputs, lock_path: &Path) -> Result<()> {
    let drift = lock.drift(wanted);
    if drift.is_empty() {
        return Ok(());
    }
    Err(Drift(format!(
        "repro.toml and {} disagree on {} field(s):\n{}\n  hint: run `repro-run lock` to relock, and commit the new \
         repro.lock",
        lock_path.display(),
        drift.len(),
        drift.iter().map(|d| format!("    {d}")).collect::<Vec<_>>().join("\n")
    ))
    .into())
}

/// The lock for `wanted` on this engine, and its toolchain image: the
/// `existing` lock's versions where its inputs still match, else resolved
/// anew with the network.
pub async fn ensure(
    engine: &Engine,
    wanted: &LockInputs,
    existing: Option<&Lock>,
    options: Options,
    printer: &Printer,
) -> Result<Locked> {
    let (base, base_rootfs) = pinned_base(engine, wanted, printer).await?;
    let store = Store::open()?;
    let reuse = match existing {
        Some(lock) if lock.base.rootfs != base_rootfs => {
            let message = format!(
                "base image `{}` has rootfs {base_rootfs}, but repro.lock pins {}",
                base.reference, lock.base.rootfs
            );
            if options.frozen {
                return Err(Drift(format!(
                    "{message}\n  hint: import the locked base (`repro-run lock --import-store FILE`, from an \
                     export made where it was locked), or relock with `repro-run lock`"
                ))
                .into());
            }
            printer.status(format!("{message}: relocking"));
            None
        }
        // A change to the build settings alone (the command, the
        // environment, the limits) keeps the toolchain's versions: only
        // what the toolchain is made of sends apt to the mirror again.
        Some(lock) if !options.update && lock.drift(wanted).iter().all(|d| d.field.starts_with("build.")) => Some(lock),
        _ => None,
    };
    let toolchain_lock = match reuse {
        Some(lock) => lock.toolchain.clone(),
        None => {
            if options.offline && !wanted.requested.is_empty() {
                bail!(
                    "resolving the toolchain ({}) needs the network, and --offline forbids it\n  hint: drop \
                     --offline, or bring a repro.lock that matches repro.toml",
                    wanted.requested.join(" ")
                );
            }
            let resolved = toolchain::resolve(engine, &base, &wanted.requested, &store, printer).await?;
            LockedToolchain {
                manager: resolved.manager,
                arch: resolved.arch,
                profile: wanted.profile.clone(),
                requested: wanted.requested.clone(),
                // Known once the image is made, below.
                rootfs: base_rootfs,
                packages: resolved.packages,
            }
        }
    };
    let missing = store.missing(&toolchain_lock.packages);
    if !missing.is_empty() {
        if options.offline {
            bail!(
                "the package store lacks {} locked package(s): {}\n  hint: import a store that holds them \
                 (`repro-run lock --import-store FILE`), or drop --offline to fetch them",
                missing.len(),
                missing.iter().map(|m| format!("{} {}", m.0.name, m.0.version)).collect::<Vec<_>>().join(", ")
            );
        }
        toolchain::fetch(engine, &base, &toolchain_lock.packages, &missing, &store, printer).await?;
    }
    let (reference, image) =
        toolchain::prepare(engine, &base, &base_rootfs, &toolchain_lock.packages, &store, printer).await?;
    let rootfs = images::digest_image(engine, &image, false, printer).await?;
    if let Some(lock) = reuse.filter(|l| l.toolchain.rootfs != rootfs) {
        let message = format!(
            "the toolchain prepared from repro.lock's packages has rootfs {rootfs}, but repro.lock says {}",
            lock.toolchain.rootfs
        );
        if options.frozen {
            return Err(Drift(format!(
                "{message}\n  hint: the preparation did not reproduce here; `repro-run lock` records this \
                 machine's digest"
            ))
            .into());
        }
        printer.status(format!("warning: {message}; writing the new digest"));
    }
    let lock = Lock {
        base: LockedBase { name: wanted.base_name.clone(), rootfs: base_rootfs },
        toolchain: LockedToolchain { rootfs, ..toolchain_lock },
        build: wanted.build.clone(),
    };
    Ok(Locked { lock, toolchain_image: image, toolchain_reference: reference, base })
}

/// The base image the manifest names, made on first use, and its rootfs
/// digest, which must be the manifest's pin where it has one.
async fn pinned_base(engine: &Engine, wanted: &LockInputs, printer: &Printer) -> Result<(BaseImage, Digest)> {
    let base = images::base_image(engine, &wanted.base_name, printer).await?;
    let base_digest = images::digest_image(engine, &base.reference, false, printer).await?;
    if let Some(pin) = wanted.base_rootfs_pin {
        if pin != base_digest {
            bail!(
                "image `{}` has rootfs {base_digest}, but the manifest pins {pin}\n  hint: rebuild or import the \
                 image the pin names, or, if the new image is the one you want, set `rootfs = \"{base_digest}\"` \
                 under [image]",
                base.reference
            );
        }
    }
    Ok((base, base_digest))
}

/// Writes the lock when its text changed; whether it did.
pub fn write(path: &Path, lock: &Lock, old_text: Option<&str>) -> Result<bool> {
    let text = lock.render();
    if old_text == Some(text.as_str()) {
        return Ok(false);
    }
    crate::project::write_atomic(path, text.as_bytes())?;
    Ok(true)
}

//! `repro-run lock`: resolve the toolchain, prepare it from the package
//! store, and write repro.lock; or check it, or carry the store to
//! another machine.

use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, Result};
use futures_util::StreamExt as _;
use repro_run_core::digest::{self, TreeKind};
use repro_run_core::hermetic::BuildPlan;
use repro_run_core::lock::{LockInputs, Origin};
use tokio::io::AsyncWriteExt as _;

use crate::cli::{GlobalArgs, LockArgs};
use crate::engine::{ContainerSpec, Engine};
use crate::exit::{Drift, Exit};
use crate::locking::{self, Locked};
use crate::printer::Printer;
use crate::project::load_project;
use crate::toolchain::store::Store;
use crate::{images, signal};

/// Entry names in a store export besides the packages.
const BASE_NAME_ENTRY: &str = "base/name";
const BASE_ROOTFS_ENTRY: &str = "base/rootfs.tar";

/// Runs `repro-run lock`.
pub async fn run(global: &GlobalArgs, args: LockArgs, printer: &Printer) -> Result<Exit> {
    let project = load_project(&global.manifest)?;
    let lock_path = locking::path_beside(&global.manifest);
    let existing = locking::read(&lock_path)?;
    // The lock holds the policy of SOURCE_DATE_EPOCH, not its value.
    let plan = BuildPlan::new(&project.manifest, project.profile.as_ref(), None, 0);
    let wanted = LockInputs::new(&project.manifest, &plan);
    if args.check {
        let Some((lock, _)) = &existing else {
            return Err(Drift(format!(
                "there is no {}\n  hint: run `repro-run lock` to write it",
                lock_path.display()
            ))
            .into());
        };
        locking::check_drift(lock, &wanted, &lock_path)?;
        printer.status(format!("{} matches {}", lock_path.display(), global.manifest.display()));
        printer.data(format!("{}  {}", lock.env_id(), lock_path.display()));
        return Ok(Exit::Success);
    }
    let engine = super::connect(global).await?;
    if let Some(file) = &args.import_store {
        import_store(&engine, file, &wanted, printer).await?;
    }
    let options = locking::Options { update: args.update, offline: args.offline, frozen: false };
    let locked = locking::ensure(&engine, &wanted, existing.as_ref().map(|(l, _)| l), options, printer).await?;
    let env_id = locked.lock.env_id();
    if locking::write(&lock_path, &locked.lock, existing.as_ref().map(|(_, t)| t.as_str()))? {
        printer.status(format!("wrote {}", lock_path.display()));
    } else {
        printer.status(format!("{} is up to date", lock_path.display()));
    }
    printer.status(format!(
        "  env_id     {env_id}\n  base       {} ({})\n  toolchain  {} ({}, {} package(s))",
        locked.lock.base.name,
        locked.lock.base.rootfs,
        locked.toolchain_reference,
        locked.lock.toolchain.rootfs,
        locked.lock.toolchain.packages.len()
    ));
    if let Some(file) = &args.export_store {
        export_store(&engine, &locked, file, printer).await?;
    }
    printer.data(format!("{env_id}  {}", lock_path.display()));
    Ok(Exit::Success)
}

/// Writes the locked packages' files and the base image's rootfs into
/// one tar.
async fn export_store(engine: &Engine, locked: &Locked, out: &Path, printer: &Printer) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix(".repro-run-export-")
        .tempdir_in(crate::project::parent_dir(out))
        .with_context(|| format!("cannot write beside {}", out.display()))?;
    let rootfs = scratch.path().join("rootfs.tar");
    let name = scratch.path().join("name");
    fs_err::write(&name, &locked.lock.base.name)?;
    let guard = engine
        .create(&ContainerSpec {
            image: locked.base.id.clone(),
            argv: vec!["/repro-run-never-started".into()],
            ..Default::default()
        })
        .await?;
    let written = signal::cancellable(async {
        let mut file =
            tokio::fs::File::create(&rootfs).await.with_context(|| format!("cannot write {}", rootfs.display()))?;
        let mut stream = Box::pin(engine.export(guard.id()));
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.context("cannot read the base image's export")?)
                .await
                .with_context(|| format!("cannot write {}", rootfs.display()))?;
        }
        file.flush().await?;
        anyhow::Ok(())
    })
    .await;
    guard.remove().await;
    written?;
    let store = Store::open()?;
    let packages: Vec<_> =
        locked.lock.toolchain.packages.iter().filter(|p| p.from == Origin::Locked).cloned().collect();
    let out_path = out.to_owned();
    let count = tokio::task::spawn_blocking(move || {
        store.export(&packages, &[(BASE_NAME_ENTRY, &name), (BASE_ROOTFS_ENTRY, &rootfs)], &out_path)
    })
    .await
    .context("the export task panicked")??;
    printer.status(format!(
        "exported {count} package(s) and the base image `{}` to {}",
        locked.lock.base.name,
        out.display()
    ));
    Ok(())
}

/// Reads a store export: its packages go into this user's store, its base
/// image into the engine (unless the engine has that rootfs already).
async fn import_store(engine: &Engine, file: &Path, wanted: &LockInputs, printer: &Printer) -> Result<()> {
    let store = Store::open()?;
    let scratch = tempfile::Builder::new()
        .prefix(".repro-run-import-")
        .tempdir_in(crate::cache::dir().context("no cache directory")?.parent().unwrap_or(Path::new("/tmp")))
        .or_else(|_| tempfile::tempdir())
        .context("cannot make a scratch directory for the import")?;
    let rootfs = scratch.path().join("rootfs.tar");
    let (file_owned, rootfs_owned) = (file.to_owned(), rootfs.clone());
    let (count, base_name) = tokio::task::spawn_blocking(move || -> Result<(usize, Option<String>)> {
        let mut base_name = None;
        let count = store.import(&file_owned, |name, reader: &mut dyn Read| {
            match name {
                BASE_NAME_ENTRY => {
                    let mut s = String::new();
                    reader.read_to_string(&mut s)?;
                    base_name = Some(s);
                }
                BASE_ROOTFS_ENTRY => {
                    let mut out = fs_err::File::create(&rootfs_owned)?;
                    std::io::copy(reader, &mut out)
                        .with_context(|| format!("cannot write {}", rootfs_owned.display()))?;
                }
                other => {
                    tracing::warn!("{} holds `{other}`, which is not part of a store export", file_owned.display())
                }
            }
            Ok(())
        })?;
        Ok((count, base_name))
    })
    .await
    .context("the import task panicked")??;
    printer.status(format!("imported {count} package(s) into the package store from {}", file.display()));
    match base_name {
        Some(name) if name == wanted.base_name && rootfs.is_file() => {
            let reference = images::reference(&name);
            let tar = rootfs.clone();
            let digest = tokio::task::spawn_blocking(move || -> Result<digest::Digest> {
                Ok(digest::digest_tar(fs_err::File::open(&tar)?, TreeKind::Rootfs)?)
            })
            .await
            .context("the digest task panicked")??;
            let present = match engine.image_id(&reference).await? {
                Some(_) => images::digest_image(engine, &reference, false, printer).await? == digest,
                None => false,
            };
            if present {
                printer.status(format!("the engine has the base image `{name}` already ({digest})"));
            } else {
                images::import_file(engine, &rootfs, &reference).await?;
                printer.status(format!("imported the base image `{name}` as {reference} ({digest})"));
            }
        }
        Some(name) => printer.status(format!(
            "warning: {} carries the base image `{name}`, but {} names `{}`: the base was not imported",
            file.display(),
            "repro.toml",
            wanted.base_name
        )),
        None => {}
    }
    Ok(())
}

//! `repro-run image build|import|digest|ls`.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use repro_run_core::digest::{self, TreeKind};

use crate::cli::{GlobalArgs, ImageCommand};
use crate::exit::Exit;
use crate::images::{self, Recipe};
use crate::printer::Printer;

/// Runs `repro-run image …`.
pub async fn run(global: &GlobalArgs, cmd: ImageCommand, printer: &Printer) -> Result<Exit> {
    match cmd {
        ImageCommand::Build { recipe, tag } => {
            let recipe = Recipe::find(&recipe)?;
            let tag = tag.map_or_else(|| recipe.default_tag(), |t| images::reference(&t));
            let engine = super::connect(global).await?;
            let (_, digest) = images::build_recipe(&engine, &recipe, &tag, printer).await?;
            printer.data(format!("{digest}  {tag}"));
        }
        ImageCommand::Import { rootfs, tag } => {
            // `--tag debian-bookworm` makes the image a manifest naming the
            // recipe builds on.
            let tag = images::reference(&tag);
            let meta = fs_err::metadata(&rootfs).with_context(|| format!("cannot import {}", rootfs.display()))?;
            let engine = super::connect(global).await?;
            if meta.is_dir() {
                images::import_dir(&engine, &rootfs, &tag).await?;
            } else {
                images::import_file(&engine, &rootfs, &tag).await?;
            }
            let digest = images::digest_image(&engine, &tag, true, printer).await?;
            printer.data(format!("{digest}  {tag}"));
        }
        ImageCommand::Digest { target, no_cache } => {
            let path = Path::new(&target);
            let (digest, shown) = if path.is_dir() {
                let p = path.to_owned();
                (tokio::task::spawn_blocking(move || digest::digest_dir(&p, TreeKind::Rootfs)).await??, target)
            } else if path.is_file() {
                let f = fs_err::File::open(path)?;
                let digest = tokio::task::spawn_blocking(move || {
                    digest::digest_tar(std::io::BufReader::new(f), TreeKind::Rootfs)
                })
                .await??;
                (digest, target)
            } else {
                if target.contains('/') && (target.starts_with('.') || target.starts_with('/')) {
                    bail!("{target} does not exist: give an image reference, a rootfs tarball or a directory");
                }
                let engine = super::connect(global).await?;
                // A recipe name is the image a manifest naming it builds
                // on, and like `build`, this makes it on first use.
                let reference = match images::builtin_image(&engine, &target, printer).await? {
                    Some((reference, _)) => reference,
                    None => target,
                };
                (images::digest_image(&engine, &reference, no_cache, printer).await?, reference)
            };
            printer.data(format!("{digest}  {shown}"));
        }
        ImageCommand::Ls => {
            let engine = super::connect(global).await?;
            for (tag, _id) in engine.list_images("repro-run/").await? {
                let digest = images::digest_image(&engine, &tag, false, printer).await?;
                printer.data(format!("{digest}  {tag}"));
            }
        }
    }
    Ok(Exit::Success)
}

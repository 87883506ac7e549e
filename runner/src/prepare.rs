//! Base image + toolchain packages → toolchain image.
//!
//! The only step that may use the network: a container on the engine's
//! default bridge runs the image's package manager, and is committed as
//! `repro-run/toolchain:<key>`, where the key hashes the base image id and
//! the sorted package list. The same inputs find the same image again, so
//! preparation runs once per machine.

use anyhow::{bail, Context as _, Result};
use repro_run_core::digest::Digest;
use repro_run_core::hermetic;
use repro_run_core::manifest::Network;

use crate::engine::{ContainerSpec, Engine, ExitState};
use crate::images;
use crate::printer::Printer;
use crate::signal;

/// The base image a manifest names, present in the engine.
pub struct BaseImage {
    /// The reference the engine knows it by.
    pub reference: String,
    /// The engine's id.
    pub id: String,
}

/// Finds the base image; a built-in recipe name is built and imported on
/// first use.
pub async fn base_image(engine: &Engine, name: &str, printer: &Printer) -> Result<BaseImage> {
    if let Some((reference, id)) = images::builtin_image(engine, name, printer).await? {
        return Ok(BaseImage { reference, id });
    }
    match engine.image_id(name).await? {
        Some(id) => Ok(BaseImage { reference: name.to_owned(), id }),
        None => bail!(
            "image `{name}` is neither a built-in recipe ({}) nor an image in the {} engine\n  hint: use \
             `name = \"debian-bookworm\"`, build an image with `repro-run image build <recipe-dir>`, or import \
             a rootfs with `repro-run image import <rootfs.tar> --tag {name}`",
            images::builtin_list(),
            engine.kind
        ),
    }
}

/// Exit code of the install script when the image has no `apt-get`.
const NO_PACKAGE_MANAGER: i64 = 100;

/// The toolchain image: the base image itself when no packages are wanted,
/// otherwise the base image with the packages installed (made once).
pub async fn toolchain_image(
    engine: &Engine,
    base: &BaseImage,
    packages: &[String],
    printer: &Printer,
) -> Result<String> {
    if packages.is_empty() {
        return Ok(base.id.clone());
    }
    let key = Digest::of_bytes(format!("{}\n{}", base.id, packages.join("\n")).as_bytes()).to_hex();
    let tag = format!("repro-run/toolchain:{}", &key[..16]);
    if let Some(id) = engine.image_id(&tag).await? {
        return Ok(id);
    }
    printer.status(format!("preparing toolchain {tag}: {} on {}", packages.join(" "), base.reference));
    let script = format!(
        "command -v apt-get >/dev/null 2>&1 || exit {NO_PACKAGE_MANAGER}\n\
         set -e\n\
         apt-get update -q\n\
         apt-get install -y -q --no-install-recommends {}\n\
         apt-get clean\n\
         rm -rf /var/lib/apt/lists/*\n",
        packages.join(" ")
    );
    // The one container with the network, and with what apt needs: root,
    // the default capabilities (apt drops to `_apt` with setuid/setgid),
    // a writable root filesystem.
    let spec = ContainerSpec {
        image: base.id.clone(),
        argv: vec!["/bin/sh".into(), "-c".into(), script],
        env: vec![format!("PATH={}", hermetic::PATH), "DEBIAN_FRONTEND=noninteractive".into()],
        network: Network::Bridge,
        ..Default::default()
    };
    let guard = engine.create(&spec).await?;
    let id = guard.id().to_owned();
    let result = signal::cancellable(async {
        let mut tail = Tail::default();
        let state = engine
            .run(&id, None, |chunk| {
                printer.log(chunk);
                tail.push(chunk);
                Ok(())
            })
            .await?;
        let code = match state {
            ExitState::Exited(code) | ExitState::OutOfMemory(code) => code,
            ExitState::Interrupted => return Err(crate::exit::Interrupted.into()),
            // No time limit is given above.
            ExitState::TimedOut => bail!("the toolchain preparation was stopped at a time limit"),
        };
        if code == NO_PACKAGE_MANAGER {
            bail!(
                "image `{}` has no apt-get, so toolchain packages ({}) cannot be installed\n  hint: use a Debian-based \
                 image such as `debian-bookworm`, or drop [toolchain] packages",
                base.reference,
                packages.join(" ")
            );
        }
        if code != 0 {
            bail!(
                "installing the toolchain packages failed (exit {code}); the last lines of apt's output:\n{}",
                tail.text()
            );
        }
        // The committed image carries no environment but PATH: the build
        // sets its own, from scratch.
        engine.commit(&id, &tag, vec![format!("PATH={}", hermetic::PATH)]).await
    })
    .await;
    guard.remove().await;
    let image = result.context("cannot prepare the toolchain image")?;
    printer.status(format!("toolchain {tag} ready"));
    Ok(image)
}

/// The last lines of a log, for error messages.
#[derive(Default)]
pub struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 8 * 1024;

    /// Appends log bytes, keeping only the end.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * Self::KEEP {
            self.bytes.drain(..self.bytes.len() - Self::KEEP);
        }
    }

    /// The last 20 lines, indented.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return "    (no output)".to_owned();
        }
        let start = lines.len().saturating_sub(20);
        lines[start..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::Tail;

    #[test]
    fn tail_keeps_the_last_twenty_lines() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text();
        assert!(text.starts_with("    line 80\n"));
        assert!(text.ends_with("    line 99"));
    }
}

//! `repro-run init`: a starting `repro.toml` for the project found here.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::cli::GlobalArgs;
use crate::exit::Exit;
use crate::printer::Printer;

/// The kinds of project `init` recognises, by the file that marks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProjectKind {
    Rust,
    Go,
    Python,
    Make,
}

impl ProjectKind {
    const MARKERS: [(&'static str, ProjectKind); 4] = [
        ("Cargo.toml", ProjectKind::Rust),
        ("go.mod", ProjectKind::Go),
        ("pyproject.toml", ProjectKind::Python),
        ("Makefile", ProjectKind::Make),
    ];
}

/// Runs `repro-run init`.
pub async fn run(global: &GlobalArgs, force: bool, printer: &Printer) -> Result<Exit> {
    let manifest = &global.manifest;
    if manifest.exists() && !force {
        bail!("{} exists already; edit it, or pass --force to replace it", manifest.display());
    }
    let dir = manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let found = ProjectKind::MARKERS.iter().find(|(marker, _)| dir.join(marker).is_file());
    let Some(&(marker, kind)) = found else {
        bail!(
            "found no Cargo.toml, go.mod, pyproject.toml or Makefile in {}\n  hint: write repro.toml by hand; \
             examples/hello-c/repro.toml shows the shape",
            dir.display()
        );
    };
    let crate_name = if kind == ProjectKind::Rust {
        let text = fs_err::read_to_string(dir.join(marker))?;
        cargo_package_name(&text)
    } else {
        None
    };
    let text = starter(kind, crate_name.as_deref());
    fs_err::write(manifest, &text).with_context(|| format!("cannot write {}", manifest.display()))?;
    printer.status(format!(
        "wrote {} for the {marker} found there; check [build] command and outputs, then run `repro-run build`",
        manifest.display()
    ));
    Ok(Exit::Success)
}

fn cargo_package_name(cargo_toml: &str) -> Option<String> {
    let value: toml::Table = toml::from_str(cargo_toml).ok()?;
    value.get("package")?.get("name")?.as_str().map(str::to_owned)
}

/// The starting manifest for a kind of project.
fn starter(kind: ProjectKind, crate_name: Option<&str>) -> String {
    let (profile, command, outputs, note) = match kind {
        ProjectKind::Rust => {
            let name = crate_name.unwrap_or("app");
            (
                "rust",
                format!(
                    "\"cargo build --release --locked --offline && mkdir -p dist && cp target/release/{name} dist/\""
                ),
                "[\"dist/\"]",
                "# The network is off: vendor dependencies (`cargo vendor`) and commit .cargo/config.toml.",
            )
        }
        ProjectKind::Go => (
            "go",
            "\"mkdir -p dist && go build -o dist/ ./...\"".to_owned(),
            "[\"dist/\"]",
            "# The network is off: vendor dependencies (`go mod vendor`).",
        ),
        ProjectKind::Python => (
            "python",
            "\"python3 -m build --no-isolation --wheel --outdir dist/\"".to_owned(),
            "[\"dist/\"]",
            "# The network is off: every build dependency must be a Debian package below.",
        ),
        ProjectKind::Make => {
            ("c", "[\"make\"]".to_owned(), "[\"out/\"]", "# Name where your Makefile puts what it builds.")
        }
    };
    let packages = match kind {
        ProjectKind::Python => "[\"python3-build\", \"python3-setuptools\", \"python3-wheel\"]",
        _ => "[]",
    };
    format!(
        "# repro.toml: how repro-run builds this project, hermetically.\n\
         # See `repro-run build --help`.\n\
         \n\
         [image]\n\
         name = \"debian-bookworm\"\n\
         # After the first build, pin the base image with the digest it prints:\n\
         # rootfs = \"blake3:...\"\n\
         \n\
         [toolchain]\n\
         profile = \"{profile}\"\n\
         packages = {packages}\n\
         \n\
         [build]\n\
         {note}\n\
         command = {command}\n\
         outputs = {outputs}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use repro_run_core::manifest::Manifest;

    #[test]
    fn every_starter_is_a_valid_manifest() {
        for (_, kind) in ProjectKind::MARKERS {
            let text = starter(kind, Some("hello"));
            let m = Manifest::parse(&text).unwrap_or_else(|e| panic!("{kind:?}: {e}\n{text}"));
            assert!(m.toolchain.profile.is_some());
            crate::profiles::load(m.toolchain.profile.as_deref().unwrap()).unwrap();
        }
    }

    #[test]
    fn rust_starter_copies_the_crate_binary() {
        assert_eq!(cargo_package_name("[package]\nname = \"hello\"\n").as_deref(), Some("hello"));
        insta::assert_snapshot!(starter(ProjectKind::Rust, Some("hello")), @r#"
        # repro.toml: how repro-run builds this project, hermetically.
        # See `repro-run build --help`.

        [image]
        name = "debian-bookworm"
        # After the first build, pin the base image with the digest it prints:
        # rootfs = "blake3:..."

        [toolchain]
        profile = "rust"
        packages = []

        [build]
        # The network is off: vendor dependencies (`cargo vendor`) and commit .cargo/config.toml.
        command = "cargo build --release --locked --offline && mkdir -p dist && cp target/release/hello dist/"
        outputs = ["dist/"]
        "#);
    }
}

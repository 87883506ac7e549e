//! `repro-run init`: a starting `repro.toml` for the project found here.
//!
//! The project's kind is told by the file that marks it, the first of
//! [`ProjectKind::MARKERS`] found. The order matters where a tree has
//! several: a released autotools tree has `configure` and often a
//! `GNUmakefile` or `Makefile` too, but no usable `Makefile` before
//! configure has run, so autotools comes before plain make; a
//! `package.json` beside a Makefile or a CMakeLists.txt is more often
//! tooling (linters, commit hooks) than the build, so npm comes last.
//! Reading the files (I/O) is [`facts`]; the text is [`starter`], pure.

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
    /// A `configure` script (a release tarball, or a tree it was generated in).
    Autotools,
    /// `configure.ac` without `configure` (a checkout): autoreconf first.
    Autoreconf,
    CMake,
    Meson,
    /// A makefile that make reads as it is.
    Make,
    Npm,
}

impl ProjectKind {
    /// Markers in the order they are looked for; the first found decides.
    const MARKERS: [(&'static str, ProjectKind); 11] = [
        ("Cargo.toml", ProjectKind::Rust),
        ("go.mod", ProjectKind::Go),
        ("pyproject.toml", ProjectKind::Python),
        ("configure", ProjectKind::Autotools),
        ("configure.ac", ProjectKind::Autoreconf),
        ("CMakeLists.txt", ProjectKind::CMake),
        ("meson.build", ProjectKind::Meson),
        // The names GNU make looks for, in its order.
        ("GNUmakefile", ProjectKind::Make),
        ("makefile", ProjectKind::Make),
        ("Makefile", ProjectKind::Make),
        ("package.json", ProjectKind::Npm),
    ];
}

/// What the project's own files tell, beyond its kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Facts {
    /// The name of what the build makes: the crate's, or the autoconf
    /// package's (its tarname).
    name: Option<String>,
    /// autoreconf: configure.ac uses libtool (`LT_INIT`).
    libtool: bool,
    /// autoreconf: configure.ac uses gettext (`AM_GNU_GETTEXT`).
    gettext: bool,
    /// npm: package.json has a `build` script.
    build_script: bool,
}

/// Runs `repro-run init`.
pub async fn run(global: &GlobalArgs, force: bool, printer: &Printer) -> Result<Exit> {
    let manifest = &global.manifest;
    if manifest.exists() && !force {
        bail!("{} exists already; edit it, or pass --force to replace it", manifest.display());
    }
    let dir = manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let found: Vec<(&str, ProjectKind)> =
        ProjectKind::MARKERS.iter().copied().filter(|(marker, _)| dir.join(marker).is_file()).collect();
    let Some(&(marker, kind)) = found.first() else {
        let names: Vec<&str> = ProjectKind::MARKERS.iter().map(|(m, _)| *m).collect();
        bail!(
            "found no {} or {} in {}\n  hint: write repro.toml by hand; examples/hello-c/repro.toml shows the shape",
            names[..names.len() - 1].join(", "),
            names[names.len() - 1],
            dir.display()
        );
    };
    let facts = facts(kind, dir)?;
    let text = starter(kind, &facts);
    fs_err::write(manifest, &text).with_context(|| format!("cannot write {}", manifest.display()))?;
    let others: Vec<&str> = found[1..].iter().map(|(m, _)| *m).collect();
    let also = if others.is_empty() { String::new() } else { format!(" (also there: {})", others.join(", ")) };
    printer.status(format!(
        "wrote {} for the {marker} found there{also}; check [build] command and outputs, then run `repro-run build`",
        manifest.display()
    ));
    Ok(Exit::Success)
}

/// Reads what [`starter`] needs from the project in `dir`.
fn facts(kind: ProjectKind, dir: &Path) -> Result<Facts> {
    // A file that is not there, or not text, tells nothing.
    let read = |name: &str| fs_err::read(dir.join(name)).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut facts = Facts::default();
    match kind {
        ProjectKind::Rust => {
            let text = fs_err::read_to_string(dir.join("Cargo.toml"))?;
            facts.name = cargo_package_name(&text);
        }
        ProjectKind::Autotools | ProjectKind::Autoreconf => {
            let configure_ac = read("configure.ac");
            facts.name = read("configure")
                .and_then(|c| configure_tarname(&c))
                .or_else(|| configure_ac.as_deref().and_then(ac_init_tarname));
            if let Some(ac) = &configure_ac {
                facts.libtool = ac.contains("LT_INIT") || ac.contains("AC_PROG_LIBTOOL");
                facts.gettext = ac.contains("AM_GNU_GETTEXT");
            }
        }
        ProjectKind::Npm => {
            let text = fs_err::read_to_string(dir.join("package.json"))?;
            facts.build_script = npm_has_build_script(&text);
        }
        ProjectKind::Go | ProjectKind::Python | ProjectKind::CMake | ProjectKind::Meson | ProjectKind::Make => {}
    }
    Ok(facts)
}

fn cargo_package_name(cargo_toml: &str) -> Option<String> {
    let value: toml::Table = toml::from_str(cargo_toml).ok()?;
    value.get("package")?.get("name")?.as_str().map(str::to_owned)
}

/// `PACKAGE_TARNAME='hello'`, as autoconf writes it into `configure`.
fn configure_tarname(configure: &str) -> Option<String> {
    let line = configure.lines().find_map(|l| l.trim().strip_prefix("PACKAGE_TARNAME="))?;
    let name = line.trim().trim_matches(|c| c == '\'' || c == '"');
    is_plain_name(name).then(|| name.to_owned())
}

/// The tarname `AC_INIT(package, version, [bug-report], [tarname])`
/// gives: the fourth argument, else autoconf's own rule on the first
/// (without `GNU `, lowercase, every other character than
/// `a-z 0-9 _` a `-`). `None` when the package's name is not literal.
fn ac_init_tarname(configure_ac: &str) -> Option<String> {
    let at = configure_ac.find("AC_INIT(")? + "AC_INIT(".len();
    let args = m4_args(&configure_ac[at..]);
    if let Some(tarname) = args.get(3).filter(|t| !t.is_empty()) {
        return is_plain_name(tarname).then(|| tarname.clone());
    }
    let package = args.first()?;
    if package.is_empty() || package.contains(['(', ')', '$']) {
        return None;
    }
    let package = package.replace("GNU ", "").to_lowercase();
    let tarname: String = package
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '-' })
        .collect();
    is_plain_name(&tarname).then_some(tarname)
}

/// The arguments of an m4 call whose `(` is just behind `text`, each
/// trimmed and stripped of one level of `[…]` quotes. Commas inside
/// quotes or nested parentheses do not split.
fn m4_args(text: &str) -> Vec<String> {
    let (mut args, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0usize, 0usize);
    let mut push = |current: &mut String| {
        let arg = current.trim();
        let arg = arg.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(arg);
        args.push(arg.trim().to_owned());
        current.clear();
    };
    for c in text.chars() {
        match c {
            '[' => quoted += 1,
            ']' => quoted = quoted.saturating_sub(1),
            '(' if quoted == 0 => depth += 1,
            ')' if quoted == 0 && depth == 0 => {
                push(&mut current);
                return args;
            }
            ')' if quoted == 0 => depth -= 1,
            ',' if quoted == 0 && depth == 0 => {
                push(&mut current);
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    // No closing parenthesis: nothing to trust.
    Vec::new()
}

/// A name fit to be an output path: a single component of plain characters.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

fn npm_has_build_script(package_json: &str) -> bool {
    let value: Option<serde_json::Value> = serde_json::from_str(package_json).ok();
    value.is_some_and(|v| v.get("scripts").and_then(|s| s.get("build")).is_some_and(|b| b.is_string()))
}

/// A TOML string, for a command that the shell runs.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The starting manifest for a kind of project.
///
/// Long, and on purpose: it is the table of what each kind of project
/// gets (profile, command, outputs, packages, the comment to the user),
/// one arm per kind, read best side by side; the snapshots in
/// `snapshots/` show what each arm writes.
fn starter(kind: ProjectKind, facts: &Facts) -> String {
    let mut packages: Vec<&str> = Vec::new();
    let mut env = "";
    let (profile, command, outputs, note) = match kind {
        ProjectKind::Rust => {
            let name = facts.name.as_deref().unwrap_or("app");
            (
                Some("rust"),
                quoted(&format!(
                    "cargo build --release --locked --offline && mkdir -p dist && cp target/release/{name} dist/"
                )),
                "[\"dist/\"]".to_owned(),
                "# The network is off: vendor dependencies (`cargo vendor`) and commit .cargo/config.toml.".to_owned(),
            )
        }
        ProjectKind::Go => (
            Some("go"),
            quoted("mkdir -p dist && go build -o dist/ ./..."),
            "[\"dist/\"]".to_owned(),
            "# The network is off: vendor dependencies (`go mod vendor`).".to_owned(),
        ),
        ProjectKind::Python => {
            packages = vec!["python3-build", "python3-setuptools", "python3-wheel"];
            (
                Some("python"),
                quoted("python3 -m build --no-isolation --wheel --outdir dist/"),
                "[\"dist/\"]".to_owned(),
                "# The network is off: every build dependency must be a Debian package below.".to_owned(),
            )
        }
        ProjectKind::Autotools | ProjectKind::Autoreconf => {
            let mut note = String::new();
            let command = if kind == ProjectKind::Autoreconf {
                packages = vec!["autoconf", "automake"];
                if facts.libtool {
                    packages.push("libtool");
                }
                if facts.gettext {
                    packages.push("autopoint");
                }
                note.push_str(
                    "# There is no configure yet: autoreconf makes it, with the packages below;\n\
                     # configure.ac's other macros may need more (pkg-config, gettext, texinfo).\n",
                );
                "autoreconf -fi && ./configure && make"
            } else {
                "./configure && make"
            };
            note.push_str("# configure finds CC and reads CFLAGS from the c profile; the network is off.\n");
            let outputs = match &facts.name {
                Some(name) => {
                    note.push_str(&format!(
                        "# `{name}` is a guess from the package's name (AC_INIT): name what make builds,\n\
                         # or add `&& make install DESTDIR=/src/out` to the command and use [\"out/\"].\n"
                    ));
                    format!("[{}]", quoted(name))
                }
                None => {
                    note.push_str(
                        "# Name what make builds, or add `&& make install DESTDIR=/src/out` to the command.\n",
                    );
                    "[\"out/\"]".to_owned()
                }
            };
            (Some("c"), quoted(command), outputs, note.trim_end().to_owned())
        }
        ProjectKind::CMake => {
            packages = vec!["cmake"];
            (
                Some("c"),
                quoted(
                    "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build && cmake --install build \
                     --prefix /src/out",
                ),
                "[\"out/\"]".to_owned(),
                "# out/ gets what the install() rules name; without them, name files under build/.\n\
                 # The network is off: FetchContent and ExternalProject cannot download."
                    .to_owned(),
            )
        }
        ProjectKind::Meson => {
            packages = vec!["meson", "ninja-build"];
            (
                Some("c"),
                quoted(
                    "meson setup build --buildtype=release --prefix=/usr && meson compile -C build && meson install \
                     -C build --destdir /src/out",
                ),
                "[\"out/\"]".to_owned(),
                "# out/ gets what meson installs, under usr/. The network is off: subprojects and\n\
                 # wraps must be in the sources; dependency() finds the -dev packages added below\n\
                 # (add pkg-config too)."
                    .to_owned(),
            )
        }
        ProjectKind::Make => (
            Some("c"),
            "[\"make\"]".to_owned(),
            "[\"out/\"]".to_owned(),
            "# Name where your Makefile puts what it builds.".to_owned(),
        ),
        ProjectKind::Npm => {
            packages = vec!["nodejs", "npm"];
            env = "env = { npm_config_cache = \"/src/.npm-cache\", npm_config_offline = \"true\", \
                   npm_config_audit = \"false\", npm_config_fund = \"false\", npm_config_update_notifier = \"false\" }\n";
            let (command, note) = if facts.build_script {
                ("npm ci && npm run build", "# dist/ is a guess: name where the build script writes.")
            } else {
                (
                    "npm ci && mkdir -p dist && npm pack --pack-destination dist",
                    "# No build script: the artifact is the package tarball `npm pack` makes.",
                )
            };
            (
                None,
                quoted(command),
                "[\"dist/\"]".to_owned(),
                format!(
                    "# The network is off, so `npm ci` cannot reach the registry: it installs from a\n\
                     # cache in the sources. Fill it where there is a network with\n\
                     # `npm ci --cache .npm-cache`, and commit .npm-cache/. Install scripts that\n\
                     # download (node-gyp's headers, prebuilt binaries) fail.\n{note}"
                ),
            )
        }
    };
    let profile = match profile {
        Some(p) => format!("profile = \"{p}\"\n"),
        None => "# No profile: Debian's packages below are the toolchain.\n".to_owned(),
    };
    let packages = format!("[{}]", packages.iter().map(|p| quoted(p)).collect::<Vec<_>>().join(", "));
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
         {profile}\
         packages = {packages}\n\
         \n\
         [build]\n\
         {note}\n\
         command = {command}\n\
         outputs = {outputs}\n\
         {env}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use repro_run_core::manifest::Manifest;

    /// Every kind, with the facts its files might give.
    fn every_kind() -> Vec<(&'static str, ProjectKind, Facts)> {
        let named = |n: &str| Facts { name: Some(n.to_owned()), ..Facts::default() };
        vec![
            ("rust", ProjectKind::Rust, named("hello")),
            ("go", ProjectKind::Go, Facts::default()),
            ("python", ProjectKind::Python, Facts::default()),
            ("autotools", ProjectKind::Autotools, named("hello")),
            ("autotools_unnamed", ProjectKind::Autotools, Facts::default()),
            (
                "autoreconf",
                ProjectKind::Autoreconf,
                Facts { name: Some("hello".into()), libtool: true, gettext: true, ..Facts::default() },
            ),
            ("cmake", ProjectKind::CMake, Facts::default()),
            ("meson", ProjectKind::Meson, Facts::default()),
            ("make", ProjectKind::Make, Facts::default()),
            ("npm", ProjectKind::Npm, Facts { build_script: true, ..Facts::default() }),
            ("npm_pack", ProjectKind::Npm, Facts::default()),
        ]
    }

    #[test]
    fn every_starter_is_a_valid_manifest() {
        for (_, kind) in ProjectKind::MARKERS {
            assert!(every_kind().iter().any(|(_, k, _)| *k == kind), "{kind:?} has no starter test");
        }
        for (name, kind, facts) in every_kind() {
            let text = starter(kind, &facts);
            let m = Manifest::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            if let Some(profile) = m.toolchain.profile.as_deref() {
                crate::profiles::load(profile).unwrap();
            } else {
                assert!(!m.toolchain.packages.is_empty(), "{name}: no profile and no packages");
            }
            assert_eq!(m.build.network, repro_run_core::manifest::Network::None, "{name}");
            insta::assert_snapshot!(name, text);
        }
    }

    #[test]
    fn rust_starter_copies_the_crate_binary() {
        assert_eq!(cargo_package_name("[package]\nname = \"hello\"\n").as_deref(), Some("hello"));
        insta::assert_snapshot!(starter(ProjectKind::Rust, &Facts { name: Some("hello".into()), ..Facts::default() }), @r#"
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

    #[test]
    fn the_autoconf_package_name_is_read_as_autoconf_derives_it() {
        // GNU hello's own line: the version is a macro call with commas.
        let gnu_hello = "AC_PREREQ([2.64])\nAC_INIT([GNU Hello],\n  m4_esyscmd([build-aux/git-version-gen \
                         .tarball-version]),\n  [bug-hello@gnu.org])\nAM_INIT_AUTOMAKE\n";
        assert_eq!(ac_init_tarname(gnu_hello).as_deref(), Some("hello"));
        assert_eq!(ac_init_tarname("AC_INIT([My Tool], [1.0], [a@b], [mytool])").as_deref(), Some("mytool"));
        assert_eq!(ac_init_tarname("AC_INIT(GNU Sed 2, 4.9)").as_deref(), Some("sed-2"));
        assert_eq!(ac_init_tarname("AC_INIT([x], [1], [a@b], [../etc])"), None);
        assert_eq!(ac_init_tarname("AC_INIT(m4_esyscmd([./name]), [1])"), None);
        assert_eq!(ac_init_tarname("AC_INIT([unclosed]"), None);
        assert_eq!(ac_init_tarname("dnl nothing here"), None);
        assert_eq!(configure_tarname("PACKAGE_NAME='GNU Hello'\nPACKAGE_TARNAME='hello'\n").as_deref(), Some("hello"));
        assert_eq!(configure_tarname("PACKAGE_TARNAME='a b'\n"), None);
    }

    #[test]
    fn facts_come_from_the_project_files() {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(
            d.path().join("configure.ac"),
            "AC_INIT([GNU Hello], [2.12])\nLT_INIT\nAM_GNU_GETTEXT([external])\n",
        )
        .unwrap();
        let read = facts(ProjectKind::Autoreconf, d.path()).unwrap();
        assert_eq!(read, Facts { name: Some("hello".into()), libtool: true, gettext: true, build_script: false });
        // A generated configure knows the name best.
        fs_err::write(d.path().join("configure"), "#!/bin/sh\nPACKAGE_TARNAME='hello-world'\n").unwrap();
        assert_eq!(facts(ProjectKind::Autotools, d.path()).unwrap().name.as_deref(), Some("hello-world"));

        fs_err::write(d.path().join("package.json"), r#"{"name": "x", "scripts": {"build": "tsc"}}"#).unwrap();
        assert!(facts(ProjectKind::Npm, d.path()).unwrap().build_script);
        fs_err::write(d.path().join("package.json"), r#"{"name": "x", "scripts": {"test": "jest"}}"#).unwrap();
        assert!(!facts(ProjectKind::Npm, d.path()).unwrap().build_script);
    }

    #[test]
    fn autotools_comes_before_plain_make() {
        let kind_of =
            |files: &[&str]| ProjectKind::MARKERS.iter().find(|(m, _)| files.contains(m)).map(|&(_, kind)| kind);
        // GNU hello's tarball.
        assert_eq!(
            kind_of(&["configure", "configure.ac", "GNUmakefile", "Makefile.in", "Makefile.am"]),
            Some(ProjectKind::Autotools)
        );
        assert_eq!(kind_of(&["configure.ac", "Makefile.am", "GNUmakefile"]), Some(ProjectKind::Autoreconf));
        assert_eq!(kind_of(&["CMakeLists.txt", "Makefile", "package.json"]), Some(ProjectKind::CMake));
        assert_eq!(kind_of(&["Makefile", "package.json"]), Some(ProjectKind::Make));
        assert_eq!(kind_of(&["package.json"]), Some(ProjectKind::Npm));
        assert_eq!(kind_of(&["Makefile.in", "README"]), None);
    }
}

//! The `repro.toml` model: what to build, on what, and what comes out.
//!
//! Parsing is pure (`&str` in, [`Manifest`] out) and strict: unknown keys are
//! errors, and every error carries the line and column of the bad value, so
//! the CLI can point at it. Checks that need the outside world (does the image
//! exist, does the profile exist) happen in the runner.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::digest::Digest;
use crate::span::LineCol;

/// A parsed and validated `repro.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The base image.
    pub image: ImageSpec,
    /// The toolchain installed on top of the base image.
    pub toolchain: ToolchainSpec,
    /// The build itself.
    pub build: BuildSpec,
    /// Resource limits of the build container.
    pub limits: Limits,
    /// Which files are the sources.
    pub source: SourceSpec,
}

/// `[limits]`: what the build may use. Every limit is part of the `env_id`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Wall-clock limit of the build command, in seconds (default 3600).
    pub timeout_secs: u64,
    /// Memory limit in bytes (swap included); `None`: the engine's default.
    pub memory_bytes: Option<u64>,
    /// CPU limit in thousandths of a CPU; `None`: all CPUs.
    pub millicpus: Option<u64>,
    /// Open files (soft = hard), default 1024.
    pub nofile: u64,
    /// Processes of the build user (soft = hard), default 4096. Set
    /// explicitly because engines otherwise pass their own, which differ.
    pub nproc: u64,
    /// Processes and threads in the whole container (its cgroup's
    /// `pids.max`), default 4096: engines otherwise leave it unlimited, and
    /// a fork bomb in a build takes the machine down.
    pub pids: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout_secs: 3600, memory_bytes: None, millicpus: None, nofile: 1024, nproc: 4096, pids: 4096 }
    }
}

/// `[image]`: the base image the build runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// A built-in recipe name (`busybox`, `debian-bookworm`) or an engine
    /// image reference.
    pub name: String,
    /// An optional pin: the `repro-tree-v1` digest the base image's root
    /// filesystem must have.
    pub rootfs: Option<Digest>,
}

/// `[toolchain]`: packages installed into the base image before the build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolchainSpec {
    /// A toolchain profile name (`profiles/<name>.toml`).
    pub profile: Option<String>,
    /// Extra packages, added to the profile's.
    pub packages: Vec<String>,
}

/// `[build]`: the command, its environment and its outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSpec {
    /// What runs in `/src`.
    pub command: Command,
    /// Paths relative to `/src` whose contents are the artifacts.
    pub outputs: Vec<String>,
    /// Variables added to the environment (they win over the profile's).
    pub env: BTreeMap<String, String>,
    /// Where `SOURCE_DATE_EPOCH` (also the mtime of every source file)
    /// comes from.
    pub source_date_epoch: SourceDateEpoch,
    /// The numeric user and group the command runs as.
    pub user: (u32, u32),
    /// The build container's network.
    pub network: Network,
}

/// `[build] source_date_epoch`: a fixed value, or the commit time of the
/// sources' git `HEAD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceDateEpoch {
    /// Seconds since 1970 (the default is 0).
    Fixed(u64),
    /// `"git"`: the committer time of `HEAD`, read when the build starts.
    GitCommit,
}

/// `[build] network`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No network: only the loopback interface (the default).
    #[default]
    None,
    /// The engine's default bridge: an explicit opt-in that lets the build
    /// reach the network, which no reproducible build should need.
    Bridge,
}

impl Network {
    /// The engine's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Bridge => "bridge",
        }
    }
}

/// `[source]`: which files go to `/src`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSpec {
    /// The source directory, relative to the manifest's directory.
    pub path: String,
    /// gitignore-style patterns of paths left out (besides `.gitignore`).
    pub exclude: Vec<String>,
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec { path: ".".into(), exclude: Vec::new() }
    }
}

/// The build command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// An argv, run as is (no shell).
    Argv(Vec<String>),
    /// A string, run by `/bin/sh -c`.
    Shell(String),
}

impl Command {
    /// The argv the container runs.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(argv) => argv.clone(),
            Command::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        }
    }
}

/// A manifest error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// Where the bad value starts; `None` when the error concerns the whole file.
    pub at: Option<LineCol>,
    /// What is wrong, naming the bad value and what is accepted.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "line {}, column {}: {}", at.line, at.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    image: RawImage,
    #[serde(default)]
    toolchain: RawToolchain,
    build: RawBuild,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    source: RawSource,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: Option<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout: Option<Spanned<toml::Value>>,
    memory: Option<Spanned<toml::Value>>,
    cpus: Option<Spanned<toml::Value>>,
    nofile: Option<Spanned<i64>>,
    nproc: Option<Spanned<i64>>,
    pids: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Spanned<String>,
    rootfs: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawToolchain {
    profile: Option<Spanned<String>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: Spanned<RawCommand>,
    outputs: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    source_date_epoch: Option<Spanned<toml::Value>>,
    user: Option<Spanned<String>>,
    network: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCommand {
    Argv(Vec<String>),
    Shell(String),
}

impl Manifest {
    /// Parses and validates the text of a `repro.toml`.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError {
            at: e.span().map(|s| LineCol::of(text, s.start)),
            message: tidy_toml_message(e.message()),
        })?;
        let err = |span: std::ops::Range<usize>, message: String| ManifestError {
            at: Some(LineCol::of(text, span.start)),
            message,
        };

        let name = raw.image.name;
        if !is_image_name(name.get_ref()) {
            return Err(err(
                name.span(),
                format!(
                    "image name `{}` is not valid: use a recipe name such as `busybox` or \
                     `debian-bookworm`, or an image reference such as `repro-run/busybox:latest`",
                    name.get_ref()
                ),
            ));
        }
        let rootfs = match raw.image.rootfs {
            None => None,
            Some(pin) => {
                Some(pin.get_ref().parse::<Digest>().map_err(|e| err(pin.span(), format!("image.rootfs: {e}")))?)
            }
        };

        let profile = match raw.toolchain.profile {
            None => None,
            Some(p) if is_simple_name(p.get_ref()) => Some(p.into_inner()),
            Some(p) => {
                return Err(err(
                    p.span(),
                    format!(
                        "profile name `{}` is not valid: use lowercase letters, digits and `-`, \
                         such as `c`",
                        p.get_ref()
                    ),
                ))
            }
        };
        let mut packages = Vec::with_capacity(raw.toolchain.packages.len());
        for p in raw.toolchain.packages {
            if !is_package_name(p.get_ref()) {
                return Err(err(
                    p.span(),
                    format!(
                        "package name `{}` is not valid: a Debian package name has lowercase \
                         letters, digits and `+ - .`, and starts with a letter or digit",
                        p.get_ref()
                    ),
                ));
            }
            packages.push(p.into_inner());
        }

        let command_span = raw.build.command.span();
        let command = match raw.build.command.into_inner() {
            RawCommand::Argv(argv) if argv.first().is_some_and(|a| !a.is_empty()) => Command::Argv(argv),
            RawCommand::Shell(script) if !script.trim().is_empty() => Command::Shell(script),
            _ => {
                return Err(err(
                    command_span,
                    "build.command is empty: give an argv such as [\"make\", \"all\"] or a \
                     shell string such as \"make all\""
                        .into(),
                ))
            }
        };

        let outputs_span = raw.build.outputs.span();
        let mut outputs = Vec::new();
        for o in raw.build.outputs.into_inner() {
            let cleaned = clean_relative_path(o.get_ref()).ok_or_else(|| {
                err(
                    o.span(),
                    format!(
                        "output `{}` is not valid: give a path relative to /src, such as \
                         `out/` or `hello`, without `..`",
                        o.get_ref()
                    ),
                )
            })?;
            if is_glob(&cleaned) {
                if let Err(e) = globset::Glob::new(&cleaned) {
                    return Err(err(
                        o.span(),
                        format!(
                            "output `{}` is not a valid glob ({}): such as `out/*.bin` or `dist/**`",
                            o.get_ref(),
                            e.kind()
                        ),
                    ));
                }
            }
            outputs.push(cleaned);
        }
        if outputs.is_empty() {
            return Err(err(
                outputs_span,
                "build.outputs is empty: name at least one file or directory under /src, \
                 such as [\"out/\"]"
                    .into(),
            ));
        }

        let mut env = BTreeMap::new();
        for (k, v) in raw.build.env {
            if !is_env_name(k.get_ref()) {
                return Err(err(
                    k.span(),
                    format!(
                        "environment variable name `{}` is not valid: use letters, digits and \
                         `_`, not starting with a digit",
                        k.get_ref()
                    ),
                ));
            }
            if v.get_ref().contains('\0') {
                return Err(err(v.span(), format!("the value of `{}` contains a NUL byte", k.get_ref())));
            }
            env.insert(k.into_inner(), v.into_inner());
        }

        let source_date_epoch = match raw.build.source_date_epoch {
            None => SourceDateEpoch::Fixed(0),
            Some(s) => match s.get_ref() {
                toml::Value::Integer(i) if *i >= 0 => SourceDateEpoch::Fixed(*i as u64),
                toml::Value::String(g) if g == "git" => SourceDateEpoch::GitCommit,
                other => {
                    return Err(err(
                        s.span(),
                        format!(
                            "build.source_date_epoch `{}` is not valid: give seconds since 1970 (such as 0 or \
                             1700000000), or \"git\" for the commit time of the sources' HEAD",
                            show(other)
                        ),
                    ))
                }
            },
        };

        let user = match raw.build.user {
            None => (1000, 1000),
            Some(u) => parse_user(u.get_ref()).ok_or_else(|| {
                err(
                    u.span(),
                    format!(
                        "build.user `{}` is not valid: give numeric ids as \"uid:gid\", such as \"1000:1000\" \
                         (names differ between images)",
                        u.get_ref()
                    ),
                )
            })?,
        };

        let network = match raw.build.network {
            None => Network::None,
            Some(n) => match n.get_ref().as_str() {
                "none" => Network::None,
                "bridge" => Network::Bridge,
                other => {
                    return Err(err(
                        n.span(),
                        format!("build.network `{other}` is not valid: use \"none\" (the default) or \"bridge\""),
                    ))
                }
            },
        };

        let mut source = SourceSpec::default();
        if let Some(p) = raw.source.path {
            if p.get_ref().is_empty() || p.get_ref().starts_with('/') {
                return Err(err(
                    p.span(),
                    format!(
                        "source.path `{}` is not valid: give a directory relative to the manifest, such as \".\" \
                         or \"src\"",
                        p.get_ref()
                    ),
                ));
            }
            source.path = p.into_inner();
        }
        for x in raw.source.exclude {
            if let Err(e) = globset::Glob::new(x.get_ref().trim_end_matches('/')) {
                return Err(err(
                    x.span(),
                    format!(
                        "source.exclude `{}` is not a valid pattern ({}): use gitignore-style patterns such as \
                         \"*.log\" or \"docs/\"",
                        x.get_ref(),
                        e.kind()
                    ),
                ));
            }
            source.exclude.push(x.into_inner());
        }

        let mut limits = Limits::default();
        if let Some(t) = raw.limits.timeout {
            limits.timeout_secs = parse_duration(t.get_ref()).filter(|&s| s > 0).ok_or_else(|| {
                err(
                    t.span(),
                    format!(
                        "limits.timeout `{}` is not a duration: give seconds (600) or a number with a unit, \
                         such as \"90s\", \"30m\" or \"2h\"",
                        show(t.get_ref())
                    ),
                )
            })?;
        }
        if let Some(m) = raw.limits.memory {
            limits.memory_bytes =
                Some(parse_bytes(m.get_ref()).filter(|&b| b >= 6 * 1024 * 1024).ok_or_else(|| {
                    err(
                        m.span(),
                        format!(
                            "limits.memory `{}` is not a size of at least 6m: give bytes or a number with a unit, \
                         such as \"512m\" or \"4g\"",
                            show(m.get_ref())
                        ),
                    )
                })?);
        }
        if let Some(c) = raw.limits.cpus {
            let millis = match c.get_ref() {
                toml::Value::Integer(i) => u64::try_from(*i).ok().map(|i| i * 1000),
                toml::Value::Float(f) if f.is_finite() && *f > 0.0 => Some((f * 1000.0).round() as u64),
                _ => None,
            };
            limits.millicpus = Some(millis.filter(|&m| m > 0).ok_or_else(|| {
                err(c.span(), format!("limits.cpus `{}` is not a positive number, such as 2 or 1.5", show(c.get_ref())))
            })?);
        }
        if let Some(n) = raw.limits.nofile {
            limits.nofile = u64::try_from(*n.get_ref()).ok().filter(|&n| n >= 64).ok_or_else(|| {
                err(n.span(), format!("limits.nofile `{}` is too small: give at least 64, such as 1024", n.get_ref()))
            })?;
        }
        if let Some(n) = raw.limits.nproc {
            limits.nproc = u64::try_from(*n.get_ref()).ok().filter(|&n| n >= 16).ok_or_else(|| {
                err(n.span(), format!("limits.nproc `{}` is too small: give at least 16, such as 4096", n.get_ref()))
            })?;
        }
        if let Some(n) = raw.limits.pids {
            limits.pids = u64::try_from(*n.get_ref()).ok().filter(|&n| n >= 16).ok_or_else(|| {
                err(n.span(), format!("limits.pids `{}` is too small: give at least 16, such as 4096", n.get_ref()))
            })?;
        }

        Ok(Manifest {
            image: ImageSpec { name: name.into_inner(), rootfs },
            toolchain: ToolchainSpec { profile, packages },
            build: BuildSpec { command, outputs, env, source_date_epoch, user, network },
            limits,
            source,
        })
    }
}

/// Whether an output path is a glob (has `* ? [ {`).
pub fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '[', '{'])
}

fn parse_user(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `600`, `"90s"`, `"30m"`, `"2h"` → seconds.
fn parse_duration(v: &toml::Value) -> Option<u64> {
    match v {
        toml::Value::Integer(i) => u64::try_from(*i).ok(),
        toml::Value::String(s) => {
            let s = s.trim();
            let (num, mult) = match s.char_indices().last()? {
                (i, 's') => (&s[..i], 1),
                (i, 'm') => (&s[..i], 60),
                (i, 'h') => (&s[..i], 3600),
                _ => (s, 1),
            };
            num.trim().parse::<u64>().ok()?.checked_mul(mult)
        }
        _ => None,
    }
}

/// `1048576`, `"512m"`, `"4g"`, `"64k"` → bytes (see [`crate::size`]).
fn parse_bytes(v: &toml::Value) -> Option<u64> {
    match v {
        toml::Value::Integer(i) => u64::try_from(*i).ok(),
        toml::Value::String(s) => s.parse::<crate::size::ByteSize>().ok().map(|b| b.0),
        _ => None,
    }
}

/// toml's messages end with a newline and sometimes a period; ours do not.
fn tidy_toml_message(message: &str) -> String {
    message.trim().trim_end_matches('.').to_owned()
}

fn is_simple_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && !s.starts_with(['.', '-', '/', ':'])
}

fn is_package_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `out/`, `./out`, `out//x` → `out`, `out/x`; `None` for absolute paths,
/// `..`, or nothing at all.
fn clean_relative_path(s: &str) -> Option<String> {
    if s.starts_with('/') || s.contains('\0') {
        return None;
    }
    let parts: Vec<&str> = s.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[image]
name = "debian-bookworm"

[toolchain]
profile = "c"
packages = ["gcc", "make", "libc6-dev"]

[build]
command = ["make", "all"]
outputs = ["out/"]
env = { CFLAGS = "-O2" }
"#;

    fn error_of(text: &str) -> String {
        Manifest::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_design_example() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.image.name, "debian-bookworm");
        assert_eq!(m.image.rootfs, None);
        assert_eq!(m.toolchain.profile.as_deref(), Some("c"));
        assert_eq!(m.toolchain.packages, ["gcc", "make", "libc6-dev"]);
        assert_eq!(m.build.command, Command::Argv(vec!["make".into(), "all".into()]));
        assert_eq!(m.build.outputs, ["out"]);
        assert_eq!(m.build.env.get("CFLAGS").map(String::as_str), Some("-O2"));
        assert_eq!(m.build.source_date_epoch, SourceDateEpoch::Fixed(0));
        assert_eq!(m.build.user, (1000, 1000));
        assert_eq!(m.build.network, Network::None);
        assert_eq!(m.source, SourceSpec::default());
    }

    #[test]
    fn a_string_command_runs_under_sh() {
        let m = Manifest::parse(&GOOD.replace(r#"["make", "all"]"#, r#""make all && ls""#)).unwrap();
        assert_eq!(m.build.command.argv(), ["/bin/sh", "-c", "make all && ls"]);
    }

    #[test]
    fn errors_name_line_column_and_value() {
        insta::assert_snapshot!(error_of("[image]\nname = \"x\"\n[build]\ncommand = [\"a\"]\noutputs = [\"o\"]\ncolour = 3\n"),
            @"line 6, column 1: unknown field `colour`, expected one of `command`, `outputs`, `env`, `source_date_epoch`, `user`, `network`");
        insta::assert_snapshot!(error_of("[image]\nname = \"x\"\n[build]\ncommand = []\noutputs = [\"o\"]\n"),
            @r#"line 4, column 11: build.command is empty: give an argv such as ["make", "all"] or a shell string such as "make all""#);
        insta::assert_snapshot!(error_of("[image]\nname = \"x\"\n[build]\ncommand = \"make\"\noutputs = [\"../etc\"]\n"),
            @"line 5, column 12: output `../etc` is not valid: give a path relative to /src, such as `out/` or `hello`, without `..`");
        insta::assert_snapshot!(error_of("[image]\nname = \"x\"\nrootfs = \"sha256:00\"\n[build]\ncommand = \"make\"\noutputs = [\"o\"]\n"),
            @"line 3, column 10: image.rootfs: `sha256:00` is not a digest: expected `blake3:` followed by 64 lowercase hex characters");
        insta::assert_snapshot!(error_of("[image]\nname = \"x\"\n[toolchain]\npackages = [\"GCC\"]\n[build]\ncommand = \"make\"\noutputs = [\"o\"]\n"),
            @"line 4, column 13: package name `GCC` is not valid: a Debian package name has lowercase letters, digits and `+ - .`, and starts with a letter or digit");
        insta::assert_snapshot!(error_of("[image]\nname = \"x\"\n[build]\ncommand = \"make\"\noutputs = [\"o\"]\nenv = { \"1X\" = \"y\" }\n"),
            @"line 6, column 9: environment variable name `1X` is not valid: use letters, digits and `_`, not starting with a digit");
        insta::assert_snapshot!(error_of("[image]\nname = \"x\"\n[build]\noutputs = [\"o\"]\n"),
            @"line 3, column 1: missing field `command`");
        insta::assert_snapshot!(error_of("[image\nname = \"x\"\n"),
            @r"
        line 1, column 7: invalid table header
        expected `.`, `]`
        ");
    }

    #[test]
    fn limits_take_units_and_name_bad_values() {
        let m = Manifest::parse(&format!(
            "{GOOD}\n[limits]\ntimeout = \"30m\"\nmemory = \"512m\"\ncpus = 1.5\nnofile = 2048\n"
        ))
        .unwrap();
        assert_eq!(
            m.limits,
            Limits {
                timeout_secs: 1800,
                memory_bytes: Some(512 << 20),
                millicpus: Some(1500),
                nofile: 2048,
                nproc: 4096,
                pids: 4096
            }
        );
        assert_eq!(Manifest::parse(GOOD).unwrap().limits, Limits::default());
        insta::assert_snapshot!(error_of(&format!("{GOOD}\n[limits]\ntimeout = \"soon\"\n")),
            @r#"line 15, column 11: limits.timeout `soon` is not a duration: give seconds (600) or a number with a unit, such as "90s", "30m" or "2h""#);
        insta::assert_snapshot!(error_of(&format!("{GOOD}\n[limits]\nmemory = \"1k\"\n")),
            @r#"line 15, column 10: limits.memory `1k` is not a size of at least 6m: give bytes or a number with a unit, such as "512m" or "4g""#);
        insta::assert_snapshot!(error_of(&format!("{GOOD}\n[limits]\ncpus = -1\n")),
            @"line 15, column 8: limits.cpus `-1` is not a positive number, such as 2 or 1.5");
        insta::assert_snapshot!(error_of(&format!("{GOOD}\n[limits]\npids = 3\n")),
            @"line 15, column 8: limits.pids `3` is too small: give at least 16, such as 4096");
        insta::assert_snapshot!(error_of(&format!("{GOOD}\n[limits]\nswap = 1\n")),
            @"line 15, column 1: unknown field `swap`, expected one of `timeout`, `memory`, `cpus`, `nofile`, `nproc`, `pids`");
    }

    #[test]
    fn build_and_source_settings_parse_and_name_bad_values() {
        let text = GOOD
            .replace("env = {", "user = \"0:0\"\nnetwork = \"bridge\"\nsource_date_epoch = \"git\"\nenv = {")
            + "[source]\npath = \"src\"\nexclude = [\"*.log\", \"docs/\"]\n";
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.build.user, (0, 0));
        assert_eq!(m.build.network, Network::Bridge);
        assert_eq!(m.build.source_date_epoch, SourceDateEpoch::GitCommit);
        assert_eq!(m.source, SourceSpec { path: "src".into(), exclude: vec!["*.log".into(), "docs/".into()] });

        let with = |line: &str| error_of(&GOOD.replace("env = {", &format!("{line}\nenv = {{")));
        insta::assert_snapshot!(with("user = \"build\""),
            @r#"line 12, column 8: build.user `build` is not valid: give numeric ids as "uid:gid", such as "1000:1000" (names differ between images)"#);
        insta::assert_snapshot!(with("network = \"host\""),
            @r#"line 12, column 11: build.network `host` is not valid: use "none" (the default) or "bridge""#);
        insta::assert_snapshot!(with("source_date_epoch = \"now\""),
            @r#"line 12, column 21: build.source_date_epoch `now` is not valid: give seconds since 1970 (such as 0 or 1700000000), or "git" for the commit time of the sources' HEAD"#);
        insta::assert_snapshot!(with("source_date_epoch = -5"),
            @r#"line 12, column 21: build.source_date_epoch `-5` is not valid: give seconds since 1970 (such as 0 or 1700000000), or "git" for the commit time of the sources' HEAD"#);
        insta::assert_snapshot!(error_of(&format!("{GOOD}[source]\nexclude = [\"a[\"]\n")),
            @r#"line 14, column 12: source.exclude `a[` is not a valid pattern (unclosed character class; missing ']'): use gitignore-style patterns such as "*.log" or "docs/""#);
        insta::assert_snapshot!(error_of(&format!("{GOOD}[source]\npath = \"/abs\"\n")),
            @r#"line 14, column 8: source.path `/abs` is not valid: give a directory relative to the manifest, such as "." or "src""#);
        insta::assert_snapshot!(error_of(&GOOD.replace("[\"out/\"]", "[\"out/[\"]")),
            @"line 11, column 12: output `out/[` is not a valid glob (unclosed character class; missing ']'): such as `out/*.bin` or `dist/**`");
    }

    #[test]
    fn output_paths_are_normalised() {
        assert_eq!(clean_relative_path("./out//bin/"), Some("out/bin".into()));
        assert_eq!(clean_relative_path("/abs"), None);
        assert_eq!(clean_relative_path("."), None);
        assert_eq!(clean_relative_path("a/../b"), None);
    }
}

//! The `repro.lock` model (format `repro-lock-v1`): everything a build is
//! pinned to, in one canonical TOML text, and its `env_id`.
//!
//! A lock pins the base image (name and rootfs digest), the toolchain (the
//! package manager, the architecture, the packages asked for, *every*
//! package installed in the toolchain image, and that image's rootfs
//! digest) and every setting that shapes the build. [`Lock::render`] writes
//! the one canonical text; [`Lock::env_id`] is the blake3 of that text
//! without its `env_id` line; [`Lock::parse`] reads a lock back and refuses,
//! with line and column, one that breaks a rule (a hand edit that left a
//! malformed version, a duplicated package, an `env_id` that does not match
//! the rest). [`Lock::drift`] names what `repro.toml` asks for that the lock
//! does not hold; [`inventory_diff`] compares the locked packages with what
//! an image has installed.
//!
//! What the lock deliberately leaves out (engine version, kernel, host) goes
//! into the build record. `docs/lock.md` is the specification, with a test
//! vector that a test here checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::digest::Digest;
use crate::hermetic::BuildPlan;
use crate::manifest::{Limits, Manifest, Network, SourceDateEpoch};
use crate::packages::{check_deb_name, check_deb_version, InstalledPackage, PackageManager};
use crate::span::LineCol;

/// The value of `format` in every lock this version writes and reads.
pub const LOCK_FORMAT: &str = "repro-lock-v1";
/// The lock's file name, next to `repro.toml`.
pub const LOCK_FILE: &str = "repro.lock";

/// The comment lines every lock starts with (part of the canonical text).
const HEADER: &str = "\
# repro.lock: written by `repro-run lock`. Commit it; do not edit it by hand.
# To change what it pins, change repro.toml (or its profile) and run
# `repro-run lock`; `repro-run lock --check` shows where the two disagree.
";

/// A parsed and checked `repro.lock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// `[base]`: the image the toolchain is installed on.
    pub base: LockedBase,
    /// `[toolchain]`: what was installed, and what the result is.
    pub toolchain: LockedToolchain,
    /// `[build]`: every setting that shapes the build.
    pub build: LockedBuild,
}

/// `[base]`: the base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedBase {
    /// The image as `repro.toml` names it (a recipe or an image reference).
    pub name: String,
    /// The `repro-tree-v1` digest of its root filesystem.
    pub rootfs: Digest,
}

/// `[toolchain]`: the toolchain image, installed on the base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedToolchain {
    /// The package manager of the image; `None` for an image without one
    /// (such as the `busybox` recipe), which then has no `packages`.
    pub manager: Option<PackageManager>,
    /// The image's native architecture, as the package manager names it
    /// (`dpkg --print-architecture`: `amd64`, `arm64`, ...); `None` where
    /// the image does not say.
    pub arch: Option<String>,
    /// The profile `repro.toml` names, if any.
    pub profile: Option<String>,
    /// The packages asked for: the profile's and the manifest's, sorted,
    /// without duplicates (`BuildPlan::packages`).
    pub requested: Vec<String>,
    /// The `repro-tree-v1` digest of the toolchain image's root filesystem.
    pub rootfs: Digest,
    /// Every installed package of the toolchain image, sorted by
    /// `(name, arch)`: those the base image had, and those installed for
    /// the toolchain.
    pub packages: Vec<LockedPackage>,
}

/// Where an installed package came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `"base"`: the base image already had it.
    Base,
    /// `"locked"`: `repro-run lock` installed it, from a file whose sha256
    /// and size the lock pins.
    Locked,
}

impl Origin {
    /// The lock's name for it: `base` or `locked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Base => "base",
            Origin::Locked => "locked",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One installed package of the toolchain image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedPackage {
    /// The package name.
    pub name: String,
    /// The installed version, exactly as the package manager prints it
    /// (epoch included: `1:2.38.1-5`).
    pub version: String,
    /// The package's architecture (`amd64`, `all`, ...).
    pub arch: String,
    /// Whether the base image had it or `repro-run lock` installed it.
    pub from: Origin,
    /// The sha256 of the package file (64 lowercase hex), as the signed
    /// index gives it; `Some` exactly when `from` is [`Origin::Locked`].
    pub sha256: Option<String>,
    /// The size of the package file in bytes; `Some` exactly when `from`
    /// is [`Origin::Locked`].
    pub size: Option<u64>,
}

impl LockedPackage {
    /// The package as an inventory of the image lists it.
    pub fn installed(&self) -> InstalledPackage {
        InstalledPackage { name: self.name.clone(), version: self.version.clone(), arch: self.arch.clone() }
    }
}

/// `[build]`: every setting that shapes the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedBuild {
    /// The argv the container runs.
    pub command: Vec<String>,
    /// The working directory (where the sources are).
    pub workdir: String,
    /// `uid:gid` of the build command.
    pub user: String,
    /// The container's hostname.
    pub hostname: String,
    /// The build container's network.
    pub network: Network,
    /// The umask of the build command, in octal (`0022`).
    pub umask: String,
    /// The path mounted as a fresh tmpfs.
    pub tmpfs: String,
    /// The declared outputs, relative to the working directory.
    pub outputs: Vec<String>,
    /// The `SOURCE_DATE_EPOCH` policy (a number, or `"git"`), not the value
    /// it resolved to.
    pub source_date_epoch: SourceDateEpoch,
    /// The complete resolved environment, without `SOURCE_DATE_EPOCH`: its
    /// value follows from the policy, and with `"git"` it changes with
    /// every commit, which the `env_id` must not.
    pub env: BTreeMap<String, String>,
    /// The resource limits.
    pub limits: Limits,
    /// The capabilities the build keeps (none).
    pub capabilities: Vec<String>,
    /// Whether `no_new_privileges` is set.
    pub no_new_privileges: bool,
    /// When the image's files are read-only.
    pub read_only_root: String,
}

impl LockedBuild {
    /// The build settings of a plan, with the manifest's `SOURCE_DATE_EPOCH`
    /// `policy` (`manifest.build.source_date_epoch`) in place of the value
    /// it resolved to, and without `SOURCE_DATE_EPOCH` in the environment.
    pub fn from_plan(plan: &BuildPlan, policy: SourceDateEpoch) -> LockedBuild {
        let mut env = plan.env.clone();
        env.remove("SOURCE_DATE_EPOCH");
        LockedBuild {
            command: plan.command.clone(),
            workdir: plan.workdir.to_owned(),
            user: plan.user.clone(),
            hostname: plan.hostname.to_owned(),
            network: plan.network,
            umask: plan.umask.to_owned(),
            tmpfs: plan.tmpfs.to_owned(),
            outputs: plan.outputs.clone(),
            source_date_epoch: policy,
            env,
            limits: plan.limits.clone(),
            capabilities: plan.sandbox.capabilities.iter().map(|c| (*c).to_owned()).collect(),
            no_new_privileges: plan.sandbox.no_new_privileges,
            read_only_root: plan.sandbox.read_only_root.to_owned(),
        }
    }
}

/// What a manifest (with its profile) asks of a lock, before anything is
/// resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInputs {
    /// `[image] name`.
    pub base_name: String,
    /// `[image] rootfs`, when the manifest pins it; without a pin any
    /// locked base rootfs agrees.
    pub base_rootfs_pin: Option<Digest>,
    /// `[toolchain] profile`.
    pub profile: Option<String>,
    /// The profile's and the manifest's packages, sorted, without duplicates.
    pub requested: Vec<String>,
    /// The build settings.
    pub build: LockedBuild,
}

impl LockInputs {
    /// What `manifest` asks for, given the plan resolved from it (and its
    /// profile).
    pub fn new(manifest: &Manifest, plan: &BuildPlan) -> LockInputs {
        LockInputs {
            base_name: manifest.image.name.clone(),
            base_rootfs_pin: manifest.image.rootfs,
            profile: manifest.toolchain.profile.clone(),
            requested: plan.packages.clone(),
            build: LockedBuild::from_plan(plan, manifest.build.source_date_epoch),
        }
    }
}

/// One field where repro.toml and repro.lock disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The dotted name of the field: `base.name`, `base.rootfs`,
    /// `toolchain.profile`, `toolchain.packages`, `build.command`,
    /// `build.env.CFLAGS`, `build.limits.pids`, ...
    pub field: String,
    /// What the lock holds. Strings as they are, lists in TOML array syntax
    /// (`["make", "all"]`), numbers in decimal; [`Drift::ABSENT`] when the
    /// lock does not have it. For `toolchain.packages`: the names, separated
    /// by spaces.
    pub locked: String,
    /// What the manifest asks for, written the same way.
    pub wanted: String,
}

impl Drift {
    /// The value of [`Drift::locked`] or [`Drift::wanted`] for a field that
    /// side does not have (an environment variable, a limit, a profile).
    pub const ABSENT: &'static str = "(absent)";
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == "toolchain.packages" {
            let locked: BTreeSet<&str> = self.locked.split_whitespace().collect();
            let wanted: BTreeSet<&str> = self.wanted.split_whitespace().collect();
            let added: Vec<&str> = wanted.difference(&locked).copied().collect();
            let removed: Vec<&str> = locked.difference(&wanted).copied().collect();
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", removed.join(", ")));
            }
            if !parts.is_empty() {
                return write!(f, "{}: {}", self.field, parts.join("; "));
            }
        }
        let show = |v: &str| if v == Drift::ABSENT { v.to_owned() } else { format!("`{v}`") };
        write!(f, "{}: repro.lock has {}, repro.toml asks for {}", self.field, show(&self.locked), show(&self.wanted))
    }
}

/// One difference between the lock's packages and what an image has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventoryDiff {
    /// In the lock, not installed.
    Missing(InstalledPackage),
    /// Installed, not in the lock.
    Extra(InstalledPackage),
    /// Installed in another version than the lock's.
    Version {
        /// The package name.
        name: String,
        /// The package's architecture.
        arch: String,
        /// The lock's version.
        locked: String,
        /// The image's version.
        installed: String,
    },
}

impl fmt::Display for InventoryDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InventoryDiff::Missing(p) => write!(f, "missing {} {} ({})", p.name, p.version, p.arch),
            InventoryDiff::Extra(p) => write!(f, "not in the lock: {} {} ({})", p.name, p.version, p.arch),
            InventoryDiff::Version { name, arch, locked, installed } => {
                write!(f, "{name} ({arch}): lock has {locked}, image has {installed}")
            }
        }
    }
}

/// Compares the lock's packages with what is installed in an image, by
/// `(name, arch)`; the differences come sorted by name and architecture.
pub fn inventory_diff(locked: &[LockedPackage], installed: &[InstalledPackage]) -> Vec<InventoryDiff> {
    let want: BTreeMap<(&str, &str), &str> =
        locked.iter().map(|p| ((p.name.as_str(), p.arch.as_str()), p.version.as_str())).collect();
    let have: BTreeMap<(&str, &str), &str> =
        installed.iter().map(|p| ((p.name.as_str(), p.arch.as_str()), p.version.as_str())).collect();
    let package = |(name, arch): (&str, &str), version: &str| InstalledPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: arch.to_owned(),
    };
    let keys: BTreeSet<(&str, &str)> = want.keys().chain(have.keys()).copied().collect();
    let mut out = Vec::new();
    for key in keys {
        match (want.get(&key), have.get(&key)) {
            (Some(l), None) => out.push(InventoryDiff::Missing(package(key, l))),
            (None, Some(i)) => out.push(InventoryDiff::Extra(package(key, i))),
            (Some(l), Some(i)) if l != i => out.push(InventoryDiff::Version {
                name: key.0.to_owned(),
                arch: key.1.to_owned(),
                locked: (*l).to_owned(),
                installed: (*i).to_owned(),
            }),
            _ => {}
        }
    }
    out
}

/// A lock error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LockError {
    /// Where the bad value starts; `None` when the error concerns the whole file.
    pub at: Option<LineCol>,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "line {}, column {}: {}", at.line, at.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Lock {
    /// The canonical text: what `repro-run lock` writes. Deterministic: fixed
    /// key order, sorted packages, one package per line.
    pub fn render(&self) -> String {
        self.render_text(Some(&self.env_id()))
    }

    /// blake3 of the canonical text with the `env_id = ...` line left out.
    pub fn env_id(&self) -> Digest {
        Digest::of_bytes(self.render_text(None).as_bytes())
    }

    /// The toolchain's installed set as [`InstalledPackage`]s, sorted.
    pub fn installed(&self) -> Vec<InstalledPackage> {
        let mut out: Vec<InstalledPackage> = self.toolchain.packages.iter().map(LockedPackage::installed).collect();
        out.sort();
        out
    }

    /// What this lock pins that a manifest can ask for (base name and
    /// rootfs, profile, requested packages, build settings): `other` pins
    /// the same inputs as `self` exactly when `self.drift(&other.inputs())`
    /// is empty.
    pub fn inputs(&self) -> LockInputs {
        LockInputs {
            base_name: self.base.name.clone(),
            base_rootfs_pin: Some(self.base.rootfs),
            profile: self.toolchain.profile.clone(),
            requested: canonical_requested(&self.toolchain.requested),
            build: self.build.clone(),
        }
    }

    /// What repro.toml asks for that this lock does not hold, field by field,
    /// in the lock's order; empty when they agree.
    pub fn drift(&self, wanted: &LockInputs) -> Vec<Drift> {
        let mut out = Vec::new();
        let mut differ = |field: &str, locked: String, wanted: String| {
            if locked != wanted {
                out.push(Drift { field: field.to_owned(), locked, wanted });
            }
        };
        differ("base.name", self.base.name.clone(), wanted.base_name.clone());
        if let Some(pin) = wanted.base_rootfs_pin {
            differ("base.rootfs", self.base.rootfs.to_string(), pin.to_string());
        }
        let or_absent = |v: &Option<String>| v.clone().unwrap_or_else(|| Drift::ABSENT.to_owned());
        differ("toolchain.profile", or_absent(&self.toolchain.profile), or_absent(&wanted.profile));
        differ(
            "toolchain.packages",
            canonical_requested(&self.toolchain.requested).join(" "),
            canonical_requested(&wanted.requested).join(" "),
        );
        let locked = build_fields(&self.build);
        let asked = build_fields(&wanted.build);
        let keys: BTreeSet<&(usize, String)> = locked.keys().chain(asked.keys()).collect();
        for key in keys {
            let value =
                |m: &BTreeMap<(usize, String), String>| m.get(key).cloned().unwrap_or_else(|| Drift::ABSENT.to_owned());
            differ(&key.1, value(&locked), value(&asked));
        }
        out
    }

    fn render_text(&self, env_id: Option<&Digest>) -> String {
        let mut out = String::from(HEADER);
        kv(&mut out, "format", quote(LOCK_FORMAT));
        if let Some(id) = env_id {
            kv(&mut out, "env_id", quote(&id.to_string()));
        }

        out.push_str("\n[base]\n");
        kv(&mut out, "name", quote(&self.base.name));
        kv(&mut out, "rootfs", quote(&self.base.rootfs.to_string()));

        render_toolchain(&mut out, &self.toolchain);
        render_build(&mut out, &self.build);
        out
    }

    /// Parses and checks a lock; errors carry line and column.
    ///
    /// Besides TOML syntax and unknown keys, it refuses: a `format` other
    /// than [`LOCK_FORMAT`], a malformed package name or version (Debian's
    /// rules when the manager is apt), a package listed twice (same name
    /// and architecture), a `locked` package without sha256 and size or a
    /// `base` one with them, a sha256 that is not 64 lowercase hex, and an
    /// `env_id` that does not match the rest of the lock.
    pub fn parse(text: &str) -> Result<Lock, LockError> {
        let toml_error = |e: toml::de::Error| LockError {
            at: e.span().map(|s| LineCol::of(text, s.start)),
            message: e.message().trim().trim_end_matches('.').to_owned(),
        };
        let err = |span: Range<usize>, message: String| LockError { at: Some(LineCol::of(text, span.start)), message };

        // The format first, so that a lock of another format is named as such
        // rather than by the first key this version does not know.
        let head: RawHead = toml::from_str(text).map_err(toml_error)?;
        check_format(head.format, &err)?;

        let raw: RawLock = toml::from_str(text).map_err(toml_error)?;
        let stated: Digest =
            raw.env_id.get_ref().parse().map_err(|e| {
                err(raw.env_id.span(), format!("env_id: {e}; run `repro-run lock` to rewrite the lock"))
            })?;

        let base = parse_base(raw.base, &err)?;
        let toolchain = parse_toolchain(raw.toolchain, text, &err)?;
        let build = parse_build(raw.build, &err)?;
        let lock = Lock { base, toolchain, build };
        let computed = lock.env_id();
        if computed != stated {
            return Err(err(
                raw.env_id.span(),
                format!(
                    "env_id is {stated}, but the rest of the lock gives {computed}: the lock was edited by hand. \
                     Change repro.toml instead, and run `repro-run lock` to rewrite repro.lock"
                ),
            ));
        }
        Ok(lock)
    }
}

// --- canonical text ------------------------------------------------------

/// `[toolchain]`, its packages sorted, one per line.
fn render_toolchain(out: &mut String, t: &LockedToolchain) {
    out.push_str("\n[toolchain]\n");
    if let Some(manager) = t.manager {
        kv(out, "manager", quote(manager.as_str()));
    }
    if let Some(arch) = &t.arch {
        kv(out, "arch", quote(arch));
    }
    if let Some(profile) = &t.profile {
        kv(out, "profile", quote(profile));
    }
    kv(out, "requested", array(&canonical_requested(&t.requested)));
    kv(out, "rootfs", quote(&t.rootfs.to_string()));
    let mut packages: Vec<&LockedPackage> = t.packages.iter().collect();
    packages.sort_by(|a, b| package_order(a).cmp(&package_order(b)));
    if packages.is_empty() {
        kv(out, "packages", "[]".to_owned());
    } else {
        out.push_str("packages = [\n");
        for p in packages {
            render_package(out, p);
        }
        out.push_str("]\n");
    }
}

/// One line of `packages`: `  { name = ..., ... },`.
fn render_package(out: &mut String, p: &LockedPackage) {
    out.push_str("  { name = ");
    out.push_str(&quote(&p.name));
    out.push_str(", version = ");
    out.push_str(&quote(&p.version));
    out.push_str(", arch = ");
    out.push_str(&quote(&p.arch));
    out.push_str(", from = ");
    out.push_str(&quote(p.from.as_str()));
    if let Some(sha256) = &p.sha256 {
        out.push_str(", sha256 = ");
        out.push_str(&quote(sha256));
    }
    if let Some(size) = p.size {
        out.push_str(", size = ");
        out.push_str(&size.to_string());
    }
    out.push_str(" },\n");
}

/// `[build]`, `[build.env]` and `[build.limits]`.
fn render_build(out: &mut String, b: &LockedBuild) {
    out.push_str("\n[build]\n");
    kv(out, "command", array(&b.command));
    kv(out, "workdir", quote(&b.workdir));
    kv(out, "user", quote(&b.user));
    kv(out, "hostname", quote(&b.hostname));
    kv(out, "network", quote(b.network.as_str()));
    kv(out, "umask", quote(&b.umask));
    kv(out, "tmpfs", quote(&b.tmpfs));
    kv(out, "outputs", array(&b.outputs));
    kv(out, "source_date_epoch", policy_value(b.source_date_epoch));
    kv(out, "capabilities", array(&b.capabilities));
    kv(out, "no_new_privileges", b.no_new_privileges.to_string());
    kv(out, "read_only_root", quote(&b.read_only_root));

    out.push_str("\n[build.env]\n");
    for (k, v) in &b.env {
        kv(out, &key(k), quote(v));
    }

    let l = &b.limits;
    out.push_str("\n[build.limits]\n");
    kv(out, "timeout_secs", l.timeout_secs.to_string());
    if let Some(m) = l.memory_bytes {
        kv(out, "memory_bytes", m.to_string());
    }
    if let Some(c) = l.millicpus {
        kv(out, "millicpus", c.to_string());
    }
    kv(out, "nofile", l.nofile.to_string());
    kv(out, "nproc", l.nproc.to_string());
    kv(out, "pids", l.pids.to_string());
}

fn kv(out: &mut String, key: &str, value: String) {
    out.push_str(key);
    out.push_str(" = ");
    out.push_str(&value);
    out.push('\n');
}

/// A TOML basic string: `"` and `\` escaped, the control characters as
/// `\b \t \n \f \r` or `\uXXXX`, everything else as it is.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key: bare when TOML allows it (`A-Z a-z 0-9 _ -`), quoted otherwise.
fn key(k: &str) -> String {
    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        k.to_owned()
    } else {
        quote(k)
    }
}

/// `["a", "b"]` on one line; `[]` when empty.
fn array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", items.join(", "))
}

fn policy_value(p: SourceDateEpoch) -> String {
    match p {
        SourceDateEpoch::Fixed(n) => n.to_string(),
        SourceDateEpoch::GitCommit => quote("git"),
    }
}

fn canonical_requested(requested: &[String]) -> Vec<String> {
    let mut r = requested.to_vec();
    r.sort();
    r.dedup();
    r
}

type PackageOrder<'a> = (&'a str, &'a str, &'a str, &'static str, Option<&'a str>, Option<u64>);

fn package_order(p: &LockedPackage) -> PackageOrder<'_> {
    (&p.name, &p.arch, &p.version, p.from.as_str(), p.sha256.as_deref(), p.size)
}

/// The build settings as `(order, field) → value`, for [`Lock::drift`].
fn build_fields(b: &LockedBuild) -> BTreeMap<(usize, String), String> {
    let mut out = BTreeMap::new();
    let mut put = |field: &str, value: String| {
        let order = out.len();
        out.insert((order, format!("build.{field}")), value);
    };
    put("command", array(&b.command));
    put("workdir", b.workdir.clone());
    put("user", b.user.clone());
    put("hostname", b.hostname.clone());
    put("network", b.network.as_str().to_owned());
    put("umask", b.umask.clone());
    put("tmpfs", b.tmpfs.clone());
    put("outputs", array(&b.outputs));
    put(
        "source_date_epoch",
        match b.source_date_epoch {
            SourceDateEpoch::Fixed(n) => n.to_string(),
            SourceDateEpoch::GitCommit => "git".to_owned(),
        },
    );
    put("capabilities", array(&b.capabilities));
    put("no_new_privileges", b.no_new_privileges.to_string());
    put("read_only_root", b.read_only_root.clone());
    // Every variable shares one place in the order, then sorts by name.
    let env_order = out.len();
    for (k, v) in &b.env {
        out.insert((env_order, format!("build.env.{k}")), v.clone());
    }
    let l = &b.limits;
    let limits_order = env_order + 1;
    let mut limit = |i: usize, name: &str, value: Option<u64>| {
        if let Some(v) = value {
            out.insert((limits_order + i, format!("build.limits.{name}")), v.to_string());
        }
    };
    limit(0, "timeout_secs", Some(l.timeout_secs));
    limit(1, "memory_bytes", l.memory_bytes);
    limit(2, "millicpus", l.millicpus);
    limit(3, "nofile", Some(l.nofile));
    limit(4, "nproc", Some(l.nproc));
    limit(5, "pids", Some(l.pids));
    out
}

// --- parsing -------------------------------------------------------------

#[derive(Deserialize)]
struct RawHead {
    format: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    #[serde(rename = "format")]
    _format: toml::Value,
    env_id: Spanned<String>,
    base: RawBase,
    toolchain: RawToolchain,
    build: RawBuild,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    name: Spanned<String>,
    rootfs: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolchain {
    manager: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
    profile: Option<Spanned<String>>,
    requested: Vec<Spanned<String>>,
    rootfs: Spanned<String>,
    packages: Vec<Spanned<RawPackage>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: Spanned<String>,
    version: Spanned<String>,
    arch: Spanned<String>,
    from: Spanned<String>,
    sha256: Option<Spanned<String>>,
    size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: Spanned<Vec<String>>,
    workdir: String,
    user: String,
    hostname: String,
    network: Spanned<String>,
    umask: String,
    tmpfs: String,
    outputs: Vec<String>,
    source_date_epoch: Spanned<toml::Value>,
    capabilities: Vec<String>,
    no_new_privileges: bool,
    read_only_root: String,
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout_secs: Spanned<i64>,
    memory_bytes: Option<Spanned<i64>>,
    millicpus: Option<Spanned<i64>>,
    nofile: Spanned<i64>,
    nproc: Spanned<i64>,
    pids: Spanned<i64>,
}

/// Refuses a lock without `format`, or with a format other than
/// [`LOCK_FORMAT`].
fn check_format(
    format: Option<Spanned<toml::Value>>,
    err: &impl Fn(Range<usize>, String) -> LockError,
) -> Result<(), LockError> {
    let Some(format) = format else {
        return Err(LockError {
            at: None,
            message: format!(
                "this is not a repro.lock: it has no `format = \"{LOCK_FORMAT}\"` line; run `repro-run lock` to \
                 write one"
            ),
        });
    };
    if format.get_ref().as_str() != Some(LOCK_FORMAT) {
        return Err(err(
            format.span(),
            format!(
                "format {} is not one this repro-run reads (it reads \"{LOCK_FORMAT}\"): upgrade repro-run to read \
                 this lock, or run `repro-run lock` to rewrite it as {LOCK_FORMAT}",
                format.get_ref()
            ),
        ));
    }
    Ok(())
}

fn parse_base(b: RawBase, err: &impl Fn(Range<usize>, String) -> LockError) -> Result<LockedBase, LockError> {
    let name = b.name;
    if !is_word(name.get_ref()) {
        return Err(err(
            name.span(),
            format!("base.name `{}` is not valid: give the image as repro.toml names it", name.get_ref()),
        ));
    }
    Ok(LockedBase { name: name.into_inner(), rootfs: digest(&b.rootfs, "base.rootfs", err)? })
}

fn parse_toolchain(
    t: RawToolchain,
    text: &str,
    err: &impl Fn(Range<usize>, String) -> LockError,
) -> Result<LockedToolchain, LockError> {
    let manager: Option<PackageManager> = match &t.manager {
        None => None,
        Some(m) => Some(m.get_ref().parse().map_err(|_| {
            err(m.span(), format!("toolchain.manager `{}` is not valid: use \"apt\", \"apk\" or \"rpm\"", m.get_ref()))
        })?),
    };
    if let Some(arch) = t.arch.as_ref().filter(|a| !is_arch(a.get_ref())) {
        return Err(err(
            arch.span(),
            format!(
                "toolchain.arch `{}` is not valid: give the architecture as the package manager names it, such as \
                 \"amd64\"",
                arch.get_ref()
            ),
        ));
    }
    let profile = match t.profile {
        Some(p) if !is_word(p.get_ref()) => {
            return Err(err(p.span(), format!("toolchain.profile `{}` is not valid", p.get_ref())))
        }
        p => p.map(Spanned::into_inner),
    };
    let mut requested = Vec::with_capacity(t.requested.len());
    for r in t.requested {
        check_name(manager, r.get_ref()).map_err(|why| err(r.span(), format!("toolchain.requested: {why}")))?;
        requested.push(r.into_inner());
    }
    let requested = canonical_requested(&requested);
    let rootfs = digest(&t.rootfs, "toolchain.rootfs", err)?;

    if let (None, Some(first)) = (manager, t.packages.first()) {
        return Err(err(
            first.span(),
            "toolchain.packages is not empty, but the lock names no toolchain.manager: packages come from a \
             package manager; run `repro-run lock` to rewrite the lock"
                .into(),
        ));
    }
    let packages = parse_packages(manager, t.packages, text, err)?;
    Ok(LockedToolchain { manager, arch: t.arch.map(Spanned::into_inner), profile, requested, rootfs, packages })
}

/// The packages, each checked, none listed twice (by name and
/// architecture), sorted.
fn parse_packages(
    manager: Option<PackageManager>,
    entries: Vec<Spanned<RawPackage>>,
    text: &str,
    err: &impl Fn(Range<usize>, String) -> LockError,
) -> Result<Vec<LockedPackage>, LockError> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut packages = Vec::with_capacity(entries.len());
    for entry in entries {
        let line = LineCol::of(text, entry.span().start).line;
        let name_span = entry.get_ref().name.span();
        let p = parse_package(manager, entry.into_inner(), err)?;
        let key = (p.name.clone(), p.arch.clone());
        if let Some(first) = seen.get(&key) {
            return Err(err(
                name_span,
                format!(
                    "package `{}` ({}) is listed twice, first on line {first}: a lock lists each package and \
                     architecture once; run `repro-run lock` to rewrite it",
                    key.0, key.1
                ),
            ));
        }
        seen.insert(key, line);
        packages.push(p);
    }
    packages.sort_by(|a, b| package_order(a).cmp(&package_order(b)));
    Ok(packages)
}

/// One package: its name, version and architecture, where it came from,
/// and the sha256 and size that go with that.
fn parse_package(
    manager: Option<PackageManager>,
    p: RawPackage,
    err: &impl Fn(Range<usize>, String) -> LockError,
) -> Result<LockedPackage, LockError> {
    let name = p.name.get_ref();
    check_name(manager, name).map_err(|why| err(p.name.span(), format!("toolchain.packages: {why}")))?;
    check_version(manager, p.version.get_ref())
        .map_err(|why| err(p.version.span(), format!("package `{name}`: {why}")))?;
    if !is_arch(p.arch.get_ref()) {
        return Err(err(
            p.arch.span(),
            format!(
                "package `{name}`: arch `{}` is not valid: give the architecture as the package manager names it, \
                 such as \"amd64\" or \"all\"",
                p.arch.get_ref()
            ),
        ));
    }
    let from = match p.from.get_ref().as_str() {
        "base" => Origin::Base,
        "locked" => Origin::Locked,
        other => {
            return Err(err(
                p.from.span(),
                format!(
                    "package `{name}`: from `{other}` is not valid: use \"base\" (the base image had it) or \
                     \"locked\" (repro-run installed it)"
                ),
            ))
        }
    };
    let (sha256, size) = package_file(name, from, &p, err)?;
    Ok(LockedPackage {
        name: p.name.into_inner(),
        version: p.version.into_inner(),
        arch: p.arch.into_inner(),
        from,
        sha256,
        size,
    })
}

/// A package's sha256 and size: both present and valid when it is from
/// `locked`, both absent when it is from `base`.
fn package_file(
    name: &str,
    from: Origin,
    p: &RawPackage,
    err: &impl Fn(Range<usize>, String) -> LockError,
) -> Result<(Option<String>, Option<u64>), LockError> {
    let sha256 = match (&p.sha256, from) {
        (Some(s), Origin::Locked) if is_sha256(s.get_ref()) => Some(s.get_ref().clone()),
        (Some(s), Origin::Locked) => {
            return Err(err(
                s.span(),
                format!("package `{name}`: sha256 `{}` is not valid: give 64 lowercase hex characters", s.get_ref()),
            ))
        }
        (Some(s), Origin::Base) => return Err(err(s.span(), base_with(name, "sha256"))),
        (None, Origin::Locked) => return Err(err(p.from.span(), locked_without(name, "sha256"))),
        (None, Origin::Base) => None,
    };
    let size = match (&p.size, from) {
        (Some(s), Origin::Locked) => Some(u64::try_from(*s.get_ref()).ok().filter(|&n| n > 0).ok_or_else(|| {
            err(
                s.span(),
                format!("package `{name}`: size `{}` is not valid: give the file's size in bytes", s.get_ref()),
            )
        })?),
        (Some(s), Origin::Base) => return Err(err(s.span(), base_with(name, "size"))),
        (None, Origin::Locked) => return Err(err(p.from.span(), locked_without(name, "size"))),
        (None, Origin::Base) => None,
    };
    Ok((sha256, size))
}

fn parse_build(b: RawBuild, err: &impl Fn(Range<usize>, String) -> LockError) -> Result<LockedBuild, LockError> {
    if b.command.get_ref().first().is_none_or(String::is_empty) {
        return Err(err(b.command.span(), "build.command is empty: run `repro-run lock` to rewrite the lock".into()));
    }
    let network = match b.network.get_ref().as_str() {
        "none" => Network::None,
        "bridge" => Network::Bridge,
        other => {
            return Err(err(
                b.network.span(),
                format!("build.network `{other}` is not valid: use \"none\" or \"bridge\""),
            ))
        }
    };
    let source_date_epoch = match b.source_date_epoch.get_ref() {
        toml::Value::Integer(i) if *i >= 0 => SourceDateEpoch::Fixed(*i as u64),
        toml::Value::String(g) if g == "git" => SourceDateEpoch::GitCommit,
        other => {
            return Err(err(
                b.source_date_epoch.span(),
                format!("build.source_date_epoch {other} is not valid: give seconds since 1970, such as 0, or \"git\""),
            ))
        }
    };
    let mut env = BTreeMap::new();
    for (k, v) in b.env {
        if k.get_ref() == "SOURCE_DATE_EPOCH" {
            return Err(err(
                k.span(),
                "build.env holds SOURCE_DATE_EPOCH: its value follows from build.source_date_epoch, and the lock \
                 leaves it out"
                    .into(),
            ));
        }
        env.insert(k.into_inner(), v.into_inner());
    }
    Ok(LockedBuild {
        command: b.command.into_inner(),
        workdir: b.workdir,
        user: b.user,
        hostname: b.hostname,
        network,
        umask: b.umask,
        tmpfs: b.tmpfs,
        outputs: b.outputs,
        source_date_epoch,
        env,
        limits: parse_limits(&b.limits, err)?,
        capabilities: b.capabilities,
        no_new_privileges: b.no_new_privileges,
        read_only_root: b.read_only_root,
    })
}

fn parse_limits(l: &RawLimits, err: &impl Fn(Range<usize>, String) -> LockError) -> Result<Limits, LockError> {
    Ok(Limits {
        timeout_secs: count(&l.timeout_secs, "timeout_secs", err)?,
        memory_bytes: l.memory_bytes.as_ref().map(|m| count(m, "memory_bytes", err)).transpose()?,
        millicpus: l.millicpus.as_ref().map(|m| count(m, "millicpus", err)).transpose()?,
        nofile: count(&l.nofile, "nofile", err)?,
        nproc: count(&l.nproc, "nproc", err)?,
        pids: count(&l.pids, "pids", err)?,
    })
}

fn digest(
    value: &Spanned<String>,
    field: &str,
    err: &impl Fn(Range<usize>, String) -> LockError,
) -> Result<Digest, LockError> {
    value.get_ref().parse().map_err(|e| err(value.span(), format!("{field}: {e}")))
}

fn count(
    value: &Spanned<i64>,
    field: &str,
    err: &impl Fn(Range<usize>, String) -> LockError,
) -> Result<u64, LockError> {
    u64::try_from(*value.get_ref()).map_err(|_| {
        err(
            value.span(),
            format!("build.limits.{field} `{}` is not valid: give a number of at least 0", value.get_ref()),
        )
    })
}

fn base_with(name: &str, key: &str) -> String {
    format!(
        "package `{name}` is from \"base\" but has a {key}: only packages repro-run installed (from = \"locked\") \
         carry sha256 and size"
    )
}

fn locked_without(name: &str, key: &str) -> String {
    format!(
        "package `{name}` is from \"locked\" but has no {key}: a package repro-run installed carries the sha256 and \
         size of its file; run `repro-run lock` to rewrite the lock"
    )
}

fn check_name(manager: Option<PackageManager>, name: &str) -> Result<(), String> {
    match manager {
        Some(PackageManager::Apt) => check_deb_name(name),
        Some(PackageManager::Apk | PackageManager::Rpm) | None => {
            let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "`{name}` is not a package name: use letters, digits and `+ - . _`, starting with a letter or a \
                     digit"
                ))
            }
        }
    }
}

fn check_version(manager: Option<PackageManager>, version: &str) -> Result<(), String> {
    match manager {
        Some(PackageManager::Apt) => check_deb_version(version),
        Some(PackageManager::Apk | PackageManager::Rpm) | None => {
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(())
            } else {
                Err(format!("`{version}` is not a version: use printable ASCII without spaces"))
            }
        }
    }
}

/// Printable ASCII without spaces, not empty.
fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

fn is_arch(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    const MANIFEST: &str = r#"
[image]
name = "debian-bookworm"

[toolchain]
profile = "c"
packages = ["make"]

[build]
command = ["make", "all"]
outputs = ["out/"]
env = { CFLAGS = "-O2" }
"#;

    fn profile() -> Profile {
        Profile::parse("packages = [\"gcc-12\", \"make\"]\n[env]\nCC = \"gcc-12\"\n").unwrap()
    }

    fn inputs_of(manifest: &str) -> LockInputs {
        let m = Manifest::parse(manifest).unwrap();
        LockInputs::new(&m, &BuildPlan::new(&m, Some(&profile()), None, 0))
    }

    fn sha(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    /// A package; `size` given: installed by repro-run, with the blake3 of
    /// its name standing in for the sha256.
    fn package(name: &str, version: &str, size: Option<u64>) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            from: if size.is_some() { Origin::Locked } else { Origin::Base },
            sha256: size.map(|_| sha_of(name)),
            size,
        }
    }

    fn sha_of(name: &str) -> String {
        Digest::of_bytes(name.as_bytes()).to_hex()
    }

    fn sample() -> Lock {
        let inputs = inputs_of(MANIFEST);
        Lock {
            base: LockedBase { name: inputs.base_name, rootfs: Digest::of_bytes(b"base") },
            toolchain: LockedToolchain {
                manager: Some(PackageManager::Apt),
                arch: Some("amd64".into()),
                profile: inputs.profile,
                requested: inputs.requested,
                rootfs: Digest::of_bytes(b"toolchain"),
                packages: vec![
                    package("libc6", "2.36-9+deb12u4", None),
                    package("gcc-12", "12.2.0-14", Some(19326868)),
                    package("base-files", "12.4+deb12u5", None),
                    package("make", "4.3-4.1", Some(396008)),
                ],
            },
            build: inputs.build,
        }
    }

    fn error_of(text: &str) -> String {
        Lock::parse(text).unwrap_err().to_string()
    }

    /// The sample's text with `from` replaced by `to` (which must be there).
    fn edited(from: &str, to: &str) -> String {
        let text = sample().render();
        assert!(text.contains(from), "{from:?} is not in the sample");
        text.replacen(from, to, 1)
    }

    #[test]
    fn render_is_canonical_and_byte_stable() {
        let lock = sample();
        insta::assert_snapshot!(lock.render(), @r#"
        # repro.lock: written by `repro-run lock`. Commit it; do not edit it by hand.
        # To change what it pins, change repro.toml (or its profile) and run
        # `repro-run lock`; `repro-run lock --check` shows where the two disagree.
        format = "repro-lock-v1"
        env_id = "blake3:b56793f85efeb85b53ecdcd56d9619179794dfdea3d1b18135859266e5d2806a"

        [base]
        name = "debian-bookworm"
        rootfs = "blake3:de8f3fcf327eb911b2c368e011e0ffdee22fed456b4f4508337018ba46a0639d"

        [toolchain]
        manager = "apt"
        arch = "amd64"
        profile = "c"
        requested = ["gcc-12", "make"]
        rootfs = "blake3:dd9765724d63cedb171573e96d87aad8c17ca281055f5b639c94761ea2da5c9e"
        packages = [
          { name = "base-files", version = "12.4+deb12u5", arch = "amd64", from = "base" },
          { name = "gcc-12", version = "12.2.0-14", arch = "amd64", from = "locked", sha256 = "ae85dbf72debaf5ee98785ba2173deaa30cf3425ac9b89ff44b2f8b2eca06b66", size = 19326868 },
          { name = "libc6", version = "2.36-9+deb12u4", arch = "amd64", from = "base" },
          { name = "make", version = "4.3-4.1", arch = "amd64", from = "locked", sha256 = "2e9919f4e5f55be63772bffe569e0e6e6c53e275787d8f6535c0f0ff93772376", size = 396008 },
        ]

        [build]
        command = ["make", "all"]
        workdir = "/src"
        user = "1000:1000"
        hostname = "repro-run"
        network = "none"
        umask = "0022"
        tmpfs = "/tmp"
        outputs = ["out"]
        source_date_epoch = 0
        capabilities = []
        no_new_privileges = true
        read_only_root = "when the sources are mounted"

        [build.env]
        CC = "gcc-12"
        CFLAGS = "-O2"
        HOME = "/home/build"
        LANG = "C.UTF-8"
        LC_ALL = "C.UTF-8"
        PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        TZ = "UTC"

        [build.limits]
        timeout_secs = 3600
        nofile = 1024
        nproc = 4096
        pids = 4096
        "#);
        let mut shuffled = lock.clone();
        shuffled.toolchain.packages.reverse();
        shuffled.toolchain.requested = vec!["make".into(), "gcc-12".into(), "make".into()];
        assert_eq!(shuffled.render(), lock.render());
        assert_eq!(shuffled.env_id(), lock.env_id());
    }

    #[test]
    fn env_id_is_the_text_without_its_env_id_line() {
        let text = sample().render();
        let without: String = text.lines().filter(|l| !l.starts_with("env_id = ")).map(|l| format!("{l}\n")).collect();
        assert_eq!(Digest::of_bytes(without.as_bytes()), sample().env_id());
        assert!(text.contains(&format!("env_id = \"{}\"\n", sample().env_id())));
    }

    fn assert_fixed_point(lock: &Lock) {
        let text = lock.render();
        let parsed = Lock::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.render(), text);
        assert_eq!(parsed.env_id(), lock.env_id());
    }

    #[test]
    fn render_parse_render_is_a_fixed_point() {
        let lock = sample();
        assert_fixed_point(&lock);
        assert_eq!(Lock::parse(&lock.render()).unwrap(), {
            let mut sorted = lock.clone();
            sorted.toolchain.packages.sort_by(|a, b| a.name.cmp(&b.name));
            sorted
        });

        let mut odd = lock.clone();
        odd.toolchain.profile = None;
        odd.toolchain.requested.clear();
        odd.toolchain.manager = Some(PackageManager::Rpm);
        odd.toolchain.requested = vec!["NetworkManager".into()];
        odd.toolchain.packages = vec![LockedPackage {
            name: "NetworkManager".into(),
            version: "1:1.44.2-1.fc39".into(),
            arch: "x86_64".into(),
            ..package("x", "1", Some(1))
        }];
        odd.toolchain.arch = Some("x86_64".into());
        odd.build.source_date_epoch = SourceDateEpoch::GitCommit;
        odd.build.command = vec!["/bin/sh".into(), "-c".into(), "echo \"$X\" \\\n\t'done' # \u{7f}\u{1}é".into()];
        odd.build.env.insert("WEIRD KEY.with \"quotes\"".into(), "line\nbreak\r\u{0}\u{1b}[0m ünï".into());
        odd.build.env.insert(String::new(), String::new());
        odd.build.limits.memory_bytes = Some(4 << 30);
        odd.build.limits.millicpus = Some(1500);
        odd.build.capabilities = vec!["CAP_CHOWN".into()];
        odd.build.no_new_privileges = false;
        odd.build.network = Network::Bridge;
        assert_fixed_point(&odd);
        assert_eq!(Lock::parse(&odd.render()).unwrap(), odd);

        // A base image without a package manager (the busybox recipe).
        let mut bare = lock.clone();
        bare.toolchain.manager = None;
        bare.toolchain.arch = None;
        bare.toolchain.requested.clear();
        bare.toolchain.packages.clear();
        let text = bare.render();
        assert!(!text.contains("\nmanager = ") && !text.contains("\narch = "), "{text}");
        assert!(text.contains("\npackages = []\n"), "{text}");
        assert_fixed_point(&bare);
        assert_eq!(Lock::parse(&text).unwrap(), bare);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            "[a-z0-9][a-z0-9+.-]{1,12}"
        }

        fn version() -> impl Strategy<Value = String> {
            "([1-9]:)?[0-9]{1,3}(\\.[0-9a-z]{1,3}){0,2}(-[0-9a-z.+~]{1,5})?"
        }

        fn small() -> impl Strategy<Value = u64> {
            0..=i64::MAX as u64
        }

        fn packages() -> impl Strategy<Value = Vec<LockedPackage>> {
            proptest::collection::btree_map(
                (name(), prop_oneof!["amd64", "all", "i386"].prop_map(String::from)),
                (version(), proptest::option::of(("[0-9a-f]{64}", 1..=i64::MAX as u64))),
                0..6,
            )
            .prop_map(|m| {
                m.into_iter()
                    .map(|((name, arch), (version, file))| LockedPackage {
                        name,
                        version,
                        arch,
                        from: if file.is_some() { Origin::Locked } else { Origin::Base },
                        sha256: file.as_ref().map(|f| f.0.clone()),
                        size: file.map(|f| f.1),
                    })
                    .collect()
            })
        }

        fn limits() -> impl Strategy<Value = Limits> {
            (small(), proptest::option::of(small()), proptest::option::of(small()), small(), small(), small()).prop_map(
                |(timeout_secs, memory_bytes, millicpus, nofile, nproc, pids)| Limits {
                    timeout_secs,
                    memory_bytes,
                    millicpus,
                    nofile,
                    nproc,
                    pids,
                },
            )
        }

        fn build() -> impl Strategy<Value = LockedBuild> {
            let text = any::<String>;
            (
                (proptest::collection::vec(text(), 1..4), text(), text(), text(), any::<bool>()),
                (text(), text(), proptest::collection::vec(text(), 0..3)),
                (proptest::option::of(small()), proptest::collection::btree_map(text(), text(), 0..5), limits()),
                (proptest::collection::vec(text(), 0..2), any::<bool>(), text()),
            )
                .prop_filter_map(
                    "a command starts with a program",
                    |(
                        (command, workdir, user, hostname, bridge),
                        (umask, tmpfs, outputs),
                        (epoch, mut env, limits),
                        (capabilities, no_new_privileges, read_only_root),
                    )| {
                        env.remove("SOURCE_DATE_EPOCH");
                        (!command[0].is_empty()).then_some(LockedBuild {
                            command,
                            workdir,
                            user,
                            hostname,
                            network: if bridge { Network::Bridge } else { Network::None },
                            umask,
                            tmpfs,
                            outputs,
                            source_date_epoch: epoch.map_or(SourceDateEpoch::GitCommit, SourceDateEpoch::Fixed),
                            env,
                            limits,
                            capabilities,
                            no_new_privileges,
                            read_only_root,
                        })
                    },
                )
        }

        fn lock() -> impl Strategy<Value = Lock> {
            (
                "[a-z0-9][a-z0-9./:@_-]{0,20}",
                any::<[u8; 4]>(),
                proptest::option::of("[a-z0-9-]{1,8}"),
                proptest::collection::btree_set(name(), 0..4),
                packages(),
                build(),
            )
                .prop_map(|(base, seed, profile, requested, packages, build)| Lock {
                    base: LockedBase { name: base, rootfs: Digest::of_bytes(&seed) },
                    toolchain: LockedToolchain {
                        manager: Some(PackageManager::Apt),
                        arch: Some("amd64".into()),
                        profile,
                        requested: requested.into_iter().collect(),
                        rootfs: Digest::of_bytes(&[seed[0], 1]),
                        packages,
                    },
                    build,
                })
        }

        proptest! {
            #[test]
            fn render_parse_render_is_a_fixed_point(lock in lock()) {
                prop_assume!(lock.toolchain.packages.iter().all(|p| check_deb_version(&p.version).is_ok()
                    && check_deb_name(&p.name).is_ok()));
                prop_assume!(lock.toolchain.requested.iter().all(|p| check_deb_name(p).is_ok()));
                let text = lock.render();
                let parsed = Lock::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                prop_assert_eq!(&parsed, &lock);
                prop_assert_eq!(parsed.render(), text);
            }
        }
    }

    #[test]
    fn env_id_changes_with_any_field() {
        type Mutation = (&'static str, fn(&mut Lock));
        let mutations: &[Mutation] = &[
            ("base.name", |l| l.base.name = "debian-trixie".into()),
            ("base.rootfs", |l| l.base.rootfs = Digest::of_bytes(b"other base")),
            ("toolchain.manager", |l| l.toolchain.manager = Some(PackageManager::Apk)),
            ("toolchain.arch", |l| l.toolchain.arch = Some("arm64".into())),
            ("toolchain.arch absent", |l| l.toolchain.arch = None),
            ("toolchain.profile", |l| l.toolchain.profile = None),
            ("toolchain.requested", |l| l.toolchain.requested.push("zlib1g-dev".into())),
            ("toolchain.rootfs", |l| l.toolchain.rootfs = Digest::of_bytes(b"other toolchain")),
            ("package version", |l| l.toolchain.packages[1].version = "12.2.0-15".into()),
            ("package sha256", |l| l.toolchain.packages[1].sha256 = Some(sha('9'))),
            ("package size", |l| l.toolchain.packages[1].size = Some(1)),
            ("package arch", |l| l.toolchain.packages[0].arch = "i386".into()),
            ("package name", |l| l.toolchain.packages[0].name = "libc6-dev".into()),
            ("package origin", |l| {
                let p = &mut l.toolchain.packages[0];
                p.from = Origin::Locked;
                p.sha256 = Some(sha('1'));
                p.size = Some(7);
            }),
            ("package added", |l| l.toolchain.packages.push(package("zlib1g", "1:1.2.13.dfsg-1", None))),
            ("package removed", |l| {
                l.toolchain.packages.pop();
            }),
            ("build.command", |l| l.build.command.push("install".into())),
            ("build.workdir", |l| l.build.workdir = "/source".into()),
            ("build.user", |l| l.build.user = "0:0".into()),
            ("build.hostname", |l| l.build.hostname = "builder".into()),
            ("build.network", |l| l.build.network = Network::Bridge),
            ("build.umask", |l| l.build.umask = "0002".into()),
            ("build.tmpfs", |l| l.build.tmpfs = "/var/tmp".into()),
            ("build.outputs", |l| l.build.outputs.push("dist".into())),
            ("build.source_date_epoch", |l| l.build.source_date_epoch = SourceDateEpoch::Fixed(1)),
            ("build.source_date_epoch git", |l| l.build.source_date_epoch = SourceDateEpoch::GitCommit),
            ("build.capabilities", |l| l.build.capabilities.push("CAP_CHOWN".into())),
            ("build.no_new_privileges", |l| l.build.no_new_privileges = false),
            ("build.read_only_root", |l| l.build.read_only_root = "never".into()),
            ("build.env value", |l| {
                l.build.env.insert("CFLAGS".into(), "-O1".into());
            }),
            ("build.env added", |l| {
                l.build.env.insert("LDFLAGS".into(), String::new());
            }),
            ("build.env removed", |l| {
                l.build.env.remove("CFLAGS");
            }),
            ("build.limits.timeout_secs", |l| l.build.limits.timeout_secs += 1),
            ("build.limits.memory_bytes", |l| l.build.limits.memory_bytes = Some(1 << 30)),
            ("build.limits.millicpus", |l| l.build.limits.millicpus = Some(1000)),
            ("build.limits.nofile", |l| l.build.limits.nofile += 1),
            ("build.limits.nproc", |l| l.build.limits.nproc += 1),
            ("build.limits.pids", |l| l.build.limits.pids += 1),
        ];
        let base = sample();
        let mut seen = HashMap::new();
        seen.insert(base.env_id(), "the sample");
        for (what, mutate) in mutations {
            let mut lock = base.clone();
            mutate(&mut lock);
            let id = lock.env_id();
            if let Some(other) = seen.insert(id, what) {
                panic!("changing {what} gives the env_id of {other}");
            }
        }
        assert_eq!(seen.len(), mutations.len() + 1);
    }

    #[test]
    fn env_id_follows_the_policy_not_the_resolved_epoch() {
        let m = Manifest::parse(&MANIFEST.replace("env = {", "source_date_epoch = \"git\"\nenv = {")).unwrap();
        let at = |epoch| LockedBuild::from_plan(&BuildPlan::new(&m, None, None, epoch), SourceDateEpoch::GitCommit);
        assert_eq!(at(1_700_000_000), at(1_800_000_000));
        assert!(!at(0).env.contains_key("SOURCE_DATE_EPOCH"));
        assert_eq!(at(0).env["CFLAGS"], "-O2");
    }

    #[test]
    fn parse_refuses_bad_locks_with_line_and_column() {
        let text = sample().render();
        // The sample's own env_id, and another.
        let id = sample().env_id().to_string();
        let other = Digest::of_bytes(b"other").to_string();

        insta::assert_snapshot!(error_of(&edited("\"repro-lock-v1\"", "\"repro-lock-v2\"")), @r#"line 4, column 10: format "repro-lock-v2" is not one this repro-run reads (it reads "repro-lock-v1"): upgrade repro-run to read this lock, or run `repro-run lock` to rewrite it as repro-lock-v1"#);
        insta::assert_snapshot!(error_of(&edited("format = \"repro-lock-v1\"\n", "")), @r#"this is not a repro.lock: it has no `format = "repro-lock-v1"` line; run `repro-run lock` to write one"#);
        insta::assert_snapshot!(error_of(&text.replace(&id, &other)), @"line 5, column 10: env_id is blake3:3f796163ebf94718de1cd7582655c012f995c06f1e6970ea2bdc15bcd88a324a, but the rest of the lock gives blake3:b56793f85efeb85b53ecdcd56d9619179794dfdea3d1b18135859266e5d2806a: the lock was edited by hand. Change repro.toml instead, and run `repro-run lock` to rewrite repro.lock");
        insta::assert_snapshot!(error_of(&text.replace(&id, "blake3:00")), @"line 5, column 10: env_id: `blake3:00` is not a digest: expected `blake3:` followed by 64 lowercase hex characters; run `repro-run lock` to rewrite the lock");
        insta::assert_snapshot!(error_of(&edited("\"12.2.0-14\"", "\"12.2.0 14\"")), @"line 19, column 32: package `gcc-12`: `12.2.0 14` is not a Debian version: the upstream version `12.2.0 14` holds ` `: only letters, digits and `. + ~ - :` are allowed");
        insta::assert_snapshot!(error_of(&edited("\"gcc-12\", version", "\"GCC-12\", version")), @"line 19, column 12: toolchain.packages: `GCC-12` is not a Debian package name: it holds `G`: only lowercase letters, digits and `+ - .` are allowed");
        insta::assert_snapshot!(error_of(&edited("  { name = \"make\"", "  { name = \"make\", version = \"4.3-4.1\", arch = \"amd64\", from = \"base\" },\n  { name = \"make\"")), @"line 22, column 12: package `make` (amd64) is listed twice, first on line 21: a lock lists each package and architecture once; run `repro-run lock` to rewrite it");
        insta::assert_snapshot!(error_of(&edited(&format!(", sha256 = \"{}\"", sha_of("make")), "")), @r#"line 21, column 64: package `make` is from "locked" but has no sha256: a package repro-run installed carries the sha256 and size of its file; run `repro-run lock` to rewrite the lock"#);
        insta::assert_snapshot!(error_of(&edited(", size = 19326868", "")), @r#"line 19, column 68: package `gcc-12` is from "locked" but has no size: a package repro-run installed carries the sha256 and size of its file; run `repro-run lock` to rewrite the lock"#);
        insta::assert_snapshot!(error_of(&edited("from = \"base\" }", &format!("from = \"base\", sha256 = \"{}\" }}", sha('a')))), @r#"line 18, column 92: package `base-files` is from "base" but has a sha256: only packages repro-run installed (from = "locked") carry sha256 and size"#);
        insta::assert_snapshot!(error_of(&edited("from = \"base\" }", "from = \"base\", size = 1 }")), @r#"line 18, column 90: package `base-files` is from "base" but has a size: only packages repro-run installed (from = "locked") carry sha256 and size"#);
        insta::assert_snapshot!(error_of(&edited(&sha_of("make"), &sha_of("make").to_uppercase())), @"line 21, column 83: package `make`: sha256 `2E9919F4E5F55BE63772BFFE569E0E6E6C53E275787D8F6535C0F0FF93772376` is not valid: give 64 lowercase hex characters");
        insta::assert_snapshot!(error_of(&edited("from = \"base\" }", "from = \"mirror\" }")), @r#"line 18, column 75: package `base-files`: from `mirror` is not valid: use "base" (the base image had it) or "locked" (repro-run installed it)"#);
        insta::assert_snapshot!(error_of(&edited("from = \"base\" }", "from = \"base\", url = \"x\" }")), @"line 18, column 83: unknown field `url`, expected one of `name`, `version`, `arch`, `from`, `sha256`, `size`");
        insta::assert_snapshot!(error_of(&edited("[build]\n", "[build]\ncolour = 3\n")), @"line 25, column 1: unknown field `colour`, expected one of `command`, `workdir`, `user`, `hostname`, `network`, `umask`, `tmpfs`, `outputs`, `source_date_epoch`, `capabilities`, `no_new_privileges`, `read_only_root`, `env`, `limits`");
        insta::assert_snapshot!(error_of(&edited("[base]\n", "[base\n")), @r"
        line 7, column 6: invalid table header
        expected `.`, `]`
        ");
        insta::assert_snapshot!(error_of(&edited("manager = \"apt\"\n", "")), @"line 17, column 3: toolchain.packages is not empty, but the lock names no toolchain.manager: packages come from a package manager; run `repro-run lock` to rewrite the lock");
        insta::assert_snapshot!(error_of(&edited("manager = \"apt\"", "manager = \"dnf\"")), @r#"line 12, column 11: toolchain.manager `dnf` is not valid: use "apt", "apk" or "rpm""#);
        insta::assert_snapshot!(error_of(&edited("network = \"none\"", "network = \"host\"")), @r#"line 29, column 11: build.network `host` is not valid: use "none" or "bridge""#);
        insta::assert_snapshot!(error_of(&edited("source_date_epoch = 0", "source_date_epoch = -1")), @r#"line 33, column 21: build.source_date_epoch -1 is not valid: give seconds since 1970, such as 0, or "git""#);
        insta::assert_snapshot!(error_of(&edited("[build.env]\n", "[build.env]\nSOURCE_DATE_EPOCH = \"0\"\n")), @"line 39, column 1: build.env holds SOURCE_DATE_EPOCH: its value follows from build.source_date_epoch, and the lock leaves it out");
        insta::assert_snapshot!(error_of(&edited("pids = 4096", "pids = -1")), @"line 51, column 8: build.limits.pids `-1` is not valid: give a number of at least 0");
        insta::assert_snapshot!(error_of(&edited("hostname = \"repro-run\"\n", "")), @"line 24, column 1: missing field `hostname`");
        insta::assert_snapshot!(error_of(&edited("requested = [\"gcc-12\"", "requested = [\"Gcc\"")), @"line 15, column 14: toolchain.requested: `Gcc` is not a Debian package name: it holds `G`: only lowercase letters, digits and `+ - .` are allowed");
    }

    #[test]
    fn drift_is_empty_for_the_same_inputs_and_names_each_changed_field() {
        let lock = sample();
        assert_eq!(lock.drift(&inputs_of(MANIFEST)), []);
        assert_eq!(lock.drift(&lock.inputs()), []);
        let mut unpinned = lock.inputs();
        unpinned.base_rootfs_pin = None;
        assert_eq!(lock.drift(&unpinned), []);

        let fields =
            |manifest: &str| -> Vec<String> { lock.drift(&inputs_of(manifest)).into_iter().map(|d| d.field).collect() };
        let with = |from: &str, to: &str| {
            assert!(MANIFEST.contains(from), "{from:?}");
            MANIFEST.replacen(from, to, 1)
        };
        assert_eq!(fields(&with("debian-bookworm", "debian-trixie")), ["base.name"]);
        let pin = Digest::of_bytes(b"pinned");
        assert_eq!(
            fields(&with("\"debian-bookworm\"", &format!("\"debian-bookworm\"\nrootfs = \"{pin}\""))),
            ["base.rootfs"]
        );
        assert_eq!(fields(&with("profile = \"c\"\n", "")), ["toolchain.profile"]);
        assert_eq!(fields(&with("[\"make\"]", "[\"make\", \"zlib1g-dev\"]")), ["toolchain.packages"]);
        assert_eq!(fields(&with("[\"make\", \"all\"]", "[\"make\"]")), ["build.command"]);
        assert_eq!(fields(&with("[\"out/\"]", "[\"dist/\"]")), ["build.outputs"]);
        assert_eq!(fields(&with("-O2", "-O1")), ["build.env.CFLAGS"]);
        assert_eq!(
            fields(&with("env = {", "user = \"0:0\"\nnetwork = \"bridge\"\nsource_date_epoch = 5\nenv = {")),
            ["build.user", "build.network", "build.source_date_epoch"]
        );
        assert_eq!(
            fields(&format!("{MANIFEST}[limits]\npids = 100\ntimeout = 60\nmemory = \"1g\"\n")),
            ["build.limits.timeout_secs", "build.limits.memory_bytes", "build.limits.pids"]
        );

        let mut wanted = inputs_of(&with("{ CFLAGS = \"-O2\" }", "{ CFLAGS = \"-O1\", LDFLAGS = \"-s\" }"));
        wanted.requested = vec!["gcc-12".into(), "zlib1g-dev".into(), "libssl-dev".into()];
        wanted.profile = None;
        wanted.build.workdir = "/source".into();
        wanted.build.env.remove("CC");
        let shown: Vec<String> = lock.drift(&wanted).iter().map(Drift::to_string).collect();
        insta::assert_snapshot!(shown.join("\n"), @r"
        toolchain.profile: repro.lock has `c`, repro.toml asks for (absent)
        toolchain.packages: added libssl-dev, zlib1g-dev; removed make
        build.workdir: repro.lock has `/src`, repro.toml asks for `/source`
        build.env.CC: repro.lock has `gcc-12`, repro.toml asks for (absent)
        build.env.CFLAGS: repro.lock has `-O2`, repro.toml asks for `-O1`
        build.env.LDFLAGS: repro.lock has (absent), repro.toml asks for `-s`
        ");
    }

    #[test]
    fn inventory_diff_names_missing_extra_and_other_versions() {
        let lock = sample();
        let installed = lock.installed();
        assert_eq!(inventory_diff(&lock.toolchain.packages, &installed), []);
        assert_eq!(
            installed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["base-files", "gcc-12", "libc6", "make"]
        );

        let mut image = installed.clone();
        image.retain(|p| p.name != "gcc-12");
        image.push(InstalledPackage { name: "foo".into(), version: "1.0".into(), arch: "amd64".into() });
        image.iter_mut().filter(|p| p.name == "make").for_each(|p| p.version = "4.3-4.2".into());
        image.push(InstalledPackage { name: "libc6".into(), version: "2.36-9+deb12u4".into(), arch: "i386".into() });
        let diff = inventory_diff(&lock.toolchain.packages, &image);
        insta::assert_snapshot!(diff.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"), @r"
        not in the lock: foo 1.0 (amd64)
        missing gcc-12 12.2.0-14 (amd64)
        not in the lock: libc6 2.36-9+deb12u4 (i386)
        make (amd64): lock has 4.3-4.1, image has 4.3-4.2
        ");
        assert_eq!(inventory_diff(&[], &[]), []);
    }

    /// The section of docs/lock.md that holds the test vector, and the
    /// env_id the text states for it.
    fn doc_vector() -> (String, Digest) {
        let doc = include_str!("../../docs/lock.md");
        let section = doc.split_once("\n## Test vector\n").expect("docs/lock.md has a `## Test vector` section").1;
        let block = section.split_once("```toml\n").expect("a ```toml block follows the heading").1;
        let vector = block.split_once("\n```\n").expect("the block ends").0;
        let stated = section
            .split_once("Its env_id is `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .expect("the section says `Its env_id is `blake3:…``")
            .0;
        (format!("{vector}\n"), stated.parse().unwrap())
    }

    #[test]
    fn the_test_vector_in_docs_lock_md_holds() {
        let (vector, stated) = doc_vector();
        let lock = Lock::parse(&vector).unwrap_or_else(|e| panic!("the test vector does not parse: {e}"));
        assert_eq!(lock.env_id(), stated);
        assert_eq!(lock.render(), vector, "the test vector is not in canonical form");
        let without: String =
            vector.lines().filter(|l| !l.starts_with("env_id = ")).map(|l| format!("{l}\n")).collect();
        assert_eq!(Digest::of_bytes(without.as_bytes()), stated);
        assert!(lock.toolchain.packages.iter().any(|p| p.from == Origin::Base));
        assert!(lock.toolchain.packages.iter().any(|p| p.from == Origin::Locked));
    }
}

//! `repro-run diff`: two build records, or two locks, compared field by
//! field into [`Finding`]s, each filed under the [`Area`] it blames.
//!
//! A release engineer asks "why do these two builds differ?": the answer
//! is a short list of what changed between them (the base image, a
//! package, a setting, the engine, the host, the sources), not a diff of
//! two JSON files. So only what can explain a difference is compared, and
//! collections (packages, artifacts) are matched by their key, so that one
//! changed package is one finding, not a shifted list.
//!
//! Values are text as the record or lock holds them: digests as
//! `blake3:<hex>`, lists in TOML array syntax (`["make", "all"]`), numbers
//! in decimal; `None` where that side does not have the field at all.

use std::collections::BTreeMap;
use std::fmt;

use crate::lock::{Drift, Lock, LockedPackage, Origin};
use crate::packages::InstalledPackage;
use crate::record::{Artifact, BuildRecord};

/// What a difference is about: where to look for its cause. The order of
/// the variants is the order of [`render_text`]: the inputs first (what
/// the lock pins, then the sources), then where the build ran, then what
/// came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// The base image: its name and rootfs digest.
    Base,
    /// The toolchain image: its rootfs digest, package manager,
    /// architecture, profile and the packages asked for.
    Toolchain,
    /// The packages installed in the toolchain image.
    Packages,
    /// The build settings (command, environment, limits, ...), and the
    /// `env_id` of a record, which stands for all of them.
    Settings,
    /// The source tree.
    Sources,
    /// The container engine.
    Engine,
    /// The machine under the engine.
    Host,
    /// The output files.
    Artifacts,
    /// The build itself: its exit code and its log.
    Build,
}

impl Area {
    /// Every area, in the order reports list them.
    pub const ALL: [Area; 9] = [
        Area::Base,
        Area::Toolchain,
        Area::Packages,
        Area::Settings,
        Area::Sources,
        Area::Engine,
        Area::Host,
        Area::Artifacts,
        Area::Build,
    ];

    /// The header of the area in text reports.
    pub fn title(self) -> &'static str {
        match self {
            Area::Base => "base image",
            Area::Toolchain => "toolchain",
            Area::Packages => "packages",
            Area::Settings => "settings",
            Area::Sources => "sources",
            Area::Engine => "engine",
            Area::Host => "host",
            Area::Artifacts => "artifacts",
            Area::Build => "build",
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// One field that differs between A and B.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Where to look for the cause.
    pub area: Area,
    /// The dotted name of the field: `image.rootfs`, `engine.version`,
    /// `build.env.CFLAGS`; for a package `packages.<name>:<arch>` (dpkg's
    /// way of naming one architecture's package, since one name can be
    /// installed for two), for an output file `artifacts.<path>`.
    pub field: String,
    /// A's value; `None` when A does not have the field (a package or file
    /// only B has, an unset variable).
    pub a: Option<String>,
    /// B's value; `None` when B does not have the field.
    pub b: Option<String>,
}

/// What [`fmt::Display`] shows for a side that does not have the field.
const ABSENT: &str = "(absent)";
const PACKAGES: &str = "packages.";
const ARTIFACTS: &str = "artifacts.";

impl Finding {
    fn new(area: Area, field: impl Into<String>, a: Option<String>, b: Option<String>) -> Finding {
        Finding { area, field: field.into(), a, b }
    }

    /// The finding without its collection's name in front (`gcc-12 (amd64)
    /// 12.2.0-14 → 12.2.0-15`), for a list under the area's header; fields
    /// that are not in a collection keep their name.
    fn detail(&self) -> String {
        let arrow = |a: &str, b: &str| format!("{a} → {b}");
        if let Some(key) = self.field.strip_prefix(PACKAGES) {
            let (name, arch) = key.rsplit_once(':').unwrap_or((key, "?"));
            return match (&self.a, &self.b) {
                (None, Some(b)) => format!("added {name} {b} ({arch})"),
                (Some(a), None) => format!("removed {name} {a} ({arch})"),
                (a, b) => format!("{name} ({arch}) {}", arrow(or_absent(a), or_absent(b))),
            };
        }
        if let Some(path) = self.field.strip_prefix(ARTIFACTS) {
            return match (&self.a, &self.b) {
                (None, Some(b)) => format!("added {path} ({b})"),
                (Some(a), None) => format!("removed {path} ({a})"),
                (a, b) => format!("{path}: {}", arrow(or_absent(a), or_absent(b))),
            };
        }
        format!("{}: {}", self.field, arrow(or_absent(&self.a), or_absent(&self.b)))
    }

    /// Whether the field belongs to a collection whose name
    /// [`detail`](Self::detail) leaves out.
    fn in_collection(&self) -> bool {
        self.field.starts_with(PACKAGES) || self.field.starts_with(ARTIFACTS)
    }
}

fn or_absent(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or(ABSENT)
}

/// One line: `packages: gcc-12 (amd64) 12.2.0-14 → 12.2.0-15`,
/// `packages: added zlib1g-dev 1:1.2.13 (amd64)`,
/// `engine.version: 20.10.24 → 24.0.7`.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_collection() {
            let collection = self.field.split('.').next().unwrap_or_default();
            write!(f, "{collection}: {}", self.detail())
        } else {
            f.write_str(&self.detail())
        }
    }
}

/// The findings as text: `no differences`, or one header line per area
/// (`packages (4)`) in [`Area`]'s order, each followed by its findings,
/// indented, in the order they were found.
pub fn render_text(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no differences\n".to_owned();
    }
    let mut out = String::new();
    for area in Area::ALL {
        let these: Vec<&Finding> = findings.iter().filter(|f| f.area == area).collect();
        if these.is_empty() {
            continue;
        }
        out.push_str(&format!("{area} ({})\n", these.len()));
        for finding in these {
            out.push_str("  ");
            out.push_str(&finding.detail());
            out.push('\n');
        }
    }
    out
}

/// Collects findings, one per field whose two values differ.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn field(&mut self, area: Area, field: &str, a: Option<String>, b: Option<String>) {
        if a != b {
            self.0.push(Finding::new(area, field, a, b));
        }
    }

    /// A field both sides always have.
    fn value(&mut self, area: Area, field: &str, a: impl ToString, b: impl ToString) {
        self.field(area, field, Some(a.to_string()), Some(b.to_string()));
    }
}

/// What differs between two build records.
///
/// Compared: `env_id`, `source_digest`, `command`, `exit_code`, the base
/// image (`image.name`, `image.rootfs`), the toolchain image's
/// `image.toolchain_rootfs`, its installed packages (by name and
/// architecture: added, removed, and those in another version; the same
/// package in the same version is never a finding), the engine (`kind`,
/// `version`, `api_version`), the host (`os`, `arch`, `kernel`), the
/// artifacts (by path: added, removed, and those whose size, mode, content
/// or link target differ), `artifacts_digest` and `log_digest`.
///
/// Not compared, because they differ between any two builds and so would
/// bury the differences that explain something: the `timings`, and
/// `image.toolchain_image_id` (the engine's own id of the image, which
/// differs from engine to engine for the same rootfs; the rootfs digest is
/// what names the toolchain). An artifact's sha256 is not compared apart
/// from its blake3: the two hash the same bytes.
pub fn records(a: &BuildRecord, b: &BuildRecord) -> Vec<Finding> {
    let mut out = Findings::default();
    let digest = |d: &Option<crate::digest::Digest>| d.map(|d| d.to_string());
    out.value(Area::Base, "image.name", &a.image.name, &b.image.name);
    out.field(Area::Base, "image.rootfs", digest(&a.image.rootfs), digest(&b.image.rootfs));
    out.field(
        Area::Toolchain,
        "image.toolchain_rootfs",
        digest(&a.image.toolchain_rootfs),
        digest(&b.image.toolchain_rootfs),
    );
    packages(&mut out, record_packages(&a.image.packages), record_packages(&b.image.packages));
    out.value(Area::Settings, "env_id", a.env_id, b.env_id);
    out.value(Area::Settings, "command", list(&a.command), list(&b.command));
    out.value(Area::Sources, "source_digest", a.source_digest, b.source_digest);
    out.value(Area::Engine, "engine.kind", a.engine.kind, b.engine.kind);
    out.value(Area::Engine, "engine.version", &a.engine.version, &b.engine.version);
    out.value(Area::Engine, "engine.api_version", &a.engine.api_version, &b.engine.api_version);
    out.value(Area::Host, "host.os", &a.host.os, &b.host.os);
    out.value(Area::Host, "host.arch", &a.host.arch, &b.host.arch);
    out.value(Area::Host, "host.kernel", &a.host.kernel, &b.host.kernel);
    artifacts(&mut out, &a.artifacts, &b.artifacts);
    out.value(Area::Artifacts, "artifacts_digest", a.artifacts_digest, b.artifacts_digest);
    out.value(Area::Build, "exit_code", a.exit_code, b.exit_code);
    out.value(Area::Build, "log_digest", a.log_digest, b.log_digest);
    out.0
}

/// What differs between two locks.
///
/// Compared: `base.name` and `base.rootfs`; the toolchain's `manager`,
/// `arch`, `profile`, `requested` packages and `rootfs`; its installed
/// packages (by name and architecture: added, removed, in another version,
/// and, in the same version, fetched from a file with another sha256 or
/// size, or now from the base image rather than locked: any of these
/// changes the `env_id`); and every build setting, each environment
/// variable and each limit on its own, named as [`Lock::drift`] names them
/// (`build.env.CFLAGS`, `build.limits.pids`). The `env_id` itself is not a
/// finding: it follows from the rest, which says why it differs.
pub fn locks(a: &Lock, b: &Lock) -> Vec<Finding> {
    let mut out = Findings::default();
    out.value(Area::Base, "base.name", &a.base.name, &b.base.name);
    out.value(Area::Base, "base.rootfs", a.base.rootfs, b.base.rootfs);
    let (ta, tb) = (&a.toolchain, &b.toolchain);
    out.field(
        Area::Toolchain,
        "toolchain.manager",
        ta.manager.map(|m| m.to_string()),
        tb.manager.map(|m| m.to_string()),
    );
    out.field(Area::Toolchain, "toolchain.arch", ta.arch.clone(), tb.arch.clone());
    out.field(Area::Toolchain, "toolchain.profile", ta.profile.clone(), tb.profile.clone());
    out.value(Area::Toolchain, "toolchain.requested", list(&sorted(&ta.requested)), list(&sorted(&tb.requested)));
    out.value(Area::Toolchain, "toolchain.rootfs", ta.rootfs, tb.rootfs);
    packages(&mut out, lock_packages(&ta.packages), lock_packages(&tb.packages));
    settings(&mut out, a, b);
    out.0
}

/// Every build setting that differs, in the lock's order.
///
/// The lock names its own settings: reusing its drift keeps every setting
/// (and any added later) here, under the same names. Drift writes
/// [`Drift::ABSENT`] for a value a side does not have, which a variable
/// could also hold (and drift then misses a variable added with it), so
/// the variables are compared here from the maps themselves; they go
/// where drift puts them, before the limits.
fn settings(out: &mut Findings, a: &Lock, b: &Lock) {
    let mut env = Findings::default();
    let names: std::collections::BTreeSet<&String> = a.build.env.keys().chain(b.build.env.keys()).collect();
    for name in names {
        let value = |lock: &Lock| lock.build.env.get(name).cloned();
        env.field(Area::Settings, &format!("build.env.{name}"), value(a), value(b));
    }
    let mut env = Some(env.0);
    for drift in a.drift(&b.inputs()) {
        if !drift.field.starts_with("build.") || drift.field.starts_with("build.env.") {
            continue;
        }
        if drift.field.starts_with("build.limits.") {
            out.0.extend(env.take().unwrap_or_default());
        }
        let absent_is_none = |v: String| (v != Drift::ABSENT).then_some(v);
        out.field(Area::Settings, &drift.field, absent_is_none(drift.locked), absent_is_none(drift.wanted));
    }
    out.0.extend(env.take().unwrap_or_default());
}

/// Packages by `(name, arch)`, each with its versions, and for each
/// version what else pins it (empty for a record). One key can hold
/// several versions: rpm installs some packages (kernels) in more than one
/// at once.
type PackageSet = BTreeMap<(String, String), Vec<(String, String)>>;

fn record_packages(packages: &[InstalledPackage]) -> PackageSet {
    let mut set = PackageSet::new();
    for p in packages {
        set.entry((p.name.clone(), p.arch.clone())).or_default().push((p.version.clone(), String::new()));
    }
    set
}

/// A locked package is pinned by its version and, as the lock holds them
/// too, by where it came from and the sha256 and size of its file.
fn lock_packages(packages: &[LockedPackage]) -> PackageSet {
    let mut set = PackageSet::new();
    for p in packages {
        let pins = match (p.from, &p.sha256, p.size) {
            (Origin::Base, _, _) => "from the base image".to_owned(),
            (Origin::Locked, Some(sha256), Some(size)) => format!("sha256 {sha256}, {size} bytes"),
            (Origin::Locked, Some(sha256), None) => format!("sha256 {sha256}"),
            (Origin::Locked, None, _) => String::new(),
        };
        set.entry((p.name.clone(), p.arch.clone())).or_default().push((p.version.clone(), pins));
    }
    set
}

/// Packages added, removed and changed, sorted by name and architecture;
/// a package the same on both sides is no finding.
///
/// Values are the versions alone where they differ (a sha256 is long, and
/// a new version has a new file anyway); where the versions are the same
/// and the file is what changed, each version comes with its pins:
/// `1:1.2.13 (sha256 <hex>, 92340 bytes)`.
fn packages(out: &mut Findings, a: PackageSet, b: PackageSet) {
    let mut keys: Vec<&(String, String)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let versions =
        |v: &Vec<(String, String)>| v.iter().map(|(version, _)| version.as_str()).collect::<Vec<_>>().join(", ");
    let pinned = |v: &Vec<(String, String)>| {
        let each: Vec<String> = v
            .iter()
            .map(|(version, pins)| if pins.is_empty() { version.clone() } else { format!("{version} ({pins})") })
            .collect();
        each.join(", ")
    };
    for key in keys {
        let (va, vb) = (a.get(key), b.get(key));
        if va == vb {
            continue;
        }
        let (mut sa, mut sb) = (va.map(versions), vb.map(versions));
        if sa == sb {
            (sa, sb) = (va.map(pinned), vb.map(pinned));
        }
        out.0.push(Finding::new(Area::Packages, format!("{PACKAGES}{}:{}", key.0, key.1), sa, sb));
    }
}

/// Artifacts added, removed and changed, sorted by path (by its bytes
/// where they are not UTF-8, as two such names can look alike).
fn artifacts(out: &mut Findings, a: &[Artifact], b: &[Artifact]) {
    let by_path = |list: &[Artifact]| -> BTreeMap<(String, Option<String>), Artifact> {
        list.iter().map(|x| ((x.path.clone(), x.path_bytes.clone()), x.clone())).collect()
    };
    let (a, b) = (by_path(a), by_path(b));
    let mut keys: Vec<&(String, Option<String>)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let field = match &key.1 {
            None => format!("{ARTIFACTS}{}", key.0),
            Some(bytes) => format!("{ARTIFACTS}{} (bytes {bytes})", key.0),
        };
        let (x, y) = (a.get(key).map(facts), b.get(key).map(facts));
        let (values_a, values_b) = match (&x, &y) {
            (Some(x), Some(y)) => artifact_change(x, y),
            _ => (x.as_ref().map(all_of), y.as_ref().map(all_of)),
        };
        out.field(Area::Artifacts, &field, values_a, values_b);
    }
}

/// What stands for an artifact, in order: size, mode, blake3 of the
/// content, and the target of a symlink (`None` for other files).
type Facts = [(&'static str, Option<String>); 4];

fn facts(x: &Artifact) -> Facts {
    let link = x.link.as_ref().map(|link| match &x.link_bytes {
        None => link.clone(),
        Some(bytes) => format!("{link} (bytes {bytes})"),
    });
    [
        ("size", Some(x.size.to_string())),
        ("mode", Some(x.mode.clone())),
        ("blake3", Some(x.blake3.clone())),
        ("link", link),
    ]
}

/// The chosen facts, as `size 12, mode 0644, ...`; a chosen fact the
/// file lacks (the link target of a regular file) shows as absent.
fn shown(facts: &Facts, chosen: &[bool; 4]) -> String {
    let each: Vec<String> = facts
        .iter()
        .zip(chosen)
        .filter(|(_, chosen)| **chosen)
        .map(|((label, value), _)| format!("{label} {}", value.as_deref().unwrap_or(ABSENT)))
        .collect();
    each.join(", ")
}

/// All the facts a file has: what an added or removed one shows.
fn all_of(facts: &Facts) -> String {
    shown(facts, &facts.clone().map(|(_, value)| value.is_some()))
}

/// The facts of two versions of one artifact that differ, and only those:
/// a mode-only change is `mode 0644` → `mode 0755`.
fn artifact_change(x: &Facts, y: &Facts) -> (Option<String>, Option<String>) {
    let differ: [bool; 4] = std::array::from_fn(|i| x[i].1 != y[i].1);
    if !differ.contains(&true) {
        return (None, None);
    }
    (Some(shown(x, &differ)), Some(shown(y, &differ)))
}

/// A list in TOML array syntax, as [`Lock::drift`] writes lists.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml::Value::String(s.clone()).to_string()).collect();
    format!("[{}]", quoted.join(", "))
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::engine::EngineKind;
    use crate::hermetic::BuildPlan;
    use crate::lock::{LockInputs, LockedBase, LockedToolchain};
    use crate::manifest::Manifest;
    use crate::packages::PackageManager;
    use crate::record::{EngineFacts, HostFacts, ImageFacts, Timings, RECORD_FORMAT};

    fn pkg(name: &str, version: &str) -> InstalledPackage {
        InstalledPackage { name: name.into(), version: version.into(), arch: "amd64".into() }
    }

    fn artifact(path: &str, content: &str, mode: &str) -> Artifact {
        let h = crate::record::hash_content(content.as_bytes()).unwrap();
        Artifact {
            path: path.into(),
            path_bytes: None,
            size: h.size,
            mode: mode.into(),
            blake3: h.blake3,
            sha256: h.sha256,
            link: None,
            link_bytes: None,
        }
    }

    fn record() -> BuildRecord {
        BuildRecord {
            format: RECORD_FORMAT.into(),
            env_id: Digest::of_bytes(b"env"),
            source_digest: Digest::of_bytes(b"src"),
            command: vec!["make".into(), "all".into()],
            exit_code: 0,
            artifacts: vec![artifact("hello", "hello\n", "0755"), artifact("README", "read me\n", "0644")],
            artifacts_digest: Digest::of_bytes(b"out"),
            log_digest: Digest::of_bytes(b"log"),
            image: ImageFacts {
                name: "debian-bookworm".into(),
                rootfs: Some(Digest::of_bytes(b"base")),
                toolchain_image_id: "sha256:1111".into(),
                toolchain_rootfs: Some(Digest::of_bytes(b"toolchain")),
                packages: vec![
                    pkg("gcc-12", "12.2.0-14"),
                    pkg("libc6", "2.36-9+deb12u4"),
                    pkg("make", "4.3-4.1"),
                    pkg("perl-base", "5.36.0-7+deb12u1"),
                ],
            },
            engine: EngineFacts { kind: EngineKind::Docker, version: "20.10.24".into(), api_version: "1.41".into() },
            host: HostFacts { os: "linux".into(), arch: "x86_64".into(), kernel: "6.1.0-18-amd64".into() },
            timings: Timings { total_ms: 1000, ..Timings::default() },
        }
    }

    /// The text with each run of 64 hex digits cut to its first 8, so that
    /// snapshots stay readable.
    fn short_hex(text: &str) -> String {
        let mut out = String::new();
        let mut run = String::new();
        let flush = |run: &mut String, out: &mut String| {
            if run.len() == 64 {
                out.push_str(&run[..8]);
                out.push('…');
            } else {
                out.push_str(run);
            }
            run.clear();
        };
        for c in text.chars() {
            if c.is_ascii_hexdigit() {
                run.push(c);
            } else {
                flush(&mut run, &mut out);
                out.push(c);
            }
        }
        flush(&mut run, &mut out);
        out
    }

    #[test]
    fn the_same_record_has_no_differences_whatever_the_timings() {
        let a = record();
        let mut b = record();
        b.timings = Timings { total_ms: 2345, run_ms: 17, ..Timings::default() };
        b.image.toolchain_image_id = "sha256:2222".into();
        assert_eq!(records(&a, &b), []);
        assert_eq!(render_text(&records(&a, &b)), "no differences\n");
    }

    #[test]
    fn records_of_two_package_sets_list_exactly_the_changed_packages() {
        let a = record();
        let mut b = record();
        b.image.packages = vec![
            pkg("gcc-12", "12.2.0-15"),
            pkg("libc6", "2.36-9+deb12u7"),
            pkg("make", "4.3-4.1"),
            pkg("zlib1g-dev", "1:1.2.13.dfsg-1"),
        ];
        let found = records(&a, &b);
        assert!(found.iter().all(|f| f.area == Area::Packages), "{found:#?}");
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "packages: gcc-12 (amd64) 12.2.0-14 → 12.2.0-15",
                "packages: libc6 (amd64) 2.36-9+deb12u4 → 2.36-9+deb12u7",
                "packages: removed perl-base 5.36.0-7+deb12u1 (amd64)",
                "packages: added zlib1g-dev 1:1.2.13.dfsg-1 (amd64)",
            ]
        );
        assert_eq!(
            found[0],
            Finding {
                area: Area::Packages,
                field: "packages.gcc-12:amd64".into(),
                a: Some("12.2.0-14".into()),
                b: Some("12.2.0-15".into()),
            }
        );
        assert_eq!(found[3].a, None);
    }

    #[test]
    fn one_name_in_two_architectures_or_two_versions_is_kept_apart() {
        let mut a = record();
        a.image.packages =
            vec![pkg("libc6", "2.36-9"), InstalledPackage { arch: "i386".into(), ..pkg("libc6", "2.36-9") }];
        let mut b = a.clone();
        b.image.packages[1].version = "2.36-10".into();
        assert_eq!(
            records(&a, &b).iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["packages: libc6 (i386) 2.36-9 → 2.36-10"]
        );
        // rpm keeps several kernels installed at once.
        let mut c = a.clone();
        c.image.packages.push(pkg("libc6", "2.37-1"));
        assert_eq!(
            records(&a, &c).iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["packages: libc6 (amd64) 2.36-9 → 2.36-9, 2.37-1"]
        );
    }

    #[test]
    fn records_name_each_differing_field_under_its_area() {
        let a = record();
        let mut b = record();
        b.env_id = Digest::of_bytes(b"env 2");
        b.image.rootfs = Some(Digest::of_bytes(b"base 2"));
        b.image.toolchain_rootfs = None;
        b.image.packages[2].version = "4.3-4.2".into();
        b.command.push("V=1".into());
        b.source_digest = Digest::of_bytes(b"src 2");
        b.engine = EngineFacts { kind: EngineKind::Podman, version: "4.3.1".into(), api_version: "1.41".into() };
        b.host.kernel = "6.6.13".into();
        b.artifacts = vec![artifact("hello", "hello!\n", "0755"), artifact("README", "read me\n", "0600")];
        b.artifacts.push(Artifact { link: Some("hello".into()), ..artifact("hi", "hello", "0777") });
        b.artifacts_digest = Digest::of_bytes(b"out 2");
        b.exit_code = 2;
        b.log_digest = Digest::of_bytes(b"log 2");
        insta::assert_snapshot!(short_hex(&render_text(&records(&a, &b))), @r#"
        base image (1)
          image.rootfs: blake3:de8f3fcf… → blake3:4e1d56be…
        toolchain (1)
          image.toolchain_rootfs: blake3:dd976572… → (absent)
        packages (1)
          make (amd64) 4.3-4.1 → 4.3-4.2
        settings (2)
          env_id: blake3:5a8eac2f… → blake3:cf927e25…
          command: ["make", "all"] → ["make", "all", "V=1"]
        sources (1)
          source_digest: blake3:bc9484ce… → blake3:aab4963b…
        engine (2)
          engine.kind: docker → podman
          engine.version: 20.10.24 → 4.3.1
        host (1)
          host.kernel: 6.1.0-18-amd64 → 6.6.13
        artifacts (4)
          README: mode 0644 → mode 0600
          hello: size 6, blake3 8e4c7c1b… → size 7, blake3 02b311e4…
          added hi (size 5, mode 0777, blake3 ea8f163d…, link hello)
          artifacts_digest: blake3:5443af0c… → blake3:92e92587…
        build (2)
          exit_code: 0 → 2
          log_digest: blake3:9fbf48f8… → blake3:e558e27e…
        "#);
    }

    const MANIFEST: &str = r#"
[image]
name = "debian-bookworm"

[toolchain]
packages = ["gcc-12", "make"]

[build]
command = ["make", "all"]
outputs = ["out/"]
env = { CFLAGS = "-O2" }
"#;

    fn locked(name: &str, version: &str, sha: char, size: u64) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            from: Origin::Locked,
            sha256: Some(std::iter::repeat_n(sha, 64).collect()),
            size: Some(size),
        }
    }

    fn lock_of(manifest: &str) -> Lock {
        let m = Manifest::parse(manifest).unwrap();
        let inputs = LockInputs::new(&m, &BuildPlan::new(&m, None, None, 0));
        Lock {
            base: LockedBase { name: inputs.base_name, rootfs: Digest::of_bytes(b"base") },
            toolchain: LockedToolchain {
                manager: Some(PackageManager::Apt),
                arch: Some("amd64".into()),
                profile: inputs.profile,
                requested: inputs.requested,
                rootfs: Digest::of_bytes(b"toolchain"),
                packages: vec![
                    LockedPackage { from: Origin::Base, sha256: None, size: None, ..locked("libc6", "2.36-9", 'a', 0) },
                    locked("gcc-12", "12.2.0-14", 'b', 19326868),
                    locked("make", "4.3-4.1", 'c', 396008),
                ],
            },
            build: inputs.build,
        }
    }

    #[test]
    fn the_same_lock_has_no_differences() {
        let a = lock_of(MANIFEST);
        assert_eq!(locks(&a, &a.clone()), []);
        // Also once rendered and read back.
        assert_eq!(locks(&a, &Lock::parse(&a.render()).unwrap()), []);
    }

    #[test]
    fn locks_name_each_setting_variable_and_limit() {
        let a = lock_of(MANIFEST);
        let mut b = lock_of(&MANIFEST.replace(r#"CFLAGS = "-O2""#, r#"CFLAGS = "-O3", LDFLAGS = "(absent)""#));
        b.build.limits.memory_bytes = Some(1 << 30);
        b.build.command = vec!["make".into()];
        b.toolchain.profile = Some("c".into());
        b.toolchain.requested.push("zlib1g-dev".into());
        b.toolchain.rootfs = Digest::of_bytes(b"toolchain 2");
        b.base.rootfs = Digest::of_bytes(b"base 2");
        // Same version, another file: the pins are shown.
        b.toolchain.packages[2] = locked("make", "4.3-4.1", 'd', 396008);
        // Another version: the versions alone.
        b.toolchain.packages[1] = locked("gcc-12", "12.2.0-15", 'e', 19326870);
        // Installed by the lock now, not from the base image.
        b.toolchain.packages[0] = locked("libc6", "2.36-9", 'f', 2800000);
        let found = locks(&a, &b);
        insta::assert_snapshot!(short_hex(&render_text(&found)), @r#"
        base image (1)
          base.rootfs: blake3:de8f3fcf… → blake3:4e1d56be…
        toolchain (3)
          toolchain.profile: (absent) → c
          toolchain.requested: ["gcc-12", "make"] → ["gcc-12", "make", "zlib1g-dev"]
          toolchain.rootfs: blake3:dd976572… → blake3:52580988…
        packages (3)
          gcc-12 (amd64) 12.2.0-14 → 12.2.0-15
          libc6 (amd64) 2.36-9 (from the base image) → 2.36-9 (sha256 ffffffff…, 2800000 bytes)
          make (amd64) 4.3-4.1 (sha256 cccccccc…, 396008 bytes) → 4.3-4.1 (sha256 dddddddd…, 396008 bytes)
        settings (4)
          build.command: ["make", "all"] → ["make"]
          build.env.CFLAGS: -O2 → -O3
          build.env.LDFLAGS: (absent) → (absent)
          build.limits.memory_bytes: (absent) → 1073741824
        "#);
        // A variable that holds `(absent)` is there all the same.
        let ldflags = found.iter().find(|f| f.field == "build.env.LDFLAGS").unwrap();
        assert_eq!((ldflags.a.as_deref(), ldflags.b.as_deref()), (None, Some("(absent)")));
    }

    #[test]
    fn findings_serialize_with_null_for_an_absent_side() {
        let f = Finding::new(Area::Packages, "packages.zlib1g-dev:amd64", None, Some("1:1.2.13".into()));
        insta::assert_snapshot!(serde_json::to_string(&f).unwrap(),
            @r#"{"area":"packages","field":"packages.zlib1g-dev:amd64","a":null,"b":"1:1.2.13"}"#);
        insta::assert_snapshot!(f, @"packages: added zlib1g-dev 1:1.2.13 (amd64)");
        let f = Finding::new(Area::Engine, "engine.version", Some("20.10.24".into()), Some("24.0.7".into()));
        insta::assert_snapshot!(f, @"engine.version: 20.10.24 → 24.0.7");
    }
}

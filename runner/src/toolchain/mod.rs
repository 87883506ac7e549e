//! Toolchain images: resolved once with the network, prepared from the
//! package store always without it (docs/lock.md).
//!
//! # Layout
//!
//! - [`resolve`]: a container on the base image, on the engine's bridge,
//!   lists what the base holds and what apt would install for the wanted
//!   packages (name, version, architecture, and the sha256 and size the
//!   signed Packages index gives), and downloads those `.deb`s into the
//!   [`store`], each checked against its sha256.
//! - [`fetch`]: the same for the exact versions of a lock whose files the
//!   store lacks.
//! - [`prepare`]: a container on the base image with the network off gets
//!   the locked `.deb`s uploaded, installs them with apt, removes what only
//!   says when and where that ran, and lists what is installed; that list
//!   must equal the lock's, or nothing is committed. The same lock gives
//!   the same tag, `repro-run/toolchain:<key>`, on every engine.
//!
//! Preparation right after locking takes the same path as any later one:
//! the lock's rootfs digest is the digest of an image made from the store.

pub mod store;

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use repro_run_core::digest::Digest;
use repro_run_core::hermetic;
use repro_run_core::lock::{inventory_diff, LockedPackage, Origin};
use repro_run_core::manifest::Network;
use repro_run_core::packages::{self, check_deb_name, AptProblem, PackageManager};

use crate::engine::{ContainerGuard, ContainerSpec, Engine, ExitState};
use crate::images::BaseImage;
use crate::printer::Printer;
use crate::printer::Tail;
use store::Store;

/// What a base image holds and what the wanted packages add to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The image's package manager; `None` for an image without one.
    pub manager: Option<PackageManager>,
    /// Its architecture (`dpkg --print-architecture`), where it says.
    pub arch: Option<String>,
    /// Every package of the toolchain image, sorted: the base's, and the
    /// ones apt installs (those with sha256 and size).
    pub packages: Vec<LockedPackage>,
}

/// Where the preparation container gets the `.deb`s.
const DEBS_DIR: &str = "var/cache/repro-run/debs";
/// Exit code of a script when the image has no package manager it can use
/// (not 100: apt-get exits with that on any error).
const NO_APT: i64 = 97;
/// Prefix of the lines that start each section of a script's report.
const SECTION: &str = "@@repro-run:";

/// Finds out what the base holds and, with the network, what apt would
/// install for `requested`; the `.deb`s go into the store.
pub async fn resolve(
    engine: &Engine,
    base: &BaseImage,
    requested: &[String],
    store: &Store,
    printer: &Printer,
) -> Result<Resolved> {
    for name in requested {
        check_deb_name(name)
            .map_err(|e| anyhow::anyhow!("the toolchain package `{name}` is not a package name: {e}"))?;
    }
    if requested.is_empty() {
        return inventory_only(engine, base).await;
    }
    printer.status(format!("resolving the toolchain on {}: {} (network on)", base.reference, requested.join(" ")));
    let wanted = requested.join(" ");
    let report = report();
    let script = format!(
        "{DETECT}[ \"$M\" = apt ] || exit {NO_APT}\nset -e\nexport LC_ALL=C DEBIAN_FRONTEND=noninteractive\n\
         mkdir -p /{DEBS_DIR}/partial\n\
         apt-get update -q >&2\n\
         {} {wanted} >/var/cache/repro-run/uris\n\
         apt-get install --download-only -y -q --no-install-recommends -o Dir::Cache::archives=/{DEBS_DIR} {wanted} >&2\n\
         {report}echo '{SECTION}uris@@'; cat /var/cache/repro-run/uris\n",
        packages::APT_PRINT_URIS_ARGV.join(" ")
    );
    let run = Scripted::run(engine, &base.id, script, Network::Bridge, None, printer).await?;
    let result = async {
        let sections = run.checked("resolving the toolchain packages", base, requested)?;
        let downloads = packages::parse_print_uris(section(&sections, "uris")?)?;
        let manager = Some(PackageManager::Apt);
        let inherited = manager_inventory(&sections, manager)?;
        for d in &downloads {
            insert_download(engine, run.guard.id(), store, &d.file_name, &d.sha256, d.size).await?;
        }
        let mut by_key: BTreeMap<(String, String), LockedPackage> =
            inherited.into_iter().map(|p| ((p.name.clone(), p.arch.clone()), p)).collect();
        for d in downloads {
            let p = d.package;
            let locked = LockedPackage {
                name: p.name.clone(),
                version: p.version,
                arch: p.arch.clone(),
                from: Origin::Locked,
                sha256: Some(d.sha256),
                size: Some(d.size),
            };
            by_key.insert((p.name, p.arch), locked);
        }
        Ok(Resolved { manager, arch: arch_of(&sections), packages: by_key.into_values().collect() })
    }
    .await;
    run.guard.remove().await;
    result
}

/// Fetches the files of `missing` (locked packages) into the store: apt
/// is asked for exactly the locked versions of every locked package.
pub async fn fetch(
    engine: &Engine,
    base: &BaseImage,
    locked: &[LockedPackage],
    missing: &[store::Missing],
    store: &Store,
    printer: &Printer,
) -> Result<()> {
    let names: Vec<String> = missing.iter().map(|m| format!("{} {}", m.0.name, m.0.version)).collect();
    printer.status(format!(
        "fetching {} locked package(s) the store lacks (network on): {}",
        names.len(),
        names.join(", ")
    ));
    let mut pins = Vec::new();
    for p in locked.iter().filter(|p| p.from == Origin::Locked) {
        check_deb_name(&p.name).map_err(|e| anyhow::anyhow!("repro.lock names `{}`: {e}", p.name))?;
        packages::check_deb_version(&p.version)
            .map_err(|e| anyhow::anyhow!("repro.lock gives {} the version `{}`: {e}", p.name, p.version))?;
        pins.push(format!("{}:{}={}", p.name, p.arch, p.version));
    }
    let report = report();
    let script = format!(
        "{DETECT}[ \"$M\" = apt ] || exit {NO_APT}\nset -e\nexport LC_ALL=C DEBIAN_FRONTEND=noninteractive\n\
         mkdir -p /{DEBS_DIR}/partial\n\
         apt-get update -q >&2\n\
         apt-get install --download-only -y -q --no-install-recommends -o Dir::Cache::archives=/{DEBS_DIR} {} >&2\n\
         {report}",
        pins.join(" ")
    );
    let run = Scripted::run(engine, &base.id, script, Network::Bridge, None, printer).await?;
    let result = async {
        run.checked("fetching the locked packages", base, &[])?;
        for m in missing {
            let p = &m.0;
            let (Some(sha), Some(size)) = (p.sha256.as_deref(), p.size) else { continue };
            insert_download(engine, run.guard.id(), store, &packages::deb_file_name(&p.installed()), sha, size).await?;
        }
        Ok(())
    }
    .await;
    run.guard.remove().await;
    result
}

/// The image repro.lock's packages make on `base` (its reference and id):
/// found by its tag, or prepared from the store with the network off. With
/// no package to install, the base image itself.
pub async fn prepare(
    engine: &Engine,
    base: &BaseImage,
    base_rootfs: &Digest,
    locked: &[LockedPackage],
    store: &Store,
    printer: &Printer,
) -> Result<(String, String)> {
    let installs: Vec<LockedPackage> = locked.iter().filter(|p| p.from == Origin::Locked).cloned().collect();
    if installs.is_empty() {
        return Ok((base.reference.clone(), base.id.clone()));
    }
    let tag = tag_of(base_rootfs, &installs);
    if let Some(id) = engine.image_id(&tag).await? {
        return Ok((tag, id));
    }
    printer.status(format!(
        "preparing toolchain {tag} from the package store: {} package(s), network off",
        installs.len()
    ));
    let debs = store.debs_tar(&installs, DEBS_DIR)?;
    let run = Scripted::run(engine, &base.id, prepare_script(), Network::None, Some(debs), printer).await?;
    let result = async {
        let sections = run.checked("installing the toolchain packages from the store", base, &[])?;
        let installed = PackageManager::Apt.parse_installed(section(&sections, "installed")?)?;
        let differs = inventory_diff(locked, &installed);
        if !differs.is_empty() {
            bail!(
                "the prepared toolchain does not hold what repro.lock lists:\n{}\n  hint: the base image may have \
                 changed since the lock was written; relock with `repro-run lock`",
                differs.iter().map(|d| format!("    {d}")).collect::<Vec<_>>().join("\n")
            );
        }
        // The image carries no variable but PATH: a build sets its own.
        // The container's files are the image's, so they are digested while
        // the engine commits them: the lock needs the digest next, and on
        // Docker the export takes as long as the commit.
        let commit = engine.commit(run.guard.id(), &tag, vec![format!("PATH={}", hermetic::PATH)]);
        let (digest, id) = tokio::join!(crate::images::digest_container(engine, run.guard.id(), printer), commit);
        let id = id?;
        crate::images::remember_digest(&id, digest?);
        Ok(id)
    }
    .await;
    run.guard.remove().await;
    let id = result.context("cannot prepare the toolchain image")?;
    printer.status(format!("toolchain {tag} ready"));
    Ok((tag, id))
}

/// The tag of the toolchain image of these locked packages on this base:
/// the same inputs (and the same preparation script) find the same image
/// on any engine.
pub fn tag_of(base_rootfs: &Digest, installs: &[LockedPackage]) -> String {
    let mut key = format!("repro-run-toolchain-v1\n{base_rootfs}\n{}\n", prepare_script());
    for p in installs {
        key.push_str(&format!("{} {} {} {}\n", p.name, p.arch, p.version, p.sha256.as_deref().unwrap_or("")));
    }
    format!("repro-run/toolchain:{}", &Digest::of_bytes(key.as_bytes()).to_hex()[..16])
}

/// Sets `M` to the image's package manager: the one whose database the
/// image holds (busybox has `rpm` and `dpkg` applets, and no database).
const DETECT: &str = "if [ -f /var/lib/dpkg/status ] && command -v dpkg-query >/dev/null 2>&1; then M=apt\n\
    elif [ -f /lib/apk/db/installed ]; then M=apk\n\
    elif { [ -d /var/lib/rpm ] || [ -d /usr/lib/sysimage/rpm ]; } && command -v rpm >/dev/null 2>&1; then M=rpm\n\
    else M=none; fi\n";

/// Prints the sections every script ends with: the manager, the
/// architecture and the installed set.
fn report() -> String {
    let query = |m: PackageManager| format!("    {m}) {} ;;\n", m.query_command());
    format!(
        "echo '{SECTION}manager@@'; echo \"$M\"\n\
         echo '{SECTION}arch@@'; if [ \"$M\" = apt ]; then dpkg --print-architecture; fi\n\
         echo '{SECTION}installed@@'\n\
         case \"$M\" in\n{}{}{}esac\n",
        query(PackageManager::Apt),
        query(PackageManager::Apk),
        query(PackageManager::Rpm)
    )
}

/// Installs the uploaded `.deb`s offline, in one order (apt's, from their
/// dependencies, over the files named in sorted order), and removes what
/// only records when and where that ran (docs/lock.md, "Reproducible
/// toolchain images"; mmdebstrap's `cleanup/reproducible` lists the same).
fn prepare_script() -> String {
    format!(
        "set -e\n\
         export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive SOURCE_DATE_EPOCH=0\n\
         cd /{DEBS_DIR}\n\
         apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 \\\n  -o Dpkg::Options::=--force-unsafe-io ./*.deb >&2\n\
         cd /\n\
         rm -rf /var/cache/repro-run\n\
         rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \\\n  \
         /var/cache/apt/archives/partial/* /var/cache/apt/archives/lock\n\
         rm -f /var/log/dpkg.log /var/log/alternatives.log /var/cache/ldconfig/aux-cache /var/lib/dbus/machine-id\n\
         rm -rf /var/log/apt/* /var/cache/man/* /run/* /tmp/*\n\
         find /var/lib/dpkg /var/cache/debconf -name '*-old' -delete\n\
         if [ -e /etc/machine-id ]; then : > /etc/machine-id; fi\n\
         echo '{SECTION}installed@@'\n\
         {}\n",
        PackageManager::Apt.query_command()
    )
}

/// The base image's packages, with no network and nothing installed.
async fn inventory_only(engine: &Engine, base: &BaseImage) -> Result<Resolved> {
    let probe = engine.create(&shell_spec(&base.id, "true".into(), Network::None)).await?;
    let has_shell = engine.path_exists(probe.id(), "/bin/sh").await;
    probe.remove().await;
    if !has_shell? {
        // An image of one static binary, say: nothing to list.
        return Ok(Resolved { manager: None, arch: None, packages: Vec::new() });
    }
    let printer = Printer::new(true);
    let run = Scripted::run(engine, &base.id, format!("{DETECT}{}", report()), Network::None, None, &printer).await?;
    let result = async {
        let sections = run.checked("listing the base image's packages", base, &[])?;
        let manager = match section(&sections, "manager")?.trim() {
            "none" => None,
            m => Some(m.parse::<PackageManager>().map_err(|e| anyhow::anyhow!("{e}"))?),
        };
        let packages = manager_inventory(&sections, manager)?;
        Ok(Resolved { manager, arch: arch_of(&sections), packages })
    }
    .await;
    run.guard.remove().await;
    result
}

/// The base's installed set from a script's report, each `from = "base"`.
fn manager_inventory(
    sections: &BTreeMap<String, String>,
    manager: Option<PackageManager>,
) -> Result<Vec<LockedPackage>> {
    let Some(manager) = manager else { return Ok(Vec::new()) };
    let installed = manager
        .parse_installed(section(sections, "installed")?)
        .context("cannot read the image's list of installed packages")?;
    Ok(installed
        .into_iter()
        .map(|p| LockedPackage {
            name: p.name,
            version: p.version,
            arch: p.arch,
            from: Origin::Base,
            sha256: None,
            size: None,
        })
        .collect())
}

fn arch_of(sections: &BTreeMap<String, String>) -> Option<String> {
    sections.get("arch").map(|a| a.trim().to_owned()).filter(|a| !a.is_empty())
}

fn section<'a>(sections: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str> {
    sections.get(name).map(String::as_str).with_context(|| format!("the container's report has no `{name}` section"))
}

/// Reads one downloaded `.deb` out of the stopped container into the
/// store, checked against its sha256 and size.
async fn insert_download(
    engine: &Engine,
    container: &str,
    store: &Store,
    file_name: &str,
    sha256: &str,
    size: u64,
) -> Result<()> {
    if fs_err::metadata(store.path(sha256)).map(|m| m.len() == size).unwrap_or(false) {
        return Ok(());
    }
    let stream = engine.download(container, &format!("/{DEBS_DIR}/{file_name}"));
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(stream)));
    let (store, file_name, sha256) = (store.clone(), file_name.to_owned(), sha256.to_owned());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        let mut entries = archive.entries()?;
        let mut entry = entries
            .next()
            .with_context(|| format!("the engine sent no {file_name}"))?
            .with_context(|| format!("cannot read {file_name} from the container"))?;
        store.insert(&mut entry, &sha256, size, &file_name)?;
        Ok(())
    })
    .await
    .context("the store task panicked")?
}

/// A script run in a container on the base image, its output kept.
struct Scripted {
    guard: ContainerGuard,
    code: i64,
    output: String,
    tail: Tail,
}

impl Scripted {
    /// Runs `script` under `/bin/sh`, after extracting `upload` (a tar) at
    /// `/`; the build log shows what it prints before its report.
    async fn run(
        engine: &Engine,
        image: &str,
        script: String,
        network: Network,
        upload: Option<Vec<u8>>,
        printer: &Printer,
    ) -> Result<Scripted> {
        let guard = engine.create(&shell_spec(image, script, network)).await?;
        let ran = async {
            if let Some(tar) = upload {
                let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) });
                engine.upload(guard.id(), "/", body).await?;
            }
            let (mut output, mut tail, mut reporting) = (Vec::new(), Tail::default(), false);
            let state = engine
                .run(guard.id(), None, |chunk| {
                    output.extend_from_slice(chunk);
                    reporting = reporting || output.windows(SECTION.len()).any(|w| w == SECTION.as_bytes());
                    if !reporting {
                        printer.log(chunk);
                    }
                    tail.push(chunk);
                    Ok(())
                })
                .await?;
            let code = match state {
                ExitState::Exited(code) | ExitState::OutOfMemory(code) => code,
                ExitState::Interrupted => return Err(crate::exit::Interrupted.into()),
                ExitState::TimedOut => bail!("the toolchain container was stopped at a time limit"),
            };
            anyhow::Ok((code, String::from_utf8_lossy(&output).into_owned(), tail))
        }
        .await;
        match ran {
            Ok((code, output, tail)) => Ok(Scripted { guard, code, output, tail }),
            Err(e) => {
                guard.remove().await;
                Err(e)
            }
        }
    }

    /// The report's sections when the script succeeded; otherwise an
    /// error that says what apt said, in the user's terms.
    fn checked(&self, what: &str, base: &BaseImage, requested: &[String]) -> Result<BTreeMap<String, String>> {
        if self.code == NO_APT {
            bail!(
                "image `{}` has no apt-get, so toolchain packages ({}) cannot be installed\n  hint: use a \
                 Debian-based image such as `debian-bookworm`, or drop [toolchain] packages",
                base.reference,
                requested.join(" ")
            );
        }
        if self.code != 0 {
            let problems = packages::apt_problems(&self.output);
            if !problems.is_empty() {
                bail!(apt_message(&problems));
            }
            bail!("{what} failed (exit {}); the last lines of its output:\n{}", self.code, self.tail.text());
        }
        Ok(sections_of(&self.output))
    }
}

/// What apt's errors mean for the user, and what to do.
fn apt_message(problems: &[AptProblem]) -> String {
    let mut unknown = Vec::new();
    let mut gone = Vec::new();
    for p in problems {
        match p {
            AptProblem::UnknownPackage(name) => unknown.push(name.clone()),
            AptProblem::VersionNotFound { name, version } => gone.push(format!("{name} {version}")),
        }
    }
    let mut lines = Vec::new();
    if !unknown.is_empty() {
        lines.push(format!(
            "the mirror has no package named {}\n  hint: check the names under [toolchain] packages in repro.toml \
             (and the profile's); `apt-cache search` in the base image finds the right one",
            unknown.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if !gone.is_empty() {
        lines.push(format!(
            "the mirror no longer has these locked versions: {}\n  hint: import a package store that holds them \
             (`repro-run lock --import-store FILE`, made by `repro-run lock --export-store FILE` where they were \
             locked), or take the mirror's versions with `repro-run lock --update`",
            gone.join(", ")
        ));
    }
    lines.join("\n")
}

/// The sections of a report: the lines after each `@@repro-run:NAME@@`.
fn sections_of(output: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in output.split_inclusive('\n') {
        let name = line.trim_end().strip_prefix(SECTION).and_then(|l| l.strip_suffix("@@"));
        if let Some(name) = name {
            if let Some((n, text)) = current.take() {
                sections.insert(n, text);
            }
            current = Some((name.to_owned(), String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
        }
    }
    if let Some((n, text)) = current {
        sections.insert(n, text);
    }
    sections
}

/// A toolchain container: root, the engine's default capabilities (apt
/// drops to `_apt` with setuid/setgid), a writable root filesystem.
fn shell_spec(image: &str, script: String, network: Network) -> ContainerSpec {
    ContainerSpec {
        image: image.to_owned(),
        argv: vec!["/bin/sh".into(), "-c".into(), script],
        env: vec![format!("PATH={}", hermetic::PATH)],
        network,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_report_splits_into_its_sections() {
        let out = "Reading package lists...\n@@repro-run:manager@@\napt\n@@repro-run:arch@@\namd64\n\
                   @@repro-run:installed@@\nii \tbash\t5.2.15-2+b2\tamd64\n";
        let s = sections_of(out);
        assert_eq!(s["manager"], "apt\n");
        assert_eq!(s["arch"], "amd64\n");
        assert_eq!(s["installed"], "ii \tbash\t5.2.15-2+b2\tamd64\n");
    }

    #[test]
    fn apt_errors_say_what_to_do() {
        let msg = apt_message(&[
            AptProblem::UnknownPackage("gcc-13".into()),
            AptProblem::VersionNotFound { name: "make".into(), version: "4.3-4.1".into() },
        ]);
        insta::assert_snapshot!(msg);
    }

    #[test]
    fn the_tag_follows_the_packages_and_the_base() {
        let p = |v: &str| LockedPackage {
            name: "make".into(),
            version: v.into(),
            arch: "amd64".into(),
            from: Origin::Locked,
            sha256: Some("0".repeat(64)),
            size: Some(1),
        };
        let base = Digest::of_bytes(b"base");
        assert_eq!(tag_of(&base, &[p("1")]), tag_of(&base, &[p("1")]));
        assert_ne!(tag_of(&base, &[p("1")]), tag_of(&base, &[p("2")]));
        assert_ne!(tag_of(&base, &[p("1")]), tag_of(&Digest::of_bytes(b"other"), &[p("1")]));
    }
}

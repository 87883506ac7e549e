//! What an image has installed, as its package manager lists it, and what
//! apt would download: parsers for the output of `dpkg-query`, apk's
//! database, `rpm -qa`, `apt-get --print-uris`, and apt's error messages.
//!
//! The runner runs the tools in the container; everything here reads their
//! output as text. The parsers are strict: a line they cannot read is an
//! error that names the line, because a listing read wrong would record a
//! wrong toolchain without anyone noticing. Lines that are well formed but
//! name no installed software (dpkg's removed packages, rpm's keys) are left
//! out on purpose, as each parser says.
//!
//! Listings come back sorted by (name, architecture, version), so that the
//! same image always gives the same list whatever order the database keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Package managers whose installed sets repro-run can list. Closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// Debian and derivatives: dpkg's database, packages fetched by apt.
    Apt,
    /// Alpine's apk.
    Apk,
    /// Fedora, RHEL and the like: the rpm database.
    Rpm,
}

impl PackageManager {
    /// Every package manager, in a fixed order.
    pub const ALL: [PackageManager; 3] = [PackageManager::Apt, PackageManager::Apk, PackageManager::Rpm];

    /// The lowercase name used in manifests and records.
    pub fn as_str(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt",
            PackageManager::Apk => "apk",
            PackageManager::Rpm => "rpm",
        }
    }

    /// The shell command that prints the installed set in the format
    /// [`parse_installed`](Self::parse_installed) reads.
    ///
    /// The formats are written with `\t` and `\n` escapes, which dpkg-query
    /// and rpm expand themselves, so that the command stays on one line.
    pub fn query_command(self) -> &'static str {
        match self {
            PackageManager::Apt => DPKG_QUERY_COMMAND,
            PackageManager::Apk => APK_QUERY_COMMAND,
            PackageManager::Rpm => RPM_QUERY_COMMAND,
        }
    }

    /// Parses the output of [`query_command`](Self::query_command).
    pub fn parse_installed(self, text: &str) -> Result<Vec<InstalledPackage>, PackagesError> {
        match self {
            PackageManager::Apt => parse_dpkg_query(text),
            PackageManager::Apk => parse_apk_installed(text),
            PackageManager::Rpm => parse_rpm_qa(text),
        }
    }
}

impl fmt::Display for PackageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string names no package manager.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown package manager `{0}`: expected `apt`, `apk` or `rpm`")]
pub struct UnknownPackageManager(pub String);

impl FromStr for PackageManager {
    type Err = UnknownPackageManager;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PackageManager::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownPackageManager(s.to_owned()))
    }
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct InstalledPackage {
    /// The package name (`libc6`, `musl`, `openssl-libs`).
    pub name: String,
    /// The full version as the package manager writes it, epoch included
    /// (`1:2.38.1-5+deb12u3`, `1.2.4-r2`, `1:3.1.4-3.fc39`).
    pub version: String,
    /// The architecture (`amd64`, `all`, `x86_64`, `noarch`).
    pub arch: String,
}

/// A malformed listing: the 1-based line number and the line itself
/// (trimmed to 120 characters), and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}: `{text}`")]
pub struct PackagesError {
    /// 1-based line number in the tool's output.
    pub line: usize,
    /// The line, cut to 120 characters.
    pub text: String,
    /// What is wrong.
    pub message: String,
}

impl PackagesError {
    fn new(line: usize, text: &str, message: impl Into<String>) -> Self {
        PackagesError { line, text: shorten(text), message: message.into() }
    }
}

/// The longest line an error quotes: listings have lines of kilobytes
/// (apk's dependency lists), and the line number finds the rest.
const QUOTED_CHARS: usize = 120;

fn shorten(line: &str) -> String {
    if line.chars().count() <= QUOTED_CHARS {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(QUOTED_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Lines with their 1-based numbers.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| (i + 1, line))
}

fn sort_listing(packages: &mut [InstalledPackage]) {
    packages.sort_by(|a, b| (&a.name, &a.arch, &a.version).cmp(&(&b.name, &b.arch, &b.version)));
}

/// A value from a listing that holds no spaces and is not empty: names,
/// versions and architectures of apk and rpm, which have no grammar here.
fn check_word(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("the {what} `{value}` holds a space"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// dpkg

/// The `dpkg-query -f` format that [`parse_dpkg_query`] reads: status
/// abbreviation, package, version and architecture, tab-separated.
pub const DPKG_QUERY_FORMAT: &str = "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n";

const DPKG_QUERY_COMMAND: &str = r"dpkg-query -W -f '${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n'";

/// Parses `dpkg-query -W -f '<DPKG_QUERY_FORMAT>'`.
///
/// `${db:Status-Abbrev}` prints three characters: the wanted state
/// (`u i h r p`), the current state (`n c H U F W t i`) and an error flag
/// (space or `R`). A package is kept when its current state is `i`
/// (installed), whatever is wanted of it: `ii` and also `hi` (held), since a
/// held package is as installed as any other. Removed packages whose
/// configuration files are left (`rc`), half-installed or unpacked ones
/// (`iH`, `iU`, `iF`…) and packages dpkg only knows of (`un`, with an empty
/// version) are left out: their files are not, or not all, there.
///
/// Kept lines must carry a valid Debian name ([`check_deb_name`]) and
/// version ([`check_deb_version`]). A package may be installed once per
/// architecture (`libc6` for `amd64` and `i386`), so the same name and
/// architecture twice is an error.
pub fn parse_dpkg_query(text: &str) -> Result<Vec<InstalledPackage>, PackagesError> {
    let mut first_seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut packages = Vec::new();
    for (line, raw) in numbered_lines(text) {
        if raw.is_empty() {
            continue;
        }
        let Some(package) = dpkg_line(raw).map_err(|m| PackagesError::new(line, raw, m))? else {
            continue;
        };
        let key = (package.name.clone(), package.arch.clone());
        if let Some(first) = first_seen.insert(key, line) {
            let message =
                format!("package `{}` ({}) is listed twice, first on line {first}", package.name, package.arch);
            return Err(PackagesError::new(line, raw, message));
        }
        packages.push(package);
    }
    sort_listing(&mut packages);
    Ok(packages)
}

/// One line of the listing: `None` for a package that is not installed.
fn dpkg_line(raw: &str) -> Result<Option<InstalledPackage>, String> {
    let fields: Vec<&str> = raw.split('\t').collect();
    let [status, name, version, arch] = fields[..] else {
        return Err(format!(
            "expected 4 tab-separated fields (status, package, version, architecture), found {}",
            fields.len()
        ));
    };
    if !dpkg_installed(status)? {
        return Ok(None);
    }
    check_deb_name(name)?;
    check_deb_version(version)?;
    check_deb_arch(arch)?;
    Ok(Some(InstalledPackage { name: name.to_owned(), version: version.to_owned(), arch: arch.to_owned() }))
}

/// Whether a `${db:Status-Abbrev}` says "installed" (see
/// [`parse_dpkg_query`]); an error if it is no status abbreviation at all.
fn dpkg_installed(status: &str) -> Result<bool, String> {
    match status.as_bytes() {
        [want, current, flag] if b"uirph".contains(want) && b"ncHUFWti".contains(current) && b" R".contains(flag) => {
            Ok(*current == b'i')
        }
        _ => Err(format!("`{status}` is not a dpkg status abbreviation, such as `ii ` or `rc `")),
    }
}

/// A Debian architecture name (`amd64`, `all`, `musl-linux-arm64`).
fn check_deb_arch(arch: &str) -> Result<(), String> {
    if arch.is_empty() || !arch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("`{arch}` is not a Debian architecture, such as `amd64` or `all`"));
    }
    Ok(())
}

/// Checks a Debian version string against Debian Policy 5.6.12:
/// `[epoch:]upstream_version[-debian_revision]`.
///
/// The epoch is everything before the first `:` and must be a number (dpkg
/// refuses one above 2³¹−1); the revision is everything after the last `-`
/// and holds only letters, digits and `+ . ~`. The upstream version, in
/// between, starts with a digit and holds letters, digits and `. + ~ - :`,
/// where a `:` can only appear when there is an epoch and a `-` only when
/// there is a revision (both follow from where the string is cut). No part
/// that is present may be empty. The error says which rule is broken.
pub fn check_deb_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("a Debian version cannot be empty".to_owned());
    }
    let bad = |why: String| Err(format!("`{version}` is not a Debian version: {why}"));
    let rest = match version.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() {
                return bad("the epoch before `:` is empty".to_owned());
            }
            if !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!("the epoch `{epoch}` is not a number"));
            }
            if epoch.parse::<i32>().is_err() {
                return bad(format!("the epoch `{epoch}` is too large"));
            }
            rest
        }
        None => version,
    };
    let upstream = match rest.rsplit_once('-') {
        Some((upstream, revision)) => {
            if revision.is_empty() {
                return bad("the Debian revision after the last `-` is empty".to_owned());
            }
            if let Some(c) = revision.chars().find(|&c| !(c.is_ascii_alphanumeric() || "+.~".contains(c))) {
                return bad(format!(
                    "the Debian revision `{revision}` holds `{c}`: only letters, digits and `+ . ~` are allowed"
                ));
            }
            upstream
        }
        None => rest,
    };
    if upstream.is_empty() {
        return bad("the upstream version is empty".to_owned());
    }
    if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return bad(format!("the upstream version `{upstream}` does not start with a digit"));
    }
    if let Some(c) = upstream.chars().find(|&c| !(c.is_ascii_alphanumeric() || ".+~-:".contains(c))) {
        return bad(format!(
            "the upstream version `{upstream}` holds `{c}`: only letters, digits and `. + ~ - :` are allowed"
        ));
    }
    Ok(())
}

/// Checks a Debian package name (Debian Policy 5.6.7): lowercase letters,
/// digits and `+ - .`, at least two characters, starting with a letter or a
/// digit.
pub fn check_deb_name(name: &str) -> Result<(), String> {
    let bad = |why: String| Err(format!("`{name}` is not a Debian package name: {why}"));
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))) {
        return bad(format!("it holds `{c}`: only lowercase letters, digits and `+ - .` are allowed"));
    }
    if name.len() < 2 {
        return bad("it needs at least two characters".to_owned());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("it must start with a letter or a digit".to_owned());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// apk

const APK_QUERY_COMMAND: &str = "cat /lib/apk/db/installed";

/// Parses apk's database, `/lib/apk/db/installed`, read with
/// `cat /lib/apk/db/installed` rather than `apk list --installed`, whose
/// `name-version` joins two fields with a `-` that both may hold.
///
/// The file is a list of records separated by blank lines; every line is a
/// one-letter key, a colon and a value. `P:` is the name, `V:` the version,
/// `A:` the architecture; the many other keys (`C:` checksum, `D:`
/// dependencies, `F:`/`R:` directories and files, `a:`/`M:`/`Z:` their
/// owners and checksums…) are not needed here and are skipped. Keys are
/// case-sensitive: `a:` is a file's owner, not the architecture. Each record
/// needs exactly one `P:`, `V:` and `A:`, and apk installs one version of a
/// name, so a name listed twice is an error.
pub fn parse_apk_installed(text: &str) -> Result<Vec<InstalledPackage>, PackagesError> {
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut packages = Vec::new();
    let mut record = ApkRecord::default();
    // A blank line added after the end closes the last record.
    for (line, raw) in numbered_lines(text).chain(std::iter::once((0, ""))) {
        if !raw.is_empty() {
            record.add(line, raw)?;
            continue;
        }
        if let Some((name_line, package)) = std::mem::take(&mut record).finish()? {
            if let Some(first) = first_seen.insert(package.name.clone(), name_line.0) {
                let message = format!("package `{}` is listed twice, first on line {first}", package.name);
                return Err(PackagesError::new(name_line.0, name_line.1, message));
            }
            packages.push(package);
        }
    }
    sort_listing(&mut packages);
    Ok(packages)
}

/// A line number and the line.
type Located<'a> = (usize, &'a str);

/// The lines of one apk record that matter, with where they were.
#[derive(Default)]
struct ApkRecord<'a> {
    first: Option<Located<'a>>,
    name: Option<(Located<'a>, &'a str)>,
    version: Option<(Located<'a>, &'a str)>,
    arch: Option<(Located<'a>, &'a str)>,
}

impl<'a> ApkRecord<'a> {
    fn add(&mut self, line: usize, raw: &'a str) -> Result<(), PackagesError> {
        let at = (line, raw);
        self.first.get_or_insert(at);
        let (key, value) = match raw.as_bytes() {
            [key, b':', ..] if key.is_ascii_alphabetic() => (*key, &raw[2..]),
            _ => {
                return Err(PackagesError::new(line, raw, "expected a `K:value` line (one letter, a colon, the value)"))
            }
        };
        let (slot, what) = match key {
            b'P' => (&mut self.name, "package name"),
            b'V' => (&mut self.version, "version"),
            b'A' => (&mut self.arch, "architecture"),
            _ => return Ok(()),
        };
        check_word(what, value).map_err(|m| PackagesError::new(line, raw, m))?;
        if let Some(((first, _), _)) = slot.replace((at, value)) {
            let message = format!("a second {}: line in one record, the first is on line {first}", key as char);
            return Err(PackagesError::new(line, raw, message));
        }
        Ok(())
    }

    /// The package, and the line of its name; `None` for an empty record.
    fn finish(self) -> Result<Option<(Located<'a>, InstalledPackage)>, PackagesError> {
        let Some(first) = self.first else { return Ok(None) };
        let Some((name_at, name)) = self.name else {
            return Err(PackagesError::new(first.0, first.1, "this record has no P: (package name) line"));
        };
        let missing = |key: &str, what: &str| {
            PackagesError::new(name_at.0, name_at.1, format!("package `{name}` has no {key}: ({what}) line"))
        };
        let (_, version) = self.version.ok_or_else(|| missing("V", "version"))?;
        let (_, arch) = self.arch.ok_or_else(|| missing("A", "architecture"))?;
        let package = InstalledPackage { name: name.to_owned(), version: version.to_owned(), arch: arch.to_owned() };
        Ok(Some((name_at, package)))
    }
}

// ---------------------------------------------------------------------------
// rpm

/// The `rpm --qf` format that [`parse_rpm_qa`] reads: name, `[epoch:]`
/// version-release, and architecture, tab-separated. The epoch is printed
/// only when the package has one, as rpm itself writes versions.
pub const RPM_QUERY_FORMAT: &str = "%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n";

const RPM_QUERY_COMMAND: &str = r"rpm -qa --qf '%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n'";

/// Parses `rpm -qa --qf '<RPM_QUERY_FORMAT>'`.
///
/// `gpg-pubkey` lines (architecture `(none)`) are left out: they are the
/// signing keys rpm was given, stored as pseudo-packages, not software, and
/// which keys an image trusts is not part of its toolchain.
///
/// Unlike dpkg and apk, rpm installs several versions of one name and
/// architecture side by side (the kernel packages, "installonly"), so only
/// the very same name, version and architecture twice is an error.
pub fn parse_rpm_qa(text: &str) -> Result<Vec<InstalledPackage>, PackagesError> {
    let mut first_seen: BTreeMap<InstalledPackage, usize> = BTreeMap::new();
    let mut packages = Vec::new();
    for (line, raw) in numbered_lines(text) {
        if raw.is_empty() {
            continue;
        }
        let Some(package) = rpm_line(raw).map_err(|m| PackagesError::new(line, raw, m))? else {
            continue;
        };
        if let Some(first) = first_seen.insert(package.clone(), line) {
            let message = format!("package `{}` is listed twice, first on line {first}", package.name);
            return Err(PackagesError::new(line, raw, message));
        }
        packages.push(package);
    }
    sort_listing(&mut packages);
    Ok(packages)
}

/// One line of the listing: `None` for a key.
fn rpm_line(raw: &str) -> Result<Option<InstalledPackage>, String> {
    let fields: Vec<&str> = raw.split('\t').collect();
    let [name, version, arch] = fields[..] else {
        return Err(format!(
            "expected 3 tab-separated fields (name, [epoch:]version-release, architecture), found {}",
            fields.len()
        ));
    };
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    check_word("package name", name)?;
    check_rpm_version(version)?;
    check_word("architecture", arch)?;
    Ok(Some(InstalledPackage { name: name.to_owned(), version: version.to_owned(), arch: arch.to_owned() }))
}

/// `[epoch:]version-release`, as the query format prints it.
fn check_rpm_version(evr: &str) -> Result<(), String> {
    check_word("version", evr)?;
    let bad =
        || Err(format!("`{evr}` is not an rpm version: expected [epoch:]version-release, such as 1:3.1.4-3.fc39"));
    let vr = match evr.split_once(':') {
        Some((epoch, vr)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => vr,
        Some(_) => return bad(),
        None => evr,
    };
    match vr.rsplit_once('-') {
        Some((version, release)) if !version.is_empty() && !release.is_empty() => Ok(()),
        _ => bad(),
    }
}

// ---------------------------------------------------------------------------
// apt downloads

/// The start of the `apt-get` command whose output [`parse_print_uris`]
/// reads; the packages to install follow it.
///
/// `-o Acquire::ForceHash=SHA256` is needed: without it apt 2.6 (Debian 12)
/// prints `MD5Sum:` where the archive's index has an MD5 and no hash at all
/// where it has only a SHA256 (the security archive), and neither pins a
/// download.
pub const APT_PRINT_URIS_ARGV: &[&str] =
    &["apt-get", "-o", "Acquire::ForceHash=SHA256", "install", "--print-uris", "-y", "--no-install-recommends"];

/// One file that apt would download, from a line of
/// `apt-get install --print-uris` (see [`parse_print_uris`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageDownload {
    /// Where apt would fetch it, URL-quoted as apt prints it.
    pub uri: String,
    /// The name apt stores it under in its archive directory
    /// (`gcc_4%3a12.2.0-3_amd64.deb`).
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256: 64 lowercase hex characters.
    pub sha256: String,
    /// The package it holds, read from [`file_name`](Self::file_name).
    pub package: InstalledPackage,
}

/// Parses the output of `apt-get -o Acquire::ForceHash=SHA256 install
/// --print-uris -y --no-install-recommends PKGS` ([`APT_PRINT_URIS_ARGV`]),
/// in the order apt printed the files:
///
/// ```text
/// 'http://host/debian/pool/main/g/gcc-defaults/gcc_12.2.0-3_amd64.deb' gcc_4%3a12.2.0-3_amd64.deb 5216 SHA256:bb63…e630
/// ```
///
/// Lines that do not start with `'` are apt talking ("Reading package
/// lists...", the lists of new packages) and are skipped. Only SHA256 is
/// accepted: an `MD5Sum:` or a missing hash is an error that says to run apt
/// with `-o Acquire::ForceHash=SHA256`.
pub fn parse_print_uris(text: &str) -> Result<Vec<PackageDownload>, PackagesError> {
    numbered_lines(text)
        .filter(|(_, raw)| raw.starts_with('\''))
        .map(|(line, raw)| print_uris_line(raw).map_err(|m| PackagesError::new(line, raw, m)))
        .collect()
}

const FORCE_SHA256: &str = "run apt-get with `-o Acquire::ForceHash=SHA256`";

fn print_uris_line(raw: &str) -> Result<PackageDownload, String> {
    let quoted = raw.strip_prefix('\'').unwrap_or(raw);
    let (uri, rest) = quoted.split_once('\'').ok_or("the URI has no closing `'`")?;
    if uri.is_empty() {
        return Err("the URI is empty".to_owned());
    }
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (file_name, size, hash) = match fields[..] {
        [file_name, size, hash] => (file_name, size, hash),
        [_, _] => return Err(format!("apt printed no hash: {FORCE_SHA256}")),
        _ => return Err("expected `'URI' FILE SIZE SHA256:HASH`".to_owned()),
    };
    let size = size.parse().map_err(|_| format!("the size `{size}` is not a number of bytes"))?;
    let sha256 = match hash.split_once(':') {
        Some(("SHA256", hex)) if is_sha256_hex(hex) => hex.to_owned(),
        Some(("SHA256", hex)) => return Err(format!("`{hex}` is not a SHA-256: expected 64 lowercase hex characters")),
        Some((kind, _)) => return Err(format!("apt printed an {kind} hash, not SHA256: {FORCE_SHA256}")),
        None => return Err(format!("`{hash}` is not a hash: expected SHA256: and 64 hex characters")),
    };
    let package = parse_deb_file_name(file_name)
        .ok_or_else(|| format!("`{file_name}` is not the file name of a package (name_version_arch.deb)"))?;
    Ok(PackageDownload { uri: uri.to_owned(), file_name: file_name.to_owned(), size, sha256, package })
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads a `.deb` file name as apt names the files in its archive directory
/// (`/var/cache/apt/archives`, and the second field of `--print-uris`):
/// `name_version_arch.deb`, where the version's `:` is written `%3a`
/// because apt URL-quotes it (`gcc_4%3a12.2.0-3_amd64.deb` is `gcc`
/// version `4:12.2.0-3` for `amd64`).
///
/// `None` for anything else: other files of that directory (`lock`,
/// `partial`), names with a part missing or extra, or whose name or version
/// is not a valid Debian one. A name written by `dpkg-name` (no epoch) reads
/// as the version without its epoch, which is what it says.
pub fn parse_deb_file_name(file_name: &str) -> Option<InstalledPackage> {
    let stem = file_name.strip_suffix(".deb")?;
    let mut parts = stem.split('_');
    let (name, quoted_version, arch) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let version = quoted_version.replace("%3a", ":").replace("%3A", ":");
    if version.contains('%') {
        return None;
    }
    check_deb_name(name).ok()?;
    check_deb_version(&version).ok()?;
    check_deb_arch(arch).ok()?;
    Some(InstalledPackage { name: name.to_owned(), version, arch: arch.to_owned() })
}

/// The file name apt gives a package in its archive directory: the inverse
/// of [`parse_deb_file_name`], the epoch's `:` written `%3a`.
pub fn deb_file_name(p: &InstalledPackage) -> String {
    format!("{}_{}_{}.deb", p.name, p.version.replace(':', "%3a"), p.arch)
}

// ---------------------------------------------------------------------------
// apt errors

/// What apt said went wrong, recognised in its output. apt must run with
/// `LC_ALL=C`: the messages are translated otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AptProblem {
    /// `E: Unable to locate package NAME`, or
    /// `E: Package 'NAME' has no installation candidate`: no package of
    /// that name can be installed from the configured archives.
    UnknownPackage(String),
    /// `E: Version 'VERSION' for 'NAME' was not found`: the package exists,
    /// the pinned version does not.
    VersionNotFound {
        /// The package name.
        name: String,
        /// The version asked for.
        version: String,
    },
}

/// The problems apt reported in `log`, in the order it printed them, each
/// once. Other lines, including apt's explanations around them and errors
/// of other kinds, are skipped.
pub fn apt_problems(log: &str) -> Vec<AptProblem> {
    let mut problems = Vec::new();
    for problem in log.lines().filter_map(|line| apt_problem(line.trim_end())) {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    }
    problems
}

fn apt_problem(line: &str) -> Option<AptProblem> {
    if let Some(name) = line.strip_prefix("E: Unable to locate package ") {
        return Some(AptProblem::UnknownPackage(name.trim().to_owned()));
    }
    if let Some(rest) = line.strip_prefix("E: Package '") {
        let name = rest.strip_suffix("' has no installation candidate")?;
        return Some(AptProblem::UnknownPackage(name.to_owned()));
    }
    let rest = line.strip_prefix("E: Version '")?.strip_suffix("' was not found")?;
    let (version, name) = rest.split_once("' for '")?;
    Some(AptProblem::VersionNotFound { name: name.to_owned(), version: version.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DPKG_BOOKWORM: &str = include_str!("../tests/fixtures/packages/dpkg-query-bookworm.txt");
    const APK_316: &str = include_str!("../tests/fixtures/packages/apk-installed-alpine-3.16.txt");
    const APK_319: &str = include_str!("../tests/fixtures/packages/apk-installed-alpine-3.19.txt");
    const RPM_FEDORA: &str = include_str!("../tests/fixtures/packages/rpm-qa-fedora39.txt");
    const RPM_MARINER: &str = include_str!("../tests/fixtures/packages/rpm-qa-cbl-mariner-2.0.txt");
    const PRINT_URIS: &str = include_str!("../tests/fixtures/packages/apt-print-uris-gcc-make.txt");
    const PRINT_URIS_DEFAULT_HASH: &str = include_str!("../tests/fixtures/packages/apt-print-uris-default-hash.txt");
    const APT_UNKNOWN: &str = include_str!("../tests/fixtures/packages/apt-unknown-packages-and-versions.txt");
    const APT_NO_CANDIDATE: &str = include_str!("../tests/fixtures/packages/apt-no-installation-candidate.txt");

    fn pkg(name: &str, version: &str, arch: &str) -> InstalledPackage {
        InstalledPackage { name: name.into(), version: version.into(), arch: arch.into() }
    }

    fn find<'a>(packages: &'a [InstalledPackage], name: &str) -> Vec<&'a InstalledPackage> {
        packages.iter().filter(|p| p.name == name).collect()
    }

    fn is_sorted(packages: &[InstalledPackage]) -> bool {
        packages.windows(2).all(|w| (&w[0].name, &w[0].arch, &w[0].version) < (&w[1].name, &w[1].arch, &w[1].version))
    }

    #[test]
    fn package_managers_round_trip_through_their_names() {
        for manager in PackageManager::ALL {
            assert_eq!(manager.to_string().parse::<PackageManager>(), Ok(manager));
            assert_eq!(serde_json::to_string(&manager).unwrap(), format!("\"{manager}\""));
            assert_eq!(serde_json::from_str::<PackageManager>(&format!("\"{manager}\"")).unwrap(), manager);
        }
        insta::assert_snapshot!("dnf".parse::<PackageManager>().unwrap_err(),
            @"unknown package manager `dnf`: expected `apt`, `apk` or `rpm`");
    }

    #[test]
    fn query_commands_print_the_formats_the_parsers_read() {
        let escaped = |format: &str| format.replace('\t', r"\t").replace('\n', r"\n");
        assert_eq!(PackageManager::Apt.query_command(), format!("dpkg-query -W -f '{}'", escaped(DPKG_QUERY_FORMAT)));
        assert_eq!(PackageManager::Rpm.query_command(), format!("rpm -qa --qf '{}'", escaped(RPM_QUERY_FORMAT)));
        assert_eq!(PackageManager::Apk.query_command(), "cat /lib/apk/db/installed");
        assert_eq!(PackageManager::Apt.parse_installed(DPKG_BOOKWORM), parse_dpkg_query(DPKG_BOOKWORM));
        assert_eq!(PackageManager::Apk.parse_installed(APK_316), parse_apk_installed(APK_316));
        assert_eq!(PackageManager::Rpm.parse_installed(RPM_FEDORA), parse_rpm_qa(RPM_FEDORA));
    }

    #[test]
    fn dpkg_listing_keeps_installed_packages_only() {
        let packages = parse_dpkg_query(DPKG_BOOKWORM).unwrap();
        // 72 lines: `iU`, `rc` and `un` are left out, `hi` (held) is kept.
        assert_eq!(packages.len(), 69);
        assert!(is_sorted(&packages));
        for left_out in ["libgdbm-compat4", "libssl1.1", "nano"] {
            assert!(find(&packages, left_out).is_empty(), "{left_out}");
        }
        assert_eq!(find(&packages, "linux-libc-dev"), [&pkg("linux-libc-dev", "6.1.192-3", "amd64")]);
        // Epochs, `+debNuM`, `+bN` binNMUs, `~` and `all`, as dpkg prints them.
        for expected in [
            pkg("bsdutils", "1:2.38.1-5+deb12u3", "amd64"),
            pkg("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64"),
            pkg("dmsetup", "2:1.02.185-2", "amd64"),
            pkg("bash", "5.2.15-2+b8", "amd64"),
            pkg("dbus", "1.14.10-1~deb12u1", "amd64"),
            pkg("libjs-jquery", "3.6.1+dfsg+~3.5.14-1", "all"),
            pkg("libjsr305-java", "0.1~+svn49-11", "all"),
            pkg("qemu-utils", "1:10.0.2+ds-2+deb13u1~bpo12+1", "amd64"),
            pkg("adduser", "3.134", "all"),
        ] {
            assert_eq!(find(&packages, &expected.name), [&expected]);
        }
    }

    #[test]
    fn every_version_dpkg_printed_is_a_valid_debian_version() {
        let mut checked = 0;
        for line in DPKG_BOOKWORM.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            check_deb_name(fields[1]).unwrap();
            if !fields[2].is_empty() {
                check_deb_version(fields[2]).unwrap();
                checked += 1;
            }
        }
        assert_eq!(checked, 71);
    }

    #[test]
    fn dpkg_errors_name_the_line() {
        let error_of = |text: &str| parse_dpkg_query(text).unwrap_err().to_string();
        insta::assert_snapshot!(error_of("ii \tbash\t5.2.15-2+b8\tamd64\nii \tbash 5.2.15-2+b8 amd64\n"),
            @"line 2: expected 4 tab-separated fields (status, package, version, architecture), found 2: `ii \tbash 5.2.15-2+b8 amd64`");
        insta::assert_snapshot!(error_of("ii \tbash\tb5.2\tamd64\n"),
            @"line 1: `b5.2` is not a Debian version: the upstream version `b5.2` does not start with a digit: `ii \tbash\tb5.2\tamd64`");
        insta::assert_snapshot!(error_of("ii \tBash\t5.2\tamd64\n"),
            @"line 1: `Bash` is not a Debian package name: it holds `B`: only lowercase letters, digits and `+ - .` are allowed: `ii \tBash\t5.2\tamd64`");
        insta::assert_snapshot!(error_of("install ok installed\tbash\t5.2\tamd64\n"),
            @"line 1: `install ok installed` is not a dpkg status abbreviation, such as `ii ` or `rc `: `install ok installed\tbash\t5.2\tamd64`");
        insta::assert_snapshot!(error_of("ii \tbash\t5.2\tAMD64\n"),
            @"line 1: `AMD64` is not a Debian architecture, such as `amd64` or `all`: `ii \tbash\t5.2\tAMD64`");
        insta::assert_snapshot!(error_of("ii \tlibc6\t2.36-9\tamd64\nii \tlibc6\t2.36-9\ti386\nii \tlibc6\t2.36-8\tamd64\n"),
            @"line 3: package `libc6` (amd64) is listed twice, first on line 1: `ii \tlibc6\t2.36-8\tamd64`");
        // The same package for two architectures is Multi-Arch, not a duplicate.
        assert_eq!(parse_dpkg_query("ii \tlibc6\t2.36-9\ti386\nii \tlibc6\t2.36-9\tamd64\n").unwrap().len(), 2);
    }

    #[test]
    fn long_lines_are_cut_in_errors() {
        let long = format!("ii \tbash\t{}\tamd64", "é".repeat(200));
        let error = parse_dpkg_query(&long).unwrap_err();
        assert_eq!(error.line, 1);
        assert_eq!(error.text.chars().count(), 120);
        assert!(error.text.ends_with('…'));
    }

    #[test]
    fn debian_versions_that_policy_allows() {
        for version in
            ["0", "1.0", "1:1.0", "1.0-1", "1:2:3-1", "1.0-1-2", "1.0~rc1-1~bpo12+1", "2.0+dfsg.1-0.1", "10a"]
        {
            assert_eq!(check_deb_version(version), Ok(()), "{version}");
        }
    }

    #[test]
    fn debian_versions_that_policy_forbids_say_why() {
        let error_of = |version: &str| check_deb_version(version).unwrap_err();
        // Nothing at all.
        insta::assert_snapshot!(error_of(""), @"a Debian version cannot be empty");
        // The upstream version must start with a digit.
        insta::assert_snapshot!(error_of("a1.0"),
            @"`a1.0` is not a Debian version: the upstream version `a1.0` does not start with a digit");
        // A `-` promises a revision.
        insta::assert_snapshot!(error_of("1.0-"),
            @"`1.0-` is not a Debian version: the Debian revision after the last `-` is empty");
        // A `:` promises an epoch.
        insta::assert_snapshot!(error_of(":1"), @"`:1` is not a Debian version: the epoch before `:` is empty");
        // A `:` in the upstream version is fine after an epoch, but the
        // trailing `-` still needs a revision.
        insta::assert_snapshot!(error_of("1:2:3-"),
            @"`1:2:3-` is not a Debian version: the Debian revision after the last `-` is empty");
        // The epoch is a number, and one dpkg can store.
        insta::assert_snapshot!(error_of("x:1.0"), @"`x:1.0` is not a Debian version: the epoch `x` is not a number");
        insta::assert_snapshot!(error_of("99999999999:1.0"),
            @"`99999999999:1.0` is not a Debian version: the epoch `99999999999` is too large");
        // An epoch or a revision around nothing.
        insta::assert_snapshot!(error_of("1:"), @"`1:` is not a Debian version: the upstream version is empty");
        insta::assert_snapshot!(error_of("-1"), @"`-1` is not a Debian version: the upstream version is empty");
        // The revision has no `-` or `:` of its own, nor `_`.
        insta::assert_snapshot!(error_of("1.0-1_2"),
            @"`1.0-1_2` is not a Debian version: the Debian revision `1_2` holds `_`: only letters, digits and `+ . ~` are allowed");
        // Nor has the upstream version spaces or `_`.
        insta::assert_snapshot!(error_of("1.0 beta"),
            @"`1.0 beta` is not a Debian version: the upstream version `1.0 beta` holds ` `: only letters, digits and `. + ~ - :` are allowed");
    }

    #[test]
    fn debian_package_names() {
        for name in ["gcc", "g++", "libstdc++6", "docker.io", "0ad", "xz-utils"] {
            assert_eq!(check_deb_name(name), Ok(()), "{name}");
        }
        let error_of = |name: &str| check_deb_name(name).unwrap_err();
        insta::assert_snapshot!(error_of("GCC"),
            @"`GCC` is not a Debian package name: it holds `G`: only lowercase letters, digits and `+ - .` are allowed");
        insta::assert_snapshot!(error_of("lib_foo"),
            @"`lib_foo` is not a Debian package name: it holds `_`: only lowercase letters, digits and `+ - .` are allowed");
        insta::assert_snapshot!(error_of("c"), @"`c` is not a Debian package name: it needs at least two characters");
        insta::assert_snapshot!(error_of(""), @"`` is not a Debian package name: it needs at least two characters");
        insta::assert_snapshot!(error_of("-x"), @"`-x` is not a Debian package name: it must start with a letter or a digit");
    }

    #[test]
    fn apk_database_of_alpine_3_16() {
        let packages = parse_apk_installed(APK_316).unwrap();
        assert_eq!(packages.len(), 14);
        assert!(is_sorted(&packages));
        assert!(packages.iter().all(|p| p.arch == "x86_64"));
        for expected in [
            pkg("musl", "1.2.3-r0", "x86_64"),
            pkg("busybox", "1.35.0-r17", "x86_64"),
            pkg("alpine-baselayout", "3.2.0-r22", "x86_64"),
            pkg("alpine-baselayout-data", "3.2.0-r22", "x86_64"),
            pkg("ca-certificates-bundle", "20220614-r0", "x86_64"),
            pkg("libcrypto1.1", "1.1.1q-r0", "x86_64"),
            pkg("ssl_client", "1.35.0-r17", "x86_64"),
        ] {
            assert_eq!(find(&packages, &expected.name), [&expected]);
        }
    }

    #[test]
    fn apk_database_of_alpine_3_19() {
        assert_eq!(
            parse_apk_installed(APK_319).unwrap(),
            [
                pkg("bash", "5.2.21-r0", "x86_64"),
                pkg("busybox-binsh", "1.36.1-r15", "x86_64"),
                pkg("musl", "1.2.4_git20230717-r4", "x86_64"),
                pkg("readline", "8.2.1-r2", "x86_64"),
            ]
        );
        assert_eq!(parse_apk_installed("").unwrap(), []);
    }

    #[test]
    fn apk_errors_name_the_line() {
        let error_of = |text: &str| parse_apk_installed(text).unwrap_err().to_string();
        insta::assert_snapshot!(error_of("P:musl\nV:1.2.4-r2\nA:x86_64\n\nC:Q1abc=\nP:busybox\nA:x86_64\n"),
            @"line 6: package `busybox` has no V: (version) line: `P:busybox`");
        insta::assert_snapshot!(error_of("P:musl\nV:1.2.4-r2\na:0:0:755\n"),
            @"line 1: package `musl` has no A: (architecture) line: `P:musl`");
        insta::assert_snapshot!(error_of("C:Q1abc=\nV:1.2.4-r2\nA:x86_64\n"),
            @"line 1: this record has no P: (package name) line: `C:Q1abc=`");
        insta::assert_snapshot!(error_of("P:musl\nV:1.2.4-r2\nA:x86_64\nmusl-utils\n"),
            @"line 4: expected a `K:value` line (one letter, a colon, the value): `musl-utils`");
        insta::assert_snapshot!(error_of("P:musl\nV:1.2.4-r2\nV:1.2.4-r3\nA:x86_64\n"),
            @"line 3: a second V: line in one record, the first is on line 2: `V:1.2.4-r3`");
        insta::assert_snapshot!(error_of("P:musl\nV:\nA:x86_64\n"), @"line 2: the version is empty: `V:`");
        insta::assert_snapshot!(error_of("P:musl\nV:1.2.4-r2\nA:x86_64\n\nP:musl\nV:1.2.4-r3\nA:x86_64\n"),
            @"line 5: package `musl` is listed twice, first on line 1: `P:musl`");
    }

    #[test]
    fn rpm_listing_leaves_keys_out_and_keeps_installonly_versions() {
        let packages = parse_rpm_qa(RPM_FEDORA).unwrap();
        assert_eq!(packages.len(), RPM_FEDORA.lines().count() - 1);
        assert!(is_sorted(&packages));
        assert!(find(&packages, "gpg-pubkey").is_empty());
        assert_eq!(
            find(&packages, "kernel-core"),
            [&pkg("kernel-core", "6.6.6-200.fc39", "x86_64"), &pkg("kernel-core", "6.6.8-200.fc39", "x86_64")]
        );
        for expected in [
            pkg("openssl-libs", "1:3.1.4-3.fc39", "x86_64"),
            pkg("vim-minimal", "2:9.1.181-1.fc39", "x86_64"),
            pkg("vim-default-editor", "2:9.0.1927-1.fc39", "noarch"),
            pkg("clang", "13.0.0~rc1-1.fc35", "x86_64"),
            pkg("ca-certificates", "2023.2.60_v7.0.306-2.fc39", "noarch"),
        ] {
            assert_eq!(find(&packages, &expected.name), [&expected]);
        }
    }

    #[test]
    fn rpm_listing_of_cbl_mariner() {
        let packages = parse_rpm_qa(RPM_MARINER).unwrap();
        assert_eq!(packages.len(), 129);
        assert_eq!(find(&packages, "glibc"), [&pkg("glibc", "2.34-2.cm2", "x86_64")]);
        assert_eq!(find(&packages, "ca-certificates-base"), [&pkg("ca-certificates-base", "1:2.0.0-1.cm2", "noarch")]);
    }

    #[test]
    fn rpm_errors_name_the_line() {
        let error_of = |text: &str| parse_rpm_qa(text).unwrap_err().to_string();
        insta::assert_snapshot!(error_of("bash\t5.2.26-1.fc39\tx86_64\nbash-5.2.26-1.fc39.x86_64\n"),
            @"line 2: expected 3 tab-separated fields (name, [epoch:]version-release, architecture), found 1: `bash-5.2.26-1.fc39.x86_64`");
        insta::assert_snapshot!(error_of("bash\t5.2.26\tx86_64\n"),
            @"line 1: `5.2.26` is not an rpm version: expected [epoch:]version-release, such as 1:3.1.4-3.fc39: `bash\t5.2.26\tx86_64`");
        insta::assert_snapshot!(error_of("bash\t(none):5.2.26-1.fc39\tx86_64\n"),
            @"line 1: `(none):5.2.26-1.fc39` is not an rpm version: expected [epoch:]version-release, such as 1:3.1.4-3.fc39: `bash\t(none):5.2.26-1.fc39\tx86_64`");
        insta::assert_snapshot!(error_of("bash\t5.2.26-1.fc39\tx86_64\ngrep\t3.11-3.fc39\tx86_64\nbash\t5.2.26-1.fc39\tx86_64\n"),
            @"line 3: package `bash` is listed twice, first on line 1: `bash\t5.2.26-1.fc39\tx86_64`");
    }

    #[test]
    fn print_uris_of_gcc_and_make() {
        let downloads = parse_print_uris(PRINT_URIS).unwrap();
        assert_eq!(downloads.len(), 33);
        let gcc = downloads.iter().find(|d| d.package.name == "gcc").unwrap();
        assert_eq!(
            *gcc,
            PackageDownload {
                uri: "http://mirror.invalid/debian/pool/main/g/gcc-defaults/gcc_12.2.0-3_amd64.deb".into(),
                file_name: "gcc_4%3a12.2.0-3_amd64.deb".into(),
                size: 5216,
                sha256: "bb63b0fb2797e2a3a294dab8a02614930c557ec1f4ea96637c244b8b5f87e630".into(),
                package: pkg("gcc", "4:12.2.0-3", "amd64"),
            }
        );
        // From the security archive, its `+` URL-quoted in the URI only.
        let zlib = downloads.iter().find(|d| d.package.name == "zlib1g").unwrap();
        assert_eq!(
            zlib.uri,
            "http://mirror.invalid/debian-security/pool/updates/main/z/zlib/zlib1g_1.2.13.dfsg-1%2bdeb12u1_amd64.deb"
        );
        assert_eq!(zlib.package, pkg("zlib1g", "1:1.2.13.dfsg-1+deb12u1", "amd64"));
        // apt's order: the last file is the last package it would unpack.
        assert_eq!(downloads.last().map(|d| d.package.name.as_str()), Some("make"));
        for d in &downloads {
            assert_eq!(deb_file_name(&d.package), d.file_name);
        }
        assert_eq!(parse_print_uris("Reading package lists...\n").unwrap(), []);
    }

    #[test]
    fn print_uris_without_sha256_says_how_to_get_it() {
        insta::assert_snapshot!(parse_print_uris(PRINT_URIS_DEFAULT_HASH).unwrap_err(),
            @"line 26: apt printed an MD5Sum hash, not SHA256: run apt-get with `-o Acquire::ForceHash=SHA256`: `'http://mirror.invalid/debian/pool/main/b/binutils/binutils-common_2.40-2_amd64.deb' binutils-common_2.40-2_amd64.deb 2…`");
        let security_line = PRINT_URIS_DEFAULT_HASH.lines().find(|l| l.contains("debian-security")).unwrap();
        insta::assert_snapshot!(parse_print_uris(security_line).unwrap_err(),
            @"line 1: apt printed no hash: run apt-get with `-o Acquire::ForceHash=SHA256`: `'http://mirror.invalid/debian-security/pool/updates/main/libz/libzstd/libzstd1_1.5.4%2bdfsg2-5%2bdeb12u1_amd64.deb' lib…`");
    }

    #[test]
    fn print_uris_errors_name_the_line() {
        let error_of = |text: &str| parse_print_uris(text).unwrap_err().to_string();
        let good = "'http://mirror.invalid/debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb' make_4.3-4.1_amd64.deb";
        let hash = "SHA256:a1a83af8cbd854af887b72ad196b1f4af58387815e21ced1000253a116a46e2a";
        assert_eq!(parse_print_uris(&format!("Reading package lists...\n{good} 395632 {hash}\n")).unwrap().len(), 1);
        insta::assert_snapshot!(error_of(&format!("{good} 39k {hash}")),
            @"line 1: the size `39k` is not a number of bytes: `'http://mirror.invalid/debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb' make_4.3-4.1_amd64.deb 39k SHA256:a1a83af8c…`");
        insta::assert_snapshot!(error_of(&format!("{good} 395632 SHA256:A1A8")),
            @"line 1: `A1A8` is not a SHA-256: expected 64 lowercase hex characters: `'http://mirror.invalid/debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb' make_4.3-4.1_amd64.deb 395632 SHA256:A1A8`");
        insta::assert_snapshot!(error_of(&format!("'http://mirror.invalid/x' make.deb 1 {hash}")),
            @"line 1: `make.deb` is not the file name of a package (name_version_arch.deb): `'http://mirror.invalid/x' make.deb 1 SHA256:a1a83af8cbd854af887b72ad196b1f4af58387815e21ced1000253a116a46e2a`");
        insta::assert_snapshot!(error_of("'http://mirror.invalid/x make.deb"),
            @"line 1: the URI has no closing `'`: `'http://mirror.invalid/x make.deb`");
        insta::assert_snapshot!(error_of("'http://mirror.invalid/x'"),
            @"line 1: expected `'URI' FILE SIZE SHA256:HASH`: `'http://mirror.invalid/x'`");
    }

    #[test]
    fn deb_file_names_round_trip_epochs() {
        let gmp = pkg("libgmp10", "2:6.2.1+dfsg1-1.1", "amd64");
        assert_eq!(deb_file_name(&gmp), "libgmp10_2%3a6.2.1+dfsg1-1.1_amd64.deb");
        assert_eq!(parse_deb_file_name(&deb_file_name(&gmp)), Some(gmp));
        // A `:` in the upstream version (after an epoch) is quoted too.
        let odd = pkg("foo", "1:2:3-1", "all");
        assert_eq!(deb_file_name(&odd), "foo_1%3a2%3a3-1_all.deb");
        assert_eq!(parse_deb_file_name(&deb_file_name(&odd)), Some(odd));
        assert_eq!(parse_deb_file_name("make_4.3-4.1_amd64.deb"), Some(pkg("make", "4.3-4.1", "amd64")));
        assert_eq!(parse_deb_file_name("gcc_4%3A12.2.0-3_amd64.deb"), Some(pkg("gcc", "4:12.2.0-3", "amd64")));
    }

    #[test]
    fn other_files_of_the_archive_directory_are_not_packages() {
        for name in [
            "lock",
            "partial",
            "make_4.3-4.1_amd64",
            "make_4.3-4.1.deb",
            "make_4.3-4.1_amd64_extra.deb",
            "Make_4.3-4.1_amd64.deb",
            "make_x4.3_amd64.deb",
            "make_4.3%2b1_amd64.deb",
            "make_4.3-4.1_.deb",
        ] {
            assert_eq!(parse_deb_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn apt_problems_in_the_order_apt_printed_them() {
        assert_eq!(
            apt_problems(APT_UNKNOWN),
            [
                AptProblem::UnknownPackage("nosuchpackage-xyz".into()),
                AptProblem::VersionNotFound { name: "make".into(), version: "0.1-1".into() },
                AptProblem::VersionNotFound { name: "gcc".into(), version: "9:1.0".into() },
            ]
        );
        assert_eq!(apt_problems(APT_NO_CANDIDATE), [AptProblem::UnknownPackage("python".into())]);
        assert_eq!(apt_problems(PRINT_URIS), []);
        assert_eq!(apt_problems("E: Release 'sid' for 'make' was not found\n"), []);
    }
}

//! Comparing two builds' outputs: which files differ, and how each differs.
//!
//! `verify` keeps each build's outputs as a directory; [`compare_trees`]
//! walks two of them and names every path that differs (added, removed,
//! another mode, another kind, another symlink target, other bytes). For
//! other bytes, [`explain`] says *how* they differ from what the bytes are
//! (the format is told from the content, not the name): a unified diff for
//! text, header fields and then the content for gzip and xz, member by
//! member for tar, zip, ar and .deb, the differing sections for ELF, and
//! byte ranges with a hex excerpt for anything else. Where the differing
//! bytes say it, a first guess at the [`Cause`] follows (a time near a build,
//! the build path, the hostname, a reordering, randomness).
//!
//! Everything here is the project's own code: no external tool is needed,
//! and the work is bounded (nesting depth, members per archive, bytes held
//! in memory) so that a hostile or huge output cannot make `verify` hang or
//! run out of memory.
//!
//! # Layout
//!
//! - `tree`: the directory walk and the streaming byte comparison.
//! - `text`, `bytes`: the leaves (unified diff; byte ranges and hex).
//! - `compressed`, `tar_members`, `zip_members`, `ar_members`, `elf`: the
//!   containers, each explaining its members through [`explain`] again.
//! - `members`: what the archive formats share (presence, order, budget).
//! - `causes`: the cause guesses; `time`: civil dates without a crate.
//! - `display`: the human text `verify` prints.

mod ar_members;
mod bytes;
mod causes;
mod compressed;
mod display;
mod elf;
mod members;
mod tar_members;
mod text;
mod time;
mod tree;
mod zip_members;

use serde::Serialize;

pub use tree::compare_trees;

/// How deep archives inside archives are explained: deep enough for a
/// `.deb` (ar → data.tar.xz → tar → a member's gzip), bounded so a quine
/// archive cannot recurse forever.
const MAX_DEPTH: usize = 4;

/// How many differing members one archive lists; the rest are counted in a
/// note. Fifty is more than anyone reads, and bounds the work on a tarball
/// where every member differs.
const MAX_MEMBERS: usize = 50;

/// The largest file (or decompressed stream) read whole into memory to be
/// explained. Larger differing files get byte ranges computed streaming.
pub(crate) const MAX_IN_MEMORY: u64 = 64 << 20;

/// What the comparison may use to guess causes: facts about the builds
/// that produced the two trees.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Paths the builds ran in (`/src`, `/home/build`): finding one in the
    /// differing bytes points at an embedded build path.
    pub build_paths: Vec<String>,
    /// Hostnames the builds saw (`repro-run`).
    pub hostnames: Vec<String>,
    /// Unix seconds near which each build ran: a value within two days of
    /// one of them "looks like a build time" (two days covers any time zone
    /// a local-time stamp may have been written in).
    pub times: Vec<u64>,
}

/// The result of comparing two output trees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeComparison {
    /// How many files (and symlinks) are the same in both trees.
    pub identical: usize,
    /// Every difference, sorted by path (a path whose mode and content both
    /// differ has two entries, mode first).
    pub differences: Vec<FileDifference>,
}

impl TreeComparison {
    /// Whether the two trees are the same: no path differs.
    pub fn is_reproducible(&self) -> bool {
        self.differences.is_empty()
    }
}

/// One path that differs between the two trees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileDifference {
    /// The path relative to the tree's root, `/`-separated.
    pub path: String,
    /// How it differs.
    pub change: Change,
}

/// How one path (or one archive member) differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Only in the second tree (or archive).
    Added,
    /// Only in the first tree (or archive).
    Removed,
    /// Same kind, other permission bits (`"0644"`).
    Mode {
        /// The first tree's mode, four octal digits.
        a: String,
        /// The second tree's mode.
        b: String,
    },
    /// Another kind of entry (`file`, `symlink`, `directory`, ...).
    Kind {
        /// The first tree's kind.
        a: String,
        /// The second tree's kind.
        b: String,
    },
    /// A symlink (or hard link, in an archive) with another target.
    Link {
        /// The first tree's target.
        a: String,
        /// The second tree's target.
        b: String,
    },
    /// Other bytes, explained.
    Content(Explanation),
}

/// How two versions of one file differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The format both versions were read as ([`Format::Binary`] when the
    /// two are of different formats; a `format` header detail says which).
    pub format: Format,
    /// The two sizes in bytes.
    pub size: (u64, u64),
    /// What differs, from the outside in.
    pub details: Vec<Detail>,
    /// First guesses at why, for this file and everything inside it.
    pub causes: Vec<Cause>,
}

/// The formats [`explain`] understands, told from the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Valid UTF-8 without NUL bytes.
    Text,
    /// Anything not recognised below.
    Binary,
    /// A gzip stream (RFC 1952).
    Gzip,
    /// An xz stream.
    Xz,
    /// A tar archive (ustar, GNU or PAX).
    Tar,
    /// A zip archive (jar, wheel, apk, ...).
    Zip,
    /// A Unix `ar` archive (static libraries).
    Ar,
    /// A Debian package (an ar archive starting with `debian-binary`).
    Deb,
    /// An ELF object, executable or shared library.
    Elf,
}

/// One thing that differs inside a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    /// A unified diff of two texts.
    TextDiff {
        /// The diff, at most about sixty lines, with a last line saying how
        /// many were left out.
        unified: String,
    },
    /// The byte ranges that differ.
    ByteRanges {
        /// Differing `[start, end)` offsets, ranges less than 8 equal bytes
        /// apart merged; at most 20 listed.
        ranges: Vec<(u64, u64)>,
        /// How many ranges there are in all.
        total_ranges: usize,
        /// A hex excerpt of each version around the first difference (at
        /// most 32 bytes each), starting with its offset.
        first_hex: (String, String),
    },
    /// A header field with two values (`gzip mtime`,
    /// `tar member x: mtime`, `zip member x: dos time`).
    Header {
        /// Which field.
        field: String,
        /// The first version's value.
        a: String,
        /// The second version's value.
        b: String,
    },
    /// A member of an archive (or a compressed stream's content) that
    /// differs; its content is explained like a file.
    Member {
        /// The member's name in the archive.
        name: String,
        /// How it differs.
        change: Box<Change>,
    },
    /// The same members in another order.
    MemberOrder {
        /// The first names in the first archive's order (at most 20).
        a: Vec<String>,
        /// The first names in the second archive's order.
        b: Vec<String>,
    },
    /// The ELF sections whose bytes differ.
    Sections {
        /// Their names, in the first file's order.
        names: Vec<String>,
        /// What to make of them (the build-id follows from the others).
        note: Option<String>,
    },
    /// Something the comparison could not, or chose not to, look into.
    Note {
        /// What, in a sentence.
        text: String,
    },
}

/// A first guess at why two versions differ, from what the differing bytes
/// contain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// A value that reads as a time near one of the builds.
    Timestamp {
        /// The value as found (`1733130000`, `2026-12-02 07:31:12`).
        value: String,
        /// The build time it is near, RFC 3339.
        near: String,
    },
    /// A build path appears a different number of times on each side.
    BuildPath {
        /// The path.
        path: String,
    },
    /// A hostname appears a different number of times on each side.
    Hostname {
        /// The hostname.
        name: String,
    },
    /// The same lines or members, in another order (directory order, a
    /// hash map's iteration order).
    Reordering,
    /// Long same-length runs that differ, with no other explanation: a
    /// seed, a temporary name, or a hash of one.
    Random,
}

/// Explains how two versions of one file differ, by what the bytes are
/// (the format is told from the content; the name only tells a `.deb`).
pub fn explain(path: &str, a: &[u8], b: &[u8], context: &Context) -> Explanation {
    explain_at(path, a, b, context, 0)
}

/// The details and causes one format's comparator found.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub details: Vec<Detail>,
    pub causes: Vec<Cause>,
}

/// [`explain`] at a nesting depth: archives call it for their members.
pub(crate) fn explain_at(path: &str, a: &[u8], b: &[u8], context: &Context, depth: usize) -> Explanation {
    let size = (a.len() as u64, b.len() as u64);
    let (fa, fb) = (detect(path, a), detect(path, b));
    if fa != fb {
        let mut parts = bytes::explain(a, b, context);
        parts.details.insert(0, format_header(fa, fb));
        return finish(Format::Binary, size, parts);
    }
    let container = !matches!(fa, Format::Text | Format::Binary);
    if container && depth >= MAX_DEPTH {
        let mut parts = bytes::explain(a, b, context);
        parts.details.push(Detail::Note { text: format!("nested {MAX_DEPTH} archives deep: compared as bytes") });
        return finish(fa, size, parts);
    }
    let parts = match fa {
        Format::Text => Ok(text::explain(path, a, b, context)),
        Format::Binary => Ok(bytes::explain(a, b, context)),
        Format::Gzip | Format::Xz => compressed::explain(fa, path, a, b, context, depth),
        Format::Tar => tar_members::explain(a, b, context, depth),
        Format::Zip => zip_members::explain(a, b, context, depth),
        Format::Ar | Format::Deb => ar_members::explain(a, b, context, depth),
        Format::Elf => elf::explain(a, b, context),
    };
    let parts = parts.unwrap_or_else(|error| {
        let mut parts = bytes::explain(a, b, context);
        parts
            .details
            .insert(0, Detail::Note { text: format!("could not be read as {fa}: {error}; compared as bytes") });
        parts
    });
    finish(fa, size, parts)
}

/// The header detail for two versions of different formats.
fn format_header(fa: Format, fb: Format) -> Detail {
    Detail::Header { field: "format".to_owned(), a: fa.to_string(), b: fb.to_string() }
}

/// Assembles an explanation, with its causes deduplicated.
fn finish(format: Format, size: (u64, u64), parts: Parts) -> Explanation {
    let mut causes = Vec::new();
    causes::merge(&mut causes, parts.causes);
    Explanation { format, size, details: parts.details, causes }
}

/// The xz stream magic.
const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";

/// Tells the format from the first bytes (and, for tar, the header
/// checksum). `path` only decides `.deb` for an ar archive whose first
/// member is not `debian-binary`.
pub(crate) fn detect(path: &str, data: &[u8]) -> Format {
    if data.starts_with(b"\x1f\x8b") {
        Format::Gzip
    } else if data.starts_with(XZ_MAGIC) {
        Format::Xz
    } else if data.starts_with(b"\x7fELF") {
        Format::Elf
    } else if data.starts_with(b"!<arch>\n") {
        if data.get(8..21) == Some(b"debian-binary") || path.ends_with(".deb") {
            Format::Deb
        } else {
            Format::Ar
        }
    } else if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        Format::Zip
    } else if is_tar(data) {
        Format::Tar
    } else if !data.contains(&0) && std::str::from_utf8(data).is_ok() {
        Format::Text
    } else {
        Format::Binary
    }
}

/// Whether `data` starts with a tar header: the ustar magic, or (for old
/// v7 archives) a header whose checksum field matches its bytes.
fn is_tar(data: &[u8]) -> bool {
    let Some(header) = data.get(..512) else {
        return false;
    };
    if &header[257..262] == b"ustar" {
        return true;
    }
    if header.iter().all(|&byte| byte == 0) {
        return false;
    }
    let field = String::from_utf8_lossy(&header[148..156]);
    let Ok(recorded) = u32::from_str_radix(field.trim_matches(['\0', ' ']), 8) else {
        return false;
    };
    let sum: u32 =
        header.iter().enumerate().map(|(i, &byte)| if (148..156).contains(&i) { 32 } else { u32::from(byte) }).sum();
    sum == recorded
}

#[cfg(test)]
mod tests;

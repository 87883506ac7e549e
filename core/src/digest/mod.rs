//! The `repro-tree-v1` tree digest: one identity for a file tree, whether it
//! arrives as a directory, a tar stream exported by a container engine, or a
//! rootfs tarball (plain or gzip).
//!
//! The full specification, with the exact byte encoding and test vectors, is
//! `docs/tree-digest.md`. In short: every entry contributes its kind, path,
//! permission bits, owner ids, `security.capability` and its content (a
//! file's size and blake3, a link's target, a device's numbers); entries are
//! sorted by path bytes and the encoded stream is hashed with blake3.
//!
//! What is left out, and why:
//!
//! - **mtime.** Docker and Podman rewrite the mtime of every directory they
//!   add a mount point to (`etc`, `dev`, `run`), and of the files they inject,
//!   even in a container that never started. Keeping mtime would make the
//!   same image digest differently on every engine and every day.
//! - **The root directory itself.** Neither engine exports it.
//! - **Owner names** and **most xattrs.** Engines export numeric ids with
//!   their own names, and Docker exports `security.capability` only, so that
//!   is the one xattr that counts.
//! - **Engine-injected paths** ([`TreeKind::Rootfs`] only): `.dockerenv`,
//!   `run/.containerenv`, `etc/hostname`, `etc/hosts`, `etc/resolv.conf`,
//!   `etc/mtab` and everything below `dev`, `proc` and `sys` are dropped,
//!   because engines add, empty or replace them (observed on Docker 20.10 and
//!   Podman 4.3; see the spec). The directories `dev`, `etc`, `proc`, `run`
//!   and `sys` always count: when absent they count as the `0755` `0:0`
//!   directories the engines create.
//!
//! Memory stays bounded: content is hashed while it streams; only one small
//! record per entry (path, metadata, 32-byte hash) is kept for sorting.
//!
//! # Layout
//!
//! - `tree`: the entry records, path normalisation, hardlink groups and the
//!   byte encoding; both readers below feed it.
//! - `tar`: the tar-stream reader (gzip detected by its magic bytes).
//! - `dir`: the directory walker (never follows symlinks).

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

mod dir;
mod tar;
mod tree;

pub use tree::{CAPABILITY_XATTR, EMPTIED_DIRS, FORMAT, IMPLIED_DIR_MODE, INJECTED_PATHS, MOUNT_POINT_DIRS};

/// A blake3 digest, printed as `blake3:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The blake3 digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest(*blake3::hash(bytes).as_bytes())
    }
    /// Wraps a finished blake3 hash.
    pub fn from_hash(hash: blake3::Hash) -> Self {
        Digest(*hash.as_bytes())
    }
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// The 64 hex characters, without the `blake3:` prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{value}` is not a digest: expected `blake3:` followed by 64 lowercase hex characters")]
pub struct DigestParseError {
    /// The rejected text.
    pub value: String,
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DigestParseError { value: s.to_owned() };
        let hex_part = s.strip_prefix("blake3:").ok_or_else(err)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err())?;
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which flavour of the tree digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeKind {
    /// A root filesystem: owner ids count, engine-injected paths are normalised.
    Rootfs,
    /// Build outputs: owner ids are left out, nothing is normalised.
    Artifacts,
}

/// Why a tree could not be digested.
///
/// Paths in messages are shown as UTF-8 where they are, with any other byte
/// escaped as `\xNN`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// Reading the tar stream or the directory failed.
    #[error("cannot read {what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The input is empty: not even an end-of-archive block.
    #[error("the tar stream is empty")]
    Empty,
    /// The input is compressed with a format other than gzip.
    #[error("the tar stream is {format}-compressed, which is not supported (only gzip is): decompress it first")]
    UnsupportedCompression {
        /// `xz`, `zstd` or `bzip2`.
        format: &'static str,
    },
    /// The tar framing is broken (bad checksum, bad number, cut header...).
    #[error("corrupt tar stream {position}: {source}")]
    Corrupt {
        /// Where: `at the first entry` or ``after entry `x` ``.
        position: String,
        /// What the tar reader said.
        #[source]
        source: std::io::Error,
    },
    /// An entry's data ends before its declared size.
    #[error("tar entry `{path}` is truncated: {actual} of {expected} bytes present")]
    Truncated {
        /// The entry.
        path: String,
        /// The size its header declares.
        expected: u64,
        /// The bytes that were there.
        actual: u64,
    },
    /// The stream ends without the zero block that closes a tar archive.
    #[error("the tar stream ends without its end-of-archive block {position} (truncated?)")]
    MissingEnd {
        /// ``after entry `x` ``.
        position: String,
    },
    /// The headers before one entry (long names, pax records, sparse maps)
    /// are larger than the limit.
    #[error("tar headers {position} exceed {limit} bytes")]
    MetadataTooLarge {
        /// Where: `at the first entry` or ``after entry `x` ``.
        position: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A header field cannot be parsed.
    #[error("tar entry `{path}` has an invalid {field}: {source}")]
    BadHeader {
        /// The entry.
        path: String,
        /// `mode`, `uid`, `gid`, `device number`...
        field: &'static str,
        /// What the tar reader said.
        #[source]
        source: std::io::Error,
    },
    /// A tar entry type this digest does not know.
    #[error("tar entry `{path}` has unsupported type `{kind}`")]
    UnsupportedEntryType {
        /// The entry.
        path: String,
        /// The type flag, escaped.
        kind: String,
    },
    /// A PAX (`GNU.sparse.*`) sparse file; GNU-format sparse files work.
    #[error("tar entry `{path}` is a PAX-format sparse file, which is not supported: re-create the archive with `--format=gnu`")]
    PaxSparse {
        /// The entry.
        path: String,
    },
    /// A path or hardlink target with a `..` component.
    #[error("path `{path}` has a `..` component")]
    ParentComponent {
        /// The path as found.
        path: String,
    },
    /// A path with a NUL byte (only possible through a pax record).
    #[error("path `{path}` contains a NUL byte")]
    NulInPath {
        /// The path as found.
        path: String,
    },
    /// A hardlink whose target is not an earlier entry.
    #[error("hardlink `{path}` points to `{target}`, which is not an earlier entry")]
    DanglingHardlink {
        /// The hardlink.
        path: String,
        /// Its target.
        target: String,
    },
    /// A hardlink to a directory.
    #[error("hardlink `{path}` points to `{target}`, which is a directory")]
    HardlinkToDirectory {
        /// The hardlink.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry below something that is not a directory.
    #[error("`{path}` is below `{parent}`, which is not a directory")]
    ParentNotDirectory {
        /// The entry.
        path: String,
        /// Its ancestor that is a file, link or device.
        parent: String,
    },
    /// The subtree asked for is not in the archive.
    #[error("no entry `{root}` in the tar stream")]
    SubtreeMissing {
        /// The subtree root asked for.
        root: String,
    },
    /// The root given to [`digest_dir`] or [`digest_tar_at`] is not a
    /// directory.
    #[error("`{path}` is not a directory")]
    NotADirectory {
        /// The root given.
        path: String,
    },
}

/// The tree digest of a tar stream (plain; gzip is detected by its magic bytes).
///
/// Entries may come in any order; a later entry for the same path replaces
/// the earlier one, as tar extraction does. Content is hashed as it streams.
pub fn digest_tar<R: Read>(reader: R, kind: TreeKind) -> Result<Digest, TreeError> {
    tar::digest(reader, kind, b"")
}

/// The tree digest of the subtree at `root` inside a tar stream.
///
/// An engine's archive download of `/out` names its entries `out/...`: pass
/// `b"out"` to digest the tree below it as if `out` were the root. Entries
/// outside `root` are read (a hardlink inside may point at them) but do not
/// count. `b""` is the whole archive, as [`digest_tar`].
pub fn digest_tar_at<R: Read>(reader: R, kind: TreeKind, root: &[u8]) -> Result<Digest, TreeError> {
    tar::digest(reader, kind, root)
}

/// A tree digest fed entry by entry, by a reader that knows each entry's
/// metadata and has hashed its content itself: the same digest as
/// [`digest_tar`] of a tar holding those entries, without making the tar.
///
/// Paths are tar paths (`src/a/b`), normalised as the tar reader does;
/// entries may come in any order, and a later one replaces an earlier one.
pub struct TreeBuilder {
    tree: tree::Tree,
}

impl TreeBuilder {
    /// An empty tree of `kind`.
    pub fn new(kind: TreeKind) -> Self {
        TreeBuilder { tree: tree::Tree::new(kind) }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &[u8], mode: u32, uid: u64, gid: u64) -> Result<(), TreeError> {
        self.insert(path, tree::Node::Dir, mode, uid, gid)
    }

    /// Adds a regular file of `size` bytes whose blake3 is `hash`.
    pub fn file(
        &mut self,
        path: &[u8],
        mode: u32,
        (uid, gid): (u64, u64),
        size: u64,
        hash: blake3::Hash,
    ) -> Result<(), TreeError> {
        self.insert(path, tree::Node::File { size, hash: *hash.as_bytes() }, mode, uid, gid)
    }

    /// Adds a symbolic link to `target` (kept byte for byte).
    pub fn symlink(&mut self, path: &[u8], target: &[u8], uid: u64, gid: u64) -> Result<(), TreeError> {
        self.insert(path, tree::Node::Symlink(target.to_vec()), 0o777, uid, gid)
    }

    fn insert(&mut self, path: &[u8], node: tree::Node, mode: u32, uid: u64, gid: u64) -> Result<(), TreeError> {
        let path = tree::normalize(path)?;
        self.tree.insert(path, tree::Record::new(node, mode, uid, gid, Vec::new()));
        Ok(())
    }

    /// The digest of the entries added.
    pub fn finish(self) -> Result<Digest, TreeError> {
        self.tree.finish(b"")
    }
}

/// The tree digest of a directory on disk; symlinks are never followed.
///
/// `root` itself is resolved like any path argument; nothing below it is
/// followed. Sockets are skipped (tar cannot carry them either). For
/// [`TreeKind::Rootfs`], the contents of `dev`, `proc` and `sys` are not
/// even read, so a live root filesystem can be digested.
pub fn digest_dir(root: &Path, kind: TreeKind) -> Result<Digest, TreeError> {
    dir::digest(root, kind)
}

/// A path or other byte string for a message: UTF-8 where it is, other bytes
/// as `\xNN`.
pub(crate) fn show(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of a few entries, and the same entries fed to a builder.
    #[test]
    fn a_builder_gives_the_digest_of_the_tar_of_its_entries() {
        let mut tar = ::tar::Builder::new(Vec::new());
        let mut add = |kind: ::tar::EntryType, path: &str, mode: u32, data: &[u8], link: Option<&str>| {
            let mut h = ::tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            tar.append_data(&mut h, path, data).unwrap();
        };
        add(::tar::EntryType::Directory, "src", 0o755, b"", None);
        add(::tar::EntryType::Regular, "src/b.c", 0o644, b"int b;", None);
        add(::tar::EntryType::Directory, "src/a", 0o755, b"", None);
        add(::tar::EntryType::Regular, "src/a/run", 0o755, b"#!/bin/sh", None);
        add(::tar::EntryType::Symlink, "src/link", 0o777, b"", Some("a/run"));
        let tar = tar.into_inner().unwrap();

        let from_tar = digest_tar(&tar[..], TreeKind::Artifacts).unwrap();
        let built = |b_mode: u32| {
            let mut b = TreeBuilder::new(TreeKind::Artifacts);
            // Another order, and paths spelled another way: the same tree.
            b.symlink(b"src/link", b"a/run", 1000, 1001).unwrap();
            b.file(b"./src/a/run", 0o755, (1000, 1001), 9, blake3::hash(b"#!/bin/sh")).unwrap();
            b.dir(b"src/a/", 0o755, 1000, 1001).unwrap();
            b.file(b"src/b.c", b_mode, (1000, 1001), 6, blake3::hash(b"int b;")).unwrap();
            b.dir(b"src", 0o755, 1000, 1001).unwrap();
            b.finish().unwrap()
        };
        assert_eq!(built(0o644), from_tar);
        assert_ne!(built(0o600), from_tar, "a mode counts");
        assert!(TreeBuilder::new(TreeKind::Artifacts).dir(b"src/../x", 0o755, 0, 0).is_err());
    }
}

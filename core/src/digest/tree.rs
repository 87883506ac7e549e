//! The entry records both readers fill, and the `repro-tree-v1` encoding.
//!
//! Readers normalise each path, then [`Tree::insert`] or [`Tree::link`] it;
//! [`Tree::finish`] applies the kind's rules (dropped and implied entries,
//! hardlink groups) and hashes the sorted entries. Keeping this in one place
//! is what makes a directory and a tar of it digest the same.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{show, Digest, TreeError, TreeKind};

/// The format name; the encoded stream starts with it and a NUL byte.
pub const FORMAT: &str = "repro-tree-v1";

/// The only extended attribute that counts: Docker exports no other.
pub const CAPABILITY_XATTR: &[u8] = b"security.capability";

/// Paths an engine injects into every container; dropped, with anything
/// below them, from a [`TreeKind::Rootfs`] digest.
pub const INJECTED_PATHS: &[&str] =
    &[".dockerenv", "etc/hostname", "etc/hosts", "etc/mtab", "etc/resolv.conf", "run/.containerenv"];

/// Directories whose contents are dropped from a [`TreeKind::Rootfs`]
/// digest: engines mount over them and add entries (`dev/console`,
/// `dev/pts`, `dev/shm`).
pub const EMPTIED_DIRS: &[&str] = &["dev", "proc", "sys"];

/// Directories that always count in a [`TreeKind::Rootfs`] digest: engines
/// create them (mode [`IMPLIED_DIR_MODE`], owner `0:0`) when an image lacks
/// them, so an absent one counts as if it were there so.
pub const MOUNT_POINT_DIRS: &[&str] = &["dev", "etc", "proc", "run", "sys"];

/// The permission bits of a directory that is implied rather than listed:
/// a missing parent, or a missing [`MOUNT_POINT_DIRS`] entry. Owner `0:0`.
pub const IMPLIED_DIR_MODE: u32 = 0o755;

/// Symlink permission bits do not exist on Linux (tar writers record 0777 or
/// 0755): every symlink counts with these.
const SYMLINK_MODE: u32 = 0o777;

/// Extended attributes as (name, value), sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// What an entry is, with what of it counts beyond the common metadata.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Dir,
    File { size: u64, hash: [u8; 32] },
    Symlink(Vec<u8>),
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
    Fifo,
}

impl Node {
    fn tag(&self) -> u8 {
        match self {
            Node::Dir => b'd',
            Node::File { .. } => b'f',
            Node::Symlink(_) => b'l',
            Node::Char { .. } => b'c',
            Node::Block { .. } => b'b',
            Node::Fifo => b'p',
        }
    }
}

/// One entry: what is kept in memory until the tree is complete.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub node: Node,
    /// `mode & 0o7777`.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Sorted by name, no duplicates, only names that [`counts_xattr`].
    pub xattrs: Xattrs,
    /// Shared by the paths of one hardlink group.
    inode: Option<u64>,
}

impl Record {
    pub fn new(node: Node, mode: u32, uid: u64, gid: u64, xattrs: Xattrs) -> Self {
        Record { node, mode: mode & 0o7777, uid, gid, xattrs, inode: None }
    }

    fn implied_dir() -> Self {
        Record::new(Node::Dir, IMPLIED_DIR_MODE, 0, 0, Vec::new())
    }
}

/// Whether an extended attribute counts (see [`CAPABILITY_XATTR`]).
pub(crate) fn counts_xattr(name: &[u8]) -> bool {
    name == CAPABILITY_XATTR
}

/// `a/./b`, `/a/b/`, `./a//b` → `a/b`; the root (`.`, `/`, ``) → ``.
/// A `..` component is an error: the digest never resolves paths.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<u8>, TreeError> {
    if raw.contains(&0) {
        return Err(TreeError::NulInPath { path: show(raw) });
    }
    let mut out = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(TreeError::ParentComponent { path: show(raw) }),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// `path` is `dir` or below it.
fn at_or_below(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/')
}

/// Whether a normalised path is left out of a [`TreeKind::Rootfs`] digest.
pub(crate) fn is_dropped(path: &[u8]) -> bool {
    INJECTED_PATHS.iter().any(|p| at_or_below(path, p.as_bytes()))
        || EMPTIED_DIRS.iter().any(|d| path.len() > d.len() && at_or_below(path, d.as_bytes()))
}

/// The entries read so far, sorted by path; a later entry replaces an
/// earlier one for the same path.
pub(crate) struct Tree {
    kind: TreeKind,
    entries: BTreeMap<Vec<u8>, Record>,
    next_inode: u64,
}

impl Tree {
    pub fn new(kind: TreeKind) -> Self {
        Tree { kind, entries: BTreeMap::new(), next_inode: 0 }
    }

    pub fn kind(&self) -> TreeKind {
        self.kind
    }

    /// Adds (or replaces) a normalised path. The root itself never counts.
    pub fn insert(&mut self, path: Vec<u8>, record: Record) {
        if !path.is_empty() {
            self.entries.insert(path, record);
        }
    }

    /// Adds a hardlink: `path` becomes another name of `target`'s inode, as
    /// it is now (a later replacement of `target` does not follow).
    pub fn link(&mut self, path: Vec<u8>, target: &[u8]) -> Result<(), TreeError> {
        let Some(record) = self.entries.get_mut(target) else {
            return Err(TreeError::DanglingHardlink { path: show(&path), target: show(target) });
        };
        if matches!(record.node, Node::Dir) {
            return Err(TreeError::HardlinkToDirectory { path: show(&path), target: show(target) });
        }
        if path.is_empty() || path == target {
            return Ok(());
        }
        let inode = *record.inode.get_or_insert_with(|| {
            self.next_inode += 1;
            self.next_inode
        });
        let mut copy = record.clone();
        copy.inode = Some(inode);
        self.entries.insert(path, copy);
        Ok(())
    }

    /// Applies the kind's rules and hashes the result. With a non-empty
    /// `root`, only the entries below it count, with paths relative to it.
    pub fn finish(self, root: &[u8]) -> Result<Digest, TreeError> {
        let kind = self.kind;
        let mut entries = self.entries;
        if !root.is_empty() {
            entries = subtree(entries, root)?;
        }
        if kind == TreeKind::Rootfs {
            entries.retain(|path, _| !is_dropped(path));
        }
        add_implied_dirs(&mut entries, kind)?;
        Ok(encode(&entries, kind))
    }
}

/// The entries below `root`, re-rooted there.
fn subtree(entries: BTreeMap<Vec<u8>, Record>, root: &[u8]) -> Result<BTreeMap<Vec<u8>, Record>, TreeError> {
    let root = normalize(root)?;
    if root.is_empty() {
        return Ok(entries);
    }
    let found = match entries.get(&root) {
        Some(Record { node: Node::Dir, .. }) => true,
        Some(_) => return Err(TreeError::NotADirectory { path: show(&root) }),
        None => false,
    };
    let mut prefix = root.clone();
    prefix.push(b'/');
    let below: BTreeMap<Vec<u8>, Record> = entries
        .into_iter()
        .filter_map(|(path, record)| Some((path.strip_prefix(&prefix[..])?.to_vec(), record)))
        .collect();
    if !found && below.is_empty() {
        return Err(TreeError::SubtreeMissing { root: show(&root) });
    }
    Ok(below)
}

/// Adds the directories a tree implies: missing ancestors of any entry (tar
/// extraction and both engines create them `0755` `0:0`), and for a rootfs
/// the [`MOUNT_POINT_DIRS`]. An ancestor that exists must be a directory.
fn add_implied_dirs(entries: &mut BTreeMap<Vec<u8>, Record>, kind: TreeKind) -> Result<(), TreeError> {
    let mut implied: BTreeSet<Vec<u8>> = BTreeSet::new();
    if kind == TreeKind::Rootfs {
        for dir in MOUNT_POINT_DIRS {
            if !entries.contains_key(dir.as_bytes()) {
                implied.insert(dir.as_bytes().to_vec());
            }
        }
    }
    for path in entries.keys() {
        // Walk up from the nearest ancestor; stop at the first directory
        // already known, whose own ancestors are checked when it is visited.
        let mut end = path.len();
        while let Some(slash) = path[..end].iter().rposition(|&b| b == b'/') {
            let parent = &path[..slash];
            match entries.get(parent) {
                Some(Record { node: Node::Dir, .. }) => break,
                Some(_) => return Err(TreeError::ParentNotDirectory { path: show(path), parent: show(parent) }),
                None => {
                    if !implied.insert(parent.to_vec()) {
                        break;
                    }
                }
            }
            end = slash;
        }
    }
    for path in implied {
        entries.insert(path, Record::implied_dir());
    }
    Ok(())
}

/// A length-prefixed byte string: `u64` little-endian length, then the bytes.
fn put_bytes(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// The `repro-tree-v1` stream of a complete, sorted tree, hashed.
fn encode(entries: &BTreeMap<Vec<u8>, Record>, kind: TreeKind) -> Digest {
    // The first (smallest) path of each hardlink group carries the content;
    // the others point at it, whatever order the archive listed them in.
    let mut leaders: HashMap<u64, &[u8]> = HashMap::new();
    for (path, record) in entries {
        if let Some(inode) = record.inode {
            leaders.entry(inode).or_insert(path);
        }
    }

    let mut hasher = blake3::Hasher::new();
    hasher.update(FORMAT.as_bytes());
    hasher.update(&[0]);
    hasher.update(match kind {
        TreeKind::Rootfs => b"R",
        TreeKind::Artifacts => b"A",
    });
    for (path, record) in entries {
        if let Some(leader) = record.inode.and_then(|inode| leaders.get(&inode)) {
            if *leader != &path[..] {
                hasher.update(b"h");
                put_bytes(&mut hasher, path);
                put_bytes(&mut hasher, leader);
                continue;
            }
        }
        hasher.update(&[record.node.tag()]);
        put_bytes(&mut hasher, path);
        let mode = if matches!(record.node, Node::Symlink(_)) { SYMLINK_MODE } else { record.mode };
        hasher.update(&mode.to_le_bytes());
        if kind == TreeKind::Rootfs {
            hasher.update(&record.uid.to_le_bytes());
            hasher.update(&record.gid.to_le_bytes());
        }
        hasher.update(&(record.xattrs.len() as u32).to_le_bytes());
        for (name, value) in &record.xattrs {
            put_bytes(&mut hasher, name);
            put_bytes(&mut hasher, value);
        }
        match &record.node {
            Node::Dir | Node::Fifo => {}
            Node::File { size, hash } => {
                hasher.update(&size.to_le_bytes());
                hasher.update(hash);
            }
            Node::Symlink(target) => put_bytes(&mut hasher, target),
            Node::Char { major, minor } | Node::Block { major, minor } => {
                hasher.update(&major.to_le_bytes());
                hasher.update(&minor.to_le_bytes());
            }
        }
    }
    Digest::from_hash(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_dots_and_slashes() {
        for (raw, want) in [
            (&b"./a/b/"[..], &b"a/b"[..]),
            (b"/a//b", b"a/b"),
            (b"a/./b", b"a/b"),
            (b".", b""),
            (b"./", b""),
            (b"/", b""),
            (b"", b""),
            (b"a\xffb", b"a\xffb"),
        ] {
            assert_eq!(normalize(raw).ok().as_deref(), Some(want), "{}", show(raw));
        }
    }

    #[test]
    fn normalize_rejects_parent_components() {
        for raw in [&b".."[..], b"../a", b"a/../b", b"a/.."] {
            let err = normalize(raw).err().map(|e| e.to_string());
            assert_eq!(err, Some(format!("path `{}` has a `..` component", show(raw))));
        }
    }

    #[test]
    fn dropped_paths() {
        for p in [
            "dev/null",
            "dev/pts/0",
            "proc/1",
            "sys/kernel",
            ".dockerenv",
            "etc/hosts",
            "etc/mtab",
            "run/.containerenv",
        ] {
            assert!(is_dropped(p.as_bytes()), "{p}");
        }
        for p in ["dev", "proc", "sys", "etc", "run", "etc/hosts.allow", "device", "etc/hostnamectl", "usr/dev/x"] {
            assert!(!is_dropped(p.as_bytes()), "{p}");
        }
    }
}

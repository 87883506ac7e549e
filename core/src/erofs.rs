//! Entries of a source tree, handed over one by one → an EROFS image, in
//! one pass.
//!
//! EROFS is Linux's read-only filesystem (`fs/erofs`); since Linux 6.12 an
//! image in a regular file mounts without a loop device. repro-run keeps
//! a staged source tree as one such image (see the runner's `trees`
//! module): writing one 100 MB file costs a fraction of writing 10,000
//! small ones, and evicting it is one unlink.
//!
//! Only what a normalised source tar holds is written: directories, regular
//! files and symbolic links, with their mode, owner and mtime. The layout is
//! the simplest the format has, and every choice below is one the kernel
//! accepts since EROFS left staging (5.4):
//!
//! - 4096-byte blocks. Block 0 holds the superblock at byte 1024.
//! - File and link data first, from block 1, each starting on a block,
//!   uncompressed and contiguous (`EROFS_INODE_FLAT_PLAIN`), as it comes
//!   in: nothing is held back but the names.
//! - Then the metadata area: one 64-byte extended inode per entry (32-bit
//!   owner ids, 64-bit size and mtime), the root's first. An inode's nid is
//!   its offset in the area / 32; nids start at 2, so that no inode number
//!   is 0.
//! - Then the directories' blocks: 12-byte entries (nid, name offset, file
//!   type) followed by their names, `.` and `..` included, all sorted by
//!   name bytes across the directory's blocks (lookups bisect them). A
//!   directory's size is its whole blocks, as on ext4.
//!
//! The writer checks what it is given (a parent exists and is a directory,
//! no name twice, no name over 255 bytes) and fails with
//! [`ImageError`] rather than write an image the kernel would misread.

use std::collections::HashMap;
use std::io::{self, Seek, SeekFrom, Write};

/// Bytes in a block.
pub const BLOCK: u64 = 4096;
const MAGIC: u32 = 0xE0F5_E1E2;
const SUPER_OFFSET: u64 = 1024;
/// `EROFS_FEATURE_COMPAT_MTIME`: inode times are mtimes (the kernel does
/// not look at it; mkfs.erofs sets it).
const COMPAT_MTIME: u32 = 0x2;
const INODE_SIZE: u64 = 64;
const DIRENT_SIZE: usize = 12;
const FIRST_NID: u64 = 2;
const MAX_NAME: usize = 255;

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Writing the image failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An entry an image of sources cannot hold, or one out of order.
    #[error("`{path}`: {why}")]
    Entry {
        /// The entry's path, lossily shown.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

fn bad(path: &[u8], why: impl Into<String>) -> ImageError {
    ImageError::Entry { path: String::from_utf8_lossy(path).into_owned(), why: why.into() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

impl Kind {
    /// `S_IFMT` bits.
    fn format(self) -> u16 {
        match self {
            Kind::Dir => 0o040000,
            Kind::File => 0o100000,
            Kind::Symlink => 0o120000,
        }
    }

    /// `EROFS_FT_*`.
    fn file_type(self) -> u8 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 7,
        }
    }
}

/// What an entry is: its owner, permission bits and mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (the low 12 bits of the mode).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
}

struct Node {
    name: Vec<u8>,
    parent: usize,
    kind: Kind,
    meta: Meta,
    size: u64,
    /// First block of the data (files and links) or the entries (dirs).
    block: u64,
    /// Indexes of the entries of a directory.
    children: Vec<usize>,
}

/// Writes an EROFS image to `out`, entry by entry, parents first.
pub struct ImageWriter<W: Write + Seek> {
    out: W,
    nodes: Vec<Node>,
    /// Full path → index, for directories.
    dirs: HashMap<Vec<u8>, usize>,
    /// The next free block for data.
    next_block: u64,
    /// The file (or link) whose data is being written.
    open: Option<Open>,
}

/// A file whose data is being written.
struct Open {
    index: usize,
    /// Bytes still to come.
    left: u64,
}

impl<W: Write + Seek> ImageWriter<W> {
    /// An image whose root directory has `root`'s owner, mode and mtime.
    pub fn new(mut out: W, root: Meta) -> io::Result<Self> {
        out.seek(SeekFrom::Start(BLOCK))?;
        let node =
            Node { name: Vec::new(), parent: 0, kind: Kind::Dir, meta: root, size: 0, block: 0, children: Vec::new() };
        Ok(ImageWriter { out, nodes: vec![node], dirs: HashMap::from([(Vec::new(), 0)]), next_block: 1, open: None })
    }

    /// Adds the directory `path` (relative, `/`-separated).
    pub fn dir(&mut self, path: &[u8], meta: Meta) -> Result<(), ImageError> {
        let index = self.add(path, Kind::Dir, meta, 0)?;
        self.dirs.insert(trim(path).to_vec(), index);
        Ok(())
    }

    /// Adds the symbolic link `path` → `target`.
    pub fn symlink(&mut self, path: &[u8], target: &[u8], meta: Meta) -> Result<(), ImageError> {
        if target.is_empty() || target.len() as u64 > BLOCK {
            return Err(bad(path, format!("a link target of {} bytes (1 to {BLOCK} are allowed)", target.len())));
        }
        self.begin(path, Kind::Symlink, meta, target.len() as u64)?;
        self.append(target)?;
        self.end_file()
    }

    /// Adds the regular file `path` holding `data`.
    pub fn file(&mut self, path: &[u8], meta: Meta, data: &[u8]) -> Result<(), ImageError> {
        self.begin_file(path, meta, data.len() as u64)?;
        self.append(data)?;
        self.end_file()
    }

    /// Adds the regular file `path` of `size` bytes, whose data follows in
    /// [`ImageWriter::append`] calls until [`ImageWriter::end_file`].
    pub fn begin_file(&mut self, path: &[u8], meta: Meta, size: u64) -> Result<(), ImageError> {
        self.begin(path, Kind::File, meta, size)
    }

    fn begin(&mut self, path: &[u8], kind: Kind, meta: Meta, size: u64) -> Result<(), ImageError> {
        let index = self.add(path, kind, meta, size)?;
        self.nodes[index].block = if size == 0 { 0 } else { self.next_block };
        self.open = Some(Open { index, left: size });
        Ok(())
    }

    /// Writes the next bytes of the file begun last.
    pub fn append(&mut self, data: &[u8]) -> Result<(), ImageError> {
        let Some(open) = &mut self.open else {
            return Err(bad(b"", "data outside any file"));
        };
        if data.len() as u64 > open.left {
            let index = open.index;
            let size = self.nodes[index].size;
            return Err(bad(&self.path_of(index), format!("more data than the {size} bytes the tar says")));
        }
        open.left -= data.len() as u64;
        self.out.write_all(data)?;
        Ok(())
    }

    /// Ends the file begun last: all its bytes must have come.
    pub fn end_file(&mut self) -> Result<(), ImageError> {
        let Some(Open { index, left }) = self.open.take() else {
            return Ok(());
        };
        let size = self.nodes[index].size;
        if left > 0 {
            let path = self.path_of(index);
            return Err(bad(&path, format!("{} bytes of data where the tar says {size}", size - left)));
        }
        let blocks = size.div_ceil(BLOCK);
        let pad = blocks * BLOCK - size;
        if pad > 0 {
            self.out.seek(SeekFrom::Current(pad as i64))?;
        }
        self.next_block += blocks;
        Ok(())
    }

    fn add(&mut self, path: &[u8], kind: Kind, meta: Meta, size: u64) -> Result<usize, ImageError> {
        if let Some(open) = &self.open {
            let open = String::from_utf8_lossy(&self.path_of(open.index)).into_owned();
            return Err(bad(path, format!("it comes before the data of `{open}` ends")));
        }
        let path = trim(path);
        let (parent_path, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        if name.is_empty() || name == b"." || name == b".." || name.len() > MAX_NAME || name.contains(&0) {
            return Err(bad(path, "not a name an image can hold"));
        }
        let parent =
            *self.dirs.get(parent_path).ok_or_else(|| bad(path, "its directory came after it, or not at all"))?;
        let index = self.nodes.len();
        if self.nodes[parent].children.iter().any(|&c| self.nodes[c].name == name) {
            return Err(bad(path, "it is in the tar twice"));
        }
        self.nodes[parent].children.push(index);
        self.nodes.push(Node { name: name.to_vec(), parent, kind, meta, size, block: 0, children: Vec::new() });
        Ok(index)
    }

    fn path_of(&self, mut index: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        while index != 0 {
            parts.push(self.nodes[index].name.clone());
            index = self.nodes[index].parent;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// Writes the inodes, the directories and the superblock, and returns
    /// the output.
    pub fn finish(mut self) -> Result<W, ImageError> {
        self.end_file()?;
        let nid = |i: usize| FIRST_NID + 2 * i as u64;
        let meta_block = self.next_block;
        let meta_bytes = nid(self.nodes.len()) * 32;
        let mut next = meta_block + meta_bytes.div_ceil(BLOCK);

        // The directories' blocks, laid out after the inodes.
        let mut dir_blocks = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].kind != Kind::Dir {
                continue;
            }
            let node = &self.nodes[i];
            let mut entries: Vec<(&[u8], u64, u8)> =
                vec![(b".", nid(i), Kind::Dir.file_type()), (b"..", nid(node.parent), Kind::Dir.file_type())];
            entries.extend(
                node.children.iter().map(|&c| (&self.nodes[c].name[..], nid(c), self.nodes[c].kind.file_type())),
            );
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let (bytes, size) = dir_data(&entries);
            self.nodes[i].size = size;
            self.nodes[i].block = next;
            next += bytes.len() as u64 / BLOCK;
            dir_blocks.extend(bytes);
        }

        let mut meta = vec![0u8; (nid(0) * 32) as usize];
        for (i, node) in self.nodes.iter().enumerate() {
            let subdirs = node.children.iter().filter(|&&c| self.nodes[c].kind == Kind::Dir).count() as u32;
            let nlink = if node.kind == Kind::Dir { 2 + subdirs } else { 1 };
            meta.extend(inode(node, nid(i), nlink));
        }
        meta.resize(meta.len().next_multiple_of(BLOCK as usize), 0);

        self.out.seek(SeekFrom::Start(meta_block * BLOCK))?;
        self.out.write_all(&meta)?;
        self.out.write_all(&dir_blocks)?;
        let root_nid = u16::try_from(nid(0)).map_err(io::Error::other)?;
        let sb = superblock(root_nid, self.nodes.len() as u64, next, meta_block, self.nodes[0].meta.mtime)?;
        self.out.seek(SeekFrom::Start(SUPER_OFFSET))?;
        self.out.write_all(&sb)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// `path` without trailing slashes.
fn trim(path: &[u8]) -> &[u8] {
    let mut p = path;
    while let [rest @ .., b'/'] = p {
        p = rest;
    }
    p
}

/// The blocks of a directory of sorted `entries`, and its size.
fn dir_data(entries: &[(&[u8], u64, u8)]) -> (Vec<u8>, u64) {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut used = 0;
        while end < entries.len() && used + DIRENT_SIZE + entries[end].0.len() <= BLOCK as usize {
            used += DIRENT_SIZE + entries[end].0.len();
            end += 1;
        }
        let chunk = &entries[start..end];
        let mut block = Vec::with_capacity(BLOCK as usize);
        let mut name_off = DIRENT_SIZE * chunk.len();
        for (name, nid, file_type) in chunk {
            block.extend(nid.to_le_bytes());
            block.extend((name_off as u16).to_le_bytes());
            block.push(*file_type);
            block.push(0);
            name_off += name.len();
        }
        for (name, _, _) in chunk {
            block.extend(*name);
        }
        blocks.push(block);
        start = end;
    }
    // Whole blocks, the last one padded with zeros (a name ends at a zero
    // or at the block's end): directories then show the size they have on
    // ext4 and most disk filesystems, 4096 bytes for a small one.
    let size = blocks.len() as u64 * BLOCK;
    let mut bytes = Vec::with_capacity(blocks.len() * BLOCK as usize);
    for mut b in blocks {
        b.resize(BLOCK as usize, 0);
        bytes.extend(b);
    }
    (bytes, size)
}

/// An extended inode (`struct erofs_inode_extended`), flat plain layout.
fn inode(node: &Node, nid: u64, nlink: u32) -> [u8; INODE_SIZE as usize] {
    let mut b = [0u8; INODE_SIZE as usize];
    b[0..2].copy_from_slice(&1u16.to_le_bytes()); // extended, EROFS_INODE_FLAT_PLAIN
    b[4..6].copy_from_slice(&(node.kind.format() | (node.meta.mode & 0o7777)).to_le_bytes());
    b[8..16].copy_from_slice(&node.size.to_le_bytes());
    b[16..20].copy_from_slice(&(node.block as u32).to_le_bytes());
    b[20..24].copy_from_slice(&(nid as u32).to_le_bytes());
    b[24..28].copy_from_slice(&node.meta.uid.to_le_bytes());
    b[28..32].copy_from_slice(&node.meta.gid.to_le_bytes());
    b[32..40].copy_from_slice(&node.meta.mtime.to_le_bytes());
    b[44..48].copy_from_slice(&nlink.to_le_bytes());
    b
}

/// `struct erofs_super_block`.
fn superblock(root_nid: u16, inodes: u64, blocks: u64, meta_block: u64, time: u64) -> io::Result<[u8; 128]> {
    let too_big = |_| io::Error::other("the image would need more than 2^32 blocks");
    let mut b = [0u8; 128];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[8..12].copy_from_slice(&COMPAT_MTIME.to_le_bytes());
    b[12] = BLOCK.trailing_zeros() as u8;
    b[14..16].copy_from_slice(&root_nid.to_le_bytes());
    b[16..24].copy_from_slice(&inodes.to_le_bytes());
    b[24..32].copy_from_slice(&time.to_le_bytes());
    b[36..40].copy_from_slice(&u32::try_from(blocks).map_err(too_big)?.to_le_bytes());
    b[40..44].copy_from_slice(&u32::try_from(meta_block).map_err(too_big)?.to_le_bytes());
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Meta = Meta { mode: 0o755, uid: 1000, gid: 1000, mtime: 1_700_000_000 };

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// A minimal reader of what [`ImageWriter`] writes: the entries of the
    /// directory at `nid`, as (name, nid, file type).
    fn read_dir(img: &[u8], nid: u64) -> Vec<(Vec<u8>, u64, u8)> {
        let meta = u32_at(img, 1024 + 40) as u64 * BLOCK;
        let ino = (meta + nid * 32) as usize;
        let size = u64_at(img, ino + 8);
        let block = u32_at(img, ino + 16) as u64;
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < size {
            let b = &img[(block * BLOCK + pos) as usize..][..BLOCK as usize];
            let max = (size - pos).min(BLOCK) as usize;
            let n = u16_at(b, 8) as usize / DIRENT_SIZE;
            for k in 0..n {
                let e = &b[k * DIRENT_SIZE..];
                let off = u16_at(e, 8) as usize;
                let end = if k + 1 < n { u16_at(&b[(k + 1) * DIRENT_SIZE..], 8) as usize } else { max };
                let name = b[off..end].iter().copied().take_while(|&c| c != 0).collect();
                out.push((name, u64_at(e, 0), e[10]));
            }
            pos += BLOCK;
        }
        out
    }

    fn image(build: impl FnOnce(&mut ImageWriter<io::Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut w = ImageWriter::new(io::Cursor::new(Vec::new()), M).unwrap();
        build(&mut w);
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn the_superblock_and_the_root_are_where_the_kernel_looks() {
        let img = image(|w| {
            w.dir(b"src/", M).unwrap();
            w.file(b"src/a", Meta { mode: 0o644, ..M }, b"hello").unwrap();
        });
        assert_eq!(img.len() % BLOCK as usize, 0);
        assert_eq!(u32_at(&img, 1024), MAGIC);
        assert_eq!(img[1024 + 12], 12, "4096-byte blocks");
        let blocks = u32_at(&img, 1024 + 36) as usize;
        assert_eq!(blocks * BLOCK as usize, img.len());
        assert_eq!(u64_at(&img, 1024 + 16), 3, "three inodes");
        let root = u16_at(&img, 1024 + 14) as u64;
        assert_eq!(root, FIRST_NID);
        let entries = read_dir(&img, root);
        let names: Vec<_> = entries.iter().map(|e| e.0.clone()).collect();
        assert_eq!(names, [b".".to_vec(), b"..".to_vec(), b"src".to_vec()]);
        assert_eq!((entries[0].1, entries[1].1), (root, root), ". and .. of the root are the root");
        let src = read_dir(&img, entries[2].1);
        assert_eq!(src[2].0, b"a");
        assert_eq!(src[2].2, 1, "a regular file");
        // The file's inode and data.
        let meta = u32_at(&img, 1024 + 40) as usize * BLOCK as usize;
        let ino = meta + src[2].1 as usize * 32;
        assert_eq!(u16_at(&img, ino), 1, "extended, flat plain");
        assert_eq!(u16_at(&img, ino + 4), 0o100644);
        assert_eq!(u64_at(&img, ino + 8), 5);
        assert_eq!((u32_at(&img, ino + 24), u32_at(&img, ino + 28)), (1000, 1000));
        assert_eq!(u64_at(&img, ino + 32), 1_700_000_000);
        assert_eq!(u32_at(&img, ino + 44), 1, "nlink");
        let data = u32_at(&img, ino + 16) as usize * BLOCK as usize;
        assert_eq!(&img[data..data + 5], b"hello");
        // A directory's links: 2 plus its subdirectories.
        assert_eq!(u32_at(&img, meta + root as usize * 32 + 44), 3);
    }

    #[test]
    fn a_large_directory_spans_blocks_sorted_with_dot_entries() {
        let names: Vec<Vec<u8>> = (0..600).map(|i| format!("+file-with-a-longish-name-{i:04}").into_bytes()).collect();
        let img = image(|w| {
            for n in names.iter().rev() {
                w.symlink(n, b"target", M).unwrap();
            }
        });
        let entries = read_dir(&img, FIRST_NID);
        let mut want: Vec<Vec<u8>> = names.clone();
        want.push(b".".to_vec());
        want.push(b"..".to_vec());
        want.sort();
        assert_eq!(want[0][0], b'+', "'+' sorts before '.'");
        assert_eq!(entries.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), want);
        assert!(entries.iter().filter(|e| e.0[0] == b'+').all(|e| e.2 == 7), "all links");
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut w = ImageWriter::new(io::Cursor::new(Vec::new()), M).unwrap();
        w.dir(b"d", M).unwrap();
        let msg = |e: ImageError| e.to_string();
        assert!(msg(w.dir(b"d", M).unwrap_err()).contains("twice"));
        assert!(msg(w.dir(b"x/y", M).unwrap_err()).contains("its directory came after it"));
        assert!(msg(w.dir(&[b'n'; 256], M).unwrap_err()).contains("not a name"));
        w.begin_file(b"d/f", M, 9).unwrap();
        w.append(b"short").unwrap();
        assert!(msg(w.end_file().unwrap_err()).contains("5 bytes of data where the tar says 9"));
        w.begin_file(b"d/g", M, 4).unwrap();
        w.append(b"ab").unwrap();
        assert!(msg(w.dir(b"d/h", M).unwrap_err()).contains("before the data of `d/g` ends"));
        assert!(msg(w.append(b"cde").unwrap_err()).contains("more data than the 4 bytes"));
        assert!(msg(w.finish().unwrap_err()).contains("2 bytes of data where the tar says 4"));
    }

    #[test]
    fn data_in_pieces_is_the_same_image() {
        let whole = image(|w| w.file(b"f", M, &[7u8; 5000]).unwrap());
        let pieces = image(|w| {
            w.begin_file(b"f", M, 5000).unwrap();
            for _ in 0..5 {
                w.append(&[7u8; 1000]).unwrap();
            }
            w.end_file().unwrap();
        });
        assert_eq!(whole, pieces);
    }

    #[test]
    fn a_file_of_several_blocks_is_one_run_of_blocks() {
        let img = image(|w| {
            w.dir(b"src/", Meta { mtime: 7, ..M }).unwrap();
            w.file(b"src/big", Meta { mode: 0o644, mtime: 7, ..M }, &[b'z'; 10_000]).unwrap();
        });
        let src = read_dir(&img, FIRST_NID).into_iter().find(|e| e.0 == b"src").unwrap();
        let big = read_dir(&img, src.1).into_iter().find(|e| e.0 == b"big").unwrap();
        let meta = u32_at(&img, 1024 + 40) as usize * BLOCK as usize;
        let ino = meta + big.1 as usize * 32;
        assert_eq!(u64_at(&img, ino + 8), 10_000);
        let data = u32_at(&img, ino + 16) as usize * BLOCK as usize;
        assert!(img[data..data + 10_000].iter().all(|&c| c == b'z'));
        assert_eq!(u64_at(&img, ino + 32), 7);
    }
}

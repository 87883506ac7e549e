//! Reading a tar stream into a [`Tree`], hashing content as it streams.
//!
//! The `tar` crate does the framing (GNU long names, pax records, GNU sparse
//! files). Two things it leaves open are closed here, because the input may
//! be hostile: the headers of one entry may not grow past
//! [`HEADER_LIMIT`] (the crate keeps long names and pax records in memory),
//! and the stream must end with its end-of-archive block, so that a stream
//! cut at an entry boundary is an error rather than a smaller tree.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::rc::Rc;

use super::tree::{counts_xattr, normalize, Node, Record, Tree};
use super::{show, Digest, TreeError, TreeKind};

/// The most header bytes read for one entry: its own 512-byte header, GNU
/// long name and long link records, its pax record and GNU sparse map
/// blocks. Real archives need a few KiB (a path is at most 4 KiB, an xattr
/// value 64 KiB). The limit also bounds time: the `tar` crate's handling of
/// a sparse map is quadratic in its length (256 KiB of map: 0.3 s; 1 MiB:
/// 5 s).
pub(crate) const HEADER_LIMIT: u64 = 256 << 10;

/// How much is read after the end-of-archive block, so that a gzip
/// trailer (its CRC) gets checked; the rest, if any, is left unread.
const TRAILER_LIMIT: u64 = 16 << 20;

/// The buffer content is hashed through.
const CHUNK: usize = 64 * 1024;

pub(crate) fn digest<R: Read>(mut reader: R, kind: TreeKind, root: &[u8]) -> Result<Digest, TreeError> {
    let mut head = vec![0u8; 512];
    let n =
        read_up_to(&mut reader, &mut head).map_err(|source| TreeError::Io { what: "the tar stream".into(), source })?;
    head.truncate(n);
    if n == 0 {
        return Err(TreeError::Empty);
    }
    if !is_tar_header(&head) {
        for (format, magic) in [("xz", &b"\xfd7zXZ\0"[..]), ("zstd", b"\x28\xb5\x2f\xfd"), ("bzip2", b"BZh")] {
            if head.starts_with(magic) {
                return Err(TreeError::UnsupportedCompression { format });
            }
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            let stream = io::Cursor::new(head).chain(reader);
            return read_tar(flate2::read::MultiGzDecoder::new(stream), kind, root);
        }
    }
    let stream = io::Cursor::new(head).chain(reader);
    read_tar(stream, kind, root)
}

/// A 512-byte block whose checksum field matches: a tar header, so any
/// magic bytes at its start are just the first entry's name.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let field = &block[148..156];
    let digits: Vec<u8> =
        field.iter().copied().skip_while(|&b| b == b' ').take_while(|b| (b'0'..=b'7').contains(b)).collect();
    let Some(stored) = std::str::from_utf8(&digits).ok().and_then(|s| u32::from_str_radix(s, 8).ok()) else {
        return false;
    };
    let sum: u32 =
        block[..512].iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    sum == stored
}

fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Shared between the loop below and the reader the `tar` crate owns.
#[derive(Default)]
struct Watch {
    /// Bytes the `tar` crate may still read for the current headers, while
    /// it looks for the next entry; `None` while content is read.
    budget: Cell<Option<u64>>,
    /// The budget ran out.
    over: Cell<bool>,
    /// A read returned end of stream.
    eof: Cell<bool>,
    /// Bytes read in all.
    total: Cell<u64>,
}

struct Watched<R> {
    inner: R,
    watch: Rc<Watch>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let budget = self.watch.budget.get();
        let len = match budget {
            Some(0) if !buf.is_empty() => {
                self.watch.over.set(true);
                return Err(io::Error::other("tar header limit exceeded"));
            }
            Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..len])?;
        if n == 0 && len > 0 {
            self.watch.eof.set(true);
        }
        if let Some(left) = budget {
            self.watch.budget.set(Some(left.saturating_sub(n as u64)));
        }
        self.watch.total.set(self.watch.total.get() + n as u64);
        Ok(n)
    }
}

fn position(last: &Option<Vec<u8>>) -> String {
    match last {
        None => "at the first entry".to_owned(),
        Some(path) => format!("after entry `{}`", show(path)),
    }
}

fn read_tar<R: Read>(reader: R, kind: TreeKind, root: &[u8]) -> Result<Digest, TreeError> {
    let watch = Rc::new(Watch::default());
    let mut archive = tar::Archive::new(Watched { inner: reader, watch: Rc::clone(&watch) });
    let mut tree = Tree::new(kind);
    let mut buf = vec![0u8; CHUNK];
    let mut last: Option<Vec<u8>> = None;
    {
        let mut entries =
            archive.entries().map_err(|source| TreeError::Corrupt { position: position(&last), source })?;
        loop {
            watch.budget.set(Some(HEADER_LIMIT));
            let next = entries.next();
            watch.budget.set(None);
            let entry = match next {
                None => break,
                Some(Ok(entry)) => entry,
                Some(Err(_)) if watch.over.get() => {
                    return Err(TreeError::MetadataTooLarge { position: position(&last), limit: HEADER_LIMIT })
                }
                Some(Err(source)) => return Err(TreeError::Corrupt { position: position(&last), source }),
            };
            last = Some(read_entry(entry, &mut tree, &mut buf)?);
        }
    }
    if watch.eof.get() {
        if watch.total.get() == 0 {
            return Err(TreeError::Empty);
        }
        return Err(TreeError::MissingEnd { position: position(&last) });
    }
    let mut rest = archive.into_inner().take(TRAILER_LIMIT);
    io::copy(&mut rest, &mut io::sink())
        .map_err(|source| TreeError::Io { what: "the end of the tar stream".into(), source })?;
    tree.finish(root)
}

/// Counts (and, with a hasher, hashes) an entry's data; the count must be
/// the size its header declares.
fn consume<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    buf: &mut [u8],
    mut hasher: Option<&mut blake3::Hasher>,
    path: &[u8],
) -> Result<u64, TreeError> {
    let expected = entry.size();
    let mut actual = 0u64;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(TreeError::Io { what: format!("tar entry `{}`", show(path)), source }),
        };
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&buf[..n]);
        }
        actual += n as u64;
    }
    if actual != expected {
        return Err(TreeError::Truncated { path: show(path), expected, actual });
    }
    Ok(actual)
}

/// Reads one entry into the tree; returns its path as found, for messages.
fn read_entry<R: Read>(mut entry: tar::Entry<'_, R>, tree: &mut Tree, buf: &mut [u8]) -> Result<Vec<u8>, TreeError> {
    let raw_path = entry.path_bytes().into_owned();
    let type_flag = entry.header().as_bytes()[156];

    // Global pax records and volume labels describe the archive, not a file;
    // the `tar` crate ignores them when extracting, and so does the digest.
    if matches!(type_flag, b'g' | b'V') {
        consume(&mut entry, buf, None, &raw_path)?;
        return Ok(raw_path);
    }

    let bad = |field: &'static str| {
        let path = show(&raw_path);
        move |source| TreeError::BadHeader { path, field, source }
    };
    let header = entry.header();
    let mode = header.mode().map_err(bad("mode"))?;
    let uid = header.uid().map_err(bad("uid"))?;
    let gid = header.gid().map_err(bad("gid"))?;
    let device = match type_flag {
        b'3' | b'4' => {
            let major = header.device_major().map_err(bad("device major"))?.unwrap_or(0);
            let minor = header.device_minor().map_err(bad("device minor"))?.unwrap_or(0);
            (major, minor)
        }
        _ => (0, 0),
    };
    let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();

    let mut xattrs = BTreeMap::new();
    let mut pax_sparse = false;
    if let Some(records) = entry.pax_extensions().map_err(bad("pax record"))? {
        for record in records {
            let record = record.map_err(bad("pax record"))?;
            let key = record.key_bytes();
            pax_sparse |= key.starts_with(b"GNU.sparse.");
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                if counts_xattr(name) {
                    xattrs.insert(name.to_vec(), record.value_bytes().to_vec());
                }
            }
        }
    }
    let xattrs: Vec<_> = xattrs.into_iter().collect();
    let path = normalize(&raw_path)?;

    let node = match type_flag {
        // An old-style (NUL type) entry named with a trailing slash is a
        // directory, as Go's archive/tar (and so Docker's import) reads it.
        b'\0' if raw_path.ends_with(b"/") => {
            consume(&mut entry, buf, None, &raw_path)?;
            Node::Dir
        }
        b'0' | b'\0' | b'7' | b'S' => {
            if pax_sparse {
                return Err(TreeError::PaxSparse { path: show(&raw_path) });
            }
            let mut hasher = blake3::Hasher::new();
            let size = consume(&mut entry, buf, Some(&mut hasher), &raw_path)?;
            Node::File { size, hash: *hasher.finalize().as_bytes() }
        }
        b'1' => {
            consume(&mut entry, buf, None, &raw_path)?;
            let target = normalize(&link)?;
            tree.link(path, &target)?;
            return Ok(raw_path);
        }
        b'2' => {
            consume(&mut entry, buf, None, &raw_path)?;
            Node::Symlink(link)
        }
        b'3' => {
            consume(&mut entry, buf, None, &raw_path)?;
            Node::Char { major: device.0, minor: device.1 }
        }
        b'4' => {
            consume(&mut entry, buf, None, &raw_path)?;
            Node::Block { major: device.0, minor: device.1 }
        }
        b'5' => {
            consume(&mut entry, buf, None, &raw_path)?;
            Node::Dir
        }
        b'6' => {
            consume(&mut entry, buf, None, &raw_path)?;
            Node::Fifo
        }
        other => {
            return Err(TreeError::UnsupportedEntryType {
                path: show(&raw_path),
                kind: std::ascii::escape_default(other).to_string(),
            })
        }
    };
    tree.insert(path, Record::new(node, mode, uid, gid, xattrs));
    Ok(raw_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_header_detection() {
        let mut header = tar::Header::new_gnu();
        header.set_path("\u{1f}\u{8b}looks-like-gzip").ok();
        header.set_size(0);
        header.set_cksum();
        assert!(is_tar_header(header.as_bytes()));
        let mut bad = *header.as_bytes();
        bad[0] ^= 1;
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0u8; 100]));
    }
}

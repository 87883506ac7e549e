//! Walking a directory into a [`Tree`]; symlinks are never followed.
//!
//! The walk uses an explicit stack (a deep tree cannot overflow the call
//! stack) and hashes each file as it reads it. Hardlinks are found by
//! `(device, inode)` among the files walked, and go through the same
//! [`Tree::link`] as a tar hardlink, so both readers group them alike.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;

use super::tree::{counts_xattr, is_dropped, Node, Record, Tree, Xattrs};
use super::{Digest, TreeError, TreeKind, CAPABILITY_XATTR};

/// fs-err's messages name the path already.
fn io_error(source: io::Error) -> TreeError {
    TreeError::Io { what: "the directory tree".to_owned(), source }
}

pub(crate) fn digest(root: &Path, kind: TreeKind) -> Result<Digest, TreeError> {
    let meta = fs::metadata(root).map_err(io_error)?;
    if !meta.is_dir() {
        return Err(TreeError::NotADirectory { path: root.display().to_string() });
    }
    let mut tree = Tree::new(kind);
    let mut first_name: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        for dirent in fs::read_dir(&dir).map_err(io_error)? {
            let dirent = dirent.map_err(io_error)?;
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&dirent.file_name().into_vec());
            // Not even read: a live rootfs has /proc and /sys here.
            if tree.kind() == TreeKind::Rootfs && is_dropped(&child) {
                continue;
            }
            let path = dirent.path();
            let meta = fs::symlink_metadata(&path).map_err(io_error)?;
            let file_type = meta.file_type();
            if file_type.is_socket() {
                // Tar cannot carry a socket, and neither engine exports one.
                continue;
            }
            // Another name of an inode already seen: a hardlink, whatever
            // the inode is (GNU tar links fifos and symlinks too).
            if !file_type.is_dir() && meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = first_name.get(&key) {
                    tree.link(child, first)?;
                    continue;
                }
                first_name.insert(key, child.clone());
            }
            let node = if file_type.is_dir() {
                stack.push((path.clone(), child.clone()));
                Node::Dir
            } else if file_type.is_symlink() {
                let target = fs::read_link(&path).map_err(io_error)?;
                Node::Symlink(target.into_os_string().into_vec())
            } else if file_type.is_file() {
                hash_file(&path, &mut buf)?
            } else if file_type.is_char_device() {
                let (major, minor) = device_numbers(&meta);
                Node::Char { major, minor }
            } else if file_type.is_block_device() {
                let (major, minor) = device_numbers(&meta);
                Node::Block { major, minor }
            } else {
                Node::Fifo
            };
            let xattrs = read_xattrs(&path)?;
            tree.insert(child, Record::new(node, meta.mode(), u64::from(meta.uid()), u64::from(meta.gid()), xattrs));
        }
    }
    tree.finish(b"")
}

#[allow(clippy::unnecessary_cast)] // dev_t is u64 on Linux, i32 on macOS
fn device_numbers(meta: &std::fs::Metadata) -> (u32, u32) {
    let rdev = meta.rdev() as libc::dev_t;
    (libc::major(rdev) as u32, libc::minor(rdev) as u32)
}

fn hash_file(path: &Path, buf: &mut [u8]) -> Result<Node, TreeError> {
    // O_NOFOLLOW: if the file was swapped for a symlink since it was
    // looked at, fail rather than hash what the link points to.
    let mut file = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(io_error)?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(TreeError::Io { what: format!("`{}`", path.display()), source });
            }
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Node::File { size, hash: *hasher.finalize().as_bytes() })
}

/// The xattrs that count, read without following a symlink (`lgetxattr`).
/// A file system without xattr support has none.
fn read_xattrs(path: &Path) -> Result<Xattrs, TreeError> {
    let name = OsString::from_vec(CAPABILITY_XATTR.to_vec());
    debug_assert!(counts_xattr(CAPABILITY_XATTR));
    match xattr::get(path, &name) {
        Ok(Some(value)) => Ok(vec![(CAPABILITY_XATTR.to_vec(), value)]),
        Ok(None) => Ok(Vec::new()),
        Err(e) if unsupported(&e) => Ok(Vec::new()),
        Err(source) => Err(TreeError::Io { what: format!("the xattrs of `{}`", path.display()), source }),
    }
}

fn unsupported(e: &io::Error) -> bool {
    // ENOTSUP and EOPNOTSUPP are one value on Linux, two on some BSDs.
    let code = e.raw_os_error();
    code == Some(libc::ENOTSUP) || code == Some(libc::EOPNOTSUPP) || e.kind() == io::ErrorKind::Unsupported
}

//! A file written with direct I/O (`O_DIRECT`), in aligned pieces, by a
//! thread of its own.
//!
//! Why: a new kept source tree (see [`super::trees`]) is a 100 MB file
//! written just before the container starts. Written through the page
//! cache, it would sit there dirty, and the engine syncs the disk when it
//! starts a container (Docker and Podman unmount an overlay then, and that
//! flushes the whole filesystem): the build would wait there for all of it
//! (the run phase of 5b in `docs/bench.md` shows it). Written
//! directly, the data reaches the disk while the sources are still being
//! read and hashed, from a thread that mostly waits for the device, and
//! nothing is left for the engine to flush.
//!
//! Direct I/O wants the memory, the file offset and the length of each
//! write aligned to the disk's blocks, so this writer collects what it is
//! given into [`PIECE`]-byte buffers aligned to [`ALIGN`], and hands whole
//! buffers to the thread. It is made for a writer that goes forward, as
//! [`repro_run_core::erofs::ImageWriter`] does: a seek forward leaves
//! zeros, and the only way back is into the first block, which is held in
//! memory and written last (the image's superblock goes there once the
//! rest is known).
//!
//! Where the filesystem refuses direct I/O (`EINVAL`: tmpfs before Linux
//! 6.6, some FUSE filesystems), the same writes go through the page cache.

use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt as _;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rustix::fs::OFlags;

/// The alignment of buffers, offsets and lengths.
pub const ALIGN: usize = 4096;
/// Bytes in one write.
const PIECE: usize = 2 << 20;
/// Buffers: one being filled, the others being written.
const BUFFERS: usize = 4;

/// One aligned block of memory.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(4096))]
struct Page([u8; ALIGN]);

/// An aligned buffer of [`PIECE`] bytes.
type Buffer = Vec<Page>;

fn new_buffer() -> Buffer {
    vec![Page([0; ALIGN]); PIECE / ALIGN]
}

/// A buffer to write at an offset, and how much of it holds data.
struct Piece {
    offset: u64,
    buf: Buffer,
    len: usize,
}

/// Writes a file forward, in aligned pieces, on a thread of its own.
pub struct DirectWriter {
    file: fs_err::File,
    /// Whether the file is open with `O_DIRECT`.
    direct: bool,
    /// The first block, written last.
    head: Box<Page>,
    /// The buffer being filled, and the file offset of its first byte.
    cur: Buffer,
    base: u64,
    /// Bytes of `cur` that hold data (or zeros that stand for a gap).
    len: usize,
    /// Where the next write goes.
    pos: u64,
    /// The end of what was written.
    end: u64,
    to_io: Option<SyncSender<Piece>>,
    free: Receiver<Buffer>,
    io: Option<JoinHandle<io::Result<()>>>,
}

impl DirectWriter {
    /// Writes `file` (empty, open for writing) from its start.
    pub fn new(file: fs_err::File) -> io::Result<DirectWriter> {
        let direct = set_direct(&file);
        let (to_io, pieces) = sync_channel::<Piece>(BUFFERS);
        let (give_back, free) = sync_channel::<Buffer>(BUFFERS);
        for _ in 1..BUFFERS {
            give_back.send(new_buffer()).map_err(io::Error::other)?;
        }
        let out = file.file().try_clone()?;
        let path = file.path().to_owned();
        let io = std::thread::Builder::new().name("direct-write".into()).spawn(move || -> io::Result<()> {
            for Piece { offset, buf, len } in pieces {
                let bytes: &[u8] = bytemuck::cast_slice(&buf);
                write_at(&out, &bytes[..len.next_multiple_of(ALIGN)], offset)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
                // The writer may have stopped; then the buffer is not needed.
                let _ = give_back.send(buf);
            }
            Ok(())
        })?;
        Ok(DirectWriter {
            file,
            direct,
            head: Box::new(Page([0; ALIGN])),
            cur: new_buffer(),
            base: ALIGN as u64,
            len: 0,
            pos: 0,
            end: 0,
            to_io: Some(to_io),
            free,
            io: Some(io),
        })
    }

    /// Whether the writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Hands the filled buffer to the thread and takes an empty one.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.cur);
        // A buffer comes back with old data: the tail of the last block
        // must be zeros.
        bytes[self.len..self.len.next_multiple_of(ALIGN)].fill(0);
        let next = match self.free.recv() {
            Ok(buf) => buf,
            Err(_) => return Err(self.io_failure()),
        };
        let buf = std::mem::replace(&mut self.cur, next);
        let piece = Piece { offset: self.base, buf, len: self.len };
        let sent = self.to_io.as_ref().map(|tx| tx.send(piece).is_ok());
        if sent != Some(true) {
            return Err(self.io_failure());
        }
        self.base += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// The writing thread's error, once it has stopped.
    fn io_failure(&mut self) -> io::Error {
        self.to_io = None;
        match self.io.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the writing thread panicked"),
            _ => io::Error::other("the writing thread stopped"),
        }
    }

    /// Writes what is left, then the first block, and waits for all of it.
    /// The file is at least one block long.
    pub fn finish(mut self) -> io::Result<()> {
        self.hand_over()?;
        self.to_io = None;
        match self.io.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            Some(Err(_)) => return Err(io::Error::other("the writing thread panicked")),
            None => return Err(io::Error::other("the writing thread stopped")),
        }
        self.file.file().write_all_at(&self.head.0, 0).map_err(|e| self.named(e))?;
        // Whole blocks were written; the file ends where the data does.
        self.file.file().set_len(self.end.max(ALIGN as u64)).map_err(|e| self.named(e))
    }

    fn named(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("cannot write {}: {e}", self.file.path().display()))
    }
}

impl Drop for DirectWriter {
    /// Unfinished (an error stopped the writing): the thread writes what it
    /// was given, and ends before the file is dropped.
    fn drop(&mut self) {
        self.to_io = None;
        if let Some(io) = self.io.take() {
            let _ = io.join();
        }
    }
}

/// Writes `bytes` at `offset`. A disk whose blocks are larger than
/// [`ALIGN`] refuses an aligned-to-4096 direct write with `EINVAL`: then
/// direct I/O is turned off for the file and the write goes through the
/// page cache.
fn write_at(out: &std::fs::File, bytes: &[u8], offset: u64) -> io::Result<()> {
    match out.write_all_at(bytes, offset) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            let flags = rustix::fs::fcntl_getfl(out)?;
            if !flags.contains(OFlags::DIRECT) {
                return Err(e);
            }
            tracing::debug!("direct I/O refused a write ({e}); writing through the page cache");
            rustix::fs::fcntl_setfl(out, flags - OFlags::DIRECT)?;
            out.write_all_at(bytes, offset)
        }
        other => other,
    }
}

/// Turns direct I/O on for `file`; false where the filesystem refuses it.
fn set_direct(file: &fs_err::File) -> bool {
    let on = rustix::fs::fcntl_getfl(file).and_then(|flags| rustix::fs::fcntl_setfl(file, flags | OFlags::DIRECT));
    if let Err(e) = &on {
        tracing::debug!("writing {} through the page cache: no direct I/O there ({e})", file.path().display());
    }
    on.is_ok()
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.pos < ALIGN as u64 {
            let at = self.pos as usize;
            let n = data.len().min(ALIGN - at);
            self.head.0[at..at + n].copy_from_slice(&data[..n]);
            self.pos += n as u64;
            self.end = self.end.max(self.pos);
            return Ok(n);
        }
        if self.pos < self.base {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("cannot go back to byte {} of {}: it is written already", self.pos, self.file.path().display()),
            ));
        }
        let mut at = (self.pos - self.base) as usize;
        if at >= PIECE {
            // A gap past this buffer: zeros up to its end, then on.
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.cur);
            bytes[self.len..].fill(0);
            self.len = PIECE;
            self.hand_over()?;
            return self.write(data);
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.cur);
        if at > self.len {
            bytes[self.len..at].fill(0);
        }
        let n = data.len().min(PIECE - at);
        bytes[at..at + n].copy_from_slice(&data[..n]);
        at += n;
        self.len = self.len.max(at);
        self.pos += n as u64;
        self.end = self.end.max(self.pos);
        if self.len == PIECE {
            self.hand_over()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for DirectWriter {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `ops` with a [`DirectWriter`] and with a plain file, and
    /// compares the two files.
    fn same_as_a_plain_file(dir: &std::path::Path, ops: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let direct = dir.join("direct");
        let plain = dir.join("plain");
        let mut w = DirectWriter::new(fs_err::File::create(&direct).unwrap()).unwrap();
        // ext4 (as in CI) takes direct I/O.
        const EXT4: i64 = 0xEF53;
        if rustix::fs::statfs(dir).unwrap().f_type as i64 == EXT4 {
            assert!(w.is_direct(), "no direct I/O on ext4 at {}", dir.display());
        }
        let mut p = fs_err::File::create(&plain).unwrap();
        for (at, data) in ops {
            w.seek(SeekFrom::Start(*at)).unwrap();
            w.write_all(data).unwrap();
            p.seek(SeekFrom::Start(*at)).unwrap();
            p.write_all(data).unwrap();
        }
        w.finish().unwrap();
        let (d, p) = (fs_err::read(&direct).unwrap(), fs_err::read(&plain).unwrap());
        assert_eq!(d.len(), p.len());
        assert!(d == p, "the files differ");
        d
    }

    #[test]
    fn writes_the_same_bytes_as_a_plain_file() {
        // On the disk the tests run on (direct I/O), and on /dev/shm where
        // there is one (direct I/O or the page cache, by kernel).
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            dirs.push(shm);
        }
        let big: Vec<u8> = (0..PIECE * 2 + 1234).map(|i| (i % 251) as u8).collect();
        for dir in &dirs {
            // As an image is written: data from the second block with gaps
            // (padding), a gap of several pieces, the first block last.
            let ops = vec![
                (4096, b"first".to_vec()),
                (8192, big.clone()),
                (8192 + big.len() as u64 + 100, b"after a gap".to_vec()),
                ((PIECE * 5) as u64 + 7, b"far on".to_vec()),
                (1024, b"superblock".to_vec()),
            ];
            let bytes = same_as_a_plain_file(dir.path(), &ops);
            assert_eq!(&bytes[1024..1034], b"superblock");
            // Ends exactly where the data does, not on a block.
            assert_eq!(bytes.len(), PIECE * 5 + 7 + 6);
        }
    }

    #[test]
    fn a_write_direct_io_refuses_goes_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = fs_err::File::create(dir.path().join("f")).unwrap();
        assert!(set_direct(&file), "{} takes no direct I/O: run the tests on ext4, xfs or btrfs", dir.path().display());
        // Misaligned on purpose: one byte in from an aligned buffer.
        let page = Page([7; ALIGN]);
        write_at(file.file(), &page.0[1..], 1).unwrap();
        assert!(!rustix::fs::fcntl_getfl(&file).unwrap().contains(OFlags::DIRECT), "direct I/O is off now");
        assert_eq!(fs_err::read(dir.path().join("f")).unwrap(), [&[0u8][..], &[7; ALIGN - 1]].concat());
    }

    #[test]
    fn a_failed_write_is_reported_with_the_path() {
        // /dev/full refuses every write with ENOSPC.
        let full = fs_err::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let mut w = DirectWriter::new(full).unwrap();
        w.seek(SeekFrom::Start(4096)).unwrap();
        let written = w.write_all(&vec![1u8; PIECE * (BUFFERS + 2)]).and_then(|()| w.finish());
        let err = written.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
        assert!(err.to_string().contains("cannot write /dev/full"), "{err}");
    }

    #[test]
    fn only_the_first_block_can_be_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DirectWriter::new(fs_err::File::create(dir.path().join("f")).unwrap()).unwrap();
        w.seek(SeekFrom::Start(4096)).unwrap();
        w.write_all(&vec![1u8; PIECE + 10]).unwrap();
        w.seek(SeekFrom::Start(5000)).unwrap();
        let err = w.write(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("cannot go back to byte 5000"), "{err}");
        w.seek(SeekFrom::Start(0)).unwrap();
        w.write_all(b"head").unwrap();
        w.finish().unwrap();
        assert_eq!(fs_err::read(dir.path().join("f")).unwrap()[..4], *b"head");
    }
}

//! Comparing two output trees on disk, path by path.
//!
//! Memory stays small whatever the trees hold: files of equal size are
//! compared streaming on a few threads (a fixed buffer per side, stopping at the first
//! difference, which is cheaper than hashing both), and only files that
//! differ are read whole, when at most [`MAX_IN_MEMORY`] each; larger ones
//! get their byte ranges computed streaming.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::bytes::{add_window, hex_line, hex_start, looks_random, windows, RangeFinder, HEX_WINDOW};
use super::causes::{guess, Evidence};
use super::members::mode_string;
use super::{detect, explain, Change, Context, Detail, Explanation, FileDifference, TreeComparison, MAX_IN_MEMORY};

/// The buffer each side is read with.
const CHUNK: usize = 256 << 10;
/// The most threads comparing files at once: past a few, the disk (or the
/// memory bus, for files in the page cache) is the limit.
const MAX_WORKERS: usize = 8;

/// What one path in a tree is.
#[derive(Debug)]
enum Kind {
    File { size: u64 },
    Symlink { target: String },
    Directory,
    Other,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::File { .. } => "file",
            Kind::Symlink { .. } => "symlink",
            Kind::Directory => "directory",
            Kind::Other => "other",
        }
    }
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    mode: u32,
}

/// Compares two output trees (directories on disk, as `verify` keeps them)
/// file by file.
pub fn compare_trees(a: &Path, b: &Path, context: &Context) -> io::Result<TreeComparison> {
    let (ta, tb) = (walk(a)?, walk(b)?);
    let differing = differing_contents(a, b, &ta, &tb)?;
    let mut differences = Vec::new();
    let mut identical = 0;
    let mut paths: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let push = |differences: &mut Vec<FileDifference>, change| {
            differences.push(FileDifference { path: path.clone(), change });
        };
        let (x, y) = match (ta.get(path), tb.get(path)) {
            (Some(x), Some(y)) => (x, y),
            (Some(_), None) => {
                push(&mut differences, Change::Removed);
                continue;
            }
            (None, _) => {
                push(&mut differences, Change::Added);
                continue;
            }
        };
        let before = differences.len();
        let content_differs = differing.contains(path);
        for change in compare_entry((&a.join(path), &b.join(path)), path, (x, y), content_differs, context)? {
            push(&mut differences, change);
        }
        if differences.len() == before && !matches!(x.kind, Kind::Directory) {
            identical += 1;
        }
    }
    Ok(TreeComparison { identical, differences })
}

/// The changes of one path present in both trees (`content_differs`: for
/// two files of one size, whether their bytes differ).
fn compare_entry(
    (pa, pb): (&Path, &Path),
    path: &str,
    (x, y): (&Entry, &Entry),
    content_differs: bool,
    context: &Context,
) -> io::Result<Vec<Change>> {
    let mut changes = Vec::new();
    if x.kind.name() != y.kind.name() {
        changes.push(Change::Kind { a: x.kind.name().into(), b: y.kind.name().into() });
        return Ok(changes);
    }
    let is_link = matches!(x.kind, Kind::Symlink { .. });
    if !is_link && x.mode != y.mode {
        changes.push(Change::Mode { a: mode_string(x.mode), b: mode_string(y.mode) });
    }
    match (&x.kind, &y.kind) {
        (Kind::Symlink { target: ta }, Kind::Symlink { target: tb }) if ta != tb => {
            changes.push(Change::Link { a: ta.clone(), b: tb.clone() });
        }
        (Kind::File { size: sa }, Kind::File { size: sb }) if sa != sb || content_differs => {
            changes.push(Change::Content(explain_files(pa, pb, path, *sa, *sb, context)?));
        }
        _ => {}
    }
    Ok(changes)
}

/// Every path under `root` (not `root` itself), `/`-separated, sorted.
/// Symlinks are not followed.
fn walk(root: &Path) -> io::Result<BTreeMap<String, Entry>> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        for item in fs_err::read_dir(root.join(&dir))? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
            let meta = fs_err::symlink_metadata(item.path())?;
            let kind = if meta.is_symlink() {
                let target = fs_err::read_link(item.path())?;
                Kind::Symlink { target: target.to_string_lossy().into_owned() }
            } else if meta.is_dir() {
                pending.push(path.clone());
                Kind::Directory
            } else if meta.is_file() {
                Kind::File { size: meta.len() }
            } else {
                Kind::Other
            };
            entries.insert(path, Entry { kind, mode: meta.permissions().mode() & 0o7777 });
        }
    }
    Ok(entries)
}

/// Reads as much of `buf` as the file has left.
fn fill(file: &mut fs_err::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The paths of the files of equal size in both trees whose bytes differ.
///
/// This is where a comparison of mostly identical trees spends its time,
/// so it runs on a few threads (each with its own two buffers, reused from
/// file to file) that take the next pair as they finish one.
fn differing_contents<'t>(
    a: &Path,
    b: &Path,
    ta: &'t BTreeMap<String, Entry>,
    tb: &BTreeMap<String, Entry>,
) -> io::Result<HashSet<&'t String>> {
    let candidates: Vec<&String> = ta
        .iter()
        .filter(|(path, x)| match (&x.kind, tb.get(*path).map(|y| &y.kind)) {
            (Kind::File { size: sa }, Some(Kind::File { size: sb })) => sa == sb,
            _ => false,
        })
        .map(|(path, _)| path)
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_WORKERS);
    let next = AtomicUsize::new(0);
    let work = || -> io::Result<Vec<&'t String>> {
        let mut buffers = (vec![0; CHUNK], vec![0; CHUNK]);
        let mut found = Vec::new();
        while let Some(path) = candidates.get(next.fetch_add(1, Ordering::Relaxed)) {
            if !same_content(&a.join(path), &b.join(path), &mut buffers)? {
                found.push(*path);
            }
        }
        Ok(found)
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(candidates.len())).map(|_| scope.spawn(work)).collect();
        let mut differing = HashSet::new();
        for handle in handles {
            let found = handle.join().map_err(|_| io::Error::other("a comparison thread panicked"))??;
            differing.extend(found);
        }
        Ok(differing)
    })
}

/// Whether two files of equal size have the same bytes, read streaming.
fn same_content(pa: &Path, pb: &Path, (ba, bb): &mut (Vec<u8>, Vec<u8>)) -> io::Result<bool> {
    let (mut fa, mut fb) = (fs_err::File::open(pa)?, fs_err::File::open(pb)?);
    loop {
        let (na, nb) = (fill(&mut fa, ba)?, fill(&mut fb, bb)?);
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Explains two differing files: whole in memory when small enough,
/// streaming byte ranges otherwise.
fn explain_files(pa: &Path, pb: &Path, path: &str, sa: u64, sb: u64, context: &Context) -> io::Result<Explanation> {
    if sa <= MAX_IN_MEMORY && sb <= MAX_IN_MEMORY {
        return Ok(explain(path, &fs_err::read(pa)?, &fs_err::read(pb)?, context));
    }
    let (mut fa, mut fb) = (fs_err::File::open(pa)?, fs_err::File::open(pb)?);
    let (mut ba, mut bb) = (vec![0; CHUNK], vec![0; CHUNK]);
    let (na, nb) = (fill(&mut fa, &mut ba)?, fill(&mut fb, &mut bb)?);
    let format = detect(path, &ba[..na]);
    let mut finder = RangeFinder::default();
    let mut offset = 0;
    let (mut na, mut nb) = (na, nb);
    while na.min(nb) > 0 {
        let n = na.min(nb);
        finder.feed(offset, &ba[..n], &bb[..n]);
        offset += n as u64;
        if na != nb {
            break;
        }
        (na, nb) = (fill(&mut fa, &mut ba)?, fill(&mut fb, &mut bb)?);
    }
    let (ranges, total_ranges) = finder.finish(sa, sb);
    let mut evidence = Evidence::default();
    for (start, end) in windows(&ranges) {
        add_window(&read_at(&mut fa, start, end)?, &mut evidence.a, &mut evidence.ints_a);
        add_window(&read_at(&mut fb, start, end)?, &mut evidence.b, &mut evidence.ints_b);
    }
    evidence.random = looks_random(&ranges, sa, sb);
    let start = hex_start(&ranges);
    let first_hex = (
        hex_line(start, &read_at(&mut fa, start, start + HEX_WINDOW)?),
        hex_line(start, &read_at(&mut fb, start, start + HEX_WINDOW)?),
    );
    let note = format!("larger than {} MiB: compared as bytes, streaming", MAX_IN_MEMORY >> 20);
    Ok(Explanation {
        format,
        size: (sa, sb),
        details: vec![Detail::ByteRanges { ranges, total_ranges, first_hex }, Detail::Note { text: note }],
        causes: guess(&evidence, context),
    })
}

/// The bytes of `[start, end)` of a file (fewer at its end).
fn read_at(file: &mut fs_err::File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0; usize::try_from(end.saturating_sub(start)).unwrap_or(0)];
    let n = fill(file, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

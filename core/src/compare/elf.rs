//! ELF files: which sections differ, read from the section headers by hand
//! (ELF32 and ELF64, either byte order).
//!
//! The build-id is a hash of the other sections' bytes, so when they differ
//! it differs too: it is named as a consequence, not a cause, and its bytes
//! are left out of the cause guesses (they would always look random).

use std::ops::Range;

use super::bytes::{describe, RangeFinder};
use super::causes::{guess, Evidence};
use super::{Context, Detail, Parts};

/// Sections whose content follows from the others'.
const CONSEQUENCES: [&str; 2] = [".note.gnu.build-id", ".note.go.buildid"];
/// `SHT_NOBITS`: a section with no bytes in the file (`.bss`).
const SHT_NOBITS: u32 = 8;

/// A named byte range of the file: a section, or a table of headers.
#[derive(Debug)]
struct Region {
    name: String,
    bytes: Option<Range<usize>>,
}

/// Reads integers of the file's class and byte order.
struct Reader<'d> {
    data: &'d [u8],
    wide: bool,
    little: bool,
}

impl Reader<'_> {
    fn uint(&self, at: usize, len: usize) -> Result<u64, String> {
        let bytes = self.data.get(at..at + len).ok_or("truncated ELF header")?;
        let fold = |value: u64, byte: &u8| (value << 8) | u64::from(*byte);
        Ok(if self.little { bytes.iter().rev().fold(0, fold) } else { bytes.iter().fold(0, fold) })
    }

    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, at: usize) -> Result<usize, String> {
        let value = self.uint(at, if self.wide { 8 } else { 4 })?;
        usize::try_from(value).map_err(|_| "offset out of range".to_owned())
    }

    fn half(&self, at: usize) -> Result<usize, String> {
        self.uint(at, 2).map(|v| v as usize)
    }
}

/// The regions of an ELF file: its header, its program and section header
/// tables, and every section that has bytes in the file.
fn regions(data: &[u8]) -> Result<Vec<Region>, String> {
    let ident = data.get(..16).ok_or("truncated ELF identification")?;
    let r = Reader { data, wide: ident[4] == 2, little: ident[5] != 2 };
    let (phoff, shoff, at) = if r.wide { (0x20, 0x28, 0x34) } else { (0x1c, 0x20, 0x28) };
    let (phoff, shoff) = (r.word(phoff)?, r.word(shoff)?);
    let (ehsize, phentsize, phnum) = (r.half(at)?, r.half(at + 2)?, r.half(at + 4)?);
    let (shentsize, shnum, shstrndx) = (r.half(at + 6)?, r.half(at + 8)?, r.half(at + 10)?);
    let table =
        |name: &str, start: usize, len: usize| Region { name: name.to_owned(), bytes: Some(start..start + len) };
    let mut regions = vec![
        table("(ELF header)", 0, ehsize),
        table("(program headers)", phoff, phentsize * phnum),
        table("(section headers)", shoff, shentsize * shnum),
    ];
    let section = |index: usize| -> Result<(u64, u32, Range<usize>), String> {
        let at = shoff + index * shentsize;
        let (offset, size) =
            if r.wide { (r.word(at + 0x18)?, r.word(at + 0x20)?) } else { (r.word(at + 0x10)?, r.word(at + 0x14)?) };
        Ok((r.uint(at, 4)?, r.uint(at + 4, 4)? as u32, offset..offset.saturating_add(size)))
    };
    if shnum == 0 {
        return Ok(regions);
    }
    let names = section(shstrndx)?.2;
    let strings = data.get(names).ok_or("section names out of range")?;
    for index in 1..shnum {
        let (name, kind, bytes) = section(index)?;
        let name = strings.get(name as usize..).unwrap_or_default();
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        regions.push(Region {
            name: String::from_utf8_lossy(name).into_owned(),
            bytes: (kind != SHT_NOBITS).then_some(bytes),
        });
    }
    Ok(regions)
}

/// The bytes of a region, empty when out of range.
fn slice<'d>(data: &'d [u8], region: &Region) -> &'d [u8] {
    region.bytes.clone().and_then(|range| data.get(range)).unwrap_or_default()
}

/// Explains two ELF files by their sections.
pub(crate) fn explain(a: &[u8], b: &[u8], context: &Context) -> Result<Parts, String> {
    let (ra, rb) = (regions(a)?, regions(b)?);
    let mut names = Vec::new();
    for x in &ra {
        match rb.iter().find(|y| y.name == x.name) {
            Some(y) if slice(a, x) == slice(b, y) => {}
            Some(_) => names.push(x.name.clone()),
            None => names.push(format!("{} (only in a)", x.name)),
        }
    }
    for y in rb.iter().filter(|y| !ra.iter().any(|x| x.name == y.name)) {
        names.push(format!("{} (only in b)", y.name));
    }
    let is_consequence = |name: &String| CONSEQUENCES.contains(&name.as_str());
    let causes_differ = names.iter().any(|name| !is_consequence(name) && !name.starts_with('('));
    let note = match names.iter().find(|name| is_consequence(name)) {
        Some(id) if causes_differ => Some(format!("{id} differs as a consequence of the others")),
        Some(id) => Some(format!(
            "only {id} and headers differ: the build-id is not a hash of the content \
             (--build-id=uuid?) or was patched after linking"
        )),
        None => None,
    };
    let skip: Vec<Range<usize>> = ra
        .iter()
        .filter(|region| causes_differ && is_consequence(&region.name))
        .filter_map(|region| region.bytes.clone())
        .collect();
    let mut evidence = Evidence::default();
    let ranges = ranges_outside(a, b, &skip, &mut evidence);
    Ok(Parts { details: vec![Detail::Sections { names, note }, ranges], causes: guess(&evidence, context) })
}

/// The file's differing byte ranges, leaving out `skip` (the build-id when
/// it is a consequence), with their evidence.
fn ranges_outside(a: &[u8], b: &[u8], skip: &[Range<usize>], evidence: &mut Evidence) -> Detail {
    let mut finder = RangeFinder::default();
    let common = a.len().min(b.len());
    let mut at = 0;
    let mut cuts: Vec<Range<usize>> = skip.iter().map(|r| r.start.min(common)..r.end.min(common)).collect();
    cuts.sort_by_key(|r| r.start);
    for cut in cuts.iter().chain(std::iter::once(&(common..common))) {
        if cut.start > at {
            finder.feed(at as u64, &a[at..cut.start], &b[at..cut.start]);
        }
        at = at.max(cut.end);
    }
    describe(a, b, finder.finish(a.len() as u64, b.len() as u64), evidence)
}

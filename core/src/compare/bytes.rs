//! Binary comparison: which byte ranges differ, a hex excerpt of the first,
//! and the evidence around them for the cause guesses.
//!
//! [`RangeFinder`] takes the two versions in equal chunks, so the same code
//! serves files in memory and files too large to read whole (`tree` feeds
//! it while streaming).

use super::causes::{guess, Evidence};
use super::{Context, Detail, Parts};

/// Differing bytes fewer than this many equal bytes apart are one range: a
/// timestamp whose middle byte happens to match is still one timestamp.
const MERGE_GAP: u64 = 8;
/// How many ranges a [`Detail::ByteRanges`] lists.
const MAX_RANGES: usize = 20;
/// Bytes of context taken each side of a differing range as evidence.
const WINDOW_CONTEXT: u64 = 16;
/// The most bytes of one range taken as evidence.
const WINDOW_MAX: u64 = 512;
/// Bytes shown in a hex excerpt, and how many of them precede the first
/// difference.
const HEX_LEN: u64 = 32;
const HEX_BEFORE: u64 = 8;
/// A differing run at least this long (same length on both sides) reads as
/// noise when nothing else explains it.
const RANDOM_RUN: u64 = 8;

/// Collects the differing ranges of two byte streams fed in equal chunks.
#[derive(Debug, Default)]
pub(crate) struct RangeFinder {
    ranges: Vec<(u64, u64)>,
    total: usize,
    current: Option<(u64, u64)>,
}

impl RangeFinder {
    /// Compares one pair of equally long chunks starting at `offset`.
    pub fn feed(&mut self, offset: u64, a: &[u8], b: &[u8]) {
        const STRIDE: usize = 64;
        let len = a.len().min(b.len());
        let mut start = 0;
        while start < len {
            let end = (start + STRIDE).min(len);
            if a[start..end] != b[start..end] {
                for i in start..end {
                    if a[i] != b[i] {
                        let at = offset + i as u64;
                        self.push(at, at + 1);
                    }
                }
            }
            start = end;
        }
    }

    /// Adds one differing range, merging it with the previous if close.
    fn push(&mut self, start: u64, end: u64) {
        match &mut self.current {
            Some(current) if start <= current.1 + MERGE_GAP => current.1 = current.1.max(end),
            _ => {
                self.flush();
                self.current = Some((start, end));
            }
        }
    }

    fn flush(&mut self) {
        if let Some(range) = self.current.take() {
            self.total += 1;
            if self.ranges.len() < MAX_RANGES {
                self.ranges.push(range);
            }
        }
    }

    /// The listed ranges and the count of all, with the tail of the longer
    /// version as a last range.
    pub fn finish(mut self, len_a: u64, len_b: u64) -> (Vec<(u64, u64)>, usize) {
        if len_a != len_b {
            self.push(len_a.min(len_b), len_a.max(len_b));
        }
        self.flush();
        (self.ranges, self.total)
    }
}

/// Where the hex excerpt around the first difference starts.
pub(crate) fn hex_start(ranges: &[(u64, u64)]) -> u64 {
    ranges.first().map_or(0, |(start, _)| start.saturating_sub(HEX_BEFORE))
}

/// The length of the hex excerpt.
pub(crate) const HEX_WINDOW: u64 = HEX_LEN;

/// `00000018: 1f 8b 08 00`: the bytes of an excerpt that starts at `start`.
pub(crate) fn hex_line(start: u64, bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return format!("{start:08x}: (end of file)");
    }
    let hex: Vec<String> = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{start:08x}: {}", hex.join(" "))
}

/// The windows (range plus context, clamped) read as evidence for causes.
pub(crate) fn windows(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    ranges
        .iter()
        .map(|&(start, end)| {
            let start = start.saturating_sub(WINDOW_CONTEXT);
            (start, end.min(start + WINDOW_MAX) + WINDOW_CONTEXT)
        })
        .collect()
}

/// Adds one side's window bytes to the evidence: the bytes themselves (for
/// text found in binaries) and every 32-bit word in either byte order (for
/// binary timestamps).
pub(crate) fn add_window(bytes: &[u8], text: &mut Vec<u8>, ints: &mut Vec<u64>) {
    text.extend_from_slice(bytes);
    text.push(b'\n');
    for word in bytes.windows(4) {
        let word = [word[0], word[1], word[2], word[3]];
        ints.push(u64::from(u32::from_le_bytes(word)));
        ints.push(u64::from(u32::from_be_bytes(word)));
    }
}

/// Whether the ranges look like noise: same sizes, and a long differing run.
pub(crate) fn looks_random(ranges: &[(u64, u64)], len_a: u64, len_b: u64) -> bool {
    len_a == len_b && ranges.iter().any(|(start, end)| end - start >= RANDOM_RUN)
}

/// The slice of `data` in `[start, end)`, clamped to its length.
fn clamp(data: &[u8], start: u64, end: u64) -> &[u8] {
    let len = data.len() as u64;
    let (start, end) = (start.min(len), end.min(len));
    data.get(start as usize..end as usize).unwrap_or_default()
}

/// Explains two versions of an unrecognised (or unreadable) format.
pub(crate) fn explain(a: &[u8], b: &[u8], context: &Context) -> Parts {
    let mut evidence = Evidence::default();
    let detail = ranges_detail(a, b, &mut evidence);
    Parts { details: vec![detail], causes: guess(&evidence, context) }
}

/// The byte ranges of two in-memory versions, with their evidence.
pub(crate) fn ranges_detail(a: &[u8], b: &[u8], evidence: &mut Evidence) -> Detail {
    let mut finder = RangeFinder::default();
    finder.feed(0, a, b);
    let found = finder.finish(a.len() as u64, b.len() as u64);
    describe(a, b, found, evidence)
}

/// The detail for ranges found in two in-memory versions: the hex excerpt
/// around the first, and the windows around each as evidence.
pub(crate) fn describe(
    a: &[u8],
    b: &[u8],
    (ranges, total_ranges): (Vec<(u64, u64)>, usize),
    evidence: &mut Evidence,
) -> Detail {
    for (start, end) in windows(&ranges) {
        add_window(clamp(a, start, end), &mut evidence.a, &mut evidence.ints_a);
        add_window(clamp(b, start, end), &mut evidence.b, &mut evidence.ints_b);
    }
    evidence.random |= looks_random(&ranges, a.len() as u64, b.len() as u64);
    let start = hex_start(&ranges);
    let first_hex =
        (hex_line(start, clamp(a, start, start + HEX_LEN)), hex_line(start, clamp(b, start, start + HEX_LEN)));
    Detail::ByteRanges { ranges, total_ranges, first_hex }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_close_ranges_and_adds_the_tail() {
        let a = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut b = *a;
        b[2] = b'X';
        b[5] = b'X';
        b[30] = b'X';
        let mut finder = RangeFinder::default();
        finder.feed(0, a, &b);
        assert_eq!(finder.finish(36, 40), (vec![(2, 6), (30, 40)], 2));
        let mut apart = RangeFinder::default();
        apart.feed(0, a, &b);
        assert_eq!(apart.finish(36, 36), (vec![(2, 6), (30, 31)], 2));
    }

    #[test]
    fn caps_the_listed_ranges_but_counts_all() {
        let a = vec![0u8; 2000];
        let b: Vec<u8> = (0..2000).map(|i| u8::from(i % 50 == 0)).collect();
        let mut finder = RangeFinder::default();
        finder.feed(0, &a, &b);
        let (ranges, total) = finder.finish(2000, 2000);
        assert_eq!((ranges.len(), total), (20, 40));
    }

    #[test]
    fn finds_a_binary_timestamp() {
        let mut a = vec![0u8; 64];
        let mut b = a.clone();
        a[20..24].copy_from_slice(&1_796_196_672u32.to_le_bytes());
        b[20..24].copy_from_slice(&1_796_196_700u32.to_le_bytes());
        let context = Context { times: vec![1_796_196_672], ..Context::default() };
        let parts = explain(&a, &b, &context);
        assert_eq!(
            parts.causes,
            [
                super::super::Cause::Timestamp { value: "1796196672".into(), near: "2026-12-02T07:31:12Z".into() },
                super::super::Cause::Timestamp { value: "1796196700".into(), near: "2026-12-02T07:31:12Z".into() },
            ]
        );
    }
}

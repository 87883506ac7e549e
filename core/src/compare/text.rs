//! Text comparison: a trimmed unified diff, and the changed lines as
//! evidence.

use std::collections::HashMap;
use std::time::Duration;

use similar::{ChangeTag, DiffOp, TextDiff};

use super::causes::{guess, Evidence};
use super::{Cause, Context, Detail, Parts};

/// The most diff lines kept; a last line says how many more there were.
const MAX_DIFF_LINES: usize = 60;
/// The most lines (per side) of a differing middle that are diffed.
const MAX_DIFFED_LINES: usize = 20_000;
/// The lines of each side shown when the middle is too large to diff.
const HEAD_LINES: usize = 25;
/// Lines of context around each change.
const CONTEXT_LINES: usize = 3;
/// How long the diff algorithm may search for a minimal diff before it
/// settles for a larger one: two very different large texts must not stall
/// `verify`.
const DIFF_TIMEOUT: Duration = Duration::from_secs(2);
/// A changed span at least this long, same length on both sides, reads as
/// noise when nothing else explains it.
const RANDOM_SPAN: usize = 8;

/// Explains two versions of a text file (both valid UTF-8 without NULs).
///
/// The common leading and trailing lines are cut off first (cheaply, byte
/// by byte), so a one-line change in a large file costs a diff of a few
/// lines; a differing middle too large to diff is shown from its start.
pub(crate) fn explain(path: &str, a: &[u8], b: &[u8], context: &Context) -> Parts {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (a, b) = (a.as_ref(), b.as_ref());
    let core = middle(a, b, 0);
    let too_large = core.a.lines().nth(MAX_DIFFED_LINES).is_some() || core.b.lines().nth(MAX_DIFFED_LINES).is_some();
    let mut evidence = Evidence::default();
    let mut lines = vec![format!("--- a/{path}"), format!("+++ b/{path}")];
    let mut causes = Vec::new();
    if too_large {
        lines.extend(head_hunk(&core, &mut evidence));
        causes = guess(&evidence, context);
    } else {
        let wide = middle(a, b, CONTEXT_LINES);
        let diff = TextDiff::configure().timeout(DIFF_TIMEOUT).diff_lines(wide.a, wide.b);
        for change in diff.iter_all_changes() {
            let side = match change.tag() {
                ChangeTag::Delete => &mut evidence.a,
                ChangeTag::Insert => &mut evidence.b,
                ChangeTag::Equal => continue,
            };
            side.extend_from_slice(change.value().as_bytes());
            side.push(b'\n');
        }
        evidence.random = diff.ops().iter().any(|op| random_replace(&diff, op));
        lines.extend(hunks(&diff, wide.first_line));
        causes.extend(guess(&evidence, context));
        if is_reordering(core.a, core.b) {
            causes.push(Cause::Reordering);
            causes.retain(|cause| *cause != Cause::Random);
        }
    }
    let left_out = lines.len().saturating_sub(MAX_DIFF_LINES);
    lines.truncate(MAX_DIFF_LINES);
    if left_out > 0 {
        lines.push(format!("... {left_out} more diff lines left out"));
    }
    Parts { details: vec![Detail::TextDiff { unified: lines.join("\n") }], causes }
}

/// The differing middle of two texts: what is left after their common
/// leading and trailing lines, keeping `context` of those lines each side.
#[derive(Debug)]
struct Middle<'t> {
    a: &'t str,
    b: &'t str,
    /// The 0-based line number (the same in both) where the middle starts.
    first_line: usize,
}

/// Cuts the common leading and trailing lines off two texts.
fn middle<'t>(a: &'t str, b: &'t str, context: usize) -> Middle<'t> {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let newline = |c: &u8| *c == b'\n';
    let common = x.iter().zip(y).take_while(|(p, q)| p == q).count();
    let mut start = x[..common].iter().rposition(newline).map_or(0, |i| i + 1);
    let tail = x[start..].iter().rev().zip(y[start..].iter().rev()).take_while(|(p, q)| p == q).count();
    let line_start = |text: &[u8], at: usize| at == start || text[at - 1] == b'\n';
    let (tail_a, tail_b) = (x.len() - tail, y.len() - tail);
    let mut suffix = tail;
    if !(line_start(x, tail_a) && line_start(y, tail_b)) {
        // The common tail starts inside a line: that line differs.
        suffix = x[tail_a..].iter().position(newline).map_or(0, |i| tail - (i + 1));
    }
    let mut end = x.len() - suffix;
    for _ in 0..context {
        if start > 0 {
            start = x[..start - 1].iter().rposition(newline).map_or(0, |i| i + 1);
        }
        if end < x.len() {
            end = x[end..].iter().position(newline).map_or(x.len(), |i| end + i + 1);
        }
    }
    let suffix = x.len() - end;
    Middle {
        a: &a[start..end],
        b: &b[start..y.len() - suffix],
        first_line: x[..start].iter().filter(|c| newline(c)).count(),
    }
}

/// The hunks of a diff of two middles, numbered from `first_line`.
fn hunks<'x>(diff: &'x TextDiff<'x, 'x, 'x, str>, first_line: usize) -> Vec<String> {
    let range = |start: usize, end: usize| {
        let (beginning, len) = (first_line + start + 1, end - start);
        match len {
            1 => format!("{beginning}"),
            0 => format!("{},0", beginning - 1),
            _ => format!("{beginning},{len}"),
        }
    };
    let mut lines = Vec::new();
    for group in diff.grouped_ops(CONTEXT_LINES) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else { continue };
        let old = range(first.old_range().start, last.old_range().end);
        let new = range(first.new_range().start, last.new_range().end);
        lines.push(format!("@@ -{old} +{new} @@"));
        for change in group.iter().flat_map(|op| diff.iter_changes(op)) {
            let sign = match change.tag() {
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
                ChangeTag::Equal => ' ',
            };
            lines.push(format!("{sign}{}", change.value().trim_end_matches(['\n', '\r'])));
        }
    }
    lines
}

/// For a middle too large to diff: its first lines on each side, as one
/// hunk, with a line saying so.
fn head_hunk(core: &Middle<'_>, evidence: &mut Evidence) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) =
        (core.a.lines().take(HEAD_LINES).collect(), core.b.lines().take(HEAD_LINES).collect());
    let line = core.first_line + 1;
    let mut lines = vec![
        format!(
            "(more than {MAX_DIFFED_LINES} lines differ from line {line} on: not diffed; the first lines of each side)"
        ),
        format!("@@ -{line},{} +{line},{} @@", a.len(), b.len()),
    ];
    for (sign, side, text) in [('-', &a, &mut evidence.a), ('+', &b, &mut evidence.b)] {
        for line_text in side.iter() {
            lines.push(format!("{sign}{line_text}"));
            text.extend_from_slice(line_text.as_bytes());
            text.push(b'\n');
        }
    }
    lines
}

/// Whether a replacement pairs lines of equal length whose differing middle
/// (after the common prefix and suffix) is a long run: a random name or
/// hash rather than an edit.
fn random_replace(diff: &TextDiff<'_, '_, '_, str>, op: &DiffOp) -> bool {
    let DiffOp::Replace { old_index, old_len, new_index, new_len } = *op else {
        return false;
    };
    if old_len != new_len {
        return false;
    }
    let (old, new) = (diff.old_slices(), diff.new_slices());
    (0..old_len).any(|i| {
        let (x, y) = (old[old_index + i].as_bytes(), new[new_index + i].as_bytes());
        let prefix = x.iter().zip(y).take_while(|(p, q)| p == q).count();
        let suffix = x[prefix..].iter().rev().zip(y[prefix..].iter().rev()).take_while(|(p, q)| p == q).count();
        x.len() == y.len() && x.len() - prefix - suffix >= RANDOM_SPAN
    })
}

/// Whether the two texts hold the same lines, each as often, in another
/// order.
pub(crate) fn is_reordering(a: &str, b: &str) -> bool {
    if a.lines().eq(b.lines()) {
        return false;
    }
    let mut tally: HashMap<&str, i64> = HashMap::new();
    for line in a.lines() {
        *tally.entry(line).or_default() += 1;
    }
    for line in b.lines() {
        *tally.entry(line).or_default() -= 1;
    }
    tally.values().all(|&count| count == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_common_lines_at_line_boundaries() {
        let cut = |a, b, context| {
            let m = middle(a, b, context);
            (m.a, m.b, m.first_line)
        };
        assert_eq!(cut("x\nfoo\n", "x\nyfoo\n", 0), ("foo\n", "yfoo\n", 1));
        assert_eq!(cut("1\n2\n3\n4\n5\n", "1\n2\nX\n4\n5\n", 0), ("3\n", "X\n", 2));
        assert_eq!(cut("1\n2\n3\n4\n5\n", "1\n2\nX\n4\n5\n", 1), ("2\n3\n4\n", "2\nX\n4\n", 1));
        assert_eq!(cut("a\nb", "a\nbc", 0), ("b", "bc", 1));
        assert_eq!(cut("a\n", "a\nb\n", 0), ("", "b\n", 1));
        assert_eq!(cut("same", "same", 0), ("", "", 0));
    }

    #[test]
    fn a_huge_differing_middle_is_shown_from_its_start() {
        let a: String = (0..30_000).map(|i| format!("{i} a\n")).collect();
        let b: String = (0..30_000).map(|i| format!("{i} b\n")).collect();
        let parts = explain("big", a.as_bytes(), b.as_bytes(), &Context::default());
        let [Detail::TextDiff { unified }] = parts.details.as_slice() else { panic!("{parts:?}") };
        let lines: Vec<&str> = unified.lines().collect();
        assert_eq!(lines[2], "(more than 20000 lines differ from line 1 on: not diffed; the first lines of each side)");
        assert_eq!(lines[3], "@@ -1,25 +1,25 @@");
        assert_eq!(lines[4], "-0 a");
        assert_eq!(lines.len(), 54);
    }

    #[test]
    fn hunk_numbers_count_the_cut_lines() {
        let a: String = (0..100).map(|i| format!("{i}\n")).collect();
        let b = a.replace("50\n", "fifty\n");
        let parts = explain("n", a.as_bytes(), b.as_bytes(), &Context::default());
        let [Detail::TextDiff { unified }] = parts.details.as_slice() else { panic!("{parts:?}") };
        assert_eq!(unified, "--- a/n\n+++ b/n\n@@ -48,7 +48,7 @@\n 47\n 48\n 49\n-50\n+fifty\n 51\n 52\n 53");
    }
}

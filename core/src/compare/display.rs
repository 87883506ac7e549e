//! The human text `verify` prints: one line per finding, nested findings
//! indented two spaces under what contains them. The causes are listed
//! once, under the outermost explanation (they include the members').

use std::fmt;

use super::{Cause, Change, Detail, Explanation, FileDifference, Format, TreeComparison};

/// Indentation per nesting level.
const INDENT: &str = "  ";

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Binary => "binary",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Tar => "tar",
            Format::Zip => "zip",
            Format::Ar => "ar",
            Format::Deb => "deb",
            Format::Elf => "ELF",
        })
    }
}

impl fmt::Display for TreeComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_reproducible() {
            return write!(f, "reproducible: {} identical", plural(self.identical as u64, "file"));
        }
        let (count, identical) = (self.differences.len(), self.identical);
        write!(f, "{} ({} identical):", plural(count as u64, "difference"), plural(identical as u64, "file"))?;
        for difference in &self.differences {
            write!(f, "\n{}", indent(&difference.to_string()))?;
        }
        Ok(())
    }
}

impl fmt::Display for FileDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.change)
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&change_lines(self, true).join("\n"))
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&explanation_lines(self, true).join("\n"))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Timestamp { value, near } => write!(f, "a time near a build: {value} (build at {near})"),
            Cause::BuildPath { path } => write!(f, "the build path {path}"),
            Cause::Hostname { name } => write!(f, "the hostname {name}"),
            Cause::Reordering => f.write_str("the same entries in another order (directory order? a hash map?)"),
            Cause::Random => f.write_str("looks random (a seed, a temporary name, or a hash of one)"),
        }
    }
}

/// `1 byte`, `2 bytes`.
fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Every line of `text`, indented one level.
fn indent(text: &str) -> String {
    text.lines().map(|line| format!("{INDENT}{line}")).collect::<Vec<_>>().join("\n")
}

/// A change: its first line, then the explanation's details indented.
fn change_lines(change: &Change, with_causes: bool) -> Vec<String> {
    match change {
        Change::Added => vec!["added (only in b)".to_owned()],
        Change::Removed => vec!["removed (only in a)".to_owned()],
        Change::Mode { a, b } => vec![format!("mode: a {a}, b {b}")],
        Change::Kind { a, b } => vec![format!("another kind: a {a}, b {b}")],
        Change::Link { a, b } => vec![format!("link target: a {a}, b {b}")],
        Change::Content(explanation) => {
            let mut lines = explanation_lines(explanation, with_causes);
            lines[0] = format!("content differs ({})", lines[0]);
            lines
        }
    }
}

/// An explanation: the format and sizes, then each detail indented, then
/// (at the outermost level) the causes.
fn explanation_lines(explanation: &Explanation, with_causes: bool) -> Vec<String> {
    let (a, b) = explanation.size;
    let size = if a == b { plural(a, "byte") } else { format!("a {}, b {}", plural(a, "byte"), plural(b, "byte")) };
    let mut lines = vec![format!("{}, {size}", explanation.format)];
    for detail in &explanation.details {
        lines.extend(detail_lines(detail).into_iter().map(|line| format!("{INDENT}{line}")));
    }
    if with_causes && !explanation.causes.is_empty() {
        lines.push(format!("{INDENT}likely causes:"));
        lines.extend(explanation.causes.iter().map(|cause| format!("{INDENT}{INDENT}- {cause}")));
    }
    lines
}

/// One detail's lines, unindented.
fn detail_lines(detail: &Detail) -> Vec<String> {
    match detail {
        Detail::TextDiff { unified } => unified.lines().map(str::to_owned).collect(),
        Detail::ByteRanges { ranges, total_ranges, first_hex } => {
            let listed: Vec<String> = ranges.iter().map(|(start, end)| format!("{start:#x}..{end:#x}")).collect();
            let more = total_ranges.saturating_sub(ranges.len());
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            vec![
                format!("bytes differ in {}: {}{more}", plural(*total_ranges as u64, "range"), listed.join(", ")),
                format!("a {}", first_hex.0),
                format!("b {}", first_hex.1),
            ]
        }
        Detail::Header { field, a, b } => vec![format!("{field}: a {a}, b {b}")],
        Detail::Member { name, change } => {
            let mut lines = change_lines(change, false);
            lines[0] = format!("member {name}: {}", lines[0]);
            lines
        }
        Detail::MemberOrder { a, b } => vec![
            "members in another order:".to_owned(),
            format!("{INDENT}a: {}", a.join(", ")),
            format!("{INDENT}b: {}", b.join(", ")),
        ],
        Detail::Sections { names, note } => {
            let mut lines = vec![format!("sections differ: {}", names.join(", "))];
            lines.extend(note.iter().map(|note| format!("{INDENT}({note})")));
            lines
        }
        Detail::Note { text } => vec![format!("note: {text}")],
    }
}

//! First guesses at why two versions differ, from what the differing bytes
//! contain.
//!
//! Each comparator collects [`Evidence`]: the differing parts of each side
//! (changed lines, windows around differing bytes, header values) and the
//! integers it read there. A value counts only when it occurs a different
//! number of times on the two sides: the fixed build path `/src` in a line
//! that differs because of a date is not the cause, the date is.

use std::collections::HashMap;

use super::time::{days_from_civil, month_number, rfc3339};
use super::{Cause, Context};

/// How far from a build time a value may be and still look like one: two
/// days covers a local time written in any time zone.
const NEAR_SECS: i64 = 2 * 86_400;

/// The most causes one explanation lists.
const MAX_CAUSES: usize = 10;

/// What the differing parts of two versions contain.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// Differing bytes (with some context) of the first version.
    pub a: Vec<u8>,
    /// Differing bytes of the second version.
    pub b: Vec<u8>,
    /// Integers read in the first version's differing parts (header
    /// fields, binary words).
    pub ints_a: Vec<u64>,
    /// Integers read in the second version's differing parts.
    pub ints_b: Vec<u64>,
    /// Whether the differences look like same-length runs of noise.
    pub random: bool,
}

impl Evidence {
    /// Adds a pair of differing text values (header fields).
    pub fn texts(&mut self, a: &str, b: &str) {
        self.a.extend_from_slice(a.as_bytes());
        self.a.push(b'\n');
        self.b.extend_from_slice(b.as_bytes());
        self.b.push(b'\n');
    }

    /// Takes over another collection's evidence.
    pub fn absorb(&mut self, other: Evidence) {
        self.a.extend(other.a);
        self.b.extend(other.b);
        self.ints_a.extend(other.ints_a);
        self.ints_b.extend(other.ints_b);
        self.random |= other.random;
    }

    /// Adds a pair of differing integers (header fields).
    pub fn ints(&mut self, a: u64, b: u64) {
        self.ints_a.push(a);
        self.ints_b.push(b);
    }
}

/// The causes the evidence points at, in a fixed order: times, build
/// paths, hostnames, and randomness only when nothing else explains it.
pub(crate) fn guess(evidence: &Evidence, context: &Context) -> Vec<Cause> {
    let mut causes = timestamps(evidence, context);
    for path in context.build_paths.iter().filter(|path| !path.is_empty()) {
        if count(&evidence.a, path.as_bytes()) != count(&evidence.b, path.as_bytes()) {
            causes.push(Cause::BuildPath { path: path.clone() });
        }
    }
    for name in context.hostnames.iter().filter(|name| !name.is_empty()) {
        if count(&evidence.a, name.as_bytes()) != count(&evidence.b, name.as_bytes()) {
            causes.push(Cause::Hostname { name: name.clone() });
        }
    }
    if causes.is_empty() && evidence.random {
        causes.push(Cause::Random);
    }
    causes
}

/// Appends `more` to `causes`, skipping duplicates, up to the cap.
pub(crate) fn merge(causes: &mut Vec<Cause>, more: impl IntoIterator<Item = Cause>) {
    for cause in more {
        if causes.len() >= MAX_CAUSES {
            break;
        }
        if !causes.contains(&cause) {
            causes.push(cause);
        }
    }
}

/// The values that read as times near a build and occur more often on one
/// side than on the other.
fn timestamps(evidence: &Evidence, context: &Context) -> Vec<Cause> {
    if context.times.is_empty() {
        return Vec::new();
    }
    let mut tally: HashMap<String, (i64, i64)> = HashMap::new();
    let mut order = Vec::new();
    let mut add = |value: String, secs: i64, side: i64| {
        let entry = tally.entry(value.clone()).or_insert_with(|| {
            order.push((value, secs));
            (0, 0)
        });
        if side == 0 {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    };
    for (side, text, ints) in [(0, &evidence.a, &evidence.ints_a), (1, &evidence.b, &evidence.ints_b)] {
        for (value, secs) in find_times(text) {
            add(value, secs, side);
        }
        for &int in ints {
            if let Ok(secs) = i64::try_from(int) {
                add(int.to_string(), secs, side);
            }
        }
    }
    order
        .into_iter()
        .filter(|(value, _)| tally.get(value).is_some_and(|(a, b)| a != b))
        .filter_map(|(value, secs)| near(context, secs).map(|near| Cause::Timestamp { value, near }))
        .collect()
}

/// The build time `secs` is near, as RFC 3339, if any.
pub(crate) fn near(context: &Context, secs: i64) -> Option<String> {
    context
        .times
        .iter()
        .filter_map(|&time| i64::try_from(time).ok())
        .filter(|time| (time - secs).abs() <= NEAR_SECS)
        .min_by_key(|time| (time - secs).abs())
        .map(rfc3339)
}

/// How often `needle` occurs in `haystack`, without overlaps.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let (mut found, mut at) = (0, 0);
    while at + needle.len() <= haystack.len() {
        if haystack[at..].starts_with(needle) {
            found += 1;
            at += needle.len();
        } else {
            at += 1;
        }
    }
    found
}

/// Every value in `text` that reads as a point in time, as found and as
/// unix seconds: epochs in seconds or milliseconds, ISO dates (with or
/// without a time), `date`/`__DATE__` style (`Dec  2 2026`,
/// `Wed Dec  2 07:31:12 UTC 2026`) and RFC 2822 style (`02 Dec 2026`).
pub(crate) fn find_times(text: &[u8]) -> Vec<(String, i64)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let boundary = at == 0 || !text[at - 1].is_ascii_alphanumeric();
        let hit = boundary
            .then(|| {
                iso_date(text, at)
                    .or_else(|| epoch(text, at))
                    .or_else(|| day_month_year(text, at))
                    .or_else(|| month_day_year(text, at))
            })
            .flatten();
        match hit {
            Some((len, secs)) => {
                found.push((String::from_utf8_lossy(&text[at..at + len]).into_owned(), secs));
                at += len;
            }
            None => at += 1,
        }
    }
    found
}

/// Exactly `n` ASCII digits at `at`, as a number.
fn digits(text: &[u8], at: usize, n: usize) -> Option<i64> {
    let run = text.get(at..at + n)?;
    if !run.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(run).ok()?.parse().ok()
}

/// One or two digits at `at` (a day of the month): the value and length.
fn day_digits(text: &[u8], at: usize) -> Option<(i64, usize)> {
    let len = text[at..].iter().take(3).take_while(|b| b.is_ascii_digit()).count();
    (1..=2).contains(&len).then(|| digits(text, at, len).map(|day| (day, len)))?
}

/// The number of spaces at `at`.
fn spaces(text: &[u8], at: usize) -> usize {
    text.get(at..).map_or(0, |rest| rest.iter().take_while(|&&b| b == b' ').count())
}

/// Seconds since midnight of `HH:MM[:SS]` at `at`, and its length.
fn clock(text: &[u8], at: usize) -> Option<(usize, i64)> {
    let hours = digits(text, at, 2)?;
    (text.get(at + 2) == Some(&b':')).then_some(())?;
    let minutes = digits(text, at + 3, 2)?;
    let (len, seconds) = match (text.get(at + 5), digits(text, at + 6, 2)) {
        (Some(b':'), Some(seconds)) => (8, seconds),
        _ => (5, 0),
    };
    (hours < 24 && minutes < 60 && seconds < 61).then_some((len, hours * 3600 + minutes * 60 + seconds))
}

/// Seconds of a date (noon when no time of day is given, so that the
/// two-day window is centred on the day).
fn date_secs(year: i64, month: i64, day: i64, time: Option<i64>) -> Option<i64> {
    ((1..=12).contains(&month) && (1..=31).contains(&day))
        .then(|| days_from_civil(year, month, day) * 86_400 + time.unwrap_or(43_200))
}

/// `YYYY-MM-DD`, then optionally `T` or a space and a time of day.
fn iso_date(text: &[u8], at: usize) -> Option<(usize, i64)> {
    let year = digits(text, at, 4)?;
    (text.get(at + 4) == Some(&b'-') && text.get(at + 7) == Some(&b'-')).then_some(())?;
    let (month, day) = (digits(text, at + 5, 2)?, digits(text, at + 8, 2)?);
    let time = matches!(text.get(at + 10), Some(b'T' | b' ')).then(|| clock(text, at + 11)).flatten();
    let len = 10 + time.map_or(0, |(len, _)| len + 1);
    Some((len, date_secs(year, month, day, time.map(|(_, secs)| secs))?))
}

/// A run of exactly 10 digits (seconds) or 13 (milliseconds).
fn epoch(text: &[u8], at: usize) -> Option<(usize, i64)> {
    let len = text[at..].iter().take(14).take_while(|b| b.is_ascii_digit()).count();
    match len {
        10 => Some((10, digits(text, at, 10)?)),
        13 => Some((13, digits(text, at, 13)? / 1000)),
        _ => None,
    }
}

/// `02 Dec 2026`, optionally followed by a time of day.
fn day_month_year(text: &[u8], at: usize) -> Option<(usize, i64)> {
    let (day, day_len) = day_digits(text, at)?;
    let mut pos = at + day_len;
    (spaces(text, pos) == 1).then_some(())?;
    pos += 1;
    let month = month_number(text.get(pos..pos + 3)?)?;
    pos += 3;
    (spaces(text, pos) == 1).then_some(())?;
    let year = digits(text, pos + 1, 4)?;
    pos += 5;
    let time = (spaces(text, pos) == 1).then(|| clock(text, pos + 1)).flatten();
    let len = pos - at + time.map_or(0, |(len, _)| len + 1);
    Some((len, date_secs(year, month, day, time.map(|(_, secs)| secs))?))
}

/// `Dec  2 2026` (`__DATE__`), `Dec 2, 2026`, or `date`'s
/// `Dec  2 07:31:12 UTC 2026`.
fn month_day_year(text: &[u8], at: usize) -> Option<(usize, i64)> {
    let month = month_number(text.get(at..at + 3)?)?;
    let mut pos = at + 3;
    let gap = spaces(text, pos);
    (1..=2).contains(&gap).then_some(())?;
    pos += gap;
    let (day, day_len) = day_digits(text, pos)?;
    pos += day_len;
    if text.get(pos) == Some(&b',') {
        pos += 1;
    }
    (spaces(text, pos) == 1).then_some(())?;
    pos += 1;
    if let Some(year) = digits(text, pos, 4).filter(|_| text.get(pos + 4) != Some(&b':')) {
        return Some((pos + 4 - at, date_secs(year, month, day, None)?));
    }
    let (clock_len, secs) = clock(text, pos)?;
    pos += clock_len + 1;
    let zone = text.get(pos..)?.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'+' || **b == b'-').count();
    let zone_gap = if zone > 0 && !text[pos].is_ascii_digit() { zone + 1 } else { 0 };
    let year = digits(text, pos + zone_gap, 4)?;
    Some((pos + zone_gap + 4 - at, date_secs(year, month, day, Some(secs))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<String> {
        find_times(text.as_bytes()).into_iter().map(|(value, _)| value).collect()
    }

    #[test]
    fn finds_the_usual_ways_builds_write_times() {
        assert_eq!(
            values("built 2026-12-02 07:31:12 at 1796196672, ms 1796196672000."),
            ["2026-12-02 07:31:12", "1796196672", "1796196672000"]
        );
        assert_eq!(values("date: 2026-12-02T07:31:12Z"), ["2026-12-02T07:31:12"]);
        assert_eq!(values("__DATE__ Dec  2 2026 and Dec 2, 2026"), ["Dec  2 2026", "Dec 2, 2026"]);
        assert_eq!(values("Wed Dec  2 07:31:12 UTC 2026"), ["Dec  2 07:31:12 UTC 2026"]);
        assert_eq!(values("Wed, 02 Dec 2026 07:31:12 GMT"), ["02 Dec 2026 07:31:12"]);
        assert_eq!(values("v12345678901 x123 2026-13-40 December"), Vec::<String>::new());
        let secs: Vec<i64> =
            find_times(b"2026-12-02 07:31:12 Dec  2 07:31:12 UTC 2026").into_iter().map(|(_, secs)| secs).collect();
        assert_eq!(secs, [1_796_196_672, 1_796_196_672]);
    }

    #[test]
    fn counts_only_values_that_differ_between_the_sides() {
        let context = Context {
            build_paths: vec!["/src".into(), "/build-2".into()],
            hostnames: vec!["repro-run".into()],
            times: vec![1_796_196_672],
        };
        let evidence = Evidence {
            a: b"/src/x built 2026-12-01 on repro-run\n".to_vec(),
            b: b"/src/x built 2026-12-02 on other /build-2\n".to_vec(),
            ..Evidence::default()
        };
        assert_eq!(
            guess(&evidence, &context),
            [
                Cause::Timestamp { value: "2026-12-01".into(), near: "2026-12-02T07:31:12Z".into() },
                Cause::Timestamp { value: "2026-12-02".into(), near: "2026-12-02T07:31:12Z".into() },
                Cause::BuildPath { path: "/build-2".into() },
                Cause::Hostname { name: "repro-run".into() },
            ]
        );
        let far =
            Evidence { a: b"2020-01-01".to_vec(), b: b"2020-01-02".to_vec(), random: true, ..Evidence::default() };
        assert_eq!(guess(&far, &context), [Cause::Random]);
    }
}

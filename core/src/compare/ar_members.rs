//! `ar` archives (static libraries) and Debian packages: members, their
//! header fields, then their content (a `.deb`'s `control.tar.*` and
//! `data.tar.*` explained as tarballs).
//!
//! The format is small enough to read by hand: an 8-byte magic, then per
//! member a 60-byte header (name, mtime, uid, gid, mode, size) and the
//! data, padded to an even length. GNU long names live in a `//` member,
//! BSD ones (`#1/<len>`) before the data.

use super::causes::Evidence;
use super::members::{header, member, pairs, Collector};
use super::{Change, Context, Detail, Parts};

/// One `ar` member.
#[derive(Debug)]
struct ArMember<'d> {
    name: String,
    mtime: String,
    owner_ids: String,
    mode: String,
    data: &'d [u8],
}

/// A header field: ASCII, padded with spaces.
fn field(header: &[u8], range: std::ops::Range<usize>) -> String {
    String::from_utf8_lossy(&header[range]).trim_end().to_owned()
}

/// Reads the members of an ar archive (skipping the symbol tables).
fn read(bytes: &[u8]) -> Result<Vec<ArMember<'_>>, String> {
    let mut at = 8;
    let mut long_names: &[u8] = &[];
    let mut members = Vec::new();
    while at + 60 <= bytes.len() {
        let head = &bytes[at..at + 60];
        if &head[58..60] != b"`\n" {
            return Err(format!("bad member header at offset {at}"));
        }
        let size: usize = field(head, 48..58).parse().map_err(|_| format!("bad member size at offset {at}"))?;
        let start = at + 60;
        let mut data = bytes.get(start..start + size).ok_or("truncated member")?;
        at = start + size + size % 2;
        let raw = field(head, 0..16);
        let name = if raw == "/" || raw == "/SYM64/" || raw == "__.SYMDEF" || raw == "__.SYMDEF SORTED" {
            continue;
        } else if raw == "//" {
            long_names = data;
            continue;
        } else if let Some(len) = raw.strip_prefix("#1/").and_then(|len| len.parse::<usize>().ok()) {
            let name = String::from_utf8_lossy(data.get(..len).ok_or("truncated BSD name")?).into_owned();
            data = &data[len..];
            name.trim_end_matches('\0').to_owned()
        } else if let Some(offset) = raw.strip_prefix('/').and_then(|n| n.parse::<usize>().ok()) {
            let rest = long_names.get(offset..).ok_or("bad long name offset")?;
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).trim_end_matches('/').to_owned()
        } else {
            raw.strip_suffix('/').unwrap_or(&raw).to_owned()
        };
        members.push(ArMember {
            name,
            mtime: field(head, 16..28),
            owner_ids: format!("{}/{}", field(head, 28..34), field(head, 34..40)),
            mode: field(head, 40..48),
            data,
        });
    }
    Ok(members)
}

/// Explains two ar archives (or .deb packages) member by member.
pub(crate) fn explain(a: &[u8], b: &[u8], context: &Context, depth: usize) -> Result<Parts, String> {
    let (ma, mb) = (read(a)?, read(b)?);
    let names = |members: &[ArMember<'_>]| members.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    let (names_a, names_b) = (names(&ma), names(&mb));
    let mut out = Collector::new(context, depth);
    out.presence_and_order(&names_a, &names_b);
    for (i, j) in pairs(&names_a, &names_b) {
        let (x, y) = (&ma[i], &mb[j]);
        let mut evidence = Evidence::default();
        let mut details = field_details(x, y, &mut evidence);
        out.evidence.absorb(evidence);
        if (details.is_empty() && x.data == y.data) || !out.has_room() {
            continue;
        }
        if x.data != y.data {
            details.push(out.content(&x.name, x.data, y.data));
        }
        out.member(details);
    }
    Ok(out.finish())
}

/// The header differences of one member pair.
fn field_details(x: &ArMember<'_>, y: &ArMember<'_>, evidence: &mut Evidence) -> Vec<Detail> {
    let name = &x.name;
    let mut details = Vec::new();
    if x.mtime != y.mtime {
        if let (Ok(ta), Ok(tb)) = (x.mtime.parse(), y.mtime.parse()) {
            evidence.ints(ta, tb);
        }
        details.push(header(format!("ar member {name}: mtime"), &x.mtime, &y.mtime));
    }
    if x.owner_ids != y.owner_ids {
        details.push(header(format!("ar member {name}: uid/gid"), &x.owner_ids, &y.owner_ids));
    }
    if x.mode != y.mode {
        let mode =
            |mode: &str| u32::from_str_radix(mode, 8).map_or_else(|_| mode.to_owned(), super::members::mode_string);
        details.push(member(name, Change::Mode { a: mode(&x.mode), b: mode(&y.mode) }));
    }
    details
}

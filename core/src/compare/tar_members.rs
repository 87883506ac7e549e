//! Tar archives, member by member: presence, order, kind, mode, owner,
//! mtime, link target, PAX headers and content.

use std::ops::Range;

use super::causes::Evidence;
use super::members::{header, member, mode_string, pairs, Collector};
use super::{Change, Context, Parts};

/// What one tar member is, with its data as a range of the archive's bytes
/// (no copy: the archive is already in memory).
#[derive(Debug)]
struct TarMember {
    name: String,
    kind: &'static str,
    mode: u32,
    owner_ids: String,
    owner_names: String,
    mtime: u64,
    link: Option<String>,
    pax: Vec<(String, String)>,
    data: Range<usize>,
}

/// The name of a tar entry type, as `Change::Kind` shows it.
fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Symlink => "symlink",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "other",
    }
}

/// A numeric header field as text; `?` when it is not a number (a
/// malformed field is itself worth seeing, not a reason to give up).
fn number(value: std::io::Result<u64>) -> String {
    value.map_or_else(|_| "?".to_owned(), |value| value.to_string())
}

/// Reads every member of a tar archive held in memory.
fn read(bytes: &[u8]) -> Result<Vec<TarMember>, String> {
    read_members(bytes).map_err(|error| error.to_string())
}

fn read_members(bytes: &[u8]) -> std::io::Result<Vec<TarMember>> {
    let mut archive = tar::Archive::new(bytes);
    let mut members = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let start = usize::try_from(entry.raw_file_position()).unwrap_or(usize::MAX);
        let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        let data = start.min(bytes.len())..start.saturating_add(size).min(bytes.len());
        let pax = match entry.pax_extensions()? {
            Some(extensions) => extensions
                .filter_map(Result::ok)
                .map(|ext| {
                    let key = String::from_utf8_lossy(ext.key_bytes()).into_owned();
                    (key, String::from_utf8_lossy(ext.value_bytes()).into_owned())
                })
                .collect(),
            None => Vec::new(),
        };
        let header = entry.header();
        let text = |value: Option<&[u8]>| String::from_utf8_lossy(value.unwrap_or_default()).into_owned();
        members.push(TarMember {
            name: entry.path()?.to_string_lossy().into_owned(),
            kind: kind_name(header.entry_type()),
            mode: header.mode().unwrap_or(0),
            owner_ids: format!("{}/{}", number(header.uid()), number(header.gid())),
            owner_names: format!("{}/{}", text(header.username_bytes()), text(header.groupname_bytes())),
            mtime: header.mtime().unwrap_or(0),
            link: entry.link_name()?.map(|link| link.to_string_lossy().into_owned()),
            pax,
            data,
        });
    }
    Ok(members)
}

/// Explains two tar archives member by member.
pub(crate) fn explain(a: &[u8], b: &[u8], context: &Context, depth: usize) -> Result<Parts, String> {
    let (ma, mb) = (read(a)?, read(b)?);
    let names = |members: &[TarMember]| members.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    let (names_a, names_b) = (names(&ma), names(&mb));
    let mut out = Collector::new(context, depth);
    out.presence_and_order(&names_a, &names_b);
    for (i, j) in pairs(&names_a, &names_b) {
        let (x, y) = (&ma[i], &mb[j]);
        let (data_a, data_b) = (&a[x.data.clone()], &b[y.data.clone()]);
        let mut evidence = Evidence::default();
        let mut details = field_details(x, y, &mut evidence);
        out.evidence.absorb(evidence);
        if (details.is_empty() && data_a == data_b) || !out.has_room() {
            continue;
        }
        if data_a != data_b {
            details.push(out.content(&x.name, data_a, data_b));
        }
        out.member(details);
    }
    Ok(out.finish())
}

/// The header differences of one member pair, with their evidence.
fn field_details(x: &TarMember, y: &TarMember, evidence: &mut Evidence) -> Vec<super::Detail> {
    let name = &x.name;
    let mut details = Vec::new();
    if x.kind != y.kind {
        details.push(member(name, Change::Kind { a: x.kind.into(), b: y.kind.into() }));
    }
    if x.mode & 0o7777 != y.mode & 0o7777 {
        details.push(member(name, Change::Mode { a: mode_string(x.mode), b: mode_string(y.mode) }));
    }
    if x.owner_ids != y.owner_ids {
        details.push(header(format!("tar member {name}: uid/gid"), &x.owner_ids, &y.owner_ids));
    }
    if x.owner_names != y.owner_names {
        evidence.texts(&x.owner_names, &y.owner_names);
        details.push(header(format!("tar member {name}: owner/group names"), &x.owner_names, &y.owner_names));
    }
    if x.mtime != y.mtime {
        evidence.ints(x.mtime, y.mtime);
        details.push(header(format!("tar member {name}: mtime"), x.mtime, y.mtime));
    }
    if x.link != y.link {
        let link = |link: &Option<String>| link.clone().unwrap_or_default();
        details.push(member(name, Change::Link { a: link(&x.link), b: link(&y.link) }));
    }
    pax_details(x, y, evidence, &mut details);
    details
}

/// The PAX records that differ (a record only on one side shows as
/// `(absent)`).
fn pax_details(x: &TarMember, y: &TarMember, evidence: &mut Evidence, details: &mut Vec<super::Detail>) {
    let mut keys: Vec<&String> = x.pax.iter().chain(&y.pax).map(|(key, _)| key).collect();
    keys.sort();
    keys.dedup();
    let value = |pax: &[(String, String)], key: &str| {
        pax.iter().find(|(k, _)| k == key).map_or_else(|| "(absent)".to_owned(), |(_, v)| v.clone())
    };
    for key in keys {
        let (va, vb) = (value(&x.pax, key), value(&y.pax, key));
        if va != vb {
            evidence.texts(&va, &vb);
            details.push(header(format!("tar member {}: pax header {key}", x.name), va, vb));
        }
    }
}

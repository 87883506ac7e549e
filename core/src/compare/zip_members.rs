//! Zip archives (jar, wheel, ...): member order, DOS timestamps, extra
//! fields, modes, compression, comments and content.
//!
//! DOS timestamps are local time without a zone: a build in another time
//! zone changes them even when the clock is fixed. The extended timestamp
//! extra field (0x5455) carries unix times, the 0x7875 field uid and gid.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::causes::Evidence;
use super::members::{header, member, mode_string, pairs, Collector};
use super::{Change, Context, Detail, Parts, MAX_IN_MEMORY};

/// What one zip member is (the central directory's view).
#[derive(Debug)]
struct ZipMember {
    name: String,
    dos_time: String,
    extra: Vec<(u16, Vec<u8>)>,
    mode: Option<u32>,
    compression: String,
    crc32: u32,
    size: u64,
    comment: String,
}

type Archive<'d> = ZipArchive<Cursor<&'d [u8]>>;

/// Opens a zip archive held in memory and lists its members.
fn read(bytes: &[u8]) -> Result<(Archive<'_>, Vec<ZipMember>), String> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|error| error.to_string())?;
    let mut members = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let file = archive.by_index_raw(index).map_err(|error| error.to_string())?;
        let dos_time = file.last_modified().map_or_else(
            || "(none)".to_owned(),
            |t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    t.year(),
                    t.month(),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            },
        );
        members.push(ZipMember {
            name: file.name().to_owned(),
            dos_time,
            extra: extra_fields(file.extra_data().unwrap_or_default()),
            mode: file.unix_mode(),
            compression: file.compression().to_string(),
            crc32: file.crc32(),
            size: file.size(),
            comment: file.comment().to_owned(),
        });
    }
    Ok((archive, members))
}

/// The extra fields of a member: (id, data) pairs, as APPNOTE 4.5 lays
/// them out.
fn extra_fields(mut data: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut fields = Vec::new();
    while data.len() >= 4 {
        let id = u16::from_le_bytes([data[0], data[1]]);
        let len = usize::from(u16::from_le_bytes([data[2], data[3]]));
        let end = (4 + len).min(data.len());
        fields.push((id, data[4..end].to_vec()));
        data = &data[end..];
    }
    fields
}

/// A field's name and its value as people read it; unix times also go to
/// the evidence.
fn describe_extra(id: u16, data: Option<&[u8]>, ints: &mut Vec<u64>) -> (String, String) {
    let name = match id {
        0x5455 => "0x5455 (extended timestamp)".to_owned(),
        0x7875 => "0x7875 (unix uid/gid)".to_owned(),
        0x000a => "0x000a (NTFS times)".to_owned(),
        _ => format!("{id:#06x}"),
    };
    let Some(data) = data else {
        return (name, "(absent)".to_owned());
    };
    let value = match (id, data) {
        (0x5455, [flags, a, b, c, d, ..]) if flags & 1 != 0 => {
            let mtime = u32::from_le_bytes([*a, *b, *c, *d]);
            ints.push(u64::from(mtime));
            format!("mtime {mtime}")
        }
        (0x7875, [1, 4, u0, u1, u2, u3, 4, g0, g1, g2, g3]) => {
            format!("uid {} gid {}", u32::from_le_bytes([*u0, *u1, *u2, *u3]), u32::from_le_bytes([*g0, *g1, *g2, *g3]))
        }
        _ => hex::encode(data),
    };
    (name, value)
}

/// Explains two zip archives member by member.
pub(crate) fn explain(a: &[u8], b: &[u8], context: &Context, depth: usize) -> Result<Parts, String> {
    let ((mut za, ma), (mut zb, mb)) = (read(a)?, read(b)?);
    let names = |members: &[ZipMember]| members.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    let (names_a, names_b) = (names(&ma), names(&mb));
    let mut out = Collector::new(context, depth);
    if za.comment() != zb.comment() {
        let comment = |archive: &Archive<'_>| String::from_utf8_lossy(archive.comment()).into_owned();
        out.archive(header("zip comment".into(), comment(&za), comment(&zb)));
    }
    out.presence_and_order(&names_a, &names_b);
    for (i, j) in pairs(&names_a, &names_b) {
        let (x, y) = (&ma[i], &mb[j]);
        let mut evidence = Evidence::default();
        let mut details = field_details(x, y, &mut evidence);
        out.evidence.absorb(evidence);
        let content_differs = x.crc32 != y.crc32 || x.size != y.size;
        if (details.is_empty() && !content_differs) || !out.has_room() {
            continue;
        }
        if content_differs {
            match (content(&mut za, i), content(&mut zb, j)) {
                (Ok(da), Ok(db)) => details.push(out.content(&x.name, &da, &db)),
                (Err(error), _) | (_, Err(error)) => {
                    details.push(Detail::Note { text: format!("member {}: content not compared: {error}", x.name) })
                }
            }
        }
        out.member(details);
    }
    Ok(out.finish())
}

/// A member's uncompressed bytes, up to [`MAX_IN_MEMORY`].
fn content(archive: &mut Archive<'_>, index: usize) -> Result<Vec<u8>, String> {
    let file = archive.by_index(index).map_err(|error| error.to_string())?;
    let mut data = Vec::new();
    file.take(MAX_IN_MEMORY + 1).read_to_end(&mut data).map_err(|error| error.to_string())?;
    if data.len() as u64 > MAX_IN_MEMORY {
        return Err(format!("larger than {} MiB", MAX_IN_MEMORY >> 20));
    }
    Ok(data)
}

/// The differences of one member pair outside its content.
fn field_details(x: &ZipMember, y: &ZipMember, evidence: &mut Evidence) -> Vec<Detail> {
    let name = &x.name;
    let mut details = Vec::new();
    if x.dos_time != y.dos_time {
        evidence.texts(&x.dos_time, &y.dos_time);
        details.push(header(format!("zip member {name}: dos time"), &x.dos_time, &y.dos_time));
    }
    let mut ids: Vec<u16> = x.extra.iter().chain(&y.extra).map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let find = |member: &ZipMember| member.extra.iter().find(|(i, _)| *i == id).map(|(_, d)| d.clone());
        let (da, db) = (find(x), find(y));
        if da != db {
            let (field, va) = describe_extra(id, da.as_deref(), &mut evidence.ints_a);
            let (_, vb) = describe_extra(id, db.as_deref(), &mut evidence.ints_b);
            details.push(header(format!("zip member {name}: extra field {field}"), va, vb));
        }
    }
    if x.mode != y.mode {
        let mode = |mode: Option<u32>| mode.map_or_else(|| "(none)".to_owned(), mode_string);
        details.push(member(name, Change::Mode { a: mode(x.mode), b: mode(y.mode) }));
    }
    if x.compression != y.compression {
        details.push(header(format!("zip member {name}: compression"), &x.compression, &y.compression));
    }
    if x.comment != y.comment {
        details.push(header(format!("zip member {name}: comment"), &x.comment, &y.comment));
    }
    details
}

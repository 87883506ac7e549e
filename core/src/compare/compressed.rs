//! Compressed streams (gzip, xz): the header fields, then the content,
//! explained as a file of its own.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::members::{header, Collector};
use super::{Context, Detail, Format, Parts, MAX_IN_MEMORY};

/// The fields of a gzip header (RFC 1952) that can differ between builds.
#[derive(Debug, PartialEq, Eq)]
struct GzipHeader {
    flags: u8,
    mtime: u32,
    extra_flags: u8,
    os: u8,
    extra: Option<Vec<u8>>,
    name: Option<String>,
    comment: Option<String>,
    /// Where the compressed data starts.
    len: usize,
}

/// Reads a gzip header, or says why it cannot.
fn gzip_header(data: &[u8]) -> Result<GzipHeader, String> {
    let truncated = || "truncated gzip header".to_owned();
    let fixed = data.get(..10).ok_or_else(truncated)?;
    let flags = fixed[3];
    let mut at = 10;
    let extra = if flags & 0x04 != 0 {
        let len = usize::from(u16::from_le_bytes([
            *data.get(at).ok_or_else(truncated)?,
            *data.get(at + 1).ok_or_else(truncated)?,
        ]));
        let extra = data.get(at + 2..at + 2 + len).ok_or_else(truncated)?.to_vec();
        at += 2 + len;
        Some(extra)
    } else {
        None
    };
    let mut zero_terminated = |present: bool| -> Result<Option<String>, String> {
        if !present {
            return Ok(None);
        }
        let rest = data.get(at..).ok_or_else(truncated)?;
        let len = rest.iter().position(|&b| b == 0).ok_or_else(truncated)?;
        at += len + 1;
        Ok(Some(String::from_utf8_lossy(&rest[..len]).into_owned()))
    };
    let name = zero_terminated(flags & 0x08 != 0)?;
    let comment = zero_terminated(flags & 0x10 != 0)?;
    if flags & 0x02 != 0 {
        at += 2;
    }
    Ok(GzipHeader {
        flags,
        mtime: u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        extra_flags: fixed[8],
        os: fixed[9],
        extra,
        name,
        comment,
        len: at,
    })
}

/// The name RFC 1952 gives an OS byte.
fn os_name(os: u8) -> &'static str {
    match os {
        0 => "FAT",
        3 => "Unix",
        7 => "Macintosh",
        10 => "TOPS-20",
        11 => "NTFS",
        255 => "unknown",
        _ => "other",
    }
}

/// The names of the set gzip flags.
fn flag_names(flags: u8) -> String {
    let names: Vec<&str> = [(0x01, "FTEXT"), (0x02, "FHCRC"), (0x04, "FEXTRA"), (0x08, "FNAME"), (0x10, "FCOMMENT")]
        .into_iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| name)
        .collect();
    format!("{flags:#04x} ({})", if names.is_empty() { "none".to_owned() } else { names.join(" ") })
}

/// The header details of two gzip headers.
fn gzip_details(x: &GzipHeader, y: &GzipHeader, out: &mut Collector<'_>) {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "(none)".to_owned());
    if x.mtime != y.mtime {
        out.evidence.ints(u64::from(x.mtime), u64::from(y.mtime));
        out.archive(header("gzip mtime".into(), x.mtime, y.mtime));
    }
    if x.name != y.name {
        out.evidence.texts(&optional(&x.name), &optional(&y.name));
        out.archive(header("gzip name".into(), optional(&x.name), optional(&y.name)));
    }
    if x.comment != y.comment {
        out.evidence.texts(&optional(&x.comment), &optional(&y.comment));
        out.archive(header("gzip comment".into(), optional(&x.comment), optional(&y.comment)));
    }
    if x.os != y.os {
        let os = |os: u8| format!("{os} ({})", os_name(os));
        out.archive(header("gzip os".into(), os(x.os), os(y.os)));
    }
    if x.flags != y.flags {
        out.archive(header("gzip flags".into(), flag_names(x.flags), flag_names(y.flags)));
    }
    if x.extra_flags != y.extra_flags {
        out.archive(header("gzip extra flags (compression level)".into(), x.extra_flags, y.extra_flags));
    }
    if x.extra != y.extra {
        let hex = |extra: &Option<Vec<u8>>| extra.as_deref().map_or("(none)".to_owned(), hex::encode);
        out.archive(header("gzip extra field".into(), hex(&x.extra), hex(&y.extra)));
    }
}

/// Decompresses at most [`MAX_IN_MEMORY`] bytes; `Ok(None)` when there is
/// more.
fn decompress(format: Format, data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let reader: Box<dyn Read + '_> = match format {
        Format::Xz => Box::new(lzma_rust2::XzReader::new(data, true)),
        _ => Box::new(MultiGzDecoder::new(data)),
    };
    let mut out = Vec::new();
    reader.take(MAX_IN_MEMORY + 1).read_to_end(&mut out).map_err(|error| format!("cannot decompress: {error}"))?;
    Ok((out.len() as u64 <= MAX_IN_MEMORY).then_some(out))
}

/// The name the decompressed content is shown under.
fn inner_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    for (suffix, replacement) in [(".tgz", ".tar"), (".txz", ".tar"), (".gz", ""), (".xz", "")] {
        if let Some(stem) = base.strip_suffix(suffix).filter(|stem| !stem.is_empty()) {
            return format!("{stem}{replacement}");
        }
    }
    format!("{base} (decompressed)")
}

/// Explains two gzip or xz streams: headers, then the decompressed content.
pub(crate) fn explain(
    format: Format,
    path: &str,
    a: &[u8],
    b: &[u8],
    context: &Context,
    depth: usize,
) -> Result<Parts, String> {
    let mut out = Collector::new(context, depth);
    let mut same_stream = a == b;
    if format == Format::Gzip {
        let (x, y) = (gzip_header(a)?, gzip_header(b)?);
        gzip_details(&x, &y, &mut out);
        same_stream = a.get(x.len..) == b.get(y.len..);
    }
    let (Some(da), Some(db)) = (decompress(format, a)?, decompress(format, b)?) else {
        out.archive(Detail::Note {
            text: format!("decompresses to more than {} MiB: content not compared", MAX_IN_MEMORY >> 20),
        });
        return Ok(out.finish());
    };
    if da != db {
        let detail = out.content(&inner_name(path), &da, &db);
        out.archive(detail);
    } else if !same_stream {
        out.archive(Detail::Note {
            text: "the compressed data differs but decompresses to the same bytes \
                   (another compressor, version or level)"
                .to_owned(),
        });
    }
    Ok(out.finish())
}

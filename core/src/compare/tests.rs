//! Each format with small inputs built here, the cause guesses, and the
//! tree walk on temporary directories. The Display of several explanations
//! is snapshotted: it is what `verify` prints.

use std::io::Write;

use super::*;

/// 2026-12-02T07:31:12Z: the time both test builds ran near.
const T: u64 = 1_796_196_672;

fn context() -> Context {
    Context { build_paths: vec!["/src".into()], hostnames: vec!["repro-run".into()], times: vec![T, T + 60] }
}

/// A timestamp cause near the first build (`T`).
fn stamp(value: &str) -> Cause {
    Cause::Timestamp { value: value.into(), near: "2026-12-02T07:31:12Z".into() }
}

/// A timestamp cause near the second build (`T + 60`).
fn stamp2(value: &str) -> Cause {
    Cause::Timestamp { value: value.into(), near: "2026-12-02T07:32:12Z".into() }
}

fn gzip(name: Option<&str>, mtime: u32, data: &[u8]) -> Vec<u8> {
    let mut builder = flate2::GzBuilder::new().mtime(mtime);
    if let Some(name) = name {
        builder = builder.filename(name);
    }
    let mut encoder = builder.write(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A tar of `(name, mode, mtime, data)` members, in that order.
fn tar(members: &[(&str, u32, u64, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, mode, mtime, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(*mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A tar whose one member has a PAX header with `records`.
fn tar_with_pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        let rest = format!(" {key}={value}\n");
        let mut len = rest.len() + 2;
        if (len.to_string() + &rest).len() != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len}{rest}").as_bytes());
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut pax = tar::Header::new_ustar();
    pax.set_entry_type(tar::EntryType::XHeader);
    pax.set_size(body.len() as u64);
    pax.set_mode(0o644);
    pax.set_uid(0);
    pax.set_gid(0);
    pax.set_mtime(0);
    pax.set_cksum();
    builder.append_data(&mut pax, "PaxHeaders/file", body.as_slice()).unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_size(2);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, "file", &b"x\n"[..]).unwrap();
    builder.into_inner().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut writer = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    writer.write_all(data).unwrap();
    writer.finish().unwrap()
}

/// A zip of `(name, dos time, data)` members, an extended timestamp extra
/// field holding `unix_time` on each.
/// A DOS date and time: year, month, day, hour, minute, second.
type DosTime = (u16, u8, u8, u8, u8, u8);

fn zip(members: &[(&str, DosTime, &[u8])], unix_time: u32) -> Vec<u8> {
    let mut writer = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, (y, mo, d, h, mi, s), data) in members {
        let time = ::zip::DateTime::from_date_and_time(*y, *mo, *d, *h, *mi, *s).unwrap();
        let mut options = ::zip::write::FileOptions::<::zip::write::ExtendedFileOptions>::default()
            .last_modified_time(time)
            .unix_permissions(0o644);
        let mut extra = vec![1u8];
        extra.extend_from_slice(&unix_time.to_le_bytes());
        options.add_extra_data(0x5455, extra, false).unwrap();
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// An ar archive of `(name, mtime, data)` members, GNU style.
fn ar(members: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, mtime, data) in members {
        let header =
            format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", format!("{name}/"), mtime, 0, 0, "100644", data.len());
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A minimal ELF64 little-endian file: `.text`, `.rodata`, a GNU
/// build-id note and the section name table.
fn elf(rodata: &[u8], build_id: [u8; 20]) -> Vec<u8> {
    let mut note = Vec::new();
    for word in [4u32, 20, 3] {
        note.extend_from_slice(&word.to_le_bytes());
    }
    note.extend_from_slice(b"GNU\0");
    note.extend_from_slice(&build_id);
    let names = b"\0.text\0.rodata\0.note.gnu.build-id\0.shstrtab\0";
    let sections: [(u32, u32, &[u8]); 4] = [(1, 1, &[0x90; 16]), (7, 1, rodata), (15, 7, &note), (34, 3, names)];
    let mut body = Vec::new();
    let mut headers = vec![0u8; 64];
    for (name, kind, data) in sections {
        let offset = 64 + body.len() as u64;
        body.extend_from_slice(data);
        let mut header = vec![0u8; 64];
        header[0..4].copy_from_slice(&name.to_le_bytes());
        header[4..8].copy_from_slice(&kind.to_le_bytes());
        header[24..32].copy_from_slice(&offset.to_le_bytes());
        header[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        headers.extend_from_slice(&header);
    }
    while body.len() % 8 != 0 {
        body.push(0);
    }
    let mut out = vec![0u8; 64];
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\0");
    out[16..18].copy_from_slice(&2u16.to_le_bytes());
    out[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[40..48].copy_from_slice(&(64 + body.len() as u64).to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    out[60..62].copy_from_slice(&5u16.to_le_bytes());
    out[62..64].copy_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&headers);
    out
}

#[test]
fn detects_formats_from_content() {
    let text = b"hello\n";
    assert_eq!(detect("x", text), Format::Text);
    assert_eq!(detect("x", b"a\0b"), Format::Binary);
    assert_eq!(detect("x", &gzip(None, 0, text)), Format::Gzip);
    assert_eq!(detect("x", &xz(text)), Format::Xz);
    assert_eq!(detect("x", &tar(&[("a", 0o644, 0, text)])), Format::Tar);
    assert_eq!(detect("x", &zip(&[("a", (2026, 1, 1, 0, 0, 0), text)], 0)), Format::Zip);
    assert_eq!(detect("x", &ar(&[("a.o", 0, text)])), Format::Ar);
    assert_eq!(detect("x", &ar(&[("debian-binary", 0, b"2.0\n")])), Format::Deb);
    assert_eq!(detect("x", &elf(b"x", [0; 20])), Format::Elf);
}

#[test]
fn text_with_a_date_points_at_the_time() {
    let a = b"name: app\nbuilt: 2026-12-02 07:31:12\nby: /src\n";
    let b = b"name: app\nbuilt: 2026-12-02 07:32:12\nby: /src\n";
    let explanation = explain("VERSION", a, b, &context());
    assert_eq!(explanation.causes, [stamp("2026-12-02 07:31:12"), stamp2("2026-12-02 07:32:12")]);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    text, 46 bytes
      --- a/VERSION
      +++ b/VERSION
      @@ -1,3 +1,3 @@
       name: app
      -built: 2026-12-02 07:31:12
      +built: 2026-12-02 07:32:12
       by: /src
      likely causes:
        - a time near a build: 2026-12-02 07:31:12 (build at 2026-12-02T07:31:12Z)
        - a time near a build: 2026-12-02 07:32:12 (build at 2026-12-02T07:32:12Z)
    "#);
}

#[test]
fn a_reordered_file_list_is_a_reordering() {
    let explanation = explain("FILES", b"a.o\nb.o\nc.o\n", b"c.o\na.o\nb.o\n", &context());
    assert_eq!(explanation.format, Format::Text);
    assert_eq!(explanation.causes, [Cause::Reordering]);
}

#[test]
fn a_long_text_diff_is_trimmed() {
    let a: String = (0..200).map(|i| format!("line {i}\n")).collect();
    let b: String = (0..200).map(|i| format!("line {}\n", i * 7)).collect();
    let explanation = explain("big.txt", a.as_bytes(), b.as_bytes(), &context());
    let Detail::TextDiff { unified } = &explanation.details[0] else { panic!("{explanation:?}") };
    assert_eq!(unified.lines().count(), 61);
    assert!(unified.ends_with("more diff lines left out"), "{unified}");
}

#[test]
fn binary_ranges_and_a_random_run() {
    let mut a = vec![7u8; 100];
    a[0] = 0;
    let mut b = a.clone();
    b[40..56].copy_from_slice(&[0xab; 16]);
    b[90] = 1;
    let explanation = explain("blob.bin", &a, &b, &context());
    assert_eq!(explanation.causes, [Cause::Random]);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    binary, 100 bytes
      bytes differ in 2 ranges: 0x28..0x38, 0x5a..0x5b
      a 00000020: 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07 07
      b 00000020: 07 07 07 07 07 07 07 07 ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab 07 07 07 07 07 07 07 07
      likely causes:
        - looks random (a seed, a temporary name, or a hash of one)
    "#);
}

#[test]
fn gzip_headers_then_content() {
    let a = gzip(Some("notes.txt"), T as u32, b"same\n");
    let b = gzip(Some("notes-2.txt"), (T + 60) as u32, b"same\n");
    let explanation = explain("notes.txt.gz", &a, &b, &context());
    assert_eq!(explanation.causes, [stamp("1796196672"), stamp2("1796196732")]);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    gzip, a 35 bytes, b 37 bytes
      gzip mtime: a 1796196672, b 1796196732
      gzip name: a notes.txt, b notes-2.txt
      likely causes:
        - a time near a build: 1796196672 (build at 2026-12-02T07:31:12Z)
        - a time near a build: 1796196732 (build at 2026-12-02T07:32:12Z)
    "#);

    let c = gzip(Some("notes.txt"), T as u32, b"other\n");
    let explanation = explain("notes.txt.gz", &a, &c, &context());
    let Detail::Member { name, change } = &explanation.details[0] else { panic!("{explanation:?}") };
    assert_eq!(name, "notes.txt");
    assert!(matches!(&**change, Change::Content(inner) if inner.format == Format::Text));
}

#[test]
fn tar_members_with_build_time_mtimes() {
    let a = tar(&[("bin/app", 0o755, T, b"\x7fapp"), ("README", 0o644, 0, b"hi\n")]);
    let b = tar(&[("bin/app", 0o755, T + 60, b"\x7fapp"), ("README", 0o600, 0, b"hello\n")]);
    let explanation = explain("out.tar", &a, &b, &context());
    assert_eq!(explanation.format, Format::Tar);
    assert_eq!(explanation.causes, [stamp(&T.to_string()), stamp2(&(T + 60).to_string())]);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    tar, 3072 bytes
      tar member bin/app: mtime: a 1796196672, b 1796196732
      member README: mode: a 0644, b 0600
      member README: content differs (text, a 3 bytes, b 6 bytes)
        --- a/README
        +++ b/README
        @@ -1 +1 @@
        -hi
        +hello
      likely causes:
        - a time near a build: 1796196672 (build at 2026-12-02T07:31:12Z)
        - a time near a build: 1796196732 (build at 2026-12-02T07:32:12Z)
    "#);
}

#[test]
fn tar_gz_names_the_member_and_its_order() {
    let a = gzip(None, 0, &tar(&[("a", 0o644, 0, b"1"), ("b", 0o644, 0, b"2")]));
    let b = gzip(None, 0, &tar(&[("b", 0o644, 0, b"2"), ("a", 0o644, 0, b"1"), ("c", 0o644, 0, b"3")]));
    let explanation = explain("dist/out.tar.gz", &a, &b, &context());
    assert_eq!(explanation.causes, [Cause::Reordering]);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    gzip, a 89 bytes, b 105 bytes
      member out.tar: content differs (tar, a 3072 bytes, b 4096 bytes)
        members in another order:
          a: a, b
          b: b, a, c
        member c: added (only in b)
      likely causes:
        - the same entries in another order (directory order? a hash map?)
    "#);
}

#[test]
fn tar_pax_headers() {
    let a = tar_with_pax(&[("mtime", "1796196672.25")]);
    let b = tar_with_pax(&[("mtime", "1796196732.5"), ("atime", "1796196732")]);
    let explanation = explain("out.tar", &a, &b, &context());
    let fields: Vec<&str> = explanation
        .details
        .iter()
        .filter_map(|detail| match detail {
            Detail::Header { field, .. } => Some(field.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(fields, ["tar member file: pax header atime", "tar member file: pax header mtime"], "{explanation}");
    assert!(explanation.causes.contains(&stamp("1796196672")), "{:?}", explanation.causes);
}

#[test]
fn tar_xz_is_decompressed() {
    let a = xz(&tar(&[("a", 0o644, 0, b"1\n")]));
    let b = xz(&tar(&[("a", 0o644, 0, b"2\n")]));
    let explanation = explain("out.tar.xz", &a, &b, &context());
    assert_eq!(explanation.format, Format::Xz);
    let Detail::Member { name, change } = &explanation.details[0] else { panic!("{explanation:?}") };
    assert_eq!(name, "out.tar");
    assert!(matches!(&**change, Change::Content(inner) if inner.format == Format::Tar));
}

#[test]
fn the_member_budget_is_kept() {
    let names: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
    let a = tar(&names.iter().map(|n| (n.as_str(), 0o644, 0, &b"a"[..])).collect::<Vec<_>>());
    let b = tar(&names.iter().map(|n| (n.as_str(), 0o644, 0, &b"b"[..])).collect::<Vec<_>>());
    let explanation = explain("many.tar", &a, &b, &context());
    assert_eq!(explanation.details.len(), MAX_MEMBERS + 1);
    assert_eq!(
        explanation.details.last(),
        Some(&Detail::Note { text: "10 more members differ; only the first 50 are listed".into() })
    );
}

#[test]
fn zip_dos_times_and_extra_fields() {
    let a = zip(
        &[("META-INF/MANIFEST.MF", (2026, 12, 2, 7, 31, 12), b"v1\n"), ("app.class", (2026, 12, 2, 7, 31, 12), b"x")],
        T as u32,
    );
    let b = zip(
        &[("META-INF/MANIFEST.MF", (2026, 12, 2, 7, 32, 12), b"v1\n"), ("app.class", (2026, 12, 2, 7, 31, 12), b"y")],
        T as u32 + 60,
    );
    let explanation = explain("app.jar", &a, &b, &context());
    assert_eq!(explanation.format, Format::Zip);
    assert!(explanation.causes.contains(&stamp2("2026-12-02 07:32:12")), "{:?}", explanation.causes);
    assert!(explanation.causes.contains(&stamp2("1796196732")), "{:?}", explanation.causes);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    zip, 276 bytes
      zip member META-INF/MANIFEST.MF: dos time: a 2026-12-02 07:31:12, b 2026-12-02 07:32:12
      zip member META-INF/MANIFEST.MF: extra field 0x5455 (extended timestamp): a mtime 1796196672, b mtime 1796196732
      zip member app.class: extra field 0x5455 (extended timestamp): a mtime 1796196672, b mtime 1796196732
      member app.class: content differs (text, 1 byte)
        --- a/app.class
        +++ b/app.class
        @@ -1 +1 @@
        -x
        +y
      likely causes:
        - a time near a build: 2026-12-02 07:31:12 (build at 2026-12-02T07:31:12Z)
        - a time near a build: 1796196672 (build at 2026-12-02T07:31:12Z)
        - a time near a build: 2026-12-02 07:32:12 (build at 2026-12-02T07:32:12Z)
        - a time near a build: 1796196732 (build at 2026-12-02T07:32:12Z)
    "#);
}

#[test]
fn deb_members_then_their_tarballs() {
    let data = |mtime| gzip(None, 0, &tar(&[("./usr/bin/hello", 0o755, mtime, b"hello")]));
    let deb = |mtime, data: &[u8]| {
        ar(&[
            ("debian-binary", mtime, b"2.0\n"),
            ("control.tar.gz", mtime, &gzip(None, 0, &tar(&[("./control", 0o644, 0, b"Package: hello\n")]))),
            ("data.tar.gz", mtime, data),
        ])
    };
    let (a, b) = (deb(T, &data(T)), deb(T, &data(T + 60)));
    let explanation = explain("hello_1.0_amd64.deb", &a, &b, &context());
    assert_eq!(explanation.format, Format::Deb);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    deb, 388 bytes
      member data.tar.gz: content differs (gzip, 95 bytes)
        member data.tar: content differs (tar, 2048 bytes)
          tar member usr/bin/hello: mtime: a 1796196672, b 1796196732
      likely causes:
        - a time near a build: 1796196672 (build at 2026-12-02T07:31:12Z)
        - a time near a build: 1796196732 (build at 2026-12-02T07:32:12Z)
    "#);

    let plain = explain(
        "libx.a",
        &ar(&[("x.o", T, b"1"), ("y.o", 0, b"2")]),
        &ar(&[("x.o", T + 60, b"1"), ("y.o", 0, b"3")]),
        &context(),
    );
    assert_eq!(plain.format, Format::Ar);
    assert_eq!(plain.details.len(), 2, "{plain}");
}

#[test]
fn elf_sections_with_the_build_id_as_a_consequence() {
    let a = elf(b"built Dec  2 2026\0", [1; 20]);
    let b = elf(b"built Dec  3 2026\0", [2; 20]);
    let explanation = explain("bin/app", &a, &b, &context());
    let Detail::Sections { names, note } = &explanation.details[0] else { panic!("{explanation:?}") };
    assert_eq!(names, &[".rodata", ".note.gnu.build-id"]);
    assert_eq!(note.as_deref(), Some(".note.gnu.build-id differs as a consequence of the others"));
    assert_eq!(explanation.causes, [stamp2("Dec  2 2026"), stamp2("Dec  3 2026"),]);
    insta::assert_snapshot!(explanation.to_string(), @r#"
    ELF, 504 bytes
      sections differ: .rodata, .note.gnu.build-id
        (.note.gnu.build-id differs as a consequence of the others)
      bytes differ in 1 range: 0x5b..0x5c
      a 00000053: 6c 74 20 44 65 63 20 20 32 20 32 30 32 36 00 04 00 00 00 14 00 00 00 03 00 00 00 47 4e 55 00 01
      b 00000053: 6c 74 20 44 65 63 20 20 33 20 32 30 32 36 00 04 00 00 00 14 00 00 00 03 00 00 00 47 4e 55 00 02
      likely causes:
        - a time near a build: Dec  2 2026 (build at 2026-12-02T07:32:12Z)
        - a time near a build: Dec  3 2026 (build at 2026-12-02T07:32:12Z)
    "#);

    let only_id = explain("bin/app", &a, &elf(b"built Dec  2 2026\0", [2; 20]), &context());
    let Detail::Sections { names, note } = &only_id.details[0] else { panic!("{only_id:?}") };
    assert_eq!(names, &[".note.gnu.build-id"]);
    assert!(note.as_deref().is_some_and(|note| note.starts_with("only")), "{note:?}");
}

#[test]
fn different_formats_and_corrupt_archives_fall_back_to_bytes() {
    let explanation = explain("x", &gzip(None, 0, b"a"), b"plain text\n", &context());
    assert_eq!(explanation.format, Format::Binary);
    assert_eq!(explanation.details[0], Detail::Header { field: "format".into(), a: "gzip".into(), b: "text".into() });
    let mut corrupt = gzip(None, 0, b"some longer content that compresses");
    let len = corrupt.len();
    corrupt[len - 12..].fill(0);
    let explanation = explain("x.gz", &gzip(None, 0, b"a"), &corrupt, &context());
    assert!(
        matches!(&explanation.details[0], Detail::Note { text } if text.starts_with("could not be read as gzip")),
        "{explanation}"
    );
}

#[test]
fn nesting_is_bounded() {
    let (mut a, mut b) = (b"one\n".to_vec(), b"two\n".to_vec());
    for _ in 0..6 {
        (a, b) = (gzip(None, 0, &a), gzip(None, 0, &b));
    }
    let text = explain("deep.gz", &a, &b, &context()).to_string();
    assert!(text.contains("note: nested 4 archives deep: compared as bytes"), "{text}");
}

#[test]
fn json_shape() {
    let explanation = explain("a.txt", b"x 1796196672\n", b"x 1796196700\n", &context());
    let difference = FileDifference { path: "a.txt".into(), change: Change::Content(explanation) };
    insta::assert_snapshot!(serde_json::to_string_pretty(&difference).unwrap(), @r#"
    {
      "path": "a.txt",
      "change": {
        "kind": "content",
        "format": "text",
        "size": [
          13,
          13
        ],
        "details": [
          {
            "kind": "text_diff",
            "unified": "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-x 1796196672\n+x 1796196700"
          }
        ],
        "causes": [
          {
            "kind": "timestamp",
            "value": "1796196672",
            "near": "2026-12-02T07:31:12Z"
          },
          {
            "kind": "timestamp",
            "value": "1796196700",
            "near": "2026-12-02T07:31:12Z"
          }
        ]
      }
    }
    "#);
}

#[test]
fn compare_trees_names_each_kind_of_difference() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for root in [a.path(), b.path()] {
        fs_err::create_dir_all(root.join("lib")).unwrap();
        fs_err::write(root.join("same.txt"), "same\n").unwrap();
        fs_err::write(root.join("lib/tool"), "#!/bin/sh\n").unwrap();
    }
    fs_err::write(a.path().join("gone.txt"), "x").unwrap();
    fs_err::write(b.path().join("lib/new.txt"), "x").unwrap();
    fs_err::set_permissions(b.path().join("lib/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    fs_err::set_permissions(a.path().join("lib/tool"), std::fs::Permissions::from_mode(0o644)).unwrap();
    symlink("same.txt", a.path().join("link")).unwrap();
    symlink("gone.txt", b.path().join("link")).unwrap();
    fs_err::write(a.path().join("kind"), "file").unwrap();
    fs_err::create_dir(b.path().join("kind")).unwrap();
    fs_err::write(a.path().join("VERSION"), "built 2026-12-02\n").unwrap();
    fs_err::write(b.path().join("VERSION"), "built 2026-12-03\n").unwrap();
    let comparison = compare_trees(a.path(), b.path(), &context()).unwrap();
    assert!(!comparison.is_reproducible());
    assert_eq!(comparison.identical, 1);
    insta::assert_snapshot!(comparison.to_string(), @r#"
    6 differences (1 file identical):
      VERSION: content differs (text, 17 bytes)
        --- a/VERSION
        +++ b/VERSION
        @@ -1 +1 @@
        -built 2026-12-02
        +built 2026-12-03
        likely causes:
          - a time near a build: 2026-12-02 (build at 2026-12-02T07:32:12Z)
          - a time near a build: 2026-12-03 (build at 2026-12-02T07:32:12Z)
      gone.txt: removed (only in a)
      kind: another kind: a file, b directory
      lib/new.txt: added (only in b)
      lib/tool: mode: a 0644, b 0755
      link: link target: a same.txt, b gone.txt
    "#);

    let same = compare_trees(a.path(), a.path(), &context()).unwrap();
    assert!(same.is_reproducible());
    assert_eq!(same.to_string(), "reproducible: 6 files identical");
}

#[test]
fn large_files_are_compared_streaming() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let size = MAX_IN_MEMORY as usize + 10;
    let mut data = vec![0u8; size];
    fs_err::write(a.path().join("big"), &data).unwrap();
    data[size - 5..size - 1].copy_from_slice(&(T as u32).to_le_bytes());
    fs_err::write(b.path().join("big"), &data).unwrap();
    let comparison = compare_trees(a.path(), b.path(), &context()).unwrap();
    let [FileDifference { change: Change::Content(explanation), .. }] = comparison.differences.as_slice() else {
        panic!("{comparison:?}")
    };
    let Detail::ByteRanges { ranges, .. } = &explanation.details[0] else { panic!("{explanation:?}") };
    assert_eq!(ranges, &[(size as u64 - 5, size as u64 - 1)]);
    assert_eq!(explanation.causes, [stamp(&T.to_string())]);
}

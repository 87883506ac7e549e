//! The `repro-tree-v1` tree digest: the vectors of docs/tree-digest.md, the
//! properties the spec promises, hostile input, and real engine exports.
//!
//! Tar streams are written byte by byte here (not through a tar library's
//! path checks), so that tests can also write what no honest writer would:
//! `..` components, non-UTF-8 names, hand-made GNU sparse headers.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Command;

use fs_err as fs;
use proptest::prelude::*;
use repro_run_core::digest::{digest_dir, digest_tar, digest_tar_at, Digest, TreeError, TreeKind};

// ---------------------------------------------------------------------------
// A tree, as a list of tar entries.

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    path: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn entry(path: &[u8], kind: Kind, mode: u32) -> Entry {
    Entry { path: path.to_vec(), kind, mode, uid: 0, gid: 0, mtime: 1_700_000_000, xattrs: Vec::new() }
}
fn dir(path: &str, mode: u32) -> Entry {
    entry(path.as_bytes(), Kind::Dir, mode)
}
fn file(path: &str, mode: u32, content: &[u8]) -> Entry {
    entry(path.as_bytes(), Kind::File(content.to_vec()), mode)
}
fn symlink(path: &str, target: &str) -> Entry {
    entry(path.as_bytes(), Kind::Symlink(target.as_bytes().to_vec()), 0o777)
}
fn hardlink(path: &str, target: &str) -> Entry {
    entry(path.as_bytes(), Kind::Hardlink(target.as_bytes().to_vec()), 0o644)
}

impl Entry {
    fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.xattrs.push((name.as_bytes().to_vec(), value.to_vec()));
        self
    }
}

/// `cap_net_raw+ep`, as `setcap` writes it (VFS_CAP_REVISION_2).
const CAP_NET_RAW: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

// ---------------------------------------------------------------------------
// Writing tar streams by hand.

fn raw_header(name: &[u8], flag: u8, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.as_old_mut().linkflag = [flag];
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where <len> counts itself.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn append(out: &mut Vec<u8>, header: &tar::Header, data: &[u8]) {
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    if e.path.len() > 100 {
        let mut long = e.path.clone();
        long.push(0);
        let mut h = raw_header(b"././@LongLink", b'L', long.len() as u64);
        h.set_cksum();
        append(out, &h, &long);
    }
    let link = match &e.kind {
        Kind::Symlink(t) | Kind::Hardlink(t) => t.clone(),
        _ => Vec::new(),
    };
    if link.len() > 100 {
        let mut long = link.clone();
        long.push(0);
        let mut h = raw_header(b"././@LongLink", b'K', long.len() as u64);
        h.set_cksum();
        append(out, &h, &long);
    }
    if !e.xattrs.is_empty() {
        let mut records = Vec::new();
        for (name, value) in &e.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            records.extend(pax_record(&key, value));
        }
        let mut h = raw_header(b"PaxHeaders/entry", b'x', records.len() as u64);
        h.set_cksum();
        append(out, &h, &records);
    }
    let (flag, data): (u8, &[u8]) = match &e.kind {
        Kind::Dir => (b'5', b""),
        Kind::File(content) => (b'0', content),
        Kind::Symlink(_) => (b'2', b""),
        Kind::Hardlink(_) => (b'1', b""),
        Kind::Char(..) => (b'3', b""),
        Kind::Block(..) => (b'4', b""),
        Kind::Fifo => (b'6', b""),
    };
    let mut h = raw_header(&e.path, flag, data.len() as u64);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    let n = link.len().min(100);
    h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    if let Kind::Char(major, minor) | Kind::Block(major, minor) = e.kind {
        h.set_device_major(major).expect("gnu header has device fields");
        h.set_device_minor(minor).expect("gnu header has device fields");
    }
    h.set_cksum();
    append(out, &h, data);
}

const END: [u8; 1024] = [0; 1024];

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        write_entry(&mut out, e);
    }
    out.extend_from_slice(&END);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

fn digest(entries: &[Entry], kind: TreeKind) -> Digest {
    digest_tar(&tar_of(entries)[..], kind).expect("tree digest")
}

fn error(bytes: &[u8], kind: TreeKind) -> String {
    match digest_tar(bytes, kind) {
        Ok(d) => panic!("expected an error, got {d}"),
        Err(e) => e.to_string(),
    }
}

fn d(s: &str) -> Digest {
    s.parse().expect("a digest literal")
}

// ---------------------------------------------------------------------------
// The vectors of docs/tree-digest.md, section "Test vectors".

/// V3: a small build output.
fn vector_artifacts() -> Vec<Entry> {
    vec![
        dir("bin", 0o755).owner(1000, 1000),
        file("bin/hello", 0o755, b"hello\n"),
        symlink("bin/hi", "hello"),
        hardlink("bin/hello-again", "bin/hello"),
        file("share/doc/README", 0o644, b"read me\n"),
        entry(b"pipe", Kind::Fifo, 0o600),
    ]
}

/// V4: a small root filesystem, with entries an engine would have injected.
fn vector_rootfs() -> Vec<Entry> {
    vec![
        dir("./", 0o700),
        dir("./etc", 0o755),
        file("./etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n"),
        file("./etc/hosts", 0o644, b"127.0.0.1 localhost\n"),
        file("./.dockerenv", 0o755, b""),
        entry(b"./dev/null", Kind::Char(1, 3), 0o666),
        file("./usr/bin/ping", 0o755, b"ping").xattr("security.capability", &CAP_NET_RAW).xattr("user.note", b"x"),
        file("./usr/bin/su", 0o4755, b"su"),
        dir("./home/u", 0o750).owner(1000, 1000),
        entry(b"./home/u/\xff", Kind::File(b"x".to_vec()), 0o600).owner(1000, 1000),
        entry(b"./srv/disk", Kind::Block(8, 0), 0o660).owner(0, 6),
        dir("./tmp", 0o1777),
    ]
}

/// V5: one file; the spec spells out its whole encoded stream.
fn vector_one_file() -> Vec<Entry> {
    vec![file("a", 0o644, b"a")]
}

const V1_EMPTY_ARTIFACTS: &str = "blake3:1b1ebc7573b170739233a7d09435eb96cd644ec6286ea0c1f26af05455554dc5";
const V2_EMPTY_ROOTFS: &str = "blake3:7e79fa74e4ece1bc222ea490bebd851ad9212ba7e4491db9d228b43085e3403f";
const V3_ARTIFACTS: &str = "blake3:12a34cfbc9055b57a98d61b2268b21ef57750352b74c43aa1ac3b3bccdc40e89";
const V4_ROOTFS: &str = "blake3:de15009a8bd2ac027e9f1aadcd88851528e571d72f79dd7afb73c34a9baba066";
const V5_ONE_FILE: &str = "blake3:127389de9109a73c1f778346491f95d8602c5bf6b33dedaa2dbccb7553c786b4";

#[test]
fn vectors() {
    assert_eq!(digest(&[], TreeKind::Artifacts), d(V1_EMPTY_ARTIFACTS), "V1");
    assert_eq!(digest(&[], TreeKind::Rootfs), d(V2_EMPTY_ROOTFS), "V2");
    assert_eq!(digest(&vector_artifacts(), TreeKind::Artifacts), d(V3_ARTIFACTS), "V3");
    assert_eq!(digest(&vector_rootfs(), TreeKind::Rootfs), d(V4_ROOTFS), "V4");
    assert_eq!(digest(&vector_one_file(), TreeKind::Artifacts), d(V5_ONE_FILE), "V5");
}

#[test]
fn vector_one_file_is_the_blake3_of_its_stream() {
    // The stream the spec spells out for V5, built here field by field.
    let mut stream = b"repro-tree-v1\0A".to_vec();
    stream.push(b'f');
    stream.extend(1u64.to_le_bytes());
    stream.extend(b"a");
    stream.extend(0o644u32.to_le_bytes());
    stream.extend(0u32.to_le_bytes());
    stream.extend(1u64.to_le_bytes());
    stream.extend(blake3::hash(b"a").as_bytes());
    assert_eq!(digest(&vector_one_file(), TreeKind::Artifacts), Digest::of_bytes(&stream));
}

#[test]
fn vector_artifacts_from_a_directory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    materialize(root, &vector_artifacts(), false);
    assert_eq!(digest_dir(root, TreeKind::Artifacts).expect("digest_dir"), d(V3_ARTIFACTS));
}

#[test]
fn vector_rootfs_variants_agree() {
    let v4 = d(V4_ROOTFS);
    // Gzip is detected by its magic bytes.
    assert_eq!(digest_tar(&gzip(&tar_of(&vector_rootfs()))[..], TreeKind::Rootfs).expect("gzip"), v4);
    // What Docker makes of it: injected files (emptied, 0755), dev entries,
    // an mtab symlink, no root entry, type bits in the mode, other mtimes,
    // and no xattr but security.capability.
    let mut docker: Vec<Entry> = vector_rootfs()
        .into_iter()
        .filter(|e| e.path != b"./")
        .map(|mut e| {
            e.path = e.path[2..].to_vec();
            e.mtime += 3600;
            e.xattrs.retain(|(n, _)| n == b"security.capability");
            e.mode |= match e.kind {
                Kind::Dir => 0o040000,
                Kind::File(_) => 0o100000,
                _ => 0,
            };
            e
        })
        .collect();
    docker.retain(|e| e.path != b"etc/hosts");
    docker.extend([
        file("etc/hosts", 0o755, b""),
        file("etc/hostname", 0o755, b""),
        file("etc/resolv.conf", 0o755, b""),
        symlink("etc/mtab", "/proc/mounts"),
        dir("dev", 0o755),
        file("dev/console", 0o755, b""),
        dir("dev/pts", 0o755),
        dir("dev/shm", 0o755),
        dir("proc", 0o755),
        dir("sys", 0o755),
    ]);
    docker.reverse();
    assert_eq!(digest(&docker, TreeKind::Rootfs), v4);
    // Podman: keeps the image's own files, adds run/.containerenv.
    let mut podman = vector_rootfs();
    podman.extend([dir("run", 0o755), file("run/.containerenv", 0o755, b""), symlink("etc/mtab", "/proc/mounts")]);
    assert_eq!(digest(&podman, TreeKind::Rootfs), v4);
}

// ---------------------------------------------------------------------------
// Real engine exports (core/tests/vectors/README.md says how they were made).

const TINY_ROOTFS: &str = "blake3:61f510dfd5d479cb37dd96506a4ae5f3d0618a22b081a6dc2df520993bfef7b5";

fn fixture(name: &str) -> fs::File {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name);
    fs::File::open(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn tarball_docker_export_and_podman_export_give_one_digest() {
    for name in ["tiny-rootfs.tar.gz", "tiny-docker-export.tar.gz", "tiny-podman-export.tar.gz"] {
        let got = digest_tar(io::BufReader::new(fixture(name)), TreeKind::Rootfs).expect(name);
        assert_eq!(got, d(TINY_ROOTFS), "{name}");
    }
    // Without normalisation they differ: the fixtures do show the injections.
    let plain = digest_tar(fixture("tiny-rootfs.tar.gz"), TreeKind::Artifacts).expect("plain");
    let docker = digest_tar(fixture("tiny-docker-export.tar.gz"), TreeKind::Artifacts).expect("docker");
    assert_ne!(plain, docker);
}

// ---------------------------------------------------------------------------
// Putting a tree on disk.

fn os(path: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(path)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::tempfile().expect("temp file");
    probe.metadata().expect("metadata").uid() == 0
}

/// Creates the entries below `root` (no devices); `owners` needs root.
fn materialize(root: &Path, entries: &[Entry], owners: bool) {
    use std::os::unix::fs::{lchown, symlink, PermissionsExt};
    for e in entries {
        let path = root.join(os(&e.path));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("parent");
        }
        match &e.kind {
            Kind::Dir => fs::create_dir_all(&path).expect("dir"),
            Kind::File(content) => fs::write(&path, content).expect("file"),
            Kind::Symlink(target) => symlink(os(target), &path).expect("symlink"),
            Kind::Hardlink(target) => fs::hard_link(root.join(os(target)), &path).expect("hardlink"),
            Kind::Fifo => {
                let ok = Command::new("mkfifo").arg(&path).status().expect("mkfifo").success();
                assert!(ok, "mkfifo {}", path.display());
            }
            Kind::Char(..) | Kind::Block(..) => panic!("no devices on disk in tests"),
        }
        if owners && !matches!(e.kind, Kind::Hardlink(_)) {
            lchown(&path, Some(e.uid as u32), Some(e.gid as u32)).expect("lchown");
        }
    }
    // Modes last (a chown clears setuid), deepest first (a 0500 directory
    // must not stop its children from being written).
    let mut by_depth: Vec<&Entry> =
        entries.iter().filter(|e| !matches!(e.kind, Kind::Symlink(_) | Kind::Hardlink(_))).collect();
    by_depth.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
    for e in by_depth {
        let path = root.join(os(&e.path));
        fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode)).expect("chmod");
    }
}

// ---------------------------------------------------------------------------
// Properties.

/// A random tree: parents before children, unique paths, no devices; file
/// modes readable and directory modes usable by their owner, so that the
/// tree can be extracted and walked without root.
fn arb_tree() -> impl Strategy<Value = Vec<Entry>> {
    let name = prop::sample::select(vec![&b"a"[..], b"b", b"c", b"ab", b"a-b", b"\xc3\xa9", b"\xff", b"long-name"]);
    let node = (
        0usize..8,
        name,
        0u8..10,
        prop::collection::vec(any::<u8>(), 0..40),
        prop::sample::select(vec![&b"a"[..], b"../up", b"/abs/path", b"\xfe", b"a/b/c"]),
        0u32..0o10000,
        prop::sample::select(vec![0u64, 1, 1000, 65534]),
        prop::sample::select(vec![0u64, 5, 1000]),
        0u64..2_000_000_000,
    );
    prop::collection::vec(node, 1..14).prop_map(|nodes| {
        let mut entries: Vec<Entry> = Vec::new();
        for (parent, name, kind, content, target, mode, uid, gid, mtime) in nodes {
            let dirs: Vec<Vec<u8>> = entries.iter().filter(|e| e.kind == Kind::Dir).map(|e| e.path.clone()).collect();
            let mut path = match parent % (dirs.len() + 1) {
                0 => Vec::new(),
                i => {
                    let mut p = dirs[i - 1].clone();
                    p.push(b'/');
                    p
                }
            };
            path.extend_from_slice(name);
            if entries.iter().any(|e| e.path == path) {
                continue;
            }
            let files: Vec<Vec<u8>> =
                entries.iter().filter(|e| matches!(e.kind, Kind::File(_))).map(|e| e.path.clone()).collect();
            let (kind, mode) = match kind {
                0..=2 => (Kind::Dir, mode | 0o700),
                3..=6 => (Kind::File(content), mode | 0o600),
                7 => (Kind::Symlink(target.to_vec()), 0o777),
                8 if !files.is_empty() => (Kind::Hardlink(files[content.len() % files.len()].clone()), 0),
                _ => (Kind::Fifo, mode | 0o600),
            };
            entries.push(Entry { path, kind, mode, uid, gid, mtime, xattrs: Vec::new() });
        }
        entries
    })
}

fn kinds() -> impl Strategy<Value = TreeKind> {
    prop_oneof![Just(TreeKind::Rootfs), Just(TreeKind::Artifacts)]
}

/// Paths that some hardlink points at, or that have children.
fn is_leaf(entries: &[Entry], i: usize) -> bool {
    let path = &entries[i].path;
    !entries.iter().any(|e| {
        e.kind == Kind::Hardlink(path.clone())
            || (e.path.len() > path.len() && e.path.starts_with(path) && e.path[path.len()] == b'/')
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn entry_order_does_not_matter(tree in arb_tree(), kind in kinds(), seed in any::<u64>()) {
        let want = digest(&tree, kind);
        // Any order, as long as a hardlink comes after its target.
        let mut shuffled = tree.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        shuffled.sort_by_key(|e| matches!(e.kind, Kind::Hardlink(_)));
        prop_assert_eq!(digest(&shuffled, kind), want);
    }

    #[test]
    fn mtime_does_not_count(tree in arb_tree(), kind in kinds(), shift in 1u64..1_000_000) {
        let moved: Vec<Entry> = tree.iter().cloned().map(|mut e| { e.mtime += shift; e }).collect();
        prop_assert_eq!(digest(&moved, kind), digest(&tree, kind));
    }

    #[test]
    fn owners_count_for_rootfs_only(tree in arb_tree()) {
        let rooted: Vec<Entry> = tree.iter().cloned().map(|e| e.owner(0, 0)).collect();
        prop_assert_eq!(digest(&rooted, TreeKind::Artifacts), digest(&tree, TreeKind::Artifacts));
        let owned = tree.iter().any(|e| !matches!(e.kind, Kind::Hardlink(_)) && (e.uid, e.gid) != (0, 0));
        prop_assert_eq!(digest(&rooted, TreeKind::Rootfs) != digest(&tree, TreeKind::Rootfs), owned);
    }

    #[test]
    fn any_change_changes_the_digest(tree in arb_tree(), kind in kinds(), pick in any::<prop::sample::Index>(), what in 0u8..6) {
        let before = digest(&tree, kind);
        let mut changed = tree.clone();
        let i = pick.index(changed.len());
        let e = &mut changed[i];
        let applies = match (what, &mut e.kind) {
            (_, Kind::Hardlink(_)) => false,
            (0, Kind::File(content)) => { content.push(b'!'); true }
            (0, Kind::Symlink(target)) => { target.push(b'!'); true }
            (1, Kind::Dir | Kind::File(_) | Kind::Fifo) => { e.mode ^= 0o4000; true }
            (2, Kind::Dir | Kind::File(_) | Kind::Fifo) => { e.mode ^= 0o004; true }
            (3, _) if kind == TreeKind::Rootfs => { e.uid += 1; true }
            (4, _) if is_leaf(&tree, i) => { changed.remove(i); true }
            (5, _) => { changed.push(file("zz-added", 0o644, b"")); true }
            _ => false,
        };
        prop_assume!(applies);
        prop_assert_ne!(digest(&changed, kind), before);
    }

    #[test]
    fn hardlink_roles_do_not_matter(content in prop::collection::vec(any::<u8>(), 0..64), mode in 0u32..0o10000) {
        // GNU tar and the engines pick different members of a group to carry
        // the content (observed: `su` vs `su-link`).
        let one = [file("x/a", mode, &content), hardlink("x/b", "x/a")];
        let other = [file("x/b", mode, &content), hardlink("x/a", "./x/b")];
        prop_assert_eq!(digest(&one, TreeKind::Rootfs), digest(&other, TreeKind::Rootfs));
    }

    #[test]
    fn cut_or_damaged_streams_fail_cleanly(tree in arb_tree(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bytes = tar_of(&tree);
        let want = digest(&tree, TreeKind::Artifacts);
        let end = bytes.len() - END.len();
        let at = cut.index(bytes.len());
        match digest_tar(&bytes[..at], TreeKind::Artifacts) {
            Ok(got) => {
                // Only a cut inside the closing zero blocks may still read.
                prop_assert!(at >= end + 512, "a stream cut at {} of {} was accepted", at, bytes.len());
                prop_assert_eq!(got, want);
            }
            Err(_) => prop_assert!(at < end + 512),
        }
        let mut damaged = bytes.clone();
        damaged[flip.index(bytes.len())] ^= 1 << bit;
        let _ = digest_tar(&damaged[..], TreeKind::Artifacts);
        let _ = digest_tar(&gzip(&damaged)[..], TreeKind::Rootfs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Extracted with GNU tar (an independent reader), then walked.
    #[test]
    fn a_directory_digests_as_its_tar(tree in arb_tree()) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let archive = tmp.path().join("tree.tar");
        fs::write(&archive, tar_of(&tree)).expect("write tar");
        let root = tmp.path().join("root");
        fs::create_dir(&root).expect("root");
        let status = Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(&root)
            .status()
            .expect("GNU tar runs");
        prop_assert!(status.success());
        prop_assert_eq!(digest_dir(&root, TreeKind::Artifacts).expect("walk"), digest(&tree, TreeKind::Artifacts));
        if running_as_root() {
            prop_assert_eq!(digest_dir(&root, TreeKind::Rootfs).expect("walk"), digest(&tree, TreeKind::Rootfs));
        }
    }
}

// ---------------------------------------------------------------------------
// Rules, one by one.

#[test]
fn root_entry_and_path_spelling_do_not_count() {
    let plain = [dir("a", 0o755), file("a/b", 0o644, b"x")];
    let spelled = [dir("./", 0o700), dir("/a/", 0o755), file("./a//./b", 0o644, b"x")];
    assert_eq!(digest(&spelled, TreeKind::Rootfs), digest(&plain, TreeKind::Rootfs));
}

#[test]
fn missing_parents_count_as_0755_root_directories() {
    let implied = [file("a/b/c", 0o644, b"x")];
    let explicit = [dir("a", 0o755), dir("a/b", 0o755), file("a/b/c", 0o644, b"x")];
    assert_eq!(digest(&implied, TreeKind::Rootfs), digest(&explicit, TreeKind::Rootfs));
    let other = [dir("a", 0o700), file("a/b/c", 0o644, b"x")];
    assert_ne!(digest(&other, TreeKind::Rootfs), digest(&implied, TreeKind::Rootfs));
}

#[test]
fn rootfs_mount_point_directories_always_count() {
    let bare = [file("bin/true", 0o755, b"")];
    let mut with = bare.to_vec();
    for name in ["dev", "etc", "proc", "run", "sys"] {
        with.push(dir(name, 0o755));
    }
    assert_eq!(digest(&with, TreeKind::Rootfs), digest(&bare, TreeKind::Rootfs));
    assert_ne!(digest(&with, TreeKind::Artifacts), digest(&bare, TreeKind::Artifacts));
    // Present with other metadata, they count as they are.
    with.push(dir("proc", 0o555));
    assert_ne!(digest(&with, TreeKind::Rootfs), digest(&bare, TreeKind::Rootfs));
}

#[test]
fn only_security_capability_counts_among_xattrs() {
    let base = [file("ping", 0o755, b"p")];
    let user = [file("ping", 0o755, b"p").xattr("user.x", b"1").xattr("security.selinux", b"label")];
    let cap = [file("ping", 0o755, b"p").xattr("security.capability", &CAP_NET_RAW)];
    assert_eq!(digest(&user, TreeKind::Rootfs), digest(&base, TreeKind::Rootfs));
    assert_ne!(digest(&cap, TreeKind::Rootfs), digest(&base, TreeKind::Rootfs));
    assert_ne!(digest(&cap, TreeKind::Artifacts), digest(&base, TreeKind::Artifacts));
}

#[test]
fn symlink_permission_bits_do_not_count() {
    let mut odd = symlink("l", "t");
    odd.mode = 0o755;
    assert_eq!(digest(&[odd], TreeKind::Rootfs), digest(&[symlink("l", "t")], TreeKind::Rootfs));
}

#[test]
fn a_later_entry_replaces_an_earlier_one() {
    let twice = [file("a", 0o600, b"old"), dir("d", 0o700), file("a", 0o644, b"new"), dir("d", 0o755)];
    let once = [file("a", 0o644, b"new"), dir("d", 0o755)];
    assert_eq!(digest(&twice, TreeKind::Rootfs), digest(&once, TreeKind::Rootfs));
}

#[test]
fn a_hardlink_keeps_the_content_it_was_made_with() {
    // As extraction does: replacing `a` afterwards does not change `b`.
    let tree = [file("a", 0o644, b"one"), hardlink("b", "a"), file("a", 0o644, b"two")];
    let want = [file("a", 0o644, b"two"), file("b", 0o644, b"one")];
    assert_eq!(digest(&tree, TreeKind::Rootfs), digest(&want, TreeKind::Rootfs));
}

#[test]
fn a_hardlink_counts_as_a_link_not_as_a_copy() {
    let linked = [file("a", 0o644, b"x"), hardlink("b", "a")];
    let copied = [file("a", 0o644, b"x"), file("b", 0o644, b"x")];
    assert_ne!(digest(&linked, TreeKind::Rootfs), digest(&copied, TreeKind::Rootfs));
}

#[test]
fn hardlinked_fifos_and_symlinks_walk_as_they_read() {
    // GNU tar links any inode but a directory; the walker must group them too.
    let tree = [entry(b"p", Kind::Fifo, 0o644), hardlink("q", "p"), symlink("s", "p"), hardlink("t", "s")];
    let tmp = tempfile::tempdir().expect("temp dir");
    materialize(tmp.path(), &tree, false);
    assert_eq!(digest_dir(tmp.path(), TreeKind::Artifacts).expect("walk"), digest(&tree, TreeKind::Artifacts));
}

#[test]
fn non_utf8_names_work() {
    let a = [entry(b"caf\xe9", Kind::File(b"x".to_vec()), 0o644)];
    let b = [entry(b"caf\xc3\xa9", Kind::File(b"x".to_vec()), 0o644)];
    assert_ne!(digest(&a, TreeKind::Artifacts), digest(&b, TreeKind::Artifacts));
    let tmp = tempfile::tempdir().expect("temp dir");
    materialize(tmp.path(), &a, false);
    assert_eq!(digest_dir(tmp.path(), TreeKind::Artifacts).expect("walk"), digest(&a, TreeKind::Artifacts));
}

#[test]
fn long_names_and_link_targets_work() {
    let deep = "d/".repeat(80) + "file";
    let target = "t".repeat(300);
    let tree = [file(&deep, 0o644, b"x"), symlink("l", &target)];
    let bytes = tar_of(&tree);
    assert!(bytes.windows(13).any(|w| w == b"././@LongLink"));
    let tmp = tempfile::tempdir().expect("temp dir");
    materialize(tmp.path(), &tree, false);
    assert_eq!(digest_dir(tmp.path(), TreeKind::Artifacts).expect("walk"), digest(&tree, TreeKind::Artifacts));
}

#[test]
fn old_style_directories_are_read_as_go_reads_them() {
    // Type NUL plus a trailing slash: a directory to Go's archive/tar.
    let mut out = Vec::new();
    let mut h = raw_header(b"d/", 0, 0);
    h.set_mode(0o755);
    h.set_cksum();
    append(&mut out, &h, b"");
    out.extend_from_slice(&END);
    assert_eq!(digest_tar(&out[..], TreeKind::Rootfs).expect("digest"), digest(&[dir("d", 0o755)], TreeKind::Rootfs));
}

#[test]
fn a_subtree_digests_like_a_tree_of_its_own() {
    // An engine's archive of /out, with a hardlink to a file outside it.
    let archive = [
        file("elsewhere", 0o644, b"shared"),
        dir("out", 0o755),
        file("out/a", 0o644, b"a"),
        hardlink("out/b", "elsewhere"),
        file("outside", 0o644, b"no"),
    ];
    let own = [file("a", 0o644, b"a"), file("b", 0o644, b"shared")];
    let got = digest_tar_at(&tar_of(&archive)[..], TreeKind::Artifacts, b"out").expect("subtree");
    assert_eq!(got, digest(&own, TreeKind::Artifacts));
    assert_eq!(
        digest_tar_at(&tar_of(&archive)[..], TreeKind::Artifacts, b"/out/").expect("subtree"),
        digest(&own, TreeKind::Artifacts)
    );
    let missing = digest_tar_at(&tar_of(&archive)[..], TreeKind::Artifacts, b"nope").map_err(|e| e.to_string());
    assert_eq!(missing, Err("no entry `nope` in the tar stream".to_owned()));
    let file = digest_tar_at(&tar_of(&archive)[..], TreeKind::Artifacts, b"out/a").map_err(|e| e.to_string());
    assert_eq!(file, Err("`out/a` is not a directory".to_owned()));
}

#[test]
fn symlinks_are_not_followed_by_the_walker() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    fs::write(outside.path().join("secret"), b"s").expect("write");
    let tree = [symlink("link", &outside.path().display().to_string()), symlink("loop", "loop")];
    materialize(tmp.path(), &tree, false);
    assert_eq!(digest_dir(tmp.path(), TreeKind::Artifacts).expect("walk"), digest(&tree, TreeKind::Artifacts));
}

#[test]
fn the_walker_skips_engine_mounts_of_a_rootfs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tree = [dir("etc", 0o755), file("etc/hosts", 0o644, b"x"), dir("proc", 0o755), file("proc/1", 0o644, b"y")];
    materialize(tmp.path(), &tree, running_as_root());
    let bare = [dir("etc", 0o755), dir("proc", 0o755)];
    if running_as_root() {
        assert_eq!(digest_dir(tmp.path(), TreeKind::Rootfs).expect("walk"), digest(&bare, TreeKind::Rootfs));
    }
    assert_eq!(digest_dir(tmp.path(), TreeKind::Artifacts).expect("walk"), digest(&tree, TreeKind::Artifacts));
}

#[test]
fn digest_dir_wants_a_directory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("f");
    fs::write(&path, b"").expect("write");
    let err = digest_dir(&path, TreeKind::Artifacts).map_err(|e| e.to_string());
    assert_eq!(err, Err(format!("`{}` is not a directory", path.display())));
}

// ---------------------------------------------------------------------------
// Hostile input: a clear error, never a panic.

#[test]
fn parent_components_are_rejected_by_name() {
    let bytes = tar_of(&[file("a/../../etc/passwd", 0o644, b"x")]);
    assert_eq!(error(&bytes, TreeKind::Rootfs), "path `a/../../etc/passwd` has a `..` component");
    let bytes = tar_of(&[file("a", 0o644, b"x"), hardlink("b", "../a")]);
    assert_eq!(error(&bytes, TreeKind::Rootfs), "path `../a` has a `..` component");
}

#[test]
fn a_symlink_target_is_just_bytes() {
    let tree = [symlink("l", "../../../etc/passwd"), symlink("abs", "/etc/shadow")];
    digest(&tree, TreeKind::Rootfs);
}

#[test]
fn truncated_streams_are_errors() {
    let bytes = tar_of(&[file("big", 0o644, &[7u8; 5000]), file("next", 0o644, b"n")]);
    assert_eq!(error(&bytes[..2000], TreeKind::Artifacts), "tar entry `big` is truncated: 1488 of 5000 bytes present");
    assert_eq!(
        error(&bytes[..512 + 5120], TreeKind::Artifacts),
        "the tar stream ends without its end-of-archive block after entry `big` (truncated?)"
    );
    assert!(
        error(&bytes[..512 + 5120 + 100], TreeKind::Artifacts).starts_with("corrupt tar stream after entry `big`: ")
    );
    assert_eq!(error(b"", TreeKind::Artifacts), "the tar stream is empty");
    assert_eq!(error(&gzip(b""), TreeKind::Artifacts), "the tar stream is empty");
    let gz = gzip(&bytes);
    let cut = error(&gz[..gz.len() / 2], TreeKind::Artifacts);
    assert!(cut.ends_with("incomplete deflate stream"), "{cut}");
}

#[test]
fn corrupt_headers_are_errors() {
    let mut bytes = tar_of(&[file("a", 0o644, b"x")]);
    bytes[0] = b'b';
    assert!(error(&bytes, TreeKind::Artifacts).starts_with("corrupt tar stream at the first entry: "));
    let garbage = vec![0x42u8; 4096];
    assert!(error(&garbage, TreeKind::Artifacts).starts_with("corrupt tar stream at the first entry: "));
}

#[test]
fn other_compressions_are_named() {
    let mut xz = b"\xfd7zXZ\0".to_vec();
    xz.resize(600, 0);
    assert_eq!(
        error(&xz, TreeKind::Rootfs),
        "the tar stream is xz-compressed, which is not supported (only gzip is): decompress it first"
    );
    // A tar whose first name merely starts like a gzip stream is a tar.
    let tree = [file("\u{1f}\u{8b}odd", 0o644, b"x")];
    digest(&tree, TreeKind::Rootfs);
}

#[test]
fn links_that_cannot_be_are_errors() {
    let dangling = tar_of(&[hardlink("b", "a")]);
    assert_eq!(error(&dangling, TreeKind::Rootfs), "hardlink `b` points to `a`, which is not an earlier entry");
    let to_dir = tar_of(&[dir("d", 0o755), hardlink("b", "d")]);
    assert_eq!(error(&to_dir, TreeKind::Rootfs), "hardlink `b` points to `d`, which is a directory");
    let below_file = tar_of(&[file("f", 0o644, b""), file("f/x", 0o644, b"")]);
    assert_eq!(error(&below_file, TreeKind::Rootfs), "`f/x` is below `f`, which is not a directory");
    let below_link = tar_of(&[symlink("lib", "usr/lib"), file("lib/libc.so", 0o644, b"")]);
    assert_eq!(error(&below_link, TreeKind::Rootfs), "`lib/libc.so` is below `lib`, which is not a directory");
}

#[test]
fn unknown_entry_types_are_errors() {
    let mut out = Vec::new();
    let mut h = raw_header(b"vol", b'M', 0);
    h.set_cksum();
    append(&mut out, &h, b"");
    out.extend_from_slice(&END);
    assert_eq!(error(&out, TreeKind::Rootfs), "tar entry `vol` has unsupported type `M`");
}

#[test]
fn huge_headers_are_refused() {
    // A 2 MiB pax record: the limit is 256 KiB of headers per entry.
    let mut out = Vec::new();
    let record = pax_record(b"comment", &vec![b'x'; 2 << 20]);
    let mut h = raw_header(b"PaxHeaders/a", b'x', record.len() as u64);
    h.set_cksum();
    append(&mut out, &h, &record);
    write_entry(&mut out, &file("a", 0o644, b""));
    out.extend_from_slice(&END);
    assert_eq!(error(&out, TreeKind::Rootfs), "tar headers at the first entry exceed 262144 bytes");
}

#[test]
fn pax_sparse_files_are_refused_by_name() {
    let mut out = Vec::new();
    let record = pax_record(b"GNU.sparse.map", b"0,1");
    let mut h = raw_header(b"PaxHeaders/s", b'x', record.len() as u64);
    h.set_cksum();
    append(&mut out, &h, &record);
    write_entry(&mut out, &file("s", 0o644, b"x"));
    out.extend_from_slice(&END);
    assert_eq!(
        error(&out, TreeKind::Rootfs),
        "tar entry `s` is a PAX-format sparse file, which is not supported: re-create the archive with `--format=gnu`"
    );
}

/// An old-GNU sparse entry (type `S`) of `real_size` bytes whose data is
/// the given (offset, 512-byte block) pairs, holes elsewhere.
fn gnu_sparse(name: &[u8], real_size: u64, blocks: &[(u64, [u8; 512])]) -> Vec<u8> {
    // Octal while it fits in 11 digits, else GNU's base-256 form.
    fn octal12(field: &mut [u8; 12], value: u64) {
        if value < 1 << 33 {
            field[..11].copy_from_slice(format!("{value:011o}").as_bytes());
            field[11] = 0;
        } else {
            field.fill(0);
            field[0] = 0x80;
            field[4..].copy_from_slice(&value.to_be_bytes());
        }
    }
    let mut h = raw_header(name, b'S', 512 * blocks.len() as u64);
    {
        let gnu = h.as_gnu_mut().expect("gnu header");
        for (slot, (offset, _)) in gnu.sparse.iter_mut().zip(blocks) {
            octal12(&mut slot.offset, *offset);
            octal12(&mut slot.numbytes, 512);
        }
        octal12(&mut gnu.realsize, real_size);
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    for (_, data) in blocks {
        out.extend_from_slice(data);
    }
    out
}

/// The peak resident memory of this process, from /proc (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn a_sparse_file_of_10_gib_streams() {
    const SIZE: u64 = 10 << 30;
    let head = [b'h'; 512];
    let tail = [b't'; 512];
    let mut bytes = gnu_sparse(b"huge", SIZE, &[(0, head), (SIZE - 512, tail)]);
    bytes.extend_from_slice(&END);
    let got = digest_tar(&bytes[..], TreeKind::Artifacts).expect("sparse digest");

    // The same content, hashed here as a stream of its own.
    let mut hasher = blake3::Hasher::new();
    hasher.update(&head);
    let zeros = vec![0u8; 1 << 20];
    let mut left = SIZE - 1024;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        hasher.update(&zeros[..n]);
        left -= n as u64;
    }
    hasher.update(&tail);
    let mut stream = b"repro-tree-v1\0A".to_vec();
    stream.push(b'f');
    stream.extend(4u64.to_le_bytes());
    stream.extend(b"huge");
    stream.extend(0o644u32.to_le_bytes());
    stream.extend(0u32.to_le_bytes());
    stream.extend(SIZE.to_le_bytes());
    stream.extend(hasher.finalize().as_bytes());
    assert_eq!(got, Digest::of_bytes(&stream));

    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 1 << 30, "peak memory {peak} bytes: was the file buffered?");
    }
}

#[test]
fn a_sparse_map_past_the_header_limit_is_refused() {
    // 600 KiB of GNU sparse extension blocks, 21 one-byte holes each: the
    // `tar` crate would take seconds over such a map, so it is refused.
    let blocks = 1200u64;
    let mut h = raw_header(b"holes", b'S', 0);
    let mut ext = Vec::new();
    let mut offset = 1u64;
    for i in 0..blocks {
        let mut block = [0u8; 512];
        for slot in 0..21 {
            block[24 * slot..24 * slot + 11].copy_from_slice(format!("{offset:011o}").as_bytes());
            block[24 * slot + 12..24 * slot + 23].copy_from_slice(b"00000000000");
            offset += 1;
        }
        block[504] = u8::from(i + 1 < blocks);
        ext.extend_from_slice(&block);
    }
    {
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.isextended = [1];
        gnu.realsize[..11].copy_from_slice(format!("{:011o}", offset - 1).as_bytes());
    }
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend(ext);
    bytes.extend_from_slice(&END);
    assert_eq!(error(&bytes, TreeKind::Rootfs), "tar headers at the first entry exceed 262144 bytes");
}

#[test]
fn a_sparse_map_that_lies_is_an_error() {
    let mut bytes = gnu_sparse(b"s", 100, &[(0, [b'x'; 512])]);
    bytes.extend_from_slice(&END);
    assert!(error(&bytes, TreeKind::Rootfs).starts_with("corrupt tar stream at the first entry: "));
}

#[test]
fn errors_name_non_utf8_paths_escaped() {
    let bytes = tar_of(&[entry(b"x\xff/../y", Kind::File(Vec::new()), 0o644)]);
    assert_eq!(error(&bytes, TreeKind::Rootfs), "path `x\\xff/../y` has a `..` component");
}

#[test]
fn tree_errors_are_matchable() {
    let err = digest_tar(&b""[..], TreeKind::Rootfs);
    assert!(matches!(err, Err(TreeError::Empty)));
}

#[test]
fn a_reader_that_fails_is_an_io_error() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let err = digest_tar(Failing, TreeKind::Rootfs).map_err(|e| e.to_string());
    assert_eq!(err, Err("cannot read the tar stream: disk on fire".to_owned()));
}

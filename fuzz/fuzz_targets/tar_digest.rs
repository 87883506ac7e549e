//! Any byte string given to the tar reader gives a digest or an error:
//! never a panic, never unbounded memory (run with `-rss_limit_mb`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use repro_run_core::digest::{digest_tar, digest_tar_at, TreeKind};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the flavour, so both normalisations get fuzzed.
    let (kind, tar) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (TreeKind::Rootfs, rest),
        Some((_, rest)) => (TreeKind::Artifacts, rest),
        None => (TreeKind::Artifacts, data),
    };
    let whole = digest_tar(tar, kind);
    // The subtree reader must agree with itself on the whole tree.
    let at_root = digest_tar_at(tar, kind, b"/");
    assert_eq!(whole.as_ref().ok(), at_root.as_ref().ok());
});

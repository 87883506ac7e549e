//! The examples under `examples/` build reproducibly on a real engine:
//! `repro-run verify` builds each twice and finds no difference, and the
//! binary runs on the host. They are the C, Rust and Go cases of the
//! reproducible corpus (tests/corpus/README.md).
//!
//! Each test is `#[ignore = "needs an engine and Debian's mirror"]`: the
//! first build makes the `debian-bookworm` base image and the example's
//! toolchain image (apt-get, about a minute each), so they run on the first
//! engine of `REPRO_RUN_TEST_ENGINES` only.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::path::{Path, PathBuf};

use util::engines;

/// Verifies `examples/<name>` on the first engine: `repro-run verify`
/// builds it twice and compares the two, file by file. It must say
/// reproducible (exit 0: no false alarm) and list `artifact` among the
/// same files. Returns the path of `artifact` from the first build, kept
/// (with --keep) in `work`.
fn build_example_twice(name: &str, artifact: &str, work: &Path) -> PathBuf {
    let engine = engines().into_iter().next().expect("REPRO_RUN_TEST_ENGINES is empty");
    let _debian = util::debian_image(&engine);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name).join("repro.toml");
    let kept = work.join("kept");
    let args = [
        "verify",
        "--engine",
        &engine,
        "--manifest",
        manifest.to_str().unwrap(),
        "--keep",
        kept.to_str().unwrap(),
        "--format",
        "json",
    ];
    let verify = util::repro_run(work, &args, &[]);
    verify.assert_exit(0);
    let report: serde_json::Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(report["outcome"], "reproducible", "{}", verify.stdout);
    assert_eq!(report["runs"][1]["comparison"]["differences"], serde_json::json!([]), "{}", verify.stdout);
    assert!(report["artifacts"].as_array().unwrap().iter().any(|a| a == artifact), "{}", verify.stdout);
    kept.join("run-1").join("out").join(artifact)
}

/// Runs a built binary on the host and returns what it printed.
fn run(binary: &Path) -> String {
    let ran =
        std::process::Command::new(binary).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    assert!(ran.status.success(), "{} failed: {}", binary.display(), String::from_utf8_lossy(&ran.stderr));
    String::from_utf8_lossy(&ran.stdout).into_owned()
}

/// The README's main job: examples/hello-c, Debian bookworm's gcc.
#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn hello_c_example_is_reproducible() {
    let work = tempfile::tempdir().unwrap();
    let binary = build_example_twice("hello-c", "out/hello", work.path());
    assert_eq!(run(&binary), "hello from hello.c, built reproducibly\n");
}

/// examples/hello-rust: Debian bookworm's cargo and rustc, offline, with a
/// vendored dependency (itoa).
#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn hello_rust_example_is_reproducible() {
    let work = tempfile::tempdir().unwrap();
    let binary = build_example_twice("hello-rust", "dist/hello-rust", work.path());
    assert_eq!(run(&binary), "hello from src/main.rs, built reproducibly (itoa says 42)\n");
}

/// examples/hello-go: Debian bookworm's golang-go, offline, with -trimpath.
#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn hello_go_example_is_reproducible() {
    let work = tempfile::tempdir().unwrap();
    let binary = build_example_twice("hello-go", "dist/hello-go", work.path());
    assert_eq!(run(&binary), "hello from hello-go, built reproducibly\n");
}

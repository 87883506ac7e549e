//! The examples under `examples/` build reproducibly on a real engine: two
//! builds give the same artifact digests, and the binary runs on the host.
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

/// Builds `examples/<name>` twice on the first engine, each into its own
/// temporary output directory and record, and checks that both builds print
/// the same digests and list `artifact`. Returns the path of `artifact` from
/// the first build (inside `work`).
fn build_example_twice(name: &str, artifact: &str, work: &Path) -> PathBuf {
    let engine = engines().into_iter().next().expect("REPRO_RUN_TEST_ENGINES is empty");
    let _debian = util::debian_image(&engine);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name).join("repro.toml");
    let build = |n: &str| {
        let dest = work.join(n);
        let record = work.join(format!("{n}.json"));
        let args = [
            "build",
            "--engine",
            &engine,
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            dest.to_str().unwrap(),
            "--record",
            record.to_str().unwrap(),
        ];
        util::repro_run(work, &args, &[])
    };
    let first = build("one");
    first.assert_exit(0);
    let second = build("two");
    second.assert_exit(0);
    assert!(first.stdout.contains(&format!("  {artifact}\n")), "{}", first.stdout);
    assert_eq!(first.stdout, second.stdout, "{name}: the two builds differ");
    work.join("one").join(artifact)
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

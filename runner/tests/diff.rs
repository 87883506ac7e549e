//! `repro-run diff` on records and locks written here: no engine needed.
//! Records from two package sets list exactly the packages that differ;
//! bad input (a corrupt record, an unknown format, a record against a
//! lock) exits 2 with a message that says what is wrong.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::path::Path;

use repro_run_core::digest::Digest;
use repro_run_core::engine::EngineKind;
use repro_run_core::hermetic::BuildPlan;
use repro_run_core::lock::{Lock, LockInputs, LockedBase, LockedPackage, LockedToolchain, Origin};
use repro_run_core::manifest::Manifest;
use repro_run_core::packages::{InstalledPackage, PackageManager};
use repro_run_core::record::{
    hash_content, Artifact, BuildRecord, EngineFacts, HostFacts, ImageFacts, Timings, RECORD_FORMAT,
};
use util::{repro_run, Run};

fn pkg(name: &str, version: &str) -> InstalledPackage {
    InstalledPackage { name: name.into(), version: version.into(), arch: "amd64".into() }
}

fn record(packages: Vec<InstalledPackage>) -> BuildRecord {
    let h = hash_content(&b"hello\n"[..]).unwrap();
    BuildRecord {
        format: RECORD_FORMAT.into(),
        env_id: Digest::of_bytes(b"env"),
        source_digest: Digest::of_bytes(b"src"),
        command: vec!["make".into()],
        exit_code: 0,
        artifacts: vec![Artifact {
            path: "hello".into(),
            path_bytes: None,
            size: h.size,
            mode: "0755".into(),
            blake3: h.blake3,
            sha256: h.sha256,
            link: None,
            link_bytes: None,
        }],
        artifacts_digest: Digest::of_bytes(b"out"),
        log_digest: Digest::of_bytes(b"log"),
        image: ImageFacts {
            name: "debian-bookworm".into(),
            rootfs: Some(Digest::of_bytes(b"base")),
            toolchain_image_id: "sha256:1111".into(),
            toolchain_rootfs: Some(Digest::of_bytes(b"toolchain")),
            packages,
        },
        engine: EngineFacts { kind: EngineKind::Docker, version: "24.0.7".into(), api_version: "1.43".into() },
        host: HostFacts { os: "linux".into(), arch: "x86_64".into(), kernel: "6.1.0-18-amd64".into() },
        timings: Timings { total_ms: 1234, ..Timings::default() },
    }
}

fn packages_a() -> Vec<InstalledPackage> {
    vec![
        pkg("gcc-12", "12.2.0-14"),
        pkg("libc6", "2.36-9+deb12u4"),
        pkg("make", "4.3-4.1"),
        pkg("perl-base", "5.36.0-7+deb12u1"),
    ]
}

/// `packages_a` with two packages changed, one removed and one added.
fn packages_b() -> Vec<InstalledPackage> {
    vec![
        pkg("gcc-12", "12.2.0-15"),
        pkg("libc6", "2.36-9+deb12u7"),
        pkg("make", "4.3-4.1"),
        pkg("zlib1g-dev", "1:1.2.13.dfsg-1"),
    ]
}

fn lock(cflags: &str) -> Lock {
    let manifest = format!(
        "[image]\nname = \"debian-bookworm\"\n[toolchain]\npackages = [\"make\"]\n[build]\ncommand = [\"make\"]\n\
         outputs = [\"out/\"]\nenv = {{ CFLAGS = \"{cflags}\" }}\n"
    );
    let m = Manifest::parse(&manifest).unwrap();
    let inputs = LockInputs::new(&m, &BuildPlan::new(&m, None, None, 0));
    Lock {
        base: LockedBase { name: inputs.base_name, rootfs: Digest::of_bytes(b"base") },
        toolchain: LockedToolchain {
            manager: Some(PackageManager::Apt),
            arch: Some("amd64".into()),
            profile: inputs.profile,
            requested: inputs.requested,
            rootfs: Digest::of_bytes(b"toolchain"),
            packages: vec![LockedPackage {
                name: "make".into(),
                version: "4.3-4.1".into(),
                arch: "amd64".into(),
                from: Origin::Locked,
                sha256: Some("a1a83af8cbd854af887b72ad196b1f4af58387815e21ced1000253a116a46e2a".into()),
                size: Some(395632),
            }],
        },
        build: inputs.build,
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn diff(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    repro_run(dir, &all, &[])
}

#[test]
fn records_of_two_package_sets_list_exactly_the_changed_packages() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &record(packages_a()).to_json());
    let mut b = record(packages_b());
    // Timings always differ: they are not a difference.
    b.timings.total_ms = 9999;
    write(dir.path(), "b.json", &b.to_json());

    let run = diff(dir.path(), &["a.json", "b.json"]);
    run.assert_exit(1);
    insta::assert_snapshot!(run.stdout, @r"
    packages (4)
      gcc-12 (amd64) 12.2.0-14 → 12.2.0-15
      libc6 (amd64) 2.36-9+deb12u4 → 2.36-9+deb12u7
      removed perl-base 5.36.0-7+deb12u1 (amd64)
      added zlib1g-dev 1:1.2.13.dfsg-1 (amd64)
    ");
    assert_eq!(run.stderr, "");

    let run = diff(dir.path(), &["a.json", "b.json", "--format", "json"]);
    run.assert_exit(1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["format"], "repro-run-diff-v1");
    assert_eq!(report["kind"], "records");
    let findings = report["findings"].as_array().unwrap();
    let fields: Vec<&str> = findings.iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        ["packages.gcc-12:amd64", "packages.libc6:amd64", "packages.perl-base:amd64", "packages.zlib1g-dev:amd64"]
    );
    assert!(findings.iter().all(|f| f["area"] == "packages"), "{}", run.stdout);
    assert_eq!(findings[0]["a"], "12.2.0-14");
    assert_eq!(findings[0]["b"], "12.2.0-15");
    assert_eq!(findings[2]["b"], serde_json::Value::Null);
    assert_eq!(findings[3]["a"], serde_json::Value::Null);
}

#[test]
fn identical_records_have_no_differences() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &record(packages_a()).to_json());
    // Another name, another machine's timings: the same build.
    let mut b = record(packages_a());
    b.timings.run_ms = 42;
    b.image.toolchain_image_id = "sha256:2222".into();
    write(dir.path(), "linux-ci.json", &b.to_json());
    let run = diff(dir.path(), &["a.json", "linux-ci.json"]);
    run.assert_exit(0);
    assert_eq!(run.stdout, "no differences\n");
    let run = diff(dir.path(), &["a.json", "linux-ci.json", "--format", "json"]);
    run.assert_exit(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]));
}

#[test]
fn locks_name_the_setting_that_differs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "repro.lock", &lock("-O2").render());
    write(dir.path(), "other.lock", &lock("-O3").render());
    let run = diff(dir.path(), &["repro.lock", "other.lock"]);
    run.assert_exit(1);
    insta::assert_snapshot!(run.stdout, @r"
    settings (1)
      build.env.CFLAGS: -O2 → -O3
    ");
    let run = diff(dir.path(), &["repro.lock", "repro.lock", "--format", "json"]);
    run.assert_exit(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["kind"], "locks");
}

#[test]
fn a_corrupt_record_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = record(packages_a()).to_json();
    write(dir.path(), "a.json", &text);
    // Cut short, as by a full disk.
    write(dir.path(), "b.json", &text[..200]);
    let run = diff(dir.path(), &["a.json", "b.json"]);
    run.assert_exit(2);
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!(run.stderr, @r"
    error: cannot compare b.json
      caused by: it is not valid JSON (a build record cut short or corrupted?)
      caused by: EOF while parsing a string at line 4 column 76
    ");

    // Valid JSON, but not what a record holds.
    write(dir.path(), "b.json", &text.replace("\"exit_code\": 0", "\"exit_code\": \"zero\""));
    let run = diff(dir.path(), &["a.json", "b.json"]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr, @r#"
    error: cannot compare b.json
      caused by: it is not a valid repro-run-record-v1 record (corrupted?)
      caused by: invalid type: string "zero", expected i64 at line 8 column 21
    "#);
}

#[test]
fn a_record_of_an_unknown_format_says_which_this_repro_run_reads() {
    let dir = tempfile::tempdir().unwrap();
    let text = record(packages_a()).to_json();
    write(dir.path(), "a.json", &text);
    write(dir.path(), "b.json", &text.replace(RECORD_FORMAT, "repro-run-record-v2"));
    let run = diff(dir.path(), &["a.json", "b.json"]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr, @r"
    error: cannot compare b.json
      caused by: it is a build record of format repro-run-record-v2, which this repro-run does not read: it reads repro-run-record-v1 (upgrade repro-run, or rebuild to write the record again)
    ");
}

#[test]
fn a_record_and_a_lock_are_not_compared() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &record(packages_a()).to_json());
    write(dir.path(), "repro.lock", &lock("-O2").render());
    let run = diff(dir.path(), &["a.json", "repro.lock"]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr,
        @"error: a.json is a build record and repro.lock is a lock: diff compares two build records or two locks");

    let run = diff(dir.path(), &["a.json", "missing.json"]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr, @"error: failed to open file `missing.json`: No such file or directory (os error 2)");
}

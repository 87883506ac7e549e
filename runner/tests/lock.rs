//! repro.lock against a real engine: locks that repeat byte for byte,
//! toolchains prepared from the package store to one digest on Docker and
//! Podman, a store carried to a fresh cache and used offline, the lock's
//! inventory against `dpkg-query` in the image, and drift.
//!
//! Each test is `#[ignore = "needs an engine"]` (run by the README's test
//! command with `--include-ignored`). Resolving needs Debian's mirror; the
//! toolchain here is `make` alone (one small `.deb`), so that each
//! preparation takes seconds.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use util::{debian_image, debian_images, engines, repro_run, Project, Run};

/// A Debian project that wants `make`, with its own cache directory.
struct Locking {
    project: Project,
    cache: tempfile::TempDir,
}

impl Locking {
    fn new(image: &str) -> Locking {
        let project = Project::new(image, r#""make --version > out""#, "outputs = [\"out\"]");
        let text = project.read("repro.toml").replace("[build]", "[toolchain]\npackages = [\"make\"]\n\n[build]");
        project.write("repro.toml", &text);
        Locking { project, cache: tempfile::tempdir().unwrap() }
    }

    fn run(&self, args: &[&str], engine: &str) -> Run {
        let mut all = args.to_vec();
        all.extend(["--engine", engine]);
        repro_run(self.project.dir(), &all, &[("XDG_CACHE_HOME", self.cache.path().to_str().unwrap())])
    }

    fn lock(&self, engine: &str, more: &[&str]) -> (Run, String) {
        let mut args = vec!["lock"];
        args.extend_from_slice(more);
        let run = self.run(&args, engine);
        run.assert_exit(0);
        let text = self.project.read("repro.lock");
        (run, text)
    }
}

/// The toolchain image's tag, as `lock` reports it.
fn toolchain_tag(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("toolchain  "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("lock did not name the toolchain image:\n{}", run.stderr))
        .to_owned()
}

fn engine_cli(engine: &str, args: &[&str]) -> String {
    let out = Command::new(engine).args(args).output().unwrap();
    assert!(out.status.success(), "{engine} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(name, version, arch)` of every package the lock lists.
fn lock_inventory(text: &str) -> BTreeSet<(String, String, String)> {
    let lock: toml::Value = toml::from_str(text).unwrap();
    lock["toolchain"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            (s("name"), s("version"), s("arch"))
        })
        .collect()
}

fn toolchain_rootfs(text: &str) -> String {
    let lock: toml::Value = toml::from_str(text).unwrap();
    lock["toolchain"]["rootfs"].as_str().unwrap().to_owned()
}

#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn a_lock_repeats_byte_for_byte_and_its_toolchain_digest_on_every_engine() {
    let engines = engines();
    let first = engines.first().expect("no engine to test on");
    let guard = debian_images(&engines);
    let l = Locking::new("debian-bookworm");
    let (run, text) = l.lock(first, &[]);
    assert!(run.stderr.contains("resolving the toolchain"), "{}", run.stderr);
    assert!(text.contains("name = \"make\""), "{text}");
    assert!(text.contains("from = \"locked\""), "{text}");
    let tag = toolchain_tag(&run);
    assert!(tag.starts_with("repro-run/toolchain:"), "{tag}");

    // The lock's inventory is what dpkg-query lists in the image.
    let listed = engine_cli(
        first,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &tag,
            "dpkg-query",
            "-W",
            "-f",
            "${Package}\t${Version}\t${Architecture}\n",
        ],
    );
    let in_image: BTreeSet<(String, String, String)> = listed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect();
    assert_eq!(lock_inventory(&text), in_image);

    // Again: nothing changed, so nothing is resolved and nothing written.
    let (again, same) = l.lock(first, &[]);
    assert_eq!(text, same);
    assert!(again.stderr.contains("is up to date"), "{}", again.stderr);
    assert!(!again.stderr.contains("resolving"), "{}", again.stderr);

    // The image removed: prepared again from the store, to the same digest.
    for engine in &engines {
        let _ = Command::new(engine).args(["rmi", "-f", &tag]).output();
        let (run, relocked) = l.lock(engine, &["--offline"]);
        assert!(run.stderr.contains("preparing toolchain"), "{engine}: {}", run.stderr);
        assert_eq!(toolchain_rootfs(&relocked), toolchain_rootfs(&text), "{engine}");
        assert_eq!(text, relocked, "the lock on {engine} differs");
    }
    drop(guard);
}

#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn an_exported_store_prepares_the_toolchain_offline_in_a_fresh_cache() {
    for engine in engines() {
        let _guard = debian_image(&engine);
        // A base of its own name, so that the test can remove it and see it
        // imported from the export.
        let base = "repro-run-test/lock-base:latest";
        engine_cli(&engine, &["tag", "repro-run/debian-bookworm:latest", base]);
        let l = Locking::new(base);
        let (_, text) = l.lock(&engine, &[]);
        let export = l.project.path("store.tar");
        let (run, _) = l.lock(&engine, &["--export-store", export.to_str().unwrap()]);
        assert!(run.stderr.contains("exported 1 package(s)"), "{}", run.stderr);

        // A fresh machine: no cache, no toolchain image, no base image.
        let tag = toolchain_tag(&run);
        let _ = Command::new(&engine).args(["rmi", "-f", &tag]).output();
        let _ = Command::new(&engine).args(["rmi", base]).output();
        let fresh = Locking { project: l.project, cache: tempfile::tempdir().unwrap() };
        let (run, again) = fresh.lock(&engine, &["--offline", "--import-store", export.to_str().unwrap()]);
        assert!(run.stderr.contains("imported 1 package(s) into the package store"), "{}", run.stderr);
        assert!(run.stderr.contains("imported the base image"), "{}", run.stderr);
        assert!(run.stderr.contains("preparing toolchain"), "{}", run.stderr);
        assert_eq!(text, again, "{engine}: the lock changed");

        // A damaged file in the store is named, and nothing is prepared.
        let _ = Command::new(&engine).args(["rmi", "-f", &tag]).output();
        let store = fresh.cache.path().join("repro-run/packages/sha256");
        let file = std::fs::read_dir(&store).unwrap().flatten().map(|e| e.path()).find(|p| !is_hidden(p)).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let bad = fresh.run(&["lock", "--offline"], &engine);
        bad.assert_exit(2);
        assert!(bad.stderr.contains(&file.display().to_string()), "{}", bad.stderr);
        assert!(bad.stderr.contains("sha256"), "{}", bad.stderr);
        let _ = Command::new(&engine).args(["rmi", base]).output();
    }
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn a_package_that_does_not_exist_is_named() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    let _guard = debian_image(&engine);
    let l = Locking::new("debian-bookworm");
    let text = l.project.read("repro.toml").replace("[\"make\"]", "[\"make\", \"no-such-package-xyz\"]");
    l.project.write("repro.toml", &text);
    let run = l.run(&["lock"], &engine);
    run.assert_exit(2);
    assert!(run.stderr.contains("the mirror has no package named `no-such-package-xyz`"), "{}", run.stderr);
    assert!(!l.project.path("repro.lock").exists());
}

#[test]
#[ignore = "needs an engine"]
fn build_locked_on_a_drifted_manifest_exits_1_and_names_each_field() {
    for engine in engines() {
        let p = Project::busybox(r#""mkdir -p out && echo hi > out/f""#, "outputs = [\"out\"]\nenv = { A = \"1\" }");
        let run = p.build(&engine, &[]);
        run.assert_exit(0);
        assert!(run.stderr.contains("locking first"), "{}", run.stderr);
        let lock = p.read("repro.lock");
        // A locked build of the same manifest builds, and leaves the lock.
        p.build_with(&engine, &["--locked"], &[]).assert_exit(0);
        assert_eq!(lock, p.read("repro.lock"));

        p.write_manifest(r#""mkdir -p out && echo ho > out/f""#, "outputs = [\"out\"]\nenv = { A = \"2\" }");
        let text = p.read("repro.toml") + "\n[limits]\npids = 99\n";
        p.write("repro.toml", &text);
        let run = p.build_with(&engine, &["--locked"], &[]);
        run.assert_exit(1);
        for field in ["build.command", "build.env.A", "build.limits.pids"] {
            assert!(run.stderr.contains(field), "{field} not named:\n{}", run.stderr);
        }
        assert_eq!(lock, p.read("repro.lock"), "--locked must not write the lock");
        let check = repro_run(p.dir(), &["lock", "--check"], &[]);
        check.assert_exit(1);
        assert!(check.stderr.contains("build.env.A"), "{}", check.stderr);

        // Without --locked the build relocks, and says so.
        let run = p.build(&engine, &[]);
        run.assert_exit(0);
        assert!(run.stderr.contains("relocking"), "{}", run.stderr);
        assert_ne!(lock, p.read("repro.lock"));
        repro_run(p.dir(), &["lock", "--check"], &[]).assert_exit(0);
    }
}

#[test]
#[ignore = "needs an engine"]
fn a_hand_edited_lock_is_refused_with_its_line_and_column() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    let p = Project::busybox(r#""mkdir -p out && echo hi > out/f""#, "outputs = [\"out\"]");
    p.build(&engine, &[]).assert_exit(0);
    let lock = p.read("repro.lock").replace("hostname = \"repro-run\"", "hostname = \"elsewhere\"");
    p.write("repro.lock", &lock);
    let run = p.build(&engine, &[]);
    run.assert_exit(2);
    let line = lock.lines().position(|l| l.starts_with("env_id")).unwrap() + 1;
    assert!(run.stderr.contains(&format!("line {line}, column")), "{}", run.stderr);
    assert!(run.stderr.contains("env_id"), "{}", run.stderr);
}

//! The fast path for the usual user: not root, a member of the engine's
//! group. Such a user cannot mount or give files to the build user, so
//! the engine keeps the source tree and mounts the overlay itself
//! (runner/src/sources/volumes.rs); the build must see what root's build
//! sees and give the same artifacts.
//!
//! The test runs as root (CI's and this machine's case) and makes the user
//! itself: `repro-run-test`, in the `docker` group. Rootful Podman's socket
//! is root's alone by default; the test gives it to the `docker` group, as
//! a site that lets that group use Podman does. `#[ignore = "needs an
//! engine"]`, and it fails, never skips, when it cannot do any of this.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::path::Path;
use std::process::Command;

use util::{engines, Project};

const USER: &str = "repro-run-test";

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The user, in the `docker` group, and each engine's socket open to it.
fn make_user(engines: &[String]) {
    assert_eq!(rustix_uid(), 0, "this test makes a user, so it runs as root");
    sh(&format!("getent group docker >/dev/null || groupadd --system docker; id -u {USER} >/dev/null 2>&1 || useradd --no-create-home --groups docker {USER}"));
    if engines.iter().any(|e| e == "podman") {
        sh("chgrp docker /run/podman/podman.sock && chmod 0660 /run/podman/podman.sock");
    }
}

fn rustix_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `repro-run build` as the user, in `dir`, with its own cache directory
/// and its own copy of the binary (the build tree may be in a directory
/// the user cannot enter, such as root's home).
fn build_as_user(dir: &Path, engine: &str, cache: &Path) -> util::Run {
    let bin = cache.parent().unwrap().join("repro-run-bin");
    if !bin.exists() {
        std::fs::copy(util::bin(), &bin).unwrap();
    }
    let out = Command::new("runuser")
        .args(["-u", USER, "--", "env"])
        .arg(format!("XDG_CACHE_HOME={}", cache.display()))
        .arg(format!("REPRO_RUN_STAGE_DIR={}", cache.join("builds").display()))
        .arg(&bin)
        .args(["build", "--engine", engine])
        .current_dir(dir)
        .output()
        .unwrap();
    util::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn record(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("repro-out.json")).unwrap()).unwrap()
}

/// A user in the engine's group builds with engine-mounted, kept sources:
/// the first build keeps the tree, the second finds it; the artifacts
/// (among them what the build saw of the sources' and `HOME`'s owners,
/// modes and times) and the source digest are root's; nothing is left but
/// the kept tree.
#[test]
#[ignore = "needs an engine"]
fn a_user_in_the_engine_group_builds_with_kept_sources_and_gets_roots_artifacts() {
    let engines = engines();
    make_user(&engines);
    let command = r#""mkdir -p out && cp -r in out/ && id -u > out/uid && stat -c '%a %u %g %Y' /src/in /src/in/a.txt $HOME > out/stat && touch $HOME/h /src/in/new""#;
    for engine in engines {
        let root = Project::busybox(command, "outputs = [\"out\"]\nsource_date_epoch = 7");
        root.write("in/a.txt", "same bytes\n");
        root.write("in/tool.sh", "#!/bin/sh\n");
        let theirs = tempfile::tempdir().unwrap();
        let project = theirs.path().join("p");
        let cache = theirs.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        sh(&format!("cp -r {}/. {}", root.dir().display(), project.display()));
        sh(&format!("chown -R {USER} {} && chmod 0755 {}", theirs.path().display(), theirs.path().display()));

        root.build(&engine, &[]).assert_exit(0);
        let first = build_as_user(&project, &engine, &cache);
        assert_eq!(first.code, Some(0), "on {engine}: {}", first.stderr);
        assert!(first.stderr.contains("(mounted by the engine, tree kept for later builds)"), "{}", first.stderr);
        let second = build_as_user(&project, &engine, &cache);
        assert_eq!(second.code, Some(0), "on {engine}: {}", second.stderr);
        assert!(
            second.stderr.contains("(mounted by the engine, tree kept from an earlier build)"),
            "{}",
            second.stderr
        );

        let (mine, theirs_record) = (record(root.dir()), record(&project));
        for key in ["source_digest", "artifacts_digest", "env_id"] {
            assert_eq!(mine[key], theirs_record[key], "{key} on {engine}");
        }
        assert_eq!(mine["artifacts"], theirs_record["artifacts"], "on {engine}");
        assert_eq!(std::fs::read_to_string(project.join("repro-out/out/uid")).unwrap().trim(), "1000");
        // The second build's artifacts are root's too: the first build's
        // writes (`in/new`) did not reach the kept tree.
        root.assert_no_containers(&engine);
        let left = Command::new(&engine)
            .args(["volume", "ls", "-q", "--filter", "label=org.repro-run.managed"])
            .output()
            .unwrap();
        let left = String::from_utf8_lossy(&left.stdout).into_owned();
        let uid = Command::new("id").args(["-u", USER]).output().unwrap();
        let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
        let digest = mine["source_digest"].as_str().unwrap().trim_start_matches("blake3:").to_owned();
        let tree = format!("repro-run-tree-{uid}-{digest}");
        assert!(left.lines().any(|v| v == tree), "the kept tree {tree} is not among {left}");
        assert!(!left.lines().any(|v| v.starts_with("repro-run-up-") || v.starts_with("repro-run-src-")), "{left}");
        sh(&format!("{engine} volume rm {tree}"));
    }
}

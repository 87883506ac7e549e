//! What a build may do and needs, tested from inside real builds on real
//! engines: least privilege (no capability, `no_new_privs`, a pids limit,
//! a read-only root), an image that holds nothing but one static binary,
//! and no container left behind by a repro-run that was killed.
//!
//! Every test is `#[ignore = "needs an engine"]` and runs on each engine
//! of `REPRO_RUN_TEST_ENGINES` (see runner/tests/engine.rs).

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::process::Command;

use util::{engines, Project};

/// The `Cap*:` and `NoNewPrivs:` lines of a `/proc/<pid>/status`.
fn privilege_lines(status: &str) -> Vec<String> {
    status.lines().filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs")).map(str::to_owned).collect()
}

/// From inside a build: every capability set empty, `NoNewPrivs: 1`, the
/// pids limit of the manifest, and a root filesystem that cannot be
/// written, while `/src`, `/tmp` and `HOME` can.
#[test]
#[ignore = "needs an engine"]
fn a_build_runs_with_least_privilege() {
    for engine in engines() {
        for how in ["mount", "upload"] {
            let p = Project::busybox(
                r#""mkdir -p out && cat /proc/self/status > out/status && cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null > out/pids; awk '$2 == \"/\" { split($4, o, \",\"); print o[1] }' /proc/mounts > out/root; touch /tmp/t $HOME/h /src/s && echo ok > out/writable""#,
                "outputs = [\"out\"]\n[limits]\npids = 321",
            );
            p.build_with(&engine, &["--sources", how], &[]).assert_exit(0);
            let status = p.read("repro-out/out/status");
            assert_eq!(
                privilege_lines(&status),
                [
                    "CapInh:\t0000000000000000",
                    "CapPrm:\t0000000000000000",
                    "CapEff:\t0000000000000000",
                    "CapBnd:\t0000000000000000",
                    "CapAmb:\t0000000000000000",
                    "NoNewPrivs:\t1",
                ],
                "on {engine}, {how}"
            );
            assert_eq!(p.read("repro-out/out/pids").trim(), "321", "on {engine}, {how}");
            assert_eq!(p.read("repro-out/out/writable").trim(), "ok", "on {engine}, {how}");
            // An upload needs the root writable: the engines' archive API
            // refuses to unpack into a read-only root (docs/manifest.md).
            let root = if how == "mount" { "ro" } else { "rw" };
            assert_eq!(p.read("repro-out/out/root").trim(), root, "on {engine}, {how}");
        }
    }
}

/// A setuid-root binary in the image gives the build nothing: with
/// `no_new_privs` it runs as the build user.
#[test]
#[ignore = "needs an engine"]
fn a_setuid_binary_does_not_raise_privileges() {
    for engine in engines() {
        let _debian = util::debian_image(&engine);
        let p = Project::new(
            "debian-bookworm",
            r#""mkdir -p out && ls -l /bin/su | cut -c1-10 > out/mode && (su -c true root </dev/null >/dev/null 2>&1 && echo root || echo refused) > out/su""#,
            r#"outputs = ["out"]"#,
        );
        p.build(&engine, &[]).assert_exit(0);
        assert_eq!(p.read("repro-out/out/mode").trim(), "-rwsr-xr-x", "the image's su is setuid root");
        assert_eq!(p.read("repro-out/out/su").trim(), "refused", "on {engine}");
    }
}

/// An image that holds nothing but one static binary builds: the entry
/// helper needs no `env` and no shell in the image.
#[test]
#[ignore = "needs an engine"]
fn a_build_runs_on_an_image_of_one_static_binary() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.path().join("bin/busybox")).unwrap();
    for engine in engines() {
        let tag = "repro-run-test/one-static-binary:latest";
        let out = Command::new(util::bin())
            .args(["image", "import", root.path().to_str().unwrap(), "--tag", tag, "--engine", &engine, "-q"])
            .output()
            .unwrap();
        assert!(out.status.success(), "import on {engine}: {}", String::from_utf8_lossy(&out.stderr));
        for how in ["mount", "upload"] {
            let p = Project::new(tag, r#"["/bin/busybox", "cp", "-r", "in", "out"]"#, r#"outputs = ["out/"]"#);
            p.write("in/a.txt", "static\n");
            let run = p.build_with(&engine, &["--sources", how], &[]);
            run.assert_exit(0);
            assert_eq!(p.read("repro-out/out/a.txt"), "static\n", "on {engine}, {how}");
        }
    }
}

/// After `kill -9` of repro-run in the middle of a build, the next build
/// removes the container the killed one left, says so, and leaves none of
/// its own.
#[test]
#[ignore = "needs an engine"]
fn a_build_after_a_killed_one_removes_its_container() {
    for engine in engines() {
        let p = Project::busybox(r#""echo started; sleep 300""#, r#"outputs = ["out"]"#);
        let mut child = p.spawn_build_until(&engine, "started");
        child.kill().unwrap();
        child.wait().unwrap();
        let left = p.containers(&engine);
        assert_eq!(left.len(), 1, "the killed build's container should still be there on {engine}");

        p.write_manifest(r#""mkdir -p out && echo next > out/x""#, r#"outputs = ["out"]"#);
        let run = p.build(&engine, &[]);
        run.assert_exit(0);
        assert!(run.stderr.contains("container(s) left by a repro-run that was killed"), "on {engine}: {}", run.stderr);
        assert!(run.stderr.contains(&left[0][..12]), "the message names the container: {}", run.stderr);
        p.assert_no_containers(&engine);
    }
}

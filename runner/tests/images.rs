//! A built-in recipe name means one thing everywhere: the `image`
//! subcommands resolve it as a manifest's `[image] name` does.
//!
//! Every test is `#[ignore = "needs an engine"]` and runs on each engine of
//! `REPRO_RUN_TEST_ENGINES` (default `docker,podman`), which must answer.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use util::{engines, repro_run, Project};

/// `image digest busybox` is the digest `image build busybox` printed, of
/// the image `repro-run image ls` lists and a build on `name = "busybox"`
/// records.
#[test]
#[ignore = "needs an engine"]
fn a_recipe_name_digests_the_image_a_manifest_builds_on() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let built = repro_run(dir.path(), &["image", "build", "busybox", "--quiet", "--engine", &engine], &[]);
        built.assert_exit(0);
        let line = built.stdout.trim_end().to_owned();
        let (digest, tag) = line.split_once("  ").unwrap();
        assert_eq!(tag, "repro-run/busybox:latest", "on {engine}");
        assert!(digest.starts_with("blake3:"), "on {engine}: {line}");

        for args in [&["busybox"][..], &["busybox", "--no-cache"], &["repro-run/busybox:latest"]] {
            let mut all = vec!["image", "digest", "--engine", &engine];
            all.extend_from_slice(args);
            let asked = repro_run(dir.path(), &all, &[]);
            asked.assert_exit(0);
            assert_eq!(asked.stdout.trim_end(), line, "`image digest {}` on {engine}", args.join(" "));
        }
        let listed = repro_run(dir.path(), &["image", "ls", "--engine", &engine], &[]);
        listed.assert_exit(0);
        assert!(listed.stdout.lines().any(|l| l == line), "on {engine}, `image ls` lacks {line}:\n{}", listed.stdout);

        let p = Project::busybox(r#""mkdir -p out && echo x > out/x""#, r#"outputs = ["out/"]"#);
        p.build(&engine, &[]).assert_exit(0);
        let record: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
        assert_eq!(record["image"]["name"], "busybox", "on {engine}");
        assert_eq!(record["image"]["rootfs"], digest, "on {engine}");
    }
}

/// A name that is neither a recipe nor an image says how to get one.
#[test]
#[ignore = "needs an engine"]
fn an_unknown_name_says_how_to_make_an_image() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let run = repro_run(dir.path(), &["image", "digest", "repro-run-no-such-image:1", "--engine", &engine], &[]);
        run.assert_exit(2);
        assert!(run.stderr.contains("has no image `repro-run-no-such-image:1`"), "on {engine}:\n{}", run.stderr);
        assert!(run.stderr.contains("repro-run image build"), "on {engine}:\n{}", run.stderr);
    }
}

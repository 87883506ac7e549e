//! What users see when the input is wrong: these need no engine, and their
//! messages are snapshots.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use util::{repro_run, Project};

fn redact(text: &str, dir: &std::path::Path) -> String {
    text.replace(&dir.display().to_string(), "[PROJECT]")
}

#[test]
fn missing_manifest_says_where_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let run = repro_run(dir.path(), &["build", "--manifest", "nope/repro.toml"], &[]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr, @r"
    error: no manifest at nope/repro.toml
      hint: write a repro.toml there (see examples/hello-c/repro.toml), or point at one with --manifest FILE
    ");
}

#[test]
fn malformed_manifest_names_line_and_column() {
    let p = Project::busybox(r#"["make"]"#, "outputs = [\"out\"]\ncolour = \"blue\"");
    let run = repro_run(&p.path(""), &["build"], &[]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr, @r"
    error: repro.toml is not a valid manifest
      caused by: line 7, column 1: unknown field `colour`, expected one of `command`, `outputs`, `env`, `source_date_epoch`, `user`, `network`
    ");

    p.write("repro.toml", "[image]\nname = \"busybox\"\n[build]\ncommand = \"make\"\noutputs = \"out\"\n");
    let run = repro_run(&p.path(""), &["build"], &[]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr, @r#"
    error: repro.toml is not a valid manifest
      caused by: line 5, column 11: invalid type: string "out", expected a sequence
    "#);
}

#[test]
fn unknown_profile_lists_the_known_ones() {
    let p = Project::busybox(r#"["make"]"#, "outputs = [\"out\"]");
    p.write(
        "repro.toml",
        "[image]\nname = \"busybox\"\n[toolchain]\nprofile = \"cobol\"\n[build]\ncommand = \"make\"\noutputs = [\"o\"]\n",
    );
    let run = repro_run(&p.path(""), &["build"], &[]);
    run.assert_exit(2);
    insta::assert_snapshot!(run.stderr, @"error: unknown profile `cobol`: use one of c, go, python, rust");
}

#[test]
fn no_engine_exits_3_with_a_hint() {
    let p = Project::busybox(r#"["true"]"#, "outputs = [\"out\"]");
    let run = repro_run(&p.path(""), &["build", "--engine", "unix:///nonexistent/docker.sock"], &[]);
    run.assert_exit(3);
    insta::assert_snapshot!(redact(&run.stderr, &p.path("")), @r"
    error: no container engine
      caused by: cannot reach the unix:///nonexistent/docker.sock engine
      tried unix:///nonexistent/docker.sock: Socket not found: /nonexistent/docker.sock
      hint: start Docker (`sudo systemctl start docker`) or Podman's API socket (`podman system service --time=0 unix:///run/podman/podman.sock &`), or run scripts/engine-up from the repro-run source tree; choose another engine with --engine or DOCKER_HOST
    ");
}

#[test]
fn bad_engine_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = repro_run(dir.path(), &["build", "--engine", "dokcer"], &[]);
    run.assert_exit(2);
    assert!(run.stderr.contains("`dokcer` is not an engine: use `docker`, `podman`"), "{}", run.stderr);
}

#[test]
fn init_writes_a_starter_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let run = repro_run(dir.path(), &["init"], &[]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains(
            "found no Cargo.toml, go.mod, pyproject.toml, configure, configure.ac, CMakeLists.txt, meson.build, \
             GNUmakefile, makefile, Makefile or package.json"
        ),
        "{}",
        run.stderr
    );

    std::fs::write(dir.path().join("Makefile"), "all:\n").unwrap();
    repro_run(dir.path(), &["init"], &[]).assert_exit(0);
    let text = std::fs::read_to_string(dir.path().join("repro.toml")).unwrap();
    assert!(text.contains("profile = \"c\""), "{text}");
    assert!(text.contains("command = [\"make\"]"), "{text}");

    let again = repro_run(dir.path(), &["init"], &[]);
    again.assert_exit(2);
    insta::assert_snapshot!(again.stderr, @"error: repro.toml exists already; edit it, or pass --force to replace it");
    repro_run(dir.path(), &["init", "--force"], &[]).assert_exit(0);
}

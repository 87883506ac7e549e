//! Every documented form of `[build] outputs` is collected, from mounted
//! and from uploaded sources alike: a file at the top of /src, a nested
//! file, a directory, a glob, several at once. Each test checks the
//! artifacts in the record (path, blake3, mode) and the files in
//! repro-out/, and that nothing else landed there.
//!
//! Every test is `#[ignore = "needs an engine"]` and runs on each engine of
//! `REPRO_RUN_TEST_ENGINES` (default `docker,podman`), which must answer.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use util::{engines, Project};

/// The build: a small executable at the top of /src, a nested file, and a
/// directory of text and other files, one of them a level down.
const MAKES: &str = r#""echo '#!/bin/sh' > hello && echo 'echo hello' >> hello && chmod 755 hello && mkdir -p d out/sub && echo nested > d/f && echo a > out/a.txt && echo b > out/b.bin && echo c > out/sub/c.txt""#;

/// What the build writes, by path: (content, mode).
const MADE: [(&str, &str, &str); 5] = [
    ("d/f", "nested\n", "0644"),
    ("hello", "#!/bin/sh\necho hello\n", "0755"),
    ("out/a.txt", "a\n", "0644"),
    ("out/b.bin", "b\n", "0644"),
    ("out/sub/c.txt", "c\n", "0644"),
];

/// Builds with `outputs` on every engine, with the sources mounted and
/// uploaded, and checks that exactly the files `expected` (paths sorted)
/// are the artifacts: in the record, on stdout and in repro-out/.
fn collects(outputs: &str, expected: &[&str]) {
    for engine in engines() {
        let p = Project::busybox(MAKES, &format!("outputs = {outputs}"));
        for how in ["mount", "upload"] {
            let on = format!("`outputs = {outputs}` with --sources {how} on {engine}");
            let run = p.build_with(&engine, &["--sources", how], &[]);
            run.assert_exit(0);

            let record: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
            let artifacts = record["artifacts"].as_array().unwrap();
            let paths: Vec<&str> = artifacts.iter().map(|a| a["path"].as_str().unwrap()).collect();
            assert_eq!(paths, expected, "{on}");
            for (artifact, path) in artifacts.iter().zip(expected) {
                let (_, content, mode) = MADE.iter().find(|(p, ..)| p == path).unwrap();
                let blake3 = blake3::hash(content.as_bytes()).to_hex().to_string();
                assert_eq!(artifact["blake3"], blake3.as_str(), "{path}: {on}");
                assert_eq!(artifact["sha256"], util::sha256_hex(content.as_bytes()), "{path}: {on}");
                assert_eq!(artifact["mode"], *mode, "{path}: {on}");
                assert_eq!(artifact["size"], content.len(), "{path}: {on}");
                assert!(run.stdout.contains(&format!("{blake3}  {path}\n")), "{path}: {on}; stdout:\n{}", run.stdout);
                assert_eq!(p.read(&format!("repro-out/{path}")), *content, "{path}: {on}");
                let meta = std::fs::metadata(p.path(&format!("repro-out/{path}"))).unwrap();
                assert_eq!(format!("{:04o}", meta.permissions().mode() & 0o7777), *mode, "{path}: {on}");
            }
            assert_eq!(files_under(&p.path("repro-out")), expected, "{on}");
            p.assert_no_leftovers();
            p.assert_no_containers(&engine);
        }
    }
}

/// The files (not directories) under `dir`, relative and sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned());
            }
        }
    }
    found.sort();
    found
}

/// `outputs = ["hello"]`: a file at the top of /src lands as
/// repro-out/hello, still executable.
#[test]
#[ignore = "needs an engine"]
fn a_file_at_the_top_is_collected() {
    collects(r#"["hello"]"#, &["hello"]);
}

/// `outputs = ["d/f"]`: a nested file lands under its parent.
#[test]
#[ignore = "needs an engine"]
fn a_nested_file_is_collected() {
    collects(r#"["d/f"]"#, &["d/f"]);
}

/// `outputs = ["out/"]`: a directory lands with all below it.
#[test]
#[ignore = "needs an engine"]
fn a_directory_is_collected() {
    collects(r#"["out/"]"#, &["out/a.txt", "out/b.bin", "out/sub/c.txt"]);
}

/// `outputs = ["out/*.txt"]`: a glob keeps what it matches, and `*` does
/// not cross `/`.
#[test]
#[ignore = "needs an engine"]
fn a_glob_is_collected() {
    collects(r#"["out/*.txt"]"#, &["out/a.txt"]);
}

/// Several forms in one manifest land side by side.
#[test]
#[ignore = "needs an engine"]
fn several_outputs_are_collected_at_once() {
    collects(r#"["hello", "d/f", "out/sub/", "out/*.txt"]"#, &["d/f", "hello", "out/a.txt", "out/sub/c.txt"]);
}

/// A declared file the build did not make is named, with exit 4, on both
/// ways of reaching /src.
#[test]
#[ignore = "needs an engine"]
fn a_missing_file_output_is_named() {
    for engine in engines() {
        let p = Project::busybox(MAKES, r#"outputs = ["hello", "d/nope"]"#);
        for how in ["mount", "upload"] {
            let run = p.build_with(&engine, &["--sources", how], &[]);
            run.assert_exit(4);
            assert!(
                run.stderr.contains("did not create the declared output `d/nope`"),
                "--sources {how} on {engine}:\n{}",
                run.stderr
            );
            assert!(!p.path("repro-out").exists(), "--sources {how} on {engine}: an output of a failed build");
            p.assert_no_leftovers();
            p.assert_no_containers(&engine);
        }
    }
}

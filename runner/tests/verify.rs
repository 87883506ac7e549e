//! `repro-run verify` on the corpus in tests/corpus/ (its README says what
//! each project is): reproducible projects verify with exit 0, each broken
//! one is caught with the right file, the right archive member and the
//! right explanation, and the outcomes (differs 1, build failed 4, drifted
//! 5, bad record 2) are kept apart. Real engines only.
//!
//! The busybox projects run on every engine of `REPRO_RUN_TEST_ENGINES`;
//! the ones with a Debian toolchain (Go, C) on the first, as the examples
//! do. The C, Rust and Go reproducible cases are the examples
//! (runner/tests/examples.rs verifies them).

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::path::{Path, PathBuf};

use serde_json::Value;
use util::{copy_dir, engines, ensure_busybox, repro_run, Run};

/// A copy of tests/corpus in a temporary directory, with its own stage
/// directory, so that tests (and engines) do not share outputs or locks.
struct Corpus {
    dir: tempfile::TempDir,
    stage: tempfile::TempDir,
}

impl Corpus {
    fn new() -> Corpus {
        let corpus = Corpus { dir: tempfile::tempdir().unwrap(), stage: tempfile::tempdir().unwrap() };
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus"), corpus.dir.path());
        corpus
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `repro-run <command> --manifest <project>/repro.toml ARGS`.
    fn run(&self, command: &str, project: &str, engine: &str, args: &[&str]) -> Run {
        let manifest = format!("{project}/repro.toml");
        let mut all = vec![command, "--engine", engine, "--manifest", &manifest];
        all.extend_from_slice(args);
        let stage = self.stage.path().to_str().unwrap().to_owned();
        repro_run(self.dir.path(), &all, &[("REPRO_RUN_STAGE_DIR", &stage)])
    }

    fn verify(&self, project: &str, engine: &str, args: &[&str]) -> Run {
        self.run("verify", project, engine, args)
    }

    /// `verify --format json`, parsed, after checking the exit code.
    fn verify_json(&self, project: &str, engine: &str, code: i32) -> Value {
        let run = self.verify(project, engine, &["--format", "json"]);
        run.assert_exit(code);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
    }
}

/// The differences of the last rebuild of a JSON report.
fn differences(report: &Value) -> &Vec<Value> {
    let runs = report["runs"].as_array().unwrap();
    runs.last().unwrap()["comparison"]["differences"].as_array().unwrap()
}

/// The paths named in the last rebuild's differences.
fn differing_paths(report: &Value) -> Vec<&str> {
    differences(report).iter().map(|d| d["path"].as_str().unwrap()).collect()
}

/// The difference at `path`, as JSON text (to look for members, fields and
/// causes in, wherever the comparator put them).
fn difference_at(report: &Value, path: &str) -> String {
    let d = differences(report).iter().find(|d| d["path"] == path).unwrap_or_else(|| panic!("{path} not named"));
    d.to_string()
}

#[test]
#[ignore = "needs an engine"]
fn a_build_date_is_caught_in_its_file_and_blamed_on_the_time() {
    for engine in engines() {
        ensure_busybox(&engine);
        let corpus = Corpus::new();
        let report = corpus.verify_json("build-date", &engine, 1);
        assert_eq!(report["outcome"], "differs");
        // hello.txt is the same in both builds and is not blamed.
        assert_eq!(differing_paths(&report), ["out/version.txt"], "{report:#}");
        let d = difference_at(&report, "out/version.txt");
        assert!(d.contains(r#""format":"text""#) && d.contains("-built 20"), "{d}");
        assert!(d.contains(r#""kind":"timestamp""#), "the cause is a time near the build: {d}");
        // A failing verify keeps the rebuilds, and says where.
        let kept = corpus.path("build-date/repro-verify");
        assert_eq!(report["kept"], kept.to_str().unwrap());
        for run in ["run-1", "run-2"] {
            assert!(kept.join(run).join("out/out/version.txt").is_file(), "{run}'s outputs not kept");
            assert!(kept.join(run).join("record.json").is_file() && kept.join(run).join("build.log").is_file());
        }
    }
}

#[test]
#[ignore = "needs an engine"]
fn randomness_is_caught_and_called_random() {
    for engine in engines() {
        ensure_busybox(&engine);
        let corpus = Corpus::new();
        let run = corpus.verify("random", &engine, &[]);
        run.assert_exit(1);
        assert!(run.stdout.starts_with("NOT reproducible: the artifacts differ\n"), "{}", run.stdout);
        assert!(run.stdout.contains("    out/session-key.txt: content differs (text, 32 bytes)"), "{}", run.stdout);
        assert!(!run.stdout.contains("out/hello.txt:"), "{}", run.stdout);
        assert!(run.stdout.contains("- looks random"), "{}", run.stdout);
    }
}

#[test]
#[ignore = "needs an engine"]
fn a_build_that_fails_is_not_called_irreproducible() {
    for engine in engines() {
        ensure_busybox(&engine);
        let corpus = Corpus::new();
        let run = corpus.verify("fails", &engine, &[]);
        run.assert_exit(4);
        assert!(run.stdout.starts_with("not verified: a build failed\n"), "{}", run.stdout);
        assert!(run.stdout.contains("rebuild 1: failed: the build command exited with 3"), "{}", run.stdout);
        assert!(run.stdout.contains("cc: error: no input files"), "the log's tail is shown: {}", run.stdout);
        // The reference did not build: nothing more is built.
        assert!(!run.stdout.contains("rebuild 2"), "{}", run.stdout);
        let log = corpus.path("fails/repro-verify/run-1/build.log");
        assert!(run.stdout.contains(log.to_str().unwrap()), "the kept log is named: {}", run.stdout);
        assert!(std::fs::read_to_string(&log).unwrap().contains("no input files"));
    }
}

#[test]
#[ignore = "needs an engine"]
fn a_reproducible_build_verifies_and_leaves_nothing_behind() {
    for engine in engines() {
        ensure_busybox(&engine);
        let p = util::Project::busybox(
            r#""mkdir -p out/sub && echo a > out/a && echo b > out/sub/b""#,
            "outputs = [\"out\"]",
        );
        let run = repro_run(p.dir(), &["verify", "--engine", &engine], &[]);
        run.assert_exit(0);
        assert!(run.stdout.starts_with("reproducible\n"), "{}", run.stdout);
        assert!(run.stdout.contains("rebuild 2: the same artifacts (2 file(s))"), "{}", run.stdout);
        let left: Vec<_> = std::fs::read_dir(p.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "only repro.toml and repro.lock stay: {left:?}");
        p.assert_no_containers(&engine);

        // --runs 3 --keep: three rebuilds, each reported and kept.
        let kept = p.path("kept");
        let run = repro_run(p.dir(), &["verify", "--engine", &engine, "--runs", "3", "--keep", "kept"], &[]);
        run.assert_exit(0);
        for i in 1..=3 {
            assert!(run.stdout.contains(&format!("rebuild {i}:")), "{}", run.stdout);
            assert!(kept.join(format!("run-{i}/out/out/sub/b")).is_file());
        }
        // --runs 1 without a record has nothing to compare with.
        let run = repro_run(p.dir(), &["verify", "--engine", &engine, "--runs", "1"], &[]);
        run.assert_exit(2);
        assert!(run.stderr.contains("--runs 1: without --record, verify compares rebuilds"), "{}", run.stderr);
    }
}

#[test]
#[ignore = "needs an engine"]
fn a_record_is_verified_against_its_outputs_else_its_hashes() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let corpus = Corpus::new();
    corpus.run("build", "build-date", &engine, &[]).assert_exit(0);
    // A record is older than its verify; a busybox build takes less than a
    // second, so without this the two could stamp the same second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let run = corpus.verify("build-date", &engine, &["--record", "build-date/repro-out.json"]);
    run.assert_exit(1);
    assert!(run.stdout.contains("reference  build-date/repro-out.json (its outputs in "), "{}", run.stdout);
    assert!(run.stdout.contains("    out/version.txt: content differs (text"), "{}", run.stdout);
    assert!(run.stdout.contains("rebuild 1: 1 difference(s), 1 file(s) the same"), "{}", run.stdout);

    // Without the outputs beside it, the record's hashes are compared.
    std::fs::remove_dir_all(corpus.path("build-date/repro-out")).unwrap();
    let run = corpus.verify("build-date", &engine, &["--record", "build-date/repro-out.json"]);
    run.assert_exit(1);
    assert!(run.stdout.contains("its outputs are not beside it"), "{}", run.stdout);
    assert!(run.stdout.contains("out/version.txt: content differs (binary"), "{}", run.stdout);
    assert!(run.stdout.contains("only the hashes compare"), "{}", run.stdout);
    assert!(!run.stdout.contains("out/hello.txt:"), "{}", run.stdout);
}

#[test]
#[ignore = "needs an engine"]
fn records_that_cannot_be_verified_say_why() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let p = util::Project::busybox(r#""mkdir -p out && echo x > out/f""#, "outputs = [\"out\"]");
    p.build(&engine, &[]).assert_exit(0);
    let record = p.read("repro-out.json");
    let verify = |args: &[&str]| {
        let mut all = vec!["verify", "--engine", &engine];
        all.extend_from_slice(args);
        repro_run(p.dir(), &all, &[])
    };
    let run = verify(&["--record", "repro-out.json"]);
    run.assert_exit(0);
    assert!(run.stdout.starts_with("reproducible\n"), "{}", run.stdout);

    p.write("corrupt.json", &record[..record.len() / 2]);
    let run = verify(&["--record", "corrupt.json"]);
    run.assert_exit(2);
    assert!(run.stderr.contains("corrupt.json is not a build record: it is not JSON"), "{}", run.stderr);

    p.write("future.json", &record.replace("repro-run-record-v1", "repro-run-record-v9"));
    let run = verify(&["--record", "future.json"]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains("format `repro-run-record-v9`; this repro-run reads `repro-run-record-v1`"),
        "{}",
        run.stderr
    );

    p.write("other.json", &record.replace("echo x > out/f", "make"));
    let run = verify(&["--record", "other.json"]);
    run.assert_exit(2);
    assert!(run.stderr.contains("other.json was made by another project"), "{}", run.stderr);

    // A record of another environment: drift (exit 5), named field by field.
    let mut value: Value = serde_json::from_str(&record).unwrap();
    value["env_id"] = Value::String(format!("blake3:{}", "0".repeat(64)));
    p.write("drifted.json", &serde_json::to_string_pretty(&value).unwrap());
    let run = verify(&["--record", "drifted.json"]);
    run.assert_exit(5);
    assert!(run.stdout.starts_with("not verified: the environment drifted from the record's\n"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("drift env_id: the record has blake3:{}", "0".repeat(64))), "{}", run.stdout);
    p.assert_no_containers(&engine);
}

#[test]
#[ignore = "needs an engine"]
fn every_report_format_names_the_differing_artifact() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let corpus = Corpus::new();
    let summary = corpus.path("summary.md");
    let summary_env = [("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()), ("NO_COLOR", "1")];
    let manifest = "build-date/repro.toml";
    let verify = |format: &str| {
        let args = ["verify", "--engine", &engine, "--manifest", manifest, "--format", format];
        repro_run(corpus.dir.path(), &args, &summary_env)
    };

    let junit = verify("junit");
    junit.assert_exit(1);
    assert!(junit.stdout.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"), "{}", junit.stdout);
    assert!(
        junit.stdout.contains("tests=\"3\" failures=\"1\""),
        "environment, hello.txt, version.txt: {}",
        junit.stdout
    );
    assert!(
        junit.stdout.contains(
            "<testcase classname=\"repro-run.verify\" name=\"artifact out/version.txt\">\n      <failure \
             message=\"out/version.txt differs\">rebuild 2: out/version.txt: content differs (text"
        ),
        "{}",
        junit.stdout
    );
    assert!(junit.stdout.contains("<testcase classname=\"repro-run.verify\" name=\"artifact out/hello.txt\"/>"));

    let markdown = verify("markdown");
    markdown.assert_exit(1);
    assert!(markdown.stdout.starts_with("### ❌ repro-run verify: NOT reproducible"), "{}", markdown.stdout);
    assert!(
        markdown.stdout.contains("| `out/version.txt` | content differs (text, 26 bytes) |"),
        "{}",
        markdown.stdout
    );
    assert!(markdown.stdout.contains("| `out/hello.txt` | same |"), "{}", markdown.stdout);

    let json = verify("json");
    json.assert_exit(1);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["format"], "repro-run-verify-v1");
    assert_eq!(differing_paths(&report), ["out/version.txt"]);

    // Each of the three runs appended its markdown report to the summary.
    let appended = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(appended.matches("### ❌ repro-run verify: NOT reproducible").count(), 3, "{appended}");
    // The text report, with NO_COLOR, has no escape codes (and stdout is
    // not a terminal here either).
    let text = verify("text");
    assert!(!text.stdout.contains('\x1b'), "{}", text.stdout);
}

#[test]
#[ignore = "needs an engine and diffoscope"]
fn diffoscope_gets_each_differing_pair() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let corpus = Corpus::new();
    let run = corpus.verify("build-date", &engine, &["--diffoscope"]);
    run.assert_exit(1);
    let output = corpus.path("build-date/repro-verify/diffoscope/run-2/out/version.txt.txt");
    assert!(run.stdout.contains(&format!("    diffoscope on out/version.txt: {}", output.display())), "{}", run.stdout);
    let said = std::fs::read_to_string(&output).unwrap();
    assert!(said.contains("version.txt") && said.contains("built 20"), "{said}");
}

#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn archives_reproduce_and_their_broken_twins_name_the_member() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    let _debian = util::debian_image(&engine);
    let corpus = Corpus::new();
    // A tar.gz and a zip written deterministically: no false alarm.
    let report = corpus.verify_json("archives", &engine, 0);
    assert_eq!(report["outcome"], "reproducible");
    let artifacts: Vec<&str> = report["artifacts"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(artifacts, ["dist/bundle.tar.gz", "dist/bundle.zip"]);

    // Build-time mtimes in the tar.gz: the tarball, and in it each member's
    // mtime, named; the zip is not blamed.
    let report = corpus.verify_json("archives-tar-mtime", &engine, 1);
    assert_eq!(differing_paths(&report), ["dist/bundle.tar.gz"], "{report:#}");
    let d = difference_at(&report, "dist/bundle.tar.gz");
    assert!(d.contains(r#""format":"gzip""#) && d.contains(r#""format":"tar""#), "gzip, then tar: {d}");
    for member in ["data/README.txt", "data/notes.txt", "data/numbers.txt"] {
        assert!(d.contains(&format!("{member}: mtime")), "{member}'s mtime is named: {d}");
    }
    assert!(d.contains(r#""kind":"timestamp""#), "{d}");

    // Build-time timestamps in the zip: the zip's members' times named.
    let report = corpus.verify_json("archives-zip-time", &engine, 1);
    assert_eq!(differing_paths(&report), ["dist/bundle.zip"], "{report:#}");
    let d = difference_at(&report, "dist/bundle.zip");
    assert!(d.contains(r#""format":"zip""#), "{d}");
    assert!(d.contains("data/README.txt") && d.contains("time"), "the member and its time are named: {d}");
}

#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn an_elf_with_a_build_time_names_its_section() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    let _debian = util::debian_image(&engine);
    let corpus = Corpus::new();
    let report = corpus.verify_json("elf-timestamp", &engine, 1);
    assert_eq!(differing_paths(&report), ["out/hello"], "{report:#}");
    let d = difference_at(&report, "out/hello");
    assert!(d.contains(r#""format":"elf""#), "{d}");
    assert!(d.contains(".rodata"), "the section holding the time is named: {d}");
    assert!(d.contains("build-id"), "the build-id is named as a consequence: {d}");
}

//! `repro-run verify --vary` on the corpus in tests/corpus/ (`vary-*`):
//! each project broken in exactly one way verifies as reproducible without
//! --vary, and under `--vary all` the right variation, and only it, is
//! named with the right file, in at most 3 + ⌈log₂ n⌉ + 1 builds; a project
//! broken by two is given both; a reproducible one costs 3 builds; the HTML
//! report opens in headless Chromium. Real engines only.
//!
//! The busybox projects run on the first engine of
//! `REPRO_RUN_TEST_ENGINES`, the hostname case on every engine; the two
//! that need glibc (locale, clock) on the first, with the `c` profile's
//! Debian toolchain the examples also build.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::path::{Path, PathBuf};

use serde_json::Value;
use util::{copy_dir, engines, ensure_busybox, repro_run, Run};

/// A copy of one corpus project in a temporary directory, with its own
/// stage directory.
struct Case {
    dir: tempfile::TempDir,
    stage: tempfile::TempDir,
    name: &'static str,
}

impl Case {
    fn new(name: &'static str) -> Case {
        let case = Case { dir: tempfile::tempdir().unwrap(), stage: tempfile::tempdir().unwrap(), name };
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus").join(name);
        copy_dir(&from, case.dir.path());
        case
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn verify(&self, engine: &str, args: &[&str]) -> Run {
        let mut all = vec!["verify", "--engine", engine];
        all.extend_from_slice(args);
        let stage = self.stage.path().to_str().unwrap().to_owned();
        repro_run(self.dir.path(), &all, &[("REPRO_RUN_STAGE_DIR", &stage)])
    }

    /// Plain verify reproduces (the fixed settings hold); then the report
    /// of `--vary all` as JSON, after checking its exit code.
    fn vary_all(&self, engine: &str, code: i32) -> Value {
        self.verify(engine, &[]).assert_exit(0);
        self.vary(engine, &["--vary", "all"], code)
    }

    /// The JSON report of `verify ARGS`, after checking its exit code.
    fn vary(&self, engine: &str, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let run = self.verify(engine, &all);
        run.assert_exit(code);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.name, run.stdout))
    }
}

/// The culprits of a report: (variations, files).
fn culprits(report: &Value) -> Vec<(Vec<String>, Vec<String>)> {
    let strings = |v: &Value| v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    report["culprits"].as_array().unwrap().iter().map(|c| (strings(&c["variations"]), strings(&c["files"]))).collect()
}

/// The variations a report tested (not ineffective here).
fn tested(report: &Value) -> usize {
    report["variations"].as_array().unwrap().iter().filter(|v| v["status"] != "ineffective").count()
}

/// The most builds one responsible variation among `n` may cost.
fn bound(n: usize) -> usize {
    3 + (n as f64).log2().ceil() as usize + 1
}

/// Asserts that `report` names `variation` alone, changing `file` alone,
/// within the cost bound, with no noise; every other tested variation
/// holds.
fn assert_names(report: &Value, case: &str, variation: &str, file: &str) {
    assert_eq!(report["outcome"], "differs", "{case}: {report:#}");
    assert_eq!(report["noise"].as_array().unwrap().len(), 0, "{case}: the controls differ: {report:#}");
    assert_eq!(
        culprits(report),
        vec![(vec![variation.to_owned()], vec![file.to_owned()])],
        "{case}: {:#}",
        report["tests"]
    );
    let builds = report["builds"].as_u64().unwrap() as usize;
    assert_eq!(builds, report["tests"].as_array().unwrap().len());
    let n = tested(report);
    assert!(builds <= bound(n), "{case}: {builds} builds for {n} variations, more than {}", bound(n));
    for v in report["variations"].as_array().unwrap() {
        let expected = if v["name"] == variation { "responsible" } else { "holds" };
        if v["status"] != "ineffective" {
            assert_eq!(v["status"], expected, "{case}: {v}");
        }
    }
}

/// The busybox projects, each broken by one variation, and the file it
/// changes.
const BUSYBOX_CASES: [(&str, &str, &str); 8] = [
    ("vary-build-path", "build-path", "out/where.txt"),
    ("vary-umask", "umask", "out/data.txt"),
    ("vary-cpus", "cpus", "out/jobs.txt"),
    ("vary-user", "user", "out/uid.txt"),
    ("vary-timezone", "timezone", "out/epoch-hour.txt"),
    ("vary-dir-order", "dir-order", "out/list.txt"),
    ("vary-env", "env", "out/by.txt"),
    ("vary-hostname", "hostname", "out/host.txt"),
];

#[test]
#[ignore = "needs an engine"]
fn each_project_broken_one_way_gets_that_variation_named() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    for (case, variation, file) in BUSYBOX_CASES {
        let c = Case::new(case);
        let report = c.vary_all(&engine, 1);
        assert_names(&report, case, variation, file);
        // Not reproducible: every build is kept, and said where.
        assert!(c.path("repro-verify/build-1/out").is_dir(), "{case}: the builds were not kept");
        let left = util::containers_of(&engine, c.dir.path());
        assert!(left.is_empty(), "{case}: containers left on {engine}: {left:?}");
    }
}

#[test]
#[ignore = "needs an engine"]
fn the_hostname_is_named_on_every_engine() {
    for engine in engines() {
        ensure_busybox(&engine);
        let c = Case::new("vary-hostname");
        let report = c.vary_all(&engine, 1);
        assert_names(&report, "vary-hostname", "hostname", "out/host.txt");
        // The text report says it in a line, and counts the builds.
        let run = c.verify(&engine, &["--vary", "hostname,user"]);
        run.assert_exit(1);
        assert!(run.stdout.contains("hostname changes out/host.txt"), "{}", run.stdout);
        // ⌈log₂ 2⌉ + 1 after the three: hostname alone, then user alone.
        assert!(run.stdout.contains("  builds     5\n"), "{}", run.stdout);
    }
}

#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn the_locale_and_the_clock_are_named_where_glibc_runs() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    let _debian = util::debian_image(&engine);
    for (case, variation, file) in [("vary-locale", "locale", "out/chars.txt"), ("vary-clock", "clock", "out/year.txt")]
    {
        let report = Case::new(case).vary_all(&engine, 1);
        assert_names(&report, case, variation, file);
        // On glibc every variation takes effect.
        assert_eq!(tested(&report), 12, "{case}: {:#}", report["variations"]);
    }
    // The c profile's prefix map follows the build path: hello-c does not
    // name where it was built, wherever that is.
    let hello = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello-c"), hello.path());
    for left in ["repro-out", "repro-out.json", "repro-out.log", "repro-verify"] {
        let _ = std::fs::remove_dir_all(hello.path().join(left));
        let _ = std::fs::remove_file(hello.path().join(left));
    }
    let run =
        repro_run(hello.path(), &["verify", "--engine", &engine, "--vary", "build-path", "--format", "json"], &[]);
    run.assert_exit(0);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((report["outcome"].as_str(), report["builds"].as_u64()), (Some("reproducible"), Some(3)), "{report:#}");
    // A build that fails under the fake clock: the clock is incompatible,
    // the build not called irreproducible (exit 0), the rest holds.
    let report = Case::new("vary-clock-check").vary_all(&engine, 0);
    let clock = report["variations"].as_array().unwrap().iter().find(|v| v["name"] == "clock").unwrap();
    assert_eq!(clock["status"], "incompatible", "{:#}", report["variations"]);
    assert_eq!(report["outcome"], "reproducible");
    assert!(report["variations"].as_array().unwrap().iter().all(|v| v["name"] == "clock" || v["status"] == "holds"));
}

#[test]
#[ignore = "needs an engine"]
fn two_variations_in_one_file_are_both_named() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let c = Case::new("vary-two");
    c.verify(&engine, &[]).assert_exit(0);
    // Two lists that add up: all but the clock, then also not the locale.
    let report = c.vary(&engine, &["--vary", "-clock", "--vary", "-locale"], 1);
    let names: Vec<&str> =
        report["variations"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(!names.contains(&"clock") && !names.contains(&"locale"), "{names:?}");
    let id = vec!["out/id.txt".to_owned()];
    assert_eq!(culprits(&report), vec![(vec!["hostname".to_owned()], id.clone()), (vec!["user".to_owned()], id)]);
}

#[test]
#[ignore = "needs an engine"]
fn what_differs_between_two_controls_is_blamed_on_no_variation() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    // build-date writes the time of the build, to the second.
    let report = Case::new("build-date").vary(&engine, &["--vary", "hostname,user"], 1);
    assert_eq!(report["outcome"], "differs");
    assert_eq!(report["noise"], serde_json::json!(["out/version.txt"]), "{report:#}");
    assert!(culprits(&report).is_empty(), "{:#}", report["culprits"]);
    assert_eq!(report["explanations"][0]["of"], "noise: control 2");
}

#[test]
#[ignore = "needs an engine"]
fn a_reproducible_project_costs_three_builds_and_leaves_nothing() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let c = Case::new("vary-none");
    let report = c.vary_all(&engine, 0);
    assert_eq!(report["outcome"], "reproducible");
    assert_eq!(report["builds"], 3, "{:#}", report["tests"]);
    assert!(culprits(&report).is_empty());
    assert!(!c.path("repro-verify").exists(), "a reproducible verify kept its builds");
    // Ineffective variations are said so, with why, not tested silently.
    let clock = report["variations"].as_array().unwrap().iter().find(|v| v["name"] == "clock").unwrap();
    assert_eq!(clock["status"], "ineffective", "{clock}");
    assert!(clock["why"].as_str().unwrap().contains("static"), "{clock}");
}

#[test]
#[ignore = "needs an engine and chromium"]
fn the_html_report_opens_in_chromium_and_names_the_variation_and_file() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let c = Case::new("vary-hostname");
    let run = c.verify(&engine, &["--vary", "all", "--format", "html"]);
    run.assert_exit(1);
    let page = c.path("report.html");
    std::fs::write(&page, &run.stdout).unwrap();
    assert!(!run.stdout.contains("http://") && !run.stdout.contains("https://"), "the page reaches out");
    assert!(!run.stdout.contains("<script"), "the page has a script");

    let url = format!("file://{}", page.display());
    let chromium = |args: &[&str]| {
        let out = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
            .args(args)
            .arg(&url)
            .output()
            .expect("cannot run chromium (scripts/engine-up installs it)");
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let dom = chromium(&["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(dom_text.contains("<b>hostname</b> changes <code>out/host.txt</code>"), "{dom_text}");
    let console: Vec<&str> =
        std::str::from_utf8(&dom.stderr).unwrap().lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");

    // The screenshot stays in the target directory, to be looked at.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vary-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1280,1400"]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "not a screenshot: {} bytes", png.len());
}

/// A variable the build sets itself is its own choice: varying it tests
/// nothing, and a set of nothing but such is refused, saying why.
#[test]
#[ignore = "needs an engine"]
fn what_the_build_sets_itself_is_not_varied() {
    let engine = engines().into_iter().next().expect("no engine to test on");
    ensure_busybox(&engine);
    let p =
        util::Project::busybox(r#""mkdir -p out && date > out/when""#, "outputs = [\"out\"]\nenv = { TZ = \"CET-1\" }");
    let run = repro_run(p.dir(), &["verify", "--engine", &engine, "--vary", "timezone"], &[]);
    run.assert_exit(2);
    assert!(run.stderr.contains("timezone: the build sets TZ=CET-1 itself"), "{}", run.stderr);
    p.assert_no_containers(&engine);
}

#[test]
fn bad_vary_values_are_refused_before_any_build() {
    let p = util::Project::busybox("\"true\"", "outputs = [\"out\"]");
    for (args, needle) in [
        (&["--vary", "hostnam"][..], "unknown variation `hostnam`: expected `all`, or one of `build-path`"),
        (&["--vary", "hostname,-hostname"][..], "that leaves no variation to test"),
        (&["--format", "html"][..], "--format html is the report of --vary"),
        (&["--vary", "all", "--format", "junit"][..], "--vary reports as text, json or html"),
    ] {
        let mut all = vec!["verify", "--engine", "docker"];
        all.extend_from_slice(args);
        let run = repro_run(p.dir(), &all, &[]);
        run.assert_exit(2);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(!p.path("repro.lock").exists(), "{args:?} locked before refusing");
    }
}

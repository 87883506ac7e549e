//! `repro-run diff` of two real records: one project built on an engine
//! twice, first on the bare debian-bookworm base, then with one toolchain
//! package added. The diff must name exactly that package under
//! `packages`, and nothing else there (runner/tests/diff.rs checks the same
//! on records written by hand, with no engine).
//!
//! `#[ignore = "needs an engine and Debian's mirror"]`: the second build
//! locks `make` (the mirror, each run: the project is new) and prepares its
//! toolchain image (once per engine; the package store and the image are
//! kept). It runs on the first engine of `REPRO_RUN_TEST_ENGINES` only, on
//! the base image the examples build.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use util::{engines, repro_run, Project};

const COMMAND: &str = r#""mkdir -p out && echo hi > out/x""#;

fn manifest(toolchain: &str) -> String {
    format!("[image]\nname = \"debian-bookworm\"\n\n{toolchain}[build]\ncommand = {COMMAND}\noutputs = [\"out\"]\n")
}

/// `name version arch` of every package a record lists.
fn packages(record: &Value) -> BTreeSet<(String, String, String)> {
    let field = |p: &Value, k: &str| p[k].as_str().unwrap().to_owned();
    let list = record["image"]["packages"].as_array().unwrap();
    list.iter().map(|p| (field(p, "name"), field(p, "version"), field(p, "arch"))).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn records_of_two_package_sets_name_exactly_the_added_package() {
    let engine = engines().into_iter().next().expect("REPRO_RUN_TEST_ENGINES is empty");
    let _debian = util::debian_image(&engine);
    let records = tempfile::tempdir().unwrap();
    let (a, b) = (records.path().join("a.json"), records.path().join("b.json"));

    // A: no toolchain, the base's own packages.
    let p = Project::new("debian-bookworm", COMMAND, r#"outputs = ["out"]"#);
    p.write("repro.toml", &manifest(""));
    p.build(&engine, &[]).assert_exit(0);
    std::fs::copy(p.path("repro-out.json"), &a).unwrap();
    // B: the same project with make added: build relocks it.
    p.write("repro.toml", &manifest("[toolchain]\npackages = [\"make\"]\n\n"));
    p.build(&engine, &[]).assert_exit(0);
    std::fs::copy(p.path("repro-out.json"), &b).unwrap();
    p.assert_no_containers(&engine);

    // What the records themselves say: B has A's packages and make (make
    // depends on nothing that minbase lacks).
    let (pa, pb) = (packages(&read_json(&a)), packages(&read_json(&b)));
    assert!(!pa.is_empty(), "record A lists no package of the base");
    assert!(pa.is_subset(&pb), "B lost or changed packages of A: {:?}", pa.difference(&pb).collect::<Vec<_>>());
    let added: Vec<_> = pb.difference(&pa).collect();
    assert_eq!(added.len(), 1, "B adds more than make: {added:?}");
    let (name, version, arch) = added[0];
    assert_eq!(name, "make");

    // The text report: a `packages` section of that one line.
    let run = repro_run(records.path(), &["diff", "a.json", "b.json"], &[]);
    run.assert_exit(1);
    let section: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("packages ("))
        .take_while(|l| l.starts_with("packages (") || l.starts_with("  "))
        .collect();
    assert_eq!(section, ["packages (1)".to_owned(), format!("  added make {version} ({arch})")], "{}", run.stdout);
    assert_eq!(run.stdout.matches("make").count(), 1, "make is named once, under packages: {}", run.stdout);
    assert_eq!(run.stderr, "");

    // The JSON report: one finding in the packages area, make's.
    let run = repro_run(records.path(), &["diff", "a.json", "b.json", "--format", "json"], &[]);
    run.assert_exit(1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["kind"], "records");
    let findings = report["findings"].as_array().unwrap();
    let in_packages: Vec<&Value> = findings.iter().filter(|f| f["area"] == "packages").collect();
    assert_eq!(in_packages.len(), 1, "{}", run.stdout);
    assert_eq!(in_packages[0]["field"], format!("packages.make:{arch}"));
    assert_eq!(in_packages[0]["a"], Value::Null);
    assert_eq!(in_packages[0]["b"], version.as_str());
    // No other finding is about a package.
    let others: Vec<&Value> = findings.iter().filter(|f| f["area"] != "packages").collect();
    assert!(others.iter().all(|f| !f["field"].as_str().unwrap().starts_with("packages")), "{}", run.stdout);
}

//! Compiles `entry/entry.c`, the static helper every build container starts
//! with, into `$OUT_DIR/repro-run-entry`; `src/entry.rs` embeds it.

// Cargo reads a build script's instructions from its stdout.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=entry/entry.c");
    println!("cargo:rerun-if-env-changed=CC");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("repro-run-entry");
    // `$CC` may carry a wrapper or flags (`ccache gcc`), as make allows.
    let cc = std::env::var("CC").ok().filter(|cc| !cc.trim().is_empty()).unwrap_or_else(|| "cc".to_owned());
    let mut words = cc.split_whitespace();
    let mut cmd = Command::new(words.next().expect("cc is not empty"));
    cmd.args(words).args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o"]).arg(&out).arg("entry/entry.c");

    let shown = format!("{cmd:?}");
    let fix = "install a C compiler and the static C library (`apt-get install gcc libc6-dev`), or set CC to one";
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "cannot compile the entry helper: {shown} failed ({}):\n{}\n{fix}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim_end()
        ),
        Err(err) => panic!("cannot compile the entry helper: cannot start {shown}: {err}\n{fix}"),
    }
}

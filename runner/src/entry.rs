//! The entry helper: a tiny static program (`runner/entry/entry.c`) that
//! every build container runs first. It starts from an empty environment,
//! sets exactly the build's variables and umask, and execs the build
//! command.
//!
//! It replaces `env -i K=V ... COMMAND`, which fails on an image without
//! `env` (busybox with only `sh`, an image holding one static binary) with
//! "exec: env: executable file not found". The helper is linked statically,
//! written once into the cache directory ([`installed`]) and bind-mounted
//! read-only at [`PATH_IN_CONTAINER`], as Docker's `--init` does with tini,
//! so it runs on any image and reads no file of it.
//!
//! # The argv protocol
//!
//! ```text
//! repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...
//! ```
//!
//! - The environment is exactly the `--env` entries, in order.
//! - `--umask` sets the umask; without it the umask is left as it is.
//! - A `COMMAND` without `/` is looked up as execvp(3) does, in the first
//!   `--env PATH=...` (never in the helper's own environment), else in
//!   `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`.
//! - Exit codes as env(1): 125 bad usage, 126 found but not runnable, 127
//!   not found; the message on stderr starts with `repro-run-entry: `.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The helper's bytes, compiled by `runner/build.rs`.
#[cfg_attr(not(test), allow(dead_code))] // wired into the container spec by the build pipeline
pub const BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/repro-run-entry"));

/// Where the engine mounts the helper in the container.
#[cfg_attr(not(test), allow(dead_code))] // wired into the container spec by the build pipeline
pub const PATH_IN_CONTAINER: &str = "/.repro-run/entry";

/// The container argv that runs `command` through the helper with exactly
/// the environment `env` (`K=V` entries, in order) and `umask`.
#[cfg_attr(not(test), allow(dead_code))] // wired into the container spec by the build pipeline
pub fn argv(umask: Option<u32>, env: &[String], command: &[String]) -> Vec<String> {
    let mut argv = vec![PATH_IN_CONTAINER.to_owned()];
    if let Some(umask) = umask {
        argv.extend(["--umask".to_owned(), format!("{umask:03o}")]);
    }
    for kv in env {
        argv.extend(["--env".to_owned(), kv.clone()]);
    }
    argv.push("--".to_owned());
    argv.extend(command.iter().cloned());
    argv
}

/// The helper's path on this machine, written into the cache directory on
/// first use: `<cache>/entry/<16 hex of its blake3>/repro-run-entry`.
#[cfg_attr(not(test), allow(dead_code))] // wired into the container spec by the build pipeline
pub fn installed() -> Result<PathBuf> {
    let cache = crate::cache::dir().context("no cache directory for the entry helper: set HOME or XDG_CACHE_HOME")?;
    install_in(&cache)
}

/// [`installed`] under `cache`.
fn install_in(cache: &Path) -> Result<PathBuf> {
    let entry = cache.join("entry");
    let dir = entry.join(&blake3::hash(BYTES).to_hex()[..16]);
    let path = dir.join("repro-run-entry");
    // The name holds the digest, so a file of the right size and mode is
    // this helper: a writer only ever renames a whole file into place.
    if let Ok(meta) = fs_err::metadata(&path) {
        if meta.len() == BYTES.len() as u64 && meta.permissions().mode() & 0o7777 == 0o755 {
            return Ok(path);
        }
    }
    // The engine's daemon, maybe another user, mounts the file from here.
    for d in [&entry, &dir] {
        fs_err::create_dir_all(d)?;
        fs_err::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new().prefix(".repro-run-entry.").tempfile_in(&dir)?;
        tmp.write_all(BYTES)?;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o755))?;
        tmp.persist(&path)?;
        Ok(())
    };
    write().with_context(|| format!("cannot write the entry helper to {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Output};
    use std::sync::OnceLock;

    /// The helper, written once for all tests, in a directory with a command
    /// found nowhere else (`only-here`) and a file that is not executable
    /// (`not-exec`).
    fn fixture() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            install_in(dir.path()).unwrap();
            std::os::unix::fs::symlink("/bin/echo", dir.path().join("only-here")).unwrap();
            fs_err::write(dir.path().join("not-exec"), "#!/bin/sh\n").unwrap();
            dir
        })
        .path()
    }

    /// Runs the helper with `args`, in an environment with junk in it.
    fn run(args: &[&str]) -> Output {
        let helper = install_in(fixture()).unwrap();
        loop {
            match Command::new(&helper).args(args).env_clear().env("LEAK", "1").env("PATH", "/leak").output() {
                // Another test thread's child may hold the helper open for
                // writing between its fork and exec, for a moment.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::yield_now(),
                out => return out.unwrap(),
            }
        }
    }

    /// The exit code and stderr, with the fixture's path as `[DIR]`.
    fn failure(args: &[&str]) -> String {
        let out = run(args);
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        format!("{}: {}", out.status.code().unwrap(), stderr.replace(fixture().to_str().unwrap(), "[DIR]"))
    }

    fn stdout(out: Output) -> String {
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_command_sees_exactly_the_given_environment_in_order() {
        let out = run(&["--env", "B=2", "--env", "A=1", "--env", "EMPTY=", "--", "/usr/bin/env"]);
        assert_eq!(stdout(out), "B=2\nA=1\nEMPTY=\n");
        assert_eq!(stdout(run(&["--", "/usr/bin/env"])), "");
    }

    #[test]
    fn the_umask_is_applied() {
        assert_eq!(stdout(run(&["--umask", "077", "--", "/bin/sh", "-c", "umask"])), "0077\n");
        assert_eq!(stdout(run(&["--umask", "0", "--", "/bin/sh", "-c", "umask"])), "0000\n");
    }

    #[test]
    fn a_command_is_looked_up_in_the_given_path() {
        let path = format!("PATH=/nonexistent:{}", fixture().display());
        assert_eq!(stdout(run(&["--env", &path, "--", "only-here", "found"])), "found\n");
        // Without PATH, the default one; the helper's own PATH (/leak) is never used.
        assert_eq!(stdout(run(&["--", "env"])), "");
    }

    #[test]
    fn a_missing_command_exits_127_naming_it_and_the_path() {
        insta::assert_snapshot!(failure(&["--env", "PATH=/usr/bin:/bin", "--", "only-here"]), @"127: repro-run-entry: cannot run `only-here`: not found in PATH=/usr/bin:/bin (install it in the image, or give its full path)");
        insta::assert_snapshot!(failure(&["--", "only-here"]), @"127: repro-run-entry: cannot run `only-here`: not found in PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin (install it in the image, or give its full path)");
        insta::assert_snapshot!(failure(&["--", "/nonexistent/make"]), @"127: repro-run-entry: cannot run `/nonexistent/make`: no such file");
    }

    #[test]
    fn a_file_that_is_not_executable_exits_126() {
        let path = format!("PATH={}", fixture().display());
        insta::assert_snapshot!(failure(&["--env", &path, "--", "not-exec"]), @"126: repro-run-entry: cannot run `not-exec`: permission denied on [DIR]/not-exec (make it executable with chmod +x, on a filesystem not mounted noexec)");
        let file = format!("{}/not-exec", fixture().display());
        insta::assert_snapshot!(failure(&["--", &file]), @"126: repro-run-entry: cannot run `[DIR]/not-exec`: permission denied on [DIR]/not-exec (make it executable with chmod +x, on a filesystem not mounted noexec)");
        insta::assert_snapshot!(failure(&["--", "/"]), @"126: repro-run-entry: cannot run `/`: / is a directory");
    }

    #[test]
    fn bad_usage_exits_125_with_the_usage() {
        let cases: &[&[&str]] = &[
            &["/usr/bin/env"],
            &["--env", "FOO", "--", "/usr/bin/env"],
            &["--env", "=1", "--", "/usr/bin/env"],
            &["--umask", "8", "--", "/usr/bin/env"],
            &["--umask", "1000", "--", "/usr/bin/env"],
            &["--umask"],
            &["--umask", "022"],
            &["--user", "1000", "--", "/usr/bin/env"],
            &["--"],
        ];
        let all: Vec<String> = cases.iter().map(|args| format!("$ {}\n{}", args.join(" "), failure(args))).collect();
        insta::assert_snapshot!(all.join("\n"), @r"
        $ /usr/bin/env
        125: repro-run-entry: no `--` before COMMAND `/usr/bin/env`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --env FOO -- /usr/bin/env
        125: repro-run-entry: --env takes K=V with a non-empty K, not `FOO`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --env =1 -- /usr/bin/env
        125: repro-run-entry: --env takes K=V with a non-empty K, not `=1`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --umask 8 -- /usr/bin/env
        125: repro-run-entry: --umask takes an octal mode from 0 to 0777 such as 022, not `8`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --umask 1000 -- /usr/bin/env
        125: repro-run-entry: --umask takes an octal mode from 0 to 0777 such as 022, not `1000`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --umask
        125: repro-run-entry: a value must follow `--umask`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --umask 022
        125: repro-run-entry: no `--` before COMMAND
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --user 1000 -- /usr/bin/env
        125: repro-run-entry: unknown option `--user`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...

        $ --
        125: repro-run-entry: no COMMAND after `--`
        usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...
        ");
    }

    #[test]
    fn the_binary_is_static_and_small() {
        let u16_at = |at: usize| u16::from_le_bytes(BYTES[at..at + 2].try_into().unwrap()) as usize;
        let u32_at = |at: usize| u32::from_le_bytes(BYTES[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(BYTES[at..at + 8].try_into().unwrap()) as usize;
        // ELF64 (class 2), little-endian (data 1).
        assert_eq!(&BYTES[..6], b"\x7fELF\x02\x01");
        let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
        assert!(phnum > 0);
        const PT_INTERP: u32 = 3;
        let types: Vec<u32> = (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect();
        assert!(!types.contains(&PT_INTERP), "the helper asks for a dynamic loader: {types:?}");
        assert!(BYTES.len() < 1536 * 1024, "the helper is {} bytes", BYTES.len());
    }

    #[test]
    fn argv_runs_the_command_through_the_helper() {
        let env = ["PATH=/usr/bin:/bin".to_owned(), "TZ=UTC".to_owned()];
        let command = ["make".to_owned(), "all".to_owned()];
        assert_eq!(
            argv(Some(0o22), &env, &command).join(" "),
            "/.repro-run/entry --umask 022 --env PATH=/usr/bin:/bin --env TZ=UTC -- make all"
        );
        assert_eq!(argv(None, &[], &command), [PATH_IN_CONTAINER, "--", "make", "all"]);
    }

    #[test]
    fn installed_is_idempotent_and_executable_by_all() {
        let cache = tempfile::tempdir().unwrap();
        let path = install_in(cache.path()).unwrap();
        let digest = blake3::hash(BYTES).to_hex();
        assert_eq!(path, cache.path().join("entry").join(&digest[..16]).join("repro-run-entry"));
        assert_eq!(fs_err::read(&path).unwrap(), BYTES);
        let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o755);
        assert_eq!(mode(path.parent().unwrap()), 0o755);
        assert_eq!(mode(&cache.path().join("entry")), 0o755);

        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(p).unwrap());
        let first = inode(&path);
        assert_eq!(install_in(cache.path()).unwrap(), path);
        assert_eq!(inode(&path), first, "a second call rewrote the helper");

        // A half-written file (the wrong size) is replaced.
        fs_err::write(&path, b"partial").unwrap();
        assert_eq!(fs_err::read(install_in(cache.path()).unwrap()).unwrap(), BYTES);
        assert_eq!(mode(&path), 0o755);
    }

    #[test]
    fn installed_writes_into_the_cache_directory() {
        // The real cache directory, as a build would: the write is idempotent.
        let path = installed().unwrap();
        assert_eq!(path, install_in(&crate::cache::dir().unwrap()).unwrap());
        assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o755);
    }
}

//! Test harness: projects in temporary directories, `repro-run` runs, and
//! container counts read from the engine itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repro-run binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_repro-run")
}

/// The engines to test on: `REPRO_RUN_TEST_ENGINES`, default both.
pub fn engines() -> Vec<String> {
    let list = std::env::var("REPRO_RUN_TEST_ENGINES").unwrap_or_else(|_| "docker,podman".into());
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Makes the busybox base image once per engine per test process, so tests
/// running in parallel do not each import it.
pub fn ensure_busybox(engine: &str) {
    static DONE: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let done = DONE.get_or_init(|| Mutex::new(Vec::new()));
    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|e| e == engine) {
        return;
    }
    let out = Command::new(bin()).args(["image", "build", "busybox", "--quiet", "--engine", engine]).output().unwrap();
    assert!(
        out.status.success(),
        "cannot make the busybox image on {engine} (is it running? scripts/engine-up starts it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    done.push(engine.to_owned());
}

/// Makes sure `repro-run/debian-bookworm:latest` exists on `engine`, and
/// holds a lock while tests that use it run, so that no test rebuilds (and
/// re-tags) it under another.
pub fn debian_image(engine: &str) -> std::sync::MutexGuard<'static, ()> {
    debian_images(&[engine.to_owned()])
}

/// [`debian_image`] for several engines at once, under the one lock.
pub fn debian_images(engines: &[String]) -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    for engine in engines {
        let have =
            repro_run(dir.path(), &["image", "digest", "repro-run/debian-bookworm:latest", "--engine", engine], &[]);
        if have.code != Some(0) {
            repro_run(dir.path(), &["image", "build", "debian-bookworm", "--engine", engine, "-q"], &[]).assert_exit(0);
        }
    }
    guard
}

/// The result of one `repro-run` run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs repro-run with `args`, in `cwd`, with extra environment.
/// Containers (any state) that repro-run labelled with the project in `dir`.
pub fn containers_of(engine: &str, dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    let out = Command::new(engine)
        .args(["ps", "-a", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=org.repro-run.project={}", dir.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{engine} ps`: {e}"));
    assert!(out.status.success(), "{engine} ps failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// Copies the directory `from` into `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn repro_run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(bin()).args(args).current_dir(cwd).envs(env.iter().copied()).output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A project in a temporary directory.
pub struct Project {
    dir: tempfile::TempDir,
    /// The project's own `--stage-dir` (REPRO_RUN_STAGE_DIR), so that a
    /// test can check that every staged tree is gone.
    stage: tempfile::TempDir,
    image: String,
}

impl Project {
    /// A project on `image` with `command` (TOML) and more `[build]` lines.
    pub fn new(image: &str, command: &str, build_extra: &str) -> Project {
        let p =
            Project { dir: tempfile::tempdir().unwrap(), stage: tempfile::tempdir().unwrap(), image: image.to_owned() };
        p.write_manifest(command, build_extra);
        p
    }

    /// A project on the busybox image.
    pub fn busybox(command: &str, build_extra: &str) -> Project {
        Project::new("busybox", command, build_extra)
    }

    /// A busybox project whose build copies the file `input` (holding
    /// `data`) to `out/copy`.
    pub fn copying_input() -> Project {
        let p = Project::busybox(r#""mkdir -p out && cat input > out/copy""#, r#"outputs = ["out"]"#);
        p.write("input", "data");
        p
    }

    pub fn write_manifest(&self, command: &str, build_extra: &str) {
        self.write(
            "repro.toml",
            &format!("[image]\nname = \"{}\"\n\n[build]\ncommand = {command}\n{build_extra}\n", self.image),
        );
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    /// `repro-run build` on `engine`.
    pub fn build(&self, engine: &str, env: &[(&str, &str)]) -> Run {
        self.build_with(engine, &[], env)
    }

    /// `repro-run build` on `engine` with more arguments.
    pub fn build_with(&self, engine: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        if self.image == "busybox" {
            ensure_busybox(engine);
        }
        let mut all = vec!["build", "--engine", engine];
        all.extend_from_slice(args);
        let mut env = env.to_vec();
        let stage = self.stage_dir();
        env.push(("REPRO_RUN_STAGE_DIR", stage.to_str().unwrap()));
        repro_run(self.dir.path(), &all, &env)
    }

    /// `repro-run build` on `engine` in new namespaces (`unshare` with
    /// `flags`), after the shell command `prelude` ran there, with its own
    /// cache directory: the exit code and stderr.
    pub fn build_unshared(
        &self,
        engine: &str,
        flags: &[&str],
        prelude: &str,
        args: &[&str],
        cache: &tempfile::TempDir,
    ) -> (Option<i32>, String) {
        ensure_busybox(engine);
        let out = Command::new("unshare")
            .args(flags)
            .args(["sh", "-c"])
            .arg(format!(r#"{prelude} && exec "$0" "$@""#))
            .arg(bin())
            .args(["build", "--engine", engine])
            .args(args)
            .env("REPRO_RUN_STAGE_DIR", self.stage_dir())
            .env("XDG_CACHE_HOME", cache.path())
            .current_dir(self.dir.path())
            .output()
            .expect("cannot run unshare");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Where this project's builds stage their sources.
    pub fn stage_dir(&self) -> PathBuf {
        self.stage.path().to_path_buf()
    }

    /// `repro-run build` on `engine` that must exit with `code`, saying each
    /// of `needles` on stderr, and leave no container behind.
    pub fn build_fails(&self, engine: &str, code: i32, needles: &[&str]) -> Run {
        let run = self.build(engine, &[]);
        run.assert_exit(code);
        for needle in needles {
            assert!(run.stderr.contains(needle), "on {engine}, stderr lacks `{needle}`:\n{}", run.stderr);
        }
        self.assert_no_containers(engine);
        self.assert_no_leftovers();
        run
    }

    /// `repro-run build` in the background, its stderr going to `build.err`.
    pub fn spawn_build(&self, engine: &str) -> Child {
        ensure_busybox(engine);
        let err = std::fs::File::create(self.path("build.err")).unwrap();
        Command::new(bin())
            .args(["build", "--engine", engine])
            .env("REPRO_RUN_STAGE_DIR", self.stage.path())
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap()
    }

    /// [`Project::spawn_build`], returned once its stderr says `text`
    /// (within a minute; repro-run must not exit before).
    pub fn spawn_build_until(&self, engine: &str, text: &str) -> Child {
        let mut child = self.spawn_build(engine);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log_says(text) {
            assert!(Instant::now() < deadline, "the build never said `{text}`");
            assert!(child.try_wait().unwrap().is_none(), "repro-run exited before it said `{text}`");
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }

    /// Whether the background build's stderr contains `text` yet.
    pub fn log_says(&self, text: &str) -> bool {
        std::fs::read_to_string(self.path("build.err")).is_ok_and(|s| s.contains(text))
    }

    /// Containers (any state) that repro-run labelled with this project.
    pub fn containers(&self, engine: &str) -> Vec<String> {
        containers_of(engine, self.dir.path())
    }

    /// No staging directory or temporary file of repro-run's is left in
    /// the project.
    pub fn assert_no_leftovers(&self) {
        let left: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".repro-"))
            .collect();
        assert!(left.is_empty(), "repro-run left {left:?} in the project");
        assert_stage_is_clean(self.stage.path());
    }

    /// The source trees kept in this project's stage directory: the names
    /// (digests) of the complete ones.
    pub fn kept_trees(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.stage.path().join("trees")) else { return Vec::new() };
        let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    pub fn assert_no_containers(&self, engine: &str) {
        let left = self.containers(engine);
        assert!(left.is_empty(), "{engine} still holds containers of this project: {left:?}");
    }
}

/// Nothing of a build is left in the stage directory `dir`: no staging
/// directory, no mount, no half-written tree; only complete kept trees
/// (`trees/<64 hex digits>.erofs`, or `trees/<64 hex digits>/` with `src/`
/// and `size`).
pub fn assert_stage_is_clean(dir: &Path) {
    let staged: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        staged.iter().all(|n| n == "trees" || n == "hints"),
        "repro-run left the staged sources {staged:?} in {}",
        dir.display()
    );
    let is_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Ok(hints) = std::fs::read_dir(dir.join("hints")) {
        for hint in hints {
            let hint = hint.unwrap();
            let name = hint.file_name().to_string_lossy().into_owned();
            let digest = std::fs::read_to_string(hint.path()).unwrap();
            assert!(is_hex(&name) && is_hex(&digest), "a stray {name} in hints/, holding {digest:?}");
        }
    }
    if let Ok(trees) = std::fs::read_dir(dir.join("trees")) {
        for tree in trees {
            let tree = tree.unwrap();
            let name = tree.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".erofs").unwrap_or(&name);
            assert!(is_hex(hex), "a stray {name} in trees/");
            if tree.file_type().unwrap().is_dir() {
                let mut parts: Vec<_> = std::fs::read_dir(tree.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                parts.sort();
                assert_eq!(parts, ["size", "src"], "in the kept tree {name}");
            } else {
                assert!(name.ends_with(".erofs"), "a stray file {name} in trees/");
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.canonicalize().unwrap();
    let left: Vec<_> = mounts.lines().filter(|l| l.contains(dir.to_str().unwrap())).collect();
    assert!(left.is_empty(), "mounts are left in {}: {left:?}", dir.display());
}

/// Mounts the kept image `image` read-only for a moment, and gives `look`
/// its `src/`.
pub fn read_kept_image<T>(image: &Path, look: impl FnOnce(&Path) -> T) -> T {
    let mnt = tempfile::tempdir().unwrap();
    let status = Command::new("mount").args(["-t", "erofs", "-o", "ro"]).arg(image).arg(mnt.path()).status().unwrap();
    assert!(status.success(), "cannot mount {}", image.display());
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| look(&mnt.path().join("src"))));
    let status = Command::new("umount").arg(mnt.path()).status().unwrap();
    assert!(status.success(), "cannot unmount {}", mnt.path().display());
    seen.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Sends SIGINT to a child process.
pub fn sigint(child: &Child) {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for a child, at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    None
}

/// sha256 of `bytes`, hex, by the system's sha256sum (an independent check).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

/// Debian's mirror as this machine's apt sources name it: (host, an IPv4
/// address of it). The test that uses it checks the build cannot reach it.
pub fn apt_mirror() -> (String, String) {
    let mut texts = Vec::new();
    for f in ["/etc/apt/sources.list"] {
        if let Ok(t) = std::fs::read_to_string(f) {
            texts.push(t);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            if e.path().extension().is_some_and(|x| x == "sources" || x == "list") {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    texts.push(t);
                }
            }
        }
    }
    let host = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.strip_prefix("http://").or_else(|| w.strip_prefix("https://")))
        .map(|rest| rest.split('/').next().unwrap_or_default().to_owned())
        .find(|h| !h.is_empty())
        .expect("this machine's apt sources name no http mirror; the network test needs one to aim at");
    use std::net::ToSocketAddrs as _;
    let ip = (host.as_str(), 80)
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {host} on the host: {e}"))
        .find(|a| a.is_ipv4())
        .unwrap_or_else(|| panic!("{host} has no IPv4 address"))
        .ip()
        .to_string();
    (host, ip)
}

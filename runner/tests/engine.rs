//! Integration tests against a real container engine: no mock stands in.
//!
//! Every test here is `#[ignore = "needs an engine"]`, so a plain
//! `cargo test` lists them as ignored rather than passing them silently; the
//! README's test command runs them with `--include-ignored` after
//! `scripts/engine-up`. `REPRO_RUN_TEST_ENGINES` (default `docker,podman`)
//! lists the engines each test runs on; an engine in that list that does not
//! answer fails the test.

// Tests panic to fail, and their panics name the paths they touch.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod util;

use std::time::{Duration, Instant};

use util::{engines, Project};

/// The environment inside the build is exactly the documented one, and no
/// host variable leaks in.
#[test]
#[ignore = "needs an engine"]
fn environment_is_built_from_scratch() {
    for engine in engines() {
        let p = Project::busybox(
            // PID 1 is the shell the entry helper started: its environ is
            // exactly what the build command was given.
            r#"["/bin/sh", "-c", "mkdir -p out && cat /proc/1/environ | tr '\\0' '\\n' > out/env"]"#,
            r#"outputs = ["out/"]
env = { GREETING = "hello world" }"#,
        );
        let run = p.build(&engine, &[("REPRO_RUN_TEST_LEAK", "must-not-appear"), ("CFLAGS", "-O0")]);
        run.assert_exit(0);
        let env = p.read("repro-out/out/env");
        assert_eq!(
            env.lines().collect::<Vec<_>>(),
            [
                "GREETING=hello world",
                "HOME=/home/build",
                "LANG=C.UTF-8",
                "LC_ALL=C.UTF-8",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "SOURCE_DATE_EPOCH=0",
                "TZ=UTC",
            ],
            "on {engine}"
        );
        p.assert_no_containers(&engine);
    }
}

/// Hostname, working directory, user, umask and /tmp are the fixed ones.
#[test]
#[ignore = "needs an engine"]
fn hostname_workdir_user_are_fixed() {
    for engine in engines() {
        let p = Project::busybox(
            r#""mkdir -p out && hostname > out/hostname && pwd > out/pwd && id -u > out/uid && id -g > out/gid && umask > out/umask && ulimit -n > out/nofile && ulimit -u > out/nproc && ls -ld /src | cut -c1-10 > out/srcmode && grep ' /tmp ' /proc/mounts | cut -d' ' -f3 > out/tmpfs && ls /src > out/ls""#,
            r#"outputs = ["out"]"#,
        );
        p.write("input.txt", "x");
        p.build(&engine, &[]).assert_exit(0);
        assert_eq!(p.read("repro-out/out/hostname"), "repro-run\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/pwd"), "/src\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/uid"), "1000\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/gid"), "1000\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/umask"), "0022\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/nofile"), "1024\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/nproc"), "4096\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/tmpfs"), "tmpfs\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/ls"), "input.txt\nout\nrepro.toml\n", "on {engine}");
        p.assert_no_containers(&engine);
    }
}

/// The network is off: only the loopback interface exists, and Debian's
/// mirror (read from this machine's apt sources) can be neither resolved nor
/// reached by address.
#[test]
#[ignore = "needs an engine"]
fn network_is_off() {
    let (mirror_host, mirror_ip) = util::apt_mirror();
    for engine in engines() {
        let p = Project::busybox(
            r#""mkdir -p out && tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > out/ifaces; nslookup $MIRROR_HOST > out/dns.log 2>&1; echo $? > out/dns; wget -q -T 5 -O /dev/null http://$MIRROR_IP/ > out/wget.log 2>&1; echo $? > out/wget""#,
            &format!("outputs = [\"out\"]\nenv = {{ MIRROR_HOST = \"{mirror_host}\", MIRROR_IP = \"{mirror_ip}\" }}"),
        );
        p.build(&engine, &[]).assert_exit(0);
        assert_eq!(p.read("repro-out/out/ifaces"), "lo\n", "on {engine}");
        assert_ne!(p.read("repro-out/out/dns").trim(), "0", "{mirror_host} resolved on {engine}");
        assert_ne!(p.read("repro-out/out/wget").trim(), "0", "{mirror_ip} reached on {engine}");
        p.assert_no_containers(&engine);
    }
}

/// A successful build writes artifacts, their digests on stdout, and a
/// record with the documented keys; a second run gives the same digests.
#[test]
#[ignore = "needs an engine"]
fn build_hashes_artifacts_into_a_record() {
    let mut per_engine = Vec::new();
    for engine in engines() {
        let p = Project::busybox(
            r#""mkdir -p out/sub && cp input.txt out/copy.txt && echo built > out/sub/b && ln -s copy.txt out/link""#,
            r#"outputs = ["out/"]"#,
        );
        p.write("input.txt", "some input\n");
        let first = p.build(&engine, &[]);
        first.assert_exit(0);
        let copy_b3 = blake3::hash(b"some input\n").to_hex().to_string();
        assert!(first.stdout.contains(&format!("{copy_b3}  out/copy.txt")), "stdout: {}", first.stdout);
        let record: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
        for key in [
            "format",
            "env_id",
            "source_digest",
            "artifacts",
            "artifacts_digest",
            "exit_code",
            "engine",
            "host",
            "timings",
            "log_digest",
            "command",
        ] {
            assert!(record.get(key).is_some(), "record has no `{key}`: {record}");
        }
        assert_eq!(record["engine"]["kind"], engine.as_str());
        let paths: Vec<&str> =
            record["artifacts"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["out/copy.txt", "out/link", "out/sub/b"]);
        assert_eq!(record["artifacts"][0]["sha256"], util::sha256_hex(b"some input\n"));
        assert_eq!(std::fs::read_link(p.path("repro-out/out/link")).unwrap().to_str(), Some("copy.txt"));

        let second = p.build(&engine, &[]);
        second.assert_exit(0);
        assert_eq!(first.stdout, second.stdout, "artifact digests differ between two runs on {engine}");
        let again: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
        assert_eq!(record["artifacts_digest"], again["artifacts_digest"]);
        assert_eq!(record["env_id"], again["env_id"]);
        assert_eq!(record["source_digest"], again["source_digest"]);
        // The engine's facts are its own answer, on the first build (which
        // may ask `/version`) and on the second (which may read the version
        // from a `/_ping` and the kernel from the cache) alike.
        let cli = std::process::Command::new(&engine).args(["version", "--format", "{{.Server.Version}}"]).output();
        let cli_version = String::from_utf8(cli.unwrap().stdout).unwrap();
        let uname = std::process::Command::new("uname").arg("-r").output().unwrap().stdout;
        for r in [&record, &again] {
            assert_eq!(r["engine"]["version"], cli_version.trim(), "on {engine}");
            assert_eq!(r["host"]["kernel"], String::from_utf8_lossy(&uname).trim(), "on {engine}");
            assert_eq!(r["host"]["os"], "linux");
        }
        p.assert_no_containers(&engine);
        per_engine.push((engine, record["env_id"].clone(), record["artifacts_digest"].clone()));
    }
    // The same build on Docker and on Podman: one env_id, one artifacts digest.
    for w in per_engine.windows(2) {
        assert_eq!((&w[0].1, &w[0].2), (&w[1].1, &w[1].2), "{} and {} disagree", w[0].0, w[1].0);
    }
}

/// A failing command exits 4, shows the end of its log, leaves the previous
/// output in place, and leaves no container.
#[test]
#[ignore = "needs an engine"]
fn failing_command_exits_4_and_cleans_up() {
    for engine in engines() {
        let p = Project::busybox(r#""mkdir -p out && echo ok > out/f""#, r#"outputs = ["out"]"#);
        p.build(&engine, &[]).assert_exit(0);
        p.write_manifest(r#""echo this went wrong >&2; exit 3""#, r#"outputs = ["out"]"#);
        p.build_fails(&engine, 4, &["exited with 3", "this went wrong"]);
        assert_eq!(p.read("repro-out/out/f"), "ok\n", "the good output was lost");
        p.assert_no_leftovers();
    }
}

/// A command that closes its output and goes on is waited for: the end of
/// the output is not the end of the build.
#[test]
#[ignore = "needs an engine"]
fn a_build_that_closes_its_output_is_waited_for() {
    for engine in engines() {
        let p = Project::busybox(
            r#""echo closing; exec >&- 2>&-; sleep 2; mkdir -p out && echo done > out/x; exit 5""#,
            r#"outputs = ["out"]"#,
        );
        p.build_fails(&engine, 4, &["exited with 5", "closing"]);
        p.write_manifest(r#""exec >&- 2>&-; sleep 2; mkdir -p out && echo done > out/x""#, r#"outputs = ["out"]"#);
        p.build(&engine, &[]).assert_exit(0);
        assert_eq!(p.read("repro-out/out/x"), "done\n", "on {engine}");
    }
}

/// A declared output the build did not make is named, with exit 4.
#[test]
#[ignore = "needs an engine"]
fn missing_output_is_named() {
    for engine in engines() {
        let p = Project::busybox(r#""true""#, r#"outputs = ["dist/"]"#);
        p.build_fails(&engine, 4, &["did not create the declared output `dist`"]);
    }
}

/// SIGINT in the middle of a build stops it, removes the container and
/// exits 130.
#[test]
#[ignore = "needs an engine"]
fn sigint_mid_build_removes_the_container() {
    for engine in engines() {
        let p = Project::busybox(r#""echo started; sleep 120""#, r#"outputs = ["out"]"#);
        let mut child = p.spawn_build_until(&engine, "started");
        assert_eq!(p.containers(&engine).len(), 1, "the build container should be running");
        util::sigint(&child);
        let status = util::wait_timeout(&mut child, Duration::from_secs(30)).expect("repro-run did not stop");
        assert_eq!(status.code(), Some(130), "on {engine}");
        p.assert_no_containers(&engine);
        assert!(!p.path("repro-out").exists(), "an interrupted build left an output");
        p.assert_no_leftovers();
    }
}

/// SIGINT while the sources are being staged (a 10,000-file tree) stops at
/// once or soon after, removes whatever was staged and any container, and
/// exits 130.
#[test]
#[ignore = "needs an engine"]
fn sigint_while_staging_cleans_up() {
    for engine in engines() {
        let p = Project::busybox(r#""sleep 30""#, r#"outputs = ["out"]"#);
        for d in 0..100 {
            for f in 0..100 {
                p.write(&format!("tree/d{d:02}/f{f:02}"), "x");
            }
        }
        let mut child = p.spawn_build(&engine);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_dir(p.stage_dir()).unwrap().next().is_none() {
            assert!(Instant::now() < deadline, "staging never began");
            assert!(child.try_wait().unwrap().is_none(), "repro-run exited before staging");
            std::thread::sleep(Duration::from_millis(5));
        }
        util::sigint(&child);
        let status = util::wait_timeout(&mut child, Duration::from_secs(60)).expect("repro-run did not stop");
        assert_eq!(status.code(), Some(130), "on {engine}");
        p.assert_no_containers(&engine);
        p.assert_no_leftovers();
    }
}

/// A name that is neither a recipe nor an image: exit 2 and what to do.
#[test]
#[ignore = "needs an engine"]
fn unknown_image_is_a_usage_error() {
    for engine in engines() {
        let p = Project::new("no-such-image:1", r#""true""#, r#"outputs = ["o"]"#);
        let run = p.build(&engine, &[]);
        run.assert_exit(2);
        assert!(run.stderr.contains("image `no-such-image:1` is neither a built-in recipe"), "{}", run.stderr);
        assert!(run.stderr.contains("repro-run image import"), "{}", run.stderr);
    }
}

/// One rootfs, one digest: the tarball, the image imported from it on each
/// engine (digested from the engine's export), and the cached answer agree.
#[test]
#[ignore = "needs an engine"]
fn rootfs_tarball_and_its_images_share_one_digest() {
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("rootfs.tar");
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/busybox/build-rootfs");
    let made = std::process::Command::new("sh").arg(&recipe).arg(&tarball).status().unwrap();
    assert!(made.success(), "the busybox recipe failed");
    let digest_of = |args: &[&str]| {
        let run = util::repro_run(work.path(), args, &[]);
        run.assert_exit(0);
        run.stdout.split_whitespace().next().unwrap().to_owned()
    };
    let of_tarball = digest_of(&["image", "digest", tarball.to_str().unwrap()]);
    assert!(of_tarball.starts_with("blake3:") && of_tarball.len() == 71, "{of_tarball}");
    let tag = format!("repro-run-test/rootfs-{}:1", std::process::id());
    for engine in engines() {
        let imported = digest_of(&["image", "import", tarball.to_str().unwrap(), "--tag", &tag, "--engine", &engine]);
        let recomputed = digest_of(&["image", "digest", &tag, "--no-cache", "--engine", &engine]);
        let cached = digest_of(&["image", "digest", &tag, "--engine", &engine]);
        let _ = std::process::Command::new(&engine).args(["rmi", "-f", &tag]).output();
        assert_eq!(of_tarball, imported, "tarball vs image imported on {engine}");
        assert_eq!(of_tarball, recomputed, "tarball vs image export on {engine}");
        assert_eq!(of_tarball, cached, "cached digest on {engine}");
    }
}

/// The Debian image, with its device nodes, setuid binaries and hard links:
/// Docker's export, and that export imported into Podman, give one digest.
#[test]
#[ignore = "needs an engine and Debian's mirror"]
fn debian_rootfs_digest_survives_export_and_import_across_engines() {
    let engines = engines();
    let first = engines.first().expect("REPRO_RUN_TEST_ENGINES is empty").clone();
    let work = tempfile::tempdir().unwrap();
    let _debian = util::debian_image(&first);
    let digest_of = |args: &[&str]| {
        let run = util::repro_run(work.path(), args, &[]);
        run.assert_exit(0);
        run.stdout.split_whitespace().next().unwrap().to_owned()
    };
    let on_first =
        digest_of(&["image", "digest", "repro-run/debian-bookworm:latest", "--no-cache", "--engine", &first]);
    // Export through the engine's own CLI: an independent path to the bytes.
    let tarball = work.path().join("debian.tar");
    let cid = std::process::Command::new(&first)
        .args(["create", "repro-run/debian-bookworm:latest", "/bin/true"])
        .output()
        .unwrap();
    let cid = String::from_utf8_lossy(&cid.stdout).trim().to_owned();
    let exported =
        std::process::Command::new(&first).args(["export", "-o", tarball.to_str().unwrap(), &cid]).status().unwrap();
    let _ = std::process::Command::new(&first).args(["rm", "-f", &cid]).output();
    assert!(exported.success());
    assert_eq!(on_first, digest_of(&["image", "digest", tarball.to_str().unwrap()]), "export tarball vs image");
    let tag = format!("repro-run-test/debian-{}:1", std::process::id());
    for engine in &engines[1..] {
        let imported = digest_of(&["image", "import", tarball.to_str().unwrap(), "--tag", &tag, "--engine", engine]);
        let _ = std::process::Command::new(engine).args(["rmi", "-f", &tag]).output();
        assert_eq!(on_first, imported, "{first} image vs the same rootfs imported on {engine}");
    }
}

/// An image's digest is the digest of its export through the engine's own
/// CLI, however repro-run reads it: Podman's mount of the container on
/// this machine; as root, Docker's layers mounted here; else Docker's
/// export. No container and no mount is left.
#[test]
#[ignore = "needs an engine"]
fn an_image_digest_is_the_digest_of_its_export() {
    let work = tempfile::tempdir().unwrap();
    for engine in engines() {
        util::ensure_busybox(&engine);
        let image = "repro-run/busybox:latest";
        let run = util::repro_run(
            work.path(),
            &["image", "digest", image, "--no-cache", "--engine", &engine],
            &[("REPRO_RUN_LOG", "repro_run=debug")],
        );
        run.assert_exit(0);
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        let read_how = match (engine.as_str(), root) {
            ("podman", _) | (_, true) => "digesting the container's filesystem mounted at",
            _ => "digesting the export of the container",
        };
        assert!(run.stderr.contains(read_how), "on {engine}, no `{read_how}` in:\n{}", run.stderr);
        let tarball = work.path().join(format!("{engine}.tar"));
        let cli = |args: &[&str]| {
            let out = std::process::Command::new(&engine).args(args).output().unwrap();
            assert!(out.status.success(), "{engine} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let cid = cli(&["create", image, "/bin/true"]);
        cli(&["export", "-o", tarball.to_str().unwrap(), &cid]);
        cli(&["rm", "-f", &cid]);
        let exported = util::repro_run(work.path(), &["image", "digest", tarball.to_str().unwrap()], &[]);
        exported.assert_exit(0);
        let digest = |out: &str| out.split_whitespace().next().unwrap().to_owned();
        assert_eq!(digest(&run.stdout), digest(&exported.stdout), "on {engine}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        // Other tests' containers may be alive: this one's removal is logged.
        assert!(run.stderr.contains("removed container"), "on {engine}, the container stays:\n{}", run.stderr);
        if let Some(path) = run.stderr.split("mounted at ").nth(1) {
            let path = path.lines().next().unwrap().trim();
            assert!(!mounts.contains(path), "on {engine}, {path} is still mounted");
            assert!(!path.contains("/rootfs/") || !std::path::Path::new(path).exists(), "on {engine}, {path} is left");
        }
    }
}

/// A manifest that pins another rootfs is refused with both digests and the fix.
#[test]
#[ignore = "needs an engine"]
fn rootfs_pin_mismatch_is_refused() {
    for engine in engines() {
        let wrong = format!("blake3:{}", "0".repeat(64));
        let p = Project::new("busybox", r#""mkdir -p out""#, r#"outputs = ["out"]"#);
        p.write(
            "repro.toml",
            &format!("[image]\nname = \"busybox\"\nrootfs = \"{wrong}\"\n[build]\ncommand = \"mkdir out\"\noutputs = [\"out\"]\n"),
        );
        let run = p.build(&engine, &[]);
        run.assert_exit(2);
        assert!(run.stderr.contains(&format!("pins {wrong}")), "{}", run.stderr);
        assert!(run.stderr.contains("set `rootfs = \"blake3:"), "{}", run.stderr);
        // The right pin builds.
        let right = run.stderr.split("has rootfs ").nth(1).unwrap().split(',').next().unwrap().to_owned();
        p.write(
            "repro.toml",
            &format!("[image]\nname = \"busybox\"\nrootfs = \"{right}\"\n[build]\ncommand = \"mkdir out\"\noutputs = [\"out\"]\n"),
        );
        p.build(&engine, &[]).assert_exit(0);
        p.assert_no_containers(&engine);
    }
}

/// A build past its timeout is stopped, its container removed, exit 4.
#[test]
#[ignore = "needs an engine"]
fn timeout_stops_the_build() {
    for engine in engines() {
        let p = Project::busybox(r#""echo waiting; sleep 60""#, "outputs = [\"out\"]\n[limits]\ntimeout = \"2s\"");
        let started = Instant::now();
        // "waiting" in the message is the log's tail.
        p.build_fails(&engine, 4, &["did not finish within its timeout of 2 s", "waiting"]);
        assert!(started.elapsed() < Duration::from_secs(30), "the timeout did not stop the build");
        assert_eq!(p.read("repro-out.log"), "waiting\n", "the log of a stopped build was not kept");
        p.assert_no_leftovers();
    }
}

/// A build over its memory limit is reported as out of memory, exit 4.
#[test]
#[ignore = "needs an engine"]
fn memory_limit_kill_is_reported() {
    for engine in engines() {
        let p = Project::busybox(
            r#""dd if=/dev/zero of=/dev/null bs=64M count=1""#,
            "outputs = [\"out\"]\n[limits]\nmemory = \"16m\"",
        );
        p.build_fails(&engine, 4, &["ran out of memory", "limit of 16 MiB"]);
    }
}

/// Hostile outputs: a link to a host file stays a link and the host file is
/// never read; setuid bits are stripped and fifos skipped, with warnings; a
/// name that is not UTF-8 survives.
#[test]
#[ignore = "needs an engine"]
fn hostile_outputs_are_extracted_safely() {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    for engine in engines() {
        let p = Project::busybox(
            r#""mkdir -p out && ln -s /etc/shadow out/shadow && ln -s / out/root && echo x > out/suid && chmod 4755 out/suid && mkfifo out/fifo && echo n > \"out/$(printf 'n\\377')\"""#,
            r#"outputs = ["out"]"#,
        );
        // Read back from the staged tree, and through the engine.
        for how in ["mount", "upload"] {
            let run = p.build_with(&engine, &["--sources", how], &[]);
            run.assert_exit(0);
            let out = p.path("repro-out/out");
            assert_eq!(std::fs::read_link(out.join("shadow")).unwrap().to_str(), Some("/etc/shadow"));
            assert_eq!(std::fs::read_link(out.join("root")).unwrap().to_str(), Some("/"));
            let suid = std::fs::metadata(out.join("suid")).unwrap().permissions().mode() & 0o7777;
            assert_eq!(suid, 0o755, "setuid survived on {engine}");
            assert!(run.stderr.contains("suid: stripped setuid/setgid/sticky bits (4755)"), "{}", run.stderr);
            assert!(!out.join("fifo").exists(), "a fifo was extracted on {engine}");
            assert!(run.stderr.contains("fifo: skipped"), "{}", run.stderr);
            let odd = out.join(std::ffi::OsStr::from_bytes(b"n\xff"));
            assert_eq!(std::fs::read_to_string(&odd).unwrap(), "n\n", "the non-UTF-8 name was lost on {engine}");
            let record: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
            // The record keeps that name's bytes, in hex.
            let odd = record["artifacts"].as_array().unwrap().iter().find(|a| a["path"] == "out/n\u{fffd}").unwrap();
            assert_eq!(odd["path_bytes"], "6f75742f6eff", "on {engine}");
            let shadow = record["artifacts"].as_array().unwrap().iter().find(|a| a["path"] == "out/shadow").unwrap();
            assert_eq!(shadow["link"], "/etc/shadow");
            assert_eq!(shadow["size"], 0, "the host's /etc/shadow was read");
            assert_eq!(shadow["blake3"], blake3::hash(b"/etc/shadow").to_hex().as_str());
        }
        p.assert_no_containers(&engine);
        p.assert_no_leftovers();
    }
}

/// Mounted and uploaded sources are the same tree to the build (names,
/// owners, modes, mtimes, sizes, link targets, an empty HOME) with the same
/// source digest; the build can write under /src and HOME either way, and
/// nothing staged is left behind.
#[test]
#[ignore = "needs an engine"]
fn mounted_and_uploaded_sources_look_the_same() {
    use std::os::unix::fs::PermissionsExt as _;
    for engine in engines() {
        let p = Project::busybox(
            r#""cd / && stat -c '%n %u:%g %a %Y %s %F' src src/* src/sub/* home/build > /tmp/stat && ls -A home/build >> /tmp/stat && mkdir -p src/out && mv /tmp/stat src/out/stat && echo w > $HOME/w && cat $HOME/w > src/out/w""#,
            r#"outputs = ["out"]
source_date_epoch = 1700000000"#,
        );
        p.write("a.txt", "hello");
        p.write("sub/run.sh", "#!/bin/sh\n");
        std::fs::set_permissions(p.path("sub/run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("../a.txt", p.path("sub/link")).unwrap();

        let mut seen = Vec::new();
        for (args, said) in [
            // A tree staged and kept, then found again (both overlaid), a
            // copy of its own, and an upload.
            (&["--sources", "mount"][..], "(mounted, tree kept for later builds)"),
            (&["--sources", "mount"], "(mounted, tree kept from an earlier build)"),
            (&["--sources", "mount", "--source-cache", "0"], "(mounted)"),
            (&["--sources", "upload"], "(uploaded)"),
        ] {
            let how = args.join(" ");
            let run = p.build_with(&engine, args, &[]);
            run.assert_exit(0);
            assert!(run.stderr.contains(said), "--sources {how} on {engine}:\n{}", run.stderr);
            let record: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
            seen.push((p.read("repro-out/out/stat"), record["source_digest"].clone(), p.read("repro-out/out/w")));
            p.assert_no_leftovers();
        }
        let (stat, digest, w) = &seen[0];
        assert_eq!(w, "w\n");
        for line in [
            "src 1000:1000 755 1700000000",
            "src/a.txt 1000:1000 644 1700000000 5 regular file",
            "src/sub/run.sh 1000:1000 755 1700000000 10 regular file",
            "src/sub/link 1000:1000 777 1700000000",
            "home/build 1000:1000 755 1700000000",
        ] {
            assert!(stat.lines().any(|l| l.starts_with(line)), "on {engine}, no `{line}` in:\n{stat}");
        }
        // HOME is empty: nothing of repro-run's own is left in it.
        assert!(stat.lines().last().unwrap().starts_with("home/build"), "on {engine}, HOME is not empty:\n{stat}");
        for (i, other) in seen.iter().enumerate().skip(1) {
            assert_eq!(&other.0, stat, "the sources of build {i} differ from the first's on {engine}");
            assert_eq!(&other.1, digest, "the source digests of build {i} and the first differ on {engine}");
        }
        p.assert_no_containers(&engine);
    }
}

/// A kept source tree is read-only to builds: a build that edits, removes,
/// adds and renames sources changes only its own view, and the next build
/// of the same sources sees them as they are. Changed sources make a new
/// tree, and the budget (`--source-cache`) evicts the older one.
#[test]
#[ignore = "needs an engine"]
fn a_kept_tree_is_not_changed_by_builds() {
    for engine in engines() {
        let p = Project::busybox(
            r#""mkdir -p out && cat a.txt > out/seen && ls -A >> out/seen && ls -A sub >> out/seen && echo changed > a.txt && rm b.txt && echo new > c.txt && mv sub/x sub/y && mv sub moved && ls -A moved > out/moved""#,
            r#"outputs = ["out"]"#,
        );
        p.write("a.txt", "a\n");
        p.write("b.txt", "b\n");
        p.write("sub/x", "x");
        for said in ["(mounted, tree kept for later builds)", "(mounted, tree kept from an earlier build)"] {
            let run = p.build_with(&engine, &["--sources", "mount"], &[]);
            run.assert_exit(0);
            assert!(run.stderr.contains(said), "on {engine}, no `{said}` in:\n{}", run.stderr);
            assert_eq!(p.read("repro-out/out/seen"), "a\na.txt\nb.txt\nout\nrepro.toml\nsub\nx\n", "on {engine}");
            assert_eq!(p.read("repro-out/out/moved"), "y\n", "on {engine}");
            p.assert_no_leftovers();
        }
        let first = p.kept_trees();
        assert_eq!(first.len(), 1, "on {engine}: {first:?}");
        assert!(first[0].ends_with(".erofs"), "on {engine}, not kept as an image: {first:?}");
        let (a, b, others) = util::read_kept_image(&p.stage_dir().join("trees").join(&first[0]), |src| {
            let exists = |n: &str| src.join(n).exists();
            (
                std::fs::read_to_string(src.join("a.txt")).unwrap(),
                exists("b.txt") && exists("sub/x"),
                exists("c.txt") || exists("out") || exists("moved"),
            )
        });
        assert_eq!((a.as_str(), b, others), ("a\n", true, false), "on {engine}, the kept tree changed");
        let record: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
        assert_eq!(record["source_digest"], format!("blake3:{}", first[0].trim_end_matches(".erofs")), "on {engine}");

        // Kept as a directory (for kernels that cannot mount an image
        // file), and the budget of one byte evicts the image.
        p.write("a.txt", "A\n");
        for said in ["(mounted, tree kept for later builds)", "(mounted, tree kept from an earlier build)"] {
            let run = p.build_with(
                &engine,
                &["--sources", "mount", "--source-cache", "1"],
                &[("REPRO_RUN_TREE_FORM", "dir")],
            );
            run.assert_exit(0);
            assert!(run.stderr.contains(said), "on {engine}, no `{said}` in:\n{}", run.stderr);
            assert_eq!(p.read("repro-out/out/seen").lines().next(), Some("A"), "on {engine}");
            assert_eq!(p.read("repro-out/out/moved"), "y\n", "on {engine}");
        }
        let second = p.kept_trees();
        assert_eq!(second.len(), 1, "on {engine}, the older tree is not evicted: {second:?}");
        let kept = p.stage_dir().join("trees").join(&second[0]).join("src");
        assert_eq!(std::fs::read_to_string(kept.join("a.txt")).unwrap(), "A\n", "on {engine}");
        assert!(!kept.join("c.txt").exists() && !kept.join("out").exists(), "on {engine}, the kept tree changed");
        p.assert_no_leftovers();
        p.assert_no_containers(&engine);
    }
}

/// The same sources in another directory (a fresh clone of a commit built
/// before) find the tree kept for the first: it is not kept twice.
#[test]
#[ignore = "needs an engine"]
fn a_copy_of_built_sources_finds_their_tree() {
    for engine in engines() {
        let (p, q) = (Project::copying_input(), Project::copying_input());
        let stage = p.stage_dir();
        let mut digests = Vec::new();
        for (project, said) in [
            (&p, "(mounted, tree kept for later builds)"),
            (&p, "(mounted, tree kept from an earlier build)"),
            (&q, "(mounted, tree kept from an earlier build)"),
        ] {
            let run = project.build_with(&engine, &["--sources", "mount", "--stage-dir", stage.to_str().unwrap()], &[]);
            run.assert_exit(0);
            assert!(run.stderr.contains(said), "on {engine}, no `{said}` in:\n{}", run.stderr);
            assert_eq!(project.read("repro-out/out/copy"), "data", "on {engine}");
            let record: serde_json::Value = serde_json::from_str(&project.read("repro-out.json")).unwrap();
            digests.push(record["source_digest"].as_str().unwrap().to_owned());
        }
        assert!(digests.iter().all(|d| *d == digests[0]), "on {engine}: {digests:?}");
        assert_eq!(p.kept_trees(), [format!("{}.erofs", digests[0].trim_start_matches("blake3:"))], "on {engine}");
        util::assert_stage_is_clean(&stage);
        p.assert_no_containers(&engine);
        q.assert_no_containers(&engine);
    }
}

/// A stage directory inside the project is left out of the sources: two
/// builds give one source digest, and the build does not see it.
#[test]
#[ignore = "needs an engine"]
fn a_stage_directory_inside_the_project_is_not_a_source() {
    for engine in engines() {
        let p = Project::busybox(r#""ls -A > /tmp/ls && mkdir -p out && mv /tmp/ls out/ls""#, r#"outputs = ["out"]"#);
        p.write("a.txt", "a");
        let mut digests = Vec::new();
        for _ in 0..2 {
            p.build_with(&engine, &["--stage-dir", ".stage"], &[]).assert_exit(0);
            let record: serde_json::Value = serde_json::from_str(&p.read("repro-out.json")).unwrap();
            digests.push(record["source_digest"].clone());
            assert_eq!(p.read("repro-out/out/ls"), "a.txt\nrepro.toml\n", "on {engine}");
        }
        assert_eq!(digests[0], digests[1], "on {engine}");
        util::assert_stage_is_clean(&p.path(".stage"));
    }
}

/// An engine that cannot see the staged files (as when it runs on another
/// machine; simulated here by staging under a tmpfs that only a private
/// mount namespace sees): `--sources mount` says so and what to do, and
/// `auto` uploads instead, then remembers not to try again.
#[test]
#[ignore = "needs an engine, root and unshare"]
fn sources_are_uploaded_when_the_engine_cannot_see_them() {
    for engine in engines() {
        let (p, cache) = (Project::copying_input(), tempfile::tempdir().unwrap());
        let run = |how: &str| {
            // The engine cannot see a tmpfs mounted in a private namespace.
            let hide = r#"mount -t tmpfs tmpfs "$REPRO_RUN_STAGE_DIR""#;
            p.build_unshared(&engine, &["--mount", "--propagation", "private"], hide, &["-v", "--sources", how], &cache)
        };
        let (code, stderr) = run("auto");
        assert_eq!(code, Some(0), "on {engine}:\n{stderr}");
        assert!(stderr.contains("uploading the sources instead"), "on {engine}:\n{stderr}");
        assert!(stderr.contains("(uploaded)"), "on {engine}:\n{stderr}");
        assert_eq!(p.read("repro-out/out/copy"), "data");

        let (code, stderr) = run("auto");
        assert_eq!(code, Some(0), "on {engine}:\n{stderr}");
        assert!(stderr.contains("(uploaded)"), "on {engine}:\n{stderr}");
        assert!(!stderr.contains("uploading the sources instead"), "the verdict was not remembered on {engine}");

        let (code, stderr) = run("mount");
        assert_eq!(code, Some(2), "on {engine}:\n{stderr}");
        assert!(stderr.contains("cannot mount the sources"), "on {engine}:\n{stderr}");
        assert!(stderr.contains("hint: use --sources upload"), "on {engine}:\n{stderr}");
        p.assert_no_containers(&engine);
        // Seen from the engine, the stage directory holds no file: Docker
        // refuses the mount; Podman makes the missing directories, empty.
        let files = walk_files(&p.stage_dir());
        assert!(files.is_empty(), "on {engine}, the engine's side holds {files:?}");
    }
}

/// An engine that sees the stage directory but not the mounts repro-run
/// makes in it (repro-run in a private mount namespace, as in a CI job's
/// container that shares the disk): the overlay of a kept tree is not
/// trusted, a copy is.
#[test]
#[ignore = "needs an engine, root and unshare"]
fn mounts_the_engine_cannot_see_are_not_trusted() {
    for engine in engines() {
        let (p, cache) = (Project::copying_input(), tempfile::tempdir().unwrap());
        let run = |args: &[&str]| {
            let mut all = vec!["-v"];
            all.extend_from_slice(args);
            p.build_unshared(&engine, &["--mount", "--propagation", "private"], "true", &all, &cache)
        };
        let (code, stderr) = run(&["--sources", "mount"]);
        assert_eq!(code, Some(2), "on {engine}:\n{stderr}");
        assert!(stderr.contains("does not see what is mounted at"), "on {engine}:\n{stderr}");

        let (code, stderr) = run(&["--sources", "auto"]);
        assert_eq!(code, Some(0), "on {engine}:\n{stderr}");
        assert!(stderr.contains("(uploaded)"), "on {engine}:\n{stderr}");
        assert_eq!(p.read("repro-out/out/copy"), "data");

        let (code, stderr) = run(&["--sources", "mount", "--source-cache", "0"]);
        assert_eq!(code, Some(0), "on {engine}:\n{stderr}");
        assert!(stderr.contains("(mounted)"), "on {engine}:\n{stderr}");
        assert_eq!(p.read("repro-out/out/copy"), "data");
        p.assert_no_leftovers();
        p.assert_no_containers(&engine);
    }
}

/// An engine whose `/info` names another machine is not asked to mount
/// anything (so Podman creates nothing over there): `auto` uploads, and
/// `--sources mount` says why. Simulated by running repro-run under another
/// host name (a private UTS namespace).
#[test]
#[ignore = "needs an engine, root and unshare"]
fn an_engine_on_another_machine_gets_an_upload() {
    for engine in engines() {
        let (p, cache) = (Project::copying_input(), tempfile::tempdir().unwrap());
        let run = |how: &str| {
            p.build_unshared(&engine, &["--uts"], "hostname repro-run-elsewhere", &["--sources", how], &cache)
        };
        let (code, stderr) = run("auto");
        assert_eq!(code, Some(0), "on {engine}:\n{stderr}");
        assert!(stderr.contains("(uploaded)"), "on {engine}:\n{stderr}");
        assert_eq!(p.read("repro-out/out/copy"), "data");
        let (code, stderr) = run("mount");
        assert_eq!(code, Some(2), "on {engine}:\n{stderr}");
        assert!(stderr.contains("and this is `repro-run-elsewhere`"), "on {engine}:\n{stderr}");
        // Nothing was staged, and nothing was made on the engine's side.
        p.assert_no_leftovers();
        p.assert_no_containers(&engine);
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The manifest's settings reach the build: user, source excludes,
/// SOURCE_DATE_EPOCH from git (also the sources' mtime), output globs, and
/// the network opt-in.
#[test]
#[ignore = "needs an engine"]
fn manifest_settings_apply() {
    for engine in engines() {
        let p = Project::busybox(
            r#""mkdir -p out && id -u > out/uid.bin && echo $SOURCE_DATE_EPOCH > out/sde.bin && stat -c %Y input.txt > out/mtime.bin && ls > out/ls.bin && ls /sys/class/net > out/net.bin && echo no > out/skip.txt""#,
            "outputs = [\"out/*.bin\"]\nuser = \"0:0\"\nnetwork = \"bridge\"\nsource_date_epoch = \"git\"\n[source]\nexclude = [\"*.log\", \"secret/\"]",
        );
        p.write("input.txt", "x");
        p.write("build.log", "left out");
        p.write("secret/key", "left out");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(args)
                .current_dir(p.path(""))
                .env("GIT_COMMITTER_DATE", "1700000000 +0000")
                .env("GIT_AUTHOR_DATE", "1700000000 +0000")
                .output()
                .unwrap();
            assert!(ok.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&ok.stderr));
        };
        git(&["init", "-q"]);
        git(&["add", "input.txt", "repro.toml"]);
        git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x"]);
        let run = p.build(&engine, &[]);
        run.assert_exit(0);
        assert!(run.stderr.contains("this build can reach the network"), "{}", run.stderr);
        assert_eq!(p.read("repro-out/out/uid.bin"), "0\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/sde.bin"), "1700000000\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/mtime.bin"), "1700000000\n", "on {engine}");
        assert_eq!(p.read("repro-out/out/ls.bin"), "input.txt\nout\nrepro.toml\n", "on {engine}");
        assert!(p.read("repro-out/out/net.bin").lines().any(|l| l != "lo"), "no network on {engine}");
        assert!(!p.path("repro-out/out/skip.txt").exists(), "the glob kept a .txt on {engine}");
        p.assert_no_containers(&engine);
    }
}

/// An output glob that matches nothing is named, with exit 4.
#[test]
#[ignore = "needs an engine"]
fn output_glob_matching_nothing_is_named() {
    for engine in engines() {
        let p = Project::busybox(r#""mkdir -p out && touch out/a.txt""#, r#"outputs = ["out/*.bin"]"#);
        p.build_fails(&engine, 4, &["the output glob `out/*.bin` matched nothing"]);
    }
}

/// CPU and memory limits reach the container's cgroup (v1 or v2).
#[test]
#[ignore = "needs an engine"]
fn cpu_and_memory_limits_are_applied() {
    for engine in engines() {
        let p = Project::busybox(
            r#""mkdir -p out && (cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes) > out/mem && (cut -d' ' -f1 /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us 2>/dev/null | head -n1) > out/cpu""#,
            "outputs = [\"out\"]\n[limits]\nmemory = \"256m\"\ncpus = 1.5",
        );
        p.build(&engine, &[]).assert_exit(0);
        assert_eq!(p.read("repro-out/out/mem"), "268435456\n", "on {engine}");
        // 1.5 CPUs is a quota of 150 ms per 100 ms period.
        assert_eq!(p.read("repro-out/out/cpu"), "150000\n", "on {engine}");
        p.assert_no_containers(&engine);
    }
}

/// `image ls` lists repro-run's images with the digests `image digest` gives.
#[test]
#[ignore = "needs an engine"]
fn image_ls_lists_images_with_their_digests() {
    for engine in engines() {
        util::ensure_busybox(&engine);
        let dir = tempfile::tempdir().unwrap();
        let ls = util::repro_run(dir.path(), &["image", "ls", "--engine", &engine], &[]);
        ls.assert_exit(0);
        let digest =
            util::repro_run(dir.path(), &["image", "digest", "repro-run/busybox:latest", "--engine", &engine], &[]);
        digest.assert_exit(0);
        let line = digest.stdout.trim();
        assert!(line.starts_with("blake3:") && line.ends_with("  repro-run/busybox:latest"), "{line}");
        assert!(ls.stdout.lines().any(|l| l == line), "`image ls` on {engine} lacks `{line}`:\n{}", ls.stdout);
    }
}

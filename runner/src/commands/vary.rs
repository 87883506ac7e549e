//! `repro-run verify --vary`: builds under controlled variations, and the
//! variations that change the artifacts named.
//!
//! Every variation is applied through the container spec or the entry
//! helper (the plan's hostname, user, umask, working directory and
//! environment; the spec's domain name, cpuset and mounts), never by
//! editing the user's command. The search is `repro_run_core::vary`'s;
//! this module probes what can be varied here, runs the builds (the
//! second control beside the first experiment, up to `--jobs`), and
//! compares each with the first control.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use repro_run_core::compare::{Context as Clues, TreeComparison};
use repro_run_core::hermetic;
use repro_run_core::lock::Lock;
use repro_run_core::record::{EngineFacts, HostFacts};
use repro_run_core::vary::{
    self, Culprit, Explained, Status, Test, TestResult, Variation, VariationReport, VaryOutcome, VaryReport,
};

use super::verify::{compare_dirs, is_build_failure, next_second, rebuild_once};
use crate::cli::{GlobalArgs, SourceTransfer, VerifyFormat};
use crate::engine::{ContainerSpec, Engine, ExitState, Mount, MountSource};
use crate::exit::Exit;
use crate::pipeline::{ResolvedBuild, FAKETIME_IN_CONTAINER};
use crate::printer::Printer;

/// What verify has ready when it hands over to `--vary`.
pub(super) struct Ready<'a> {
    pub global: &'a GlobalArgs,
    pub engine: Engine,
    pub template: ResolvedBuild,
    pub lock: Lock,
    pub facts: (EngineFacts, HostFacts),
    pub prepare_ms: u64,
    /// Where the builds go (`build-N/`).
    pub fresh: tempfile::TempDir,
    pub keep: PathBuf,
    pub keep_asked: bool,
    pub format: VerifyFormat,
    pub jobs: usize,
}

/// The values probed on this machine and image that some variations need.
#[derive(Default)]
struct Probed {
    /// The locale the locale variation sets.
    locale: Option<String>,
    /// libfaketime on this machine.
    faketime: Option<PathBuf>,
    /// A directory on a tmpfs for the stage of a dir-order build.
    tmpfs_stage: Option<PathBuf>,
}

/// Runs the builds of `verify --vary` for `asked`, and reports.
pub(super) async fn run(ready: Ready<'_>, asked: BTreeSet<Variation>, printer: &Printer) -> Result<Exit> {
    let (variations, probed) = probe(&ready, &asked, printer).await?;
    let effective: Vec<Variation> =
        variations.iter().filter(|v| !matches!(v.status, Status::Ineffective { .. })).map(|v| v.name).collect();
    if effective.is_empty() {
        let why: Vec<String> = variations
            .iter()
            .filter_map(|v| match &v.status {
                Status::Ineffective { why } => Some(format!("    {}: {why}", v.name)),
                _ => None,
            })
            .collect();
        anyhow::bail!(
            "--vary: no variation asked for takes effect here, so there is nothing to test:\n{}\n  hint: ask for \
             others (`--vary all` lists what does)",
            why.join("\n")
        );
    }
    printer.status(format!(
        "verify --vary: {} variation(s) to test ({}), {} ineffective here",
        effective.len(),
        effective.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
        variations.len() - effective.len()
    ));
    let runner = Builds {
        ready: &ready,
        probed: &probed,
        tests: Mutex::new(Vec::new()),
        printer,
        noise: Mutex::default(),
        clock_timeout: AtomicU64::new(ready.template.plan.limits.timeout_secs),
    };

    // Control 1 alone; the next builds start in a later second of the
    // clock than the one it ended in, so that a time written to the
    // second shows as noise between the controls.
    let started = std::time::Instant::now();
    let c1 = runner.build(1, "control", &[]).await?;
    // A build that hangs under a fake clock is stopped after ten times
    // what the control took (a minute at least).
    let clock_timeout = (started.elapsed().as_secs() * 10).max(60).min(ready.template.plan.limits.timeout_secs);
    runner.clock_timeout.store(clock_timeout, Ordering::Relaxed);
    let mut outcome = VaryOutcome::Reproducible;
    let mut culprits = Vec::new();
    let mut explanations = Vec::new();
    if c1.is_some() {
        next_second().await;
        let (c2, all) = if ready.jobs >= 2 {
            tokio::join!(runner.build(2, "control", &[]), runner.build(3, "experiment", &effective))
        } else {
            (runner.build(2, "control", &[]).await, runner.build(3, "experiment", &effective).await)
        };
        let (c2, all) = (c2?, all?);
        match c2 {
            None => outcome = VaryOutcome::BuildFailed,
            Some(c2) => {
                if !c2.is_reproducible() {
                    *runner.noise.lock().unwrap_or_else(|e| e.into_inner()) =
                        c2.differences.iter().map(|d| d.path.clone()).collect();
                    explanations.push(Explained { of: "noise: control 2".to_owned(), test: 2, comparison: c2 });
                }
                let all_result = runner.result_of(3, all.as_ref());
                runner.set_files(3, &all_result);
                if all_result.differs() {
                    let handle = tokio::runtime::Handle::current();
                    culprits = tokio::task::block_in_place(|| {
                        vary::search(&effective, &all_result, |set| handle.block_on(runner.test(set)))
                    })?;
                }
            }
        }
    } else {
        outcome = VaryOutcome::BuildFailed;
    }
    let noise = runner.noise.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>();
    // A build that fails under a fake clock is incompatible with it, and
    // says nothing of reproducibility.
    let differs = culprits.iter().any(|c| !(c.failed.is_some() && c.variations == [Variation::Clock]));
    if outcome != VaryOutcome::BuildFailed && (!noise.is_empty() || differs) {
        outcome = VaryOutcome::Differs;
    }
    let tests = runner.tests.into_inner().unwrap_or_else(|e| e.into_inner());
    explanations.extend(explain(&tests, &culprits));
    let variations = statuses(variations, &culprits);
    let (engine_facts, host) = &ready.facts;
    let mut report = VaryReport {
        format: vary::VARY_FORMAT,
        outcome,
        manifest: ready.global.manifest.display().to_string(),
        env_id: ready.lock.env_id(),
        environment: vec![
            ("engine".to_owned(), format!("{} {}", engine_facts.kind, engine_facts.version)),
            ("host".to_owned(), format!("{} {} ({})", host.os, host.kernel, host.arch)),
        ],
        variations,
        noise,
        culprits,
        builds: tests.len(),
        tests: tests.into_iter().map(|(t, _)| t).collect(),
        explanations,
        kept: None,
    };
    keep_or_drop(&mut report, ready.fresh, &ready.keep, ready.keep_asked)?;
    // The dir-order builds' stage base on the tmpfs: empty now, unless
    // another verify uses it.
    if let Some(base) = &probed.tmpfs_stage {
        let _ = fs_err::remove_dir(base);
    }
    let text = match ready.format {
        VerifyFormat::Json => report.to_json(),
        VerifyFormat::Html => vary::render_html(&report),
        _ => vary::render_text(&report),
    };
    printer.data(text.trim_end());
    Ok(match report.outcome {
        VaryOutcome::Reproducible => Exit::Success,
        VaryOutcome::Differs => Exit::NotReproducible,
        VaryOutcome::BuildFailed => Exit::BuildFailed,
    })
}

/// The builds of one verify --vary, numbered in the order they start.
struct Builds<'a> {
    ready: &'a Ready<'a>,
    probed: &'a Probed,
    /// Each build, with its comparison with control 1 (none for control 1
    /// and for a failed build).
    tests: Mutex<Vec<(Test, Option<TreeComparison>)>>,
    /// What differs between the controls.
    noise: Mutex<BTreeSet<String>>,
    printer: &'a Printer,
    /// The timeout of a build under a fake clock, in seconds.
    clock_timeout: AtomicU64,
}

impl Builds<'_> {
    /// A search step: the next build, with `set` applied, compared with
    /// control 1.
    async fn test(&self, set: &[Variation]) -> Result<TestResult> {
        let n = self.tests.lock().unwrap_or_else(|e| e.into_inner()).len() + 1;
        let compared = self.build(n, "experiment", set).await?;
        let result = self.result_of(n, compared.as_ref());
        self.set_files(n, &result);
        Ok(result)
    }

    /// What build `n` gave, noise left out.
    fn result_of(&self, n: usize, compared: Option<&TreeComparison>) -> TestResult {
        let tests = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        let failed = tests.iter().find(|(t, _)| t.number == n).and_then(|(t, _)| t.failed.clone());
        let noise = self.noise.lock().unwrap_or_else(|e| e.into_inner());
        match (failed, compared) {
            (Some(why), _) => TestResult::Failed(why),
            (None, Some(c)) => {
                TestResult::Built(c.differences.iter().map(|d| d.path.clone()).filter(|p| !noise.contains(p)).collect())
            }
            (None, None) => TestResult::Built(BTreeSet::new()),
        }
    }

    fn set_files(&self, n: usize, result: &TestResult) {
        let mut tests = self.tests.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((t, _)), TestResult::Built(files)) = (tests.iter_mut().find(|(t, _)| t.number == n), result) {
            t.files = files.iter().cloned().collect();
        }
    }

    /// Build `n` with `set` applied, into `build-N/`; its comparison with
    /// control 1 (for control 1 itself, an empty one), `None` when it
    /// failed (the failure is in the test's record).
    async fn build(&self, n: usize, role: &'static str, set: &[Variation]) -> Result<Option<TreeComparison>> {
        let ready = self.ready;
        let dir = ready.fresh.path().join(format!("build-{n}"));
        let mut b = apply(&ready.template, set, self.probed, self.clock_timeout.load(Ordering::Relaxed));
        b.out_parent = ready.fresh.path().to_owned();
        b.log_path = dir.join("build.log");
        let mut test = Test {
            number: n,
            role,
            variations: set.to_vec(),
            files: Vec::new(),
            failed: None,
            dir: dir.display().to_string(),
        };
        let what = if set.is_empty() { "no variation".to_owned() } else { vary_names(set) };
        self.printer.status(format!("build {n} ({role}, {what})"));
        let built =
            rebuild_once(&ready.engine, b, &dir, &ready.lock, ready.facts.clone(), ready.prepare_ms, self.printer)
                .await;
        let compared = match built {
            Ok(_) if n == 1 => Some(TreeComparison { identical: 0, differences: Vec::new() }),
            Ok(_) => {
                let (a, b) = (ready.fresh.path().join("build-1/out"), dir.join("out"));
                let c = tokio::task::spawn_blocking(move || compare_dirs(&a, &b, &clues()))
                    .await
                    .context("the comparison task panicked")??;
                Some(c)
            }
            Err(e) if is_build_failure(&e) => {
                test.failed = Some(format!("{e:#}"));
                None
            }
            Err(e) => return Err(e),
        };
        self.tests.lock().unwrap_or_else(|e| e.into_inner()).push((test, compared.clone()));
        Ok(compared)
    }
}

fn vary_names(set: &[Variation]) -> String {
    set.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(" + ")
}

/// What the comparison may blame: the fixed and the varied paths,
/// hostnames and times.
fn clues() -> Clues {
    let mut clues = super::verify::clues();
    clues.build_paths.push(vary::VARIED_SOURCE_DIR.to_owned());
    clues.build_paths.push(vary::VARIED_HOME.to_owned());
    clues.hostnames.push(vary::VARIED_HOSTNAME.to_owned());
    clues.hostnames.push(vary::VARIED_DOMAINNAME.to_owned());
    clues.times.push(2_000_000_000);
    clues
}

/// The experiment user of a control user: the 2000 range (`1000:1000`
/// becomes `2000:2000`).
fn varied_user(control: (u32, u32)) -> (u32, u32) {
    let other = |id: u32| if 2000 + id % 1000 == id { id + 1 } else { 2000 + id % 1000 };
    (other(control.0), other(control.1))
}

/// `template` with `set` applied.
fn apply(template: &ResolvedBuild, set: &[Variation], probed: &Probed, clock_timeout: u64) -> ResolvedBuild {
    let mut b = template.clone();
    let env = &mut b.plan.env;
    for v in set {
        match v {
            Variation::BuildPath => {
                follow_build_path(env);
                b.plan.workdir = vary::VARIED_SOURCE_DIR;
                b.sources.dir = vary::VARIED_SOURCE_DIR.to_owned();
            }
            Variation::Hostname => {
                b.plan.hostname = vary::VARIED_HOSTNAME;
                b.varied.domainname = Some(vary::VARIED_DOMAINNAME);
            }
            Variation::User => {
                let (uid, gid) = varied_user(b.sources.owner);
                b.plan.user = format!("{uid}:{gid}");
                b.sources.owner = (uid, gid);
            }
            Variation::Umask => b.plan.umask = vary::VARIED_UMASK,
            Variation::Timezone => {
                env.insert("TZ".to_owned(), vary::VARIED_TZ.to_owned());
            }
            Variation::Locale => {
                if let Some(locale) = &probed.locale {
                    env.insert("LANG".to_owned(), locale.clone());
                    env.insert("LC_ALL".to_owned(), locale.clone());
                }
            }
            Variation::Cpus => b.varied.cpuset = Some(vary::VARIED_CPUSET),
            Variation::Env => {
                for (k, v) in vary::VARIED_ENV {
                    env.entry(k.to_owned()).or_insert_with(|| v.to_owned());
                }
            }
            Variation::Home => {
                env.insert("HOME".to_owned(), vary::VARIED_HOME.to_owned());
            }
            Variation::Path => {
                let path = env.entry("PATH".to_owned()).or_insert_with(|| hermetic::PATH.to_owned());
                path.push(':');
                path.push_str(vary::VARIED_PATH_ENTRY);
            }
            Variation::DirOrder => {
                if let Some(base) = &probed.tmpfs_stage {
                    // A copy of its own on a tmpfs, which lists a
                    // directory's entries newest first: the copy is made
                    // in sorted order, so they list in reverse.
                    b.transfer.stage_base = base.clone();
                    b.transfer.cache_budget = 0;
                    b.transfer.transfer = SourceTransfer::Mount;
                }
            }
            Variation::Clock => {
                if let Some(lib) = &probed.faketime {
                    env.insert("LD_PRELOAD".to_owned(), FAKETIME_IN_CONTAINER.to_owned());
                    env.insert("FAKETIME".to_owned(), vary::VARIED_FAKETIME.to_owned());
                    env.insert("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned());
                    b.varied.faketime = Some(lib.clone());
                    b.varied.timeout_secs = Some(clock_timeout);
                }
            }
        }
    }
    b
}

/// A prefix map of the source directory in the environment follows it to
/// the varied build path (the `c` profile's `-ffile-prefix-map=/src=.`,
/// the `rust` profile's `--remap-path-prefix=/src=.`): the variation tests
/// the project, not a path written into a profile.
fn follow_build_path(env: &mut BTreeMap<String, String>) {
    let from = format!("{}=", hermetic::SOURCE_DIR);
    for value in env.values_mut() {
        let mut out = String::with_capacity(value.len());
        let mut rest = value.as_str();
        while let Some(at) = rest.find(&from) {
            // A path starts the value, or follows `=` or a space.
            let starts = out.is_empty() && at == 0 || matches!(rest[..at].chars().last(), Some('=' | ' '));
            out.push_str(&rest[..at]);
            out.push_str(if starts { vary::VARIED_SOURCE_DIR } else { hermetic::SOURCE_DIR });
            out.push('=');
            rest = &rest[at + from.len()..];
        }
        out.push_str(rest);
        *value = out;
    }
}

/// Each asked variation with its two values, those this machine or image
/// cannot apply marked ineffective; and the probed values.
async fn probe(
    ready: &Ready<'_>,
    asked: &BTreeSet<Variation>,
    printer: &Printer,
) -> Result<(Vec<VariationReport>, Probed)> {
    let plan = &ready.template.plan;
    let mut probed = Probed::default();
    let env = |k: &str| plan.env.get(k).cloned().unwrap_or_default();
    // A variable the profile or the manifest sets is the build's own
    // choice, which no machine changes: overriding it tests nothing.
    let fixed = hermetic::base_env(0);
    let set_by_build = |k: &str| plan.env.get(k) != fixed.get(k);
    let mut out = Vec::new();
    for &v in asked {
        let mut ineffective = None;
        let (control, experiment) = match v {
            Variation::BuildPath => (plan.workdir.to_owned(), vary::VARIED_SOURCE_DIR.to_owned()),
            Variation::Hostname => (
                format!("{} (no domain)", plan.hostname),
                format!("{} (domain {})", vary::VARIED_HOSTNAME, vary::VARIED_DOMAINNAME),
            ),
            Variation::User => {
                let (u, g) = varied_user(ready.template.sources.owner);
                (plan.user.clone(), format!("{u}:{g}"))
            }
            Variation::Umask => (plan.umask.to_owned(), vary::VARIED_UMASK.to_owned()),
            Variation::Timezone => {
                if set_by_build("TZ") {
                    ineffective = Some(format!("the build sets TZ={} itself", env("TZ")));
                }
                (format!("TZ={}", env("TZ")), format!("TZ={}", vary::VARIED_TZ))
            }
            Variation::Locale if set_by_build("LC_ALL") || set_by_build("LANG") => {
                ineffective = Some(format!("the build sets LANG={} LC_ALL={} itself", env("LANG"), env("LC_ALL")));
                (format!("LANG=LC_ALL={}", env("LC_ALL")), "(none)".to_owned())
            }
            Variation::Locale => {
                printer.status("verify --vary: asking the image for its locales (locale -a)");
                match probe_run(ready, &["locale", "-a"], None).await? {
                    Some(listed) => match other_locale(&listed, &env("LC_ALL")) {
                        Some(l) => probed.locale = Some(l),
                        None => ineffective = Some("`locale -a` in the image lists no other locale".to_owned()),
                    },
                    None => ineffective = Some("the image has no `locale` command to list its locales".to_owned()),
                }
                let other = probed.locale.clone().unwrap_or_else(|| "(none)".to_owned());
                (format!("LANG=LC_ALL={}", env("LC_ALL")), format!("LANG=LC_ALL={other}"))
            }
            Variation::Cpus => {
                let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
                if n < 2 {
                    ineffective = Some("this machine has one CPU".to_owned());
                }
                (format!("all ({n})"), format!("1 (cpuset {})", vary::VARIED_CPUSET))
            }
            Variation::Env => {
                let added: Vec<String> = vary::VARIED_ENV
                    .iter()
                    .filter(|(k, _)| !plan.env.contains_key(*k))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if added.is_empty() {
                    ineffective = Some("the build sets these variables itself".to_owned());
                }
                ("the build's variables only".to_owned(), format!("also {}", added.join(" ")))
            }
            Variation::Home => {
                if set_by_build("HOME") {
                    ineffective = Some(format!("the build sets HOME={} itself", env("HOME")));
                }
                (format!("HOME={}", env("HOME")), format!("HOME={}", vary::VARIED_HOME))
            }
            Variation::Path => {
                (format!("PATH={}", env("PATH")), format!("PATH={}:{}", env("PATH"), vary::VARIED_PATH_ENTRY))
            }
            Variation::DirOrder => {
                match dir_order_stage(ready).await {
                    Ok(base) => probed.tmpfs_stage = Some(base),
                    Err(why) => ineffective = Some(why),
                }
                ("as staged".to_owned(), "reversed (a copy on a tmpfs)".to_owned())
            }
            Variation::Clock => {
                match faketime_lib() {
                    None => ineffective = Some("libfaketime is not installed here (Debian: faketime)".to_owned()),
                    Some(lib) => {
                        printer.status("verify --vary: checking that libfaketime works in the image (date +%s)");
                        let said = probe_run(ready, &["date", "+%s"], Some(&lib)).await?;
                        let faked = said.as_deref().and_then(|s| s.trim().parse::<u64>().ok());
                        match faked {
                            Some(t) if (2_000_000_000..2_000_086_400).contains(&t) => probed.faketime = Some(lib),
                            _ => {
                                ineffective = Some(
                                    "libfaketime has no effect in this image (static binaries, or another libc)"
                                        .to_owned(),
                                )
                            }
                        }
                    }
                }
                ("the real time".to_owned(), format!("FAKETIME={}", vary::VARIED_FAKETIME))
            }
        };
        let status = match ineffective {
            Some(why) => Status::Ineffective { why },
            None => Status::Holds,
        };
        out.push(VariationReport { name: v, control, experiment, status });
    }
    Ok((out, probed))
}

/// A locale `locale -a` lists other than the control's (`C.UTF-8`): the
/// first of the others in its order; else `C`, which every glibc has (it
/// varies the character set).
fn other_locale(listed: &str, control: &str) -> Option<String> {
    let norm = |l: &str| l.to_ascii_lowercase().replace("utf-8", "utf8");
    let names: Vec<&str> = listed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let is_control = |l: &str| norm(l) == norm(control);
    let plain = |l: &str| matches!(norm(l).as_str(), "c" | "posix" | "c.utf8");
    names
        .iter()
        .find(|l| !is_control(l) && !plain(l))
        .or_else(|| names.iter().find(|l| !is_control(l) && norm(l) == "c"))
        .map(|l| (*l).to_owned())
}

/// libfaketime on this machine, where Debian puts it.
fn faketime_lib() -> Option<PathBuf> {
    let dirs = fs_err::read_dir("/usr/lib").ok()?;
    let mut found: Vec<PathBuf> = dirs
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// A stage base on a tmpfs for a dir-order build, after checking that a
/// tmpfs there lists entries in another order than the control's stage
/// base does: `Err(why)` when the variation cannot be applied here.
async fn dir_order_stage(ready: &Ready<'_>) -> Result<PathBuf, String> {
    let t = &ready.template.transfer;
    if t.transfer == SourceTransfer::Upload {
        return Err("--sources upload: the engine unpacks the sources in its own order".to_owned());
    }
    if !rustix::process::geteuid().is_root() {
        return Err("only root stages a copy of the sources whose order it chooses".to_owned());
    }
    match ready.engine.capabilities().await {
        Ok(c) if c.sees_local_files => {}
        _ => return Err("the engine does not see this machine's files".to_owned()),
    }
    let shm = Path::new("/dev/shm");
    let order = |base: &Path| -> std::io::Result<Vec<String>> {
        let d = tempfile::Builder::new().prefix(".repro-run-order-").tempdir_in(base)?;
        for name in ["a", "b", "c", "d"] {
            fs_err::write(d.path().join(name), "")?;
        }
        let mut listed = Vec::new();
        for e in fs_err::read_dir(d.path())? {
            listed.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(listed)
    };
    fs_err::create_dir_all(&t.stage_base).map_err(|e| e.to_string())?;
    match (order(shm), order(&t.stage_base)) {
        (Ok(a), Ok(b)) if a != b => {}
        (Ok(_), Ok(_)) => return Err(format!("{} lists entries in the order a tmpfs does", t.stage_base.display())),
        (Err(e), _) | (_, Err(e)) => return Err(format!("cannot probe the directory order: {e}")),
    }
    Ok(shm.join("repro-run-vary"))
}

/// Runs `argv` in the toolchain image as the build would (its user,
/// environment, no network), with libfaketime preloaded when given; its
/// output, or `None` when it did not exit 0.
async fn probe_run(ready: &Ready<'_>, argv: &[&str], faketime: Option<&Path>) -> Result<Option<String>> {
    let plan = &ready.template.plan;
    let helper =
        tokio::task::spawn_blocking(crate::entry::installed).await.context("the entry helper task panicked")??;
    let mut env = plan.env.clone();
    let mut mounts = vec![Mount {
        source: MountSource::HostPath(helper),
        target: crate::entry::PATH_IN_CONTAINER.to_owned(),
        read_only: true,
    }];
    if let Some(lib) = faketime {
        env.insert("LD_PRELOAD".to_owned(), FAKETIME_IN_CONTAINER.to_owned());
        env.insert("FAKETIME".to_owned(), vary::VARIED_FAKETIME.to_owned());
        mounts.push(Mount {
            source: MountSource::HostPath(lib.to_owned()),
            target: FAKETIME_IN_CONTAINER.to_owned(),
            read_only: true,
        });
    }
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let command: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
    let spec = ContainerSpec {
        image: ready.template.image.clone(),
        argv: crate::entry::argv(None, &env, &command),
        env: env.clone(),
        user: Some(plan.user.clone()),
        mounts,
        network: repro_run_core::manifest::Network::None,
        labels: BTreeMap::from([(
            crate::engine::LABEL_PROJECT.to_owned(),
            ready.template.project.display().to_string(),
        )]),
        ..Default::default()
    };
    let guard = ready.engine.create(&spec).await?;
    let mut output = Vec::new();
    let ran = ready
        .engine
        .run(guard.id(), Some(std::time::Duration::from_secs(60)), |chunk| {
            output.extend_from_slice(chunk);
            Ok(())
        })
        .await;
    guard.remove().await;
    Ok(match ran? {
        ExitState::Exited(0) => Some(String::from_utf8_lossy(&output).into_owned()),
        ExitState::Interrupted => return Err(crate::exit::Interrupted.into()),
        _ => None,
    })
}

/// Each variation's status from what the search found.
fn statuses(mut variations: Vec<VariationReport>, culprits: &[Culprit]) -> Vec<VariationReport> {
    for v in &mut variations {
        if matches!(v.status, Status::Ineffective { .. }) {
            continue;
        }
        if let Some(c) = culprits.iter().find(|c| c.variations.contains(&v.name)) {
            v.status = match (&c.failed, v.name) {
                (Some(why), Variation::Clock) if c.variations.len() == 1 => {
                    Status::Incompatible { why: why.lines().next().unwrap_or_default().to_owned() }
                }
                _ => Status::Responsible,
            };
        }
    }
    variations
}

/// Each culprit's differences, from the build that showed it (its own, or
/// the build of every variation, cut to its files).
fn explain(tests: &[(Test, Option<TreeComparison>)], culprits: &[Culprit]) -> Vec<Explained> {
    let mut out = Vec::new();
    for c in culprits.iter().filter(|c| c.failed.is_none()) {
        let own = tests.iter().find(|(t, cmp)| t.variations == c.variations && cmp.is_some());
        let (test, comparison) = match own.or_else(|| tests.iter().find(|(t, _)| t.number == 3)) {
            Some((t, Some(cmp))) => (t.number, cmp),
            _ => continue,
        };
        let mut comparison = comparison.clone();
        comparison.differences.retain(|d| c.files.contains(&d.path));
        out.push(Explained { of: vary_names(&c.variations), test, comparison });
    }
    out
}

/// Keeps the builds where the user asked (`--keep`), or, when the outcome
/// is not reproducible, in the default place.
fn keep_or_drop(report: &mut VaryReport, fresh: tempfile::TempDir, keep: &Path, asked: bool) -> Result<()> {
    if !asked && report.outcome == VaryOutcome::Reproducible {
        return Ok(());
    }
    let from = super::verify::move_kept(fresh, keep)?;
    let (from_text, keep_text) = (from.display().to_string(), keep.display().to_string());
    for t in &mut report.tests {
        t.dir = t.dir.replace(&from_text, &keep_text);
        t.failed = t.failed.take().map(|why| why.replace(&from_text, &keep_text));
    }
    report.kept = Some(keep_text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_locale_is_one_that_is_installed() {
        assert_eq!(other_locale("C\nC.utf8\nPOSIX\n", "C.UTF-8").as_deref(), Some("C"));
        assert_eq!(other_locale("C\nC.utf8\nfr_FR.utf8\nPOSIX\n", "C.UTF-8").as_deref(), Some("fr_FR.utf8"));
        assert_eq!(other_locale("C.utf8\n", "C.UTF-8"), None);
    }

    #[test]
    fn prefix_maps_follow_the_build_path() {
        let profile = |name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles").join(format!("{name}.toml"));
            repro_run_core::profile::Profile::parse(&fs_err::read_to_string(path).unwrap()).unwrap()
        };
        let mut env = profile("c").env;
        env.extend(profile("rust").env);
        env.insert("OTHER".to_owned(), "/srcs=/src/x /home/src=.".to_owned());
        follow_build_path(&mut env);
        let dir = vary::VARIED_SOURCE_DIR;
        assert!(env["CFLAGS"].contains(&format!("-ffile-prefix-map={dir}=.")), "{env:?}");
        assert!(env["RUSTFLAGS"].contains(&format!("--remap-path-prefix={dir}=.")), "{env:?}");
        assert!(!env["CFLAGS"].contains(" -ffile-prefix-map=/src="), "{env:?}");
        // Only a map of the source directory itself: `/srcs=` is not it.
        assert_eq!(env["OTHER"], "/srcs=/src/x /home/src=.");
    }

    #[test]
    fn the_varied_user_is_in_the_2000_range() {
        assert_eq!(varied_user((1000, 1000)), (2000, 2000));
        assert_eq!(varied_user((0, 0)), (2000, 2000));
        assert_eq!(varied_user((2000, 2000)), (2001, 2001));
    }
}

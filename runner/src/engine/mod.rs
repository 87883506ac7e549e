//! The container engine, in the project's own types.
//!
//! Everything outside this module reaches an engine through three things:
//! a [`ContainerSpec`] (what to run, and every setting it runs with), an
//! [`ExitState`] (how it ended), and the engine's [`Capabilities`] (what it
//! can do for this machine: see its files, mount a container's root
//! filesystem, keep user ids as they are). The calls are few: create,
//! upload, run, download, export, import, commit, remove, and the image
//! look-ups.
//!
//! ```text
//!   pipeline / prepare / images ──ContainerSpec──▶ Engine::create ──▶ ContainerGuard
//!                                 ◀──ExitState──── Engine::run
//!   sources ◀──Capabilities── Engine::capabilities   (mount here, or upload)
//! ```
//!
//! [`docker`] is the one implementation: the Docker Engine API, spoken by
//! Docker and by Podman's compatible socket, local or remote
//! (`DOCKER_HOST`, `--engine tcp://…`). Its client crate is named in that
//! file alone. Nothing in the interface assumes a local socket: a spec names
//! host paths only in [`MountSource::HostPath`], which a caller uses only
//! when [`Capabilities::sees_local_files`] says so, and sources and outputs
//! also travel as tar streams ([`Engine::upload`], [`Engine::download`]),
//! which is how an engine on a cluster (a Kubernetes Job) would take them.
//!
//! Every container is owned by a [`ContainerGuard`]: the code that creates
//! one awaits [`ContainerGuard::remove`] on every path, success, failure and
//! interruption alike, and a failure to remove is logged, never hidden. A
//! container left behind by a repro-run that was killed (`kill -9`, a
//! crash) is labelled with its owner, and the next build removes it
//! ([`Engine::remove_orphans`]).

mod docker;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use docker::{Engine, EngineSelector};
use repro_run_core::manifest::Network;

/// Label put on every container repro-run creates.
pub const LABEL_MANAGED: &str = "org.repro-run.managed";
/// Label naming the project directory a container builds.
pub const LABEL_PROJECT: &str = "org.repro-run.project";
/// Label naming the source digest a kept tree's volume holds.
pub const LABEL_TREE: &str = "org.repro-run.tree";
/// Label naming the directory that holds a kept tree's marker.
pub const LABEL_MARKERS: &str = "org.repro-run.markers";
/// Label naming the process that owns a container: `<boot id> <pid>
/// <start time>`, so that a later run can tell a container whose owner was
/// killed from one a live build still uses.
pub const LABEL_OWNER: &str = "org.repro-run.owner";

/// One container: the image, the command and every setting it runs with.
///
/// [`Engine::create`] translates it; nothing here is specific to one
/// engine's API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The image reference or id.
    pub image: String,
    /// The argv, run as given (no entrypoint of the image's own, no shell).
    pub argv: Vec<String>,
    /// `KEY=value` variables the engine sets for `argv[0]`.
    pub env: Vec<String>,
    /// `uid:gid`; `None`: the image's.
    pub user: Option<String>,
    /// The hostname; `None`: the engine's choice.
    pub hostname: Option<String>,
    /// The NIS domain name; `None`: none (empty) when `hostname` is set.
    pub domainname: Option<String>,
    /// The working directory; `None`: the image's.
    pub workdir: Option<String>,
    /// Files and directories mounted into the container.
    pub mounts: Vec<Mount>,
    /// Fresh tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// The network.
    pub network: Network,
    /// What the container may use.
    pub limits: Resources,
    /// What the container may do.
    pub security: Security,
    /// Labels, besides [`LABEL_MANAGED`] and [`LABEL_OWNER`], which every
    /// container gets.
    pub labels: BTreeMap<String, String>,
}

/// A mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// Where, in the container.
    pub target: String,
    /// Read-only in the container.
    pub read_only: bool,
}

/// What a [`Mount`] mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// A path on the engine's machine: only for an engine that sees this
    /// machine's files ([`Capabilities::sees_local_files`]).
    HostPath(PathBuf),
    /// A named volume of the engine's ([`Engine::create_volume`]).
    Volume(String),
}

/// A named volume, as the engine made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Where its files are on the engine's machine: what the options of
    /// another volume (an overlay's layers) name.
    pub mountpoint: String,
}

/// A tmpfs mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where, in the container.
    pub target: String,
    /// Mount options (`mode=1777,nosuid,nodev`).
    pub options: String,
}

/// Resource limits; `None` leaves the engine's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory, swap included, in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU, in thousandths of a CPU.
    pub millicpus: Option<u64>,
    /// Processes and threads in the container (`pids.max`).
    pub pids: Option<u64>,
    /// `RLIMIT_NOFILE`, soft = hard.
    pub nofile: Option<u64>,
    /// `RLIMIT_NPROC`, soft = hard.
    pub nproc: Option<u64>,
    /// The CPUs the container may run on (`cpuset.cpus`, such as `0` or
    /// `0-3`); `None`: all of them.
    pub cpuset: Option<String>,
}

/// What a container may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    /// Drop every capability, also from the bounding set.
    pub drop_all_capabilities: bool,
    /// `no_new_privileges`: no setuid binary, no file capability raises
    /// what the process may do.
    pub no_new_privileges: bool,
    /// The image's files are read-only; only mounts and tmpfs are writable.
    pub read_only_rootfs: bool,
}

/// How a container's command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitState {
    /// It exited with this code (128 + n for a signal n).
    Exited(i64),
    /// The kernel killed it at its memory limit (the engine says so for
    /// the container's first process); the exit code it got.
    OutOfMemory(i64),
    /// It ran past the time it was given, and was left to be removed.
    TimedOut,
    /// Ctrl-C or SIGTERM came first; it was left to be removed.
    Interrupted,
}

/// What an engine can do for this machine, as it reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The engine is reached through a socket on this machine, runs on a
    /// machine of this one's name, and keeps user ids as they are: a host
    /// path in a [`Mount`] is likely this machine's file. Likely, not
    /// surely (the engine may run in a VM of the same name, or in another
    /// mount namespace): the sources module confirms it with a probe file.
    pub sees_local_files: bool,
    /// Why not, when it does not: for the message of `--sources mount`.
    pub not_local_because: Option<String>,
    /// The engine can mount a container's root filesystem where this
    /// process reads it ([`Engine::mount_rootfs`]).
    pub mounts_rootfs: bool,
    /// Container user ids are mapped to other ids on the host (Docker's
    /// userns-remap, a rootless engine).
    pub remaps_user_ids: bool,
    /// The engine mounts a volume as an overlay of other volumes' files,
    /// itself, for a container (the `local` driver's `type=overlay`): what
    /// keeps source trees for a caller that cannot mount (see
    /// `sources::volumes`).
    pub overlay_volumes: bool,
}

/// Owns one container. Await [`ContainerGuard::remove`] on every path.
///
/// `Drop` cannot await, so a guard dropped without `remove` (a bug) starts a
/// best-effort removal in the background and says so.
/// `REPRO_RUN_KEEP_CONTAINER=1` keeps containers for debugging.
pub struct ContainerGuard {
    engine: Engine,
    id: String,
    removed: bool,
}

impl ContainerGuard {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Force-removes the container (and its anonymous volumes). A failure is
    /// logged with the command that finishes the job, never hidden.
    pub async fn remove(mut self) {
        self.removed = true;
        if std::env::var_os("REPRO_RUN_KEEP_CONTAINER").is_some_and(|v| v == "1") {
            tracing::warn!("keeping container {} (REPRO_RUN_KEEP_CONTAINER=1)", short(&self.id));
            return;
        }
        // A removal must finish even while a signal is being handled.
        match self.engine.remove_container(&self.id).await {
            Ok(()) => tracing::debug!("removed container {}", short(&self.id)),
            Err(err) => tracing::warn!(
                "could not remove container {}: {err:#}; remove it with `{} rm -f {}`",
                short(&self.id),
                self.engine.kind,
                self.id
            ),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        tracing::warn!("container {} was not removed by its owner; removing it now", short(&self.id));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let engine = self.engine.clone();
            let id = std::mem::take(&mut self.id);
            handle.spawn(async move {
                if let Err(err) = engine.remove_container(&id).await {
                    tracing::warn!("could not remove container {}: {err:#}", short(&id));
                }
            });
        }
    }
}

/// Whether `cause` is the engine's failure (it refused a request, or could
/// not be reached), for the exit-code policy.
pub fn is_engine_failure(cause: &(dyn std::error::Error + 'static)) -> bool {
    docker::is_api_error(cause)
}

/// An error of the engine's API, for tests of what handles one.
#[cfg(test)]
pub fn an_api_error_for_tests() -> impl std::error::Error + Send + Sync + 'static {
    docker::an_api_error_for_tests()
}

/// This process as an owner label: `<boot id> <pid> <start time>`.
fn owner_label() -> String {
    let pid = std::process::id();
    format!("{} {pid} {}", boot_id().unwrap_or_default(), start_time(pid).unwrap_or_default())
}

/// Whether the owner named by an owner label is gone: it ran on this boot
/// of this machine, and no process with its pid and start time runs now.
/// `false` when that cannot be told (another machine, another boot, a
/// label of another shape): such a container is never taken for an orphan.
fn owner_is_gone(label: &str) -> bool {
    let mut parts = label.split(' ');
    let (Some(boot), Some(pid), Some(started)) = (parts.next(), parts.next(), parts.next()) else { return false };
    if boot.is_empty() || boot_id().as_deref() != Some(boot) {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else { return false };
    start_time(pid).as_deref() != Some(started)
}

fn boot_id() -> Option<String> {
    fs_err::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned())
}

/// The start time of process `pid` (field 22 of its `stat`), in clock
/// ticks since boot.
fn start_time(pid: u32) -> Option<String> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19).map(str::to_owned)
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_label_names_a_live_process_until_it_is_gone() {
        let me = owner_label();
        assert!(!owner_is_gone(&me), "{me}");
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        let label = format!("{} {pid} {}", boot_id().unwrap_or_default(), start_time(pid).unwrap_or_default());
        child.wait().expect("wait for true");
        assert!(owner_is_gone(&label), "{label}");
        // Another boot, or a label of another shape, is never an orphan's.
        assert!(!owner_is_gone(&format!("00000000-0000-0000-0000-000000000000 {pid} 1")));
        assert!(!owner_is_gone("junk"));
        assert!(!owner_is_gone(""));
    }
}

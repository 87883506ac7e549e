//! The Docker Engine API implementation of [`super`], through bollard: Docker,
//! and Podman through its Docker-compatible socket, local or remote. This
//! file is the only place that names bollard; [`Engine::create`] translates
//! a [`ContainerSpec`] into the API's container body.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig, MountType, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CommitContainerOptionsBuilder, ContainerArchiveInfoOptionsBuilder,
    CreateContainerOptions, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use repro_run_core::engine::EngineKind;
use repro_run_core::manifest::Network;
use repro_run_core::record::{EngineFacts, HostFacts};

use super::{
    owner_is_gone, owner_label, short, Capabilities, ContainerGuard, ContainerSpec, ExitState, MountSource, Volume,
    LABEL_MANAGED, LABEL_OWNER,
};
use crate::cache::JsonCache;
use crate::exit::EngineError;
use crate::signal;

/// Which engine to talk to, as given with `--engine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineSelector {
    /// The usual socket of this kind of engine.
    Kind(EngineKind),
    /// An explicit endpoint: `unix:///path`, `tcp://host:port`, `http://…`.
    Host(String),
}

impl FromStr for EngineSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(kind) = s.parse::<EngineKind>() {
            return Ok(EngineSelector::Kind(kind));
        }
        if ["unix://", "tcp://", "http://", "https://"].iter().any(|p| s.starts_with(p)) {
            return Ok(EngineSelector::Host(s.to_owned()));
        }
        Err(format!(
            "`{s}` is not an engine: use `docker`, `podman`, or an endpoint such as \
             unix:///run/podman/podman.sock or tcp://127.0.0.1:2375"
        ))
    }
}

impl fmt::Display for EngineSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineSelector::Kind(k) => write!(f, "{k}"),
            EngineSelector::Host(h) => f.write_str(h),
        }
    }
}

const DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";
const PODMAN_SYSTEM_SOCKET: &str = "unix:///run/podman/podman.sock";

fn podman_sockets() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        out.push(format!("unix://{dir}/podman/podman.sock"));
    }
    out.push(PODMAN_SYSTEM_SOCKET.to_owned());
    out
}

/// A client for `endpoint` speaking API `version` (no request is made).
fn client(endpoint: &str, version: &ClientVersion) -> Result<Docker> {
    const TIMEOUT_SECS: u64 = 3600;
    let docker = if endpoint.starts_with("unix://") {
        Docker::connect_with_unix(endpoint, TIMEOUT_SECS, version)
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, TIMEOUT_SECS, version)
    } else {
        Docker::connect_with_host(endpoint)
    };
    docker.map_err(|e| anyhow::anyhow!("{e}"))
}

/// `"1.41"` → 1.41.
fn parse_api_version(s: &str) -> Option<ClientVersion> {
    let (major, minor) = s.split_once('.')?;
    Some(ClientVersion { major_version: major.parse().ok()?, minor_version: minor.parse().ok()? })
}

/// What `engines.json` keeps per socket.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CachedEngine {
    facts: EngineFacts,
    host: HostFacts,
}

/// `endpoint` plus the socket file's device, inode and change time; `None`
/// for endpoints that are not unix sockets (nothing identifies them).
fn socket_identity(endpoint: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let path = endpoint.strip_prefix("unix://")?;
    let m = fs_err::metadata(path).ok()?;
    Some(format!("{endpoint} {}:{}:{}.{}", m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

fn socket_exists(endpoint: &str) -> bool {
    endpoint.strip_prefix("unix://").is_some_and(|p| Path::new(p).exists())
}

/// The endpoints to try, in order, for a selector.
fn candidates(selector: Option<&EngineSelector>) -> Vec<String> {
    match selector {
        Some(EngineSelector::Host(h)) => vec![h.clone()],
        Some(EngineSelector::Kind(EngineKind::Podman)) => {
            let socks = podman_sockets();
            let existing: Vec<String> = socks.iter().filter(|s| socket_exists(s)).cloned().collect();
            if existing.is_empty() {
                socks
            } else {
                existing
            }
        }
        Some(EngineSelector::Kind(EngineKind::Docker)) => {
            vec![std::env::var("DOCKER_HOST").unwrap_or_else(|_| DOCKER_SOCKET.to_owned())]
        }
        None => {
            if let Ok(host) = std::env::var("DOCKER_HOST") {
                return vec![host];
            }
            // Docker's socket first; Podman's where Docker's is absent.
            let mut all = vec![DOCKER_SOCKET.to_owned()];
            all.extend(podman_sockets());
            let existing: Vec<String> = all.iter().filter(|s| socket_exists(s)).cloned().collect();
            if existing.is_empty() {
                vec![DOCKER_SOCKET.to_owned()]
            } else {
                existing
            }
        }
    }
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    /// Docker or Podman, as the engine itself says.
    pub kind: EngineKind,
    /// The endpoint we are connected to.
    pub endpoint: String,
    facts: EngineFacts,
    host: HostFacts,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} at {}", self.kind, self.facts.version, self.endpoint)
    }
}

impl Engine {
    /// Connects to the selected engine (default: `DOCKER_HOST`, Docker's
    /// socket, then Podman's), checks that it answers and negotiates the API
    /// version. The error says what was tried and how to start an engine.
    ///
    /// What the engine is (kind, version, API, host) may come from the
    /// cache of an earlier connect to the same socket file, making the
    /// connect a single `/_ping`; anything that goes into a record asks
    /// again with [`Engine::ask_facts`].
    pub async fn connect(selector: Option<&EngineSelector>) -> Result<Engine> {
        let endpoints = candidates(selector);
        let mut failures = Vec::new();
        for endpoint in &endpoints {
            match Self::connect_to(endpoint).await {
                Ok(engine) => return Ok(engine),
                Err(err) => failures.push(format!("{endpoint}: {err:#}")),
            }
        }
        let wanted = selector.map_or_else(|| "a container engine".to_owned(), |s| format!("the {s} engine"));
        Err(EngineError(format!(
            "cannot reach {wanted}\n  tried {}\n  hint: start Docker (`sudo systemctl start docker`) or Podman's API socket \
             (`podman system service --time=0 unix:///run/podman/podman.sock &`), or run scripts/engine-up from the \
             repro-run source tree; choose another engine with --engine or DOCKER_HOST",
            failures.join("\n  tried ")
        ))
        .into())
    }

    async fn connect_to(endpoint: &str) -> Result<Engine> {
        // What an engine is rarely changes while its socket stays the same
        // file (a restarted engine usually makes a new one; with systemd's
        // socket activation it may not), so the facts are cached by the
        // socket's identity. Podman answers `/version` slowly, `/_ping` at
        // once (docs/bench.md, Podman target 2).
        let identity = socket_identity(endpoint);
        let cache = JsonCache::<CachedEngine>::open("engines.json");
        let cached = identity.as_deref().and_then(|id| cache.get(id));
        if let Some(cached) = cached {
            if let Some(api) = parse_api_version(&cached.facts.api_version) {
                let docker = client(endpoint, &api)?;
                let ping = tokio::time::timeout(Duration::from_secs(10), docker.ping()).await;
                if matches!(ping, Ok(Ok(_))) {
                    tracing::debug!(
                        "connected to {} {} at {endpoint} (cached)",
                        cached.facts.kind,
                        cached.facts.version
                    );
                    return Ok(Engine {
                        docker,
                        kind: cached.facts.kind,
                        endpoint: endpoint.to_owned(),
                        facts: cached.facts,
                        host: cached.host,
                    });
                }
            }
        }
        let engine = Self::ask_engine(endpoint).await?;
        if let Some(id) = identity {
            cache.put(&id, CachedEngine { facts: engine.facts.clone(), host: engine.host.clone() });
        }
        Ok(engine)
    }

    async fn ask_engine(endpoint: &str) -> Result<Engine> {
        // One round trip where possible: ask `/version` at API 1.41, which
        // Docker 20.10 and Podman's compatible API both speak, then talk at
        // the highest version both sides know. (Podman answers `/version`
        // slowly, so bollard's negotiate-then-ask costs it a second round.)
        // An engine that refuses so old a client gets the negotiated path.
        const PROBE: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };
        let ask = |docker: Docker| async move {
            let v = tokio::time::timeout(Duration::from_secs(10), docker.version())
                .await
                .map_err(|_| anyhow::anyhow!("no answer within 10 s"))?;
            anyhow::Ok((docker, v))
        };
        let (docker, v) = match ask(client(endpoint, &PROBE)?).await? {
            (probe, Ok(v)) => {
                let server = v.api_version.as_deref().and_then(parse_api_version).unwrap_or(PROBE);
                let best = if server < *API_DEFAULT_VERSION { server } else { *API_DEFAULT_VERSION };
                let docker = if best == PROBE { probe } else { client(endpoint, &best)? };
                (docker, v)
            }
            (_, Err(e)) if e.to_string().contains("too old") => {
                let docker = client(endpoint, API_DEFAULT_VERSION)?
                    .negotiate_version()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let (docker, v) = ask(docker).await?;
                (docker, v.map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            (_, Err(e)) => return Err(anyhow::anyhow!("{e}")),
        };
        let (facts, host) = facts_of(&v, &docker);
        let kind = facts.kind;
        tracing::info!("connected to {kind} {} at {endpoint}", facts.version);
        Ok(Engine { docker, kind, endpoint: endpoint.to_owned(), facts, host })
    }

    /// What the engine is, now, for a record.
    ///
    /// The kind and version are the engine's live answer. On a unix socket
    /// they come from the `Server` header of a `/_ping` (under a
    /// millisecond); the architecture and kernel then come from the facts
    /// this connection began with (`/version` now, or earlier for the same
    /// socket file), when those name the same engine and version (a reboot,
    /// the only way to a new kernel, makes a new socket file). Otherwise
    /// this asks `/version`, which Podman is slow to answer, so a build
    /// asks while it does other work.
    pub async fn ask_facts(&self) -> Result<(EngineFacts, HostFacts)> {
        if let Some(path) = self.endpoint.strip_prefix("unix://") {
            let known = (self.facts.kind, self.facts.version.clone(), self.host.os.clone());
            if ping_server(path).await.is_some_and(|live| live == known) {
                return Ok((self.facts.clone(), self.host.clone()));
            }
        }
        let v = tokio::time::timeout(Duration::from_secs(30), self.docker.version())
            .await
            .map_err(|_| EngineError("the engine did not say its version within 30 s".into()))?
            .context("cannot ask the engine for its version")?;
        let (facts, host) = facts_of(&v, &self.docker);
        if let Some(id) = socket_identity(&self.endpoint) {
            JsonCache::<CachedEngine>::open("engines.json")
                .put(&id, CachedEngine { facts: facts.clone(), host: host.clone() });
        }
        Ok((facts, host))
    }

    /// What the engine can do for this machine: `/info` says where it runs
    /// (the host name of its machine) and whether it maps the container's
    /// user ids to other ids on the host (Docker's userns-remap, a rootless
    /// engine: then a file given to uid 1000 here is not uid 1000's in the
    /// container).
    pub async fn capabilities(&self) -> Result<Capabilities> {
        let info = self.docker.info().await.context("cannot ask the engine for its configuration")?;
        let remaps_user_ids = remaps_user_ids(info.security_options.as_deref().unwrap_or_default());
        let here = fs_err::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).ok();
        let not_local_because =
            not_local_because(&self.endpoint, &info.name.unwrap_or_default(), here.as_deref(), remaps_user_ids);
        Ok(Capabilities {
            sees_local_files: not_local_because.is_none(),
            not_local_because,
            mounts_rootfs: self.kind == EngineKind::Podman && self.endpoint.starts_with("unix://"),
            // Docker's and Podman's `local` driver mount `type=overlay` as
            // root for the container; a rootless engine cannot.
            overlay_volumes: !remaps_user_ids && info.os_type.as_deref().is_none_or(|os| os == "linux"),
            remaps_user_ids,
        })
    }

    /// What identifies this engine across runs, for the answers cached
    /// about it: the socket file's identity (see `engines.json`); `None`
    /// for an endpoint that is not a unix socket.
    pub fn identity(&self) -> Option<String> {
        socket_identity(&self.endpoint)
    }

    /// Removes the containers that a repro-run killed on this machine
    /// (`kill -9`, a crash, a lost engine) left behind: those labelled
    /// [`LABEL_MANAGED`] whose [`LABEL_OWNER`] process is gone. A
    /// container of a live build, of another machine, or of another tool is
    /// never touched. Returns the short ids removed.
    pub async fn remove_orphans(&self) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_owned(), vec![LABEL_MANAGED.to_owned()])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let listed = self.docker.list_containers(Some(options)).await.context("cannot list containers")?;
        let mut removed = Vec::new();
        let volumes = self.docker.list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build()));
        let volumes = volumes.await.context("cannot list volumes")?.volumes.unwrap_or_default();
        for c in listed {
            let labels = c.labels.unwrap_or_default();
            let (Some(id), Some(owner)) = (c.id, labels.get(LABEL_OWNER)) else { continue };
            if !owner_is_gone(owner) {
                continue;
            }
            match self.remove_container(&id).await {
                Ok(()) => removed.push(short(&id).to_owned()),
                Err(e) => tracing::warn!("cannot remove container {}, left by a stopped repro-run: {e:#}", short(&id)),
            }
        }
        // Volumes after the containers that used them. Kept trees carry no
        // owner: they outlive every build.
        for v in volumes {
            if v.labels.get(LABEL_OWNER).is_some_and(|owner| owner_is_gone(owner)) {
                if let Err(e) = self.remove_volume(&v.name).await {
                    tracing::warn!("cannot remove volume {}, left by a stopped repro-run: {e:#}", v.name);
                }
            }
        }
        Ok(removed)
    }

    /// Creates the volume `name`, labelled as repro-run's (and with this
    /// process as its owner when `owned`, so that it goes with its owner:
    /// see [`Engine::remove_orphans`]). `options` are the `local` driver's
    /// (`type`, `device`, `o`); none makes a plain volume.
    pub async fn create_volume(
        &self,
        name: &str,
        options: &[(&str, String)],
        labels: &[(&str, String)],
        owned: bool,
    ) -> Result<Volume> {
        let mut all: HashMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        all.insert(LABEL_MANAGED.into(), "true".into());
        if owned {
            all.insert(LABEL_OWNER.into(), owner_label());
        }
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: Some("local".to_owned()),
            driver_opts: Some(options.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()),
            labels: Some(all),
            ..Default::default()
        };
        let v = self.docker.create_volume(request).await.with_context(|| format!("cannot create volume `{name}`"))?;
        tracing::debug!("created volume {name} at {}", v.mountpoint);
        Ok(Volume { name: v.name, mountpoint: v.mountpoint })
    }

    /// The names of the volumes that carry the label `label` (`key`, or
    /// `key=value`).
    pub async fn volumes_labelled(&self, label: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let listed = self.docker.list_volumes(Some(options)).await.context("cannot list volumes")?;
        Ok(listed.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    /// The volume `name`, or `None` when there is none.
    pub async fn volume(&self, name: &str) -> Result<Option<Volume>> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(Volume { name: v.name, mountpoint: v.mountpoint })),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot inspect volume `{name}`")),
        }
    }

    /// Removes the volume `name` and its files; one that is gone already is
    /// no error. The engine refuses while a container uses it.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptionsBuilder::default().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove volume `{name}`")),
        }
    }

    /// The engine's id of an image, or `None` when it has no such image.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(img.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot inspect image `{reference}`")),
        }
    }

    /// Images whose reference starts with `prefix` (`repo:tag`, id).
    pub async fn list_images(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptionsBuilder::default().all(false).build()))
            .await
            .context("cannot list images")?;
        let mut out = Vec::new();
        for img in images {
            for tag in &img.repo_tags {
                // Podman qualifies short names; show them as they were given.
                let tag = tag.strip_prefix("localhost/").or_else(|| tag.strip_prefix("docker.io/")).unwrap_or(tag);
                if tag.starts_with(prefix) {
                    out.push((tag.to_owned(), img.id.clone()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Imports a rootfs tar stream as image `reference` (`repo:tag`); returns
    /// the image id.
    pub async fn import<S>(&self, reference: &str, tar: S) -> Result<String>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        // The whole reference goes in `repo`: Podman's compatible API drops
        // the separate `tag` parameter (and names the image `:latest`).
        let options = CreateImageOptionsBuilder::default().from_src("-").repo(reference).build();
        let previous = self.image_id(reference).await?;
        let mut progress = self.docker.create_image(Some(options), Some(bollard::body_try_stream(tar)), None);
        while let Some(item) = progress.next().await {
            let info = item.with_context(|| format!("the engine refused to import `{reference}`"))?;
            if let Some(status) = info.status {
                tracing::debug!("import: {status}");
            }
        }
        let id = self
            .image_id(reference)
            .await?
            .ok_or_else(|| EngineError(format!("the engine imported `{reference}` but does not list it")))?;
        if let Some(old) = previous.filter(|old| *old != id) {
            self.remove_replaced_image(&old).await;
        }
        Ok(id)
    }

    /// Removes an image a new import took the tag from, unless anything
    /// still uses it (another tag, a container, a child image): the engine
    /// refuses then, and the image stays.
    async fn remove_replaced_image(&self, id: &str) {
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::default().force(false).build();
        match self.docker.remove_image(id, Some(options), None).await {
            Ok(_) => tracing::debug!("removed the replaced image {}", short(id)),
            Err(err) => tracing::debug!("kept the replaced image {}: {err}", short(id)),
        }
    }

    /// Creates a container (never started by this call) owned by the
    /// returned guard.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<ContainerGuard> {
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body_of(spec))
            .await
            .with_context(|| format!("cannot create a container from image `{}`", spec.image))?;
        for w in created.warnings {
            tracing::warn!("engine: {w}");
        }
        tracing::debug!("created container {}", created.id);
        Ok(ContainerGuard { engine: self.clone(), id: created.id, removed: false })
    }

    /// Extracts a tar stream at `path` inside the container.
    pub async fn upload<S>(&self, container: &str, path: &str, tar: S) -> Result<()>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let options = UploadToContainerOptionsBuilder::default().path(path).build();
        self.docker
            .upload_to_container(container, Some(options), bollard::body_try_stream(tar))
            .await
            .with_context(|| format!("cannot upload files to {path} in the container"))
    }

    /// Starts a created container.
    pub async fn start(&self, container: &str) -> Result<()> {
        self.docker.start_container(container, None).await.context("cannot start the container")
    }

    /// Starts a created container and hands its stdout and stderr to
    /// `sink` as they come, until it ends, `timeout` passes or a signal
    /// comes (the container is left running then, for its guard to remove).
    ///
    /// The output is attached to before the start, so nothing is missed,
    /// and it closes as the command exits. The engine then usually says at
    /// once that the container stopped; if not (the command closed its
    /// output and goes on, or the engine is slow to notice), this waits.
    /// On Podman this ends sooner than a followed log and a wait do
    /// (docs/bench.md, Podman target 4).
    pub async fn run(
        &self,
        container: &str,
        timeout: Option<Duration>,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<ExitState> {
        let ran = async {
            let mut output = Box::pin(self.attach(container).await?);
            self.start(container).await?;
            while let Some(chunk) = output.next().await {
                sink(&chunk?)?;
            }
            let (code, oom) = match self.exit_state(container).await? {
                Some(state) => state,
                None => {
                    tracing::debug!("the output ended before the engine said the container stopped; waiting");
                    let code = self.wait(container).await?;
                    (code, self.oom_killed(container).await?)
                }
            };
            anyhow::Ok(if oom { ExitState::OutOfMemory(code) } else { ExitState::Exited(code) })
        };
        let timed = async {
            match timeout {
                Some(limit) => tokio::time::timeout(limit, ran).await.unwrap_or(Ok(ExitState::TimedOut)),
                None => ran.await,
            }
        };
        match signal::cancellable(timed).await {
            Err(e) if e.is::<crate::exit::Interrupted>() => Ok(ExitState::Interrupted),
            other => other,
        }
    }

    /// Attaches to a created container's stdout and stderr.
    async fn attach(&self, container: &str) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static> {
        let options =
            AttachContainerOptionsBuilder::default().stdout(true).stderr(true).stream(true).logs(false).build();
        let attached =
            self.docker.attach_container(container, Some(options)).await.context("cannot attach to the container")?;
        // The unused input half shares the connection: keep it until the end.
        let input = attached.input;
        Ok(attached.output.map(move |item| {
            let _keep = &input;
            item.map(|out| out.into_bytes()).context("cannot read the container's output")
        }))
    }

    /// The exit code, and whether the kernel killed it for lack of memory,
    /// once the container has stopped; `None` if it still runs after a
    /// short while (20 looks, 10 ms apart).
    async fn exit_state(&self, container: &str) -> Result<Option<(i64, bool)>> {
        for _ in 0..20 {
            match self.docker.inspect_container(container, None).await {
                Ok(info) => {
                    let stopped = info.state.filter(|s| s.running == Some(false));
                    if let Some(code) = stopped.as_ref().and_then(|s| s.exit_code) {
                        let oom = stopped.and_then(|s| s.oom_killed).unwrap_or(false);
                        return Ok(Some((code, oom)));
                    }
                }
                // Podman says `stopped` for a few milliseconds between the
                // exit and its cleanup, a state bollard's model does not
                // know; `exited` follows.
                Err(bollard::errors::Error::JsonDataError { .. }) => {}
                Err(e) => return Err(e).context("cannot inspect the container"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(None)
    }

    /// Waits for the container to exit; its exit code.
    pub async fn wait(&self, container: &str) -> Result<i64> {
        let mut stream = self.docker.wait_container(container, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(resp)) => Ok(resp.status_code),
            // bollard reports a non-zero exit as an error; it is an outcome here.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e).context("cannot wait for the container"),
            None => Err(EngineError("the engine closed the wait without an exit code".into()).into()),
        }
    }

    /// Whether the kernel killed the container for lack of memory.
    pub async fn oom_killed(&self, container: &str) -> Result<bool> {
        let info = self.docker.inspect_container(container, None).await.context("cannot inspect the container")?;
        Ok(info.state.and_then(|s| s.oom_killed).unwrap_or(false))
    }

    /// Whether `path` exists inside the container.
    pub async fn path_exists(&self, container: &str, path: &str) -> Result<bool> {
        let options = ContainerArchiveInfoOptionsBuilder::default().path(path).build();
        match self.docker.get_container_archive_info(container, Some(options)).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot look for {path} in the container")),
        }
    }

    /// A tar stream of `path` inside the container (its last component is the
    /// top-level entry).
    pub fn download(&self, container: &str, path: &str) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
        self.docker.download_from_container(container, Some(options)).map_err(std::io::Error::other)
    }

    /// A tar stream of the container's whole filesystem.
    pub fn export(&self, container: &str) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        self.docker.export_container(container).map_err(std::io::Error::other)
    }

    /// The container's root filesystem, mounted where this process can
    /// read it: `Ok(None)` when it cannot be had so.
    ///
    /// Podman mounts a container for a client (libpod's `POST
    /// /containers/{id}/mount`), and only a Podman on this machine, in this
    /// mount namespace, mounts where this process sees it: the mount must be
    /// in `/proc/self/mountinfo`, or the path would be an empty directory (a
    /// rootless Podman mounts in a namespace of its own). Podman 4.3 writes
    /// an export to a temporary file before it sends a byte; reading the
    /// mounted tree skips that. Docker has no such call. As root, on this
    /// machine, with an overlay driver, either engine's container layers
    /// are mounted here read-only instead ([`overlay_of_layers`]): the
    /// same files as the export, read in a third of its time, and with no
    /// lock of the engine's, so that a commit of the container (which
    /// waits for Podman's own mount to go) runs meanwhile.
    pub async fn mount_rootfs(&self, container: &str) -> Result<Option<PathBuf>> {
        let Some(socket) = self.endpoint.strip_prefix("unix://") else { return Ok(None) };
        if let Some(at) = self.mount_layers(container).await? {
            return Ok(Some(at));
        }
        if self.kind == EngineKind::Docker {
            return Ok(None);
        }
        let (status, body) = libpod_post(socket, &format!("/v4.0.0/libpod/containers/{container}/mount")).await?;
        if status != 200 {
            anyhow::bail!("Podman answered {status} to the mount: {}", body.trim());
        }
        let path = PathBuf::from(body.trim());
        let mounts = fs_err::read_to_string("/proc/self/mountinfo")?;
        // A caller that is not root may see the mount and still not read
        // it (Podman's storage is root's).
        if is_mount_point(&mounts, &path) && fs_err::read_dir(&path).is_ok() {
            return Ok(Some(path));
        }
        tracing::debug!("Podman mounted the container at {}, which this process cannot read", path.display());
        self.unmount_rootfs(container).await;
        Ok(None)
    }

    /// [`Engine::mount_rootfs`] as root: the container's overlay layers
    /// (its own upper layer over the image's) mounted read-only at
    /// [`layers_mount_point`].
    async fn mount_layers(&self, container: &str) -> Result<Option<PathBuf>> {
        if !rustix::process::geteuid().is_root() || !self.capabilities().await?.sees_local_files {
            return Ok(None);
        }
        let info = self.docker.inspect_container(container, None).await.context("cannot inspect the container")?;
        // Docker's driver is `overlay2`, Podman's `overlay`.
        let Some(driver) = info.graph_driver.filter(|d| d.name == "overlay2" || d.name == "overlay") else {
            return Ok(None);
        };
        let (Some(upper), Some(lower)) = (driver.data.get("UpperDir"), driver.data.get("LowerDir")) else {
            return Ok(None);
        };
        let at = layers_mount_point(container);
        let (upper, lower) = (upper.clone(), lower.clone());
        let mounted = tokio::task::spawn_blocking(move || overlay_of_layers(&upper, &lower, &at).map(|()| at))
            .await
            .context("the mount task panicked")?;
        match mounted {
            Ok(at) => Ok(Some(at)),
            Err(e) => {
                tracing::debug!("cannot mount the container's layers: {e:#}");
                Ok(None)
            }
        }
    }

    /// Undoes [`Engine::mount_rootfs`]; a failure is logged (removing the
    /// container unmounts Podman's own mount too).
    pub async fn unmount_rootfs(&self, container: &str) {
        let Some(socket) = self.endpoint.strip_prefix("unix://") else { return };
        let at = layers_mount_point(container);
        if at.exists() {
            if let Err(e) = rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH) {
                tracing::warn!("cannot unmount {}: {e}; unmount it with `umount {}`", at.display(), at.display());
            }
            if let Err(e) = fs_err::remove_dir(&at) {
                tracing::warn!("{e}");
            }
            return;
        }
        if self.kind == EngineKind::Docker {
            return;
        }
        match libpod_post(socket, &format!("/v4.0.0/libpod/containers/{container}/unmount")).await {
            Ok((204 | 200, _)) => {}
            Ok((status, body)) => tracing::warn!("Podman answered {status} to an unmount: {}", body.trim()),
            Err(e) => tracing::warn!("cannot unmount container {}: {e:#}", short(container)),
        }
    }

    /// Commits the container as image `reference`, whose configuration
    /// holds no variable but `env`; returns the image id.
    pub async fn commit(&self, container: &str, reference: &str, env: Vec<String>) -> Result<String> {
        let config = ContainerConfig { env: Some(env), ..Default::default() };
        let (repo, tag) = split_reference(reference);
        let options = CommitContainerOptionsBuilder::default().container(container).repo(repo).tag(tag).build();
        self.docker
            .commit_container(options, config)
            .await
            .with_context(|| format!("cannot commit the container as `{reference}`"))?;
        self.image_id(reference)
            .await?
            .ok_or_else(|| EngineError(format!("the engine committed `{reference}` but does not list it")).into())
    }

    pub(super) async fn remove_container(&self, id: &str) -> Result<(), bollard::errors::Error> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            other => other,
        }
    }
}

/// The engine's kind, version and OS from the `Server` header of `/_ping`
/// on the unix socket `path` (bollard does not show response headers);
/// `None` if it cannot be had.
async fn ping_server(path: &str) -> Option<(EngineKind, String, String)> {
    let head = raw_request(path, "GET", "/_ping", Duration::from_secs(5)).await.ok()?;
    parse_server_header(&String::from_utf8_lossy(&head))
}

/// `POST path` with an empty body on the unix socket `socket`, for the
/// libpod calls bollard does not make: the status and the body.
/// Where [`Engine::mount_rootfs`] mounts a Docker container's layers:
/// beside the other mounts this process makes, in the cache directory.
fn layers_mount_point(container: &str) -> PathBuf {
    let base = crate::cache::dir().unwrap_or_else(std::env::temp_dir);
    base.join("rootfs").join(short(container))
}

/// Mounts the layers `upper` (the container's) over `lower` (the image's,
/// `:`-separated, top first) read-only at `at`: an overlay with no upper
/// layer of its own, whose whiteouts and opaque directories hide what the
/// export hides.
fn overlay_of_layers(upper: &str, lower: &str, at: &Path) -> Result<()> {
    use rustix::mount::{mount, MountFlags};
    let options = format!("lowerdir={upper}:{lower}");
    // The kernel reads one page of mount options.
    if options.len() >= 4000 {
        anyhow::bail!("the container has too many layers to mount at once ({} bytes of options)", options.len());
    }
    let options = std::ffi::CString::new(options).context("a layer path holds a NUL byte")?;
    fs_err::create_dir_all(at)?;
    let flags = MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID;
    if let Err(e) = mount("overlay", at, "overlay", flags, options.as_c_str()) {
        let _ = fs_err::remove_dir(at);
        return Err(e).with_context(|| format!("cannot mount the container's layers at {}", at.display()));
    }
    Ok(())
}

async fn libpod_post(socket: &str, path: &str) -> Result<(u16, String)> {
    let raw = raw_request(socket, "POST", path, Duration::from_secs(60)).await?;
    parse_response(&raw).with_context(|| format!("cannot read the answer to POST {path}"))
}

/// Sends `method path` with an empty body on the unix socket `socket` and
/// reads the whole answer (at most 1 MiB), within `wait`.
async fn raw_request(socket: &str, method: &str, path: &str, wait: Duration) -> Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ask = async {
        let mut s = tokio::net::UnixStream::connect(socket).await?;
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: repro-run\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(1 << 20).read_to_end(&mut raw).await?;
        std::io::Result::Ok(raw)
    };
    tokio::time::timeout(wait, ask)
        .await
        .map_err(|_| EngineError(format!("no answer to {method} {path} within {} s", wait.as_secs())))?
        .with_context(|| format!("cannot {method} {path} on {socket}"))
}

/// An HTTP/1.1 response → its status and body (chunked or not).
fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of the headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Ok((status, String::from_utf8_lossy(body).into_owned()));
    }
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").context("a cut chunk size")?;
        let size = std::str::from_utf8(&body[..line_end]).ok().and_then(|l| {
            let hex = l.split(';').next().unwrap_or("").trim();
            usize::from_str_radix(hex, 16).ok()
        });
        let size = size.context("a bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok((status, String::from_utf8_lossy(&out).into_owned()));
        }
        out.extend_from_slice(body.get(..size).context("a cut chunk")?);
        body = body.get(size + 2..).context("a cut chunk")?;
    }
}

/// Whether `path` is a mount point in a `/proc/self/mountinfo` text (its
/// fifth field, with spaces and other bytes as octal escapes).
fn is_mount_point(mountinfo: &str, path: &Path) -> bool {
    let unescape = |field: &str| {
        let b = field.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let octal = b.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
            match (b[i], octal) {
                (b'\\', Some(c)) => {
                    out.push(c);
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    };
    let want = path.as_os_str().as_encoded_bytes();
    mountinfo.lines().any(|l| l.split(' ').nth(4).is_some_and(|f| unescape(f) == want))
}

/// `Server: Docker/20.10.24+dfsg1 (linux)` or `Server: Libpod/4.3.1
/// (linux)` in a response head → (kind, version, OS).
fn parse_server_header(head: &str) -> Option<(EngineKind, String, String)> {
    let headers = head.split("\r\n\r\n").next()?;
    let value = headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("server").then(|| value.trim())
    })?;
    let (product, rest) = value.split_once('/')?;
    let (version, os) = rest.split_once(' ')?;
    let os = os.trim().strip_prefix('(')?.strip_suffix(')')?;
    let kind = match product {
        "Docker" => EngineKind::Docker,
        "Libpod" => EngineKind::Podman,
        _ => return None,
    };
    Some((kind, version.to_owned(), os.to_owned()))
}

/// Whether `/info`'s security options say that user ids are remapped.
fn remaps_user_ids(options: &[String]) -> bool {
    options.iter().any(|o| o.split(',').any(|kv| kv == "name=userns" || kv == "name=rootless"))
}

/// What a `/version` answer says, with the API version `docker` speaks.
fn facts_of(v: &bollard::models::SystemVersion, docker: &Docker) -> (EngineFacts, HostFacts) {
    let is_podman = v.components.iter().flatten().any(|c| c.name.to_ascii_lowercase().contains("podman"));
    let kind = if is_podman { EngineKind::Podman } else { EngineKind::Docker };
    let facts = EngineFacts {
        kind,
        version: v.version.clone().unwrap_or_default(),
        api_version: docker.client_version().to_string(),
    };
    let host = HostFacts {
        os: v.os.clone().unwrap_or_default(),
        arch: v.arch.clone().unwrap_or_default(),
        kernel: v.kernel_version.clone().unwrap_or_default(),
    };
    (facts, host)
}

/// `repo:tag` → (`repo`, `tag`); a missing tag is `latest`.
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// Why an engine at `endpoint`, whose `/info` names the machine
/// `engine_host`, cannot see this machine's (`here`) files, if it cannot:
/// an engine on a machine of another name cannot (and asking it to mount
/// them would make Podman create empty directories over there), and one
/// that remaps user ids would not give the files to the build user.
fn not_local_because(endpoint: &str, engine_host: &str, here: Option<&str>, remaps_user_ids: bool) -> Option<String> {
    if !endpoint.starts_with("unix://") {
        return Some(format!("the engine at {endpoint} is not reached through a local socket"));
    }
    if remaps_user_ids {
        return Some(
            "the engine maps user ids (userns-remap or rootless), so the staged files would not belong to the build \
             user in the container"
                .to_owned(),
        );
    }
    match here {
        Some(here) if !engine_host.is_empty() && engine_host != here => Some(format!(
            "the engine runs on `{engine_host}`, and this is `{here}`: it cannot see this machine's files"
        )),
        _ => None,
    }
}

/// The API's container body for a spec, with the labels every container
/// gets.
fn body_of(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels.insert(LABEL_OWNER.into(), owner_label());
    let mounts = spec
        .mounts
        .iter()
        .map(|m| {
            let (typ, source) = match &m.source {
                MountSource::HostPath(p) => (MountType::BIND, p.display().to_string()),
                MountSource::Volume(name) => (MountType::VOLUME, name.clone()),
            };
            bollard::models::Mount {
                target: Some(m.target.clone()),
                source: Some(source),
                typ: Some(typ),
                read_only: Some(m.read_only),
                ..Default::default()
            }
        })
        .collect();
    let ulimits = [("nofile", spec.limits.nofile), ("nproc", spec.limits.nproc)]
        .into_iter()
        .filter_map(|(name, n)| {
            let n = i64::try_from(n?).ok()?;
            Some(ResourcesUlimits { name: Some(name.into()), soft: Some(n), hard: Some(n) })
        })
        .collect::<Vec<_>>();
    let security = &spec.security;
    let mut security_opt = Vec::new();
    if security.no_new_privileges {
        security_opt.push("no-new-privileges".to_owned());
    }
    let to_i64 = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.argv.clone()),
        entrypoint: Some(vec![]),
        env: Some(spec.env.clone()),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        domainname: spec.domainname.clone().or_else(|| spec.hostname.as_ref().map(|_| String::new())),
        network_disabled: Some(spec.network == Network::None),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(spec.network.as_str().to_owned()),
            mounts: Some(mounts),
            tmpfs: Some(spec.tmpfs.iter().map(|t| (t.target.clone(), t.options.clone())).collect()),
            memory: to_i64(spec.limits.memory_bytes),
            // Swap counts against the limit, so the limit means what it says.
            memory_swap: to_i64(spec.limits.memory_bytes),
            nano_cpus: to_i64(spec.limits.millicpus.map(|m| m * 1_000_000)),
            pids_limit: to_i64(spec.limits.pids),
            cpuset_cpus: spec.limits.cpuset.clone(),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            cap_drop: security.drop_all_capabilities.then(|| vec!["ALL".to_owned()]),
            security_opt: (!security_opt.is_empty()).then_some(security_opt),
            readonly_rootfs: Some(security.read_only_rootfs),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
pub(super) fn an_api_error_for_tests() -> bollard::errors::Error {
    bollard::errors::Error::DockerResponseServerError { status_code: 500, message: "gone".into() }
}

/// Whether `cause` is an error of the engine's API (see
/// [`super::is_engine_failure`]).
pub(super) fn is_api_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.is::<bollard::errors::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_kinds_and_endpoints() {
        assert_eq!("podman".parse(), Ok(EngineSelector::Kind(EngineKind::Podman)));
        assert_eq!(
            "unix:///run/podman/podman.sock".parse(),
            Ok(EngineSelector::Host("unix:///run/podman/podman.sock".into()))
        );
        insta::assert_snapshot!("dokcer".parse::<EngineSelector>().unwrap_err(),
            @"`dokcer` is not an engine: use `docker`, `podman`, or an endpoint such as unix:///run/podman/podman.sock or tcp://127.0.0.1:2375");
    }

    #[test]
    fn responses_are_read_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n/a/b\r\n";
        assert_eq!(parse_response(plain).unwrap(), (200, "/a/b\r\n".to_owned()));
        let chunked =
            b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n2;x=y\r\n:1\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (500, "{\"a\":1".to_owned()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab").is_err());
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }

    #[test]
    fn mount_points_are_found_in_mountinfo() {
        let info = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    40 35 0:38 / /var/lib/containers/storage/overlay/x/merged rw - overlay overlay rw\n";
        assert!(is_mount_point(info, Path::new("/mnt/a b")));
        assert!(is_mount_point(info, Path::new("/var/lib/containers/storage/overlay/x/merged")));
        assert!(!is_mount_point(info, Path::new("/var/lib/containers/storage/overlay/x")));
        assert!(!is_mount_point(info, Path::new("/mnt1")), "the root of the mount is not its mount point");
    }

    #[test]
    fn ping_server_headers_name_the_engine() {
        let docker =
            "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nOstype: linux\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\n\r\nOK";
        assert_eq!(parse_server_header(docker), Some((EngineKind::Docker, "20.10.24+dfsg1".into(), "linux".into())));
        let podman = "HTTP/1.1 200 OK\r\nLibpod-Api-Version: 4.3.1\r\nserver: Libpod/4.3.1 (linux)\r\n\r\n";
        assert_eq!(parse_server_header(podman), Some((EngineKind::Podman, "4.3.1".into(), "linux".into())));
        // A header in the body does not count, nor does an unknown server.
        assert_eq!(parse_server_header("HTTP/1.1 200 OK\r\n\r\nServer: Docker/1 (linux)"), None);
        assert_eq!(parse_server_header("HTTP/1.1 200 OK\r\nServer: nginx/1.2 (x)\r\n\r\n"), None);
    }

    #[test]
    fn remapped_user_ids_are_seen_in_the_security_options() {
        let opts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!remaps_user_ids(&opts(&["name=seccomp,profile=default"])));
        assert!(remaps_user_ids(&opts(&["name=seccomp,profile=default", "name=userns"])));
        assert!(remaps_user_ids(&opts(&["name=rootless"])));
        assert!(!remaps_user_ids(&[]));
    }

    #[test]
    fn an_engine_elsewhere_or_remapping_ids_does_not_see_local_files() {
        let local = "unix:///var/run/docker.sock";
        assert_eq!(not_local_because(local, "vm", Some("vm"), false), None);
        // Nothing to compare: the probe decides.
        assert_eq!(not_local_because(local, "", Some("vm"), false), None);
        assert_eq!(not_local_because(local, "vm", None, false), None);
        let elsewhere = not_local_because(local, "build-host", Some("laptop"), false).unwrap();
        assert!(elsewhere.contains("`build-host`") && elsewhere.contains("`laptop`"), "{elsewhere}");
        let remaps = not_local_because(local, "vm", Some("vm"), true).unwrap();
        assert!(remaps.contains("userns-remap or rootless"), "{remaps}");
        let remote = not_local_because("tcp://127.0.0.1:2375", "vm", Some("vm"), false).unwrap();
        assert!(remote.contains("not reached through a local socket"), "{remote}");
    }

    #[test]
    fn api_versions_parse() {
        assert_eq!(parse_api_version("1.41"), Some(ClientVersion { major_version: 1, minor_version: 41 }));
        assert_eq!(parse_api_version("x"), None);
    }

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("repro-run/busybox:latest"), ("repro-run/busybox", "latest"));
        assert_eq!(split_reference("localhost:5000/x"), ("localhost:5000/x", "latest"));
        assert_eq!(split_reference("x"), ("x", "latest"));
    }
}

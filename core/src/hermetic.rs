//! The fixed settings every build runs with, and the plan that pins them.
//!
//! Nothing from the host leaks into a build: the environment is built from
//! scratch here, the hostname, user, working directory and paths are
//! constants, and the network is off. Every one of these goes into the
//! [`BuildPlan`], and from it into repro.lock ([`crate::lock`]), whose
//! digest is the build's `env_id`: two builds with the same `env_id` ran
//! with the same settings, whatever machine they ran on.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::manifest::{Limits, Manifest, Network};
use crate::profile::Profile;

/// The hostname every build container gets.
pub const HOSTNAME: &str = "repro-run";
/// Where the sources are, and the working directory of the command.
pub const SOURCE_DIR: &str = "/src";
/// `HOME` of the build user; created empty, owned by the build user.
pub const HOME: &str = "/home/build";
/// `PATH` inside the build.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The umask of the build command (the runtimes' default, pinned).
pub const UMASK: &str = "0022";

/// What every build container may do: nothing beyond running the build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sandbox {
    /// Capabilities kept: none, in every set, the bounding set included.
    pub capabilities: &'static [&'static str],
    /// `no_new_privileges`: no setuid binary or file capability raises
    /// what a process may do.
    pub no_new_privileges: bool,
    /// The image's files are read-only while the sources are mounted; an
    /// upload needs the root writable, because the engines' archive API
    /// refuses to unpack into a read-only root.
    pub read_only_root: &'static str,
}

/// The one sandbox of every build.
pub const SANDBOX: Sandbox =
    Sandbox { capabilities: &[], no_new_privileges: true, read_only_root: "when the sources are mounted" };

/// The base environment, before the profile's and the manifest's variables.
///
/// `SOURCE_DATE_EPOCH` is added from the manifest.
pub fn base_env(source_date_epoch: u64) -> BTreeMap<String, String> {
    [
        ("HOME", HOME.to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        ("LC_ALL", "C.UTF-8".to_owned()),
        ("PATH", PATH.to_owned()),
        ("SOURCE_DATE_EPOCH", source_date_epoch.to_string()),
        ("TZ", "UTC".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Everything that shapes a build, resolved from manifest and profile.
///
/// repro.lock holds all of it ([`crate::lock::LockedBuild::from_plan`]).
/// Engine, kernel and host are deliberately not in it: they go into the
/// build record, so that a comparison can blame them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// Version of this structure's meaning.
    pub format: &'static str,
    /// The base image, as named in the manifest.
    pub image: String,
    /// The base image's rootfs digest, when known.
    pub image_rootfs: Option<Digest>,
    /// The profile, if any.
    pub profile: Option<String>,
    /// Toolchain packages: profile's and manifest's, sorted, without duplicates.
    pub packages: Vec<String>,
    /// The argv the container runs.
    pub command: Vec<String>,
    /// The complete environment of the build command.
    pub env: BTreeMap<String, String>,
    /// Working directory and source location.
    pub workdir: &'static str,
    /// `uid:gid` of the build command.
    pub user: String,
    /// The container's hostname.
    pub hostname: &'static str,
    /// The network mode.
    pub network: Network,
    /// Output paths relative to the working directory.
    pub outputs: Vec<String>,
    /// `SOURCE_DATE_EPOCH`, also the mtime of every source file.
    pub source_date_epoch: u64,
    /// Resource limits.
    pub limits: Limits,
    /// `umask` of the build command.
    pub umask: &'static str,
    /// Mounted as a fresh tmpfs.
    pub tmpfs: &'static str,
    /// What the container may do.
    pub sandbox: Sandbox,
}

impl BuildPlan {
    /// Resolves a manifest (and its profile, if it names one) into a plan;
    /// `source_date_epoch` is the manifest's policy, resolved.
    pub fn new(
        manifest: &Manifest,
        profile: Option<&Profile>,
        image_rootfs: Option<Digest>,
        source_date_epoch: u64,
    ) -> Self {
        let mut env = base_env(source_date_epoch);
        let mut packages: Vec<String> = manifest.toolchain.packages.clone();
        if let Some(profile) = profile {
            env.extend(profile.env.clone());
            packages.extend(profile.packages.iter().cloned());
        }
        env.extend(manifest.build.env.clone());
        packages.sort();
        packages.dedup();
        BuildPlan {
            format: "repro-run-plan-v1",
            image: manifest.image.name.clone(),
            image_rootfs,
            profile: manifest.toolchain.profile.clone(),
            packages,
            command: manifest.build.command.argv(),
            env,
            workdir: SOURCE_DIR,
            user: format!("{}:{}", manifest.build.user.0, manifest.build.user.1),
            hostname: HOSTNAME,
            network: manifest.build.network,
            outputs: manifest.build.outputs.clone(),
            source_date_epoch,
            limits: manifest.limits.clone(),
            umask: UMASK,
            tmpfs: "/tmp",
            sandbox: SANDBOX,
        }
    }

    /// The environment as `KEY=value` strings, sorted by key.
    pub fn env_list(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(env: &str) -> Manifest {
        Manifest::parse(&format!(
            "[image]\nname = \"busybox\"\n[toolchain]\npackages = [\"make\"]\n[build]\ncommand = \"true\"\noutputs = [\"o\"]\nenv = {{ {env} }}\n"
        ))
        .unwrap()
    }

    #[test]
    fn environment_is_base_then_profile_then_manifest() {
        let profile = Profile::parse("packages = [\"gcc\", \"make\"]\n[env]\nCFLAGS = \"-O1\"\nTZ = \"x\"\n").unwrap();
        let plan = BuildPlan::new(&manifest("CFLAGS = \"-O2\""), Some(&profile), None, 0);
        insta::assert_snapshot!(plan.env_list().join("\n"), @r"
        CFLAGS=-O2
        HOME=/home/build
        LANG=C.UTF-8
        LC_ALL=C.UTF-8
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        SOURCE_DATE_EPOCH=0
        TZ=x
        ");
        assert_eq!(plan.packages, ["gcc", "make"]);
    }
}

//! Command-line definitions. The doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use repro_run_core::size::ByteSize;

use crate::engine::EngineSelector;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    not reproducible (the builds differ), or repro.lock and repro.toml disagree
       (lock --check, build --locked)
  2    usage, manifest or lock error
  3    the container engine is unreachable or failed
  4    the build command failed (non-zero exit), or a declared output is missing or
       cannot be collected
  5    verify: the rebuild's environment is not the record's (env_id, base or
       toolchain rootfs, sources)
  130  interrupted by Ctrl-C or SIGTERM (containers are removed first)";

/// Hermetic, reproducible builds in Docker or Podman.
///
/// repro-run runs a project's build (described in repro.toml) inside a
/// container with a base image pinned by its rootfs digest, a fixed
/// toolchain, a fixed environment, fixed paths and no network, and hashes
/// every artifact into a build record.
#[derive(Debug, Parser)]
#[command(name = "repro-run", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The project's manifest.
    #[arg(long, global = true, value_name = "FILE", default_value = "repro.toml")]
    pub manifest: PathBuf,

    /// The container engine: `docker`, `podman`, or an endpoint such as
    /// unix:///run/podman/podman.sock. Default: DOCKER_HOST, else Docker's
    /// socket, else Podman's.
    #[arg(long, global = true, value_name = "ENGINE", env = "REPRO_RUN_ENGINE")]
    pub engine: Option<EngineSelector>,

    /// Show no progress and no build log on stderr (errors still show).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// More detail on stderr (-v, -vv, -vvv); REPRO_RUN_LOG takes a filter.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the build in a hermetic container and hash its artifacts.
    ///
    /// Reads the manifest and repro.lock beside it (locking first, as
    /// `repro-run lock` does, where there is none or repro.toml changed;
    /// see --locked), makes sure the base image and the toolchain image the
    /// lock pins exist (building a built-in base image on first use,
    /// preparing the toolchain from the package store), puts the project's files at
    /// /src as a normalised tree (see --sources), runs the command with the network off,
    /// an environment built from scratch, hostname `repro-run` and user
    /// 1000:1000, then copies the declared outputs into --out and writes the
    /// build record. Prints one `<blake3>  <path>` line per artifact on
    /// stdout (the format `b3sum --check` reads). The container is removed
    /// on every path, also on failure and on Ctrl-C.
    #[command(after_help = EXIT_CODES)]
    Build(BuildArgs),

    /// Resolve the toolchain, prepare it, and write repro.lock.
    ///
    /// repro.lock (beside the manifest) pins everything a build depends
    /// on: the base image by its rootfs digest, every installed package of
    /// the toolchain image (name, version, architecture; for the packages
    /// repro-run installs, the sha256 and size of the .deb), the toolchain
    /// image's rootfs digest, and every build setting. Its env_id is the
    /// blake3 of all of it (docs/lock.md). Commit it.
    ///
    /// Resolving runs apt in a container on the base image with the
    /// network on: the only container that gets it. Every .deb goes into
    /// the package store (XDG_CACHE_HOME/repro-run/packages, else
    /// ~/.cache/repro-run/packages), checked against its sha256; the
    /// toolchain image is then installed from the store with the network
    /// off, now and on every later machine. A lock whose base and toolchain
    /// still match repro.toml keeps its versions (a change to the build section
    /// only rewrites the build settings): relocking then needs no network,
    /// and with nothing changed it rewrites nothing.
    #[command(after_help = EXIT_CODES)]
    Lock(LockArgs),

    /// Rebuild from repro.lock and say whether the artifacts are the same.
    ///
    /// With --record, rebuilds once and compares with that record (and with
    /// its outputs, where they are still beside it); without, builds twice
    /// and compares the two. Every rebuild runs with the network off from
    /// the toolchain repro.lock pins, as `build --locked` does: a repro.toml
    /// that drifted from repro.lock is an error, not a relock (a project
    /// with no repro.lock yet is locked first).
    ///
    /// The report (stdout) says one of four outcomes, each with its own
    /// exit code: reproducible (0); the artifacts differ (1), each differing
    /// file named and explained from its bytes (a text diff; byte ranges
    /// with hex; gzip, xz, tar, zip, ar/.deb member by member; ELF
    /// sections) with a first guess at the cause; a build failed (4); the
    /// environment drifted from the record's (5), field by field. A verify
    /// that does not reproduce keeps every rebuild's out/, record.json and
    /// build.log in --keep and says where.
    ///
    /// With --vary, it varies what a build on another machine may differ
    /// in (build path, hostname, user, umask, time zone, locale, CPUs,
    /// environment, HOME, PATH, directory order, clock), each from the
    /// fixed setting to one recorded value, and names the variations that
    /// change the artifacts, with the files they change.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),

    /// Compare two build records, or two locks, and say what differs.
    ///
    /// Each difference is filed under what it blames: the base image, the
    /// toolchain (its rootfs and each package added, removed or changed,
    /// with versions), the build settings, the sources, the engine and
    /// host, and the artifacts. Which kind each file is comes from its
    /// content, not its name. Exit 0 when nothing differs, 1 when
    /// something does, 2 when a file is neither a record nor a lock, or
    /// the two are not of one kind.
    Diff(crate::commands::diff::DiffArgs),

    /// Write a starting repro.toml for the project found here.
    ///
    /// Looks beside --manifest for, in this order, Cargo.toml (profile
    /// rust), go.mod (go), pyproject.toml (python), configure or
    /// configure.ac (autotools, c), CMakeLists.txt (CMake, c), meson.build
    /// (Meson, c), GNUmakefile, makefile or Makefile (make, c), and
    /// package.json (npm, Debian's nodejs and npm), and writes a manifest on
    /// debian-bookworm that builds that kind of project; its comments say
    /// what to check. Never replaces an existing manifest unless --force is
    /// given.
    Init {
        /// Replace an existing manifest.
        #[arg(long)]
        force: bool,
    },

    /// Build, import, digest and list base images.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `repro-run build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Where the artifacts go; replaced only once the build succeeded.
    /// Default: repro-out/ beside the manifest.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Where the build record (JSON) goes; the log goes beside it, with the
    /// extension .log. Default: repro-out.json beside the manifest.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Build only from repro.lock as it is (for CI): if there is none, or
    /// repro.toml asks for anything it does not hold, exit 1 and name each
    /// drifted field instead of relocking.
    ///
    /// Without it, a build with no lock locks first, and a build whose
    /// repro.toml changed relocks, and says so.
    #[arg(long)]
    pub locked: bool,

    /// How the sources reach /src.
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// `repro-run verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The build record to verify (repro-out.json, as `build` writes it).
    /// Without it, verify builds twice and compares the builds.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// How many rebuilds: each is compared with the reference (the
    /// record, else the first rebuild), and they run side by side as far
    /// as the machine's cores allow. Default: 1 with --record, else 2.
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,

    /// Keep each rebuild's out/, record.json and build.log in DIR, also
    /// when it reproduces. Default: a verify that does not reproduce keeps
    /// them in repro-verify/ beside the manifest; one that does keeps
    /// nothing.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    /// The report's format on stdout: `text`; `json` (schema
    /// repro-run-verify-v1, or repro-run-vary-v1 with --vary,
    /// docs/verify.md); `junit` (one test case per artifact, the
    /// explanation in the failure); `markdown`; `html` (with --vary). A
    /// markdown report is also appended to $GITHUB_STEP_SUMMARY when that
    /// is set (not with --vary).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = VerifyFormat::Text)]
    pub format: VerifyFormat,

    /// Also hand each differing pair of files to diffoscope (where it is
    /// installed) and keep its text output beside the rebuilds; the report
    /// names each file.
    #[arg(long)]
    pub diffoscope: bool,

    /// Vary the build's settings and name what changes the artifacts:
    /// `all`, or names separated by commas (build-path, hostname, user,
    /// umask, timezone, locale, cpus, env, home, path, dir-order, clock);
    /// `-NAME` leaves one out (`--vary -clock` is all but the clock).
    /// Repeated, the lists add up: nothing resets the set.
    ///
    /// A control build (the fixed settings) runs twice: what differs
    /// between the two is not reproducible at all and blamed on nothing.
    /// Then one build has every variation; if it differs, halving finds
    /// the variations responsible (ddmin for ones that act only
    /// together). A variation this image or machine cannot apply (no
    /// other locale installed, one CPU, a static image for the clock) is
    /// reported as ineffective, not tested. docs/verify.md, "Variations",
    /// lists each value.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true, conflicts_with_all = ["record", "runs", "diffoscope"])]
    pub vary: Vec<String>,

    /// With --vary: how many builds may run at once when they do not
    /// depend on each other (the second control and the first
    /// experiment). Default: the machine's cores.
    #[arg(long, value_name = "N", requires = "vary")]
    pub jobs: Option<usize>,

    /// How the sources reach /src.
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// The formats of verify's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    /// For people: the outcome, then each rebuild and each differing file.
    Text,
    /// For programs: repro-run-verify-v1 (docs/verify.md).
    Json,
    /// JUnit XML: one test case per artifact.
    Junit,
    /// GitHub-flavoured markdown, as for a step summary.
    Markdown,
    /// With --vary: one self-contained HTML page (no script, no network).
    Html,
}

/// `repro-run lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Say whether repro.lock still matches repro.toml, and write nothing:
    /// exit 0 when it does, 1 (naming each drifted field) when not. Needs
    /// no engine.
    #[arg(long, conflicts_with_all = ["update", "export_store", "import_store"])]
    pub check: bool,

    /// Resolve anew with the mirror's current versions, even where the lock
    /// still matches repro.toml.
    #[arg(long)]
    pub update: bool,

    /// Never give a container the network: fail if the lock must be
    /// resolved, or the store lacks a locked package.
    #[arg(long)]
    pub offline: bool,

    /// After locking, write the locked packages' files and the base image's
    /// rootfs into FILE (a tar), for a machine whose mirror no longer has
    /// those versions, or that cannot build the base image.
    #[arg(long, value_name = "FILE")]
    pub export_store: Option<PathBuf>,

    /// Before locking, read FILE (made by --export-store): its packages go
    /// into the package store, each checked against its sha256, and its
    /// base image into the engine. With the lock that came with it, the
    /// lock then needs no network (see --offline).
    #[arg(long, value_name = "FILE")]
    pub import_store: Option<PathBuf>,
}

/// How the sources reach `/src`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// How the sources reach /src.
    ///
    /// `auto` (the default) is the right choice almost always: it mounts
    /// when the engine runs on this machine and uploads otherwise.
    ///
    /// `mount` puts the normalised tree on this machine's disk, kept for
    /// later builds (see --source-cache), and mounts it: as root, repro-run
    /// mounts it itself; as anyone else who reaches a local engine (the
    /// docker group, rootful Podman's socket), the engine keeps the tree in
    /// a volume and mounts it. The engine copies nothing per build. `upload`
    /// sends the normalised tar through the engine's archive API and works
    /// with any engine, also one on another machine. Either way the build
    /// sees the same files, owners, modes and mtimes, and the record gets
    /// the same source digest.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = SourceTransfer::Auto)]
    pub sources: SourceTransfer,

    /// Where mounted sources are staged (a private directory per build,
    /// removed when it ends, and the kept trees of --source-cache).
    /// Default: builds/ in repro-run's cache directory
    /// (XDG_CACHE_HOME/repro-run, else ~/.cache/repro-run).
    ///
    /// The build's own writes under /src and HOME land here too. A tmpfs
    /// such as /dev/shm is the fastest choice, but then those writes live
    /// in memory (and count against a memory limit) until the build ends.
    #[arg(long, value_name = "DIR", env = "REPRO_RUN_STAGE_DIR")]
    pub stage_dir: Option<PathBuf>,

    /// How much of the stage directory keeps source trees between builds
    /// (0 keeps none).
    ///
    /// A staged tree stays, named by its digest, and each build sees it
    /// through an overlay that takes the build's writes: a rebuild of
    /// unchanged sources (a second build to compare, a CI re-run) writes
    /// no source file. As root the trees are in trees/ in the stage
    /// directory; for anyone else they are the engine's volumes
    /// (repro-run-tree-*). The least recently used trees go when they add
    /// up to more than this; the one in use always stays.
    #[arg(long, value_name = "SIZE", env = "REPRO_RUN_SOURCE_CACHE", default_value = "2g")]
    pub source_cache: ByteSize,
}

/// How the sources reach the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceTransfer {
    /// Mount when the engine sees this machine's files, else upload.
    Auto,
    /// Stage on this machine and bind-mount; an error if the engine cannot see the files.
    Mount,
    /// Upload the normalised tar through the engine's archive API.
    Upload,
}

/// `repro-run image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make a base image from a recipe and print its rootfs digest.
    ///
    /// RECIPE is a built-in recipe (`busybox`, `debian-bookworm`) or a
    /// directory holding an executable `build-rootfs OUT.tar`. The rootfs is
    /// imported through the engine's import API and tagged
    /// repro-run/NAME:latest unless --tag says otherwise. Prints
    /// `<digest>  <tag>` on stdout.
    Build {
        /// A built-in recipe name or a recipe directory.
        recipe: String,
        /// The image's tag. A built-in recipe name stands for that
        /// recipe's image, as in a manifest (`busybox` is
        /// repro-run/busybox:latest).
        #[arg(long, value_name = "REPO:TAG")]
        tag: Option<String>,
    },

    /// Import a rootfs (a tar, a tar.gz, or a directory) as an image.
    ///
    /// Prints `<digest>  <tag>` on stdout.
    Import {
        /// A rootfs tarball (plain or gzip) or a directory.
        rootfs: PathBuf,
        /// The image's tag. A built-in recipe name stands for that
        /// recipe's image, as in a manifest: `--tag debian-bookworm` makes
        /// repro-run/debian-bookworm:latest, which manifests naming
        /// `debian-bookworm` then build on.
        #[arg(long, value_name = "REPO:TAG")]
        tag: String,
    },

    /// Print the rootfs digest (repro-tree-v1) of an image, a tarball or a
    /// directory.
    ///
    /// For an image, the export of a created, never-started container is
    /// streamed straight into the digest; the result is cached by the image
    /// id, so asking again is instant. A built-in recipe name (`busybox`,
    /// `debian-bookworm`) means what it means in a manifest: the recipe's
    /// image, repro-run/NAME:latest, made on first use as `build` makes it.
    /// Prints `<digest>  <image, tarball or directory>` on stdout.
    Digest {
        /// An image reference, a built-in recipe name, a rootfs tarball, or
        /// a directory (a file or directory of that name comes first).
        target: String,
        /// Recompute even when the digest is cached.
        #[arg(long)]
        no_cache: bool,
    },

    /// List repro-run's images (repro-run/*) with their rootfs digests.
    Ls,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_teaches() {
        // A fixed width, so the snapshot does not depend on the terminal.
        let help = Cli::command().term_width(100).render_long_help().to_string();
        insta::assert_snapshot!(help);
        let mut cmd = Cli::command().term_width(100);
        let build = cmd.find_subcommand_mut("build").unwrap().render_long_help().to_string();
        insta::assert_snapshot!(build);
        let lock = cmd.find_subcommand_mut("lock").unwrap().render_long_help().to_string();
        insta::assert_snapshot!(lock);
        let verify = cmd.find_subcommand_mut("verify").unwrap().render_long_help().to_string();
        insta::assert_snapshot!(verify);
        let diff = cmd.find_subcommand_mut("diff").unwrap().render_long_help().to_string();
        insta::assert_snapshot!(diff);
    }
}

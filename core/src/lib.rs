//! Pure logic of repro-run: what a build is, and how its inputs and outputs
//! are named and hashed. No container engine, no async, no network.
//!
//! # Layout
//!
//! - [`manifest`]: the `repro.toml` model; parse errors carry line and column.
//! - [`profile`]: toolchain profiles (packages and environment), merged with
//!   the manifest in a documented order.
//! - [`hermetic`]: the fixed container settings every build runs with (the
//!   environment built from scratch, hostname, user, paths, network).
//! - [`digest`]: the `repro-tree-v1` tree digest over tar streams,
//!   directories and entries handed over one by one
//!   ([`digest::TreeBuilder`]), and the [`digest::Digest`] type
//!   (`blake3:<hex>`).
//! - [`lock`]: the `repro.lock` model (`repro-lock-v1`): its canonical
//!   text, the `env_id`, drift against the manifest, and the comparison of
//!   the locked packages with an image's.
//! - [`record`]: the build record (what a build produced), as JSON.
//! - [`diff`]: two records, or two locks, compared into findings filed by
//!   what they blame (base, toolchain, packages, settings, engine, ...).
//! - [`engine`]: engine kinds, as a closed set.
//! - [`erofs`]: entries handed over one by one → an EROFS image (how kept
//!   source trees are stored).
//! - [`size`]: byte sizes as people write them (`512m`, `2g`).
//! - [`compare`]: two output trees → the paths that differ, each explained
//!   from its bytes (text, binary, gzip, xz, tar, zip, ar/deb, ELF), with a
//!   first guess at the cause.
//! - [`verify`]: verify's report (four outcomes, each rebuild, each
//!   difference) as text, JSON, JUnit and markdown.
//! - [`vary`]: `verify --vary`: the variations, the `--vary` set, the
//!   search for the variations responsible, and its report (text, JSON,
//!   one self-contained HTML page).
//! - [`packages`]: installed-package listings of dpkg, apk and rpm, and
//!   what apt says it would download or could not find.
//!
//! Everything that talks to an engine lives in the `repro-run` crate
//! (`runner/`): keeping this crate pure lets it be tested with fixed vectors
//! and reused by a non-local engine later.

pub mod compare;
pub mod diff;
pub mod digest;
pub mod engine;
pub mod erofs;
pub mod hermetic;
pub mod lock;
pub mod manifest;
pub mod packages;
pub mod profile;
pub mod record;
pub mod size;
pub mod vary;
pub mod verify;

mod span;

pub use span::LineCol;

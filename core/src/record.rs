//! The build record: what one build produced, as JSON.
//!
//! Records are what `verify` and `diff` compare, so the keys are stable
//! (`format` names the version). Artifact hashes are plain lowercase hex,
//! as `b3sum` and `sha256sum` print them, so that other tools can check them.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::digest::Digest;
use crate::engine::EngineKind;

/// The value of [`BuildRecord::format`].
pub const RECORD_FORMAT: &str = "repro-run-record-v1";

/// What a build produced, and under which conditions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// repro.lock's `env_id`: the digest of everything the lock pins
    /// (settings, base and toolchain images, packages).
    pub env_id: Digest,
    /// Tree digest (artifact variant) of the source tree as uploaded.
    pub source_digest: Digest,
    /// The argv that ran.
    pub command: Vec<String>,
    /// The build command's exit code.
    pub exit_code: i64,
    /// Every artifact, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// Tree digest (artifact variant) of the output directory.
    pub artifacts_digest: Digest,
    /// blake3 of the build log (stdout and stderr, as streamed).
    pub log_digest: Digest,
    /// The images the build ran on.
    pub image: ImageFacts,
    /// The engine that ran the build.
    pub engine: EngineFacts,
    /// The machine that ran the engine.
    pub host: HostFacts,
    /// How long each phase took.
    pub timings: Timings,
}

/// One output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to the output directory, `/`-separated. A name that is
    /// not UTF-8 shows each invalid sequence as U+FFFD here, and has its
    /// exact bytes in `path_bytes`.
    pub path: String,
    /// The path's bytes in hex, only when they are not UTF-8 (two such
    /// names can look alike in `path`; they never do here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<String>,
    /// Size in bytes (0 for symlinks).
    pub size: u64,
    /// Permission bits, as an octal string such as `0755`.
    pub mode: String,
    /// blake3 of the content, hex (for a symlink: of its target).
    pub blake3: String,
    /// sha256 of the content, hex (for a symlink: of its target).
    pub sha256: String,
    /// The target, for a symlink (shown like `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The target's bytes in hex, only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_bytes: Option<String>,
}

/// A name as the record shows it: its text, and its bytes in hex when they
/// are not UTF-8 (the text then has U+FFFD where the bytes were invalid).
pub fn text_and_bytes(raw: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(raw) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (String::from_utf8_lossy(raw).into_owned(), Some(hex::encode(raw))),
    }
}

/// The base and toolchain images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    /// The base image, as named in the manifest.
    pub name: String,
    /// The base image's rootfs digest.
    pub rootfs: Option<Digest>,
    /// The engine's id of the toolchain image the build ran on.
    pub toolchain_image_id: String,
    /// The toolchain image's rootfs digest, as repro.lock pins it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain_rootfs: Option<Digest>,
    /// Every package installed in the toolchain image (repro.lock's
    /// inventory), sorted: what `repro-run diff` compares.
    #[serde(default)]
    pub packages: Vec<crate::packages::InstalledPackage>,
}

/// Which engine ran the build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineFacts {
    /// Docker or Podman.
    pub kind: EngineKind,
    /// The engine's own version.
    pub version: String,
    /// The API version spoken.
    pub api_version: String,
}

/// The machine under the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Operating system, as the engine reports it.
    pub os: String,
    /// Architecture, as the engine reports it.
    pub arch: String,
    /// Kernel version, as the engine reports it.
    pub kernel: String,
}

/// Wall-clock time of each phase, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Finding or making the base and toolchain images.
    pub prepare_ms: u64,
    /// Walking the project and making the normalised sources: the tar to
    /// upload, the staged copy, or the kept tree found or written (the
    /// container is created meanwhile then, and counts here).
    pub source_ms: u64,
    /// Uploading the sources.
    pub upload_ms: u64,
    /// Running the build command.
    pub run_ms: u64,
    /// Downloading, extracting and hashing the outputs.
    pub collect_ms: u64,
    /// Removing the build container.
    pub remove_ms: u64,
    /// Everything.
    pub total_ms: u64,
}

/// Size, blake3 and sha256 of a stream, read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentHashes {
    /// Bytes read.
    pub size: u64,
    /// blake3, hex.
    pub blake3: String,
    /// sha256, hex.
    pub sha256: String,
}

/// blake3 and sha256 of content that arrives in pieces.
#[derive(Clone, Default)]
pub struct ContentHasher {
    b3: blake3::Hasher,
    s2: sha2::Sha256,
    size: u64,
}

impl ContentHasher {
    /// Adds the next piece.
    pub fn update(&mut self, piece: &[u8]) {
        self.b3.update(piece);
        self.s2.update(piece);
        self.size += piece.len() as u64;
    }

    /// The hashes of everything added.
    pub fn finish(self) -> ContentHashes {
        ContentHashes {
            size: self.size,
            blake3: self.b3.finalize().to_hex().to_string(),
            sha256: hex::encode(self.s2.finalize()),
        }
    }
}

/// Hashes everything `reader` yields with blake3 and sha256 in one pass.
pub fn hash_content(mut reader: impl Read) -> io::Result<ContentHashes> {
    let mut h = ContentHasher::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(h.finish())
}

impl BuildRecord {
    /// The record as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses a record.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_known_vectors() {
        let h = hash_content(&b"abc"[..]).unwrap();
        assert_eq!(h.size, 3);
        assert_eq!(h.blake3, "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
        assert_eq!(h.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn names_that_are_not_utf8_keep_their_bytes() {
        assert_eq!(text_and_bytes(b"out/hello"), ("out/hello".to_owned(), None));
        let (a, a_bytes) = text_and_bytes(b"out/n\xff");
        let (b, b_bytes) = text_and_bytes(b"out/n\xfe");
        // Alike as text, apart as bytes.
        assert_eq!(a, "out/n\u{fffd}");
        assert_eq!(a, b);
        assert_eq!(a_bytes.as_deref(), Some("6f75742f6eff"));
        assert_ne!(a_bytes, b_bytes);
        let artifact = Artifact {
            path: a,
            path_bytes: a_bytes,
            size: 0,
            mode: "0644".into(),
            blake3: String::new(),
            sha256: String::new(),
            link: None,
            link_bytes: None,
        };
        let json = serde_json::to_string(&artifact).unwrap();
        assert!(json.contains(r#""path_bytes":"6f75742f6eff""#), "{json}");
        assert!(!json.contains("link"), "{json}");
        assert_eq!(serde_json::from_str::<Artifact>(&json).unwrap(), artifact);
    }
}

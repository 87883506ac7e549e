//! Toolchain profiles: a named set of packages and environment variables.
//!
//! A profile is a small TOML file (`profiles/<name>.toml`):
//!
//! ```toml
//! description = "C with gcc and make"
//! packages = ["gcc", "make", "libc6-dev"]
//! [env]
//! CFLAGS = "-O2 -ffile-prefix-map=/src=."
//! ```
//!
//! The build environment is merged in this order, later wins: the hermetic
//! base ([`crate::hermetic`]), the profile's `env`, the manifest's
//! `[build] env`. Packages are the union of the profile's and the manifest's.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::manifest::ManifestError;
use crate::span::LineCol;

/// A parsed toolchain profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// One line saying what the profile is for.
    #[serde(default)]
    pub description: String,
    /// Packages the toolchain image must have.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Variables added to the build environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Profile {
    /// Parses the text of a profile file.
    pub fn parse(text: &str) -> Result<Profile, ManifestError> {
        toml::from_str(text).map_err(|e| ManifestError {
            at: e.span().map(|s| LineCol::of(text, s.start)),
            message: e.message().trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_packages_and_env() {
        let p = Profile::parse("packages = [\"gcc\"]\n[env]\nCFLAGS = \"-O2\"\n").unwrap();
        assert_eq!(p.packages, ["gcc"]);
        assert_eq!(p.env["CFLAGS"], "-O2");
        assert!(Profile::parse("pakages = []").unwrap_err().to_string().contains("unknown field `pakages`"));
    }
}

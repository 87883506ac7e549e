//! Toolchain profiles compiled into the binary (the files under `profiles/`),
//! so that a manifest's `profile = "c"` works wherever repro-run is installed.

use anyhow::{Context as _, Result};
use repro_run_core::profile::Profile;

const BUILTIN: &[(&str, &str)] = &[
    ("c", include_str!("../../profiles/c.toml")),
    ("go", include_str!("../../profiles/go.toml")),
    ("python", include_str!("../../profiles/python.toml")),
    ("rust", include_str!("../../profiles/rust.toml")),
];

/// The profile called `name`.
pub fn load(name: &str) -> Result<Profile> {
    let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        anyhow::bail!("unknown profile `{name}`: use one of {}", names.join(", "));
    };
    Profile::parse(text).with_context(|| format!("the built-in profile `{name}` is malformed"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_builtin_profile_parses() {
        for (name, _) in super::BUILTIN {
            let p = super::load(name).unwrap();
            assert!(!p.packages.is_empty(), "{name} has no packages");
        }
        assert_eq!(
            super::load("cobol").unwrap_err().to_string(),
            "unknown profile `cobol`: use one of c, go, python, rust"
        );
    }
}

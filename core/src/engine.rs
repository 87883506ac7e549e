//! Container engine kinds.

use std::fmt;
use std::str::FromStr;

/// The kind of container engine behind an API endpoint.
///
/// Both speak the Docker Engine API (Podman through its compatible socket);
/// the kind is recorded because engines differ in what they inject into
/// containers and exports, which `diff` can then blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    /// Docker (dockerd / moby).
    Docker,
    /// Podman, through its Docker-compatible API.
    Podman,
}

impl EngineKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EngineKind; 2] = [EngineKind::Docker, EngineKind::Podman];

    /// The lowercase name used on the command line and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string names no engine kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown engine kind `{0}`: expected `docker` or `podman`")]
pub struct UnknownEngineKind(pub String);

impl FromStr for EngineKind {
    type Err = UnknownEngineKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EngineKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownEngineKind(s.to_owned()))
    }
}

impl serde::Serialize for EngineKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EngineKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_name() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.to_string().parse::<EngineKind>(), Ok(kind));
        }
        assert_eq!(
            "dockerd".parse::<EngineKind>().unwrap_err().to_string(),
            "unknown engine kind `dockerd`: expected `docker` or `podman`"
        );
    }
}

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Identifier of one run: a UUIDv7, so IDs sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub uuid::Uuid);

impl Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl RunId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// Appends the 32 hex digits to `out` (what `Display` writes, without a formatter).
    pub fn write_to(&self, out: &mut String) {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        out.push_str(self.0.simple().encode_lower(&mut buf));
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl schemars::JsonSchema for RunId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RunId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "32 hex digits (a UUIDv7)" })
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        f.pad(self.0.simple().encode_lower(&mut buf))
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({self})")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a run id (expected 32 hex digits, as `baton runs list` prints)")]
pub struct ParseRunIdError(String);

impl FromStr for RunId {
    type Err = ParseRunIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseRunIdError(s.to_string()))
    }
}

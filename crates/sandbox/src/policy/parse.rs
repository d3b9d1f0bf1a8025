//! Parsing of policy values: sizes, durations, CPU and pids counts, lists and mounts.

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

pub(super) fn val_str(key: &str, v: &serde_json::Value) -> Result<String, Error> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(Error::InvalidPolicy(format!(
            "{key} must be a string or a number"
        ))),
    }
}

pub(super) fn string_list(key: &str, v: &serde_json::Value) -> Result<Vec<String>, Error> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::InvalidPolicy(format!("{key} must be a list of strings")))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(String::from)
                .ok_or_else(|| Error::InvalidPolicy(format!("{key} must be a list of strings")))
        })
        .collect()
}

pub(super) fn split_mount(s: &str) -> Result<(PathBuf, PathBuf), Error> {
    let (src, dst) = s.split_once(':').unwrap_or((s, s));
    let (src, dst) = (PathBuf::from(src), PathBuf::from(dst));
    if !src.is_absolute() || !dst.is_absolute() {
        return Err(Error::InvalidPolicy(format!(
            "readonly mount '{s}' must be absolute paths SRC[:DST]"
        )));
    }
    Ok((src, dst))
}

/// Parses a size: `1048576`, `512k`, `256M`, `1G` (binary units; a trailing `B`/`iB` is accepted).
pub fn parse_size(s: &str) -> Result<u64, Error> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| {
        Error::InvalidPolicy(format!(
            "bad size '{s}': expected a number with an optional k, M, G suffix"
        ))
    })?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(Error::InvalidPolicy(format!("bad size '{s}'")));
    }
    let v = n * mult as f64;
    if v > u64::MAX as f64 / 2.0 {
        return Err(Error::InvalidPolicy(format!("size '{s}' is too large")));
    }
    Ok(v as u64)
}

/// Parses a duration: `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs > 0.0 && secs < 1e9 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(Error::InvalidPolicy(format!("bad duration '{s}'")));
    }
    humantime::parse_duration(t)
        .map_err(|e| Error::InvalidPolicy(format!("bad duration '{s}': {e}")))
}

pub fn parse_cpus(s: &str) -> Result<f64, Error> {
    s.trim().parse::<f64>().map_err(|_| {
        Error::InvalidPolicy(format!(
            "bad cpu count '{s}': expected a number like 1 or 0.5"
        ))
    })
}

pub fn parse_pids(s: &str) -> Result<u32, Error> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| Error::InvalidPolicy(format!("bad pids limit '{s}': expected a whole number")))
}

pub(super) mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

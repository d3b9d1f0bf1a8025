//! Where Baton keeps files on disk, as a pure function of the environment (the caller passes
//! its lookup, so this stays free of I/O and is testable with any environment).

use std::ffi::OsString;
use std::path::PathBuf;

/// Where installed models live: `$BATON_MODELS_DIR`, else `$BATON_HOME/models`, else
/// `$XDG_DATA_HOME/baton/models`, else `$HOME/.local/share/baton/models`. Empty values count as
/// unset. The Makefile's `MODELS_DIR` computes the same path for `make model` and
/// `make model-embed`.
pub fn models_dir(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let get = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = get("BATON_MODELS_DIR") {
        return d;
    }
    if let Some(h) = get("BATON_HOME") {
        return h.join("models");
    }
    if let Some(x) = get("XDG_DATA_HOME") {
        return x.join("baton").join("models");
    }
    get("HOME")
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".local/share/baton/models")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(vars: &[(&str, &str)]) -> PathBuf {
        models_dir(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn models_dir_follows_the_documented_order() {
        let all = [
            ("BATON_MODELS_DIR", "/m"),
            ("BATON_HOME", "/b"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(dir(&all), PathBuf::from("/m"));
        assert_eq!(dir(&all[1..]), PathBuf::from("/b/models"));
        assert_eq!(dir(&all[2..]), PathBuf::from("/x/baton/models"));
        assert_eq!(
            dir(&all[3..]),
            PathBuf::from("/h/.local/share/baton/models")
        );
        assert_eq!(
            dir(&[("BATON_MODELS_DIR", ""), ("HOME", "/h")]),
            PathBuf::from("/h/.local/share/baton/models")
        );
    }
}

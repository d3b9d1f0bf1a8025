//! Loading and validating workflow documents.
//!
//! A file goes through four gates, and each reports every problem it finds with the file, the
//! line and column, and the field path (`steps[2].agent`):
//!
//! 1. **Reading**: size limit, UTF-8, YAML/JSON syntax, nesting depth, aliases (`yaml`).
//! 2. **Shape**: the JSON Schema of the format: unknown keys, wrong types, missing fields
//!    (`shape`). A document that passes is read with its steps as written.
//! 3. **Kinds**: each step becomes a typed [`baton_types::Step`] by the one table of which key
//!    goes with which kind: a step without a kind, with several, or with a key of another kind
//!    is refused here (`kinds`). Only a document that passes is [`Loaded`].
//! 4. **Meaning**: [`validate`]: ids, references to steps, agents, tools and models,
//!    reachability, loops, templates and expressions (`semantic`).

mod agent;
mod json;
mod kinds;
mod semantic;
mod shape;
mod suggest;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use baton_types::WorkflowDoc;

pub use agent::{AgentFile, load_agent, read_agent};
pub use semantic::{MAX_RETRIES, MAX_STEPS, validate};

/// Files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// How deeply lists and mappings may nest.
pub const MAX_DEPTH: usize = 64;

/// One problem in a workflow file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    /// Field path such as `steps[2].agent` or `agents.pm.model`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

/// Where each field of the document starts: field path -> (line, column), both 1-based.
/// A mapping entry is found at its key, a list item at its first character.
pub type SpanMap = BTreeMap<String, (u32, u32)>;

/// A document that was read, matches the format's schema, and whose steps each have one kind.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub doc: WorkflowDoc,
    /// The text of the file.
    pub source: String,
    /// The name used in diagnostics (the path as given).
    pub file: String,
    pub spans: SpanMap,
}

impl Loaded {
    /// The position of `path`, or of its nearest ancestor that has one; `(1, 1)` at worst.
    pub fn location(&self, path: &str) -> (u32, u32) {
        locate(&self.spans, path)
    }

    /// A diagnostic at `path`.
    pub fn diagnostic(&self, path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        diagnostic_at(&self.file, &self.spans, path.into(), message.into())
    }
}

pub(crate) fn locate(spans: &SpanMap, path: &str) -> (u32, u32) {
    let mut p = path;
    loop {
        if let Some(pos) = spans.get(p) {
            return *pos;
        }
        if p.is_empty() {
            return (1, 1);
        }
        p = parent_path(p);
    }
}

pub(crate) fn diagnostic_at(
    file: &str,
    spans: &SpanMap,
    path: String,
    message: String,
) -> Diagnostic {
    let (line, column) = locate(spans, &path);
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        path,
        message,
    }
}

/// `steps[2].agent` -> `steps[2]` -> `steps` -> ``.
fn parent_path(p: &str) -> &str {
    if p.ends_with(']') {
        // `[3]` or `["a.b"]`: find the bracket that opens it, outside quotes.
        let bytes = p.as_bytes();
        let mut in_quotes = false;
        let mut i = p.len();
        while i > 0 {
            i -= 1;
            match bytes[i] {
                b'"' if i == 0 || bytes[i - 1] != b'\\' => in_quotes = !in_quotes,
                b'[' if !in_quotes => return &p[..i],
                _ => {}
            }
        }
        return "";
    }
    match p.rfind(['.', ']']) {
        Some(i) if p.as_bytes()[i] == b']' => &p[..=i],
        Some(i) => &p[..i],
        None => "",
    }
}

/// `parent.key`, or `parent["odd key"]` when the key is not a plain word.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !plain {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        return format!("{parent}[{quoted}]");
    }
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn index_path(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Reads, parses, schema-checks and types a workflow file.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let whole = |message: String| {
        vec![Diagnostic {
            file: name.clone(),
            line: 1,
            column: 1,
            path: String::new(),
            message,
        }]
    };
    let file =
        std::fs::File::open(path).map_err(|e| whole(format!("cannot open the file: {e}")))?;
    if let Ok(meta) = file.metadata() {
        if meta.is_dir() {
            return Err(whole("this is a directory, not a workflow file".into()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(whole(too_big(meta.len())));
        }
    }
    // The size can change between the check and the read (or lie, for special files): never
    // read more than the limit.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(format!("cannot read the file: {e}")))?;
    load_bytes(&name, &bytes)
}

fn too_big(len: u64) -> String {
    format!(
        "the file is too large ({:.1} MB); workflow files are limited to {} MB",
        len as f64 / (1024.0 * 1024.0),
        MAX_FILE_BYTES / (1024 * 1024)
    )
}

/// Parses, schema-checks and types a workflow given as bytes (YAML or JSON); `file` names it in
/// diagnostics.
pub fn load_bytes(file: &str, bytes: &[u8]) -> Result<Loaded, Vec<Diagnostic>> {
    let text = text_of(file, bytes)?;
    let (value, spans) = read_value(file, text)?;
    let written = shape::check(file, &value, &spans)?;
    let doc = kinds::check(file, written, &spans)?;
    Ok(Loaded {
        doc,
        source: text.to_string(),
        file: file.to_string(),
        spans,
    })
}

/// The text of a document: within the size limit, UTF-8, without a byte order mark.
fn text_of<'b>(file: &str, bytes: &'b [u8]) -> Result<&'b str, Vec<Diagnostic>> {
    let whole = |line: u32, column: u32, message: String| {
        vec![Diagnostic {
            file: file.to_string(),
            line,
            column,
            path: String::new(),
            message,
        }]
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(whole(1, 1, too_big(bytes.len() as u64)));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let (line, column) = line_col_of_byte(bytes, at);
            return Err(whole(
                line,
                column,
                format!(
                    "the file is not valid UTF-8: invalid byte 0x{:02X} at byte offset {at} (line {line}, column {column}); save it as UTF-8",
                    bytes.get(at).copied().unwrap_or(0)
                ),
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Ok(text)
}

/// The document in `text` as a JSON value, before any check (YAML is read as JSON): for a
/// caller that changes a document and loads the result again (a fork's `--model`).
pub fn document_value(file: &str, text: &str) -> Result<serde_json::Value, Vec<Diagnostic>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    read_value(file, text).map(|(v, _)| v)
}

/// YAML first (it reads JSON too, with positions); JSON that the YAML reader refuses (a few
/// escapes YAML lacks, such as surrogate pairs) is read again by serde_json.
fn read_value(file: &str, text: &str) -> Result<(serde_json::Value, SpanMap), Vec<Diagnostic>> {
    let looks_like_json = text.trim_start().starts_with(['{', '[']);
    match yaml::parse(file, text) {
        Ok(v) => Ok(v),
        Err(yaml_errors) if looks_like_json => match json::parse(file, text) {
            Ok(v) => Ok(v),
            Err(json_errors) => {
                // Both readers refused it; when the YAML reader stopped on something that is not
                // JSON syntax (a duplicate key, depth), its message is the precise one.
                if yaml_errors
                    .iter()
                    .any(|d| d.message.starts_with("duplicate key") || d.message.contains("nested"))
                {
                    Err(yaml_errors)
                } else {
                    Err(json_errors)
                }
            }
        },
        Err(e) => Err(e),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col_of_byte(bytes: &[u8], at: usize) -> (u32, u32) {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (to_u32(line), to_u32(column))
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Everything [`validate`] checks names against.
pub struct ValidationEnv<'a> {
    pub tools: &'a baton_tools::Registry,
    /// `None`: model references are not checked.
    pub models: Option<&'a dyn baton_llm::ModelResolver>,
}

/// [`load_file`], then [`validate`]: the document only when it has no problem at all.
pub fn load_and_validate(path: &Path, env: &ValidationEnv) -> Result<Loaded, Vec<Diagnostic>> {
    let loaded = load_file(path)?;
    let diagnostics = validate(&loaded, env);
    if diagnostics.is_empty() {
        Ok(loaded)
    } else {
        Err(diagnostics)
    }
}

/// The JSON Schema of the workflow format, pretty-printed (`baton schema`): the one loading
/// checks against, so editors flag what `baton validate` would.
pub fn schema_json() -> String {
    serde_json::to_string_pretty(shape::schema()).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("steps[2].agent"), "steps[2]");
        assert_eq!(parent_path("steps[2]"), "steps");
        assert_eq!(parent_path("steps"), "");
        assert_eq!(parent_path("steps[0].with[\"a.b\"]"), "steps[0].with");
        assert_eq!(parent_path("steps[0].with[\"a[1]\"]"), "steps[0].with");
        assert_eq!(parent_path("agents.pm.model"), "agents.pm");
    }

    #[test]
    fn key_paths_quote_odd_keys() {
        assert_eq!(key_path("", "steps"), "steps");
        assert_eq!(key_path("steps[0]", "with"), "steps[0].with");
        assert_eq!(key_path("steps[0].with", "a.b"), "steps[0].with[\"a.b\"]");
    }

    #[test]
    fn location_falls_back_to_ancestors() {
        let mut spans = SpanMap::new();
        spans.insert("steps".into(), (3, 1));
        spans.insert("steps[1]".into(), (7, 5));
        assert_eq!(locate(&spans, "steps[1].agent"), (7, 5));
        assert_eq!(locate(&spans, "steps[4].agent"), (3, 1));
        assert_eq!(locate(&spans, "name"), (1, 1));
    }

    #[test]
    fn display_format() {
        let d = Diagnostic {
            file: "w.yaml".into(),
            line: 3,
            column: 5,
            path: "steps[0].agent".into(),
            message: "unknown agent `x`".into(),
        };
        assert_eq!(
            d.to_string(),
            "w.yaml:3:5: error: unknown agent `x` (at steps[0].agent)"
        );
        let d = Diagnostic {
            path: String::new(),
            ..d
        };
        assert_eq!(d.to_string(), "w.yaml:3:5: error: unknown agent `x`");
    }

    #[test]
    fn utf8_errors_say_where() {
        let e = load_bytes("w.yaml", b"version: 1\nname: \xff\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (2, 7));
        assert!(e[0].message.contains("byte offset 17"), "{}", e[0].message);
    }
}

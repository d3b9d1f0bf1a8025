//! A positioned YAML reader: the events of `yaml-rust2`'s parser become a JSON value and a map
//! from field path to line and column. Plain scalars are resolved like YAML 1.2's core schema
//! (null, booleans, integers, floats, else strings); quoted and block scalars stay strings.

use std::collections::HashMap;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use self::scalar::{scalar, short_handle};
use super::{Diagnostic, MAX_DEPTH, SpanMap, index_path, key_path, to_u32};

mod scalar;

/// How many values aliases may expand to in all, to refuse "billion laughs" documents.
const MAX_ALIAS_VALUES: usize = 100_000;

const CORE_TAG: &str = "tag:yaml.org,2002:";

pub(super) fn parse(file: &str, text: &str) -> Result<(Value, SpanMap), Vec<Diagnostic>> {
    let mut reader = Reader {
        file,
        spans: SpanMap::new(),
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        alias_values: 0,
        errors: Vec::new(),
        documents: 0,
    };
    // The parser is third-party code fed with untrusted text: a panic in it must become a
    // diagnostic, not a crash.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.run(text)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(d)) => reader.errors.push(d),
        Err(_) => reader.errors.push(Diagnostic {
            file: file.to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "the YAML parser failed on this file; check its syntax".into(),
        }),
    }
    if !reader.errors.is_empty() {
        return Err(reader.errors);
    }
    match reader.root {
        Some(v) => Ok((v, reader.spans)),
        None => Err(vec![Diagnostic {
            file: file.to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "the file is empty: a workflow needs at least `version`, `name` and `steps`"
                .into(),
        }]),
    }
}

enum Frame {
    Seq {
        path: String,
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        path: String,
        map: Map<String, Value>,
        /// The key read last, waiting for its value.
        key: Option<String>,
        /// Where each key was, for duplicate-key messages.
        key_pos: HashMap<String, (u32, u32)>,
        anchor: usize,
        /// A mapping that is a list item is located at its first key.
        locate_at_first_key: bool,
    },
}

struct Reader<'f> {
    file: &'f str,
    spans: SpanMap,
    stack: Vec<Frame>,
    root: Option<Value>,
    anchors: HashMap<usize, (Value, usize, usize)>,
    alias_values: usize,
    errors: Vec<Diagnostic>,
    documents: usize,
}

fn pos(m: &Marker) -> (u32, u32) {
    (to_u32(m.line()), to_u32(m.col() + 1))
}

/// Where the next node goes.
enum Slot {
    Root,
    Item(String),
    Value(String),
    Key,
}

impl Reader<'_> {
    fn error(&self, at: (u32, u32), path: &str, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.to_string(),
            line: at.0,
            column: at.1,
            path: path.to_string(),
            message,
        }
    }

    fn run(&mut self, text: &str) -> Result<(), Diagnostic> {
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, mark) = match parser.next_token() {
                Ok(e) => e,
                Err(e) => {
                    let at = pos(e.marker());
                    return Err(self.error(at, "", format!("YAML syntax error: {}", e.info())));
                }
            };
            let at = pos(&mark);
            match event {
                Event::StreamEnd => return Ok(()),
                Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
                Event::DocumentStart => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(self.error(at, "", "a workflow file holds one YAML document; remove the second one (after `---`)".into()));
                    }
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.on_scalar(text, style, anchor, tag, at)?;
                }
                Event::SequenceStart(anchor, tag) => self.on_start(false, anchor, tag, at)?,
                Event::MappingStart(anchor, tag) => self.on_start(true, anchor, tag, at)?,
                Event::SequenceEnd | Event::MappingEnd => self.on_end(at)?,
                Event::Alias(id) => self.on_alias(id, at)?,
            }
        }
    }

    fn on_scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<Tag>,
        at: (u32, u32),
    ) -> Result<(), Diagnostic> {
        let slot = self.slot();
        if let Slot::Key = slot {
            if tag.is_some() {
                return Err(self.error(
                    at,
                    &self.current_path(),
                    "tags are not supported on keys".into(),
                ));
            }
            return self.push_key(text, at);
        }
        let path = self.slot_path(&slot);
        self.spans.entry(path.clone()).or_insert(at);
        let value = scalar(&text, style, tag.as_ref()).map_err(|m| self.error(at, &path, m))?;
        self.complete(value, anchor, at)
    }

    /// A list or mapping starts.
    fn on_start(
        &mut self,
        is_map: bool,
        anchor: usize,
        tag: Option<Tag>,
        at: (u32, u32),
    ) -> Result<(), Diagnostic> {
        let in_item = matches!(self.slot(), Slot::Item(_) | Slot::Root);
        let path = self.value_path(at, "a key must be a plain string, not a list or mapping")?;
        if let Some(t) = tag.as_ref() {
            let ok = t.handle == CORE_TAG && t.suffix == if is_map { "map" } else { "seq" };
            if !ok {
                return Err(self.error(
                    at,
                    &path,
                    format!("unsupported tag `{}{}`", short_handle(t), t.suffix),
                ));
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(at, top_key(&path), format!("the document is nested too deeply (more than {MAX_DEPTH} levels of lists and mappings)")));
        }
        // A mapping that is a list item (or the document) is found at its first key.
        let item_map = is_map && in_item;
        if !item_map {
            self.spans.entry(path.clone()).or_insert(at);
        }
        self.stack.push(if is_map {
            Frame::Map {
                path,
                map: Map::new(),
                key: None,
                key_pos: HashMap::new(),
                anchor,
                locate_at_first_key: item_map,
            }
        } else {
            Frame::Seq {
                path,
                items: Vec::new(),
                anchor,
            }
        });
        Ok(())
    }

    /// A list or mapping ends.
    fn on_end(&mut self, at: (u32, u32)) -> Result<(), Diagnostic> {
        let Some(frame) = self.stack.pop() else {
            return Err(self.error(
                at,
                "",
                "YAML syntax error: unbalanced end of a list or mapping".into(),
            ));
        };
        let (value, anchor) = match frame {
            Frame::Seq { items, anchor, .. } => (Value::Array(items), anchor),
            Frame::Map {
                map,
                anchor,
                locate_at_first_key,
                path,
                ..
            } => {
                if locate_at_first_key {
                    self.spans.entry(path).or_insert(at);
                }
                (Value::Object(map), anchor)
            }
        };
        self.complete(value, anchor, at)
    }

    fn on_alias(&mut self, id: usize, at: (u32, u32)) -> Result<(), Diagnostic> {
        let path = self.value_path(at, "an alias cannot be used as a key")?;
        self.spans.entry(path.clone()).or_insert(at);
        let Some((value, count, depth)) = self.anchors.get(&id).cloned() else {
            return Err(self.error(at, &path, "alias to an unknown anchor".into()));
        };
        self.alias_values = self.alias_values.saturating_add(count);
        if self.alias_values > MAX_ALIAS_VALUES {
            return Err(self.error(at, &path, format!("aliases expand to more than {MAX_ALIAS_VALUES} values; refusing the document (an alias bomb?)")));
        }
        if self.stack.len() + depth > MAX_DEPTH {
            return Err(self.error(at, top_key(&path), format!("the document is nested too deeply (more than {MAX_DEPTH} levels of lists and mappings)")));
        }
        self.complete(value, 0, at)
    }

    /// The path of the value that starts here; where a key is expected, `not_a_key` is the error.
    fn value_path(&self, at: (u32, u32), not_a_key: &str) -> Result<String, Diagnostic> {
        let slot = self.slot();
        if let Slot::Key = slot {
            return Err(self.error(at, &self.current_path(), not_a_key.into()));
        }
        Ok(self.slot_path(&slot))
    }

    fn slot(&self) -> Slot {
        match self.stack.last() {
            None => Slot::Root,
            Some(Frame::Seq { path, items, .. }) => Slot::Item(index_path(path, items.len())),
            Some(Frame::Map {
                path, key: Some(k), ..
            }) => Slot::Value(key_path(path, k)),
            Some(Frame::Map { key: None, .. }) => Slot::Key,
        }
    }

    fn slot_path(&self, slot: &Slot) -> String {
        match slot {
            Slot::Root | Slot::Key => self.current_path(),
            Slot::Item(p) | Slot::Value(p) => p.clone(),
        }
    }

    fn current_path(&self) -> String {
        match self.stack.last() {
            Some(Frame::Seq { path, .. }) | Some(Frame::Map { path, .. }) => path.clone(),
            None => String::new(),
        }
    }

    fn push_key(&mut self, key: String, at: (u32, u32)) -> Result<(), Diagnostic> {
        let mut duplicate = None;
        if let Some(Frame::Map {
            path,
            key: slot,
            key_pos,
            locate_at_first_key,
            ..
        }) = self.stack.last_mut()
        {
            let kp = key_path(path, &key);
            if *locate_at_first_key {
                self.spans.entry(path.clone()).or_insert(at);
                *locate_at_first_key = false;
            }
            if let Some(first) = key_pos.get(&key) {
                duplicate = Some((kp, *first));
            } else {
                key_pos.insert(key.clone(), at);
                self.spans.insert(kp, at);
            }
            *slot = Some(key.clone());
        }
        if let Some((kp, first)) = duplicate {
            // Keep reading: every duplicate is reported, the document is refused at the end.
            let d = self.error(
                at,
                &kp,
                format!(
                    "duplicate key `{key}` (first given at line {}, column {})",
                    first.0, first.1
                ),
            );
            self.errors.push(d);
        }
        Ok(())
    }

    /// A node is finished: store it under its anchor and put it in its parent.
    fn complete(&mut self, value: Value, anchor: usize, at: (u32, u32)) -> Result<(), Diagnostic> {
        if anchor != 0 {
            let (count, depth) = measure(&value);
            self.anchors.insert(anchor, (value.clone(), count, depth));
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, path, .. }) => match key.take() {
                Some(k) => {
                    if !map.contains_key(&k) {
                        map.insert(k, value);
                    }
                }
                None => {
                    let path = path.clone();
                    return Err(self.error(
                        at,
                        &path,
                        "YAML syntax error: a value without a key".into(),
                    ));
                }
            },
        }
        Ok(())
    }
}

/// Number of values in `v` and how deeply it nests.
fn measure(v: &Value) -> (usize, usize) {
    match v {
        Value::Array(a) => a.iter().map(measure).fold((1, 1), |(c, d), (c2, d2)| {
            (c.saturating_add(c2), d.max(d2 + 1))
        }),
        Value::Object(o) => o.values().map(measure).fold((1, 1), |(c, d), (c2, d2)| {
            (c.saturating_add(c2), d.max(d2 + 1))
        }),
        _ => (1, 0),
    }
}

/// The first key of a path (`steps[0][0]...` -> `steps`): depth errors would otherwise carry
/// a path as long as the nesting.
pub(super) fn top_key(path: &str) -> &str {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    &path[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::scalar::resolve_plain;
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> (Value, SpanMap) {
        parse("t.yaml", text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn err(text: &str) -> Vec<Diagnostic> {
        parse("t.yaml", text).unwrap_err()
    }

    #[test]
    fn core_schema_resolution() {
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain(""), Value::Null);
        assert_eq!(resolve_plain("True"), json!(true));
        assert_eq!(resolve_plain("yes"), json!("yes"));
        assert_eq!(resolve_plain("12"), json!(12));
        assert_eq!(resolve_plain("-3"), json!(-3));
        assert_eq!(resolve_plain("0x1F"), json!(31));
        assert_eq!(resolve_plain("0o17"), json!(15));
        assert_eq!(resolve_plain("1.5"), json!(1.5));
        assert_eq!(resolve_plain("1e3"), json!(1000.0));
        assert_eq!(resolve_plain(".5"), json!(0.5));
        assert_eq!(resolve_plain("."), json!("."));
        assert_eq!(resolve_plain("1.2.3"), json!("1.2.3"));
        assert_eq!(resolve_plain(".inf"), json!(".inf"));
        assert_eq!(
            resolve_plain("18446744073709551616"),
            json!(18446744073709551616.0)
        );
        assert_eq!(resolve_plain("10s"), json!("10s"));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let (v, _) = ok("a: '12'\nb: \"true\"\nc: !!str 5\nd: |\n  x\n");
        assert_eq!(v, json!({"a": "12", "b": "true", "c": "5", "d": "x\n"}));
    }

    #[test]
    fn spans_point_at_keys_and_items() {
        let (_, spans) = ok("name: x\nsteps:\n  - id: a\n    agent: b\n  - 7\n");
        assert_eq!(spans.get("name"), Some(&(1, 1)));
        assert_eq!(spans.get("steps"), Some(&(2, 1)));
        assert_eq!(spans.get("steps[0]"), Some(&(3, 5)));
        assert_eq!(spans.get("steps[0].agent"), Some(&(4, 5)));
        assert_eq!(spans.get("steps[1]"), Some(&(5, 5)));
    }

    #[test]
    fn json_reads_with_positions() {
        let (v, spans) = ok("{\n  \"name\": \"x\",\n  \"steps\": [{\"id\": \"a\"}]\n}\n");
        assert_eq!(v, json!({"name": "x", "steps": [{"id": "a"}]}));
        assert_eq!(spans.get("steps"), Some(&(3, 3)));
        assert_eq!(spans.get("steps[0].id"), Some(&(3, 14)));
    }

    #[test]
    fn duplicate_keys_are_all_reported() {
        let e = err("a: 1\nb: 2\na: 3\nb: 4\n");
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].line, e[0].column), (3, 1));
        assert!(
            e[0].message
                .contains("duplicate key `a` (first given at line 1, column 1)"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn depth_is_limited() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let e = err(&deep);
        assert!(
            e[0].message.contains("nested too deeply"),
            "{}",
            e[0].message
        );
        assert_eq!((e[0].line, e[0].column), (1, 65));
    }

    #[test]
    fn aliases_expand_within_limits() {
        let (v, _) = ok("a: &x {k: 1}\nb: *x\n");
        assert_eq!(v, json!({"a": {"k": 1}, "b": {"k": 1}}));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        let e = err(&bomb);
        assert!(e[0].message.contains("alias bomb"), "{}", e[0].message);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = err("a: [1, 2\nb: 3\n");
        assert!(
            e[0].message.starts_with("YAML syntax error"),
            "{}",
            e[0].message
        );
        assert_eq!(e[0].line, 2);
        let e = err("a: 1\n---\nb: 2\n");
        assert!(
            e[0].message.contains("one YAML document"),
            "{}",
            e[0].message
        );
        let e = err("? [a]\n: 1\n");
        assert!(
            e[0].message.contains("key must be a plain string"),
            "{}",
            e[0].message
        );
        let e = err("a: !custom 1\n");
        assert!(
            e[0].message.contains("unsupported tag `!custom`")
                || e[0].message.contains("unsupported tag"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn empty_file() {
        let e = err("# only a comment\n");
        assert!(
            e[0].message.contains("the file is empty"),
            "{}",
            e[0].message
        );
    }
}

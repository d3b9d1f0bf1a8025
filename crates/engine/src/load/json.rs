//! The JSON fallback: serde_json reads what the YAML reader refuses (JSON escapes YAML lacks,
//! such as surrogate pairs), and a small scanner finds where each field of that (valid) JSON
//! text starts.

use serde_json::Value;

use super::{Diagnostic, MAX_DEPTH, SpanMap, index_path, key_path, to_u32};

pub(super) fn parse(file: &str, text: &str) -> Result<(Value, SpanMap), Vec<Diagnostic>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        vec![Diagnostic {
            file: file.to_string(),
            line: to_u32(e.line().max(1)),
            column: to_u32(e.column().max(1)),
            path: String::new(),
            message: format!("JSON syntax error: {}", strip_position(&e.to_string())),
        }]
    })?;
    let spans = spans(text).map_err(|(line, column)| {
        vec![Diagnostic {
            file: file.to_string(),
            line,
            column,
            path: String::new(),
            message: format!("the document is nested too deeply (more than {MAX_DEPTH} levels of lists and mappings)"),
        }]
    })?;
    Ok((value, spans))
}

/// serde_json appends " at line L column C"; the diagnostic carries the position already.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

enum Ctx {
    Object { path: String, key: Option<String> },
    Array { path: String, next: usize },
}

/// Where the values of the lists and mappings being read go.
#[derive(Default)]
struct Scanner {
    spans: SpanMap,
    stack: Vec<Ctx>,
}

impl Scanner {
    /// A value starts at `at`: its path (a list item is recorded there), or `None` when an
    /// object waits for its key instead.
    fn value_starts(&mut self, at: (u32, u32)) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Ctx::Array { path, next }) => {
                let p = index_path(path, *next);
                *next += 1;
                self.spans.entry(p.clone()).or_insert(at);
                Some(p)
            }
            Some(Ctx::Object { path, key: Some(k) }) => Some(key_path(path, k)),
            Some(Ctx::Object { key: None, .. }) => None,
        }
    }

    /// A value ended: the object it is in waits for its next key.
    fn value_ends(&mut self) {
        if let Some(Ctx::Object { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }

    /// A string at `at`: a key of the object being read, or a value.
    fn string(&mut self, raw: &str, at: (u32, u32)) {
        if let Some(Ctx::Object {
            path,
            key: slot @ None,
        }) = self.stack.last_mut()
        {
            let key: String = serde_json::from_str(raw).unwrap_or_default();
            self.spans.entry(key_path(path, &key)).or_insert(at);
            *slot = Some(key);
        } else {
            self.value_starts(at);
            self.value_ends();
        }
    }
}

/// Positions of the fields of a valid JSON text; `Err` with the position where nesting went
/// beyond [`MAX_DEPTH`].
fn spans(text: &str) -> Result<SpanMap, (u32, u32)> {
    let mut scan = Scanner::default();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    while i < chars.len() {
        let c = chars[i];
        let at = (line, col);
        match c {
            '{' | '[' => {
                let path = scan.value_starts(at).unwrap_or_default();
                if scan.stack.len() >= MAX_DEPTH {
                    return Err(at);
                }
                scan.stack.push(if c == '{' {
                    Ctx::Object { path, key: None }
                } else {
                    Ctx::Array { path, next: 0 }
                });
            }
            '}' | ']' => {
                scan.stack.pop();
                scan.value_ends();
            }
            '"' => {
                let start = i;
                i = string_end(&chars, i);
                let raw: String = chars[start..=i.min(chars.len() - 1)].iter().collect();
                col += to_u32(i - start);
                scan.string(&raw, at);
            }
            ',' | ':' => {}
            c if c.is_whitespace() => {}
            _ => {
                // A number, `true`, `false` or `null`: runs to the next delimiter.
                scan.value_starts(at);
                scan.value_ends();
                while i + 1 < chars.len()
                    && !matches!(chars[i + 1], ',' | '}' | ']')
                    && !chars[i + 1].is_whitespace()
                {
                    i += 1;
                    col += 1;
                }
            }
        }
        if chars.get(i) == Some(&'\n') {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
        i += 1;
    }
    Ok(scan.spans)
}

/// The index of the quote that closes the string opening at `start`.
fn string_end(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < chars.len() && chars[i] != '"' {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn surrogate_pairs_and_positions() {
        let text = "{\n  \"name\": \"smile \\ud83d\\ude00\",\n  \"steps\": [\n    {\"id\": \"a\", \"n\": [1, {\"x\": true}]}\n  ]\n}";
        let (v, spans) = parse("w.json", text).unwrap();
        assert_eq!(v["name"], json!("smile 😀"));
        assert_eq!(spans.get("name"), Some(&(2, 3)));
        assert_eq!(spans.get("steps"), Some(&(3, 3)));
        assert_eq!(spans.get("steps[0]"), Some(&(4, 5)));
        assert_eq!(spans.get("steps[0].id"), Some(&(4, 6)));
        assert_eq!(spans.get("steps[0].n[1].x"), Some(&(4, 27)));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("w.json", "{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();
        assert_eq!((e[0].line, e[0].column), (3, 7));
        assert_eq!(e[0].message, "JSON syntax error: expected `:`");
    }
}

//! The globs of policy rules: `*` (any run of characters), `?` (one character), `[abc]`,
//! `[a-z]`, `[!abc]` (one character of a set, or not of it), `\` (the next character as
//! written). In path globs (`paths:`) `*` and `?` stop at `/`, `**` crosses folders, and
//! `**/` also matches no folder at all (`**/x.py` matches `x.py`). Elsewhere `/` is a
//! character like any other (`curl *` matches `curl https://a/b`).

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` (path globs only)
    Deep,
    /// `**/` (path globs only): nothing, or anything ending in `/`.
    DeepDir,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob.
#[derive(Clone, PartialEq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    paths: bool,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl Glob {
    /// A glob over names, commands, hosts or values: `/` is an ordinary character.
    pub fn text(pattern: &str) -> Result<Glob, String> {
        Glob::compile(pattern, false)
    }

    /// A glob over workspace paths: `*` stays within one folder, `**` crosses folders.
    pub fn path(pattern: &str) -> Result<Glob, String> {
        Glob::compile(pattern, true)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the glob has a wildcard (without one it matches only its own text).
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Char(_)))
    }

    fn compile(pattern: &str, paths: bool) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("the glob is empty".into());
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    let c = chars.get(i + 1).ok_or_else(|| {
                        format!("`{pattern}` ends with `\\`, which escapes nothing")
                    })?;
                    tokens.push(Token::Char(*c));
                    i += 2;
                }
                '?' => {
                    tokens.push(Token::One);
                    i += 1;
                }
                '*' => {
                    let mut n = 0;
                    while chars.get(i + n) == Some(&'*') {
                        n += 1;
                    }
                    if n > 2 {
                        return Err(format!("`{pattern}` has {n} `*` in a row: use `*` or `**`"));
                    }
                    i += n;
                    if !paths || n == 1 {
                        tokens.push(Token::Star);
                    } else if chars.get(i) == Some(&'/') {
                        tokens.push(Token::DeepDir);
                        i += 1;
                    } else {
                        tokens.push(Token::Deep);
                    }
                }
                '[' => {
                    let (token, next) =
                        class(&chars, i).map_err(|m| format!("`{pattern}`: {m}"))?;
                    tokens.push(token);
                    i = next;
                }
                c => {
                    tokens.push(Token::Char(c));
                    i += 1;
                }
            }
        }
        Ok(Glob {
            source: pattern.to_string(),
            tokens,
            paths,
        })
    }

    /// Whether `text` matches the whole glob.
    pub fn matches(&self, text: &str) -> bool {
        let s: Vec<char> = text.chars().collect();
        // can[j]: the tokens seen so far can match s[..j].
        let mut can = vec![false; s.len() + 1];
        can[0] = true;
        for t in &self.tokens {
            let mut next = vec![false; s.len() + 1];
            match t {
                Token::Star | Token::Deep => {
                    let crosses = matches!(t, Token::Deep) || !self.paths;
                    let mut on = false;
                    for j in 0..=s.len() {
                        if can[j] {
                            on = true;
                        } else if j > 0 && !crosses && s[j - 1] == '/' {
                            on = false;
                        }
                        next[j] = on;
                    }
                }
                Token::DeepDir => {
                    for j in 0..=s.len() {
                        if can[j] {
                            next[j] = true;
                            for (k, c) in s.iter().enumerate().skip(j) {
                                if *c == '/' {
                                    next[k + 1] = true;
                                }
                            }
                        }
                    }
                }
                _ => {
                    for j in 0..s.len() {
                        if can[j] && self.one(t, s[j]) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            can = next;
            if !can.iter().any(|c| *c) {
                return false;
            }
        }
        can[s.len()]
    }

    fn one(&self, t: &Token, c: char) -> bool {
        match t {
            Token::Char(x) => *x == c,
            Token::One => !(self.paths && c == '/'),
            Token::Class { negated, ranges } => {
                let inside = ranges.iter().any(|(a, b)| (*a..=*b).contains(&c));
                inside != *negated && !(self.paths && c == '/')
            }
            _ => false,
        }
    }
}

/// The class starting at `chars[start]` (a `[`), and the index after its `]`.
fn class(chars: &[char], start: usize) -> Result<(Token, usize), String> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("a `[` is never closed by `]`".into());
        };
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let c = if c == '\\' {
            i += 1;
            *chars
                .get(i)
                .ok_or_else(|| "a `[` is never closed by `]`".to_string())?
        } else {
            c
        };
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|e| *e != ']') {
            let end = chars[i + 2];
            if end < c {
                return Err(format!("the range `{c}-{end}` runs backwards"));
            }
            ranges.push((c, end));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    Ok((Token::Class { negated, ranges }, i))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(g: &str, s: &str) -> bool {
        Glob::path(g).unwrap().matches(s)
    }
    fn t(g: &str, s: &str) -> bool {
        Glob::text(g).unwrap().matches(s)
    }

    #[test]
    fn path_stars_stay_in_their_folder() {
        assert!(p("src/*.py", "src/a.py"));
        assert!(!p("src/*.py", "src/x/a.py"));
        assert!(p("src/**", "src/x/y/a.py"));
        assert!(p(".github/**", ".github/workflows/x.yml"));
        assert!(!p(".github/**", "src/.github"));
        assert!(p("**/*.yml", "a.yml"));
        assert!(p("**/*.yml", "a/b/c.yml"));
        assert!(!p("**/*.yml", "a/b/c.yaml"));
        assert!(p("**", "anything/at/all"));
        assert!(!p("?", "/"));
        assert!(p("a?c", "abc"));
        assert!(!p("*", "a/b"));
    }

    #[test]
    fn text_stars_cross_slashes() {
        assert!(t("curl *", "curl https://evil.example/x"));
        assert!(t("workspace.*", "workspace.apply_patch"));
        assert!(!t("workspace.*", "sandbox.exec"));
        assert!(t("*.example.com", "api.example.com"));
        assert!(!t("*.example.com", "example.com"));
        assert!(t("*curl*", "echo hi && curl x"));
        assert!(t("sandbox.exec", "sandbox.exec"));
        assert!(!t("sandbox.exec", "sandbox.exec2"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(t("v[0-9]", "v7"));
        assert!(!t("v[0-9]", "vx"));
        assert!(t("v[!0-9]", "vx"));
        assert!(t("a\\*b", "a*b"));
        assert!(!t("a\\*b", "axb"));
        assert!(t("[]]", "]"));
        assert!(Glob::text("abc").unwrap().is_literal());
        assert!(!Glob::text("a*").unwrap().is_literal());
    }

    #[test]
    fn bad_globs_say_why() {
        assert!(Glob::text("").unwrap_err().contains("empty"));
        assert!(Glob::text("[abc").unwrap_err().contains("never closed"));
        assert!(Glob::text("a\\").unwrap_err().contains("escapes nothing"));
        assert!(Glob::path("a/***").unwrap_err().contains("3 `*`"));
        assert!(Glob::text("[z-a]").unwrap_err().contains("backwards"));
    }
}

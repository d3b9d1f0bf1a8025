//! The Python rules (PY001-PY004, FS001, OBF001, and the shared string and secret checks).

use tree_sitter::Node;

use super::{Ctx, DECODE, keyed_secret, line, outside, re, short, string_checks, unquote};

pub(super) fn python(ctx: &mut Ctx, n: Node) {
    match n.kind() {
        "call" => call(ctx, n),
        "string" => {
            let t = ctx.text(n).to_string();
            string_checks(ctx, n, &t);
        }
        "assignment" => keyed_secret(ctx, n, "left", "right", false),
        "keyword_argument" => keyed_secret(ctx, n, "name", "value", false),
        _ => {}
    }
}

fn call(ctx: &mut Ctx, n: Node) {
    let Some(func) = n.child_by_field_name("function") else {
        return;
    };
    let f = ctx.text(func).to_string();
    let args = n
        .child_by_field_name("arguments")
        .map(|a| ctx.text(a).to_string())
        .unwrap_or_default();
    let l = line(n);
    dangerous_call(ctx, &f, &args, l);
    if f.starts_with("subprocess.")
        || f == "Popen"
        || f == "run"
        || f == "call"
        || f == "check_output"
    {
        shell_true(ctx, n, &f, &args, l);
    }
    writes_outside(ctx, n, func, &f, l);
}

/// eval/exec, shell commands, unsafe deserialisation, unsafe YAML loading.
fn dangerous_call(ctx: &mut Ctx, f: &str, args: &str, l: usize) {
    match f {
        "eval" | "exec" | "builtins.eval" | "builtins.exec" => {
            ctx.add("PY001", l, &short(&format!("{f}{args}")));
            if re(&DECODE).is_some_and(|r| r.is_match(args)) {
                ctx.add("OBF001", l, &short(args));
            }
        }
        "os.system"
        | "os.popen"
        | "subprocess.getoutput"
        | "subprocess.getstatusoutput"
        | "commands.getoutput"
        | "os.execl"
        | "pty.spawn" => {
            ctx.add("PY002", l, &short(&format!("{f}{args}")));
            if re(&DECODE).is_some_and(|r| r.is_match(args)) {
                ctx.add("OBF001", l, &short(args));
            }
        }
        "pickle.loads" | "pickle.load" | "cPickle.loads" | "cPickle.load" | "_pickle.loads"
        | "marshal.loads" | "marshal.load" | "shelve.open" | "dill.loads" | "dill.load"
        | "jsonpickle.decode" | "pickle.Unpickler" => ctx.add("PY003", l, f),
        "yaml.unsafe_load" | "yaml.unsafe_load_all" => ctx.add("PY004", l, f),
        "yaml.load" | "yaml.load_all"
            if !["SafeLoader", "CSafeLoader", "BaseLoader"]
                .iter()
                .any(|s| args.contains(s)) =>
        {
            ctx.add("PY004", l, &short(&format!("{f}{args}")));
        }
        _ => {}
    }
}

/// subprocess calls with `shell=True`.
fn shell_true(ctx: &mut Ctx, n: Node, f: &str, args: &str, l: usize) {
    let Some(a) = n.child_by_field_name("arguments") else {
        return;
    };
    let mut c = a.walk();
    for kw in a.named_children(&mut c) {
        if kw.kind() == "keyword_argument" {
            let name = kw
                .child_by_field_name("name")
                .map(|x| ctx.text(x).to_string())
                .unwrap_or_default();
            let value = kw
                .child_by_field_name("value")
                .map(|x| ctx.text(x).to_string())
                .unwrap_or_default();
            if name == "shell" && value == "True" {
                ctx.add("PY002", l, &short(&format!("{f}{args}")));
            }
        }
    }
}

/// Writes and deletes outside the workspace.
fn writes_outside(ctx: &mut Ctx, n: Node, func: Node, f: &str, l: usize) {
    let first = n
        .child_by_field_name("arguments")
        .and_then(|a| a.named_child(0));
    let first_lit = first
        .filter(|a| a.kind() == "string")
        .map(|a| unquote(ctx.text(a)).to_string());
    if let Some(path) = first_lit {
        let writes = match f {
            "open" | "io.open" | "os.open" => {
                let mode = n
                    .child_by_field_name("arguments")
                    .and_then(|a| a.named_child(1))
                    .map(|m| ctx.text(m).to_string())
                    .unwrap_or_default();
                mode.contains('w')
                    || mode.contains('a')
                    || mode.contains('x')
                    || mode.contains('+')
                    || mode.contains("O_WRONLY")
                    || mode.contains("O_RDWR")
            }
            "os.remove" | "os.unlink" | "os.rmdir" | "shutil.rmtree" | "os.chmod" | "os.chown"
            | "os.rename" | "shutil.move" | "shutil.copy" | "os.symlink" | "os.makedirs"
            | "os.mkdir" => true,
            _ => f.ends_with(".write_text") || f.ends_with(".write_bytes"),
        };
        if writes && outside(&path) {
            ctx.add("FS001", l, &short(&format!("{f}({path})")));
        }
    }
    if (f.ends_with(".write_text") || f.ends_with(".write_bytes") || f.ends_with(".unlink"))
        && let Some(inner) = func.child_by_field_name("object")
    {
        let t = ctx.text(inner).to_string();
        if let Some(start) = t.find(['"', '\'']) {
            let p = unquote(&t[start..])
                .trim_end_matches(')')
                .trim_end_matches(['"', '\''])
                .to_string();
            if outside(&p) {
                ctx.add("FS001", l, &short(&t));
            }
        }
    }
}

//! The shell rules (SH001, SH002, NET001, FS001, OBF001, and the shared string and secret
//! checks).

use tree_sitter::Node;

use super::{Ctx, DECODE, keyed_secret, line, outside, re, short, string_checks, unquote};

/// Programs that run what is piped into them.
const INTERPRETERS: [&str; 10] = [
    "sh", "bash", "zsh", "dash", "ksh", "python", "python3", "perl", "ruby", "node",
];

pub(super) fn shell(ctx: &mut Ctx, n: Node) {
    match n.kind() {
        "pipeline" => pipeline(ctx, n),
        "command" => command(ctx, n),
        "file_redirect" => {
            let t = ctx.text(n).to_string();
            if let Some(dest) = n.child_by_field_name("destination") {
                let d = unquote(ctx.text(dest)).to_string();
                if d.starts_with("/dev/tcp/") || d.starts_with("/dev/udp/") {
                    ctx.add("NET001", line(n), &short(&t));
                } else if !t.trim_start().starts_with('<') && !t.contains("<&") && outside(&d) {
                    ctx.add("FS001", line(n), &short(&t));
                }
            }
        }
        "string" | "raw_string" | "word" => {
            let t = ctx.text(n).to_string();
            string_checks(ctx, n, &t);
        }
        "variable_assignment" => keyed_secret(ctx, n, "name", "value", false),
        _ => {}
    }
}

/// A download or a decoder piped into an interpreter.
fn pipeline(ctx: &mut Ctx, n: Node) {
    let interpreters = INTERPRETERS;
    let mut c = n.walk();
    let cmds: Vec<String> = n
        .named_children(&mut c)
        .filter(|x| x.kind() == "command")
        .map(|x| ctx.text(x).to_string())
        .collect();
    let name = |s: &str| {
        s.split_whitespace()
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let downloads = cmds
        .iter()
        .any(|s| matches!(name(s).as_str(), "curl" | "wget" | "fetch"));
    let decodes = cmds.iter().any(|s| {
        (name(s) == "base64" && (s.contains(" -d") || s.contains("--decode")))
            || name(s) == "xxd"
            || name(s) == "openssl"
    });
    let runs = cmds.iter().skip(1).any(|s| {
        let nm = name(s);
        interpreters.contains(&nm.as_str())
            || (nm == "sudo" && interpreters.iter().any(|i| s.contains(i)))
    });
    if downloads && runs {
        let t = ctx.text(n).to_string();
        ctx.add("SH001", line(n), &short(&t));
    }
    if decodes && runs {
        let t = ctx.text(n).to_string();
        ctx.add("OBF001", line(n), &short(&t));
    }
}

/// eval, sourcing a download, `nc -e`, and writes outside the workspace.
fn command(ctx: &mut Ctx, n: Node) {
    let Some(name_node) = n.child_by_field_name("name") else {
        return;
    };
    let name = ctx
        .text(name_node)
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let t = ctx.text(n).to_string();
    let l = line(n);
    match name.as_str() {
        "eval" => {
            ctx.add("SH002", l, &short(&t));
            if re(&DECODE).is_some_and(|r| r.is_match(&t)) || t.contains("base64") {
                ctx.add("OBF001", l, &short(&t));
            }
        }
        "source" | "." if t.contains("<(curl") || t.contains("<(wget") => {
            ctx.add("SH001", l, &short(&t))
        }
        "nc" | "ncat" | "netcat" if t.contains(" -e") || t.contains(" -c") => {
            ctx.add("NET001", l, &short(&t))
        }
        "rm" | "chmod" | "chown" | "dd" | "mv" | "cp" | "ln" | "tee" | "truncate" | "shred"
        | "mkfs" | "touch" => {
            let mut c = n.walk();
            let hit = n
                .children_by_field_name("argument", &mut c)
                .map(|a| unquote(ctx.text(a)).to_string())
                .filter(|a| !a.starts_with('-'))
                .map(|a| a.strip_prefix("of=").map(String::from).unwrap_or(a))
                .find(|a| outside(a));
            // For cp/ln/mv only the last argument is written.
            let hit = if matches!(name.as_str(), "cp" | "ln" | "mv") {
                let mut c = n.walk();
                let last = n
                    .children_by_field_name("argument", &mut c)
                    .last()
                    .map(|a| unquote(ctx.text(a)).to_string());
                last.filter(|a| outside(a))
            } else {
                hit
            };
            if let Some(p) = hit {
                ctx.add("FS001", l, &short(&format!("{name} ... {p}")));
            }
        }
        _ => {}
    }
}

//! The JavaScript and TypeScript rules (JS001, JS002, FS001, OBF001, and the shared string and
//! secret checks).

use tree_sitter::Node;

use super::{Ctx, DECODE, keyed_secret, line, outside, re, short, string_checks, unquote};

pub(super) fn js(ctx: &mut Ctx, n: Node) {
    match n.kind() {
        "call_expression" => call(ctx, n),
        "new_expression" => {
            if let Some(c) = n.child_by_field_name("constructor")
                && ctx.text(c) == "Function"
            {
                let t = ctx.text(n).to_string();
                ctx.add("JS001", line(n), &short(&t));
            }
        }
        "string" | "template_string" => {
            let t = ctx.text(n).to_string();
            string_checks(ctx, n, &t);
        }
        "variable_declarator" => keyed_secret(ctx, n, "name", "value", false),
        "pair" => keyed_secret(ctx, n, "key", "value", true),
        _ => {}
    }
}

fn call(ctx: &mut Ctx, n: Node) {
    let Some(func) = n.child_by_field_name("function") else {
        return;
    };
    let f = ctx.text(func).to_string();
    let args_node = n.child_by_field_name("arguments");
    let args = args_node
        .map(|a| ctx.text(a).to_string())
        .unwrap_or_default();
    let l = line(n);
    let first = args_node.and_then(|a| a.named_child(0));
    match f.as_str() {
        "eval" | "window.eval" | "globalThis.eval" | "Function" => {
            ctx.add("JS001", l, &short(&format!("{f}{args}")));
            if re(&DECODE).is_some_and(|r| r.is_match(&args)) {
                ctx.add("OBF001", l, &short(&args));
            }
        }
        "setTimeout" | "setInterval"
            if first.is_some_and(|a| matches!(a.kind(), "string" | "template_string")) =>
        {
            ctx.add("JS001", l, &short(&format!("{f}{args}")));
        }
        "vm.runInNewContext" | "vm.runInThisContext" | "vm.runInContext" => {
            ctx.add("JS001", l, &short(&f))
        }
        _ => {}
    }
    let uses_cp = ctx.whole.contains("child_process");
    let last = f.rsplit('.').next().unwrap_or(&f);
    if uses_cp
        && matches!(last, "exec" | "execSync")
        && !f.starts_with("RegExp")
        && !f.ends_with("re.exec")
    {
        ctx.add("JS002", l, &short(&format!("{f}{args}")));
        if re(&DECODE).is_some_and(|r| r.is_match(&args)) {
            ctx.add("OBF001", l, &short(&args));
        }
    }
    if uses_cp
        && matches!(last, "spawn" | "spawnSync" | "execFile" | "execFileSync")
        && args.replace(' ', "").contains("shell:true")
    {
        ctx.add("JS002", l, &short(&format!("{f}{args}")));
    }
    let writes = matches!(
        last,
        "writeFileSync"
            | "writeFile"
            | "appendFileSync"
            | "appendFile"
            | "unlinkSync"
            | "unlink"
            | "rmSync"
            | "rm"
            | "rmdirSync"
            | "chmodSync"
            | "chownSync"
            | "createWriteStream"
            | "symlinkSync"
            | "renameSync"
            | "mkdirSync"
    ) && (f.starts_with("fs") || f.contains("fs.") || f.starts_with("Deno."));
    if writes && let Some(a) = first.filter(|a| matches!(a.kind(), "string" | "template_string")) {
        let p = unquote(ctx.text(a)).to_string();
        if outside(&p) {
            ctx.add("FS001", l, &short(&format!("{f}({p})")));
        }
    }
}

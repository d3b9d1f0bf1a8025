//! `baton models list|pull` and `baton chat MODEL`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use baton_llm::{ChatModel, ChatRequest, Chunk, Message, ModelResolver, Providers, split_ref};
use baton_llm_local::catalog::{self, ChecksumStatus};
use baton_llm_local::{LocalConfig, install};
use clap::{Args, Subcommand};
use futures::StreamExt;

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List installed and configured models, with sizes and checksum status.
    List,
    /// Install a model into the data directory (`smollm2`), verifying its checksums.
    Pull {
        /// The model to install.
        name: String,
    },
}

#[derive(Args)]
pub struct ChatArgs {
    /// The model, as `provider/model` (e.g. `local/smollm2`).
    model: String,
    /// A system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per reply.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
}

fn human_size(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

pub async fn run(args: ModelsArgs) -> Result<i32> {
    let cfg = LocalConfig::from_env()?;
    match args.command {
        ModelsCommand::List => list(&cfg, &crate::wiring::providers()?).await,
        ModelsCommand::Pull { name } => pull(&cfg, &name).await,
    }
}

async fn list(cfg: &LocalConfig, providers: &Providers) -> Result<i32> {
    let dir = cfg.models_dir();
    let entries = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || catalog::list_installed(&dir)).await??
    };
    outln!("models directory: {}", dir.display());
    outln!("{:<40} {:>10}  {:<15} PATH", "MODEL", "SIZE", "CHECKSUM");
    for e in &entries {
        let size = e.size.map(human_size).unwrap_or_else(|| "-".into());
        let status = match &e.checksum {
            None => "not installed".to_string(),
            Some(ChecksumStatus::Verified) => "verified".into(),
            Some(ChecksumStatus::Mismatch { .. }) => "MISMATCH".into(),
            Some(ChecksumStatus::Unknown) => "unknown".into(),
        };
        outln!(
            "{:<40} {:>10}  {:<15} {}",
            e.reference,
            size,
            status,
            e.path.display()
        );
    }
    for e in &entries {
        if e.checksum.is_none() || matches!(e.checksum, Some(ChecksumStatus::Mismatch { .. })) {
            let name = e.reference.trim_start_matches("local/");
            outln!("  {}: run `baton models pull {name}`", e.reference);
        }
    }
    let mut configured = Vec::new();
    for name in providers.names().filter(|n| *n != "local") {
        if let Some(p) = providers.get(name) {
            configured.extend(p.list().into_iter().map(|m| format!("{name}/{m}")));
        }
    }
    if !configured.is_empty() {
        outln!("configured:");
        for m in configured {
            outln!("  {m}");
        }
    }
    Ok(0)
}

async fn pull(cfg: &LocalConfig, name: &str) -> Result<i32> {
    let name = name.strip_prefix("local/").unwrap_or(name);
    let Some(model) = catalog::known(name) else {
        bail!(
            "unknown model '{name}'; known: {}",
            catalog::KNOWN
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let dir = cfg.models_dir();
    let pulled = tokio::task::spawn_blocking(move || {
        install::pull(model, &dir, &mut |line| errln!("{line}"))
    })
    .await??;
    match pulled {
        install::Pulled::AlreadyInstalled(p) => outln!(
            "local/{name} is already installed at {} (verified)",
            p.display()
        ),
        install::Pulled::Installed(p) => outln!("installed local/{name} at {}", p.display()),
    }
    Ok(0)
}

pub async fn chat(args: ChatArgs) -> Result<i32> {
    let providers = crate::wiring::providers()?;
    let (_, model_name) = split_ref(&args.model)?;
    let model = providers.resolve(&args.model, Path::new("."))?;
    let mut messages: Vec<Message> = args.system.iter().map(Message::system).collect();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut input = String::new();
        stdin
            .lock()
            .read_to_string(&mut input)
            .context("cannot read standard input")?;
        if input.trim().is_empty() {
            bail!(
                "standard input is empty: pipe a prompt in, e.g. `echo hi | baton chat {}`",
                args.model
            );
        }
        messages.push(Message::user(input.trim_end()));
        reply(model.as_ref(), model_name, &args, &mut messages).await?;
        return Ok(0);
    }
    errln!(
        "chatting with {} (an empty line or Ctrl-D ends)",
        args.model
    );
    let mut lines = stdin.lock();
    loop {
        eprint!("> ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        messages.push(Message::user(line.trim_end()));
        reply(model.as_ref(), model_name, &args, &mut messages).await?;
    }
    Ok(0)
}

/// Streams one reply to stdout and adds it to the conversation.
async fn reply(
    model: &dyn ChatModel,
    name: &str,
    args: &ChatArgs,
    messages: &mut Vec<Message>,
) -> Result<()> {
    let req = ChatRequest {
        model: name.to_string(),
        messages: messages.clone(),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        ..Default::default()
    };
    let mut stream = model.stream(req).await?;
    let mut out = std::io::stdout();
    let mut text = String::new();
    let mut calls = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk? {
            Chunk::Text(t) => {
                out.write_all(t.as_bytes())?;
                out.flush()?;
                text.push_str(&t);
            }
            Chunk::ToolCall(c) => {
                writeln!(out, "[tool call] {} {}", c.name, c.arguments)?;
                calls.push(c);
            }
            Chunk::Usage(u) => {
                if std::io::stderr().is_terminal() {
                    errln!(
                        "\n[{} prompt + {} completion tokens]",
                        u.prompt_tokens,
                        u.completion_tokens
                    );
                }
            }
            Chunk::Done(_) => break,
        }
    }
    if !text.ends_with('\n') {
        writeln!(out)?;
    }
    messages.push(Message::assistant(text, calls));
    Ok(())
}

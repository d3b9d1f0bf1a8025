//! `baton serve`: the HTTP server (for now the OpenAI-compatible `/v1` API).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use baton_server::AppState;
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", env = "BATON_ADDR")]
    addr: SocketAddr,
}

pub async fn run(args: ServeArgs) -> Result<i32> {
    let state = AppState::new(crate::wiring::providers()?);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    errln!("baton serving on http://{addr} (OpenAI-compatible API at http://{addr}/v1)");
    baton_server::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("the server failed")?;
    Ok(0)
}

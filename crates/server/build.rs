//! Embeds the web app's built assets (`web/dist`, made by `make web`) into the server: writes
//! `$OUT_DIR/web_assets.rs`, a table of every file with `include_bytes!` of it and of its
//! gzipped twin (`x.js.gz`, made by the web build) when there is one. Without `web/dist` the
//! table is empty and the server answers a page saying how to build the app, so a Rust-only
//! build (CI's Rust steps, a fresh checkout) still works.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let web = manifest.join("../../web");
    let dist = web.join("dist");
    println!("cargo:rerun-if-changed=build.rs");
    let mut table = String::from("&[\n");
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        let mut all = Vec::new();
        files(&dist, &mut all)?;
        all.sort();
        for path in all
            .iter()
            .filter(|p| p.extension().is_none_or(|e| e != "gz"))
        {
            let rel = path
                .strip_prefix(&dist)?
                .to_string_lossy()
                .replace('\\', "/");
            let gz = PathBuf::from(format!("{}.gz", path.display()));
            let gzip = if gz.is_file() {
                format!("Some(include_bytes!({:?}))", gz.display().to_string())
            } else {
                "None".to_string()
            };
            writeln!(
                table,
                "    Asset {{ path: {rel:?}, body: include_bytes!({:?}), gzip: {gzip} }},",
                path.display().to_string()
            )?;
        }
    } else if web.is_dir() {
        // Not built yet: `make web` makes `web/dist` inside this folder, which reruns this.
        println!("cargo:rerun-if-changed={}", web.display());
    }
    table.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("web_assets.rs");
    std::fs::write(out, table)?;
    Ok(())
}

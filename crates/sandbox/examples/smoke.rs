use baton_sandbox::*;
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut p = Policy::new(std::env::var("TIER").unwrap_or("process".into()).parse()?);
    if let Ok(n) = std::env::var("NET") { p.net = n.parse()?; }
    p.limits.time = std::time::Duration::from_secs(3);
    let sb = open(p)?;
    let out = sb.exec(ExecRequest::new(args)).await;
    match out { Ok(o) => println!("{}", serde_json::to_string_pretty(&o)?), Err(e) => println!("ERR {e}") }
    Ok(())
}

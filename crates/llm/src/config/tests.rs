#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::provider::Adapter;
use super::*;
use crate::{ModelResolver, Providers};

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn env_expansion() {
    assert_eq!(expand_env("local/smollm2").unwrap(), "local/smollm2");
    assert_eq!(
        expand_env("${BATON_TEST_SURELY_UNSET_VAR:-local/smollm2}").unwrap(),
        "local/smollm2"
    );
    assert!(
        expand_env("${BATON_TEST_SURELY_UNSET_VAR}")
            .unwrap_err()
            .contains("not set")
    );
    assert!(expand_env("${oops").is_err());
}

#[test]
fn defaults_work_from_the_usual_variables() {
    let mut cfg = Config::defaults();
    let env = env_of(&[("OPENAI_API_KEY", "sk-1"), ("ANTHROPIC_API_KEY", "ak-1")]);
    cfg.apply_env(&env).unwrap();
    let mut p = Providers::default();
    let names = register_providers_with(&cfg, &mut p, &env).unwrap();
    assert_eq!(names, ["anthropic", "ollama", "openai"]);
    let dir = Path::new(".");
    assert!(p.resolve("openai/gpt-4o-mini", dir).is_ok());
    assert!(p.resolve("anthropic/claude-sonnet-4-5", dir).is_ok());
    assert!(p.resolve("ollama/llama3", dir).is_ok());
}

#[test]
fn missing_key_is_an_auth_error_naming_the_variable() {
    let cfg = Config::defaults();
    let mut p = Providers::default();
    register_providers_with(&cfg, &mut p, &env_of(&[])).unwrap();
    let Err(e) = p.resolve("openai/gpt-4o-mini", Path::new(".")) else {
        panic!("expected an error")
    };
    assert_eq!(e.kind(), "auth");
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
    // Ollama needs none.
    assert!(p.resolve("ollama/llama3", Path::new(".")).is_ok());
}

#[test]
fn structured_output_setting() {
    let cfg = Config::from_toml(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nstructured_output = \"tools\"\n[providers.b]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\njson_schema = false\n",
        None,
    )
    .unwrap();
    assert_eq!(
        cfg.providers["a"].structured_output,
        Some(StructuredOutput::Tools)
    );
    let e = Config::from_toml(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nstructured_output = \"xml\"\n",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("structured_output"), "{e}");
    let e = Config::from_toml(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nstructured_output = \"auto\"\njson_schema = true\n",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    let e = Config::from_toml(
        "[providers.anthropic]\nstructured_output = \"tools\"\n",
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("only applies to kind = \"openai\""),
        "{e}"
    );
    let mut p = Providers::default();
    register_providers_with(&cfg, &mut p, &env_of(&[])).unwrap();
    assert!(p.resolve("b/m", Path::new(".")).is_ok());
}

#[test]
fn file_tables_env_overrides_and_validation() {
    let text = r#"
        [server]
        port = 8080

        [providers.openai]
        timeout = "30s"
        organization = "org-1"
        max_retries = 5
        [providers.openai.prices.gpt-4o-mini]
        input = 0.15
        output = 0.6

        [providers.groq]
        kind = "openai"
        base_url = "https://groq.example/openai/v1"
        headers = { "X-Trace" = "1" }

        [providers.local]
        model_dir = "/models"
    "#;
    let mut cfg = Config::from_toml(text, None).unwrap();
    cfg.apply_env(&env_of(&[
        ("BATON_GROQ_BASE_URL", "http://127.0.0.1:9/v1"),
        ("BATON_OPENAI_TIMEOUT", "5s"),
    ]))
    .unwrap();
    assert_eq!(
        cfg.providers["openai"].timeout,
        Some(Dur(std::time::Duration::from_secs(5)))
    );
    assert_eq!(cfg.providers["openai"].max_retries, Some(5));
    assert_eq!(
        cfg.providers["groq"].base_url.as_deref(),
        Some("http://127.0.0.1:9/v1")
    );
    assert!(cfg.providers["local"].other.contains_key("model_dir"));
    assert!(cfg.rest.contains_key("server"));
    let mut p = Providers::default();
    let names = register_providers_with(&cfg, &mut p, &env_of(&[("OPENAI_API_KEY", "k")])).unwrap();
    assert!(names.contains(&"groq".to_string()) && !names.contains(&"local".to_string()));
    assert_eq!(p.get("openai").unwrap().list(), ["gpt-4o-mini"]);

    let e = Config::from_toml("[providers.openai]\ntimeot = \"1s\"\n", None).unwrap_err();
    assert!(e.to_string().contains("unknown field `timeot`"), "{e}");
    let e = Config::from_toml("[providers.anthropic]\norganization = \"x\"\n", None).unwrap_err();
    assert!(
        e.to_string().contains("only applies to kind = \"openai\""),
        "{e}"
    );
    let e = Config::from_toml("[providers.vllm]\nbase_url = \"http://h\"\n", None).unwrap_err();
    assert!(e.to_string().contains("`kind` is missing"), "{e}");
    let e = Config::from_toml("[providers.openai]\ntimeout = \"soon\"\n", None).unwrap_err();
    assert!(e.to_string().contains("not a duration"), "{e}");
}

#[test]
fn custom_openai_servers_need_a_base_url_and_no_key() {
    let cfg = Config::from_toml("[providers.vllm]\nkind = \"openai\"\n", None).unwrap();
    let e = register_providers_with(&cfg, &mut Providers::default(), &env_of(&[])).unwrap_err();
    assert!(e.to_string().contains("`base_url` is missing"), "{e}");
    let cfg = Config::from_toml(
        "[providers.vllm]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n",
        None,
    )
    .unwrap();
    let mut p = Providers::default();
    register_providers_with(&cfg, &mut p, &env_of(&[])).unwrap();
    assert!(p.resolve("vllm/qwen", Path::new(".")).is_ok());
}

#[test]
fn search_order() {
    let dir = std::env::temp_dir().join(format!("baton-llm-config-{}", std::process::id()));
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".config/baton")).unwrap();
    std::fs::create_dir_all(dir.join("cwd")).unwrap();
    let user = home.join(".config/baton/baton.toml");
    std::fs::write(&user, "[providers.openai]\nmax_retries = 1\n").unwrap();
    let home_s: &'static str = Box::leak(home.display().to_string().into_boxed_str());
    let pairs: &'static [(&'static str, &'static str)] =
        Box::leak(vec![("HOME", home_s)].into_boxed_slice());
    let env = env_of(pairs);
    let cwd = dir.join("cwd");
    assert_eq!(
        find_config(None, &env, Some(&cwd)).unwrap(),
        Some(user.clone())
    );
    std::fs::write(cwd.join("baton.toml"), "").unwrap();
    assert_eq!(
        find_config(None, &env, Some(&cwd)).unwrap(),
        Some(cwd.join("baton.toml"))
    );
    assert_eq!(
        find_config(Some(&user), &env, Some(&cwd)).unwrap(),
        Some(user.clone())
    );
    assert!(find_config(Some(&dir.join("nope.toml")), &env, Some(&cwd)).is_err());
    let cfg = load_config_with(Some(&user), &env, Some(&cwd)).unwrap();
    assert_eq!(cfg.providers["openai"].max_retries, Some(1));
    assert_eq!(cfg.source.as_deref(), Some(user.as_path()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn official_openai_uses_max_completion_tokens_and_ollama_host_gets_a_scheme() {
    let env = env_of(&[("OPENAI_API_KEY", "k"), ("OLLAMA_HOST", "127.0.0.1:11435")]);
    let cfg = Config::defaults();
    let req = crate::ChatRequest {
        max_tokens: Some(5),
        ..Default::default()
    };
    let p = HttpProvider::from_config("openai", &cfg.providers["openai"], &env)
        .unwrap()
        .unwrap();
    let Adapter::OpenAi(a) = &p.adapter else {
        panic!("openai adapter expected")
    };
    let body = a.for_model("o3-mini").body(&req).unwrap();
    assert_eq!(body["max_completion_tokens"], 5);
    let p = HttpProvider::from_config("ollama", &cfg.providers["ollama"], &env)
        .unwrap()
        .unwrap();
    let Adapter::Ollama(a) = &p.adapter else {
        panic!("ollama adapter expected")
    };
    assert!(format!("{a:?}").contains("http://127.0.0.1:11435"), "{a:?}");
    // A compatible server elsewhere keeps the field every server knows.
    let cfg = Config::from_toml(
        "[providers.vllm]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
        None,
    )
    .unwrap();
    let p = HttpProvider::from_config("vllm", &cfg.providers["vllm"], &env)
        .unwrap()
        .unwrap();
    let Adapter::OpenAi(a) = &p.adapter else {
        panic!("openai adapter expected")
    };
    assert_eq!(a.for_model("m").body(&req).unwrap()["max_tokens"], 5);
}

#[test]
fn load_providers_from_a_file() {
    let path = std::env::temp_dir().join(format!("baton-llm-load-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[providers.lab]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
    )
    .unwrap();
    let (cfg, providers) = load_providers(Some(&path)).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
    let names: Vec<&str> = providers.names().collect();
    assert_eq!(names, ["anthropic", "lab", "ollama", "openai", "scripted"]);
    let Err(e) = load_providers(Some(Path::new("/nonexistent/baton.toml"))) else {
        panic!("a missing --config file must be an error")
    };
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn debug_output_has_no_secrets() {
    let cfg = Config::from_toml(
        "[providers.openai]\nheaders = { \"X-Key\" = \"hdr-secret\" }\n",
        None,
    )
    .unwrap();
    let p = HttpProvider::from_config(
        "openai",
        &cfg.providers["openai"],
        &env_of(&[("OPENAI_API_KEY", "sk-secret")]),
    )
    .unwrap()
    .unwrap();
    let Adapter::OpenAi(a) = &p.adapter else {
        panic!("openai adapter expected")
    };
    let dbg = format!("{p:?} {a:?}");
    assert!(
        !dbg.contains("sk-secret") && !dbg.contains("hdr-secret"),
        "{dbg}"
    );
}

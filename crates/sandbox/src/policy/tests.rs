//! Unit tests of `policy`.

use super::*;

#[test]
fn sizes_and_durations_parse() {
    assert_eq!(parse_size("256M").unwrap(), 256 << 20);
    assert_eq!(parse_size("1G").unwrap(), 1 << 30);
    assert_eq!(parse_size("512k").unwrap(), 512 << 10);
    assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
    assert_eq!(parse_size("42").unwrap(), 42);
    assert!(parse_size("lots").is_err());
    assert!(parse_size("-1M").is_err());
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn net_modes_parse() {
    assert_eq!("none".parse::<NetMode>().unwrap(), NetMode::None);
    assert_eq!(
        "allow:example.org,pypi.example:443"
            .parse::<NetMode>()
            .unwrap(),
        NetMode::Allow(vec!["example.org".into(), "pypi.example:443".into()])
    );
    assert!("allow:".parse::<NetMode>().is_err());
    assert!("allow:bad host".parse::<NetMode>().is_err());
    assert!("open".parse::<NetMode>().is_err());
}

#[test]
fn default_policy_is_locked_down() {
    let p = Policy::new(Tier::Process);
    p.validate().unwrap();
    assert_eq!(p.net, NetMode::None);
    for s in [
        "ptrace",
        "mount",
        "bpf",
        "kexec_load",
        "init_module",
        "finit_module",
        "unshare",
        "setns",
    ] {
        assert!(
            p.syscall_deny.iter().any(|d| d == s),
            "{s} must be denied by default"
        );
    }
    let mounts = p.mounts_for(None);
    let targets: Vec<&Path> = mounts.iter().map(Mount::target).collect();
    for hidden in ["/home", "/root", "/sys", "/etc/shadow", "/etc"] {
        assert!(
            !targets.contains(&Path::new(hidden)),
            "{hidden} must not be mounted"
        );
    }
    assert!(
        mounts
            .iter()
            .any(|m| matches!(m, Mount::ReadOnly { target, .. } if target == Path::new("/usr")))
    );
    assert!(mounts.iter().any(
        |m| matches!(m, Mount::Tmpfs { target, owned: true, .. } if target == Path::new("/work"))
    ));
    assert!(
        mounts
            .iter()
            .any(|m| matches!(m, Mount::Tmpfs { target, .. } if target == Path::new("/tmp")))
    );
    assert!(!mounts.iter().any(|m| matches!(m, Mount::ReadWrite { .. })));
    let devs: Vec<_> = mounts
        .iter()
        .filter(|m| matches!(m, Mount::Device { .. }))
        .map(Mount::target)
        .collect();
    assert!(
        devs.iter()
            .all(|d| DEVICES.contains(&d.to_str().unwrap_or("")))
    );
    let env = p.env_for(&BTreeMap::new());
    assert!(!env.contains_key("SSH_AUTH_SOCK") && env["HOME"] == "/work");
}

#[test]
fn policy_file_fields_are_checked() {
    let v = serde_json::json!({"tier": "oci", "memory": "64M", "pids": 10, "time": "2s", "net": "loopback"});
    let p = Policy::from_value(&v).unwrap();
    assert_eq!(p.tier, Tier::Oci);
    assert_eq!(p.limits.memory_bytes, 64 << 20);
    assert_eq!(p.limits.pids, 10);
    assert_eq!(p.net, NetMode::Loopback);
    let bad = serde_json::json!({"tier": "vm"});
    assert!(
        Policy::from_value(&bad)
            .unwrap_err()
            .to_string()
            .contains("unknown tier")
    );
    let bad = serde_json::json!({"memroy": "1G"});
    assert!(
        Policy::from_value(&bad)
            .unwrap_err()
            .to_string()
            .contains("unknown policy field 'memroy'")
    );
    let bad = serde_json::json!({"syscall_deny": ["not_a_syscall"]});
    assert!(Policy::from_value(&bad).is_err());
    let bad = serde_json::json!({"memory": "1k"});
    assert!(Policy::from_value(&bad).is_err());
}

#[test]
fn workdir_replaces_the_tmpfs_workspace() {
    let p = Policy::new(Tier::Process);
    let m = p.mounts_for(Some(Path::new("/srv/ws")));
    assert!(m.iter().any(|m| matches!(m, Mount::ReadWrite { source, target } if source == Path::new("/srv/ws") && target == Path::new("/work"))));
    assert!(
        !m.iter()
            .any(|m| matches!(m, Mount::Tmpfs { target, .. } if target == Path::new("/work")))
    );
}

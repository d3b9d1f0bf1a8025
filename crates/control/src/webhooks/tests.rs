use super::*;

#[test]
fn urls_are_checked_as_written() {
    let p = AddressPolicy::default();
    assert_eq!(
        check_url("https://example.com/hook?x=1", &p).unwrap(),
        "https://example.com/hook?x=1"
    );
    for bad in [
        "ftp://example.com/",
        "https://user:pw@example.com/",
        "https://example.com/#x",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/",
        "http://localhost:9000/",
        "not a url",
    ] {
        let e = check_url(bad, &p).unwrap_err();
        assert_eq!(e.code().as_str(), "invalid", "{bad}");
    }
    let lo = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    assert!(check_url("http://127.0.0.1:9/x", &lo).is_ok());
}

#[test]
fn event_types_map_to_outbox_kinds() {
    for (t, k) in EVENT_TYPES {
        assert!(baton_store::webhooks::OUTBOX_KINDS.contains(k), "{t}");
        assert_eq!(event_type_of(k), Some(*t));
    }
    assert_eq!(EVENT_TYPES.len(), baton_store::webhooks::OUTBOX_KINDS.len());
    // A budget stop is a `paused` event delivered under its own type.
    let budget = serde_json::json!({"type": "paused", "pause": {"reason": "budget"}});
    assert_eq!(webhook_type("paused", &budget), Some(BUDGET_EXCEEDED));
    let user = serde_json::json!({"type": "paused", "pause": {"reason": "user"}});
    assert_eq!(webhook_type("paused", &user), Some("run.paused"));
    assert!(known_types().contains(&BUDGET_EXCEEDED));
    let a = delivery_id("sub_1", RunId::new(), 3);
    assert!(a.starts_with("msg_") && a.len() == 36);
}

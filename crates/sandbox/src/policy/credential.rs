//! Credentials for allowed hosts (`credentials:` of a policy): the allow-list proxy adds a
//! header whose value it reads from Baton's own environment to each plain `http://` request to
//! the host, and speaks to the host over TLS (or plain HTTP for `upstream: http`). The secret
//! never enters the sandbox: only the variable's name is in the policy, the record and the log.

use serde::{Deserialize, Serialize};

use super::{NetMode, validate_host_pattern};
use crate::Error;

/// How the proxy reaches a credentialed host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Upstream {
    /// TLS, the host's certificate checked against the public CAs built into Baton. A URL
    /// without a port (`http://host/...`, port 80) reaches `https://host/...` (port 443); any
    /// other port is kept.
    #[default]
    Https,
    /// Plain HTTP to the URL's own port: the secret crosses the network in clear, so only
    /// for services on this machine or a private network.
    Http,
}

impl Upstream {
    pub fn as_str(self) -> &'static str {
        match self {
            Upstream::Https => "https",
            Upstream::Http => "http",
        }
    }
}

/// One credential: `header: format(value of $value_env)` on requests to `host`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// A host pattern as in the allow-list (`host`, `host:port`, `*.domain`); it must be on it.
    pub host: String,
    /// The header the proxy sets (any the sandbox sent under that name is dropped).
    pub header: String,
    /// The variable of Baton's own environment holding the secret (read when the proxy starts).
    pub value_env: String,
    /// The header's value with `{}` where the secret goes (`Bearer {}`); default: the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `https` (default) or `http`.
    #[serde(default)]
    pub upstream: Upstream,
}

/// Headers a credential may not set: they frame the request or belong to the proxy.
const RESERVED: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
];

impl Credential {
    /// Reads one entry of a policy file's `credentials:` list (`at`: `credentials[0]`).
    pub fn from_value(at: &str, v: &serde_json::Value) -> Result<Credential, Error> {
        let c: Credential = serde_json::from_value(v.clone()).map_err(|e| {
            Error::InvalidPolicy(format!(
                "{at}: {e} (expected {{host, header, value_env, format?, upstream?}})"
            ))
        })?;
        c.validate(at)?;
        Ok(c)
    }

    /// Checks the entry on its own (the allow-list is checked by [`check_all`]).
    pub fn validate(&self, at: &str) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidPolicy(format!("{at}: {m}")));
        if let Err(Error::InvalidPolicy(m)) = validate_host_pattern(&self.host) {
            return bad(m);
        }
        let h = &self.header;
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
        {
            return bad(format!("header '{h}' is not a header name"));
        }
        let lower = h.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return bad(format!(
                "header '{h}' frames the request or belongs to the proxy; a credential cannot set it"
            ));
        }
        let v = &self.value_env;
        if v.is_empty()
            || v.starts_with(|c: char| c.is_ascii_digit())
            || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad(format!(
                "value_env '{v}' is not an environment variable name (letters, digits, _)"
            ));
        }
        if let Some(f) = &self.format
            && f.matches("{}").count() != 1
        {
            return bad(format!(
                "format '{f}' must hold `{{}}` exactly once (where the secret goes)"
            ));
        }
        Ok(())
    }

    /// Whether this credential is for `host:port` (the allow-list's matching rules).
    pub fn applies_to(&self, host: &str, port: u16) -> bool {
        crate::proxy::allowed(std::slice::from_ref(&self.host), host, port)
    }

    /// The header's value, from Baton's environment. A missing or empty variable, or one
    /// holding a line break, is an error naming the variable (never the value).
    pub fn resolve(&self) -> Result<String, Error> {
        let missing = |why: &str| Error::MissingCredential {
            var: self.value_env.clone(),
            host: self.host.clone(),
            why: why.to_string(),
        };
        let secret = match std::env::var(&self.value_env) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return Err(missing("is empty")),
            Err(std::env::VarError::NotPresent) => return Err(missing("is not set")),
            Err(std::env::VarError::NotUnicode(_)) => return Err(missing("is not UTF-8")),
        };
        if secret.contains(['\r', '\n', '\0']) {
            return Err(missing(
                "holds a line break or NUL, which a header cannot carry",
            ));
        }
        Ok(match &self.format {
            Some(f) => f.replacen("{}", &secret, 1),
            None => secret,
        })
    }
}

/// Checks the credentials against the network: `allow:` mode, each host on the allow-list,
/// no host given twice.
pub fn check_all(credentials: &[Credential], net: &NetMode) -> Result<(), Error> {
    if credentials.is_empty() {
        return Ok(());
    }
    let NetMode::Allow(list) = net else {
        return Err(Error::InvalidPolicy(
            "credentials need the network mode `allow:HOSTS` (the proxy adds them)".into(),
        ));
    };
    for (i, c) in credentials.iter().enumerate() {
        let at = format!("credentials[{i}]");
        c.validate(&at)?;
        if !on_list(list, &c.host) {
            return Err(Error::InvalidPolicy(format!(
                "{at}: host '{}' is not on the sandbox's allow-list (net: allow:{})",
                c.host,
                list.join(",")
            )));
        }
        if let Some(j) = credentials[..i]
            .iter()
            .position(|o| o.host.eq_ignore_ascii_case(&c.host))
        {
            return Err(Error::InvalidPolicy(format!(
                "{at}: host '{}' already has a credential (credentials[{j}])",
                c.host
            )));
        }
    }
    Ok(())
}

/// Whether every host:port the pattern names is on the list: the same entry, or a plain host
/// the list allows on its port (on 80 and 443 without one).
fn on_list(list: &[String], pattern: &str) -> bool {
    if list.iter().any(|e| e.eq_ignore_ascii_case(pattern)) {
        return true;
    }
    if pattern.starts_with("*.") {
        return false;
    }
    match pattern.rsplit_once(':') {
        Some((h, p)) => p
            .parse::<u16>()
            .is_ok_and(|p| crate::proxy::allowed(list, h, p)),
        None => {
            crate::proxy::allowed(list, pattern, 80) && crate::proxy::allowed(list, pattern, 443)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cred(host: &str) -> Credential {
        Credential {
            host: host.into(),
            header: "Authorization".into(),
            value_env: "BATON_TEST_CRED_UNSET_VAR".into(),
            format: Some("Bearer {}".into()),
            upstream: Upstream::Https,
        }
    }

    #[test]
    fn entries_are_read_and_checked() {
        let c = Credential::from_value(
            "credentials[0]",
            &json!({"host": "api.example.com", "header": "Authorization", "value_env": "EXAMPLE_TOKEN", "format": "Bearer {}"}),
        )
        .unwrap();
        assert_eq!(c.upstream, Upstream::Https);
        let err = |v: serde_json::Value| {
            Credential::from_value("credentials[1]", &v)
                .unwrap_err()
                .to_string()
        };
        let e = err(
            json!({"host": "a.example", "header": "X-Key", "value_env": "K", "upstream": "ftp"}),
        );
        assert!(
            e.contains("credentials[1]") && e.contains("upstream"),
            "{e}"
        );
        let e = err(json!({"host": "a.example", "header": "Host", "value_env": "K"}));
        assert!(e.contains("header 'Host'"), "{e}");
        let e = err(json!({"host": "a.example", "header": "X Key", "value_env": "K"}));
        assert!(e.contains("not a header name"), "{e}");
        let e = err(json!({"host": "a.example", "header": "X-Key", "value_env": "1BAD"}));
        assert!(e.contains("value_env '1BAD'"), "{e}");
        let e =
            err(json!({"host": "a.example", "header": "X-Key", "value_env": "K", "format": "x"}));
        assert!(e.contains("exactly once"), "{e}");
        let e = err(json!({"host": "bad host", "header": "X-Key", "value_env": "K"}));
        assert!(e.contains("bad allowed host"), "{e}");
        let e =
            err(json!({"host": "a.example", "header": "X-Key", "value_env": "K", "value": "x"}));
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn credential_hosts_must_be_allowed() {
        let allow = |s: &str| NetMode::Allow(s.split(',').map(String::from).collect());
        check_all(&[cred("api.example.com")], &allow("api.example.com")).unwrap();
        check_all(&[cred("API.example.com")], &allow("*.example.com")).unwrap();
        check_all(&[cred("127.0.0.1:8080")], &allow("127.0.0.1:8080")).unwrap();
        let e = check_all(&[cred("api.example.com")], &allow("other.example"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("credentials[0]") && e.contains("not on the sandbox's allow-list"),
            "{e}"
        );
        // Port 443 only on the list: a credential for the bare host (80 and 443) is refused.
        assert!(check_all(&[cred("a.example")], &allow("a.example:443")).is_err());
        assert!(check_all(&[cred("*.example")], &allow("a.example")).is_err());
        let e = check_all(&[cred("a.example")], &NetMode::None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("allow:HOSTS"), "{e}");
        let e = check_all(&[cred("a.example"), cred("A.example")], &allow("a.example"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already has a credential"), "{e}");
    }

    #[test]
    fn policy_files_carry_credentials() {
        let p = crate::Policy::from_value(&json!({
            "net": "allow:api.example.com",
            "credentials": [{"host": "api.example.com", "header": "X-Api-Key", "value_env": "EXAMPLE_KEY"}]
        }))
        .unwrap();
        assert_eq!(p.credentials[0].value_env, "EXAMPLE_KEY");
        let e = crate::Policy::from_value(&json!({
            "credentials": [{"host": "api.example.com", "header": "X-Api-Key", "value_env": "EXAMPLE_KEY"}]
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("allow:HOSTS"), "{e}");
        let e = crate::Policy::from_value(&json!({"net": "allow:a.example", "credentials": "x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("credentials must be a list"), "{e}");
    }

    #[test]
    fn a_missing_variable_is_named_and_a_value_formatted() {
        let e = cred("a.example").resolve().unwrap_err().to_string();
        assert!(
            e.contains("BATON_TEST_CRED_UNSET_VAR") && e.contains("a.example"),
            "{e}"
        );
        let mut c = cred("a.example");
        c.value_env = "PATH".into();
        let v = c.resolve().unwrap();
        assert!(v.starts_with("Bearer /"), "{v}");
    }
}

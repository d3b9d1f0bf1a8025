//! API keys: `bk_<id>_<secret>`, where `id` (12 hex digits) is visible in listings and logs
//! and `secret` is 256 random bits (64 hex digits). A key is shown once, when created; the
//! store keeps only its SHA-256. Authentication finds the record by id, compares hashes in
//! constant time, and refuses revoked and expired keys.

use baton_store::ApiKeyRecord;
use baton_types::{Role, TenantId};
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::Outcome;
use crate::error::{Error, Result};
use crate::{Caller, Control};

/// What every key starts with.
pub const KEY_PREFIX: &str = "bk_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;

/// A key to create.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// The tenant (default: the caller's; another one needs the operator).
    pub tenant: Option<TenantId>,
    pub role: Role,
    pub name: Option<String>,
    /// When it stops working (Unix ms).
    pub expires_at_ms: Option<i64>,
}

/// A key as listed: never its secret, never its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KeyInfo {
    pub id: String,
    pub tenant: TenantId,
    pub role: Role,
    pub name: Option<String>,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl KeyInfo {
    fn of(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id.clone(),
            tenant: k.tenant.clone(),
            role: k.role,
            name: k.name.clone(),
            created_at_ms: k.created_at_ms,
            created_by: k.created_by.clone(),
            expires_at_ms: k.expires_at_ms,
            revoked_at_ms: k.revoked_at_ms,
        }
    }

    /// `active`, `revoked` or `expired` at `now_ms`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.expires_at_ms.is_some_and(|t| t <= now_ms) {
            "expired"
        } else {
            "active"
        }
    }
}

/// A key just created: the only time its secret exists outside the client.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct CreatedKey {
    /// The whole key, `bk_<id>_<secret>`.
    pub key: String,
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// A presented key that is valid now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub caller: Caller,
    pub key: KeyInfo,
}

fn hash(key: &str) -> String {
    baton_store::tenancy::hex(&Sha256::digest(key.as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The id of a key as presented (`bk_<id>_<secret>`), if it has that shape.
fn split_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_BYTES * 2) && hex(secret, SECRET_BYTES * 2)).then_some(id)
}

impl Control {
    /// Creates a key (admins; a key for another tenant needs the operator). The result holds
    /// the secret: show it once.
    pub async fn create_key(&self, caller: &Caller, k: NewKey) -> Result<CreatedKey> {
        let tenant = self
            .admin_tenant(caller, k.tenant.as_ref(), "key.create")
            .await?;
        let now = baton_store::now_ms();
        if k.expires_at_ms.is_some_and(|t| t <= now) {
            return Err(Error::invalid_field(
                "expires_at_ms",
                "the expiry is in the past",
            ));
        }
        let mut id = [0u8; ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        {
            // Dropped before the next await: the thread's generator is not `Send`.
            let mut rng = rand::rng();
            rng.fill_bytes(&mut id);
            rng.fill_bytes(&mut secret);
        }
        let id = baton_store::tenancy::hex(&id);
        let key = format!("{KEY_PREFIX}{id}_{}", baton_store::tenancy::hex(&secret));
        let rec = ApiKeyRecord {
            id: id.clone(),
            tenant: tenant.clone(),
            role: k.role,
            name: k.name,
            hash: hash(&key),
            created_at_ms: now,
            created_by: Some(caller.key_id.clone()),
            expires_at_ms: k.expires_at_ms,
            revoked_at_ms: None,
        };
        self.tenancy.create_key(rec.clone()).await?;
        let audit_as = caller.in_tenant(tenant);
        self.record(
            &audit_as,
            "key.create",
            Some(&format!("key/{id}")),
            Outcome::Ok,
            json!({"role": k.role, "expires_at_ms": k.expires_at_ms}),
        )
        .await?;
        Ok(CreatedKey {
            key,
            info: KeyInfo::of(&rec),
        })
    }

    /// The keys of the caller's tenant (or, for the operator, of `tenant`).
    pub async fn list_keys(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<KeyInfo>> {
        let tenant = self.admin_tenant(caller, tenant, "key.list").await?;
        Ok(self
            .tenancy
            .keys(&tenant)
            .await?
            .iter()
            .map(KeyInfo::of)
            .collect())
    }

    /// Revokes a key of the caller's tenant (the operator: of any tenant). A key of another
    /// tenant is not found.
    pub async fn revoke_key(&self, caller: &Caller, id: &str) -> Result<KeyInfo> {
        self.admin_tenant(caller, None, "key.revoke").await?;
        let rec = match self.tenancy.key(&caller.tenant, id).await? {
            Some(r) => Some(r),
            None if caller.allows(crate::Permission::Platform) => {
                self.tenancy.key_for_auth(id).await?
            }
            None => None,
        };
        let rec = rec.ok_or_else(|| Error::not_found(format!("no key {id}")))?;
        let now = baton_store::now_ms();
        self.tenancy.revoke_key(&rec.tenant, id, now).await?;
        self.record(
            &caller.in_tenant(rec.tenant.clone()),
            "key.revoke",
            Some(&format!("key/{id}")),
            Outcome::Ok,
            serde_json::Value::Null,
        )
        .await?;
        let mut info = KeyInfo::of(&rec);
        info.revoked_at_ms.get_or_insert(now);
        Ok(info)
    }

    /// Who a presented key is: its tenant, id and role. Unknown, malformed, revoked and
    /// expired keys are `Unauthenticated` (the message says which, never the key) and the
    /// failure is recorded in the audit log (in the key's tenant when the id is known, else in
    /// `default`). `request_id` and `source` go into the caller for the audit log.
    pub async fn authenticate(
        &self,
        key: &str,
        request_id: Option<String>,
        source: Option<String>,
    ) -> Result<Authenticated> {
        let fail = |tenant: TenantId, key_id: Option<String>, why: &'static str| {
            let request_id = request_id.clone();
            let source = source.clone();
            async move {
                let entry = baton_store::NewAuditEntry {
                    tenant,
                    at_ms: baton_store::now_ms(),
                    key_id,
                    action: "auth".into(),
                    object: None,
                    request_id,
                    source,
                    outcome: Outcome::Failed.as_str().into(),
                    details: json!({"reason": why}),
                };
                if let Err(e) = self.tenancy.append_audit(entry).await {
                    tracing::error!("cannot record a failed authentication: {e}");
                }
                Error::unauthenticated(why)
            }
        };
        let key = key.trim();
        let Some(id) = split_key(key) else {
            return Err(fail(TenantId::default(), None, "the key is not a Baton API key").await);
        };
        let Some(rec) = self.tenancy.key_for_auth(id).await? else {
            return Err(fail(TenantId::default(), None, "unknown key").await);
        };
        if !constant_time_eq(hash(key).as_bytes(), rec.hash.as_bytes()) {
            return Err(fail(rec.tenant, Some(rec.id), "unknown key").await);
        }
        if rec.revoked_at_ms.is_some() {
            return Err(fail(rec.tenant, Some(rec.id), "the key was revoked").await);
        }
        if rec
            .expires_at_ms
            .is_some_and(|t| t <= baton_store::now_ms())
        {
            return Err(fail(rec.tenant, Some(rec.id), "the key has expired").await);
        }
        Ok(Authenticated {
            caller: Caller {
                tenant: rec.tenant.clone(),
                key_id: rec.id.clone(),
                role: rec.role,
                request_id,
                source,
            },
            key: KeyInfo::of(&rec),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_shape_and_compare_in_constant_time() {
        let k = format!("bk_{}_{}", "a1".repeat(6), "0f".repeat(32));
        assert_eq!(split_key(&k), Some("a1a1a1a1a1a1"));
        for bad in [
            "",
            "bk_",
            "bk_x_y",
            &k[..k.len() - 1],
            &k.replace("bk_", "sk_"),
        ] {
            assert_eq!(split_key(bad), None, "{bad}");
        }
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(hash("x").len(), 64);
    }
}

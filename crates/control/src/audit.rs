//! The audit log: who did what to which object, from where, when, and whether it was allowed.
//! Each tenant's entries form a hash chain (each entry's hash covers the previous hash and
//! every field, `baton_store::tenancy::audit_hash`), so an entry changed, removed or
//! inserted afterwards breaks the chain at that point and [`Control::verify_audit`] names it.
//!
//! Control appends an entry for every write (runs started and controlled, answers, workflows,
//! keys, tenants) and every denial; front ends add failed authentications
//! ([`Control::authenticate`] does) and anything else they see (`Control::record`).

use baton_store::tenancy::{GENESIS_HASH, audit_hash};
use baton_store::{AuditEntry, AuditQuery, NewAuditEntry};
use baton_types::TenantId;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::{Caller, Control, Permission};

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused: the caller's role does not allow it.
    Denied,
    /// Refused: no valid key.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}

/// The result of checking a tenant's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Verified {
    pub tenant: TenantId,
    /// Entries checked.
    pub entries: u64,
    /// The first entry whose stored hashes do not match (absent: the chain is whole).
    pub broken: Option<Broken>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

/// How many entries a verification reads at a time.
const VERIFY_PAGE: u32 = 1000;

impl Control {
    /// Appends an entry for `caller` to its tenant's chain.
    pub async fn record(
        &self,
        caller: &Caller,
        action: &str,
        object: Option<&str>,
        outcome: Outcome,
        details: Value,
    ) -> Result<AuditEntry> {
        Ok(self
            .tenancy
            .append_audit(NewAuditEntry {
                tenant: caller.tenant.clone(),
                at_ms: baton_store::now_ms(),
                key_id: Some(caller.key_id.clone()),
                action: action.into(),
                object: object.map(String::from),
                request_id: caller.request_id.clone(),
                source: caller.source.clone(),
                outcome: outcome.as_str().into(),
                details,
            })
            .await?)
    }

    /// Records a denial of `action` and gives back the error to return. A failure to record
    /// is logged, and the denial stands.
    pub(crate) async fn denied(
        &self,
        caller: &Caller,
        action: &str,
        object: Option<&str>,
        e: Error,
    ) -> Error {
        let details = serde_json::json!({"role": caller.role, "message": e.to_string()});
        if let Err(re) = self
            .record(caller, action, object, Outcome::Denied, details)
            .await
        {
            tracing::error!("cannot record a denial in the audit log: {re}");
        }
        e
    }

    /// The caller's tenant's entries, oldest first (admins; the operator may read another
    /// tenant's with `tenant`).
    pub async fn audit(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEntry>> {
        let tenant = self.admin_tenant(caller, tenant, "audit.read").await?;
        Ok(self.tenancy.audit(&tenant, q).await?)
    }

    /// Checks the chain of `tenant` (default: the caller's) from its first entry: every
    /// `prev_hash` is the previous entry's hash, every hash is recomputed, seqs have no gap.
    pub async fn verify_audit(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
    ) -> Result<Verified> {
        let tenant = self.admin_tenant(caller, tenant, "audit.verify").await?;
        let mut prev = GENESIS_HASH.to_string();
        let mut expect = 1u64;
        loop {
            let q = AuditQuery {
                after: Some(expect - 1),
                limit: Some(VERIFY_PAGE),
                ..Default::default()
            };
            let page = self.tenancy.audit(&tenant, &q).await?;
            let n = page.len();
            for e in page {
                let broken = |reason: String| Verified {
                    tenant: tenant.clone(),
                    entries: expect - 1,
                    broken: Some(Broken { seq: e.seq, reason }),
                };
                if e.seq != expect {
                    return Ok(broken(format!(
                        "entry {} follows entry {} (entries are missing)",
                        e.seq,
                        expect - 1
                    )));
                }
                if e.entry.tenant != tenant {
                    return Ok(broken("the entry names another tenant".into()));
                }
                if e.prev_hash != prev {
                    return Ok(broken(
                        "its previous hash is not the hash of the entry before it".into(),
                    ));
                }
                if audit_hash(&prev, e.seq, &e.entry) != e.hash {
                    return Ok(broken(
                        "its hash does not match its content (the entry was changed)".into(),
                    ));
                }
                prev = e.hash;
                expect += 1;
            }
            if n < VERIFY_PAGE as usize {
                break;
            }
        }
        Ok(Verified {
            tenant,
            entries: expect - 1,
            broken: None,
        })
    }

    /// The tenant an admin use case acts on: the caller's own, or (for the operator) the one
    /// named. Denials are recorded.
    pub(crate) async fn admin_tenant(
        &self,
        caller: &Caller,
        tenant: Option<&TenantId>,
        action: &str,
    ) -> Result<TenantId> {
        let need = match tenant {
            Some(t) if *t != caller.tenant => Permission::Platform,
            _ => Permission::Admin,
        };
        let t = tenant.cloned().unwrap_or_else(|| caller.tenant.clone());
        if let Err(e) = caller.check(need) {
            // Another tenant is not there for this caller (never "forbidden").
            let e = match need {
                Permission::Platform => Error::not_found(format!("no tenant {t}")),
                _ => e,
            };
            return Err(self.denied(caller, action, None, e).await);
        }
        if self.tenancy.tenant(&t).await?.is_none() {
            return Err(Error::not_found(format!("no tenant {t}")));
        }
        Ok(t)
    }
}

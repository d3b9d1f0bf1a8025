//! Tenants: created and listed by the operator (an admin key of tenant `default`, or the
//! local CLI).

use baton_store::TenantRecord;
use baton_types::TenantId;
use serde_json::json;

use crate::audit::Outcome;
use crate::error::{Error, Result};
use crate::{Caller, Control, Permission};

impl Control {
    /// Creates a tenant (`Conflict` when the id is taken).
    pub async fn create_tenant(
        &self,
        caller: &Caller,
        id: &str,
        name: Option<String>,
    ) -> Result<TenantRecord> {
        if let Err(e) = caller.check(Permission::Platform) {
            return Err(self.denied(caller, "tenant.create", None, e).await);
        }
        let id: TenantId = id
            .parse()
            .map_err(|e: baton_types::tenancy::ParseTenantIdError| {
                Error::invalid_field("id", e.to_string())
            })?;
        let name = name.unwrap_or_else(|| id.to_string());
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::invalid_field(
                "name",
                "a tenant's name has 1 to 200 characters",
            ));
        }
        let rec = TenantRecord {
            id: id.clone(),
            name,
            created_at_ms: baton_store::now_ms(),
        };
        self.tenancy.create_tenant(rec.clone()).await?;
        self.seed_builtin_agents(&rec.id).await?;
        let object = format!("tenant/{id}");
        self.record(
            caller,
            "tenant.create",
            Some(&object),
            Outcome::Ok,
            json!({"name": rec.name}),
        )
        .await?;
        Ok(rec)
    }

    /// Every tenant (the operator), or the caller's own.
    pub async fn list_tenants(&self, caller: &Caller) -> Result<Vec<TenantRecord>> {
        if caller.allows(Permission::Platform) {
            return Ok(self.tenancy.tenants().await?);
        }
        caller.check(Permission::Read)?;
        Ok(self
            .tenancy
            .tenant(&caller.tenant)
            .await?
            .into_iter()
            .collect())
    }
}

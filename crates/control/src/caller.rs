//! Who is asking, and what each role may do. Every use case takes a [`Caller`] and checks it
//! here before it touches anything; front ends only establish who the caller is (a key, or
//! `Caller::local()` for the CLI).

use baton_types::{Role, TenantId};
use serde::Serialize;

use crate::error::{Error, Result};

/// The key id of the local CLI (which acts as the admin of tenant `default`).
pub const LOCAL: &str = "local";

/// The principal of a request: its tenant, its key and the key's role, and for the audit log
/// where the request came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub tenant: TenantId,
    /// The key's id, or [`LOCAL`].
    pub key_id: String,
    pub role: Role,
    /// The front end's request id (recorded in the audit log).
    pub request_id: Option<String>,
    /// Where the request came from: a remote address, or `cli`.
    pub source: Option<String>,
}

impl Caller {
    /// The local CLI: admin of the `default` tenant.
    pub fn local() -> Self {
        Self {
            tenant: TenantId::default(),
            key_id: LOCAL.into(),
            role: Role::Admin,
            request_id: None,
            source: Some("cli".into()),
        }
    }

    /// The process itself acting as the operator (a server resuming runs at start, a
    /// webhook's delivery): admin of `default`, key id `system`.
    pub fn system(source: &str) -> Self {
        Self {
            key_id: "system".into(),
            source: Some(source.into()),
            ..Self::local()
        }
    }

    /// The same caller acting in another tenant (the local CLI's `--tenant`; only the
    /// operator may, see [`Caller::check`] with [`Permission::Platform`]).
    pub fn in_tenant(&self, tenant: TenantId) -> Self {
        Self {
            tenant,
            ..self.clone()
        }
    }

    pub fn with_request(mut self, request_id: Option<String>, source: Option<String>) -> Self {
        self.request_id = request_id;
        self.source = source;
        self
    }

    /// Whether this caller sees only the runs it started (a `runner` key).
    pub fn own_runs_only(&self) -> bool {
        self.role == Role::Runner
    }

    /// Whether the role allows `p` ([`Error::Forbidden`] otherwise).
    pub fn check(&self, p: Permission) -> Result<()> {
        if self.allows(p) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "a key with role {} may not {}",
                self.role,
                p.describe()
            )))
        }
    }

    pub fn allows(&self, p: Permission) -> bool {
        use Permission as P;
        use Role as R;
        match p {
            P::Read => true,
            P::StartRuns | P::AnswerApprovals => self.role >= R::Runner,
            P::OperateRuns | P::EditWorkflows => self.role >= R::Editor,
            P::Admin => self.role == R::Admin,
            P::Platform => self.role == R::Admin && self.tenant.is_default(),
        }
    }
}

/// What a use case needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Read workflows and runs (a `runner` only its own runs).
    Read,
    StartRuns,
    /// Answer `human` steps (a `runner` only in its own runs).
    AnswerApprovals,
    /// Pause, resume, cancel any run of the tenant, and resolve its ambiguous steps.
    OperateRuns,
    EditWorkflows,
    /// Keys and the audit log of the tenant.
    Admin,
    /// Tenants, and acting in another tenant: the admin of `default` (the operator).
    Platform,
}

impl Permission {
    fn describe(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::StartRuns => "start runs",
            Self::AnswerApprovals => "answer approvals",
            Self::OperateRuns => "pause, resume, cancel or resolve runs",
            Self::EditWorkflows => "create, change or delete workflows or agents",
            Self::Admin => "manage keys or read the audit log",
            Self::Platform => "manage tenants (only an admin key of tenant `default` may)",
        }
    }
}

/// Who a caller is and what its role allows: what a front end shows (and hides) for it. The
/// server still checks every request; this only spares a user buttons that would be refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Whoami {
    pub tenant: TenantId,
    /// The key's id (`local` for the CLI).
    pub key_id: String,
    pub role: Role,
    pub may: Abilities,
}

/// What a role allows, one flag per [`Permission`] past reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Abilities {
    pub start_runs: bool,
    pub answer_approvals: bool,
    /// Pause, resume, cancel and resolve runs.
    pub operate_runs: bool,
    pub edit_workflows: bool,
    /// Keys and the audit log of the tenant.
    pub admin: bool,
    /// Tenants (the operator).
    pub platform: bool,
}

impl Caller {
    pub fn whoami(&self) -> Whoami {
        use Permission as P;
        Whoami {
            tenant: self.tenant.clone(),
            key_id: self.key_id.clone(),
            role: self.role,
            may: Abilities {
                start_runs: self.allows(P::StartRuns),
                answer_approvals: self.allows(P::AnswerApprovals),
                operate_runs: self.allows(P::OperateRuns),
                edit_workflows: self.allows(P::EditWorkflows),
                admin: self.allows(P::Admin),
                platform: self.allows(P::Platform),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, tenant: &str) -> Caller {
        Caller {
            tenant: tenant.parse().unwrap_or_default(),
            key_id: "k".into(),
            role,
            request_id: None,
            source: None,
        }
    }

    #[test]
    fn the_role_matrix() {
        use Permission as P;
        let all = [
            P::Read,
            P::StartRuns,
            P::AnswerApprovals,
            P::OperateRuns,
            P::EditWorkflows,
            P::Admin,
            P::Platform,
        ];
        let allowed = |r: Role, t: &str| -> Vec<P> {
            all.into_iter()
                .filter(|p| caller(r, t).allows(*p))
                .collect()
        };
        assert_eq!(allowed(Role::Viewer, "acme"), vec![P::Read]);
        assert_eq!(
            allowed(Role::Runner, "acme"),
            vec![P::Read, P::StartRuns, P::AnswerApprovals]
        );
        assert_eq!(
            allowed(Role::Editor, "acme"),
            vec![
                P::Read,
                P::StartRuns,
                P::AnswerApprovals,
                P::OperateRuns,
                P::EditWorkflows
            ]
        );
        assert_eq!(allowed(Role::Admin, "acme"), all[..6].to_vec());
        assert_eq!(allowed(Role::Admin, "default"), all.to_vec());
        let e = caller(Role::Viewer, "acme")
            .check(P::StartRuns)
            .unwrap_err();
        assert_eq!(e.code().as_str(), "forbidden");
        assert!(Caller::local().allows(P::Platform));
    }

    #[test]
    fn whoami_follows_the_role_matrix() {
        let w = caller(Role::Runner, "acme").whoami();
        assert_eq!(w.role, Role::Runner);
        assert_eq!(w.tenant.to_string(), "acme");
        assert!(w.may.start_runs && w.may.answer_approvals);
        assert!(!w.may.operate_runs && !w.may.edit_workflows && !w.may.admin);
        let op = Caller::local().whoami();
        assert!(op.may.admin && op.may.platform && op.may.operate_runs);
        assert!(!caller(Role::Viewer, "acme").whoami().may.start_runs);
    }
}

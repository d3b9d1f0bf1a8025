//! The landlock ruleset C applies before exec: read/exec on the system directories,
//! read/write on /tmp, /work and /dev/shm, and TCP only to the proxy port (allow mode).

use std::path::Path;

use super::PROXY_PORT;
use crate::policy::{NetMode, WORKSPACE};

/// Restricts the calling process; returns the line `enforced` reports.
pub(super) fn apply_landlock(net: &NetMode) -> Result<String, String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, path_beneath_rules,
    };
    let abi = ABI::V6;
    let read_exec = AccessFs::from_read(abi);
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| e.to_string())?;
    let handle_net = !matches!(net, NetMode::Loopback);
    if handle_net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| e.to_string())?;
    }
    ruleset = ruleset
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(|e| e.to_string())?;
    let mut created = ruleset
        .create()
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc",
                "/dev",
            ]
            .iter()
            .filter(|p| Path::new(p).exists()),
            read_exec,
        ))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(["/"], AccessFs::ReadDir))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            ["/tmp", WORKSPACE, "/dev/shm"],
            AccessFs::from_all(abi),
        ))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            crate::policy::DEVICES
                .iter()
                .filter(|p| Path::new(p).exists()),
            AccessFs::ReadFile | AccessFs::WriteFile,
        ))
        .map_err(|e| e.to_string())?;
    if matches!(net, NetMode::Allow(_)) {
        created = created
            .add_rule(NetPort::new(PROXY_PORT, AccessNet::ConnectTcp))
            .map_err(|e| e.to_string())?;
    }
    let status = created.restrict_self().map_err(|e| e.to_string())?;
    let state = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced (older kernel ABI)",
        RulesetStatus::NotEnforced => {
            "not supported by this kernel (mount namespace still applies)"
        }
    };
    Ok(format!(
        "landlock: {state}; read/exec system dirs, read/write /tmp /work /dev/shm{}",
        if handle_net {
            ", TCP bind/connect denied except the proxy port"
        } else {
            ""
        }
    ))
}

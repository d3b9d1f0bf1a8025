//! The seccomp filter: built from the policy's deny list with `seccompiler` (process tier) or
//! written out as OCI `linux.seccomp` (oci/gvisor tiers). Same list, two encodings.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde_json::{Value, json};

use crate::Error;

/// Every syscall a policy may deny, by name, with its number on this architecture.
const SYSCALLS: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("kcmp", libc::SYS_kcmp),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("process_madvise", libc::SYS_process_madvise),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("mbind", libc::SYS_mbind),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("move_pages", libc::SYS_move_pages),
    ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("syslog", libc::SYS_syslog),
    ("vhangup", libc::SYS_vhangup),
    ("personality", libc::SYS_personality),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("mknodat", libc::SYS_mknodat),
];

/// Legacy and port-I/O syscalls that exist on x86_64 only.
#[cfg(target_arch = "x86_64")]
const SYSCALLS_X86_64: &[(&str, i64)] = &[
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("uselib", libc::SYS_uselib),
    ("ustat", libc::SYS_ustat),
    ("sysfs", libc::SYS_sysfs),
    ("_sysctl", libc::SYS__sysctl),
    ("nfsservctl", libc::SYS_nfsservctl),
];
#[cfg(not(target_arch = "x86_64"))]
const SYSCALLS_X86_64: &[(&str, i64)] = &[];

/// The syscall number of `name` on this architecture, for the names a policy may deny.
pub fn syscall_number(name: &str) -> Option<i64> {
    SYSCALLS
        .iter()
        .chain(SYSCALLS_X86_64)
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

/// `clone` flags that create namespaces: denied from inside, like `unshare`.
pub const CLONE_NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn target_arch() -> Result<TargetArch, Error> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err(Error::Unenforceable(
            "seccomp filters are built for x86_64 and aarch64 only".into(),
        ))
    }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, Error> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| Error::Unenforceable(format!("seccomp: {e}")))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, Error> {
    SeccompRule::new(conds).map_err(|e| Error::Unenforceable(format!("seccomp: {e}")))
}

/// Compiles the deny list into BPF programs, applied in order: the first makes denied calls
/// fail with EPERM; the second makes `clone3` fail with ENOSYS (its flags live in memory a
/// filter cannot read) so libc falls back to `clone`, whose flags the first filter checks.
pub fn compile(deny: &[String]) -> Result<Vec<BpfProgram>, Error> {
    let arch = target_arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in deny {
        let nr = syscall_number(name)
            .ok_or_else(|| Error::InvalidPolicy(format!("unknown syscall '{name}'")))?;
        rules.insert(nr, Vec::new());
    }
    let clone_rules = CLONE_NS_FLAGS
        .iter()
        .map(|f| rule(vec![cond(0, SeccompCmpOp::MaskedEq(*f), *f)?]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // Raw, packet and vsock sockets: socket(AF_PACKET, ..), socket(AF_VSOCK, ..) (vsock is not
    // namespaced: it reaches the hypervisor or the host) and socket(.., SOCK_RAW, ..).
    rules.insert(
        libc::SYS_socket,
        vec![
            rule(vec![cond(0, SeccompCmpOp::Eq, libc::AF_PACKET as u64)?])?,
            rule(vec![cond(0, SeccompCmpOp::Eq, libc::AF_VSOCK as u64)?])?,
            rule(vec![cond(
                1,
                SeccompCmpOp::MaskedEq(0xf),
                libc::SOCK_RAW as u64,
            )?])?,
        ],
    );
    let deny_filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| Error::Unenforceable(format!("seccomp: {e}")))?;
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let clone3_filter = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| Error::Unenforceable(format!("seccomp: {e}")))?;
    let a: BpfProgram = deny_filter
        .try_into()
        .map_err(|e| Error::Unenforceable(format!("seccomp: {e}")))?;
    let b: BpfProgram = clone3_filter
        .try_into()
        .map_err(|e| Error::Unenforceable(format!("seccomp: {e}")))?;
    Ok(vec![a, b])
}

/// The same rules as OCI runtime-spec `linux.seccomp`.
pub fn oci(deny: &[String]) -> Value {
    let arch = if cfg!(target_arch = "aarch64") {
        "SCMP_ARCH_AARCH64"
    } else {
        "SCMP_ARCH_X86_64"
    };
    let mut syscalls =
        vec![json!({"names": deny, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM})];
    for f in CLONE_NS_FLAGS {
        syscalls.push(
            json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": f, "valueTwo": f, "op": "SCMP_CMP_MASKED_EQ"}]}),
        );
    }
    syscalls
        .push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    for family in [libc::AF_PACKET, libc::AF_VSOCK] {
        syscalls.push(
            json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": family, "op": "SCMP_CMP_EQ"}]}),
        );
    }
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
        "args": [{"index": 1, "value": 0xf, "valueTwo": libc::SOCK_RAW, "op": "SCMP_CMP_MASKED_EQ"}]}));
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch], "syscalls": syscalls})
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::{DEFAULT_SYSCALL_DENY, Policy, Tier};

    #[test]
    fn default_deny_list_compiles() {
        let deny = Policy::new(Tier::Process).syscall_deny;
        let progs = compile(&deny).unwrap();
        assert_eq!(progs.len(), 2);
        assert!(progs[0].len() > deny.len());
        assert!(compile(&["nope".to_string()]).is_err());
    }

    /// What Docker's default profile refuses to a container without capabilities, and the
    /// io_uring family, are denied by default (each family has a hostile payload too).
    #[test]
    fn the_default_list_covers_dockers_refusals_and_io_uring() {
        let deny = Policy::new(Tier::Process).syscall_deny;
        for name in [
            "add_key",
            "bpf",
            "fanotify_init",
            "fsopen",
            "io_uring_enter",
            "io_uring_register",
            "io_uring_setup",
            "kcmp",
            "kexec_file_load",
            "kexec_load",
            "keyctl",
            "mbind",
            "mount",
            "move_pages",
            "open_by_handle_at",
            "open_tree",
            "perf_event_open",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
            "quotactl_fd",
            "request_key",
            "set_mempolicy",
            "sethostname",
            "setns",
            "unshare",
            "userfaultfd",
        ] {
            assert!(deny.iter().any(|d| d == name), "{name} is not denied");
        }
        // Every name is known on x86_64 (others may lack a few legacy calls).
        if cfg!(target_arch = "x86_64") {
            assert_eq!(deny.len(), DEFAULT_SYSCALL_DENY.len());
        }
    }

    #[test]
    fn oci_form_lists_the_same_names() {
        let deny = vec!["ptrace".to_string(), "bpf".to_string()];
        let v = oci(&deny);
        assert_eq!(v["syscalls"][0]["names"], json!(["ptrace", "bpf"]));
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        let vsock =
            v["syscalls"].as_array().unwrap().iter().any(|r| {
                r["names"] == json!(["socket"]) && r["args"][0]["value"] == libc::AF_VSOCK
            });
        assert!(vsock, "{v}");
    }
}

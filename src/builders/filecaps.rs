//! File capabilities: an RPM's `%caps` text (the header's FILECAPS tag, in
//! libcap's `cap_from_text` syntax) turned into the `security.capability`
//! extended attribute that `rpm` sets when it installs the file (via
//! libcap's `cap_set_file`). The OS tree carries the attribute, so the
//! CernVM-FS catalog and the tarball do too, and `/usr/bin/ping` keeps
//! `cap_net_raw` without being setuid.
//!
//! The value is `struct vfs_cap_data` revision 2 (`linux/capability.h`):
//! little-endian `magic_etc` (0x02000000, plus 1 when the effective bit is
//! set), then permitted and inheritable words for capabilities 0-31 and
//! 32-63. Revision 3 adds a namespace root uid, which only a user namespace
//! writes; `rpm` running as real root writes revision 2.

/// Capability names by number, as libcap spells them (Linux 5.9 defines
/// 41). `all` means exactly these, not whatever the build host's kernel
/// knows, so the attribute does not depend on the machine that builds.
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The extended attribute that holds file capabilities.
pub const XATTR: &str = "security.capability";

const REVISION_2: u32 = 0x0200_0000;
const FLAG_EFFECTIVE: u32 = 1;

/// Effective, inheritable and permitted sets, one bit per capability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sets {
    effective: u64,
    inheritable: u64,
    permitted: u64,
}

/// The `security.capability` value for the `%caps` text `text`, or `None`
/// when the text is empty (a file without `%caps`: rpm sets nothing).
/// `=` alone gives the empty set, which rpm does write.
pub fn vfs_cap_data(text: &str) -> Result<Option<Vec<u8>>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let s = parse(text)?;
    // A file's effective "set" is one bit: on exec the new permitted set
    // becomes effective or not. libcap refuses an effective set that is
    // not empty and misses a permitted or inheritable capability.
    let effective = s.effective != 0;
    if effective && !s.effective & (s.permitted | s.inheritable) != 0 {
        return Err(format!(
            "file capabilities {text:?}: the effective flag must be on every permitted and inheritable capability or on none (a file has one effective bit)"
        ));
    }
    let mut out = Vec::with_capacity(20);
    let magic = REVISION_2 | if effective { FLAG_EFFECTIVE } else { 0 };
    out.extend_from_slice(&magic.to_le_bytes());
    for half in [0, 32] {
        out.extend_from_slice(&((s.permitted >> half) as u32).to_le_bytes());
        out.extend_from_slice(&((s.inheritable >> half) as u32).to_le_bytes());
    }
    Ok(Some(out))
}

/// libcap's text form: whitespace-separated clauses `[caps]op flags[op
/// flags]...`, where caps is a comma list of names (`cap_` prefix, any
/// case), numbers or `all`; op is `=` (reset the listed capabilities in all
/// three sets, then raise the flagged ones), `+` (raise) or `-` (lower);
/// flags are letters from `eip`. A clause without a list applies to all
/// capabilities and must start with `=`.
fn parse(text: &str) -> Result<Sets, String> {
    let bad = |why: &str| format!("file capabilities {text:?}: {why}");
    let all: u64 = (1u64 << NAMES.len()) - 1;
    let mut sets = Sets::default();
    for clause in text.split_ascii_whitespace() {
        let op_at = clause
            .find(['=', '+', '-'])
            .ok_or_else(|| bad(&format!("{clause:?} has no =, + or -")))?;
        let (list, mut rest) = clause.split_at(op_at);
        let listed = if list.is_empty() {
            if !rest.starts_with('=') {
                return Err(bad(&format!("{clause:?}: + and - need a capability list")));
            }
            all
        } else {
            let mut bits = 0u64;
            for name in list.split(',') {
                bits |= lookup(name).ok_or_else(|| bad(&format!("unknown capability {name:?}")))?;
            }
            bits
        };
        while let Some(op) = rest.chars().next() {
            let flags_end = rest[1..]
                .find(['=', '+', '-'])
                .map_or(rest.len(), |i| i + 1);
            let (mut e, mut i, mut p) = (false, false, false);
            for f in rest[1..flags_end].chars() {
                match f {
                    'e' => e = true,
                    'i' => i = true,
                    'p' => p = true,
                    _ => return Err(bad(&format!("unknown flag {f:?} (use e, i, p)"))),
                }
            }
            let apply = |set: &mut u64, on: bool| match op {
                '=' => *set = (*set & !listed) | if on { listed } else { 0 },
                '+' if on => *set |= listed,
                '-' if on => *set &= !listed,
                _ => {}
            };
            apply(&mut sets.effective, e);
            apply(&mut sets.inheritable, i);
            apply(&mut sets.permitted, p);
            rest = &rest[flags_end..];
        }
    }
    Ok(sets)
}

/// The bit of one capability: `cap_net_raw` (any case), a number below 64,
/// or `all`.
fn lookup(name: &str) -> Option<u64> {
    let lower = name.to_ascii_lowercase();
    if lower == "all" {
        return Some((1u64 << NAMES.len()) - 1);
    }
    if !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_digit()) {
        return lower
            .parse::<u32>()
            .ok()
            .filter(|n| *n < 64)
            .map(|n| 1 << n);
    }
    let bare = lower.strip_prefix("cap_")?;
    NAMES.iter().position(|n| *n == bare).map(|n| 1 << n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[u8]) -> Vec<u32> {
        v.chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn ping_and_friends() {
        // cap_net_raw is 13.
        let v = vfs_cap_data("cap_net_raw=ep").unwrap().unwrap();
        assert_eq!(words(&v), [0x0200_0001, 1 << 13, 0, 0, 0]);
        let v = vfs_cap_data("cap_net_admin,cap_net_raw+p")
            .unwrap()
            .unwrap();
        assert_eq!(words(&v), [0x0200_0000, (1 << 12) | (1 << 13), 0, 0, 0]);
        // 38 (perfmon) lands in the high word.
        let v = vfs_cap_data("CAP_PERFMON=ei").unwrap().unwrap();
        assert_eq!(words(&v), [0x0200_0001, 0, 0, 0, 1 << 6]);
        let v = vfs_cap_data("=ep cap_sys_admin-ep").unwrap().unwrap();
        assert_eq!(words(&v)[1], !(1u32 << 21));
        assert_eq!(words(&v)[3], (1 << 9) - 1);
        assert_eq!(vfs_cap_data("").unwrap(), None);
        assert_eq!(
            words(&vfs_cap_data("=").unwrap().unwrap()),
            [0x0200_0000, 0, 0, 0, 0]
        );
    }

    #[test]
    fn refuses_what_libcap_refuses() {
        for bad in [
            "cap_nope=p",
            "+p",
            "cap_net_raw",
            "cap_net_raw=x",
            "cap_net_raw+p cap_sys_admin+ep",
            "64=p",
        ] {
            assert!(vfs_cap_data(bad).is_err(), "{bad}");
        }
    }
}

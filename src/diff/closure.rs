//! Closure diff: which packages two pinned closures add, remove, upgrade or
//! downgrade, with size deltas, read straight from two lock entries.
//!
//! Packages are grouped by name (as `nix store diff-closures` groups by
//! package name), so an install-only package with several versions, or a
//! multilib pair, is one line listing all its versions.

use crate::lock::LockedPackage;
use crate::repo::Evr;
use serde::Serialize;
use std::collections::BTreeMap;

/// How one package name changed between A and B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Upgraded,
    Downgraded,
    Added,
    Removed,
    /// Same versions, different files (another checksum, repository or
    /// arch): a rebuild published under the same version.
    Changed,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Upgraded => "upgraded",
            Change::Downgraded => "downgraded",
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// One package name whose pinned versions differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    pub name: String,
    pub change: Change,
    /// Versions in A (`[epoch:]version-release`, with `.arch` when the name
    /// comes in several arches), sorted; empty when added.
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// Sum of B's package sizes minus A's, in bytes (the lock's `size`).
    pub size_delta: i64,
}

/// Size of one closure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub packages: usize,
    /// Sum of the package files' sizes in bytes.
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClosureDiff {
    pub a: Totals,
    pub b: Totals,
    /// Sorted by change kind (upgraded, downgraded, added, removed, changed),
    /// then name.
    pub changes: Vec<PackageChange>,
}

impl ClosureDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Compares two pinned closures.
pub fn diff(a: &[LockedPackage], b: &[LockedPackage]) -> ClosureDiff {
    let mut names: BTreeMap<&str, (Vec<&LockedPackage>, Vec<&LockedPackage>)> = BTreeMap::new();
    for p in a {
        names.entry(&p.name).or_default().0.push(p);
    }
    for p in b {
        names.entry(&p.name).or_default().1.push(p);
    }
    let mut changes = Vec::new();
    for (name, (mut old, mut new)) in names {
        old.sort();
        new.sort();
        if old == new {
            continue;
        }
        let change = match (old.is_empty(), new.is_empty()) {
            (true, _) => Change::Added,
            (_, true) => Change::Removed,
            _ => match newest(&new).cmp(&newest(&old)) {
                std::cmp::Ordering::Greater => Change::Upgraded,
                std::cmp::Ordering::Less => Change::Downgraded,
                std::cmp::Ordering::Equal => Change::Changed,
            },
        };
        let several_arches = {
            let mut arches: Vec<&str> = old.iter().chain(&new).map(|p| p.arch.as_str()).collect();
            arches.sort();
            arches.dedup();
            arches.len() > 1
        };
        let label = |ps: &[&LockedPackage]| -> Vec<String> {
            let mut v: Vec<(Evr, String)> = ps
                .iter()
                .map(|p| {
                    let text = if several_arches {
                        format!("{}.{}", p.evr(), p.arch)
                    } else {
                        p.evr()
                    };
                    (evr(p), text)
                })
                .collect();
            v.sort();
            v.dedup();
            v.into_iter().map(|(_, t)| t).collect()
        };
        let size = |ps: &[&LockedPackage]| ps.iter().map(|p| p.size as i64).sum::<i64>();
        changes.push(PackageChange {
            name: name.to_string(),
            change,
            old: label(&old),
            new: label(&new),
            size_delta: size(&new) - size(&old),
        });
    }
    changes.sort_by(|x, y| (x.change, &x.name).cmp(&(y.change, &y.name)));
    ClosureDiff {
        a: totals(a),
        b: totals(b),
        changes,
    }
}

fn totals(ps: &[LockedPackage]) -> Totals {
    Totals {
        packages: ps.len(),
        size: ps.iter().map(|p| p.size).sum(),
    }
}

fn evr(p: &LockedPackage) -> Evr {
    Evr::new(p.epoch, &p.version, Some(&p.release))
}

/// The highest version among a non-empty group, by rpm's ordering.
fn newest(ps: &[&LockedPackage]) -> Evr {
    ps.iter().map(|p| evr(p)).max().expect("non-empty group")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, epoch: u64, v: &str, r: &str, arch: &str, size: u64) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            epoch,
            version: v.into(),
            release: r.into(),
            arch: arch.into(),
            repo: "os".into(),
            location: format!("{name}-{v}-{r}.{arch}.rpm"),
            checksum: format!("sha256:{name}{v}{r}"),
            size,
            signer: None,
        }
    }

    #[test]
    fn classifies_by_rpm_order_not_text_order() {
        let a = [
            p("bash", 0, "4.1.2", "9.el6", "x86_64", 100),
            p("perl", 4, "5.10.1", "1", "x86_64", 50),
            p("gone", 0, "1", "1", "noarch", 7),
            p("same", 0, "1", "1", "noarch", 7),
        ];
        let b = [
            // 10 > 9 numerically although "10" < "9" as text.
            p("bash", 0, "4.1.2", "10.el6", "x86_64", 130),
            // A lower epoch is a downgrade whatever the version says.
            p("perl", 3, "9.0", "1", "x86_64", 40),
            p("new", 0, "2", "1", "noarch", 5),
            p("same", 0, "1", "1", "noarch", 7),
        ];
        let d = diff(&a, &b);
        let got: Vec<_> = d
            .changes
            .iter()
            .map(|c| (c.name.as_str(), c.change, c.size_delta))
            .collect();
        assert_eq!(
            got,
            [
                ("bash", Change::Upgraded, 30),
                ("perl", Change::Downgraded, -10),
                ("new", Change::Added, 5),
                ("gone", Change::Removed, -7),
            ]
        );
        assert_eq!(d.changes[1].old, ["4:5.10.1-1"]);
        assert_eq!(d.changes[1].new, ["3:9.0-1"]);
        assert_eq!(
            d.a,
            Totals {
                packages: 4,
                size: 164
            }
        );
        assert_eq!(d.b.size, 182);
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn install_only_and_multilib_groups_and_rebuilds() {
        let a = [
            p("kernel", 0, "2.6.32", "431", "x86_64", 10),
            p("glibc", 0, "2.12", "1", "x86_64", 10),
        ];
        let mut rebuilt = p("glibc", 0, "2.12", "1", "x86_64", 11);
        rebuilt.checksum = "sha256:other".into();
        let b = [
            p("kernel", 0, "2.6.32", "431", "x86_64", 10),
            p("kernel", 0, "3.10.0", "1", "x86_64", 12),
            rebuilt,
            p("glibc", 0, "2.12", "1", "i686", 9),
        ];
        let d = diff(&a, &b);
        assert_eq!(d.changes[0].name, "kernel");
        assert_eq!(d.changes[0].change, Change::Upgraded);
        assert_eq!(d.changes[0].new, ["2.6.32-431", "3.10.0-1"]);
        assert_eq!(d.changes[1].name, "glibc");
        assert_eq!(d.changes[1].change, Change::Changed);
        assert_eq!(d.changes[1].old, ["2.12-1.x86_64"]);
        assert_eq!(d.changes[1].new, ["2.12-1.i686", "2.12-1.x86_64"]);
    }
}

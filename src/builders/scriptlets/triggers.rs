//! Triggers and file triggers, read from a package's stored header (the
//! `TRIGGER*`, `FILETRIGGER*` and `TRANSFILETRIGGER*` tags), and when rpm
//! fires them on a fresh install.
//!
//! A package trigger (`%triggerprein`, `%triggerin`) names other packages
//! by name and optional version range; it fires when such a target is
//! installed while the trigger's package is there, and when the trigger's
//! package is installed while a target is there. A file trigger names
//! path prefixes; `%filetriggerin` fires per installed package whose files
//! match (and, for the trigger's own package, for the matching files
//! already installed), `%transfiletriggerin` once after the transaction,
//! both with the matching paths on standard input. See rpm's
//! `triggers.md` and `file_triggers.md`.

use std::cmp::Reverse;

use super::Script;
use crate::repo::evr::{Evr, Op, Range};
use crate::rpmdb::{Blob, RpmdbError};

/// rpm's trigger sense flags (`RPMSENSE_TRIGGER*`).
const SENSE_IN: u32 = 1 << 16;
const SENSE_UN: u32 = 1 << 17;
const SENSE_POSTUN: u32 = 1 << 18;
const SENSE_PREIN: u32 = 1 << 25;
/// rpm's version comparison flags.
const LESS: u32 = 2;
const GREATER: u32 = 4;
const EQUAL: u32 = 8;

/// A file trigger with a priority above this runs before the triggering
/// package's `%post`, the others after its `%post` and triggers.
pub const EARLY_PRIORITY: u32 = 100_000;

/// Which of rpm's three trigger families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Package,
    File,
    TransFile,
}

/// When a trigger fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    PreIn,
    In,
    Un,
    PostUn,
}

/// One trigger script with its conditions.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub class: Class,
    pub when: When,
    /// `kind` is the spec's section name (`triggerin`, `filetriggerin`).
    pub script: Script,
    /// Package triggers: target names with their version ranges. File
    /// triggers: path prefixes (no range).
    pub conds: Vec<Cond>,
    /// File triggers' priority (higher runs first); 0 for package ones.
    pub priority: u32,
}

/// One condition of a trigger.
#[derive(Clone, Debug)]
pub struct Cond {
    /// Its place in the header's condition list, the order rpm checks
    /// a package's triggers in.
    pub pos: usize,
    pub name: String,
    pub range: Option<Range>,
}

/// The tags of one family: scripts, programs, names, versions, flags,
/// index (condition to script), priorities.
struct Tags {
    class: Class,
    prefix: &'static str,
    scripts: u32,
    progs: u32,
    names: u32,
    versions: u32,
    flags: u32,
    index: u32,
    priorities: Option<u32>,
}

const FAMILIES: [Tags; 3] = [
    Tags {
        class: Class::Package,
        prefix: "",
        scripts: 1065,
        progs: 1092,
        names: 1066,
        versions: 1067,
        flags: 1068,
        index: 1069,
        priorities: None,
    },
    Tags {
        class: Class::File,
        prefix: "file",
        scripts: 5066,
        progs: 5067,
        names: 5069,
        versions: 5071,
        flags: 5072,
        index: 5070,
        priorities: Some(5084),
    },
    Tags {
        class: Class::TransFile,
        prefix: "transfile",
        scripts: 5076,
        progs: 5077,
        names: 5079,
        versions: 5081,
        flags: 5082,
        index: 5080,
        priorities: Some(5085),
    },
];

/// Every trigger of the header blob `blob`, in script order per family.
pub fn read(blob: &[u8], what: &str) -> Result<Vec<Trigger>, RpmdbError> {
    let h = Blob::parse(blob, what)?;
    let text = |tag| -> Result<Vec<String>, RpmdbError> {
        Ok(h.strings(tag, what)?
            .into_iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect())
    };
    let mut out = Vec::new();
    for f in &FAMILIES {
        let scripts = text(f.scripts)?;
        let progs = text(f.progs)?;
        let names = text(f.names)?;
        let versions = text(f.versions)?;
        let flags = h.u32s(f.flags, what)?;
        let index = h.u32s(f.index, what)?;
        let priorities = match f.priorities {
            Some(t) => h.u32s(t, what)?,
            None => vec![],
        };
        for (i, body) in scripts.into_iter().enumerate() {
            let mut conds = Vec::new();
            let mut sense = 0;
            for (j, name) in names.iter().enumerate() {
                if index.get(j).map(|&x| x as usize) != Some(i) {
                    continue;
                }
                let fl = flags.get(j).copied().unwrap_or(0);
                sense = fl;
                let range = versions
                    .get(j)
                    .filter(|v| !v.is_empty())
                    .and_then(|v| Some((op(fl)?, Evr::parse(v).ok()?)))
                    .map(|(op, evr)| Range { op, evr });
                conds.push(Cond {
                    pos: j,
                    name: name.clone(),
                    range,
                });
            }
            let when = if sense & SENSE_PREIN != 0 {
                When::PreIn
            } else if sense & SENSE_IN != 0 {
                When::In
            } else if sense & SENSE_UN != 0 {
                When::Un
            } else if sense & SENSE_POSTUN != 0 {
                When::PostUn
            } else {
                continue; // no condition names this script
            };
            let word = match when {
                When::PreIn => "prein",
                When::In => "in",
                When::Un => "un",
                When::PostUn => "postun",
            };
            out.push(Trigger {
                class: f.class,
                when,
                script: Script {
                    kind: format!("{}trigger{word}", f.prefix),
                    program: progs
                        .get(i)
                        .filter(|p| !p.is_empty())
                        .cloned()
                        .into_iter()
                        .collect(),
                    body,
                },
                conds,
                priority: priorities.get(i).copied().unwrap_or(0),
            });
        }
    }
    Ok(out)
}

fn op(flags: u32) -> Option<Op> {
    Some(match flags & (LESS | GREATER | EQUAL) {
        x if x == LESS => Op::Lt,
        x if x == LESS | EQUAL => Op::Le,
        x if x == EQUAL => Op::Eq,
        x if x == GREATER | EQUAL => Op::Ge,
        x if x == GREATER => Op::Gt,
        _ => return None,
    })
}

impl Trigger {
    /// The first condition (by [`Cond::pos`]) of this package trigger
    /// naming the package `name` at `evr`.
    pub fn names(&self, name: &str, evr: Option<&Evr>) -> Option<usize> {
        self.conds
            .iter()
            .filter(|c| {
                c.name == name
                    && match (&c.range, evr) {
                        (None, _) => true,
                        (Some(r), Some(e)) => r.contains(e),
                        (Some(_), None) => false,
                    }
            })
            .map(|c| c.pos)
            .min()
    }

    /// The paths of `files` under one of this file trigger's prefixes
    /// (a plain string prefix, as rpm matches), in their order.
    pub fn matching<'a>(&'a self, files: &'a [String]) -> impl Iterator<Item = &'a String> + 'a {
        files
            .iter()
            .filter(|f| self.conds.iter().any(|c| f.starts_with(c.name.as_str())))
    }
}

/// `triggers` ordered as rpm runs them: higher priority first, ties in
/// their given order.
pub fn by_priority<T>(mut triggers: Vec<(T, &Trigger)>) -> Vec<(T, &Trigger)> {
    triggers.sort_by_key(|(_, t)| Reverse(t.priority));
    triggers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(conds: &[(&str, u32, &str)]) -> Trigger {
        Trigger {
            class: Class::Package,
            when: When::In,
            script: Script {
                kind: "triggerin".into(),
                program: vec![],
                body: String::new(),
            },
            conds: conds
                .iter()
                .enumerate()
                .map(|(pos, (name, flags, v))| Cond {
                    pos: pos + 3,
                    name: name.to_string(),
                    range: Some((op(*flags), Evr::parse(v).ok()))
                        .and_then(|(o, e)| Some(Range { op: o?, evr: e? })),
                })
                .collect(),
            priority: 0,
        }
    }

    #[test]
    fn package_conditions_match_name_and_version_range() {
        let t = trigger(&[
            ("a", 0, ""),
            ("b", GREATER | EQUAL, "2.0"),
            ("b", LESS, "1.0"),
        ]);
        let evr = |s: &str| Evr::parse(s).unwrap();
        assert_eq!(t.names("a", Some(&evr("0.1-1"))), Some(3));
        assert_eq!(t.names("b", Some(&evr("2.0-1"))), Some(4));
        assert_eq!(t.names("b", Some(&evr("0.5-1"))), Some(5));
        assert_eq!(t.names("b", Some(&evr("1.5-1"))), None);
        assert_eq!(t.names("c", Some(&evr("1"))), None);
    }

    #[test]
    fn file_conditions_are_plain_string_prefixes() {
        let mut t = trigger(&[("/usr/lib", 0, "")]);
        t.class = Class::File;
        let files: Vec<String> = ["/usr/lib", "/usr/lib64/x", "/usr/libexec", "/usr/bin/x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m: Vec<&String> = t.matching(&files).collect();
        assert_eq!(m, ["/usr/lib", "/usr/lib64/x", "/usr/libexec"]);
    }
}

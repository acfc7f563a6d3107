//! `cvmbuild diff`: compares two releases and says why they differ.
//!
//! Three layers, each its own module: the pinned closures ([`closure`],
//! from the two lock entries), the derivation graphs with the root cause of
//! every difference ([`causes`], down to spec lines via [`locate`]), and the
//! OS trees' files ([`files`], from the store's tree objects). [`input`]
//! loads what the user named; [`render`] turns the [`Report`] into text.
//! The JSON form is the serialised [`Report`], documented in
//! `docs/diff-schema.md`.

pub mod causes;
pub mod closure;
pub mod files;
pub mod input;
pub mod locate;
pub mod render;

pub use input::{load, Side};

use miette::{miette, Result};
use serde::Serialize;

/// Version of the JSON report; bumped on any incompatible change.
pub const SCHEMA: u32 = 1;

/// Everything `diff` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub a: SideInfo,
    pub b: SideInfo,
    /// True when nothing below differs.
    pub identical: bool,
    pub closure: closure::ClosureDiff,
    pub derivations: causes::DrvDiff,
    /// Present with `--files`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<files::FileDiff>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SideInfo {
    /// The argument as given.
    pub input: String,
    pub branch: String,
    /// `spec` or `lock`.
    pub kind: &'static str,
    /// The solve derivation id its closure answers.
    pub solve: String,
}

impl SideInfo {
    fn of(s: &Side) -> Self {
        SideInfo {
            input: s.label.clone(),
            branch: s.branch.clone(),
            kind: if s.spec.is_some() { "spec" } else { "lock" },
            solve: s.lock.solve.clone(),
        }
    }
}

impl Report {
    /// Compares closures and derivation graphs.
    pub fn new(a: &Side, b: &Side) -> Report {
        let mut r = Report {
            schema: SCHEMA,
            a: SideInfo::of(a),
            b: SideInfo::of(b),
            identical: false,
            closure: closure::diff(&a.lock.package, &b.lock.package),
            derivations: causes::diff(a, b),
            files: None,
        };
        r.update_identical();
        r
    }

    /// Adds the file diff of the two OS trees, which must be realized in
    /// `store`.
    pub fn add_files(&mut self, store: &dyn crate::store::Store, a: &Side, b: &Side) -> Result<()> {
        let out = |s: &Side, which: &str| -> Result<crate::store::Output> {
            let spec = s.spec.as_ref().ok_or_else(|| {
                miette!(
                    code = "diff::files",
                    "--files needs specs, not lock files: `{}` ({which}) has no derivation graph",
                    s.label
                )
            })?;
            let id = spec.graph.roots.get("os-tree").ok_or_else(|| {
                miette!(
                    code = "diff::files",
                    "`{}` ({which}) has no os-tree",
                    s.label
                )
            })?;
            store.lookup_output(&id.0)?.ok_or_else(|| {
                miette!(
                    code = "diff::files",
                    help = format!(
                        "build it first: cvmbuild realize {} --store DIR",
                        s.label.replacen('#', " --branch ", 1)
                    ),
                    "the OS tree of `{}` ({which}, {}) is not in the store",
                    s.label,
                    id.short()
                )
            })
        };
        let (oa, ob) = (out(a, "A")?, out(b, "B")?);
        self.files = Some(files::diff(store, &oa, &ob)?);
        self.update_identical();
        Ok(())
    }

    /// Keeps only the subtree that explains one derivation (`--why`): an
    /// output name, a derivation name or an id prefix. `None` when that
    /// derivation does not differ (or exists in neither graph).
    pub fn why(&mut self, key: &str) -> Option<()> {
        self.derivations = self.derivations.only(key)?;
        Some(())
    }

    fn update_identical(&mut self) {
        self.identical = self.closure.is_empty()
            && self.derivations.is_empty()
            && self.files.as_ref().is_none_or(|f| f.changes.is_empty());
    }
}

//! `cvmbuild diff`: compares two releases and says why they differ.
//!
//! Three layers, each its own module: the pinned closures ([`closure`],
//! from the two lock entries), the derivation graphs with the root cause of
//! every difference ([`causes`], down to spec lines via [`locate`]), and the
//! OS trees' files ([`files`], from the store's tree objects). [`input`]
//! loads what the user named (specs and locks itself, derivation ids and
//! CernVM-FS tags through [`records`]); [`render`] turns the [`Report`] into text.
//! The JSON form is the serialised [`Report`], documented in
//! `docs/diff-schema.md`.

pub mod causes;
pub mod closure;
mod error;
pub mod files;
pub mod input;
pub mod locate;
pub mod records;
pub mod render;
mod side;

pub use error::Error;
pub use input::load;
pub use side::{Lookup, Side};

type Result<T, E = Error> = std::result::Result<T, E>;
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
    /// Empty for a derivation id that records no branch.
    pub branch: String,
    /// `spec`, `lock`, `drv` or `tag`.
    pub kind: &'static str,
    /// The solve derivation id its closure answers; `None` for a derivation
    /// id or tag, whose recorded graph does not reach the solve.
    pub solve: Option<String>,
    /// For `drv` and `tag`: the full id of the derivation compared (a tag's
    /// is the publish derivation that published it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drv: Option<String>,
}

impl SideInfo {
    fn of(s: &Side) -> Self {
        SideInfo {
            input: s.label.clone(),
            branch: s.branch.clone(),
            kind: s.kind,
            solve: s
                .lock
                .as_ref()
                .map(|l| l.solve.clone())
                .or_else(|| s.graph()?.roots.get("solve").map(|i| i.0.clone())),
            drv: s.recorded.as_ref().and_then(|g| {
                // The derivation the side was loaded from: the one no other
                // recorded derivation takes as an input.
                let downstream: std::collections::HashSet<_> =
                    g.topo().iter().flat_map(|(_, d)| d.input_drvs()).collect();
                g.topo()
                    .into_iter()
                    .find(|(i, _)| !downstream.contains(i))
                    .map(|(i, _)| i.0.clone())
            }),
        }
    }
}

impl Report {
    /// Compares closures and derivation graphs.
    pub fn new(a: &Side, b: &Side) -> Result<Report> {
        let derivations = causes::diff(a, b).ok_or_else(|| Error::Incomparable {
            a: a.label.clone(),
            a_kind: a.kind,
            b: b.label.clone(),
            b_kind: b.kind,
        })?;
        let mut r = Report {
            schema: SCHEMA,
            a: SideInfo::of(a),
            b: SideInfo::of(b),
            identical: false,
            closure: closure::diff(&a.packages, &b.packages),
            derivations,
            files: None,
        };
        r.update_identical();
        Ok(r)
    }

    /// Adds the file diff of the two OS trees, which must be realized in
    /// `store`.
    pub fn add_files(&mut self, store: &dyn crate::store::Store, a: &Side, b: &Side) -> Result<()> {
        let out = |s: &Side, which: &'static str| -> Result<crate::store::Output> {
            let arg = || s.label.clone();
            let graph = s
                .graph()
                .ok_or_else(|| Error::NoGraph { arg: arg(), which })?;
            let id = graph
                .roots
                .get("os-tree")
                .ok_or_else(|| Error::NoOsTree { arg: arg(), which })?;
            store
                .lookup_output(&id.0)?
                .ok_or_else(|| Error::NotRealized {
                    arg: arg(),
                    which,
                    id: id.short().to_string(),
                    build: format!(
                        "cvmbuild realize {} --store DIR",
                        s.label.replacen('#', " --branch ", 1)
                    ),
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

//! `diff`: compare two releases.

use super::Global;
use clap::Args;
use miette::{miette, Result};

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The old release: SPEC.cvm[#BRANCH] (evaluated from its lock), FILE.lock[#BRANCH], a
    /// derivation id (or prefix) recorded in the store, or cvmfs:FQRN@TAG / cvmfs:DIR@TAG /
    /// cvmfs:http://HOST/cvmfs/FQRN@TAG (any repository, read with its trust chain verified).
    pub a: String,
    /// The new release, likewise.
    pub b: String,
    /// Explain one derivation only: an output (`os-tree`, `initrd`), a derivation name or an id prefix.
    #[arg(long, value_name = "DRV")]
    pub why: Option<String>,
    /// Also compare the two OS trees file by file (both must be realized in the store).
    #[arg(long)]
    pub files: bool,
    /// Print the report as JSON (schema: docs/diff-schema.md).
    #[arg(long)]
    pub json: bool,
    /// For a repository given by URL: its trusted master public key (PEM), repeatable
    /// (like CVMFS_PUBLIC_KEY).
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<std::path::PathBuf>,
    /// For a repository given by URL: the proxy chain, as CVMFS_HTTP_PROXY.
    #[arg(long, value_name = "PROXIES", default_value = "DIRECT")]
    pub proxy: String,
    /// For a repository given by URL: the client's object cache (as for `cvmbuild mount`).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<std::path::PathBuf>,
}

/// Exits like diff(1): 0 identical, 1 different, 2 trouble; so errors are
/// printed here rather than returned (the CLI maps returned errors to 1).
pub(super) fn diff_cmd(g: &Global, a: DiffArgs) -> Result<i32> {
    match diff_report(g, &a) {
        Ok(None) => {
            eprintln!(
                "`{}` is the same derivation in A and B",
                a.why.as_deref().unwrap_or_default()
            );
            Ok(0)
        }
        Ok(Some(r)) => {
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&r).expect("plain data"));
            } else {
                out!("{}", crate::diff::render::text(&r));
            }
            Ok(if r.identical { 0 } else { 1 })
        }
        Err(report) => {
            eprintln!("{report:?}");
            Ok(2)
        }
    }
}

/// The report, or `None` when `--why` names a derivation that does not differ.
fn diff_report(g: &Global, a: &DiffArgs) -> Result<Option<crate::diff::Report>> {
    let lookup = crate::diff::Lookup {
        store: g.store_dir().ok(),
        // The name, servers and pin come from each `cvmfs:URL@TAG`.
        remote: (!a.keys.is_empty())
            .then(|| -> Result<_> {
                Ok(crate::client::Config {
                    fqrn: String::new(),
                    servers: Vec::new(),
                    proxies: a.proxy.clone(),
                    keys: a.keys.clone(),
                    pin: crate::client::Pin::Head,
                    cache: super::client::cache_dir(a.cache.as_deref())?,
                    quota: None,
                    timeouts: Default::default(),
                })
            })
            .transpose()?,
    };
    let side_a = crate::diff::load(&a.a, &lookup)?;
    let side_b = crate::diff::load(&a.b, &lookup)?;
    let mut r = crate::diff::Report::new(&side_a, &side_b)?;
    if a.files {
        let store = crate::store::FsStore::open(&g.store_dir()?)?;
        r.add_files(&store, &side_a, &side_b)?;
    }
    if let Some(key) = &a.why {
        if r.why(key).is_none() {
            let known = [&side_a, &side_b].iter().any(|s| {
                s.graph().is_some_and(|gr| {
                    gr.roots.contains_key(key.as_str()) || !gr.find(key).is_empty()
                })
            });
            if known {
                return Ok(None);
            }
            return Err(miette!(
                code = "diff::why",
                "no derivation matches `{key}` in A or B"
            ));
        }
    }
    Ok(Some(r))
}

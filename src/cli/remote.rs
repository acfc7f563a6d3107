//! `copy` and `key`: push outputs to a binary cache (store-layout.md
//! 2.11) or pull them from one, and make the ed25519 keys that sign them.

use super::Global;
use crate::eval::DrvId;
use crate::store::remote::{Remote, SecretKey, Transfer};
use clap::{Args, Subcommand};
use miette::{miette, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The binary cache to push to: http[s]://… (written with WebDAV PUT)
    /// or s3://BUCKET[/PREFIX] (AWS_* environment, store-layout.md 2.11).
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "from",
        required_unless_present = "from"
    )]
    pub to: Option<String>,
    /// The binary cache to pull from: each output with its closure, every
    /// object verified, the record's signature checked against
    /// `--trusted-key`.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// With `--to`: the secret key file (NAME:BASE64) that signs the
    /// output records.
    #[arg(long, value_name = "FILE", env = "CVMBUILD_SIGN_KEY")]
    pub sign_key: Option<PathBuf>,
    /// With `--from`: a public key file (NAME:BASE64) whose signatures are
    /// trusted; repeatable.
    #[arg(
        long = "trusted-key",
        value_name = "FILE",
        env = "CVMBUILD_TRUSTED_KEYS",
        value_delimiter = ' '
    )]
    pub trusted_keys: Vec<PathBuf>,
    /// Derivation ids, output hashes (unique prefixes), GC root names or
    /// output names (`os-tree`), as `cvmbuild log` takes them; with
    /// `--from`, also full derivation ids this store has never seen.
    #[arg(required = true, value_name = "ID|ROOT")]
    pub outputs: Vec<String>,
    /// Also take the output names (`os-tree`, `meta-rpm`) of this spec's
    /// branch, evaluated offline from its lock file, so a machine that
    /// has never realized it can name what to pull.
    #[arg(long, value_name = "SPEC")]
    pub spec: Option<PathBuf>,
    /// With `--spec`: the branch (needed when the spec has several).
    #[arg(long, short, requires = "spec")]
    pub branch: Option<String>,
    /// With `--to`: push only the named outputs, not also those of the
    /// derivations they were built from (which let another machine whose
    /// build differs in one package substitute everything else).
    #[arg(long)]
    pub no_inputs: bool,
    /// With `--to`: among the inputs, also push the outputs of `fetch`
    /// derivations (the downloaded RPM files). Left out by default: a
    /// substituting machine takes the extracted packages instead and
    /// needs an RPM only to extract a package that changed, which is not
    /// on the cache anyway; they are most of the bytes.
    #[arg(long, conflicts_with = "no_inputs")]
    pub with_fetched: bool,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make an ed25519 signing key: FILE gets the secret key (mode 0600),
    /// FILE.pub the public key to give to `realize --trusted-key`.
    Generate {
        /// The key's name, recorded with every signature (e.g. build-farm-1).
        name: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

pub(super) fn copy_cmd(g: &Global, a: CopyArgs) -> Result<i32> {
    match (&a.to, &a.from) {
        (Some(url), _) => push(g, url, &a),
        (None, Some(url)) => pull(g, url, &a),
        (None, None) => unreachable!("clap requires --to or --from"),
    }
}

fn push(g: &Global, url: &str, a: &CopyArgs) -> Result<i32> {
    let key_file = a.sign_key.as_ref().ok_or_else(|| {
        miette!(
            code = "cli::no-sign-key",
            help = "make one with `cvmbuild key generate NAME --out FILE`",
            "copy --to needs --sign-key FILE (or CVMBUILD_SIGN_KEY): records on a cache are always signed"
        )
    })?;
    let key = SecretKey::load(key_file)?;
    let remote = Remote::new(url)?;
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    // Held while pushing, so `gc` cannot remove what is being sent.
    let _builds = store.lock_builds()?;
    let started = std::time::Instant::now();
    let mut total = Transfer::default();
    let mut pushed = Vec::new();
    let inputs_of = |id: &str| -> std::result::Result<Option<Vec<String>>, String> {
        if a.no_inputs {
            return Ok(None);
        }
        let Some(drv) = crate::build::records::load(&store, id).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let mut inputs = Vec::new();
        for i in drv.input_drvs() {
            if !a.with_fetched && is_fetch(&store, &i.0)? {
                continue;
            }
            inputs.push(i.0.clone());
        }
        Ok(Some(inputs))
    };
    let mut done = std::collections::HashSet::new();
    let (named, _) = spec_roots(g, a)?;
    for k in &a.outputs {
        let id = match named.get(k) {
            Some(id) => id.clone(),
            None => super::ids::resolve(&store, k, None)?,
        };
        let t = remote.push_closure(&store, &id.0, &inputs_of, &key, &mut done)?;
        if !a.json {
            eprintln!(
                "copied {} ({}): {} objects, {} bytes sent; {} already there",
                k,
                id.short(),
                t.objects,
                t.bytes,
                t.present
            );
        }
        add(&mut total, &t);
        pushed.push(json!({"drv": id, "sent_objects": t.objects, "sent_bytes": t.bytes, "present": t.present}));
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "to": remote.url(), "key": key.name, "outputs": pushed,
                "sent_objects": total.objects, "sent_bytes": total.bytes, "present": total.present,
            }))
            .expect("plain data")
        );
    } else {
        outln!(
            "{} outputs to {}: {} objects, {} bytes sent, {} already there, in {:.2} s",
            a.outputs.len(),
            remote.url(),
            total.objects,
            total.bytes,
            total.present,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// `copy --from`: what `realize --substituter` does for one derivation,
/// for outputs named directly (nothing is evaluated or built). Each pulled
/// output gets a GC root, as `realize` gives what it realizes (a pull
/// that the next `gc` deleted would have been for nothing): named as
/// `realize` names it when the output is named through `--spec` (so a
/// later realize of that branch replaces it), else `pulled-ID`.
fn pull(g: &Global, url: &str, a: &CopyArgs) -> Result<i32> {
    let subs = super::realize::substituters(&[url.to_string()], &a.trusted_keys)?;
    let sub = &subs[0];
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    let _builds = store.lock_builds()?;
    let started = std::time::Instant::now();
    let mut total = Transfer::default();
    let mut pulled = Vec::new();
    let (named, root_prefix) = spec_roots(g, a)?;
    for k in &a.outputs {
        let (id, root) = match (named.get(k), &root_prefix) {
            (Some(id), Some(prefix)) => (id.clone(), format!("{prefix}-{k}")),
            _ => {
                let id = pull_id(&store, k)?;
                let root = format!("pulled-{}", id.0);
                (id, root)
            }
        };
        let root = root.replace(':', "-");
        let before = sub.remote.fetched();
        let here = crate::store::Store::lookup_output(&store, &id.0)?.is_some();
        // The remote itself, not the substituter: one failure ends the
        // command anyway, with the remote's own error.
        if !here
            && sub
                .remote
                .substitute(&store, &id.0, &sub.trusted)?
                .is_none()
        {
            return Err(miette!(
                code = "cli::not-on-remote",
                help = "push it there with `cvmbuild copy --to` from the machine that built it",
                "{} has no output record for {k} ({id})",
                sub.remote.url()
            ));
        }
        store.add_gc_root(&root, &crate::store::GcRoot::Drv(id.0.clone()))?;
        let now = sub.remote.fetched();
        let t = Transfer {
            objects: now.objects - before.objects,
            bytes: now.bytes - before.bytes,
            present: now.present - before.present,
        };
        if !a.json {
            if here {
                eprintln!(
                    "{k} ({}): already in the local store; GC root {root}",
                    id.short()
                );
            } else {
                eprintln!(
                    "pulled {k} ({}): {} objects, {} bytes received; {} already here; GC root {root}",
                    id.short(),
                    t.objects,
                    t.bytes,
                    t.present
                );
            }
        }
        add(&mut total, &t);
        pulled.push(json!({"drv": id, "root": root, "already_here": here, "received_objects": t.objects, "received_bytes": t.bytes, "present": t.present}));
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "from": sub.remote.url(), "outputs": pulled,
                "received_objects": total.objects, "received_bytes": total.bytes, "present": total.present,
            }))
            .expect("plain data")
        );
    } else {
        outln!(
            "{} outputs from {}: {} objects, {} bytes received, {} already here, in {:.2} s",
            a.outputs.len(),
            sub.remote.url(),
            total.objects,
            total.bytes,
            total.present,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

/// The output names of `--spec`'s branch with their derivation ids, and
/// the prefix of the GC root names `realize` gives that branch's outputs
/// (empty and `None` without `--spec`).
fn spec_roots(g: &Global, a: &CopyArgs) -> Result<(BTreeMap<String, DrvId>, Option<String>)> {
    let Some(spec) = &a.spec else {
        return Ok((BTreeMap::new(), None));
    };
    let ev = crate::eval::evaluate(spec, &g.eval_options(a.branch.clone(), true))?;
    match ev.branches.as_slice() {
        [b] => Ok((
            b.graph.roots.clone().into_iter().collect(),
            Some(super::realize::root_prefix(
                &ev.spec_path,
                &b.release.branch,
            )),
        )),
        many => Err(miette!(
            code = "cli::branch",
            help = format!(
                "branches: {}",
                many.iter()
                    .map(|b| b.release.branch.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "{} has {} branches; pass --branch",
            spec.display(),
            many.len()
        )),
    }
}

/// What `copy --from` pulls for `key`: whatever `cvmbuild log` would name
/// in this store, else `key` itself when it is spelled like a derivation
/// id (64 lower-case hex digits), since a fresh machine has no records to
/// resolve a name or a prefix against.
fn pull_id(store: &crate::store::FsStore, key: &str) -> Result<DrvId> {
    match super::ids::resolve(store, key, None) {
        Ok(id) => Ok(id),
        Err(_) if crate::store::Hash::from_hex(key).is_some() => Ok(DrvId(key.to_string())),
        Err(e) => Err(e),
    }
}

/// Whether `id` is recorded as a `fetch` derivation (its output: an RPM
/// file as downloaded).
fn is_fetch(store: &crate::store::FsStore, id: &str) -> std::result::Result<bool, String> {
    let drv = crate::build::records::load(store, id).map_err(|e| e.to_string())?;
    Ok(drv.is_some_and(|d| {
        matches!(&d.builder, crate::drv::Builder::Builtin { name, .. } if name == crate::builders::names::FETCH)
    }))
}

fn add(total: &mut Transfer, t: &Transfer) {
    total.objects += t.objects;
    total.bytes += t.bytes;
    total.present += t.present;
}

pub(super) fn key_cmd(c: KeyCommand) -> Result<i32> {
    match c {
        KeyCommand::Generate { name, out } => {
            let key = SecretKey::generate(&name)?;
            let mut public = out.clone().into_os_string();
            public.push(".pub");
            let public = PathBuf::from(public);
            write_new(&out, &key.to_text(), 0o600)?;
            write_new(&public, &key.public().to_text(), 0o644)?;
            eprintln!(
                "secret key {} in {}, public key in {}",
                name,
                out.display(),
                public.display()
            );
            Ok(0)
        }
    }
}

/// Writes a key file that must not exist yet (a key is never overwritten).
fn write_new(path: &std::path::Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| miette!(code = "cli::key", "{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| miette!(code = "cli::key", "{}: {e}", path.display()))?;
    Ok(())
}

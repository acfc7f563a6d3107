//! `copy` and `key`: push outputs to a binary cache (store-layout.md
//! 2.11) and make the ed25519 keys that sign them.

use super::Global;
use crate::store::remote::{Remote, SecretKey, Transfer};
use clap::{Args, Subcommand};
use miette::{miette, Result};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The binary cache to push to (http[s]://…, written with WebDAV PUT).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The secret key file (NAME:BASE64) that signs the output records.
    #[arg(long, value_name = "FILE", env = "CVMBUILD_SIGN_KEY")]
    pub sign_key: PathBuf,
    /// Derivation ids, output hashes (unique prefixes), GC root names or
    /// output names (`os-tree`), as `cvmbuild log` takes them.
    #[arg(required = true, value_name = "ID|ROOT")]
    pub outputs: Vec<String>,
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
    let key = SecretKey::load(&a.sign_key)?;
    let remote = Remote::new(&a.to)?;
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    // Held while pushing, so `gc` cannot remove what is being sent.
    let _builds = store.lock_builds()?;
    let started = std::time::Instant::now();
    let mut total = Transfer::default();
    let mut pushed = Vec::new();
    for k in &a.outputs {
        let id = super::ids::resolve(&store, k, None)?;
        let t = remote.push(&store, &id.0, &key)?;
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
        total.objects += t.objects;
        total.bytes += t.bytes;
        total.present += t.present;
        pushed.push(json!({"drv": id, "sent_objects": t.objects, "sent_bytes": t.bytes, "present": t.present}));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "to": remote.url(), "key": key.name, "outputs": pushed,
                "sent_objects": total.objects, "sent_bytes": total.bytes, "present": total.present,
            }))
            .expect("plain data")
        );
    } else {
        println!(
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

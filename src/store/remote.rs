//! A binary cache on an HTTP server or in an S3 bucket: objects and
//! signed output records that one machine pushes (`cvmbuild copy --to`)
//! and others substitute instead of building (`cvmbuild realize
//! --substituter`).
//!
//! store-layout.md section 2.11 is the normative description. In short:
//! the remote holds `blobs/<h0h1>/<hash>` and `trees/<h0h1>/<hash>` exactly
//! as a local [`super::FsStore`] does, plus `outputs/<drv-id>.json`, a
//! record naming the derivation's [`Output`] and signed with ed25519.
//!
//! Where the bytes travel is a [`Transport`]: whole objects got, asked
//! for and put by path. [`http`] reads with plain GET (any static web
//! server) and writes with WebDAV PUT (MKCOL only where the server wants
//! the directories made first); [`s3`] does the same against an
//! S3-compatible bucket with SigV4-signed requests. Everything else here
//! (records and their signatures, verification, walking closures) is the
//! same for both.
//!
//! Why not the `object_store` crate (which the issue suggested): it is
//! async and brings tokio and reqwest into every build of this crate,
//! including the small initrd client (`cvmbuild-client`) built from it;
//! GET/HEAD/PUT over the `ureq` agent the repository fetcher already uses,
//! and SigV4 over `sha2`/`hmac`, are a few hundred lines.
//!
//! Nothing from a remote enters the local store unverified: every tree is
//! re-hashed and decoded before it is stored, every blob is read to its
//! announced size (never more), re-hashed, and only then handed to
//! [`Store::put_blob`]; the record's signature must be by a trusted key.
//! The output is registered locally only once its whole closure is there.

use super::{Hash, Node, Output, Root, Store, Tree};
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The file at the root of a cache that says what it is, so a URL of some
/// other web site is refused with a clear message instead of 404s.
pub const MARKER: &str = "cvmbuild-cache";
const MARKER_TEXT: &str = "cvmbuild binary cache, layout 1\n";
/// What a signature signs before the record's derivation id and output.
const SIGNED_PREFIX: &[u8] = b"cvmbuild-output-record-1\0";

/// Bounds on what a remote may send: an output record, a tree object, a
/// blob named only by hash in an output's metadata (its size is unknown).
const RECORD_LIMIT: u64 = 1 << 20;
const TREE_LIMIT: u64 = 64 << 20;
const META_BLOB_LIMIT: u64 = 1 << 30;
/// Blobs up to this size are verified in memory; larger ones are spooled
/// to an anonymous temporary file first.
const IN_MEMORY: u64 = 16 << 20;
/// Trees deeper than this are refused (a hostile remote could otherwise
/// exhaust the stack with a chain of directories).
const MAX_DEPTH: usize = 256;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

mod http;
mod s3;
mod sigv4;

/// How a backend moves whole objects, by path relative to the cache's
/// root (`blobs/ab/ab…`, `outputs/ID.json`, [`MARKER`]). Transports only
/// move bytes: bounds, hashes and signatures are checked by [`Remote`].
trait Transport: Send + Sync {
    /// The object's bytes to read, `None` if there is none at `path`.
    fn get(&self, path: &str) -> Result<Option<Box<dyn Read>>> {
        Ok(self.get_versioned(path)?.map(|(r, _)| r))
    }
    /// [`Transport::get`] with the object's version (its `ETag`), if the
    /// server gives one, for a later [`Transport::put_if`].
    fn get_versioned(&self, path: &str) -> Result<Option<Versioned>>;
    /// Whether there is an object at `path` (without its bytes).
    fn exists(&self, path: &str) -> Result<bool>;
    /// Stores `body` at `path`, replacing what may be there (the paths
    /// are content-addressed, so a replacement has the same bytes; records
    /// are checked before they are replaced, see [`Remote::push`]).
    fn put(&self, path: &str, body: &[u8]) -> Result<()>;
    /// [`Transport::put`] only if `path` still holds what `expect` says;
    /// `Ok(false)` when the server answers that it does not (HTTP 412). A
    /// server that ignores the condition (nginx's WebDAV) just writes.
    fn put_if(&self, path: &str, body: &[u8], expect: &Expect) -> Result<bool>;
}

/// An object's bytes to read and its version (`ETag`), if the server
/// gives one.
type Versioned = (Box<dyn Read>, Option<String>);

/// What a record write expects to find at its path, so that two machines
/// pushing the same record at once cannot drop each other's signatures.
enum Expect {
    /// No object (`If-None-Match: *`).
    Absent,
    /// The version read before (`If-Match: ETAG`).
    Version(String),
}

impl Expect {
    /// The request header that states the condition.
    fn header(&self) -> (&'static str, &str) {
        match self {
            Expect::Absent => ("if-none-match", "*"),
            Expect::Version(v) => ("if-match", v),
        }
    }
}

/// How often a record write is retried after another writer changed the
/// record between our read and our write.
const RECORD_ATTEMPTS: usize = 4;

/// The agent both transports use: bounded waits, statuses as answers.
fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(FIRST_BYTE_TIMEOUT))
        .timeout_per_read(Some(STALL_TIMEOUT))
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .build();
    ureq::Agent::new_with_config(config)
}

/// A response's `ETag`, the object version a conditional write names.
fn etag(headers: &ureq::http::HeaderMap) -> Option<String> {
    headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn http_err(remote: &str, what: &str, reason: impl ToString) -> Error {
    Error::Http {
        remote: remote.to_string(),
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("remote {remote}: {what}: {reason}")]
    #[diagnostic(code(remote::http))]
    Http {
        remote: String,
        what: String,
        reason: String,
    },
    #[error("{remote} is not a cvmbuild binary cache (no {MARKER} file)")]
    #[diagnostic(
        code(remote::not_a_cache),
        help("push to it once with `cvmbuild copy --to URL`, or check the URL")
    )]
    NotACache { remote: String },
    #[error("invalid remote URL {0:?}: use http[s]://HOST[:PORT]/PATH or s3://BUCKET[/PREFIX]")]
    #[diagnostic(code(remote::url))]
    BadUrl(String),
    #[error("remote {remote}: {reason}")]
    #[diagnostic(
        code(remote::s3_config),
        help("an s3:// remote reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION and AWS_ENDPOINT_URL (for a server other than AWS)")
    )]
    S3Config { remote: String, reason: String },
    #[error("remote {remote}: {what}: access denied ({reason})")]
    #[diagnostic(
        code(remote::denied),
        help("check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and that they may read the bucket (and write it, to push)")
    )]
    Denied {
        remote: String,
        what: String,
        reason: String,
    },
    #[error("key file {path}: {reason}")]
    #[diagnostic(
        code(remote::key),
        help("make a key with `cvmbuild key generate NAME --out FILE`; a secret key file is NAME:BASE64 of 64 bytes, a public one NAME:BASE64 of 32")
    )]
    Key { path: PathBuf, reason: String },
    #[error("remote {remote}: the output record of {drv} is unsigned")]
    #[diagnostic(code(remote::unsigned))]
    Unsigned { remote: String, drv: String },
    #[error(
        "remote {remote}: the output record of {drv} is signed only by untrusted keys ({keys})"
    )]
    #[diagnostic(
        code(remote::untrusted),
        help("pass the signer's public key with --trusted-key FILE if you trust it")
    )]
    Untrusted {
        remote: String,
        drv: String,
        keys: String,
    },
    #[error("remote {remote}: the signature by {key} on the output record of {drv} does not verify (the record was changed after signing)")]
    #[diagnostic(code(remote::bad_signature))]
    BadSignature {
        remote: String,
        drv: String,
        key: String,
    },
    #[error("remote {remote}: the output record of {drv} is unreadable: {reason}")]
    #[diagnostic(code(remote::bad_record))]
    BadRecord {
        remote: String,
        drv: String,
        reason: String,
    },
    #[error("remote {remote}: {kind} {hash} is damaged: {reason}")]
    #[diagnostic(code(remote::damaged))]
    Damaged {
        remote: String,
        kind: &'static str,
        hash: Hash,
        reason: String,
    },
    #[error("remote {remote}: {kind} {hash} is missing (the cache is incomplete)")]
    #[diagnostic(code(remote::missing))]
    Missing {
        remote: String,
        kind: &'static str,
        hash: Hash,
    },
    #[error("remote {remote}: {what}: HTTP 507, the remote has no space left")]
    #[diagnostic(
        code(remote::full),
        help("free space on the cache's disk; what was sent is complete objects only, and no output record names them yet, so pushing again later resumes")
    )]
    Full { remote: String, what: String },
    #[error("{cause}; not asking {remote} again in this run")]
    #[diagnostic(code(remote::gone))]
    Gone { remote: String, cause: Box<Error> },
    #[error("derivation record {drv}: {reason}")]
    #[diagnostic(
        code(remote::local_record),
        help("`cvmbuild store verify` lists damaged records; evaluating the spec again records it anew")
    )]
    LocalRecord { drv: String, reason: String },
    #[error("remote {remote}: {drv} already has a different output recorded there")]
    #[diagnostic(code(remote::conflict))]
    Conflict { remote: String, drv: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] super::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn key_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Splits `NAME:BASE64` and decodes the key bytes.
fn parse_key_text(text: &str, path: &Path, len: usize) -> Result<(String, Vec<u8>)> {
    let text = text.trim();
    let (name, b64) = text
        .split_once(':')
        .ok_or_else(|| key_err(path, "expected NAME:BASE64"))?;
    if !valid_key_name(name) {
        return Err(key_err(
            path,
            format!("key name {name:?}: use 1-100 characters from [A-Za-z0-9._-]"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| key_err(path, format!("not base64: {e}")))?;
    if bytes.len() != len {
        return Err(key_err(
            path,
            format!("{} key bytes, expected {len}", bytes.len()),
        ));
    }
    Ok((name.to_string(), bytes))
}

fn read_key_file(path: &Path) -> Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| key_err(path, e.to_string()))?;
    Ok(text)
}

/// An ed25519 signing key with its name (`NAME:BASE64(seed ‖ public)`,
/// Nix's secret-key format).
pub struct SecretKey {
    pub name: String,
    key: SigningKey,
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<SecretKey> {
        if !valid_key_name(name) {
            return Err(key_err(
                Path::new(name),
                "key name: use 1-100 characters from [A-Za-z0-9._-]",
            ));
        }
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        Ok(SecretKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn parse(text: &str, path: &Path) -> Result<SecretKey> {
        let (name, bytes) = parse_key_text(text, path, 64)?;
        let seed: [u8; 32] = bytes[..32].try_into().expect("64 bytes");
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(key_err(
                path,
                "the public half does not belong to the secret half",
            ));
        }
        Ok(SecretKey { name, key })
    }

    pub fn load(path: &Path) -> Result<SecretKey> {
        SecretKey::parse(&read_key_file(path)?, path)
    }

    /// The file text: `NAME:BASE64` and a newline.
    pub fn to_text(&self) -> String {
        let mut bytes = self.key.to_bytes().to_vec();
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}:{}\n",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    fn sign(&self, message: &[u8]) -> Signature {
        Signature {
            key: self.name.clone(),
            sig: base64::engine::general_purpose::STANDARD
                .encode(self.key.sign(message).to_bytes()),
        }
    }
}

/// A trusted public key: `NAME:BASE64(32 bytes)`.
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub name: String,
    key: VerifyingKey,
}

impl PublicKey {
    pub fn parse(text: &str, path: &Path) -> Result<PublicKey> {
        let (name, bytes) = parse_key_text(text, path, 32)?;
        let arr: [u8; 32] = bytes[..].try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&arr)
            .map_err(|e| key_err(path, format!("not an ed25519 public key: {e}")))?;
        Ok(PublicKey { name, key })
    }

    pub fn load(path: &Path) -> Result<PublicKey> {
        PublicKey::parse(&read_key_file(path)?, path)
    }

    pub fn to_text(&self) -> String {
        format!(
            "{}:{}\n",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(self.key.as_bytes())
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Signature {
    key: String,
    sig: String,
}

/// `outputs/<drv-id>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    drv: String,
    output: Output,
    #[serde(default)]
    signatures: Vec<Signature>,
}

/// The bytes a record's signature signs: a fixed prefix, the derivation
/// id, a NUL, and the output's JSON (serde_json of [`Output`], whose
/// fields and sorted metadata make it canonical).
fn signed_bytes(drv: &str, output: &Output) -> Vec<u8> {
    let mut m = SIGNED_PREFIX.to_vec();
    m.extend_from_slice(drv.as_bytes());
    m.push(0);
    m.extend_from_slice(&serde_json::to_vec(output).expect("plain data"));
    m
}

/// What a push or a fetch moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// Objects sent or received.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects the other side already had.
    pub present: u64,
}

/// One binary cache, by URL.
pub struct Remote {
    url: String,
    transport: Box<dyn Transport>,
    marker: OnceLock<bool>,
    fetched_objects: AtomicU64,
    fetched_bytes: AtomicU64,
    /// Objects a fetch found already in the local store (not downloaded).
    fetched_present: AtomicU64,
}

fn object_path(kind: &str, h: &Hash) -> String {
    let hex = h.to_hex();
    format!("{kind}/{}/{hex}", &hex[..2])
}

impl Remote {
    /// `http[s]://…` or `s3://BUCKET[/PREFIX]` (configured by the
    /// environment, see [`s3`]).
    pub fn new(url: &str) -> Result<Remote> {
        let trimmed = url.trim_end_matches('/');
        // A bad URL is named as it was given, not as trimmed.
        let given = |e| match e {
            Error::BadUrl(_) => Error::BadUrl(url.to_string()),
            e => e,
        };
        let transport: Box<dyn Transport> = if trimmed.starts_with("s3://") {
            Box::new(s3::S3::new(trimmed, &|k| std::env::var(k).ok()).map_err(given)?)
        } else {
            Box::new(http::Http::new(trimmed).map_err(given)?)
        };
        Ok(Remote::over(trimmed, transport))
    }

    fn over(url: &str, transport: Box<dyn Transport>) -> Remote {
        Remote {
            url: url.to_string(),
            transport,
            marker: OnceLock::new(),
            fetched_objects: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            fetched_present: AtomicU64::new(0),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Objects and bytes fetched from this remote so far, and how many
    /// objects it was not asked for because the local store had them.
    pub fn fetched(&self) -> Transfer {
        Transfer {
            objects: self.fetched_objects.load(Ordering::Relaxed),
            bytes: self.fetched_bytes.load(Ordering::Relaxed),
            present: self.fetched_present.load(Ordering::Relaxed),
        }
    }

    fn http_err(&self, what: &str, reason: impl ToString) -> Error {
        http_err(&self.url, what, reason)
    }

    fn damaged(&self, kind: &'static str, hash: Hash, reason: impl Into<String>) -> Error {
        Error::Damaged {
            remote: self.url.clone(),
            kind,
            hash,
            reason: reason.into(),
        }
    }

    fn missing(&self, kind: &'static str, hash: Hash) -> Error {
        Error::Missing {
            remote: self.url.clone(),
            kind,
            hash,
        }
    }

    /// GET `path` into memory, at most `limit` bytes.
    fn get_bytes(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.get_bytes_versioned(path, limit)?.map(|(b, _)| b))
    }

    /// [`Remote::get_bytes`] with the object's version, if the server
    /// gives one.
    fn get_bytes_versioned(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<(Vec<u8>, Option<String>)>> {
        let Some((body, version)) = self.transport.get_versioned(path)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        body.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.http_err(&format!("GET {path}"), e))?;
        if buf.len() as u64 > limit {
            return Err(self.http_err(&format!("GET {path}"), format!("more than {limit} bytes")));
        }
        self.fetched_objects.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(Some((buf, version)))
    }

    /// The record at `rec_path` as [`Remote::push`] sees it: its
    /// signatures if it is a record of `out` (an unreadable one is
    /// replaced), and what a write must expect to find there (`None`: the
    /// server gives no version, write unconditionally). A record of
    /// another output is a conflict.
    fn read_record(
        &self,
        drv_id: &str,
        rec_path: &str,
        out: &Output,
    ) -> Result<(Vec<Signature>, Option<Expect>)> {
        let Some((bytes, version)) = self.get_bytes_versioned(rec_path, RECORD_LIMIT)? else {
            return Ok((Vec::new(), Some(Expect::Absent)));
        };
        let mut signatures = Vec::new();
        if let Ok(old) = serde_json::from_slice::<Record>(&bytes) {
            if old.output != *out {
                return Err(Error::Conflict {
                    remote: self.url.clone(),
                    drv: drv_id.to_string(),
                });
            }
            signatures = old.signatures;
        }
        Ok((signatures, version.map(Expect::Version)))
    }

    /// Whether to ask this remote at all: the first call checks that it
    /// is a cache (and reachable) and fails if not; later calls on such a
    /// remote answer `false` without asking again, so one unusable remote
    /// is reported once, not for every derivation.
    fn usable(&self) -> Result<bool> {
        if let Some(ok) = self.marker.get() {
            return Ok(*ok);
        }
        let found = self.get_bytes(MARKER, 4096);
        let ok = matches!(&found, Ok(Some(b)) if b.starts_with(b"cvmbuild binary cache"));
        let _ = self.marker.set(ok);
        match found {
            Err(e) => Err(e),
            Ok(_) if !ok => Err(Error::NotACache {
                remote: self.url.clone(),
            }),
            Ok(_) => Ok(true),
        }
    }

    // ---- pushing ----

    /// Pushes `drv_id`'s output from `store` with every object it reaches
    /// that the remote lacks, then its signed record (last, so a record is
    /// never visible before its objects).
    pub fn push(&self, store: &dyn Store, drv_id: &str, key: &SecretKey) -> Result<Transfer> {
        super::validate_id(drv_id)?;
        let out = store.lookup_output(drv_id)?.ok_or_else(|| {
            Error::Store(super::Error::InvalidId(format!(
                "{drv_id} (no output registered in the local store)"
            )))
        })?;
        if !self.transport.exists(MARKER)? {
            self.transport.put(MARKER, MARKER_TEXT.as_bytes())?;
        }
        let rec_path = format!("outputs/{drv_id}.json");
        let signature = key.sign(&signed_bytes(drv_id, &out));
        let mut t = Transfer::default();
        // Another machine's signatures of the same output are kept: a
        // realizing machine may trust only one of the signers.
        let (mut signatures, mut expect) = self.read_record(drv_id, &rec_path, &out)?;
        // ed25519 signatures are deterministic: this key signed this
        // record already, and a record implies its closure.
        if signatures.contains(&signature) {
            t.present += 1;
            return Ok(t);
        }
        let mut seen = HashSet::new();
        match out.root {
            Root::Tree { hash } => self.push_tree(store, hash, &mut seen, &mut t)?,
            Root::Blob { hash, .. } => self.push_blob(store, hash, &mut seen, &mut t)?,
        }
        for v in out.meta.values() {
            if let Some(h) = Hash::from_hex(v) {
                if store.has_tree(&h)? {
                    self.push_tree(store, h, &mut seen, &mut t)?;
                } else if store.has_blob(&h)? {
                    self.push_blob(store, h, &mut seen, &mut t)?;
                }
            }
        }
        // The record is written only over what was read: if another
        // machine wrote it in between, read it again and add to it.
        for _ in 0..RECORD_ATTEMPTS {
            signatures.push(signature.clone());
            let record = Record {
                version: 1,
                drv: drv_id.to_string(),
                signatures,
                output: out.clone(),
            };
            let body = serde_json::to_vec_pretty(&record).expect("plain data");
            let written = match &expect {
                Some(e) => self.transport.put_if(&rec_path, &body, e)?,
                None => self.transport.put(&rec_path, &body).map(|()| true)?,
            };
            if written {
                t.objects += 1;
                t.bytes += body.len() as u64;
                return Ok(t);
            }
            (signatures, expect) = self.read_record(drv_id, &rec_path, &out)?;
            if signatures.contains(&signature) {
                t.present += 1;
                return Ok(t);
            }
        }
        Err(self.http_err(
            &format!("PUT {rec_path}"),
            format!(
                "another writer changed the record {RECORD_ATTEMPTS} times while this one wrote it"
            ),
        ))
    }

    /// Pushes `drv_id`'s output and those of every derivation it was
    /// built from (by the local derivation records, `inputs_of`) that the
    /// local store holds, so that a machine whose build differs in one
    /// package finds the unchanged parts on the remote. Inputs go first;
    /// `done` spans calls, so shared inputs are pushed once.
    pub fn push_closure(
        &self,
        store: &dyn Store,
        drv_id: &str,
        inputs_of: super::InputsOf,
        key: &SecretKey,
        done: &mut HashSet<String>,
    ) -> Result<Transfer> {
        let mut t = Transfer::default();
        // Post-order without recursion: (id, inputs already expanded).
        let mut stack = vec![(drv_id.to_string(), false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                if id == drv_id || store.lookup_output(&id)?.is_some() {
                    let one = self.push(store, &id, key)?;
                    t.objects += one.objects;
                    t.bytes += one.bytes;
                    t.present += one.present;
                }
                continue;
            }
            if !done.insert(id.clone()) {
                continue;
            }
            stack.push((id.clone(), true));
            let mut inputs = inputs_of(&id)
                .map_err(|reason| Error::LocalRecord {
                    drv: id.clone(),
                    reason,
                })?
                .unwrap_or_default();
            inputs.sort();
            inputs.dedup();
            stack.extend(inputs.into_iter().rev().map(|i| (i, false)));
        }
        Ok(t)
    }

    fn push_blob(
        &self,
        store: &dyn Store,
        h: Hash,
        seen: &mut HashSet<Hash>,
        t: &mut Transfer,
    ) -> Result<()> {
        if !seen.insert(h) {
            return Ok(());
        }
        let path = object_path("blobs", &h);
        if self.transport.exists(&path)? {
            t.present += 1;
            return Ok(());
        }
        // The verifying reader fails at the end if the local copy is damaged.
        let mut bytes = Vec::new();
        store
            .open_blob(&h)?
            .read_to_end(&mut bytes)
            .map_err(super::Error::Read)?;
        self.transport.put(&path, &bytes)?;
        t.objects += 1;
        t.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Children first: a tree on the remote implies its closure is there.
    fn push_tree(
        &self,
        store: &dyn Store,
        h: Hash,
        seen: &mut HashSet<Hash>,
        t: &mut Transfer,
    ) -> Result<()> {
        if !seen.insert(h) {
            return Ok(());
        }
        let path = object_path("trees", &h);
        if self.transport.exists(&path)? {
            t.present += 1;
            return Ok(());
        }
        let tree = store.get_tree(&h)?;
        for e in tree.entries() {
            match &e.node {
                Node::File {
                    blob: Some(blob), ..
                } => self.push_blob(store, *blob, seen, t)?,
                Node::Directory { tree } => self.push_tree(store, *tree, seen, t)?,
                _ => {}
            }
        }
        let bytes = tree.encode();
        debug_assert_eq!(Hash::of(&bytes), h);
        self.transport.put(&path, &bytes)?;
        t.objects += 1;
        t.bytes += bytes.len() as u64;
        Ok(())
    }

    // ---- substituting ----

    /// Looks up `drv_id`'s record; with a valid signature by one of
    /// `trusted`, fetches whatever of its closure `store` lacks (verified),
    /// registers the output there and returns it. `Ok(None)`: the remote
    /// has no record for it.
    pub fn substitute(
        &self,
        store: &dyn Store,
        drv_id: &str,
        trusted: &[PublicKey],
    ) -> Result<Option<Output>> {
        super::validate_id(drv_id)?;
        if !self.usable()? {
            return Ok(None);
        }
        let Some(bytes) = self.get_bytes(&format!("outputs/{drv_id}.json"), RECORD_LIMIT)? else {
            return Ok(None);
        };
        let bad = |reason: String| Error::BadRecord {
            remote: self.url.clone(),
            drv: drv_id.to_string(),
            reason,
        };
        let rec: Record = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if rec.version != 1 {
            return Err(bad(format!("layout version {}", rec.version)));
        }
        if rec.drv != drv_id {
            return Err(bad(format!("it is the record of {}", rec.drv)));
        }
        self.check_signatures(drv_id, &rec, trusted)?;
        let out = rec.output;
        let mut seen = HashSet::new();
        match out.root {
            Root::Tree { hash } => self.fetch_tree(store, hash, 0, &mut seen)?,
            Root::Blob { hash, size } => self.fetch_blob(store, hash, Some(size))?,
        }
        for v in out.meta.values() {
            if let Some(h) = Hash::from_hex(v) {
                if store.has_blob(&h)? || store.has_tree(&h)? {
                    continue;
                }
                if self.transport.exists(&object_path("trees", &h))? {
                    self.fetch_tree(store, h, 0, &mut seen)?;
                } else {
                    self.fetch_blob(store, h, None)?;
                }
            }
        }
        store.register_output(drv_id, &out)?;
        Ok(Some(out))
    }

    fn check_signatures(&self, drv_id: &str, rec: &Record, trusted: &[PublicKey]) -> Result<()> {
        if rec.signatures.is_empty() {
            return Err(Error::Unsigned {
                remote: self.url.clone(),
                drv: drv_id.to_string(),
            });
        }
        let message = signed_bytes(drv_id, &rec.output);
        for s in &rec.signatures {
            let Some(k) = trusted.iter().find(|k| k.name == s.key) else {
                continue;
            };
            let sig = base64::engine::general_purpose::STANDARD
                .decode(&s.sig)
                .ok()
                .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok());
            let ok = sig.is_some_and(|sig| k.key.verify(&message, &sig).is_ok());
            if !ok {
                return Err(Error::BadSignature {
                    remote: self.url.clone(),
                    drv: drv_id.to_string(),
                    key: s.key.clone(),
                });
            }
            return Ok(());
        }
        Err(Error::Untrusted {
            remote: self.url.clone(),
            drv: drv_id.to_string(),
            keys: rec
                .signatures
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Fetches a tree that `store` lacks, with its closure, verified, for
    /// a layered store reading through. `Ok(false)`: this remote does not
    /// have it.
    pub fn fetch_missing_tree(&self, store: &dyn Store, h: Hash) -> Result<bool> {
        if !self.usable()? {
            return Ok(false);
        }
        self.found(h, self.fetch_tree(store, h, 0, &mut HashSet::new()))
    }

    /// [`Self::fetch_missing_tree`] for a blob (of unknown size, so at most
    /// 1 GiB).
    pub fn fetch_missing_blob(&self, store: &dyn Store, h: Hash) -> Result<bool> {
        if !self.usable()? {
            return Ok(false);
        }
        self.found(h, self.fetch_blob(store, h, None))
    }

    /// A fetch of `h` as "fetched" or "not there" (only `h` itself
    /// missing: a missing child means an incomplete cache, an error).
    fn found(&self, h: Hash, r: Result<()>) -> Result<bool> {
        match r {
            Ok(()) => Ok(true),
            Err(Error::Missing { hash, .. }) if hash == h => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Fetches a tree and (first) whatever it names that `store` lacks.
    fn fetch_tree(
        &self,
        store: &dyn Store,
        h: Hash,
        depth: usize,
        seen: &mut HashSet<Hash>,
    ) -> Result<()> {
        if !seen.insert(h) {
            return Ok(());
        }
        if store.has_tree(&h)? {
            self.fetched_present.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(self.damaged("tree", h, format!("nested deeper than {MAX_DEPTH}")));
        }
        let bytes = self
            .get_bytes(&object_path("trees", &h), TREE_LIMIT)?
            .ok_or_else(|| self.missing("tree", h))?;
        let actual = Hash::of(&bytes);
        if actual != h {
            return Err(self.damaged("tree", h, format!("content hashes to {actual}")));
        }
        let tree = Tree::decode(&bytes).map_err(|e| self.damaged("tree", h, e.to_string()))?;
        for e in tree.entries() {
            match &e.node {
                Node::File {
                    blob: Some(blob),
                    size,
                } => self.fetch_blob(store, *blob, Some(*size))?,
                Node::Directory { tree } => self.fetch_tree(store, *tree, depth + 1, seen)?,
                _ => {}
            }
        }
        let stored = store.put_tree(&tree)?;
        debug_assert_eq!(stored, h);
        Ok(())
    }

    /// Fetches a blob unless `store` has it: exactly `size` bytes when the
    /// size is known, re-hashed before it is stored.
    fn fetch_blob(&self, store: &dyn Store, h: Hash, size: Option<u64>) -> Result<()> {
        if store.has_blob(&h)? {
            self.fetched_present.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let path = object_path("blobs", &h);
        let what = format!("GET {path}");
        let body = self
            .transport
            .get(&path)?
            .ok_or_else(|| self.missing("blob", h))?;
        let limit = size.unwrap_or(META_BLOB_LIMIT);
        let mut reader = body.take(limit + 1);
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let mut mem = Vec::new();
        let mut spool: Option<std::fs::File> = None;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = reader.read(&mut buf).map_err(|e| self.http_err(&what, e))?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > limit {
                return Err(self.damaged(
                    "blob",
                    h,
                    format!("the remote sends more than {limit} bytes"),
                ));
            }
            hasher.update(&buf[..k]);
            if spool.is_none() && n > IN_MEMORY {
                let mut f = tempfile::tempfile().map_err(|e| self.http_err(&what, e))?;
                f.write_all(&mem).map_err(|e| self.http_err(&what, e))?;
                mem = Vec::new();
                spool = Some(f);
            }
            match &mut spool {
                Some(f) => f
                    .write_all(&buf[..k])
                    .map_err(|e| self.http_err(&what, e))?,
                None => mem.extend_from_slice(&buf[..k]),
            }
        }
        if let Some(size) = size {
            if n != size {
                return Err(self.damaged(
                    "blob",
                    h,
                    format!("{n} bytes received, {size} expected (truncated?)"),
                ));
            }
        }
        let actual = Hash::from(hasher.finalize());
        if actual != h {
            return Err(self.damaged("blob", h, format!("content hashes to {actual}")));
        }
        self.fetched_objects.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes.fetch_add(n, Ordering::Relaxed);
        let stored = match spool {
            Some(mut f) => {
                f.rewind().map_err(|e| self.http_err(&what, e))?;
                store.put_blob(&mut io::BufReader::new(f))?
            }
            None => store.put_blob(&mut &mem[..])?,
        };
        debug_assert_eq!(stored.hash, h);
        Ok(())
    }
}

/// A remote with the keys whose signatures this machine accepts.
pub struct Substituter {
    pub remote: Remote,
    pub trusted: Vec<PublicKey>,
    /// Set by the first transport failure: a remote that went away (or
    /// answers errors) would otherwise cost every later derivation a
    /// timeout and a warning.
    gone: AtomicBool,
}

impl Substituter {
    pub fn new(remote: Remote, trusted: Vec<PublicKey>) -> Substituter {
        Substituter {
            remote,
            trusted,
            gone: AtomicBool::new(false),
        }
    }

    /// [`Remote::substitute`] with this substituter's keys. After an HTTP
    /// failure (refused connection, cut transfer, a 5xx answer) it is
    /// reported once, as [`Error::Gone`], and the remote is not asked
    /// again: later calls answer "not there".
    pub fn substitute(&self, store: &dyn Store, drv_id: &str) -> Result<Option<Output>> {
        if self.gone.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match self.remote.substitute(store, drv_id, &self.trusted) {
            Err(e @ Error::Http { .. }) => {
                self.gone.store(true, Ordering::Relaxed);
                Err(Error::Gone {
                    remote: self.remote.url.clone(),
                    cause: Box::new(e),
                })
            }
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A remote in memory with S3's conditional writes; `race` runs once,
    /// just before the first conditional write is judged, as another
    /// machine's write landing between our read and our write.
    type Race = Box<dyn FnOnce(&Objects) + Send>;

    #[derive(Default)]
    struct Objects {
        /// Path to (bytes, version).
        map: Mutex<HashMap<String, (Vec<u8>, u64)>>,
        race: Mutex<Option<Race>>,
        conditional_writes: AtomicU64,
    }

    impl Objects {
        fn write(&self, path: &str, body: &[u8]) {
            let mut m = self.map.lock().unwrap();
            let v = m.get(path).map_or(1, |(_, v)| v + 1);
            m.insert(path.to_string(), (body.to_vec(), v));
        }
    }

    impl Transport for std::sync::Arc<Objects> {
        fn get_versioned(&self, path: &str) -> Result<Option<Versioned>> {
            let m = self.map.lock().unwrap();
            Ok(m.get(path).map(|(b, v)| {
                let r: Box<dyn Read> = Box::new(std::io::Cursor::new(b.clone()));
                (r, Some(format!("\"{v}\"")))
            }))
        }
        fn exists(&self, path: &str) -> Result<bool> {
            Ok(self.map.lock().unwrap().contains_key(path))
        }
        fn put(&self, path: &str, body: &[u8]) -> Result<()> {
            self.write(path, body);
            Ok(())
        }
        fn put_if(&self, path: &str, body: &[u8], expect: &Expect) -> Result<bool> {
            self.conditional_writes.fetch_add(1, Ordering::Relaxed);
            if let Some(race) = self.race.lock().unwrap().take() {
                race(self);
            }
            let now = self
                .map
                .lock()
                .unwrap()
                .get(path)
                .map(|(_, v)| format!("\"{v}\""));
            let holds = match expect {
                Expect::Absent => now.is_none(),
                Expect::Version(v) => now.as_deref() == Some(v),
            };
            if holds {
                self.write(path, body);
            }
            Ok(holds)
        }
    }

    /// Two machines pushing the same output at once: the record written
    /// between our read and our write is read again and kept, so both
    /// signatures end up on it (last writer wins would drop one).
    #[test]
    fn a_record_changed_while_pushing_is_read_again_and_both_signatures_kept() {
        let store = crate::store::MemStore::new();
        let blob = store.put_blob(&mut &b"bytes"[..]).unwrap();
        let out = Output {
            root: Root::Blob {
                hash: blob.hash,
                size: blob.size,
            },
            meta: Default::default(),
        };
        store.register_output("d1", &out).unwrap();
        let (a, b) = (
            SecretKey::generate("a").unwrap(),
            SecretKey::generate("b").unwrap(),
        );
        for first_push in [true, false] {
            let objects = std::sync::Arc::new(Objects::default());
            if !first_push {
                // The record is there already, signed by nobody we know.
                let rec = Record {
                    version: 1,
                    drv: "d1".into(),
                    signatures: vec![],
                    output: out.clone(),
                };
                objects.write("outputs/d1.json", &serde_json::to_vec(&rec).unwrap());
            }
            let b_sig = b.sign(&signed_bytes("d1", &out));
            let racing = out.clone();
            *objects.race.lock().unwrap() = Some(Box::new(move |o: &Objects| {
                let rec = Record {
                    version: 1,
                    drv: "d1".into(),
                    signatures: vec![b_sig],
                    output: racing,
                };
                o.write("outputs/d1.json", &serde_json::to_vec(&rec).unwrap());
            }));
            let remote = Remote::over("mem://", Box::new(objects.clone()));
            remote.push(&store, "d1", &a).unwrap();
            assert_eq!(objects.conditional_writes.load(Ordering::Relaxed), 2);
            let bytes = objects.map.lock().unwrap()["outputs/d1.json"].0.clone();
            let rec: Record = serde_json::from_slice(&bytes).unwrap();
            let keys: Vec<&str> = rec.signatures.iter().map(|s| s.key.as_str()).collect();
            assert_eq!(keys, ["b", "a"], "first push: {first_push}");
            for k in [&a, &b] {
                remote.check_signatures("d1", &rec, &[k.public()]).unwrap();
            }
        }
    }

    #[test]
    fn keys_round_trip_and_reject_garbage() {
        let sk = SecretKey::generate("build-farm-1").unwrap();
        let p = Path::new("k");
        let again = SecretKey::parse(&sk.to_text(), p).unwrap();
        assert_eq!(again.to_text(), sk.to_text());
        let pk = PublicKey::parse(&sk.public().to_text(), p).unwrap();
        assert_eq!(pk.to_text(), sk.public().to_text());
        for bad in ["", "nocolon", "a b:AAAA", "k:!!!", "k:AAAA"] {
            assert!(SecretKey::parse(bad, p).is_err(), "{bad}");
            assert!(PublicKey::parse(bad, p).is_err(), "{bad}");
        }
        // A public key is not a secret key and vice versa.
        assert!(SecretKey::parse(&sk.public().to_text(), p).is_err());
        assert!(PublicKey::parse(&sk.to_text(), p).is_err());
    }

    #[test]
    fn signatures_bind_drv_and_output() {
        let sk = SecretKey::generate("k").unwrap();
        let out = Output {
            root: Root::Tree {
                hash: Hash::of(b"x"),
            },
            meta: Default::default(),
        };
        let r = Remote::new("http://127.0.0.1:1/c").unwrap();
        let mut rec = Record {
            version: 1,
            drv: "d1".into(),
            signatures: vec![sk.sign(&signed_bytes("d1", &out))],
            output: out.clone(),
        };
        let trusted = [sk.public()];
        r.check_signatures("d1", &rec, &trusted).unwrap();
        assert!(matches!(
            r.check_signatures("d2", &rec, &trusted),
            Err(Error::BadSignature { .. })
        ));
        let other = SecretKey::generate("other").unwrap();
        assert!(matches!(
            r.check_signatures("d1", &rec, &[other.public()]),
            Err(Error::Untrusted { .. })
        ));
        rec.output.meta.insert("nevra".into(), "x".into());
        assert!(matches!(
            r.check_signatures("d1", &rec, &trusted),
            Err(Error::BadSignature { .. })
        ));
        rec.signatures.clear();
        assert!(matches!(
            r.check_signatures("d1", &rec, &trusted),
            Err(Error::Unsigned { .. })
        ));
        assert!(Remote::new("ftp://x").is_err());
        assert!(matches!(Remote::new("http://"), Err(Error::BadUrl(u)) if u == "http://"));
        assert!(matches!(Remote::new("s3:///x/"), Err(Error::BadUrl(u)) if u == "s3:///x/"));
    }
}

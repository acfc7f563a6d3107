//! Errors from reading repositories. Every variant names the repository and
//! the file (or URL) involved, so a failed build says which mirror to fix.

use miette::Diagnostic;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
pub enum RepoError {
    /// The server could not be reached or kept failing after every retry.
    #[error("repository `{repo}`: cannot fetch {url}: {reason}")]
    #[diagnostic(
        code(repo::unreachable),
        help("check the repository URL and that the server is up")
    )]
    Unreachable {
        repo: String,
        url: String,
        reason: String,
    },

    /// The file does not exist (local file missing or HTTP 404/410).
    #[error("repository `{repo}`: {url} does not exist")]
    #[diagnostic(
        code(repo::missing),
        help("is this the repository's base URL (the directory that contains `repodata/`)?")
    )]
    Missing { repo: String, url: String },

    /// A local file exists but could not be read.
    #[error("repository `{repo}`: cannot read {url}: {source}")]
    #[diagnostic(code(repo::io))]
    Io {
        repo: String,
        url: String,
        #[source]
        source: std::io::Error,
    },

    /// A path from the metadata (a package's `<location href>`, an `href`
    /// in repomd.xml) that leads out of the repository. Nothing is read.
    #[error("repository `{repo}`: refusing `{path}`: {reason}; metadata paths must stay inside the repository")]
    #[diagnostic(
        code(repo::outside),
        help("the repository's metadata is broken or hostile; use another mirror")
    )]
    Outside {
        repo: String,
        path: String,
        reason: String,
    },

    /// A file larger than its bound (the declared size or a fixed cap).
    #[error("repository `{repo}`: {url} is larger than {limit} bytes, the most accepted")]
    #[diagnostic(
        code(repo::too_large),
        help("the mirror sends more than its metadata declares (or than any real repository holds); use another mirror")
    )]
    TooLarge {
        repo: String,
        url: String,
        limit: u64,
    },

    /// The URL scheme is not one we can read.
    #[error(
        "repository `{repo}`: unsupported URL {url} (use a path, file://, http:// or https://)"
    )]
    #[diagnostic(code(repo::url))]
    Url { repo: String, url: String },

    /// A file's digest differs from the one repomd.xml promises.
    #[error("repository `{repo}`: {which} mismatch for {file}: repomd.xml says {expected}, the file has {actual}")]
    #[diagnostic(
        code(repo::checksum),
        help("the mirror is inconsistent or was updated during the download; retry, or use another mirror")
    )]
    Checksum {
        repo: String,
        file: String,
        /// `checksum` (of the file as stored) or `open-checksum` (after decompression).
        which: &'static str,
        /// `kind:hex`, e.g. `sha256:5e16…`.
        expected: String,
        actual: String,
    },

    /// The file is truncated, or compressed with something we cannot read.
    #[error("repository `{repo}`: cannot decompress {file}: {reason}")]
    #[diagnostic(code(repo::decompress))]
    Decompress {
        repo: String,
        file: String,
        reason: String,
    },

    /// The XML is not well formed.
    #[error(
        "repository `{repo}`: malformed XML in {file} at line {line}, column {column}: {reason}"
    )]
    #[diagnostic(code(repo::xml))]
    Xml {
        repo: String,
        file: String,
        line: u64,
        column: u64,
        reason: String,
    },

    /// Well-formed XML that does not say what repodata must say: a missing
    /// `primary` entry, a bad epoch, an unparsable rich dependency...
    #[error("repository `{repo}`: {file}: {reason}")]
    #[diagnostic(code(repo::metadata))]
    Metadata {
        repo: String,
        file: String,
        reason: String,
    },

    /// The repository's repomd.xml changed between loading the pool and
    /// loading its file lists, so the pool no longer describes it.
    #[error("repository `{repo}`: repomd.xml changed since the pool was loaded (was blake3:{expected}, now blake3:{actual})")]
    #[diagnostic(
        code(repo::changed),
        help("load the repositories again to pick up the new metadata")
    )]
    Changed {
        repo: String,
        expected: String,
        actual: String,
    },

    /// The binary metadata cache could not be written.
    #[error("metadata cache {path}: {reason}")]
    #[diagnostic(code(repo::cache))]
    Cache { path: PathBuf, reason: String },
}

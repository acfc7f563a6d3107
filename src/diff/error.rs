//! What can stop a diff, typed so that `cli` alone prints it (and maps it
//! to diff(1)'s exit code 2).
//!
//! Every variant names the argument (`A` or `B` as the user wrote it) it
//! is about; errors of the stages below pass through with their codes.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("cannot tell what `{arg}` is")]
    #[diagnostic(
        code("diff::input"),
        help("give SPEC.cvm[#BRANCH], FILE.lock[#BRANCH], a derivation id, cvmfs:REPO@TAG or cvmfs:URL@TAG")
    )]
    Unrecognised { arg: String },
    #[error("`{arg}` names no tag")]
    #[diagnostic(
        code("diff::input"),
        help("write cvmfs:FQRN@TAG, cvmfs:DIR@TAG or cvmfs:http://HOST/cvmfs/FQRN@TAG")
    )]
    NoTag { arg: String },
    #[error("no lock file {}", path.display())]
    #[diagnostic(code("diff::input"))]
    NoLockFile { path: PathBuf },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lang(#[from] crate::lang::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("evaluating `{arg}` from its lock (run `cvmbuild eval {}` first)", spec.display())]
    #[diagnostic(forward(source))]
    Eval {
        arg: String,
        spec: PathBuf,
        #[source]
        source: Box<crate::eval::Error>,
    },
    #[error("the lock of `{arg}` is out of date: it was solved for other solver inputs than the spec now has")]
    #[diagnostic(code("diff::stale-lock"), help("run `cvmbuild eval {}` to re-pin it", spec.display()))]
    StaleLock { arg: String, spec: PathBuf },
    #[error("`{arg}` has no branch `{branch}`")]
    #[diagnostic(code("diff::no-such-branch"), help("branches: {names}"))]
    NoSuchBranch {
        arg: String,
        branch: String,
        names: String,
    },
    #[error("`{arg}` has no branches")]
    #[diagnostic(code("diff::no-branch"))]
    NoBranch { arg: String },
    #[error("`{arg}` has several branches")]
    #[diagnostic(code("diff::branch"), help("append #BRANCH, one of: {names}"))]
    SeveralBranches { arg: String, names: String },
    /// An id or tag is looked up in a store, and there is none.
    #[error("`{arg}` is looked up in a store, and {}", match dir { Some(d) => format!("{} is none", d.display()), None => "none is configured".into() })]
    #[diagnostic(
        code("diff::store"),
        help("pass --store DIR or set CVMBUILD_STORE to the store that built it")
    )]
    NoStore { arg: String, dir: Option<PathBuf> },
    #[error("`{arg}`: no publish directory to find the repository in")]
    #[diagnostic(
        code("diff::store"),
        help("pass --store DIR, set CVMBUILD_PUBLISH_DIR, or write cvmfs:DIR@TAG")
    )]
    NoPublishDir { arg: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] crate::store::Error),
    /// A derivation record that cannot be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Record(#[from] crate::build::records::Error),
    #[error("derivation {0} is an input of a recorded derivation but is not recorded itself")]
    #[diagnostic(code("diff::store"))]
    MissingRecord(String),
    #[error("no derivation `{arg}` is recorded in the store {}", store.display())]
    #[diagnostic(
        code("diff::drv-id"),
        help("realize or evaluate the release with this store first, or give its spec")
    )]
    UnknownDrv { arg: String, store: PathBuf },
    #[error("`{arg}` is a prefix of {count} recorded derivations")]
    #[diagnostic(
        code("diff::drv-id"),
        help("give more digits; candidates: {candidates}")
    )]
    AmbiguousDrv {
        arg: String,
        count: usize,
        candidates: String,
    },
    /// Reading a local repository's tags or published files.
    #[error("reading `{arg}`: {source}")]
    #[diagnostic(code("diff::tag"))]
    Repository {
        arg: String,
        #[source]
        source: crate::cvmfs::Error,
    },
    #[error("`{arg}` is read over HTTP, and no trusted key is given")]
    #[diagnostic(
        code("diff::key"),
        help("pass --key FILE, the repository's master public key (PEM), as for `cvmbuild mount`")
    )]
    NoKey { arg: String },
    /// Reading a remote repository (the client's error keeps its code).
    #[error("reading `{arg}`")]
    #[diagnostic(forward(source))]
    Remote {
        arg: String,
        #[source]
        source: crate::client::Error,
    },
    #[error("`{arg}`: reading {path}: {reason}")]
    #[diagnostic(code("diff::tag"))]
    RemoteFile {
        arg: String,
        path: String,
        reason: crate::client::vfs::FsError,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Files(#[from] super::files::Error),
    #[error("{repo} has no tag `{tag}`")]
    #[diagnostic(code("diff::tag"), help("tags: {tags}"))]
    UnknownTag {
        repo: String,
        tag: String,
        tags: String,
    },
    /// The revision carries no (readable) meta RPM under `/.cvmbuild`.
    #[error("`{arg}` was not published by cvmbuild: {reason}")]
    #[diagnostic(code("diff::tag"))]
    NotCvmbuild { arg: String, reason: String },
    #[error("`{a}` ({a_kind}) and `{b}` ({b_kind}) cannot be compared: one has a lock and no derivations, the other no lock (a derivation id, or a tag not published from this store)")]
    #[diagnostic(
        code("diff::input"),
        help("compare a lock with a lock, or give the spec instead of the lock")
    )]
    Incomparable {
        a: String,
        a_kind: &'static str,
        b: String,
        b_kind: &'static str,
    },
    #[error("--files needs the OS trees' derivations: `{arg}` ({which}) has none (a lock file, or a tag not published from this store)")]
    #[diagnostic(code("diff::files"))]
    NoGraph { arg: String, which: &'static str },
    #[error("`{arg}` ({which}) has no os-tree")]
    #[diagnostic(code("diff::files"))]
    NoOsTree { arg: String, which: &'static str },
    #[error("the OS tree of `{arg}` ({which}, {id}) is not in the store")]
    #[diagnostic(code("diff::files"), help("build it first: {build}"))]
    NotRealized {
        arg: String,
        which: &'static str,
        id: String,
        /// The command that builds it.
        build: String,
    },
}

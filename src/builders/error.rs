//! Why a derivation could not be built, typed so that the scheduler can
//! carry it to the command line intact, diagnostic code and help included.

use crate::store;

/// A builder's failure.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// What the builder says went wrong; the text names the derivation,
    /// file or package.
    #[error("{0}")]
    #[diagnostic(code(build::failed))]
    Failed(String),
    #[error("{builder}: cannot build: {why}")]
    #[diagnostic(code(build::no_builder))]
    NoBuilder { builder: String, why: String },
    #[error(transparent)]
    #[diagnostic(code(build::extract))]
    Extract(#[from] super::extract::ExtractError),
    #[error(transparent)]
    #[diagnostic(
        code(build::conflict),
        help("name the package that should win for that path in the release's `prefer` record")
    )]
    Assemble(#[from] super::assemble::AssembleError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Scriptlet(#[from] super::scriptlets::ScriptletError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cvmfs(#[from] crate::cvmfs::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Image(#[from] crate::image::Error),
    #[error("making the RPM: {0}")]
    #[diagnostic(code(build::rpm))]
    Rpm(#[from] rpm::Error),
    #[error("{0}")]
    #[diagnostic(code(build::io))]
    Io(#[from] std::io::Error),
    #[error("bad derivation parameters or record: {0}")]
    #[diagnostic(code(build::json))]
    Json(#[from] serde_json::Error),
    /// The builder panicked: a bug, contained to its derivation.
    #[error("the builder panicked: {0}")]
    #[diagnostic(
        code(build::panic),
        help("this is a bug in cvmbuild; please report it with the build log")
    )]
    Panic(String),
}

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error::Failed(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Error {
        Error::Failed(s.to_string())
    }
}

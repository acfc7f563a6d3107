//! Typed releases: the validated `release { ... }` value of each branch,
//! turned into Rust structs the rest of the pipeline reads.
//!
//! The language already checked field names and types against its schema;
//! what is left here is meaning: version formats, constraint syntax, path
//! resolution. Every item keeps the span it came from, so a later stage (the
//! solver's explanations, `diff`'s causes) can point at the spec line.

use crate::gpg::Keyring;
use crate::lang::{self, Record, SourceMap, Span, Value, ValueKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A value with the spec span that produced it.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub value: T,
    pub span: Span,
}

/// Where a repository lives, after resolving relative paths against the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Url(String),
}

impl Location {
    /// The form the repository reader takes: an absolute path or a URL.
    pub fn as_source(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Url(u) => u.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Repo {
    pub name: String,
    pub location: Location,
    /// The URL as written, relative paths kept relative: this is what goes
    /// into derivation parameters, so moving a checkout changes no id.
    pub url_as_written: String,
    /// The OpenPGP keys of `gpgkey`, read and checked at eval.
    pub keys: Option<Arc<Keyring>>,
    /// Verify every package's signatures with `keys` (`gpgcheck`).
    pub gpgcheck: bool,
    /// Verify `repomd.xml.asc` with `keys` (`repo_gpgcheck`).
    pub repo_gpgcheck: bool,
    pub priority: i64,
    pub cost: i64,
    pub exclude: Vec<String>,
    pub span: Span,
}

/// One shopping-list entry or pin: `name` plus an optional constraint text
/// (`>= 2.1`, `= 1.0-3`, `3.10.*`), checked by the solver's parser.
#[derive(Clone, Debug)]
pub struct PackageReq {
    pub name: String,
    pub constraint: String,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Kernel {
    pub package: String,
    pub modules: Vec<String>,
    pub cmdline: String,
    pub config: Option<FileInput>,
    pub span: Span,
}

/// Content for a file in an output: inline text from the spec, or a file
/// next to it (hashed into the derivation, never its path).
#[derive(Clone, Debug)]
pub enum FileInput {
    Inline(String),
    File { path: PathBuf, relative: String },
}

#[derive(Clone, Debug)]
pub struct Initrd {
    pub init: FileInput,
    pub files: BTreeMap<String, FileInput>,
    pub binaries: Vec<String>,
    pub packages: Vec<String>,
    pub compression: String,
    pub boot: Option<Boot>,
    pub span: Span,
}

/// `initrd.boot`: where the initrd finds its OS on CernVM-FS, and the
/// client and trust anchor it mounts it with.
#[derive(Clone, Debug)]
pub struct Boot {
    pub repository: String,
    pub servers: Vec<String>,
    pub proxy: String,
    /// The default tag; unset, the release's own branch.
    pub tag: Option<String>,
    pub path: String,
    /// The master public key; unset, the publish step's own (from the
    /// keys directory).
    pub key: Option<FileInput>,
    pub client: FileInput,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Image {
    pub format: String,
    pub size: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Cvmfs {
    pub repository: String,
    pub nested: Vec<String>,
    pub tag: Option<String>,
}

/// One branch's release, fully typed.
#[derive(Clone, Debug)]
pub struct Release {
    pub branch: String,
    pub branch_span: Span,
    pub name: String,
    pub version: String,
    pub arch: String,
    pub repos: Vec<Repo>,
    pub packages: Vec<PackageReq>,
    pub pins: Vec<PackageReq>,
    pub exclude: Vec<String>,
    pub installonly: Vec<String>,
    pub multilib: bool,
    /// Whether `assemble` runs the packages' install scriptlets (default).
    pub scriptlets: bool,
    /// SOURCE_DATE_EPOCH for every output of this release.
    pub epoch: i64,
    pub prefer: BTreeMap<String, String>,
    pub kernel: Option<Kernel>,
    pub initrd: Option<Initrd>,
    pub images: Vec<Image>,
    pub cvmfs: Option<Cvmfs>,
    /// Span of each top-level field's value, for `diff` and explanations.
    pub field_spans: BTreeMap<String, Span>,
}

/// Default nested-catalog points for an OS tree.
pub const DEFAULT_NESTED: &[&str] = &["/usr", "/usr/lib64", "/usr/share"];

/// Converts every branch of a loaded spec.
pub fn releases(spec: &lang::Spec) -> Result<Vec<Release>, lang::Error> {
    let base = spec
        .sources
        .path(
            spec.branches
                .first()
                .map_or(lang::FileId(0), |b| b.name_span.file),
        )
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    spec.branches
        .iter()
        .map(|b| {
            let cx = Cx {
                src: &spec.sources,
                base: &base,
            };
            cx.release(&b.name, b.name_span, &b.value)
        })
        .collect()
}

struct Cx<'a> {
    src: &'a SourceMap,
    /// Directory of the main spec file: relative repository URLs and
    /// recorded file origins are relative to it.
    base: &'a Path,
}

impl Cx<'_> {
    fn err(&self, span: Span, msg: impl Into<String>, label: impl Into<String>) -> lang::Error {
        self.src.error(span, msg, label)
    }

    fn release(&self, branch: &str, branch_span: Span, v: &Value) -> Result<Release, lang::Error> {
        let rec = record(v);
        let name = self.string(rec, "name")?.unwrap_or_default();
        let version = self.string(rec, "version")?.unwrap_or_default();
        check_version(&version)
            .map_err(|m| self.err(rec.fields["version"].value.span, m, "release version"))?;
        let arch = self.string(rec, "arch")?.unwrap_or_default();
        let mut repos = Vec::new();
        for r in list(&rec.fields["repos"].value) {
            repos.push(self.repo(r)?);
        }
        let mut seen = BTreeMap::new();
        for r in &repos {
            if let Some(prev) = seen.insert(r.name.clone(), r.span) {
                let _ = prev;
                return Err(self.err(
                    r.span,
                    format!("two repositories are named `{}`", r.name),
                    "give this repository a distinct `name`",
                ));
            }
        }
        let packages = self.package_list(&rec.fields["packages"].value)?;
        let mut pins = Vec::new();
        if let Some(f) = rec.fields.get("pins") {
            for (k, field) in &record(&f.value).fields {
                let c = str_of(&field.value).trim().to_string();
                check_constraint(&c).map_err(|m| {
                    self.err(field.value.span, m, "this pin")
                        .with_code("cvm::constraint")
                        .with_help(CONSTRAINT_SYNTAX)
                })?;
                pins.push(PackageReq {
                    name: k.clone(),
                    constraint: c,
                    span: field.value.span,
                });
            }
        }
        let kernel = match rec.fields.get("kernel") {
            Some(f) => Some(self.kernel(&f.value)?),
            None => None,
        };
        let initrd = match rec.fields.get("initrd") {
            Some(f) => Some(self.initrd(&f.value)?),
            None => None,
        };
        let images = match rec.fields.get("images") {
            Some(f) => list(&f.value)
                .iter()
                .map(|i| {
                    let r = record(i);
                    let size = self.string(r, "size")?;
                    if let Some(s) = &size {
                        parse_size(s)
                            .map_err(|m| self.err(r.fields["size"].value.span, m, "image size"))?;
                    }
                    Ok(Image {
                        format: self.string(r, "format")?.unwrap_or_default(),
                        size,
                        span: i.span,
                    })
                })
                .collect::<Result<_, lang::Error>>()?,
            None => Vec::new(),
        };
        let cvmfs = match rec.fields.get("cvmfs") {
            Some(f) => {
                let r = record(&f.value);
                Some(Cvmfs {
                    repository: self.string(r, "repository")?.unwrap_or_default(),
                    nested: match r.fields.get("nested") {
                        Some(n) => strings(&n.value),
                        None => DEFAULT_NESTED.iter().map(|s| s.to_string()).collect(),
                    },
                    tag: self.string(r, "tag")?,
                })
            }
            None => None,
        };
        Ok(Release {
            branch: branch.to_string(),
            branch_span,
            name,
            version,
            arch,
            repos,
            packages,
            pins,
            exclude: opt_strings(rec, "exclude"),
            installonly: opt_strings(rec, "installonly"),
            multilib: rec
                .fields
                .get("multilib")
                .is_some_and(|f| matches!(f.value.kind, ValueKind::Bool(true))),
            scriptlets: !rec
                .fields
                .get("scriptlets")
                .is_some_and(|f| matches!(f.value.kind, ValueKind::Bool(false))),
            epoch: rec.fields.get("epoch").map_or(0, |f| match f.value.kind {
                ValueKind::Int(i) => i,
                _ => 0,
            }),
            prefer: rec
                .fields
                .get("prefer")
                .map(|f| {
                    record(&f.value)
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), str_of(&v.value).to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            kernel,
            initrd,
            images,
            cvmfs,
            field_spans: rec
                .fields
                .iter()
                .map(|(k, f)| (k.clone(), f.value.span))
                .collect(),
        })
    }

    fn repo(&self, v: &Value) -> Result<Repo, lang::Error> {
        let rec = record(v);
        let url_v = &rec.fields["url"].value;
        let (location, url_as_written) = match &url_v.kind {
            ValueKind::Path(p) => (Location::Local(p.clone()), self.relative(p)),
            ValueKind::Str(s) => {
                if let Some(rest) = s.strip_prefix("file://") {
                    (Location::Local(PathBuf::from(rest)), s.clone())
                } else if s.starts_with("http://") || s.starts_with("https://") {
                    (
                        Location::Url(s.trim_end_matches('/').to_string()),
                        s.clone(),
                    )
                } else if s.contains("://") {
                    return Err(self.err(
                        url_v.span,
                        format!("unsupported URL scheme in `{s}`"),
                        "expected a path, file://, http:// or https://",
                    ));
                } else {
                    (Location::Local(self.base.join(s)), s.clone())
                }
            }
            _ => unreachable!("schema: url is string|path"),
        };
        let name = match self.string(rec, "name")? {
            Some(n) => n,
            None => url_as_written
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("repo")
                .to_string(),
        };
        let keys = self.keys(rec, &name)?;
        let flag = |field: &str| -> Result<bool, lang::Error> {
            let Some(f) = rec.fields.get(field) else {
                return Ok(field == "gpgcheck" && keys.is_some());
            };
            let on = matches!(f.value.kind, ValueKind::Bool(true));
            if on && keys.is_none() {
                return Err(self.err(
                    f.value.span,
                    format!("`{field} = true` needs the repository's keys"),
                    "no `gpgkey` to check with",
                ));
            }
            Ok(on)
        };
        let gpgcheck = flag("gpgcheck")?;
        let repo_gpgcheck = flag("repo_gpgcheck")?;
        Ok(Repo {
            name,
            location,
            url_as_written,
            keys,
            gpgcheck,
            repo_gpgcheck,
            priority: int_or(rec, "priority", 99),
            cost: int_or(rec, "cost", 1000),
            exclude: opt_strings(rec, "exclude"),
            span: v.span,
        })
    }

    /// Reads every key `gpgkey` names into one keyring: a missing or
    /// unreadable file, a URL that cannot be fetched, or content that is
    /// not a public key is an error at that item.
    fn keys(&self, rec: &Record, repo: &str) -> Result<Option<Arc<Keyring>>, lang::Error> {
        let Some(f) = rec.fields.get("gpgkey") else {
            return Ok(None);
        };
        let items = match &f.value.kind {
            ValueKind::List(l) => l.iter().collect(),
            _ => vec![&f.value],
        };
        let mut ring: Option<Keyring> = None;
        for item in items {
            let read = match &item.kind {
                ValueKind::Path(p) => crate::gpg::read_key_file(p),
                ValueKind::Str(s) if s.starts_with("http://") || s.starts_with("https://") => {
                    crate::gpg::fetch_key(repo, s)
                }
                ValueKind::Str(s) => match s.strip_prefix("file://") {
                    Some(abs) => crate::gpg::read_key_file(Path::new(abs)),
                    None if s.contains("://") => Err(format!("unsupported URL scheme in `{s}`")),
                    None => crate::gpg::read_key_file(&self.base.join(s)),
                },
                _ => unreachable!("schema: gpgkey items are string|path"),
            };
            let keys = read.map_err(|m| {
                self.err(item.span, m, "this key")
                    .with_code("cvm::gpgkey")
                    .with_help(
                        "a file or URL with an OpenPGP public key (`gpg --export --armor KEYID`)",
                    )
            })?;
            match &mut ring {
                Some(r) => r.extend(keys),
                None => ring = Some(keys),
            }
        }
        Ok(ring.map(Arc::new))
    }

    fn package_list(&self, v: &Value) -> Result<Vec<PackageReq>, lang::Error> {
        let mut out: Vec<PackageReq> = Vec::new();
        for item in list(v) {
            let text = str_of(item).trim();
            let (name, constraint) = match text.split_once(char::is_whitespace) {
                Some((n, c)) => (n.to_string(), c.trim().to_string()),
                None => (text.to_string(), String::new()),
            };
            if name.is_empty() {
                return Err(self.err(item.span, "empty package name", "here"));
            }
            check_constraint(&constraint).map_err(|m| {
                self.err(item.span, m, "in this entry")
                    .with_code("cvm::constraint")
                    .with_help(CONSTRAINT_SYNTAX)
            })?;
            // The list is a set: keep the first occurrence of a name (group
            // files overlap, as CernVM's did), but two different
            // constraints on one name are a contradiction worth reporting.
            if let Some(prev) = out.iter().find(|p| p.name == name) {
                if prev.constraint != constraint
                    && !constraint.is_empty()
                    && !prev.constraint.is_empty()
                {
                    return Err(self.err(
                        item.span,
                        format!(
                            "`{name}` is listed twice with different constraints (`{}` and `{constraint}`)",
                            prev.constraint
                        ),
                        "second constraint",
                    ));
                }
                continue;
            }
            out.push(PackageReq {
                name,
                constraint,
                span: item.span,
            });
        }
        Ok(out)
    }

    fn kernel(&self, v: &Value) -> Result<Kernel, lang::Error> {
        let rec = record(v);
        Ok(Kernel {
            package: self.string(rec, "package")?.unwrap_or_default(),
            modules: opt_strings(rec, "modules"),
            cmdline: self.string(rec, "cmdline")?.unwrap_or_default(),
            config: rec.fields.get("config").map(|f| self.file_input(&f.value)),
            span: v.span,
        })
    }

    fn initrd(&self, v: &Value) -> Result<Initrd, lang::Error> {
        let rec = record(v);
        Ok(Initrd {
            init: self.file_input(&rec.fields["init"].value),
            files: rec
                .fields
                .get("files")
                .map(|f| {
                    record(&f.value)
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), self.file_input(&v.value)))
                        .collect()
                })
                .unwrap_or_default(),
            binaries: opt_strings(rec, "binaries"),
            packages: opt_strings(rec, "packages"),
            compression: self
                .string(rec, "compression")?
                .unwrap_or_else(|| "gzip".into()),
            boot: match rec.fields.get("boot") {
                Some(f) => Some(self.boot(&f.value)?),
                None => None,
            },
            span: v.span,
        })
    }

    fn boot(&self, v: &Value) -> Result<Boot, lang::Error> {
        let rec = record(v);
        Ok(Boot {
            repository: self.string(rec, "repository")?.unwrap_or_default(),
            servers: opt_strings(rec, "servers"),
            proxy: self
                .string(rec, "proxy")?
                .unwrap_or_else(|| "DIRECT".into()),
            tag: self.string(rec, "tag")?,
            path: self.string(rec, "path")?.unwrap_or_default(),
            key: rec.fields.get("key").map(|f| self.file_input(&f.value)),
            client: self.file_input(&rec.fields["client"].value),
            span: v.span,
        })
    }

    fn file_input(&self, v: &Value) -> FileInput {
        match &v.kind {
            ValueKind::Path(p) => FileInput::File {
                path: p.clone(),
                relative: self.relative(p),
            },
            other => FileInput::Inline(str_kind(other).to_string()),
        }
    }

    /// A path as recorded in derivations: relative to the spec directory
    /// when inside it, so ids do not depend on where the checkout lives.
    fn relative(&self, p: &Path) -> String {
        p.strip_prefix(self.base)
            .map(|r| format!("./{}", r.display()))
            .unwrap_or_else(|_| p.display().to_string())
    }

    fn string(&self, rec: &Record, key: &str) -> Result<Option<String>, lang::Error> {
        Ok(rec.fields.get(key).map(|f| str_of(&f.value).to_string()))
    }
}

fn record(v: &Value) -> &Record {
    match &v.kind {
        ValueKind::Record(r) => r,
        _ => unreachable!("schema-validated value is a record"),
    }
}

fn list(v: &Value) -> &[Value] {
    match &v.kind {
        ValueKind::List(l) => l,
        _ => &[],
    }
}

fn str_kind(k: &ValueKind) -> &str {
    match k {
        ValueKind::Str(s) => s,
        _ => "",
    }
}

fn str_of(v: &Value) -> &str {
    str_kind(&v.kind)
}

fn strings(v: &Value) -> Vec<String> {
    list(v).iter().map(|x| str_of(x).to_string()).collect()
}

fn opt_strings(rec: &Record, key: &str) -> Vec<String> {
    rec.fields
        .get(key)
        .map(|f| strings(&f.value))
        .unwrap_or_default()
}

fn int_or(rec: &Record, key: &str, default: i64) -> i64 {
    match rec.fields.get(key).map(|f| &f.value.kind) {
        Some(ValueKind::Int(i)) => *i,
        _ => default,
    }
}

/// Checks a constraint's syntax (`>= 2.1`, `= 1.0-3`, `3.10.*`) with the
/// solver's own parser, so a spec error surfaces at evaluation, with its
/// span, even when the lock makes solving unnecessary.
pub fn check_constraint(c: &str) -> Result<(), String> {
    use crate::solve::VersionReq;
    if c.contains(',') {
        return Err(format!(
            "`{c}` is several constraints; a package takes one: `>= 3.10`, or for a range a prefix pattern such as `3.*`"
        ));
    }
    match VersionReq::parse(c)? {
        VersionReq::Any => Ok(()),
        VersionReq::Glob(g) => {
            let prefix = crate::solve::version_pattern_prefix(&g)?;
            check_label(c, prefix, true)
        }
        VersionReq::Range(_) => {
            let label = c.trim_start_matches(['<', '>', '=']).trim();
            check_label(c, label, false)
        }
    }
}

/// What a constraint may be, for the help of a spec error at one.
pub const CONSTRAINT_SYNTAX: &str =
    "a version constraint is VERSION (`2.6.32-431.el6`: exactly that), \
OP VERSION with OP one of = < <= > >= (`>= 3.10`), or a version prefix ending in `*` (`3.10.*`); \
VERSION is [EPOCH:]VERSION[-RELEASE], starts with a digit, and holds letters, digits and . _ + ~ ^";

/// A version label as a spec writes one: `[EPOCH:]VERSION[-RELEASE]`, the
/// version starting with a digit (so a word such as `banana` is caught
/// here instead of becoming an unsatisfiable pin), rpm's characters only.
/// With `prefix`, the label may stop anywhere (`3.10.`, `2.6.32-`).
fn check_label(c: &str, label: &str, prefix: bool) -> Result<(), String> {
    let rest = match label.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => rest,
        Some((e, _)) => return Err(format!("`{e}` in `{c}` is not an epoch (a number)")),
        None => label,
    };
    if !rest.starts_with(|ch: char| ch.is_ascii_digit()) {
        return Err(format!(
            "`{c}` is not a version constraint: a version starts with a digit"
        ));
    }
    if let Some(ch) = rest
        .chars()
        .find(|&ch| !(ch.is_ascii_alphanumeric() || "._+~^-".contains(ch)))
    {
        return Err(format!("`{ch}` cannot appear in a version (`{c}`)"));
    }
    let mut parts = rest.split('-');
    let (_, release) = (parts.next(), parts.next());
    if parts.next().is_some() {
        return Err(format!(
            "`{c}` has more than one `-`: a label is VERSION-RELEASE"
        ));
    }
    if release == Some("") && !prefix {
        return Err(format!("`{c}` has an empty release after `-`"));
    }
    Ok(())
}

/// Releases are versioned MAJOR.MINOR[.BUILD[.SECURITY]], all numeric, as
/// CernVM's were; the meta RPM and the CernVM-FS tags carry this string.
fn check_version(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('.').collect();
    if !(2..=4).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "release version `{v}` is not MAJOR.MINOR[.BUILD[.SECURITY]] with numeric parts"
        ));
    }
    Ok(())
}

/// Parses an image size such as `20G`, `512M`, `12MiB` or a byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size `{s}` (expected e.g. 512M, 20G)"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown size unit `{unit}` in `{s}` (use K, M, G, T)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints() {
        for ok in ["", ">= 2.1", "= 1.0-3", "3.10.*", "< 1:2", "=2.0", "1.0"] {
            check_constraint(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for ok in ["2.6.*", "2.6.32-*", "1:2.0-3.el6_4", ">= 3.10"] {
            check_constraint(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "~> 1",
            ">=",
            "=> x:1",
            "3.10.*.x",
            "banana",
            ">= 3.10, < 4",
            "= banana",
            "1.0-2-3",
            "x:1.0",
            "3.1?",
        ] {
            assert!(check_constraint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_and_sizes() {
        assert!(check_version("3.1.0.0").is_ok());
        assert!(check_version("3.1").is_ok());
        assert!(check_version("3").is_err());
        assert!(check_version("3.1.x").is_err());
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("12MiB").unwrap(), 12 << 20);
        assert!(parse_size("12Q").is_err());
    }
}

//! Reading repository files from a local directory, a `file://` URL or an
//! HTTP(S) server.
//!
//! Metadata files are read whole into memory: their checksum must be
//! verified before anything is parsed, and even large distributions' primary
//! files are tens of megabytes compressed. Decompression and parsing then
//! stream from that buffer.
//!
//! Everything here treats the repository as hostile: paths taken from its
//! metadata are confined to it ([`Location::confine`]), every read has a
//! size bound, and every HTTP request has deadlines and a minimum transfer
//! rate, so a broken or malicious mirror costs an error message, not the
//! host's files, memory, disk or hours. The bounds are documented in the
//! README ("Limits on what repositories send").

use super::error::RepoError;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often a transient HTTP failure (connection refused or reset, 5xx,
/// 408, 429) is retried, and the first pause; the pause doubles each time.
/// Four attempts spanning about two seconds ride out a restarting mirror
/// without making a dead one slow to report. A missed deadline is not
/// retried: a server that stalled once would only multiply the wait.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Largest `repodata/repomd.xml` accepted. Real ones are a few kilobytes.
pub const REPOMD_MAX: u64 = 16 << 20;
/// Largest (compressed) metadata file accepted; a `<size>` declared in
/// repomd.xml is a tighter bound. The biggest distributions' file lists
/// are well under 200 MB compressed.
pub const METADATA_MAX: u64 = 1 << 30;
/// Largest package download accepted, whatever size the metadata declares.
/// The largest RPMs of common distributions are a few GB.
pub const PACKAGE_MAX: u64 = 16 << 30;

/// HTTP deadlines. Connecting (DNS, TCP, TLS) must finish within
/// `CONNECT_TIMEOUT`; the response headers must arrive within
/// `FIRST_BYTE_TIMEOUT` of sending the request; no single read may wait
/// longer than `STALL_TIMEOUT`; one request (headers and body) must finish
/// within `OVERALL_TIMEOUT`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
pub const STALL_TIMEOUT: Duration = Duration::from_secs(15);
pub const OVERALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Minimum transfer rate: a body must bring at least `MIN_RATE` bytes per
/// second, measured over each `RATE_WINDOW`, or the transfer is cut off
/// (yum's `minrate`, with a shorter window). A server dripping a byte every
/// few seconds never trips a per-read timeout; this catches it.
pub const MIN_RATE: u64 = 1024;
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    Http(String),
}

impl Location {
    /// Interprets a repository URL: `http(s)://…`, `file://…` or a path.
    pub fn parse(repo: &str, url: &str) -> Result<Location, RepoError> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(Location::Http(url.trim_end_matches('/').to_string()))
        } else if let Some(rest) = url.strip_prefix("file://") {
            // `file:///p` and `file://localhost/p`; other hosts are not local.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(RepoError::Url {
                    repo: repo.to_string(),
                    url: url.to_string(),
                });
            }
            Ok(Location::Dir(PathBuf::from(percent_decode(path))))
        } else if url.contains("://") {
            Err(RepoError::Url {
                repo: repo.to_string(),
                url: url.to_string(),
            })
        } else {
            Ok(Location::Dir(PathBuf::from(url)))
        }
    }

    /// The URL or path of `rel` (relative to the repository root), as shown
    /// in error messages.
    pub fn display(&self, rel: &str) -> String {
        match self {
            Location::Dir(d) => d.join(rel).display().to_string(),
            Location::Http(base) => format!("{base}/{rel}"),
        }
    }
}

impl Location {
    /// Checks that `rel`, a path taken from the repository's metadata (a
    /// package's `<location href>`, an `href` of repomd.xml, a lock entry),
    /// names a file inside this repository, and returns it relative to the
    /// repository root. Refused, before anything is read: absolute paths,
    /// `..` components (also percent-encoded), NUL bytes, and URLs, except
    /// an `xml:base` URL that is this repository's own base.
    pub fn confine(&self, repo: &str, rel: &str) -> Result<String, RepoError> {
        let refuse = |reason: &str| RepoError::Outside {
            repo: repo.to_string(),
            path: rel.to_string(),
            reason: reason.to_string(),
        };
        let mut path = rel;
        if rel.contains("://") {
            let own = match self {
                Location::Http(base) => rel
                    .get(..base.len() + 1)
                    .filter(|head| head.eq_ignore_ascii_case(&format!("{base}/")))
                    .map(|_| &rel[base.len() + 1..]),
                Location::Dir(_) => None,
            };
            path = own.ok_or_else(|| refuse("a URL that is not inside the repository"))?;
        }
        if path.contains('\0') {
            return Err(refuse("a NUL byte"));
        }
        use std::os::unix::ffi::OsStrExt;
        let decoded = percent_decode(path);
        for form in [path.as_bytes(), decoded.as_bytes()] {
            if form.starts_with(b"/") {
                return Err(refuse("an absolute path"));
            }
            if form.split(|&b| b == b'/').any(|c| c == b"..") {
                return Err(refuse("a `..` component"));
            }
        }
        if path.split('/').all(|c| c.is_empty() || c == ".") {
            return Err(refuse("no file name"));
        }
        Ok(path.to_string())
    }

    /// The local file `rel` (already confined) names. Symbolic links are
    /// followed only while they stay inside the repository, and only
    /// regular files are read: a FIFO would block, a device such as
    /// `/dev/zero` never ends. A refusal never tells the size of a host
    /// file.
    fn local_file(repo: &str, dir: &Path, rel: &str) -> Result<PathBuf, RepoError> {
        let path = dir.join(rel);
        let refuse = |reason: &str| RepoError::Outside {
            repo: repo.to_string(),
            path: rel.to_string(),
            reason: reason.to_string(),
        };
        let real = std::fs::canonicalize(&path).map_err(|e| file_error(repo, &path, e))?;
        let root = std::fs::canonicalize(dir).map_err(|e| file_error(repo, dir, e))?;
        if !real.starts_with(&root) {
            return Err(refuse("a symbolic link that leads out of the repository"));
        }
        let meta = std::fs::metadata(&real).map_err(|e| file_error(repo, &path, e))?;
        if !meta.is_file() {
            return Err(refuse("not a regular file"));
        }
        Ok(real)
    }

    /// Reads the file `rel` (relative to the repository root, confined to
    /// it) completely, refusing it if it is larger than `limit` bytes.
    pub fn read(&self, repo: &str, rel: &str, limit: u64) -> Result<Vec<u8>, RepoError> {
        let rel = self.confine(repo, rel)?;
        let bytes = match self {
            Location::Dir(d) => {
                let path = Location::local_file(repo, d, &rel)?;
                let f = std::fs::File::open(&path).map_err(|e| file_error(repo, &path, e))?;
                let mut out = Vec::new();
                f.take(limit.saturating_add(1))
                    .read_to_end(&mut out)
                    .map_err(|e| file_error(repo, &path, e))?;
                out
            }
            Location::Http(_) => {
                let url = self.display(&rel);
                with_retries(repo, &url, || {
                    let mut resp = agent().get(&url).call()?;
                    // ureq's own cap (10 MB) is replaced by `limit`.
                    let body = resp.body_mut().with_config().limit(u64::MAX).reader();
                    let mut out = Vec::new();
                    MinRate::new(body)
                        .take(limit.saturating_add(1))
                        .read_to_end(&mut out)?;
                    Ok(out)
                })?
            }
        };
        if bytes.len() as u64 > limit {
            return Err(RepoError::TooLarge {
                repo: repo.to_string(),
                url: self.display(&rel),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Copies the file `rel` (confined to the repository) into `dest`
    /// (rewound and truncated first, and again before each HTTP retry),
    /// stopping after `limit` bytes, so a server sending more than the
    /// expected size cannot fill the disk. Returns the number of bytes
    /// copied. Memory use is one buffer, however large the file.
    pub fn copy_to(
        &self,
        repo: &str,
        rel: &str,
        limit: u64,
        dest: &mut std::fs::File,
    ) -> Result<u64, RepoError> {
        use std::io::Seek;
        let rel = self.confine(repo, rel)?;
        let reset = |dest: &mut std::fs::File| -> std::io::Result<()> {
            dest.set_len(0)?;
            dest.rewind()
        };
        match self {
            Location::Dir(d) => {
                let path = Location::local_file(repo, d, &rel)?;
                let f = std::fs::File::open(&path).map_err(|e| file_error(repo, &path, e))?;
                reset(dest)
                    .and_then(|()| std::io::copy(&mut f.take(limit), dest))
                    .map_err(|e| file_error(repo, &path, e))
            }
            Location::Http(_) => {
                let url = self.display(&rel);
                with_retries(repo, &url, || {
                    reset(dest)?;
                    let mut request = agent().get(&url);
                    // Only the first `limit` bytes are read: ask for no
                    // more (a server that ignores Range answers 200 with
                    // the whole file, of which as much is read).
                    if limit < u64::MAX {
                        request = request.header("Range", format!("bytes=0-{}", limit - 1));
                    }
                    let mut resp = request.call()?;
                    let body = resp.body_mut().with_config().limit(u64::MAX).reader();
                    Ok(std::io::copy(&mut MinRate::new(body).take(limit), dest)?)
                })
            }
        }
    }
}

/// Cuts a transfer off when it brings fewer than [`MIN_RATE`] bytes per
/// second over a [`RATE_WINDOW`]. The error is a `TimedOut` I/O error, so
/// it is reported (and not retried) like the other deadlines.
struct MinRate<R> {
    inner: R,
    window_start: Instant,
    window_bytes: u64,
}

impl<R: Read> MinRate<R> {
    fn new(inner: R) -> Self {
        MinRate {
            inner,
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }
}

impl<R: Read> Read for MinRate<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.window_bytes += n as u64;
        let elapsed = self.window_start.elapsed();
        if elapsed >= RATE_WINDOW {
            if self.window_bytes < MIN_RATE * RATE_WINDOW.as_secs() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "transfer too slow: {} bytes in {} s, below the minimum of {MIN_RATE} bytes/s",
                        self.window_bytes,
                        elapsed.as_secs()
                    ),
                ));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(n)
    }
}

/// A local repository file that could not be read: missing, or an I/O
/// error, naming the repository and the path.
fn file_error(repo: &str, path: &std::path::Path, e: std::io::Error) -> RepoError {
    let url = path.display().to_string();
    if e.kind() == std::io::ErrorKind::NotFound {
        RepoError::Missing {
            repo: repo.to_string(),
            url,
        }
    } else {
        RepoError::Io {
            repo: repo.to_string(),
            url,
            source: e,
        }
    }
}

/// Decodes `%XX` escapes (a path with spaces is `file:///a%20b`); a `%`
/// not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(FIRST_BYTE_TIMEOUT))
            .timeout_per_read(Some(STALL_TIMEOUT))
            .timeout_per_call(Some(OVERALL_TIMEOUT))
            .build();
        ureq::Agent::new_with_config(config)
    })
}

/// What a missed deadline is called in the error message, with its value.
fn deadline_reason(e: &ureq::Error) -> Option<String> {
    use ureq::Timeout as T;
    let secs = |d: Duration| d.as_secs();
    Some(match e {
        ureq::Error::Timeout(T::Connect | T::Resolve) => {
            format!("no connection within {} s", secs(CONNECT_TIMEOUT))
        }
        ureq::Error::Timeout(T::RecvResponse | T::SendRequest) => {
            format!("no response within {} s", secs(FIRST_BYTE_TIMEOUT))
        }
        ureq::Error::Timeout(T::PerRead) => {
            format!("the server sent nothing for {} s", secs(STALL_TIMEOUT))
        }
        ureq::Error::Timeout(_) => {
            format!("not finished within {} s", secs(OVERALL_TIMEOUT))
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => io.to_string(),
        _ => return None,
    })
}

/// Runs `attempt` (one HTTP request) up to [`ATTEMPTS`] times with
/// exponential backoff. Client errors other than 408/429 are final:
/// retrying a 404 only delays the message. So are missed deadlines.
fn with_retries<T>(
    repo: &str,
    url: &str,
    mut attempt: impl FnMut() -> Result<T, ureq::Error>,
) -> Result<T, RepoError> {
    let unreachable = |reason: String| RepoError::Unreachable {
        repo: repo.to_string(),
        url: url.to_string(),
        reason,
    };
    let mut pause = FIRST_BACKOFF;
    let mut last = String::new();
    for n in 1..=ATTEMPTS {
        match attempt() {
            Ok(body) => return Ok(body),
            Err(ureq::Error::StatusCode(404 | 410)) => {
                return Err(RepoError::Missing {
                    repo: repo.to_string(),
                    url: url.to_string(),
                })
            }
            Err(ureq::Error::StatusCode(code)) if code < 500 && code != 408 && code != 429 => {
                return Err(unreachable(format!("HTTP status {code}")))
            }
            Err(e) => match deadline_reason(&e) {
                Some(reason) => return Err(unreachable(reason)),
                None => last = e.to_string(),
            },
        }
        if n < ATTEMPTS {
            std::thread::sleep(pause);
            pause *= 2;
        }
    }
    Err(unreachable(format!("{last} (after {ATTEMPTS} attempts)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("r", "/srv/repo").unwrap(),
            Location::Dir("/srv/repo".into())
        );
        assert_eq!(
            Location::parse("r", "file:///srv/repo").unwrap(),
            Location::Dir("/srv/repo".into())
        );
        assert_eq!(
            Location::parse("r", "https://mirror/os/").unwrap(),
            Location::Http("https://mirror/os".into())
        );
        assert_eq!(
            Location::parse("r", "file://localhost/srv/my%20repo%+1%2").unwrap(),
            Location::Dir("/srv/my repo%+1%2".into())
        );
        for bad in ["ftp://mirror/os", "file://server/share"] {
            assert!(matches!(
                Location::parse("r", bad),
                Err(RepoError::Url { .. })
            ));
        }
        assert_eq!(
            Location::Http("http://h/x".into()).display("repodata/repomd.xml"),
            "http://h/x/repodata/repomd.xml"
        );
    }

    #[test]
    fn confines_paths_to_the_repository() {
        let dir = Location::Dir("/srv/repo".into());
        let web = Location::Http("http://h/os".into());
        for (loc, ok, want) in [
            (&dir, "Packages/a.rpm", "Packages/a.rpm"),
            (&dir, "./Packages//a..b.rpm", "./Packages//a..b.rpm"),
            (&web, "http://h/os/Packages/a.rpm", "Packages/a.rpm"),
            (&web, "HTTP://h/os/a.rpm", "a.rpm"),
        ] {
            assert_eq!(loc.confine("r", ok).unwrap(), want);
        }
        for (loc, bad, why) in [
            (&dir, "../../../../etc/passwd", "`..`"),
            (&dir, "Packages/../../x", "`..`"),
            (&dir, "%2e%2e/x", "`..`"),
            (&dir, "/etc/passwd", "absolute path"),
            (&dir, "%2fetc/passwd", "absolute path"),
            (&dir, "file:///etc/passwd", "URL"),
            (&web, "http://h/osx/a.rpm", "URL"),
            (&web, "http://evil/os/a.rpm", "URL"),
            (&web, "ftp://h/os/a.rpm", "URL"),
            (&dir, "a\0b", "NUL"),
            (&dir, "./", "no file name"),
            (&dir, "", "no file name"),
        ] {
            let e = loc.confine("r", bad).unwrap_err();
            assert!(
                matches!(&e, RepoError::Outside { path, reason, .. } if path == bad && reason.contains(why)),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn min_rate_cuts_off_slow_bodies() {
        // A reader that is "slow" because the window already expired.
        let mut r = MinRate::new(&b"abc"[..]);
        r.window_start = Instant::now() - RATE_WINDOW;
        let e = r.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("transfer too slow: 3 bytes"), "{e}");
        let mut fast = MinRate::new(&b"abc"[..]);
        assert_eq!(fast.read(&mut [0u8; 8]).unwrap(), 3);
    }
}

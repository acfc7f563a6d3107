//! Reading repository files from a local directory, a `file://` URL or an
//! HTTP(S) server.
//!
//! Metadata files are read whole into memory: their checksum must be
//! verified before anything is parsed, and even large distributions' primary
//! files are tens of megabytes compressed. Decompression and parsing then
//! stream from that buffer.

use super::error::RepoError;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// How often a transient HTTP failure (connection refused, timeout, 5xx,
/// 429) is retried, and the first pause; the pause doubles each time. Four
/// attempts spanning about two seconds ride out a restarting mirror without
/// making a dead one slow to report.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

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

    /// Reads the file `rel` (relative to the repository root) completely.
    pub fn read(&self, repo: &str, rel: &str) -> Result<Vec<u8>, RepoError> {
        match self {
            Location::Dir(d) => {
                let path = d.join(rel);
                std::fs::read(&path).map_err(|e| file_error(repo, &path, e))
            }
            Location::Http(_) => http_get(repo, &self.display(rel)),
        }
    }
}

impl Location {
    /// Copies the file `rel` into `dest` (rewound and truncated first, and
    /// again before each HTTP retry), stopping after `limit` bytes, so a
    /// server sending more than the expected size cannot fill the disk.
    /// Returns the number of bytes copied. Memory use is one buffer, however
    /// large the file.
    pub fn copy_to(
        &self,
        repo: &str,
        rel: &str,
        limit: u64,
        dest: &mut std::fs::File,
    ) -> Result<u64, RepoError> {
        use std::io::{Read, Seek};
        let url = self.display(rel);
        let reset = |dest: &mut std::fs::File| -> std::io::Result<()> {
            dest.set_len(0)?;
            dest.rewind()
        };
        match self {
            Location::Dir(d) => {
                let path = d.join(rel);
                let f = std::fs::File::open(&path).map_err(|e| file_error(repo, &path, e))?;
                reset(dest)
                    .and_then(|()| std::io::copy(&mut f.take(limit), dest))
                    .map_err(|e| file_error(repo, &path, e))
            }
            Location::Http(_) => with_retries(repo, &url, || {
                reset(dest)?;
                let mut resp = agent().get(&url).call()?;
                let body = resp.body_mut().with_config().limit(u64::MAX).reader();
                Ok(std::io::copy(&mut body.take(limit), dest)?)
            }),
        }
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
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .build();
        ureq::Agent::new_with_config(config)
    })
}

/// GET with retries and exponential backoff.
fn http_get(repo: &str, url: &str) -> Result<Vec<u8>, RepoError> {
    with_retries(repo, url, || get_once(url))
}

/// Runs `attempt` (one HTTP request) up to [`ATTEMPTS`] times with
/// exponential backoff. Client errors other than 408/429 are final:
/// retrying a 404 only delays the message.
fn with_retries<T>(
    repo: &str,
    url: &str,
    mut attempt: impl FnMut() -> Result<T, ureq::Error>,
) -> Result<T, RepoError> {
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
                return Err(RepoError::Unreachable {
                    repo: repo.to_string(),
                    url: url.to_string(),
                    reason: format!("HTTP status {code}"),
                })
            }
            Err(e) => last = e.to_string(),
        }
        if n < ATTEMPTS {
            std::thread::sleep(pause);
            pause *= 2;
        }
    }
    Err(RepoError::Unreachable {
        repo: repo.to_string(),
        url: url.to_string(),
        reason: format!("{last} (after {ATTEMPTS} attempts)"),
    })
}

fn get_once(url: &str) -> Result<Vec<u8>, ureq::Error> {
    let mut resp = agent().get(url).call()?;
    // ureq caps bodies at 10 MB by default; primary files can be larger.
    resp.body_mut().with_config().limit(u64::MAX).read_to_vec()
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
}

//! Downloads through a ring of servers and a chain of proxies, as
//! upstream's download manager does: a failing proxy moves to the next
//! proxy, a failing host (refused, timeout, 404, 5xx) to the next server,
//! and bytes that do not verify are fetched once more with
//! `Cache-Control: no-cache` (a proxy may hold a corrupted copy) before
//! the next server is tried. What worked is remembered for the next
//! request. Every failure is reported with the URL and the proxy tried.
//! Files outside `data/` (manifest, whitelist) are rewritten in place by
//! the publisher: a proxy may answer them only from a copy at most
//! [`MUTABLE_MAX_AGE`] seconds old.

use super::http::{self, Failure, Freshness, Target};
use super::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The three limits of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish the TCP connection (to the proxy or the server).
    pub connect: Duration,
    /// From the request until the first byte of the answer, and between
    /// any two reads afterwards (a stalled transfer).
    pub first_byte: Duration,
    /// For the whole request.
    pub overall: Duration,
}

impl Default for Timeouts {
    /// A few seconds, like upstream's `CVMFS_TIMEOUT`/`CVMFS_TIMEOUT_DIRECT`
    /// (5 s and 10 s); a whole object may take longer on a slow link.
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(10),
            overall: Duration::from_secs(120),
        }
    }
}

/// One entry of the proxy chain: `host:port`, or `None` for DIRECT.
type Proxy = Option<String>;

/// Parses upstream's proxy syntax: `;` separates fail-over groups, `|`
/// the members of one load-balance group, `DIRECT` is no proxy; `http://`
/// prefixes and trailing slashes are accepted. An empty string is DIRECT.
pub fn parse_proxies(spec: &str) -> Result<Vec<Vec<Proxy>>, Error> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(vec![vec![None]]);
    }
    spec.split(';')
        .map(|group| {
            group
                .split('|')
                .map(|p| {
                    let p = p.trim();
                    if p.eq_ignore_ascii_case("DIRECT") {
                        return Ok(None);
                    }
                    let bare = p.strip_prefix("http://").unwrap_or(p).trim_end_matches('/');
                    let ok = bare.rsplit_once(':').is_some_and(|(h, port)| {
                        !h.is_empty() && port.parse::<u16>().is_ok() && !h.contains('/')
                    });
                    if !ok {
                        return Err(Error::Config(format!(
                            "proxy {p:?}: expected HOST:PORT, http://HOST:PORT or DIRECT"
                        )));
                    }
                    Ok(Some(bare.to_string()))
                })
                .collect()
        })
        .collect()
}

/// Servers, proxies and what last worked.
pub struct Network {
    servers: Vec<String>,
    proxies: Vec<Vec<Proxy>>,
    timeouts: Timeouts,
    /// (server, proxy group, member) that last delivered.
    current: Mutex<(usize, usize, usize)>,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Network {
    pub fn new(servers: &[String], proxies: &str, timeouts: Timeouts) -> Result<Network, Error> {
        if servers.is_empty() {
            return Err(Error::Config("no server given (--server URL)".into()));
        }
        let servers: Vec<String> = servers
            .iter()
            .map(|s| s.trim_end_matches('/').to_string())
            .collect();
        for s in &servers {
            http::split_url(s).map_err(Error::Config)?;
        }
        // Members of a load-balance group share the load, as upstream
        // shuffles them: each client starts at a different one.
        let mut proxies = parse_proxies(proxies)?;
        let seed = std::process::id() as usize
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as usize);
        for g in &mut proxies {
            let n = g.len();
            g.rotate_left(seed % n);
        }
        Ok(Network {
            servers,
            proxies,
            timeouts,
            current: Mutex::new((0, 0, 0)),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// Requests made and bytes received so far (for reports and the
    /// benchmark).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The first server's URL of `rel`, for messages.
    pub fn describe(&self, rel: &str) -> String {
        format!("{}/{rel}", self.servers[0])
    }

    /// GETs `rel` (relative to a server's base URL), at most `limit` bytes,
    /// accepting only bytes that `check` passes (it says why not).
    pub fn get(
        &self,
        rel: &str,
        limit: u64,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
    ) -> Result<Vec<u8>, Error> {
        let (s0, g0, m0) = *self.current.lock().expect("network state");
        let mut tried = Vec::new();
        let ngroups = self.proxies.len();
        for gi in 0..ngroups {
            let g = (g0 + gi) % ngroups;
            let members = self.proxies[g].len();
            let first = if g == g0 { m0 % members } else { 0 };
            for mi in 0..members {
                let m = (first + mi) % members;
                let proxy = self.proxies[g][m].as_deref();
                let via = proxy.map_or("DIRECT".to_string(), |p| format!("proxy {p}"));
                match self.try_servers(rel, proxy, &via, s0, limit, check, &mut tried) {
                    Some((s, body)) => {
                        *self.current.lock().expect("network state") = (s, g, m);
                        return Ok(body);
                    }
                    None if tried.last().is_some_and(|(proxy_failed, _)| *proxy_failed) => continue,
                    None => return Err(self.failed(rel, tried)),
                }
            }
        }
        Err(self.failed(rel, tried))
    }

    fn failed(&self, rel: &str, tried: Vec<(bool, String)>) -> Error {
        let lines: Vec<String> = tried.into_iter().map(|(_, m)| m).collect();
        Error::Fetch(format!(
            "{rel}: no server delivered a verified copy:\n  {}",
            lines.join("\n  ")
        ))
    }

    /// Every server through one proxy; `None` when all failed (the last
    /// entry of `tried` then says whether it was the proxy's fault).
    #[allow(clippy::too_many_arguments)]
    fn try_servers(
        &self,
        rel: &str,
        proxy: Option<&str>,
        via: &str,
        s0: usize,
        limit: u64,
        check: &dyn Fn(&[u8]) -> Result<(), String>,
        tried: &mut Vec<(bool, String)>,
    ) -> Option<(usize, Vec<u8>)> {
        let n = self.servers.len();
        for k in 0..n {
            let s = (s0 + k) % n;
            let url = format!("{}/{rel}", self.servers[s]);
            for reload in [false, true] {
                let freshness = match (reload, rel.starts_with("data/")) {
                    (true, _) => Freshness::Reload,
                    (false, true) => Freshness::Cached,
                    (false, false) => Freshness::MaxAge(MUTABLE_MAX_AGE),
                };
                let t = Target {
                    url: &url,
                    proxy,
                    freshness,
                    limit,
                };
                self.requests.fetch_add(1, Ordering::Relaxed);
                match http::get(&t, &self.timeouts) {
                    Ok(body) => {
                        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        match check(&body) {
                            Ok(()) => return Some((s, body)),
                            Err(why) => {
                                let again = if reload {
                                    ""
                                } else {
                                    " (retrying with no-cache)"
                                };
                                tried.push((false, format!("{url} via {via}: {why}{again}")));
                            }
                        }
                    }
                    Err(Failure::Proxy(m)) => {
                        tried.push((true, format!("{url} via {via}: {m}")));
                        return None;
                    }
                    Err(Failure::Host(m)) => {
                        tried.push((false, format!("{url} via {via}: {m}")));
                        break;
                    }
                }
            }
        }
        None
    }
}

/// How old a proxy's copy of the manifest or whitelist may be, in seconds:
/// what upstream's Stratum servers announce for them (`max-age=61`), asked
/// by the client so that a proxy in front of any server honours it.
pub const MUTABLE_MAX_AGE: u32 = 61;

/// A content digest: SHA-1 is the only algorithm this client reads.
pub type Digest = [u8; 20];

/// Parses the text form of a content hash (as manifests, nested catalog
/// and tag rows spell it). Other algorithms are refused by name.
pub fn parse_hash(text: &str) -> Result<Digest, String> {
    if text.ends_with("-rmd160") || text.ends_with("-shake128") {
        return Err(format!(
            "hash {text}: only SHA-1 repositories are supported"
        ));
    }
    let mut d = [0u8; 20];
    hex::decode_to_slice(text, &mut d).map_err(|_| format!("{text:?} is not a SHA-1 hash"))?;
    Ok(d)
}

/// The served path of an object: `data/XX/REST<suffix>`.
pub fn object_path(d: &Digest, suffix: &str) -> String {
    let h = hex::encode(d);
    format!("data/{}/{}{suffix}", &h[..2], &h[2..])
}

/// Why received bytes are not the object `d`.
pub fn check_digest(d: &Digest, bytes: &[u8]) -> Result<(), String> {
    use sha1::Digest as _;
    let actual: Digest = sha1::Sha1::digest(bytes).into();
    if &actual == d {
        Ok(())
    } else {
        Err(format!(
            "received bytes hash to {}, not to the object's name",
            hex::encode(actual)
        ))
    }
}

/// Inflates a zlib object into `out`, refusing more than `limit` bytes (a
/// small object can inflate to gigabytes).
pub fn inflate_into(
    stored: &[u8],
    limit: u64,
    out: &mut impl std::io::Write,
) -> Result<u64, String> {
    use std::io::Read;
    let mut z = flate2::read::ZlibDecoder::new(stored).take(limit + 1);
    let n = std::io::copy(&mut z, out).map_err(|e| format!("not a valid zlib stream: {e}"))?;
    if n > limit {
        return Err(format!("inflates to more than the {limit} bytes allowed"));
    }
    Ok(n)
}

impl Network {
    /// GETs an object and accepts it only if the SHA-1 of the received
    /// bytes is its name. Returns the bytes as stored (compressed).
    pub fn get_object(&self, d: &Digest, suffix: &str, limit: u64) -> Result<Vec<u8>, Error> {
        self.get(&object_path(d, suffix), limit, &|b| check_digest(d, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_syntax() {
        let p = parse_proxies("http://a:3128|b:3128;DIRECT").unwrap();
        assert_eq!(
            p,
            vec![
                vec![Some("a:3128".to_string()), Some("b:3128".to_string())],
                vec![None]
            ]
        );
        assert_eq!(parse_proxies("").unwrap(), vec![vec![None]]);
        assert!(parse_proxies("nonsense").is_err());
        assert!(parse_proxies("a:99999").is_err());
    }
}

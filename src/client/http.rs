//! One HTTP/1.1 GET, bounded in size and time, directly or through a
//! forward proxy.
//!
//! Why not ureq: a CernVM-FS client must talk to squid as a *caching*
//! forward proxy (`GET http://host/path` in absolute form, which is what
//! makes a site proxy useful), while ureq tunnels every proxied request
//! through `CONNECT`, which squid cannot cache. Writing the few lines of
//! HTTP/1.1 ourselves also gives exact control over the three timeouts
//! and the size limit, and keeps TLS out of the small client binary
//! (repositories are served over plain HTTP and verified by signature).

use super::fetch::Timeouts;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Instant;

/// Largest response header accepted.
const MAX_HEADER: usize = 64 << 10;

/// Why a request failed, classified as upstream's download manager does:
/// a proxy failure moves to the next proxy, a host failure to the next
/// server.
#[derive(Debug)]
pub enum Failure {
    /// The proxy could not be reached or did not answer in time.
    Proxy(String),
    /// The server could not be reached, timed out, or answered an error.
    Host(String),
}

/// Where a request goes.
pub struct Target<'a> {
    /// `http://host[:port]/path`.
    pub url: &'a str,
    /// `host:port` of a forward proxy, or `None` for DIRECT.
    pub proxy: Option<&'a str>,
    /// What a proxy may answer from its cache.
    pub freshness: Freshness,
    /// Refuse bodies larger than this.
    pub limit: u64,
}

/// What a proxy may answer from its cache, as request `Cache-Control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Whatever it holds: content-addressed objects never change.
    Cached,
    /// A copy at most this many seconds old (`max-age`): the files a
    /// publisher rewrites in place (manifest, whitelist), so that a proxy
    /// cannot hold back a new revision for longer, whatever the server's
    /// own cache headers say.
    MaxAge(u32),
    /// None (`no-cache`, and `Pragma` for HTTP/1.0 caches): a copy fetched
    /// anew, after a cached one failed verification.
    Reload,
}

/// The `host:port` and path of an `http://` URL.
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url}: no host"));
    }
    let hostport = if authority.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
    }) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((hostport, path.to_string()))
}

/// Performs the GET and returns the body of a `200` answer.
pub fn get(t: &Target, timeouts: &Timeouts) -> Result<Vec<u8>, Failure> {
    let start = Instant::now();
    let (hostport, path) = split_url(t.url).map_err(Failure::Host)?;
    let via_proxy = t.proxy.is_some();
    let fail = |m: String| {
        if via_proxy {
            Failure::Proxy(m)
        } else {
            Failure::Host(m)
        }
    };
    let connect_to = t.proxy.unwrap_or(&hostport);
    let stream = connect(connect_to, timeouts)
        .map_err(|e| fail(format!("connecting to {connect_to}: {e}")))?;
    let request_target = if via_proxy { t.url } else { &path };
    let host = hostport.strip_suffix(":80").unwrap_or(&hostport);
    let mut req = format!(
        "GET {request_target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cvmbuild-client\r\nConnection: close\r\n"
    );
    match t.freshness {
        Freshness::Cached => {}
        Freshness::MaxAge(s) => req.push_str(&format!("Cache-Control: max-age={s}\r\n")),
        Freshness::Reload => req.push_str("Cache-Control: no-cache\r\nPragma: no-cache\r\n"),
    }
    req.push_str("\r\n");
    stream
        .set_write_timeout(Some(timeouts.first_byte))
        .map_err(|e| fail(e.to_string()))?;
    let mut w = &stream;
    w.write_all(req.as_bytes())
        .map_err(|e| fail(format!("sending the request: {e}")))?;
    let mut r = BufReader::new(Timed {
        stream: &stream,
        start,
        timeouts,
    });
    let head = read_head(&mut r).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock {
            fail(format!("no answer within {:?}", timeouts.first_byte))
        } else {
            // No answer at all (closed or reset) through a proxy is the
            // proxy's failure, as upstream's download manager counts it:
            // the next proxy is tried.
            fail(format!("reading the response: {e}"))
        }
    })?;
    let status = parse_status(&head).ok_or_else(|| Failure::Host("not an HTTP response".into()))?;
    if status != 200 {
        let squid = header(&head, "x-squid-error")
            .map(|v| format!(" ({v})"))
            .unwrap_or_default();
        return Err(Failure::Host(format!("HTTP status {status}{squid}")));
    }
    let chunked = header(&head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = match header(&head, "content-length") {
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| Failure::Host(format!("bad Content-Length {v:?}")))?,
        ),
        None => None,
    };
    let too_big = || Failure::Host(format!("larger than the {} bytes allowed", t.limit));
    let body_err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock {
            Failure::Host(format!(
                "body not received within the timeouts {timeouts:?}"
            ))
        } else {
            Failure::Host(format!("reading the body: {e}"))
        }
    };
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut line = String::new();
            (&mut r).take(1024).read_line(&mut line).map_err(body_err)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| Failure::Host(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                break;
            }
            if body.len() as u64 + size > t.limit {
                return Err(too_big());
            }
            let n = (&mut r)
                .take(size)
                .read_to_end(&mut body)
                .map_err(body_err)?;
            if n as u64 != size {
                return Err(Failure::Host("truncated chunked body".into()));
            }
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).map_err(body_err)?;
        }
    } else if let Some(len) = length {
        if len > t.limit {
            return Err(too_big());
        }
        body.reserve(len as usize);
        (&mut r)
            .take(len)
            .read_to_end(&mut body)
            .map_err(body_err)?;
        if body.len() as u64 != len {
            return Err(Failure::Host(format!(
                "truncated body: {} of {len} bytes",
                body.len()
            )));
        }
    } else {
        (&mut r)
            .take(t.limit + 1)
            .read_to_end(&mut body)
            .map_err(body_err)?;
        if body.len() as u64 > t.limit {
            return Err(too_big());
        }
    }
    Ok(body)
}

fn connect(hostport: &str, timeouts: &Timeouts) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other("no address");
    for addr in hostport.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeouts.connect) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads from the socket waiting at most the first-byte timeout for each
/// read (so a stalled transfer fails too), never past the overall deadline.
struct Timed<'a> {
    stream: &'a TcpStream,
    start: Instant,
    timeouts: &'a Timeouts,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self
            .timeouts
            .overall
            .checked_sub(self.start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
        let idle = self.timeouts.first_byte;
        self.stream.set_read_timeout(Some(left.min(idle)))?;
        self.stream.read(buf)
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r.take(MAX_HEADER as u64).read_until(b'\n', &mut line)?;
        total += n;
        if n == 0 || total > MAX_HEADER {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "connection closed or header too long",
            ));
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn parse_status(head: &[String]) -> Option<u16> {
    let first = head.first()?;
    let mut parts = first.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Serves one connection with `answer`, returning the request seen.
    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/repo/x", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                c.read_exact(&mut b).unwrap();
                req.push(b[0]);
            }
            c.write_all(answer).unwrap();
            String::from_utf8(req).unwrap()
        });
        (url, h)
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(2),
            overall: Duration::from_secs(5),
        }
    }

    fn target(url: &str, limit: u64) -> Target<'_> {
        Target {
            url,
            proxy: None,
            freshness: Freshness::Reload,
            limit,
        }
    }

    #[test]
    fn chunked_bodies_and_limits() {
        let (url, h) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        );
        let body = get(&target(&url, 100), &timeouts()).unwrap();
        assert_eq!(body, b"hello world");
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /repo/x HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Cache-Control: no-cache"), "{req}");

        let (url, _h) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        let Err(Failure::Host(m)) = get(&target(&url, 100), &timeouts()) else {
            panic!("accepted more than the limit")
        };
        assert!(m.contains("larger than the 100 bytes"), "{m}");

        let (url, _h) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let Err(Failure::Host(m)) = get(&target(&url, 100), &timeouts()) else {
            panic!("accepted a truncated body")
        };
        assert!(m.contains("truncated"), "{m}");

        let (url, _h) = serve_once(b"HTTP/1.1 503 Busy\r\nX-Squid-Error: ERR_CONNECT_FAIL 111\r\nContent-Length: 0\r\n\r\n");
        let Err(Failure::Host(m)) = get(&target(&url, 100), &timeouts()) else {
            panic!("accepted a 503")
        };
        assert!(m.contains("503") && m.contains("ERR_CONNECT_FAIL"), "{m}");
    }

    #[test]
    fn a_proxy_closing_without_an_answer_is_a_proxy_failure() {
        let (url, _h) = serve_once(b"");
        let proxy = url
            .trim_start_matches("http://")
            .trim_end_matches("/repo/x")
            .to_string();
        let t = Target {
            url: "http://10.0.2.100/repo/x",
            proxy: Some(&proxy),
            freshness: Freshness::MaxAge(61),
            limit: 100,
        };
        let Err(Failure::Proxy(m)) = get(&t, &timeouts()) else {
            panic!("a proxy that closed without an answer is not a proxy failure")
        };
        assert!(m.contains("reading the response"), "{m}");
        let req = _h.join().unwrap();
        assert!(
            req.starts_with("GET http://10.0.2.100/repo/x HTTP/1.1\r\n")
                && req.contains("\r\nCache-Control: max-age=61\r\n"),
            "{req}"
        );
        let (url, _h) = serve_once(b"");
        assert!(matches!(
            get(&target(&url, 100), &timeouts()),
            Err(Failure::Host(_))
        ));
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://h:8080/cvmfs/x/.cvmfspublished").unwrap(),
            ("h:8080".into(), "/cvmfs/x/.cvmfspublished".into())
        );
        assert_eq!(
            split_url("http://127.0.0.1/a").unwrap(),
            ("127.0.0.1:80".into(), "/a".into())
        );
        assert!(split_url("https://h/a").is_err());
        assert!(split_url("http:///a").is_err());
    }
}

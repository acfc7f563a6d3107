//! HTTP retries: a mirror that fails transiently is retried with backoff;
//! one that keeps failing is reported with the URL and the last error.

use cvmbuild::repo::{load, RepoSource};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn tizen() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/tizen-serranove"
    ));
    assert!(
        dir.join("repodata/repomd.xml").is_file(),
        "shared test data missing: {}",
        dir.display()
    );
    dir
}

/// Serves files under `root`, answering the first `failures` requests with
/// `503 Service Unavailable`. Returns the base URL and a request counter.
fn flaky_server(root: PathBuf, failures: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok() && line.trim_end() != "" {
                line.clear();
            }
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = if n < failures {
                None
            } else {
                std::fs::read(root.join(path.trim_start_matches('/'))).ok()
            };
            let _ = match body {
                Some(b) => stream
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())
                            .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&b)),
                None if n < failures => stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
                None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    (url, count)
}

fn source(url: &str) -> RepoSource {
    RepoSource {
        name: "flaky".into(),
        url: url.into(),
        priority: 1,
        cost: 1,
    }
}

#[test]
fn transient_failures_are_retried() {
    let (url, count) = flaky_server(tizen(), 2);
    let pool = load(&[source(&url)], None).unwrap();
    assert_eq!(pool.packages.len(), 592);
    // Two 503s, then repomd.xml and primary.
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

#[test]
fn persistent_failure_names_the_url() {
    let (url, count) = flaky_server(tizen(), usize::MAX);
    let err = load(&[source(&url)], None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("{url}/repodata/repomd.xml")),
        "{text}"
    );
    assert!(text.contains("503"), "{text}");
    assert!(text.contains("after 4 attempts"), "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

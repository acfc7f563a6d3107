//! Fetching packages over HTTP from a real local server
//! (`tests/fixtures/http/repo_server.py`, Python's http.server on
//! loopback): parallel downloads, a connection cut midway (once: retried;
//! always: a clear error), wrong bytes and overlong bodies (refused); nothing is stored or
//! registered from a bad download.

use crate::support::fixture as realize_util;

use cvmbuild::store::{FsStore, Store};
use realize_util::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The fixture server, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, mode: &str, delay: f64) -> Server {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http/repo_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .args(["--mode", mode, "--delay", &delay.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is installed (.ci/deps)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        Server { child, port }
    }

    fn stats(&self) -> serde_json::Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET /_stats HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points the fixture's spec at the server and realizes the OS tree.
fn realize_over_http(f: &Fixture, server: &Server, jobs: &str) -> std::process::Output {
    let spec = f.spec();
    let text = fs::read_to_string(&spec).unwrap().replace(
        "url = \"../repos/",
        &format!("url = \"http://127.0.0.1:{}/", server.port),
    );
    assert!(text.contains("http://127.0.0.1"));
    fs::write(&spec, text).unwrap();
    f.run(&[
        "-j",
        jobs,
        "realize",
        spec.to_str().unwrap(),
        "--branch",
        "production",
        "--root",
        "os-tree",
    ])
}

/// No fetch derivation has a registered output, and no stored blob is an
/// RPM (the only RPMs this realize could store are fetched ones).
fn assert_nothing_fetched(f: &Fixture) {
    let store = FsStore::open(&f.store()).unwrap();
    let mut fetches = 0;
    for id in store.drv_record_ids().unwrap() {
        let rec: serde_json::Value =
            serde_json::from_slice(&store.drv_record(&id).unwrap().unwrap()).unwrap();
        if rec["name"].as_str().unwrap().starts_with("fetch:") {
            fetches += 1;
            assert_eq!(store.lookup_output(&id).unwrap(), None, "{}", rec["name"]);
        }
    }
    assert!(fetches > 20);
    for e in walkdir::WalkDir::new(f.store().join("blobs")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let head = fs::read(e.path()).unwrap();
            assert!(
                !head.starts_with(&[0xed, 0xab, 0xee, 0xdb]),
                "{:?}",
                e.path()
            );
        }
    }
    assert_verify_clean(&f.store());
}

#[test]
fn packages_download_in_parallel_and_give_the_local_result() {
    let local = Fixture::new();
    let (want, _) = local.realize(&["--root", "os-tree"]);
    let f = Fixture::new();
    let server = Server::start(&f.path("repos"), "ok", 0.2);
    let out = realize_over_http(&f, &server, "4");
    assert!(out.status.success(), "{}", text(&out));
    let got = String::from_utf8(out.stdout).unwrap();
    assert!(
        got.contains(&format!("os-tree      tree {}", os_tree_of(&want))),
        "{got}"
    );
    let stats = server.stats();
    let fetched = built(&String::from_utf8(out.stderr).unwrap())
        .iter()
        .filter(|n| n.starts_with("fetch:"))
        .count();
    assert_eq!(
        stats["rpm_requests"], fetched as u64,
        "one request per package"
    );
    assert!(stats["max_parallel"].as_u64().unwrap() >= 2, "{stats}");
    assert_verify_clean(&f.store());
}

fn os_tree_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("os-tree")
                .map(|r| r.trim().trim_start_matches("tree ").to_string())
        })
        .unwrap()
}

#[test]
fn a_connection_cut_once_is_retried() {
    let f = Fixture::new();
    let server = Server::start(&f.path("repos"), "cut-once", 0.0);
    let out = realize_over_http(&f, &server, "2");
    assert!(out.status.success(), "{}", text(&out));
    let stats = server.stats();
    let fetched = built(&String::from_utf8(out.stderr).unwrap())
        .iter()
        .filter(|n| n.starts_with("fetch:"))
        .count() as u64;
    assert_eq!(
        stats["rpm_requests"],
        2 * fetched,
        "each package twice: {stats}"
    );
    assert_verify_clean(&f.store());
}

#[test]
fn a_connection_always_cut_is_a_clear_error_and_stores_nothing() {
    let f = Fixture::new();
    let server = Server::start(&f.path("repos"), "cut", 0.0);
    let out = realize_over_http(&f, &server, "2");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8(out.stderr).unwrap();
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("x fetch:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("repository `"), "{line}");
    assert!(
        line.contains(&format!("http://127.0.0.1:{}/", server.port)),
        "{line}"
    );
    assert!(line.contains("after 4 attempts"), "{line}");
    assert_nothing_fetched(&f);
}

/// Realizes against a server in `mode`, expecting the run to fail and
/// nothing to be stored; returns the first fetch error line and its NEVRA.
fn failed_fetch(mode: &str) -> (String, String) {
    let f = Fixture::new();
    let server = Server::start(&f.path("repos"), mode, 0.0);
    let out = realize_over_http(&f, &server, "2");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8(out.stderr).unwrap();
    let line = err
        .lines()
        .find(|l| l.trim_start().starts_with("x fetch:"))
        .unwrap_or_else(|| panic!("{err}"))
        .to_string();
    assert_nothing_fetched(&f);
    let nevra = line.trim_start()["x fetch:".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    (line, nevra)
}

#[test]
fn wrong_bytes_are_refused_naming_package_and_repository() {
    let (line, nevra) = failed_fetch("wrong");
    assert!(
        line.contains(&format!("{nevra} from repository `")) && line.contains("sha256 mismatch"),
        "{line}"
    );
}

/// A server sending more than the lock's size: the download stops one byte
/// past it and is refused, naming the package; nothing is stored.
#[test]
fn an_overlong_body_is_refused() {
    let (line, nevra) = failed_fetch("long");
    assert!(
        line.contains(&format!("{nevra} from repository `")) && line.contains("bytes, got more"),
        "{line}"
    );
}

//! The CernVM-FS client against real servers started here: the bundled
//! example's two branches are published once (shared by every test in
//! this module), served by nginx as a Stratum-0, replicated with
//! `cvmbuild replicate` into a Stratum-1 served by a second nginx and read
//! through Debian's squid. What the client reads is compared with the
//! `--out` export of the same release; refused repositories are made by
//! copying the served directory and editing bytes (re-signed with
//! `openssl` where a case needs a valid signature over wrong content).

use super::support::nginx::Nginx;
use super::support::squid::{Squid, Upstream};
use ::cvmfs as cvmfs_crate;
use cvmbuild::client::vfs::{Attr, Kind, ReadOnlyFs, ROOT_INO};
use cvmbuild::client::{self, Config, Pin, Timeouts};
use cvmbuild::cvmfs;
use cvmbuild::store::{Entry, MemStore, Node, Store, Tree};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const SPEC: &str = "examples/cernvm/cernvm.cvm";
const FQRN: &str = "cernvm-prod.cern.ch";

/// Both releases published once, with their exports.
struct Published {
    root: PathBuf,
    /// The Stratum-0 parent directory (`<served>/<FQRN>` is the repository).
    served: PathBuf,
    key: PathBuf,
    prod: PathBuf,
    dev: PathBuf,
}

fn published() -> &'static Published {
    static P: OnceLock<Published> = OnceLock::new();
    P.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let store = root.join("store");
        let (prod, dev) = (root.join("prod"), root.join("dev"));
        for (branch, out) in [("production", &prod), ("development", &dev)] {
            let o = out.display().to_string();
            let st = super::support::cvmbuild(&root)
                .arg("--store")
                .arg(&store)
                .args(["realize", SPEC, "--branch", branch, "--out", &o])
                .output()
                .unwrap();
            assert!(
                st.status.success(),
                "{}",
                String::from_utf8_lossy(&st.stderr)
            );
        }
        Published {
            served: store.join("cvmfs"),
            key: store.join(format!("cvmfs-keys/{FQRN}.pub")),
            root,
            prod,
            dev,
        }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(servers: Vec<String>, proxies: &str, pin: Pin, cache: &Path) -> Config {
    Config {
        fqrn: FQRN.into(),
        servers,
        proxies: proxies.into(),
        keys: vec![published().key.clone()],
        pin,
        cache: cache.to_path_buf(),
        quota: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(3),
            overall: Duration::from_secs(30),
        },
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/{FQRN}")
}

/// One entry as both sides can describe it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    mode: u32,
    size: u64,
    uid: u32,
    gid: u32,
    nlink: u32,
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: Option<Vec<u8>>,
}

fn local_xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: buffers are valid for the lengths given.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "{}", p.display());
    let mut out = BTreeMap::new();
    for name in buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 4096];
        // SAFETY: as above.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0);
        v.truncate(m as usize);
        out.insert(name.to_vec(), v);
    }
    out
}

/// path -> entry of an exported tree, and its hardlink groups.
fn local_tree(root: &Path) -> (BTreeMap<String, Seen>, Vec<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let rel = format!("/{}", e.path().strip_prefix(root).unwrap().display());
        let ft = md.file_type();
        if ft.is_file() && md.nlink() > 1 {
            inodes.entry(md.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel,
            Seen {
                mode: md.mode(),
                size: if ft.is_dir() { 0 } else { md.len() },
                uid: md.uid(),
                gid: md.gid(),
                nlink: md.nlink() as u32,
                target: ft.is_symlink().then(|| {
                    use std::os::unix::ffi::OsStrExt;
                    std::fs::read_link(e.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                }),
                xattrs: local_xattrs(e.path()),
                bytes: ft.is_file().then(|| std::fs::read(e.path()).unwrap()),
            },
        );
    }
    (out, inodes.into_values().collect())
}

/// The same, read through the client (without cvmbuild's and upstream's
/// own additions and without the informational `user.*` attributes).
fn remote_tree(repo: &client::Repository) -> (BTreeMap<String, Seen>, Vec<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut todo = vec![(String::new(), ROOT_INO)];
    while let Some((dir, ino)) = todo.pop() {
        for (name, a) in repo.readdir(ino).unwrap() {
            let path = format!("{dir}/{}", String::from_utf8(name).unwrap());
            if path.starts_with("/.cvmbuild") || path.ends_with("/.cvmfscatalog") {
                continue;
            }
            assert_eq!(repo.getattr(a.ino).unwrap(), a, "{path}");
            if a.kind == Kind::Directory {
                todo.push((path.clone(), a.ino));
            }
            if a.kind == Kind::File && a.nlink > 1 {
                inodes.entry(a.ino).or_default().push(path.clone());
            }
            out.insert(path, seen(repo, &a));
        }
    }
    let mut groups: Vec<Vec<String>> = inodes.into_values().collect();
    groups.sort();
    (out, groups)
}

fn seen(repo: &client::Repository, a: &Attr) -> Seen {
    let mut xattrs = BTreeMap::new();
    for k in repo.listxattr(a.ino).unwrap() {
        if !k.starts_with(b"user.") {
            let v = repo.getxattr(a.ino, &k).unwrap();
            xattrs.insert(k, v);
        }
    }
    Seen {
        mode: a.mode,
        size: if a.kind == Kind::Directory { 0 } else { a.size },
        uid: a.uid,
        gid: a.gid,
        nlink: a.nlink,
        target: (a.kind == Kind::Symlink).then(|| repo.readlink(a.ino).unwrap()),
        xattrs,
        bytes: (a.kind == Kind::File).then(|| {
            let mut v = Vec::new();
            repo.copy_to(a.ino, &mut v).unwrap();
            v
        }),
    }
}

fn assert_same(repo: &client::Repository, export: &Path, what: &str) {
    let (local, mut lgroups) = local_tree(export);
    let (remote, rgroups) = remote_tree(repo);
    assert!(local.len() > 50, "{}", local.len());
    let lk: Vec<&String> = local.keys().collect();
    let rk: Vec<&String> = remote.keys().collect();
    assert_eq!(lk, rk, "{what}: paths differ");
    for (p, l) in &local {
        assert!(
            &remote[p] == l,
            "{what}: {p} differs:\n  export {l:?}\n  client {:?}",
            remote[p]
        );
    }
    for g in &mut lgroups {
        g.sort();
    }
    lgroups.sort();
    assert_eq!(lgroups, rgroups, "{what}: hardlink groups differ");
}

fn cli(args: &[&str]) -> std::process::Output {
    super::support::cvmbuild(&published().root)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn replica_through_squid_reads_every_tag_like_its_export() {
    let p = published();
    let tmp = tempfile::tempdir().unwrap();
    let s0_nginx = Nginx::start(&p.served, &tmp.path().join("nginx0"));
    let p0 = s0_nginx.port;
    let s1 = tmp.path().join("stratum1");
    let key = p.key.display().to_string();
    let dest = s1.join(FQRN).display().to_string();
    let out = cli(&["replicate", &url(p0), &dest, "--key", &key, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["objects_copied"].as_u64().unwrap() > 50, "{report}");
    // A second run copies nothing.
    let again = cli(&["replicate", &url(p0), &dest, "--key", &key, "--json"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["objects_copied"], 0, "{again}");

    let s1_nginx = Nginx::start(&s1, &tmp.path().join("nginx1"));
    let p1 = s1_nginx.port;
    // The independent `cvmfs` crate accepts the replica too.
    let fetcher = cvmfs_crate::fetcher::Fetcher::new(
        &url(p1),
        tmp.path().join("crate-cache").to_str().unwrap(),
        true,
    )
    .unwrap();
    let crate_repo = cvmfs_crate::repository::Repository::new(fetcher).unwrap();
    assert_eq!(crate_repo.fqrn, FQRN);
    assert_eq!(crate_repo.get_revision_number().unwrap(), 2);
    let squid = Squid::start(&tmp.path().join("squid"), Upstream::Direct);
    let sp = squid.port;
    let proxy = format!("127.0.0.1:{sp}");
    let s0_before = std::fs::read_to_string(tmp.path().join("nginx0/access.log")).unwrap();
    let cache = tmp.path().join("cache");
    for (pin, export) in [
        (Pin::Tag("production".into()), &p.prod),
        (Pin::Tag("cernvm-system-3.1.0.0".into()), &p.prod),
        (Pin::Tag("development".into()), &p.dev),
        (Pin::Tag("cernvm-system-3.2.0.0".into()), &p.dev),
        (Pin::Head, &p.dev),
    ] {
        let repo = client::open(&config(vec![url(p1)], &proxy, pin.clone(), &cache)).unwrap();
        assert_same(&repo, export, &format!("{pin:?}"));
        let root = repo.getattr(ROOT_INO).unwrap();
        assert_eq!(
            repo.getxattr(root.ino, b"user.fqrn").unwrap(),
            FQRN.as_bytes()
        );
        assert_eq!(
            repo.getxattr(root.ino, b"user.root_hash").unwrap(),
            repo.root_hash().as_bytes()
        );
        assert_eq!(
            repo.getxattr(root.ino, b"user.revision").unwrap(),
            repo.revision().to_string().as_bytes()
        );
        match &pin {
            Pin::Tag(t) => assert_eq!(repo.getxattr(root.ino, b"user.tag").unwrap(), t.as_bytes()),
            _ => assert!(repo.getxattr(root.ino, b"user.tag").is_err()),
        }
        // The root hash pins the same tree without the manifest.
        if pin == Pin::Tag("production".into()) {
            let h = repo.root_hash().to_string();
            let direct = client::open(&config(
                vec![url(p1)],
                &proxy,
                Pin::RootHash(h.clone()),
                &tmp.path().join("cache-rh"),
            ))
            .unwrap();
            assert_eq!(direct.root_hash(), h);
            assert_same(&direct, &p.prod, "root hash");
        }
    }
    // Everything came through squid from the Stratum-1, nothing from the
    // Stratum-0.
    let squid_log = std::fs::read_to_string(tmp.path().join("squid/access.log")).unwrap();
    assert!(
        squid_log
            .lines()
            .filter(|l| l.contains(&format!("127.0.0.1:{p1}/{FQRN}/data/")))
            .count()
            > 50,
        "{squid_log}"
    );
    let s0_after = std::fs::read_to_string(tmp.path().join("nginx0/access.log")).unwrap();
    assert_eq!(s0_before, s0_after);

    // The commands, through the same proxy.
    let server = format!("http://127.0.0.1:{p1}/@fqrn@");
    let cache_s = tmp.path().join("cli-cache").display().to_string();
    let common = [
        "--server", &server, "--proxy", &proxy, "--key", &key, "--cache", &cache_s,
    ];
    let mut args = vec!["ls", FQRN, "/", "--json", "--tag", "production"];
    args.extend_from_slice(&common);
    let out = cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = list
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    names.retain(|n| n != ".cvmbuild");
    let mut local: Vec<String> = std::fs::read_dir(&p.prod)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    local.sort();
    assert_eq!(names, local);
    let file = walkdir::WalkDir::new(&p.prod)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap();
    let rel = format!("/{}", file.path().strip_prefix(&p.prod).unwrap().display());
    let mut args = vec!["cat", FQRN, &rel, "--tag", "production"];
    args.extend_from_slice(&common);
    let out = cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == std::fs::read(file.path()).unwrap(), "{rel}");
    let mut args = vec!["ls", FQRN, "/", "--tag", "nope"];
    args.extend_from_slice(&common);
    let out = cli(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("\"nope\"") && err.contains("production"),
        "{err}"
    );
}

/// A copy of the served repository to damage, as `<dir>/<FQRN>`.
fn copy_repo(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(published().served.join(FQRN))
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    dir.join(FQRN)
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is needed");
    c.stdin.take().unwrap().write_all(input).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// body + `--` + SHA-1 hex + signature, the signature made by `sign`.
fn signed(body: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    use sha1::Digest;
    let hash = hex::encode(sha1::Sha1::digest(body.as_bytes()));
    let mut out = format!("{body}--\n{hash}\n").into_bytes();
    out.extend(sign(hash.as_bytes()));
    out
}

/// A whitelist signed like upstream's (raw PKCS#1 v1.5, no DigestInfo).
fn whitelist(body: &str, master_key: &Path) -> Vec<u8> {
    let k = master_key.display().to_string();
    signed(body, |h| {
        openssl(
            &[
                "pkeyutl",
                "-sign",
                "-inkey",
                &k,
                "-pkeyopt",
                "rsa_padding_mode:pkcs1",
            ],
            h,
        )
    })
}

/// A manifest signed with the repository key (RSA-SHA1).
fn manifest(body: &str) -> Vec<u8> {
    let k = published()
        .served
        .parent()
        .unwrap()
        .join(format!("cvmfs-keys/{FQRN}.key"));
    let k = k.display().to_string();
    signed(body, |h| openssl(&["dgst", "-sha1", "-sign", &k], h))
}

fn body_of(file: &Path) -> String {
    let b = std::fs::read(file).unwrap();
    let i = b.windows(4).position(|w| w == b"\n--\n").unwrap();
    String::from_utf8(b[..=i].to_vec()).unwrap()
}

fn stamp(t: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y%m%d%H%M%S"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Files under the cache's object directory.
fn cached_objects(cache: &Path) -> Vec<String> {
    if !cache.join("data").exists() {
        return Vec::new();
    }
    walkdir::WalkDir::new(cache.join("data"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn damaged_or_wrong_repositories_are_refused_and_nothing_is_cached() {
    let p = published();
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    let keys = p.served.parent().unwrap().join("cvmfs-keys");
    let master = keys.join(format!("{FQRN}.masterkey"));
    let good_wl = body_of(&p.served.join(FQRN).join(".cvmfswhitelist"));
    let wl_lines: Vec<&str> = good_wl.lines().collect();
    let future = stamp(now() + 30 * 86400);
    let other_key = tmp.path().join("other.key");
    let st = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&other_key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());

    type Damage = Box<dyn Fn(&Path)>;
    type Pos = Box<dyn Fn(&[u8]) -> usize>;
    let flip = |file: &'static str, pos: Pos| -> Damage {
        Box::new(move |repo: &Path| {
            let f = repo.join(file);
            let mut b = std::fs::read(&f).unwrap();
            let i = pos(&b);
            b[i] ^= 0x01;
            std::fs::write(&f, b).unwrap();
        })
    };
    let wl = |body: String, key: PathBuf| -> Damage {
        Box::new(move |repo: &Path| {
            std::fs::write(repo.join(".cvmfswhitelist"), whitelist(&body, &key)).unwrap()
        })
    };
    let cases_list: Vec<(&str, Damage, &str)> = vec![
        (
            "manifest body",
            // The first hex digit of the root catalog hash.
            flip(".cvmfspublished", Box::new(|_| 1)),
            "hash line does not match",
        ),
        (
            "manifest signature",
            flip(".cvmfspublished", Box::new(|b| b.len() - 1)),
            "signature does not verify with the repository certificate",
        ),
        (
            "expired whitelist",
            wl(
                format!(
                    "{}\nE{}\nN{FQRN}\n{}\n",
                    stamp(now() - 86400),
                    stamp(now() - 7200),
                    wl_lines[3]
                ),
                master.clone(),
            ),
            "expired",
        ),
        (
            "certificate not listed",
            wl(
                format!(
                    "{}\nE{future}\nN{FQRN}\n{}\n",
                    wl_lines[0],
                    "AB:".repeat(19) + "AB"
                ),
                master.clone(),
            ),
            "does not list the repository certificate",
        ),
        (
            "another master key",
            wl(good_wl.clone(), other_key.clone()),
            "does not verify with any trusted master key",
        ),
    ];
    let srv_nginx = Nginx::start(&cases, &tmp.path().join("nginx"));
    let port = srv_nginx.port;
    for (i, (name, damage, expect)) in cases_list.iter().enumerate() {
        let dir = cases.join(format!("c{i}"));
        damage(&copy_repo(&dir));
        let cache = tmp.path().join(format!("cache{i}"));
        let server = format!("http://127.0.0.1:{port}/c{i}/{FQRN}");
        let err = client::open(&config(vec![server.clone()], "DIRECT", Pin::Head, &cache))
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"))
            .to_string();
        assert!(err.contains(expect), "{name}: {err}");
        assert!(
            err.contains(&server),
            "{name}: the message names the URL: {err}"
        );
        assert!(
            cached_objects(&cache).is_empty(),
            "{name}: {:?}",
            cached_objects(&cache)
        );
        assert_eq!(
            std::fs::read_dir(cache.join("manifests")).unwrap().count(),
            0,
            "{name}"
        );
    }

    // Wrong repository name: the manifest is for another one.
    let good = format!("http://127.0.0.1:{port}/good/{FQRN}");
    copy_repo(&cases.join("good"));
    let cache = tmp.path().join("cache-name");
    let mut cfg = config(vec![good.clone()], "DIRECT", Pin::Head, &cache);
    cfg.fqrn = "cernvm-devel.cern.ch".into();
    let err = client::open(&cfg).err().unwrap().to_string();
    assert!(err.contains("not \"cernvm-devel.cern.ch\""), "{err}");
    assert!(cached_objects(&cache).is_empty());

    // Unknown tag: named, with the tags listed (in the diagnostic's help).
    let cache = tmp.path().join("cache-tag");
    let err = client::open(&config(
        vec![good.clone()],
        "DIRECT",
        Pin::Tag("cernvm-9".into()),
        &cache,
    ))
    .err()
    .unwrap();
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(err.to_string().contains("\"cernvm-9\""), "{err}");
    assert!(
        help.contains("production") && help.contains("cernvm-system-3.1.0.0"),
        "{help}"
    );
    assert!(
        cached_objects(&cache).is_empty(),
        "{:?}",
        cached_objects(&cache)
    );

    // A validly signed manifest older than the cached one.
    let cache = tmp.path().join("cache-old");
    client::open(&config(vec![good.clone()], "DIRECT", Pin::Head, &cache)).unwrap();
    let cached_manifest = std::fs::read(cache.join("manifests").join(FQRN)).unwrap();
    let objects_before = cached_objects(&cache);
    let old = copy_repo(&cases.join("old"));
    let body = body_of(&old.join(".cvmfspublished"));
    let t: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix('T'))
        .unwrap()
        .parse()
        .unwrap();
    let older = body.replace(&format!("T{t}\n"), &format!("T{}\n", t - 1000));
    std::fs::write(old.join(".cvmfspublished"), manifest(&older)).unwrap();
    let server = format!("http://127.0.0.1:{port}/old/{FQRN}");
    // The re-signed manifest itself is valid (a fresh cache accepts it).
    client::open(&config(
        vec![server.clone()],
        "DIRECT",
        Pin::Head,
        &tmp.path().join("fresh"),
    ))
    .unwrap();
    let err = client::open(&config(vec![server], "DIRECT", Pin::Head, &cache))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("older than the one already cached"), "{err}");
    assert_eq!(
        std::fs::read(cache.join("manifests").join(FQRN)).unwrap(),
        cached_manifest
    );
    assert_eq!(cached_objects(&cache), objects_before);

    // Data objects altered on the server: reads fail with the reason,
    // nothing altered reaches the cache.
    let altered = copy_repo(&cases.join("altered"));
    for e in walkdir::WalkDir::new(altered.join("data")) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if e.file_type().is_file()
            && name.len() == 38
            && e.path().parent().unwrap() != altered.join("data/txn")
        {
            let mut b = std::fs::read(e.path()).unwrap();
            let last = b.len() - 1;
            b[last] ^= 0x40;
            std::fs::write(e.path(), b).unwrap();
        }
    }
    let cache = tmp.path().join("cache-altered");
    let server = format!("http://127.0.0.1:{port}/altered/{FQRN}");
    let repo = client::open(&config(vec![server], "DIRECT", Pin::Head, &cache)).unwrap();
    let bin = repo.resolve_path("/usr/bin").unwrap();
    let (_, f) = repo
        .readdir(bin.ino)
        .unwrap()
        .into_iter()
        .find(|(_, a)| a.kind == Kind::File && a.size > 0)
        .unwrap();
    let err = repo.read(f.ino, 0, 4096).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(err.to_string().contains("hash to"), "{err}");
    assert!(
        cached_objects(&cache)
            .iter()
            .all(|o| o.ends_with('C') || o.ends_with('X') || o.ends_with('H')),
        "{:?}",
        cached_objects(&cache)
    );
}

/// A tiny forward proxy: forwards each request to its origin and, in
/// corrupting mode, flips a byte of every `/data/` body it returns (only
/// for requests without `Cache-Control: no-cache` when `heal_on_no_cache`).
struct TestProxy {
    port: u16,
    requests: Arc<AtomicUsize>,
    no_cache: Arc<AtomicUsize>,
}

fn test_proxy(corrupt: bool, heal_on_no_cache: bool, delay: Option<Duration>) -> TestProxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let no_cache = Arc::new(AtomicUsize::new(0));
    let (r, n) = (requests.clone(), no_cache.clone());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let (r, n) = (r.clone(), n.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                r.fetch_add(1, Ordering::SeqCst);
                let fresh = text
                    .to_ascii_lowercase()
                    .contains("cache-control: no-cache");
                if fresh {
                    n.fetch_add(1, Ordering::SeqCst);
                }
                let target = text.split_whitespace().nth(1).unwrap().to_string();
                let rest = target.strip_prefix("http://").unwrap();
                let (host, path) = rest.split_at(rest.find('/').unwrap());
                let Ok(mut up) = TcpStream::connect(host) else {
                    return;
                };
                let req = text.replacen(&target, path, 1);
                up.write_all(req.as_bytes()).unwrap();
                let mut resp = Vec::new();
                up.read_to_end(&mut resp).unwrap();
                let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                if corrupt
                    && path.contains("/data/")
                    && !(heal_on_no_cache && fresh)
                    && resp.len() > body_at
                {
                    let last = resp.len() - 1;
                    resp[last] ^= 0x55;
                }
                match delay {
                    Some(d) => {
                        for piece in resp.chunks(64 << 10) {
                            if c.write_all(piece).is_err() {
                                return;
                            }
                            std::thread::sleep(d);
                        }
                    }
                    None => {
                        let _ = c.write_all(&resp);
                    }
                }
            });
        }
    });
    TestProxy {
        port,
        requests,
        no_cache,
    }
}

/// A server answering every request with `status`; or, for `0`,
/// accepting and never answering.
fn status_server(status: u16) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            if status == 0 {
                held.push(c);
                continue;
            }
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 {status} Nope\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
            );
        }
    });
    port
}

fn read_everything(repo: &client::Repository) -> usize {
    let (tree, _) = remote_tree(repo);
    tree.values().filter(|s| s.bytes.is_some()).count()
}

#[test]
fn fail_over_between_proxies_and_servers_and_refetch_corrupted_bytes() {
    let p = published();
    let tmp = tempfile::tempdir().unwrap();
    let srv_nginx = Nginx::start(&p.served, &tmp.path().join("nginx"));
    let port = srv_nginx.port;
    let dead = free_port();
    let good = test_proxy(false, false, None);

    // First proxy dead, second used.
    let proxies = format!("127.0.0.1:{dead};127.0.0.1:{}", good.port);
    let repo = client::open(&config(
        vec![url(port)],
        &proxies,
        Pin::Tag("production".into()),
        &tmp.path().join("c1"),
    ))
    .unwrap();
    assert_same(&repo, &p.prod, "second proxy");
    assert!(good.requests.load(Ordering::SeqCst) > 50);

    // Servers answering 500, 404 and refusing come first; nginx is used.
    let servers = [
        format!("http://127.0.0.1:{}/{FQRN}", status_server(500)),
        format!("http://127.0.0.1:{}/{FQRN}", status_server(404)),
        format!("http://127.0.0.1:{dead}/{FQRN}"),
        url(port),
    ];
    let repo = client::open(&config(
        servers.to_vec(),
        "DIRECT",
        Pin::Tag("development".into()),
        &tmp.path().join("c2"),
    ))
    .unwrap();
    assert_same(&repo, &p.dev, "fourth server");

    // A proxy corrupting bytes unless asked for a fresh copy: every object
    // is fetched again (no-cache) and accepted once it verifies.
    let healing = test_proxy(true, true, None);
    let proxies = format!("127.0.0.1:{}", healing.port);
    let repo = client::open(&config(
        vec![url(port)],
        &proxies,
        Pin::Tag("production".into()),
        &tmp.path().join("c3"),
    ))
    .unwrap();
    assert_same(&repo, &p.prod, "healing proxy");
    assert!(
        healing.no_cache.load(Ordering::SeqCst) > 50,
        "{}",
        healing.no_cache.load(Ordering::SeqCst)
    );

    // A proxy that always corrupts: refused with the reason, nothing cached.
    let evil = test_proxy(true, false, None);
    let cache = tmp.path().join("c4");
    let err = client::open(&config(
        vec![url(port)],
        &format!("127.0.0.1:{}", evil.port),
        Pin::Head,
        &cache,
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("hash to") && err.contains(&format!("proxy 127.0.0.1:{}", evil.port)),
        "{err}"
    );
    assert!(cached_objects(&cache).is_empty());

    // Unreachable, hanging and non-CernVM-FS servers: clear errors, in time.
    let hang = status_server(0);
    let t = std::time::Instant::now();
    let err = client::open(&config(
        vec![
            format!("http://127.0.0.1:{hang}/{FQRN}"),
            format!("http://127.0.0.1:{dead}/{FQRN}"),
        ],
        "DIRECT",
        Pin::Head,
        &tmp.path().join("c5"),
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(
        err.contains("no answer within") && err.contains(&format!("127.0.0.1:{dead}")),
        "{err}"
    );
    let web = tmp.path().join("web");
    std::fs::create_dir_all(web.join(FQRN)).unwrap();
    std::fs::write(
        web.join(FQRN).join(".cvmfspublished"),
        "<html>hello</html>\n",
    )
    .unwrap();
    let web_nginx = Nginx::start(&web, &tmp.path().join("nginx-web"));
    let wport = web_nginx.port;
    let err = client::open(&config(
        vec![url(wport)],
        "DIRECT",
        Pin::Head,
        &tmp.path().join("c6"),
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("not a signed CernVM-FS file"), "{err}");
    let mut cfg = config(vec![url(port)], "DIRECT", Pin::Head, &tmp.path().join("c7"));
    cfg.keys = vec![web.join(FQRN).join(".cvmfspublished")];
    let err = client::open(&cfg).err().unwrap().to_string();
    assert!(err.contains("not an RSA public key"), "{err}");
}

#[test]
fn lazy_loading_and_a_second_open_fetches_no_object() {
    let p = published();
    let tmp = tempfile::tempdir().unwrap();
    let srv_nginx = Nginx::start(&p.served, &tmp.path().join("nginx"));
    let port = srv_nginx.port;
    let log = tmp.path().join("nginx/access.log");
    let cache = tmp.path().join("cache");
    let cfg = config(
        vec![url(port)],
        "DIRECT",
        Pin::Tag("production".into()),
        &cache,
    );
    // Lazy: the open fetches the root catalog only; a stat of a nested
    // catalog's mountpoint nothing; its listing that catalog; data only
    // when read.
    // nginx logs a request once it has sent the answer, which may be just
    // after the client has it: wait (up to 5 s) for at least `want`, then
    // a little longer for any request too many.
    let gets = |what: &str, want: usize| {
        let count = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(what))
                .count()
        };
        for _ in 0..50 {
            if count() >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(100));
        count()
    };
    let repo = client::open(&cfg).unwrap();
    assert_eq!(gets("C HTTP/1.1", 1), 1);
    let usr = repo.resolve_path("/usr").unwrap();
    assert_eq!(gets("C HTTP/1.1", 1), 1);
    repo.readdir(usr.ino).unwrap();
    assert_eq!(gets("C HTTP/1.1", 2), 2);
    let data_before = gets("/data/", 0);
    let etc = repo.resolve_path("/etc").unwrap();
    repo.readdir(etc.ino).unwrap();
    assert_eq!(
        gets("/data/", data_before),
        data_before,
        "listing fetched objects"
    );
    let files = read_everything(&repo);
    assert!(files > 20);
    let manifests = gets(".cvmfspublished", 1);
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    let repo = client::open(&cfg).unwrap();
    assert_same(&repo, &p.prod, "second open");
    gets(".cvmfspublished", manifests + 1);
    let log_text = std::fs::read_to_string(&log).unwrap();
    let second: Vec<&str> = log_text.lines().skip(before).collect();
    assert!(second.iter().all(|l| !l.contains("/data/")), "{second:#?}");
    assert!(second.iter().any(|l| l.contains(".cvmfspublished")));
}

/// Pseudo-random bytes (xorshift): incompressible, so chunk cuts occur.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// A `security.capability` value (v2, cap_net_bind_service).
const CAP: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The content of file `i` of release `seed` (distinct for all).
fn small(seed: u64, i: u64) -> Vec<u8> {
    noise(20_000, seed * 2000 + 2 * i + 1)
}

/// A tree larger than the example: a 40 MB file (chunked), 150 files of
/// 20 kB under a nested catalog, published with the library.
fn publish_big(store: &MemStore, repo: &Path, keys: &Path, version: &str, seed: u64) {
    let file = |name: &str, bytes: &[u8]| {
        let b = store.put_blob(&mut &bytes[..]).unwrap();
        Entry::root_owned(
            name,
            Node::File {
                size: b.size,
                blob: Some(b.hash),
            },
            0o644,
        )
    };
    let dir = |name: &str, entries: Vec<Entry>| {
        let t = store.put_tree(&Tree::new(entries).unwrap()).unwrap();
        Entry::root_owned(name, Node::Directory { tree: t }, 0o755)
    };
    let many: Vec<Entry> = (0..150)
        .map(|i| file(&format!("f{i:03}"), &small(seed, i)))
        .collect();
    let root = store
        .put_tree(
            &Tree::new(vec![
                Entry {
                    xattrs: BTreeMap::from([
                        ("security.capability".to_string(), CAP.to_vec()),
                        ("user.comment".to_string(), b"big".to_vec()),
                    ]),
                    ..file("big.img", &noise(40 << 20, 7))
                },
                dir("usr", vec![dir("share", many)]),
            ])
            .unwrap(),
        )
        .unwrap();
    let req = cvmfs::Request {
        fqrn: "big.cern.ch".into(),
        nested: vec!["/usr".into()],
        tag: format!("big-{version}"),
        branch: "production".into(),
        epoch: 1_400_000_000,
        extra: vec![],
    };
    let opts = cvmfs::Options {
        repo_dir: repo.to_path_buf(),
        keys_dir: keys.to_path_buf(),
        now: now(),
        whitelist_days: 30,
    };
    cvmfs::publish(store, &root, &req, &opts).unwrap();
}

#[test]
fn big_tree_chunks_quota_kill_and_incremental_replication() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MemStore::new();
    let served = tmp.path().join("srv");
    let keys = tmp.path().join("keys");
    publish_big(&store, &served.join("big.cern.ch"), &keys, "1.0", 1);
    let export = tmp.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    std::fs::write(export.join("big.img"), noise(40 << 20, 7)).unwrap();
    let srv_nginx = Nginx::start(&served, &tmp.path().join("nginx"));
    let port = srv_nginx.port;
    let big_url = format!("http://127.0.0.1:{port}/big.cern.ch");
    let cfg = |cache: &Path, quota: Option<u64>| Config {
        fqrn: "big.cern.ch".into(),
        keys: vec![keys.join("big.cern.ch.pub")],
        quota,
        ..config(
            vec![big_url.clone()],
            "DIRECT",
            Pin::Tag("production".into()),
            cache,
        )
    };

    // Chunked reads: pieces across chunk boundaries, and the whole file.
    let repo = client::open(&cfg(&tmp.path().join("c1"), None)).unwrap();
    let img = repo.resolve_path("/big.img").unwrap();
    let want = noise(40 << 20, 7);
    assert_eq!(img.size, want.len() as u64);
    for off in [0u64, 4 << 20, (4 << 20) + 12345, 20 << 20, (40 << 20) - 100] {
        let got = repo.read(img.ino, off, 1 << 20).unwrap();
        let end = (off as usize + (1 << 20)).min(want.len());
        assert!(got == want[off as usize..end], "read at {off}");
    }
    let mut all = Vec::new();
    repo.copy_to(img.ino, &mut all).unwrap();
    assert!(all == want);
    // The catalog's extended attributes, then the informational ones.
    let names = repo.listxattr(img.ino).unwrap();
    assert_eq!(
        names[..2],
        [b"security.capability".to_vec(), b"user.comment".to_vec()]
    );
    assert!(names.contains(&b"user.root_hash".to_vec()));
    assert_eq!(repo.getxattr(img.ino, b"security.capability").unwrap(), CAP);
    assert_eq!(repo.getxattr(img.ino, b"user.tag").unwrap(), b"production");
    assert_eq!(
        repo.getxattr(img.ino, b"trusted.nope").unwrap_err().errno(),
        libc::ENODATA
    );
    let log = std::fs::read_to_string(tmp.path().join("nginx/access.log")).unwrap();
    let chunks = log
        .lines()
        .filter(|l| l.contains("P HTTP/1.1\" 200"))
        .count();
    assert!(
        chunks >= 3,
        "chunked file read chunk by chunk: {chunks} chunk requests"
    );

    // Four readers at once on a cold cache: right bytes, each chunk
    // downloaded once.
    let repo = client::open(&cfg(&tmp.path().join("c-par"), None)).unwrap();
    let img = repo.resolve_path("/big.img").unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut all = Vec::new();
                repo.copy_to(img.ino, &mut all).unwrap();
                assert!(all == want);
            });
        }
    });
    let log = std::fs::read_to_string(tmp.path().join("nginx/access.log")).unwrap();
    let again = log
        .lines()
        .filter(|l| l.contains("P HTTP/1.1\" 200"))
        .count();
    assert_eq!(
        again,
        2 * chunks,
        "concurrent readers fetched a chunk twice"
    );

    // The quota holds under a tree larger than it: 6 MB for 43 MB.
    let quota = 6u64 << 20;
    let cq = tmp.path().join("cq");
    let repo = client::open(&cfg(&cq, Some(quota))).unwrap();
    let share = repo.resolve_path("/usr/share").unwrap();
    for (name, a) in repo.readdir(share.ino).unwrap() {
        let mut v = Vec::new();
        repo.copy_to(a.ino, &mut v).unwrap();
        let i: u64 = String::from_utf8(name).unwrap()[1..].parse().unwrap();
        assert!(v == small(1, i));
    }
    let img = repo.resolve_path("/big.img").unwrap();
    let mut all = Vec::new();
    repo.copy_to(img.ino, &mut all).unwrap();
    assert!(all == want);
    let used: u64 = cached_objects(&cq)
        .iter()
        .map(|o| std::fs::metadata(o).unwrap().len())
        .sum();
    // At most the quota plus the one chunk being read (16 MB at most).
    assert!(
        used <= quota + (16 << 20),
        "{used} bytes cached, quota {quota}"
    );
    assert!(
        cached_objects(&cq).iter().any(|o| o.ends_with('C')),
        "catalogs stay pinned"
    );

    // kill -9 in the middle of slow downloads: nothing partial is served.
    let slow = test_proxy(false, false, Some(Duration::from_millis(5)));
    let ck = tmp.path().join("ck");
    let key = keys.join("big.cern.ch.pub").display().to_string();
    let server = format!("http://127.0.0.1:{port}/@fqrn@");
    let proxy = format!("127.0.0.1:{}", slow.port);
    let mut child = super::support::cvmbuild(tmp.path())
        .args([
            "cat",
            "big.cern.ch",
            "/big.img",
            "--server",
            &server,
            "--proxy",
            &proxy,
        ])
        .args(["--key", &key, "--cache", ck.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Past the manifest and catalog, in the middle of the chunks.
    for _ in 0..1000 {
        if slow.requests.load(Ordering::SeqCst) >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed before the end");
    let repo = client::open(&cfg(&ck, None)).unwrap();
    let img = repo.resolve_path("/big.img").unwrap();
    let mut all = Vec::new();
    repo.copy_to(img.ino, &mut all).unwrap();
    assert!(all == want, "partial objects served after kill -9");
    assert_eq!(std::fs::read_dir(ck.join("txn")).unwrap().count(), 0);

    // Replicate, publish a new release, replicate again: only new objects.
    let s1 = tmp.path().join("s1/big.cern.ch");
    let rep = |what: &str| -> serde_json::Value {
        let out = super::support::cvmbuild(tmp.path())
            .args([
                "replicate",
                &big_url,
                s1.to_str().unwrap(),
                "--key",
                &key,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = rep("first");
    assert!(first["objects_copied"].as_u64().unwrap() > 150, "{first}");
    publish_big(&store, &served.join("big.cern.ch"), &keys, "1.1", 2);
    let second = rep("second");
    // 150 changed files, their catalog, the root catalog, the history.
    let copied = second["objects_copied"].as_u64().unwrap();
    assert!((150..=156).contains(&copied), "{second}");
    let s1srv_nginx = Nginx::start(&tmp.path().join("s1"), &tmp.path().join("nginx1"));
    let p1 = s1srv_nginx.port;
    for (tag, seed) in [("big-1.0", 1), ("big-1.1", 2)] {
        let repo = client::open(&Config {
            servers: vec![format!("http://127.0.0.1:{p1}/big.cern.ch")],
            pin: Pin::Tag(tag.into()),
            ..cfg(&tmp.path().join("c-s1"), None)
        })
        .unwrap();
        let a = repo.resolve_path("/usr/share/f007").unwrap();
        let mut v = Vec::new();
        repo.copy_to(a.ino, &mut v).unwrap();
        assert!(v == small(seed, 7), "{tag}");
    }
    // Only the source is master: a replica of the replica is refused.
    let out = super::support::cvmbuild(tmp.path())
        .args([
            "replicate",
            &format!("http://127.0.0.1:{p1}/big.cern.ch"),
            tmp.path().join("s2").to_str().unwrap(),
            "--key",
            &key,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(".cvmfs_master_replica"),
        "{err}"
    );
}

/// Stores `plain` as a zlib object of `repo` with `suffix`; returns its hash.
fn put_object(repo: &Path, plain: &[u8], suffix: &str) -> String {
    use sha1::Digest;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(plain).unwrap();
    let stored = z.finish().unwrap();
    let h = hex::encode(sha1::Sha1::digest(&stored));
    std::fs::write(
        repo.join(format!("data/{}/{}{suffix}", &h[..2], &h[2..])),
        stored,
    )
    .unwrap();
    h
}

/// The inflated object `hash` of `repo`.
fn get_object(repo: &Path, hash: &str, suffix: &str) -> Vec<u8> {
    let b =
        std::fs::read(repo.join(format!("data/{}/{}{suffix}", &hash[..2], &hash[2..]))).unwrap();
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(&b[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Re-signs the manifest of `repo` with `letter` lines replaced.
fn resign(repo: &Path, set: &[(char, String)]) {
    let body = body_of(&repo.join(".cvmfspublished"));
    let mut lines: Vec<String> = body.lines().map(str::to_string).collect();
    for (k, v) in set {
        for l in &mut lines {
            if l.starts_with(*k) {
                *l = format!("{k}{v}");
            }
        }
    }
    let body = lines.join("\n") + "\n";
    std::fs::write(repo.join(".cvmfspublished"), manifest(&body)).unwrap();
}

fn manifest_field(repo: &Path, k: char) -> String {
    body_of(&repo.join(".cvmfspublished"))
        .lines()
        .find_map(|l| l.strip_prefix(k).map(str::to_string))
        .unwrap()
}

#[test]
fn garbage_catalogs_and_histories_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    let srv_nginx = Nginx::start(&cases, &tmp.path().join("nginx"));
    let port = srv_nginx.port;
    let open = |case: &str, pin: Pin| {
        let cache = tmp.path().join(format!("cache-{case}"));
        let server = format!("http://127.0.0.1:{port}/{case}/{FQRN}");
        (
            client::open(&config(vec![server], "DIRECT", pin, &cache)),
            cache,
        )
    };

    // A root catalog in which /etc is its own child: a path cycle.
    let repo = copy_repo(&cases.join("cycle"));
    let root = manifest_field(&repo, 'C');
    let db = tmp.path().join("cycle.db");
    std::fs::write(&db, get_object(&repo, &root, "C")).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    let (a, b) = cvmfs::md5path("/etc");
    let n = c
        .execute(
            "UPDATE catalog SET parent_1 = ?1, parent_2 = ?2 WHERE md5path_1 = ?1 AND md5path_2 = ?2",
            rusqlite::params![a, b],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(c);
    let bytes = std::fs::read(&db).unwrap();
    let h = put_object(&repo, &bytes, "C");
    resign(&repo, &[('C', h), ('B', bytes.len().to_string())]);
    let (r, _) = open("cycle", Pin::Head);
    let repo_c = r.unwrap();
    let etc = repo_c.resolve_path("/etc").unwrap();
    let err = repo_c.readdir(etc.ino).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(err.to_string().contains("path cycle"), "{err}");

    // A catalog larger than the manifest says (padded with 10 MB).
    let repo = copy_repo(&cases.join("big"));
    let root = manifest_field(&repo, 'C');
    let size: usize = manifest_field(&repo, 'B').parse().unwrap();
    let mut bytes = get_object(&repo, &root, "C");
    bytes.resize(bytes.len() + (10 << 20), 0);
    let h = put_object(&repo, &bytes, "C");
    resign(&repo, &[('C', h)]);
    let (r, cache) = open("big", Pin::Head);
    let err = r.err().unwrap().to_string();
    assert!(
        err.contains(&format!("more than the {size} bytes allowed")),
        "{err}"
    );
    assert!(!cached_objects(&cache).iter().any(|o| o.ends_with('C')));

    // Garbage where a catalog should be.
    let repo = copy_repo(&cases.join("garbage"));
    let junk = noise(5000, 3);
    let h = put_object(&repo, &junk, "C");
    resign(&repo, &[('C', h), ('B', junk.len().to_string())]);
    let (r, _) = open("garbage", Pin::Head);
    let err = r.err().unwrap().to_string();
    assert!(err.contains("not a CernVM-FS catalog"), "{err}");

    // Not zlib at all, under a correct name.
    let repo = copy_repo(&cases.join("notzlib"));
    let raw = noise(3000, 5);
    let h = {
        use sha1::Digest;
        hex::encode(sha1::Sha1::digest(&raw))
    };
    std::fs::write(repo.join(format!("data/{}/{}C", &h[..2], &h[2..])), &raw).unwrap();
    resign(&repo, &[('C', h)]);
    let (r, _) = open("notzlib", Pin::Head);
    let err = r.err().unwrap().to_string();
    assert!(err.contains("not a valid zlib stream"), "{err}");

    // A garbage history, and a truncated one.
    let repo = copy_repo(&cases.join("history"));
    let h = put_object(&repo, b"SQLite format 3\0 but not really", "H");
    resign(&repo, &[('H', h)]);
    let (r, cache) = open("history", Pin::Tag("production".into()));
    let err = r.err().unwrap().to_string();
    assert!(err.contains("not a CernVM-FS history database"), "{err}");
    assert!(cached_objects(&cache).iter().all(|o| !o.ends_with('H')));
    let repo = copy_repo(&cases.join("truncated"));
    let h = manifest_field(&repo, 'H');
    let f = repo.join(format!("data/{}/{}H", &h[..2], &h[2..]));
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() / 2]).unwrap();
    let (r, _) = open("truncated", Pin::Tag("production".into()));
    let err = r.err().unwrap().to_string();
    assert!(
        err.contains("hash to") && err.contains(&format!("{}H", &h[2..])),
        "{err}"
    );

    // A truncated manifest.
    let repo = copy_repo(&cases.join("short"));
    let m = std::fs::read(repo.join(".cvmfspublished")).unwrap();
    std::fs::write(repo.join(".cvmfspublished"), &m[..m.len() - 40]).unwrap();
    let (r, _) = open("short", Pin::Head);
    let err = r.err().unwrap().to_string();
    assert!(err.contains("signature"), "{err}");

    // By date: now is the newest trunk snapshot; before the first, none.
    copy_repo(&cases.join("dates"));
    let (r, _) = open("dates", Pin::Date(now()));
    let head = r.unwrap();
    let (r, _) = open("dates", Pin::Head);
    assert_eq!(head.root_hash(), r.unwrap().root_hash());
    let (r, _) = open("dates", Pin::Date(1));
    let err = r.err().unwrap().to_string();
    assert!(
        err.contains("no snapshot was published at or before"),
        "{err}"
    );
}

/// `diff` of two tags read over HTTP with the client (`cvmfs:URL@TAG`)
/// says what the same diff of the Stratum-0 directory says, and refuses
/// a repository it cannot trust.
#[test]
fn diff_reads_tags_of_a_repository_by_url() {
    let p = published();
    let tmp = tempfile::tempdir().unwrap();
    let srv_nginx = Nginx::start(&p.served, &tmp.path().join("nginx"));
    let port = srv_nginx.port;
    // A fresh sandbox: no store has recorded these releases, so both
    // ways read the published meta RPMs.
    let diff = |args: &[String]| {
        super::support::cvmbuild(tmp.path())
            .arg("diff")
            .args(args)
            .output()
            .unwrap()
    };
    let dir = p.served.join(FQRN);
    let local = |tag: &str| format!("cvmfs:{}@{tag}", dir.display());
    let remote = |tag: &str| format!("cvmfs:{}@{tag}", url(port));
    let (old, new) = ("cernvm-system-3.1.0.0", "cernvm-system-3.2.0.0");
    let key = p.key.display().to_string();
    let cache = tmp.path().join("cache").display().to_string();
    let json = |out: &std::process::Output| -> serde_json::Value {
        assert_eq!(
            out.status.code(),
            Some(1),
            "different releases: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let by_dir = json(&diff(&[local(old), local(new), "--json".into()]));
    let by_url = json(&diff(&[
        remote(old),
        remote(new),
        "--json".into(),
        "--key".into(),
        key.clone(),
        "--cache".into(),
        cache.clone(),
    ]));
    assert_eq!(by_url["a"]["kind"], "tag");
    assert_eq!(by_url["a"]["branch"], "production", "{by_url}");
    assert_eq!(by_url["b"]["branch"], "development", "{by_url}");
    assert_eq!(by_url["closure"], by_dir["closure"]);
    let changes = by_url["closure"]["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "{by_url}");
    // The client's cache now holds verified objects.
    assert!(!cached_objects(Path::new(&cache)).is_empty());

    let err = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(2), "trouble is exit 2");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let no_key = err(diff(&[remote(old), local(new)]));
    assert!(
        no_key.contains("diff::key") && no_key.contains("--key"),
        "{no_key}"
    );
    let unknown = err(diff(&[
        remote("no-such-tag"),
        local(new),
        "--key".into(),
        key.clone(),
        "--cache".into(),
        cache.clone(),
    ]));
    assert!(
        unknown.contains("no-such-tag") && unknown.contains(old),
        "names the tag and lists the tags: {unknown}"
    );
    // Another master key: the whitelist does not verify.
    let other = tmp.path().join("other.pub");
    let private = openssl(&["genrsa", "2048"], b"");
    std::fs::write(&other, openssl(&["rsa", "-pubout"], &private)).unwrap();
    let untrusted = err(diff(&[
        remote(old),
        local(new),
        "--key".into(),
        other.display().to_string(),
        "--cache".into(),
        tmp.path().join("cache2").display().to_string(),
    ]));
    assert!(
        untrusted.contains("client::untrusted") && untrusted.contains(&url(port)),
        "{untrusted}"
    );
}

/// `os-update check|apply` on a pin as the boot loader writes it: the
/// check resolves the pin's tag through the whole trust chain and says
/// whether it moved (exit 100, the motd line), apply releases the pin.
#[test]
fn os_update_checks_the_pinned_tag_and_releases_the_pin() {
    let p = published();
    let tmp = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(&p.served, &tmp.path().join("nginx"));
    let cache = tmp.path().join("cache");
    let hash = |tag: &str| {
        let cfg = config(
            vec![url(nginx.port)],
            "DIRECT",
            Pin::Tag(tag.into()),
            &cache,
        );
        client::resolve(&cfg).unwrap().root_hash
    };
    let (prod, dev) = (hash("production"), hash("development"));
    assert_ne!(prod, dev);
    let aux = tmp.path().join("aux");
    std::fs::create_dir(&aux).unwrap();
    let snap = aux.join("cvmfs_snapshot");
    let motd = tmp.path().join("motd");
    std::fs::write(&motd, "Welcome to CernVM\n").unwrap();
    let (server, key) = (url(nginx.port), p.key.display().to_string());
    let check = |extra: &[&str]| {
        let mut args = vec!["os-update", "check", FQRN, "--snapshot"];
        let s = snap.display().to_string();
        let m = motd.display().to_string();
        let c = cache.display().to_string();
        args.extend([s.as_str(), "--motd", &m, "--server", &server, "--key", &key]);
        args.extend(["--cache", c.as_str()]);
        args.extend(extra);
        cli(&args)
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    // Pinned on production's release: up to date, the motd untouched.
    std::fs::write(&snap, format!("{prod}\nproduction")).unwrap();
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("up to date"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "Welcome to CernVM\n"
    );

    // The same root pinned under development's tag: that tag has moved on
    // (as production does after a promote). Exit 100, the new root and
    // its release tag named, one line added to the motd.
    std::fs::write(&snap, format!("{prod}\ndevelopment")).unwrap();
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(100), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.starts_with("update available: ") && said.contains(&dev) && said.contains(&prod),
        "{said}"
    );
    assert!(
        said.contains("cernvm-system-3.2.0.0"),
        "names the release: {said}"
    );
    let m = std::fs::read_to_string(&motd).unwrap();
    assert!(
        m.starts_with("Welcome to CernVM\nCernVM update: ") && m.lines().count() == 2,
        "{m}"
    );
    let out = check(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["update"].as_bool(),
            v["current"].as_str(),
            v["pinned"].as_str()
        ),
        (Some(true), Some(dev.as_str()), Some(prod.as_str()))
    );
    // Still one update line, not two.
    assert_eq!(std::fs::read_to_string(&motd).unwrap().lines().count(), 2);

    // Once on the new release, the check clears its motd line.
    std::fs::write(&snap, format!("{dev}\ndevelopment")).unwrap();
    assert_eq!(check(&[]).status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "Welcome to CernVM\n"
    );

    // Apply releases the pin, keeping it for the next boot's rebase.
    let s = snap.display().to_string();
    let apply = || cli(&["os-update", "apply", "--snapshot", &s]);
    std::fs::write(&snap, format!("{prod}\ndevelopment")).unwrap();
    let out = apply();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!snap.exists());
    assert_eq!(
        std::fs::read_to_string(aux.join("cvmfs_snapshot.previous")).unwrap(),
        format!("{prod}\ndevelopment")
    );
    let again = apply();
    assert!(again.status.success() && text(&again).contains("already applied"));

    // Not a pin, an unknown tag: clear errors, exit 1.
    std::fs::write(&snap, "banana\nproduction").unwrap();
    let out = check(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("os_update::pin") && err.contains("banana"),
        "{err}"
    );
    std::fs::write(&snap, format!("{prod}\nno-such-branch")).unwrap();
    let out = check(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-branch") && err.contains("production"),
        "{err}"
    );
}

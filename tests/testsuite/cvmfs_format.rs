//! The ten acceptance checks of `../shared/cvmfs-format.md` against a
//! published repository, using the real tools where they exist (`openssl`
//! for both signatures, `sqlite3` for the catalog schema), plus
//! determinism, incremental publish and bad input.

use cvmbuild::cvmfs::{self, Options, Request};
use cvmbuild::store::{Entry, Flags, Hash, MemStore, Node, Store, Tree};
use md5::{Digest as _, Md5};
use rusqlite::Connection;
use sha1::Sha1;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const FQRN: &str = "test.cern.ch";
const EPOCH: u64 = 1_400_000_000;
const NOW: u64 = 1_700_000_000;

fn entry(name: &str, node: Node, mode: u16) -> Entry {
    Entry::root_owned(name, node, mode)
}

fn file(s: &MemStore, name: &str, bytes: &[u8], mode: u16) -> Entry {
    let b = s.put_blob(&mut &bytes[..]).unwrap();
    entry(
        name,
        Node::File {
            size: b.size,
            blob: Some(b.hash),
        },
        mode,
    )
}

fn dir(s: &MemStore, name: &str, entries: Vec<Entry>) -> Entry {
    let t = s.put_tree(&Tree::new(entries).unwrap()).unwrap();
    entry(name, Node::Directory { tree: t }, 0o755)
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

/// A small OS-like tree; `bash` is the content of the one "package" that
/// changes between releases.
fn os_tree(s: &MemStore, bash: &[u8]) -> Hash {
    let mut owned = file(s, "httpd.conf", b"Listen 80\n", 0o640);
    owned.owner = "bin".into();
    owned.group = "apache".into();
    let ghost = Entry {
        flags: Flags {
            config: false,
            ghost: true,
            hardlink: false,
        },
        ..entry(
            "ghost.log",
            Node::File {
                size: 10,
                blob: None,
            },
            0o644,
        )
    };
    let root = vec![
        dir(
            s,
            "etc",
            vec![
                file(
                    s,
                    "passwd",
                    b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\n",
                    0o644,
                ),
                file(s, "group", b"root:x:0:\nbin:x:1:\n", 0o644),
                owned,
                linked(file(s, "hosts", b"127.0.0.1 localhost\n", 0o644)),
                linked(file(s, "hosts.link", b"127.0.0.1 localhost\n", 0o644)),
                file(s, "hosts.copy", b"127.0.0.1 localhost\n", 0o644),
            ],
        ),
        dir(
            s,
            "usr",
            vec![
                dir(
                    s,
                    "bin",
                    vec![
                        file(s, "bash", bash, 0o755),
                        file(s, "su", b"setuid binary", 0o4755),
                        ping(s),
                        linked(file(s, "gzip", b"gzip binary", 0o755)),
                        linked(file(s, "gunzip", b"gzip binary", 0o755)),
                        entry(
                            "sh",
                            Node::Symlink {
                                target: "bash".into(),
                            },
                            0o777,
                        ),
                    ],
                ),
                dir(
                    s,
                    "lib64",
                    vec![
                        file(s, "libc.so.6", &noise(100_000, 7), 0o755),
                        file(s, "big.so", &noise(9 << 20, 11), 0o644),
                        entry(
                            "libc.so",
                            Node::Symlink {
                                target: "libc.so.6".into(),
                            },
                            0o777,
                        ),
                    ],
                ),
                dir(
                    s,
                    "share",
                    vec![dir(s, "doc", vec![file(s, "README", b"", 0o644)])],
                ),
            ],
        ),
        dir(
            s,
            "dev",
            vec![entry(
                "null",
                Node::CharDevice { major: 1, minor: 3 },
                0o666,
            )],
        ),
        Entry {
            mode: 0o1777,
            ..dir(s, "tmp", vec![])
        },
        dir(
            s,
            "var",
            vec![
                entry("fifo", Node::Fifo, 0o600),
                entry("sda", Node::BlockDevice { major: 8, minor: 0 }, 0o660),
                ghost,
            ],
        ),
    ];
    s.put_tree(&Tree::new(root).unwrap()).unwrap()
}

/// One name of a hardlinked file.
fn linked(mut e: Entry) -> Entry {
    e.flags.hardlink = true;
    e
}

/// A file with capabilities, as an RPM's `%caps(cap_net_raw=ep)` gives.
fn ping(s: &MemStore) -> Entry {
    let mut e = file(s, "ping", b"ping binary", 0o755);
    let caps = cvmbuild::builders::filecaps::vfs_cap_data("cap_net_raw=ep")
        .unwrap()
        .unwrap();
    e.xattrs.insert("security.capability".into(), caps);
    e
}

/// The `xattr` column upstream's `XattrList` would write for `ping`.
fn ping_xattr() -> Vec<u8> {
    let mut want = vec![1, 1, 19, 20];
    want.extend_from_slice(b"security.capability");
    want.extend_from_slice(&[1, 0, 0, 2, 0, 0x20, 0, 0]);
    want.extend_from_slice(&[0; 12]);
    want
}

fn request(tag: &str, branch: &str) -> Request {
    Request {
        fqrn: FQRN.into(),
        nested: vec![
            "/usr".into(),
            "/usr/lib64".into(),
            "/usr/share".into(),
            "/opt".into(),
        ],
        tag: tag.into(),
        branch: branch.into(),
        epoch: EPOCH,
        extra: vec![("meta.rpm".into(), b"meta rpm bytes".to_vec())],
    }
}

fn options(root: &Path) -> Options {
    Options {
        repo_dir: root.join("srv").join(FQRN),
        keys_dir: root.join("keys"),
        now: NOW,
        whitelist_days: 30,
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install it: .ci/deps)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn object(repo: &Path, hash: &str, suffix: &str) -> Vec<u8> {
    let p = repo
        .join("data")
        .join(&hash[..2])
        .join(format!("{}{suffix}", &hash[2..]));
    cvmfs::inflate(&std::fs::read(&p).unwrap()).unwrap()
}

/// Manifest fields by letter, plus the hash line and the signature.
fn split_signed(bytes: &[u8]) -> (BTreeMap<char, String>, String, String, Vec<u8>) {
    let sep = bytes.windows(4).position(|w| w == b"\n--\n").unwrap() + 1;
    let body = std::str::from_utf8(&bytes[..sep]).unwrap().to_string();
    let rest = &bytes[sep + 3..];
    let nl = rest.iter().position(|b| *b == b'\n').unwrap();
    let hash = std::str::from_utf8(&rest[..nl]).unwrap().to_string();
    let fields = body
        .lines()
        .filter_map(|l| l.chars().next().map(|c| (c, l[c.len_utf8()..].to_string())))
        .collect();
    (fields, body, hash, rest[nl + 1..].to_vec())
}

fn open_catalog(repo: &Path, hash: &str, dir: &Path) -> (PathBuf, Connection) {
    let path = dir.join(format!("{hash}.db"));
    std::fs::write(&path, object(repo, hash, "C")).unwrap();
    let c = Connection::open(&path).unwrap();
    (path, c)
}

fn md5path(p: &str) -> (i64, i64) {
    let d = Md5::digest(p.as_bytes());
    (
        i64::from_le_bytes(d[..8].try_into().unwrap()),
        i64::from_le_bytes(d[8..].try_into().unwrap()),
    )
}

fn prop(c: &Connection, k: &str) -> Option<String> {
    c.query_row(
        "SELECT CAST(value AS TEXT) FROM properties WHERE key = ?1",
        [k],
        |r| r.get(0),
    )
    .ok()
}

#[test]
fn acceptance_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemStore::new();
    let tree = os_tree(&s, b"bash v1");
    let opts = options(tmp.path());
    let repo = opts.repo_dir.clone();
    let p1 = cvmfs::publish(&s, &tree, &request("os-1.0", "production"), &opts).unwrap();
    assert_eq!(p1.revision, 1);
    assert_eq!(p1.skipped_nested, ["/opt"]);
    assert_eq!(p1.unknown_owners, ["apache"]);

    // 1. Every object inflates and is named by the SHA-1 of its stored bytes.
    let mut suffixes = BTreeSet::new();
    for prefix in std::fs::read_dir(repo.join("data")).unwrap() {
        let prefix = prefix.unwrap();
        let p = prefix.file_name().into_string().unwrap();
        if p == "txn" {
            assert_eq!(
                std::fs::read_dir(prefix.path())
                    .unwrap()
                    .filter(|e| !e
                        .as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".lock"))
                    .count(),
                0,
                "scratch files left in data/txn"
            );
            continue;
        }
        for obj in std::fs::read_dir(prefix.path()).unwrap() {
            let obj = obj.unwrap();
            let name = obj.file_name().into_string().unwrap();
            let stored = std::fs::read(obj.path()).unwrap();
            let digest = hex::encode(Sha1::digest(&stored));
            assert_eq!(format!("{p}{}", &name[..38]), digest, "{name}");
            suffixes.insert(name[38..].to_string());
            cvmfs::inflate(&stored).unwrap();
        }
    }
    let want: BTreeSet<String> = ["", "C", "H", "X", "P"].map(String::from).into();
    assert_eq!(suffixes, want);

    // The Stratum-0 may be replicated: upstream's empty marker.
    assert_eq!(
        std::fs::read(repo.join(".cvmfs_master_replica")).unwrap(),
        b""
    );

    // 2-3. Manifest signed by the certificate's key, whitelist by the master key.
    let manifest = std::fs::read(repo.join(".cvmfspublished")).unwrap();
    let (m, body, hashline, sig) = split_signed(&manifest);
    assert_eq!(hashline, hex::encode(Sha1::digest(body.as_bytes())));
    let letters: String = body.lines().map(|l| &l[..1]).collect();
    assert_eq!(letters, "CBRDSGANXHT");
    assert_eq!(m[&'R'], "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(m[&'N'], FQRN);
    assert_eq!(m[&'S'], "1");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("cert.pem"), object(&repo, &m[&'X'], "X")).unwrap();
    std::fs::write(work.join("hash"), &hashline).unwrap();
    std::fs::write(work.join("sig"), &sig).unwrap();
    let pubkey = run(Command::new("openssl")
        .args(["x509", "-in"])
        .arg(work.join("cert.pem"))
        .args(["-pubkey", "-noout"]));
    std::fs::write(work.join("cert.pub"), pubkey).unwrap();
    let ok = run(Command::new("openssl")
        .args(["dgst", "-sha1", "-verify"])
        .arg(work.join("cert.pub"))
        .arg("-signature")
        .arg(work.join("sig"))
        .arg(work.join("hash")));
    assert_eq!(String::from_utf8_lossy(&ok).trim(), "Verified OK");

    let wl = std::fs::read(repo.join(".cvmfswhitelist")).unwrap();
    let (_, wbody, whash, wsig) = split_signed(&wl);
    assert_eq!(whash, hex::encode(Sha1::digest(wbody.as_bytes())));
    let lines: Vec<&str> = wbody.lines().collect();
    assert_eq!(lines[0], "20231114221320");
    assert_eq!(lines[1], "E20231214221320");
    assert_eq!(lines[2], format!("N{FQRN}"));
    let der = run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(work.join("cert.pem")));
    let fp: Vec<String> = Sha1::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(lines[3], fp.join(":"));
    std::fs::write(work.join("wsig"), &wsig).unwrap();
    let recovered = run(Command::new("openssl")
        .args(["pkeyutl", "-verifyrecover", "-pubin", "-inkey"])
        .arg(opts.keys_dir.join(format!("{FQRN}.pub")))
        .args(["-pkeyopt", "rsa_padding_mode:pkcs1", "-in"])
        .arg(work.join("wsig")));
    assert_eq!(String::from_utf8_lossy(&recovered), whash);

    // 4-8. Catalogs: exact schema (sqlite3), counters, md5path/parent,
    // nested transition points.
    let (root_path, root) = open_catalog(&repo, &m[&'C'], &work);
    assert_eq!(object(&repo, &m[&'C'], "C").len().to_string(), m[&'B']);
    let schema = String::from_utf8(run(Command::new("sqlite3").arg(&root_path).arg(
        "SELECT m.name || ':' || group_concat(c.name || ' ' || c.type || ' ' || c.pk, ',') FROM sqlite_master m, pragma_table_info(m.name) c WHERE m.type = 'table' GROUP BY m.name ORDER BY m.name;",
    )))
    .unwrap();
    assert_eq!(
        schema.lines().collect::<Vec<_>>(),
        [
            "bind_mountpoints:path TEXT 1,sha1 TEXT 0,size INTEGER 0",
            "catalog:md5path_1 INTEGER 1,md5path_2 INTEGER 2,parent_1 INTEGER 0,parent_2 INTEGER 0,hardlinks INTEGER 0,hash BLOB 0,size INTEGER 0,mode INTEGER 0,mtime INTEGER 0,mtimens INTEGER 0,flags INTEGER 0,name TEXT 0,symlink TEXT 0,uid INTEGER 0,gid INTEGER 0,xattr BLOB 0",
            "chunks:md5path_1 INTEGER 1,md5path_2 INTEGER 2,offset INTEGER 3,size INTEGER 4,hash BLOB 0",
            "nested_catalogs:path TEXT 1,sha1 TEXT 0,size INTEGER 0",
            "properties:key TEXT 1,value TEXT 0",
            "statistics:counter TEXT 1,value INTEGER 0",
        ]
    );
    let idx = String::from_utf8(run(Command::new("sqlite3")
        .arg(&root_path)
        .arg("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")))
    .unwrap();
    assert_eq!(idx.trim(), "idx_catalog_parent");
    assert_eq!(prop(&root, "schema").unwrap().parse::<f64>().unwrap(), 2.5);
    assert_eq!(prop(&root, "schema_revision").as_deref(), Some("7"));
    assert_eq!(prop(&root, "revision").as_deref(), Some("1"));
    assert_eq!(
        prop(&root, "last_modified").as_deref(),
        Some(&*EPOCH.to_string())
    );
    assert_eq!(prop(&root, "root_prefix"), None);

    // Walk every catalog from the root, recomputing paths from names.
    let mut catalogs: Vec<(String, String)> = vec![(String::new(), m[&'C'].clone())];
    let mut all_paths = BTreeSet::new();
    let mut total_self = BTreeMap::new();
    let mut i = 0;
    while i < catalogs.len() {
        let (prefix, hash) = catalogs[i].clone();
        i += 1;
        let (_, c) = open_catalog(&repo, &hash, &work);
        if !prefix.is_empty() {
            assert_eq!(prop(&c, "root_prefix").as_deref(), Some(prefix.as_str()));
        }
        type RowT = (
            i64,
            i64,
            i64,
            i64,
            String,
            u32,
            i64,
            u32,
            Option<Vec<u8>>,
            u32,
            u32,
            i64,
        );
        let rows: Vec<RowT> = c
            .prepare("SELECT md5path_1, md5path_2, parent_1, parent_2, name, flags, size, mode, hash, uid, gid, mtime FROM catalog ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Paths by md5: the catalog's root entry first (pre-order).
        let mut by_md5: BTreeMap<(i64, i64), String> = BTreeMap::new();
        let mut counted = BTreeMap::<&str, i64>::new();
        for (m1, m2, p1, p2, name, flags, size, mode, hash, uid, gid, mtime) in &rows {
            assert_eq!(*mtime, EPOCH as i64);
            let path = if by_md5.is_empty() {
                assert_eq!(name.as_str(), prefix.rsplit('/').next().unwrap());
                if prefix.is_empty() {
                    assert_eq!((*p1, *p2), (0, 0));
                    assert_eq!(*flags, 1);
                } else {
                    assert_eq!((*p1, *p2), md5path(prefix.rsplit_once('/').unwrap().0));
                    assert_eq!(*flags, 33, "nested root {prefix}");
                }
                prefix.clone()
            } else {
                let parent = by_md5
                    .get(&(*p1, *p2))
                    .unwrap_or_else(|| panic!("{name}: parent not in catalog"));
                format!("{parent}/{name}")
            };
            assert_eq!((*m1, *m2), md5path(&path), "{path}");
            by_md5.insert((*m1, *m2), path.clone());
            if flags & 2 != 0 {
                assert_eq!(*flags, 3, "{path}");
                let (h, sz): (String, i64) = c
                    .query_row(
                        "SELECT sha1, size FROM nested_catalogs WHERE path = ?1",
                        [&path],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                assert_eq!(object(&repo, &h, "C").len() as i64, sz);
                catalogs.push((path.clone(), h));
                // Nothing below a mountpoint lives in the parent.
                assert!(
                    !rows.iter().any(|r| (r.2, r.3) == (*m1, *m2)),
                    "{path} has children in the parent"
                );
            } else {
                all_paths.insert(path.clone());
            }
            let kind = mode & 0o170000;
            match kind {
                0o040000 => {
                    assert!(flags & 1 != 0);
                    *counted.entry("dir").or_default() += 1;
                }
                0o100000 => {
                    assert_eq!(flags & !64, 4, "{path}");
                    *counted.entry("regular").or_default() += 1;
                    *counted.entry("file_size").or_default() += size;
                    if flags & 64 != 0 {
                        assert!(hash.is_none());
                        *counted.entry("chunked").or_default() += 1;
                        *counted.entry("chunked_size").or_default() += size;
                        let chunks: Vec<(i64, i64, Vec<u8>)> = c.prepare("SELECT offset, size, hash FROM chunks WHERE md5path_1 = ?1 AND md5path_2 = ?2 ORDER BY offset").unwrap().query_map([m1, m2], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap();
                        let mut off = 0;
                        for (o, sz, h) in &chunks {
                            assert_eq!(*o, off);
                            off += sz;
                            assert_eq!(object(&repo, &hex::encode(h), "P").len() as i64, *sz);
                        }
                        assert_eq!(off, *size);
                        *counted.entry("chunks").or_default() += chunks.len() as i64;
                    } else {
                        let h = hash
                            .as_ref()
                            .unwrap_or_else(|| panic!("{path} has no hash"));
                        assert_eq!(
                            object(&repo, &hex::encode(h), "").len() as i64,
                            *size,
                            "{path}"
                        );
                    }
                }
                0o120000 => {
                    assert_eq!(*flags, 12);
                    *counted.entry("symlink").or_default() += 1;
                }
                _ => {
                    assert_eq!(*flags, 20, "{path}");
                    *counted.entry("special").or_default() += 1;
                }
            }
            if path == "/etc/httpd.conf" {
                assert_eq!((*uid, *gid, *mode), (1, 65534, 0o100640));
            }
            if path == "/usr/bin/su" {
                assert_eq!(*mode, 0o104755);
            }
            if path == "/tmp" {
                assert_eq!(*mode, 0o041777);
            }
            if path == "/dev/null" {
                assert_eq!((*mode, *size), (0o020666, 0x103));
            }
        }
        counted.insert(
            "nested",
            c.query_row("SELECT count(*) FROM nested_catalogs", [], |r| r.get(0))
                .unwrap(),
        );
        // Extended attributes: only ping has them, in upstream's form.
        let xattrs: Vec<(String, Vec<u8>)> = c
            .prepare("SELECT name, xattr FROM catalog WHERE xattr IS NOT NULL")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if prefix == "/usr" {
            assert_eq!(xattrs, [("ping".to_string(), ping_xattr())]);
        } else {
            assert_eq!(xattrs, [], "{prefix}");
        }
        counted.insert("xattr", xattrs.len() as i64);
        let stats: BTreeMap<String, i64> = c
            .prepare("SELECT counter, value FROM statistics")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stats.len(), 24, "{prefix}: {stats:?}");
        for (k, v) in &stats {
            if let Some(n) = k.strip_prefix("self_") {
                assert_eq!(*v, counted.get(n).copied().unwrap_or(0), "{prefix}: {k}");
            }
        }
        total_self.insert(prefix.clone(), (stats.clone(), hash));
    }
    assert_eq!(
        catalogs
            .iter()
            .map(|c| c.0.as_str())
            .collect::<BTreeSet<_>>(),
        ["", "/usr", "/usr/lib64", "/usr/share"].into()
    );
    // subtree_* of a catalog = sum of self_* over all catalogs below it.
    for (prefix, (stats, _)) in &total_self {
        for (k, v) in stats.iter().filter(|(k, _)| k.starts_with("subtree_")) {
            let own = k.replace("subtree_", "self_");
            let sum: i64 = total_self
                .iter()
                .filter(|(p, _)| {
                    p.len() > prefix.len()
                        && p.starts_with(prefix.as_str())
                        && (prefix.is_empty() || p.as_bytes()[prefix.len()] == b'/')
                })
                .map(|(_, (s, _))| s[&own])
                .sum();
            assert_eq!(*v, sum, "{prefix}: {k}");
        }
    }
    for p in [
        "/usr/bin/bash",
        "/usr/lib64/big.so",
        "/usr/.cvmfscatalog",
        "/usr/lib64/.cvmfscatalog",
        "/.cvmbuild/meta.rpm",
        "/var/sda",
        "/var/fifo",
    ] {
        assert!(all_paths.contains(p), "{p} missing");
    }
    assert!(!all_paths.contains("/var/ghost.log"));
    // Link counts: 2 + subdirectories for directories, 1 otherwise;
    // hardlinked names share group (numbered per catalog from 1) << 32 |
    // their number of names, and only they do.
    let links_in = |c: &Connection, path: &str| -> i64 {
        let (a, b) = md5path(path);
        c.query_row(
            "SELECT hardlinks FROM catalog WHERE md5path_1 = ?1 AND md5path_2 = ?2",
            [a, b],
            |r| r.get(0),
        )
        .unwrap()
    };
    let links = |path: &str| links_in(&root, path);
    assert_eq!(links("/usr"), 5);
    assert_eq!(links("/tmp"), 2);
    assert_eq!(links("/etc/passwd"), 1);
    assert_eq!(links("/etc/hosts"), (1 << 32) | 2);
    assert_eq!(links("/etc/hosts.link"), (1 << 32) | 2);
    assert_eq!(links("/etc/hosts.copy"), 1);
    let (_, usr) = open_catalog(&repo, &total_self["/usr"].1, &work);
    assert_eq!(links_in(&usr, "/usr/bin/gzip"), (1 << 32) | 2);
    assert_eq!(links_in(&usr, "/usr/bin/gunzip"), (1 << 32) | 2);
    assert_eq!(links_in(&usr, "/usr/bin/bash"), 1);

    // 9. History tags resolve to root catalogs.
    let tags = cvmfs::tags(&repo).unwrap();
    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["os-1.0", "production", "trunk"]);
    for t in &tags {
        assert_eq!(t.hash, m[&'C']);
        assert_eq!(t.revision, 1);
    }
    let hist = work.join("history.db");
    std::fs::write(&hist, object(&repo, &m[&'H'], "H")).unwrap();
    let h = Connection::open(&hist).unwrap();
    assert_eq!(prop(&h, "fqrn").as_deref(), Some(FQRN));
    assert_eq!(prop(&h, "schema_revision").as_deref(), Some("3"));
    let branches: Vec<(String, Option<String>)> = h
        .prepare("SELECT branch, parent FROM branches ORDER BY branch")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        branches,
        [
            (String::new(), None),
            ("production".into(), Some(String::new()))
        ]
    );

    // 10. Republish of a changed tree: revision + 1, previous_revision,
    // growing T, only the changed objects and catalogs written.
    let tree2 = os_tree(&s, b"bash v2");
    let p2 = cvmfs::publish(&s, &tree2, &request("os-1.1", "production"), &opts).unwrap();
    assert_eq!(p2.revision, 2);
    // bash, the root catalog, /usr (holds /usr/bin), history; certificate reused.
    assert_eq!(p2.catalogs_written, 2, "{p2:?}");
    assert_eq!(p2.objects_written, 4, "{p2:?}");
    let (m2, ..) = split_signed(&std::fs::read(repo.join(".cvmfspublished")).unwrap());
    assert_eq!(m2[&'S'], "2");
    assert!(m2[&'T'].parse::<u64>().unwrap() > m[&'T'].parse::<u64>().unwrap());
    let (_, root2) = open_catalog(&repo, &m2[&'C'], &work);
    assert_eq!(
        prop(&root2, "previous_revision").as_deref(),
        Some(m[&'C'].as_str())
    );
    assert_eq!(prop(&root2, "revision").as_deref(), Some("2"));
    let names: Vec<String> = cvmfs::tags(&repo)
        .unwrap()
        .into_iter()
        .map(|t| format!("{}={}", t.name, t.revision))
        .collect();
    assert_eq!(
        names,
        [
            "os-1.0=1",
            "os-1.1=2",
            "production=2",
            "trunk=2",
            "trunk-previous=1"
        ]
    );

    // Publishing an existing tag: same tree is a no-op, another is refused.
    let again = cvmfs::publish(&s, &tree, &request("os-1.0", "production"), &opts).unwrap();
    assert!(!again.new_revision);
    assert_eq!(again.revision, 1);
    let e = cvmfs::publish(&s, &tree2, &request("os-1.0", "production"), &opts).unwrap_err();
    assert!(e.to_string().contains("immutable"), "{e}");

    // Promote moves the branch tag only.
    let moved = cvmfs::promote(FQRN, "os-1.0", "production", false, &opts).unwrap();
    assert_eq!(moved.revision, 1);
    let (m3, ..) = split_signed(&std::fs::read(repo.join(".cvmfspublished")).unwrap());
    assert_eq!(
        (m3[&'C'].as_str(), m3[&'S'].as_str()),
        (m2[&'C'].as_str(), "2")
    );
    assert!(m3[&'T'].parse::<u64>().unwrap() > m2[&'T'].parse::<u64>().unwrap());
    let t = cvmfs::tags(&repo).unwrap();
    let prod = t.iter().find(|t| t.name == "production").unwrap();
    assert_eq!((prod.revision, prod.hash.as_str()), (1, m[&'C'].as_str()));
    assert!(cvmfs::promote(FQRN, "os-9", "production", false, &opts)
        .unwrap_err()
        .to_string()
        .contains("os-1.1"));
}

/// Same tree, keys, epoch and clock: byte-identical repositories.
#[test]
fn publishing_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemStore::new();
    let tree = os_tree(&s, b"bash");
    let a = options(&tmp.path().join("a"));
    let mut b = options(&tmp.path().join("b"));
    cvmfs::publish(&s, &tree, &request("os-1", "dev"), &a).unwrap();
    // The second repository brings the first one's keys.
    b.keys_dir = a.keys_dir.clone();
    cvmfs::publish(&s, &tree, &request("os-1", "dev"), &b).unwrap();
    let listing = |root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(root)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file() && !e.path().to_string_lossy().contains("/txn/"))
            .map(|e| {
                (
                    e.path().strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    };
    let (la, lb) = (listing(&a.repo_dir), listing(&b.repo_dir));
    assert!(la.len() > 15, "{}", la.len());
    assert_eq!(la.keys().collect::<Vec<_>>(), lb.keys().collect::<Vec<_>>());
    for (k, v) in &la {
        assert!(v == &lb[k], "{} differs", k.display());
    }
}

fn manifest_of(o: &Options) -> Vec<u8> {
    std::fs::read(o.repo_dir.join(".cvmfspublished")).unwrap()
}

/// A tampered object fails the publish and leaves the served revision alone.
#[test]
fn tampered_object_keeps_previous_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemStore::new();
    let o = options(tmp.path());
    let tree = os_tree(&s, b"bash");
    cvmfs::publish(&s, &tree, &request("os-1", "dev"), &o).unwrap();
    let before = manifest_of(&o);
    // The stored object of /usr/lib64/libc.so.6 gets other bytes.
    let z = {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&noise(100_000, 7)).unwrap();
        e.finish().unwrap()
    };
    let name = hex::encode(Sha1::digest(&z));
    let path = o.repo_dir.join("data").join(&name[..2]).join(&name[2..]);
    assert!(path.exists(), "libc object not at the expected name");
    std::fs::write(&path, b"tampered").unwrap();
    let e = cvmfs::publish(&s, &os_tree(&s, b"bash 2"), &request("os-2", "dev"), &o).unwrap_err();
    assert!(
        e.to_string().contains("tampered") && e.to_string().contains(&name[2..]),
        "{e}"
    );
    assert_eq!(manifest_of(&o), before);
}

/// Mounts a tmpfs of `size` at `dir` (the tests run as root, like CI).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A full or read-only object store: clear error naming the path, previous
/// revision intact.
#[test]
fn full_or_read_only_store_keeps_previous_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemStore::new();
    let mut o = options(tmp.path());
    o.repo_dir = tmp.path().join("fs");
    let _fs = Tmpfs::mount(&o.repo_dir, "24m");
    let small = s
        .put_tree(&Tree::new(vec![file(&s, "a", b"a", 0o644)]).unwrap())
        .unwrap();
    let mut req = request("os-1", "dev");
    req.nested.clear();
    cvmfs::publish(&s, &small, &req, &o).unwrap();
    let before = manifest_of(&o);

    // Full: 30 MB of incompressible content on a 24 MB file system.
    let big = s
        .put_tree(&Tree::new(vec![file(&s, "big", &noise(30 << 20, 3), 0o644)]).unwrap())
        .unwrap();
    req.tag = "os-2".into();
    let e = cvmfs::publish(&s, &big, &req, &o).unwrap_err().to_string();
    assert!(
        e.contains("No space left") && e.contains(&o.repo_dir.display().to_string()),
        "{e}"
    );
    assert_eq!(manifest_of(&o), before);
    assert_eq!(cvmfs::tags(&o.repo_dir).unwrap().len(), 3);

    // Read-only.
    run(Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&o.repo_dir));
    let changed = s
        .put_tree(&Tree::new(vec![file(&s, "a", b"b", 0o644)]).unwrap())
        .unwrap();
    let e = cvmfs::publish(&s, &changed, &req, &o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Read-only file system") && e.contains(&o.repo_dir.display().to_string()),
        "{e}"
    );
    assert_eq!(manifest_of(&o), before);
}

/// A store that counts blob reads, to see what a publish had to compress.
struct Counting<'a>(&'a MemStore, std::sync::atomic::AtomicUsize);

impl Store for Counting<'_> {
    fn put_blob(
        &self,
        r: &mut dyn std::io::Read,
    ) -> cvmbuild::store::Result<cvmbuild::store::BlobRef> {
        self.0.put_blob(r)
    }
    fn open_blob(&self, h: &Hash) -> cvmbuild::store::Result<Box<dyn std::io::Read + Send>> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.open_blob(h)
    }
    fn blob_size(&self, h: &Hash) -> cvmbuild::store::Result<Option<u64>> {
        self.0.blob_size(h)
    }
    fn put_tree(&self, t: &Tree) -> cvmbuild::store::Result<Hash> {
        self.0.put_tree(t)
    }
    fn get_tree(&self, h: &Hash) -> cvmbuild::store::Result<Tree> {
        self.0.get_tree(h)
    }
    fn has_tree(&self, h: &Hash) -> cvmbuild::store::Result<bool> {
        self.0.has_tree(h)
    }
    fn register_output(
        &self,
        id: &str,
        o: &cvmbuild::store::Output,
    ) -> cvmbuild::store::Result<()> {
        self.0.register_output(id, o)
    }
    fn lookup_output(&self, id: &str) -> cvmbuild::store::Result<Option<cvmbuild::store::Output>> {
        self.0.lookup_output(id)
    }
    fn verify(&self) -> cvmbuild::store::Result<cvmbuild::store::VerifyReport> {
        self.0.verify()
    }
}

/// The object memo (`KEYS/FQRN.objects`): a republish reads only the blobs
/// that changed, and gives the same bytes as a republish without a memo;
/// a memo naming objects that are gone is only a hint.
#[test]
fn republish_reads_only_changed_blobs_and_matches_a_publish_without_memo() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemStore::new();
    let (t1, t2) = (os_tree(&s, b"bash"), os_tree(&s, b"bash 2"));
    let a = options(&tmp.path().join("a"));
    let counting = Counting(&s, Default::default());
    let reads = || counting.1.swap(0, std::sync::atomic::Ordering::Relaxed);
    cvmfs::publish(&counting, &t1, &request("os-1", "dev"), &a).unwrap();
    let memo = a.keys_dir.join(format!("{FQRN}.objects"));
    assert!(memo.exists());
    let first = reads();
    assert!(first > 5, "{first}");
    let p2 = cvmfs::publish(&counting, &t2, &request("os-2", "dev"), &a).unwrap();
    // The changed /bin/bash, and /etc/passwd and /etc/group for owner names.
    assert_eq!(reads(), 3, "only the changed file is read to be compressed");

    // The same two publishes with the same keys and no memo.
    let mut b = options(&tmp.path().join("b"));
    b.keys_dir = tmp.path().join("b-keys");
    std::fs::create_dir_all(&b.keys_dir).unwrap();
    for e in std::fs::read_dir(&a.keys_dir).unwrap() {
        let e = e.unwrap();
        if !e.file_name().to_string_lossy().ends_with(".objects") {
            std::fs::copy(e.path(), b.keys_dir.join(e.file_name())).unwrap();
        }
    }
    let memo_b = b.keys_dir.join(format!("{FQRN}.objects"));
    cvmfs::publish(&s, &t1, &request("os-1", "dev"), &b).unwrap();
    std::fs::remove_file(&memo_b).unwrap();
    let q2 = cvmfs::publish(&counting, &t2, &request("os-2", "dev"), &b).unwrap();
    assert_eq!(reads(), first, "without a memo every blob is read");
    assert_eq!(
        (q2.root_catalog.as_str(), q2.objects_written),
        (p2.root_catalog.as_str(), p2.objects_written)
    );
    assert_eq!(manifest_of(&a), manifest_of(&b));

    // A memo pointing at file and chunk objects that are gone (no suffix
    // or `P`; catalogs, history and certificate stay): written again.
    std::fs::copy(&memo, &memo_b).unwrap();
    let data = b.repo_dir.join("data");
    for e in walkdir::WalkDir::new(&data) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_file() && (name.len() == 38 || name.len() == 39 && name.ends_with('P'))
        {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let q3 = cvmfs::publish(&counting, &t1, &request("os-1b", "dev"), &b).unwrap();
    assert_eq!(reads(), first);
    assert!(q3.objects_written > 5, "{}", q3.objects_written);
    assert!(cvmfs::release_files(&b.repo_dir, &q3.root_catalog).is_ok());
}

/// What the catalog cannot represent (a path longer than PATH_MAX from
/// names each valid on its own; an extended attribute value over 255
/// bytes): the error names the path, nothing is published, and the
/// previous revision is still served.
#[test]
fn what_the_catalog_cannot_hold_keeps_previous_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemStore::new();
    let o = options(tmp.path());
    cvmfs::publish(&s, &os_tree(&s, b"bash"), &request("os-1", "dev"), &o).unwrap();
    let before = manifest_of(&o);
    let data_before = walkdir::WalkDir::new(o.repo_dir.join("data"))
        .into_iter()
        .count();

    // 17 levels of 250-byte names: each name is fine, the deepest path is
    // 17 * 251 = 4,267 bytes.
    let mut deep = file(&s, "leaf", b"x", 0o644);
    for level in (0..17).rev() {
        let name = format!("{level:02}{}", "d".repeat(248));
        deep = dir(&s, &name, vec![deep]);
    }
    let tree = s.put_tree(&Tree::new(vec![deep]).unwrap()).unwrap();
    let e = cvmfs::publish(&s, &tree, &request("os-2", "dev"), &o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot publish") && e.contains("longer than 4095 bytes") && e.contains("/00d"),
        "{e}"
    );
    assert_eq!(manifest_of(&o), before);
    assert_eq!(cvmfs::tags(&o.repo_dir).unwrap().len(), 3);

    // An extended attribute value longer than a catalog's xattr list holds.
    let mut big = file(&s, "big-attr", b"y", 0o644);
    big.xattrs.insert("user.comment".into(), vec![b'x'; 300]);
    let tree = s.put_tree(&Tree::new(vec![big]).unwrap()).unwrap();
    let e = cvmfs::publish(&s, &tree, &request("os-2", "dev"), &o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/big-attr") && e.contains("user.comment") && e.contains("300-byte"),
        "{e}"
    );
    assert_eq!(manifest_of(&o), before);
    // Names and attributes are checked before anything is written.
    let data_after = walkdir::WalkDir::new(o.repo_dir.join("data"))
        .into_iter()
        .count();
    assert_eq!(data_after, data_before);
}

/// Keys a user brings, made by `openssl` the way `cvmfs_server mkkeys`
/// makes them (master key PKCS#8, repository key PKCS#1, self-signed
/// certificate): the publish uses them unchanged, the certificate object is
/// the user's certificate, both signatures verify with openssl against the
/// user's files. A partial key set is refused and nothing is published.
#[test]
fn keys_made_by_openssl_are_used_and_a_partial_set_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemStore::new();
    let o = options(tmp.path());
    let k = &o.keys_dir;
    std::fs::create_dir_all(k).unwrap();
    let f = |ext: &str| k.join(format!("{FQRN}.{ext}"));
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(f("masterkey")));
    run(Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(f("key"))
        .arg("2048"));
    assert!(std::fs::read_to_string(f("key"))
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));

    // Master key and repository key without the certificate: refused,
    // nothing written, no key replaced.
    let master_before = std::fs::read(f("masterkey")).unwrap();
    let e = cvmfs::publish(&s, &os_tree(&s, b"bash"), &request("os-1", "dev"), &o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("incomplete key set") && e.contains(&f("crt").display().to_string()),
        "{e}"
    );
    assert!(!o.repo_dir.join(".cvmfspublished").exists());
    assert_eq!(std::fs::read(f("masterkey")).unwrap(), master_before);
    assert!(!f("crt").exists());

    run(Command::new("openssl")
        .args(["req", "-new", "-x509", "-days", "365", "-subj"])
        .arg(format!("/CN={FQRN}"))
        .arg("-key")
        .arg(f("key"))
        .arg("-out")
        .arg(f("crt")));
    cvmfs::publish(&s, &os_tree(&s, b"bash"), &request("os-1", "dev"), &o).unwrap();

    let repo = &o.repo_dir;
    let (m, _, hashline, sig) = split_signed(&manifest_of(&o));
    let cert = object(repo, &m[&'X'], "X");
    assert_eq!(cert, std::fs::read(f("crt")).unwrap());
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("hash"), &hashline).unwrap();
    std::fs::write(work.join("sig"), &sig).unwrap();
    let repo_pub = run(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(f("key")));
    std::fs::write(work.join("repo.pub"), repo_pub).unwrap();
    let ok = run(Command::new("openssl")
        .args(["dgst", "-sha1", "-verify"])
        .arg(work.join("repo.pub"))
        .arg("-signature")
        .arg(work.join("sig"))
        .arg(work.join("hash")));
    assert_eq!(String::from_utf8_lossy(&ok).trim(), "Verified OK");

    let (_, _, whash, wsig) = split_signed(&std::fs::read(repo.join(".cvmfswhitelist")).unwrap());
    std::fs::write(work.join("wsig"), &wsig).unwrap();
    let master_pub = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(f("masterkey")));
    std::fs::write(work.join("master.pub"), &master_pub).unwrap();
    let recovered = run(Command::new("openssl")
        .args(["pkeyutl", "-verifyrecover", "-pubin", "-inkey"])
        .arg(work.join("master.pub"))
        .args(["-pkeyopt", "rsa_padding_mode:pkcs1", "-in"])
        .arg(work.join("wsig")));
    assert_eq!(String::from_utf8_lossy(&recovered), whash);
    // The public master key cvmbuild derived (what clients are given) is
    // the one openssl derives.
    assert_eq!(std::fs::read(f("pub")).unwrap(), master_pub);
}

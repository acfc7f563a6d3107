//! Install scriptlets run by `assemble` in a bubblewrap sandbox, compared
//! with the real rpm installing the very same RPM files (`rpm -i --root`):
//! `%pre` making an account, `%post` writing files and chowning them to
//! it, `%posttrans`, a failing `%post` (reported, the build goes on), a
//! failing `%pre` (the build stops, naming package, scriptlet, output), a
//! scriptlet trying to reach the network and the host's file system (it
//! cannot), package files placed between `%pre` and `%post`, package
//! triggers and file triggers (order, priorities, `$1`/`$2`, input),
//! `%ghost` and `%config(noreplace)` files, and `scriptlets = false`.

use crate::support::rpmrepo::{build_repo, Pkg, RepoOptions};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "mkdir", "touch", "chown", "wget", "ls", "id", "grep", "sleep", "tr",
    "dd", "mknod", "true",
];

/// A scriptlet line logging its name, arguments and input (its paths,
/// for file triggers) to `/var/log/order`, which the peer comparison
/// then compares with rpm's.
fn logs(what: &str) -> String {
    format!("echo \"{what} $* $(tr '\\n' ' ')\" >> /var/trigger.log")
}

/// A unique host path a scriptlet tries to write (it must not appear).
fn host_marker(tmp: &Path) -> PathBuf {
    tmp.join("host-marker")
}

fn packages(tmp: &Path, port: u16) -> Vec<Pkg> {
    let mut shell = Pkg::new("shell", "1.0", "1")
        .arch("x86_64")
        .copy("/bin/busybox", "/bin/busybox", 0o755)
        .file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .file("/etc/group", b"root:x:0:\n")
        .dir("/tmp");
    for a in APPLETS {
        shell = shell.symlink(&format!("/bin/{a}"), "busybox");
    }
    let marker = host_marker(tmp);
    vec![
        shell,
        Pkg::new("acct", "1.0", "1")
            .preamble("Requires(pre): shell")
            .preamble("Requires(post): shell")
            .file("/usr/share/acct/readme", b"acct\n")
            .script(
                "pre",
                "echo 'svc:x:500:500::/var/svc:/bin/sh' >> /etc/passwd\n\
                 echo 'svc:x:500:' >> /etc/group\necho made svc",
            )
            .script(
                "post",
                "mkdir -p /var/lib/acct\necho \"installed $1\" > /var/lib/acct/stamp\n\
                 touch /var/lib/acct/owned\nchown svc:svc /var/lib/acct/owned",
            )
            .script("posttrans", "echo done > /etc/acct.posttrans"),
        // Installed before `seer` (which requires it); `late` after it.
        Pkg::new("early", "1.0", "1").file("/usr/share/early/data", b"early-data\n"),
        Pkg::new("seer", "1.0", "1")
            .preamble("Requires(pre): shell")
            .preamble("Requires(post): shell")
            .requires("early")
            .file("/usr/share/seer/f", b"from-package\n")
            .script("pre", "mkdir -p /usr/share/seer\necho from-pre > /usr/share/seer/f")
            .script(
                "post",
                "{ cat /usr/share/early/data; cat /usr/share/seer/f\n\
                 if [ -e /usr/share/late/data ]; then echo sees-late; else echo no-late; fi\n\
                 } > /var/seer.post",
            ),
        Pkg::new("late", "1.0", "1")
            .requires("seer")
            .file("/usr/share/late/data", b"late-data\n"),
        // Triggers: `trg` is installed after `tgta` and before `tgtb`.
        Pkg::new("tgta", "1.0", "1")
            .preamble("Requires(post): shell")
            .file("/usr/lib/tgta/libtgta.so", b"a\n")
            .script("post", &logs("tgta post")),
        Pkg::new("trg", "1.0", "1")
            .preamble("Requires(pre): shell")
            .preamble("Requires(post): shell")
            .requires("tgta")
            .file("/usr/lib/trg/libtrg.so", b"t\n")
            .script("pre", &logs("trg pre"))
            .script("post", &logs("trg post"))
            .script("triggerprein -- tgta, tgtb", &logs("trg triggerprein"))
            .script("triggerin -- tgta, tgtb", &logs("trg triggerin"))
            .script("triggerin -- tgta >= 1.0", &logs("trg triggerin-tgta>=1.0"))
            .script("triggerin -- tgtb > 1.0", &logs("trg triggerin-tgtb>1.0"))
            .script(
                "filetriggerin -- /usr/lib/tgta /usr/lib/tgtb",
                &logs("trg filetriggerin"),
            )
            .script("filetriggerin -P 2000000 -- /usr/lib", &logs("trg filetriggerin-P2000000"))
            .script("filetriggerin -P 10 -- /usr/lib/tgt", &logs("trg filetriggerin-P10"))
            .script("transfiletriggerin -- /usr/lib", &logs("trg transfiletriggerin"))
            .script(
                "transfiletriggerin -P 10 -- /usr/lib/tgtb",
                &logs("trg transfiletriggerin-P10"),
            )
            .script("triggerun -- tgta", &logs("trg triggerun"))
            // On itself: rpm runs it twice (as a target and as a source).
            .script("triggerin -- trg", &logs("trg self-triggerin")),
        Pkg::new("tgtb", "1.0", "1")
            .preamble("Requires(pre): shell")
            .requires("trg")
            .file("/usr/lib/tgtb/libtgtb.so", b"b\n")
            .script("pre", &logs("tgtb pre")),
        // On a fresh install rpm creates no %ghost file or directory (nor
        // their parents) and installs %config files as any other.
        Pkg::new("ghosts", "1.0", "1")
            .custom(
                "mkdir -p $RPM_BUILD_ROOT/etc $RPM_BUILD_ROOT/srv/gdir2 $RPM_BUILD_ROOT/srv/log\n\
                 echo conf > $RPM_BUILD_ROOT/etc/g.conf\n\
                 echo conf2 > $RPM_BUILD_ROOT/etc/g2.conf\n\
                 echo there > $RPM_BUILD_ROOT/srv/log/present.log",
                "%config(noreplace) /etc/g.conf\n%config /etc/g2.conf\n\
                 %ghost /srv/log/absent.log\n%ghost /srv/log/present.log\n\
                 %ghost %dir /srv/gdir\n%ghost %dir /srv/gdir2\n\
                 %ghost %attr(0700,root,root) /srv/gfile",
            ),
        Pkg::new("badpost", "1.0", "1")
            .preamble("Requires(post): shell")
            .file("/usr/share/badpost/f", b"f\n")
            .script("post", "echo oops-post\nexit 3"),
        Pkg::new("escape", "1.0", "1")
            .preamble("Requires(post): shell")
            .script(
                "post",
                &format!(
                    "if wget -q -T 3 -O - http://127.0.0.1:{port}/ > /tmp/net; then echo reached > /escape-net; \
                     else echo unreachable > /escape-net; fi\n\
                     echo pwned > {m} || true",
                    m = marker.display()
                ),
            ),
    ]
}

/// The peer test's closure.
const ALL: &[&str] = &[
    "shell", "acct", "early", "seer", "late", "tgta", "trg", "tgtb", "ghosts", "badpost", "escape",
];

pub(crate) fn spec(dir: &Path, packages: &[&str], extra: &str) -> PathBuf {
    let list: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
    let text = format!(
        r#"let r = repo {{ name = "r", url = "repo" }}
branch main = release {{
  name = "t-system"
  version = "1.0"
  arch = "x86_64"
  repos = [r]
  packages = [{}]
  epoch = {epoch}{extra}
}}
"#,
        list.join(", "),
        // Made when its packages were (their files' times), so no time
        // is clamped and rpm -V can check every one.
        epoch = crate::support::rpmrepo::SOURCE_DATE_EPOCH,
    );
    let p = dir.join(format!("s{}.cvm", extra.len()));
    std::fs::write(&p, text).unwrap();
    p
}

pub(crate) fn realize(dir: &Path, spec: &Path, out: &Path) -> Output {
    crate::support::cvmbuild(dir)
        .arg("realize")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// Every path below `root` (but rpm's database and logs) with its kind,
/// permission bits, and content or target.
pub(crate) fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("var/lib/rpm") {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            let perm = md.mode() & 0o1777;
            let what = if md.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                walk(root, &p, m);
                format!("dir {perm:o}")
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let shown = if bytes.len() > 200 {
                    format!("{} bytes {:x}", bytes.len(), md5ish(&bytes))
                } else {
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                format!("file {perm:o} {shown:?}")
            };
            m.insert(rel, what);
        }
    }
    walk(root, root, &mut m);
    m
}

/// The modification time of every regular file and symlink below
/// `root` (but rpm's database and logs).
fn mtimes(root: &Path) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for (rel, what) in listing(root) {
        if what.starts_with("file") || what.starts_with("link") {
            let md = std::fs::symlink_metadata(root.join(&rel)).unwrap();
            m.insert(rel, md.mtime());
        }
    }
    m
}

fn md5ish(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Every build log under `dir` (the sandboxed store's `logs/`).
pub(crate) fn all_logs(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . -path '*/logs/*.log' -exec cat {} +")
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn scriptlets_run_sandboxed_and_match_rpm_installing_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A host listener the sandboxed scriptlet tries to reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let repo = t.join("repo");
    std::fs::create_dir(&repo).unwrap();
    build_repo(&repo, &packages(t, port), &RepoOptions::default());

    let s = spec(t, ALL, "");
    let ours = t.join("ours");
    let out = realize(t, &s, &ours);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "realize failed:\n{err}");

    // The account exists and owns what %post chowned (the tree's own
    // owners, read back through the rpm database-free store listing).
    let passwd = std::fs::read_to_string(ours.join("etc/passwd")).unwrap();
    assert_eq!(
        passwd,
        "root:x:0:0:root:/root:/bin/sh\nsvc:x:500:500::/var/svc:/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_to_string(ours.join("var/lib/acct/stamp")).unwrap(),
        "installed 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(ours.join("etc/acct.posttrans")).unwrap(),
        "done\n"
    );
    // A package's files are placed between its %pre and %post: %post
    // sees the files of packages installed before it and its own (over
    // what its %pre made there), not those of packages installed after.
    assert_eq!(
        std::fs::read_to_string(ours.join("var/seer.post")).unwrap(),
        "early-data\nfrom-package\nno-late\n"
    );
    // %config files installed as any other; no %ghost file or directory
    // (nor a parent holding only ghosts) made.
    assert_eq!(
        std::fs::read_to_string(ours.join("etc/g.conf")).unwrap(),
        "conf\n"
    );
    assert!(!ours.join("srv").exists());
    // No network, no host file system.
    assert_eq!(
        std::fs::read_to_string(ours.join("escape-net")).unwrap(),
        "unreachable\n"
    );
    assert!(listener.accept().is_err(), "the scriptlet reached the host");
    assert!(!host_marker(t).exists(), "the scriptlet wrote on the host");
    // The sandbox's mount points are not left in the tree.
    assert!(!ours.join("proc").exists() && !ours.join("dev").exists());

    // The failing %post is in the build log, named; the build went on.
    let logs = all_logs(t);
    assert!(
        logs.contains("badpost-1.0-1.noarch %post: oops-post"),
        "log lacks the named output:\n{logs}"
    );
    assert!(
        logs.contains("badpost-1.0-1.noarch %post: exited with status 3; continuing"),
        "{logs}"
    );
    assert!(logs.contains("acct-1.0-1.noarch %pre: made svc"), "{logs}");
    // The chown to the account %pre made works in the sandbox.
    assert!(!logs.contains("acct-1.0-1.noarch %post: exited"), "{logs}");

    // The peer: rpm itself installs the very same RPM files.
    let peer = t.join("peer");
    std::fs::create_dir(&peer).unwrap();
    let mut rpms: Vec<PathBuf> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rpm"))
        .collect();
    rpms.sort();
    let st = Command::new("rpm")
        .arg("--root")
        .arg(&peer)
        .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps"])
        .args(&rpms)
        .output()
        .unwrap();
    // rpm reports the failing %post in its exit status.
    let rpm_err = String::from_utf8_lossy(&st.stderr);
    assert!(
        rpm_err.contains("oops-post") || String::from_utf8_lossy(&st.stdout).contains("oops-post"),
        "{rpm_err}"
    );
    // rpm's own scratch directory for scriptlet files (`%_tmppath`).
    assert!(std::fs::read_dir(peer.join("var/tmp"))
        .unwrap()
        .next()
        .is_none());
    std::fs::remove_dir(peer.join("var/tmp")).unwrap();
    // Triggers fired in rpm's order with rpm's arguments and inputs.
    let fired = |root: &Path| std::fs::read_to_string(root.join("var/trigger.log")).unwrap();
    assert_eq!(fired(&ours), fired(&peer));
    assert!(fired(&ours).contains("trg transfiletriggerin-P10 0 /usr/lib/tgtb"));
    let (a, b) = (listing(&ours), listing(&peer));
    let only = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| -> Vec<String> {
        x.iter()
            .filter(|(k, v)| y.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
    };
    assert!(
        a == b,
        "trees differ:\nonly/different in ours: {:#?}\nonly/different in rpm's: {:#?}",
        only(&a, &b),
        only(&b, &a)
    );
    // Owners as rpm's tree has them: the chowned file is svc's.
    assert_eq!(
        std::fs::metadata(peer.join("var/lib/acct/owned"))
            .unwrap()
            .uid(),
        500
    );
    // Both databases list the same packages (ours also the meta RPM).
    let qa = |root: &Path| -> Vec<String> {
        let o = Command::new("rpm")
            .arg("--root")
            .arg(root)
            .args(["--dbpath", "/var/lib/rpm", "-qa", "--qf", "%{NEVRA}\n"])
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let mut theirs = qa(&peer);
    theirs.push("t-system-1.0-1.noarch".into());
    theirs.sort();
    assert_eq!(qa(&ours), theirs);

    // Times: what rpm set from a header (the fixtures' build time, long
    // ago) ours has too; what a scriptlet wrote rpm stamps with the wall
    // clock (within the last hour) and we with the release's epoch.
    let recent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let epoch = crate::support::rpmrepo::SOURCE_DATE_EPOCH as i64;
    let (theirs, ours_t) = (mtimes(&peer), mtimes(&ours));
    let mut checked = 0;
    for (path, t) in &theirs {
        let want = if *t < recent as i64 { *t } else { epoch };
        assert_eq!(ours_t.get(path), Some(&want), "mtime of {path}");
        checked += 1;
    }
    assert!(theirs
        .get("etc/passwd")
        .is_some_and(|t| *t >= recent as i64));
    assert!(checked > 20, "{checked} files compared");

    // `rpm -Va` finds in ours what it finds in rpm's own install (the
    // accounts %pre added), but for the time of the files %pre rewrote
    // (rpm's are now, ours the epoch: that column is masked for rpm's).
    let verify = |root: &Path| -> String {
        let o = Command::new("rpm")
            .arg("--root")
            .arg(root)
            .args(["--dbpath", "/var/lib/rpm", "-Va"])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                let mut c: Vec<char> = l.chars().collect();
                if c.len() > 7 && c[7] == 'T' {
                    c[7] = '.';
                }
                c.into_iter().collect::<String>()
            })
            .filter(|l| !l.starts_with("........."))
            .collect();
        lines.sort();
        lines.join("\n")
    };
    assert_eq!(verify(&ours), verify(&peer));
    assert_eq!(
        verify(&ours),
        "S.5......    /etc/group\nS.5......    /etc/passwd"
    );
    // Unmasked, ours has no time wrong anywhere.
    let va = Command::new("rpm")
        .arg("--root")
        .arg(&ours)
        .args(["--dbpath", "/var/lib/rpm", "-Va"])
        .output()
        .unwrap();
    let va = String::from_utf8_lossy(&va.stdout).into_owned();
    assert!(va.lines().all(|l| l.chars().nth(7) != Some('T')), "{va}");
    // Two builds from scratch: the same tree.
    let t2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(t2.path().join("repo")).unwrap();
    crate::support::cli::copy_dir(&repo, &t2.path().join("repo"));
    let s2 = spec(t2.path(), ALL, "");
    let ours2 = t2.path().join("ours");
    assert!(realize(t2.path(), &s2, &ours2).status.success());
    assert_eq!(listing(&ours), listing(&ours2));
    assert_eq!(
        std::fs::read(ours.join("var/lib/rpm/rpmdb.sqlite")).unwrap(),
        std::fs::read(ours2.join("var/lib/rpm/rpmdb.sqlite")).unwrap()
    );
}

#[test]
fn failing_pre_stops_the_build_and_scriptlets_false_runs_none() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let mut pkgs = packages(t, 9);
    pkgs.push(
        Pkg::new("badpre", "2.0", "1")
            .preamble("Requires(pre): shell")
            .file("/usr/share/badpre/f", b"f\n")
            .script("pre", "echo oops-pre >&2\nexit 7"),
    );
    build_repo(&repo, &pkgs, &RepoOptions::default());

    let s = spec(t, &["shell", "acct", "badpre"], "");
    let out = realize(t, &s, &t.join("bad"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a failing %pre must stop the build");
    assert!(
        err.contains("badpre-2.0-1.noarch: %pre scriptlet exited with status 7"),
        "{err}"
    );
    assert!(err.contains("oops-pre"), "{err}");
    assert!(!t.join("bad").exists(), "nothing exported");

    let s = spec(
        t,
        &["shell", "acct", "badpre", "ghosts"],
        "\n  scriptlets = false",
    );
    let off = t.join("off");
    let out = realize(t, &s, &off);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(off.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    assert!(!off.join("var/lib/acct").exists());
    assert!(off.join("var/lib/rpm/rpmdb.sqlite").exists());
    // Without a transaction the files are still placed as rpm places
    // them: no %ghost directory, nor a parent holding only ghosts.
    assert_eq!(
        std::fs::read_to_string(off.join("etc/g.conf")).unwrap(),
        "conf\n"
    );
    assert!(!off.join("srv").exists());
}

/// The tree's rpm database is assemble's: a package may own it as a
/// `%ghost` (rpm's own package does), but one shipping a file there (here
/// not even a database) is refused by name rather than silently replaced.
#[test]
fn a_package_shipping_the_rpm_database_is_refused_and_a_ghost_one_owns_it() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let mut pkgs = packages(t, 9);
    pkgs.push(Pkg::new("rpmlike", "1.0", "1").custom(
        "mkdir -p $RPM_BUILD_ROOT/var/lib/rpm",
        "%dir /var/lib/rpm\n%ghost /var/lib/rpm/rpmdb.sqlite",
    ));
    pkgs.push(Pkg::new("baddb", "1.0", "1").file("/var/lib/rpm/rpmdb.sqlite", b"not a database\n"));
    build_repo(&repo, &pkgs, &RepoOptions::default());

    let s = spec(t, &["shell", "baddb"], "");
    let out = realize(t, &s, &t.join("bad"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a package's database must be refused"
    );
    assert!(
        err.contains("/var/lib/rpm/rpmdb.sqlite: baddb-1.0-1.noarch ships it"),
        "{err}"
    );
    assert!(!t.join("bad").exists(), "nothing exported");
    // Nothing was registered half-done: the store verifies, and the
    // same realize fails the same way again rather than finding an output.
    let verify = crate::support::cvmbuild(t)
        .args(["store", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let again = realize(t, &s, &t.join("bad"));
    assert!(String::from_utf8_lossy(&again.stderr).contains("baddb-1.0-1.noarch ships it"));

    let s = spec(t, &["shell", "rpmlike"], "");
    let ours = t.join("ours");
    let out = realize(t, &s, &ours);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let qf = Command::new("rpm")
        .arg("--root")
        .arg(&ours)
        .args([
            "--dbpath",
            "/var/lib/rpm",
            "-qf",
            "/var/lib/rpm/rpmdb.sqlite",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&qf.stdout),
        "rpmlike-1.0-1.noarch\n"
    );
}

/// Processes on the host whose command line contains `needle`.
pub(crate) fn running(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn hanging_daemonising_flooding_and_uninterpretable_scriptlets() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let mut pkgs = packages(t, 9);
    pkgs.push(
        Pkg::new("daemon", "1.0", "1")
            .preamble("Requires(post): shell")
            .script("post", "sleep 4243 &\necho started"),
    );
    pkgs.push(
        Pkg::new("hang", "1.0", "1")
            .preamble("Requires(pre): shell")
            .script("pre", "echo hanging\nsleep 4244"),
    );
    pkgs.push(
        Pkg::new("nodev", "1.0", "1")
            .preamble("Requires(post): shell")
            .script(
                "post",
                "if mknod /disk b 8 0; then echo made; else echo refused; fi > /mknod",
            ),
    );
    // 20 MB of output: logged up to 64 KiB, nothing kept on disk.
    pkgs.push(
        Pkg::new("noisy", "1.0", "1")
            .preamble("Requires(post): shell")
            .script(
                "post",
                "dd if=/dev/zero bs=1024 count=20000 2>/dev/null | tr '\\0' x",
            ),
    );
    // Files past the size limit: dd is killed by SIGXFSZ; in `filler2`
    // the script goes on and exits 0, leaving the cut file.
    pkgs.push(
        Pkg::new("filler", "1.0", "1")
            .preamble("Requires(post): shell")
            .script("post", "dd if=/dev/zero of=/big bs=1024 count=4096"),
    );
    pkgs.push(
        Pkg::new("filler2", "1.0", "1")
            .preamble("Requires(post): shell")
            .script("post", "dd if=/dev/zero of=/big2 bs=1024 count=4096\ntrue"),
    );
    // Many files each under the size limit, until the disk is full.
    pkgs.push(
        Pkg::new("flood", "1.0", "1")
            .preamble("Requires(post): shell")
            .script(
                "post",
                "i=0\nwhile dd if=/dev/zero of=/flood$i bs=1048576 count=4 2>/dev/null; do i=$((i+1)); done\necho stopped at $i",
            ),
    );
    // (rpmbuild makes the interpreter a requirement; the package says it
    // provides it, so the solver lets it through.)
    pkgs.push(
        Pkg::new("weird", "1.0", "1")
            .provides("/no/such/interpreter")
            .script("pre -p /no/such/interpreter", ""),
    );
    build_repo(&repo, &pkgs, &RepoOptions::default());

    // A daemon a %post forks does not outlive its sandbox; no device
    // node can be made; output is bounded.
    let s = spec(t, &["shell", "daemon", "nodev", "noisy"], "");
    let out = realize(t, &s, &t.join("d"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = all_logs(t);
    assert!(logs.contains("daemon-1.0-1.noarch %post: started"));
    assert_eq!(running("sleep 4243"), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(t.join("d/mknod")).unwrap(),
        "refused\n"
    );
    assert!(
        logs.contains("noisy-1.0-1.noarch %post: (output cut after 64 KiB)"),
        "{logs}"
    );
    assert!(logs.len() < 1 << 20, "{} bytes of logs", logs.len());

    // A file past the size limit stops the build, naming the scriptlet
    // (killed) or the file (the script went on); nothing is exported.
    for (pkg, wanted) in [
        (
            "filler",
            "filler-1.0-1.noarch: %post scriptlet wrote a file past the limit of 1048576 bytes",
        ),
        (
            "filler2",
            "a scriptlet left /big2, of 1048576 bytes, at or past the file size limit",
        ),
    ] {
        let s = spec(t, &["shell", pkg], "");
        let dest = t.join(pkg);
        let out = crate::support::cvmbuild(t)
            .env("CVMBUILD_SCRIPTLET_FILE_SIZE", "1048576")
            .arg("realize")
            .arg(&s)
            .arg("--out")
            .arg(&dest)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{pkg}: {err}");
        assert!(err.contains(wanted), "{err}");
        assert!(!dest.exists());
    }

    // Files under the size limit filling the transaction's file system
    // (a 96 MiB tmpfs as TMPDIR): stopped with 32 MiB left, naming the
    // scriptlet, nothing exported, and the space given back.
    let small = t.join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs (the tests run as root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let s = spec(t, &["shell", "flood"], "");
    let dest = t.join("flood");
    let out = crate::support::cvmbuild(t)
        .env("TMPDIR", &small)
        .env("CVMBUILD_SCRIPTLET_MIN_FREE", (32u64 << 20).to_string())
        .arg("realize")
        .arg(&s)
        .arg("--out")
        .arg(&dest)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("flood-1.0-1.noarch: %post scriptlet left")
            && err.contains("under the 33554432 bytes it must leave; it was stopped"),
        "{err}"
    );
    assert!(!dest.exists());
    let left = std::fs::read_dir(&small).unwrap().count();
    assert_eq!(left, 0, "the transaction's directory is removed");

    // A hanging %pre is killed at the limit, named, and stops the build.
    let s = spec(t, &["shell", "hang"], "");
    let start = std::time::Instant::now();
    let out = crate::support::cvmbuild(t)
        .env("CVMBUILD_SCRIPTLET_TIMEOUT", "2")
        .arg("realize")
        .arg(&s)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("hang-1.0-1.noarch: %pre scriptlet was killed after the time limit of 2 s"),
        "{err}"
    );
    assert!(err.contains("hanging"), "{err}");
    assert!(start.elapsed().as_secs() < 60);
    assert_eq!(running("sleep 4244"), Vec::<String>::new());

    // An interpreter the tree does not have: a clear failure of that %pre.
    let s = spec(t, &["shell", "weird"], "");
    let out = crate::support::cvmbuild(t)
        .arg("realize")
        .arg(&s)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("weird-1.0-1.noarch: %pre scriptlet exited with status"),
        "{err}"
    );
    assert!(err.contains("/no/such/interpreter"), "{err}");
}

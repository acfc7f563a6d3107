//! `cvmbuild mount` and `cvmbuild-client mount` through the kernel: both
//! branches of the bundled example are published, served by nginx on
//! loopback, and each tag is mounted with FUSE (root and /dev/fuse are
//! needed: the test fails without them) and compared, path by path, with
//! the same release written locally:
//!
//! - by `realize --out` (paths, kinds, permission bits, symlink targets,
//!   every file's bytes; the export drops setuid/setgid bits, ownership,
//!   capabilities and special files, and shares inodes with the store);
//! - by `realize --tar`, unpacked by GNU tar as root with `--xattrs`,
//!   which keeps exactly those: full modes, owners, link counts and
//!   hardlink groups, device numbers, and `getfattr`'s view of every
//!   extended attribute.
//!
//! The first mount ends by SIGTERM, the second by `umount`; a busy and a
//! non-empty mount point are refused.
//!
//! The bundled example has no setuid file, capability, device or FIFO, so
//! a second test publishes a tree that has them (with the library), mounts
//! it with `cvmbuild-client --suid` and compares it with GNU tar's
//! unpacking the same way; a data object altered on the server reaches
//! the reader as `EIO` with the object named in the log.

use super::support::fixture::{text, Fixture};
use super::support::nginx::Nginx;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FQRN: &str = "cernvm-prod.cern.ch";
const CLIENT_BIN: &str = env!("CARGO_BIN_EXE_cvmbuild-client");

fn is_mounted(mnt: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mnt = mnt.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(mnt))
}

/// A running `mount` process; unmounted and killed on drop if a test
/// fails half-way.
struct Mounted {
    child: Child,
    mnt: PathBuf,
    log: PathBuf,
}

impl Mounted {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 30 s) for the process to end; its exit status and log.
    fn wait_exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mount did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `BIN mount FQRN MNT ARGS...`, returned once the mount is there.
fn mount(bin: &str, mnt: &Path, args: &[&str], log: &Path) -> Mounted {
    assert!(
        Path::new("/dev/fuse").exists(),
        "this test needs FUSE: /dev/fuse is missing (modprobe fuse)"
    );
    let child = Command::new(bin)
        .arg("mount")
        .arg(FQRN)
        .arg(mnt)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut m = Mounted {
        child,
        mnt: mnt.to_path_buf(),
        log: log.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_mounted(mnt) {
        if let Some(st) = m.child.try_wait().unwrap() {
            panic!("mount exited ({st}) before mounting:\n{}", m.log());
        }
        assert!(
            Instant::now() < deadline,
            "not mounted after 60 s:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    m
}

/// What `lstat` and a read say about one path.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    mtime: i64,
    /// Files and symlinks only (a directory's size is the file system's).
    size: Option<u64>,
    rdev: u64,
    target: Option<PathBuf>,
    data: Option<Vec<u8>>,
}

/// Every path under `root` (`/`-rooted) with what it is, and the
/// hardlink groups (names of one inode, groups of two or more).
fn scan(root: &Path) -> (BTreeMap<String, Entry>, BTreeSet<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<String>> = HashMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let rel = format!("/{}", e.path().strip_prefix(root).unwrap().display());
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        if !ft.is_dir() {
            inodes.entry(md.ino()).or_default().push(rel.clone());
        }
        let entry = Entry {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            nlink: md.nlink(),
            mtime: md.mtime(),
            size: (ft.is_file() || ft.is_symlink()).then(|| md.size()),
            rdev: md.rdev(),
            target: ft
                .is_symlink()
                .then(|| std::fs::read_link(e.path()).unwrap()),
            data: ft
                .is_file()
                .then(|| std::fs::read(e.path()).unwrap_or_else(|err| panic!("{rel}: {err}"))),
        };
        out.insert(rel, entry);
    }
    let groups = inodes.into_values().filter(|g| g.len() > 1).collect();
    (out, groups)
}

/// `getfattr -R -P -d -m - -e hex` of `root`: path -> attribute lines.
fn xattrs(root: &Path) -> BTreeMap<String, Vec<String>> {
    let out = Command::new("getfattr")
        .args(["-R", "-P", "-d", "-m", "-", "-e", "hex", "."])
        .current_dir(root)
        .output()
        .expect("getfattr is needed (Debian's attr): bash .ci/deps");
    assert!(
        out.status.success(),
        "getfattr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        if let Some(p) = line.strip_prefix("# file: ") {
            current = format!(
                "/{}",
                p.strip_prefix("./").unwrap_or(p).trim_start_matches('.')
            );
        } else if !line.is_empty() {
            map.entry(current.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    map
}

/// cvmbuild's meta RPM and upstream's nested catalog markers: in the
/// repository, not in the OS tree.
fn repository_only(path: &str) -> bool {
    path.starts_with("/.cvmbuild") || path.ends_with("/.cvmfscatalog")
}

/// Compares a mounted release with the same tree written as a tar by
/// cvmbuild and unpacked by GNU tar: every path, kind, full mode, owner,
/// size, link count, mtime, device number, symlink target, byte, hardlink
/// group and extended attribute. Returns the mounted tree.
fn compare_with_tar(mnt: &Path, unpacked: &Path) -> BTreeMap<String, Entry> {
    let (mut mounted, mut m_groups) = scan(mnt);
    mounted.retain(|p, _| !repository_only(p));
    m_groups.retain(|g| !g.iter().any(|p| repository_only(p)));
    let (tar, t_groups) = scan(unpacked);
    let m_paths: Vec<&String> = mounted.keys().collect();
    let t_paths: Vec<&String> = tar.keys().collect();
    assert_eq!(m_paths, t_paths, "paths differ from the tar");
    for (p, t) in &tar {
        // The unpacking's top directory is ours, not the archive's.
        if p != "/" {
            assert_eq!(&mounted[p], t, "{p} differs from the tar");
        }
    }
    assert_eq!(m_groups, t_groups, "hardlink groups differ");

    // xattrs as getfattr sees them; the mount adds upstream's `user.*`.
    let mut m_x = xattrs(mnt);
    m_x.retain(|p, _| !repository_only(p));
    for lines in m_x.values_mut() {
        lines.retain(|l| !l.starts_with("user."));
    }
    m_x.retain(|_, l| !l.is_empty());
    assert_eq!(m_x, xattrs(unpacked), "extended attributes differ");
    mounted
}

/// Compares a mounted release with its `--out` export (which drops
/// setuid/setgid bits, ownership, capabilities and special files and
/// shares inodes with the store) and with its unpacked `--tar`.
fn compare(mnt: &Path, exported: &Path, unpacked: &Path) {
    let mounted = compare_with_tar(mnt, unpacked);
    assert!(mounted.len() > 50, "{}", mounted.len());
    let (export, _) = scan(exported);
    for (p, e) in &export {
        let m = mounted
            .get(p)
            .unwrap_or_else(|| panic!("{p} exported, not mounted"));
        assert_eq!(m.mode & 0o171777, e.mode & 0o171777, "{p}: mode");
        assert_eq!(m.target, e.target, "{p}: symlink target");
        assert_eq!(m.data, e.data, "{p}: bytes");
    }
    for (p, m) in &mounted {
        let special = matches!(m.mode & 0o170000, 0o010000 | 0o020000 | 0o060000 | 0o140000);
        assert!(
            export.contains_key(p) || special,
            "{p} mounted, not exported"
        );
    }
}

/// `tag list --json`: tag -> (revision, root hash).
fn tags(f: &Fixture) -> HashMap<String, (String, String)> {
    let out = f.run(&["tag", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap().to_string();
            (s("name"), (t["revision"].to_string(), s("hash")))
        })
        .collect()
}

fn getfattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "getfattr -n {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn mounted_tags_equal_their_exports() {
    let f = Fixture::new();
    let spec = f.spec();
    let spec = spec.to_str().unwrap();
    for branch in ["production", "development"] {
        let out = f.path(branch).display().to_string();
        let tar = f.path(&format!("{branch}.tar")).display().to_string();
        let o = f.run(&[
            "realize",
            spec,
            "--branch",
            branch,
            "--offline",
            "--out",
            &out,
            "--tar",
            &tar,
        ]);
        assert!(o.status.success(), "realize {branch}:\n{}", text(&o));
        let unpacked = f.path(&format!("{branch}.unpacked"));
        std::fs::create_dir(&unpacked).unwrap();
        let st = Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-xpf",
                &tar,
                "-C",
            ])
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(st.success(), "tar -x {tar}");
    }
    let tags = tags(&f);
    let nginx = Nginx::start(&f.store().join("cvmfs"), &f.path("nginx"));
    let key = f.store().join(format!("cvmfs-keys/{FQRN}.pub"));
    let server = format!("http://127.0.0.1:{}/@fqrn@", nginx.port);
    let cache = f.path("cache");
    let client_args = |tag: &'static str| {
        vec![
            "--server".to_string(),
            server.clone(),
            "--key".into(),
            key.display().to_string(),
            "--cache".into(),
            cache.display().to_string(),
            "--tag".into(),
            tag.into(),
        ]
    };
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();

    // The production tag with `cvmbuild mount`, ended by SIGTERM.
    let tag = "cernvm-system-3.1.0.0";
    let args = client_args(tag);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m = mount(super::support::BIN, &mnt, &args, &f.path("mount1.log"));
    compare(&mnt, &f.path("production"), &f.path("production.unpacked"));
    // The published release carries its rpm database: the host's rpm
    // reads it through the mount (read-only), finds the packages the
    // export's database has, and verifies every file it owns through it.
    assert_eq!(
        rpm_qa(&mnt),
        rpm_qa(&f.path("production")),
        "rpm -qa through the mount"
    );
    let va = Command::new("rpm")
        .arg("--root")
        .arg(&mnt)
        .args(["--dbpath", "/var/lib/rpm", "-Va", "--nodeps"])
        .output()
        .unwrap();
    assert!(
        va.status.success() && va.stdout.is_empty(),
        "rpm -Va through the mount:\n{}{}",
        String::from_utf8_lossy(&va.stdout),
        String::from_utf8_lossy(&va.stderr)
    );
    let (revision, root_hash) = &tags[tag];
    assert_eq!(getfattr(&mnt, "user.fqrn"), FQRN);
    assert_eq!(getfattr(&mnt, "user.tag"), tag);
    assert_eq!(&getfattr(&mnt, "user.revision"), revision);
    assert_eq!(&getfattr(&mnt, "user.root_hash"), root_hash);

    // Busy, and not empty: refused before anything is fetched.
    let requests = nginx.log("access.log").lines().count();
    for (dir, why) in [(mnt.clone(), "busy"), (f.path("production"), "not empty")] {
        let out = Command::new(super::support::BIN)
            .arg("mount")
            .arg(FQRN)
            .arg(&dir)
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(why), "{why}: {err}");
    }
    assert_eq!(nginx.log("access.log").lines().count(), requests);

    unsafe { libc::kill(m.child.id() as i32, libc::SIGTERM) };
    let (code, log) = m.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("unmounted"), "{log}");
    assert!(!is_mounted(&mnt));
    drop(m);

    // The development tag with the small binary, ended by umount.
    let tag = "cernvm-system-3.2.0.0";
    let args = client_args(tag);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m = mount(CLIENT_BIN, &mnt, &args, &f.path("mount2.log"));
    compare(
        &mnt,
        &f.path("development"),
        &f.path("development.unpacked"),
    );
    assert_eq!(getfattr(&mnt, "user.tag"), tag);
    assert_eq!(&getfattr(&mnt, "user.root_hash"), &tags[tag].1);
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success());
    let (code, log) = m.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(!is_mounted(&mnt));
}

/// `rpm -qa` (NEVRA per line) of the tree at `root`, sorted; at least
/// the meta RPM.
fn rpm_qa(root: &Path) -> Vec<String> {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "-qa"])
        .output()
        .expect("rpm is installed (.ci/deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    assert!(v.iter().any(|p| p.starts_with("cernvm-system-")), "{v:?}");
    v
}

/// A v2 `security.capability` value: cap_net_raw=ep.
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// What the bundled example lacks, published with the library: setuid
/// and setgid files, a sticky directory, owners other than root (from the
/// tree's own passwd and group), a file capability, character and block
/// devices, a FIFO, hardlinks, a nested catalog.
fn publish_special(repo: &Path, keys: &Path, tar: &Path) {
    use cvmbuild::store::{export_tar, Entry, Flags, MemStore, Node, Owners, Store, Tree};
    let store = MemStore::new();
    let file = |name: &str, bytes: &[u8], mode: u16| {
        let b = store.put_blob(&mut &bytes[..]).unwrap();
        Entry::root_owned(
            name,
            Node::File {
                size: b.size,
                blob: Some(b.hash),
            },
            mode,
        )
    };
    let owned = |mut e: Entry, owner: &str, group: &str| {
        e.owner = owner.into();
        e.group = group.into();
        e
    };
    let dir = |name: &str, entries: Vec<Entry>, mode: u16| {
        let t = store.put_tree(&Tree::new(entries).unwrap()).unwrap();
        Entry::root_owned(name, Node::Directory { tree: t }, mode)
    };
    let linked = |name: &str| {
        let mut e = file(name, b"one file, two names\n", 0o644);
        e.flags = Flags {
            hardlink: true,
            ..Flags::default()
        };
        e
    };
    let mut ping = file("ping", b"#!/bin/sh\necho ping\n", 0o755);
    ping.xattrs
        .insert("security.capability".into(), CAP_NET_RAW.to_vec());
    let node = |name: &str, node: Node, mode: u16| Entry::root_owned(name, node, mode);
    let root = store
        .put_tree(
            &Tree::new(vec![
                dir(
                    "bin",
                    vec![
                        file("su", b"#!/bin/sh\necho su\n", 0o4755),
                        ping,
                        owned(
                            file("wall", b"#!/bin/sh\necho wall\n", 0o2755),
                            "root",
                            "staff",
                        ),
                    ],
                    0o755,
                ),
                dir(
                    "dev",
                    vec![
                        node("null", Node::CharDevice { major: 1, minor: 3 }, 0o666),
                        owned(
                            node("sda", Node::BlockDevice { major: 8, minor: 0 }, 0o660),
                            "root",
                            "staff",
                        ),
                        node("initctl", Node::Fifo, 0o600),
                    ],
                    0o755,
                ),
                dir(
                    "etc",
                    vec![
                        file("group", b"root:x:0:\nstaff:x:50:\n", 0o644),
                        file(
                            "passwd",
                            b"root:x:0:0::/root:/bin/sh\nalice:x:1000:50::/home/alice:/bin/sh\n",
                            0o644,
                        ),
                    ],
                    0o755,
                ),
                owned(
                    dir(
                        "home",
                        vec![owned(file("notes", b"alice's\n", 0o600), "alice", "staff")],
                        0o700,
                    ),
                    "alice",
                    "staff",
                ),
                dir(
                    "lib",
                    vec![
                        linked("a"),
                        linked("b"),
                        file("c", b"one file, two names\n", 0o644),
                    ],
                    0o755,
                ),
                node(
                    "su",
                    Node::Symlink {
                        target: "bin/su".into(),
                    },
                    0o777,
                ),
                dir("tmp", vec![], 0o1777),
                dir(
                    "usr",
                    vec![dir(
                        "share",
                        vec![file("readme", &vec![b'x'; 300_000], 0o444)],
                        0o755,
                    )],
                    0o755,
                ),
            ])
            .unwrap(),
        )
        .unwrap();
    let req = cvmbuild::cvmfs::Request {
        fqrn: "special.cern.ch".into(),
        nested: vec!["/usr".into()],
        tag: "special-1.0".into(),
        branch: "production".into(),
        epoch: 1_400_000_000,
        extra: vec![],
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let opts = cvmbuild::cvmfs::Options {
        repo_dir: repo.to_path_buf(),
        keys_dir: keys.to_path_buf(),
        now,
        whitelist_days: 30,
    };
    cvmbuild::cvmfs::publish(&store, &root, &req, &opts).unwrap();
    let owners = Owners::from_tree(&store, &root).unwrap();
    export_tar(&store, &root, tar, 1_400_000_000, &owners).unwrap();
}

#[test]
fn special_files_owners_and_capabilities_through_fuse() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, keys, tar) = (
        tmp.path().join("srv"),
        tmp.path().join("keys"),
        tmp.path().join("t.tar"),
    );
    publish_special(&repo.join("special.cern.ch"), &keys, &tar);
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    let nginx = Nginx::start(&repo, &tmp.path().join("nginx"));
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let server = format!("http://127.0.0.1:{}/@fqrn@", nginx.port);
    let key = keys.join("special.cern.ch.pub").display().to_string();
    let cache = tmp.path().join("cache").display().to_string();
    let child = Command::new(CLIENT_BIN)
        .args(["mount", "special.cern.ch"])
        .arg(&mnt)
        .args(["--server", &server, "--key", &key, "--cache", &cache])
        .args(["--tag", "special-1.0", "--suid"])
        .stderr(std::fs::File::create(tmp.path().join("mount.log")).unwrap())
        .spawn()
        .unwrap();
    let mut m = Mounted {
        child,
        mnt: mnt.clone(),
        log: tmp.path().join("mount.log"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_mounted(&mnt) {
        assert!(m.child.try_wait().unwrap().is_none(), "{}", m.log());
        assert!(Instant::now() < deadline, "{}", m.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // A data object altered on the server: the reader gets EIO, the log
    // names the object; once it is repaired the same read succeeds.
    let readme = vec![b'x'; 300_000];
    let object = walkdir::WalkDir::new(repo.join("special.cern.ch/data"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| {
            let mut inflated = Vec::new();
            p.extension().is_none()
                && std::fs::read(p).is_ok_and(|z| {
                    std::io::Read::read_to_end(
                        &mut flate2::read::ZlibDecoder::new(&z[..]),
                        &mut inflated,
                    )
                    .is_ok()
                })
                && inflated == readme
        })
        .expect("the readme's object");
    let good = std::fs::read(&object).unwrap();
    let mut bad = Vec::new();
    std::io::Write::write_all(
        &mut flate2::write::ZlibEncoder::new(&mut bad, flate2::Compression::default()),
        &vec![b'y'; 300_000],
    )
    .unwrap();
    std::fs::write(&object, &bad).unwrap();
    let err = std::fs::read(mnt.join("usr/share/readme")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let name = object.file_name().unwrap().to_str().unwrap();
    assert!(
        m.log().contains(name),
        "the log names the object {name}:\n{}",
        m.log()
    );
    std::fs::write(&object, good).unwrap();

    let mounted = compare_with_tar(&mnt, &unpacked);
    // The tar comparison is only as good as what the tree has: check it.
    let e = |p: &str| &mounted[p];
    assert_eq!(e("/bin/su").mode, 0o104755);
    assert_eq!(e("/bin/wall").mode, 0o102755);
    assert_eq!(e("/bin/wall").gid, 50);
    assert_eq!(e("/home").mode, 0o40700);
    assert_eq!((e("/home/notes").uid, e("/home/notes").gid), (1000, 50));
    assert_eq!(e("/tmp").mode, 0o41777);
    assert_eq!(e("/dev/null").mode, 0o20666);
    assert_eq!(e("/dev/null").rdev, libc::makedev(1, 3));
    assert_eq!(e("/dev/sda").rdev, libc::makedev(8, 0));
    assert_eq!(e("/dev/initctl").mode, 0o10600);
    assert_eq!(e("/lib/a").nlink, 2);
    assert_eq!(e("/lib/c").nlink, 1);
    assert_eq!(e("/usr/share/readme").size, Some(300_000));
    let md = |p: &str| std::fs::symlink_metadata(mnt.join(p)).unwrap();
    assert_eq!(md("lib/a").ino(), md("lib/b").ino());
    assert_ne!(md("lib/a").ino(), md("lib/c").ino());
    let getcap = Command::new("getcap")
        .arg(mnt.join("bin/ping"))
        .output()
        .unwrap();
    let caps = String::from_utf8_lossy(&getcap.stdout);
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");
    assert_eq!(getfattr(&mnt, "user.fqrn"), "special.cern.ch");
    assert_eq!(getfattr(&mnt, "user.tag"), "special-1.0");
    // The mount honours setuid (--suid): it is not mounted nosuid.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == mnt.to_str())
        .unwrap();
    assert!(!line.contains("nosuid") && line.contains(" ro"), "{line}");

    unsafe { libc::kill(m.child.id() as i32, libc::SIGINT) };
    let (code, log) = m.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(!is_mounted(&mnt));
}

/// Every regular file below `root`, relative, sorted.
fn regular_files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

/// Path, size and modification time of everything below `dir`.
fn listing(dir: &Path) -> BTreeSet<(String, u64, i64)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let md = e.metadata().unwrap();
            (e.path().display().to_string(), md.len(), md.mtime())
        })
        .collect()
}

/// SIGUSR1, as μCernVM's power-off sends it: the client waits for its
/// cache writes, writes nothing more into the cache and goes on serving,
/// with later objects kept in the spool. Proof: the cache directory is
/// then made read-only (a read-only bind mount, as the boot loader makes
/// the scratch disk read-only), and every file not read before still
/// reads with the exported bytes, while the cache does not change.
#[test]
fn letting_go_of_the_cache_keeps_serving_and_writes_nothing_there() {
    let f = Fixture::new();
    let spec = f.spec();
    let out = f.path("production");
    let o = f.run(&[
        "realize",
        spec.to_str().unwrap(),
        "--branch",
        "production",
        "--offline",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "realize:\n{}", text(&o));
    let nginx = Nginx::start(&f.store().join("cvmfs"), &f.path("nginx"));
    let key = f.store().join(format!("cvmfs-keys/{FQRN}.pub"));
    let server = format!("http://127.0.0.1:{}/@fqrn@", nginx.port);
    let cache = f.path("cache");
    std::fs::create_dir(&cache).unwrap();
    let cache = cache.canonicalize().unwrap();
    let spool = f.path("spool");
    let mnt = f.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let args = [
        "--server",
        &server,
        "--key",
        key.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--tag",
        "production",
        "--spool",
        spool.to_str().unwrap(),
    ];
    let mut m = mount(CLIENT_BIN, &mnt, &args, &f.path("mount.log"));
    let files = regular_files(&out);
    let (first, rest) = files.split_first().expect("the tree has files");
    assert_eq!(
        std::fs::read(mnt.join(first)).unwrap(),
        std::fs::read(out.join(first)).unwrap()
    );

    unsafe { libc::kill(m.child.id() as i32, libc::SIGUSR1) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !m.log().contains("let go of the cache") {
        assert!(
            Instant::now() < deadline,
            "no answer to SIGUSR1:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = listing(&cache);
    let ro = |opts: &str| {
        let st = Command::new("mount")
            .args(["-o", opts])
            .arg(&cache)
            .arg(&cache)
            .status()
            .unwrap();
        assert!(st.success(), "mount -o {opts} on the cache");
    };
    ro("bind");
    struct Unbind(PathBuf);
    impl Drop for Unbind {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unbind = Unbind(cache.clone());
    ro("remount,bind,ro");

    for file in rest {
        assert_eq!(
            std::fs::read(mnt.join(file)).unwrap_or_else(|e| panic!("{file}: {e}\n{}", m.log())),
            std::fs::read(out.join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(listing(&cache), before, "the released cache changed");
    assert!(
        !regular_files(&spool.join("data")).is_empty(),
        "the objects read after the release are not in the spool"
    );
    assert!(m.child.try_wait().unwrap().is_none(), "{}", m.log());
    unsafe { libc::kill(m.child.id() as i32, libc::SIGTERM) };
    let (code, log) = m.wait_exit();
    assert_eq!(code, Some(0), "{log}");
}

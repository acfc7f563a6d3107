//! μCernVM: one ISO boots any published release from CernVM-FS (issue 13).
//!
//! The bundled spec examples/boot/ucernvm.cvm is published with visibly
//! different trees: release A (`/etc/cernvm-release` says A) on
//! `production`, release B on `development`. One ISO is built from it (the
//! static musl `cvmbuild-client`, the publish step's master key, no tag:
//! the branch is the default; the test's proxy chain `DEAD_PROXY;squid`).
//! nginx on loopback is the Stratum-0, squid in front of it the proxy; the
//! guest reaches them only through qemu's user networking with
//! `restrict=on` and `guestfwd` rules (the dead proxy's leads to a closed
//! port). Each scenario is one boot:
//! 1. the ISO as it is, fresh scratch disk: release A by the branch tag,
//!    through the second proxy; `aux/cvmfs_snapshot` (read back with
//!    `debugfs`) holds the root hash `cvmbuild tag list` shows; after the
//!    power-off the scratch file system is clean (`dumpe2fs`, `e2fsck`);
//! 2. a config drive whose user data names `development` (the command line
//!    says production: user data wins), fresh disk: release B, what it
//!    shares with A served from squid's cache, never again by nginx;
//! 3. after `promote` B to production, A's disk again: still A with no
//!    data object fetched for the file system; the OS writes local changes,
//!    the update check reports B (reading only the new history), apply;
//! 4. that disk once more: release B, the writable layer rebased (changes
//!    under /etc, /var, /root kept, under /usr and /var/lib/rpm dropped);
//! 5. an initrd built for another repository key, no disk at all: a tmpfs
//!    scratch, the whitelist refused, no switch of root;
//! 6. a `.cvmfspublished` altered on the server, fresh disk: the boot stops
//!    with the cause on the console and never switches root.
//!
//! Needs .ci/deps (qemu-system-x86, nginx, squid, xorriso, e2fsprogs,
//! musl-tools, the musl target) and apt access for the kernel package, as
//! boot_qemu.

use crate::support::rpmrepo::{build_rpms, createrepo, Pkg, RepoOptions};
use crate::support::squid::{Squid, Upstream};
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/boot");
const FQRN: &str = "ucernvm.example.org";
/// The address the guest reaches the Stratum-0 at (qemu `guestfwd`).
const SERVER: &str = "http://10.0.2.100/@fqrn@";
/// The proxy chain baked into the image: a dead proxy first (its
/// `guestfwd` leads to a closed loopback port), then squid.
const PROXIES: &str = "http://10.0.2.101:3128;http://10.0.2.102:3128";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .into()
}

/// The initrd's client: static for musl, built for size as docs/cvmfs.md says.
fn client_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--profile", "client"])
        .args([
            "--target",
            "x86_64-unknown-linux-musl",
            "--bin",
            "cvmbuild-client",
        ])
        .arg("--target-dir")
        .arg(target_dir()));
    target_dir().join("x86_64-unknown-linux-musl/client/cvmbuild-client")
}

/// The example's repository plus `release-a` and `release-b`, each with
/// its own `/etc/cernvm-release`.
fn make_repo(dir: &Path) {
    run(Command::new("bash")
        .arg(Path::new(EXAMPLE).join("make-repo.sh"))
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-debs"))
        .arg(dir));
    let pkgs: Vec<Pkg> = ["a", "b"]
        .iter()
        .map(|r| {
            Pkg::new(&format!("release-{r}"), "1.0", "1")
                .file(
                    "/etc/cernvm-release",
                    format!("ucernvm-release-{}\n", r.to_uppercase()).as_bytes(),
                )
                // Read by the OS only after its shutdown sweep.
                .file(
                    "/usr/share/release/probe",
                    format!("served after the sweep ({})\n", r.to_uppercase()).as_bytes(),
                )
        })
        .collect();
    build_rpms(&pkgs, &dir.join("Packages"));
    createrepo(
        dir,
        &RepoOptions {
            simple_names: true,
            ..RepoOptions::default()
        },
    );
}

/// The bundled μCernVM spec (examples/boot/ucernvm.cvm) in `dir`, with
/// visibly different releases (`release-a` on production, `release-b` on
/// development), the test's proxy chain, and `key` (a file in `dir`) as
/// the trust anchor instead of the publish step's key, if given. The
/// client binary must be in `dir` already.
fn write_spec(dir: &Path, key: Option<&str>) -> PathBuf {
    let example = std::fs::read_to_string(Path::new(EXAMPLE).join("ucernvm.cvm")).unwrap();
    let edits = [
        (
            "branch production  = base\nbranch development = base // { version = \"2.0.0\" }\n",
            "branch production  = base // { packages = base.packages ++ [\"release-a\"] }\n\
             branch development = base // { version = \"2.0.0\", packages = base.packages ++ [\"release-b\"] }\n"
                .to_string(),
        ),
        ("servers    = [\"http://10.0.2.100/@fqrn@\"]", format!("servers    = [\"{SERVER}\"]")),
        ("proxy      = \"DIRECT\"", format!("proxy      = \"{PROXIES}\"")),
        (
            "client     = ./cvmbuild-client\n",
            match key {
                Some(k) => format!("client     = ./cvmbuild-client\n      key        = ./{k}\n"),
                None => "client     = ./cvmbuild-client\n".into(),
            },
        ),
    ];
    let mut text = example;
    for (from, to) in edits {
        assert!(text.contains(from), "ucernvm.cvm has no `{from}`");
        text = text.replace(from, &to);
    }
    assert!(text.contains(&format!("repository = \"{FQRN}\"")));
    for f in ["init.sh", "kernel.config"] {
        std::fs::copy(Path::new(EXAMPLE).join(f), dir.join(f)).unwrap();
    }
    let spec = dir.join("ucernvm.cvm");
    std::fs::write(&spec, text).unwrap();
    spec
}

/// The loopback servers a guest may reach: the Stratum-0, a dead port
/// (the first proxy) and squid.
struct Net {
    nginx: u16,
    dead: u16,
    squid: u16,
}

/// The access logs of nginx and squid, read in slices between boots.
struct Logs {
    nginx: PathBuf,
    squid: PathBuf,
}

impl Logs {
    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    fn mark(&self) -> (usize, usize) {
        (Self::read(&self.nginx).len(), Self::read(&self.squid).len())
    }

    /// What each logged since `mark`.
    fn since(&self, mark: &(usize, usize)) -> (String, String) {
        // squid writes its log line when it is done with a request.
        std::thread::sleep(Duration::from_millis(500));
        (
            Self::read(&self.nginx)[mark.0..].to_string(),
            Self::read(&self.squid)[mark.1..].to_string(),
        )
    }
}

/// The data objects (`/data/xx/...` paths) requested in a log slice.
fn data(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let i = l.find(&format!("/{FQRN}/data/"))?;
            Some(l[i..].split_whitespace().next()?.to_string())
        })
        .collect()
}

/// The data objects squid served from its cache in a log slice.
fn hits(squid: &str) -> Vec<String> {
    data(
        &squid
            .lines()
            .filter(|l| l.contains("_HIT/"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Bytes nginx sent in a log slice (the combined format's size field).
fn bytes(nginx: &str) -> u64 {
    nginx
        .lines()
        .filter_map(|l| {
            l.split('"')
                .nth(2)?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// A fresh, all-zero scratch disk image.
fn scratch(path: &Path) -> PathBuf {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(64 << 20).unwrap();
    path.into()
}

/// Boots with the given boot arguments, the scratch disk and the network
/// that leads only to the loopback servers; the serial output and seconds.
fn boot(boot_args: &[&str], disk: Option<&Path>, net: &Net) -> (String, f64) {
    let drive: Vec<String> = disk
        .map(|d| {
            vec![
                "-drive".into(),
                format!("file={},format=raw,if=virtio", d.display()),
            ]
        })
        .unwrap_or_default();
    // `cmd:` (one relay per guest connection): a chardev target would
    // carry only the guest's first connection.
    let fwd =
        |addr: &str, port: u16| format!(",guestfwd=tcp:{addr}-cmd:busybox nc 127.0.0.1 {port}");
    let net = format!(
        "user,id=n0,restrict=on{}{}{}",
        fwd("10.0.2.100:80", net.nginx),
        fwd("10.0.2.101:3128", net.dead),
        fwd("10.0.2.102:3128", net.squid)
    );
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-m", "512", "-nographic", "-no-reboot", "-nodefaults"])
        .args(["-serial", "stdio", "-vga", "none"])
        .args(boot_args)
        .args(&drive)
        .args(["-netdev", &net])
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 is installed (.ci/deps)");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(300) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = started.elapsed().as_secs_f64();
    (reader.join().unwrap(), secs)
}

/// The `CVMBUILD-CVMFS-OK` line of the OS's init, or a panic with the log.
fn marker<'a>(serial: &'a str, what: &str) -> &'a str {
    serial
        .lines()
        .find_map(|l| l.find("CVMBUILD-CVMFS-OK ").map(|i| l[i..].trim_end()))
        .unwrap_or_else(|| panic!("{what}: no CVMBUILD-CVMFS-OK marker in:\n{serial}"))
}

/// A file on the scratch disk image, read with debugfs.
fn debugfs_cat(disk: &Path, path: &str) -> String {
    run(Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(disk)
        .stderr(Stdio::null()))
}

/// The scratch disk is ext4 (a journal, extents) and was left clean at
/// power-off: its superblock says so (`e2fsck -n` alone passes a file
/// system that was never unmounted), and `e2fsck -fn` finds nothing to fix.
fn assert_clean(disk: &Path, when: &str) {
    let sb = run(Command::new("dumpe2fs")
        .arg("-h")
        .arg(disk)
        .stderr(Stdio::null()));
    let state = sb
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem state:"))
        .map(str::trim);
    assert_eq!(
        state,
        Some("clean"),
        "{when}: the scratch disk is not clean:\n{sb}"
    );
    let features = sb
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem features:"))
        .unwrap_or_default();
    assert!(
        ["has_journal", "extent"]
            .iter()
            .all(|f| features.split_whitespace().any(|x| x == *f)),
        "{when}: the scratch disk is not ext4: {features}"
    );
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{when}: e2fsck -fn: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A NoCloud config drive (ISO 9660, volume id `cidata`) with `user_data`;
/// the `-drive` argument that attaches it.
fn config_drive(dir: &Path, user_data: &str) -> String {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("user-data"), user_data).unwrap();
    std::fs::write(files.join("meta-data"), "instance-id: cvmbuild-test\n").unwrap();
    let iso = dir.join("cidata.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "cidata", "-r", "-J", "-o"])
        .arg(&iso)
        .arg(&files)
        .stderr(Stdio::null()));
    format!("file={},format=raw,if=virtio,readonly=on", iso.display())
}

/// Root catalog hash of `tag`, as `cvmbuild tag list --json` gives it.
/// `/var/lib/rpm/rpmdb.sqlite` of `tag`, read from the repository over
/// HTTP by `cvmbuild cat` (verified as any client read).
fn release_rpmdb(sandbox: &Path, port: u16, key: &Path, tag: &str) -> Vec<u8> {
    let out = crate::support::cvmbuild(sandbox)
        .args(["cat", FQRN, "/var/lib/rpm/rpmdb.sqlite", "--tag", tag])
        .arg("--server")
        .arg(format!("http://127.0.0.1:{port}/@fqrn@"))
        .arg("--key")
        .arg(key)
        .arg("--cache")
        .arg(sandbox.join("cat-cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cvmbuild cat rpmdb.sqlite: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The package names the host's rpm lists from database `db`, put in an
/// otherwise empty root `root`.
fn rpm_names(root: &Path, db: &[u8]) -> Vec<String> {
    std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
    std::fs::write(root.join("var/lib/rpm/rpmdb.sqlite"), db).unwrap();
    let qa = run(Command::new("rpm").arg("--root").arg(root).args([
        "--dbpath",
        "/var/lib/rpm",
        "-qa",
        "--qf",
        "%{NAME}\n",
    ]));
    let mut names: Vec<String> = qa.lines().map(str::to_string).collect();
    names.sort();
    names
}

fn tag_hash(sandbox: &Path, store: &Path, tag: &str) -> String {
    let out = run(crate::support::cvmbuild(sandbox)
        .arg("--store")
        .arg(store)
        .args(["tag", "list", "--json"]));
    let tags: Value = serde_json::from_str(&out).unwrap();
    tags.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {out}"))["hash"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn one_iso_boots_each_branch_from_cvmfs_pins_updates_and_shuts_down_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let store = dir.join("store");
    make_repo(&dir.join("repo"));
    let cvmbuild = || {
        let mut c = crate::support::cvmbuild(dir);
        c.arg("--store").arg(&store);
        c
    };

    // Publish both releases. The first evaluation makes the repository's
    // keys, and the initrd bakes in the publish step's master key.
    let client = client_binary();
    std::fs::copy(&client, dir.join("cvmbuild-client")).unwrap();
    let spec = write_spec(dir, None);
    run(cvmbuild()
        .arg("realize")
        .arg(&spec)
        .args(["--root", "publish"]));
    let key = store.join(format!("cvmfs-keys/{FQRN}.pub"));

    // One ISO, with the client and the key inside.
    let out = run(cvmbuild().arg("realize").arg(&spec).args([
        "--branch",
        "production",
        "--json",
        "--root",
        "image:iso",
        "--root",
        "initrd",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let blob = |v: &Value, k: &str| {
        let h = v[0]["outputs"][k]["root"]["hash"].as_str().unwrap();
        store.join("blobs").join(&h[..2]).join(h)
    };
    let iso = blob(&v, "image:iso");
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd.img"));
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .arg("-extract")
        .arg("/vmlinuz")
        .arg(&kernel)
        .arg("-extract")
        .arg("/initrd.img")
        .arg(&initrd)
        .stderr(Stdio::null()));
    assert!(
        std::fs::read(&initrd).unwrap() == std::fs::read(blob(&v, "initrd")).unwrap(),
        "the ISO's initrd is not the initrd output"
    );
    let in_initrd = run(Command::new("sh").arg("-c").arg(format!(
        "xz -dc {} | cpio -i --quiet --to-stdout '*etc/ucernvm/keys/{FQRN}.pub'",
        initrd.display()
    )));
    assert_eq!(
        in_initrd,
        std::fs::read_to_string(&key).unwrap(),
        "the initrd carries the publish step's master key"
    );
    // An image built for another repository key (`key = ./other.pub`):
    // only its initrd is needed, booted with the same kernel.
    let private = run(Command::new("openssl")
        .args(["genrsa", "2048"])
        .stderr(Stdio::null()));
    let mut rsa = Command::new("openssl")
        .args(["rsa", "-pubout", "-out"])
        .arg(dir.join("other.pub"))
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut rsa.stdin.take().unwrap(), private.as_bytes()).unwrap();
    assert!(rsa.wait().unwrap().success());
    let spec_other = write_spec(dir, Some("other.pub"));
    let out = run(cvmbuild().arg("realize").arg(&spec_other).args([
        "--branch",
        "production",
        "--json",
        "--root",
        "initrd",
    ]));
    let initrd_other = blob(&serde_json::from_str(&out).unwrap(), "initrd");
    assert_ne!(initrd_other, blob(&v, "initrd"));

    let nginx = super::support::nginx::Nginx::start(&store.join("cvmfs"), &dir.join("nginx"));
    let port = nginx.port;
    let squid = Squid::start(&dir.join("squid"), Upstream::Parent(port));
    let squid_port = squid.port;
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let net = Net {
        nginx: port,
        dead,
        squid: squid_port,
    };
    let (prod, dev) = (
        tag_hash(dir, &store, "production"),
        tag_hash(dir, &store, "development"),
    );
    assert_ne!(prod, dev);
    let logs = Logs {
        nginx: dir.join("nginx/access.log"),
        squid: dir.join("squid/access.log"),
    };

    // 1. Release A: the ISO as it is. Its command line names no tag, so
    // the initrd's default holds: the branch the image was built from.
    let cmdline = v[0]["outputs"]["image:iso"]["meta"]["cmdline"]
        .as_str()
        .unwrap_or_else(|| panic!("no cmdline in the ISO's meta: {out}"));
    assert!(!cmdline.contains("cvmfs_repository_tag"), "{cmdline}");
    let disk_a = scratch(&dir.join("scratch-a.img"));
    let iso_arg = iso.display().to_string();
    let mark = logs.mark();
    let (serial, secs_a) = boot(&["-cdrom", &iso_arg], Some(&disk_a), &net);
    assert_eq!(
        marker(&serial, "production"),
        format!("CVMBUILD-CVMFS-OK release=ucernvm-release-A pin={prod} root=overlay")
    );
    assert!(serial.contains("CVMBUILD-LOCAL-CHANGES none"), "{serial}");
    assert_eq!(
        debugfs_cat(&disk_a, "/aux/cvmfs_snapshot"),
        format!("{prod}\nproduction")
    );
    // Through the chain DEAD_PROXY;squid: squid carried every object,
    // the first proxy none (its port is closed).
    let (nginx_a, squid_a) = logs.since(&mark);
    let fetched_a = data(&squid_a);
    assert!(fetched_a.len() >= 5, "squid carried {fetched_a:?}");
    assert_eq!(data(&nginx_a).len(), fetched_a.len(), "{nginx_a}");
    // The OS ran the boot loader's shutdown step: the scratch disk was
    // left clean.
    // The client lived through the OS's shutdown sweep (argv[0] `@…`)
    // and served a file first read after it.
    assert!(
        serial.contains("CVMBUILD-SWEEP survived, read: served after the sweep (A)"),
        "{serial}"
    );
    assert!(
        serial.contains("ucernvm: the client let go of its cache")
            && serial.contains("ucernvm: scratch disk read-only, clean"),
        "{serial}"
    );
    assert_clean(&disk_a, "after the first boot");
    // The release carries its rpm database: the booted OS read, through
    // CernVM-FS, the very file in which the host's rpm finds the closure
    // and the meta RPM.
    let db = release_rpmdb(dir, port, &key, "production");
    assert!(
        serial.contains(&format!(
            "CVMBUILD-RPMDB sha256={}",
            hex::encode(sha2::Sha256::digest(&db))
        )),
        "the booted OS read another rpm database:\n{serial}"
    );
    let names = rpm_names(&dir.join("rpmdb-production"), &db);
    assert_eq!(
        names,
        ["busybox", "kernel", "os-init", "release-a", "ucernvm"],
        "rpm -qa of the published release: the closure and the meta RPM"
    );

    // 2. Release B: the same kernel and initrd, a fresh scratch disk, a
    // config drive whose user data names the development tag; the command
    // line says production, and user data wins. What B shares with A
    // (kernel, busybox, ...) squid serves from its cache, and nginx never
    // sees those objects again.
    let cidata = config_drive(
        &dir.join("cidata"),
        "#cloud-config\n[amiconfig]\nplugins=cernvm\n[ucernvm-begin]\ncvmfs_tag=development\n[ucernvm-end]\n",
    );
    let disk_b = scratch(&dir.join("scratch-b.img"));
    let (k, i) = (kernel.display().to_string(), initrd.display().to_string());
    let append = format!("{cmdline} cvmfs_repository_tag=production");
    let mark = logs.mark();
    let (serial, secs_b) = boot(
        &[
            "-kernel", &k, "-initrd", &i, "-append", &append, "-drive", &cidata,
        ],
        Some(&disk_b),
        &net,
    );
    assert_eq!(
        marker(&serial, "development by user data"),
        format!("CVMBUILD-CVMFS-OK release=ucernvm-release-B pin={dev} root=overlay")
    );
    assert!(
        serial.contains("user data from the config drive"),
        "{serial}"
    );
    assert_eq!(
        debugfs_cat(&disk_b, "/aux/cvmfs_snapshot"),
        format!("{dev}\ndevelopment")
    );
    assert_eq!(
        debugfs_cat(&disk_b, "/aux/user-data"),
        "cvmfs_tag=development\n"
    );
    let (nginx_b, squid_b) = logs.since(&mark);
    let hit_b = hits(&squid_b);
    assert!(!hit_b.is_empty(), "no cache hit in squid's log:\n{squid_b}");
    for h in &hit_b {
        assert!(
            !nginx_b.contains(h.as_str()),
            "{h} was a hit, yet nginx served it"
        );
        assert!(
            fetched_a.contains(h),
            "{h} was a hit, yet A never fetched it"
        );
    }

    // 3. Promote B to production. A's scratch disk keeps its pin on A, and
    // the pinned reboot mounts it from the cache on the disk: not one data
    // object fetched for the file system. In it, the OS writes local
    // changes, then the update check (which reads the new history, and
    // nothing else) reports B and the update is applied.
    run(cvmbuild().args(["promote", "ucernvm-2.0.0", "--to", "production"]));
    assert_eq!(tag_hash(dir, &store, "production"), dev);
    // DIRECT: squid may answer the manifest from a copy up to 61 s old
    // (the client's max-age), which still predates the promote.
    let append = format!("{cmdline} cvmfs_proxy=DIRECT os.do=local,update");
    let mark = logs.mark();
    let (serial, secs_pinned) = boot(
        &["-kernel", &k, "-initrd", &i, "-append", &append],
        Some(&disk_a),
        &net,
    );
    assert_eq!(
        marker(&serial, "pinned reboot"),
        format!("CVMBUILD-CVMFS-OK release=ucernvm-release-A pin={prod} root=overlay")
    );
    assert!(serial.contains("(pinned, tag production)"), "{serial}");
    assert!(
        serial.contains("CVMBUILD-LOCAL-WRITTEN /etc/local-change,/var/local-change,/var/lib/rpm/local-change,/root/local-change,/usr/local-change,"),
        "{serial}"
    );
    let (nginx_p, squid_p) = logs.since(&mark);
    let fetched_p: Vec<String> = data(&nginx_p).into_iter().chain(data(&squid_p)).collect();
    assert!(
        !fetched_p.is_empty() && fetched_p.iter().all(|o| o.ends_with('H')),
        "the pinned reboot fetched more than the update check's history:\n{nginx_p}{squid_p}"
    );
    assert!(
        serial.contains("update available: ")
            && serial.contains(&format!("root {dev}; this machine runs {prod}")),
        "{serial}"
    );
    assert!(
        serial.contains("CVMBUILD-UPDATE-CHECK status=100"),
        "{serial}"
    );
    assert!(
        serial.contains("CVMBUILD-UPDATE-APPLY status=0"),
        "{serial}"
    );
    assert_clean(&disk_a, "after the update was applied");

    // 4. The next boot of that disk follows production again: release B,
    // the writable layer rebased; what was written under /etc, /var and
    // /root is still there, what was under /usr and /var/lib/rpm is gone.
    let (serial, secs_updated) = boot(&["-cdrom", &iso_arg], Some(&disk_a), &net);
    assert_eq!(
        marker(&serial, "updated"),
        format!("CVMBUILD-CVMFS-OK release=ucernvm-release-B pin={dev} root=overlay")
    );
    assert!(
        serial.contains(
            "CVMBUILD-LOCAL-CHANGES /etc/local-change,/var/local-change,/root/local-change,"
        ),
        "{serial}"
    );
    assert_eq!(
        debugfs_cat(&disk_a, "/aux/cvmfs_snapshot"),
        format!("{dev}\nproduction")
    );
    let rebase = debugfs_cat(&disk_a, "/aux/rebase.log");
    for line in [
        "kept /etc/local-change",
        "kept /root/local-change",
        "kept /var/local-change",
        "dropped /usr/local-change",
        "dropped /var/lib/rpm/local-change",
    ] {
        assert!(
            rebase.lines().any(|l| l == line),
            "no `{line}` in:\n{rebase}"
        );
    }
    assert_clean(&disk_a, "after the updated boot");

    // 4b. A forced tag overrides the pin: A's release tag on the command
    // line mounts A over the pin on B, pins A under that tag and rebases
    // the writable layer again, keeping the local changes.
    assert_eq!(tag_hash(dir, &store, "ucernvm-1.0.0"), prod);
    let append = format!("{cmdline} cvmfs_force_tag=ucernvm-1.0.0");
    let (serial, secs_forced) = boot(
        &["-kernel", &k, "-initrd", &i, "-append", &append],
        Some(&disk_a),
        &net,
    );
    assert_eq!(
        marker(&serial, "forced"),
        format!("CVMBUILD-CVMFS-OK release=ucernvm-release-A pin={prod} root=overlay")
    );
    assert!(serial.contains("tag ucernvm-1.0.0 (forced)"), "{serial}");
    assert!(
        serial.contains(
            "CVMBUILD-LOCAL-CHANGES /etc/local-change,/var/local-change,/root/local-change,"
        ),
        "{serial}"
    );
    assert_eq!(
        debugfs_cat(&disk_a, "/aux/cvmfs_snapshot"),
        format!("{prod}\nucernvm-1.0.0")
    );
    assert_clean(&disk_a, "after the forced boot");

    // 5. The image built for another key, and no disk at all: a tmpfs
    // scratch, said so, and the whitelist refused before any switch.
    let io = initrd_other.display().to_string();
    let (serial, secs_key) = boot(
        &["-kernel", &k, "-initrd", &io, "-append", cmdline],
        None,
        &net,
    );
    assert!(serial.contains("no scratch disk"), "{serial}");
    assert!(
        serial.contains("UCERNVM-BOOT-FAILED") && serial.contains("could not mount"),
        "{serial}"
    );
    assert!(
        serial.contains("whitelist"),
        "names what was refused: {serial}"
    );
    assert!(
        !serial.contains("ucernvm: switching root") && !serial.contains("CVMBUILD-"),
        "{serial}"
    );

    // 6. Trust: a manifest altered on the server (a revision digit changed,
    // its hash line and signature left alone) stops a fresh boot with the
    // cause on the console, before any switch of root.
    let published = store.join(format!("cvmfs/{FQRN}/.cvmfspublished"));
    let mut manifest = std::fs::read(&published).unwrap();
    let s = manifest
        .windows(2)
        .position(|w| w[0] == b'\n' && w[1] == b'S')
        .expect("the manifest has an S line")
        + 2;
    manifest[s] = if manifest[s] == b'9' { b'8' } else { b'9' };
    std::fs::write(&published, manifest).unwrap();
    let disk_t = scratch(&dir.join("scratch-t.img"));
    // DIRECT, not through squid: its cache holds the good manifest from
    // the boots above and would hide the change.
    let append = "console=ttyS0 panic=-1 quiet cvmfs_proxy=DIRECT";
    let (serial, secs_t) = boot(
        &["-kernel", &k, "-initrd", &i, "-append", append],
        Some(&disk_t),
        &net,
    );
    // Kernel messages may interleave with /init's lines on the serial
    // console of a loaded machine: the words are checked, not one line.
    assert!(
        serial.contains("UCERNVM-BOOT-FAILED") && serial.contains("could not mount"),
        "{serial}"
    );
    assert!(
        serial.contains(".cvmfspublished") && serial.contains("altered"),
        "{serial}"
    );
    assert!(
        !serial.contains("ucernvm: switching root") && !serial.contains("CVMBUILD-"),
        "{serial}"
    );

    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    eprintln!(
        "sizes: iso {} initrd {} client {}; boots under TCG: A {secs_a:.1} s ({} objects, {} bytes), \
         B {secs_b:.1} s ({} objects, {} from squid's cache), pinned + update check {secs_pinned:.1} s \
         ({} objects: the history), updated {secs_updated:.1} s, forced tag {secs_forced:.1} s, other key {secs_key:.1} s, tampered {secs_t:.1} s",
        len(&iso),
        len(&initrd),
        len(&client),
        fetched_a.len(),
        bytes(&nginx_a),
        data(&squid_b).len(),
        hit_b.len(),
        fetched_p.len(),
    );
    assert!(len(&iso) <= 12_000_000, "the ISO is {} bytes", len(&iso));
}

/// The CernVM example with `initrd.boot` added (`boot` is the record's
/// text), evaluated in a scratch copy that holds `key` and `client`:
/// derivation name -> id of its production branch.
fn boot_ids(boot: &str, key: &[u8], client: &[u8]) -> Result<BTreeMap<String, String>, String> {
    boot_ids_with_keys(boot, key, client, None)
}

/// [`boot_ids`], evaluated with `keys_dir` as the CernVM-FS keys directory.
fn boot_ids_with_keys(
    boot: &str,
    key: &[u8],
    client: &[u8],
    keys_dir: Option<&Path>,
) -> Result<BTreeMap<String, String>, String> {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(examples.join("repos"), dir.path().join("repos")).unwrap();
    let d = dir.path().join("cernvm");
    std::fs::create_dir(&d).unwrap();
    for f in ["groups.cvm", "init.sh", "cernvm.lock"] {
        let _ = std::fs::copy(examples.join("cernvm").join(f), d.join(f));
    }
    std::fs::write(d.join("key.pub"), key).unwrap();
    std::fs::write(d.join("client"), client).unwrap();
    let text = std::fs::read_to_string(examples.join("cernvm/cernvm.cvm")).unwrap();
    let text = text.replace(
        "    init        = ./init.sh\n",
        &format!("    init        = ./init.sh\n    boot        = {boot}\n"),
    );
    assert!(text.contains("boot        ="));
    let spec = d.join("cernvm.cvm");
    std::fs::write(&spec, text).unwrap();
    let opts = cvmbuild::eval::Options {
        keys_dir: keys_dir.map(Path::to_path_buf),
        ..Default::default()
    };
    let ev = cvmbuild::eval::evaluate(&spec, &opts).map_err(|e| format!("{e:?}"))?;
    let b = ev
        .branches
        .iter()
        .find(|b| b.release.branch == "production")
        .unwrap();
    Ok(b.graph
        .topo()
        .into_iter()
        .map(|(id, d)| (d.name.clone(), id.to_string()))
        .collect())
}

/// Every `initrd.boot` setting and the bytes of the key and the client
/// are in the initrd's id (and so in the images'), nothing else moves;
/// a client given inline and an empty server list are refused at eval.
#[test]
fn boot_settings_key_and_client_enter_the_initrd_id() {
    let boot = |tag: &str, path: &str| {
        format!(
            "{{ repository = \"cernvm-prod.cern.ch\", servers = [\"http://s1/cvmfs/@fqrn@\"], \
             tag = \"{tag}\", path = \"{path}\", key = ./key.pub, client = ./client }}"
        )
    };
    let base = boot_ids(&boot("production", ""), b"key", b"client").unwrap();
    let changed = [
        boot_ids(&boot("development", ""), b"key", b"client").unwrap(),
        boot_ids(&boot("production", "/os"), b"key", b"client").unwrap(),
        boot_ids(&boot("production", ""), b"other key", b"client").unwrap(),
        boot_ids(&boot("production", ""), b"key", b"other client").unwrap(),
    ];
    for ids in &changed {
        let moved: Vec<&String> = ids.keys().filter(|k| ids[*k] != base[*k]).collect();
        assert!(moved.contains(&&"initrd".to_string()), "{moved:?}");
        assert!(
            moved
                .iter()
                .all(|k| *k == "initrd" || k.starts_with("image:")),
            "only the initrd and the images may move: {moved:?}"
        );
    }
    let inline = boot("production", "").replace("client = ./client", "client = \"bytes\"");
    let err = boot_ids(&inline, b"key", b"client").unwrap_err();
    assert!(err.contains("initrd.boot.client must be a path"), "{err}");
    let empty = boot("production", "").replace("[\"http://s1/cvmfs/@fqrn@\"]", "[]");
    let err = boot_ids(&empty, b"key", b"client").unwrap_err();
    assert!(err.contains("initrd.boot.servers is empty"), "{err}");
}

/// Without `key`, the initrd trusts the publish step's master key: made
/// in the keys directory at evaluation if the repository has none yet,
/// read from there afterwards, and in the initrd's id like a given key.
#[test]
fn boot_without_a_key_takes_the_publish_steps_key() {
    let boot = "{ repository = \"cernvm-prod.cern.ch\", servers = [\"http://s1/cvmfs/@fqrn@\"], \
                client = ./client }";
    let err = boot_ids(boot, b"", b"client").unwrap_err();
    assert!(
        err.contains("no CernVM-FS keys directory is known"),
        "{err}"
    );
    let keys = tempfile::tempdir().unwrap();
    let first = boot_ids_with_keys(boot, b"", b"client", Some(keys.path())).unwrap();
    let public = keys.path().join("cernvm-prod.cern.ch.pub");
    let pem = std::fs::read_to_string(&public).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    for ext in ["masterkey", "key", "crt"] {
        assert!(keys
            .path()
            .join(format!("cernvm-prod.cern.ch.{ext}"))
            .exists());
    }
    // The same keys, read again: the same ids, the key set untouched.
    let again = boot_ids_with_keys(boot, b"", b"client", Some(keys.path())).unwrap();
    assert_eq!(first, again);
    assert_eq!(std::fs::read_to_string(&public).unwrap(), pem);
    // Another repository's keys: another initrd.
    let other = tempfile::tempdir().unwrap();
    let moved = boot_ids_with_keys(boot, b"", b"client", Some(other.path())).unwrap();
    assert_ne!(first["initrd"], moved["initrd"]);
}

//! Reading a release through `cvmbuild mount`, cold (empty client cache)
//! and warm (cache filled by the cold run, fresh kernel caches): the time
//! from starting the mount to the first `stat` of `/`, then reading every
//! file of the tree (files/s, MB/s). Against the same objects fetched with
//! `curl` over the same nginx in the same run (the transfer limit), and
//! against reading the `--out` export from local disk (page cache warm:
//! the machine is shared, so caches are not dropped).
//!
//! The release is the bundled example's production branch, published into
//! a fresh store. Root and /dev/fuse are needed. The mount is made by
//! `cvmbuild-client` of this build, or by the binary `CVMBUILD_CLIENT_BIN`
//! names (e.g. the initrd's `target/client/cvmbuild-client`).
//!
//! Run: `cargo bench --bench cvmfs_client` (prints figures; no assertions
//! on time).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FQRN: &str = "cernvm-prod.cern.ch";
const TAG: &str = "cernvm-system-3.1.0.0";
const BIN: &str = env!("CARGO_BIN_EXE_cvmbuild");

/// The binary that mounts.
fn client_bin() -> String {
    std::env::var("CVMBUILD_CLIENT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_cvmbuild-client").to_string())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn nginx(root: &Path, work: &Path) -> (Nginx, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(work).unwrap();
    let w = work.display();
    // The log records body bytes and the request, for the object list.
    let conf = format!(
        "user root;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  log_format objects '$status $body_bytes_sent $request_uri';\n\
           access_log {w}/access.log objects;\n  client_body_temp_path {w}/body;\n\
           proxy_temp_path {w}/proxy;\n  fastcgi_temp_path {w}/fastcgi;\n\
           uwsgi_temp_path {w}/uwsgi;\n  scgi_temp_path {w}/scgi;\n\
           default_type application/octet-stream;\n\
           server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
        root = root.display()
    );
    std::fs::write(work.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(work)
        .arg("-c")
        .arg(work.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (Debian's nginx-light) is needed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Nginx(child), port)
}

/// (requests answered 200, their body bytes, their URIs) logged so far.
fn served(log: &Path) -> (u64, u64, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut bytes = 0;
    let mut uris = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() == 3 && f[0] == "200" {
            bytes += f[1].parse::<u64>().unwrap();
            uris.push(f[2].to_string());
        }
    }
    (uris.len() as u64, bytes, uris)
}

/// Reads every file under `root`: (files, bytes).
fn read_tree(root: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            bytes += std::fs::read(e.path()).unwrap().len() as u64;
            files += 1;
        }
        let _ = e.path().symlink_metadata().unwrap().mode();
    }
    (files, bytes)
}

fn is_mounted(mnt: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == mnt.to_str())
}

struct Timing {
    first_stat: Duration,
    read: Duration,
    files: u64,
    bytes: u64,
    objects: u64,
    fetched: u64,
}

/// Mounts, times the first stat of `/` and the full read, unmounts.
fn mount_and_read(fqrn: &str, args: &[String], mnt: &Path, log: &Path) -> Timing {
    let (objects0, fetched0, _) = served(log);
    let start = Instant::now();
    let mut child = Command::new(client_bin())
        .arg("mount")
        .arg(fqrn)
        .arg(mnt)
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if is_mounted(mnt) && std::fs::metadata(mnt).is_ok() {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "mount failed");
        assert!(start.elapsed() < Duration::from_secs(60), "no mount");
        std::thread::sleep(Duration::from_millis(1));
    }
    let first_stat = start.elapsed();
    let t = Instant::now();
    let (files, bytes) = read_tree(mnt);
    let read = t.elapsed();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let (objects1, fetched1, _) = served(log);
    Timing {
        first_stat,
        read,
        files,
        bytes,
        objects: objects1 - objects0,
        fetched: fetched1 - fetched0,
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// One release, served from `root` (holding `FQRN/`), with master key
/// `key` and exported at `exported`: cold, warm, curl and local figures.
fn bench(fqrn: &str, tag: &str, root: &Path, key: &Path, exported: &Path, work: &Path) {
    let (_nginx, port) = nginx(root, &work.join("nginx"));
    let log = work.join("nginx/access.log");
    let mnt: PathBuf = work.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let args: Vec<String> = [
        "--server",
        &format!("http://127.0.0.1:{port}/@fqrn@"),
        "--key",
        &key.display().to_string(),
        "--cache",
        &work.join("cache").display().to_string(),
        "--tag",
        tag,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let cold = mount_and_read(fqrn, &args, &mnt, &log);
    let warm = mount_and_read(fqrn, &args, &mnt, &log);

    // The same objects again with curl, one connection, into /dev/null.
    let (_, _, uris) = served(&log);
    let config: String = uris[..cold.objects as usize]
        .iter()
        .map(|u| format!("url = \"http://127.0.0.1:{port}{u}\"\noutput = \"/dev/null\"\n"))
        .collect();
    let cfg = work.join("curl.cfg");
    std::fs::write(&cfg, config).unwrap();
    let t = Instant::now();
    run(Command::new("curl").args(["-s", "-f", "-K"]).arg(&cfg));
    let curl = t.elapsed();
    let (o, b, _) = served(&log);
    let curl_objects = o - cold.objects - warm.objects;
    let curl_bytes = b - cold.fetched - warm.fetched;

    let t = Instant::now();
    let (lfiles, lbytes) = read_tree(exported);
    let local = t.elapsed();

    println!(
        "== {fqrn} tag {tag}: {} files, {:.1} MB (client: {})",
        cold.files,
        mb(cold.bytes),
        client_bin()
    );
    for (name, r) in [("cold", &cold), ("warm", &warm)] {
        println!(
            "{name}: first stat of / after {:.0} ms; whole tree read in {:.3} s: {:.0} files/s, {:.1} MB/s; \
             fetched {} objects, {:.2} MB",
            r.first_stat.as_secs_f64() * 1e3,
            r.read.as_secs_f64(),
            rate(r.files, r.read),
            rate(r.bytes, r.read) / 1e6,
            r.objects,
            mb(r.fetched),
        );
    }
    println!(
        "curl: the cold run's {curl_objects} objects ({:.2} MB) in {:.3} s: {:.0} objects/s, {:.1} MB/s",
        mb(curl_bytes),
        curl.as_secs_f64(),
        rate(curl_objects, curl),
        rate(curl_bytes, curl) / 1e6
    );
    println!(
        "local disk: {lfiles} files, {:.1} MB in {:.3} s: {:.0} files/s, {:.1} MB/s",
        mb(lbytes),
        local.as_secs_f64(),
        rate(lfiles, local),
        rate(lbytes, local) / 1e6
    );
    let cold_total = cold.first_stat + cold.read;
    let warm_total = warm.first_stat + warm.read;
    println!(
        "ratios: cold (mount + read) / curl = {:.2}; warm / local = {:.1}; cold / warm = {:.2}",
        cold_total.as_secs_f64() / curl.as_secs_f64(),
        warm_total.as_secs_f64() / local.as_secs_f64(),
        cold_total.as_secs_f64() / warm_total.as_secs_f64()
    );
}

/// Pseudo-random, half-compressible bytes (xorshift, every other byte 0).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if i % 2 == 0 {
                s as u8
            } else {
                0
            }
        })
        .collect()
}

/// A larger generated release: 20 directories of 200 files of 4-16 kB
/// (about 40 MB, under a nested catalog) and one 24 MB file (chunked),
/// published with the library and exported for the local-disk figure.
fn publish_generated(repo: &Path, keys: &Path, exported: &Path) {
    use cvmbuild::store::{export_tree, Entry, MemStore, Node, Store, Tree};
    let store = MemStore::new();
    let file = |name: String, bytes: &[u8]| {
        let b = store.put_blob(&mut &bytes[..]).unwrap();
        Entry::root_owned(
            &name,
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
    let dirs = (0..20u64)
        .map(|d| {
            let files = (0..200u64)
                .map(|f| {
                    file(
                        format!("f{f:03}"),
                        &noise(4096 + ((d * 200 + f) * 997 % 12288) as usize, d * 1000 + f),
                    )
                })
                .collect();
            dir(&format!("d{d:02}"), files)
        })
        .collect();
    let root = store
        .put_tree(
            &Tree::new(vec![
                file("big.img".into(), &noise(24 << 20, 7)),
                dir("usr", dirs),
            ])
            .unwrap(),
        )
        .unwrap();
    let req = cvmbuild::cvmfs::Request {
        fqrn: "generated.cern.ch".into(),
        nested: vec!["/usr".into()],
        tag: "generated-1".into(),
        branch: "production".into(),
        epoch: 1_400_000_000,
        extra: vec![],
    };
    let opts = cvmbuild::cvmfs::Options {
        repo_dir: repo.to_path_buf(),
        keys_dir: keys.to_path_buf(),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        whitelist_days: 30,
    };
    cvmbuild::cvmfs::publish(&store, &root, &req, &opts).unwrap();
    export_tree(&store, &root, exported, 1_400_000_000).unwrap();
}

fn main() {
    assert!(Path::new("/dev/fuse").exists(), "FUSE is needed");
    let tmp = tempfile::tempdir().unwrap();
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for sub in ["cernvm", "repos"] {
        run(Command::new("cp")
            .arg("-a")
            .arg(ex.join(sub))
            .arg(tmp.path()));
    }
    let store = tmp.path().join("store");
    let exported = tmp.path().join("out");
    let spec = tmp.path().join("cernvm/cernvm.cvm");
    run(Command::new(BIN)
        .arg("--store")
        .arg(&store)
        .arg("realize")
        .arg(&spec)
        .args(["--branch", "production", "--offline", "--out"])
        .arg(&exported)
        .env("HOME", tmp.path())
        .env_remove("CVMBUILD_PUBLISH_DIR")
        .env_remove("CVMBUILD_KEYS_DIR"));
    let key = store.join(format!("cvmfs-keys/{FQRN}.pub"));
    bench(
        FQRN,
        TAG,
        &store.join("cvmfs"),
        &key,
        &exported,
        &tmp.path().join("example"),
    );

    let served = tmp.path().join("generated-srv");
    let (keys, exported) = (
        tmp.path().join("generated-keys"),
        tmp.path().join("generated-out"),
    );
    publish_generated(&served.join("generated.cern.ch"), &keys, &exported);
    let key = keys.join("generated.cern.ch.pub");
    bench(
        "generated.cern.ch",
        "generated-1",
        &served,
        &key,
        &exported,
        &tmp.path().join("generated"),
    );
}

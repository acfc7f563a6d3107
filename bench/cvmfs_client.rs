//! Reading a release through `cvmbuild mount`, cold (empty client cache)
//! and warm (cache filled by the cold run, fresh kernel caches): the time
//! from starting the mount to the first `stat` of `/`, then reading every
//! file of the tree (files/s, MB/s). Against the same objects fetched with
//! `curl` over the same nginx in the same run (the transfer limit), and
//! against reading the `--out` export from local disk (page cache warm:
//! the machine is shared, so caches are not dropped).
//!
//! The release is the bundled example's production branch, published into
//! a fresh store. Root and /dev/fuse are needed.
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
    info.lines()
        .any(|l| l.split(' ').nth(4) == mnt.to_str())
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
fn mount_and_read(args: &[String], mnt: &Path, log: &Path) -> Timing {
    let (objects0, fetched0, _) = served(log);
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .arg("mount")
        .arg(FQRN)
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

fn main() {
    assert!(Path::new("/dev/fuse").exists(), "FUSE is needed");
    let tmp = tempfile::tempdir().unwrap();
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for sub in ["cernvm", "repos"] {
        run(Command::new("cp").arg("-a").arg(ex.join(sub)).arg(tmp.path()));
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
    let (_nginx, port) = nginx(&store.join("cvmfs"), &tmp.path().join("nginx"));
    let log = tmp.path().join("nginx/access.log");
    let mnt: PathBuf = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let args: Vec<String> = [
        "--server",
        &format!("http://127.0.0.1:{port}/@fqrn@"),
        "--key",
        &store.join(format!("cvmfs-keys/{FQRN}.pub")).display().to_string(),
        "--cache",
        &tmp.path().join("cache").display().to_string(),
        "--tag",
        TAG,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let cold = mount_and_read(&args, &mnt, &log);
    let warm = mount_and_read(&args, &mnt, &log);

    // The same objects again with curl, one connection, into /dev/null.
    let (_, _, uris) = served(&log);
    let cold_uris = &uris[..cold.objects as usize];
    let config: String = cold_uris
        .iter()
        .map(|u| format!("url = \"http://127.0.0.1:{port}{u}\"\noutput = \"/dev/null\"\n"))
        .collect();
    let cfg = tmp.path().join("curl.cfg");
    std::fs::write(&cfg, config).unwrap();
    let t = Instant::now();
    run(Command::new("curl").args(["-s", "-f", "-K"]).arg(&cfg));
    let curl = t.elapsed();
    let (curl_objects, curl_bytes, _) = {
        let (o, b, _) = served(&log);
        let (o0, b0) = (cold.objects + warm.objects, cold.fetched + warm.fetched);
        (o - o0, b - b0, ())
    };

    let t = Instant::now();
    let (lfiles, lbytes) = read_tree(&exported);
    let local = t.elapsed();

    println!("release: {FQRN} tag {TAG}: {} files, {:.1} MB", cold.files, mb(cold.bytes));
    for (name, r) in [("cold", &cold), ("warm", &warm)] {
        println!(
            "{name}: first stat of / after {:.0} ms; whole tree read in {:.2} s: {:.0} files/s, {:.1} MB/s; \
             fetched {} objects, {:.2} MB",
            r.first_stat.as_secs_f64() * 1e3,
            r.read.as_secs_f64(),
            rate(r.files, r.read),
            mb(rate(r.bytes, r.read)),
            r.objects,
            mb(r.fetched),
        );
    }
    println!(
        "curl: the cold run's {curl_objects} objects ({:.2} MB) in {:.2} s: {:.0} objects/s, {:.1} MB/s",
        mb(curl_bytes),
        curl.as_secs_f64(),
        rate(curl_objects, curl),
        mb(rate(curl_bytes, curl))
    );
    println!(
        "local disk: {lfiles} files, {:.1} MB in {:.3} s: {:.0} files/s, {:.1} MB/s",
        mb(lbytes),
        local.as_secs_f64(),
        rate(lfiles, local),
        mb(rate(lbytes, local))
    );
    let cold_total = cold.first_stat + cold.read;
    let warm_total = warm.first_stat + warm.read;
    println!(
        "ratios: cold mount+read / curl = {:.2}; warm / local = {:.1}; cold / warm = {:.2}",
        cold_total.as_secs_f64() / curl.as_secs_f64(),
        warm_total.as_secs_f64() / local.as_secs_f64(),
        cold_total.as_secs_f64() / warm_total.as_secs_f64()
    );
}

//! Substituting versus building, in the same run: the bundled example
//! (examples/cernvm) and a generated release of 320 packages (real RPMs,
//! as bench/realize_closure.rs makes them) pushed by machine A to a binary
//! cache on nginx with WebDAV on loopback, then realized by a fresh
//! machine B from it. Prints the wall-time ratio, the objects and bytes
//! transferred, and for a one-package change (A pushes release two; B,
//! holding release one, realizes two) the bytes transferred against the
//! release's size. Drives the `cvmbuild` binary as a user would; no
//! assertions on time.
//!
//! Run: `cargo bench --bench substitute` (needs nginx with the dav module:
//! Debian's nginx-light, `bash .ci/deps`).

#[path = "generated.rs"]
mod generated;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cvmbuild");

/// nginx serving `root` with WebDAV writes, stopped on drop.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn nginx(root: &Path, work: &Path) -> (Nginx, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fs::create_dir_all(work).unwrap();
    fs::create_dir_all(root).unwrap();
    let w = work.display();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {w}/body;\n\
           proxy_temp_path {w}/proxy;\n  fastcgi_temp_path {w}/fastcgi;\n\
           uwsgi_temp_path {w}/uwsgi;\n  scgi_temp_path {w}/scgi;\n\
           default_type application/octet-stream;\n\
           server {{ listen 127.0.0.1:{port}; root {root}; dav_methods PUT MKCOL; \
           create_full_put_path on; client_max_body_size 0; }}\n}}\n",
        root = root.display()
    );
    fs::write(work.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(work)
        .arg("-c")
        .arg(work.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (Debian's nginx-light): bash .ci/deps");
    let n = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (n, format!("http://127.0.0.1:{port}/"))
}

/// Runs `cvmbuild --store STORE ARGS…`, which must succeed; stdout.
fn cvmbuild(store: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CVMBUILD_SUBSTITUTERS")
        .env_remove("CVMBUILD_TRUSTED_KEYS")
        .env_remove("CVMBUILD_SIGN_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cvmbuild {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `realize SPEC --branch B --offline --json ROOTS… EXTRA…`: its summary
/// and wall time.
fn realize(
    store: &Path,
    spec: &Path,
    branch: &str,
    roots: &[&str],
    extra: &[&str],
) -> (Value, Duration) {
    let mut args = vec![
        "realize",
        spec.to_str().unwrap(),
        "--branch",
        branch,
        "--offline",
        "--json",
    ];
    for r in roots {
        args.extend(["--root", r]);
    }
    args.extend_from_slice(extra);
    let t = Instant::now();
    let out = cvmbuild(store, &args);
    let elapsed = t.elapsed();
    let v: Value = serde_json::from_str(&out).unwrap();
    (v[0].clone(), elapsed)
}

/// Pushes `summary`'s roots (with their inputs); the `copy --json` answer.
fn push(store: &Path, url: &str, key: &Path, summary: &Value) -> Value {
    let ids: Vec<String> = summary["roots"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut args = vec![
        "copy",
        "--to",
        url,
        "--sign-key",
        key.to_str().unwrap(),
        "--json",
    ];
    args.extend(ids.iter().map(String::as_str));
    serde_json::from_str(&cvmbuild(store, &args)).unwrap()
}

struct Row {
    case: String,
    build: Duration,
    substitute: Duration,
    built: u64,
    objects: u64,
    bytes: u64,
}

/// Machine A builds (timed) and pushes; machine B substitutes (timed).
/// Returns the row, A's summary and B's store.
fn case(
    work: &Path,
    name: &str,
    spec: &Path,
    branch: &str,
    roots: &[&str],
    url: &str,
    key: &Path,
) -> (Row, Value, PathBuf) {
    let a = work.join(format!("{name}-a"));
    let (sa, build) = realize(&a, spec, branch, roots, &[]);
    push(&a, url, key, &sa);
    let b = work.join(format!("{name}-b"));
    let pubkey = key.with_extension("key.pub");
    let subst = [
        "--substituter",
        url,
        "--trusted-key",
        pubkey.to_str().unwrap(),
    ];
    let (sb, substitute) = realize(&b, spec, branch, roots, &subst);
    assert_eq!(sb["outputs"], sa["outputs"], "substituted outputs differ");
    let got = &sb["substituters"][0];
    let row = Row {
        case: name.to_string(),
        build,
        substitute,
        built: sb["built"].as_u64().unwrap(),
        objects: got["objects"].as_u64().unwrap(),
        bytes: got["bytes"].as_u64().unwrap(),
    };
    (row, sa, b)
}

fn main() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let w = work.path();
    let (_nginx, url) = nginx(&w.join("cache"), &w.join("nginx"));
    let key = w.join("farm.key");
    cvmbuild(
        &w.join("keys-store"),
        &["key", "generate", "farm", "--out", key.to_str().unwrap()],
    );

    // The bundled example, copied (its repositories are local paths).
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for sub in ["cernvm", "repos"] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(ex.join(sub))
            .arg(w)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let example = w.join("cernvm/cernvm.cvm");
    let (ex_row, _, _) = case(
        w,
        "example",
        &example,
        "production",
        &["os-tree", "meta-rpm"],
        &url,
        &key,
    );

    // The generated release: branch `one`, and `two` with pkg000 at 2.0.
    let repo = w.join("repo");
    for i in 0..generated::PACKAGES {
        generated::write_package(&repo, i, "1.0");
    }
    generated::write_package(&repo, 0, "2.0");
    let st = Command::new("createrepo_c")
        .arg("--quiet")
        .arg(&repo)
        .status()
        .unwrap();
    assert!(st.success(), "createrepo_c");
    let spec = w.join("big.cvm");
    generated::write_spec(&spec);
    cvmbuild(&w.join("eval-cache"), &["eval", spec.to_str().unwrap()]);
    let roots = ["os-tree"];
    let (big_row, _, big_b) = case(w, "release-320", &spec, "one", &roots, &url, &key);

    // The one-package change: A builds and pushes `two`; B, holding
    // `one`, realizes `two` from the cache.
    let a = w.join("release-320-a");
    let (sa2, _) = realize(&a, &spec, "two", &roots, &[]);
    push(&a, &url, &key, &sa2);
    let pubkey = key.with_extension("key.pub");
    let subst = [
        "--substituter",
        url.as_str(),
        "--trusted-key",
        pubkey.to_str().unwrap(),
    ];
    let (sb2, change) = realize(&big_b, &spec, "two", &roots, &subst);
    let got = &sb2["substituters"][0];
    let (change_objects, change_bytes) = (
        got["objects"].as_u64().unwrap(),
        got["bytes"].as_u64().unwrap(),
    );

    println!(
        "{:<14} {:>9} {:>12} {:>7} {:>6} {:>9} {:>12}",
        "case", "build s", "substitute s", "ratio", "built", "objects", "bytes"
    );
    for r in [&ex_row, &big_row] {
        println!(
            "{:<14} {:>9.2} {:>12.2} {:>6.1}x {:>6} {:>9} {:>12}",
            r.case,
            r.build.as_secs_f64(),
            r.substitute.as_secs_f64(),
            r.build.as_secs_f64() / r.substitute.as_secs_f64(),
            r.built,
            r.objects,
            r.bytes
        );
    }
    println!(
        "one-package change (B holds `one`, realizes `two`): {:.2} s, built {}, {} objects, \
         {} bytes transferred = {:.2}% of the release's {} bytes",
        change.as_secs_f64(),
        sb2["built"],
        change_objects,
        change_bytes,
        100.0 * change_bytes as f64 / big_row.bytes as f64,
        big_row.bytes
    );
}

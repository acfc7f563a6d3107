//! Hostile input (issue #14): paths from metadata that lead out of the
//! repository, metadata and downloads without size bounds, HTTP servers
//! that stall or drip, crafted RPM headers, language bombs, a damaged
//! CernVM-FS repository to publish on, and an offline lock that no longer
//! matches its spec. Each test fails on the code before the fix; the
//! resource tests assert on the error that names the bound, not on time.

use crate::support::fixture::*;
use cvmbuild::repo::{load, RepoError, RepoSource};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="1">
<package type="rpm">
  <name>hello</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="2.10" rel="1"/>
  <checksum type="sha256" pkgid="YES">00ff</checksum>
  <location href="Packages/hello-2.10-1.x86_64.rpm"/>
</package>
</metadata>
"#;

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Writes `repodata/repomd.xml` naming one primary file at `href` with the
/// checksum of `stored` (the file itself is not written) and, optionally,
/// an `open-size`.
fn write_repomd(root: &Path, href: &str, stored: &[u8], open_size: Option<u64>) {
    let open = open_size
        .map(|n| format!("    <open-size>{n}</open-size>\n"))
        .unwrap_or_default();
    let x = format!(
        "<?xml version=\"1.0\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\">\n  <data type=\"primary\">\n    <checksum type=\"sha256\">{}</checksum>\n    <location href=\"{href}\"/>\n    <size>{}</size>\n{open}  </data>\n</repomd>\n",
        sha256(stored),
        stored.len()
    );
    fs::create_dir_all(root.join("repodata")).unwrap();
    fs::write(root.join("repodata/repomd.xml"), x).unwrap();
}

fn source(url: &str) -> RepoSource {
    RepoSource {
        name: "hostile".into(),
        url: url.into(),
        priority: 1,
        cost: 1,
    }
}

fn load_err(url: &str) -> RepoError {
    load(&[source(url)], None).expect_err("the load must fail")
}

// ---- 2. Confinement --------------------------------------------------------

/// repomd.xml `href`s that lead out of the repository (`..`, an absolute
/// path, a `file://` URL, a symbolic link inside `repodata/`) to a host
/// file that is valid primary XML with the right checksum: refused, naming
/// repomd.xml and the path, instead of loaded.
#[test]
fn repomd_hrefs_outside_the_repository_are_refused() {
    let top = tempfile::tempdir().unwrap();
    let secret = top.path().join("secret.xml");
    fs::write(&secret, PRIMARY).unwrap();
    let repo = top.path().join("repo");
    fs::create_dir_all(repo.join("repodata")).unwrap();
    std::os::unix::fs::symlink(&secret, repo.join("repodata/link.xml")).unwrap();
    let abs = secret.display().to_string();
    for (href, why) in [
        ("../secret.xml".to_string(), "`..` component"),
        ("repodata/../../secret.xml".to_string(), "`..` component"),
        (abs.clone(), "absolute path"),
        (format!("file://{abs}"), "URL"),
        ("repodata/link.xml".to_string(), "symbolic link"),
    ] {
        write_repomd(&repo, &href, PRIMARY.as_bytes(), None);
        let err = load_err(repo.to_str().unwrap());
        let text = err.to_string();
        assert!(
            matches!(err, RepoError::Metadata { ref file, .. } if file.ends_with("repodata/repomd.xml"))
                && text.contains(&format!("refusing `{href}`"))
                && text.contains(why),
            "{href}: {text}"
        );
    }
}

/// The secret a hostile lock entry points at: its bytes, size (a number
/// that appears nowhere else) and checksum.
fn plant_secret(f: &Fixture) -> (Vec<u8>, String) {
    let secret = vec![b's'; 12_347];
    fs::write(f.path("secret"), &secret).unwrap();
    (secret.clone(), sha256(&secret))
}

/// Replaces location, checksum and size of basesystem in the lock.
fn edit_lock(f: &Fixture, location: &str, checksum: &str, size: &str) {
    edit_lock_of(f, "basesystem", location, checksum, size)
}

/// Replaces location, checksum and size of package `name` in the lock.
fn edit_lock_of(f: &Fixture, name: &str, location: &str, checksum: &str, size: &str) {
    let path = f.path("cernvm/cernvm.lock");
    let lock = fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut in_pkg = false;
    for line in lock.lines() {
        if line.starts_with("name = ") {
            in_pkg = line == format!("name = \"{name}\"");
        }
        let line = match line.split_once(" = ") {
            Some(("location", _)) if in_pkg => format!("location = \"{location}\""),
            Some(("checksum", _)) if in_pkg => format!("checksum = \"sha256:{checksum}\""),
            Some(("size", _)) if in_pkg => format!("size = {size}"),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert_ne!(out, lock);
    fs::write(&path, out).unwrap();
}

/// Every file under `dir`, read whole (the store is small).
fn any_file_equals(dir: &Path, bytes: &[u8]) -> bool {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .any(|e| fs::read(e.path()).map(|b| b == bytes).unwrap_or(false))
}

fn realize_fails(f: &Fixture) -> String {
    let spec = f.spec();
    let out = f.run(&[
        "realize",
        spec.to_str().unwrap(),
        "--branch",
        "production",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    String::from_utf8(out.stderr).unwrap()
}

/// A package `<location href>` (as the lock carries it) of `../../secret`,
/// the secret's absolute path or a `file://` URL, with the secret's
/// checksum: refused naming the package and the path; the host file is
/// not stored and its size is not told.
#[test]
fn package_locations_outside_the_repository_are_refused() {
    let f = Fixture::new();
    let (secret, sum) = plant_secret(&f);
    let abs = f.path("secret").display().to_string();
    for location in [
        "../../secret".to_string(),
        abs.clone(),
        format!("file://{abs}"),
    ] {
        edit_lock(&f, &location, &sum, "99999");
        let err = realize_fails(&f);
        assert!(
            err.contains("basesystem-10.0-4.el6.noarch")
                && err.contains(&format!("refusing `{location}`")),
            "{location}: {err}"
        );
        assert!(!err.contains("12347"), "the host file's size leaked: {err}");
        assert!(
            !any_file_equals(&f.store(), &secret),
            "the host file was stored"
        );
    }
}

// ---- 3. Bounded decompression and downloads ---------------------------------

/// Primary decompresses to more than its declared `open-size`: the
/// decompression stops there with an error naming the file.
#[test]
fn decompression_stops_at_the_declared_open_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = PRIMARY.replace(
        "</metadata>",
        &format!("{}</metadata>", " ".repeat(1 << 20)),
    );
    let stored = gz(big.as_bytes());
    fs::create_dir_all(dir.path().join("repodata")).unwrap();
    fs::write(dir.path().join("repodata/primary.xml.gz"), &stored).unwrap();
    write_repomd(
        dir.path(),
        "repodata/primary.xml.gz",
        &stored,
        Some(PRIMARY.len() as u64),
    );
    let err = load_err(dir.path().to_str().unwrap());
    let text = err.to_string();
    assert!(
        matches!(err, RepoError::Decompress { ref file, .. } if file.ends_with("primary.xml.gz"))
            && text.contains(&format!("more than {} bytes", PRIMARY.len())),
        "{text}"
    );
}

/// A gzip of zeros (a bomb without `open-size`): stopped at the bound on a
/// run without markup, naming the file, instead of buffered by the parser.
#[test]
fn a_zero_bomb_stops_at_the_markup_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b"<?xml version=\"1.0\"?>\n<metadata>").unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        e.write_all(&zeros).unwrap();
    }
    let stored = e.finish().unwrap();
    fs::create_dir_all(dir.path().join("repodata")).unwrap();
    fs::write(dir.path().join("repodata/primary.xml.gz"), &stored).unwrap();
    write_repomd(dir.path(), "repodata/primary.xml.gz", &stored, None);
    let err = load_err(dir.path().to_str().unwrap());
    let text = err.to_string();
    assert!(
        matches!(err, RepoError::Decompress { ref file, .. } if file.ends_with("primary.xml.gz"))
            && text.contains("without markup"),
        "{text}"
    );
}

/// A declared package size of 2^64-1 with `href` `/dev/zero`, and the same
/// size with a real file: both refused before any download.
#[test]
fn huge_declared_package_sizes_fail_fast() {
    let f = Fixture::new();
    edit_lock(&f, "/dev/zero", &"0".repeat(64), &u64::MAX.to_string());
    let err = realize_fails(&f);
    assert!(
        err.contains("basesystem-10.0-4.el6.noarch") && err.contains("refusing `/dev/zero`"),
        "{err}"
    );
    edit_lock(
        &f,
        "Packages/basesystem-10.0-4.el6.noarch.rpm",
        &"0".repeat(64),
        &u64::MAX.to_string(),
    );
    let err = realize_fails(&f);
    assert!(
        err.contains("basesystem-10.0-4.el6.noarch")
            && err.contains("more than the 17179869184 bytes a package may have"),
        "{err}"
    );
}

// ---- 3 and 4. HTTP: body limit, deadlines, minimum rate ---------------------

/// A loopback server answering every connection with `respond` (given the
/// stream after the request headers were read), in threads of its own.
fn serve(respond: fn(&mut TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                respond(&mut conn);
            });
        }
    });
    format!("http://127.0.0.1:{port}/repo")
}

/// repomd.xml of endless whitespace: cut off at the repomd.xml bound.
#[test]
fn repomd_over_http_has_a_body_limit() {
    let url = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<repomd>");
        let chunk = vec![b' '; 1 << 16];
        while s.write_all(&chunk).is_ok() {}
    });
    let err = load_err(&url);
    let text = err.to_string();
    assert!(
        matches!(err, RepoError::TooLarge { .. })
            && text.contains("repodata/repomd.xml is larger than 16777216 bytes"),
        "{text}"
    );
}

/// A server that accepts and never answers: the first-byte deadline.
#[test]
fn a_silent_server_misses_the_first_byte_deadline() {
    let url = serve(|_| std::thread::sleep(Duration::from_secs(120)));
    let text = load_err(&url).to_string();
    assert!(
        text.contains("repodata/repomd.xml") && text.contains("no response within 10 s"),
        "{text}"
    );
}

/// A listening socket whose accept queue is full (backlog 0, one pending
/// connection, never accepted): the kernel drops further SYNs, so a
/// connection never completes and the connect deadline must end it.
#[test]
fn a_full_accept_queue_misses_the_connect_deadline() {
    // SAFETY: plain socket calls on a descriptor this test owns; the
    // address structure is fully initialised before use.
    let (fd, port) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, (&raw const addr).cast(), len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut len = len;
        assert_eq!(libc::getsockname(fd, (&raw mut addr).cast(), &mut len), 0);
        (fd, u16::from_be(addr.sin_port))
    };
    // Fill the queue; these connections stay pending for the test's life.
    let mut pending = Vec::new();
    for _ in 0..4 {
        let a = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if let Ok(s) = TcpStream::connect_timeout(&a, Duration::from_millis(300)) {
            pending.push(s);
        }
    }
    let text = load_err(&format!("http://127.0.0.1:{port}/repo")).to_string();
    assert!(
        text.contains("repodata/repomd.xml") && text.contains("no connection within 10 s"),
        "{text}"
    );
    drop(pending);
    // SAFETY: `fd` is the listening socket opened above, closed once.
    unsafe { libc::close(fd) };
}

/// A server that sends its headers, then one byte every 5 s: below the
/// minimum rate.
#[test]
fn a_dripping_server_is_cut_off() {
    let url = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        for _ in 0..100 {
            if s.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    });
    let text = load_err(&url).to_string();
    assert!(
        text.contains("repodata/repomd.xml")
            && text.contains("transfer too slow")
            && text.contains("below the minimum of 1024 bytes/s"),
        "{text}"
    );
}

// ---- 5. RPM header bounds ----------------------------------------------------

const BASH: &str = "bash-4.1.2-29.el6.x86_64.rpm";

/// Offsets of the signature header and the main header of an RPM.
fn header_offsets(rpm: &[u8]) -> (usize, usize) {
    let be = |at: usize| u32::from_be_bytes(rpm[at..at + 4].try_into().unwrap()) as usize;
    let sig = 96;
    let end = sig + 16 + be(sig + 8) * 16 + be(sig + 12);
    (sig, end.div_ceil(8) * 8)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Crafted versions of a real package (bash from the bundled repository),
/// each with one header number edited, and the message each must give.
fn crafted_rpms() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let real = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/repos/sl6/Packages")
            .join(BASH),
    )
    .unwrap();
    let (sig, hdr) = header_offsets(&real);
    let be = |at: usize| u32::from_be_bytes(real[at..at + 4].try_into().unwrap());
    let data_len = be(hdr + 12);
    let count = be(hdr + 8) as usize;
    let mut out = Vec::new();
    let mut b = real.clone();
    put32(&mut b, hdr + 16 + 8, data_len + 1000);
    out.push(("offset past the end", b, "index entry 0 (tag 63): offset"));
    let mut b = real.clone();
    put32(&mut b, hdr + 8, u32::MAX);
    out.push(("entry count 0xFFFFFFFF", b, "4294967295 index entries"));
    let mut b = real.clone();
    put32(&mut b, sig + 8, u32::MAX);
    out.push((
        "signature entry count 0xFFFFFFFF",
        b,
        "signature header: 4294967295 index entries",
    ));
    let mut b = real.clone();
    put32(&mut b, hdr + 12, 0x0fff_0000);
    out.push(("data length past the file", b, "header: truncated"));
    // The first INT32 entry claims a billion integers.
    let int32 = (0..count)
        .find(|i| be(hdr + 16 + i * 16 + 4) == 4)
        .expect("bash's header has an INT32 entry");
    let mut b = real.clone();
    put32(&mut b, hdr + 16 + int32 * 16 + 12, 0x4000_0000);
    out.push(("a billion integers", b, "1073741824 items of 4 bytes"));
    out
}

/// Each crafted RPM fails extraction with an error naming the file and
/// the broken number: no panic inside the rpm crate, no huge allocation,
/// nothing stored.
#[test]
fn crafted_rpm_headers_are_refused_by_extract() {
    use cvmbuild::builders::extract::{extract, ExtractErrorKind};
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes, want) in crafted_rpms() {
        let path = dir.path().join(BASH);
        fs::write(&path, &bytes).unwrap();
        let store = cvmbuild::store::MemStore::new();
        let err = extract(&store, &path).expect_err(what);
        let msg = err.to_string();
        assert!(
            matches!(*err.kind, ExtractErrorKind::Structure(_))
                && msg.contains(&path.display().to_string())
                && msg.contains("malformed RPM")
                && msg.contains(want),
            "{what}: {msg}"
        );
        assert_eq!((store.blob_count(), store.tree_count()), (0, 0), "{what}");
    }
}

/// In a realize, a crafted package (checksum matching, as a mirror that
/// recomputed it would serve) fails its extract naming the package; the
/// run ends instead of hanging on a panicked worker.
#[test]
fn a_crafted_rpm_fails_its_realize_naming_the_package() {
    let f = Fixture::new();
    let (_, bytes, _) = crafted_rpms().remove(0);
    fs::write(f.path("repos/sl6/Packages").join(BASH), &bytes).unwrap();
    let location = format!("Packages/{BASH}");
    edit_lock_of(
        &f,
        "bash",
        &location,
        &sha256(&bytes),
        &bytes.len().to_string(),
    );
    let err = realize_fails(&f);
    assert!(
        err.contains("extract:bash-4.1.2-29.el6.x86_64 from repository `sl6`")
            && err.contains("malformed RPM")
            && err.contains("offset"),
        "{err}"
    );
}

/// 1000 copies of bash with 1 to 4 header bytes changed (mostly in the
/// signature and header indexes, where the numbers are): extraction fails
/// or succeeds, but never panics. Without the pre-validation about 7% of
/// them panic inside the rpm crate.
#[test]
fn mutated_rpm_headers_never_panic() {
    use cvmbuild::builders::extract::extract;
    let real = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/repos/sl6/Packages")
            .join(BASH),
    )
    .unwrap();
    let (_, hdr) = header_offsets(&real);
    let be = |at: usize| u32::from_be_bytes(real[at..at + 4].try_into().unwrap()) as usize;
    let end = hdr + 16 + be(hdr + 8) * 16 + be(hdr + 12);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.rpm");
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut panics = Vec::new();
    for i in 0..1000 {
        let mut b = real.clone();
        for _ in 0..1 + rnd() % 4 {
            // Mostly the index region, where the numbers are.
            let at = if rnd() % 4 == 0 {
                (rnd() as usize) % end
            } else {
                96 + (rnd() as usize) % (hdr + 16 + be(hdr + 8) * 16 - 96)
            };
            match rnd() % 3 {
                0 => b[at] ^= 1 << (rnd() % 8),
                1 => b[at] = 0xff,
                _ => b[at] = rnd() as u8,
            }
        }
        fs::write(&path, &b).unwrap();
        let store = cvmbuild::store::MemStore::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extract(&store, &path)));
        if r.is_err() {
            panics.push(i);
        }
    }
    assert!(panics.is_empty(), "mutants {panics:?} panicked");
}

// ---- 6. Language bounds ------------------------------------------------------

/// Loads `main` (with `files` beside it) in a thread, so that a spec that
/// blocks or runs for minutes fails the test instead of hanging it.
fn load_spec(main: &str, files: &[(String, String)]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    load_spec_in(dir, main)
}

fn load_spec_in(dir: tempfile::TempDir, main: &str) -> (String, String) {
    let path = dir.path().join("main.cvm");
    fs::write(&path, main).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = cvmbuild::lang::load(&path).map(|_| ()).map_err(|e| {
            let mut out = String::new();
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .render_report(&mut out, &e)
                .unwrap();
            (e.code_str().to_string(), out)
        });
        let _ = tx.send(r);
        drop(dir);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Err(e)) => e,
        Ok(Ok(())) => panic!("the spec loaded"),
        Err(_) => panic!("loading the spec did not finish within 60 s"),
    }
}

/// 40 doubling `let`s: a spec error at the bound, not an allocation of
/// 2^40 values.
#[test]
fn doubling_lets_hit_the_value_size_limit() {
    let mut main = String::from("let a0 = [\"x\"]\n");
    for i in 1..=40 {
        main.push_str(&format!("let a{i} = a{} ++ a{}\n", i - 1, i - 1));
    }
    let (code, text) = load_spec(&main, &[]);
    assert_eq!(code, "cvm::limit", "{text}");
    assert!(text.contains("larger than the limit of 1048576"), "{text}");
    // And strings double to the string limit.
    let mut main = String::from("let s0 = \"xxxxxxxx\"\n");
    for i in 1..=40 {
        main.push_str(&format!("let s{i} = \"${{s{}}}${{s{}}}\"\n", i - 1, i - 1));
    }
    let (code, text) = load_spec(&main, &[]);
    assert_eq!(code, "cvm::limit", "{text}");
    assert!(
        text.contains("longer than the limit of 262144 bytes"),
        "{text}"
    );
}

/// 30 files, each concatenating two imports of the one before.
#[test]
fn an_import_diamond_hits_the_value_size_limit() {
    let mut files = vec![("f0.cvm".to_string(), "[\"x\", \"y\"]\n".to_string())];
    for i in 1..=30 {
        files.push((
            format!("f{i}.cvm"),
            format!(
                "let a = import \"f{p}.cvm\"\nlet b = import \"f{p}.cvm\"\na ++ b\n",
                p = i - 1
            ),
        ));
    }
    let (code, text) = load_spec("let top = import \"f30.cvm\"\n", &files);
    assert_eq!(code, "cvm::limit", "{text}");
    assert!(text.contains("larger than the limit"), "{text}");
}

/// `--` of a list of a million names with itself: a trillion comparisons,
/// refused at the step limit.
#[test]
fn a_quadratic_difference_hits_the_step_limit() {
    let mut main = String::from("let a0 = [\"x\"]\n");
    for i in 1..=18 {
        main.push_str(&format!("let a{i} = a{} ++ a{}\n", i - 1, i - 1));
    }
    main.push_str("let d = a18 -- a18\n");
    let (code, text) = load_spec(&main, &[]);
    assert_eq!(code, "cvm::limit", "{text}");
    assert!(text.contains("more than 50000000 steps"), "{text}");
}

/// A FIFO as an import is refused by type (opening it would block), and so
/// are a FIFO and a device as path literals.
#[test]
fn fifos_and_devices_are_refused_never_read() {
    let mkfifo = |dir: &Path| {
        let st = std::process::Command::new("mkfifo")
            .arg(dir.join("pipe.cvm"))
            .status()
            .expect("mkfifo (coreutils) is installed");
        assert!(st.success());
    };
    let dir = tempfile::tempdir().unwrap();
    mkfifo(dir.path());
    let (code, text) = load_spec_in(dir, "let x = import \"pipe.cvm\"\n");
    assert_eq!(code, "cvm::io", "{text}");
    assert!(
        text.contains("cannot import `pipe.cvm`: it is a FIFO"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    mkfifo(dir.path());
    let (code, text) = load_spec_in(dir, "let x = ./pipe.cvm\n");
    assert_eq!(code, "cvm::path-missing", "{text}");
    assert!(text.contains("is a FIFO"), "{text}");

    let up = "../".repeat(30);
    let (code, text) = load_spec(&format!("let x = import \"{up}dev/null\"\n"), &[]);
    assert_eq!(code, "cvm::io", "{text}");
    assert!(text.contains("is a device"), "{text}");
    let (code, text) = load_spec(&format!("let x = {up}dev/null\n"), &[]);
    assert_eq!(code, "cvm::path-missing", "{text}");
    assert!(text.contains("is a device"), "{text}");
}

// ---- 7. The publisher checks what it builds on --------------------------------

mod publisher {
    use super::*;
    use cvmbuild::cvmfs::{self, Options, Request};
    use cvmbuild::store::{Entry, Hash, MemStore, Node, Store, Tree};
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};

    const FQRN: &str = "trust.cern.ch";

    fn tree(s: &MemStore, content: &[u8]) -> Hash {
        let b = s.put_blob(&mut &content[..]).unwrap();
        let file = Entry::root_owned(
            "bash",
            Node::File {
                size: b.size,
                blob: Some(b.hash),
            },
            0o755,
        );
        let bin = s.put_tree(&Tree::new(vec![file]).unwrap()).unwrap();
        let usr = Entry::root_owned("usr", Node::Directory { tree: bin }, 0o755);
        s.put_tree(&Tree::new(vec![usr]).unwrap()).unwrap()
    }

    fn request(tag: &str) -> Request {
        Request {
            fqrn: FQRN.into(),
            nested: vec!["/usr".into()],
            tag: tag.into(),
            branch: "prod".into(),
            epoch: 1_400_000_000,
            extra: vec![],
        }
    }

    fn options(root: &Path) -> Options {
        Options {
            repo_dir: root.join("srv"),
            keys_dir: root.join("keys"),
            now: 1_700_000_000,
            whitelist_days: 30,
        }
    }

    /// Body, hash line and signature of `.cvmfspublished`.
    fn split(m: &[u8]) -> (String, Vec<u8>) {
        let at = m.windows(4).position(|w| w == b"\n--\n").unwrap() + 1;
        (
            String::from_utf8(m[..at].to_vec()).unwrap(),
            m[at..].to_vec(),
        )
    }

    /// The manifest with `body`, its true hash line, and a signature made
    /// with the repository's own key (what a buggy tool holding the key
    /// would write).
    fn resign(root: &Path, body: &str) -> Vec<u8> {
        let pem = fs::read_to_string(root.join(format!("keys/{FQRN}.key"))).unwrap();
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        let hash = hex::encode(sha1::Sha1::digest(body.as_bytes()));
        let sig = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key).sign(hash.as_bytes());
        let mut out = format!("{body}--\n{hash}\n").into_bytes();
        out.extend_from_slice(&sig.to_bytes());
        out
    }

    /// The nested catalog of /usr among the repository's objects.
    fn nested_catalog(repo: &Path) -> (String, u64) {
        for e in walkdir::WalkDir::new(repo.join("data")).min_depth(2) {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_suffix('C') else {
                continue;
            };
            let prefix = e
                .path()
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let plain = cvmfs::inflate(&fs::read(e.path()).unwrap()).unwrap();
            let db = tempfile::NamedTempFile::new().unwrap();
            fs::write(db.path(), &plain).unwrap();
            let c = rusqlite::Connection::open(db.path()).unwrap();
            let root: Option<String> = c
                .query_row(
                    "SELECT value FROM properties WHERE key = 'root_prefix'",
                    [],
                    |r| r.get(0),
                )
                .ok();
            if root.as_deref() == Some("/usr") {
                return (format!("{prefix}{rest}"), plain.len() as u64);
            }
        }
        panic!("no nested catalog of /usr");
    }

    fn field(body: &str, k: char) -> String {
        body.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .to_string()
    }

    fn set_field(body: &str, k: char, v: &str) -> String {
        body.lines()
            .map(|l| {
                if l.starts_with(k) {
                    format!("{k}{v}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    /// Publishes two revisions, damages a copy with `damage`, and returns
    /// the error of publishing a third revision on it (and checks that the
    /// damaged manifest was not replaced).
    fn republish_err(damage: impl Fn(&Path)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let s = MemStore::new();
        let o = options(dir.path());
        cvmfs::publish(&s, &tree(&s, b"bash 1"), &request("os-1"), &o).unwrap();
        cvmfs::publish(&s, &tree(&s, b"bash 2"), &request("os-2"), &o).unwrap();
        damage(dir.path());
        let before = fs::read(o.repo_dir.join(".cvmfspublished")).ok();
        let e = cvmfs::publish(&s, &tree(&s, b"bash 3"), &request("os-3"), &o)
            .expect_err("publishing on a damaged repository must fail");
        assert_eq!(fs::read(o.repo_dir.join(".cvmfspublished")).ok(), before);
        e.to_string()
    }

    fn manifest(root: &Path) -> std::path::PathBuf {
        root.join("srv/.cvmfspublished")
    }

    #[test]
    fn an_intact_repository_is_published_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = MemStore::new();
        let o = options(dir.path());
        for (i, tag) in ["os-1", "os-2", "os-3"].iter().enumerate() {
            let p = cvmfs::publish(&s, &tree(&s, tag.as_bytes()), &request(tag), &o).unwrap();
            assert_eq!(p.revision, i as u64 + 1);
        }
        cvmfs::promote(FQRN, "os-1", "prod", false, &o).unwrap();
    }

    #[test]
    fn a_flipped_signature_byte_is_refused() {
        let e = republish_err(|root| {
            let mut m = fs::read(manifest(root)).unwrap();
            let last = m.len() - 1;
            m[last] ^= 1;
            fs::write(manifest(root), m).unwrap();
        });
        assert!(
            e.starts_with("repository damaged: ")
                && e.contains(
                    ".cvmfspublished: the signature does not verify with the repository key"
                ),
            "{e}"
        );
    }

    #[test]
    fn an_edited_revision_is_refused() {
        // Edited in place: the hash line no longer matches.
        let e = republish_err(|root| {
            let m = fs::read(manifest(root)).unwrap();
            let (body, sig) = split(&m);
            let mut out = set_field(&body, 'S', "99").into_bytes();
            out.extend_from_slice(&sig);
            fs::write(manifest(root), out).unwrap();
        });
        assert!(e.contains("is not the SHA-1 of its body"), "{e}");
        // With a recomputed hash line: the signature does not match.
        let e = republish_err(|root| {
            let m = fs::read(manifest(root)).unwrap();
            let (body, sig) = split(&m);
            let body = set_field(&body, 'S', "99");
            let hash = hex::encode(sha1::Sha1::digest(body.as_bytes()));
            let old_hash_end = sig.iter().skip(3).position(|&b| b == b'\n').unwrap() + 4;
            let mut out = format!("{body}--\n{hash}\n").into_bytes();
            out.extend_from_slice(&sig[old_hash_end..]);
            fs::write(manifest(root), out).unwrap();
        });
        assert!(e.contains("the signature does not verify"), "{e}");
    }

    #[test]
    fn a_swapped_root_catalog_is_refused() {
        // Even correctly signed (a tool with the key wrote it), a manifest
        // whose `C` is the nested catalog of /usr is not built upon.
        let e = republish_err(|root| {
            let (nested, size) = nested_catalog(&root.join("srv"));
            let m = fs::read(manifest(root)).unwrap();
            let (body, _) = split(&m);
            assert_ne!(field(&body, 'C'), nested);
            let body = set_field(&set_field(&body, 'C', &nested), 'B', &size.to_string());
            fs::write(manifest(root), resign(root, &body)).unwrap();
        });
        assert!(e.contains("is the nested catalog of /usr"), "{e}");
    }

    #[test]
    fn a_tampered_root_catalog_object_is_refused() {
        let e = republish_err(|root| {
            let m = fs::read(manifest(root)).unwrap();
            let c = field(&split(&m).0, 'C');
            let p = root
                .join("srv/data")
                .join(&c[..2])
                .join(format!("{}C", &c[2..]));
            let mut b = fs::read(&p).unwrap();
            b[10] ^= 1;
            fs::write(&p, b).unwrap();
        });
        assert!(e.contains("root catalog") && e.contains("tampered"), "{e}");
    }

    #[test]
    fn a_damaged_whitelist_is_refused() {
        let e = republish_err(|root| {
            let p = root.join("srv/.cvmfswhitelist");
            let mut w = fs::read(&p).unwrap();
            let last = w.len() - 1;
            w[last] ^= 1;
            fs::write(&p, w).unwrap();
        });
        assert!(
            e.contains(".cvmfswhitelist: the signature does not verify with the master key"),
            "{e}"
        );
    }

    #[test]
    fn a_deleted_manifest_is_not_a_fresh_start() {
        let e = republish_err(|root| fs::remove_file(manifest(root)).unwrap());
        assert!(
            e.contains("has no .cvmfspublished") && e.contains("history object"),
            "{e}"
        );
    }
}

// ---- 8. Offline lock checks ---------------------------------------------------

/// `eval --offline --locked` with a spec whose shopping list changed under
/// the lock fails as the online `--locked` does; so does plain `--offline`
/// (it cannot solve again).
#[test]
fn offline_locked_fails_when_the_spec_changed() {
    let f = Fixture::new();
    let spec = f.spec();
    let s = spec.to_str().unwrap();
    let ok = f.run(&["eval", s, "--offline", "--locked"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let body = fs::read_to_string(&spec).unwrap();
    let edited = body.replacen("[\"*-debuginfo\"]", "[\"*-debuginfo\", \"*-devel\"]", 1);
    assert_ne!(edited, body, "the example spec excludes debuginfo");
    fs::write(&spec, edited).unwrap();
    let out = f.run(&["eval", s, "--offline", "--locked"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err.contains("eval::locked") && err.contains("out of date") && err.contains("--locked"),
        "{err}"
    );
    let out = f.run(&["eval", s, "--offline"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        err.contains("eval::offline") && err.contains("out of date"),
        "{err}"
    );
}

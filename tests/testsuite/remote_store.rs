//! A binary cache on a real WebDAV server (nginx on loopback, Debian's
//! nginx-light): machine A builds the bundled example and pushes it with
//! `cvmbuild copy`; machine B, with a fresh store, substitutes everything
//! and builds nothing. A tampered object, a record signed by an untrusted
//! key, an unsigned record and a record changed after signing are each
//! refused with a warning naming the remote and the derivation, and built
//! locally instead; the local store always verifies clean. Also: a
//! one-package change substituting the unchanged parts, `copy --from`, a
//! remote that vanishes mid-download, a full remote disk, and the cache
//! on a second host (a network namespace) instead of loopback.

use crate::support::fixture::{assert_verify_clean, record_signers, text, Fixture};
use crate::support::nginx::Nginx;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

const ROOTS: &[&str] = &["--root", "os-tree", "--root", "meta-rpm"];

/// An nginx serving (and accepting WebDAV writes into) `dir/cache`.
fn cache_server(dir: &Path) -> (Nginx, PathBuf, String) {
    let root = dir.join("cache");
    fs::create_dir_all(&root).unwrap();
    let n = Nginx::start_with(
        &root,
        &dir.join("nginx"),
        "dav_methods PUT MKCOL; create_full_put_path on; client_max_body_size 0;",
    );
    let url = format!("http://127.0.0.1:{}/", n.port);
    (n, root, url)
}

/// `realize … --json` on one machine: its one branch summary and stderr.
fn realize(m: &Fixture, extra: &[&str]) -> (Value, String) {
    let mut args = ROOTS.to_vec();
    args.push("--json");
    args.extend_from_slice(extra);
    let (stdout, stderr) = m.realize(&args);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    (v[0].clone(), stderr)
}

fn keygen(m: &Fixture, name: &str, file: &Path) {
    let out = m.run(&["key", "generate", name, "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

fn substitute_args<'a>(url: &'a str, key: &'a Path) -> [&'a str; 4] {
    ["--substituter", url, "--trusted-key", key.to_str().unwrap()]
}

/// Machine A: the example built, a key pair, and both outputs pushed.
struct Pushed {
    a: Fixture,
    summary: Value,
    pubkey: PathBuf,
}

/// With `extra` (`--no-inputs`) added to every `copy`.
fn push(url: &str, extra: &[&str]) -> Pushed {
    let a = Fixture::new();
    let (summary, _) = realize(&a, &[]);
    assert!(summary["built"].as_u64().unwrap() > 10, "{summary}");
    let key = a.path("farm-a.key");
    keygen(&a, "farm-a", &key);
    let pubkey = a.path("farm-a.key.pub");
    let public = fs::read_to_string(&pubkey).unwrap();
    assert!(public.starts_with("farm-a:"), "{public}");
    let secret = fs::read_to_string(&key).unwrap();
    assert_ne!(public, secret);
    let ids: Vec<String> = ["os-tree", "meta-rpm"]
        .iter()
        .map(|r| summary["roots"][r].as_str().unwrap().to_string())
        .collect();
    let copy = |ids: &[String]| -> Value {
        let mut args = vec![
            "copy",
            "--to",
            url,
            "--sign-key",
            key.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        args.extend(ids.iter().map(String::as_str));
        let out = a.run(&args);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = copy(&ids);
    assert!(first["sent_objects"].as_u64().unwrap() > 10, "{first}");
    assert!(first["sent_bytes"].as_u64().unwrap() > 10_000, "{first}");
    // Again: every record is there already, signed by this key, so
    // nothing is sent.
    let second = copy(&ids);
    assert_eq!(second["sent_objects"], 0, "{second}");
    assert_eq!(second["sent_bytes"], 0, "{second}");
    assert!(second["present"].as_u64().unwrap() >= 2, "{second}");
    Pushed { a, summary, pubkey }
}

fn record_path(cache: &Path, summary: &Value, root: &str) -> PathBuf {
    let id = summary["roots"][root].as_str().unwrap();
    cache.join("outputs").join(format!("{id}.json"))
}

#[test]
fn a_second_machine_substitutes_everything_and_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (nginx, cache, url) = cache_server(dir.path());
    let p = push(&url, &[]);
    // The layout of store-layout.md 2.11, written by WebDAV PUT.
    assert!(cache.join("cvmbuild-cache").is_file());
    let os_tree = p.summary["outputs"]["os-tree"]["root"]["hash"]
        .as_str()
        .unwrap();
    assert!(cache
        .join("trees")
        .join(&os_tree[..2])
        .join(os_tree)
        .is_file());
    assert!(record_path(&cache, &p.summary, "os-tree").is_file());

    let b = Fixture::new();
    let (sb, stderr) = realize(&b, &substitute_args(&url, &p.pubkey));
    assert_eq!(sb["built"], 0, "{sb}\n{stderr}");
    assert_eq!(sb["substituted"], 2, "{sb}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // What was fetched: the objects A sent (and the records, the marker).
    let got = &sb["substituters"][0];
    assert_eq!(got["url"], url.trim_end_matches('/'));
    assert!(got["bytes"].as_u64().unwrap() > 10_000, "{got}");
    assert_eq!(sb["outputs"], p.summary["outputs"]);
    assert_eq!(sb["roots"], p.summary["roots"]);
    assert_verify_clean(&b.store());
    // The tree really is in B's store: export it and compare with A's.
    for m in [&p.a, &b] {
        let out = m.run(&[
            "realize",
            m.spec().to_str().unwrap(),
            "--branch",
            "production",
            "--offline",
            "--root",
            "os-tree",
            "--out",
            m.path("os").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let diff = std::process::Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(p.a.path("os"))
        .arg(b.path("os"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    // Reads were plain GETs and HEADs; B wrote nothing to the cache.
    let log = nginx.log("access.log");
    assert!(log.contains("\"GET /outputs/"), "{log}");
    assert!(!log.lines().any(|l| l.contains("\"DELETE ")), "{log}");

    // The environment variables do the same.
    let c = Fixture::new();
    let spec = c.spec();
    let mut args = vec![
        "realize",
        spec.to_str().unwrap(),
        "--branch",
        "production",
        "--offline",
        "--json",
    ];
    args.extend_from_slice(ROOTS);
    let out = crate::support::cvmbuild(c.dir.path())
        .arg("--store")
        .arg(c.store())
        .args(&args)
        .env("CVMBUILD_SUBSTITUTERS", &url)
        .env("CVMBUILD_TRUSTED_KEYS", &p.pubkey)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["built"], 0, "{v}");
    assert_eq!(v[0]["outputs"], p.summary["outputs"]);
}

/// Refusals: each a warning naming the remote and the derivation, then a
/// local build with the same result, and a store that verifies clean.
#[test]
fn untrusted_unsigned_and_damaged_substitutes_are_refused_and_built_locally() {
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, cache, url) = cache_server(dir.path());
    // Only the two records: refusing them must mean building everything.
    let p = push(&url, &["--no-inputs"]);
    let built_all = p.summary["built"].as_u64().unwrap();

    // A record signed by a key B does not trust.
    let b = Fixture::new();
    let other = b.path("other.key");
    keygen(&b, "other", &other);
    let other_pub = b.path("other.key.pub");
    let (sb, stderr) = realize(&b, &substitute_args(&url, &other_pub));
    assert_eq!(sb["built"].as_u64().unwrap(), built_all, "{sb}");
    assert_eq!(sb["substituted"], 0);
    assert_eq!(sb["outputs"], p.summary["outputs"]);
    let os_id = p.summary["roots"]["os-tree"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("remote {}", url.trim_end_matches('/')))
            && stderr.contains(&format!(
                "output record of {os_id} is signed only by untrusted keys (farm-a)"
            ))
            && stderr.contains("building it locally"),
        "{stderr}"
    );
    assert_verify_clean(&b.store());

    // A damaged object (the meta RPM blob), an unsigned record (os-tree).
    let meta = p.summary["outputs"]["meta-rpm"]["root"]["hash"]
        .as_str()
        .unwrap();
    let blob = cache.join("blobs").join(&meta[..2]).join(meta);
    let meta_bytes = fs::read(&blob).unwrap();
    let mut bytes = meta_bytes.clone();
    bytes[100] ^= 1;
    fs::write(&blob, bytes).unwrap();
    let rec = record_path(&cache, &p.summary, "os-tree");
    let mut r: Value = serde_json::from_str(&fs::read_to_string(&rec).unwrap()).unwrap();
    let signed = r.clone();
    let signed_record = r.clone();
    r["signatures"] = Value::Array(vec![]);
    fs::write(&rec, serde_json::to_vec(&r).unwrap()).unwrap();
    let c = Fixture::new();
    let (sc, stderr) = realize(&c, &substitute_args(&url, &p.pubkey));
    let meta_id = p.summary["roots"]["meta-rpm"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("output record of {os_id} is unsigned")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("blob {meta} is damaged: content hashes to")),
        "{stderr}"
    );
    assert!(stderr.contains(&meta_id[..12]), "{stderr}");
    assert_eq!(sc["substituted"], 0, "{sc}");
    assert_eq!(sc["built"].as_u64().unwrap(), built_all, "{sc}");
    assert_eq!(sc["outputs"], p.summary["outputs"]);
    assert_verify_clean(&c.store());

    // A record changed after signing: its signature no longer verifies.
    let mut r = signed;
    r["output"]["meta"]["injected"] = Value::String("yes".into());
    fs::write(&rec, serde_json::to_vec(&r).unwrap()).unwrap();
    let d = Fixture::new();
    let (sd, stderr) = realize(&d, &substitute_args(&url, &p.pubkey));
    assert!(
        stderr.contains(&format!(
            "the signature by farm-a on the output record of {os_id} does not verify"
        )),
        "{stderr}"
    );
    assert_eq!(sd["substituted"], 0, "{sd}");
    assert_eq!(sd["outputs"], p.summary["outputs"]);
    assert_verify_clean(&d.store());

    // Records and the meta RPM as they were; a file of the OS tree cut
    // short on the remote (a truncated upload).
    fs::write(&rec, serde_json::to_vec(&signed_record).unwrap()).unwrap();
    fs::write(&blob, &meta_bytes).unwrap();
    let exported = p.a.path("os-export");
    let out = p.a.run(&[
        "realize",
        p.a.spec().to_str().unwrap(),
        "--branch",
        "production",
        "--offline",
        "--root",
        "os-tree",
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let file = walkdir(&exported)
        .into_iter()
        .filter(|(_, len)| *len > 16)
        .max_by_key(|(_, len)| *len)
        .expect("a file of the OS tree");
    let h = cvmbuild::store::Hash::of(&fs::read(&file.0).unwrap()).to_hex();
    let cut = cache.join("blobs").join(&h[..2]).join(&h);
    let whole = fs::read(&cut).unwrap();
    fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let e = Fixture::new();
    let (se, stderr) = realize(&e, &substitute_args(&url, &p.pubkey));
    assert!(
        stderr.contains(&format!(
            "blob {h} is damaged: {} bytes received, {} expected (truncated?)",
            whole.len() / 2,
            whole.len()
        )),
        "{stderr}"
    );
    assert_eq!(se["substituted"], 1, "{se}"); // meta-rpm
    assert_eq!(se["outputs"], p.summary["outputs"]);
    assert_verify_clean(&e.store());

    // A tree object that does not hash to its name.
    fs::write(&cut, &whole).unwrap();
    let os_tree = p.summary["outputs"]["os-tree"]["root"]["hash"]
        .as_str()
        .unwrap();
    let tree = cache.join("trees").join(&os_tree[..2]).join(os_tree);
    let mut t = fs::read(&tree).unwrap();
    let last = t.len() - 1;
    t[last] ^= 0x20;
    fs::write(&tree, &t).unwrap();
    let f = Fixture::new();
    let (sf, stderr) = realize(&f, &substitute_args(&url, &p.pubkey));
    assert!(
        stderr.contains(&format!("tree {os_tree} is damaged: content hashes to")),
        "{stderr}"
    );
    assert_eq!(sf["substituted"], 1, "{sf}");
    assert_eq!(sf["outputs"], p.summary["outputs"]);
    assert_verify_clean(&f.store());
}

/// Regular files under `dir` with their sizes.
fn walkdir(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        if m.is_dir() {
            out.extend(walkdir(&e.path()));
        } else if m.is_file() {
            out.push((e.path(), m.len()));
        }
    }
    out
}

#[test]
fn bad_keys_and_urls_are_clear_errors() {
    let m = Fixture::new();
    let bad = m.path("bad.pub");
    fs::write(&bad, "farm:notbase64!!\n").unwrap();
    let spec = m.spec();
    let out = m.run(&[
        "realize",
        spec.to_str().unwrap(),
        "--offline",
        "--branch",
        "production",
        "--substituter",
        "http://127.0.0.1:9/",
        "--trusted-key",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("bad.pub: not base64"), "{}", text(&out));
    // A substituter without any trusted key is refused up front.
    let out = m.run(&[
        "realize",
        spec.to_str().unwrap(),
        "--offline",
        "--branch",
        "production",
        "--substituter",
        "http://127.0.0.1:9/",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("needs at least one trusted key"),
        "{}",
        text(&out)
    );
    // A key file is never overwritten.
    let k = m.path("k");
    keygen(&m, "k", &k);
    let out = m.run(&["key", "generate", "k", "--out", k.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    // A server that is not a cache: warned about, built locally.
    let dir = tempfile::tempdir().unwrap();
    let (_n, _cache, url) = cache_server(dir.path());
    let (s, stderr) = realize(&m, &substitute_args(&url, &m.path("k.pub")));
    assert!(s["built"].as_u64().unwrap() > 10, "{s}");
    assert!(
        stderr.contains("is not a cvmbuild binary cache"),
        "{stderr}"
    );
    assert_verify_clean(&m.store());
}

/// Two machines pushing the same outputs at the same time both succeed,
/// and what they left substitutes cleanly.
#[test]
fn two_machines_pushing_the_same_outputs_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, _cache, url) = cache_server(dir.path());
    let key = dir.path().join("farm.key");
    let machines: Vec<Fixture> = (0..2).map(|_| Fixture::new()).collect();
    keygen(&machines[0], "farm", &key);
    let mut ids = Vec::new();
    for m in &machines {
        let (s, _) = realize(m, &[]);
        ids.push([
            s["roots"]["os-tree"].as_str().unwrap().to_string(),
            s["roots"]["meta-rpm"].as_str().unwrap().to_string(),
        ]);
    }
    assert_eq!(ids[0], ids[1]);
    let children: Vec<_> = machines
        .iter()
        .map(|m| {
            crate::support::cvmbuild(m.dir.path())
                .arg("--store")
                .arg(m.store())
                .args(["copy", "--to", &url, "--sign-key", key.to_str().unwrap()])
                .args(&ids[0])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let b = Fixture::new();
    let (sb, stderr) = realize(&b, &substitute_args(&url, &dir.path().join("farm.key.pub")));
    assert_eq!(sb["built"], 0, "{sb}\n{stderr}");
    assert_eq!(sb["substituted"], 2, "{sb}");
    assert_verify_clean(&b.store());
}

/// `realize SPEC --branch BRANCH --json ROOTS EXTRA…` (not offline: a new
/// branch is solved), which may fail: its branch summary, stderr, success.
fn realize_branch(m: &Fixture, spec: &Path, branch: &str, extra: &[&str]) -> (Value, String, bool) {
    let mut args = vec![
        "realize",
        spec.to_str().unwrap(),
        "--branch",
        branch,
        "--json",
    ];
    args.extend_from_slice(ROOTS);
    args.extend_from_slice(extra);
    let out = m.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (v[0].clone(), stderr, out.status.success())
}

/// The example with a second branch that pins the other kernel: one
/// package differs from `production`.
fn two_branch_spec(m: &Fixture) -> PathBuf {
    let spec = m.path("cernvm/two.cvm");
    let text_spec = fs::read_to_string(m.spec()).unwrap()
        + "\nbranch oldkernel = base // { pins = { kernel = \"2.6.*\" } }\n";
    fs::write(&spec, text_spec).unwrap();
    spec
}

fn ids(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A key made on `a` and its two outputs pushed with their inputs' (the
/// public key file and the bytes sent).
fn keygen_push(a: &Fixture, url: &str, roots: &Value) -> (PathBuf, u64) {
    let key = a.path("farm.key");
    keygen(a, "farm", &key);
    let mut args = vec![
        "copy",
        "--to",
        url,
        "--sign-key",
        key.to_str().unwrap(),
        "--json",
    ];
    args.extend(
        ["os-tree", "meta-rpm"]
            .iter()
            .map(|r| roots[r].as_str().unwrap()),
    );
    let out = a.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (a.path("farm.key.pub"), v["sent_bytes"].as_u64().unwrap())
}

/// The records (`outputs/*.json`) on a cache, by derivation id.
fn records(cache: &Path) -> std::collections::BTreeMap<String, Value> {
    fs::read_dir(cache.join("outputs"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let id = p.file_stem().unwrap().to_str().unwrap().to_string();
            (id, serde_json::from_slice(&fs::read(&p).unwrap()).unwrap())
        })
        .collect()
}

/// Whether a record's output is a blob on the cache that is an RPM file
/// (the lead's magic).
fn is_rpm(cache: &Path, rec: &Value) -> bool {
    let root = &rec["output"]["root"];
    let Some(h) = root["hash"].as_str().filter(|_| root["kind"] == "blob") else {
        return false;
    };
    fs::read(cache.join("blobs").join(&h[..2]).join(h)).unwrap()[..4] == [0xed, 0xab, 0xee, 0xdb]
}

/// A push with inputs leaves out the downloaded RPMs (`fetch` outputs)
/// unless `--with-fetched`: every record the second push adds is one,
/// and none of the first push's is.
#[test]
fn a_push_leaves_out_fetched_rpms_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, cache, url) = cache_server(dir.path());
    let p = push(&url, &[]);
    let first = records(&cache);
    assert!(first.len() > 10, "{}", first.len());
    // The only RPM among them: the meta RPM, a root itself.
    let meta = p.summary["roots"]["meta-rpm"].as_str().unwrap();
    let rpms: Vec<&String> = first
        .iter()
        .filter(|(_, r)| is_rpm(&cache, r))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(rpms, [meta]);
    let sent = |v: &Value| v["sent_bytes"].as_u64().unwrap();
    let key = p.a.path("farm-a.key");
    let mut args = vec![
        "copy",
        "--to",
        &url,
        "--sign-key",
        key.to_str().unwrap(),
        "--json",
    ];
    args.push("--with-fetched");
    let ids: Vec<&str> = ["os-tree", "meta-rpm"]
        .iter()
        .map(|r| p.summary["roots"][r].as_str().unwrap())
        .collect();
    args.extend(&ids);
    let out = p.a.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let with: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = records(&cache);
    let added: Vec<&Value> = all
        .iter()
        .filter(|(id, _)| !first.contains_key(*id))
        .map(|(_, r)| r)
        .collect();
    assert!(!added.is_empty());
    assert!(added.iter().all(|r| is_rpm(&cache, r)), "{added:?}");
    // Each added record with its blob: objects sent are twice the records.
    assert_eq!(
        with["sent_objects"].as_u64().unwrap(),
        2 * added.len() as u64,
        "{with}"
    );
    let rpm_bytes = sent(&with);
    let cache_bytes: u64 = walkdir(&cache).iter().map(|(_, n)| n).sum();
    eprintln!(
        "push with inputs: {} records; --with-fetched adds {} RPM files, {rpm_bytes} bytes \
         ({:.0}% of the {cache_bytes} bytes then on the cache)",
        first.len(),
        added.len(),
        100.0 * rpm_bytes as f64 / cache_bytes as f64
    );
}

/// Machine B realizes a branch that differs from what A pushed in one
/// package: it builds exactly what A had to build for that change (the
/// package's cone), substitutes the unchanged parts and rebuilds none of
/// them. Machine C pulls A's outputs with `copy --from` and then
/// realizes them from its own store.
#[test]
fn a_one_package_change_builds_only_its_cone_and_substitutes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, _cache, url) = cache_server(dir.path());
    let a = Fixture::new();
    let spec_a = two_branch_spec(&a);
    let (prod, stderr, ok) = realize_branch(&a, &spec_a, "production", &[]);
    assert!(ok, "{stderr}");
    let (pubkey, pushed) = keygen_push(&a, &url, &prod["roots"]);
    let prod_built = ids(&prod["derivations"]["built"]);
    // The cone, as A itself finds it with everything of production cached.
    let (cone, stderr, ok) = realize_branch(&a, &spec_a, "oldkernel", &[]);
    assert!(ok, "{stderr}");
    let cone_built = ids(&cone["derivations"]["built"]);
    assert!(!cone_built.is_empty() && cone_built.len() < prod_built.len() / 2);

    let b = Fixture::new();
    let spec_b = two_branch_spec(&b);
    let (sb, stderr, ok) =
        realize_branch(&b, &spec_b, "oldkernel", &substitute_args(&url, &pubkey));
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(ids(&sb["derivations"]["built"]), cone_built, "{sb}");
    let substituted = ids(&sb["derivations"]["substituted"]);
    assert!(!substituted.is_empty(), "{sb}");
    assert!(substituted.is_subset(&prod_built), "{sb}");
    assert!(substituted.is_disjoint(&cone_built), "{sb}");
    assert_eq!(sb["outputs"], cone["outputs"]);
    let fetched = sb["substituters"][0]["bytes"].as_u64().unwrap();
    assert!(fetched > 0 && fetched < pushed, "{sb}");
    eprintln!(
        "one-package change: {} built, {} substituted, {fetched} bytes fetched of {pushed} pushed",
        cone_built.len(),
        substituted.len()
    );
    assert_verify_clean(&b.store());

    // `copy --from`: both outputs of production with their closures,
    // named by output name through the spec (C has never evaluated it).
    let c = Fixture::new();
    let by_name = [
        "copy",
        "--from",
        &url,
        "--trusted-key",
        pubkey.to_str().unwrap(),
        "--json",
        "--spec",
        spec_a.to_str().unwrap(),
        "--branch",
        "production",
        "os-tree",
        "meta-rpm",
    ];
    let out = c.run(&by_name);
    assert!(out.status.success(), "{}", text(&out));
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        pulled["received_objects"].as_u64().unwrap() > 10,
        "{pulled}"
    );
    assert!(
        pulled["received_bytes"].as_u64().unwrap() > 10_000,
        "{pulled}"
    );
    assert_eq!(pulled["outputs"][0]["drv"], prod["roots"]["os-tree"]);
    assert_eq!(pulled["outputs"][1]["already_here"], false, "{pulled}");
    assert_verify_clean(&c.store());
    // Again, by derivation id: nothing to fetch.
    let roots: Vec<&str> = ["os-tree", "meta-rpm"]
        .iter()
        .map(|r| prod["roots"][r].as_str().unwrap())
        .collect();
    let mut args = by_name[..6].to_vec();
    args.extend_from_slice(&roots);
    let out = c.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["received_bytes"], 0, "{again}");
    assert_eq!(again["outputs"][0]["already_here"], true, "{again}");
    // Pulled outputs are GC roots, named as `realize` names them when
    // named through the spec, so `gc` keeps them.
    assert_eq!(
        pulled["outputs"][0]["root"],
        format!(
            "{}-production-os-tree",
            spec_a.file_stem().unwrap().to_str().unwrap()
        )
    );
    let out = c.run(&["root", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, id) in [
        (pulled["outputs"][0]["root"].as_str().unwrap(), roots[0]),
        (again["outputs"][1]["root"].as_str().unwrap(), roots[1]),
    ] {
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == name && r["kind"] == "drv" && r["target"] == id),
            "{name} {id}: {listed}"
        );
    }
    assert_eq!(again["outputs"][1]["root"], format!("pulled-{}", roots[1]));
    let out = c.run(&["gc"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_verify_clean(&c.store());
    // They are C's now: realized from its store, without a substituter.
    let spec_c = two_branch_spec(&c);
    let (sc, stderr, ok) = realize_branch(&c, &spec_c, "production", &[]);
    assert!(ok, "{stderr}");
    assert_eq!(sc["built"], 0, "{sc}");
    assert_eq!(sc["outputs"], prod["outputs"]);

    // Without a trusted key, or for an output the cache lacks: errors.
    let out = c.run(&["copy", "--from", &url, roots[0]]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("needs at least one trusted key"),
        "{}",
        text(&out)
    );
    let absent = "0".repeat(64);
    let out = c.run(&[
        "copy",
        "--from",
        &url,
        "--trusted-key",
        pubkey.to_str().unwrap(),
        &absent,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("has no output record for {absent}")),
        "{}",
        text(&out)
    );
}

/// A cache server that goes away in the middle of a download: it serves
/// `root` (GET and HEAD, one request per connection) until the first blob
/// of at least two bytes, sends its headers and half its bytes, and then
/// closes that connection and stops listening.
fn vanishing_server(root: PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let file = root.join(path.trim_start_matches('/'));
            let body = match fs::read(&file) {
                Ok(b) if !path.contains("..") => b,
                _ => {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            if method == "HEAD" {
                continue;
            }
            if path.starts_with("/blobs/") && body.len() >= 2 {
                let _ = conn.write_all(&body[..body.len() / 2]);
                let _ = conn.flush();
                return; // the connection and the listener close here
            }
            let _ = conn.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/")
}

/// The remote goes away while machine B downloads: with
/// `--substitute-only` the realize fails naming a derivation, nothing of
/// the cut download is stored and the store verifies clean; with the
/// remote back, B substitutes everything and builds nothing.
#[test]
fn the_remote_going_away_mid_download_leaves_nothing_damaged_and_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, cache, url) = cache_server(dir.path());
    let p = push(&url, &[]);
    let flaky = vanishing_server(cache.clone());

    let b = Fixture::new();
    let spec = b.spec();
    let args = substitute_only_args(&flaky, &p.pubkey);
    let (sb, stderr, ok) = realize_branch(&b, &spec, "production", &args);
    assert!(!ok, "{sb}\n{stderr}");
    assert_eq!(sb["built"], 0, "{sb}");
    assert_eq!(sb["substituted"], 0, "{sb}");
    assert!(sb["failed"].as_u64().unwrap() >= 1, "{sb}");
    // One warning, naming the remote, which is not asked again; then the
    // derivations it did not supply fail, named.
    assert_eq!(
        stderr.matches("warning: not substituting").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "not asking {} again in this run; not building it (--substitute-only)",
            flaky.trim_end_matches('/')
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(") failed: not substituted, and --substitute-only forbids building"),
        "{stderr}"
    );
    assert!(
        stderr.contains(": GET blobs/"),
        "the cut download: {stderr}"
    );
    // Nothing registered; the half-received blob was never stored (it
    // would be damage under its name).
    assert!(sb["outputs"].as_object().unwrap().is_empty(), "{sb}");
    assert_verify_clean(&b.store());

    // The remote is back (nginx was serving the same cache all along).
    let (sb, stderr, ok) = realize_branch(
        &b,
        &spec,
        "production",
        &substitute_only_args(&url, &p.pubkey),
    );
    assert!(ok, "{stderr}");
    assert_eq!(sb["built"], 0, "{sb}");
    assert_eq!(sb["substituted"], 2, "{sb}");
    assert_eq!(sb["outputs"], p.summary["outputs"]);
    assert_verify_clean(&b.store());
}

fn substitute_only_args<'a>(url: &'a str, key: &'a Path) -> Vec<&'a str> {
    let mut v = substitute_args(url, key).to_vec();
    v.push("--substitute-only");
    v
}

/// A remote whose disk is full (WebDAV PUT answering 507): `copy --to`
/// fails naming the remote, no output record appears, the local store is
/// intact; with space again, the push completes.
#[test]
fn a_full_remote_disk_is_a_clear_error_and_a_later_push_completes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    fs::create_dir_all(&root).unwrap();
    let full = Nginx::start_with(
        &root,
        &dir.path().join("nginx-full"),
        "dav_methods PUT MKCOL; create_full_put_path on; client_max_body_size 0; \
         location /blobs/ { if ($request_method = PUT) { return 507; } }",
    );
    let url = format!("http://127.0.0.1:{}/", full.port);
    let a = Fixture::new();
    let (s, _) = realize(&a, &[]);
    let key = a.path("farm.key");
    keygen(&a, "farm", &key);
    let os_id = s["roots"]["os-tree"].as_str().unwrap();
    let copy = |url: &str| {
        a.run(&[
            "copy",
            "--to",
            url,
            "--sign-key",
            key.to_str().unwrap(),
            "--json",
            os_id,
        ])
    };
    let out = copy(&url);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("remote {}: PUT blobs/", url.trim_end_matches('/')))
            && text(&out).contains("HTTP 507, the remote has no space left"),
        "{}",
        text(&out)
    );
    assert!(
        !root.join("outputs").exists(),
        "a record without its objects"
    );
    assert_verify_clean(&a.store());
    drop(full);

    let (_n, _root, url) = cache_server(dir.path());
    let out = copy(&url);
    assert!(out.status.success(), "{}", text(&out));
    assert!(root.join("outputs").join(format!("{os_id}.json")).is_file());
}

/// The cache on a second host: nginx in its own network namespace, joined
/// to this one by a veth pair (`ip netns`, `ip link … type veth`), reached
/// at its own address rather than loopback. Dropping it stops nginx and
/// deletes the namespace and the pair.
struct SecondHost {
    nginx: std::process::Child,
    /// Dropped after nginx is stopped (fields drop after `Drop::drop`).
    _net: Netns,
    /// The address of the cache's host, as this host reaches it.
    addr: String,
    work: PathBuf,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs CAP_NET_ADMIN for network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SecondHost {
    fn start(root: &Path, work: &Path) -> SecondHost {
        // Unique per test process: names are global to the machine.
        let pid = std::process::id();
        let tag = format!("{pid:x}");
        let (ns, host_if, peer_if) = (
            format!("cvmb-{tag}"),
            format!("cvh{tag}"),
            format!("cvp{tag}"),
        );
        let net = format!("10.231.{}", pid % 250);
        let addr = format!("{net}.2");
        ip(&["netns", "add", &ns]);
        let net_guard = Netns {
            ns: ns.clone(),
            host_if: host_if.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &ns, "link", "set", &peer_if, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        fs::create_dir_all(work).unwrap();
        let w = work.display();
        let conf = format!(
            "user root;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {w}/access.log;\n  client_body_temp_path {w}/body;\n\
               default_type application/octet-stream;\n\
               server {{ listen {addr}:80; root {root}; dav_methods PUT MKCOL; \
               create_full_put_path on; client_max_body_size 0; }}\n}}\n",
            root = root.display()
        );
        fs::write(work.join("nginx.conf"), conf).unwrap();
        let nginx = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "nginx", "-p"])
            .arg(work)
            .arg("-c")
            .arg(work.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(work.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let host = SecondHost {
            nginx,
            _net: net_guard,
            addr: addr.clone(),
            work: work.to_path_buf(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect((addr.as_str(), 80)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx in {ns} did not start: {}",
                fs::read_to_string(work.join("stderr.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        host
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn access_log(&self) -> String {
        fs::read_to_string(self.work.join("access.log")).unwrap_or_default()
    }
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        // `ip netns exec` execs nginx: this is the master's pid.
        unsafe { libc::kill(self.nginx.id() as i32, libc::SIGTERM) };
        let _ = self.nginx.wait();
    }
}

/// A network namespace and this host's end of the veth pair into it,
/// deleted when dropped.
struct Netns {
    ns: String,
    host_if: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Machine A pushes to a cache on another host (a network namespace over
/// a veth pair); machine B substitutes everything from it.
#[test]
fn a_cache_on_a_second_host_serves_a_fresh_machine() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    fs::create_dir_all(&root).unwrap();
    let host = SecondHost::start(&root, &dir.path().join("nginx"));
    let url = host.url();
    let p = push(&url, &[]);
    let b = Fixture::new();
    let (sb, stderr) = realize(&b, &substitute_args(&url, &p.pubkey));
    assert_eq!(sb["built"], 0, "{sb}\n{stderr}");
    assert_eq!(sb["substituted"], 2, "{sb}");
    assert_eq!(sb["outputs"], p.summary["outputs"]);
    assert_verify_clean(&b.store());
    // The requests came over the veth pair, from this host's end of it.
    let peer = format!("{}.1", host.addr.rsplit_once('.').unwrap().0);
    let log = host.access_log();
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("{peer} ")) && l.contains("\"GET /outputs/")),
        "{log}"
    );
}

/// Two machines sign the same outputs, each with its own key: the record
/// keeps both signatures, so a machine that trusts either key alone
/// substitutes everything.
#[test]
fn a_second_signer_adds_its_signature_to_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, cache, url) = cache_server(dir.path());
    let mut summary = Value::Null;
    for i in 0..2 {
        let m = Fixture::new();
        let key = dir.path().join(format!("farm{i}.key"));
        keygen(&m, &format!("farm{i}"), &key);
        let (s, _) = realize(&m, &[]);
        let mut args = vec!["copy", "--to", &url, "--sign-key", key.to_str().unwrap()];
        args.extend(["os-tree", "meta-rpm"].map(|r| s["roots"][r].as_str().unwrap()));
        let out = m.run(&args);
        assert!(out.status.success(), "{}", text(&out));
        summary = s;
    }
    let record: Value =
        serde_json::from_slice(&fs::read(record_path(&cache, &summary, "os-tree")).unwrap())
            .unwrap();
    let signers = record_signers(&record);
    assert_eq!(signers, ["farm0", "farm1"], "{record}");
    for i in 0..2 {
        let c = Fixture::new();
        let pubkey = dir.path().join(format!("farm{i}.key.pub"));
        let (sc, stderr) = realize(&c, &substitute_args(&url, &pubkey));
        assert_eq!(sc["built"], 0, "trusting farm{i} only: {sc}\n{stderr}");
        assert_eq!(sc["substituted"], 2, "{sc}");
    }
}

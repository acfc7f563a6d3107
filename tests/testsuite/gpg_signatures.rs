//! Package and repository signatures against the real tools: keys made by
//! `gpg`, packages signed by `rpmsign --addsign` (rpm 4.18: v4 signatures,
//! header-only unless `--rpmv3`), every verdict compared with
//! `rpmkeys --checksig` on the same keys in a temporary rpm database;
//! `repomd.xml.asc` made by `gpg --detach-sign --armor`; and `realize`
//! end to end with a signed repository and a tampered one.
//!
//! What Debian 12's tools make: rpm 4.18.0's `rpmsign --addsign` writes
//! only the v4 header signature (`RSAHEADER` for an RSA key, `DSAHEADER`
//! for EdDSA), the payload covered by the signed header's payload digest;
//! `--rpmv3` adds the header+payload signature (`PGP`/`GPG`). gpg 2.2.40
//! makes v4 keys and v4 signatures with SHA-256. rpmkeys 4.18 accepts a
//! signature an expired key made while it was valid, and an unsigned
//! package unless `_pkgverify_level` is `signature`.

use crate::support::{cli, rpmrepo};
use cvmbuild::gpg::{repomd, rpm as rpmsig, Keyring};
use rpmrepo::{build_rpms, createrepo, Pkg, RepoOptions};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it installed? see .ci/deps): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throw-away gpg home with the test keys.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        // gpg-agent's socket lives in the home: keep the path short.
        let home = tempfile::Builder::new()
            .prefix("g")
            .tempdir_in("/tmp")
            .unwrap();
        let mut perm = fs::metadata(home.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o700);
        fs::set_permissions(home.path(), perm).unwrap();
        Gpg { home }
    }

    fn cmd(&self, faked_time: Option<&str>) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(t) = faked_time {
            c.args(["--faked-system-time", t]);
        }
        c
    }

    /// `algo`: `rsa4096` or `ed25519`; `expire`: `never` or `1y`.
    fn gen(&self, email: &str, algo: &str, expire: &str, faked_time: Option<&str>) {
        run(self.cmd(faked_time).args([
            "--quick-gen-key",
            &format!("Test <{email}>"),
            algo,
            "sign",
            expire,
        ]));
    }

    fn export(&self, email: &str) -> Vec<u8> {
        let out = self
            .cmd(None)
            .args(["--export", "--armor", email])
            .output()
            .unwrap();
        assert!(out.status.success() && !out.stdout.is_empty());
        out.stdout
    }

    fn fingerprint(&self, email: &str) -> String {
        let out = run(self
            .cmd(None)
            .args(["--with-colons", "--fingerprint", email]));
        out.lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .unwrap()
    }

    /// `rpmsign --addsign` (with `--rpmv3` also a header+payload
    /// signature), the signature made at `faked_time` if given.
    fn sign_rpm(&self, rpm: &Path, email: &str, v3: bool, faked_time: Option<&str>) {
        let mut c = Command::new("rpmsign");
        c.env("GNUPGHOME", self.home.path())
            .arg("--addsign")
            .args(["--define", &format!("_gpg_name {email}")])
            .args(["--define", "__gpg /usr/bin/gpg"])
            .args([
                "--define",
                &format!("_gpg_path {}", self.home.path().display()),
            ]);
        if let Some(t) = faked_time {
            c.args([
                "--define",
                &format!("_gpg_sign_cmd_extra_args --faked-system-time {t}"),
            ]);
        }
        if v3 {
            c.arg("--rpmv3");
        }
        run(c.arg(rpm));
    }

    fn detach_sign(&self, file: &Path, email: &str) {
        let asc = file.with_extension("xml.asc");
        let _ = fs::remove_file(&asc);
        run(self
            .cmd(None)
            .args([
                "--local-user",
                email,
                "--detach-sign",
                "--armor",
                "--output",
            ])
            .arg(&asc)
            .arg(file));
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

const RSA: &str = "rsa@test.invalid";
const ED: &str = "ed@test.invalid";
const OTHER: &str = "other@test.invalid";
const OLD: &str = "old@test.invalid";

/// The keys, shared by every test of this file (RSA 4096 generation is
/// slow), and the repository's public keys: all but `OTHER`.
struct Keys {
    gpg: Gpg,
    dir: tempfile::TempDir,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gpg = Gpg::new();
        gpg.gen(RSA, "rsa4096", "never", None);
        gpg.gen(ED, "ed25519", "never", None);
        gpg.gen(OTHER, "ed25519", "never", None);
        // Valid during 2020 only: it signs in mid-2020 and has expired now.
        gpg.gen(OLD, "ed25519", "1y", Some("20200101T000000"));
        let dir = tempfile::tempdir().unwrap();
        let mut trusted = Vec::new();
        for who in [RSA, ED, OLD] {
            let k = gpg.export(who);
            fs::write(dir.path().join(format!("{who}.asc")), &k).unwrap();
            trusted.extend(k);
        }
        fs::write(dir.path().join("trusted.asc"), &trusted).unwrap();
        // gpgv wants a binary keyring.
        let binary = gpg
            .cmd(None)
            .args(["--export", RSA, ED, OLD])
            .output()
            .unwrap();
        fs::write(dir.path().join("trusted.gpg"), binary.stdout).unwrap();
        fs::write(dir.path().join("other.asc"), gpg.export(OTHER)).unwrap();
        Keys { gpg, dir }
    })
}

impl Keys {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn trusted(&self) -> Keyring {
        Keyring::parse(&fs::read(self.file("trusted.asc")).unwrap()).unwrap()
    }
}

fn pkg(name: &str) -> Pkg {
    Pkg::new(name, "1.0", "1").file(
        &format!("/usr/share/{name}/data"),
        format!(
            "{name}'s data, long enough to be compressed {}",
            "x".repeat(200)
        )
        .as_bytes(),
    )
}

/// Changes the first occurrence of `from` in the file to `to` (same length).
fn patch(path: &Path, from: &[u8], to: &[u8]) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{} has no {from:?}", path.display()));
    bytes[at..at + to.len()].copy_from_slice(to);
    fs::write(path, bytes).unwrap();
}

fn flip_last_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// `rpmkeys --checksig` with the repository's keys imported into a fresh
/// database, requiring a signature as cvmbuild does (`_pkgverify_level
/// signature`; without it rpm accepts unsigned packages).
fn rpmkeys_accepts(rpm: &Path, k: &Keys) -> (bool, String) {
    let db = tempfile::tempdir().unwrap();
    for who in [RSA, ED, OLD] {
        run(Command::new("rpmkeys")
            .arg("--dbpath")
            .arg(db.path())
            .arg("--import")
            .arg(k.file(&format!("{who}.asc"))));
    }
    let out = Command::new("rpmkeys")
        .arg("--dbpath")
        .arg(db.path())
        .args(["--define", "_pkgverify_level signature", "--checksig", "-v"])
        .arg(rpm)
        .output()
        .expect("rpmkeys (package rpm) is needed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The peer matrix: for each case, cvmbuild's verdict equals rpmkeys', and
/// a refusal names the reason (and the key where there is one).
#[test]
fn rpm_signature_verdicts_agree_with_rpmkeys() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "rsa",
        "rsa-v3",
        "ed",
        "ed-v3",
        "unsigned",
        "other",
        "header",
        "payload",
        "v3-payload",
        "expired",
    ];
    let pkgs: Vec<Pkg> = names.iter().map(|n| pkg(n)).collect();
    let rpms = build_rpms(&pkgs, dir.path());
    let path = |n: &str| rpms[names.iter().position(|x| *x == n).unwrap()].clone();
    k.gpg.sign_rpm(&path("rsa"), RSA, false, None);
    k.gpg.sign_rpm(&path("rsa-v3"), RSA, true, None);
    k.gpg.sign_rpm(&path("ed"), ED, false, None);
    k.gpg.sign_rpm(&path("ed-v3"), ED, true, None);
    k.gpg.sign_rpm(&path("other"), OTHER, false, None);
    k.gpg.sign_rpm(&path("header"), RSA, false, None);
    patch(&path("header"), b"(test fixture)", b"(test fixturE)");
    k.gpg.sign_rpm(&path("payload"), ED, false, None);
    flip_last_byte(&path("payload"));
    k.gpg.sign_rpm(&path("v3-payload"), RSA, true, None);
    flip_last_byte(&path("v3-payload"));
    k.gpg
        .sign_rpm(&path("expired"), OLD, false, Some("20200601T000000"));

    let ring = k.trusted();
    let rsa_id = &k.gpg.fingerprint(RSA)[24..];
    let other_id = &k.gpg.fingerprint(OTHER)[24..];
    // (case, accepted, what a refusal must say)
    let expect: &[(&str, bool, &[&str])] = &[
        ("rsa", true, &[]),
        ("rsa-v3", true, &[]),
        ("ed", true, &[]),
        ("ed-v3", true, &[]),
        ("unsigned", false, &["no OpenPGP signature", "unsigned"]),
        ("other", false, &[other_id, "not a key of this repository"]),
        ("header", false, &[rsa_id, "bad signature"]),
        ("payload", false, &["payload digest mismatch"]),
        ("v3-payload", false, &[rsa_id, "bad signature"]),
        ("expired", true, &[]),
    ];
    for (case, accepted, reasons) in expect {
        let rpm = path(case);
        let ours = rpmsig::verify(&ring, &mut fs::File::open(&rpm).unwrap());
        let (theirs, log) = rpmkeys_accepts(&rpm, k);
        assert_eq!(
            ours.is_ok(),
            theirs,
            "{case}: cvmbuild says {ours:?}, rpmkeys says:\n{log}"
        );
        assert_eq!(ours.is_ok(), *accepted, "{case}: {ours:?}\n{log}");
        match ours {
            Ok(v) => {
                let who = match *case {
                    "rsa" | "rsa-v3" => RSA,
                    "expired" => OLD,
                    _ => ED,
                };
                assert_eq!(v.signer.primary, k.gpg.fingerprint(who), "{case}");
                let sigs = if case.ends_with("-v3") { 2 } else { 1 };
                assert_eq!(v.signatures, sigs, "{case}");
            }
            Err(e) => {
                let msg = e.to_string();
                for r in *reasons {
                    assert!(msg.contains(r), "{case}: `{msg}` does not say `{r}`");
                }
            }
        }
    }
}

#[test]
fn key_files_are_checked() {
    let k = keys();
    assert_eq!(k.trusted().fingerprints().len(), 3);
    let mut fps: Vec<String> = [RSA, ED, OLD]
        .iter()
        .map(|w| k.gpg.fingerprint(w))
        .collect();
    fps.sort();
    assert_eq!(k.trusted().fingerprints(), fps);
    // Binary keys (`gpg --export` without --armor) read the same.
    let bin = Command::new("gpg")
        .env("GNUPGHOME", k.gpg.home.path())
        .args(["--batch", "--export", ED])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        Keyring::parse(&bin).unwrap().fingerprints(),
        vec![k.gpg.fingerprint(ED)]
    );
    for bad in [
        &b"not a key at all"[..],
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
        b"",
    ] {
        let e = Keyring::parse(bad).unwrap_err().to_string();
        assert!(e.contains("not an OpenPGP public key"), "{e}");
    }
    // A revoked key (gpg's own revocation certificate imported).
    k.gpg.gen("revoked@test.invalid", "ed25519", "never", None);
    let fpr = k.gpg.fingerprint("revoked@test.invalid");
    let cert = fs::read_to_string(
        k.gpg
            .home
            .path()
            .join(format!("openpgp-revocs.d/{fpr}.rev")),
    )
    .unwrap()
    .replace(":-----BEGIN", "-----BEGIN");
    let cert_file = k.gpg.home.path().join("revoke.asc");
    fs::write(&cert_file, cert).unwrap();
    run(k.gpg.cmd(None).arg("--import").arg(&cert_file));
    let e = Keyring::parse(&k.gpg.export("revoked@test.invalid")).unwrap_err();
    assert!(
        e.to_string().contains(&format!("key {fpr} is revoked")),
        "{e}"
    );
    // A detached signature is not a key.
    let sig = tempfile::NamedTempFile::new().unwrap();
    fs::write(sig.path(), "data").unwrap();
    let asc = sig.path().with_extension("xml.asc");
    k.gpg.detach_sign(sig.path(), ED);
    let e = Keyring::parse(&fs::read(&asc).unwrap()).unwrap_err();
    assert!(e.to_string().contains("not an OpenPGP public key"), "{e}");
    let _ = fs::remove_file(asc);
}

/// A small signed repository in `dir`: `a` and `b` signed by ED.
fn signed_repo(dir: &Path) {
    let rpms = build_rpms(&[pkg("a"), pkg("b").requires("a")], dir);
    for r in &rpms {
        keys().gpg.sign_rpm(r, ED, false, None);
    }
    createrepo(dir, &RepoOptions::default());
}

#[test]
fn repomd_signatures_are_verified_before_metadata_is_trusted() {
    let k = keys();
    let repo = tempfile::tempdir().unwrap();
    signed_repo(repo.path());
    let repomd = repo.path().join("repodata/repomd.xml");
    let asc = repo.path().join("repodata/repomd.xml.asc");
    let url = repo.path().display().to_string();
    let ring = k.trusted();
    let peer = |keyfile: &str| {
        Command::new("gpgv")
            .arg("--keyring")
            .arg(k.file(keyfile))
            .arg(&asc)
            .arg(&repomd)
            .output()
            .expect("gpgv (package gpgv) is needed")
            .status
            .success()
    };

    // Missing signature.
    let e = repomd::verified_hash("r", &url, &ring)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no signature") && e.contains("repomd.xml.asc"),
        "{e}"
    );

    // Good: accepted, and the hash is repomd.xml's.
    k.gpg.detach_sign(&repomd, ED);
    let want = blake3::hash(&fs::read(&repomd).unwrap())
        .to_hex()
        .to_string();
    assert_eq!(repomd::verified_hash("r", &url, &ring).unwrap(), want);
    assert!(peer("trusted.gpg"));

    // repomd.xml changed after signing.
    let original = fs::read(&repomd).unwrap();
    patch(
        &repomd,
        b"<revision>1</revision>",
        b"<revision>2</revision>",
    );
    let e = repomd::verified_hash("r", &url, &ring)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("repository `r`") && e.contains("bad signature"),
        "{e}"
    );
    assert!(!peer("trusted.gpg"));
    fs::write(&repomd, &original).unwrap();

    // A flipped byte in the signature's base64.
    let good_sig = fs::read(&asc).unwrap();
    let mut bad = good_sig.clone();
    let body = bad.iter().position(|&b| b == b'\n').unwrap() + 3;
    let at = (body..bad.len())
        .find(|&i| bad[i].is_ascii_alphanumeric())
        .unwrap()
        + 20;
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    fs::write(&asc, &bad).unwrap();
    let e = repomd::verified_hash("r", &url, &ring)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&url) && e.contains("does not verify"), "{e}");
    assert!(!peer("trusted.gpg"));

    // Signed by a key the repository does not trust.
    k.gpg.detach_sign(&repomd, OTHER);
    let e = repomd::verified_hash("r", &url, &ring)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a key of this repository"), "{e}");
    assert!(!peer("trusted.gpg"));
}

const SPEC: &str = r#"
let r = repo { name = "signed", url = "repo", gpgkey = KEY EXTRA }
branch main = release {
  name = "t" version = "1.0" arch = "x86_64" repos = [r]
  packages = ["b"]
}
"#;

fn write_spec(dir: &Path, key: &str, extra: &str) -> PathBuf {
    let spec = dir.join("t.cvm");
    fs::write(&spec, SPEC.replace("KEY", key).replace("EXTRA", extra)).unwrap();
    spec
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn gpgkey_errors_point_at_the_spec_line() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("repo")).unwrap();
    fs::write(dir.path().join("notakey.asc"), "hello\n").unwrap();
    for (key, extra, says) in [
        ("./missing.asc", "", "path `./missing.asc` does not exist"),
        ("./notakey.asc", "", "not an OpenPGP public key"),
        ("[./notakey.asc]", "", "not an OpenPGP public key"),
        ("\"missing.asc\"", "", "cannot read"),
        ("[]", ", gpgcheck = true", "needs the repository's keys"),
    ] {
        write_spec(dir.path(), key, extra);
        let out = cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{key}: {err}");
        assert!(err.contains(says), "{key}: {err}");
        assert!(err.contains("t.cvm:2"), "{key}: no location in {err}");
    }
    let _ = k;
}

/// `realize` with a signed repository: accepted, the signer's fingerprint
/// in the lock; a tampered package whose repodata was regenerated is
/// refused at fetch naming the package and the reason, and nothing is
/// stored for it; a change of key is a lock change.
#[test]
fn realize_checks_package_signatures() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    signed_repo(&repo);
    fs::copy(k.file("trusted.asc"), dir.path().join("keys.asc")).unwrap();
    write_spec(dir.path(), "./keys.asc", "");
    let out = cli::cvmbuild_in(dir.path(), &["realize", "t.cvm", "--out", "tree"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("tree/usr/share/a/data").is_file());
    let lock = fs::read_to_string(dir.path().join("t.lock")).unwrap();
    let mut fps: Vec<String> = [RSA, ED, OLD]
        .iter()
        .map(|w| k.gpg.fingerprint(w))
        .collect();
    fps.sort();
    assert!(lock.contains(&format!("gpgkeys = {fps:?}")), "{lock}");

    // The mirror swaps a's payload and regenerates the repodata.
    let a = repo.join(pkg("a").file_name());
    flip_last_byte(&a);
    createrepo(&repo, &RepoOptions::default());
    let out = cli::cvmbuild_in(dir.path(), &["realize", "t.cvm", "--out", "tree2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a-1.0-1.noarch") && err.contains("payload digest mismatch"),
        "{err}"
    );
    assert!(!dir.path().join("tree2").exists());
    // Nothing was registered for it: a dry run still has to fetch it.
    let out = cli::cvmbuild_in(dir.path(), &["realize", "t.cvm", "--dry-run"]);
    let plan = format!("{}{}", cli::stdout(&out), stderr(&out));
    assert!(plan.contains("fetch:a-1.0-1.noarch"), "{plan}");

    // Unsigned package: refused as soon as it is pinned (eval reads its
    // signer for the lock), naming the package.
    let unsigned = build_rpms(&[pkg("a")], &dir.path().join("fresh"));
    fs::copy(&unsigned[0], &a).unwrap();
    createrepo(&repo, &RepoOptions::default());
    for cmd in ["eval", "realize"] {
        let out = cli::cvmbuild_in(dir.path(), &[cmd, "t.cvm"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("a-1.0-1.noarch") && err.contains("unsigned"),
            "{cmd}: {err}"
        );
    }

    // With gpgcheck = false the same repository realizes, and the lock
    // has no keys.
    write_spec(dir.path(), "./keys.asc", ", gpgcheck = false");
    let out = cli::cvmbuild_in(dir.path(), &["realize", "t.cvm", "--out", "tree3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = fs::read_to_string(dir.path().join("t.lock")).unwrap();
    assert!(!lock.contains("gpgkeys"), "{lock}");

    // A different key is a different lock.
    k.gpg.sign_rpm(&a, ED, false, None);
    createrepo(&repo, &RepoOptions::default());
    fs::copy(k.file(&format!("{ED}.asc")), dir.path().join("keys.asc")).unwrap();
    write_spec(dir.path(), "./keys.asc", "");
    cli::ok(cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]));
    let lock = fs::read_to_string(dir.path().join("t.lock")).unwrap();
    assert!(
        lock.contains(&format!("gpgkeys = [\"{}\"]", k.gpg.fingerprint(ED))),
        "{lock}"
    );
}

/// The key that signed each package is in the lock. The repository
/// re-signs `b` with another of its keys: `eval --locked` refuses naming
/// the package and both keys, `eval` records the new signer with a
/// warning and keeps `a`'s without reading `a` again; a lock whose signer
/// is not the package's real one fails the fetch naming both keys.
#[test]
fn a_new_signer_is_a_lock_change() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    signed_repo(&repo);
    fs::copy(k.file("trusted.asc"), dir.path().join("keys.asc")).unwrap();
    write_spec(dir.path(), "./keys.asc", "");
    let (ed, rsa) = (k.gpg.fingerprint(ED), k.gpg.fingerprint(RSA));
    cli::ok(cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]));
    let lock_path = dir.path().join("t.lock");
    let lock = fs::read_to_string(&lock_path).unwrap();
    assert_eq!(
        lock.matches(&format!("signer = \"{ed}\"")).count(),
        2,
        "{lock}"
    );

    // The same package, re-signed by RSA (both keys are the repository's).
    let b = build_rpms(&[pkg("b").requires("a")], &dir.path().join("fresh")).remove(0);
    k.gpg.sign_rpm(&b, RSA, false, None);
    fs::copy(&b, repo.join(pkg("b").file_name())).unwrap();
    createrepo(&repo, &RepoOptions::default());
    let out = cli::cvmbuild_in(dir.path(), &["eval", "t.cvm", "--locked"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("b.noarch was signed by {ed}, now by {rsa}")),
        "{err}"
    );
    assert!(
        err.contains("eval::signer") && !err.contains("a.noarch"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&lock_path).unwrap(), lock);

    // `a` is unchanged: its signer comes from the lock, so even an
    // unreadable `a` does not stop the re-pin.
    let a = repo.join(pkg("a").file_name());
    let a_bytes = fs::read(&a).unwrap();
    fs::write(&a, b"").unwrap();
    let out = cli::ok(cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]));
    fs::write(&a, a_bytes).unwrap();
    assert!(
        stderr(&out).contains(&format!(
            "warning: new signer: b.noarch was signed by {ed}, now by {rsa}"
        )),
        "{}",
        stderr(&out)
    );
    let lock = fs::read_to_string(&lock_path).unwrap();
    assert!(lock.contains(&format!("signer = \"{rsa}\"")), "{lock}");
    assert!(lock.contains(&format!("signer = \"{ed}\"")), "{lock}");
    cli::ok(cli::cvmbuild_in(dir.path(), &["eval", "t.cvm", "--locked"]));
    cli::ok(cli::cvmbuild_in(
        dir.path(),
        &["realize", "t.cvm", "--locked"],
    ));

    // A lock that names another signer than the package's real one (the
    // lock still answers the spec, so nothing is re-read at eval): the
    // fetch refuses it, naming the package and both keys.
    let forged = lock.replace(
        &format!("signer = \"{rsa}\""),
        &format!("signer = \"{ed}\""),
    );
    fs::write(&lock_path, forged).unwrap();
    let out = cli::cvmbuild_in(dir.path(), &["realize", "t.cvm"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("b-1.0-1.noarch")
            && err.contains(&format!("signed by key {rsa}"))
            && err.contains(&format!("the lock records signer {ed}")),
        "{err}"
    );
}

/// `repo_gpgcheck = true` through `eval`: a repository without a valid
/// `repomd.xml.asc` is refused before its metadata is read.
#[test]
fn eval_refuses_unsigned_metadata_with_repo_gpgcheck() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    signed_repo(&repo);
    fs::copy(k.file("trusted.asc"), dir.path().join("keys.asc")).unwrap();
    write_spec(dir.path(), "./keys.asc", ", repo_gpgcheck = true");
    let out = cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("signed") && err.contains("repomd.xml.asc"),
        "{err}"
    );
    k.gpg.detach_sign(&repo.join("repodata/repomd.xml"), ED);
    cli::ok(cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]));
}

/// `gpgkey` as a URL: fetched at eval over HTTP (a loopback server this
/// test starts), packages fetched over HTTP verified with it; a URL that
/// does not answer with a key is an error at its line.
#[test]
fn gpgkey_by_url() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("www");
    signed_repo(&served.join("repo"));
    fs::copy(k.file("trusted.asc"), served.join("keys.asc")).unwrap();
    fs::write(served.join("junk.asc"), "not a key").unwrap();
    let server = rpmrepo::HttpServer::start(&served);
    let spec = |key: &str| {
        let text = SPEC
            .replace("url = \"repo\"", &format!("url = \"{}/repo\"", server.url))
            .replace("KEY EXTRA", &format!("\"{}/{key}\"", server.url));
        fs::write(dir.path().join("t.cvm"), text).unwrap();
    };
    spec("keys.asc");
    let out = cli::cvmbuild_in(dir.path(), &["realize", "t.cvm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = fs::read_to_string(dir.path().join("t.lock")).unwrap();
    assert!(lock.contains(&k.gpg.fingerprint(ED)), "{lock}");
    for (key, says) in [
        ("junk.asc", "not an OpenPGP public key"),
        ("missing.asc", "missing.asc"),
    ] {
        spec(key);
        let out = cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(says) && err.contains("t.cvm:2"),
            "{key}: {err}"
        );
    }
}

/// Keys change the ids of the repository's fetches (and what depends on
/// them, and the solve), nothing else; keys with `gpgcheck = false` change
/// no id at all.
#[test]
fn keys_change_only_the_ids_that_must() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    signed_repo(&dir.path().join("repo"));
    fs::copy(k.file("trusted.asc"), dir.path().join("keys.asc")).unwrap();
    let ids = |text: String| -> std::collections::BTreeMap<String, String> {
        fs::write(dir.path().join("t.cvm"), text).unwrap();
        let out = cli::ok(cli::cvmbuild_in(
            dir.path(),
            &["graph", "t.cvm", "--format", "json"],
        ));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nodes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, d)| (d["name"].as_str().unwrap().to_string(), id.clone()))
            .collect()
    };
    let plain = ids(SPEC.replace(", gpgkey = KEY EXTRA", ""));
    let unchecked = ids(SPEC.replace("KEY EXTRA", "./keys.asc, gpgcheck = false"));
    let checked = ids(SPEC.replace("KEY EXTRA", "./keys.asc"));
    assert_eq!(plain, unchecked);
    assert_eq!(plain.len(), checked.len());
    assert!(plain.contains_key("fetch:a-1.0-1.noarch"), "{plain:?}");
    for (name, id) in &checked {
        let must_change = ["fetch:", "extract:", "assemble", "solve"]
            .iter()
            .any(|p| name.starts_with(p));
        assert_eq!(&plain[name] != id, must_change, "{name}");
    }
}

/// Over HTTP, eval reads each package's signer from its first 64 KiB and
/// asks the server for no more (a Range request, answered 206 by nginx),
/// however large the package.
#[test]
fn signers_are_read_with_a_range_request() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("www");
    let repo = served.join("repo");
    // `big` is larger than the 64 KiB read: bytes that do not compress.
    let mut noise = vec![0u8; 300_000];
    blake3::Hasher::new()
        .update(b"noise")
        .finalize_xof()
        .fill(&mut noise);
    let rpms = build_rpms(
        &[
            pkg("a"),
            pkg("big")
                .file("/usr/share/big/noise", &noise)
                .requires("a"),
            pkg("b").requires("big"),
        ],
        &repo,
    );
    for r in &rpms {
        k.gpg.sign_rpm(r, ED, false, None);
    }
    createrepo(&repo, &RepoOptions::default());
    let big = rpms
        .iter()
        .find(|r| r.file_name().unwrap().to_string_lossy().starts_with("big-"))
        .unwrap();
    assert!(fs::metadata(big).unwrap().len() > 200_000);
    let nginx = crate::support::nginx::Nginx::start(&served, &dir.path().join("nginx"));
    let url = format!("http://127.0.0.1:{}", nginx.port);
    fs::copy(k.file("trusted.asc"), served.join("keys.asc")).unwrap();
    let text = SPEC
        .replace("url = \"repo\"", &format!("url = \"{url}/repo\""))
        .replace("KEY EXTRA", &format!("\"{url}/keys.asc\""));
    fs::write(dir.path().join("t.cvm"), text).unwrap();
    let out = cli::cvmbuild_in(dir.path(), &["eval", "t.cvm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = fs::read_to_string(dir.path().join("t.lock")).unwrap();
    assert_eq!(
        lock.matches(&format!("signer = \"{}\"", k.gpg.fingerprint(ED)))
            .count(),
        3,
        "a signer per package: {lock}"
    );
    let log = nginx.log("access.log");
    let reads: Vec<&str> = log.lines().filter(|l| l.contains(".rpm HTTP")).collect();
    assert_eq!(reads.len(), 3, "{log}");
    for l in reads {
        // `"GET /repo/x.rpm HTTP/1.1" 206 BYTES`
        let after = l.split("\" ").nth(1).unwrap_or_default();
        let mut f = after.split_whitespace();
        let (status, bytes) = (f.next().unwrap(), f.next().unwrap());
        assert_eq!(status, "206", "{l}");
        assert!(bytes.parse::<u64>().unwrap() <= 65_536, "{l}");
    }
}

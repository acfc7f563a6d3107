//! The rpm database in the assembled tree (`/var/lib/rpm/rpmdb.sqlite`),
//! checked with the host's real rpm (Debian's 4.18, sqlite backend): it
//! lists exactly the closure plus the meta RPM, answers `-qf`, `--requires`
//! and `-Va`, is byte-identical across builds, and holds the very header
//! blobs and index rows rpm itself writes for the same RPM files.

use crate::support::fixture::Fixture;
use crate::support::rpmrepo::{build_rpms, Pkg};
use cvmbuild::rpmdb::{write_sqlite, RpmHeaders};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `rpm --root ROOT --dbpath /var/lib/rpm ARGS` (Debian's rpm defaults to
/// `~/.rpmdb`); returns stdout, asserting success.
fn rpm(root: &Path, args: &[&str]) -> String {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args)
        .output()
        .expect("rpm is installed (.ci/deps)");
    assert!(
        out.status.success(),
        "rpm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_string).collect()
}

/// The production closure of the bundled lock, as `NAME-V-R.ARCH` and as
/// the meta RPM's `name = E:V-R` requires.
fn closure(fx: &Fixture) -> (BTreeSet<String>, BTreeSet<String>) {
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(fx.path("cernvm/cernvm.lock")).unwrap()).unwrap();
    let pkgs = lock["branch"]["production"]["package"].as_array().unwrap();
    let s = |p: &toml::Value, k: &str| p[k].as_str().unwrap().to_string();
    let nevras = pkgs
        .iter()
        .map(|p| {
            format!(
                "{}-{}-{}.{}",
                s(p, "name"),
                s(p, "version"),
                s(p, "release"),
                s(p, "arch")
            )
        })
        .collect();
    let requires = pkgs
        .iter()
        .map(|p| {
            format!(
                "{} = {}:{}-{}",
                s(p, "name"),
                p["epoch"].as_integer().unwrap(),
                s(p, "version"),
                s(p, "release")
            )
        })
        .collect();
    (nevras, requires)
}

#[test]
fn bundled_example_tree_has_a_database_rpm_reads() {
    let fx = Fixture::new();
    let out = fx.path("out");
    fx.realize(&["--out", out.to_str().unwrap()]);
    let (mut nevras, requires) = closure(&fx);
    assert!(nevras.len() > 30, "the lock has the closure");

    let qa = rpm(
        &out,
        &["-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n"],
    );
    nevras.insert("cernvm-system-3.1.0.0-1.noarch".into());
    assert_eq!(lines(&qa), nevras, "rpm -qa: the closure plus the meta RPM");

    assert_eq!(
        rpm(&out, &["-qf", "/bin/bash"]).trim(),
        "bash-4.1.2-29.el6.x86_64"
    );
    assert_eq!(
        rpm(&out, &["-qf", "/etc/cvmfs/keys/cern.ch.pub"]).trim(),
        "cvmfs-keys-1.5-1.noarch"
    );
    let req: BTreeSet<String> = lines(&rpm(&out, &["-q", "--requires", "cernvm-system"]))
        .into_iter()
        .filter(|l| !l.starts_with("rpmlib("))
        .collect();
    assert_eq!(req, requires, "rpm -q --requires cernvm-system");
    // Install time from SOURCE_DATE_EPOCH (the release's `epoch`).
    let times = lines(&rpm(
        &out,
        &["-qa", "--qf", "%{INSTALLTIME} %{INSTALLTID}\n"],
    ));
    assert_eq!(times.len(), 1, "one install time for all: {times:?}");

    // Every file as its header describes it, its time included.
    let va = Command::new("rpm")
        .arg("--root")
        .arg(&out)
        .args(["--dbpath", "/var/lib/rpm", "-Va", "--nodeps"])
        .output()
        .unwrap();
    assert!(
        va.status.success() && va.stdout.is_empty(),
        "rpm -Va:\n{}{}",
        String::from_utf8_lossy(&va.stdout),
        String::from_utf8_lossy(&va.stderr)
    );

    // A second build from scratch writes the same bytes.
    let fx2 = Fixture::new();
    let out2 = fx2.path("out");
    fx2.realize(&["--out", out2.to_str().unwrap()]);
    let db = |o: &Path| std::fs::read(o.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
    assert_eq!(db(&out), db(&out2), "rpmdb.sqlite is deterministic");
}

/// Packages using every tag rpm indexes.
fn fixture_packages() -> Vec<Pkg> {
    vec![
        Pkg::new("alpha", "1.0", "1")
            .requires("beta >= 1")
            .requires("/bin/sh")
            .preamble("Requires(pre): coreutils")
            .preamble("Requires(post): beta")
            .preamble("Requires(postun): gamma")
            .provides("virt-alpha = 2")
            .conflicts("zeta")
            .obsoletes("old-alpha < 1")
            .preamble("Recommends: rec-x")
            .preamble("Suggests: sug-x")
            .preamble("Supplements: sup-x")
            .preamble("Enhances: enh-x")
            .file("/etc/alpha.conf", b"a=1\n")
            .file_mode("/usr/bin/alpha", b"#!/bin/sh\n", 0o755)
            .dir("/usr/share/alpha")
            .symlink("/usr/bin/al", "alpha")
            .script("post", "echo post")
            .script("triggerin -- beta", "echo in")
            .script("triggerun -- beta", "echo un")
            .script("filetriggerin -- /usr/share", "cat >/dev/null")
            .script("transfiletriggerin -- /usr/lib", "cat >/dev/null"),
        Pkg::new("beta", "2.0", "3")
            .epoch(4)
            .arch("x86_64")
            .file("/usr/lib/beta.so", b"\x7fELF")
            .file("/usr/share/alpha/beta.txt", b"shared dir"),
    ]
}

/// Installs `rpms` into `root` one at a time (so `hnum` follows this
/// order) with rpm itself, database only.
fn rpm_justdb(root: &Path, rpms: &[std::path::PathBuf]) {
    for r in rpms {
        rpm(
            root,
            &[
                "-i",
                "--nodeps",
                "--justdb",
                "--noscripts",
                "--notriggers",
                r.to_str().unwrap(),
            ],
        );
    }
}

fn sqlite_rows(db: &Path, sql: &str) -> Vec<String> {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 is installed (.ci/deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Blob with the values of INSTALLTIME (1008) and INSTALLTID (1128)
/// zeroed: rpm takes them from the clock.
fn without_times(mut blob: Vec<u8>) -> Vec<u8> {
    let be = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
    let il = be(&blob);
    let data = 8 + il * 16;
    for i in 0..il {
        let e = 8 + i * 16;
        if matches!(be(&blob[e..]), 1008 | 1128) {
            let at = data + be(&blob[e + 8..]);
            blob[at..at + 4].fill(0);
        }
    }
    blob
}

#[test]
fn database_equals_rpms_own_for_the_same_rpm_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rpms = build_rpms(&fixture_packages(), &tmp.path().join("rpms"));
    let meta = cvmbuild::builders::meta_rpm::MetaRpm {
        name: "cernvm-system".into(),
        version: "1.0".into(),
        release: "1".into(),
        branch: "test".into(),
        epoch: 1_700_000_000,
        requires: vec!["alpha = 0:1.0-1".into(), "beta = 4:2.0-3".into()],
    };
    let meta_path = tmp.path().join("rpms").join(meta.file_name());
    std::fs::write(&meta_path, meta.build().unwrap()).unwrap();
    rpms.push(meta_path);

    let theirs = tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    rpm_justdb(&theirs, &rpms);
    let theirs_db = theirs.join("var/lib/rpm/rpmdb.sqlite");

    let headers: Vec<(String, Vec<u8>)> = rpms
        .iter()
        .map(|r| {
            let what = r.display().to_string();
            let h = RpmHeaders::read(&mut std::fs::File::open(r).unwrap(), &what).unwrap();
            (what.clone(), h.installed(1_700_000_000, &what).unwrap())
        })
        .collect();
    let ours = tmp.path().join("ours");
    std::fs::create_dir_all(ours.join("var/lib/rpm")).unwrap();
    let ours_db = ours.join("var/lib/rpm/rpmdb.sqlite");
    write_sqlite(&ours_db, &headers).unwrap();

    // The same schema, table by table.
    let schema = "SELECT type, name, tbl_name, sql FROM sqlite_master \
                  WHERE name NOT LIKE 'sqlite_%' ORDER BY name";
    assert_eq!(
        sqlite_rows(&ours_db, schema),
        sqlite_rows(&theirs_db, schema)
    );

    // The same headers, byte for byte, install times aside.
    let blobs = |db: &Path| -> Vec<Vec<u8>> {
        let c = rusqlite::Connection::open(db).unwrap();
        let mut st = c
            .prepare("SELECT blob FROM Packages ORDER BY hnum")
            .unwrap();
        st.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| without_times(b.unwrap()))
            .collect()
    };
    let (a, b) = (blobs(&ours_db), blobs(&theirs_db));
    assert_eq!((a.len(), b.len()), (3, 3));
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!(
            a == b,
            "header {} ({}) differs from rpm's",
            i + 1,
            rpms[i].display()
        );
    }

    // The same index rows in every table (Installtid's key is the clock).
    let tables = sqlite_rows(
        &theirs_db,
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name != 'Packages' ORDER BY name",
    );
    assert!(tables.len() >= 17, "{tables:?}");
    for t in &tables {
        let key = if t == "Installtid" {
            "length(key)"
        } else {
            "quote(key)"
        };
        let q = format!("SELECT {key}, hnum, idx FROM '{t}' ORDER BY hnum, idx, key");
        assert_eq!(
            sqlite_rows(&ours_db, &q),
            sqlite_rows(&theirs_db, &q),
            "table {t}"
        );
    }

    // And rpm answers the same questions from both.
    for args in [
        &["-qa", "--qf", "%{NEVRA} %{FILESTATES}\n"][..],
        &["-q", "--whatprovides", "virt-alpha"],
        &["-q", "--whatrequires", "beta"],
        &["-q", "--whatrecommends", "rec-x"],
        &["-q", "--triggeredby", "beta"],
        &["-qf", "/usr/share/alpha/beta.txt"],
        &["-qf", "/usr/share/alpha"],
        &["-q", "--requires", "cernvm-system"],
    ] {
        assert_eq!(rpm(&ours, args), rpm(&theirs, args), "rpm {args:?}");
    }
}

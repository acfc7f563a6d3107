//! `cvmbuild diff` on derivation ids and CernVM-FS tags: two branches of one
//! fixture spec are realized (and published) into a store in a tempdir,
//! then compared without their spec, from the store's derivation records
//! and the repository's tags alone.
//!
//! B upgrades `bash` (A pins the old build), adds `sudo` to the shopping
//! list and bumps the version (so the meta RPM and the release tag differ).

use crate::support::cli;

use cli::{cvmbuild_in, ok, redact, stdout};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

const SPEC: &str = r#"let sl6 = repo { name = "sl6", url = "REPO" }

let base = release {
  name     = "fixture-system"
  version  = "1.0"
  arch     = "x86_64"
  repos    = [sl6]
  packages = ["basesystem", "bash", "coreutils"]
  pins     = { bash = "= 4.1.2-15.el6_4" }
  exclude  = ["*-debuginfo"]
  epoch    = 1400000000
  cvmfs    = { repository = "fixture.cern.ch", nested = ["/usr"] }
}

branch a = base
branch b = base // {
  version  = "1.1"
  packages = ["basesystem", "bash", "coreutils", "sudo"]
  pins     = {}
}
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// `roots` of each branch as `eval --json` reports them.
    a: Value,
    b: Value,
}

/// Realizes both branches (OS tree, meta RPM, publish) once.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repos/sl6");
        std::fs::write(
            root.join("spec.cvm"),
            SPEC.replace("REPO", repo.to_str().unwrap()),
        )
        .unwrap();
        let ev = ok(cvmbuild_in(&root, &["eval", "spec.cvm", "--json"]));
        let ev: Value = serde_json::from_slice(&ev.stdout).unwrap();
        let roots = |b: &str| {
            ev["branches"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["branch"] == b)
                .unwrap()["roots"]
                .clone()
        };
        for b in ["a", "b"] {
            ok(cvmbuild_in(&root, &["realize", "spec.cvm", "--branch", b]));
        }
        Fixture {
            a: roots("a"),
            b: roots("b"),
            _dir: dir,
            root,
        }
    })
}

fn id<'a>(side: &'a Value, output: &str) -> &'a str {
    side[output].as_str().unwrap()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

const TREE_DIFF: &str = "\
closure: 11 → 12 packages (+1), 68.9 KiB → 75.0 KiB (+6.1 KiB)
  upgraded:
    bash: 4.1.2-15.el6_4 → 4.1.2-29.el6       -18 B
  added:
    sudo: ∅ → 1.8.6p3-12.el6               +6.1 KiB

derivations: 2 outputs differ
os-tree: <hash> → <hash>
└─ assemble
   ├─ meta-rpm:fixture-system-1.0 → meta-rpm:fixture-system-1.1
   │  ├─ branch: \"a\" → \"b\"
   │  ├─ requires: [\"bash = 0:4.1.2-15.el6_4\"] → [\"bash = 0:4.1.2-29.el6\",\"sudo = 0:1.8.6p3-12.el6\"]
   │  └─ version: \"1.0\" → \"1.1\"
   ├─ extract:bash-4.1.2-15.el6_4.x86_64 → extract:bash-4.1.2-29.el6.x86_64
   │  └─ fetch:bash-4.1.2-15.el6_4.x86_64 → fetch:bash-4.1.2-29.el6.x86_64
   │     └─ nevra: \"bash-4.1.2-15.el6_4.x86_64\" → \"bash-4.1.2-29.el6.x86_64\"
   └─ extract:sudo-1.8.6p3-12.el6.x86_64 (added)
      └─ fetch:sudo-1.8.6p3-12.el6.x86_64 (added)
meta-rpm: <hash> → <hash>
└─ meta-rpm:fixture-system-1.0 → meta-rpm:fixture-system-1.1 (see above)
(A is a derivation id, B is a derivation id: causes end at parameters, builders, sources and repository metadata; give the spec for spec lines)

files: 1 added, 0 removed, 3 changed (18 tree objects read)
  ~ /bin/bash (content)                  bash-4.1.2-29.el6.x86_64
  ~ /etc/skel/.bashrc (content)          bash-4.1.2-29.el6.x86_64
  + /usr/bin/sudo                        sudo-1.8.6p3-12.el6.x86_64
  ~ /var/lib/rpm/rpmdb.sqlite (content)
";

#[test]
fn os_tree_ids_give_closure_causes_and_files() {
    let f = fixture();
    // Unique prefixes work as well as full ids.
    let (a, b) = (id(&f.a, "os-tree"), &id(&f.b, "os-tree")[..16]);
    let out = cvmbuild_in(&f.root, &["diff", a, b, "--files"]);
    assert_eq!(
        code(&out),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(redact(&stdout(&out)), TREE_DIFF);
}

#[test]
fn meta_rpm_ids_give_the_closure_from_requires() {
    let f = fixture();
    let out = cvmbuild_in(
        &f.root,
        &["diff", id(&f.a, "meta-rpm"), id(&f.b, "meta-rpm"), "--json"],
    );
    assert_eq!(
        code(&out),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["a"]["kind"], "drv");
    assert_eq!(r["a"]["drv"], id(&f.a, "meta-rpm"));
    assert_eq!(r["a"]["branch"], "a");
    assert_eq!(r["b"]["solve"], Value::Null);
    // Requires carry no arch or size.
    let changes: Vec<String> = r["closure"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} → {} {}",
                c["name"].as_str().unwrap(),
                c["change"].as_str().unwrap(),
                c["old"],
                c["new"],
                c["size_delta"]
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            r#"bash upgraded ["4.1.2-15.el6_4"] → ["4.1.2-29.el6"] 0"#,
            r#"sudo added [] → ["1.8.6p3-12.el6"] 0"#,
        ]
    );
    assert_eq!(r["closure"]["b"]["packages"], 12);
    let roots = r["derivations"]["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["output"], "meta-rpm");
    let node = &r["derivations"]["nodes"][roots[0]["node"].as_str().unwrap()];
    assert_eq!(node["name"], "meta-rpm:fixture-system-1.1");
    assert_eq!(node["old_name"], "meta-rpm:fixture-system-1.0");
    // Without the solve, `requires` lists only the entries that differ;
    // no spec lines.
    assert_eq!(
        node["causes"],
        serde_json::json!([
            {"kind": "param", "key": "branch", "old": "a", "new": "b", "a": null, "b": null},
            {"kind": "param", "key": "requires",
             "old": ["bash = 0:4.1.2-15.el6_4"],
             "new": ["bash = 0:4.1.2-29.el6", "sudo = 0:1.8.6p3-12.el6"],
             "a": null, "b": null},
            {"kind": "param", "key": "version", "old": "1.0", "new": "1.1", "a": null, "b": null},
        ])
    );
}

#[test]
fn same_id_is_identical() {
    let f = fixture();
    let a = id(&f.a, "publish");
    let out = cvmbuild_in(&f.root, &["diff", a, &a[..10], "--files"]);
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn tags_resolve_to_the_publish_derivation_and_diff_like_ids() {
    let f = fixture();
    let out = cvmbuild_in(
        &f.root,
        &[
            "diff",
            "cvmfs:fixture.cern.ch@fixture-system-1.0",
            "cvmfs:fixture.cern.ch@b",
            "--files",
        ],
    );
    assert_eq!(
        code(&out),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = redact(&stdout(&out));
    assert_eq!(
        text,
        "\
closure: 11 → 12 packages (+1), 68.9 KiB → 75.0 KiB (+6.1 KiB)
  upgraded:
    bash: 4.1.2-15.el6_4 → 4.1.2-29.el6       -18 B
  added:
    sudo: ∅ → 1.8.6p3-12.el6               +6.1 KiB

derivations: 3 outputs differ
os-tree: <hash> → <hash>
└─ assemble
   ├─ meta-rpm:fixture-system-1.0 → meta-rpm:fixture-system-1.1
   │  ├─ branch: \"a\" → \"b\"
   │  ├─ requires: [\"bash = 0:4.1.2-15.el6_4\"] → [\"bash = 0:4.1.2-29.el6\",\"sudo = 0:1.8.6p3-12.el6\"]
   │  └─ version: \"1.0\" → \"1.1\"
   ├─ extract:bash-4.1.2-15.el6_4.x86_64 → extract:bash-4.1.2-29.el6.x86_64
   │  └─ fetch:bash-4.1.2-15.el6_4.x86_64 → fetch:bash-4.1.2-29.el6.x86_64
   │     └─ nevra: \"bash-4.1.2-15.el6_4.x86_64\" → \"bash-4.1.2-29.el6.x86_64\"
   └─ extract:sudo-1.8.6p3-12.el6.x86_64 (added)
      └─ fetch:sudo-1.8.6p3-12.el6.x86_64 (added)
meta-rpm: <hash> → <hash>
└─ meta-rpm:fixture-system-1.0 → meta-rpm:fixture-system-1.1 (see above)
publish: <hash> → <hash>
└─ publish:fixture.cern.ch
   ├─ branch: \"a\" → \"b\"
   ├─ tag: \"fixture-system-1.0\" → \"fixture-system-1.1\"
   ├─ meta-rpm:fixture-system-1.0 → meta-rpm:fixture-system-1.1 (see above)
   └─ assemble (see above)
(A is a CernVM-FS tag, B is a CernVM-FS tag: causes end at parameters, builders, sources and repository metadata; give the spec for spec lines)

files: 1 added, 0 removed, 3 changed (18 tree objects read)
  ~ /bin/bash (content)                  bash-4.1.2-29.el6.x86_64
  ~ /etc/skel/.bashrc (content)          bash-4.1.2-29.el6.x86_64
  + /usr/bin/sudo                        sudo-1.8.6p3-12.el6.x86_64
  ~ /var/lib/rpm/rpmdb.sqlite (content)
"
    );
    let out = cvmbuild_in(
        &f.root,
        &[
            "diff",
            "cvmfs:fixture.cern.ch@trunk-previous",
            "cvmfs:fixture.cern.ch@trunk",
            "--json",
        ],
    );
    assert_eq!(code(&out), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["a"]["kind"], "tag");
    assert_eq!(r["a"]["drv"], id(&f.a, "publish"));
    assert_eq!(r["b"]["drv"], id(&f.b, "publish"));
    assert_eq!(r["b"]["branch"], "b");
}

#[test]
fn a_branch_tag_and_its_release_tag_are_identical() {
    let f = fixture();
    let dir = f.root.join("store/cvmfs/fixture.cern.ch");
    let out = cvmbuild_in(
        &f.root,
        &[
            "diff",
            "cvmfs:fixture.cern.ch@a",
            &format!("cvmfs:{}@fixture-system-1.0", dir.display()),
            "--files",
        ],
    );
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn spec_against_tag_compares_what_the_tag_reaches() {
    let f = fixture();
    let out = cvmbuild_in(
        &f.root,
        &[
            "diff",
            "spec.cvm#a",
            "cvmfs:fixture.cern.ch@fixture-system-1.0",
        ],
    );
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cvmbuild_in(
        &f.root,
        &[
            "diff",
            "spec.cvm#a",
            "cvmfs:fixture.cern.ch@b",
            "--why",
            "meta-rpm",
        ],
    );
    assert_eq!(
        code(&out),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A's spec lines are known, B's are not.
    assert_eq!(
        redact(&stdout(&out)),
        "\
closure: 11 → 12 packages (+1), 68.9 KiB → 75.0 KiB (+6.1 KiB)
  upgraded:
    bash: 4.1.2-15.el6_4 → 4.1.2-29.el6       -18 B
  added:
    sudo: ∅ → 1.8.6p3-12.el6               +6.1 KiB

derivations: 1 output differs
meta-rpm: <hash> → <hash>
└─ meta-rpm:fixture-system-1.0 → meta-rpm:fixture-system-1.1
   ├─ branch: \"a\" → \"b\"
   │  - spec.cvm:15: branch a = base
   ├─ requires: [\"bash = 0:4.1.2-15.el6_4\"] → [\"bash = 0:4.1.2-29.el6\",\"sudo = 0:1.8.6p3-12.el6\"]
   └─ version: \"1.0\" → \"1.1\"
      - spec.cvm:5: version  = \"1.0\"
(B is a CernVM-FS tag: causes end at parameters, builders, sources and repository metadata; give the spec for spec lines)
"
    );
}

#[test]
fn tags_of_a_repository_from_elsewhere_give_the_published_closure() {
    let f = fixture();
    // No store that published it: only the repository's catalog and
    // objects (the meta RPM under /.cvmbuild/) are read.
    let dir = f.root.join("store/cvmfs/fixture.cern.ch");
    let tag = |t: &str| format!("cvmfs:{}@{t}", dir.display());
    let args = |a: &str, b: &str| {
        vec![
            "diff".to_string(),
            "--store".into(),
            f.root.join("elsewhere").display().to_string(),
            tag(a),
            tag(b),
        ]
    };
    let run = |a: &str, b: &str| {
        let v = args(a, b);
        cvmbuild_in(&f.root, &v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run("a", "b");
    assert_eq!(
        code(&out),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        "\
closure: 11 → 12 packages (+1), 0 B → 0 B (±0 B)
  upgraded:
    bash: 4.1.2-15.el6_4 → 4.1.2-29.el6        ±0 B
  added:
    sudo: ∅ → 1.8.6p3-12.el6                   ±0 B

(A and B not published from this store: closure only, from the published meta RPM; no sizes, derivations or files)
"
    );
    assert!(!f.root.join("elsewhere").exists());
    let out = run("trunk-previous", "fixture-system-1.0");
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn errors_exit_2_and_say_what_is_wrong() {
    let f = fixture();
    let a = id(&f.a, "os-tree");
    let cases: [(&[&str], &str); 5] = [
        (
            &["diff", "0000000000", a],
            "no derivation `0000000000` is recorded",
        ),
        (
            &["diff", "cvmfs:fixture.cern.ch@nope", a],
            "has no tag `nope`",
        ),
        (&["diff", "cvmfs:other.cern.ch@a", a], "other.cern.ch"),
        (&["diff", "cvmfs:fixture.cern.ch", a], "names no tag"),
        (
            &["diff", "spec.lock#a", "cvmfs:fixture.cern.ch@a"],
            "cannot be compared",
        ),
    ];
    // An id looked up where there is no store does not create one.
    let out = cvmbuild_in(&f.root, &["diff", "--store", "nostore", a, a]);
    assert_eq!(code(&out), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is none"));
    assert!(!f.root.join("nostore").exists());
    for (args, want) in cases {
        let out = cvmbuild_in(&f.root, args);
        let err = String::from_utf8_lossy(&out.stderr).replace('\n', " ");
        assert_eq!(code(&out), Some(2), "{args:?}: {err}");
        // miette wraps long messages and marks continued lines with `|`.
        let err: String = err
            .split_whitespace()
            .filter(|w| *w != "|")
            .collect::<Vec<_>>()
            .join(" ");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}

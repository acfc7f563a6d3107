//! `cvmbuild diff` on two releases of one fixture spec that differ in known
//! ways, built from the bundled example packages:
//!
//! - `bash` upgraded by a pin removed from the spec (15.el6_4 → 29.el6);
//! - `openssl` upgraded because B's repository has a newer build (A's copy
//!   lacks it; its metadata is regenerated with createrepo_c);
//! - `sudo` added to the shopping list;
//! - a kernel module added;
//! - the initrd's compression changed (a builder parameter);
//! - the initrd's init script (a file next to the spec) edited;
//! - an ISO image added;
//! - the repository's priority set.
//!
//! Each must show up with its root cause at the right spec line.

use crate::support::cli;

use cli::{copy_dir, cvmbuild_in, ok, redact, stdout};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SPEC: &str = r##"let sl6 = repo { name = "sl6", url = "repos/sl6"REPO }

branch main = release {
  name     = "fixture-system"
  version  = "1.0"
  arch     = "x86_64"
  repos    = [sl6]
  packages = ["basesystem", "bash", "coreutils", "openssl", "busybox", "kernel"PACKAGES]
  pins     = { PINS }
  exclude  = ["*-debuginfo"]
  epoch    = 1400000000
  kernel = {
    package = "kernel"
    modules = ["virtio_net", "squashfs"MODULES]
    cmdline = "quiet"
  }
  initrd = {
    init        = ./init.sh
    packages    = ["busybox"]
    compression = "COMPRESSION"
  }
  images = [{ format = "qcow2", size = "10G" }IMAGES]
}
"##;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn spec(packages: &str, pins: &str, modules: &str, compression: &str, images: &str) -> String {
    // B also gives its repository a priority (a repository definition
    // change, a solver input).
    let repo = if images.is_empty() {
        ""
    } else {
        ", priority = 10"
    };
    SPEC.replace("PACKAGES", packages)
        .replace("REPO", repo)
        .replace("IMAGES", images)
        .replace("PINS", pins)
        .replace("MODULES", modules)
        .replace("COMPRESSION", compression)
}

/// Builds A and B once (specs, repositories, locks, realized OS trees).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let sl6 = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repos/sl6");
        // A: the example repository without the newer openssl build.
        let repo_a = root.join("a/repos/sl6");
        copy_dir(&sl6, &repo_a);
        std::fs::remove_file(repo_a.join("Packages/openssl-1.0.1e-30.el6.x86_64.rpm")).unwrap();
        std::fs::remove_dir_all(repo_a.join("repodata")).unwrap();
        let st = Command::new("createrepo_c")
            .args([
                "--quiet",
                "--simple-md-filenames",
                "--revision",
                "1",
                "--set-timestamp-to-revision",
            ])
            .arg(&repo_a)
            .status()
            .expect("createrepo_c is needed (.ci/deps installs it)");
        assert!(st.success());
        copy_dir(&sl6, &root.join("b/repos/sl6"));
        std::fs::write(root.join("a/init.sh"), "#!/bin/sh\nexec /sbin/busybox sh\n").unwrap();
        std::fs::write(root.join("b/init.sh"), "#!/bin/sh\nexec /sbin/init\n").unwrap();
        std::fs::write(
            root.join("a/spec.cvm"),
            spec("", r#"bash = "= 4.1.2-15.el6_4""#, "", "gzip", ""),
        )
        .unwrap();
        std::fs::write(
            root.join("b/spec.cvm"),
            spec(
                r#", "sudo""#,
                "",
                r#", "overlay""#,
                "xz",
                r#", { format = "iso" }"#,
            ),
        )
        .unwrap();
        for side in ["a", "b"] {
            ok(cvmbuild_in(&root, &["eval", &format!("{side}/spec.cvm")]));
        }
        Fixture { _dir: dir, root }
    })
}

/// Realizes both OS trees into the fixture's store (once).
fn realized() -> &'static Fixture {
    static R: OnceLock<()> = OnceLock::new();
    let f = fixture();
    R.get_or_init(|| {
        for side in ["a", "b"] {
            ok(cvmbuild_in(
                &f.root,
                &["realize", &format!("{side}/spec.cvm"), "--root", "os-tree"],
            ));
        }
    });
    f
}

#[test]
fn text_report_names_every_difference_and_its_spec_line() {
    let f = fixture();
    let out = cvmbuild_in(&f.root, &["diff", "a/spec.cvm#main", "b/spec.cvm"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    for want in [
        "    bash:    4.1.2-15.el6_4 → 4.1.2-29.el6",
        "    openssl: 1.0.1e-15.el6 → 1.0.1e-30.el6",
        "    sudo:    ∅ → 1.8.6p3-12.el6",
        "pin: `bash` removed (`= 4.1.2-15.el6_4`)",
        "- a/spec.cvm:9: pins     = { bash = \"= 4.1.2-15.el6_4\" }",
        "shopping list: `sudo` added (any version)",
        "+ b/spec.cvm:8: packages = [",
        "repository `sl6`: metadata ",
        "modules: [\"squashfs\",\"virtio_net\"] → [\"overlay\",\"squashfs\",\"virtio_net\"]",
        "- a/spec.cvm:14: modules = [\"virtio_net\", \"squashfs\"]",
        "+ b/spec.cvm:14: modules = [\"virtio_net\", \"squashfs\", \"overlay\"]",
        "compression: \"gzip\" → \"xz\"",
        "+ b/spec.cvm:20: compression = \"xz\"",
        "input init (./init.sh): content ",
        "repository `sl6`: priority changed\n",
        "+ b/spec.cvm:1: let sl6 = repo { name = \"sl6\", url = \"repos/sl6\", priority = 10 }",
        "image:iso (added)\n   ├─ image:iso added\n   │  + b/spec.cvm:22: images = [",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The solve is explained once and referred to afterwards.
    assert_eq!(text.matches("pin: `bash` removed").count(), 1, "{text}");
    assert!(text.contains("solve (see above)"), "{text}");
    insta::assert_snapshot!(redact(&text));
}

#[test]
fn json_report_has_the_documented_shape_and_causes() {
    let f = fixture();
    let out = cvmbuild_in(&f.root, &["diff", "--json", "a/spec.cvm", "b/spec.cvm"]);
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["schema"], 1);
    assert_eq!(r["identical"], false);
    assert_eq!(r["a"]["kind"], "spec");
    let changes: Vec<(String, String)> = r["closure"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        changes,
        pairs(&[
            ("bash", "upgraded"),
            ("openssl", "upgraded"),
            ("sudo", "added")
        ])
    );
    let sizes: i64 = r["closure"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size_delta"].as_i64().unwrap())
        .sum();
    assert_eq!(
        sizes,
        r["closure"]["b"]["size"].as_i64().unwrap() - r["closure"]["a"]["size"].as_i64().unwrap()
    );
    let outputs: Vec<&str> = r["derivations"]["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["output"].as_str().unwrap())
        .collect();
    assert_eq!(
        outputs,
        [
            "os-tree",
            "meta-rpm",
            "kernel",
            "initrd",
            "rootfs",
            "image:iso",
            "image:qcow2"
        ]
    );
    // Every cause, with its kind, across all nodes.
    let nodes = r["derivations"]["nodes"].as_object().unwrap();
    let causes: Vec<&Value> = nodes
        .values()
        .flat_map(|n| n["causes"].as_array().unwrap())
        .collect();
    let of = |kind: &str| -> Vec<&&Value> { causes.iter().filter(|c| c["kind"] == kind).collect() };
    let mut params: Vec<&str> = of("param")
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    params.sort();
    assert_eq!(params, ["compression", "modules"]);
    let comp = of("param")
        .into_iter()
        .find(|c| c["key"] == "compression")
        .unwrap();
    assert_eq!(comp["b"]["line"], 20);
    assert_eq!(comp["b"]["file"], "b/spec.cvm");
    assert_eq!(comp["b"]["text"], "compression = \"xz\"");
    let spec: Vec<&str> = of("spec")
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        spec,
        [
            "image:iso added",
            "shopping list: `sudo` added (any version)",
            "pin: `bash` removed (`= 4.1.2-15.el6_4`)",
            "repository `sl6`: priority changed"
        ]
    );
    let src = of("source");
    assert_eq!(src.len(), 1);
    assert_eq!(
        (&src[0]["role"], &src[0]["origin"]),
        (&"init".into(), &"./init.sh".into())
    );
    let repo = of("repository");
    assert_eq!(repo.len(), 1);
    assert_eq!(repo[0]["name"], "sl6");
    assert_ne!(repo[0]["old"], repo[0]["new"]);
    // The solve node is shared: one node, reached from several places.
    let solves: Vec<_> = nodes.values().filter(|n| n["name"] == "solve").collect();
    assert_eq!(solves.len(), 1);
    let pinned = of("pinned");
    assert!(
        pinned.len() >= 4,
        "bash, openssl, sudo fetches and the meta RPM"
    );
    assert!(pinned
        .iter()
        .all(|p| nodes[p["node"].as_str().unwrap()]["name"] == "solve"));
}

#[test]
fn why_answers_for_one_output() {
    let f = fixture();
    let out = cvmbuild_in(
        &f.root,
        &["diff", "--why", "kernel", "a/spec.cvm", "b/spec.cvm"],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("derivations: 1 output differs\nkernel: "),
        "{text}"
    );
    assert!(text.contains("modules: "), "{text}");
    assert!(
        !text.contains("compression") && !text.contains("shopping list"),
        "{text}"
    );
    // A package derivation by name: bash's extract leads to the pin.
    let out = cvmbuild_in(
        &f.root,
        &[
            "diff",
            "--why",
            "extract:bash-4.1.2-29.el6.x86_64",
            "a/spec.cvm",
            "b/spec.cvm",
        ],
    );
    let text = stdout(&out);
    assert!(text.contains("pin: `bash` removed"), "{text}");
    assert!(!text.contains("modules"), "{text}");
    // Unchanged derivations answer 0; unknown ones are errors.
    let same = cvmbuild_in(
        &f.root,
        &[
            "diff",
            "--why",
            "extract:coreutils-8.4-31.el6.x86_64",
            "a/spec.cvm",
            "b/spec.cvm",
        ],
    );
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stderr).contains("same derivation in A and B"));
    let unknown = cvmbuild_in(
        &f.root,
        &["diff", "--why", "nonesuch", "a/spec.cvm", "b/spec.cvm"],
    );
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn identical_releases_exit_0_with_no_output() {
    let f = fixture();
    let out = ok(cvmbuild_in(
        &f.root,
        &["diff", "a/spec.cvm", "a/spec.cvm#main"],
    ));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let out = ok(cvmbuild_in(
        &f.root,
        &["diff", "--json", "b/spec.lock", "b/spec.cvm"],
    ));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["identical"], true);
    assert_eq!(r["closure"]["changes"], serde_json::json!([]));
    assert_eq!(r["derivations"]["roots"], serde_json::json!([]));
}

#[test]
fn lock_files_give_the_closure_and_lock_level_causes() {
    let f = fixture();
    let out = cvmbuild_in(&f.root, &["diff", "a/spec.lock#main", "b/spec.lock"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("bash:    4.1.2-15.el6_4 → 4.1.2-29.el6"),
        "{text}"
    );
    assert!(text.contains("repository `sl6`: metadata"), "{text}");
    assert!(text.contains("the spec's solver inputs changed"), "{text}");
}

#[test]
fn errors_exit_2_and_say_what_is_wrong() {
    let f = fixture();
    let cases: &[(&[&str], &str)] = &[
        (&["diff", "missing.cvm", "a/spec.cvm"], "missing.cvm"),
        (
            &["diff", "a/spec.cvm#nightly", "b/spec.cvm"],
            "no branch `nightly`",
        ),
        (
            &["diff", "a/spec.txt", "b/spec.cvm"],
            "cannot tell what `a/spec.txt` is",
        ),
        (&["diff", &"ab".repeat(32), "b/spec.cvm"], "diff::drv-id"),
    ];
    for (args, want) in cases {
        let out = cvmbuild_in(&f.root, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // A lock that no longer answers its spec is refused, and not rewritten.
    let stale = f.root.join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    let text = std::fs::read_to_string(f.root.join("a/spec.cvm")).unwrap();
    std::fs::write(
        stale.join("spec.cvm"),
        text.replace("\"openssl\"", "\"openssl\", \"zlib\""),
    )
    .unwrap();
    std::fs::copy(f.root.join("a/init.sh"), stale.join("init.sh")).unwrap();
    let lock = std::fs::read(f.root.join("a/spec.lock")).unwrap();
    std::fs::write(stale.join("spec.lock"), &lock).unwrap();
    let out = cvmbuild_in(&f.root, &["diff", "a/spec.cvm", "stale/spec.cvm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of date"));
    assert_eq!(std::fs::read(stale.join("spec.lock")).unwrap(), lock);
    // --files before the trees are realized names what to run.
    let out = cvmbuild_in(
        &f.root,
        &["diff", "--files", "a/spec.cvm", "stale/spec.cvm"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn files_compares_realized_trees_with_owners() {
    let f = realized();
    let out = cvmbuild_in(
        &f.root,
        &["diff", "--files", "--json", "a/spec.cvm", "b/spec.cvm"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = &r["files"];
    let got: Vec<(String, String, Value, Value)> = files["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
                c.get("what").cloned().unwrap_or(Value::Null),
                c["packages"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/bin/bash".into(),
                "changed".into(),
                serde_json::json!(["content"]),
                serde_json::json!(["bash-4.1.2-29.el6.x86_64"])
            ),
            (
                "/etc/skel/.bashrc".into(),
                "changed".into(),
                serde_json::json!(["content"]),
                serde_json::json!(["bash-4.1.2-29.el6.x86_64"])
            ),
            (
                "/usr/bin/sudo".into(),
                "added".into(),
                Value::Null,
                serde_json::json!(["sudo-1.8.6p3-12.el6.x86_64"])
            ),
            (
                "/usr/lib64/libssl.so.10".into(),
                "changed".into(),
                serde_json::json!(["content"]),
                serde_json::json!(["openssl-1.0.1e-30.el6.x86_64"])
            ),
            // The rpm database assemble writes (no package owns it).
            (
                "/var/lib/rpm/rpmdb.sqlite".into(),
                "changed".into(),
                serde_json::json!(["content"]),
                serde_json::json!([])
            ),
        ]
    );
    let read = files["trees_read"].as_u64().unwrap();
    // (The rpm database adds /var, /var/lib and /var/lib/rpm on each side.)
    assert!(read > 0 && read < 26, "{read}");
    // The text form lists the same paths with their owners.
    let text = stdout(&cvmbuild_in(
        &f.root,
        &["diff", "--files", "a/spec.cvm", "b/spec.cvm"],
    ));
    assert!(
        text.contains("files: 1 added, 0 removed, 4 changed"),
        "{text}"
    );
    assert!(text.contains("+ /usr/bin/sudo"), "{text}");
    // Identical trees: nothing read, exit 0.
    let same = ok(cvmbuild_in(
        &f.root,
        &["diff", "--files", "--json", "b/spec.cvm", "b/spec.cvm"],
    ));
    let r: Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(r["files"]["trees_read"], 0);
}

#[test]
fn same_solve_pinned_differently_is_a_repin() {
    let f = fixture();
    // C: B's spec and repository, with openssl pinned back to A's build in
    // the lock, as `cvmbuild update` or a timed-out solve could leave it.
    let c = f.root.join("c");
    std::fs::create_dir_all(&c).unwrap();
    for name in ["spec.cvm", "init.sh"] {
        std::fs::copy(f.root.join("b").join(name), c.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(f.root.join("b/repos"), c.join("repos")).unwrap();
    let openssl = |lock: &str| -> String {
        lock.split("[[branch.main.package]]")
            .find(|p| p.contains("name = \"openssl\""))
            .unwrap()
            .to_string()
    };
    let a = std::fs::read_to_string(f.root.join("a/spec.lock")).unwrap();
    let b = std::fs::read_to_string(f.root.join("b/spec.lock")).unwrap();
    std::fs::write(c.join("spec.lock"), b.replace(&openssl(&b), &openssl(&a))).unwrap();
    let out = cvmbuild_in(&f.root, &["diff", "b/spec.cvm", "c/spec.cvm"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains("openssl: 1.0.1e-30.el6 → 1.0.1e-15.el6"),
        "{text}"
    );
    assert!(text.contains("  downgraded:\n"), "{text}");
    assert!(
        text.contains(
            "pinned by solve: openssl-1.0.1e-30.el6.x86_64 → openssl-1.0.1e-15.el6.x86_64\n"
        ) && text.contains("└─ same solver inputs, pinned differently"),
        "{text}"
    );
}

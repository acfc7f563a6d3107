//! Derivation ids: stable across runs and processes, blind to comments,
//! whitespace and field order, and a one-pin change changes exactly the
//! derivations downstream of it.

use cvmbuild::eval::{self, DrvId, Evaluation};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A scratch copy of the CernVM example whose spec text we can rewrite;
/// the repositories are linked, not copied.
fn scratch(spec_text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(examples().join("repos"), dir.path().join("repos")).unwrap();
    let d = dir.path().join("cernvm");
    std::fs::create_dir(&d).unwrap();
    for f in ["groups.cvm", "init.sh"] {
        std::fs::copy(examples().join("cernvm").join(f), d.join(f)).unwrap();
    }
    let spec = d.join("cernvm.cvm");
    std::fs::write(&spec, spec_text).unwrap();
    (dir, spec)
}

fn original() -> String {
    std::fs::read_to_string(examples().join("cernvm/cernvm.cvm")).unwrap()
}

fn evaluate(spec: &Path) -> Evaluation {
    eval::evaluate(spec, &eval::Options::default()).unwrap_or_else(|e| panic!("{e:?}"))
}

/// name -> id, per branch.
fn ids(ev: &Evaluation) -> BTreeMap<String, BTreeMap<String, DrvId>> {
    ev.branches
        .iter()
        .map(|b| {
            let m = b
                .graph
                .topo()
                .into_iter()
                .map(|(id, d)| (d.name.clone(), id.clone()))
                .collect();
            (b.release.branch.clone(), m)
        })
        .collect()
}

#[test]
fn every_example_evaluates_against_its_committed_lock() {
    for spec in ["minimal/minimal.cvm", "cernvm/cernvm.cvm"] {
        let opts = eval::Options {
            locked: true,
            ..Default::default()
        };
        let ev = eval::evaluate(&examples().join(spec), &opts)
            .unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        assert!(!ev.lock_written);
        for b in &ev.branches {
            assert!(!b.lock.package.is_empty(), "{spec} {}", b.release.branch);
            assert!(b.graph.roots.contains_key("os-tree"));
        }
    }
}

#[test]
fn ids_ignore_comments_whitespace_and_field_order() {
    let (_d1, a) = scratch(&original());
    let reformatted = original()
        .replace(
            "let base = release {",
            "# a new comment\nlet   base   =   release   {\n\n",
        )
        .replace(
            "  name     = \"${flavour}-system\"\n  version  = \"3.1.0.0\"\n",
            "  version = \"3.1.0.0\"   # moved up\n  name = \"${flavour}-system\"\n",
        )
        .replace("[sl6, extras]", "[ sl6 ,\n   extras ]");
    assert_ne!(reformatted, original());
    let (_d2, b) = scratch(&reformatted);
    assert_eq!(ids(&evaluate(&a)), ids(&evaluate(&b)));
}

#[test]
fn ids_are_stable_across_processes() {
    let (_d, spec) = scratch(&original());
    let in_process = ids(&evaluate(&spec));
    let run = || {
        let out = crate::support::cvmbuild(_d.path())
            .args(["show", "--json", "--branch", "production"])
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let first = run();
    assert_eq!(first, run());
    let shown: BTreeMap<String, eval::Derivation> = serde_json::from_slice(&first).unwrap();
    let from_cli: BTreeMap<String, DrvId> = shown
        .iter()
        .map(|(id, d)| (d.name.clone(), DrvId(id.clone())))
        .collect();
    assert_eq!(from_cli, in_process["production"]);
}

#[test]
fn show_json_rehashes_to_every_id() {
    let (_d, spec) = scratch(&original());
    for branch in ["production", "development"] {
        let out = crate::support::cvmbuild(_d.path())
            .args(["show", "--json", "--branch", branch])
            .arg(&spec)
            .output()
            .unwrap();
        assert!(out.status.success());
        let shown: BTreeMap<String, eval::Derivation> =
            serde_json::from_slice(&out.stdout).unwrap();
        assert!(shown.len() > 50, "{branch}: {} derivations", shown.len());
        for (id, d) in &shown {
            assert_eq!(&d.id().0, id, "{}", d.name);
        }
    }
}

#[test]
fn one_pin_change_changes_exactly_the_downstream_derivations() {
    let (_d1, a) = scratch(&original());
    let changed = original().replace("kernel = \"3.10.*\"", "kernel = \"2.6.*\"");
    assert_ne!(changed, original());
    let (_d2, b) = scratch(&changed);
    let (ea, eb) = (evaluate(&a), evaluate(&b));
    let (ia, ib) = (&ids(&ea)["production"], &ids(&eb)["production"]);

    // Compare by role: the kernel package's own derivations are renamed by
    // its new version, everything else keeps its name.
    let role = |name: &str| {
        if name.contains(":kernel-2.6") || name.contains(":kernel-3.10") {
            name.split(":kernel-").next().unwrap().to_string() + ":kernel"
        } else {
            name.to_string()
        }
    };
    let by_role = |m: &BTreeMap<String, DrvId>| -> BTreeMap<String, DrvId> {
        m.iter().map(|(n, id)| (role(n), id.clone())).collect()
    };
    let (ra, rb) = (by_role(ia), by_role(ib));
    assert_eq!(ra.keys().collect::<Vec<_>>(), rb.keys().collect::<Vec<_>>());
    let differing: BTreeSet<&str> = ra
        .iter()
        .filter(|(n, id)| rb[*n] != **id)
        .map(|(n, _)| n.as_str())
        .collect();

    // Expected: the solve (its parameters changed), the kernel package's
    // fetch (a different file), and everything downstream of that fetch.
    let g = &eb
        .branches
        .iter()
        .find(|b| b.release.branch == "production")
        .unwrap()
        .graph;
    let fetch = ib
        .iter()
        .find(|(n, _)| n.starts_with("fetch:kernel-2.6"))
        .unwrap()
        .1;
    let mut expected: BTreeSet<String> = g
        .downstream(fetch)
        .into_iter()
        .map(|id| role(&g.get(id).unwrap().name))
        .collect();
    expected.insert("solve".into());
    expected.insert("fetch:kernel".into());
    // The meta RPM records the closure, so it changes too.
    expected.insert(
        ra.keys()
            .find(|n| n.starts_with("meta-rpm:"))
            .unwrap()
            .clone(),
    );
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(differing, expected);
    for must in [
        "solve",
        "extract:kernel",
        "assemble",
        "kernel",
        "initrd",
        "image:iso",
        "publish:cernvm-prod.cern.ch",
    ] {
        assert!(differing.contains(must), "{must} should change");
    }
    assert!(!differing.contains("fetch:bash-4.1.2-29.el6.x86_64"));
    assert!(differing.len() < ra.len() / 4);
    // The development branch overrides `pins`: nothing of it changes.
    assert_eq!(ids(&ea)["development"], ids(&eb)["development"]);
}

#[test]
fn initrd_binaries_add_the_os_tree_input_and_change_only_the_boot_chain() {
    let (_d1, a) = scratch(&original());
    let changed = original().replace(
        "packages    = [\"busybox\"]",
        "packages    = [\"busybox\"]\n    binaries    = [\"/bin/bash\"]",
    );
    assert_ne!(changed, original());
    let (_d2, b) = scratch(&changed);
    let (ea, eb) = (evaluate(&a), evaluate(&b));
    let (ia, ib) = (&ids(&ea)["production"], &ids(&eb)["production"]);
    let differing: BTreeSet<&str> = ia
        .iter()
        .filter(|(n, id)| ib[*n] != **id)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        differing,
        BTreeSet::from(["initrd", "image:iso", "image:qcow2"])
    );
    let initrd = |ev: &Evaluation, ids: &BTreeMap<String, DrvId>| {
        let b = ev
            .branches
            .iter()
            .find(|b| b.release.branch == "production");
        b.unwrap().graph.get(&ids["initrd"]).unwrap().clone()
    };
    let (da, db) = (initrd(&ea, ia), initrd(&eb, ib));
    assert!(!da.inputs.contains_key("os-tree"));
    assert_eq!(
        db.inputs["os-tree"],
        cvmbuild::eval::Input::Drv {
            id: ib["assemble"].clone()
        }
    );
    assert_eq!(db.params["binaries"], serde_json::json!(["/bin/bash"]));
}

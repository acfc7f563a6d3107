//! Derivation records in the store's index (`drvs` table, store-layout.md
//! 2.6): `eval` records a graph in one transaction, `show ID` reads it
//! back without the spec, a killed `eval` never leaves a half-written or
//! partial record, records of the first layout (`drvs/<id>.json`) are
//! imported, and `gc` follows records from roots to their inputs.

use crate::support::fixture::{assert_verify_clean, run_in, text, Fixture};

use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs one statement with the sqlite3 tool; its output, trimmed.
fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(out.status.success(), "sqlite3 {sql}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn index(f: &Fixture) -> std::path::PathBuf {
    f.store().join("index.sqlite")
}

fn recorded(f: &Fixture) -> BTreeSet<String> {
    sqlite(&index(f), "SELECT id FROM drvs")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `eval --offline --json` of one branch of the example; must succeed.
fn eval(f: &Fixture, branch: &str) -> Value {
    let spec = f.spec();
    let out = f.run(&[
        "eval",
        spec.to_str().unwrap(),
        "--branch",
        branch,
        "--offline",
        "--json",
    ]);
    assert!(out.status.success(), "eval failed:\n{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every derivation id of a branch's graph (`graph --json`).
fn graph_ids(f: &Fixture, branch: &str) -> BTreeSet<String> {
    let spec = f.spec();
    let out = f.run(&[
        "graph",
        spec.to_str().unwrap(),
        "--branch",
        branch,
        "--offline",
        "--json",
    ]);
    assert!(out.status.success(), "graph failed:\n{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nodes"].as_object().unwrap().keys().cloned().collect()
}

fn show(f: &Fixture, id: &str) -> std::process::Output {
    f.run(&["show", id])
}

#[test]
fn eval_records_the_graph_in_the_index_and_show_reads_it() {
    let f = Fixture::new();
    let v = eval(&f, "production");
    let ids = graph_ids(&f, "production");
    assert_eq!(
        v["branches"][0]["derivations"].as_u64().unwrap() as usize,
        ids.len()
    );
    assert_eq!(recorded(&f), ids, "every derivation, and only those");
    let files = fs::read_dir(f.store().join("drvs")).unwrap().count();
    assert_eq!(files, 0, "no record is a file any more");
    for (name, id) in v["branches"][0]["roots"].as_object().unwrap() {
        let id = id.as_str().unwrap();
        let out = show(&f, &id[..16]);
        assert!(out.status.success(), "show {name}: {}", text(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.starts_with(id), "show {name}:\n{stdout}");
    }
    // Records hash to their ids (verify re-hashes each one).
    assert_verify_clean(&f.store());
    // A second eval writes nothing new and changes nothing.
    let before = sqlite(&index(&f), "SELECT group_concat(id || hex(json)) FROM drvs");
    eval(&f, "production");
    let after = sqlite(&index(&f), "SELECT group_concat(id || hex(json)) FROM drvs");
    assert_eq!(before, after);
}

#[test]
fn killed_eval_never_leaves_a_half_written_record() {
    let f = Fixture::new();
    let spec = f.spec();
    let args = [
        "eval",
        spec.to_str().unwrap(),
        "--branch",
        "production",
        "--offline",
    ];
    // How long a whole eval takes here, to spread the kills over it.
    let t = Instant::now();
    let out = run_in(&f.path("probe/store"), &args);
    assert!(out.status.success(), "{}", text(&out));
    let whole = t.elapsed();
    let full = graph_ids(&f, "production");
    let mut outcomes = BTreeSet::new();
    for step in 0..12u32 {
        let _ = fs::remove_dir_all(f.store());
        let mut child = crate::support::cvmbuild(f.dir.path())
            .arg("--store")
            .arg(f.store())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole.mul_f64(f64::from(step) / 10.0) + Duration::from_millis(2));
        // SIGKILL: no destructor, no rollback by the program itself.
        let _ = child.kill();
        let status = child.wait().unwrap();
        let has_table = index(&f).exists()
            && sqlite(
                &index(&f),
                "SELECT count(*) FROM sqlite_master WHERE name = 'drvs'",
            ) == "1";
        if !has_table {
            outcomes.insert("no store yet");
            continue;
        }
        let have = recorded(&f);
        // The graph is one transaction: all of it or nothing.
        assert!(
            have.is_empty() || have == full,
            "step {step} ({status}): {} of {} records",
            have.len(),
            full.len()
        );
        outcomes.insert(if have.is_empty() { "none" } else { "all" });
        assert_verify_clean(&f.store());
    }
    assert!(!outcomes.is_empty());
    // Whatever the kill left, the next eval completes the records.
    let out = f.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(recorded(&f), full);
    assert_verify_clean(&f.store());
}

#[test]
fn records_of_the_file_layout_are_imported_on_open() {
    let f = Fixture::new();
    let v = eval(&f, "production");
    let ids = recorded(&f);
    let tree = v["branches"][0]["roots"]["os-tree"]
        .as_str()
        .unwrap()
        .to_string();
    // Turn the store into one of the first layout: one file per record,
    // none in the index.
    let drvs = f.store().join("drvs");
    sqlite(
        &index(&f),
        &format!(
            "SELECT writefile('{}/' || id || '.json', json) FROM drvs; DELETE FROM drvs;",
            drvs.display()
        ),
    );
    assert_eq!(fs::read_dir(&drvs).unwrap().count(), ids.len());
    assert!(recorded(&f).is_empty());

    let out = show(&f, &tree);
    assert!(out.status.success(), "show after import: {}", text(&out));
    assert_eq!(recorded(&f), ids, "every file imported");
    assert_eq!(fs::read_dir(&drvs).unwrap().count(), 0, "and removed");
    assert_verify_clean(&f.store());
}

#[test]
fn gc_follows_records_from_roots_and_drops_the_rest() {
    let f = Fixture::new();
    f.realize(&[]);
    let production = graph_ids(&f, "production");
    // Development is only evaluated: its records have no root.
    eval(&f, "development");
    let development = graph_ids(&f, "development");
    let dev_only: BTreeSet<String> = development.difference(&production).cloned().collect();
    assert!(!dev_only.is_empty());
    assert!(recorded(&f).is_superset(&development));

    let out = f.run(&["gc", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let have = recorded(&f);
    assert!(have.is_disjoint(&dev_only), "unrooted records collected");
    assert!(
        report["records_removed"].as_u64().unwrap() as usize >= dev_only.len(),
        "{report}"
    );
    // What the roots reach through records' inputs stays, and `show` of an
    // input (not itself a root) still works.
    let kept: BTreeSet<String> = production.intersection(&have).cloned().collect();
    assert!(kept.len() > 1, "roots and their inputs are kept");
    let input = kept
        .iter()
        .find(|id| {
            let out = show(&f, id);
            String::from_utf8_lossy(&out.stdout).contains("extract:")
        })
        .expect("an extract derivation is kept");
    assert!(show(&f, input).status.success());
    let gone = dev_only.iter().next().unwrap();
    assert!(!show(&f, gone).status.success(), "collected record {gone}");
    assert_verify_clean(&f.store());
}

/// After `eval` alone (nothing realized), `diff` by id reads both sides
/// from the records; a record cut short, as a torn write would leave it,
/// is refused by `show`, `diff` and `store verify`, never read as a
/// (different) derivation.
#[test]
fn diff_by_id_reads_records_and_a_cut_record_is_never_believed() {
    let f = Fixture::new();
    let prod = eval(&f, "production");
    let dev = eval(&f, "development");
    let meta = |v: &Value| {
        v["branches"][0]["roots"]["meta-rpm"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b) = (meta(&prod), meta(&dev));
    assert_ne!(a, b);
    let out = f.run(&["diff", &a[..16], &b, "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["a"]["drv"], a.as_str());
    assert_eq!(r["b"]["drv"], b.as_str());

    sqlite(
        &index(&f),
        &format!("UPDATE drvs SET json = substr(json, 1, length(json) / 2) WHERE id = '{a}'"),
    );
    let out = show(&f, &a);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("store::record") && err.contains(&a), "{err}");
    let out = f.run(&["diff", &a, &b, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let out = f.run(&["store", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("record {a}")),
        "{}",
        text(&out)
    );
    // The other side's record is untouched and still shows.
    assert!(show(&f, &b).status.success());
}

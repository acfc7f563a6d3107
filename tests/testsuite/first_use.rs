//! What a new user trips on (issue 15): the README's first command run
//! twice, `--out` into a directory holding something else or failing half
//! way, promote's rules for tags, ids that `show` and `log` accept, `--json`
//! on every command that prints a result, pin syntax errors, and the
//! generated completions and man page.

use crate::support::cli::{ok, stdout};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SPEC: &str = "examples/cernvm/cernvm.cvm";

/// Runs `cvmbuild --store STORE ARGS` isolated in the store's parent
/// ([`crate::support::cvmbuild`]), in the crate root, where the bundled
/// example's relative repository paths resolve.
fn cvmbuild(store: &Path, args: &[&str]) -> Output {
    crate::support::cvmbuild(store.parent().unwrap())
        .arg("--store")
        .arg(store)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// Runs a command that needs no store (`--help`, `man`, `completions`),
/// asserting it succeeds.
fn storeless(args: &[&str]) -> Output {
    let sandbox = tempfile::tempdir().unwrap();
    ok(crate::support::cvmbuild(sandbox.path())
        .args(args)
        .output()
        .unwrap())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The README's first command, with its store and `--out` moved into `tmp`.
fn readme_first_command(tmp: &Path) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains("Run it twice: the second run answers from the store."),
        "the README no longer promises a second run; update this test"
    );
    let block = readme.split("```sh\n").nth(1).expect("a sh block");
    let line = block.lines().next().unwrap();
    let (_, args) = line
        .split_once(" -- ")
        .expect("`cargo run --release -- ARGS`");
    args.split_whitespace()
        .map(|a| match a {
            "/tmp/cvmbuild-store" => tmp.join("store").display().to_string(),
            "/tmp/cernvm-os" => tmp.join("cernvm-os").display().to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// Runs the README's command (it names its own store) isolated in `tmp`.
fn run_args(tmp: &Path, args: &[String]) -> Output {
    crate::support::cvmbuild(tmp)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// Every path under `root` with its kind, mode and content, to compare
/// two exports.
fn listing(root: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let content = if md.is_file() {
            std::fs::read(e.path()).unwrap()
        } else if md.file_type().is_symlink() {
            std::fs::read_link(e.path())
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else {
            Vec::new()
        };
        out.push((
            e.path().strip_prefix(root).unwrap().to_path_buf(),
            md.permissions().mode(),
            content,
        ));
    }
    out
}

/// Names beside `dest` that an export in progress would use.
fn leftovers(dest: &Path) -> Vec<String> {
    let name = dest.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.")))
        .collect()
}

#[test]
fn readme_first_command_runs_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let args = readme_first_command(tmp.path());
    let out = tmp.path().join("cernvm-os");
    let first = run_args(tmp.path(), &args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("exported os-tree to"),
        "{}",
        stderr(&first)
    );
    let tree = listing(&out);
    assert!(tree.len() > 50, "{}", tree.len());

    let second = run_args(tmp.path(), &args);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let said = stderr(&second);
    assert!(stdout(&second).contains("0 built"), "{}", stdout(&second));
    assert!(
        said.contains(&format!(
            "{} already holds this os-tree; nothing written",
            out.display()
        )),
        "{said}"
    );
    assert_eq!(listing(&out), tree);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[test]
fn out_refuses_a_directory_holding_something_else_and_replace_swaps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (reference, out) = (tmp.path().join("reference"), tmp.path().join("os"));
    let o = |p: &Path| p.display().to_string();
    ok(cvmbuild(
        &store,
        &[
            "realize",
            SPEC,
            "--branch",
            "production",
            "--out",
            &o(&reference),
        ],
    ));

    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), b"mine\n").unwrap();
    let refused = cvmbuild(
        &store,
        &["realize", SPEC, "--branch", "production", "--out", &o(&out)],
    );
    assert_eq!(refused.status.code(), Some(1));
    let said = stderr(&refused);
    assert!(said.contains("store::export_differs"), "{said}");
    assert!(said.contains("holds something else"), "{said}");
    assert!(said.contains("--replace"), "{said}");
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine\n");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);

    // One changed file in an earlier export is a difference too, named.
    let copy = tmp.path().join("copy");
    ok(cvmbuild(
        &store,
        &[
            "realize",
            SPEC,
            "--branch",
            "production",
            "--out",
            &o(&copy),
        ],
    ));
    std::fs::write(copy.join("etc/hosts"), b"changed\n").unwrap();
    let refused = cvmbuild(
        &store,
        &[
            "realize",
            SPEC,
            "--branch",
            "production",
            "--out",
            &o(&copy),
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let said = stderr(&refused);
    assert!(
        said.contains("hosts") && said.contains("different content"),
        "{said}"
    );

    let replaced = ok(cvmbuild(
        &store,
        &[
            "realize",
            SPEC,
            "--branch",
            "production",
            "--out",
            &o(&out),
            "--replace",
        ],
    ));
    assert!(
        stderr(&replaced).contains("exported os-tree to"),
        "{}",
        stderr(&replaced)
    );
    assert!(!out.join("notes.txt").exists());
    assert_eq!(listing(&out), listing(&reference));
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[test]
fn a_failed_out_leaves_no_partial_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let first = tmp.path().join("first");
    let o = |p: &Path| p.display().to_string();
    ok(cvmbuild(
        &store,
        &[
            "realize",
            SPEC,
            "--branch",
            "production",
            "--out",
            &o(&first),
        ],
    ));
    // Lose the store's copy of the last file an export writes, so the
    // next export fails after writing most of the tree.
    let last = walkdir::WalkDir::new(&first)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .last()
        .unwrap();
    let hash = cvmbuild::store::Hash::of(&std::fs::read(last.path()).unwrap()).to_hex();
    std::fs::remove_file(store.join("blobs").join(&hash[..2]).join(&hash)).unwrap();

    let second = tmp.path().join("second");
    let failed = cvmbuild(
        &store,
        &[
            "realize",
            SPEC,
            "--branch",
            "production",
            "--out",
            &o(&second),
        ],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(stderr(&failed).contains(&hash[..12]), "{}", stderr(&failed));
    assert!(
        !second.exists(),
        "a failed export left {}",
        second.display()
    );
    assert!(leftovers(&second).is_empty(), "{:?}", leftovers(&second));

    // An empty directory given as --out stays empty on failure.
    std::fs::create_dir(&second).unwrap();
    let failed = cvmbuild(
        &store,
        &[
            "realize",
            SPEC,
            "--branch",
            "production",
            "--out",
            &o(&second),
        ],
    );
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(&second).unwrap().count(), 0);
    assert!(leftovers(&second).is_empty(), "{:?}", leftovers(&second));
}

/// A store with both branches of the bundled example published.
fn published_store(tmp: &Path) -> PathBuf {
    let store = tmp.join("store");
    for branch in ["production", "development"] {
        ok(cvmbuild(&store, &["realize", SPEC, "--branch", branch]));
    }
    store
}

fn tags_json(store: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&stdout(&ok(cvmbuild(store, &["tag", "list", "--json"])))).unwrap()
}

#[test]
fn promote_never_moves_release_tags_or_trunk_and_creates_branches_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = published_store(tmp.path());
    let before = tags_json(&store);
    let refused = |to: &str, why: &str| {
        let o = cvmbuild(&store, &["promote", "cernvm-system-3.1.0.0", "--to", to]);
        assert_eq!(o.status.code(), Some(1), "--to {to}");
        let said = stderr(&o).replace("\n  | ", " ").replace("\n        ", " ");
        assert!(said.contains("cvmfs::promote"), "{said}");
        assert!(said.contains(why), "--to {to}: {said}");
        assert_eq!(tags_json(&store), before, "--to {to} changed the tags");
    };
    refused("cernvm-system-3.2.0.0", "release tags never move");
    refused("trunk", "moves only by publishing");
    refused("trunk-previous", "moves only by publishing");
    refused("prodution", "did you mean `production`?");
    refused("prodution", "pass --create");
    refused("staging", "(branches: development, production)");

    // A branch tag is not a release to promote.
    let o = cvmbuild(&store, &["promote", "production", "--to", "development"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("promote a release tag"),
        "{}",
        stderr(&o)
    );

    let created = ok(cvmbuild(
        &store,
        &[
            "promote",
            "cernvm-system-3.1.0.0",
            "--to",
            "staging",
            "--create",
            "--json",
        ],
    ));
    let j: serde_json::Value = serde_json::from_str(&stdout(&created)).unwrap();
    let release = before
        .iter()
        .find(|t| t["name"] == "cernvm-system-3.1.0.0")
        .unwrap();
    assert_eq!(j["branch"], "staging");
    assert_eq!(j["release"], "cernvm-system-3.1.0.0");
    assert_eq!(j["root_catalog"], release["hash"]);
    assert_eq!(j["revision"], release["revision"]);
    let after = tags_json(&store);
    let staging = after.iter().find(|t| t["name"] == "staging").unwrap();
    assert_eq!(staging["hash"], release["hash"]);
    assert_eq!(after.len(), before.len() + 1);

    // Moving an existing branch needs no flag.
    ok(cvmbuild(
        &store,
        &["promote", "cernvm-system-3.2.0.0", "--to", "staging"],
    ));
}

#[test]
fn tag_list_has_a_header_and_the_publish_time() {
    let tmp = tempfile::tempdir().unwrap();
    let store = published_store(tmp.path());
    let table = stdout(&ok(cvmbuild(&store, &["tag", "list"])));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["TAG", "REVISION", "PUBLISHED", "ROOT", "CATALOG", "BRANCH"]
    );
    let tags = tags_json(&store);
    assert_eq!(lines.clone().count(), tags.len());
    for (line, t) in lines.zip(&tags) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // The time as GNU date prints it.
        let date = Command::new("date")
            .args(["-u", "-d"])
            .arg(format!("@{}", t["timestamp"]))
            .arg("+%Y-%m-%dT%H:%M:%SZ")
            .output()
            .unwrap();
        let date = String::from_utf8(date.stdout).unwrap();
        assert_eq!(f[0], t["name"].as_str().unwrap());
        assert_eq!(f[1], t["revision"].to_string());
        assert_eq!(f[2], date.trim());
        assert_eq!(f[3], t["hash"].as_str().unwrap());
    }
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn show_log_and_root_take_ids_output_hashes_and_output_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let first = json_of(&ok(cvmbuild(
        &store,
        &["realize", SPEC, "--branch", "production", "--json"],
    )));
    let prod = &first[0];
    let drv = prod["roots"]["os-tree"].as_str().unwrap().to_string();
    let tree = prod["outputs"]["os-tree"]["root"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let built: Vec<&str> = prod["derivations"]["built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(built.contains(&drv.as_str()), "{prod}");
    assert_eq!(built.len() as u64, prod["built"].as_u64().unwrap());
    // A second run builds nothing and finds every root.
    let again = json_of(&ok(cvmbuild(
        &store,
        &["realize", SPEC, "--branch", "production", "--json"],
    )));
    assert_eq!(again[0]["derivations"]["built"], serde_json::json!([]));
    let found = again[0]["derivations"]["found"].as_array().unwrap();
    for id in again[0]["roots"].as_object().unwrap().values() {
        assert!(found.contains(id), "{id} not found in {}", again[0]);
    }

    let log = |key: &str| stdout(&ok(cvmbuild(&store, &["log", key])));
    let by_id = log(&drv);
    assert!(by_id.contains(&drv), "{by_id}");
    for key in [
        &drv[..12],
        &tree[..],
        &tree[..12],
        "os-tree",
        "cernvm-production-os-tree",
    ] {
        assert_eq!(log(key), by_id, "log {key}");
    }
    let j = json_of(&ok(cvmbuild(&store, &["log", "os-tree", "--json"])));
    assert_eq!(
        (j["drv"].as_str(), j["log"].as_str()),
        (Some(drv.as_str()), Some(by_id.as_str()))
    );

    let show = |args: &[&str]| stdout(&ok(cvmbuild(&store, args)));
    let shown = show(&["show", &drv]);
    assert!(shown.starts_with(&format!("{drv}  assemble")), "{shown}");
    assert_eq!(show(&["show", &tree[..16]]), shown);
    assert_eq!(show(&["show", "os-tree"]), shown);
    let with_spec = show(&["show", SPEC, &tree[..16], "--branch", "production"]);
    assert!(
        with_spec.starts_with(&format!("{drv}  assemble")),
        "{with_spec}"
    );

    let none = cvmbuild(&store, &["log", "0000000000000000dead"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("cli::no-drv"), "{}", stderr(&none));

    // Two branches: `os-tree` is ambiguous and the error names both roots.
    ok(cvmbuild(
        &store,
        &["realize", SPEC, "--branch", "development"],
    ));
    let two = cvmbuild(&store, &["log", "os-tree"]);
    assert_eq!(two.status.code(), Some(1));
    let said = stderr(&two).replace("\n        ", "");
    assert!(said.contains("cli::ambiguous-drv"), "{said}");
    assert!(
        said.contains("cernvm-development-os-tree") && said.contains("cernvm-production-os-tree"),
        "{said}"
    );

    // root add resolves the same way and prints the root, not a debug string.
    let added = ok(cvmbuild(&store, &["root", "add", "keep", &tree[..12]]));
    assert_eq!(stderr(&added).trim(), format!("root keep -> drv {drv}"));
    let added = json_of(&ok(cvmbuild(
        &store,
        &["root", "add", "keep-tree", &tree, "--json"],
    )));
    assert_eq!(
        added,
        serde_json::json!({"name": "keep-tree", "kind": "tree", "target": tree})
    );
    let list = json_of(&ok(cvmbuild(&store, &["root", "list", "--json"])));
    let list = list.as_array().unwrap();
    assert!(list.contains(&serde_json::json!({"name": "keep", "kind": "drv", "target": drv})));
    let text = stdout(&ok(cvmbuild(&store, &["root", "list"])));
    assert_eq!(text.lines().count(), list.len());
    assert!(text.contains(&format!("keep\tdrv\t{drv}\n")), "{text}");
}

#[test]
fn graph_json_spells_format_json() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let a = ok(cvmbuild(
        &store,
        &["graph", SPEC, "--branch", "production", "--json"],
    ));
    let b = ok(cvmbuild(
        &store,
        &["graph", SPEC, "--branch", "production", "--format", "json"],
    ));
    assert_eq!(stdout(&a), stdout(&b));
    assert!(json_of(&a)["nodes"].as_object().unwrap().len() > 10);
    let both = cvmbuild(&store, &["graph", SPEC, "--json", "--format", "dot"]);
    assert_eq!(both.status.code(), Some(2));
}

/// A scratch spec next to a link to the example repositories.
fn scratch(pins: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::os::unix::fs::symlink(examples.join("repos"), dir.path().join("repos")).unwrap();
    let d = dir.path().join("spec");
    std::fs::create_dir(&d).unwrap();
    let spec = d.join("s.cvm");
    write_spec(&spec, pins);
    (dir, spec)
}

fn write_spec(spec: &Path, pins: &str) {
    std::fs::write(
        spec,
        format!(
            r#"let sl6 = repo {{ name = "sl6", url = "../repos/sl6" }}
let extras = repo {{ name = "cernvm", url = "../repos/cernvm" }}
branch main = release {{
  name = "t-system"
  version = "1.0"
  arch = "x86_64"
  repos = [sl6, extras]
  packages = ["bash", "kernel"]
  pins = {{ {pins} }}
}}
"#
        ),
    )
    .unwrap();
}

fn in_scratch(spec: &Path, args: &[&str]) -> Output {
    cvmbuild(&spec.parent().unwrap().join("store"), args)
}

#[test]
fn update_json_lists_what_moved() {
    let (_d, spec) = scratch(r#"kernel = "2.6.*""#);
    let s = spec.to_str().unwrap();
    ok(in_scratch(&spec, &["eval", s]));
    write_spec(&spec, r#"kernel = "3.10.*""#);
    let j = json_of(&ok(in_scratch(&spec, &["update", s, "--json"])));
    assert_eq!(j[0]["branch"], "main");
    assert_eq!(
        j[0]["changed"]["kernel"],
        serde_json::json!({"from": "2.6.32-431.el6", "to": "3.10.0-1.el6"})
    );
    assert_eq!(j[0]["added"], serde_json::json!({}));
    assert_eq!(j[0]["removed"], serde_json::json!({}));
    assert_eq!(j[0]["lock_written"], true);
    let j = json_of(&ok(in_scratch(&spec, &["update", s, "--json"])));
    assert_eq!(j[0]["changed"], serde_json::json!({}));
    assert_eq!(j[0]["lock_written"], false);
}

#[test]
fn a_pin_that_is_not_a_version_pattern_is_a_spec_error_at_the_pin() {
    for (pin, why) in [
        ("3.10.*.x", "`*` must end the version pattern"),
        ("banana", "a version starts with a digit"),
        (">= 3.10, < 4", "is several constraints"),
        ("= banana", "a version starts with a digit"),
    ] {
        let (_d, spec) = scratch(&format!("kernel = \"{pin}\""));
        let o = in_scratch(&spec, &["eval", spec.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{pin}");
        let said = stderr(&o);
        let flat = said.replace("\n  | ", " ").replace("\n        ", " ");
        assert!(said.starts_with("cvm::constraint"), "{pin}: {said}");
        assert!(!said.contains("unsatisfiable"), "{pin}: {said}");
        assert!(flat.contains(why), "{pin}: {said}");
        // At the pin: the source line, the literal underlined, the label.
        assert!(said.contains("s.cvm:9:"), "{pin}: {said}");
        assert!(
            said.contains(&format!("pins = {{ kernel = \"{pin}\" }}")),
            "{pin}: {said}"
        );
        assert!(said.contains("this pin"), "{pin}: {said}");
        // And what the syntax allows.
        assert!(
            flat.contains("a version prefix ending in `*` (`3.10.*`)"),
            "{pin}: {said}"
        );
    }
}

#[test]
fn an_unsatisfiable_pin_lists_the_versions_that_exist() {
    let (_d, spec) = scratch(r#"kernel = "9.*""#);
    let o = in_scratch(&spec, &["eval", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let flat = stderr(&o).replace("\n  | ", " ");
    assert!(flat.contains("solve::unsatisfiable"), "{flat}");
    // Every kernel build in the bundled repositories, newest first.
    assert!(
        flat.contains(
            "a pin allows only kernel 9.* (s.cvm:9); kernel versions available: 4.1.0-2.el6, 3.10.0-1.el6, 2.6.32-431.el6"
        ),
        "{flat}"
    );
}

/// Environment variable names the source reads directly or through clap
/// (`env = "X"`, `var("X")`, `var_os("X")`), found by reading `src/`.
fn variables_read_by_the_source() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for e in walkdir::WalkDir::new(src) {
        let e = e.unwrap();
        if e.path().extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        for marker in ["env = \"", "var(\"", "var_os(\""] {
            for (i, _) in text.match_indices(marker) {
                let rest = &text[i + marker.len()..];
                let name: String = rest.chars().take_while(|c| *c != '"').collect();
                if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    names.insert(name);
                }
            }
        }
    }
    names
}

#[test]
fn every_environment_variable_is_documented_in_the_readme_and_help() {
    let read = variables_read_by_the_source();
    for v in [
        "CVMBUILD_STORE",
        "CVMBUILD_PUBLISH_DIR",
        "CVMBUILD_KEYS_DIR",
        "SOURCE_DATE_EPOCH",
        "NO_COLOR",
        "XDG_CACHE_HOME",
    ] {
        assert!(read.contains(v), "{v} no longer read? found {read:?}");
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Environment\n")
        .nth(1)
        .expect("README section Environment")
        .split("\n## ")
        .next()
        .unwrap();
    let help = stdout(&storeless(&["--help"]));
    // What dependencies read for us: ureq's proxy variables, tempfile's
    // TMPDIR, and the tools found on PATH.
    let by_deps = [
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "NO_PROXY",
        "no_proxy",
        "TMPDIR",
        "PATH",
    ];
    for v in read.iter().map(String::as_str).chain(by_deps) {
        assert!(
            section.contains(&format!("`{v}`")),
            "README Environment lacks {v}"
        );
        assert!(help.contains(v), "--help lacks {v}");
    }
}

#[test]
fn the_man_page_renders_with_groff_and_man() {
    let page = storeless(&["man"]).stdout;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cvmbuild.1");
    std::fs::write(&file, &page).unwrap();
    // groff with all warnings: none may be printed.
    let g = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .expect("groff (groff-base) is installed by .ci/deps");
    assert!(g.status.success() && g.stderr.is_empty(), "{}", stderr(&g));
    let m = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (man-db) is installed by .ci/deps");
    assert!(m.status.success(), "{}", stderr(&m));
    let text = String::from_utf8_lossy(&m.stdout);
    for want in [
        "NAME",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "realize",
        "promote",
        "CVMBUILD_STORE",
        "NO_PROXY",
    ] {
        assert!(text.contains(want), "man -l output lacks {want}:\n{text}");
    }

    // --dir: one page per subcommand, e.g. realize's with --replace.
    let dir = tmp.path().join("man1");
    storeless(&["man", "--dir", dir.to_str().unwrap()]);
    let realize = dir.join("cvmbuild-realize.1");
    let m = Command::new("man")
        .arg("-l")
        .arg(&realize)
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&m.stdout);
    assert!(text.contains("--replace"), "{text}");
    assert!(dir.join("cvmbuild-promote.1").is_file());
}

/// What bash completes for `words` (the last one being typed),
/// with the script `cvmbuild completions bash` prints sourced.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = storeless(&["completions", "bash"]).stdout;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cvmbuild.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        r#"set -e
source "$1"
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
_cvmbuild cvmbuild "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" "),
        cword = words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &prog, "bash"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(String::from).collect()
}

#[test]
fn the_bash_completion_sources_and_completes_subcommands_and_options() {
    assert_eq!(bash_complete(&["cvmbuild", "rea"]), ["realize"]);
    let subs = bash_complete(&["cvmbuild", ""]);
    for s in ["eval", "realize", "promote", "completions", "man"] {
        assert!(subs.iter().any(|c| c == s), "{s} not in {subs:?}");
    }
    assert_eq!(
        bash_complete(&["cvmbuild", "realize", "--rep"]),
        ["--replace"]
    );
    assert_eq!(
        bash_complete(&["cvmbuild", "promote", "--cr"]),
        ["--create"]
    );
}

/// A tree with what an export cannot apply: a setuid program, a file
/// with a capability, a device node and a FIFO, in a subdirectory.
fn tree_with_unexportables(store: &dyn cvmbuild::store::Store) -> cvmbuild::store::Hash {
    use cvmbuild::store::{Entry, Node, Tree};
    let file = |name: &str, bytes: &[u8], mode| {
        let blob = store.put_blob(&mut &bytes[..]).unwrap();
        Entry::root_owned(name, Node::file(&blob), mode)
    };
    let mut ping = file("ping", b"ping\n", 0o755);
    ping.xattrs
        .insert("security.capability".into(), vec![1, 0, 0, 2]);
    let entries = vec![
        file("su", b"su\n", 0o4755),
        ping,
        Entry::root_owned("null", Node::CharDevice { major: 1, minor: 3 }, 0o666),
        Entry::root_owned("initctl", Node::Fifo, 0o600),
        file("motd", b"hello\n", 0o644),
    ];
    let sub = store.put_tree(&Tree::new(entries).unwrap()).unwrap();
    let bin = Entry::root_owned("bin", Node::Directory { tree: sub }, 0o755);
    store.put_tree(&Tree::new(vec![bin]).unwrap()).unwrap()
}

#[test]
fn export_reports_what_it_skips_and_recognises_its_own_tree() {
    use cvmbuild::store::{export_tree, export_tree_with, Error, FsStore, IfDifferent};
    let tmp = tempfile::tempdir().unwrap();
    let store = FsStore::open(&tmp.path().join("store")).unwrap();
    let root = tree_with_unexportables(&store);
    let out = tmp.path().join("out");
    let r = export_tree(&store, &root, &out, 1_400_000_000).unwrap();
    assert!(!r.unchanged);
    assert_eq!(r.setid_dropped, ["bin/su"]);
    assert_eq!(r.xattrs_dropped, ["bin/ping"]);
    let skipped: Vec<(&str, &str)> = r
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            ("bin/initctl", "fifo: recorded, never created on the host"),
            (
                "bin/null",
                "device node: recorded, never created on the host"
            ),
        ]
    );
    // Again: nothing written, the same notes.
    let again = export_tree(&store, &root, &out, 1_400_000_000).unwrap();
    assert!(again.unchanged);
    assert_eq!((again.copied, again.hardlinked), (0, 0));
    assert_eq!(
        (&again.setid_dropped, &again.xattrs_dropped, &again.skipped),
        (&r.setid_dropped, &r.xattrs_dropped, &r.skipped)
    );

    // Each way a directory can differ is named, and nothing is touched.
    let differs = |what: &str| match export_tree(&store, &root, &out, 1_400_000_000) {
        Err(Error::ExportDiffers { difference, .. }) => {
            assert_eq!(difference, what);
        }
        other => panic!("{what}: {other:?}"),
    };
    use std::os::unix::fs::PermissionsExt;
    let motd = out.join("bin/motd");
    std::fs::set_permissions(&motd, std::fs::Permissions::from_mode(0o600)).unwrap();
    differs("bin/motd: different permissions");
    std::fs::set_permissions(&motd, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(out.join("bin/extra"), b"").unwrap();
    differs("bin/extra: not in the tree");
    std::fs::remove_file(out.join("bin/extra")).unwrap();
    let mkfifo = Command::new("mkfifo")
        .arg(out.join("bin/initctl"))
        .status()
        .unwrap();
    assert!(mkfifo.success());
    differs("bin/initctl: exists, but an export does not create it");
    std::fs::remove_file(out.join("bin/initctl")).unwrap();
    std::fs::remove_file(&motd).unwrap();
    differs("bin/motd: missing");
    std::fs::write(&motd, b"hellO\n").unwrap();
    differs("bin/motd: different content");
    std::fs::write(&motd, b"hello\n").unwrap();
    differs("bin/motd: a different modification time");

    // Replace swaps the whole tree in; the result is recognised again.
    let r = export_tree_with(&store, &root, &out, 1_400_000_000, IfDifferent::Replace).unwrap();
    assert!(!r.unchanged);
    assert_eq!(std::fs::read(&motd).unwrap(), b"hello\n");
    assert!(
        export_tree(&store, &root, &out, 1_400_000_000)
            .unwrap()
            .unchanged
    );
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[test]
fn out_prints_every_entry_it_does_not_apply() {
    use crate::support::rpmrepo::{build_repo, Pkg, RepoOptions};
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let pkg = Pkg::new("tools", "1.0", "1")
        .arch("x86_64")
        .file_mode("/usr/bin/su", b"su\n", 0o4755)
        .file("/usr/bin/ping", b"ping\n")
        .caps("/usr/bin/ping", "cap_net_raw=ep")
        .file("/etc/motd", b"hello\n");
    build_repo(&repo, &[pkg], &RepoOptions::default());
    let spec = tmp.path().join("s.cvm");
    std::fs::write(
        &spec,
        r#"let r = repo { name = "r", url = "repo" }
branch main = release {
  name = "t-system"
  version = "1.0"
  arch = "x86_64"
  repos = [r]
  packages = ["tools"]
}
"#,
    )
    .unwrap();
    let out = tmp.path().join("os");
    let run = || {
        ok(crate::support::cvmbuild(tmp.path())
            .args([
                "realize",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap())
    };
    for pass in ["first", "second"] {
        let said = stderr(&run());
        let notes: Vec<&str> = said.lines().filter(|l| l.starts_with("note: ")).collect();
        assert_eq!(
            notes,
            [
                "note: usr/bin/su: setuid/setgid bits not applied (--tar keeps them)",
                "note: usr/bin/ping: file capabilities (extended attributes) not applied (--tar keeps them)",
            ],
            "{pass} run: {said}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let su = std::fs::metadata(out.join("usr/bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o755);
}

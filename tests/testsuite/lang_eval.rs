//! Positive evaluation of `.cvm` specs: every construct of the reference.

use std::fs;
use std::path::{Path, PathBuf};

use cvmbuild::lang::{self, Record, Spec, Tag, Value, ValueKind};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("lang/examples/cernvm")
        .canonicalize()
        .unwrap()
}

fn record(v: &Value) -> &Record {
    match &v.kind {
        ValueKind::Record(r) => r,
        other => panic!("not a record: {other:?}"),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    record(v)
        .get(name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn str_of(v: &Value) -> &str {
    match &v.kind {
        ValueKind::Str(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn strings(v: &Value) -> Vec<&str> {
    match &v.kind {
        ValueKind::List(items) => items.iter().map(str_of).collect(),
        other => panic!("not a list: {other:?}"),
    }
}

/// The source text a span covers.
fn text<'a>(spec: &'a Spec, v: &Value) -> &'a str {
    &spec.sources.text(v.span.file)[v.span.start as usize..v.span.end as usize]
}

/// Write `files` (path, contents) into a fresh directory and load `main.cvm`.
fn load_files(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Spec, lang::Error>) {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }
    let spec = lang::load(&dir.path().join("main.cvm"));
    (dir, spec)
}

const REPO: &str = r#"let os = repo { url = "repos/sl6" }"#;

/// A release with the required fields and `extra` fields.
fn release(extra: &str) -> String {
    format!(
        "{REPO}\nbranch main = release {{ name = \"n\", version = \"1\", arch = \"x86_64\", repos = [os], packages = [\"bash\"] {extra} }}\n"
    )
}

fn main_value(extra: &str) -> Value {
    let (_dir, spec) = load_files(&[("main.cvm", &release(extra))]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    spec.branches[0].value.clone()
}

#[test]
fn reference_example_evaluates() {
    let dir = example_dir();
    let spec = lang::load(&dir.join("main.cvm")).unwrap_or_else(|e| panic!("{e:?}"));
    let names: Vec<_> = spec.branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["production", "development"]);

    let prod = &spec.branches[0].value;
    assert_eq!(record(prod).tag, Some(Tag::Release));
    assert_eq!(str_of(field(prod, "version")), "3.1.0.0");
    assert_eq!(
        strings(field(prod, "packages")),
        [
            "bash",
            "coreutils",
            "kernel",
            "openssh-server",
            "yum",
            "cvmfs",
            "condor >= 8.0"
        ]
    );
    let kernel = field(prod, "kernel");
    assert_eq!(str_of(field(kernel, "cmdline")), "quiet console=ttyS0");
    let pins = field(prod, "pins");
    assert_eq!(str_of(field(pins, "kernel-firmware")), "= 3.10.0-1");

    let ValueKind::List(repos) = &field(prod, "repos").kind else {
        panic!("repos")
    };
    assert!(repos.iter().all(|r| record(r).tag == Some(Tag::Repo)));
    assert_eq!(
        field(&repos[1], "gpgkey").kind,
        ValueKind::Path(dir.join("keys/epel.asc"))
    );
    let initrd = field(prod, "initrd");
    assert_eq!(
        str_of(field(field(initrd, "files"), "/etc/motd")),
        "hello\n"
    );
    assert_eq!(
        field(initrd, "init").kind,
        ValueKind::Path(dir.join("init.sh"))
    );

    let dev = &spec.branches[1].value;
    assert_eq!(record(dev).tag, Some(Tag::Release));
    assert_eq!(str_of(field(dev, "version")), "3.2.0.0");
    assert_eq!(strings(field(dev, "packages")).last(), Some(&"gdb"));
    // Overridden fields point at the overriding expression, kept fields at
    // the original one, and the branch spans its whole `//` expression.
    assert_eq!(text(&spec, field(dev, "version")), "\"3.2.0.0\"");
    assert_eq!(text(&spec, field(dev, "name")), "\"cernvm-system\"");
    let version_key = record(dev).fields["version"].key_span;
    assert_eq!(spec.sources.line_col(version_key), (19, 32));
    assert!(text(&spec, dev).starts_with("base // {"));
    // The `base` branch keeps the span of the `release` expression.
    assert!(text(&spec, prod).starts_with("release {"));
    assert_eq!(spec.sources.path(prod.span.file), dir.join("main.cvm"));
}

#[test]
fn imports_resolve_relative_to_the_importing_file() {
    let dir = example_dir();
    let spec = lang::load_str(
        &dir.join("probe.cvm"),
        "let g = import \"groups.cvm\"\n\
         let again = import \"./lib/../groups.cvm\"\n\
         let c = import \"lib/common.cvm\"\n\
         branch b = release { name = \"${c.motd}\", version = \"1\", arch = \"a\", repos = [], packages = g.minimal }\n\
         branch same = release { name = \"${again.common.motd}\", version = \"1\", arch = \"a\", repos = [], packages = g.minimal }",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let b = &spec.branches[0].value;
    let motd = dir.join("lib/motd.txt");
    assert_eq!(str_of(field(b, "name")), motd.to_str().unwrap());
    assert_eq!(spec.branches[0].value, spec.branches[1].value);
    // Each file is read once, however often it is imported.
    let files: Vec<_> = spec.sources.iter().map(|(_, p)| p.to_path_buf()).collect();
    assert_eq!(
        files,
        [
            dir.join("probe.cvm"),
            dir.join("groups.cvm"),
            dir.join("lib/common.cvm")
        ]
    );
}

#[test]
fn file_without_trailing_expression_is_the_record_of_its_lets() {
    let main = format!(
        "let v = import \"lib/vars.cvm\"\n{}",
        release("").replace("name = \"n\"", "name = v.b")
    );
    let (_dir, spec) = load_files(&[
        ("lib/vars.cvm", "let a = \"x\"\nlet b = a ++ \"y\"\n"),
        ("main.cvm", &main),
    ]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(str_of(field(&spec.branches[0].value, "name")), "xy");
}

#[test]
fn operators() {
    let v = main_value(
        r#", exclude = ["a", "b"] ++ [] ++ ["c"] -- ["b", "zz"]
            , installonly = ["x" ++ "-" ++ "y"]
            , pins = { a = "1" } // { b = "2" } // { a = "3" }"#,
    );
    assert_eq!(strings(field(&v, "exclude")), ["a", "c"]);
    assert_eq!(strings(field(&v, "installonly")), ["x-y"]);
    let pins = record(field(&v, "pins"));
    assert_eq!(pins.fields.len(), 2);
    assert_eq!(str_of(&pins.fields["a"].value), "3");
}

#[test]
fn update_keeps_tag_and_takes_tag_from_a_constructor() {
    let main = format!(
        "{REPO}\nlet r = {{ name = \"n\", version = \"1\", arch = \"a\", repos = [os], packages = [] }}\n\
         branch a = r // release {{ name = \"m\", version = \"2\", arch = \"a\", repos = [], packages = [] }}\n\
         branch b = release r // {{ epoch = 0, multilib = false }}\n"
    );
    let (_dir, spec) = load_files(&[("main.cvm", &main)]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    let a = &spec.branches[0].value;
    assert_eq!(record(a).tag, Some(Tag::Release));
    assert_eq!(str_of(field(a, "name")), "m");
    let b = &spec.branches[1].value;
    assert_eq!(record(b).tag, Some(Tag::Release));
    assert_eq!(field(b, "epoch").kind, ValueKind::Int(0));
    assert_eq!(field(b, "multilib").kind, ValueKind::Bool(false));
}

#[test]
fn interpolation_of_strings_integers_and_paths_and_escapes() {
    let main = format!(
        "let n = -42\nlet s = \"s\"\n{}",
        release(
            r#", kernel = { package = "k${s}-${n}-${./f.txt}-${ "in${s}ner" }", cmdline = "\"q\" \\ \t \$ ${"{"}}" }"#
        )
    );
    let (dir, spec) = load_files(&[("f.txt", ""), ("main.cvm", &main)]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    let kernel = field(&spec.branches[0].value, "kernel");
    let f = dir.path().canonicalize().unwrap().join("f.txt");
    assert_eq!(
        str_of(field(kernel, "package")),
        format!("ks--42-{}-insner", f.display())
    );
    assert_eq!(str_of(field(kernel, "cmdline")), "\"q\" \\ \t $ {}");
}

#[test]
fn layout_comments_and_field_order_do_not_change_values() {
    let a = main_value(
        r#", pins = { "kernel" = "3.10.*", b = "2" }, images = [{ format = "iso" }, { format = "tar", size = "1G" }]"#,
    );
    let (_dir, spec) = load_files(&[(
        "main.cvm",
        r#"
# a comment
let os = repo {
  url = "repos/sl6"   # trailing comment
}

branch main = release {
  packages = ["bash",]
  images = [
    { format = "iso", }
    { size = "1G"  format = "tar" }
  ]
  pins = { b = "2"
           kernel = "3.10.*" }
  repos = [ (os) ]
  arch = "x86_64", version = "1"
  name = ("n")
}
"#,
    )]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(spec.branches[0].value, a);
    assert_ne!(spec.branches[0].value.span, a.span);
}

#[test]
fn field_access_parentheses_and_quoted_names() {
    let main = release("").replace(
        "packages = [\"bash\"]",
        "packages = (import \"g.cvm\").\"with-dash\".inner ++ ({ x = [\"q\"] }.x)",
    );
    let (_dir, spec) = load_files(&[
        ("g.cvm", "{ \"with-dash\" = { inner = [\"p\"] } }"),
        ("main.cvm", &main),
    ]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        strings(field(&spec.branches[0].value, "packages")),
        ["p", "q"]
    );
}

#[test]
fn every_schema_field_accepts_its_type() {
    let (_dir, spec) = load_files(&[
        ("k.asc", ""),
        ("init", ""),
        (
            "main.cvm",
            r#"
let r = repo { name = "r", url = ./k.asc, gpgkey = "https://k", priority = 1, cost = -5, enabled = true, exclude = ["x*"] }
branch all = release {
  name = "n", version = "1", arch = "x86_64", repos = [r, repo { url = "u" }], packages = []
  pins = {}, exclude = [], installonly = ["kernel"], multilib = true, epoch = 1700000000
  prefer = { "/usr/bin/x" = "pkg" }
  kernel = { package = "kernel", modules = [], cmdline = "", config = ./k.asc }
  initrd = { init = "/init", files = { "/a" = ./init, "/b" = "text" }, binaries = ["sh"], packages = [], compression = "none" }
  images = [{ format = "raw" }, { format = "hdd", size = "1G" }]
  cvmfs = { repository = "cernvm-prod.cern.ch", nested = ["/cvm3"], tag = "v1" }
}
"#,
        ),
    ]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    let v = &spec.branches[0].value;
    assert_eq!(record(v).fields.len(), 15);
    assert_eq!(str_of(field(field(v, "cvmfs"), "tag")), "v1");
}

#[test]
fn source_map_builds_diagnostics_for_later_stages() {
    let spec = lang::load(&example_dir().join("main.cvm")).unwrap();
    let v = field(&spec.branches[0].value, "arch");
    assert_eq!(spec.sources.line_col(v.span), (9, 14));
    let err = spec
        .sources
        .error(v.span, "no package for this arch", "here")
        .with_code("cvm::solve")
        .with_help("try i686");
    assert_eq!(err.code_str(), "cvm::solve");
    assert_eq!(err.to_string(), "no package for this arch");
}

#[test]
fn merge_is_shallow_difference_keeps_order_and_keywords_can_be_quoted() {
    let main = r#"
let k = { "repo" = { x = "1", y = "2" } } // { "repo" = { x = "3" } }
let os = repo (repo { url = "u" })
branch main = release {
  name = k."repo".x, version = "1", arch = "a", repos = [os]
  packages = ["a", "b", "a", "c"] -- ["a", "x"]
  pins = k."repo"
}
"#;
    let (_dir, spec) = load_files(&[("main.cvm", main)]);
    let spec = spec.unwrap_or_else(|e| panic!("{e:?}"));
    let v = &spec.branches[0].value;
    assert_eq!(str_of(field(v, "name")), "3");
    assert_eq!(strings(field(v, "packages")), ["b", "c"]);
    assert_eq!(record(field(v, "pins")).fields.len(), 1);
}

//! Every broken spec in `tests/broken/` fails with the expected diagnostic
//! code and a rendered report (snapshotted) that shows the message,
//! `file:line:col` and the labelled span.

use std::fs;
use std::path::{Path, PathBuf};

use cvmbuild::lang;
use miette::{GraphicalReportHandler, GraphicalTheme};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap()
}

/// The report as a user sees it, without colours and with this checkout's
/// location removed so that snapshots do not depend on the machine.
fn render(err: &lang::Error) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(400)
        .render_report(&mut out, err)
        .unwrap();
    let prefix = format!("{}/", root().display());
    out.replace(&prefix, "")
}

fn load_broken(file: &str) -> lang::Error {
    match lang::load(&root().join("tests/broken").join(file)) {
        Ok(spec) => panic!("{file} loaded: {:?}", spec.branches),
        Err(e) => e,
    }
}

macro_rules! broken {
    ($name:ident, $file:expr, $code:expr) => {
        #[test]
        fn $name() {
            let err = load_broken($file);
            assert_eq!(err.code_str(), $code, "{}", render(&err));
            insta::assert_snapshot!(render(&err));
        }
    };
}

broken!(missing_eq, "missing_eq.cvm", "cvm::parse");
broken!(unterminated_string, "unterminated_string.cvm", "cvm::parse");
broken!(unterminated_record, "unterminated_record.cvm", "cvm::parse");
broken!(mismatched_bracket, "mismatched_bracket.cvm", "cvm::parse");
broken!(bad_character, "bad_character.cvm", "cvm::parse");
broken!(keyword_as_name, "keyword_as_name.cvm", "cvm::parse");
broken!(expected_expression, "expected_expression.cvm", "cvm::parse");
broken!(
    unterminated_interpolation,
    "unterminated_interpolation.cvm",
    "cvm::parse"
);
broken!(unknown_ident, "unknown_ident.cvm", "cvm::unknown-ident");
broken!(
    forward_reference,
    "forward_reference.cvm",
    "cvm::unknown-ident"
);
broken!(self_reference, "self_reference.cvm", "cvm::unknown-ident");
broken!(type_concat, "type_concat.cvm", "cvm::type");
broken!(type_update, "type_update.cvm", "cvm::type");
broken!(type_interpolation, "type_interpolation.cvm", "cvm::type");
broken!(type_field, "type_field.cvm", "cvm::type");
broken!(update_revalidates, "update_revalidates.cvm", "cvm::type");
broken!(unknown_field, "unknown_field.cvm", "cvm::unknown-field");
broken!(missing_field, "missing_field.cvm", "cvm::missing-field");
broken!(bad_enum, "bad_enum.cvm", "cvm::bad-enum");
broken!(duplicate_key, "duplicate_key.cvm", "cvm::duplicate-key");
broken!(duplicate_let, "duplicate_let.cvm", "cvm::duplicate-let");
broken!(
    duplicate_branch,
    "duplicate_branch.cvm",
    "cvm::duplicate-branch"
);
broken!(import_cycle, "import_cycle/main.cvm", "cvm::import-cycle");
broken!(import_missing, "import_missing.cvm", "cvm::import-missing");
broken!(path_missing, "path_missing.cvm", "cvm::path-missing");
broken!(
    branch_in_import,
    "branch_in_import/main.cvm",
    "cvm::branch-in-import"
);
broken!(no_branch, "no_branch.cvm", "cvm::no-branch");
broken!(
    trailing_expression,
    "trailing_expression.cvm",
    "cvm::trailing-expr"
);
broken!(field_of_non_record, "field_of_non_record.cvm", "cvm::type");
broken!(
    missing_record_field,
    "missing_record_field.cvm",
    "cvm::unknown-field"
);
broken!(branch_not_release, "branch_not_release.cvm", "cvm::type");

#[test]
fn main_file_that_cannot_be_read() {
    let err = lang::load(&root().join("tests/broken/no-such-file.cvm")).unwrap_err();
    assert_eq!(err.code_str(), "cvm::io");
}

#[test]
fn nesting_is_bounded() {
    // Just inside the limit: parses and evaluates (and fails only for
    // lack of a branch), without exhausting a test thread's stack.
    let ok = format!("let x = {}1{}", "[".repeat(120), "]".repeat(120));
    let err = lang::load_str(&root().join("ok.cvm"), &ok).unwrap_err();
    assert_eq!(err.code_str(), "cvm::no-branch");
    let deep = format!("let x = {}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = lang::load_str(&root().join("deep.cvm"), &deep).unwrap_err();
    assert_eq!(err.code_str(), "cvm::too-deep");
    let long = format!("let x = []{}", " ++ []".repeat(100_000));
    let err = lang::load_str(&root().join("long.cvm"), &long).unwrap_err();
    assert_eq!(err.code_str(), "cvm::too-deep");
}

/// Every `.cvm` file under `dir`, recursively.
fn specs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            specs(&path, out);
        } else if path.extension().is_some_and(|e| e == "cvm") {
            out.push(path);
        }
    }
}

/// Loading and rendering never panic, whatever the input: every prefix of
/// every test and example spec (which cuts strings, records and
/// interpolations at every possible point), pseudo-random token soup and
/// pseudo-random bytes.
#[test]
fn no_input_panics() {
    let mut files = Vec::new();
    specs(&root().join("tests/broken"), &mut files);
    specs(&root().join("lang/examples"), &mut files);
    assert!(files.len() > 30);
    let mut inputs = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for (i, _) in text.char_indices() {
            inputs.push((file.clone(), text[..i].to_owned()));
        }
    }
    // A fixed xorshift sequence over fragments of the language.
    let fragments = [
        "let ",
        "branch ",
        "x",
        " = ",
        "\"",
        "${",
        "}",
        "{",
        "[",
        "]",
        "(",
        ")",
        "++",
        "--",
        "//",
        ".",
        ",",
        "\n",
        "#",
        "\\",
        "./a",
        "../",
        "-1",
        "9",
        "repo ",
        "release ",
        "import ",
        "\"a.cvm\"",
        "é",
        "true",
        "$",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let main = root().join("lang/examples/cernvm/fuzz.cvm");
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(state % 24) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(fragments[(state % fragments.len() as u64) as usize]);
        }
        inputs.push((main.clone(), text));
        // And raw bytes, made valid UTF-8 as an editor would.
        let bytes: Vec<u8> = (0..state % 40)
            .map(|i| (state.rotate_left(i as u32 * 7) & 0xff) as u8)
            .collect();
        inputs.push((main.clone(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    for (path, text) in inputs {
        if let Err(e) = lang::load_str(&path, &text) {
            assert!(e.code_str().starts_with("cvm::"));
            render(&e);
        }
    }
}

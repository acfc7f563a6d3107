//! The newc writer against GNU cpio: it lists and extracts what we write,
//! in our order, with our modes, owners, times, link targets and devices.

use cvmbuild::image::cpio::{write, Kind, Member, Members};
use std::io::Write;
use std::process::{Command, Stdio};

fn members() -> Members {
    let m = |mode, kind| Member { mode, kind };
    Members::from([
        ("bin".into(), m(0o755, Kind::Directory)),
        (
            "bin/sh".into(),
            m(0o755, Kind::File(b"#!/bin/true\n".to_vec())),
        ),
        ("bin/ash".into(), m(0o777, Kind::Symlink("sh".into()))),
        ("dev".into(), m(0o755, Kind::Directory)),
        (
            "dev/console".into(),
            m(0o600, Kind::CharDevice { major: 5, minor: 1 }),
        ),
        ("etc".into(), m(0o755, Kind::Directory)),
        ("etc/odd size".into(), m(0o644, Kind::File(vec![7u8; 4099]))),
        ("init".into(), m(0o755, Kind::File(b"x".to_vec()))),
    ])
}

fn cpio(args: &[&str], input: &[u8], dir: &std::path::Path) -> String {
    let mut c = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cpio is installed (.ci/deps)");
    c.stdin.take().unwrap().write_all(input).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gnu_cpio_lists_and_extracts_it() {
    let mut bytes = Vec::new();
    write(&mut bytes, &members(), 1_400_000_000).unwrap();
    let t = tempfile::tempdir().unwrap();
    let listing = cpio(
        &["-t", "-v", "--quiet", "--numeric-uid-gid"],
        &bytes,
        t.path(),
    );
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // A device shows `major, minor` (two fields) where others show a size.
    let skip = |f: &[&str]| if f[0].starts_with('c') { 9 } else { 8 };
    let names: Vec<String> = lines.iter().map(|f| f[skip(f)..].join(" ")).collect();
    assert_eq!(
        names,
        [
            "bin",
            "bin/ash -> sh",
            "bin/sh",
            "dev",
            "dev/console",
            "etc",
            "etc/odd size",
            "init"
        ]
    );
    assert_eq!(lines[1][0], "lrwxrwxrwx");
    assert_eq!(lines[2][0], "-rwxr-xr-x");
    assert_eq!(lines[4][0], "crw-------");
    assert_eq!(&lines[4][4..6], ["5,", "1"]);
    assert!(
        lines.iter().all(|f| f[2] == "0" && f[3] == "0"),
        "{listing}"
    );
    // 1400000000 is 2014-05-13 16:53:20 UTC.
    assert!(
        lines
            .iter()
            .all(|f| f[skip(f) - 3..skip(f)] == ["May", "13", "2014"]),
        "{listing}"
    );

    // Extract the regular files and links (device nodes need privileges).
    cpio(
        &[
            "-i",
            "-d",
            "-m",
            "--quiet",
            "--no-absolute-filenames",
            "bin*",
            "etc*",
            "init",
        ],
        &bytes,
        t.path(),
    );
    assert_eq!(
        std::fs::read(t.path().join("etc/odd size")).unwrap(),
        vec![7u8; 4099]
    );
    assert_eq!(
        std::fs::read_link(t.path().join("bin/ash"))
            .unwrap()
            .to_str(),
        Some("sh")
    );
    let mtime = std::fs::metadata(t.path().join("init"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_400_000_000
    );
}

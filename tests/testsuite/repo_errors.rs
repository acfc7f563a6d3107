//! Broken repositories: each failure is a clear error that names the
//! repository and the file, with a stable diagnostic code.

use crate::support::rpmrepo;

use cvmbuild::repo::{load, metadata_hash, RepoError, RepoSource};
use miette::Diagnostic;
use rpmrepo::{write_repomd, MdFile};
use std::io::Write;
use std::path::Path;

const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="1">
<package type="rpm">
  <name>hello</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="2.10" rel="1"/>
  <checksum type="sha256" pkgid="YES">00ff</checksum>
  <summary>hello &amp; goodbye</summary>
  <location href="Packages/hello-2.10-1.x86_64.rpm"/>
  <format>
    <rpm:requires>
      <rpm:entry name="glibc" flags="GE" ver="2.17"/>
    </rpm:requires>
  </format>
</package>
</metadata>
"#;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn source(dir: &Path) -> RepoSource {
    RepoSource {
        name: "broken".into(),
        url: dir.display().to_string(),
        priority: 1,
        cost: 1,
    }
}

/// A repository whose primary is `stored` (with `open` as its claimed
/// decompressed content), loaded once; returns the error.
fn load_err(stored: Vec<u8>, open: Option<&[u8]>) -> RepoError {
    let dir = tempfile::tempdir().unwrap();
    write_repomd(
        dir.path(),
        &[MdFile {
            kind: "primary".into(),
            href: "repodata/primary.xml.gz".into(),
            stored,
            open: open.map(<[u8]>::to_vec),
        }],
    );
    let err = load(&[source(dir.path())], None).expect_err("the load must fail");
    let text = err.to_string();
    assert!(text.contains("repository `broken`"), "{text}");
    err
}

fn code(err: &RepoError) -> String {
    err.code().map(|c| c.to_string()).unwrap_or_default()
}

#[test]
fn the_good_case_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_repomd(
        dir.path(),
        &[MdFile {
            kind: "primary".into(),
            href: "repodata/primary.xml.gz".into(),
            stored: gz(PRIMARY.as_bytes()),
            open: Some(PRIMARY.as_bytes().to_vec()),
        }],
    );
    let pool = load(&[source(dir.path())], None).unwrap();
    assert_eq!(pool.packages.len(), 1);
    assert_eq!(
        pool.nevra(cvmbuild::repo::PackageId(0)).to_string(),
        "hello-2.10-1.x86_64"
    );
}

#[test]
fn malformed_xml_reports_line_and_column() {
    let bad = PRIMARY.replace("</arch>", "</arhc>");
    let err = load_err(gz(bad.as_bytes()), None);
    assert_eq!(code(&err), "repo::xml");
    let RepoError::Xml { line, file, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*line, 5, "{err}");
    assert!(file.ends_with("repodata/primary.xml.gz"), "{err}");
    assert!(err.to_string().contains("arhc"), "{err}");
}

#[test]
fn truncated_compressed_file() {
    let data = gz(PRIMARY.as_bytes());
    // The checksum matches the truncated bytes: only decompression can tell.
    let err = load_err(data[..data.len() / 2].to_vec(), None);
    assert_eq!(code(&err), "repo::decompress", "{err}");
}

#[test]
fn truncated_plain_file() {
    let cut = &PRIMARY.as_bytes()[..PRIMARY.len() - "</metadata>\n".len()];
    let err = load_err(cut.to_vec(), None);
    assert_eq!(code(&err), "repo::xml", "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn wrongly_compressed_file() {
    // LZ4 frame magic: not a format repodata uses.
    let err = load_err(b"\x04\x22\x4d\x18garbage".to_vec(), None);
    assert_eq!(code(&err), "repo::decompress", "{err}");
    assert!(
        err.to_string().contains("unknown compression format"),
        "{err}"
    );
}

#[test]
fn compression_is_recognised_by_content_not_name() {
    // An xz file named .gz loads.
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(PRIMARY.as_bytes()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_repomd(
        dir.path(),
        &[MdFile {
            kind: "primary".into(),
            href: "repodata/primary.xml.gz".into(),
            stored: xz.finish().unwrap(),
            open: Some(PRIMARY.as_bytes().to_vec()),
        }],
    );
    assert_eq!(load(&[source(dir.path())], None).unwrap().packages.len(), 1);
}

#[test]
fn checksum_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    write_repomd(
        dir.path(),
        &[MdFile {
            kind: "primary".into(),
            href: "repodata/primary.xml.gz".into(),
            stored: gz(PRIMARY.as_bytes()),
            open: None,
        }],
    );
    // The mirror serves a different file than repomd.xml describes.
    std::fs::write(
        dir.path().join("repodata/primary.xml.gz"),
        gz(PRIMARY.replace("2.10", "2.11").as_bytes()),
    )
    .unwrap();
    let err = load(&[source(dir.path())], None).unwrap_err();
    assert_eq!(code(&err), "repo::checksum");
    let text = err.to_string();
    assert!(text.contains("checksum mismatch for"), "{text}");
    assert!(text.contains("primary.xml.gz"), "{text}");
    assert!(text.contains("repomd.xml says sha256:"), "{text}");
}

#[test]
fn open_checksum_mismatch() {
    let other = PRIMARY.replace("2.10", "2.11");
    let err = load_err(gz(PRIMARY.as_bytes()), Some(other.as_bytes()));
    assert_eq!(code(&err), "repo::checksum");
    assert!(err.to_string().contains("open-checksum mismatch"), "{err}");
}

#[test]
fn unknown_checksum_type() {
    let dir = tempfile::tempdir().unwrap();
    write_repomd(
        dir.path(),
        &[MdFile {
            kind: "primary".into(),
            href: "repodata/primary.xml.gz".into(),
            stored: gz(PRIMARY.as_bytes()),
            open: None,
        }],
    );
    let md = dir.path().join("repodata/repomd.xml");
    let text = std::fs::read_to_string(&md).unwrap();
    std::fs::write(&md, text.replace("sha256", "crc32")).unwrap();
    let err = load(&[source(dir.path())], None).unwrap_err();
    assert_eq!(code(&err), "repo::metadata");
    assert!(
        err.to_string().contains("unknown checksum type `crc32`"),
        "{err}"
    );
}

#[test]
fn missing_repomd() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&[source(dir.path())], None).unwrap_err();
    assert_eq!(code(&err), "repo::missing");
    assert!(
        err.to_string()
            .contains("repodata/repomd.xml does not exist"),
        "{err}"
    );
    assert!(metadata_hash(&source(dir.path())).is_err());
}

#[test]
fn missing_primary_file() {
    let dir = tempfile::tempdir().unwrap();
    write_repomd(
        dir.path(),
        &[MdFile {
            kind: "primary".into(),
            href: "repodata/primary.xml.gz".into(),
            stored: gz(PRIMARY.as_bytes()),
            open: None,
        }],
    );
    std::fs::remove_file(dir.path().join("repodata/primary.xml.gz")).unwrap();
    let err = load(&[source(dir.path())], None).unwrap_err();
    assert_eq!(code(&err), "repo::missing");
    assert!(err.to_string().contains("primary.xml.gz"), "{err}");
}

#[test]
fn missing_primary_entry() {
    let dir = tempfile::tempdir().unwrap();
    write_repomd(
        dir.path(),
        &[MdFile {
            kind: "other".into(),
            href: "repodata/other.xml.gz".into(),
            stored: gz(b"<otherdata/>"),
            open: None,
        }],
    );
    let err = load(&[source(dir.path())], None).unwrap_err();
    assert_eq!(code(&err), "repo::metadata");
    assert!(err.to_string().contains("lists no `primary`"), "{err}");
    assert!(err.to_string().contains("repomd.xml"), "{err}");
}

#[test]
fn malformed_repomd() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repodata")).unwrap();
    std::fs::write(
        dir.path().join("repodata/repomd.xml"),
        "<repomd>\n<data type=\"primary\">\n</repomd>",
    )
    .unwrap();
    let err = load(&[source(dir.path())], None).unwrap_err();
    assert_eq!(code(&err), "repo::xml");
    assert!(matches!(err, RepoError::Xml { line: 3, .. }), "{err}");
}

#[test]
fn bad_values_name_the_package_and_position() {
    let bad_epoch = PRIMARY.replace("epoch=\"0\"", "epoch=\"zero\"");
    let err = load_err(gz(bad_epoch.as_bytes()), None);
    assert_eq!(code(&err), "repo::metadata");
    assert!(err.to_string().contains("line 6"), "{err}");
    assert!(err.to_string().contains("invalid epoch `zero`"), "{err}");

    let bad_rich = PRIMARY.replace(
        r#"name="glibc" flags="GE" ver="2.17""#,
        r#"name="(glibc and bash or zsh)""#,
    );
    let err = load_err(gz(bad_rich.as_bytes()), None);
    assert_eq!(code(&err), "repo::metadata");
    let text = err.to_string();
    assert!(text.contains("package `hello`"), "{text}");
    assert!(text.contains("cannot chain `or` after `and`"), "{text}");
    assert!(text.contains("column 17 of rich dependency"), "{text}");

    let no_name = PRIMARY.replace("<name>hello</name>", "");
    let err = load_err(gz(no_name.as_bytes()), None);
    assert!(err.to_string().contains("has no <name>"), "{err}");
}

#[test]
fn unreachable_server() {
    let port = rpmrepo::free_port();
    let src = RepoSource {
        name: "gone".into(),
        url: format!("http://127.0.0.1:{port}/os"),
        priority: 1,
        cost: 1,
    };
    let start = std::time::Instant::now();
    let err = load(std::slice::from_ref(&src), None).unwrap_err();
    assert_eq!(code(&err), "repo::unreachable");
    let text = err.to_string();
    assert!(text.contains("repository `gone`"), "{text}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/os/repodata/repomd.xml")),
        "{text}"
    );
    assert!(text.contains("after 4 attempts"), "{text}");
    // Retries back off, but a dead server is reported promptly.
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(code(&metadata_hash(&src).unwrap_err()), "repo::unreachable");
}

#[test]
fn http_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = rpmrepo::HttpServer::start(dir.path());
    let src = RepoSource {
        name: "empty".into(),
        url: server.url.clone(),
        priority: 1,
        cost: 1,
    };
    let err = load(&[src], None).unwrap_err();
    assert_eq!(code(&err), "repo::missing", "{err}");
    assert!(err.to_string().contains("/repodata/repomd.xml"), "{err}");
}

#[test]
fn unsupported_url_scheme() {
    let src = RepoSource {
        name: "ftp".into(),
        url: "ftp://mirror.example/os".into(),
        priority: 1,
        cost: 1,
    };
    assert_eq!(code(&load(&[src], None).unwrap_err()), "repo::url");
}

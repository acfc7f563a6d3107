//! Loading repositories built at test time with rpmbuild + createrepo_c:
//! parsed dependencies equal what rpm itself reads from the packages, every
//! compression, the binary cache, HTTP, file lists on demand.

use crate::support::rpmrepo;

use cvmbuild::repo::{
    load, load_filelists, metadata_hash, unprovided_file_requires, Dep, Pool, RepoSource, SimpleDep,
};
use rpmrepo::{build_rpms, createrepo, HttpServer, Pkg, RepoOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn fixture_pkgs() -> Vec<Pkg> {
    vec![
        Pkg::new("alpha", "1.2", "3")
            .epoch(1)
            .requires("beta >= 2.0")
            .requires("(gamma >= 1.2 or delta)")
            .requires("(beta if alpha-extra else (delta with gamma))")
            .provides("alpha-api = 5")
            .conflicts("omega < 3")
            .obsoletes("old-alpha <= 1.0-1")
            .file("/usr/bin/alpha", b"#!/bin/sh\necho alpha\n")
            .file("/usr/share/alpha/data", b"x"),
        Pkg::new("beta", "2.1", "1")
            .arch("x86_64")
            .provides("libbeta.so.2()(64bit)")
            .file("/usr/lib64/beta/libbeta.so.2", b"\x7fELF not really"),
        Pkg::new("gamma", "1.3", "1.el9")
            .requires("/usr/lib64/beta/libbeta.so.2")
            .conflicts("(omega and alpha < 1:1)")
            .obsoletes("gamma-old"),
        Pkg::new("delta", "0.9~rc1", "1")
            .epoch(2)
            .file("/etc/delta.conf", b"a=1\n")
            .file_mode("/usr/bin/delta", b"#!/bin/sh\n", 0o755)
            .dir("/var/lib/delta")
            .symlink("/usr/bin/delta-link", "delta")
            .script("post", "echo 'delta installed' > /dev/null"),
    ]
}

/// The fixture RPMs, built once per test run. (Under cargo's scratch
/// directory: a static `TempDir` would never be dropped and removed.)
fn rpms() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("repo_fixture-rpms");
        let _ = std::fs::remove_dir_all(&dir);
        build_rpms(&fixture_pkgs(), &dir);
        dir
    })
}

/// A fresh repository of the fixture RPMs in its own directory.
fn repo(opts: &RepoOptions) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(rpms()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    createrepo(dir.path(), opts);
    dir
}

fn source(url: &str) -> RepoSource {
    RepoSource {
        name: "fixture".into(),
        url: url.into(),
        priority: 10,
        cost: 1000,
    }
}

fn path_source(dir: &Path) -> RepoSource {
    source(&dir.display().to_string())
}

/// Everything the pool knows about each package, as text.
fn render(pool: &Pool) -> Vec<String> {
    pool.ids()
        .map(|id| {
            let p = pool.package(id);
            let deps =
                |v: &[Dep]| -> Vec<String> { v.iter().map(|d| pool.dep_to_string(d)).collect() };
            let provides: Vec<String> = p
                .provides
                .iter()
                .map(|d| pool.simple_to_string(d))
                .collect();
            let files: Vec<&str> = p.files.iter().map(|&f| pool.name(f)).collect();
            format!(
                "{} loc={} sum={}:{} size={}/{} P={provides:?} R={:?} C={:?} O={:?} F={files:?}",
                pool.nevra(id),
                p.location,
                p.checksum.kind,
                p.checksum.hex,
                p.size_package,
                p.size_installed,
                deps(&p.requires),
                deps(&p.conflicts),
                deps(&p.obsoletes),
            )
        })
        .collect()
}

/// What rpm itself reads from the package file, in rpm's own spelling.
fn rpm_query(rpm: &Path, what: &str) -> Vec<String> {
    let out = Command::new("rpm")
        .args(["-qp", &format!("--{what}")])
        .arg(rpm)
        .output()
        .unwrap();
    assert!(out.status.success(), "rpm -qp --{what} {}", rpm.display());
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // createrepo_c leaves rpmlib() dependencies out of repodata.
        .filter(|l| !l.starts_with("rpmlib("))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn deps_equal_what_rpm_reads_from_the_packages() {
    let dir = repo(&RepoOptions::default());
    let pool = load(&[path_source(dir.path())], None).unwrap();
    assert_eq!(pool.packages.len(), 4);
    for id in pool.ids() {
        let p = pool.package(id);
        let rpm_file = dir.path().join(&*p.location);
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let ours = |v: &[Dep]| sorted(v.iter().map(|d| pool.dep_to_string(d)).collect());
        assert_eq!(
            ours(&p.requires),
            rpm_query(&rpm_file, "requires"),
            "{}",
            pool.nevra(id)
        );
        assert_eq!(ours(&p.conflicts), rpm_query(&rpm_file, "conflicts"));
        assert_eq!(ours(&p.obsoletes), rpm_query(&rpm_file, "obsoletes"));
        let provides = sorted(
            p.provides
                .iter()
                .map(|d| pool.simple_to_string(d))
                .collect(),
        );
        assert_eq!(provides, rpm_query(&rpm_file, "provides"));
        assert_eq!(p.size_package, std::fs::metadata(&rpm_file).unwrap().len());
        assert_eq!(
            &*p.checksum.hex,
            rpmrepo::sha256_hex(&std::fs::read(&rpm_file).unwrap())
        );
    }
    let alpha = pool.package(pool.named(pool.names.get("alpha").unwrap())[0]);
    assert_eq!(alpha.evr.to_string(), "1:1.2-3");
    let files: Vec<&str> = alpha.files.iter().map(|&f| pool.name(f)).collect();
    assert!(files.contains(&"/usr/bin/alpha"), "{files:?}");
    let delta = pool.package(pool.named(pool.names.get("delta").unwrap())[0]);
    assert_eq!(delta.evr.to_string(), "2:0.9~rc1-1");
}

#[test]
fn rich_dependencies_round_trip() {
    let dir = repo(&RepoOptions::default());
    let pool = load(&[path_source(dir.path())], None).unwrap();
    let alpha = pool.package(pool.named(pool.names.get("alpha").unwrap())[0]);
    let mut rich: Vec<String> = alpha
        .requires
        .iter()
        .filter(|d| matches!(d, Dep::Rich(_)))
        .map(|d| pool.dep_to_string(d))
        .collect();
    rich.sort();
    assert_eq!(
        rich,
        [
            "(beta if alpha-extra else (delta with gamma))",
            "(gamma >= 1.2 or delta)",
        ]
    );
}

#[test]
fn every_compression_gives_the_same_pool() {
    let want = render(&load(&[path_source(repo(&RepoOptions::default()).path())], None).unwrap());
    for compress in ["xz", "bz2", "gz"] {
        let dir = repo(&RepoOptions {
            compress,
            simple_names: true,
        });
        let got = render(&load(&[path_source(dir.path())], None).unwrap());
        assert_eq!(got, want, "{compress}");
    }
    let dir = repo(&RepoOptions::default());
    rpmrepo::recompress_zstd(dir.path());
    assert!(
        std::fs::read_to_string(dir.path().join("repodata/repomd.xml"))
            .unwrap()
            .contains("primary.xml.zst")
    );
    assert_eq!(
        render(&load(&[path_source(dir.path())], None).unwrap()),
        want
    );
}

#[test]
fn file_lists_load_on_demand() {
    let dir = repo(&RepoOptions::default());
    let mut pool = load(&[path_source(dir.path())], None).unwrap();
    let lib = "/usr/lib64/beta/libbeta.so.2";
    let dep = SimpleDep {
        name: pool.names.get(lib).expect("gamma requires it"),
        range: None,
    };
    // primary lists only the "interesting" files; this is not one of them.
    assert!(pool.whatprovides(&dep).is_empty());
    let missing = unprovided_file_requires(&pool);
    // delta's %post brings `Requires(post): /bin/sh`, which no fixture has.
    assert_eq!(missing, ["/bin/sh", lib]);
    let mut wanted: Vec<&str> = missing.iter().map(String::as_str).collect();
    wanted.push("/no/such/file");
    let added = load_filelists(&mut pool, &wanted).unwrap();
    assert_eq!(added, 1);
    assert_eq!(unprovided_file_requires(&pool), ["/bin/sh"]);
    let owners: Vec<String> = pool
        .whatprovides(&dep)
        .into_iter()
        .map(|id| pool.nevra(id).to_string())
        .collect();
    assert_eq!(owners, ["beta-2.1-1.x86_64"]);
    // Asking again adds nothing twice.
    assert_eq!(load_filelists(&mut pool, &[lib]).unwrap(), 0);
}

#[test]
fn file_lists_refuse_a_changed_repository() {
    let dir = repo(&RepoOptions::default());
    let mut pool = load(&[path_source(dir.path())], None).unwrap();
    let md = dir.path().join("repodata/repomd.xml");
    let text = std::fs::read_to_string(&md).unwrap();
    std::fs::write(
        &md,
        text.replace("<revision>1</revision>", "<revision>2</revision>"),
    )
    .unwrap();
    let err = load_filelists(&mut pool, &["/etc/delta.conf"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed since the pool was loaded"),
        "{err}"
    );
}

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => vec![],
    }
}

#[test]
fn second_load_comes_from_the_cache() {
    let dir = repo(&RepoOptions::default());
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("md");
    let src = path_source(dir.path());
    let first = load(std::slice::from_ref(&src), Some(&cache_dir)).unwrap();
    let entries = cache_entries(&cache_dir);
    let hash = metadata_hash(&src).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(&hash));
    assert_eq!(first.repos[0].metadata_hash, hash);

    // Destroy primary but not repomd.xml: only a load that does not read
    // primary at all can still succeed.
    let primary = dir.path().join(rpmrepo::md_href(dir.path(), "primary"));
    std::fs::write(&primary, b"garbage").unwrap();
    let second = load(std::slice::from_ref(&src), Some(&cache_dir)).unwrap();
    assert_eq!(render(&second), render(&first));
    assert_eq!(second.repos, first.repos);
    // The cached pool is indexed like a parsed one.
    let beta = SimpleDep {
        name: second.names.get("libbeta.so.2()(64bit)").unwrap(),
        range: None,
    };
    assert_eq!(second.whatprovides(&beta).len(), 1);
    // Without the cache the damage is found.
    let err = load(&[src], None).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn a_failed_load_caches_nothing() {
    let dir = repo(&RepoOptions::default());
    let primary = dir.path().join(rpmrepo::md_href(dir.path(), "primary"));
    let mut data = std::fs::read(&primary).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    std::fs::write(&primary, data).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = load(&[path_source(dir.path())], Some(cache.path())).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(cache_entries(cache.path()).is_empty());
}

#[test]
fn loads_over_http() {
    let dir = repo(&RepoOptions::default());
    let server = HttpServer::start(dir.path());
    let http = source(&format!("{}/", server.url));
    let local = path_source(dir.path());
    let over_http = load(std::slice::from_ref(&http), None).unwrap();
    assert_eq!(
        render(&over_http),
        render(&load(std::slice::from_ref(&local), None).unwrap())
    );
    assert_eq!(
        metadata_hash(&http).unwrap(),
        metadata_hash(&local).unwrap()
    );
    assert_eq!(over_http.repos[0].base, http.url);
    // File lists come over HTTP too.
    let mut pool = over_http;
    assert_eq!(
        load_filelists(&mut pool, &["/usr/lib64/beta/libbeta.so.2"]).unwrap(),
        1
    );
    // file:// URLs work like paths.
    let file_url = source(&format!("file://{}", dir.path().display()));
    assert_eq!(load(&[file_url], None).unwrap().packages.len(), 4);
}

#[test]
fn fixture_rpms_are_reproducible() {
    let again = tempfile::tempdir().unwrap();
    let pkgs = fixture_pkgs();
    build_rpms(&pkgs[..1], again.path());
    let name = pkgs[0].file_name();
    assert_eq!(
        std::fs::read(again.path().join(&name)).unwrap(),
        std::fs::read(rpms().join(&name)).unwrap()
    );
}

#[test]
fn fixture_packages_have_what_the_spec_says() {
    let rpm = rpms().join(fixture_pkgs()[3].file_name());
    let out = Command::new("rpm")
        .args([
            "-qp",
            "--qf",
            "[%{FILEMODES:perms} %{FILENAMES} %{FILELINKTOS}\n]",
        ])
        .arg(&rpm)
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    for line in [
        "-rw-r--r-- /etc/delta.conf ",
        "-rwxr-xr-x /usr/bin/delta ",
        "lrwxrwxrwx /usr/bin/delta-link delta",
        "drwxr-xr-x /var/lib/delta ",
    ] {
        assert!(
            listing.lines().any(|l| l == line),
            "no `{line}` in\n{listing}"
        );
    }
    let out = Command::new("rpm")
        .args(["-qp", "--scripts"])
        .arg(&rpm)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo 'delta installed'"));
}

//! Real RPM repositories built at test time: `.spec` files built with
//! `rpmbuild -bb` (reproducibly: fixed SOURCE_DATE_EPOCH, build host and
//! payload compression) and indexed with `createrepo_c`, plus helpers to
//! rewrite `repomd.xml` for formats createrepo_c cannot make (zstd) and
//! for broken repositories.
//!
//! Use it from a test crate with
//! `#[path = "common/rpmrepo.rs"] mod rpmrepo;`.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The timestamp every fixture is built at.
pub const SOURCE_DATE_EPOCH: u64 = 1_700_000_000;

/// One binary package to build.
#[derive(Clone, Debug)]
pub struct Pkg {
    pub name: String,
    pub epoch: Option<u64>,
    pub version: String,
    pub release: String,
    /// `noarch` or the host architecture (`x86_64`).
    pub arch: String,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub obsoletes: Vec<String>,
    /// Regular files: (absolute path, contents, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Directories the package owns (empty unless files are put in them).
    pub dirs: Vec<String>,
    /// Symbolic links: (absolute path, target).
    pub symlinks: Vec<(String, String)>,
    /// Scriptlets: (section without `%`, e.g. `post`, `pre`; shell body).
    pub scripts: Vec<(String, String)>,
    /// File capabilities: (path of one of `files`, `%caps` text).
    pub caps: Vec<(String, String)>,
    /// Files copied from the host at build time: (absolute path in the
    /// package, host path, mode).
    pub copies: Vec<(String, String, u32)>,
    /// Further preamble lines, verbatim (`Recommends: x`, `Requires(pre): y`).
    pub preamble: Vec<String>,
    /// Verbatim (`%install` commands, `%files` line) pairs, for what the
    /// other fields cannot say (`%ghost`, `%config(noreplace)`).
    pub custom: Vec<(String, String)>,
}

impl Pkg {
    /// A `noarch` package without dependencies or files.
    pub fn new(name: &str, version: &str, release: &str) -> Pkg {
        Pkg {
            name: name.into(),
            epoch: None,
            version: version.into(),
            release: release.into(),
            arch: "noarch".into(),
            requires: vec![],
            provides: vec![],
            conflicts: vec![],
            obsoletes: vec![],
            files: vec![],
            dirs: vec![],
            symlinks: vec![],
            scripts: vec![],
            caps: vec![],
            preamble: vec![],
            copies: vec![],
            custom: vec![],
        }
    }
    pub fn epoch(mut self, e: u64) -> Pkg {
        self.epoch = Some(e);
        self
    }
    pub fn arch(mut self, a: &str) -> Pkg {
        self.arch = a.into();
        self
    }
    pub fn requires(mut self, d: &str) -> Pkg {
        self.requires.push(d.into());
        self
    }
    pub fn provides(mut self, d: &str) -> Pkg {
        self.provides.push(d.into());
        self
    }
    pub fn conflicts(mut self, d: &str) -> Pkg {
        self.conflicts.push(d.into());
        self
    }
    pub fn obsoletes(mut self, d: &str) -> Pkg {
        self.obsoletes.push(d.into());
        self
    }
    /// A regular file, mode 0644.
    pub fn file(self, path: &str, contents: &[u8]) -> Pkg {
        self.file_mode(path, contents, 0o644)
    }
    pub fn file_mode(mut self, path: &str, contents: &[u8], mode: u32) -> Pkg {
        self.files.push((path.into(), contents.into(), mode));
        self
    }
    pub fn dir(mut self, path: &str) -> Pkg {
        self.dirs.push(path.into());
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Pkg {
        self.symlinks.push((path.into(), target.into()));
        self
    }
    /// A scriptlet: `script("post", "echo done")` becomes `%post`.
    /// Gives the file at `path` (added with [`Pkg::file`]) `%caps(text)`.
    pub fn caps(mut self, path: &str, text: &str) -> Pkg {
        self.caps.push((path.into(), text.into()));
        self
    }

    pub fn copy(mut self, path: &str, host: &str, mode: u32) -> Pkg {
        self.copies.push((path.into(), host.into(), mode));
        self
    }
    /// `install` (shell, `$RPM_BUILD_ROOT` is the build root; may be
    /// empty) run in `%install`, and `files` put in `%files` verbatim.
    pub fn custom(mut self, install: &str, files: &str) -> Pkg {
        self.custom.push((install.into(), files.into()));
        self
    }
    pub fn preamble(mut self, line: &str) -> Pkg {
        self.preamble.push(line.into());
        self
    }
    pub fn script(mut self, section: &str, body: &str) -> Pkg {
        self.scripts.push((section.into(), body.into()));
        self
    }

    /// `name-version-release.arch.rpm`, as rpmbuild names it.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }

    /// The spec file. Automatic dependencies are off so the package has
    /// exactly the dependencies listed here.
    pub fn spec(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Name: {}", self.name);
        if let Some(e) = self.epoch {
            let _ = writeln!(s, "Epoch: {e}");
        }
        let _ = writeln!(s, "Version: {}", self.version);
        let _ = writeln!(s, "Release: {}", self.release);
        let _ = writeln!(s, "Summary: {} (test fixture)", self.name);
        let _ = writeln!(s, "License: MIT");
        let _ = writeln!(s, "BuildArch: {}", self.arch);
        s.push_str("AutoReqProv: no\n%global debug_package %{nil}\n");
        for (tag, list) in [
            ("Requires", &self.requires),
            ("Provides", &self.provides),
            ("Conflicts", &self.conflicts),
            ("Obsoletes", &self.obsoletes),
        ] {
            for d in list {
                let _ = writeln!(s, "{tag}: {d}");
            }
        }
        for line in &self.preamble {
            let _ = writeln!(s, "{line}");
        }
        s.push_str("%description\nA package built by cvmbuild's tests.\n%install\n");
        let parent = |path: &str| {
            Path::new(path)
                .parent()
                .map_or("/".into(), |p| p.display().to_string())
        };
        for (path, contents, _) in &self.files {
            // Octal escapes keep every byte away from rpm macros and the shell.
            let escaped: String = contents.iter().map(|b| format!("\\{b:03o}")).collect();
            let _ = writeln!(s, "mkdir -p %{{buildroot}}{}", parent(path));
            let _ = writeln!(s, "printf '{escaped}' > %{{buildroot}}{path}");
        }
        for dir in &self.dirs {
            let _ = writeln!(s, "mkdir -p %{{buildroot}}{dir}");
        }
        for (path, host, _) in &self.copies {
            let _ = writeln!(s, "install -D '{host}' %{{buildroot}}{path}");
        }
        for (path, target) in &self.symlinks {
            let _ = writeln!(s, "mkdir -p %{{buildroot}}{}", parent(path));
            let _ = writeln!(s, "ln -s '{target}' %{{buildroot}}{path}");
        }
        for (install, _) in &self.custom {
            let _ = writeln!(s, "{install}");
        }
        for (section, body) in &self.scripts {
            let _ = writeln!(s, "%{section}\n{body}");
        }
        s.push_str("%files\n");
        for (path, _, mode) in &self.files {
            if let Some((_, caps)) = self.caps.iter().find(|(p, _)| p == path) {
                let _ = write!(s, "%caps({caps}) ");
            }
            let _ = writeln!(s, "%attr({mode:04o},root,root) {path}");
        }
        for dir in &self.dirs {
            let _ = writeln!(s, "%dir {dir}");
        }
        for (path, _, mode) in &self.copies {
            let _ = writeln!(s, "%attr({mode:04o},root,root) {path}");
        }
        for (path, _) in &self.symlinks {
            let _ = writeln!(s, "{path}");
        }
        for (_, files) in &self.custom {
            let _ = writeln!(s, "{files}");
        }
        s
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds each package with `rpmbuild -bb` into `out` and returns the
/// paths of the RPMs. Same inputs give byte-identical RPMs.
pub fn build_rpms(pkgs: &[Pkg], out: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(out).unwrap();
    let work = tempfile::tempdir().unwrap();
    pkgs.iter()
        .map(|p| {
            let spec = work.path().join(format!("{}.spec", p.name));
            std::fs::write(&spec, p.spec()).unwrap();
            let top = work.path().join("top");
            run(Command::new("rpmbuild")
                .arg("-bb")
                .arg("--quiet")
                .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
                .args(["--define", &format!("_topdir {}", top.display())])
                .args(["--define", &format!("_rpmdir {}", out.display())])
                .args([
                    "--define",
                    "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
                ])
                .args(["--define", "_binary_payload w19.zstdio"])
                .args(["--define", "use_source_date_epoch_as_buildtime 1"])
                .args(["--define", "clamp_mtime_to_source_date_epoch 1"])
                .args(["--define", "_buildhost cvmbuild.test"])
                .args(["--define", "_build_id_links none"])
                .args(["--define", "__os_install_post %{nil}"])
                .arg(&spec));
            let rpm = out.join(p.file_name());
            assert!(rpm.is_file(), "rpmbuild did not make {}", rpm.display());
            rpm
        })
        .collect()
}

/// How `createrepo_c` writes the metadata.
#[derive(Clone, Debug)]
pub struct RepoOptions {
    /// `gz`, `xz` or `bz2` (Debian's createrepo_c 0.17 has no zstd; see
    /// [`recompress_zstd`]).
    pub compress: &'static str,
    /// `repodata/primary.xml.gz` instead of `repodata/<sha256>-primary.xml.gz`.
    pub simple_names: bool,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            compress: "gz",
            simple_names: false,
        }
    }
}

/// Runs `createrepo_c` on `dir` (which holds RPMs) reproducibly.
pub fn createrepo(dir: &Path, opts: &RepoOptions) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rpm") {
            run(Command::new("touch")
                .arg("-d")
                .arg(format!("@{SOURCE_DATE_EPOCH}"))
                .arg(&p));
        }
    }
    let mut cmd = Command::new("createrepo_c");
    cmd.args(["--quiet", "--no-database", "--revision", "1"])
        .arg("--set-timestamp-to-revision")
        .args(["--general-compress-type", opts.compress]);
    if opts.simple_names {
        cmd.arg("--simple-md-filenames");
    }
    run(cmd.arg(dir));
}

/// Builds `pkgs` and indexes them: a complete repository in `dir`.
pub fn build_repo(dir: &Path, pkgs: &[Pkg], opts: &RepoOptions) {
    build_rpms(pkgs, dir);
    createrepo(dir, opts);
}

/// One `<data>` entry of a hand-written repomd.xml.
pub struct MdFile {
    /// `primary`, `filelists`, ...
    pub kind: String,
    /// Relative to the repository root, e.g. `repodata/primary.xml.zst`.
    pub href: String,
    /// The bytes written to `href`.
    pub stored: Vec<u8>,
    /// The decompressed content, for `open-checksum` (None: omit it).
    pub open: Option<Vec<u8>>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes the files and a repomd.xml listing them with sha256 checksums.
pub fn write_repomd(root: &Path, files: &[MdFile]) {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\">\n  <revision>1</revision>\n",
    );
    for f in files {
        let path = root.join(&f.href);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &f.stored).unwrap();
        let _ = writeln!(x, "  <data type=\"{}\">", f.kind);
        let _ = writeln!(
            x,
            "    <checksum type=\"sha256\">{}</checksum>",
            sha256_hex(&f.stored)
        );
        if let Some(open) = &f.open {
            let _ = writeln!(
                x,
                "    <open-checksum type=\"sha256\">{}</open-checksum>",
                sha256_hex(open)
            );
        }
        let _ = writeln!(x, "    <location href=\"{}\"/>", f.href);
        let _ = writeln!(x, "    <size>{}</size>\n  </data>", f.stored.len());
    }
    x.push_str("</repomd>\n");
    std::fs::create_dir_all(root.join("repodata")).unwrap();
    std::fs::write(root.join("repodata/repomd.xml"), x).unwrap();
}

/// The `location href` of metadata `kind` in a repository's repomd.xml.
pub fn md_href(root: &Path, kind: &str) -> String {
    let md = std::fs::read_to_string(root.join("repodata/repomd.xml")).unwrap();
    let start = md
        .find(&format!("<data type=\"{kind}\">"))
        .unwrap_or_else(|| panic!("no {kind} in repomd.xml"));
    let rest = &md[start..];
    let h = rest.find("href=\"").unwrap() + 6;
    rest[h..h + rest[h..].find('"').unwrap()].to_string()
}

/// The decompressed content of metadata `kind` of a createrepo_c repository.
pub fn md_xml(root: &Path, kind: &str) -> Vec<u8> {
    let stored = std::fs::read(root.join(md_href(root, kind))).unwrap();
    let mut out = Vec::new();
    if stored.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&stored[..])
            .read_to_end(&mut out)
            .unwrap();
    } else if stored.starts_with(b"\xfd7zXZ") {
        liblzma::read::XzDecoder::new(&stored[..])
            .read_to_end(&mut out)
            .unwrap();
    } else if stored.starts_with(b"BZh") {
        bzip2::read::BzDecoder::new(&stored[..])
            .read_to_end(&mut out)
            .unwrap();
    } else {
        out = stored;
    }
    out
}

/// Rewrites a createrepo_c repository so primary and filelists are
/// zstd-compressed (`*.xml.zst`), with a matching repomd.xml.
pub fn recompress_zstd(root: &Path) {
    let files: Vec<MdFile> = ["primary", "filelists"]
        .iter()
        .map(|kind| {
            let open = md_xml(root, kind);
            MdFile {
                kind: kind.to_string(),
                href: format!("repodata/{kind}.xml.zst"),
                stored: zstd::encode_all(&open[..], 3).unwrap(),
                open: Some(open),
            }
        })
        .collect();
    write_repomd(root, &files);
}

/// Serves `root` over HTTP on a free loopback port with
/// `python3 -m http.server`; the server stops when this is dropped.
pub struct HttpServer {
    child: std::process::Child,
    pub url: String,
}

impl HttpServer {
    pub fn start(root: &Path) -> HttpServer {
        let port = free_port();
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start python3 -m http.server");
        let server = HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

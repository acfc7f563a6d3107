//! The end-to-end side of the solver benchmark: `cvmbuild eval` itself
//! (metadata, solve, graph, records, lock) on a spec whose shopping list is
//! the bench's, cold (new store: parse the XML) and warm (repodata from the
//! store's cache), next to libsolv parsing the XML (cold) and loading its
//! own `.solv` cache (warm), with the phases of our side timed one by one
//! through the library.
//!
//! The machine may be shared, so CPU seconds (getrusage of the child, or
//! of this thread) are printed next to wall seconds.

use cvmbuild::build::records::record_graph;
use cvmbuild::eval::{self, pinning, spec, Options};
use cvmbuild::lock::LockFile;
use cvmbuild::repo::{self, Dep, Pool, SimpleDep};
use cvmbuild::store::FsStore;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Seconds of CPU (user + system) the reaped children used so far.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct we pass and keeps no pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

/// Wall and CPU seconds of `f`, run on this thread.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (t, c) = (Instant::now(), super::thread_cpu_s());
    let v = f();
    (v, t.elapsed().as_secs_f64(), super::thread_cpu_s() - c)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn entry(pool: &Pool, out: &mut String, d: &SimpleDep) {
    let name = xml_escape(pool.name(d.name));
    match &d.range {
        None => {
            let _ = writeln!(out, "      <rpm:entry name=\"{name}\"/>");
        }
        Some(r) => {
            let flags = match r.op {
                repo::Op::Lt => "LT",
                repo::Op::Le => "LE",
                repo::Op::Eq => "EQ",
                repo::Op::Ge => "GE",
                repo::Op::Gt => "GT",
            };
            let rel = r
                .evr
                .release
                .as_deref()
                .map_or(String::new(), |rel| format!(" rel=\"{}\"", xml_escape(rel)));
            let _ = writeln!(
                out,
                "      <rpm:entry name=\"{name}\" flags=\"{flags}\" epoch=\"{}\" ver=\"{}\"{rel}/>",
                r.evr.epoch,
                xml_escape(&r.evr.version)
            );
        }
    }
}

/// Writes `pool` (a generated universe: simple dependencies only) as an
/// rpm-md repository under `dir` (`repodata/repomd.xml` and a gzipped
/// primary), so that `cvmbuild` and libsolv read it like a mirror's.
pub fn write_rpmmd(pool: &Pool, dir: &Path) -> Result<(), String> {
    let mut xml = String::new();
    let _ = writeln!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"http://linux.duke.edu/metadata/common\" \
         xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{}\">",
        pool.packages.len()
    );
    for id in pool.ids() {
        let p = pool.package(id);
        let (name, arch) = (pool.name(p.name), pool.name(p.arch));
        let rel = p.evr.release.as_deref().unwrap_or("0");
        let nevra = format!("{name}-{}-{rel}.{arch}", p.evr.version);
        let _ = writeln!(
            xml,
            "<package type=\"rpm\">\n  <name>{name}</name>\n  <arch>{arch}</arch>\n  \
             <version epoch=\"{}\" ver=\"{}\" rel=\"{rel}\"/>\n  \
             <checksum type=\"sha256\" pkgid=\"YES\">{}</checksum>\n  <summary>{name}</summary>\n  \
             <location href=\"Packages/{nevra}.rpm\"/>\n  <size package=\"1\" installed=\"1\" archive=\"1\"/>\n  <format>\n    <rpm:provides>",
            p.evr.epoch,
            p.evr.version,
            sha256_hex(nevra.as_bytes())
        );
        let _ = writeln!(
            xml,
            "      <rpm:entry name=\"{name}\" flags=\"EQ\" epoch=\"{}\" ver=\"{}\" rel=\"{rel}\"/>",
            p.evr.epoch, p.evr.version
        );
        for d in &p.provides {
            entry(pool, &mut xml, d);
        }
        xml.push_str("    </rpm:provides>\n");
        for (tag, deps) in [("requires", &p.requires), ("conflicts", &p.conflicts)] {
            if deps.is_empty() {
                continue;
            }
            let _ = writeln!(xml, "    <rpm:{tag}>");
            for d in deps {
                match d {
                    Dep::Simple(d) => entry(pool, &mut xml, d),
                    Dep::Rich(_) => return Err("generated universes have no rich deps".into()),
                }
            }
            let _ = writeln!(xml, "    </rpm:{tag}>");
        }
        xml.push_str("  </format>\n</package>\n");
    }
    xml.push_str("</metadata>\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(xml.as_bytes()).map_err(|e| e.to_string())?;
    let gz = gz.finish().map_err(|e| e.to_string())?;
    let repodata = dir.join("repodata");
    std::fs::create_dir_all(&repodata).map_err(|e| e.to_string())?;
    std::fs::write(repodata.join("primary.xml.gz"), &gz).map_err(|e| e.to_string())?;
    let repomd = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\">\n  \
         <revision>1</revision>\n  <data type=\"primary\">\n    <checksum type=\"sha256\">{}</checksum>\n    \
         <open-checksum type=\"sha256\">{}</open-checksum>\n    <location href=\"repodata/primary.xml.gz\"/>\n    \
         <timestamp>0</timestamp>\n    <size>{}</size>\n    <open-size>{}</open-size>\n  </data>\n</repomd>\n",
        sha256_hex(&gz),
        sha256_hex(xml.as_bytes()),
        gz.len(),
        xml.len()
    );
    std::fs::write(repodata.join("repomd.xml"), repomd).map_err(|e| e.to_string())
}

/// `cvmbuild eval` of `spec` with its store in `store`: wall and CPU
/// seconds, and the closure size it printed.
fn cli_eval(bin: &Path, spec: &Path, store: &Path) -> Result<(f64, f64, u64), String> {
    let home = store.with_extension("home");
    let c = children_cpu_s();
    let t = Instant::now();
    let out = Command::new(bin)
        .arg("eval")
        .arg(spec)
        .arg("--json")
        .env("CVMBUILD_STORE", store)
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cvmbuild: {e}"))?;
    let wall = t.elapsed().as_secs_f64();
    let cpu = children_cpu_s() - c;
    if !out.status.success() {
        return Err(format!(
            "cvmbuild eval failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("eval --json: {e}"))?;
    Ok((
        wall,
        cpu,
        v["branches"][0]["packages"].as_u64().unwrap_or(0),
    ))
}

/// libsolv's own binary cache of a primary file, written by `rpmmd2solv`.
fn write_solv(primary_gz: &Path, out: &Path) -> Result<(), String> {
    let gz = std::fs::read(primary_gz).map_err(|e| format!("{}: {e}", primary_gz.display()))?;
    let mut xml = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut xml)
        .map_err(|e| e.to_string())?;
    let file = std::fs::File::create(out).map_err(|e| e.to_string())?;
    let mut child = Command::new("rpmmd2solv")
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .map_err(|e| format!("rpmmd2solv (libsolv-tools): {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&xml)
        .map_err(|e| e.to_string())?;
    let st = child.wait().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("rpmmd2solv: {st}"));
    }
    Ok(())
}

/// Runs both sides on the repository in `repo_dir` and the shopping list
/// `list`, and prints the comparison; with `keep`, the spec is also left
/// there as `LABEL.cvm` (spaces as dashes).
pub fn compare(
    label: &str,
    repo_dir: &Path,
    list: &[String],
    keep: Option<&Path>,
) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let spec_path = work.path().join("bench.cvm");
    let names: Vec<String> = list.iter().map(|n| format!("{n:?}")).collect();
    std::fs::write(
        &spec_path,
        format!(
            "let os = repo {{ name = \"os\", url = {:?} }}\nbranch production = release {{\n  \
             name = \"bench-system\"  version = \"1.0.0.0\"  arch = \"x86_64\"\n  repos = [os]\n  \
             packages = [{}]\n}}\n",
            repo_dir.display().to_string(),
            names.join(", ")
        ),
    )
    .map_err(|e| e.to_string())?;
    if let Some(k) = keep {
        std::fs::create_dir_all(k).map_err(|e| e.to_string())?;
        std::fs::copy(
            &spec_path,
            k.join(format!("{}.cvm", label.replace(' ', "-"))),
        )
        .map_err(|e| e.to_string())?;
    }
    let lock_path = spec_path.with_extension("lock");

    // libsolv: XML (cold) and .solv (warm).
    let primary = repo_dir.join("repodata/primary.xml.gz");
    let solv = work.path().join("repo.solv");
    write_solv(&primary, &solv)?;
    let lx = super::libsolv(&primary.to_string_lossy(), list, false, false)?;
    let ls = super::libsolv(&solv.to_string_lossy(), list, false, false)?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let side = |v: &serde_json::Value| {
        (
            f(v, "parse_s") + f(v, "solve_s"),
            f(v, "parse_cpu_s") + f(v, "solve_cpu_s"),
        )
    };
    let ((lx_wall, lx_cpu), (ls_wall, ls_cpu)) = (side(&lx), side(&ls));
    let packages = |v: &serde_json::Value| v["packages"].as_array().map_or(0, Vec::len);
    println!(
        "{label}: libsolv xml:  parse {:.3} s + solve {:.3} s = wall {lx_wall:.3} s, cpu {lx_cpu:.3} s, {} packages",
        f(&lx, "parse_s"),
        f(&lx, "solve_s"),
        packages(&lx)
    );
    println!(
        "{label}: libsolv solv: load {:.3} s + solve {:.3} s = wall {ls_wall:.3} s, cpu {ls_cpu:.3} s, {} packages",
        f(&ls, "parse_s"),
        f(&ls, "solve_s"),
        packages(&ls)
    );

    // cvmbuild eval through the CLI: cold (new store), then warm (cache
    // and records there, lock removed so it solves again). A baseline
    // binary (CVMBUILD_BENCH_BASELINE, e.g. a build of main) runs the same
    // job first, for before/after figures from one run.
    let mut bins = Vec::new();
    if let Some(b) = std::env::var_os("CVMBUILD_BENCH_BASELINE") {
        bins.push(("baseline", PathBuf::from(b)));
    }
    bins.push(("cvmbuild", PathBuf::from(env!("CARGO_BIN_EXE_cvmbuild"))));
    let mut store = PathBuf::new();
    for (i, (who, bin)) in bins.iter().enumerate() {
        store = work.path().join(format!("store{i}"));
        let _ = std::fs::remove_file(&lock_path);
        let (cold_wall, cold_cpu, n) = cli_eval(bin, &spec_path, &store)?;
        std::fs::remove_file(&lock_path).map_err(|e| e.to_string())?;
        let (warm_wall, warm_cpu, _) = cli_eval(bin, &spec_path, &store)?;
        println!(
            "{label}: {who} eval cold: wall {cold_wall:.3} s, cpu {cold_cpu:.3} s ({:.2}x libsolv xml); \
             warm: wall {warm_wall:.3} s, cpu {warm_cpu:.3} s ({:.2}x libsolv solv); {n} packages",
            cold_cpu / lx_cpu,
            warm_cpu / ls_cpu
        );
    }

    // The phases of the same eval, one by one through the library.
    let sp = lang_release(&spec_path)?;
    let (rel, sources) = (&sp.0, &sp.1);
    let repo_sources = eval::repo_sources(rel);
    let (pool, parse_w, parse_c) = timed(|| repo::load(&repo_sources, None));
    let pool = pool.map_err(|e| e.to_string())?;
    let cache = store.join("cache").join("repodata");
    let (cached, cache_w, cache_c) = timed(|| repo::load(&repo_sources, Some(&cache)));
    cached.map_err(|e| e.to_string())?;
    let (sol, solve_w, solve_c) = timed(|| pinning::solve(rel, &pool, sources, None, &[]));
    let sol = sol.map_err(|e| e.to_string())?;
    let prepare = sol.stats.prepare.as_secs_f64();
    let cone = sol.stats.cone_time.as_secs_f64();
    // Graph: the lock is current now, so eval plans without solving.
    let opts = Options {
        cache: Some(cache),
        ..Default::default()
    };
    let (ev, graph_w, graph_c) = timed(|| eval::evaluate(&spec_path, &opts));
    let ev = ev.map_err(|e| e.to_string())?;
    let fresh = FsStore::open(&work.path().join("fresh-store")).map_err(|e| e.to_string())?;
    let (rec, rec_w, rec_c) = timed(|| record_graph(&fresh, &ev.branches[0].graph));
    rec.map_err(|e| e.to_string())?;
    // What a warm eval pays: the same graph again, already recorded.
    let (again, again_w, again_c) = timed(|| record_graph(&fresh, &ev.branches[0].graph));
    again.map_err(|e| e.to_string())?;
    let lock = LockFile::read(&lock_path).map_err(|e| e.to_string())?;
    let copy = work.path().join("copy.lock");
    let (w, lock_w, lock_c) = timed(|| lock.write(&copy));
    w.map_err(|e| e.to_string())?;
    println!(
        "{label}: phases wall (cpu) s: parse {parse_w:.3} ({parse_c:.3}), cache load {cache_w:.3} ({cache_c:.3}), \
         cone {cone:.3}, encode {:.3}, solve {:.3}, solve total {solve_w:.3} ({solve_c:.3}), \
         spec+graph {graph_w:.3} ({graph_c:.3}), records {rec_w:.3} ({rec_c:.3}) for {} derivations \
         (again, recorded: {again_w:.4} ({again_c:.4})), lock {lock_w:.3} ({lock_c:.3})",
        prepare - cone,
        sol.stats.time.as_secs_f64() - prepare,
        ev.branches[0].graph.len()
    );
    Ok(())
}

/// The single release of a bench spec and the spec's sources.
fn lang_release(path: &Path) -> Result<(spec::Release, cvmbuild::lang::SourceMap), String> {
    let s = cvmbuild::lang::load(path).map_err(|e| e.to_string())?;
    let rel = spec::releases(&s)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no release")?;
    Ok((rel, s.sources))
}

/// Where generated universes are written for the end-to-end side.
pub fn scratch() -> Result<(tempfile::TempDir, PathBuf), String> {
    let d = tempfile::tempdir().map_err(|e| e.to_string())?;
    let p = d.path().join("repo");
    Ok((d, p))
}

//! Solver benchmark: a seeded random shopping list of installable names,
//! parsed and solved to a proven optimum on the real openSUSE 11.0 universe
//! side by side with libsolv (`bench/solve_libsolv.py`), then on generated
//! universes of growing size (for scaling). On the real universe and on
//! every generated one of 60,000 packages or more it then compares
//! `cvmbuild eval` end to end with libsolv (`solve_e2e.rs`): cold against
//! libsolv parsing the XML, warm against libsolv loading a `.solv` file,
//! with our phases (parse, cache load, cone, encode, solve, graph, records,
//! lock) timed one by one.
//!
//! ```text
//! cargo bench --bench solve -- [--real DIR|--no-real] [--multilib] [--save-list FILE]
//!                              [--sizes 20000,40000,80000] [--list 500] [--seed 1]
//!                              [--keep KEEP]
//! ```
//!
//! `DIR` contains `repodata/`; it is read in place, never copied. `KEEP`
//! receives the end-to-end specs (`real.cvm`, `generated-N.cvm`) and the
//! generated repositories they name, so that one eval can be profiled or
//! its lock compared across builds afterwards.

use cvmbuild::repo::{
    load, Checksum, Dep, Evr, Op, Package, PackageId, Pool, Range, RepoId, RepoInfo, RepoSource,
    SimpleDep,
};
use cvmbuild::solve::{solve, Job, Request, Solution, SolveError, VersionReq};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "solve_e2e.rs"]
mod e2e;

/// The allocator the `cvmbuild` binary uses (src/main.rs), so that the
/// phases timed here through the library cost what they cost there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// xorshift64*: deterministic across machines, no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// Skewed towards 0: popular base libraries get most requires.
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        let c = self.below(n);
        a.min(b).min(c)
    }
}

struct Args {
    real: Option<String>,
    /// Solve the real universe with multilib (i586 next to x86_64).
    multilib: bool,
    /// Where to write the real universe's final shopping list.
    save_list: Option<String>,
    sizes: Vec<usize>,
    /// Where to leave the end-to-end specs and generated repositories.
    keep: Option<std::path::PathBuf>,
    list: usize,
    seed: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        real: Some("/work/shared/data/opensuse-11.0-factory".into()),
        save_list: None,
        multilib: false,
        sizes: vec![20_000, 40_000, 80_000],
        keep: None,
        list: 500,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--sizes" => {
                a.sizes = val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|e| format!("--sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--real" => a.real = Some(val()?),
            "--no-real" => a.real = None,
            "--multilib" => a.multilib = true,
            "--save-list" => a.save_list = Some(val()?),
            "--keep" => a.keep = Some(val()?.into()),
            "--list" => a.list = val()?.parse().map_err(|e| format!("--list: {e}"))?,
            "--seed" => a.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// CPU time this thread has run, from the scheduler (nanosecond
/// resolution, unlike rusage ticks); the machine is shared, so wall time
/// alone is noisy.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// Solves `req` `n` times; the minimum wall and CPU seconds of one solve.
fn repeat(pool: &Pool, req: &Request, n: usize) -> (f64, f64) {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..n {
        let (t, c) = (Instant::now(), thread_cpu_s());
        let ok = solve(pool, req).is_ok();
        if ok {
            wall = wall.min(t.elapsed().as_secs_f64());
            cpu = cpu.min(thread_cpu_s() - c);
        }
    }
    (wall, cpu)
}

/// Peak resident set size of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A distribution-like universe of about `n` packages: names in layers
/// where later names require (mostly earlier, popular) libraries by soname,
/// some versioned requires, virtual capabilities with alternative
/// providers and conflicts between them, two versions of a third of the
/// names, and i586 builds that an x86_64 request hides.
fn generate(n: usize, seed: u64) -> Pool {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut pool = Pool::default();
    pool.add_repo(RepoInfo {
        name: "gen".into(),
        base: "/gen".into(),
        priority: 99,
        cost: 1000,
        metadata_hash: String::new(),
    });
    let x86_64 = pool.intern("x86_64");
    let i586 = pool.intern("i586");
    let noarch = pool.intern("noarch");
    // About 1.9 packages per name (versions, i586 builds): one virtual
    // capability per ~200 names.
    let nvirt = n / 380 + 1;
    let mut count = 0;
    let mut i = 0;
    while count < n {
        let name = format!("pkg{i}");
        let nid = pool.intern(&name);
        let soname = pool.intern(&format!("lib{i}.so.1()(64bit)"));
        let virt = r.chance(3).then(|| r.below(nvirt));
        let versions = if r.chance(33) { 2 } else { 1 };
        let arch = if r.chance(20) { noarch } else { x86_64 };
        let mut deps: Vec<Dep> = Vec::new();
        let k = if i == 0 { 0 } else { 1 + r.below(7) };
        for _ in 0..k {
            let t = r.skewed(i.max(1));
            let d = if r.chance(85) {
                SimpleDep {
                    name: pool.intern(&format!("lib{t}.so.1()(64bit)")),
                    range: None,
                }
            } else {
                SimpleDep {
                    name: pool.intern(&format!("pkg{t}")),
                    range: r.chance(30).then(|| {
                        Box::new(Range {
                            op: Op::Ge,
                            evr: Evr::new(0, "1.0", None),
                        })
                    }),
                }
            };
            deps.push(Dep::Simple(d));
        }
        if r.chance(2) {
            let v = pool.intern(&format!("virtual{}", r.below(nvirt)));
            deps.push(Dep::Simple(SimpleDep {
                name: v,
                range: None,
            }));
        }
        for v in 0..versions {
            let mut p = Package {
                name: nid,
                evr: Evr::new(0, &format!("1.{v}"), Some("1")),
                arch,
                repo: RepoId(0),
                provides: vec![SimpleDep {
                    name: soname,
                    range: None,
                }],
                requires: deps.clone(),
                conflicts: vec![],
                obsoletes: vec![],
                files: vec![],
                location: format!("{name}.rpm").into(),
                checksum: Checksum {
                    kind: "sha256".into(),
                    hex: String::new().into(),
                },
                size_package: 1,
                size_installed: 1,
            };
            if let Some(vt) = virt {
                let vn = pool.intern(&format!("virtual{vt}"));
                p.provides.push(SimpleDep {
                    name: vn,
                    range: None,
                });
                if r.chance(30) {
                    p.conflicts.push(Dep::Simple(SimpleDep {
                        name: vn,
                        range: None,
                    }));
                }
            }
            pool.add_package(p.clone());
            count += 1;
            if arch == x86_64 && r.chance(40) {
                p.arch = i586;
                p.provides[0].name = pool.intern(&format!("lib{i}.so.1"));
                pool.add_package(p);
                count += 1;
            }
        }
        i += 1;
    }
    pool.index();
    pool
}

/// Picks `n` random package names and drops (and replaces) jobs that an
/// explanation blames until the list is satisfiable. Returns the list and
/// the final solution, and prints how long the explanations took.
fn installable_list(
    pool: &Pool,
    n: usize,
    seed: u64,
    multilib: bool,
) -> Result<(Vec<String>, Solution), String> {
    let mut failed: Vec<f64> = Vec::new();
    let summary = |failed: &[f64]| {
        if !failed.is_empty() {
            let max = failed.iter().copied().fold(0.0, f64::max);
            let avg = failed.iter().sum::<f64>() / failed.len() as f64;
            println!(
                "list: {} unsatisfiable rounds, solve + explanation avg {:.3} s, max {max:.3} s",
                failed.len(),
                avg
            );
        }
    };
    let mut r = Rng(seed | 1);
    let arch_ok = |p: &Package| matches!(pool.name(p.arch), "x86_64" | "noarch");
    let all: Vec<&str> = pool
        .packages
        .iter()
        .filter(|p| arch_ok(p))
        .map(|p| pool.name(p.name))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut used = BTreeSet::new();
    let mut list: Vec<String> = Vec::new();
    let mut banned = BTreeSet::new();
    for _ in 0..200 {
        while list.len() < n.min(all.len() - banned.len()) {
            let c = all[r.below(all.len())];
            if used.insert(c) {
                list.push(c.to_string());
            }
        }
        let req = request(&list, multilib);
        let t = Instant::now();
        match solve(pool, &req) {
            Ok(sol) => {
                summary(&failed);
                return Ok((list, sol));
            }
            Err(SolveError::Unsatisfiable(e)) => {
                failed.push(t.elapsed().as_secs_f64());
                if failed.len() == 1 {
                    print!("first explanation:\n{e}");
                }
                let blamed: Vec<usize> = e.lines.iter().filter_map(|l| l.origin).collect();
                let Some(&drop) = blamed.last() else {
                    return Err(format!("unexplained failure:\n{e}"));
                };
                banned.insert(list.remove(drop));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("no installable list found".into())
}

fn request(names: &[String], multilib: bool) -> Request {
    let jobs = names
        .iter()
        .enumerate()
        .map(|(i, n)| Job::new(n, VersionReq::Any, i))
        .collect();
    let mut r = Request::new("x86_64", jobs);
    r.multilib = multilib;
    r
}

/// Versions behind the newest (summed ranks) and packages not at the newest
/// visible version, for comparing closures.
fn version_score(pool: &Pool, ids: &[PackageId]) -> (u64, usize) {
    let mut behind = 0;
    let mut old = 0;
    for &id in ids {
        let p = pool.package(id);
        let newer: BTreeSet<String> = pool
            .named(p.name)
            .iter()
            .map(|&q| pool.package(q))
            .filter(|q| matches!(pool.name(q.arch), "x86_64" | "noarch") && q.evr > p.evr)
            .map(|q| q.evr.to_string())
            .collect();
        behind += newer.len() as u64;
        old += usize::from(!newer.is_empty());
    }
    (behind, old)
}

fn report(label: &str, pool: &Pool, load_s: f64, sol: &Solution) {
    let s = &sol.stats;
    let (behind, old) = version_score(pool, &sol.packages);
    println!(
        "{label}: universe {} visible {}, cone {}, fixed {}, vars {}, clauses {}, sat calls {}, cores {} (bogus {}), \
         cost {:?}, packages {}, versions behind {behind} ({old} not newest), optimal {}, \
         load {:.3} s, solve {:.3} s (prepare {:.3} s), peak RSS {:.0} MiB",
        pool.packages.len(),
        s.universe,
        s.cone,
        s.fixed,
        s.vars,
        s.clauses,
        s.sat_calls,
        s.cores,
        s.bogus_cores,
        s.cost,
        sol.packages.len(),
        sol.optimal,
        load_s,
        s.time.as_secs_f64(),
        s.prepare.as_secs_f64(),
        peak_rss_mib()
    );
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("solve bench: {e}");
            std::process::exit(2);
        }
    };
    if let Some(dir) = &a.real {
        if let Err(e) = real(dir, &a) {
            println!("real universe: {e}");
        }
    }
    for &size in &a.sizes {
        let t = Instant::now();
        let pool = generate(size, a.seed);
        let gen_s = t.elapsed().as_secs_f64();
        match installable_list(&pool, a.list, a.seed, false) {
            Ok((list, _)) => {
                // Time a fresh solve of the final list.
                match solve(&pool, &request(&list, false)) {
                    Ok(sol) => {
                        report(&format!("generated {size}"), &pool, gen_s, &sol);
                        let (wall, cpu) = repeat(&pool, &request(&list, false), 5);
                        println!(
                            "generated {size}: best of 5 solves: wall {wall:.3} s, cpu {cpu:.3} s"
                        );
                        if size >= 60_000 {
                            let label = format!("generated {size}");
                            if let Err(e) = end_to_end(&label, &pool, &list, a.keep.as_deref()) {
                                println!("{label}: end to end: {e}");
                            }
                        }
                    }
                    Err(e) => println!("generated {size}: {e}"),
                }
            }
            Err(e) => println!("generated {size}: {e}"),
        }
    }
}

/// The real universe: parse + solve, then libsolv on the same list.
fn real(dir: &str, a: &Args) -> Result<(), String> {
    let source = RepoSource {
        name: "opensuse-11.0".into(),
        url: dir.into(),
        priority: 99,
        cost: 1000,
    };
    let t = Instant::now();
    let pool = load(std::slice::from_ref(&source), None).map_err(|e| e.to_string())?;
    let load_s = t.elapsed().as_secs_f64();
    let (list, _) = installable_list(&pool, a.list, a.seed, a.multilib)?;
    if let Some(path) = &a.save_list {
        std::fs::write(path, list.join("\n") + "\n").map_err(|e| format!("{path}: {e}"))?;
    }
    // The measured run: parse again and solve, as a build would.
    let t = Instant::now();
    let pool = load(&[source], None).map_err(|e| e.to_string())?;
    let parsed = t.elapsed().as_secs_f64();
    let sol = solve(&pool, &request(&list, a.multilib)).map_err(|e| e.to_string())?;
    let total = t.elapsed().as_secs_f64();
    report("real", &pool, load_s, &sol);
    let (wall, cpu) = repeat(&pool, &request(&list, a.multilib), 5);
    println!("real: best of 5 solves: wall {wall:.3} s, cpu {cpu:.3} s");
    println!(
        "real: parse {parsed:.3} s + solve {:.3} s = {total:.3} s",
        sol.stats.time.as_secs_f64()
    );

    let primary = format!("{dir}/repodata/primary.xml.gz");
    let v = libsolv(&primary, &list, false, a.multilib)?;
    let by_nevra: BTreeMap<String, PackageId> = pool
        .ids()
        .map(|id| (pool.nevra(id).to_string(), id))
        .collect();
    let theirs: Vec<PackageId> = v["packages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().and_then(|s| by_nevra.get(s).copied()))
                .collect()
        })
        .unwrap_or_default();
    let (parse_l, solve_l) = (
        v["parse_s"].as_f64().unwrap_or(f64::NAN),
        v["solve_s"].as_f64().unwrap_or(f64::NAN),
    );
    let problems = v["problems"].as_array().map_or(0, Vec::len);
    let (ob, oo) = version_score(&pool, &sol.packages);
    let (lb, lo) = version_score(&pool, &theirs);
    let ours = sol.stats.time.as_secs_f64();
    println!(
        "libsolv: parse {parse_l:.3} s + solve {solve_l:.3} s = {:.3} s, {problems} problems",
        parse_l + solve_l
    );
    println!(
        "compare: solve time ours/libsolv {:.2}x, total {:.2}x; packages {} vs {}; \
         versions behind {ob} vs {lb}; not newest {oo} vs {lo}",
        ours / solve_l,
        total / (parse_l + solve_l),
        sol.packages.len(),
        theirs.len()
    );
    // Independent closure check: libsolv installs exactly our packages and
    // must neither object nor add anything.
    let ours_nevra: Vec<String> = sol
        .packages
        .iter()
        .map(|&id| pool.nevra(id).to_string())
        .collect();
    let c = libsolv(&primary, &ours_nevra, true, a.multilib)?;
    let added = c["packages"].as_array().map_or(0, Vec::len);
    let objections = c["problems"].as_array().map_or(0, Vec::len);
    println!(
        "check: libsolv installing our closure exactly: {objections} problems, {added} packages (ours {})",
        sol.packages.len()
    );
    e2e::compare("real", std::path::Path::new(dir), &list, a.keep.as_deref())
}

/// A generated universe written as an rpm-md repository, then compared end
/// to end.
fn end_to_end(
    label: &str,
    pool: &Pool,
    list: &[String],
    keep: Option<&std::path::Path>,
) -> Result<(), String> {
    let (_scratch, dir) = e2e::scratch()?;
    let dir = match keep {
        Some(k) => k.join(format!("{}-repo", label.replace(' ', "-"))),
        None => dir,
    };
    e2e::write_rpmmd(pool, &dir)?;
    e2e::compare(label, &dir, list, keep)
}

/// Runs `bench/solve_libsolv.py` on `lines` (job names, or NEVRAs with
/// `check`) and parses its JSON report.
fn libsolv(
    primary: &str,
    lines: &[String],
    check: bool,
    multilib: bool,
) -> Result<serde_json::Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/solve_libsolv.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([script, primary, "x86_64"]);
    if check {
        cmd.arg("--check");
    }
    if multilib {
        cmd.arg("--multilib");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("libsolv: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(lines.join("\n").as_bytes())
            .map_err(|e| format!("libsolv: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("libsolv: {e}"))?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("libsolv output: {e}"))
}

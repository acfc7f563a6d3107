//! Evaluation speed, excluding the solver: a spec with a 500-name shopping
//! list in 5 groups, 3 branches, and a lock pinning 1,000 packages per
//! branch. Prints the median and minimum of repeated evaluations.
//!
//! Run: `cargo bench --bench eval`

use cvmbuild::eval;
use cvmbuild::lock::{BranchLock, LockFile, LockedPackage};
use std::collections::BTreeMap;
use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut groups = String::new();
    for g in 0..5 {
        let names: Vec<String> = (0..100)
            .map(|i| format!("\"pkg{}\"", g * 100 + i))
            .collect();
        groups += &format!("let g{g} = [{}]\n", names.join(", "));
    }
    std::fs::write(dir.path().join("groups.cvm"), groups).unwrap();
    std::fs::write(dir.path().join("init.sh"), "#!/bin/sh\n").unwrap();
    let spec = dir.path().join("big.cvm");
    std::fs::write(
        &spec,
        r#"
let g = import "groups.cvm"
let os = repo { name = "os", url = "https://mirror.example/os" }
let base = release {
  name = "big-system"  version = "1.0.0.0"  arch = "x86_64"
  repos = [os]
  packages = g.g0 ++ g.g1 ++ g.g2 ++ g.g3 ++ g.g4
  pins = { pkg7 = ">= 1.0" }
  kernel = { package = "pkg0", modules = ["virtio_net"] }
  initrd = { init = ./init.sh, packages = ["pkg1"] }
  images = [{ format = "iso" }, { format = "raw", size = "2G" }]
  cvmfs = { repository = "big.example.org" }
}
branch production = base
branch testing = base // { version = "1.1.0.0" }
branch development = base // { version = "1.2.0.0", packages = base.packages -- ["pkg499"] }
"#,
    )
    .unwrap();
    let packages: Vec<LockedPackage> = (0..1000)
        .map(|i| LockedPackage {
            name: format!("pkg{i}"),
            epoch: 0,
            version: format!("1.{i}"),
            release: "1.el6".into(),
            arch: "x86_64".into(),
            repo: "os".into(),
            location: format!("Packages/pkg{i}-1.{i}-1.el6.x86_64.rpm"),
            checksum: format!("sha256:{:064x}", i),
            size: 1000 + i,
            signer: None,
        })
        .collect();
    let mut branch = BTreeMap::new();
    for b in ["production", "testing", "development"] {
        branch.insert(
            b.to_string(),
            BranchLock {
                solve: "0".repeat(64),
                spec: "0".repeat(64),
                optimal: true,
                repo: vec![],
                package: packages.clone(),
            },
        );
    }
    LockFile {
        version: cvmbuild::lock::VERSION,
        branch,
    }
    .write(&cvmbuild::lock::path_for(&spec))
    .unwrap();

    let opts = eval::Options {
        offline: true,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut drvs = 0;
    for _ in 0..30 {
        let t = Instant::now();
        let ev = eval::evaluate(&spec, &opts).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drvs = ev.branches.iter().map(|b| b.graph.len()).sum();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "eval: 500 names, 3 branches, 1000 pinned packages/branch, {drvs} derivations: median {:.1} ms, min {:.1} ms (target < 50 ms)",
        times[times.len() / 2],
        times[0]
    );
}

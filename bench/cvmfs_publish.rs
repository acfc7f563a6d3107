//! Publish throughput: a generated tree of 500 "packages" x 100 files
//! (50,000 files, about 200 MB) from a MemStore into a fresh repository,
//! then a republish after one package changed, counting objects written,
//! and the same republish without the object memo (`KEYS/FQRN.objects`).
//!
//! Run: `cargo bench --bench cvmfs_publish` (prints figures; no assertions
//! on time).

use cvmbuild::cvmfs::{self, Options, Request};
use cvmbuild::store::{Entry, Hash, MemStore, Node, Store, Tree};
use std::time::Instant;

const PACKAGES: usize = 500;
const FILES: usize = 100;

fn entry(name: String, node: Node, mode: u16) -> Entry {
    Entry::root_owned(&name, node, mode)
}

/// Semi-compressible content: text-like lines with a per-file seed.
fn content(pkg: usize, file: usize, version: u32) -> Vec<u8> {
    let len = 1000 + (pkg * 7919 + file * 104_729) % 7000;
    let mut out = Vec::with_capacity(len);
    let mut x = (pkg as u64) << 32 | (file as u64) << 8 | u64::from(version);
    while out.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        out.extend_from_slice(format!("line {} value {:x}\n", out.len(), x >> 40).as_bytes());
    }
    out.truncate(len);
    out
}

fn tree(s: &MemStore, changed: Option<usize>) -> (Hash, u64) {
    let mut bytes = 0u64;
    let mut pkgs = Vec::new();
    for p in 0..PACKAGES {
        let version = u32::from(changed == Some(p));
        let files = (0..FILES)
            .map(|f| {
                let c = content(p, f, version);
                bytes += c.len() as u64;
                let b = s.put_blob(&mut c.as_slice()).unwrap();
                entry(
                    format!("file{f:03}"),
                    Node::File {
                        size: b.size,
                        blob: Some(b.hash),
                    },
                    0o644,
                )
            })
            .collect();
        let t = s.put_tree(&Tree::new(files).unwrap()).unwrap();
        pkgs.push(entry(
            format!("pkg{p:03}"),
            Node::Directory { tree: t },
            0o755,
        ));
    }
    // Packages live under /usr/share (a nested catalog) and /opt (root).
    let (share, opt) = pkgs.split_at(PACKAGES / 2);
    let share = s.put_tree(&Tree::new(share.to_vec()).unwrap()).unwrap();
    let usr = s
        .put_tree(
            &Tree::new(vec![entry(
                "share".into(),
                Node::Directory { tree: share },
                0o755,
            )])
            .unwrap(),
        )
        .unwrap();
    let opt = s.put_tree(&Tree::new(opt.to_vec()).unwrap()).unwrap();
    let root = Tree::new(vec![
        entry("usr".into(), Node::Directory { tree: usr }, 0o755),
        entry("opt".into(), Node::Directory { tree: opt }, 0o755),
    ])
    .unwrap();
    (s.put_tree(&root).unwrap(), bytes)
}

fn main() {
    let s = MemStore::new();
    let (t1, bytes) = tree(&s, None);
    // Package 0 lives under /usr/share: its catalog, /usr's and the root change.
    let (t2, _) = tree(&s, Some(0));
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        repo_dir: dir.path().join("repo"),
        keys_dir: dir.path().join("keys"),
        now: 1_700_000_000,
        whitelist_days: 30,
    };
    // Keys are created on first publish; make them outside the timing.
    let warm = s.put_tree(&Tree::new(vec![]).unwrap()).unwrap();
    let mut req = Request {
        fqrn: "bench.cern.ch".into(),
        nested: vec!["/usr".into(), "/usr/share".into()],
        tag: "warm".into(),
        branch: "bench".into(),
        epoch: 1_600_000_000,
        extra: Vec::new(),
    };
    cvmfs::publish(&s, &warm, &req, &opts).unwrap();

    req.tag = "rel-1".into();
    let start = Instant::now();
    let p = cvmfs::publish(&s, &t1, &req, &opts).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let files = (PACKAGES * FILES) as f64;
    println!(
        "publish: {} files, {:.1} MB in {secs:.2} s = {:.0} files/s, {:.1} MB/s; {} objects written ({:.1} MB stored), {} catalogs",
        files,
        bytes as f64 / 1e6,
        files / secs,
        bytes as f64 / 1e6 / secs,
        p.objects_written,
        p.bytes_written as f64 / 1e6,
        p.catalogs_written
    );

    req.tag = "rel-2".into();
    let start = Instant::now();
    let p = cvmfs::publish(&s, &t2, &req, &opts).unwrap();
    let with_memo = start.elapsed().as_secs_f64();
    println!(
        "republish after one package ({FILES} files) changed: {with_memo:.2} s, {} objects written ({} file contents + {} catalogs + history), {} already present",
        p.objects_written,
        p.objects_written - p.catalogs_written - 1,
        p.catalogs_written,
        p.objects_reused
    );

    // The same kind of change (the package back to its first content)
    // without the object memo: every file is read and compressed again to
    // learn its object name.
    std::fs::remove_file(opts.keys_dir.join("bench.cern.ch.objects")).unwrap();
    req.tag = "rel-3".into();
    let start = Instant::now();
    cvmfs::publish(&s, &t1, &req, &opts).unwrap();
    let without = start.elapsed().as_secs_f64();
    println!(
        "the same republish without the object memo: {without:.2} s ({:.1}x slower)",
        without / with_memo
    );
}

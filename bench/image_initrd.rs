//! Initrd speed: the pure-Rust newc writer and each compression on about
//! 10 MB of real executables (the first files of /usr/bin by name, plus
//! /bin/busybox), against `cpio -o -H newc --reproducible | gzip -9 -n` on
//! the same files. Prints the median of 5 runs of each.
//!
//! Run: `cargo bench --bench image_initrd`

use cvmbuild::image::compress::Compression;
use cvmbuild::image::cpio::{write, Kind, Member, Members};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

fn median(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        size = f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[2], size)
}

fn main() {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/bin")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.is_symlink())
        .collect();
    files.sort();
    files.insert(0, "/bin/busybox".into());
    let mut members = Members::new();
    let mut total = 0;
    for p in files {
        let name = format!("bin/{}", p.file_name().unwrap().to_string_lossy());
        let Ok(b) = std::fs::read(&p) else { continue };
        if total > 10 << 20 {
            break;
        }
        if members.contains_key(&name) {
            continue;
        }
        total += b.len();
        members.insert(
            name,
            Member {
                mode: 0o755,
                kind: Kind::File(b),
            },
        );
    }
    members.insert(
        "bin".into(),
        Member {
            mode: 0o755,
            kind: Kind::Directory,
        },
    );
    println!("{} files, {:.1} MB", members.len(), total as f64 / 1e6);

    let mut raw = Vec::new();
    let (ms, n) = median(|| {
        raw.clear();
        write(&mut raw, &members, 1_400_000_000).unwrap() as usize
    });
    println!("newc writer: {ms:.1} ms for {n} bytes");
    for c in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
        let (ms, n) = median(|| c.compress(&raw).unwrap().len());
        println!("{c:?}: {ms:.0} ms -> {n} bytes");
    }

    // The same files with GNU cpio and gzip.
    let dir = tempfile::tempdir().unwrap();
    for (name, m) in &members {
        match &m.kind {
            Kind::Directory => std::fs::create_dir_all(dir.path().join(name)).unwrap(),
            Kind::File(b) => std::fs::write(dir.path().join(name), b).unwrap(),
            _ => {}
        }
    }
    let list: String = members.keys().map(|k| format!("{k}\n")).collect();
    let (ms, n) = median(|| {
        let mut c = Command::new("sh")
            .args([
                "-c",
                "cpio -o -H newc --reproducible -R 0:0 --quiet | gzip -9 -n",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpio and gzip are installed");
        c.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
        c.wait_with_output().unwrap().stdout.len()
    });
    println!("cpio | gzip -9 -n: {ms:.0} ms -> {n} bytes");
}

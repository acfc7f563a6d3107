//! The generated release `bench/realize_closure.rs` and
//! `bench/substitute.rs` both measure: 320 packages (real RPMs built with
//! the rpm crate, zstd payload, the default of current distributions) and a
//! spec whose branch `two` differs from `one` in one package. Included by
//! each with `#[path = "generated.rs"] mod generated;`.

use std::fs;
use std::path::Path;

pub const PACKAGES: usize = 320;
pub const FILES_PER_PACKAGE: usize = 12;

/// Writes `REPO/Packages/pkgNNN-VERSION-1.x86_64.rpm` and returns the
/// bytes of its file contents. File bytes are a deterministic mix of
/// compressible text and random data.
pub fn write_package(repo: &Path, i: usize, version: &str) -> u64 {
    let name = format!("pkg{i:03}");
    let mut b = rpm::PackageBuilder::new(&name, version, "MIT", "x86_64", "benchmark package");
    b.using_config(
        rpm::BuildConfig::default()
            .compression(rpm::CompressionType::Zstd)
            .source_date(1_400_000_000u32),
    )
    .release("1")
    .description("generated for cvmbuild's benchmarks (bench/generated.rs)");
    let mut total = 0u64;
    for k in 0..FILES_PER_PACKAGE {
        let seed = format!("{name}-{version}-{k}");
        let size = 1024 + (blake3::hash(seed.as_bytes()).as_bytes()[0] as usize) * 160;
        let mut bytes = vec![0u8; size];
        if k % 2 == 0 {
            blake3::Hasher::new()
                .update(seed.as_bytes())
                .finalize_xof()
                .fill(&mut bytes);
        } else {
            for (j, c) in bytes.iter_mut().enumerate() {
                *c = b"the quick brown fox jumps over the lazy dog\n"[(j + i) % 44];
            }
        }
        total += size as u64;
        let path = match k {
            0 => format!("/usr/bin/{name}"),
            1 => format!("/etc/{name}.conf"),
            _ => format!("/usr/share/{name}/data{k}"),
        };
        let opts = rpm::FileOptions::new(path).permissions(if k == 0 { 0o755 } else { 0o644 });
        b.with_file_contents(bytes, opts).unwrap();
    }
    let dir = repo.join("Packages");
    fs::create_dir_all(&dir).unwrap();
    b.build()
        .unwrap()
        .write_file(dir.join(format!("{name}-{version}-1.x86_64.rpm")))
        .unwrap();
    total
}

/// Writes the spec at `path` (its repository is `./repo` beside it): every
/// package, `pkg000` pinned to 1.* on branch `one` and to 2.* on `two`.
pub fn write_spec(path: &Path) {
    let names: Vec<String> = (0..PACKAGES).map(|i| format!("\"pkg{i:03}\"")).collect();
    fs::write(
        path,
        format!(
            "let r = repo {{ name = \"bench\", url = \"./repo\" }}\n\
             let base = release {{\n  name = \"bench-system\"\n  version = \"1.0.0.0\"\n  \
             arch = \"x86_64\"\n  repos = [r]\n  packages = [{}]\n  pins = {{ pkg000 = \"1.*\" }}\n  \
             epoch = 1400000000\n}}\n\
             branch one = base\n\
             branch two = base // {{ pins = {{ pkg000 = \"2.*\" }} }}\n",
            names.join(", ")
        ),
    )
    .unwrap();
}

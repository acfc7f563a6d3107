//! The fuzz targets on stable, inside `cargo test`: every committed seed
//! of `fuzz/seeds/<target>/`, then a fixed number of mutations of them
//! drawn from a fixed-seed generator, each checked by the same property
//! function the cargo-fuzz target calls (`cvmbuild::fuzzing`).
//!
//! This is what CI runs on every commit: it needs no nightly toolchain and
//! no sanitizer build, and a failure prints the exact input (and its seed
//! and round), so it can be replayed with `cargo fuzz run TARGET FILE` or
//! turned into a test in `fuzz_regressions`. The coverage-guided runs with
//! libFuzzer (`fuzz/run.sh`) search much further; this loop keeps every
//! target alive and exercised between them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Mutations per target and seed file (a few seconds per target in a
/// debug build; the slow readers, which write files or open SQLite, get
/// fewer), times `CVMBUILD_FUZZ_ROUNDS` (default 1) for longer local runs.
fn rounds(target: &str) -> usize {
    let times: usize = std::env::var("CVMBUILD_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    times
        * match target {
            "rpm" | "catalog" | "lock" | "tar" | "whitelist" => 150,
            "lang" | "primary" => 400,
            _ => 1500,
        }
}

/// xorshift64*: a fixed, dependency-free generator so every run tries the
/// same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that tend to matter to parsers: delimiters of the formats under
/// test, and integers at the edges of their widths.
const TOKENS: &[&[u8]] = &[
    b"(",
    b")",
    b"\"",
    b"${",
    b"}",
    b"[",
    b"]",
    b"<",
    b">",
    b"/>",
    b"</",
    b"=",
    b"\n",
    b"--",
    b" if ",
    b" else ",
    b" with ",
    b"~",
    b"^",
    b":",
    b"-",
    b"\0",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"4294967295",
    b"18446744073709551616",
    b"-1",
    b"&amp;",
    b"&#0;",
    b"]]>",
];

/// One mutation of `input`, splicing from `other` sometimes.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = rng.next() as u8;
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            5 => {
                // Repeat a slice: lengths, nesting and counts grow.
                let end = (at + 1 + rng.below(32)).min(v.len());
                let piece = v[at..end].to_vec();
                for _ in 0..1 + rng.below(4) {
                    v.splice(at..at, piece.iter().copied());
                }
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "{}: no seeds", dir.display());
    seeds
}

fn run(target: &str) {
    let (_, check) = cvmbuild::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let seeds = seeds(target);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let try_one = |input: &[u8], what: &str| {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            // The input goes to a file: it replays with
            // `cargo fuzz run TARGET FILE` or becomes a regression test.
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{target}-{}", what.replace(' ', "-")));
            std::fs::write(&file, input).unwrap();
            panic!(
                "fuzz target `{target}` fails on {what}; the input ({} bytes) is in {}",
                input.len(),
                file.display()
            );
        }
    };
    for (i, s) in seeds.iter().enumerate() {
        try_one(s, &format!("seed {i}"));
    }
    for round in 0..rounds(target) {
        for (i, s) in seeds.iter().enumerate() {
            let other = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, s, other);
            try_one(&input, &format!("mutation {round} of seed {i}"));
        }
    }
}

/// Every target `cvmbuild::fuzzing` has is covered by a test below and
/// has seeds, so a new target cannot be forgotten here or in `fuzz/`.
#[test]
fn every_target_has_seeds_and_a_cargo_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in cvmbuild::fuzzing::TARGETS {
        assert!(!seeds(name).is_empty());
        let target = root.join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        assert!(target.is_file(), "{} is missing", target.display());
    }
}

macro_rules! targets {
    ($($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*
    };
}

targets!(
    lang, repomd, primary, filelists, rich, evr, rpm, cpio, tar, manifest, whitelist, catalog, lock
);

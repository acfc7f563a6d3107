//! Our rpm version semantics against librpm itself (python3-rpm, run once
//! per test in a single `/usr/bin/python3` process): `rpmvercmp`, label
//! ordering and range overlap on pairs drawn from the real openSUSE
//! metadata plus generated corner cases.

use cvmbuild::repo::{load, rpmvercmp, Dep, Evr, Op, Pool, Range, RepoSource};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn opensuse() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/opensuse-11.0-factory"
        ));
        assert!(
            dir.join("repodata/repomd.xml").is_file(),
            "shared test data missing: {}",
            dir.display()
        );
        let src = RepoSource {
            name: "opensuse".into(),
            url: dir.display().to_string(),
            priority: 99,
            cost: 1000,
        };
        load(&[src], None).unwrap()
    })
}

/// splitmix64: deterministic pairs, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Runs `script` with `/usr/bin/python3` (which has the rpm bindings), one
/// JSON request per line on stdin (through a file, so neither side can
/// block the other), one integer answer per line.
fn librpm(script: &str, requests: &[serde_json::Value]) -> Vec<i64> {
    let mut input = tempfile::NamedTempFile::new().unwrap();
    for r in requests {
        writeln!(input, "{r}").unwrap();
    }
    input.flush().unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .stdin(std::fs::File::open(input.path()).unwrap())
        .output()
        .expect("cannot run /usr/bin/python3");
    assert!(
        out.status.success(),
        "python3-rpm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<i64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(answers.len(), requests.len());
    answers
}

fn sign(o: Ordering) -> i64 {
    match o {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

/// Version-like strings made of the pieces rpmvercmp treats specially.
fn corner_strings(rng: &mut Rng, n: usize) -> Vec<String> {
    const PIECES: &[&str] = &[
        "0",
        "00",
        "1",
        "01",
        "007",
        "10",
        "2",
        "9",
        "99999999999999999999",
        "a",
        "b",
        "Z",
        "abc",
        "rc",
        "~",
        "~~",
        "^",
        "^^",
        ".",
        "..",
        "_",
        "+",
        "-",
        "ä",
    ];
    let mut v: Vec<String> = (0..n)
        .map(|_| {
            (0..1 + rng.below(6))
                .map(|_| *rng.pick(PIECES))
                .collect::<String>()
        })
        .collect();
    v.extend([
        "".to_string(),
        "1.0".into(),
        "1.0~rc1".into(),
        "1.0^git1".into(),
    ]);
    v
}

/// `(epoch, version, release)` of every package label and versioned
/// dependency in the openSUSE metadata.
fn real_labels(pool: &Pool) -> Vec<Evr> {
    let mut set = BTreeSet::new();
    let mut add = |e: &Evr| {
        set.insert((
            e.epoch,
            e.version.to_string(),
            e.release.as_ref().map(|r| r.to_string()),
        ));
    };
    for p in &pool.packages {
        add(&p.evr);
        for d in &p.provides {
            if let Some(r) = &d.range {
                add(&r.evr);
            }
        }
        for d in p.requires.iter().chain(&p.conflicts).chain(&p.obsoletes) {
            if let Dep::Simple(s) = d {
                if let Some(r) = &s.range {
                    add(&r.evr);
                }
            }
        }
    }
    set.into_iter()
        .map(|(e, v, r)| Evr::new(e, &v, r.as_deref()))
        .collect()
}

const COMPARE: &str = r#"
import json, sys, rpm
out = []
for line in sys.stdin:
    kind, a, b = json.loads(line)
    if kind == "label":
        # Both labels have a release: the tuple API.
        r = rpm.labelCompare(tuple(a), tuple(b))
    else:
        # Labels that may lack a release: rpm.ver parses "[e:]v[-r]".
        va, vb = rpm.ver(a), rpm.ver(b)
        r = (va > vb) - (va < vb)
    out.append(str(r))
sys.stdout.write("\n".join(out) + "\n")
"#;

#[test]
fn version_comparison_agrees_with_librpm() {
    let pool = opensuse();
    let labels = real_labels(pool);
    let versions: Vec<String> = labels
        .iter()
        .map(|e| e.version.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let releases: Vec<String> = labels
        .iter()
        .filter_map(|e| e.release.as_ref().map(|r| r.to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rng = Rng(0x5eed);
    let corners = corner_strings(&mut rng, 800);

    // Requests for librpm, and our answer to each.
    let mut requests: Vec<serde_json::Value> = Vec::new();
    let mut ours: Vec<i64> = Vec::new();
    // Compared as the releases of two labels that share epoch and
    // version, librpm's answer is rpmvercmp's. (The release slot, because
    // librpm rejects an empty version but not an empty release.)
    let mut strings = |a: &String, b: &String| {
        requests.push(serde_json::json!(["label", ["0", "1", a], ["0", "1", b]]));
        ours.push(sign(rpmvercmp(a, b)));
    };
    for _ in 0..4000 {
        strings(rng.pick(&versions), rng.pick(&versions));
    }
    // Neighbours in sorted order share prefixes: the interesting cases.
    for w in versions.windows(2).step_by(versions.len().max(2000) / 2000) {
        strings(&w[0], &w[1]);
    }
    for _ in 0..3000 {
        strings(rng.pick(&releases), rng.pick(&releases));
    }
    for _ in 0..4000 {
        strings(rng.pick(&corners), rng.pick(&corners));
    }
    let strings = requests.len();

    // Whole labels with releases, epochs included.
    let with_release: Vec<&Evr> = labels.iter().filter(|e| e.release.is_some()).collect();
    let mut label = |a: &Evr, b: &Evr, requests: &mut Vec<serde_json::Value>| {
        let t = |e: &Evr| {
            serde_json::json!([
                e.epoch.to_string(),
                &*e.version,
                e.release.as_deref().unwrap()
            ])
        };
        requests.push(serde_json::json!(["label", t(a), t(b)]));
        ours.push(sign(a.cmp(b)));
    };
    for _ in 0..2000 {
        let (a, b) = (*rng.pick(&with_release), *rng.pick(&with_release));
        label(a, b, &mut requests);
        // Same version, different epoch or release.
        let mut c = a.clone();
        match rng.below(3) {
            0 => c.epoch = rng.below(3) as u64,
            1 => c.release = Some(rng.pick(&releases).as_str().into()),
            _ => c.release = Some(rng.pick(&corners).as_str().into()),
        }
        if c.release.as_deref() != Some("") {
            label(a, &c, &mut requests);
        }
    }

    // Labels where one side may lack a release (dependency versions),
    // through rpm.ver's own parser. Only labels that print and re-parse
    // unambiguously ('-' and ':' belong to the syntax).
    let plain = |e: &&Evr| {
        !e.version.contains(['-', ':'])
            && !e.version.is_empty()
            && e.release.as_deref().is_none_or(|r| !r.contains(['-', ':']))
    };
    let parseable: Vec<&Evr> = labels.iter().filter(plain).collect();
    for _ in 0..2000 {
        let a = *rng.pick(&parseable);
        let b = if rng.below(2) == 0 {
            *rng.pick(&parseable)
        } else {
            a
        };
        let mut b = b.clone();
        match rng.below(3) {
            0 => b.release = None,
            1 => b.epoch = a.epoch + rng.below(2) as u64,
            _ => {}
        }
        requests.push(serde_json::json!(["ver", a.to_string(), b.to_string()]));
        ours.push(sign(a.cmp(&b)));
    }

    let theirs = librpm(COMPARE, &requests);
    let mismatches: Vec<String> = requests
        .iter()
        .zip(ours.iter().zip(&theirs))
        .filter(|(_, (o, t))| o != t)
        .map(|(r, (o, t))| format!("{r}: ours {o}, librpm {t}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} comparisons disagree with librpm, e.g.:\n{}",
        mismatches.len(),
        requests.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    println!(
        "{} comparisons agree with librpm ({} version/release strings, {} whole labels)",
        requests.len(),
        strings,
        requests.len() - strings
    );
    assert!(requests.len() >= 10_000);
}

const OVERLAP: &str = r#"
import json, sys, rpm
out = []
for line in sys.stdin:
    (fa, a), (fb, b) = json.loads(line)
    da = rpm.ds(("x", fa, a), rpm.RPMTAG_REQUIRENAME)
    db = rpm.ds(("x", fb, b), rpm.RPMTAG_PROVIDENAME)
    out.append(str(int(bool(da.Compare(db)))))
sys.stdout.write("\n".join(out) + "\n")
"#;

fn sense_flags(op: Op) -> u32 {
    const LESS: u32 = 2;
    const GREATER: u32 = 4;
    const EQUAL: u32 = 8;
    match op {
        Op::Lt => LESS,
        Op::Le => LESS | EQUAL,
        Op::Eq => EQUAL,
        Op::Ge => GREATER | EQUAL,
        Op::Gt => GREATER,
    }
}

#[test]
fn range_overlap_agrees_with_librpm() {
    let pool = opensuse();
    // Real ranges: versioned requires/conflicts/obsoletes against versioned
    // provides of the same name, plus random pairings.
    let mut wants: Vec<Range> = Vec::new();
    let mut haves: Vec<Range> = Vec::new();
    for p in &pool.packages {
        haves.push(Range {
            op: Op::Eq,
            evr: p.evr.clone(),
        });
        haves.extend(
            p.provides
                .iter()
                .filter_map(|d| d.range.as_deref().cloned()),
        );
        for d in p.requires.iter().chain(&p.conflicts).chain(&p.obsoletes) {
            if let Dep::Simple(s) = d {
                wants.extend(s.range.as_deref().cloned());
            }
        }
    }
    let ok = |r: &Range| {
        !r.evr.version.contains(['-', ':'])
            && r.evr
                .release
                .as_deref()
                .is_none_or(|x| !x.contains(['-', ':']))
    };
    wants.retain(ok);
    haves.retain(ok);
    let ops = [Op::Lt, Op::Le, Op::Eq, Op::Ge, Op::Gt];
    let mut rng = Rng(0x0be7_1a90);
    let mut pairs: Vec<(Range, Range)> = Vec::new();
    for _ in 0..2500 {
        pairs.push((rng.pick(&wants).clone(), rng.pick(&haves).clone()));
    }
    // Corner-case labels: tilde, caret, leading zeros, letters.
    let corners: Vec<String> = corner_strings(&mut rng, 400)
        .into_iter()
        .filter(|c| !c.is_empty() && !c.contains(['-', ':']))
        .collect();
    for _ in 0..1000 {
        let mut evr = || {
            let release = match rng.below(3) {
                0 => None,
                _ => Some(rng.pick(&corners).clone()),
            };
            let version: &String = rng.pick(&corners);
            Evr::new(rng.below(2) as u64, version, release.as_deref())
        };
        let (a, b) = (evr(), evr());
        pairs.push((
            Range {
                op: *rng.pick(&ops),
                evr: a,
            },
            Range {
                op: *rng.pick(&ops),
                evr: b,
            },
        ));
    }
    // Near misses: same label with every operator pair, release dropped or
    // epoch bumped on one side.
    for _ in 0..1500 {
        let base = rng.pick(&haves).evr.clone();
        let mut other = base.clone();
        match rng.below(3) {
            0 => other.release = None,
            1 => other.epoch += 1,
            _ => {}
        }
        let a = Range {
            op: *rng.pick(&ops),
            evr: base,
        };
        let b = Range {
            op: *rng.pick(&ops),
            evr: other,
        };
        pairs.push(if rng.below(2) == 0 { (a, b) } else { (b, a) });
    }
    let requests: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(a, b)| {
            serde_json::json!([
                [sense_flags(a.op), a.evr.to_string()],
                [sense_flags(b.op), b.evr.to_string()]
            ])
        })
        .collect();
    let theirs = librpm(OVERLAP, &requests);
    let mismatches: Vec<String> = pairs
        .iter()
        .zip(&theirs)
        .filter(|((a, b), t)| a.overlaps(b) != (**t == 1))
        .map(|((a, b), t)| format!("`{a}` vs `{b}`: ours {}, librpm {t}", a.overlaps(b)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} overlaps disagree with librpm, e.g.:\n{}",
        mismatches.len(),
        pairs.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    println!("{} range overlaps agree with librpm", pairs.len());
}

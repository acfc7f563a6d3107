//! RPM version semantics, exactly as librpm 4.18 implements them:
//! `rpmvercmp` for one version or release string, `Evr` ordering for whole
//! labels (`rpmverCmp`), and range overlap for dependency matching
//! (`rpmverOverlap`). Tests compare these against librpm itself.

use super::label::Label;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// Compares two version (or release) strings the way `rpmvercmp` does.
///
/// Strings are split into runs of ASCII digits and ASCII letters; everything
/// else separates runs. `~` sorts before anything (even the end of the
/// string), `^` sorts after the end of the string but before anything else.
/// Numeric runs compare numerically (leading zeros ignored) and beat alpha
/// runs.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else { break };
        let numeric = ca.is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let ea = i + a[i..].iter().take_while(|c| class(c)).count();
        let eb = j + b[j..].iter().take_while(|c| class(c)).count();
        if eb == j {
            // Segment types differ: a number beats letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut sa, mut sb) = (&a[i..ea], &b[j..eb]);
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
        i = ea;
        j = eb;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// An `[epoch:]version[-release]` label. A missing epoch is 0 (rpm treats
/// a missing epoch and epoch 0 identically for ordering and overlap). A
/// missing release means "any release" in dependency ranges (see
/// [`Range::overlaps`]) and sorts before every release in ordering.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Evr {
    pub epoch: u64,
    pub version: Label,
    pub release: Option<Label>,
}

impl Evr {
    pub fn new(epoch: u64, version: &str, release: Option<&str>) -> Self {
        Evr {
            epoch,
            version: version.into(),
            release: release.filter(|r| !r.is_empty()).map(Into::into),
        }
    }

    /// Parses `[epoch:]version[-release]` as written in specs and rpm
    /// dependency strings. The release is what follows the *last* `-`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => (
                e.parse::<u64>()
                    .map_err(|_| format!("invalid epoch `{e}` in `{s}`"))?,
                rest,
            ),
            None => (0, s),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v, Some(r)),
            None => (rest, None),
        };
        if version.is_empty() {
            return Err(format!("empty version in `{s}`"));
        }
        Ok(Evr::new(epoch, version, release))
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A version or release with a `:` in it (rpm reads `0:1:2` as
        // version `1:2`) needs its epoch written even when 0, or the text
        // reads back as a different epoch and version.
        let colon =
            self.version.contains(':') || self.release.as_ref().is_some_and(|r| r.contains(':'));
        if self.epoch != 0 || colon {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        // Likewise a version with a `-` and no release (parsed from
        // `1.0-1-`, an empty release as rpm reads it) keeps its trailing `-`.
        match &self.release {
            Some(r) => write!(f, "-{r}")?,
            None if self.version.contains('-') => f.write_str("-")?,
            None => {}
        }
        Ok(())
    }
}

impl Ord for Evr {
    /// Label order as librpm 4.18 gives it (`rpm.labelCompare`, `rpm.ver`):
    /// epoch, then version, then release, where a missing release sorts
    /// before any release (`1.0` < `1.0-1`, even `1.0` < `1.0-~1`).
    /// `tests/testsuite/vercmp_librpm.rs` checks this against librpm. Labels that
    /// rpmvercmp finds equal but are spelled differently (`1.01`, `1.1`)
    /// compare equal here while `Eq` distinguishes them, so use `cmp` for
    /// ordering only.
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
    }
}

impl PartialOrd for Evr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A comparison operator of a versioned dependency (rpm's sense flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    const LESS: u8 = 2;
    const GREATER: u8 = 4;
    const EQUAL: u8 = 8;

    fn bits(self) -> u8 {
        match self {
            Op::Lt => Self::LESS,
            Op::Le => Self::LESS | Self::EQUAL,
            Op::Eq => Self::EQUAL,
            Op::Ge => Self::GREATER | Self::EQUAL,
            Op::Gt => Self::GREATER,
        }
    }

    /// The yum repodata spelling (`flags="GE"`).
    pub fn from_repodata(s: &str) -> Option<Op> {
        Some(match s {
            "LT" => Op::Lt,
            "LE" => Op::Le,
            "EQ" => Op::Eq,
            "GE" => Op::Ge,
            "GT" => Op::Gt,
            _ => return None,
        })
    }

    /// The dependency-string spelling (`>=`).
    pub fn from_symbol(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" | "=<" => Op::Le,
            "=" | "==" => Op::Eq,
            ">=" | "=>" => Op::Ge,
            ">" => Op::Gt,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }
}

/// A version range: `OP EVR`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Range {
    pub op: Op,
    pub evr: Evr,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.evr)
    }
}

impl Range {
    /// `rpmverOverlap`: whether two ranges share at least one label. A side
    /// without a release matches any release when the other side includes
    /// equality.
    pub fn overlaps(&self, other: &Range) -> bool {
        overlap(self.op, &self.evr, other.op, &other.evr)
    }

    /// Whether the package label `evr` (as `= evr`) falls in this range.
    pub fn contains(&self, evr: &Evr) -> bool {
        overlap(self.op, &self.evr, Op::Eq, evr)
    }
}

/// [`Range::overlaps`] on borrowed parts, so that a package label can be
/// tested as `= evr` without cloning it into a [`Range`] (the "what
/// provides" index asks this for every package's own name).
fn overlap(op1: Op, v1: &Evr, op2: Op, v2: &Evr) -> bool {
    let (f1, f2) = (op1.bits(), op2.bits());
    let mut sense = v1.epoch.cmp(&v2.epoch);
    if sense == Ordering::Equal {
        sense = rpmvercmp(&v1.version, &v2.version);
        if sense == Ordering::Equal {
            match (&v1.release, &v2.release) {
                (Some(a), Some(b)) => sense = rpmvercmp(a, b),
                (Some(_), None) if f2 & Op::EQUAL != 0 => return true,
                (None, Some(_)) if f1 & Op::EQUAL != 0 => return true,
                _ => {}
            }
        }
    }
    match sense {
        Ordering::Less => f1 & Op::GREATER != 0 || f2 & Op::LESS != 0,
        Ordering::Greater => f1 & Op::LESS != 0 || f2 & Op::GREATER != 0,
        Ordering::Equal => f1 & f2 & (Op::EQUAL | Op::LESS | Op::GREATER) != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn vercmp_corner_cases() {
        // Cases from rpm's own test suite (rpmvercmp.at).
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("5.5p1", "5.5p1", Equal),
            ("1.1.a", "1.1a", Equal),
            ("1.0a", "1.0a", Equal),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0a", Less),
            ("a", "1", Less),
            ("1", "a", Greater),
            ("010", "10", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1.0", "1_0", Equal),
            ("+", "_", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    fn r(op: Op, s: &str) -> Range {
        Range {
            op,
            evr: Evr::parse(s).unwrap(),
        }
    }

    #[test]
    fn overlap_follows_rpm() {
        // A provide without release satisfies a versioned require on any release.
        assert!(r(Op::Eq, "1.0").overlaps(&r(Op::Ge, "1.0-5")));
        assert!(r(Op::Eq, "1.0-3").overlaps(&r(Op::Ge, "1.0")));
        assert!(!r(Op::Eq, "1.0-3").overlaps(&r(Op::Gt, "1.0-3")));
        assert!(r(Op::Lt, "2").overlaps(&r(Op::Gt, "1")));
        assert!(!r(Op::Lt, "1").overlaps(&r(Op::Gt, "2")));
        assert!(r(Op::Eq, "1:0.5").overlaps(&r(Op::Ge, "1.0")));
        assert!(!r(Op::Eq, "0.5").overlaps(&r(Op::Ge, "1.0")));
        assert!(r(Op::Le, "1.0").contains(&Evr::parse("1.0-9").unwrap()));
    }

    #[test]
    fn missing_release_sorts_first() {
        let e = |s| Evr::parse(s).unwrap();
        assert!(e("1.0") < e("1.0-1"));
        assert!(e("1.0") < e("1.0-~1"));
        assert_eq!(e("1.0").cmp(&e("0:1.0")), Equal);
        assert!(e("1:1.0") > e("2.0-1"));
    }

    #[test]
    fn parse_and_display_roundtrip() {
        for s in ["1.0", "2:1.0-3.el6", "0.9-1"] {
            let e = Evr::parse(s).unwrap();
            assert_eq!(Evr::parse(&e.to_string()).unwrap(), e);
        }
        assert_eq!(Evr::parse("3:").unwrap_err(), "empty version in `3:`");
        assert!(Evr::parse("x:1").is_err());
    }
}

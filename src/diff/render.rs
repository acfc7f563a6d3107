//! Text rendering of a [`Report`]: aligned columns for the closure and the
//! files, a tree for the causes in which a shared subtree (the solve behind
//! many packages) is printed once and referred to afterwards.

use super::causes::{Cause, DrvDiff, Node};
use super::closure::{Change, ClosureDiff};
use super::files::{self, FileDiff};
use super::locate::Loc;
use super::Report;
use serde_json::Value as Json;
use std::collections::HashSet;
use std::fmt::Write;

/// The whole report; empty when A and B are identical.
pub fn text(r: &Report) -> String {
    let mut parts = Vec::new();
    if !r.closure.is_empty() {
        parts.push(closure(&r.closure));
    }
    if !r.derivations.is_empty() {
        let mut d = derivations(&r.derivations);
        // Recorded derivations carry no spec: say why no line is shown.
        let recorded: Vec<String> = [("A", &r.a), ("B", &r.b)]
            .iter()
            .filter_map(|(x, side)| match side.kind {
                "drv" => Some(format!("{x} is a derivation id")),
                "tag" => Some(format!("{x} is a CernVM-FS tag")),
                _ => None,
            })
            .collect();
        if !recorded.is_empty() {
            let _ = writeln!(
                d,
                "({}: causes end at parameters, builders, sources and repository metadata; give the spec for spec lines)",
                recorded.join(", ")
            );
        }
        parts.push(d);
    }
    if let Some(f) = &r.files {
        if !f.changes.is_empty() {
            parts.push(file_list(f));
        }
    }
    // A tag resolved without its derivations tells only its closure.
    let closure_only: Vec<&str> = [("A", &r.a), ("B", &r.b)]
        .iter()
        .filter(|(_, side)| side.kind == "tag" && side.drv.is_none())
        .map(|(x, _)| *x)
        .collect();
    if !parts.is_empty() && !closure_only.is_empty() {
        parts.push(format!(
            "({} not published from this store: closure only, from the published meta RPM; no sizes, derivations or files)\n",
            closure_only.join(" and ")
        ));
    }
    parts.join("\n")
}

fn closure(c: &ClosureDiff) -> String {
    let mut s = format!(
        "closure: {} → {} packages ({:+}), {} → {} ({})\n",
        c.a.packages,
        c.b.packages,
        c.b.packages as i64 - c.a.packages as i64,
        size(c.a.size as i64),
        size(c.b.size as i64),
        signed_size(c.b.size as i64 - c.a.size as i64),
    );
    let name_w = c
        .changes
        .iter()
        .map(|x| x.name.len() + 1)
        .max()
        .unwrap_or(0);
    let versions: Vec<String> = c
        .changes
        .iter()
        .map(|x| {
            let side = |v: &[String]| {
                if v.is_empty() {
                    "∅".to_string()
                } else {
                    v.join(", ")
                }
            };
            format!("{} → {}", side(&x.old), side(&x.new))
        })
        .collect();
    let ver_w = versions
        .iter()
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0);
    let mut group: Option<Change> = None;
    for (x, v) in c.changes.iter().zip(&versions) {
        if group != Some(x.change) {
            group = Some(x.change);
            let _ = writeln!(s, "  {}:", x.change.word());
        }
        let pad = ver_w - v.chars().count();
        let _ = writeln!(
            s,
            "    {:<name_w$} {v}{:pad$}  {:>10}",
            format!("{}:", x.name),
            "",
            signed_size(x.size_delta),
        );
    }
    s
}

fn derivations(d: &DrvDiff) -> String {
    let mut s = format!(
        "derivations: {} output{} differ{}\n",
        d.roots.len(),
        if d.roots.len() == 1 { "" } else { "s" },
        if d.roots.len() == 1 { "s" } else { "" }
    );
    let mut shown = HashSet::new();
    for r in &d.roots {
        let id = |x: &Option<crate::eval::DrvId>| {
            x.as_ref()
                .map_or("∅".to_string(), |i| i.short().to_string())
        };
        let _ = writeln!(s, "{}: {} → {}", r.output, id(&r.a), id(&r.b));
        node(d, &r.node, "", &mut shown, &mut s, true);
    }
    s
}

fn node_label(n: &Node) -> String {
    match (&n.a, &n.b, &n.old_name) {
        (None, _, _) => format!("{} (added)", n.name),
        (_, None, _) => format!("{} (removed)", n.name),
        (_, _, Some(old)) => format!("{old} → {}", n.name),
        _ => n.name.clone(),
    }
}

/// Prints a node line under `prefix` and, the first time it is seen, its
/// causes.
fn node(
    d: &DrvDiff,
    key: &str,
    prefix: &str,
    shown: &mut HashSet<String>,
    s: &mut String,
    last: bool,
) {
    let n = &d.nodes[key];
    let (branch, cont) = if last {
        ("└─ ", "   ")
    } else {
        ("├─ ", "│  ")
    };
    let again = !n.causes.is_empty() && !shown.insert(key.to_string());
    let _ = writeln!(
        s,
        "{prefix}{branch}{}{}",
        node_label(n),
        if again { " (see above)" } else { "" }
    );
    if again {
        return;
    }
    let inner = format!("{prefix}{cont}");
    for (i, c) in n.causes.iter().enumerate() {
        cause(d, c, &inner, shown, s, i + 1 == n.causes.len());
    }
}

fn cause(
    d: &DrvDiff,
    c: &Cause,
    prefix: &str,
    shown: &mut HashSet<String>,
    s: &mut String,
    last: bool,
) {
    let (branch, cont) = if last {
        ("└─ ", "   ")
    } else {
        ("├─ ", "│  ")
    };
    let inner = format!("{prefix}{cont}");
    match c {
        Cause::Input { node: k, .. } => node(d, k, prefix, shown, s, last),
        Cause::Pinned { what, node: k } => {
            let _ = writeln!(s, "{prefix}{branch}pinned by solve: {what}");
            node(d, k, &inner, shown, s, true);
        }
        Cause::Repinned => {
            let _ = writeln!(
                s,
                "{prefix}{branch}same solver inputs, pinned differently (`cvmbuild update`, or a solve that hit its time limit)"
            );
        }
        Cause::Builder { old, new } => {
            let _ = writeln!(s, "{prefix}{branch}builder: {old} → {new}");
        }
        Cause::Param {
            key,
            old,
            new,
            a,
            b,
        } => {
            let _ = writeln!(s, "{prefix}{branch}{key}: {} → {}", json(old), json(new));
            lines(a, b, &inner, s);
        }
        Cause::Repository { name, old, new } => {
            let _ = match (old, new) {
                (Some(o), Some(n)) => writeln!(
                    s,
                    "{prefix}{branch}repository `{name}`: metadata {} → {}",
                    short(o),
                    short(n)
                ),
                (None, _) => writeln!(s, "{prefix}{branch}repository `{name}` added"),
                (_, None) => writeln!(s, "{prefix}{branch}repository `{name}` removed"),
            };
        }
        Cause::Source {
            role,
            origin,
            old,
            new,
        } => {
            let h = |x: &Option<String>| {
                x.as_deref()
                    .map_or("∅".to_string(), |v| short(v).to_string())
            };
            let _ = writeln!(
                s,
                "{prefix}{branch}input {role} ({origin}): content {} → {}",
                h(old),
                h(new)
            );
        }
        Cause::Spec { what, a, b } => {
            let _ = writeln!(s, "{prefix}{branch}{what}");
            lines(a, b, &inner, s);
        }
    }
}

/// The spec lines behind a cause: `-` A's, `+` B's; one unmarked line when
/// both sides point at the same unchanged line (a shared file).
fn lines(a: &Option<Loc>, b: &Option<Loc>, prefix: &str, s: &mut String) {
    if a.is_some() && a == b {
        let l = a.as_ref().expect("checked");
        let _ = writeln!(s, "{prefix}  {}:{}: {}", l.file, l.line, l.text);
        return;
    }
    for (mark, l) in [("-", a), ("+", b)] {
        if let Some(l) = l {
            let _ = writeln!(s, "{prefix}{mark} {}:{}: {}", l.file, l.line, l.text);
        }
    }
}

fn file_list(f: &FileDiff) -> String {
    let count = |c: files::Change| f.changes.iter().filter(|x| x.change == c).count();
    let mut s = format!(
        "files: {} added, {} removed, {} changed ({} tree objects read)\n",
        count(files::Change::Added),
        count(files::Change::Removed),
        count(files::Change::Changed),
        f.trees_read
    );
    let cols: Vec<String> = f
        .changes
        .iter()
        .map(|c| {
            if c.what.is_empty() {
                c.path.clone()
            } else {
                format!("{} ({})", c.path, c.what.join(", "))
            }
        })
        .collect();
    let w = cols.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    for (c, col) in f.changes.iter().zip(&cols) {
        let mark = match c.change {
            files::Change::Added => '+',
            files::Change::Removed => '-',
            files::Change::Changed => '~',
        };
        let line = format!("  {mark} {col:<w$}  {}", c.packages.join(", "));
        let _ = writeln!(s, "{}", line.trim_end());
    }
    s
}

fn json(v: &Json) -> String {
    match v {
        Json::Null => "(unset)".into(),
        other => other.to_string(),
    }
}

fn short(h: &str) -> &str {
    &h[..12.min(h.len())]
}

fn size(bytes: i64) -> String {
    let b = bytes.unsigned_abs() as f64;
    let sign = if bytes < 0 { "-" } else { "" };
    if b < 1024.0 {
        format!("{sign}{} B", bytes.unsigned_abs())
    } else if b < 1024.0 * 1024.0 {
        format!("{sign}{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{sign}{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{sign}{:.1} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

fn signed_size(bytes: i64) -> String {
    if bytes > 0 {
        format!("+{}", size(bytes))
    } else if bytes == 0 {
        "±0 B".into()
    } else {
        size(bytes)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::size(1000), "1000 B");
        assert_eq!(super::signed_size(1536), "+1.5 KiB");
        assert_eq!(super::signed_size(-3 << 20), "-3.0 MiB");
        assert_eq!(super::signed_size(0), "±0 B");
    }
}

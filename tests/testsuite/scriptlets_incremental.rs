//! A one-package change does not rerun the whole transaction: `assemble`
//! resumes from the latest checkpoint whose steps are the same, and the
//! tree is still the one a fresh install gives. Every `%post` appends to
//! one shared file (so the order and every step show in it), `%pre` makes
//! an account a later `%post` chowns a setuid file to, a `%post` changes
//! a file another package shipped and makes a hardlink: all of it state a
//! checkpoint must carry exactly. Each release is realized once in a store
//! that has seen the others (resuming) and once in a fresh store; the
//! trees must be the same object.

use crate::support::cli::copy_dir;
use crate::support::rpmrepo::{build_repo, Pkg, RepoOptions};
use std::collections::BTreeSet;
use std::path::Path;

/// Packages `c1`..`c8`, installed in that order after `shell`.
const CHAIN: usize = 8;

fn chained(k: usize, version: &str) -> Pkg {
    let mut post = format!("echo \"c{k}-{version} $1 $(wc -l < /var/chain)\" >> /var/chain");
    if k == 3 {
        post.push_str(
            "\necho secret > /var/owned\nchown svc:svc /var/owned\nchmod 4750 /var/owned\n\
             ln /var/chain /var/chain.link\necho edited >> /usr/share/c1/data",
        );
    }
    let mut p = Pkg::new(&format!("c{k}"), version, "1")
        .preamble("Requires(post): shell")
        .preamble("Requires(pre): shell")
        .file(
            &format!("/usr/share/c{k}/data"),
            format!("c{k} {version}\n").as_bytes(),
        )
        .script("post", &post);
    if k > 1 {
        p = p.requires(&format!("c{}", k - 1));
    }
    if k == 2 {
        p = p.script(
            "pre",
            "echo 'svc:x:500:500::/var/svc:/bin/sh' >> /etc/passwd\necho 'svc:x:500:' >> /etc/group",
        );
    }
    p
}

fn packages() -> Vec<Pkg> {
    let mut shell = Pkg::new("shell", "1.0", "1")
        .arch("x86_64")
        .copy("/bin/busybox", "/bin/busybox", 0o755)
        .file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .file("/etc/group", b"root:x:0:\n")
        .file("/var/chain", b"");
    for a in ["sh", "echo", "wc", "chown", "chmod", "ln"] {
        shell = shell.symlink(&format!("/bin/{a}"), "busybox");
    }
    let mut all = vec![shell];
    for k in 1..=CHAIN {
        all.push(chained(k, "1.0"));
    }
    // The changed versions: an early package (c2, step 3 of 9), a late
    // one (c7, step 8), the last one (c8).
    for k in [2, 7, 8] {
        all.push(chained(k, "2.0"));
    }
    all
}

fn write_spec(dir: &Path) -> std::path::PathBuf {
    let names: Vec<String> = std::iter::once("\"shell\"".to_string())
        .chain((1..=CHAIN).map(|k| format!("\"c{k}\"")))
        .collect();
    let text = format!(
        r#"let r = repo {{ name = "r", url = "repo" }}
let base = release {{
  name = "t-system"
  version = "1.0"
  arch = "x86_64"
  repos = [r]
  packages = [{}]
  pins = {{ c2 = "1.*", c7 = "1.*", c8 = "1.*" }}
  epoch = 1400000000
}}
branch one = base
branch late = base // {{ pins = {{ c2 = "1.*", c7 = "2.*", c8 = "1.*" }} }}
branch early = base // {{ pins = {{ c2 = "2.*", c7 = "1.*", c8 = "1.*" }} }}
branch last = base // {{ pins = {{ c2 = "1.*", c7 = "1.*", c8 = "2.*" }} }}
"#,
        names.join(", ")
    );
    let p = dir.join("s.cvm");
    std::fs::write(&p, text).unwrap();
    p
}

/// Realizes `branch` in the sandbox `dir` (checkpoints every 2 steps);
/// returns the assembled tree's hash and the new assemble build log.
fn realize(dir: &Path, branch: &str) -> (String, String) {
    let before = assemble_logs(dir);
    let out = crate::support::cvmbuild(dir)
        .env("CVMBUILD_CHECKPOINT_EVERY", "2")
        .arg("realize")
        .arg(dir.join("s.cvm"))
        .args(["--branch", branch, "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "realize {branch} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let tree = json[0]["outputs"]["os-tree"]["root"]["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no os-tree in {json}"))
        .to_string();
    let new: Vec<String> = assemble_logs(dir)
        .into_iter()
        .filter(|l| !before.contains(l))
        .collect();
    assert_eq!(new.len(), 1, "one assemble built for {branch}");
    (tree, new.into_iter().next().unwrap())
}

/// The text of every assemble build log in the sandbox's store.
fn assemble_logs(dir: &Path) -> BTreeSet<String> {
    let Ok(rd) = std::fs::read_dir(dir.join("store/logs")) else {
        return BTreeSet::new();
    };
    rd.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .filter(|t| t.contains("\nname assemble\n"))
        .collect()
}

/// The `N scriptlets run (M of them before the checkpoint ...)` figures.
fn counts(log: &str) -> (usize, usize) {
    let line = log
        .lines()
        .find(|l| l.contains(" scriptlets run ("))
        .unwrap_or_else(|| panic!("no count in:\n{log}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // Lines start with a timestamp-free message after the log prefix: the
    // last three numbers are run, carried, failed.
    let n = nums.len();
    (nums[n - 3], nums[n - 2])
}

#[test]
fn a_changed_package_resumes_from_a_checkpoint_and_gives_the_fresh_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (seen, fresh) = (tmp.path().join("seen"), tmp.path().join("fresh"));
    let repo = seen.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    build_repo(&repo, &packages(), &RepoOptions::default());
    copy_dir(&repo, &fresh.join("repo"));
    write_spec(&seen);
    write_spec(&fresh);

    let (one, log) = realize(&seen, "one");
    assert!(!log.contains("resumed after"), "{log}");
    // 8 %post, one %pre; checkpoints after steps 2, 4, 6, 8 of 9.
    assert_eq!(counts(&log), (9, 0), "{log}");
    for step in [2, 4, 6, 8] {
        assert!(
            log.contains(&format!("checkpoint after step {step} (")),
            "{log}"
        );
    }
    // Checkpoints are outputs of no derivation: `store verify` finds them
    // whole.
    let verify = crate::support::cvmbuild(&seen)
        .args(["store", "verify"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");

    // c7 is step 8: resumed after step 6 (six scriptlets), so only c6's,
    // c7's and c8's %post run again.
    let (late, log) = realize(&seen, "late");
    assert!(log.contains("resumed after step 6 of 9"), "{log}");
    assert_eq!(counts(&log), (9, 6), "{log}");
    // The log still names every scriptlet, those carried over too.
    for s in [
        "c1-1.0-1.noarch %post",
        "c2-1.0-1.noarch %pre",
        "c7-2.0-1.noarch %post",
    ] {
        assert!(log.contains(&format!("running {s}: /bin/sh")), "{log}");
    }
    assert_ne!(late, one);
    let (late_fresh, log) = realize(&fresh, "late");
    assert!(!log.contains("resumed after"), "{log}");
    assert_eq!(late, late_fresh, "resumed and fresh trees differ");

    // c2 is step 3: resumed after step 2 (shell's and c1's, one %post).
    let (early, log) = realize(&seen, "early");
    assert!(log.contains("resumed after step 2 of 9"), "{log}");
    assert_eq!(counts(&log), (9, 1), "{log}");
    let (early_fresh, _) = realize(&fresh, "early");
    assert_eq!(early, early_fresh, "resumed and fresh trees differ");

    // The exported trees agree too, as files (the accumulated file shows
    // every step in order).
    let chain = |dir: &Path, branch: &str| {
        let out = dir.join(format!("out-{branch}"));
        let st = crate::support::cvmbuild(dir)
            .arg("realize")
            .arg(dir.join("s.cvm"))
            .args(["--branch", branch, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        std::fs::read_to_string(out.join("var/chain")).unwrap()
    };
    let want = "c1-1.0 1 0\nc2-2.0 1 1\nc3-1.0 1 2\nc4-1.0 1 3\nc5-1.0 1 4\nc6-1.0 1 5\n\
                c7-1.0 1 6\nc8-1.0 1 7\n";
    assert_eq!(chain(&seen, "early"), want);
    assert_eq!(chain(&fresh, "early"), want);

    // gc drops every checkpoint (no root reaches them): the next change
    // runs in full and still gives the fresh tree.
    let gc = crate::support::cvmbuild(&seen).arg("gc").output().unwrap();
    assert!(gc.status.success(), "{gc:?}");
    let (last, log) = realize(&seen, "last");
    assert!(!log.contains("resumed after"), "{log}");
    assert_eq!(counts(&log), (9, 0), "{log}");
    let (last_fresh, _) = realize(&fresh, "last");
    assert_eq!(last, last_fresh);
}

//! Crashes and concurrency: `kill -9` at several points of a realize, then
//! realize again; two realizes of the same release on one store at once.

use crate::support::fixture as realize_util;

use realize_util::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

/// Starts a realize of the production branch and kills it with SIGKILL
/// once `after_built` derivations are reported built (0: right away),
/// then waits `delay` more. Returns whether it had already finished.
fn realize_and_kill(f: &Fixture, after_built: usize, delay: Duration) -> bool {
    let mut child = crate::support::cvmbuild(f.dir.path())
        .arg("--store")
        .arg(f.store())
        .arg("-j")
        .arg("2")
        .arg("realize")
        .arg(f.spec())
        .args(["--branch", "production", "--offline"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut built = 0;
    while built < after_built {
        match lines.next() {
            Some(Ok(l)) if l.contains("] built ") => built += 1,
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    std::thread::sleep(delay);
    // SIGKILL: no destructor, no cleanup runs.
    let _ = child.kill();
    // Keep draining so the child never blocks on a full pipe before dying.
    std::thread::spawn(move || for _ in lines {});
    let status = child.wait().unwrap();
    status.success()
}

#[test]
fn kill_9_at_several_points_then_realize_gives_the_same_result() {
    let reference = Fixture::new();
    let (want, _) = reference.realize(&[]);
    let f = Fixture::new();
    let mut killed = 0;
    for (after, ms) in [
        (0, 0),
        (0, 40),
        (1, 0),
        (5, 0),
        (15, 3),
        (30, 0),
        (50, 1),
        (70, 0),
    ] {
        if !realize_and_kill(&f, after, Duration::from_millis(ms)) {
            killed += 1;
        }
        // Whatever was registered before the kill is complete.
        assert_verify_clean(&f.store());
    }
    assert!(
        killed >= 5,
        "only {killed} runs were killed before finishing"
    );
    let (got, err) = f.realize(&[]);
    assert_eq!(outputs(&want), outputs(&got), "{err}");
    assert_verify_clean(&f.store());
    // A no-op again afterwards.
    let (_, err) = f.realize(&[]);
    assert!(built(&err).is_empty(), "{err}");
}

#[test]
fn two_concurrent_realizes_both_succeed_and_build_each_derivation_once() {
    let f = Fixture::new();
    let spawn = || {
        crate::support::cvmbuild(f.dir.path())
            .arg("--store")
            .arg(f.store())
            .arg("-j")
            .arg("2")
            .arg("realize")
            .arg(f.spec())
            .args(["--branch", "production", "--offline"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let sa = String::from_utf8(a.stdout).unwrap();
    let sb = String::from_utf8(b.stdout).unwrap();
    assert_eq!(outputs(&sa), outputs(&sb));
    // The per-derivation locks: what one process built, the other took
    // from the store; nothing was built twice.
    let ba: BTreeSet<String> = built(&String::from_utf8(a.stderr).unwrap())
        .into_iter()
        .collect();
    let bb: BTreeSet<String> = built(&String::from_utf8(b.stderr).unwrap())
        .into_iter()
        .collect();
    assert!(
        ba.is_disjoint(&bb),
        "built twice: {:?}",
        ba.intersection(&bb).collect::<Vec<_>>()
    );
    assert!(ba.len() + bb.len() > 50);
    assert_verify_clean(&f.store());
}

#[test]
fn gc_waits_for_a_running_realize_and_keeps_its_objects() {
    let f = Fixture::new();
    let mut child = crate::support::cvmbuild(f.dir.path())
        .arg("--store")
        .arg(f.store())
        .arg("-j")
        .arg("1")
        .arg("realize")
        .arg(f.spec())
        .args(["--branch", "production", "--offline"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the realize has built something (objects written, no root yet),
    // collect: gc must wait for it rather than delete its unrooted work.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    for l in lines.by_ref() {
        if l.unwrap().contains("] built ") {
            break;
        }
    }
    let drain = std::thread::spawn(move || for _ in lines {});
    let gc = f.run(&["gc", "--json"]);
    assert!(gc.status.success(), "{}", text(&gc));
    let out = child.wait_with_output().unwrap();
    drain.join().unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(r["bytes_freed"], 0, "{r}");
    assert_verify_clean(&f.store());
    let (_, err) = f.realize(&[]);
    assert!(built(&err).is_empty(), "{err}");
}

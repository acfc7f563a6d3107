//! Running the closure's install scriptlets inside the assembled tree, in
//! a bubblewrap sandbox: the tree as `/` (writable), every namespace but
//! the user one unshared (no network, own pids, so no daemon outlives a
//! scriptlet), a minimal `/dev` and `/proc`, a fixed environment and a
//! time limit.
//!
//! The transaction follows rpm's order for a fresh install: `%pretrans`
//! of every package (before any file is on disk), then package by
//! package (dependency order) `%pre`, that package's files, `%post`, then
//! `%posttrans` of every package; `$1` is 1. Triggers fire as rpm fires
//! them ([`triggers`]). As rpm, no `%ghost` file or directory is made, nor
//! a directory no header lists that would hold nothing installed.
//!
//! A failing `%pretrans` or `%pre` stops the build (rpm does not install
//! that package); a failing `%post` or `%posttrans` is reported and the
//! transaction goes on, as in rpm.
//!
//! The assembled tree is materialised into a staging directory (copies,
//! never links into the store) and moved into the root package by
//! package as the transaction goes; the root is then read back as a
//! tree: an entry that did not change since it was placed keeps
//! its stored entry exactly (owner, setuid bits, capabilities, flags);
//! anything new or changed is read from disk, owned by the name the tree's
//! own `/etc/passwd` and `/etc/group` give its ids.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo::evr::Evr;
use crate::rpmdb::Deps;
use crate::store::{self, Entry, Flags, Hash, Node, Store, Tree};

pub mod checkpoint;
pub mod triggers;
use triggers::{Class, Trigger, When};

/// The longest a scriptlet may run before the sandbox is killed.
pub const TIME_LIMIT: Duration = Duration::from_secs(300);
/// The largest file a scriptlet may write (`RLIMIT_FSIZE`).
pub const FILE_SIZE_LIMIT: u64 = 1 << 30;
/// The free space a scriptlet must leave on the file system the
/// transaction is on (many files each under the size limit can still fill
/// a disk, the store's with it).
pub const MIN_FREE: u64 = 512 << 20;

/// What a scriptlet may use. Limits only decide whether a build fails,
/// never what it makes, so they are not part of the derivation.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub time: Duration,
    /// Bytes; a process writing past it gets `SIGXFSZ` (or `EFBIG`).
    pub file_size: u64,
    /// Bytes; a scriptlet leaving less free is stopped, failing the build.
    pub min_free: u64,
}

impl Limits {
    /// [`TIME_LIMIT`], [`FILE_SIZE_LIMIT`] and [`MIN_FREE`], or
    /// `CVMBUILD_SCRIPTLET_TIMEOUT` seconds,
    /// `CVMBUILD_SCRIPTLET_FILE_SIZE` and `CVMBUILD_SCRIPTLET_MIN_FREE`
    /// bytes when set.
    pub fn from_env() -> Limits {
        let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse().ok());
        Limits {
            time: var("CVMBUILD_SCRIPTLET_TIMEOUT").map_or(TIME_LIMIT, Duration::from_secs),
            file_size: var("CVMBUILD_SCRIPTLET_FILE_SIZE").unwrap_or(FILE_SIZE_LIMIT),
            min_free: var("CVMBUILD_SCRIPTLET_MIN_FREE").unwrap_or(MIN_FREE),
        }
    }
}

/// The longest wait between two looks at a running scriptlet.
const POLL: Duration = Duration::from_millis(10);
/// How often the free space of the transaction's file system is checked
/// while a scriptlet runs.
const DISK_POLL: Duration = Duration::from_millis(100);

/// The most output kept (and logged) per scriptlet.
const MAX_OUTPUT: u64 = 64 * 1024;
/// Where the scriptlet's body is bound inside the sandbox (on the
/// sandbox's own `/dev`, so no mount point is made in the tree).
const SCRIPT_PATH: &str = "/dev/.cvmbuild-scriptlet";
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The capabilities a scriptlet keeps: owning, reading and writing any
/// file of the tree, changing ids, file capabilities and signals.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETFCAP",
    "CAP_KILL",
];

/// One scriptlet of one package.
#[derive(Clone, Debug)]
pub struct Script {
    /// `pretrans`, `pre`, `post` or `posttrans` (others are not run), or
    /// a trigger's section name (`triggerin`, `filetriggerin`).
    pub kind: String,
    /// The interpreter and its arguments; empty means `/bin/sh`.
    pub program: Vec<String>,
    pub body: String,
}

/// One package of the transaction.
#[derive(Clone, Debug)]
pub struct Package {
    pub nevra: String,
    /// The package's epoch, version and release, for versioned triggers.
    pub evr: Option<Evr>,
    pub deps: Deps,
    pub scripts: Vec<Script>,
    pub triggers: Vec<Trigger>,
}

/// What a run did, for the build log and the output's summary.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Log lines: each scriptlet run, and its output, named.
    pub log: Vec<String>,
    /// `NEVRA %kind: why`, for every failed scriptlet the transaction
    /// went on after.
    pub failed: Vec<String>,
    /// Scriptlets run.
    pub ran: usize,
    /// Of those, how many ran in an earlier transaction and were carried
    /// over with the checkpoint this one resumed from.
    pub resumed: usize,
    /// What happened to checkpoints (resumed from, taken, not taken): for
    /// the build log, not carried in a checkpoint.
    #[serde(skip)]
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ScriptletError {
    #[error("{nevra}: %{kind} scriptlet {why}; the package cannot be installed{}", output_block(.output))]
    #[diagnostic(
        code(build::scriptlet),
        help("fix the package, or set `scriptlets = false` in the release to install without running scriptlets")
    )]
    Failed {
        nevra: String,
        kind: String,
        why: String,
        output: String,
    },
    #[error("cannot run scriptlets: {0}")]
    #[diagnostic(
        code(build::sandbox),
        help("scriptlets run in bubblewrap (`bwrap`, Debian package `bubblewrap`) as root")
    )]
    Sandbox(String),
    #[error(
        "a scriptlet left {path}, of {size} bytes, at or past the file size limit of {limit} bytes"
    )]
    #[diagnostic(
        code(build::scriptlet_file_size),
        help("set CVMBUILD_SCRIPTLET_FILE_SIZE (bytes) if the file is meant to be that large")
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{nevra}: %{kind} scriptlet left {free} bytes free where the transaction runs ({dir}), under the {min} bytes it must leave; it was stopped")]
    #[diagnostic(
        code(build::scriptlet_disk),
        help("make room there (TMPDIR), or lower CVMBUILD_SCRIPTLET_MIN_FREE (bytes) if the package is meant to write that much")
    )]
    DiskFull {
        nevra: String,
        kind: String,
        dir: String,
        free: u64,
        min: u64,
    },
    #[error("{}: {source}", path.display())]
    #[diagnostic(code(build::scriptlet_io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] store::Error),
}

fn output_block(output: &str) -> String {
    if output.is_empty() {
        " (no output)".into()
    } else {
        format!("; its output:\n{}", output.trim_end())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ScriptletError + '_ {
    move |source| ScriptletError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// rpm's install order: a package after the packages providing what it
/// requires; on a cycle, prerequisites (`Requires(pre)` and the like) are
/// honoured first and plain requires are dropped, and if that is not
/// enough the first package (by label) of the cycle goes first.
pub fn order(pkgs: &[Package]) -> Vec<usize> {
    let mut providers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        let d = &p.deps;
        for cap in std::iter::once(&d.name).chain(&d.provides).chain(&d.files) {
            providers.entry(cap.as_str()).or_default().push(i);
        }
    }
    // before[i]: (j, prereq) for every j that must come before i.
    let before: Vec<BTreeSet<(usize, bool)>> = pkgs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut s = BTreeSet::new();
            for (r, pre) in &p.deps.requires {
                for &j in providers.get(r.as_str()).into_iter().flatten() {
                    if j != i {
                        s.insert((j, *pre));
                    }
                }
            }
            s
        })
        .collect();
    let mut done = vec![false; pkgs.len()];
    let mut out = Vec::with_capacity(pkgs.len());
    while out.len() < pkgs.len() {
        let ready = |strict: bool| {
            (0..pkgs.len()).find(|&i| {
                !done[i]
                    && before[i]
                        .iter()
                        .all(|&(j, pre)| done[j] || (!strict && !pre))
            })
        };
        let next = ready(true)
            .or_else(|| ready(false))
            .or_else(|| (0..pkgs.len()).find(|&i| !done[i]))
            .expect("a package is left");
        done[next] = true;
        out.push(next);
    }
    out
}

/// Runs the transaction in the tree `root`, whose paths `owners` maps to
/// the packages shipping them; returns the tree after it. `epoch` is
/// `SOURCE_DATE_EPOCH`; `database` the rpm database's path, placed after
/// the transaction. Resumes from the latest [`checkpoint`] `store` holds
/// for the same steps, and leaves checkpoints for later runs.
pub fn run(
    store: &dyn Store,
    root: &Hash,
    owners: &BTreeMap<String, Vec<String>>,
    pkgs: &[Package],
    epoch: i64,
    limits: Limits,
    database: &str,
) -> Result<(Hash, Report), ScriptletError> {
    let tmp = tempfile::tempdir().map_err(io_err(Path::new("temporary directory")))?;
    let stage = tmp.path().join("stage");
    let clamp_to = epoch.max(0) as u64;
    // Package files carry their headers' times, as rpm installs them.
    store::export_tree_copies(store, root, &stage, clamp_to)?;
    let dir = tmp.path().join("root");
    fs::create_dir(&dir).map_err(io_err(&dir))?;
    let mut tx = Transaction {
        stage,
        dir,
        tmp: tmp.path(),
        snap: Snapshot::new(),
        unmade: HashSet::new(),
        epoch,
        limits,
        report: Report::default(),
    };
    let seq = order(pkgs);
    // Each path is placed with the first package (in install order)
    // shipping it; directories no package ships come first, as rpm opens
    // its database before the transaction. The database itself (even
    // where rpm's package owns it as a %ghost), and any other file no
    // package ships, is placed after the transaction: it holds every
    // package's header, so a scriptlet seeing it would make every step
    // depend on the whole closure and no step could be reused.
    let rank: HashMap<&str, usize> = seq
        .iter()
        .enumerate()
        .map(|(r, &i)| (pkgs[i].nevra.as_str(), r))
        .collect();
    let orig = store.get_tree(root)?;
    let entries = checkpoint::entries_by_path(store, root)?;
    let mut files: Vec<Vec<&str>> = vec![Vec::new(); pkgs.len()];
    let (mut unowned_dirs, mut unowned_rest) = (Vec::new(), Vec::new());
    for (path, by) in owners {
        match by.iter().filter_map(|n| rank.get(n.as_str())).min() {
            _ if path == database => unowned_rest.push(path.as_str()),
            Some(&r) => files[seq[r]].push(path.as_str()),
            None if matches!(
                entries.get(path).map(|e| &e.node),
                Some(Node::Directory { .. })
            ) =>
            {
                unowned_dirs.push(path.as_str())
            }
            None => unowned_rest.push(path.as_str()),
        }
    }
    tx.unmade = unmade(store, &orig, pkgs)?;
    let steps: Vec<Vec<checkpoint::Placed>> = seq
        .iter()
        .map(|&i| checkpoint::placed_at(&files[i], &entries, &tx.unmade))
        .collect();
    let first = checkpoint::placed_at(&unowned_dirs, &entries, &tx.unmade);
    let every = checkpoint::every_from_env();
    let chain = checkpoint::Chain::new(every, epoch, limits, pkgs, &seq, &first, &steps);
    let mut cps = checkpoint::Checkpoints::new(store, &entries, limits.file_size);
    let mut notes = Vec::new();
    let t = Instant::now();
    let start = match cps.resume(&chain, &tx.dir, &mut notes)? {
        Some((j, report, snap)) => {
            tx.report = report;
            tx.report.resumed = tx.report.ran;
            notes.push(format!(
                "resumed after step {} of {} from checkpoint {} (restored in {:.3} s): \
                 {} scriptlets not run again",
                j + 1,
                seq.len(),
                chain.keys[j].to_hex(),
                t.elapsed().as_secs_f64(),
                tx.report.resumed
            ));
            tx.snap = snap;
            j + 1
        }
        None => {
            tx.place(&unowned_dirs)?;
            for &i in &seq {
                tx.scripts(&pkgs[i], "pretrans")?;
            }
            0
        }
    };
    let mut installed: Vec<usize> = seq[..start].to_vec();
    for (j, &i) in seq.iter().enumerate().skip(start) {
        let p = &pkgs[i];
        tx.package_triggers(pkgs, i, &installed, When::PreIn)?;
        tx.scripts(p, "pre")?;
        tx.place(&files[i])?;
        installed.push(i);
        tx.file_triggers(pkgs, i, &installed, true)?;
        tx.scripts(p, "post")?;
        tx.package_triggers(pkgs, i, &installed, When::In)?;
        tx.file_triggers(pkgs, i, &installed, false)?;
        if chain.is_checkpoint(j) {
            let t = Instant::now();
            let line = match cps.capture(&chain, j, &tx.dir, &tx.snap, &tx.report)? {
                Ok(id) => format!(
                    "checkpoint after step {} ({:.3} s): {id}",
                    j + 1,
                    t.elapsed().as_secs_f64()
                ),
                Err(why) => format!("no checkpoint after step {}: {why}", j + 1),
            };
            notes.push(line);
        }
    }
    for &i in &seq {
        tx.scripts(&pkgs[i], "posttrans")?;
    }
    tx.trans_file_triggers(pkgs, &installed)?;
    tx.place(&unowned_rest)?;
    tx.report.notes = notes;
    let owners = Ids::read(&tx.dir);
    let cx = ImportCx {
        snap: &tx.snap,
        ids: &owners,
        limit: limits.file_size,
        epoch: clamp_to,
    };
    let tree = import(store, &tx.dir, Some(&orig), "", &cx)?;
    tx.report.notes.extend(cps.register());
    Ok((tree, tx.report))
}

/// A transaction under way: the exported tree waiting in `stage`, the
/// installed root `dir`, and what was placed there.
struct Transaction<'a> {
    stage: PathBuf,
    dir: PathBuf,
    tmp: &'a Path,
    snap: Snapshot,
    /// Directories rpm would not make (see [`unmade_dirs`]).
    unmade: HashSet<String>,
    epoch: i64,
    limits: Limits,
    report: Report,
}

impl Transaction<'_> {
    /// Runs the package's scriptlets of `kind` (`$1` is 1).
    fn scripts(&mut self, p: &Package, kind: &str) -> Result<(), ScriptletError> {
        for s in p.scripts.iter().filter(|s| s.kind == kind) {
            self.script(p, s, &["1"], None)?;
        }
        Ok(())
    }

    /// Runs one scriptlet (`args` its `$1`, `$2`, `stdin` its input): a
    /// failing `%pretrans` or `%pre` is the build's error, other failures
    /// are reported and the transaction goes on.
    fn script(
        &mut self,
        p: &Package,
        s: &Script,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<(), ScriptletError> {
        let (dir, tmp, epoch, limits) = (&self.dir, self.tmp, self.epoch, self.limits);
        let run = Run {
            args,
            stdin,
            epoch,
            limits,
        };
        if let Err((why, output)) = run_one(dir, tmp, p, s, &run, &mut self.report)? {
            let kind = &s.kind;
            if matches!(kind.as_str(), "pre" | "pretrans") {
                return Err(ScriptletError::Failed {
                    nevra: p.nevra.clone(),
                    kind: kind.to_string(),
                    why,
                    output,
                });
            }
            self.report
                .log
                .push(format!("{} %{kind}: {why}; continuing", p.nevra));
            self.report
                .failed
                .push(format!("{} %{kind}: {why}", p.nevra));
        }
        Ok(())
    }

    /// Package triggers of `when` around installing `pkgs[i]`: first
    /// those of installed packages (itself too, once in the database)
    /// that name it, then its own that name an installed package (itself
    /// too), each package's in the order of its header's conditions,
    /// each script once per package. `$1` and `$2` count the trigger's
    /// package and the target as installed (in the database) then.
    fn package_triggers(
        &mut self,
        pkgs: &[Package],
        i: usize,
        installed: &[usize],
        when: When,
    ) -> Result<(), ScriptletError> {
        let p = &pkgs[i];
        let count = |j: usize| if installed.contains(&j) { "1" } else { "0" };
        let fits = |t: &&Trigger| t.class == Class::Package && t.when == when;
        for &q in installed {
            let source = &pkgs[q];
            let mut set_off: Vec<(usize, &Trigger)> = source
                .triggers
                .iter()
                .filter(fits)
                .filter_map(|t| Some((t.names(&p.deps.name, p.evr.as_ref())?, t)))
                .collect();
            set_off.sort_by_key(|(pos, _)| *pos);
            for (_, t) in set_off {
                self.script(source, &t.script, &[count(q), count(i)], None)?;
            }
        }
        let mut mine: Vec<(usize, &Trigger)> = p
            .triggers
            .iter()
            .filter(fits)
            .filter_map(|t| {
                let pos = installed
                    .iter()
                    .filter_map(|&q| t.names(&pkgs[q].deps.name, pkgs[q].evr.as_ref()))
                    .min()?;
                Some((pos, t))
            })
            .collect();
        mine.sort_by_key(|(pos, _)| *pos);
        for (_, t) in mine {
            self.script(p, &t.script, &[count(i), "1"], None)?;
        }
        Ok(())
    }

    /// `%filetriggerin` of the `early` (priority above
    /// [`triggers::EARLY_PRIORITY`], before `%post`) or late band once
    /// `pkgs[i]` is installed: the triggers of every installed package
    /// (its own too) matching its files, then its own triggers matching
    /// the files of the other installed packages (in install order).
    fn file_triggers(
        &mut self,
        pkgs: &[Package],
        i: usize,
        installed: &[usize],
        early: bool,
    ) -> Result<(), ScriptletError> {
        let band = |t: &&Trigger| {
            t.class == Class::File
                && t.when == When::In
                && (t.priority > triggers::EARLY_PRIORITY) == early
        };
        let p = &pkgs[i];
        let theirs = installed
            .iter()
            .flat_map(|&q| pkgs[q].triggers.iter().filter(band).map(move |t| (q, t)))
            .collect();
        for (q, t) in triggers::by_priority(theirs) {
            let paths = lines(t.matching(&p.deps.files));
            if !paths.is_empty() {
                self.script(&pkgs[q], &t.script, &["0"], Some(&paths))?;
            }
        }
        let mine = p.triggers.iter().filter(band).map(|t| ((), t)).collect();
        for ((), t) in triggers::by_priority(mine) {
            let others = installed.iter().filter(|&&q| q != i);
            let paths = lines(others.flat_map(|&q| t.matching(&pkgs[q].deps.files)));
            if !paths.is_empty() {
                self.script(p, &t.script, &["0"], Some(&paths))?;
            }
        }
        Ok(())
    }

    /// `%transfiletriggerin` after `%posttrans`: each trigger of an
    /// installed package once, by priority, with every installed file it
    /// matches (in install order).
    fn trans_file_triggers(
        &mut self,
        pkgs: &[Package],
        installed: &[usize],
    ) -> Result<(), ScriptletError> {
        let all = installed
            .iter()
            .flat_map(|&q| {
                pkgs[q]
                    .triggers
                    .iter()
                    .filter(|t| t.class == Class::TransFile && t.when == When::In)
                    .map(move |t| (q, t))
            })
            .collect();
        for (q, t) in triggers::by_priority(all) {
            let paths = lines(
                installed
                    .iter()
                    .flat_map(|&j| t.matching(&pkgs[j].deps.files)),
            );
            if !paths.is_empty() {
                self.script(&pkgs[q], &t.script, &["0"], Some(&paths))?;
            }
        }
        Ok(())
    }

    /// Moves `paths` (absolute, parents before children) from the stage
    /// into the root, as rpm unpacks a package: a directory is made (or,
    /// if a scriptlet made it, given the package's mode), anything else
    /// replaces what is there. Missing parents are made as the stage has
    /// them. Paths the export did not create (ghosts, devices) are left to
    /// the import, which keeps their stored entries.
    fn place(&mut self, paths: &[&str]) -> Result<(), ScriptletError> {
        let mut placed = Vec::new();
        for path in paths.iter().filter(|p| !self.unmade.contains(**p)) {
            let rel = path.trim_start_matches('/');
            let src = self.stage.join(rel);
            let Ok(md) = fs::symlink_metadata(&src) else {
                continue;
            };
            let mut at = String::new();
            for part in Path::new(rel).parent().into_iter().flat_map(Path::iter) {
                if !at.is_empty() {
                    at.push('/');
                }
                at.push_str(&part.to_string_lossy());
                let dst = self.dir.join(&at);
                if fs::symlink_metadata(&dst).is_err() {
                    self.make_dir(&at)?;
                    placed.push(at.clone());
                }
            }
            let dst = self.dir.join(rel);
            let there = fs::symlink_metadata(&dst).ok();
            if md.is_dir() {
                match there {
                    Some(t) if t.is_dir() => set_mode(&dst, md.mode())?,
                    Some(_) => {
                        fs::remove_file(&dst).map_err(io_err(&dst))?;
                        self.make_dir(rel)?;
                    }
                    None => self.make_dir(rel)?,
                }
            } else if there.is_some_and(|t| t.is_dir()) {
                return Err(ScriptletError::Io {
                    path: PathBuf::from(path),
                    source: std::io::Error::other(
                        "a scriptlet made a directory where the package ships a file",
                    ),
                });
            } else {
                fs::rename(&src, &dst).map_err(io_err(&dst))?;
            }
            placed.push(rel.to_string());
        }
        // Stamped once all are placed: a later name of a hardlinked file
        // changes the change time of the earlier ones.
        for rel in placed {
            self.stamp(&rel)?;
            if let Some(parent) = Path::new(&rel)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                self.stamp(&parent.to_string_lossy())?;
            }
        }
        Ok(())
    }

    fn make_dir(&self, rel: &str) -> Result<(), ScriptletError> {
        let dst = self.dir.join(rel);
        let src = self.stage.join(rel);
        let mode = fs::symlink_metadata(&src).map_or(0o755, |m| m.mode());
        fs::create_dir(&dst).map_err(io_err(&dst))?;
        set_mode(&dst, mode)
    }

    fn stamp(&mut self, rel: &str) -> Result<(), ScriptletError> {
        let path = self.dir.join(rel);
        let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        self.snap.insert(format!("/{rel}"), Stamp::of(&md));
        Ok(())
    }
}

/// The merged tree as a fresh install without a transaction leaves it
/// (`scriptlets = false`, or nothing to run): the directories rpm does
/// not make (see [`unmade_dirs`]) left out, as [`run`] leaves them out.
pub fn without_unmade_dirs(
    store: &dyn Store,
    root: &Hash,
    pkgs: &[Package],
) -> Result<Hash, ScriptletError> {
    let orig = store.get_tree(root)?;
    let unmade = unmade(store, &orig, pkgs)?;
    if unmade.is_empty() {
        return Ok(*root);
    }
    fn rebuild(
        store: &dyn Store,
        tree: &Tree,
        at: &str,
        unmade: &HashSet<String>,
    ) -> Result<Hash, ScriptletError> {
        let mut entries = Vec::with_capacity(tree.entries().len());
        for e in tree.entries() {
            let path = format!("{at}/{}", e.name);
            if unmade.contains(&path) {
                continue;
            }
            let mut e = e.clone();
            if let Node::Directory { tree: sub } = &e.node {
                let sub = rebuild(store, &store.get_tree(sub)?, &path, unmade)?;
                e.node = Node::Directory { tree: sub };
            }
            entries.push(e);
        }
        Ok(store.put_tree(&Tree::new(entries)?)?)
    }
    rebuild(store, &orig, "", &unmade)
}

/// The directories of `root` that rpm does not make for `pkgs` (see
/// [`unmade_dirs`]).
fn unmade(
    store: &dyn Store,
    root: &Tree,
    pkgs: &[Package],
) -> Result<HashSet<String>, ScriptletError> {
    let listed: HashSet<&str> = pkgs
        .iter()
        .flat_map(|p| p.deps.files.iter().map(String::as_str))
        .collect();
    let mut unmade = HashSet::new();
    unmade_dirs(store, root, "", &listed, &mut unmade)?;
    Ok(unmade)
}

/// Collects into `unmade` the directories below `tree` (at `at`) that rpm
/// does not create on a fresh install: `%ghost` directories, and
/// directories no header lists (parents the extraction implied) unless
/// they hold something installed; `%ghost` files are never created.
/// Returns whether anything in `tree` is installed.
fn unmade_dirs(
    store: &dyn Store,
    tree: &Tree,
    at: &str,
    listed: &HashSet<&str>,
    unmade: &mut HashSet<String>,
) -> Result<bool, ScriptletError> {
    let mut any = false;
    for e in tree.entries() {
        let path = format!("{at}/{}", e.name);
        let made = match &e.node {
            Node::Directory { tree } => {
                let inner = unmade_dirs(store, &store.get_tree(tree)?, &path, listed, unmade)?;
                let made = inner || (!e.flags.ghost && listed.contains(path.as_str()));
                if !made {
                    unmade.insert(path);
                }
                made
            }
            _ => !e.flags.ghost,
        };
        any |= made;
    }
    Ok(any)
}

/// Paths as a file trigger reads them: one a line.
fn lines<'a>(paths: impl Iterator<Item = &'a String>) -> String {
    paths.map(|p| format!("{p}\n")).collect()
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ScriptletError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777)).map_err(io_err(path))
}

type Outcome = Result<(), (String, String)>;

/// How one scriptlet is invoked.
struct Run<'a> {
    /// Its arguments after the script (`$1`, `$2`).
    args: &'a [&'a str],
    /// Its standard input (file triggers' paths); else `/dev/null`.
    stdin: Option<&'a str>,
    epoch: i64,
    limits: Limits,
}

fn run_one(
    dir: &Path,
    tmp: &Path,
    p: &Package,
    s: &Script,
    run: &Run,
    report: &mut Report,
) -> Result<Outcome, ScriptletError> {
    let (epoch, limit) = (run.epoch, run.limits.time);
    let name = format!("{} %{}", p.nevra, s.kind);
    let mut argv: Vec<String> = if s.program.is_empty() {
        vec!["/bin/sh".into()]
    } else {
        s.program.clone()
    };
    let mut host_binds = Vec::new();
    if argv[0] == "<lua>" {
        // An empty Lua chunk does nothing.
        if s.body.is_empty() {
            return Ok(Ok(()));
        }
        let launch = super::lua::Launch::new(&p.nevra, &s.kind)
            .map_err(|e| ScriptletError::Sandbox(e.to_string()))?;
        host_binds = launch.bwrap_args;
        argv = launch.argv;
    }
    if !argv[0].starts_with('/') {
        return Ok(Err((
            format!("names the interpreter {:?}, not an absolute path", argv[0]),
            String::new(),
        )));
    }
    let script = tmp.join("scriptlet");
    fs::write(&script, &s.body).map_err(io_err(&script))?;
    if !s.body.is_empty() {
        argv.push(SCRIPT_PATH.into());
    }
    argv.extend(run.args.iter().map(|a| a.to_string()));
    let stdin = match run.stdin {
        Some(text) => {
            let path = tmp.join("stdin");
            fs::write(&path, text).map_err(io_err(&path))?;
            Stdio::from(File::open(&path).map_err(io_err(&path))?)
        }
        None => Stdio::null(),
    };
    // Output through a pipe, of which the first MAX_OUTPUT bytes are
    // kept and the rest read and dropped: nothing grows on disk.
    let pipe_err = |e| ScriptletError::Sandbox(format!("cannot make a pipe: {e}"));
    let (reader, out) = std::io::pipe().map_err(pipe_err)?;
    let err = out.try_clone().map_err(pipe_err)?;
    report
        .log
        .push(format!("running {name}: {}", argv.join(" ")));
    report.ran += 1;
    let mut cmd = Command::new("bwrap");
    cmd.arg("--bind")
        .arg(dir)
        .arg("/")
        .args(["--dev", "/dev", "--proc", "/proc"])
        .arg("--ro-bind")
        .arg(&script)
        .arg(SCRIPT_PATH)
        // Every namespace but the user one: a new user namespace maps only
        // root, so a `chown` to an account a `%pre` made would fail.
        // Instead the capabilities are cut to what installing files
        // needs (no mounts, no device nodes, no raw I/O).
        .args(&host_binds)
        .args(["--unshare-ipc", "--unshare-pid", "--unshare-net"])
        .args(["--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"]);
    for cap in CAPS {
        cmd.args(["--cap-add", cap]);
    }
    cmd.args(["--die-with-parent", "--new-session"])
        .args(["--clearenv", "--chdir", "/"])
        .args(["--setenv", "PATH", PATH, "--setenv", "LANG", "C"])
        .args(["--setenv", "HOME", "/root"])
        .args(["--setenv", "SOURCE_DATE_EPOCH", &epoch.to_string()])
        .arg("--")
        .args(&argv)
        .stdin(stdin)
        .stdout(out)
        .stderr(err);
    let fsize = run.limits.file_size;
    // SAFETY: setrlimit is async-signal-safe and touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: fsize,
                rlim_max: fsize,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(cmd); // our ends of the pipe's write side
    let mut child =
        spawned.map_err(|e| ScriptletError::Sandbox(format!("cannot start bwrap: {e}")))?;
    let collector = std::thread::spawn(move || collect(reader));
    let start = Instant::now();
    let min_free = run.limits.min_free;
    let mut low = None;
    let mut disk_checked: Option<Instant> = None;
    // Most scriptlets are over in a few milliseconds: the wait starts
    // short and doubles to POLL, so a quick one costs no more than its
    // run (a fixed 10 ms nap was most of a transaction's time).
    let mut nap = Duration::from_micros(200);
    let status = loop {
        let exited = child
            .try_wait()
            .map_err(|e| ScriptletError::Sandbox(e.to_string()))?;
        // The disk, every DISK_POLL and once more at the end.
        if exited.is_some() || disk_checked.is_none_or(|t| t.elapsed() >= DISK_POLL) {
            low = free_bytes(dir).filter(|&f| f < min_free);
            disk_checked = Some(Instant::now());
        }
        if let Some(st) = exited {
            break Some(st);
        }
        if start.elapsed() >= limit || low.is_some() {
            // bwrap's death takes the sandbox's pid namespace with it.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(POLL);
    };
    let (output, cut) = collector
        .join()
        .map_err(|_| ScriptletError::Sandbox("the output reader failed".into()))?;
    for line in output.lines() {
        report.log.push(format!("{name}: {line}"));
    }
    if cut {
        report.log.push(format!(
            "{name}: (output cut after {} KiB)",
            MAX_OUTPUT / 1024
        ));
    }
    // A process killed for writing past RLIMIT_FSIZE (the shell reports
    // 128 + SIGXFSZ).
    let xfsz = |st: &std::process::ExitStatus| {
        st.signal() == Some(libc::SIGXFSZ) || st.code() == Some(128 + libc::SIGXFSZ)
    };
    if let Some(free) = low {
        return Err(ScriptletError::DiskFull {
            nevra: p.nevra.clone(),
            kind: s.kind.clone(),
            dir: dir.display().to_string(),
            free,
            min: min_free,
        });
    }
    Ok(match status {
        None => Err((
            format!("was killed after the time limit of {} s", limit.as_secs()),
            output,
        )),
        Some(st) if st.success() => Ok(()),
        // Whatever the scriptlet, a truncated file must not be installed.
        Some(st) if xfsz(&st) => {
            return Err(ScriptletError::Failed {
                nevra: p.nevra.clone(),
                kind: s.kind.clone(),
                why: format!("wrote a file past the limit of {fsize} bytes (killed by SIGXFSZ)"),
                output,
            })
        }
        Some(st) => Err((
            match st.code() {
                Some(c) => format!("exited with status {c}"),
                None => format!("was killed ({st})"),
            },
            output,
        )),
    })
}

/// Bytes an unprivileged process may still write on the file system of
/// `dir`; `None` if it cannot be asked.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is NUL-terminated and `st` a struct statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// How a placed path looked when placed: a directory by its inode, mode
/// and owner (its change time moves whenever a later package adds to it),
/// anything else by inode and change time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamp {
    Dir {
        ino: u64,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Other {
        ino: u64,
        ctime: i64,
        nsec: i64,
    },
}

impl Stamp {
    fn of(md: &fs::Metadata) -> Stamp {
        if md.is_dir() {
            Stamp::Dir {
                ino: md.ino(),
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
            }
        } else {
            Stamp::Other {
                ino: md.ino(),
                ctime: md.ctime(),
                nsec: md.ctime_nsec(),
            }
        }
    }
}

/// Reads the scriptlet's output to its end, keeping the first
/// [`MAX_OUTPUT`] bytes; says whether more came.
fn collect(mut reader: std::io::PipeReader) -> (String, bool) {
    let mut kept = Vec::new();
    let _ = (&mut reader).take(MAX_OUTPUT).read_to_end(&mut kept);
    let more = std::io::copy(&mut reader, &mut std::io::sink()).unwrap_or(0) > 0;
    (String::from_utf8_lossy(&kept).into_owned(), more)
}

/// Per placed path below the root (`/etc/passwd`): its [`Stamp`].
type Snapshot = HashMap<String, Stamp>;

/// User and group names by id, from the tree's own databases.
struct Ids {
    users: BTreeMap<u32, String>,
    groups: BTreeMap<u32, String>,
}

impl Ids {
    fn read(dir: &Path) -> Ids {
        let db = |file: &str| -> BTreeMap<u32, String> {
            let text = fs::read_to_string(dir.join("etc").join(file)).unwrap_or_default();
            let mut m = BTreeMap::new();
            for l in text.lines() {
                let f: Vec<&str> = l.split(':').collect();
                if let (Some(name), Some(Ok(id))) = (f.first(), f.get(2).map(|i| i.parse())) {
                    m.entry(id).or_insert_with(|| name.to_string());
                }
            }
            m
        };
        Ids {
            users: db("passwd"),
            groups: db("group"),
        }
    }
    fn user(&self, id: u32) -> String {
        match id {
            0 => "root".into(),
            _ => self
                .users
                .get(&id)
                .cloned()
                .unwrap_or_else(|| id.to_string()),
        }
    }
    fn group(&self, id: u32) -> String {
        match id {
            0 => "root".into(),
            _ => self
                .groups
                .get(&id)
                .cloned()
                .unwrap_or_else(|| id.to_string()),
        }
    }
}

/// What [`import`] compares against.
struct ImportCx<'a> {
    snap: &'a Snapshot,
    ids: &'a Ids,
    /// [`Limits::file_size`]: a file written up to it was cut short.
    limit: u64,
    /// `SOURCE_DATE_EPOCH`: what a scriptlet wrote gets its time on disk
    /// clamped to it (so, written now, the epoch).
    epoch: u64,
}

/// Reads the directory back as a tree (see the module documentation).
fn import(
    store: &dyn Store,
    dir: &Path,
    orig: Option<&Tree>,
    rel: &str,
    cx: &ImportCx,
) -> Result<Hash, ScriptletError> {
    let snap = cx.snap;
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    names.sort();
    for os_name in names {
        let name = os_name.to_string_lossy().into_owned();
        let path = dir.join(&os_name);
        let r = format!("{rel}/{name}");
        let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let old = orig.and_then(|t| t.get(&name));
        // Mount points the sandbox made at the top (`/dev`, `/proc`).
        if rel.is_empty()
            && old.is_none()
            && matches!(name.as_str(), "dev" | "proc")
            && md.is_dir()
            && fs::read_dir(&path).map_err(io_err(&path))?.next().is_none()
        {
            continue;
        }
        seen.insert(name.clone());
        let untouched = snap.get(&r) == Some(&Stamp::of(&md));
        let entry = if md.is_dir() {
            let sub_orig = match old.map(|e| &e.node) {
                Some(Node::Directory { tree }) => Some(store.get_tree(tree)?),
                _ => None,
            };
            let tree = import(store, &path, sub_orig.as_ref(), &r, cx)?;
            match old {
                Some(e) if untouched && sub_orig.is_some() => Entry {
                    node: Node::Directory { tree },
                    ..e.clone()
                },
                _ => new_entry(&name, Node::Directory { tree }, &md, old, cx),
            }
        } else if let (true, Some(e)) = (untouched, old) {
            e.clone()
        } else if md.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            let node = Node::Symlink {
                target: target.to_string_lossy().into_owned(),
            };
            new_entry(&name, node, &md, old, cx)
        } else if md.is_file() {
            if md.len() >= cx.limit {
                return Err(ScriptletError::TooLarge {
                    path: r,
                    size: md.len(),
                    limit: cx.limit,
                });
            }
            let mut f = File::open(&path).map_err(io_err(&path))?;
            let blob = store.put_blob(&mut f)?;
            new_entry(&name, Node::file(&blob), &md, old, cx)
        } else {
            // Devices, FIFOs, sockets made by a scriptlet: not imported.
            continue;
        };
        entries.push(entry);
    }
    // Entries the export does not create (devices, FIFOs, sockets,
    // ghosts) stay as they were.
    if let Some(t) = orig {
        for e in t.entries() {
            let kept = !matches!(e.node, Node::Directory { .. } | Node::Symlink { .. })
                && !matches!(e.node, Node::File { blob: Some(_), .. });
            if kept && !seen.contains(&e.name) {
                entries.push(e.clone());
            }
        }
    }
    Ok(store.put_tree(&Tree::new(entries)?)?)
}

/// The entry for a new or changed path. Where the path was the same kind
/// of thing before, what the export could not apply and the scriptlet did
/// not change is kept: the owner and group while the disk still has the
/// export's root, the setuid/setgid bits while the other bits are as
/// exported, and the package's flags; a directory also keeps its extended
/// attributes (a rewritten file loses its capabilities, as with rpm).
/// Anything but a directory keeps its time on disk, clamped to the epoch.
fn new_entry(
    name: &str,
    node: Node,
    md: &fs::Metadata,
    old: Option<&Entry>,
    cx: &ImportCx,
) -> Entry {
    let ids = cx.ids;
    let mtime = match &node {
        Node::Directory { .. } => None,
        _ => Some((md.mtime().max(0) as u64).min(cx.epoch)),
    };
    let mut e = Entry {
        name: name.to_string(),
        node,
        mode: (md.mode() & 0o7777) as u16,
        owner: ids.user(md.uid()),
        group: ids.group(md.gid()),
        flags: Flags::default(),
        xattrs: BTreeMap::new(),
        mtime,
    };
    if let Some(o) =
        old.filter(|o| std::mem::discriminant(&o.node) == std::mem::discriminant(&e.node))
    {
        if md.mode() & 0o1777 == u32::from(o.mode & 0o1777) {
            e.mode = o.mode;
        }
        if md.uid() == 0 {
            e.owner = o.owner.clone();
        }
        if md.gid() == 0 {
            e.group = o.group.clone();
        }
        e.flags = Flags {
            hardlink: false,
            // A ghost the scriptlet created is a real file now.
            ghost: false,
            ..o.flags
        };
        if matches!(e.node, Node::Directory { .. }) {
            e.xattrs = o.xattrs.clone();
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, provides: &[&str], requires: &[(&str, bool)]) -> Package {
        Package {
            nevra: format!("{name}-1-1.noarch"),
            deps: Deps {
                name: name.into(),
                provides: provides.iter().map(|s| s.to_string()).collect(),
                requires: requires.iter().map(|(r, p)| (r.to_string(), *p)).collect(),
                files: vec![format!("/usr/bin/{name}")],
            },
            scripts: vec![],
            evr: None,
            triggers: vec![],
        }
    }

    #[test]
    fn dependency_order_with_cycles_broken_at_plain_requires() {
        let p = [
            pkg("app", &[], &[("libfoo", false), ("/usr/bin/sh", true)]),
            pkg("foo", &["libfoo"], &[("sh", false)]),
            pkg("sh", &[], &[("app", false)]),
        ];
        // Strictly nothing is ready (a cycle); dropping plain requires,
        // foo (only plain ones) goes first, then sh, then app, whose
        // prerequisite sh is then installed.
        assert_eq!(order(&p), [1, 2, 0]);
        // Without a cycle: providers first.
        let q = [pkg("b", &[], &[("a", false)]), pkg("a", &[], &[])];
        assert_eq!(order(&q), [1, 0]);
    }
}

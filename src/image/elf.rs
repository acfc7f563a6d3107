//! What a program needs to run, found in an OS tree the way the dynamic
//! loader would find it there (dracut's `inst_binary`, without running
//! `ldd` on the build host): the program's file and the symlinks leading to
//! it, its `#!` interpreter or ELF `PT_INTERP`, and each `DT_NEEDED`
//! library, transitively, searched in `DT_RPATH`/`DT_RUNPATH` (with
//! `$ORIGIN`), the tree's `ld.so.conf` directories and the default
//! directories for the ELF class, skipping candidates of another class or
//! machine as `ld.so` does.
//!
//! The result is the subset of the tree to copy: files with their tree
//! modes, every symlink on the way (so `/bin/kmod`, `/lib64/ld-linux...` and
//! each soname path exist as in the tree) and the directories above them.
//! ELF headers are read with `goblin`, which finds the dynamic section
//! through the program headers as the loader does (stripped section tables
//! do not matter).

use crate::store::{Entry, Node, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Read;
use std::rc::Rc;

/// What went wrong, naming the file and the program that needed it.
pub use super::Error;

/// Symlinks followed while resolving one path before giving up (`ELOOP`;
/// Linux allows 40).
const MAX_LINKS: usize = 40;

/// What a file in the tree is, as far as `execve` and `ld.so` care.
#[derive(Clone, Debug)]
enum Kind {
    Elf(Rc<Object>),
    /// A `#!` script and its interpreter's path.
    Script(String),
    Other,
}

/// The dynamic-linking facts of one ELF file.
#[derive(Debug)]
struct Object {
    is_64: bool,
    machine: u16,
    interp: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn classify(bytes: &[u8]) -> Result<Kind, Error> {
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        return match line.split_whitespace().next() {
            Some(i) if i.starts_with('/') => Ok(Kind::Script(i.to_string())),
            _ => Err(format!(
                "its `#!` line names no absolute interpreter (`#!{}`)",
                line.trim()
            )
            .into()),
        };
    }
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(Kind::Other);
    }
    let elf =
        goblin::elf::Elf::parse(bytes).map_err(|e| format!("not a readable ELF file: {e}"))?;
    let split = |v: &[&str]| -> Vec<String> {
        v.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Kind::Elf(Rc::new(Object {
        is_64: elf.is_64,
        machine: elf.header.e_machine,
        interp: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
    })))
}

/// The library directories `ld.so` searches last, by ELF class: the
/// Red Hat (`lib64`) and Debian (multiarch) layouts, then the plain ones.
fn default_dirs(is_64: bool) -> &'static [&'static str] {
    if is_64 {
        &[
            "/lib64",
            "/usr/lib64",
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib",
            "/usr/lib",
        ]
    } else {
        &[
            "/lib",
            "/usr/lib",
            "/lib/i386-linux-gnu",
            "/usr/lib/i386-linux-gnu",
        ]
    }
}

/// The outcome of resolving a path in the tree.
enum Lookup {
    /// The final path (no symlinks in it) and the entries on the way:
    /// directories and symlinks, by relative path.
    Found(String, Vec<(String, Entry)>),
    Missing,
    /// A symlink on the way points at nothing: (link, target).
    Dangling(String, String),
}

/// One tree and the closure collected from it so far.
pub struct Closure<'a> {
    store: &'a dyn Store,
    tree: &'a BTreeMap<String, Entry>,
    /// What the tree calls itself in errors ("the OS tree of cernvm-5.0").
    label: String,
    /// Directories from `/etc/ld.so.conf` and `/etc/ld.so.conf.d/*.conf`.
    conf_dirs: Vec<String>,
    kinds: HashMap<String, Kind>,
    done: BTreeSet<String>,
    out: BTreeMap<String, Entry>,
}

impl<'a> Closure<'a> {
    /// A closure over `tree` (relative paths, as [`super::paths::walk`]
    /// gives them), reading file contents from `store`.
    pub fn new(
        store: &'a dyn Store,
        tree: &'a BTreeMap<String, Entry>,
        label: &str,
    ) -> Result<Closure<'a>, Error> {
        let mut c = Closure {
            store,
            tree,
            label: label.to_string(),
            conf_dirs: Vec::new(),
            kinds: HashMap::new(),
            done: BTreeSet::new(),
            out: BTreeMap::new(),
        };
        let mut confs = vec!["/etc/ld.so.conf".to_string()];
        confs.extend(
            tree.keys()
                .filter(|p| {
                    p.strip_prefix("etc/ld.so.conf.d/")
                        .is_some_and(|n| !n.contains('/') && n.ends_with(".conf"))
                })
                .map(|p| format!("/{p}")),
        );
        for conf in confs {
            let Lookup::Found(real, _) = c.resolve(&conf)? else {
                continue;
            };
            let Some(bytes) = c.read(&real)? else {
                continue;
            };
            for line in String::from_utf8_lossy(&bytes).lines() {
                let line = line.split('#').next().unwrap_or_default().trim();
                // `include` is covered by reading ld.so.conf.d; `hwcap`
                // lines name no directory.
                if line.starts_with("include") || line.starts_with("hwcap") {
                    continue;
                }
                for dir in line.split([' ', '\t', ':', ',']) {
                    // `DIR=TYPE` (old libc5 syntax) still names DIR.
                    let dir = dir.split('=').next().unwrap_or_default();
                    if dir.starts_with('/') && !c.conf_dirs.iter().any(|d| d == dir) {
                        c.conf_dirs.push(dir.to_string());
                    }
                }
            }
        }
        Ok(c)
    }

    /// Adds the program at absolute `path` and everything it needs.
    pub fn add(&mut self, path: &str) -> Result<(), Error> {
        self.add_program(path, path, None)
    }

    /// The entries to copy, by relative path: regular files, the symlinks
    /// leading to them and the directories above them, as in the tree.
    pub fn into_entries(self) -> BTreeMap<String, Entry> {
        self.out
    }

    /// `path` must exist: a listed binary or an interpreter. `root` is the
    /// listed binary it is for, `by` what names it (for errors).
    fn add_program(&mut self, path: &str, root: &str, by: Option<&str>) -> Result<(), Error> {
        let what = match by {
            None => format!("binary `{path}`"),
            Some(by) if by == root => format!("interpreter `{path}` of `{root}`"),
            Some(by) => format!("interpreter `{path}` of `{by}` (for `{root}`)"),
        };
        if !path.starts_with('/') {
            return Err(format!("{what}: not an absolute path").into());
        }
        let real = match self.resolve(path)? {
            Lookup::Found(real, trail) => {
                self.out.extend(trail);
                real
            }
            Lookup::Missing => return Err(format!("{what} is not in {}", self.label).into()),
            Lookup::Dangling(link, target) => {
                return Err(format!(
                    "{what}: /{link} -> {target} in {} points at nothing",
                    self.label
                )
                .into())
            }
        };
        let kind = self
            .kind(&real)?
            .ok_or_else(|| format!("{what}: /{real} in {} is not a regular file", self.label))?;
        if !self.done.insert(real.clone()) {
            return Ok(());
        }
        self.copy(&real);
        match kind {
            Kind::Script(interp) => self.add_program(&interp, root, Some(path)),
            Kind::Elf(obj) => {
                if let Some(interp) = &obj.interp {
                    self.add_program(interp, root, Some(path))?;
                }
                self.add_needed(&obj, &real, path, root, &[])
            }
            Kind::Other => Err(format!(
                "{what}: /{real} in {} is neither an ELF file nor a `#!` script",
                self.label
            )
            .into()),
        }
    }

    /// Finds and adds each library `obj` (at `real`, reached as `path`)
    /// needs. `inherited` is the `DT_RPATH` of the objects that loaded it,
    /// which `ld.so` also searches when `obj` has no `DT_RUNPATH`.
    fn add_needed(
        &mut self,
        obj: &Object,
        real: &str,
        path: &str,
        root: &str,
        inherited: &[String],
    ) -> Result<(), Error> {
        let origin = |p: &str| p.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let expand = |dirs: &[String], origin: &str| -> Vec<String> {
            dirs.iter()
                .map(|d| {
                    d.replace("${ORIGIN}", origin)
                        .replace("$ORIGIN", origin)
                        .replace("${LIB}", if obj.is_64 { "lib64" } else { "lib" })
                        .replace("$LIB", if obj.is_64 { "lib64" } else { "lib" })
                })
                .collect()
        };
        // $ORIGIN is the directory the object was found in (the program's
        // real directory, as /proc/self/exe gives it).
        let here = if path == root {
            format!("/{}", origin(real))
        } else {
            origin(path)
        };
        let mut rpath = Vec::new();
        if obj.runpath.is_empty() {
            rpath = expand(&obj.rpath, &here);
            rpath.extend(inherited.iter().cloned());
        }
        let mut dirs = rpath.clone();
        dirs.extend(expand(&obj.runpath, &here));
        let own = dirs.len();
        dirs.extend(self.conf_dirs.iter().cloned());
        let conf = dirs.len();
        dirs.extend(default_dirs(obj.is_64).iter().map(|s| s.to_string()));
        // The first occurrence of a directory is the one searched.
        let mut seen = BTreeSet::new();
        let first: Vec<bool> = dirs.iter().map(|d| seen.insert(d.clone())).collect();
        let searched: Vec<(usize, &String)> =
            dirs.iter().enumerate().filter(|(i, _)| first[*i]).collect();

        for name in &obj.needed {
            let found = if name.contains('/') {
                self.candidate(name, obj)?
            } else {
                let mut found = None;
                for (i, dir) in &searched {
                    let cand = format!("{}/{name}", dir.trim_end_matches('/'));
                    if let Some(f) = self.candidate(&cand, obj)? {
                        if (own..conf).contains(i) {
                            self.add_cache(&cand, obj.is_64)?;
                        }
                        found = Some(f);
                        break;
                    }
                }
                found
            };
            let Some((lib_path, lib_real, lib, trail)) = found else {
                let by = if path == root {
                    format!("`{root}`")
                } else {
                    format!("`{path}` (for `{root}`)")
                };
                return Err(format!(
                    "`{name}` needed by {by} not found in {} in {}",
                    if name.contains('/') {
                        name.clone()
                    } else {
                        let d: Vec<&str> = searched.iter().map(|(_, d)| d.as_str()).collect();
                        d.join(", ")
                    },
                    self.label
                )
                .into());
            };
            self.out.extend(trail);
            if self.done.insert(lib_real.clone()) {
                self.copy(&lib_real);
                self.add_needed(&lib, &lib_real, &lib_path, root, &rpath)?;
            }
        }
        Ok(())
    }

    /// Makes `lib` (found in a directory from `ld.so.conf`, not a default
    /// one) findable by the initrd's loader, which searches such directories
    /// only through `/etc/ld.so.cache`: the tree's cache if it has one;
    /// else (trees assembled without running `ldconfig`, as cvmbuild's are,
    /// since scriptlets do not run) a symlink to `lib` in the first default
    /// directory of its class that the tree has and where that name is free.
    fn add_cache(&mut self, lib: &str, is_64: bool) -> Result<(), Error> {
        if let Lookup::Found(real, trail) = self.resolve("/etc/ld.so.cache")? {
            if self.kind(&real)?.is_some() {
                self.out.extend(trail);
                self.copy(&real);
                return Ok(());
            }
        }
        let name = lib.rsplit('/').next().unwrap_or(lib);
        for dir in default_dirs(is_64) {
            let Lookup::Found(real_dir, trail) = self.resolve(dir)? else {
                continue;
            };
            let is_dir = real_dir.is_empty()
                || matches!(
                    self.tree.get(&real_dir).map(|e| &e.node),
                    Some(Node::Directory { .. })
                );
            let link = format!("{real_dir}/{name}");
            if !is_dir || self.tree.contains_key(&link) || self.out.contains_key(&link) {
                continue;
            }
            self.out.extend(trail);
            self.out.insert(
                link,
                Entry::root_owned(
                    name,
                    Node::Symlink {
                        target: lib.to_string(),
                    },
                    0o777,
                ),
            );
            return Ok(());
        }
        Err(format!(
            "{lib} is in a directory from /etc/ld.so.conf, which the loader searches only \
             through /etc/ld.so.cache; {} has no cache and no default library directory \
             where a link to it could go",
            self.label
        )
        .into())
    }

    /// `cand` if it is an ELF object `ld.so` would load for `by`: same
    /// class and machine. Returns the path, its real path, the object and
    /// the entries leading to it.
    #[allow(clippy::type_complexity)]
    fn candidate(
        &mut self,
        cand: &str,
        by: &Object,
    ) -> Result<Option<(String, String, Rc<Object>, Vec<(String, Entry)>)>, Error> {
        let Lookup::Found(real, trail) = self.resolve(cand)? else {
            return Ok(None);
        };
        let Some(Kind::Elf(obj)) = self.kind(&real)? else {
            return Ok(None);
        };
        if obj.is_64 != by.is_64 || obj.machine != by.machine {
            return Ok(None);
        }
        Ok(Some((cand.to_string(), real, obj, trail)))
    }

    /// What the regular file at `real` is (cached); `None` if it is not a
    /// regular file with content.
    fn kind(&mut self, real: &str) -> Result<Option<Kind>, Error> {
        if let Some(k) = self.kinds.get(real) {
            return Ok(Some(k.clone()));
        }
        let Some(bytes) = self.read(real)? else {
            return Ok(None);
        };
        let k = classify(&bytes).map_err(|e| format!("/{real} in {}: {e}", self.label))?;
        self.kinds.insert(real.to_string(), k.clone());
        Ok(Some(k))
    }

    fn read(&self, real: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(Entry {
            node: Node::File { blob: Some(h), .. },
            ..
        }) = self.tree.get(real)
        else {
            return Ok(None);
        };
        let mut b = Vec::new();
        self.store.open_blob(h)?.read_to_end(&mut b)?;
        Ok(Some(b))
    }

    fn copy(&mut self, real: &str) {
        self.out.insert(real.to_string(), self.tree[real].clone());
    }

    /// Resolves absolute `path` in the tree, following every symlink as
    /// the kernel does (`..` after a symlink is relative to its target).
    fn resolve(&self, path: &str) -> Result<Lookup, Error> {
        let mut todo: VecDeque<String> = path.split('/').map(str::to_string).collect();
        let mut cur = String::new();
        let mut trail = Vec::new();
        let mut links = 0;
        let mut via: Option<(String, String)> = None;
        let missing = |via: Option<(String, String)>| match via {
            Some((l, t)) => Lookup::Dangling(l, t),
            None => Lookup::Missing,
        };
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    cur = cur.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                    continue;
                }
                _ => {}
            }
            let p = if cur.is_empty() {
                part
            } else {
                format!("{cur}/{part}")
            };
            let Some(e) = self.tree.get(&p) else {
                return Ok(missing(via));
            };
            match &e.node {
                Node::Directory { .. } => {
                    trail.push((p.clone(), e.clone()));
                    cur = p;
                }
                Node::Symlink { target } => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(format!(
                            "`{path}` in {}: more than {MAX_LINKS} symlinks (a loop at /{p} -> {target})",
                            self.label
                        )
                        .into());
                    }
                    trail.push((p.clone(), e.clone()));
                    via = Some((p.clone(), target.clone()));
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    for t in target.split('/').rev() {
                        todo.push_front(t.to_string());
                    }
                }
                _ if todo.iter().all(|t| t.is_empty() || t == ".") => cur = p,
                // A file where a directory is needed.
                _ => return Ok(missing(via)),
            }
        }
        Ok(Lookup::Found(cur, trail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemStore, Tree};

    const X86_64: u16 = 62;
    const I386: u16 = 3;

    /// A minimal little-endian ELF as the loader reads it: a `PT_LOAD`
    /// covering the file (so addresses are offsets), `PT_INTERP` and
    /// `PT_DYNAMIC` with `DT_NEEDED`, `DT_RUNPATH` and the string table.
    fn elf(
        is_64: bool,
        machine: u16,
        interp: Option<&str>,
        needed: &[&str],
        runpath: Option<&str>,
    ) -> Vec<u8> {
        let (eh, ph, dy) = if is_64 { (64, 56, 16) } else { (52, 32, 8) };
        let phnum = 2 + usize::from(interp.is_some());
        let off_str = eh + phnum * ph;
        let mut strtab = vec![0u8];
        let mut add = |s: &str| {
            let at = strtab.len();
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            at
        };
        let interp_at = interp.map(&mut add);
        let mut dyns: Vec<(u64, u64)> = needed.iter().map(|n| (1, add(n) as u64)).collect();
        if let Some(r) = runpath {
            dyns.push((29, add(r) as u64));
        }
        let off_dyn = (off_str + strtab.len()).next_multiple_of(8);
        dyns.extend([(5, off_str as u64), (10, strtab.len() as u64), (0, 0)]);
        let total = off_dyn + dyns.len() * dy;

        let mut v = Vec::new();
        let word = |v: &mut Vec<u8>, x: u64| {
            if is_64 {
                v.extend_from_slice(&x.to_le_bytes())
            } else {
                v.extend_from_slice(&(x as u32).to_le_bytes())
            }
        };
        v.extend_from_slice(b"\x7fELF");
        v.extend_from_slice(&[if is_64 { 2 } else { 1 }, 1, 1, 0]);
        v.resize(16, 0);
        v.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
        v.extend_from_slice(&machine.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        word(&mut v, 0); // entry
        word(&mut v, eh as u64); // phoff
        word(&mut v, 0); // shoff
        v.extend_from_slice(&0u32.to_le_bytes());
        for h in [eh, ph, phnum, if is_64 { 64 } else { 40 }, 0, 0] {
            v.extend_from_slice(&(h as u16).to_le_bytes());
        }
        let phdr = |v: &mut Vec<u8>, ty: u32, off: usize, size: usize| {
            v.extend_from_slice(&ty.to_le_bytes());
            if is_64 {
                v.extend_from_slice(&4u32.to_le_bytes()); // flags
            }
            for x in [off, off, off, size, size] {
                word(v, x as u64);
            }
            if !is_64 {
                v.extend_from_slice(&4u32.to_le_bytes());
            }
            word(v, 8);
        };
        phdr(&mut v, 1, 0, total); // PT_LOAD
        if let (Some(i), Some(at)) = (interp, interp_at) {
            phdr(&mut v, 3, off_str + at, i.len() + 1); // PT_INTERP
        }
        phdr(&mut v, 2, off_dyn, dyns.len() * dy); // PT_DYNAMIC
        assert_eq!(v.len(), off_str);
        v.extend_from_slice(&strtab);
        v.resize(off_dyn, 0);
        for (tag, val) in dyns {
            word(&mut v, tag);
            word(&mut v, val);
        }
        v
    }

    enum N<'a> {
        F(&'a [u8], u16),
        L(&'a str),
        D,
    }

    fn tree(store: &MemStore, items: &[(&str, N)]) -> BTreeMap<String, Entry> {
        let entry = |name: &str, node, mode| {
            Entry::root_owned(name.rsplit('/').next().unwrap(), node, mode)
        };
        let mut flat = BTreeMap::new();
        for (path, n) in items {
            let (node, mode) = match n {
                N::F(b, mode) => {
                    let r = store.put_blob(&mut &b[..]).unwrap();
                    (
                        Node::File {
                            size: r.size,
                            blob: Some(r.hash),
                        },
                        *mode,
                    )
                }
                N::L(t) => (
                    Node::Symlink {
                        target: t.to_string(),
                    },
                    0o777,
                ),
                N::D => (
                    Node::Directory {
                        tree: Tree::default().hash(),
                    },
                    0o755,
                ),
            };
            // Parents as the walk of a real tree would list them.
            let mut parent = String::new();
            for p in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                parent = if parent.is_empty() {
                    p.to_string()
                } else {
                    format!("{parent}/{p}")
                };
                flat.entry(parent.clone()).or_insert_with(|| {
                    entry(
                        &parent,
                        Node::Directory {
                            tree: Tree::default().hash(),
                        },
                        0o755,
                    )
                });
            }
            flat.insert(path.to_string(), entry(path, node, mode));
        }
        flat
    }

    fn closure(
        flat: &BTreeMap<String, Entry>,
        store: &MemStore,
        bins: &[&str],
    ) -> Result<BTreeMap<String, Entry>, Error> {
        let mut c = Closure::new(store, flat, "the OS tree of t-1")?;
        for b in bins {
            c.add(b)?;
        }
        Ok(c.into_entries())
    }

    fn keys(m: &BTreeMap<String, Entry>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn follows_symlinks_interp_runpath_and_skips_other_classes() {
        let s = MemStore::new();
        let ld = elf(true, X86_64, None, &[], None);
        let prog = elf(
            true,
            X86_64,
            Some("/lib64/ld.so"),
            &["libfoo.so.1", "libbaz.so.1", "libqux.so"],
            None,
        );
        let foo = elf(
            true,
            X86_64,
            None,
            &["libbar.so.0"],
            Some("$ORIGIN/private"),
        );
        let bar = elf(true, X86_64, None, &[], None);
        let baz32 = elf(false, I386, None, &[], None);
        let baz_arm = elf(true, 183, None, &[], None);
        let baz = elf(true, X86_64, None, &[], None);
        let qux = elf(true, X86_64, None, &["libfoo.so.1"], None);
        let flat = tree(
            &s,
            &[
                ("bin", N::L("usr/bin")),
                ("lib64", N::L("usr/lib64")),
                ("usr/bin/prog", N::F(&prog, 0o755)),
                ("usr/bin/unrelated", N::F(&bar, 0o755)),
                ("usr/lib64/ld.so", N::F(&ld, 0o755)),
                ("usr/lib64/libfoo.so.1", N::L("libfoo.so.1.2")),
                ("usr/lib64/libfoo.so.1.2", N::F(&foo, 0o755)),
                ("usr/lib64/private/libbar.so.0", N::F(&bar, 0o644)),
                ("usr/lib64/libbaz.so.1", N::F(&baz32, 0o755)),
                (
                    "usr/lib/x86_64-linux-gnu/libbaz.so.1",
                    N::F(&baz_arm, 0o755),
                ),
                ("usr/lib/libbaz.so.1", N::F(&baz, 0o755)),
                (
                    "etc/ld.so.conf",
                    N::F(b"include /etc/ld.so.conf.d/*.conf\n", 0o644),
                ),
                (
                    "etc/ld.so.conf.d/opt.conf",
                    N::F(b"# extra\n/opt/lib\n", 0o644),
                ),
                ("opt/lib/libqux.so", N::F(&qux, 0o644)),
                ("etc/ld.so.cache", N::F(b"ld.so-1.7.0", 0o644)),
                ("etc/motd", N::D),
            ],
        );
        let out = closure(&flat, &s, &["/bin/prog"]).unwrap();
        assert_eq!(
            keys(&out),
            [
                "bin",
                "etc",
                "etc/ld.so.cache",
                "lib64",
                "opt",
                "opt/lib",
                "opt/lib/libqux.so",
                "usr",
                "usr/bin",
                "usr/bin/prog",
                "usr/lib",
                "usr/lib/libbaz.so.1",
                "usr/lib64",
                "usr/lib64/ld.so",
                "usr/lib64/libfoo.so.1",
                "usr/lib64/libfoo.so.1.2",
                "usr/lib64/private",
                "usr/lib64/private/libbar.so.0",
            ]
        );
        // Entries are the tree's, modes included.
        assert_eq!(
            out["usr/lib64/private/libbar.so.0"],
            flat["usr/lib64/private/libbar.so.0"]
        );
        assert_eq!(out["bin"], flat["bin"]);
    }

    #[test]
    fn scripts_bring_their_interpreter() {
        let s = MemStore::new();
        let sh = elf(true, X86_64, None, &[], None);
        let flat = tree(
            &s,
            &[
                ("bin", N::L("usr/bin")),
                ("usr/bin/sh", N::L("dash")),
                ("usr/bin/dash", N::F(&sh, 0o755)),
                ("usr/sbin/tool", N::F(b"#! /bin/sh -e\necho hi\n", 0o755)),
            ],
        );
        let out = closure(&flat, &s, &["/usr/sbin/tool"]).unwrap();
        assert_eq!(
            keys(&out),
            [
                "bin",
                "usr",
                "usr/bin",
                "usr/bin/dash",
                "usr/bin/sh",
                "usr/sbin",
                "usr/sbin/tool"
            ]
        );
    }

    #[test]
    fn errors_name_the_file_and_the_program() {
        let s = MemStore::new();
        let prog = elf(true, X86_64, Some("/lib64/ld.so"), &["libnope.so.3"], None);
        let ld = elf(true, X86_64, None, &[], None);
        let uses_lib = elf(true, X86_64, None, &["libdeep.so"], None);
        let deep = elf(true, X86_64, None, &["libgone.so.9"], None);
        let noint = elf(true, X86_64, Some("/lib/ld-musl.so"), &[], None);
        let flat = tree(
            &s,
            &[
                ("lib64/ld.so", N::F(&ld, 0o755)),
                ("usr/bin/prog", N::F(&prog, 0o755)),
                ("usr/bin/indirect", N::F(&uses_lib, 0o755)),
                ("usr/lib64/libdeep.so", N::F(&deep, 0o755)),
                ("usr/bin/musl", N::F(&noint, 0o755)),
                ("usr/bin/dangling", N::L("../libexec/gone")),
                ("usr/bin/loop", N::L("loop2")),
                ("usr/bin/loop2", N::L("loop")),
                ("usr/bin/text", N::F(b"just text\n", 0o755)),
                ("usr/bin/badscript", N::F(b"#!sh\n", 0o755)),
                ("usr/bin/dir", N::D),
            ],
        );
        let err = |b: &str| closure(&flat, &s, &[b]).unwrap_err().to_string();
        assert_eq!(
            err("/usr/bin/x"),
            "binary `/usr/bin/x` is not in the OS tree of t-1"
        );
        assert_eq!(
            err("/usr/bin/prog"),
            "`libnope.so.3` needed by `/usr/bin/prog` not found in /lib64, /usr/lib64, \
             /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib, /usr/lib in the OS tree of t-1"
        );
        let e = err("/usr/bin/indirect");
        assert!(
            e.starts_with("`libgone.so.9` needed by `/usr/lib64/libdeep.so` (for `/usr/bin/indirect`) not found in"),
            "{e}"
        );
        assert_eq!(
            err("/usr/bin/musl"),
            "interpreter `/lib/ld-musl.so` of `/usr/bin/musl` is not in the OS tree of t-1"
        );
        assert_eq!(
            err("/usr/bin/dangling"),
            "binary `/usr/bin/dangling`: /usr/bin/dangling -> ../libexec/gone in the OS tree of t-1 points at nothing"
        );
        assert!(
            err("/usr/bin/loop").contains("more than 40 symlinks"),
            "{}",
            err("/usr/bin/loop")
        );
        assert_eq!(
            err("/usr/bin/text"),
            "binary `/usr/bin/text`: /usr/bin/text in the OS tree of t-1 is neither an ELF file nor a `#!` script"
        );
        assert!(err("/usr/bin/badscript").contains("names no absolute interpreter"));
        assert!(err("/usr/bin/dir").contains("is not a regular file"));
        assert!(err("usr/bin/prog").contains("not an absolute path"));

        // A library only ld.so.conf knows about: the loader finds it only
        // through a cache; without one, a link in a default directory.
        let flat = tree(
            &s,
            &[
                ("lib64/ld.so", N::F(&ld, 0o755)),
                ("usr/bin/indirect", N::F(&uses_lib, 0o755)),
                ("etc/ld.so.conf", N::F(b"/opt/deep\n", 0o644)),
                ("opt/deep/libdeep.so", N::F(&ld, 0o755)),
            ],
        );
        let out = closure(&flat, &s, &["/usr/bin/indirect"]).unwrap();
        assert_eq!(
            out["lib64/libdeep.so"].node,
            Node::Symlink {
                target: "/opt/deep/libdeep.so".into()
            }
        );
        assert!(out.contains_key("opt/deep/libdeep.so"));
        // A name taken in every default directory the tree has: an error.
        let mut taken = flat.clone();
        taken.extend(tree(&s, &[("lib64/libdeep.so", N::F(b"other", 0o644))]));
        taken.remove("lib64/ld.so");
        let e = closure(&taken, &s, &["/usr/bin/indirect"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/opt/deep/libdeep.so is in a directory from /etc/ld.so.conf, which the loader \
             searches only through /etc/ld.so.cache; the OS tree of t-1 has no cache and no \
             default library directory where a link to it could go"
        );
    }

    #[test]
    fn same_input_same_closure() {
        let s = MemStore::new();
        let a = elf(true, X86_64, None, &["liba.so"], None);
        let flat = tree(
            &s,
            &[
                ("usr/bin/a", N::F(&a, 0o755)),
                ("usr/lib64/liba.so", N::F(&a[..], 0o644)),
            ],
        );
        // liba.so needs itself: the loop in the graph ends.
        let one = closure(&flat, &s, &["/usr/bin/a", "/usr/bin/a"]).unwrap();
        assert_eq!(one, closure(&flat, &s, &["/usr/bin/a"]).unwrap());
        assert_eq!(
            keys(&one),
            [
                "usr",
                "usr/bin",
                "usr/bin/a",
                "usr/lib64",
                "usr/lib64/liba.so"
            ]
        );
    }
}

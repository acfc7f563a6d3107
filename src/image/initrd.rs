//! The initial ramdisk's contents: package trees, the trimmed kernel
//! modules, files and the init script from the spec, and the device nodes
//! the kernel needs before `/dev` is mounted, as cpio members.

use super::cpio::{Kind, Member, Members};
use super::paths;
use crate::store::{Hash, Node, Store};
use std::collections::VecDeque;
use std::io::Read;

/// What went wrong, naming the path.
pub use super::Error;

/// Directories every initrd has: mount points for the pseudo file systems
/// and somewhere to put the new root.
const DIRS: &[&str] = &[
    "dev", "proc", "sys", "run", "tmp", "mnt", "root", "etc", "bin", "sbin",
];

/// Builds the initrd's members, later layers replacing earlier ones at the
/// same path: `trees` in order (the binaries from the OS tree, packages,
/// then the kernel's modules), then `files` (path, mode, content), then
/// `/init` (0755) and the devices. Each layer is unpacked onto the ones
/// before as onto a file system (see [`place`]).
pub fn members(
    store: &dyn Store,
    trees: &[(String, Hash)],
    files: &[(String, u32, Vec<u8>)],
    init: Vec<u8>,
) -> Result<Members, Error> {
    let mut m = Members::new();
    for d in DIRS {
        place(&mut m, "initrd", d, 0o755, Kind::Directory)?;
    }
    for (label, tree) in trees {
        for (path, e) in paths::walk(store, tree)? {
            let kind = match e.node {
                Node::Directory { .. } => Kind::Directory,
                Node::File { blob: Some(h), .. } => {
                    let mut b = Vec::new();
                    store.open_blob(&h)?.read_to_end(&mut b)?;
                    Kind::File(b)
                }
                // Ghosts have no bytes; the running system creates them.
                Node::File { blob: None, .. } => continue,
                Node::Symlink { target } => Kind::Symlink(target),
                Node::CharDevice { major, minor } => Kind::CharDevice { major, minor },
                _ => {
                    return Err(format!(
                    "{label}: /{path} is a block device, fifo or socket; an initrd cannot hold it"
                )
                    .into())
                }
            };
            place(&mut m, label, &path, u32::from(e.mode), kind)?;
        }
    }
    for (dest, mode, bytes) in files {
        let rel = dest.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!("initrd file `{dest}`: not a clean absolute path").into());
        }
        let label = format!("initrd file `{dest}`");
        place(&mut m, &label, rel, *mode, Kind::File(bytes.clone()))?;
    }
    place(&mut m, "initrd", "init", 0o755, Kind::File(init))?;
    let console = Kind::CharDevice { major: 5, minor: 1 };
    place(&mut m, "initrd", "dev/console", 0o600, console)?;
    let null = Kind::CharDevice { major: 1, minor: 3 };
    place(&mut m, "initrd", "dev/null", 0o666, null)?;
    Ok(m)
}

/// Symlinks followed while placing one path (Linux's `ELOOP` limit).
const MAX_LINKS: usize = 40;

/// Puts `path` into `m` as unpacking onto a file system would, so layers
/// from trees with different layouts merge: parents are resolved through
/// the symlinks already in `m` (with the OS tree's `/lib -> usr/lib`, a
/// kernel's `lib/modules` lands in `usr/lib/modules`) and made 0755 where
/// missing; a directory arriving where a directory or a symlink is keeps
/// what is there (taking the new mode on a directory); anything else
/// replaces the member, except a directory that has members under it,
/// which is an error (silently hiding them would break the boot).
fn place(m: &mut Members, label: &str, path: &str, mode: u32, kind: Kind) -> Result<(), Error> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let mut todo: VecDeque<String> = parent.split('/').map(str::to_string).collect();
    let mut dir = String::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                dir = dir.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                continue;
            }
            _ => {}
        }
        let p = join(&dir, &part);
        match m.get(&p).map(|x| &x.kind) {
            Some(Kind::Directory) => dir = p,
            Some(Kind::Symlink(target)) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!(
                        "{label}: /{path}: more than {MAX_LINKS} symlinks on the way (a loop at /{p} -> {target})"
                    )
                    .into());
                }
                if target.starts_with('/') {
                    dir.clear();
                }
                for t in target.clone().split('/').rev() {
                    todo.push_front(t.to_string());
                }
            }
            None => {
                m.insert(
                    p.clone(),
                    Member {
                        mode: 0o755,
                        kind: Kind::Directory,
                    },
                );
                dir = p;
            }
            Some(_) => {
                return Err(
                    format!("{label}: /{path}: /{p} is not a directory in the initrd").into(),
                )
            }
        }
    }
    let real = join(&dir, name);
    let below = format!("{real}/");
    let populated = m
        .range(below.clone()..)
        .next()
        .is_some_and(|(p, _)| p.starts_with(&below));
    match (m.get(&real).map(|o| &o.kind), &kind) {
        (Some(Kind::Symlink(_)), Kind::Directory) => {}
        (Some(Kind::Directory), k) if populated && *k != Kind::Directory => {
            return Err(format!(
                "{label}: /{path} is not a directory, but earlier layers put files under /{real}"
            )
            .into())
        }
        _ => {
            m.insert(real, Member { mode, kind });
        }
    }
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(m: &Members) -> Vec<(&str, &Kind)> {
        m.iter().map(|(p, x)| (p.as_str(), &x.kind)).collect()
    }

    #[test]
    fn layers_merge_through_directory_symlinks() {
        let mut m = Members::new();
        let file = |b: &[u8]| Kind::File(b.to_vec());
        // The OS tree's merged layout first, then a package and kernel
        // modules in the split layout.
        place(&mut m, "l", "lib", 0o755, Kind::Directory).unwrap();
        place(
            &mut m,
            "bins",
            "lib",
            0o777,
            Kind::Symlink("usr/lib".into()),
        )
        .unwrap();
        place(&mut m, "bins", "usr/lib/libc.so", 0o755, file(b"c")).unwrap();
        place(&mut m, "kernel", "lib", 0o700, Kind::Directory).unwrap();
        place(&mut m, "kernel", "lib/modules/6.1/x.ko", 0o644, file(b"k")).unwrap();
        place(&mut m, "pkg", "usr/lib", 0o750, Kind::Directory).unwrap();
        place(&mut m, "abs", "/lib/../lib/a", 0o644, file(b"a")).unwrap();
        assert_eq!(
            kinds(&m),
            [
                ("lib", &Kind::Symlink("usr/lib".into())),
                ("usr", &Kind::Directory),
                ("usr/lib", &Kind::Directory),
                ("usr/lib/a", &file(b"a")),
                ("usr/lib/libc.so", &file(b"c")),
                ("usr/lib/modules", &Kind::Directory),
                ("usr/lib/modules/6.1", &Kind::Directory),
                ("usr/lib/modules/6.1/x.ko", &file(b"k")),
            ]
        );
        assert_eq!(m["usr/lib"].mode, 0o750);
    }

    #[test]
    fn a_populated_directory_is_not_replaced() {
        let mut m = Members::new();
        place(&mut m, "busybox", "bin/sh", 0o755, Kind::File(vec![])).unwrap();
        let err = place(
            &mut m,
            "binaries",
            "bin",
            0o777,
            Kind::Symlink("usr/bin".into()),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "binaries: /bin is not a directory, but earlier layers put files under /bin"
        );
        let err = place(&mut m, "x", "bin/sh/y", 0o644, Kind::File(vec![]));
        assert_eq!(
            err.unwrap_err().to_string(),
            "x: /bin/sh/y: /bin/sh is not a directory in the initrd"
        );
        place(&mut m, "a", "loop", 0o777, Kind::Symlink("loop".into())).unwrap();
        let err = place(&mut m, "b", "loop/x", 0o644, Kind::File(vec![])).unwrap_err();
        assert!(err.to_string().contains("more than 40 symlinks"), "{err}");
    }
}

//! The initial ramdisk's contents: package trees, the trimmed kernel
//! modules, files and the init script from the spec, and the device nodes
//! the kernel needs before `/dev` is mounted, as cpio members.

use super::cpio::{Kind, Member, Members};
use super::paths;
use crate::store::{Hash, Node, Store};
use std::io::Read;

/// What went wrong, naming the path.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Directories every initrd has: mount points for the pseudo file systems
/// and somewhere to put the new root.
const DIRS: &[&str] = &[
    "dev", "proc", "sys", "run", "tmp", "mnt", "root", "etc", "bin", "sbin",
];

/// Builds the initrd's members, later layers replacing earlier ones at the
/// same path: `trees` in order (packages, then the kernel's modules), then
/// `files` (path -> content, 0644), then `/init` (0755) and the devices.
pub fn members(
    store: &dyn Store,
    trees: &[(String, Hash)],
    files: &[(String, Vec<u8>)],
    init: Vec<u8>,
) -> Result<Members, Error> {
    let mut m = Members::new();
    for d in DIRS {
        m.insert(
            d.to_string(),
            Member {
                mode: 0o755,
                kind: Kind::Directory,
            },
        );
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
            m.insert(
                path,
                Member {
                    mode: u32::from(e.mode),
                    kind,
                },
            );
        }
    }
    for (dest, bytes) in files {
        let rel = dest.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!("initrd file `{dest}`: not a clean absolute path").into());
        }
        let mut parent = String::new();
        for p in rel
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .expect("non-empty")
            .1
        {
            parent = if parent.is_empty() {
                p.to_string()
            } else {
                format!("{parent}/{p}")
            };
            m.entry(parent.clone()).or_insert(Member {
                mode: 0o755,
                kind: Kind::Directory,
            });
        }
        m.insert(
            rel.to_string(),
            Member {
                mode: 0o644,
                kind: Kind::File(bytes.clone()),
            },
        );
    }
    m.insert(
        "init".into(),
        Member {
            mode: 0o755,
            kind: Kind::File(init),
        },
    );
    m.insert(
        "dev/console".into(),
        Member {
            mode: 0o600,
            kind: Kind::CharDevice { major: 5, minor: 1 },
        },
    );
    m.insert(
        "dev/null".into(),
        Member {
            mode: 0o666,
            kind: Kind::CharDevice { major: 1, minor: 3 },
        },
    );
    Ok(m)
}

//! The squashfs root file system holds the OS tree as the tree says, read
//! back with the real tool (`unsquashfs -lln`): full modes with setuid,
//! numeric owners from the tree's own /etc/passwd and /etc/group, device
//! nodes and FIFOs, awkward names; what it cannot hold is reported; two
//! builds are byte-identical. Needs .ci/deps (squashfs-tools).

use cvmbuild::image::rootfs::squashfs;
use cvmbuild::store::{Entry, Flags, Hash, MemStore, Node, Store, Tree};
use std::process::Command;

const EPOCH: i64 = 1_400_000_000;

fn file(s: &MemStore, name: &str, bytes: &[u8], mode: u16, owner: &str, group: &str) -> Entry {
    let b = s.put_blob(&mut &bytes[..]).unwrap();
    Entry {
        owner: owner.into(),
        group: group.into(),
        ..Entry::root_owned(name, Node::file(&b), mode)
    }
}

fn dir(s: &MemStore, name: &str, entries: Vec<Entry>) -> Entry {
    let t = s.put_tree(&Tree::new(entries).unwrap()).unwrap();
    Entry::root_owned(name, Node::Directory { tree: t }, 0o755)
}

fn linked(mut e: Entry) -> Entry {
    e.flags.hardlink = true;
    e
}

fn os_tree(s: &MemStore) -> Hash {
    let mut ping = file(s, "ping", b"ping", 0o755, "root", "root");
    ping.xattrs
        .insert("security.capability".into(), vec![1, 0, 0, 2]);
    let ghost = Entry {
        flags: Flags {
            config: false,
            ghost: true,
            hardlink: false,
        },
        ..Entry::root_owned(
            "ghost.log",
            Node::File {
                size: 3,
                blob: None,
            },
            0o644,
        )
    };
    let mut spool = dir(s, "spool", vec![]);
    spool.owner = "mail".into();
    spool.group = "mail".into();
    spool.mode = 0o775;
    let root = vec![
        dir(
            s,
            "etc",
            vec![
                file(
                    s,
                    "passwd",
                    b"root:x:0:0::/root:/bin/sh\nmail:x:8:12::/var/spool/mail:/sbin/nologin\n",
                    0o644,
                    "root",
                    "root",
                ),
                file(
                    s,
                    "group",
                    b"root:x:0:\nmail:x:12:\nwheel:x:10:\n",
                    0o644,
                    "root",
                    "root",
                ),
                file(s, "shadow", b"", 0o000, "root", "root"),
            ],
        ),
        dir(
            s,
            "usr",
            vec![dir(
                s,
                "bin",
                vec![
                    file(s, "su", b"su", 0o4755, "root", "wheel"),
                    file(s, "write", b"w", 0o2755, "root", "tty"),
                    file(s, "with space \"q\"", b"x", 0o640, "mail", "mail"),
                    ping,
                    linked(file(s, "gzip", b"gz", 0o755, "root", "root")),
                    linked(file(s, "gunzip", b"gz", 0o755, "root", "root")),
                    file(s, "zcat", b"gz", 0o755, "root", "root"),
                    Entry::root_owned(
                        "sh",
                        Node::Symlink {
                            target: "busybox".into(),
                        },
                        0o777,
                    ),
                ],
            )],
        ),
        dir(
            s,
            "dev",
            vec![
                Entry::root_owned("null", Node::CharDevice { major: 1, minor: 3 }, 0o666),
                Entry::root_owned("sda", Node::BlockDevice { major: 8, minor: 0 }, 0o660),
            ],
        ),
        dir(
            s,
            "var",
            vec![
                spool,
                Entry::root_owned("initctl", Node::Fifo, 0o600),
                ghost,
            ],
        ),
    ];
    s.put_tree(&Tree::new(root).unwrap()).unwrap()
}

#[test]
fn squashfs_holds_modes_owners_and_devices() {
    let s = MemStore::new();
    let tree = os_tree(&s);
    let tmp = tempfile::tempdir().unwrap();
    let build = |n: &str| {
        let work = tmp.path().join(n);
        std::fs::create_dir_all(&work).unwrap();
        let out = work.join("root.squashfs");
        let notes = squashfs(&s, &tree, EPOCH, &work, &out).unwrap();
        (std::fs::read(&out).unwrap(), notes, out)
    };
    let (a, notes, image) = build("a");
    let (b, _, _) = build("b");
    assert!(a == b, "two builds differ");
    assert_eq!(
        notes,
        [
            "/usr/bin/ping: extended attributes (file capabilities) not applied: squashfs-tools 4.5 cannot add them",
            "group tty is not in the tree's /etc/group: owned by root",
            "/var/ghost.log: ghost file: no content",
        ]
    );

    let out = Command::new("unsquashfs")
        .args(["-lln", "-d", ""])
        .arg(&image)
        .output()
        .expect("unsquashfs is installed (.ci/deps: squashfs-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mode owner/group size-or-device date time path
    let listing: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (mode, owner) = (f[0], f[1]);
            let (size, path) = if mode.starts_with(['c', 'b']) {
                (format!("{}{}", f[2], f[3]), f[6..].join(" "))
            } else {
                (f[2].to_string(), f[5..].join(" "))
            };
            let date = if mode.starts_with(['c', 'b']) {
                f[4]
            } else {
                f[3]
            };
            assert_eq!(date, "2014-05-13", "{l}");
            format!("{mode} {owner} {size} {path}")
        })
        .collect();
    let want = [
        "drwxr-xr-x 0/0 SIZE ",
        "drwxr-xr-x 0/0 SIZE /dev",
        "crw-rw-rw- 0/0 1,3 /dev/null",
        "brw-rw---- 0/0 8,0 /dev/sda",
        "drwxr-xr-x 0/0 SIZE /etc",
        "-rw-r--r-- 0/0 33 /etc/group",
        "-rw-r--r-- 0/0 69 /etc/passwd",
        "---------- 0/0 0 /etc/shadow",
        "drwxr-xr-x 0/0 SIZE /usr",
        "drwxr-xr-x 0/0 SIZE /usr/bin",
        "-rwxr-xr-x 0/0 2 /usr/bin/gunzip",
        "-rwxr-xr-x 0/0 2 /usr/bin/gzip",
        "-rwxr-xr-x 0/0 4 /usr/bin/ping",
        "lrwxrwxrwx 0/0 7 /usr/bin/sh -> busybox",
        "-rwsr-xr-x 0/10 2 /usr/bin/su",
        "-rw-r----- 8/12 1 /usr/bin/with space \"q\"",
        "-rwxr-sr-x 0/0 1 /usr/bin/write",
        "-rwxr-xr-x 0/0 2 /usr/bin/zcat",
        "drwxr-xr-x 0/0 SIZE /var",
        "prw------- 0/0 0 /var/initctl",
        "drwxrwxr-x 8/12 SIZE /var/spool",
    ];
    let got: Vec<String> = listing
        .iter()
        .map(|l| {
            if l.starts_with('d') {
                let f: Vec<&str> = l.splitn(4, ' ').collect();
                format!("{} {} SIZE {}", f[0], f[1], f.get(3).unwrap_or(&""))
            } else {
                l.clone()
            }
        })
        .collect();
    assert_eq!(got, want);

    // The names of the hardlinked file are one inode; the equal file that
    // is not linked is its own.
    let out = tmp.path().join("unpacked");
    let st = Command::new("unsquashfs")
        .args(["-q", "-d"])
        .arg(&out)
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    use std::os::unix::fs::MetadataExt;
    let ino = |n: &str| {
        std::fs::metadata(out.join("usr/bin").join(n))
            .unwrap()
            .ino()
    };
    assert_eq!(ino("gzip"), ino("gunzip"));
    assert_ne!(ino("gzip"), ino("zcat"));
}

//! Tree objects: the canonical encoding as store-layout.md specifies it,
//! order independence, and name and structure validation.

use cvmbuild::store::{validate_name, Entry, Flags, Hash, Node, Tree};

fn entry(name: &str, node: Node) -> Entry {
    Entry::root_owned(name, node, 0o644)
}

fn sample_entries() -> Vec<Entry> {
    let empty = Tree::new(vec![]).unwrap().hash();
    vec![
        entry("c", Node::Directory { tree: empty }),
        Entry {
            flags: Flags {
                config: true,
                ghost: false,
                hardlink: false,
            },
            ..entry(
                "b",
                Node::File {
                    size: 3,
                    blob: Some(Hash::of(b"abc")),
                },
            )
        },
        Entry {
            mode: 0o777,
            ..entry("a", Node::Symlink { target: "b".into() })
        },
    ]
}

fn s(out: &mut Vec<u8>, v: &str) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v.as_bytes());
}

/// Encodes the sample by hand, following store-layout.md section 2.3
/// literally, so the code and the document cannot drift apart.
#[test]
fn encoding_is_exactly_the_documented_one() {
    let empty = Tree::new(vec![]).unwrap();
    let mut want_empty = b"cvmbuild-tree-1\n".to_vec();
    want_empty.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(empty.encode(), want_empty);
    assert_eq!(empty.hash(), Hash(*blake3::hash(&want_empty).as_bytes()));

    let mut want = b"cvmbuild-tree-1\n".to_vec();
    want.extend_from_slice(&3u32.to_le_bytes());
    // "a": symlink (3), mode 0777, no flags, target "b".
    s(&mut want, "a");
    want.push(3);
    want.extend_from_slice(&0o777u16.to_le_bytes());
    s(&mut want, "root");
    s(&mut want, "root");
    want.push(0);
    s(&mut want, "b");
    // "b": file (1), mode 0644, config (1), size 3, has blob, blob hash.
    s(&mut want, "b");
    want.push(1);
    want.extend_from_slice(&0o644u16.to_le_bytes());
    s(&mut want, "root");
    s(&mut want, "root");
    want.push(1);
    want.extend_from_slice(&3u64.to_le_bytes());
    want.push(1);
    want.extend_from_slice(blake3::hash(b"abc").as_bytes());
    // "c": directory (2), tree hash.
    s(&mut want, "c");
    want.push(2);
    want.extend_from_slice(&0o644u16.to_le_bytes());
    s(&mut want, "root");
    s(&mut want, "root");
    want.push(0);
    want.extend_from_slice(&empty.hash().0);

    let tree = Tree::new(sample_entries()).unwrap();
    assert_eq!(tree.encode(), want);
    assert_eq!(tree.hash(), Hash::of(&want));
    assert_eq!(Tree::decode(&want).unwrap(), tree);
}

#[test]
fn hash_does_not_depend_on_insertion_order() {
    let mut entries = sample_entries();
    let a = Tree::new(entries.clone()).unwrap();
    entries.reverse();
    let b = Tree::new(entries.clone()).unwrap();
    entries.swap(0, 1);
    let c = Tree::new(entries).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash(), c.hash());
    let names: Vec<_> = a.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn every_field_changes_the_hash() {
    let base = Tree::new(sample_entries()).unwrap().hash();
    let variants: [fn(&mut Entry); 7] = [
        |e| e.mtime = Some(1_400_000_000),
        |e| e.mtime = Some(0),
        |e| e.mode = 0o4755,
        |e| e.owner = "daemon".into(),
        |e| e.group = "bin".into(),
        |e| e.flags.config = !e.flags.config,
        |e| e.name = "z".into(),
    ];
    for change in variants {
        let mut entries = sample_entries();
        change(&mut entries[1]);
        assert_ne!(Tree::new(entries).unwrap().hash(), base);
    }
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", ".", "..", "a/b", "/", "a\0b", &"x".repeat(256)] {
        assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        assert!(
            Tree::new(vec![entry(bad, Node::Fifo)]).is_err(),
            "{bad:?} accepted in a tree"
        );
    }
    for good in [
        "a",
        "...",
        ".hidden",
        "with space",
        "ünïcode",
        &"x".repeat(255),
    ] {
        validate_name(good).unwrap();
    }
}

#[test]
fn malformed_trees_are_refused() {
    // Duplicate names.
    assert!(Tree::new(vec![entry("a", Node::Fifo), entry("a", Node::Socket)]).is_err());
    // A ghost file with content, and a non-ghost file without.
    let ghost_with_blob = Entry {
        flags: Flags {
            config: false,
            ghost: true,
            hardlink: false,
        },
        ..entry(
            "g",
            Node::File {
                size: 1,
                blob: Some(Hash::of(b"x")),
            },
        )
    };
    assert!(Tree::new(vec![ghost_with_blob]).is_err());
    assert!(Tree::new(vec![entry(
        "f",
        Node::File {
            size: 0,
            blob: None
        }
    )])
    .is_err());
    // Mode bits beyond 0o7777, empty owner, empty symlink target.
    assert!(Tree::new(vec![Entry {
        mode: 0o10000,
        ..entry("m", Node::Fifo)
    }])
    .is_err());
    assert!(Tree::new(vec![Entry {
        owner: String::new(),
        ..entry("o", Node::Fifo)
    }])
    .is_err());
    assert!(Tree::new(vec![entry(
        "l",
        Node::Symlink {
            target: String::new()
        }
    )])
    .is_err());
}

#[test]
fn decoding_is_strict() {
    let good = Tree::new(sample_entries()).unwrap().encode();
    // Trailing bytes, truncation, bad magic.
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(Tree::decode(&trailing).is_err());
    assert!(Tree::decode(&good[..good.len() - 1]).is_err());
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(Tree::decode(&magic).is_err());
    // Unsorted entries: encode "b" then "a" by swapping names in place.
    let unsorted = Tree::new(vec![entry("a", Node::Fifo), entry("b", Node::Fifo)])
        .unwrap()
        .encode();
    let mut swapped = unsorted.clone();
    // Skip the magic (which contains a 'b') and the count.
    let first = 20 + unsorted[20..].iter().position(|&b| b == b'a').unwrap();
    let second = 20 + unsorted[20..].iter().position(|&b| b == b'b').unwrap();
    swapped[first] = b'b';
    swapped[second] = b'a';
    let err = Tree::decode(&swapped).unwrap_err().to_string();
    assert!(err.contains("sorted"), "{err}");
    // Unknown kind.
    let mut kind = Tree::new(vec![entry("a", Node::Fifo)]).unwrap().encode();
    let at = 16 + 4 + 4 + 1;
    assert_eq!(kind[at], 6);
    kind[at] = 99;
    assert!(Tree::decode(&kind).is_err());
}

#[test]
fn hash_hex_roundtrip() {
    let h = Hash::of(b"hello");
    assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
    assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), None);
    assert_eq!(Hash::from_hex("abc"), None);
    assert_eq!(
        serde_json::to_string(&h).unwrap(),
        format!("\"{}\"", h.to_hex())
    );
}

/// Extended attributes (store-layout.md 2.3): flag bit 0x04, then after the
/// body a count and (name, length-prefixed value) pairs sorted by name.
/// Trees without attributes encode exactly as before the field existed.
#[test]
fn extended_attributes_are_encoded_after_the_body() {
    let file = Node::File {
        size: 3,
        blob: Some(Hash::of(b"abc")),
    };
    let plain = Tree::new(vec![entry("ping", file.clone())]).unwrap();
    let mut caps = entry("ping", file);
    caps.xattrs.insert("user.b".into(), vec![]);
    caps.xattrs
        .insert("security.capability".into(), vec![1, 2, 3]);
    let with = Tree::new(vec![caps]).unwrap();

    let mut want = b"cvmbuild-tree-1\n".to_vec();
    want.extend_from_slice(&1u32.to_le_bytes());
    s(&mut want, "ping");
    want.push(1);
    want.extend_from_slice(&0o644u16.to_le_bytes());
    s(&mut want, "root");
    s(&mut want, "root");
    let flags_at = want.len();
    want.push(0);
    want.extend_from_slice(&3u64.to_le_bytes());
    want.push(1);
    want.extend_from_slice(blake3::hash(b"abc").as_bytes());
    assert_eq!(plain.encode(), want);

    want[flags_at] = 0x04;
    want.extend_from_slice(&2u32.to_le_bytes());
    s(&mut want, "security.capability");
    want.extend_from_slice(&3u32.to_le_bytes());
    want.extend_from_slice(&[1, 2, 3]);
    s(&mut want, "user.b");
    want.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(with.encode(), want);
    assert_eq!(Tree::decode(&want).unwrap(), with);
    assert_ne!(with.hash(), plain.hash());

    // Strict: the flag without attributes, unsorted names, a bad name.
    let mut empty = plain.encode();
    empty[flags_at] = 0x04;
    empty.extend_from_slice(&0u32.to_le_bytes());
    assert!(Tree::decode(&empty).is_err());
    let mut unsorted = plain.encode();
    unsorted[flags_at] = 0x04;
    unsorted.extend_from_slice(&2u32.to_le_bytes());
    for k in ["user.b", "security.capability"] {
        s(&mut unsorted, k);
        unsorted.extend_from_slice(&0u32.to_le_bytes());
    }
    assert!(Tree::decode(&unsorted).is_err());
    let mut bad = entry("x", Node::Fifo);
    bad.xattrs.insert("a\0b".into(), vec![]);
    assert!(Tree::new(vec![bad]).is_err());
    let mut big = entry("x", Node::Fifo);
    big.xattrs.insert("user.big".into(), vec![0; 65537]);
    assert!(Tree::new(vec![big]).is_err());
}

/// Modification times (store-layout.md 2.3): flag bit 0x10, then after
/// the body and any attributes the seconds as a u64. Trees without times
/// encode exactly as before the field existed; an output clamps a time to
/// its epoch and gives an entry without one the epoch.
#[test]
fn mtimes_are_encoded_last_and_clamped_by_outputs() {
    let file = Node::File {
        size: 3,
        blob: Some(Hash::of(b"abc")),
    };
    let plain = Tree::new(vec![entry("f", file.clone())]).unwrap();
    let mut timed = entry("f", file);
    timed.mtime = Some(1_399_999_999);
    timed.xattrs.insert("security.capability".into(), vec![7]);
    let with = Tree::new(vec![timed.clone()]).unwrap();

    let mut want = plain.encode();
    let flags_at = 16 + 4 + 4 + 1 + 1 + 2 + 8 + 8;
    assert_eq!(want[flags_at], 0);
    want[flags_at] = 0x04 | 0x10;
    want.extend_from_slice(&1u32.to_le_bytes());
    s(&mut want, "security.capability");
    want.extend_from_slice(&1u32.to_le_bytes());
    want.push(7);
    want.extend_from_slice(&1_399_999_999u64.to_le_bytes());
    assert_eq!(with.encode(), want);
    assert_eq!(Tree::decode(&want).unwrap(), with);

    // Strict: the flag without the time, the time without the flag.
    assert!(Tree::decode(&want[..want.len() - 1]).is_err());
    let mut unflagged = want.clone();
    unflagged[flags_at] = 0x04;
    assert!(Tree::decode(&unflagged).is_err());

    assert_eq!(timed.mtime_at(1_400_000_000), 1_399_999_999);
    assert_eq!(timed.mtime_at(1_000), 1_000);
    assert_eq!(plain.entries()[0].mtime_at(1_400_000_000), 1_400_000_000);
}

/// Hardlinks (store-layout.md 2.2): flag bit 0x08 on each name; a flag
/// without a partner in the same tree is cleared by `Tree::new` and
/// refused by `decode`; only regular files with content may carry it.
#[test]
fn hardlink_flags_are_canonical() {
    let file = Node::File {
        size: 3,
        blob: Some(Hash::of(b"abc")),
    };
    let linked = |name: &str| Entry {
        flags: Flags {
            hardlink: true,
            ..Flags::default()
        },
        ..entry(name, file.clone())
    };
    let pair = Tree::new(vec![linked("a"), linked("b")]).unwrap();
    assert!(pair.entries().iter().all(|e| e.flags.hardlink));
    let enc = pair.encode();
    // magic, count, then "a": name, kind, mode, owner, group, flags.
    let flags_at = 16 + 4 + (4 + 1) + 1 + 2 + (4 + 4) * 2;
    assert_eq!(enc[flags_at], 0x08);
    assert_eq!(Tree::decode(&enc).unwrap(), pair);

    // A partner must be the same inode: another mode makes "b" alone, and
    // both flags are cleared.
    let other = Tree::new(vec![
        linked("a"),
        Entry {
            mode: 0o600,
            ..linked("b")
        },
    ])
    .unwrap();
    assert!(other.entries().iter().all(|e| !e.flags.hardlink));
    let lonely = Tree::new(vec![linked("a"), entry("b", file.clone())]).unwrap();
    assert_eq!(
        lonely,
        Tree::new(vec![entry("a", file.clone()), entry("b", file.clone())]).unwrap()
    );
    // The same bit set by hand on a lonely entry is not a valid encoding.
    let mut bad = lonely.encode();
    bad[flags_at] = 0x08;
    assert!(Tree::decode(&bad).is_err());
    // Not a regular file with content.
    let dir = Entry {
        flags: Flags {
            hardlink: true,
            ..Flags::default()
        },
        ..entry(
            "d",
            Node::Directory {
                tree: Tree::new(vec![]).unwrap().hash(),
            },
        )
    };
    assert!(Tree::new(vec![dir]).is_err());
}

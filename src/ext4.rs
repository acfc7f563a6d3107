//! Turning a freshly made ext2 file system into ext4, as
//! `tune2fs -j -O extent,large_file,huge_file,dir_nlink` would: a journal
//! in the reserved inode 8, mapped by one extent, and the ext4 feature
//! flags. μCernVM makes its scratch disk ext4; the initrd has only
//! busybox's `mke2fs`, which makes ext2, and e2fsprogs with its C library
//! would not fit the 12 MB image. So `cvmbuild-client make-ext4 DEVICE`
//! does this one step after `mke2fs`.
//!
//! Only what busybox's `mke2fs` makes is accepted (revision 1, no journal,
//! no checksums, no 64-bit or flexible groups, no other incompatible
//! features), and only when the file system is clean: anything else is
//! refused before a byte is written. The journal's blocks are zeroed and
//! given its (empty) superblock before the file system's own superblock,
//! with every backup and group descriptor copy, names it, so a cut power
//! leaves either the old ext2 or the new ext4. `e2fsck -fn` is the judge
//! (tests/testsuite/ext4_scratch.rs).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u16 = 0xEF53;
const JOURNAL_INODE: u32 = 8;
const JBD2_MAGIC: u32 = 0xC03B_3998;
/// `compat`: has_journal, ext_attr, resize_inode, dir_index.
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_KNOWN: u32 = 0x8 | 0x10 | 0x20;
/// `incompat`: filetype; extents is what we add.
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
/// `ro_compat`: sparse_super, large_file; huge_file and dir_nlink added.
const RO_SPARSE_SUPER: u32 = 0x1;
const RO_LARGE_FILE: u32 = 0x2;
const RO_HUGE_FILE: u32 = 0x8;
const RO_DIR_NLINK: u32 = 0x20;
const EXTENTS_FL: u32 = 0x8_0000;
/// `s_jnl_backup_type`: the superblock keeps a copy of the journal
/// inode's block map (e2fsck restores a damaged journal inode from it).
const JNL_BACKUP_BLOCKS: u8 = 1;
/// One extent maps at most this many blocks; the journal is at most one
/// extent long.
const MAX_JOURNAL_BLOCKS: u32 = 32768;
/// The inode itself holds four extents: the journal is at most four runs
/// of free blocks (groups start with their bitmaps and inode table, so a
/// large journal does not fit between two groups' metadata).
const MAX_EXTENTS: usize = 4;
/// Runs shorter than this are passed over when looking for the journal's.
const MIN_RUN: u32 = 1024;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Ext4Error {
    #[error("{}: {why}", device.display())]
    #[diagnostic(
        code(ext4::refused),
        help("only a clean file system freshly made by busybox's mke2fs is turned into ext4")
    )]
    Refused { device: PathBuf, why: String },
    #[error("{}: {source}", device.display())]
    #[diagnostic(code(ext4::io))]
    Io {
        device: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What [`make_ext4`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Journal made: its length in blocks, and in how many runs.
    Journaled { blocks: u32, extents: usize },
    /// The file system already had a journal: nothing written.
    AlreadyJournaled,
}

/// The superblock fields this module reads or writes (offsets in the
/// on-disk superblock, little-endian).
struct Super {
    raw: Vec<u8>,
}

impl Super {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.raw[at], self.raw[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.raw[at..at + 4].try_into().expect("4 bytes"))
    }
    fn set_u32(&mut self, at: usize, v: u32) {
        self.raw[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn blocks(&self) -> u32 {
        self.u32(0x04)
    }
    fn free_blocks(&self) -> u32 {
        self.u32(0x0C)
    }
    fn first_data_block(&self) -> u32 {
        self.u32(0x14)
    }
    fn block_size(&self) -> u64 {
        1024 << self.u32(0x18)
    }
    fn blocks_per_group(&self) -> u32 {
        self.u32(0x20)
    }
    fn inodes_per_group(&self) -> u32 {
        self.u32(0x28)
    }
    fn inode_size(&self) -> u64 {
        u64::from(self.u16(0x58))
    }
    fn compat(&self) -> u32 {
        self.u32(0x5C)
    }
    fn incompat(&self) -> u32 {
        self.u32(0x60)
    }
    fn ro_compat(&self) -> u32 {
        self.u32(0x64)
    }
    fn uuid(&self) -> [u8; 16] {
        self.raw[0x68..0x78].try_into().expect("16 bytes")
    }
    fn groups(&self) -> u32 {
        (self.blocks() - self.first_data_block()).div_ceil(self.blocks_per_group())
    }
}

/// A group descriptor (32 bytes: no 64-bit feature).
const DESC_SIZE: usize = 32;

struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    fn err(&self, source: io::Error) -> Ext4Error {
        Ext4Error::Io {
            device: self.path.clone(),
            source,
        }
    }
    fn read(&self, at: u64, len: usize) -> Result<Vec<u8>, Ext4Error> {
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(|e| self.err(e))?;
        Ok(buf)
    }
    fn write(&self, at: u64, buf: &[u8]) -> Result<(), Ext4Error> {
        self.file.write_all_at(buf, at).map_err(|e| self.err(e))
    }
    fn sync(&self) -> Result<(), Ext4Error> {
        self.file.sync_all().map_err(|e| self.err(e))
    }
}

/// The journal length mke2fs would choose for a file system of `blocks`
/// blocks (capped at one extent's worth).
fn journal_blocks(blocks: u32) -> Option<u32> {
    let n = match blocks {
        0..2048 => return None,
        2048..32768 => 1024,
        32768..262144 => 4096,
        262144..524288 => 8192,
        524288..1048576 => 16384,
        _ => 32768,
    };
    Some(n.min(MAX_JOURNAL_BLOCKS))
}

/// Does group `g` hold a superblock backup (sparse_super: 0, 1 and the
/// powers of 3, 5 and 7)?
fn has_backup(g: u32) -> bool {
    if g <= 1 {
        return true;
    }
    [3u32, 5, 7].iter().any(|&b| {
        let mut p = b;
        while p < g {
            p = p.saturating_mul(b);
        }
        p == g
    })
}

/// Gives the clean ext2 file system on `device` an empty journal and the
/// ext4 features; a file system that has a journal already is left as
/// it is.
pub fn make_ext4(device: &Path) -> Result<Outcome, Ext4Error> {
    let refuse = |why: String| Ext4Error::Refused {
        device: device.to_path_buf(),
        why,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|source| Ext4Error::Io {
            device: device.to_path_buf(),
            source,
        })?;
    let dev = Device {
        file,
        path: device.to_path_buf(),
    };
    let mut sb = Super {
        raw: dev.read(1024, 1024)?,
    };
    if sb.u16(0x38) != MAGIC {
        return Err(refuse("no ext2 superblock".into()));
    }
    if sb.compat() & COMPAT_HAS_JOURNAL != 0 {
        return Ok(Outcome::AlreadyJournaled);
    }
    if sb.u32(0x4C) != 1 {
        return Err(refuse(format!("revision {} (1 expected)", sb.u32(0x4C))));
    }
    if sb.u16(0x3A) & 0x3 != 1 {
        return Err(refuse("the file system is not clean (run e2fsck)".into()));
    }
    let unknown_compat = sb.compat() & !COMPAT_KNOWN;
    let unknown_incompat = sb.incompat() & !INCOMPAT_FILETYPE;
    let unknown_ro = sb.ro_compat() & !(RO_SPARSE_SUPER | RO_LARGE_FILE);
    if unknown_compat | unknown_incompat | unknown_ro != 0 {
        return Err(refuse(format!(
            "features beyond what busybox's mke2fs makes (compat {unknown_compat:#x}, \
             incompat {unknown_incompat:#x}, ro_compat {unknown_ro:#x})"
        )));
    }
    let bs = sb.block_size();
    let bpg = sb.blocks_per_group();
    if !(1024..=65536).contains(&bs) || bpg == 0 || u64::from(bpg) > bs * 8 {
        return Err(refuse(format!(
            "block size {bs} with {bpg} blocks per group"
        )));
    }
    let Some(want) = journal_blocks(sb.blocks()) else {
        return Err(refuse(format!(
            "{} blocks is too small for a journal",
            sb.blocks()
        )));
    };
    let groups = sb.groups();
    let gdt_at = (u64::from(sb.first_data_block()) + 1) * bs;
    let mut gdt = dev.read(gdt_at, groups as usize * DESC_SIZE)?;
    let desc_u32 = |gdt: &[u8], g: u32, at: usize| {
        let o = g as usize * DESC_SIZE + at;
        u32::from_le_bytes(gdt[o..o + 4].try_into().expect("4 bytes"))
    };

    // The block bitmaps, in block order; the journal goes in the first
    // run of free blocks long enough, searched from the middle group
    // (where mke2fs puts it, away from the metadata at the start).
    let mut bitmaps = Vec::with_capacity(groups as usize);
    for g in 0..groups {
        bitmaps.push(dev.read(u64::from(desc_u32(&gdt, g, 0)) * bs, bs as usize)?);
    }
    let first = sb.first_data_block();
    let used = |b: u32| {
        let rel = b - first;
        let (g, i) = ((rel / bpg) as usize, (rel % bpg) as usize);
        bitmaps[g][i / 8] & (1 << (i % 8)) != 0
    };
    let total = sb.blocks();
    let from = first + (groups / 2) * bpg;
    // (start, length) of each run the journal takes.
    let mut extents: Vec<(u32, u32)> = Vec::new();
    for origin in [from, first] {
        extents.clear();
        let (mut got, mut b) = (0u32, origin);
        while b < total && got < want && extents.len() < MAX_EXTENTS {
            if used(b) {
                b += 1;
                continue;
            }
            let s = b;
            while b < total && !used(b) && b - s < want - got {
                b += 1;
            }
            if b - s >= (want - got).min(MIN_RUN) {
                extents.push((s, b - s));
                got += b - s;
            }
        }
        if got == want {
            break;
        }
        extents.clear();
    }
    if extents.is_empty() {
        return Err(refuse(format!(
            "no {MAX_EXTENTS} runs of free blocks hold a journal of {want} blocks"
        )));
    }
    if sb.free_blocks() < want {
        return Err(refuse("not enough free blocks for the journal".into()));
    }

    // 1. The journal's blocks: zeros, then the journal superblock (v2,
    // big-endian, empty: s_start 0).
    let zeros = vec![0u8; 1 << 20];
    for &(start, len) in &extents {
        let (mut at, end) = (u64::from(start) * bs, u64::from(start + len) * bs);
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            dev.write(at, &zeros[..n])?;
            at += n as u64;
        }
    }
    let mut jsb = vec![0u8; 1024];
    let be = |buf: &mut [u8], at: usize, v: u32| buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    be(&mut jsb, 0x00, JBD2_MAGIC);
    be(&mut jsb, 0x04, 4); // superblock v2
    be(&mut jsb, 0x0C, bs as u32);
    be(&mut jsb, 0x10, want);
    be(&mut jsb, 0x14, 1); // first log block
    be(&mut jsb, 0x18, 1); // first expected sequence
    jsb[0x30..0x40].copy_from_slice(&sb.uuid());
    be(&mut jsb, 0x40, 1); // users: this file system
    dev.write(u64::from(extents[0].0) * bs, &jsb)?;

    // 2. Inode 8: a regular file of `want` blocks, mapped by the extents
    // (12 bytes each after the 12-byte header: logical block, length,
    // physical start high 16 and low 32 bits).
    let mut i_block = [0u8; 60];
    i_block[0..2].copy_from_slice(&0xF30Au16.to_le_bytes()); // extent header magic
    i_block[2..4].copy_from_slice(&(extents.len() as u16).to_le_bytes());
    i_block[4..6].copy_from_slice(&(MAX_EXTENTS as u16).to_le_bytes());
    let mut logical = 0u32;
    for (i, &(start, len)) in extents.iter().enumerate() {
        let e = 12 + 12 * i;
        i_block[e..e + 4].copy_from_slice(&logical.to_le_bytes());
        i_block[e + 4..e + 6].copy_from_slice(&(len as u16).to_le_bytes());
        i_block[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        logical += len;
    }
    let size = u64::from(want) * bs;
    let mut inode = vec![0u8; sb.inode_size() as usize];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    inode[0x00..0x02].copy_from_slice(&0o100600u16.to_le_bytes());
    inode[0x04..0x08].copy_from_slice(&(size as u32).to_le_bytes());
    for t in [0x08, 0x0C, 0x10] {
        inode[t..t + 4].copy_from_slice(&now.to_le_bytes());
    }
    inode[0x1A..0x1C].copy_from_slice(&1u16.to_le_bytes());
    inode[0x1C..0x20].copy_from_slice(&((size / 512) as u32).to_le_bytes());
    inode[0x20..0x24].copy_from_slice(&EXTENTS_FL.to_le_bytes());
    inode[0x28..0x64].copy_from_slice(&i_block);
    inode[0x6C..0x70].copy_from_slice(&((size >> 32) as u32).to_le_bytes());
    let table = u64::from(desc_u32(
        &gdt,
        (JOURNAL_INODE - 1) / sb.inodes_per_group(),
        8,
    ));
    let index = u64::from((JOURNAL_INODE - 1) % sb.inodes_per_group());
    dev.write(table * bs + index * sb.inode_size(), &inode)?;

    // 3. The blocks marked used, in the bitmaps and the counts.
    for b in extents.iter().flat_map(|&(s, len)| s..s + len) {
        let rel = b - first;
        let (g, i) = ((rel / bpg) as usize, (rel % bpg) as usize);
        bitmaps[g][i / 8] |= 1 << (i % 8);
        let o = g * DESC_SIZE + 0x0C;
        let free = u16::from_le_bytes([gdt[o], gdt[o + 1]]) - 1;
        gdt[o..o + 2].copy_from_slice(&free.to_le_bytes());
    }
    for g in 0..groups {
        dev.write(u64::from(desc_u32(&gdt, g, 0)) * bs, &bitmaps[g as usize])?;
    }
    dev.sync()?;

    // 4. The superblock names the journal; every copy of it and of the
    // group descriptors is rewritten, the primary last.
    sb.set_u32(0x0C, sb.free_blocks() - want);
    sb.set_u32(0x5C, sb.compat() | COMPAT_HAS_JOURNAL);
    sb.set_u32(0x60, sb.incompat() | INCOMPAT_EXTENTS);
    sb.set_u32(
        0x64,
        sb.ro_compat() | RO_LARGE_FILE | RO_HUGE_FILE | RO_DIR_NLINK,
    );
    sb.set_u32(0xE0, JOURNAL_INODE);
    sb.raw[0xFD] = JNL_BACKUP_BLOCKS;
    sb.raw[0x10C..0x10C + 60].copy_from_slice(&i_block);
    sb.set_u32(0x10C + 60, (size >> 32) as u32);
    sb.set_u32(0x10C + 64, size as u32);
    let sparse = sb.ro_compat() & RO_SPARSE_SUPER != 0;
    for g in (1..groups).filter(|&g| !sparse || has_backup(g)) {
        let base = u64::from(first + g * bpg) * bs;
        let mut copy = sb.raw.clone();
        copy[0x5A..0x5C].copy_from_slice(&(g as u16).to_le_bytes());
        dev.write(base, &copy)?;
        dev.write(base + bs, &gdt)?;
    }
    dev.write(gdt_at, &gdt)?;
    dev.sync()?;
    sb.raw[0x5A..0x5C].copy_from_slice(&0u16.to_le_bytes());
    dev.write(1024, &sb.raw)?;
    dev.sync()?;
    Ok(Outcome::Journaled {
        blocks: want,
        extents: extents.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_sit_in_groups_0_1_and_powers_of_3_5_7() {
        let got: Vec<u32> = (0..60).filter(|&g| has_backup(g)).collect();
        assert_eq!(got, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
    }

    #[test]
    fn journal_size_follows_the_file_system_size() {
        assert_eq!(journal_blocks(1000), None);
        assert_eq!(journal_blocks(65536), Some(4096));
        assert_eq!(journal_blocks(u32::MAX), Some(MAX_JOURNAL_BLOCKS));
    }
}

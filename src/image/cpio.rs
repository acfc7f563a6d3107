//! A `newc` (SVR4, no CRC) cpio writer: the format the Linux kernel
//! unpacks as an initramfs and `cpio -t` lists.
//!
//! Archives are reproducible by construction: the caller hands over entries
//! in any order and [`write`] sorts them by path, numbers inodes in that
//! order, and stamps every entry with the same mtime and owner 0:0.

use libc::{S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// What one archive member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

/// One member: permission bits (`0o7777` mask) and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub mode: u32,
    pub kind: Kind,
}

/// Paths (relative, no leading `/`) to members; a sorted map so the
/// archive order is the byte order of paths, and parents (a prefix of
/// their children) always come first.
pub type Members = BTreeMap<String, Member>;

/// The name of the member that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// Writes `members` as a `newc` archive with every mtime set to `mtime`
/// and returns the number of bytes written.
pub fn write(out: &mut dyn Write, members: &Members, mtime: u32) -> io::Result<u64> {
    // The kernel (and cpio) stop at the first member of this name: one
    // in the middle would silently end the archive there.
    if members.contains_key(TRAILER) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{TRAILER}` cannot be a member: it is the name that ends a cpio archive"),
        ));
    }
    let mut w = Counting { inner: out, n: 0 };
    for (ino, (path, m)) in members.iter().enumerate() {
        let (ty, nlink, data, (rmaj, rmin)): (u32, u32, &[u8], _) = match &m.kind {
            Kind::Directory => (S_IFDIR, 2, &[], (0, 0)),
            Kind::File(b) => (S_IFREG, 1, b, (0, 0)),
            Kind::Symlink(t) => (S_IFLNK, 1, t.as_bytes(), (0, 0)),
            Kind::CharDevice { major, minor } => (S_IFCHR, 1, &[], (*major, *minor)),
        };
        header(
            &mut w,
            ino as u32 + 1,
            ty | (m.mode & 0o7777),
            nlink,
            mtime,
            data.len(),
            (rmaj, rmin),
            path,
        )?;
        w.write_all(data)?;
        pad(&mut w)?;
    }
    header(&mut w, 0, 0, 1, 0, 0, (0, 0), TRAILER)?;
    Ok(w.n)
}

#[allow(clippy::too_many_arguments)]
fn header(
    w: &mut Counting,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let size = u32::try_from(size).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: larger than 4 GiB"),
        )
    })?;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
    // devminor, rdevmajor, rdevminor, namesize (with NUL), check.
    write!(
        w,
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{mtime:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        0, 0, 0, 0, rdev.0, rdev.1, name.len() + 1, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w)
}

/// Pads to the next multiple of 4 bytes, as newc requires after the name
/// and after the data.
fn pad(w: &mut Counting) -> io::Result<()> {
    let n = (4 - (w.n % 4) as usize) % 4;
    w.write_all(&[0; 3][..n])
}

struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_and_padding() {
        let mut m = Members::new();
        m.insert(
            "a".into(),
            Member {
                mode: 0o644,
                kind: Kind::File(b"hello".to_vec()),
            },
        );
        let mut out = Vec::new();
        let n = write(&mut out, &m, 0x1234).unwrap();
        assert_eq!(n as usize, out.len());
        assert_eq!(out.len() % 4, 0);
        // 110-byte header + "a\0" = 112, then 5 data bytes padded to 8.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001");
        assert_eq!(&out[14..22], b"000081a4");
        assert_eq!(&out[46..54], b"00001234");
        assert_eq!(&out[54..62], b"00000005");
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..117], b"hello");
        assert_eq!(&out[117..120], &[0, 0, 0]);
        assert_eq!(&out[120..126], b"070701");
        // The trailer's name (11 bytes with NUL) after a 110-byte header pads by 3.
        assert!(out.ends_with(b"TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn a_member_named_like_the_trailer_is_refused() {
        let mut m = Members::new();
        m.insert(
            TRAILER.into(),
            Member {
                mode: 0o644,
                kind: Kind::File(Vec::new()),
            },
        );
        let err = write(&mut Vec::new(), &m, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(TRAILER));
    }
}

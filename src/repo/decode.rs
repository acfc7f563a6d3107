//! Digests and decompression for repodata files.
//!
//! The compression is recognised from the file's first bytes, never from its
//! name: mirrors rename files, and createrepo's `--compress-type` changes the
//! format without every tool agreeing on the extension.

use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use std::io::{self, BufRead, BufReader, Read};

/// A running digest of one of the kinds repomd.xml may name.
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(Sha1),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    /// `None` for a digest kind we do not know (the caller reports it).
    pub fn new(kind: &str) -> Option<Hasher> {
        Some(match kind {
            "md5" => Hasher::Md5(md5::Md5::new()),
            // createrepo from yum's era wrote `sha` for SHA-1.
            "sha" | "sha1" => Hasher::Sha1(Sha1::new()),
            "sha224" => Hasher::Sha224(Sha224::new()),
            "sha256" => Hasher::Sha256(Sha256::new()),
            "sha384" => Hasher::Sha384(Sha384::new()),
            "sha512" => Hasher::Sha512(Sha512::new()),
            _ => return None,
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// The compression formats repodata uses in practice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    Plain,
}

impl Compression {
    /// Recognises the format from the first bytes. Uncompressed data must
    /// look like XML (optional BOM and whitespace, then `<`) so that a file
    /// in an unknown format is reported as such rather than as bad XML.
    pub fn sniff(data: &[u8]) -> Result<Compression, String> {
        if data.starts_with(&[0x1f, 0x8b]) {
            return Ok(Compression::Gzip);
        }
        if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            return Ok(Compression::Xz);
        }
        if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Ok(Compression::Zstd);
        }
        if data.starts_with(b"BZh") {
            return Ok(Compression::Bzip2);
        }
        let body = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
        match body.iter().find(|c| !c.is_ascii_whitespace()) {
            Some(b'<') => Ok(Compression::Plain),
            None if data.is_empty() => Err("the file is empty".to_string()),
            _ => {
                let head: Vec<String> = data.iter().take(6).map(|b| format!("{b:02x}")).collect();
                Err(format!(
                    "unknown compression format (first bytes {}); expected gzip, xz, zstd, bzip2 or plain XML",
                    head.join(" ")
                ))
            }
        }
    }
}

/// Largest decompressed metadata file accepted when repomd.xml declares no
/// `open-size` (and the most accepted even if it declares more). Fedora's
/// complete file lists are under 1 GiB decompressed.
pub const DECOMPRESSED_MAX: u64 = 4 << 30;

/// Longest run of decompressed bytes without `<` or `>` accepted: the
/// longest text or tag the XML parser would have to hold in memory at
/// once. Real metadata has no text longer than a changelog entry; a file
/// of gigabytes of zeros stops here, long before it fills memory.
pub const MARKUP_RUN_MAX: u64 = 16 << 20;

/// Streams the decompressed content of `data`, failing (with an I/O error
/// the caller reports as a decompression error of its file) once more than
/// `limit` bytes come out, or a run longer than [`MARKUP_RUN_MAX`] bytes
/// without `<` or `>`. `limit` is the declared `open-size`, or
/// [`DECOMPRESSED_MAX`].
pub fn decompress(data: &[u8], limit: u64) -> Result<Box<dyn BufRead + '_>, String> {
    let reader: Box<dyn Read + '_> = match Compression::sniff(data)? {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(data)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?)
        }
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(data)),
        Compression::Plain => Box::new(data),
    };
    let bounded = Bounded {
        inner: reader,
        left: limit,
        limit,
        run: 0,
    };
    Ok(Box::new(BufReader::with_capacity(64 * 1024, bounded)))
}

/// The bounds of [`decompress`], counted as the bytes pass.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
    /// Bytes since the last `<` or `>`.
    run: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        if n as u64 > self.left {
            return Err(io::Error::other(format!(
                "it decompresses to more than {} bytes (the declared open-size, or the cap)",
                self.limit
            )));
        }
        self.left -= n as u64;
        self.run = match memchr::memrchr2(b'<', b'>', got) {
            Some(i) => (n - 1 - i) as u64,
            None => self.run + n as u64,
        };
        if self.run > MARKUP_RUN_MAX {
            return Err(io::Error::other(format!(
                "more than {MARKUP_RUN_MAX} bytes without markup (`<` or `>`); no real metadata has such a text or tag"
            )));
        }
        Ok(n)
    }
}

/// Passes a stream through while hashing it (for `open-checksum`) and
/// remembering whether the underlying reader failed, so a decompression
/// error is reported as such and not as the XML error it causes.
pub struct Tap<R> {
    inner: R,
    hasher: Option<Hasher>,
    failure: Option<String>,
}

impl<R: BufRead> Tap<R> {
    pub fn new(inner: R, hasher: Option<Hasher>) -> Self {
        Tap {
            inner,
            hasher,
            failure: None,
        }
    }

    /// The first read error seen, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Reads what is left (to complete the digest) and returns the digest.
    pub fn finish(mut self) -> io::Result<Option<String>> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.map(Hasher::finish_hex))
    }
}

impl<R: BufRead> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tap<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self.inner.fill_buf() {
            Ok(b) => Ok(b),
            Err(e) => {
                if self.failure.is_none() {
                    self.failure = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    fn consume(&mut self, amt: usize) {
        if let Some(h) = &mut self.hasher {
            if let Ok(b) = self.inner.fill_buf() {
                h.update(&b[..amt]);
            }
        }
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn unpack(data: &[u8]) -> Result<String, String> {
        let mut s = String::new();
        decompress(data, DECOMPRESSED_MAX)?
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn every_format_by_magic() {
        let xml = b"<?xml version=\"1.0\"?><a/>";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(xml).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(xml).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(xml).unwrap();
        for data in [
            gz.finish().unwrap(),
            bz.finish().unwrap(),
            xz.finish().unwrap(),
            zstd::encode_all(&xml[..], 3).unwrap(),
            xml.to_vec(),
        ] {
            assert_eq!(unpack(&data).unwrap().as_bytes(), xml);
        }
    }

    #[test]
    fn truncation_is_a_read_error_in_every_format() {
        let xml = b"<?xml version=\"1.0\"?><a>".repeat(2000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&xml).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&xml).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&xml).unwrap();
        for (name, data) in [
            ("gzip", gz.finish().unwrap()),
            ("bzip2", bz.finish().unwrap()),
            ("xz", xz.finish().unwrap()),
            ("zstd", zstd::encode_all(&xml[..], 3).unwrap()),
        ] {
            let cut = &data[..data.len() * 2 / 3];
            assert!(unpack(cut).is_err(), "{name}: truncation not detected");
        }
    }

    #[test]
    fn unknown_format_is_named() {
        let err = unpack(b"PK\x03\x04zip").unwrap_err();
        assert!(err.contains("unknown compression format"), "{err}");
        assert!(unpack(b"").unwrap_err().contains("empty"));
    }

    #[test]
    fn decompression_is_bounded() {
        let xml = b"<a>x</a>".repeat(1000);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&xml).unwrap();
            e.finish().unwrap()
        };
        let read = |data: &[u8], limit| -> Result<usize, String> {
            let mut out = Vec::new();
            decompress(data, limit)?
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())
        };
        for data in [&gz[..], &xml[..]] {
            assert_eq!(read(data, 8000).unwrap(), 8000);
            let err = read(data, 7999).unwrap_err();
            assert!(err.contains("more than 7999 bytes"), "{err}");
        }
        // Zeros without markup stop at the run bound, not at the size cap.
        let zeros = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b"<a>").unwrap();
            let chunk = vec![0u8; 1 << 20];
            for _ in 0..(MARKUP_RUN_MAX >> 20) + 2 {
                e.write_all(&chunk).unwrap();
            }
            e.finish().unwrap()
        };
        let err = read(&zeros, DECOMPRESSED_MAX).unwrap_err();
        assert!(err.contains("without markup"), "{err}");
    }

    #[test]
    fn tap_hashes_what_passes() {
        let data = b"hello world".repeat(10_000);
        let mut tap = Tap::new(&data[..], Hasher::new("sha256"));
        let mut first = [0u8; 7];
        tap.read_exact(&mut first).unwrap();
        let mut h = Hasher::new("sha256").unwrap();
        h.update(&data);
        assert_eq!(tap.finish().unwrap().unwrap(), h.finish_hex());
    }
}

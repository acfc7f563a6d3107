//! Initrd compression: the three formats the spec offers, each set up so
//! the output depends only on the input bytes and the Linux decompressors
//! accept it.

use super::Error;
use std::io::{self, Write};

/// A compression the spec can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// Parses the spec's `compression` value; the error lists the choices.
    pub fn parse(s: &str) -> Result<Compression, Error> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "xz" => Ok(Compression::Xz),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown initrd compression `{other}` (expected gzip, xz or zstd)"
            )
            .into()),
        }
    }

    /// Compresses `data` in memory (an initrd is a few MB).
    pub fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            // No file name, mtime 0: `gzip -n` bytes.
            Compression::Gzip => {
                let mut e = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(Vec::new(), flate2::Compression::best());
                e.write_all(data)?;
                e.finish()
            }
            // The kernel's XZ decoder checks CRC32 (not the default CRC64 on
            // older kernels), as `xz --check=crc32` for initramfs.
            Compression::Xz => {
                let stream =
                    liblzma::stream::Stream::new_easy_encoder(9, liblzma::stream::Check::Crc32)
                        .map_err(io::Error::other)?;
                let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
                e.write_all(data)?;
                e.finish()
            }
            // Single-threaded, so the frame layout never depends on the
            // machine's core count.
            Compression::Zstd => zstd::stream::encode_all(data, 19),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_and_is_stable() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let a = c.compress(&data).unwrap();
            assert_eq!(a, c.compress(&data).unwrap(), "{c:?} is not deterministic");
            let mut back = Vec::new();
            match c {
                Compression::Gzip => flate2::read::GzDecoder::new(&a[..]).read_to_end(&mut back),
                Compression::Xz => liblzma::read::XzDecoder::new(&a[..]).read_to_end(&mut back),
                Compression::Zstd => zstd::stream::read::Decoder::new(&a[..])
                    .unwrap()
                    .read_to_end(&mut back),
            }
            .unwrap();
            assert_eq!(back, data);
        }
        assert!(Compression::parse("lz4")
            .unwrap_err()
            .to_string()
            .contains("lz4"));
    }
}

//! `repodata/repomd.xml`: the index that names (and checksums) the other
//! metadata files of a repository.

use super::xml::{self, attr, Handler, XmlError};
use quick_xml::events::BytesStart;
use quick_xml::Reader;

/// A digest as repomd.xml writes it: `<checksum type="sha256">hex</checksum>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub kind: String,
    pub hex: String,
}

/// One `<data type="…">` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    /// `primary`, `filelists`, `other`, `primary_db`, …
    pub kind: String,
    /// Relative to the repository root (it includes `repodata/`).
    pub href: String,
    /// Digest of the file as stored (compressed).
    pub checksum: Option<Digest>,
    /// Digest of the decompressed content.
    pub open_checksum: Option<Digest>,
    /// `<size>`: bytes of the file as stored, a bound on the download.
    pub size: Option<u64>,
    /// `<open-size>`: bytes after decompression, a bound on decompression.
    pub open_size: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoMd {
    pub data: Vec<DataFile>,
}

impl RepoMd {
    pub fn parse(text: &[u8]) -> Result<RepoMd, XmlError> {
        let mut h = Parse::default();
        xml::read(text, "repomd", &mut h)?;
        Ok(h.md)
    }

    /// The entry of the given type, e.g. `primary`.
    pub fn get(&self, kind: &str) -> Option<&DataFile> {
        self.data.iter().find(|d| d.kind == kind)
    }
}

#[derive(Default)]
struct Parse {
    md: RepoMd,
    /// The `<data>` being read.
    cur: Option<DataFile>,
    /// Which element's text is being collected, and its `type` attribute.
    field: Option<(&'static str, String)>,
}

impl<R> Handler<R> for Parse {
    fn start(
        &mut self,
        reader: &Reader<R>,
        e: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), XmlError> {
        let typ = || Ok::<_, XmlError>(attr(reader, e, b"type")?.unwrap_or_default());
        match e.local_name().as_ref() {
            b"data" => {
                self.cur = Some(DataFile {
                    kind: typ()?,
                    href: String::new(),
                    checksum: None,
                    open_checksum: None,
                    size: None,
                    open_size: None,
                })
            }
            b"location" => {
                if let Some(d) = &mut self.cur {
                    d.href = attr(reader, e, b"href")?.unwrap_or_default();
                }
            }
            b"checksum" if !empty => self.field = Some(("checksum", typ()?)),
            b"open-checksum" if !empty => self.field = Some(("open-checksum", typ()?)),
            b"size" if !empty => self.field = Some(("size", String::new())),
            b"open-size" if !empty => self.field = Some(("open-size", String::new())),
            _ => {}
        }
        Ok(())
    }

    fn collecting(&self) -> bool {
        self.field.is_some()
    }

    fn end(&mut self, reader: &Reader<R>, name: &[u8], text: &str) -> Result<(), XmlError> {
        if name == b"data" {
            self.md.data.extend(self.cur.take());
        }
        let (Some((what, kind)), Some(d)) = (self.field.take(), &mut self.cur) else {
            return Ok(());
        };
        let value = text.trim();
        let digest = || {
            Some(Digest {
                kind: kind.to_ascii_lowercase(),
                hex: value.to_ascii_lowercase(),
            })
        };
        match what {
            "checksum" => d.checksum = digest(),
            "open-checksum" => d.open_checksum = digest(),
            _ => {
                let n = value.parse::<u64>().map_err(|_| {
                    XmlError::at(reader, format!("<{what}> `{value}` is not a number"))
                })?;
                if what == "size" {
                    d.size = Some(n);
                } else {
                    d.open_size = Some(n);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_repomd() {
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/tizen-serranove/repodata/repomd.xml"
        ))
        .expect("shared test data missing: ../shared/data/tizen-serranove");
        let md = RepoMd::parse(&text).unwrap();
        let p = md.get("primary").unwrap();
        assert!(p.href.starts_with("repodata/fd62d77c"));
        assert_eq!(p.checksum.as_ref().unwrap().kind, "sha256");
        assert_eq!(
            p.open_checksum.as_ref().unwrap().hex,
            "727d555b33c6ab93f51e59746b47a1061b1d77eae750833df3298a069208515a"
        );
        assert!(p.size.is_some() && p.open_size > p.size);
        assert!(md.get("filelists").is_some());
        assert!(md.get("primary_db").is_none());
    }

    #[test]
    fn truncated_repomd_is_an_error() {
        let err = RepoMd::parse(b"<repomd><data type=\"primary\">").unwrap_err();
        assert!(err.reason.contains("</repomd>"), "{err:?}");
    }
}

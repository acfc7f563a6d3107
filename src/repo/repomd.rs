//! `repodata/repomd.xml`: the index that names (and checksums) the other
//! metadata files of a repository.

use super::xml::{attr, XmlError};
use quick_xml::events::Event;
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
        let mut reader = Reader::from_reader(text);
        let mut buf = Vec::new();
        let mut md = RepoMd::default();
        let mut cur: Option<DataFile> = None;
        // Which element's text we are collecting, and its `type` attribute.
        let mut field: Option<(&'static str, String)> = None;
        let mut text_acc = String::new();
        let mut closed = false;
        loop {
            let ev = reader
                .read_event_into(&mut buf)
                .map_err(|e| XmlError::syntax(&reader, e))?;
            match ev {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(ev, Event::Empty(_));
                    match e.local_name().as_ref() {
                        b"data" => {
                            cur = Some(DataFile {
                                kind: attr(&reader, e, b"type")?.unwrap_or_default(),
                                href: String::new(),
                                checksum: None,
                                open_checksum: None,
                                size: None,
                                open_size: None,
                            })
                        }
                        b"location" => {
                            if let Some(d) = &mut cur {
                                d.href = attr(&reader, e, b"href")?.unwrap_or_default();
                            }
                        }
                        b"checksum" if !empty => {
                            field =
                                Some(("checksum", attr(&reader, e, b"type")?.unwrap_or_default()))
                        }
                        b"open-checksum" if !empty => {
                            field = Some((
                                "open-checksum",
                                attr(&reader, e, b"type")?.unwrap_or_default(),
                            ))
                        }
                        b"size" if !empty => field = Some(("size", String::new())),
                        b"open-size" if !empty => field = Some(("open-size", String::new())),
                        _ => {}
                    }
                    text_acc.clear();
                }
                Event::Text(t) => text_acc.push_str(
                    &t.xml_content()
                        .map_err(|e| XmlError::at(&reader, e.to_string()))?,
                ),
                Event::GeneralRef(r) => super::xml::push_ref(&reader, &r, &mut text_acc)?,
                Event::End(e) => {
                    match e.local_name().as_ref() {
                        b"data" => md.data.extend(cur.take()),
                        b"repomd" => closed = true,
                        _ => {}
                    }
                    if let Some((what, kind)) = field.take() {
                        let value = text_acc.trim().to_string();
                        match (what, &mut cur) {
                            ("checksum", Some(d)) => {
                                d.checksum = Some(Digest {
                                    kind: kind.to_ascii_lowercase(),
                                    hex: value.to_ascii_lowercase(),
                                })
                            }
                            ("open-checksum", Some(d)) => {
                                d.open_checksum = Some(Digest {
                                    kind: kind.to_ascii_lowercase(),
                                    hex: value.to_ascii_lowercase(),
                                })
                            }
                            ("size" | "open-size", Some(d)) => {
                                let n = value.parse::<u64>().map_err(|_| {
                                    XmlError::at(
                                        &reader,
                                        format!("<{what}> `{value}` is not a number"),
                                    )
                                })?;
                                if what == "size" {
                                    d.size = Some(n);
                                } else {
                                    d.open_size = Some(n);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if !closed {
            return Err(XmlError::truncated(&reader, "repomd"));
        }
        Ok(md)
    }

    /// The entry of the given type, e.g. `primary`.
    pub fn get(&self, kind: &str) -> Option<&DataFile> {
        self.data.iter().find(|d| d.kind == kind)
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

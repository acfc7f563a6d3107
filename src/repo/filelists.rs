//! Streaming parser for `filelists.xml`, keeping only the paths asked for.
//!
//! primary lists just the "interesting" files (`/usr/bin/*`, `/etc/*`...);
//! a dependency on any other path can only be resolved from filelists,
//! which is several times larger. So it is read on demand, for a given set
//! of paths, and only matching files are added to the pool.

use super::xml::{attr, push_ref, XmlError};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::collections::HashSet;
use std::io::BufRead;

/// A package of filelists, identified as primary identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOwner {
    /// The package checksum (`pkgid`), as in primary's `<checksum>`.
    pub pkgid: String,
    pub name: String,
    pub arch: String,
}

/// Calls `found(owner, path)` for every listed file whose path is in
/// `wanted`.
pub fn scan_filelists(
    input: impl BufRead,
    wanted: &HashSet<&str>,
    mut found: impl FnMut(&FileOwner, &str),
) -> Result<(), XmlError> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::with_capacity(4096);
    let mut owner: Option<FileOwner> = None;
    let mut in_file = false;
    let mut text = String::new();
    let mut closed = false;
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlError::syntax(&reader, e))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                match e.local_name().as_ref() {
                    b"package" => {
                        let get = |key: &[u8]| -> Result<String, XmlError> {
                            attr(&reader, e, key)?.ok_or_else(|| {
                                XmlError::at(
                                    &reader,
                                    format!("<package> without `{}`", String::from_utf8_lossy(key)),
                                )
                            })
                        };
                        owner = Some(FileOwner {
                            pkgid: get(b"pkgid")?.to_ascii_lowercase(),
                            name: get(b"name")?,
                            arch: get(b"arch").unwrap_or_default(),
                        });
                    }
                    b"file" if !empty => in_file = owner.is_some(),
                    _ => {}
                }
                text.clear();
            }
            Event::Text(t) if in_file => text.push_str(
                &t.decode()
                    .map_err(|e| XmlError::at(&reader, e.to_string()))?,
            ),
            Event::GeneralRef(r) if in_file => push_ref(&reader, &r, &mut text)?,
            Event::End(e) => {
                match e.local_name().as_ref() {
                    b"file" if in_file => {
                        if let Some(o) = &owner {
                            if wanted.contains(text.as_str()) {
                                found(o, &text);
                            }
                        }
                    }
                    b"package" => owner = None,
                    b"filelists" => closed = true,
                    _ => {}
                }
                in_file = false;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !closed {
        return Err(XmlError::truncated(&reader, "filelists"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_wanted_paths() {
        let doc = br#"<?xml version="1.0"?>
<filelists xmlns="http://linux.duke.edu/metadata/filelists" packages="2">
<package pkgid="AB12" name="a" arch="x86_64"><version epoch="0" ver="1" rel="1"/>
  <file>/usr/lib/a&amp;b.so</file><file type="dir">/usr/share/a</file></package>
<package pkgid="cd34" name="b" arch="noarch"><version epoch="0" ver="1" rel="1"/>
  <file>/usr/share/b</file></package>
</filelists>"#;
        let wanted: HashSet<&str> = ["/usr/lib/a&b.so", "/usr/share/b", "/nope"].into();
        let mut hits = Vec::new();
        scan_filelists(&doc[..], &wanted, |o, p| {
            hits.push((o.pkgid.clone(), o.name.clone(), p.to_string()))
        })
        .unwrap();
        assert_eq!(
            hits,
            [
                ("ab12".into(), "a".into(), "/usr/lib/a&b.so".into()),
                ("cd34".into(), "b".into(), "/usr/share/b".into())
            ]
        );
        let cut = &doc[..doc.len() - "</filelists>".len()];
        let err = scan_filelists(cut, &wanted, |_, _| {}).unwrap_err();
        assert!(err.reason.contains("</filelists>"), "{err:?}");
    }
}

//! Streaming parser for `filelists.xml`, keeping only the paths asked for.
//!
//! primary lists just the "interesting" files (`/usr/bin/*`, `/etc/*`...);
//! a dependency on any other path can only be resolved from filelists,
//! which is several times larger. So it is read on demand, for a given set
//! of paths, and only matching files are added to the pool.

use super::xml::{self, attr, Handler, XmlError};
use quick_xml::events::BytesStart;
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
    found: impl FnMut(&FileOwner, &str),
) -> Result<(), XmlError> {
    let mut h = Scan {
        wanted,
        found,
        owner: None,
        in_file: false,
    };
    xml::read(input, "filelists", &mut h)
}

struct Scan<'w, F> {
    wanted: &'w HashSet<&'w str>,
    found: F,
    /// The `<package>` being read.
    owner: Option<FileOwner>,
    /// Inside a `<file>` of a package.
    in_file: bool,
}

impl<R, F: FnMut(&FileOwner, &str)> Handler<R> for Scan<'_, F> {
    fn start(
        &mut self,
        reader: &Reader<R>,
        e: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), XmlError> {
        match e.local_name().as_ref() {
            b"package" => {
                let get = |key: &[u8]| -> Result<String, XmlError> {
                    attr(reader, e, key)?.ok_or_else(|| {
                        XmlError::at(
                            reader,
                            format!("<package> without `{}`", String::from_utf8_lossy(key)),
                        )
                    })
                };
                self.owner = Some(FileOwner {
                    pkgid: get(b"pkgid")?.to_ascii_lowercase(),
                    name: get(b"name")?,
                    arch: get(b"arch").unwrap_or_default(),
                });
            }
            b"file" if !empty => self.in_file = self.owner.is_some(),
            _ => {}
        }
        Ok(())
    }

    fn collecting(&self) -> bool {
        self.in_file
    }

    fn end(&mut self, _: &Reader<R>, name: &[u8], text: &str) -> Result<(), XmlError> {
        match name {
            b"file" if self.in_file => {
                if let Some(o) = &self.owner {
                    if self.wanted.contains(text) {
                        (self.found)(o, text);
                    }
                }
            }
            b"package" => self.owner = None,
            _ => {}
        }
        self.in_file = false;
        Ok(())
    }
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

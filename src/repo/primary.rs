//! Streaming parser for `primary.xml`: one pass over quick-xml events, no
//! DOM, names interned as they are read. Memory is the pool being built plus
//! one reused event buffer, whatever the size of the document.

use super::evr::{Evr, Op, Range};
use super::model::{Checksum, Dep, Package, Pool, RepoId, SimpleDep};
use super::rich::parse_rich;
use super::xml::{self, Handler, XmlError};
use quick_xml::events::BytesStart;
use quick_xml::Reader;
use std::borrow::Cow;
use std::io::BufRead;

/// Which dependency list `rpm:entry` elements currently go to. Weak
/// dependencies (recommends, suggests, ...) are not part of the model: the
/// solver installs exactly the hard closure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    None,
    Provides,
    Requires,
    Conflicts,
    Obsoletes,
    Ignored,
}

/// Which element's text is being collected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    None,
    Name,
    Arch,
    Checksum,
    File,
}

/// A package whose mandatory fields are still being read.
#[derive(Default)]
struct Partial {
    name: Option<String>,
    arch: Option<String>,
    evr: Option<Evr>,
    checksum_kind: String,
    checksum: Option<String>,
    location: Option<String>,
    size_package: u64,
    size_installed: u64,
    provides: Vec<SimpleDep>,
    requires: Vec<Dep>,
    conflicts: Vec<Dep>,
    obsoletes: Vec<Dep>,
    files: Vec<super::model::NameId>,
}

/// Parses a primary document into `pool`, tagging packages with `repo`.
/// Source packages (`src`, `nosrc`) are skipped: nothing installs them.
/// Returns the number of packages added.
pub fn parse_primary(
    input: impl BufRead,
    pool: &mut Pool,
    repo: RepoId,
) -> Result<usize, XmlError> {
    let mut h = Parse {
        pool,
        repo,
        collecting: Text::None,
        list: List::None,
        pkg: None,
        added: 0,
    };
    xml::read(input, "metadata", &mut h)?;
    Ok(h.added)
}

struct Parse<'p> {
    pool: &'p mut Pool,
    repo: RepoId,
    collecting: Text,
    list: List,
    /// The `<package>` being read.
    pkg: Option<Partial>,
    added: usize,
}

impl<R> Handler<R> for Parse<'_> {
    fn start(
        &mut self,
        reader: &Reader<R>,
        e: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), XmlError> {
        let local = e.local_name();
        match (local.as_ref(), self.pkg.as_mut()) {
            (b"package", None) => {
                self.pkg = Some(Partial::default());
                if empty {
                    return Err(XmlError::at(reader, "empty <package/>".into()));
                }
            }
            (b"package", Some(_)) => {
                return Err(XmlError::at(reader, "<package> inside <package>".into()))
            }
            (_, None) => {}
            (b"entry", Some(p)) if self.list != List::None && self.list != List::Ignored => {
                entry(reader, e, self.pool, p, self.list)?;
            }
            (b"provides", _) => self.list = List::Provides,
            (b"requires", _) => self.list = List::Requires,
            (b"conflicts", _) => self.list = List::Conflicts,
            (b"obsoletes", _) => self.list = List::Obsoletes,
            (b"recommends" | b"suggests" | b"supplements" | b"enhances", _) => {
                self.list = List::Ignored
            }
            (b"version", Some(p)) => {
                let (epoch, ver, rel) = evr_attrs(reader, e)?;
                let ver =
                    ver.ok_or_else(|| XmlError::at(reader, "<version> without `ver`".into()))?;
                p.evr = Some(Evr::new(epoch, &ver, rel.as_deref()));
            }
            (b"location", Some(p)) => {
                let (mut href, mut base) = (None, None);
                for a in e.attributes() {
                    let a = a.map_err(|err| XmlError::at(reader, err.to_string()))?;
                    match a.key.as_ref() {
                        b"href" => href = Some(value(reader, &a)?.into_owned()),
                        b"xml:base" => base = Some(value(reader, &a)?.into_owned()),
                        _ => {}
                    }
                }
                let href =
                    href.ok_or_else(|| XmlError::at(reader, "<location> without `href`".into()))?;
                p.location = Some(match base {
                    Some(b) if !b.is_empty() => {
                        format!("{}/{}", b.trim_end_matches('/'), href)
                    }
                    _ => href,
                });
            }
            (b"size", Some(p)) => {
                for a in e.attributes() {
                    let a = a.map_err(|err| XmlError::at(reader, err.to_string()))?;
                    let slot = match a.key.as_ref() {
                        b"package" => &mut p.size_package,
                        b"installed" => &mut p.size_installed,
                        _ => continue,
                    };
                    let v = value(reader, &a)?;
                    *slot = v
                        .trim()
                        .parse()
                        .map_err(|_| XmlError::at(reader, format!("invalid size `{v}`")))?;
                }
            }
            (b"checksum", Some(p)) if !empty => {
                for a in e.attributes() {
                    let a = a.map_err(|err| XmlError::at(reader, err.to_string()))?;
                    if a.key.as_ref() == b"type" {
                        p.checksum_kind = value(reader, &a)?.to_ascii_lowercase();
                    }
                }
                self.collecting = Text::Checksum;
            }
            (b"name", Some(_)) if !empty => self.collecting = Text::Name,
            (b"arch", Some(_)) if !empty => self.collecting = Text::Arch,
            (b"file", Some(_)) if !empty => self.collecting = Text::File,
            _ => {}
        }
        Ok(())
    }

    fn collecting(&self) -> bool {
        self.collecting != Text::None
    }

    fn end(&mut self, reader: &Reader<R>, name: &[u8], text: &str) -> Result<(), XmlError> {
        match name {
            b"package" => {
                if let Some(p) = self.pkg.take() {
                    if finish(reader, p, self.pool, self.repo)? {
                        self.added += 1;
                    }
                }
            }
            b"provides" | b"requires" | b"conflicts" | b"obsoletes" | b"recommends"
            | b"suggests" | b"supplements" | b"enhances" => self.list = List::None,
            _ => {}
        }
        if let Some(p) = self.pkg.as_mut() {
            match self.collecting {
                Text::Name => p.name = Some(text.trim().to_string()),
                Text::Arch => p.arch = Some(text.trim().to_string()),
                Text::Checksum => p.checksum = Some(text.trim().to_ascii_lowercase()),
                Text::File => p.files.push(self.pool.intern(text)),
                Text::None => {}
            }
        }
        self.collecting = Text::None;
        Ok(())
    }
}

fn value<'a, R>(
    reader: &Reader<R>,
    a: &quick_xml::events::attributes::Attribute<'a>,
) -> Result<Cow<'a, str>, XmlError> {
    a.decode_and_unescape_value(reader.decoder())
        .map_err(|e| XmlError::at(reader, e.to_string()))
}

/// `epoch`, `ver`, `rel` attributes (a missing epoch is 0).
fn evr_attrs<R>(
    reader: &Reader<R>,
    e: &BytesStart<'_>,
) -> Result<(u64, Option<String>, Option<String>), XmlError> {
    let (mut epoch, mut ver, mut rel) = (0u64, None, None);
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError::at(reader, err.to_string()))?;
        match a.key.as_ref() {
            b"epoch" => {
                let v = value(reader, &a)?;
                if !v.is_empty() {
                    epoch = v
                        .parse()
                        .map_err(|_| XmlError::at(reader, format!("invalid epoch `{v}`")))?;
                }
            }
            b"ver" => ver = Some(value(reader, &a)?.into_owned()),
            b"rel" => rel = Some(value(reader, &a)?.into_owned()),
            _ => {}
        }
    }
    Ok((epoch, ver, rel))
}

/// One `<rpm:entry name flags epoch ver rel pre/>`. `pre` only orders
/// installation; it does not change what is required, so it is ignored.
fn entry<R>(
    reader: &Reader<R>,
    e: &BytesStart<'_>,
    pool: &mut Pool,
    p: &mut Partial,
    list: List,
) -> Result<(), XmlError> {
    let (mut name, mut flags) = (None, None);
    let (mut epoch, mut ver, mut rel) = (0u64, None, None);
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError::at(reader, err.to_string()))?;
        match a.key.as_ref() {
            b"name" => name = Some(value(reader, &a)?),
            b"flags" => flags = Some(value(reader, &a)?),
            b"epoch" => {
                let v = value(reader, &a)?;
                if !v.is_empty() {
                    epoch = v
                        .parse()
                        .map_err(|_| XmlError::at(reader, format!("invalid epoch `{v}`")))?;
                }
            }
            b"ver" => ver = Some(value(reader, &a)?),
            b"rel" => rel = Some(value(reader, &a)?),
            _ => {}
        }
    }
    let name = name.ok_or_else(|| XmlError::at(reader, "<rpm:entry> without `name`".into()))?;
    // A flag without a version (seen in old repodata) constrains nothing.
    let range = match (flags, ver) {
        (Some(f), Some(v)) => {
            let op = Op::from_repodata(&f)
                .ok_or_else(|| XmlError::at(reader, format!("unknown flags `{f}` on `{name}`")))?;
            Some(Box::new(Range {
                op,
                evr: Evr::new(epoch, &v, rel.as_deref()),
            }))
        }
        _ => None,
    };
    if list == List::Provides {
        p.provides.push(SimpleDep {
            name: pool.intern(&name),
            range,
        });
        return Ok(());
    }
    let dep = if name.starts_with('(') {
        let rich = parse_rich(&name, &mut pool.names).map_err(|err| {
            let pkg = p.name.as_deref().unwrap_or("?");
            XmlError::at(reader, format!("package `{pkg}`: {err}"))
        })?;
        Dep::Rich(Box::new(rich))
    } else {
        Dep::Simple(SimpleDep {
            name: pool.intern(&name),
            range,
        })
    };
    match list {
        List::Requires => p.requires.push(dep),
        List::Conflicts => p.conflicts.push(dep),
        _ => p.obsoletes.push(dep),
    }
    Ok(())
}

/// Checks the mandatory fields and adds the package; false for a skipped
/// source package.
fn finish<R>(
    reader: &Reader<R>,
    p: Partial,
    pool: &mut Pool,
    repo: RepoId,
) -> Result<bool, XmlError> {
    let missing = |what: &str| {
        let who = p
            .name
            .as_deref()
            .map(|n| format!(" `{n}`"))
            .unwrap_or_default();
        XmlError::at(reader, format!("package{who} has no {what}"))
    };
    let name = p.name.as_deref().ok_or_else(|| missing("<name>"))?;
    let arch = p.arch.as_deref().ok_or_else(|| missing("<arch>"))?;
    if arch == "src" || arch == "nosrc" {
        return Ok(false);
    }
    let evr = p.evr.clone().ok_or_else(|| missing("<version>"))?;
    let location = p.location.clone().ok_or_else(|| missing("<location>"))?;
    let checksum = p.checksum.clone().ok_or_else(|| missing("<checksum>"))?;
    let package = Package {
        name: pool.intern(name),
        evr,
        arch: pool.intern(arch),
        repo,
        provides: p.provides,
        requires: p.requires,
        conflicts: p.conflicts,
        obsoletes: p.obsoletes,
        files: p.files,
        location: location.into(),
        checksum: Checksum {
            kind: p.checksum_kind.as_str().into(),
            hex: checksum.into(),
        },
        size_package: p.size_package,
        size_installed: p.size_installed,
    };
    pool.add_package(package);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::model::Rich;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>foo</name>
  <arch>x86_64</arch>
  <version ver="1.0" rel="2"/>
  <checksum type="SHA256" pkgid="YES">ABCD</checksum>
  <summary>a &lt;summary&gt; that is &amp; ignored</summary>
  <size package="10" installed="20" archive="30"/>
  <location xml:base="http://mirror/os/" href="Packages/foo-1.0-2.x86_64.rpm"/>
  <format>
    <rpm:provides>
      <rpm:entry name="foo" flags="EQ" epoch="0" ver="1.0" rel="2"/>
      <rpm:entry name="libfoo.so.1()(64bit)"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="/bin/sh" pre="1"/>
      <rpm:entry name="bar" flags="GE" epoch="3" ver="2.0"/>
      <rpm:entry name="(baz &gt;= 1 or qux)"/>
    </rpm:requires>
    <rpm:recommends>
      <rpm:entry name="weak"/>
    </rpm:recommends>
    <rpm:obsoletes>
      <rpm:entry name="foo-old" flags="LT" ver="1.0"/>
    </rpm:obsoletes>
    <file>/usr/bin/f&amp;o</file>
    <file type="dir">/etc/foo</file>
    <file><![CDATA[/usr/share/<cdata>]]></file>
  </format>
</package>
<package type="rpm">
  <name>foo</name>
  <arch>src</arch>
  <version epoch="0" ver="1.0" rel="2"/>
  <checksum type="sha256" pkgid="YES">ef01</checksum>
  <location href="SRPMS/foo-1.0-2.src.rpm"/>
</package>
</metadata>"#;

    #[test]
    fn reads_every_field() {
        let mut pool = Pool::default();
        assert_eq!(
            parse_primary(DOC.as_bytes(), &mut pool, RepoId(3)).unwrap(),
            1
        );
        let p = &pool.packages[0];
        assert_eq!(pool.name(p.name), "foo");
        assert_eq!(p.evr, Evr::new(0, "1.0", Some("2")));
        assert_eq!(p.repo, RepoId(3));
        assert_eq!(&*p.checksum.kind, "sha256");
        assert_eq!(&*p.checksum.hex, "abcd");
        assert_eq!((p.size_package, p.size_installed), (10, 20));
        assert_eq!(
            &*p.location,
            "http://mirror/os/Packages/foo-1.0-2.x86_64.rpm"
        );
        let deps: Vec<String> = p.requires.iter().map(|d| pool.dep_to_string(d)).collect();
        // `pre` is dropped, a missing epoch is 0, weak deps are not kept.
        assert_eq!(deps, ["/bin/sh", "bar >= 3:2.0", "(baz >= 1 or qux)"]);
        assert!(matches!(&p.requires[2], Dep::Rich(r) if matches!(**r, Rich::Or(_))));
        assert_eq!(pool.dep_to_string(&p.obsoletes[0]), "foo-old < 1.0");
        assert_eq!(p.provides.len(), 2);
        assert!(p.provides[1].range.is_none());
        let files: Vec<&str> = p.files.iter().map(|&f| pool.name(f)).collect();
        assert_eq!(files, ["/usr/bin/f&o", "/etc/foo", "/usr/share/<cdata>"]);
        assert!(pool.names.get("weak").is_none());
    }

    #[test]
    fn bad_flags_are_an_error() {
        let doc = DOC.replace("flags=\"GE\"", "flags=\"XX\"");
        let err = parse_primary(doc.as_bytes(), &mut Pool::default(), RepoId(0)).unwrap_err();
        assert!(
            err.reason.contains("unknown flags `XX` on `bar`"),
            "{err:?}"
        );
        assert!(!err.syntax);
    }
}

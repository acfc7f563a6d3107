//! The one event loop of the streaming repodata parsers ([`read`] driving
//! a [`Handler`]) and the small helpers they share.
//!
//! Each parser (repomd, primary, filelists) says only what an element's
//! start and end mean to it; reading events, collecting text (entities and
//! CDATA included), and noticing a document that ends before its root
//! element closes happen here, once.

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;
use std::io::BufRead;

/// What one kind of document does with its elements.
pub trait Handler<R> {
    /// `<name …>`, or `<name …/>` when `empty` (no end follows).
    fn start(
        &mut self,
        reader: &Reader<R>,
        e: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), XmlError>;
    /// Whether the text read now belongs to an element the handler reads;
    /// other text is skipped without being decoded.
    fn collecting(&self) -> bool;
    /// `</name>` (local name), with the text collected since the last
    /// start tag.
    fn end(&mut self, reader: &Reader<R>, name: &[u8], text: &str) -> Result<(), XmlError>;
}

/// Reads a whole document into `h`. A document whose `</root>` never
/// came is truncated, whatever `h` made of it.
pub fn read<R: BufRead>(input: R, root: &str, h: &mut impl Handler<R>) -> Result<(), XmlError> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::with_capacity(4096);
    let mut text = String::new();
    let mut closed = false;
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlError::syntax(&reader, e))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                h.start(&reader, e, matches!(ev, Event::Empty(_)))?;
                text.clear();
            }
            Event::Text(t) if h.collecting() => text.push_str(
                &t.decode()
                    .map_err(|e| XmlError::at(&reader, e.to_string()))?,
            ),
            Event::GeneralRef(r) if h.collecting() => push_ref(&reader, &r, &mut text)?,
            Event::CData(c) if h.collecting() => text.push_str(
                &c.decode()
                    .map_err(|e| XmlError::at(&reader, e.to_string()))?,
            ),
            Event::End(e) => {
                let name = e.local_name();
                closed |= name.as_ref() == root.as_bytes();
                h.end(&reader, name.as_ref(), &text)?;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !closed {
        return Err(XmlError::truncated(&reader, root));
    }
    Ok(())
}

/// A parse failure at a byte offset of the (decompressed) document. The
/// caller turns the offset into a line and column with [`line_col`] and
/// names the repository and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub offset: u64,
    pub reason: String,
    /// True when the document is not well-formed XML; false when it is
    /// well-formed but says something repodata must not (a bad epoch, a
    /// package without a name, an unparsable rich dependency).
    pub syntax: bool,
}

impl XmlError {
    /// An error about the event just read (the reader is past it).
    pub fn at<R>(reader: &Reader<R>, reason: String) -> XmlError {
        XmlError {
            offset: reader.buffer_position(),
            reason,
            syntax: false,
        }
    }

    /// The document ended before its root element was closed.
    pub fn truncated<R>(reader: &Reader<R>, root: &str) -> XmlError {
        XmlError {
            offset: reader.buffer_position(),
            reason: format!("unexpected end of file before </{root}> (is the file truncated?)"),
            syntax: true,
        }
    }

    /// A syntax error reported by quick-xml, at the position it names.
    pub fn syntax<R>(reader: &Reader<R>, err: quick_xml::Error) -> XmlError {
        XmlError {
            offset: reader.error_position(),
            reason: err.to_string(),
            syntax: true,
        }
    }
}

/// The value of attribute `name` (full qualified name), unescaped.
pub fn attr<R>(
    reader: &Reader<R>,
    e: &BytesStart<'_>,
    name: &[u8],
) -> Result<Option<String>, XmlError> {
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError::at(reader, err.to_string()))?;
        if a.key.as_ref() == name {
            let v = a
                .decode_and_unescape_value(reader.decoder())
                .map_err(|err| XmlError::at(reader, err.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Appends the text an entity or character reference (`&amp;`, `&#38;`)
/// stands for. quick-xml reports references in text as separate events.
pub fn push_ref<R>(reader: &Reader<R>, r: &BytesRef<'_>, out: &mut String) -> Result<(), XmlError> {
    if let Some(c) = r
        .resolve_char_ref()
        .map_err(|e| XmlError::at(reader, e.to_string()))?
    {
        out.push(c);
        return Ok(());
    }
    let name = r
        .decode()
        .map_err(|e| XmlError::at(reader, e.to_string()))?;
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(s) => {
            out.push_str(s);
            Ok(())
        }
        None => Err(XmlError::at(reader, format!("unknown entity `&{name};`"))),
    }
}

/// 1-based line and column of byte `offset` in `stream`. Only called on the
/// error path, so it simply re-reads the document up to the offset.
pub fn line_col(mut stream: impl BufRead, offset: u64) -> (u64, u64) {
    let (mut line, mut col) = (1u64, 1u64);
    let mut left = offset;
    let mut buf = [0u8; 64 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                line += 1;
                col = 1;
            } else if b & 0xc0 != 0x80 {
                // Count characters, not UTF-8 continuation bytes.
                col += 1;
            }
        }
        left -= n as u64;
    }
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let doc = b"<a>\n  <b>\n  </c>";
        assert_eq!(line_col(&doc[..], 0), (1, 1));
        assert_eq!(line_col(&doc[..], 4), (2, 1));
        assert_eq!(line_col(&doc[..], 12), (3, 3));
    }
}

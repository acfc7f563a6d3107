//! Short strings stored inline: the versions and releases of package
//! labels and dependency ranges.
//!
//! A universe of 12,000 packages carries a few hundred thousand versioned
//! dependencies, each with a version and a release of a dozen bytes. As
//! `Box<str>` each one was an allocation when the metadata cache was read
//! and a free when the universe was dropped: together the larger part of a
//! warm `eval`. Strings up to [`INLINE`] bytes live in the value itself.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Longest string kept inline (the value is 24 bytes either way).
pub const INLINE: usize = 22;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

/// An immutable string, inline when short. Compares, hashes, prints and
/// serialises as the `str` it holds.
#[derive(Clone)]
pub struct Label(Repr);

impl Label {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: `bytes[..len]` is only ever written by `from`, as a
            // copy of a whole `&str`, so it is valid UTF-8. (Checking it at
            // every access would cost the solver's version comparisons.)
            Repr::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..*len as usize])
            },
            Repr::Heap(s) => s,
        }
    }
}

impl From<&str> for Label {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Label(Repr::Inline {
                len: s.len() as u8,
                bytes,
            })
        } else {
            Label(Repr::Heap(s.into()))
        }
    }
}

impl Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Label {}

impl PartialEq<str> for Label {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Hash for Label {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Label;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            // Borrowed or not, the bytes are copied once, into the value
            // when they fit.
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Label, E> {
                Ok(Label::from(s))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_strings_behave_as_str() {
        let long = "1.2.3.4.5.6.7.8.9.10.11.12";
        for s in ["", "1.0", "x".repeat(INLINE).as_str(), long] {
            let l = Label::from(s);
            assert_eq!(&*l, s);
            assert_eq!(l.to_string(), s);
            assert_eq!(l, Label::from(s));
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<Label>(&json).unwrap(), l);
            let bin = postcard::to_stdvec(&l).unwrap();
            assert_eq!(bin, postcard::to_stdvec(s).unwrap());
            assert_eq!(postcard::from_bytes::<Label>(&bin).unwrap(), l);
        }
        assert!(matches!(Label::from("1.0").0, Repr::Inline { .. }));
        assert!(matches!(Label::from(long).0, Repr::Heap(_)));
        assert_ne!(Label::from("1.0"), Label::from("1.00"));
        assert_eq!(std::mem::size_of::<Label>(), 24);
        assert_eq!(std::mem::size_of::<Option<Label>>(), 24);
    }
}

//! Derivations: what to build, from what, with which builder.
//!
//! A derivation's id is the blake3 hash of its canonical serialisation
//! (store-layout.md, section 1): compact JSON with sorted keys, prefixed by a
//! format tag. Spans, comments and field order in the spec never reach it, so
//! they never change an id; every value that can change an output does.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;

/// Prefix of the hashed bytes; bump when the serialisation changes.
pub const FORMAT: &str = "cvmbuild-drv-1\n";

/// A derivation id: 64 lowercase hex digits of blake3.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DrvId(pub String);

impl DrvId {
    /// The first 12 digits, for humans (like git's short hashes).
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl fmt::Display for DrvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who builds a derivation. Builtins carry a version that is bumped when
/// their output for the same inputs changes; external tools carry the
/// version the tool reported, so upgrading a tool rebuilds what it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Builder {
    Builtin { name: String, version: u32 },
    External { tool: String, version: String },
}

impl Builder {
    pub fn builtin(name: &str, version: u32) -> Self {
        Builder::Builtin {
            name: name.into(),
            version,
        }
    }
}

impl fmt::Display for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Builder::Builtin { name, version } => write!(f, "builtin:{name}@{version}"),
            Builder::External { tool, version } => write!(f, "{tool} {version}"),
        }
    }
}

/// An input of a derivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Input {
    /// The output of another derivation.
    Drv { id: DrvId },
    /// A file or metadata identified by content: `hash` is blake3 hex of
    /// the bytes; `origin` says where it came from (relative to the spec
    /// for spec-local files, a URL for repositories).
    Source { hash: String, origin: String },
}

/// One node of the build graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derivation {
    /// Human label, unique within a graph (`extract:bash-4.1.2-15.el6.x86_64`).
    pub name: String,
    pub builder: Builder,
    /// Inputs by role name; sorted so the serialisation is canonical.
    pub inputs: BTreeMap<String, Input>,
    /// Builder parameters: a JSON object (serde_json's map is a BTreeMap, so
    /// keys serialise sorted).
    pub params: Json,
    /// Output names (`out` for all builtins today).
    pub outputs: Vec<String>,
}

impl Derivation {
    pub fn new(name: impl Into<String>, builder: Builder, params: Json) -> Self {
        Derivation {
            name: name.into(),
            builder,
            inputs: BTreeMap::new(),
            params,
            outputs: vec!["out".into()],
        }
    }

    pub fn input_drv(mut self, role: impl Into<String>, id: &DrvId) -> Self {
        self.inputs
            .insert(role.into(), Input::Drv { id: id.clone() });
        self
    }

    pub fn input_source(
        mut self,
        role: impl Into<String>,
        hash: impl Into<String>,
        origin: impl Into<String>,
    ) -> Self {
        self.inputs.insert(
            role.into(),
            Input::Source {
                hash: hash.into(),
                origin: origin.into(),
            },
        );
        self
    }

    /// The exact bytes that are hashed into the id.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = FORMAT.as_bytes().to_vec();
        self.write_canonical(&mut out);
        out
    }

    /// Compact JSON with every object's keys sorted, written field by
    /// field: the same bytes as serialising [`to_value`](serde_json::to_value)
    /// of the derivation (which sorts struct fields too), without copying
    /// the parameters and inputs into a `Value` tree first. An evaluation
    /// hashes thousands of derivations, and that copy was most of it.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"builder\":");
        match &self.builder {
            Builder::Builtin { name, version } => {
                out.extend_from_slice(b"{\"kind\":\"builtin\",\"name\":");
                put(out, name);
                out.extend_from_slice(b",\"version\":");
                put(out, version);
            }
            Builder::External { tool, version } => {
                out.extend_from_slice(b"{\"kind\":\"external\",\"tool\":");
                put(out, tool);
                out.extend_from_slice(b",\"version\":");
                put(out, version);
            }
        }
        out.extend_from_slice(b"},\"inputs\":{");
        for (i, (role, input)) in self.inputs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put(out, role);
            match input {
                Input::Drv { id } => {
                    out.extend_from_slice(b":{\"id\":");
                    put(out, &id.0);
                    out.extend_from_slice(b",\"kind\":\"drv\"}");
                }
                Input::Source { hash, origin } => {
                    out.extend_from_slice(b":{\"hash\":");
                    put(out, hash);
                    out.extend_from_slice(b",\"kind\":\"source\",\"origin\":");
                    put(out, origin);
                    out.push(b'}');
                }
            }
        }
        out.extend_from_slice(b"},\"name\":");
        put(out, &self.name);
        out.extend_from_slice(b",\"outputs\":");
        put(out, &self.outputs);
        out.extend_from_slice(b",\"params\":");
        put(out, &self.params);
        out.push(b'}');
    }

    pub fn id(&self) -> DrvId {
        self.id_and_bytes().0
    }

    /// The id and the canonical bytes it hashes, for callers that keep
    /// both (the graph hands the bytes to the store's records).
    pub fn id_and_bytes(&self) -> (DrvId, Vec<u8>) {
        let bytes = self.canonical_bytes();
        (DrvId(blake3::hash(&bytes).to_hex().to_string()), bytes)
    }

    /// Ids of the derivations this one consumes.
    pub fn input_drvs(&self) -> impl Iterator<Item = &DrvId> {
        self.inputs.values().filter_map(|i| match i {
            Input::Drv { id } => Some(id),
            Input::Source { .. } => None,
        })
    }
}

/// One value as compact JSON (strings escaped as serde_json does).
fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("derivations are plain data");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_ignores_construction_order_but_not_values() {
        let a = Derivation::new(
            "x",
            Builder::builtin("fetch", 1),
            json!({"b": 1, "a": [1, 2]}),
        )
        .input_source("z", "00", "spec")
        .input_source("a", "11", "spec");
        let b = Derivation::new(
            "x",
            Builder::builtin("fetch", 1),
            json!({"a": [1, 2], "b": 1}),
        )
        .input_source("a", "11", "spec")
        .input_source("z", "00", "spec");
        assert_eq!(a.id(), b.id());
        let c = Derivation::new(
            "x",
            Builder::builtin("fetch", 2),
            json!({"a": [1, 2], "b": 1}),
        )
        .input_source("a", "11", "spec")
        .input_source("z", "00", "spec");
        assert_ne!(a.id(), c.id());
        let bytes = String::from_utf8(a.canonical_bytes()).unwrap();
        assert!(bytes.starts_with(FORMAT));
        assert!(bytes.contains(r#""params":{"a":[1,2],"b":1}"#), "{bytes}");
    }

    /// The field-by-field writer is the `Value` serialisation, byte for
    /// byte: ids recorded in stores and lock files must not change.
    #[test]
    fn canonical_bytes_are_the_sorted_value_serialisation() {
        let plain = Derivation::new("plain", Builder::builtin("fetch", 1), json!({}));
        let full = Derivation::new(
            "extract:b\u{e9}sh \"q\"\n\\",
            Builder::External {
                tool: "mk\tsquashfs".into(),
                version: "4.6 \u{1f600}".into(),
            },
            json!({"z": [1, null, true, 2.5], "a": {"y": "\u{0}", "b": -3}, "m": "x<y>&"}),
        )
        .input_drv("rpm", &DrvId("ab".repeat(32)))
        .input_source("config", "00ff", "./kernel \"config\"")
        .input_drv("A", &DrvId("cd".repeat(32)));
        for d in [plain, full] {
            let mut want = FORMAT.as_bytes().to_vec();
            let v = serde_json::to_value(&d).unwrap();
            serde_json::to_writer(&mut want, &v).unwrap();
            assert_eq!(
                String::from_utf8(d.canonical_bytes()).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn json_roundtrip_rehashes_to_the_same_id() {
        let d = Derivation::new("s", Builder::builtin("solve", 1), json!({"k": "v"}))
            .input_drv("dep", &DrvId("ab".repeat(32)));
        let back: Derivation = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back.id(), d.id());
    }
}

//! The AWS tools' shared configuration, as far as an `s3://` cache needs
//! it: a setting comes from the environment, else from the profile
//! (`AWS_PROFILE`, else `default`) in the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`, section
//! `[NAME]`), else from the config file (`AWS_CONFIG_FILE`, else
//! `~/.aws/config`, section `[profile NAME]` or `[default]`). So a machine
//! set up with `aws configure` works without exporting anything.
//!
//! The files are read once, bounded in size; a missing file is no
//! profile, a profile named by `AWS_PROFILE` that neither file has is an
//! error, and so is a file that is not the INI these files are.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// Larger than any real credentials or config file.
const MAX_FILE: u64 = 1 << 20;

/// Settings of one profile, by key (`aws_access_key_id`, `region`, ...).
type Section = BTreeMap<String, String>;

/// One profile's settings from both files, credentials file first.
pub(super) struct Profile {
    name: String,
    /// (file, its section for the profile).
    sources: Vec<(PathBuf, Section)>,
}

impl Profile {
    /// The profile `AWS_PROFILE` (or `default`) names, read through `env`.
    pub(super) fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Profile, String> {
        let named = env("AWS_PROFILE").filter(|p| !p.is_empty());
        let name = named.clone().unwrap_or_else(|| "default".into());
        let home = env("HOME").filter(|h| !h.is_empty());
        let file = |var: &str, default: &str| -> Option<PathBuf> {
            env(var)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| PathBuf::from(h).join(default)))
        };
        let mut sources = Vec::new();
        let wanted = [
            (
                file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
                name.clone(),
            ),
            (
                file("AWS_CONFIG_FILE", ".aws/config"),
                if name == "default" {
                    name.clone()
                } else {
                    format!("profile {name}")
                },
            ),
        ];
        for (path, section) in wanted {
            let Some(path) = path else { continue };
            let Some(text) = read_bounded(&path)? else {
                continue;
            };
            let mut sections = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(s) = sections.remove(&section) {
                sources.push((path, s));
            }
        }
        if named.is_some() && sources.is_empty() {
            return Err(format!(
                "AWS_PROFILE={name}: no such profile in the shared credentials or config file"
            ));
        }
        Ok(Profile { name, sources })
    }

    /// `key` from the first file that sets it.
    pub(super) fn get(&self, key: &str) -> Option<String> {
        self.sources
            .iter()
            .find_map(|(_, s)| s.get(key).filter(|v| !v.is_empty()).cloned())
    }

    /// Where the profile was looked for, for an error that says how to fix it.
    pub(super) fn describe(&self) -> String {
        match self.sources.first() {
            Some((path, _)) => format!("profile {} in {}", self.name, path.display()),
            None => format!(
                "profile {} (no shared credentials or config file has it)",
                self.name
            ),
        }
    }
}

fn read_bounded(path: &std::path::Path) -> Result<Option<String>, String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| format!("{}: not UTF-8", path.display()))
}

/// The sections of an AWS INI file: `[name]` headers, `key = value` lines
/// (keys lower-cased, values trimmed), `#` and `;` comment lines. Indented
/// lines continue a nested block (`s3 =` followed by settings), which is
/// skipped: nothing cvmbuild reads lives there.
fn parse(text: &str) -> Result<BTreeMap<String, Section>, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some(head) = trimmed.strip_prefix('[') {
            let name = head
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: a section header without ']'", i + 1))?;
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_insert_with(Section::new);
            current = Some(name);
            continue;
        }
        let (k, v) = trimmed
            .split_once('=')
            .ok_or_else(|| format!("line {}: neither a [section] nor key = value", i + 1))?;
        let Some(section) = &current else {
            return Err(format!("line {}: a setting before any [section]", i + 1));
        };
        sections
            .get_mut(section)
            .expect("inserted with its header")
            .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_from_both_files_credentials_first() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "# made by aws configure\n[default]\naws_access_key_id = AKDEF\naws_secret_access_key=sdef\n\n\
             [ci]\nAWS_ACCESS_KEY_ID = AKCI\naws_secret_access_key = sci\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = eu-north-1\n\
             aws_access_key_id = ignored\ns3 =\n  addressing_style = path\n",
        )
        .unwrap();
        let vars = |profile: Option<&'static str>| {
            let (c, f) = (creds.clone(), config.clone());
            move |k: &str| match k {
                "AWS_SHARED_CREDENTIALS_FILE" => Some(c.display().to_string()),
                "AWS_CONFIG_FILE" => Some(f.display().to_string()),
                "AWS_PROFILE" => profile.map(String::from),
                _ => None,
            }
        };
        let p = Profile::load(&vars(None)).unwrap();
        assert_eq!(p.get("aws_access_key_id").as_deref(), Some("AKDEF"));
        assert_eq!(p.get("aws_secret_access_key").as_deref(), Some("sdef"));
        assert_eq!(p.get("region").as_deref(), Some("eu-west-1"));
        let p = Profile::load(&vars(Some("ci"))).unwrap();
        assert_eq!(p.get("aws_access_key_id").as_deref(), Some("AKCI"));
        assert_eq!(p.get("region").as_deref(), Some("eu-north-1"));
        assert_eq!(p.get("addressing_style"), None);
        let err = Profile::load(&vars(Some("nope"))).err().unwrap();
        assert!(err.contains("AWS_PROFILE=nope"), "{err}");

        // No files at all: an empty default profile, not an error.
        let none = |k: &str| (k == "HOME").then(|| "/nonexistent".to_string());
        assert_eq!(Profile::load(&none).unwrap().get("region"), None);

        std::fs::write(&creds, "aws_access_key_id = x\n").unwrap();
        let err = Profile::load(&vars(None)).err().unwrap();
        assert!(
            err.contains("line 1: a setting before any [section]"),
            "{err}"
        );
        std::fs::write(&creds, vec![b'#'; (MAX_FILE + 1) as usize]).unwrap();
        assert!(Profile::load(&vars(None))
            .err()
            .unwrap()
            .contains("larger than"));
    }
}

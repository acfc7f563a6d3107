//! The `*-system` meta package: an empty noarch RPM whose exact `Requires`
//! pin every package of the closure, as CernVM 3's `cernvm-system` did. It is
//! the first level of versioning: installing it with yum reproduces the
//! release, and `rpm -qp --requires` lists the closure.

use serde::Deserialize;

/// The meta-rpm derivation's parameters (see `eval::plan`).
#[derive(Debug, Deserialize)]
pub struct MetaRpm {
    pub name: String,
    pub version: String,
    pub release: String,
    pub branch: String,
    /// SOURCE_DATE_EPOCH: build time and every timestamp in the package.
    pub epoch: i64,
    /// `name = epoch:version-release`, one per closure package.
    pub requires: Vec<String>,
}

impl MetaRpm {
    /// `NAME-VERSION-RELEASE.noarch.rpm`.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.noarch.rpm", self.name, self.version, self.release)
    }

    /// Builds the package bytes. Deterministic: same parameters, same bytes.
    pub fn build(&self) -> Result<Vec<u8>, rpm::Error> {
        let config = rpm::BuildConfig::default()
            .compression(rpm::CompressionType::Gzip)
            .source_date(self.epoch.clamp(0, u32::MAX as i64) as u32);
        let mut b = rpm::PackageBuilder::new(
            &self.name,
            &self.version,
            "Distributable",
            "noarch",
            &format!("{} release {} ({})", self.name, self.version, self.branch),
        );
        b.using_config(config)
            .release(self.release.as_str())
            .build_host("cvmbuild")
            .description(format!(
                "Meta package of {} {} on branch {}: requires exactly the {} packages \
                 of the release's pinned closure.",
                self.name,
                self.version,
                self.branch,
                self.requires.len()
            ));
        for r in &self.requires {
            let (name, evr) = r.split_once(" = ").unwrap_or((r, ""));
            b.requires(if evr.is_empty() {
                rpm::Dependency::any(name)
            } else {
                rpm::Dependency::eq(name, evr)
            });
        }
        let pkg = b.build()?;
        let mut out = Vec::new();
        pkg.write(&mut out)?;
        Ok(out)
    }
}

/// The `meta-rpm` builder: the `cernvm-system`-style RPM as a blob.
pub fn build(cx: &super::BuildCx) -> Result<crate::store::Output, super::Error> {
    use crate::store::Output;
    let meta: MetaRpm = serde_json::from_value(cx.drv.params.clone())?;
    let bytes = meta.build()?;
    let blob = cx.store.put_blob(&mut bytes.as_slice())?;
    cx.log(format!(
        "{} ({} requires)",
        meta.file_name(),
        meta.requires.len()
    ));
    Ok(Output::blob(blob, [("file", meta.file_name())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MetaRpm {
        MetaRpm {
            name: "cernvm-system".into(),
            version: "3.1.0.0".into(),
            release: "1".into(),
            branch: "production".into(),
            epoch: 1_400_000_000,
            requires: vec![
                "bash = 0:4.1.2-29.el6".into(),
                "kernel = 0:3.10.0-1.el6".into(),
            ],
        }
    }

    #[test]
    fn deterministic_and_readable() {
        let a = meta().build().unwrap();
        assert_eq!(a, meta().build().unwrap());
        let pkg = rpm::Package::parse(&mut a.as_slice()).unwrap();
        let md = &pkg.metadata;
        assert_eq!(md.get_name().unwrap(), "cernvm-system");
        let reqs: Vec<String> = md
            .get_requires()
            .unwrap()
            .into_iter()
            .filter(|d| !d.name.starts_with("rpmlib("))
            .map(|d| format!("{} = {}", d.name, d.version))
            .collect();
        assert_eq!(reqs, meta().requires);
        assert!(md.get_description().unwrap().contains("production"));
    }
}

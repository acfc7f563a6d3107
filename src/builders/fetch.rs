//! Fetch: gets one package file from its repository and stores it as a
//! blob, after checking its size and checksum against the lock. Nothing is
//! stored unless both match, so a wrong or truncated download never enters
//! the store under any name.

use crate::build::{BuildCx, BuildError};
use crate::store::{Output, Root};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;

pub fn build(cx: &BuildCx) -> Result<Output, BuildError> {
    let str_param = |k: &str| -> Result<String, BuildError> {
        cx.param(k)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{}: parameter `{k}` is not a string", cx.drv.name).into())
    };
    let nevra = str_param("nevra")?;
    let repo = str_param("repo")?;
    let location = str_param("location")?;
    let checksum = str_param("checksum")?;
    let size = cx.param("size")?.as_u64().ok_or("size is not a number")?;
    let loc = cx
        .env
        .repos
        .get(&repo)
        .ok_or_else(|| format!("{nevra}: repository `{repo}` is not in the spec"))?;
    cx.log(format!("fetching {}", loc.display(&location)));
    let bytes = loc
        .read(&repo, &location)
        .map_err(|e| format!("{nevra}: {e}"))?; // e names repository and URL
    verify(&bytes, size, &checksum).map_err(|e| {
        format!(
            "{nevra} from repository `{repo}` ({}): {e}",
            loc.display(&location)
        )
    })?;
    let blob = cx.store.put_blob(&mut bytes.as_slice())?;
    cx.log(format!("stored {} bytes as {}", blob.size, blob.hash));
    Ok(Output {
        root: Root::Blob {
            hash: blob.hash,
            size: blob.size,
        },
        // `repo` lets later builders name the package's origin in errors.
        meta: BTreeMap::from([
            ("file".to_string(), file_name(&location).to_string()),
            ("repo".to_string(), repo),
        ]),
    })
}

fn file_name(location: &str) -> &str {
    location.rsplit('/').next().unwrap_or(location)
}

/// Checks size and the repository's checksum (`ALGO:HEX`).
pub fn verify(bytes: &[u8], size: u64, checksum: &str) -> Result<(), String> {
    if bytes.len() as u64 != size {
        return Err(format!(
            "size mismatch: expected {size} bytes, got {}",
            bytes.len()
        ));
    }
    let (algo, want) = checksum
        .split_once(':')
        .ok_or_else(|| format!("malformed checksum `{checksum}`"))?;
    let got = match algo {
        "sha256" => hex::encode(Sha256::digest(bytes)),
        "sha512" => hex::encode(Sha512::digest(bytes)),
        "sha1" | "sha" => hex::encode(Sha1::digest(bytes)),
        "md5" => hex::encode(md5::Md5::digest(bytes)),
        other => return Err(format!("unsupported checksum type `{other}`")),
    };
    if !got.eq_ignore_ascii_case(want) {
        return Err(format!("{algo} mismatch: expected {want}, got {got}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_checks_size_then_digest() {
        let sha = hex::encode(Sha256::digest(b"abc"));
        assert!(verify(b"abc", 3, &format!("sha256:{sha}")).is_ok());
        assert!(verify(b"abd", 3, &format!("sha256:{sha}"))
            .unwrap_err()
            .contains("sha256 mismatch"));
        assert!(verify(b"ab", 3, &format!("sha256:{sha}"))
            .unwrap_err()
            .contains("size mismatch"));
        assert!(verify(b"abc", 3, "crc32:00")
            .unwrap_err()
            .contains("unsupported"));
    }
}

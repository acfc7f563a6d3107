//! Fetch: gets one package file from its repository and stores it as a
//! blob, after checking its size and checksum against the lock. Nothing is
//! stored unless both match, so a wrong or truncated download never enters
//! the store under any name. The download goes to an unlinked temporary
//! file, never wholly into memory (RPMs of hundreds of MB exist).

use super::{BuildCx, Error as BuildError};
use crate::store::Output;
use sha1::Sha1;
use sha2::digest::DynDigest;
use sha2::{Digest, Sha256, Sha512};
use std::io::{Read, Seek};

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
    // Paths and sizes come from the repository's metadata (via the lock):
    // refuse what leads out of the repository or no real package needs
    // before reading anything.
    let location = loc
        .confine(&repo, &location)
        .map_err(|e| format!("{nevra}: {e}"))?;
    if size > crate::repo::fetch::PACKAGE_MAX {
        return Err(format!(
            "{nevra}: the metadata of repository `{repo}` declares a size of {size} bytes, more than the {} bytes a package may have",
            crate::repo::fetch::PACKAGE_MAX
        )
        .into());
    }
    cx.log(format!("fetching {}", loc.display(&location)));
    // Into an unlinked temporary file, one byte more than expected at most
    // (so "too long" is seen), verified, and only then stored.
    let mut file = tempfile::tempfile()?;
    loc.copy_to(&repo, &location, size.saturating_add(1), &mut file)
        .map_err(|e| format!("{nevra}: {e}"))?; // e names repository and URL
    file.rewind()?;
    verify(&mut file, size, &checksum).map_err(|e| {
        format!(
            "{nevra} from repository `{repo}` ({}): {e}",
            loc.display(&location)
        )
    })?;
    let signer = crate::gpg::fetch::check(cx, &repo, &mut file).map_err(|e| {
        format!(
            "{nevra} from repository `{repo}` ({}): {e}",
            loc.display(&location)
        )
    })?;
    file.rewind()?;
    let blob = cx.store.put_blob(&mut file)?;
    cx.log(format!("stored {} bytes as {}", blob.size, blob.hash));
    // `repo` lets later builders name the package's origin in errors.
    let mut out = Output::blob(
        blob,
        [("file", file_name(&location).to_string()), ("repo", repo)],
    );
    if let Some(s) = signer {
        out.meta.insert("signer".into(), s);
    }
    Ok(out)
}

fn file_name(location: &str) -> &str {
    location.rsplit('/').next().unwrap_or(location)
}

/// Checks size and the repository's checksum (`ALGO:HEX`) of what `r`
/// yields, reading it once.
pub fn verify(r: &mut dyn Read, size: u64, checksum: &str) -> Result<(), String> {
    let (algo, want) = checksum
        .split_once(':')
        .ok_or_else(|| format!("malformed checksum `{checksum}`"))?;
    let mut hasher: Box<dyn DynDigest> = match algo {
        "sha256" => Box::new(Sha256::new()),
        "sha512" => Box::new(Sha512::new()),
        "sha1" | "sha" => Box::new(Sha1::new()),
        "md5" => Box::new(md5::Md5::new()),
        other => return Err(format!("unsupported checksum type `{other}`")),
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| format!("reading the download: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    if len != size {
        return Err(if len > size {
            format!("size mismatch: expected {size} bytes, got more")
        } else {
            format!("size mismatch: expected {size} bytes, got {len}")
        });
    }
    let got = hex::encode(hasher.finalize());
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
        let check = |bytes: &[u8], sum: &str| verify(&mut &bytes[..], 3, sum);
        assert!(check(b"abc", &format!("sha256:{sha}")).is_ok());
        assert!(check(b"abd", &format!("sha256:{sha}"))
            .unwrap_err()
            .contains("sha256 mismatch"));
        assert_eq!(
            check(b"ab", &format!("sha256:{sha}")).unwrap_err(),
            "size mismatch: expected 3 bytes, got 2"
        );
        assert_eq!(
            check(b"abcd", &format!("sha256:{sha}")).unwrap_err(),
            "size mismatch: expected 3 bytes, got more"
        );
        assert!(check(b"abc", "crc32:00")
            .unwrap_err()
            .contains("unsupported"));
        let md5 = hex::encode(md5::Md5::digest(b"abc"));
        assert!(check(b"abc", &format!("md5:{md5}")).is_ok());
    }
}

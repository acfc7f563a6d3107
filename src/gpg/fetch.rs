//! The fetch builder's signature step: a fetch derivation whose parameters
//! name `gpgkeys` stores its download only after [`rpm::verify`] accepted
//! it with exactly those keys, and, when they name the locked `signer`,
//! only if that key made the signature.

use super::rpm;
use crate::builders::BuildCx;

/// Verifies the downloaded package `file` when the derivation asks for it.
/// Returns the signer's primary key fingerprint (`None`: no check asked).
pub fn check(cx: &BuildCx, repo: &str, file: &mut std::fs::File) -> Result<Option<String>, String> {
    let Some(wanted) = cx.drv.params.get("gpgkeys") else {
        return Ok(None);
    };
    let keys = cx
        .env
        .signing_keys
        .get(repo)
        .ok_or("gpgcheck is on, but the repository's keys were not loaded")?;
    let wanted: Vec<String> = serde_json::from_value(wanted.clone())
        .map_err(|e| format!("parameter `gpgkeys` is malformed: {e}"))?;
    if keys.fingerprints() != wanted {
        return Err(format!(
            "the repository's keys ({}) are not the ones this derivation names ({})",
            keys.fingerprints().join(", "),
            wanted.join(", ")
        ));
    }
    let v = rpm::verify(keys, file).map_err(|e| format!("signature check failed: {e}"))?;
    if let Some(locked) = cx.drv.params.get("signer") {
        let locked = locked
            .as_str()
            .ok_or("parameter `signer` is not a string")?;
        if v.signer.primary != locked {
            return Err(format!(
                "signed by key {} (key id {}), but the lock records signer {locked}; \
                 run `cvmbuild eval` to pin the package again",
                v.signer.primary, v.signer.key_id
            ));
        }
    }
    cx.log(format!(
        "{} OpenPGP signature(s) verified; signer {} (key {})",
        v.signatures, v.signer.primary, v.signer.key_id
    ));
    Ok(Some(v.signer.primary))
}

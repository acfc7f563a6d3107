//! Repository keys (cvmfs-format.md section 5): the master key signs the
//! whitelist, the repository key signs manifests and is published as a
//! self-signed X.509 certificate. Same file names as `cvmfs_server mkkeys`
//! so existing keys can be brought along: `<fqrn>.masterkey`, `<fqrn>.pub`,
//! `<fqrn>.key`, `<fqrn>.crt`.

use super::{Error, Result};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{DecodePem, Encode, EncodePem};

/// Upstream's key size.
const BITS: usize = 2048;
/// Validity written into a generated certificate (readers do not check it).
const CERT_YEARS: u64 = 10;

/// Loaded keys of one repository.
pub struct Keys {
    pub master: RsaPrivateKey,
    pub repository: RsaPrivateKey,
    /// The certificate in PEM, as published in `data/..X`.
    pub certificate_pem: String,
    /// SHA-1 of the certificate's DER, as the whitelist lists it.
    pub fingerprint: [u8; 20],
}

fn files(dir: &Path, fqrn: &str) -> [PathBuf; 4] {
    ["masterkey", "pub", "key", "crt"].map(|ext| dir.join(format!("{fqrn}.{ext}")))
}

/// The master public key (PEM) of `fqrn` in `dir`, what a client trusts;
/// the key set is made first if there is none, as the first publish does.
pub fn master_public_key(dir: &Path, fqrn: &str) -> Result<String> {
    load(dir, fqrn, true)?;
    let [_, public, ..] = files(dir, fqrn);
    std::fs::read_to_string(&public).map_err(|e| Error::io(&public, e))
}

/// Loads the keys of `fqrn` from `dir`, creating them if `create` (a
/// repository's first publish). Either all of master key, repository key
/// and certificate exist (bring your own) or none does; anything in between
/// is an error rather than a silent replacement of a key clients may
/// already trust.
pub fn load(dir: &Path, fqrn: &str, create_missing: bool) -> Result<Keys> {
    let [master, public, key, crt] = files(dir, fqrn);
    let present = [&master, &key, &crt].map(|p| p.exists());
    if present.iter().all(|p| !p) {
        if !create_missing {
            return Err(Error::Key(format!(
                "no keys for {fqrn} in {} but the repository is already published: restore them (or pass the right --keys-dir)",
                dir.display()
            )));
        }
        create(dir, fqrn)?;
    } else if !present.iter().all(|p| *p) {
        return Err(Error::Key(format!(
            "{}: incomplete key set for {fqrn}: need {}, {} and {} together (or none, to create them)",
            dir.display(),
            master.display(),
            key.display(),
            crt.display()
        )));
    }
    let master = read_key(&master)?;
    if !public.exists() {
        write_public(&public, &master)?;
    }
    let repository = read_key(&key)?;
    let certificate_pem = std::fs::read_to_string(&crt).map_err(|e| Error::io(&crt, e))?;
    let cert = x509_cert::Certificate::from_pem(certificate_pem.as_bytes())
        .map_err(|e| Error::Key(format!("{}: not a PEM certificate: {e}", crt.display())))?;
    let der = cert
        .to_der()
        .map_err(|e| Error::Key(format!("{}: {e}", crt.display())))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| Error::Key(format!("{}: {e}", crt.display())))?;
    let cert_key = RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| Error::Key(format!("{}: not an RSA certificate: {e}", crt.display())))?;
    if cert_key != repository.to_public_key() {
        return Err(Error::Key(format!(
            "{} does not belong to the key in {}",
            crt.display(),
            key.display()
        )));
    }
    Ok(Keys {
        master,
        repository,
        certificate_pem,
        fingerprint: Sha1::digest(&der).into(),
    })
}

fn read_key(path: &Path) -> Result<RsaPrivateKey> {
    let pem = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
        .map_err(|e| {
            Error::Key(format!(
                "{}: not an RSA private key in PEM: {e}",
                path.display()
            ))
        })
}

fn write_public(path: &Path, key: &RsaPrivateKey) -> Result<()> {
    let pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::Key(e.to_string()))?;
    std::fs::write(path, pem).map_err(|e| Error::io(path, e))
}

fn write_private(path: &Path, key: &RsaPrivateKey) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Key(e.to_string()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .map_err(|e| Error::io(path, e))
}

fn create(dir: &Path, fqrn: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let [master_path, public_path, key_path, crt_path] = files(dir, fqrn);
    let mut rng = rand_core::OsRng;
    let mut gen = |what| {
        RsaPrivateKey::new(&mut rng, BITS)
            .map_err(|e| Error::Key(format!("generating the {what} key: {e}")))
    };
    let master = gen("master")?;
    let repository = gen("repository")?;
    let pem = self_signed(&repository, fqrn)?;
    // The certificate goes last: its presence marks a complete set.
    write_private(&master_path, &master)?;
    write_public(&public_path, &master)?;
    write_private(&key_path, &repository)?;
    std::fs::write(&crt_path, pem).map_err(|e| Error::io(&crt_path, e))
}

fn self_signed(key: &RsaPrivateKey, fqrn: &str) -> Result<String> {
    let err = |e: &dyn std::fmt::Display| Error::Key(format!("certificate for {fqrn}: {e}"));
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let subject = x509_cert::name::Name::from_str(&format!("CN={fqrn}")).map_err(|e| err(&e))?;
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(key.to_public_key())
        .map_err(|e| err(&e))?;
    let validity =
        x509_cert::time::Validity::from_now(Duration::from_secs(CERT_YEARS * 365 * 86400))
            .map_err(|e| err(&e))?;
    let serial = x509_cert::serial_number::SerialNumber::from(1u32);
    let cert = CertificateBuilder::new(Profile::Root, serial, validity, subject, spki, &signer)
        .map_err(|e| err(&e))?
        .build::<rsa::pkcs1v15::Signature>()
        .map_err(|e| err(&e))?;
    cert.to_pem(LineEnding::LF).map_err(|e| err(&e))
}

/// The whitelist spelling of a fingerprint: `AB:CD:...`.
pub fn fingerprint_text(fp: &[u8; 20]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

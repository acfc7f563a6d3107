//! AWS Signature Version 4 for S3 requests (header-based), written over
//! `sha2` and `hmac` rather than taken from an SDK (which would bring an
//! async runtime; see store-layout.md 2.11).
//!
//! The canonical request is METHOD, the URI-encoded path, the canonical
//! query, the signed headers (lower-case names, trimmed values, sorted)
//! and the payload's SHA-256; the string to sign binds it to the time and
//! the scope `DATE/REGION/SERVICE/aws4_request`, and the key is derived
//! from the secret through that scope by chained HMAC-SHA256.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// The SHA-256 of an empty payload (GET, HEAD), as `x-amz-content-sha256`.
pub(super) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(super) struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    /// Temporary credentials (STS) come with a token sent as
    /// `x-amz-security-token`, which is signed like any header.
    pub session_token: Option<String>,
}

/// What one request's signature covers besides the credentials.
pub(super) struct Request<'a> {
    pub method: &'a str,
    /// The absolute path, not yet encoded (`/bucket/key` path-style).
    pub path: &'a str,
    /// Query parameters, not yet encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Every header to sign, `host` and `x-amz-date` included.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (also sent as `x-amz-content-sha256`).
    pub payload_sha256: &'a str,
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters
/// (and `/` in a path, which S3 does not encode a second time).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `x-amz-date` (`20130524T000000Z`) for a time.
pub(super) fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = crate::cvmfs::manifest::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The path as it goes on the wire and into the canonical request.
pub(super) fn encode_path(path: &str) -> String {
    uri_encode(path, true)
}

/// The `Authorization` header value for `req` at `date` (an
/// [`amz_date`]), which must also be the `x-amz-date` header signed.
pub(super) fn authorization(
    creds: &Credentials,
    region: &str,
    service: &str,
    date: &str,
    req: &Request,
) -> String {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        req.method,
        encode_path(req.path),
        query.join("&")
    );
    for (k, v) in &headers {
        canonical.push_str(&format!("{k}:{v}\n"));
    }
    canonical.push_str(&format!("\n{signed}\n{}", req.payload_sha256));
    let day = &date[..8];
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        day.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
        creds.access_key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's example credentials from the S3 SigV4 documentation
    /// ("Signature Calculations for the Authorization Header", examples).
    fn example() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// The documented GET Object example: the first 10 bytes of
    /// `test.txt` in `examplebucket`, 2013-05-24, us-east-1.
    #[test]
    fn aws_get_object_example() {
        let date = "20130524T000000Z";
        let auth = authorization(
            &example(),
            "us-east-1",
            "s3",
            date,
            &Request {
                method: "GET",
                path: "/test.txt",
                query: &[],
                headers: &[
                    ("Host", "examplebucket.s3.amazonaws.com"),
                    ("Range", "bytes=0-9"),
                    ("x-amz-content-sha256", EMPTY_SHA256),
                    ("x-amz-date", date),
                ],
                payload_sha256: EMPTY_SHA256,
            },
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The documented PUT Object example: a key with `$` (encoded in the
    /// canonical path), a signed body and extra headers.
    #[test]
    fn aws_put_object_example() {
        let date = "20130524T000000Z";
        let body = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            body,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let auth = authorization(
            &example(),
            "us-east-1",
            "s3",
            date,
            &Request {
                method: "PUT",
                path: "/test$file.text",
                query: &[],
                headers: &[
                    ("Host", "examplebucket.s3.amazonaws.com"),
                    ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                    ("x-amz-date", date),
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                    ("x-amz-content-sha256", &body),
                ],
                payload_sha256: &body,
            },
        );
        assert!(
            auth.ends_with(
                "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,\
                 Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
            ),
            "{auth}"
        );
    }

    #[test]
    fn dates_and_encoding() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600);
        assert_eq!(amz_date(t), "20130524T000000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_868_799);
        assert_eq!(amz_date(t), "20000229T235959Z");
        assert_eq!(encode_path("/b/a b$+~/x"), "/b/a%20b%24%2B~/x");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}

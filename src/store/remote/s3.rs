//! The S3 transport: `s3://BUCKET[/PREFIX]`, each object a key under the
//! prefix, requests signed with SigV4 ([`super::sigv4`]), configured by the
//! environment variables the AWS tools read: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`; else us-east-1) and `AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL` for another S3-compatible server (MinIO, Ceph RGW,
//! moto), addressed path-style (`ENDPOINT/BUCKET/KEY`). Without an
//! endpoint it is AWS, virtual-hosted (`BUCKET.s3.REGION.amazonaws.com`).

use super::sigv4::{self, Credentials};
use super::{http_err, Error, Expect, Result, Transport, Versioned};
use std::io::Read;

pub(super) struct S3 {
    /// `s3://BUCKET[/PREFIX]`, as errors name the remote.
    name: String,
    /// `http[s]://HOST[:PORT]`.
    base: String,
    host: String,
    /// `/BUCKET[/PREFIX]` path-style, `[/PREFIX]` virtual-hosted.
    key_prefix: String,
    region: String,
    creds: Credentials,
    agent: ureq::Agent,
}

/// A bucket name as S3 allows it (3-63 of `[a-z0-9.-]`, starting and
/// ending with a letter or digit).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// `<Code>` and `<Message>` of an S3 error document, when there is one.
fn error_text(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let tag = |t: &str| {
        let start = text.find(&format!("<{t}>"))? + t.len() + 2;
        let end = text[start..].find(&format!("</{t}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c),
        _ => None,
    }
}

impl S3 {
    /// `url` is `s3://…`; `env` reads the configuration (the process
    /// environment outside tests).
    pub(super) fn new(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<S3> {
        let bad = || Error::BadUrl(url.to_string());
        let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if !valid_bucket(bucket)
            || prefix.contains(['?', '#', ' '])
            || prefix.split('/').any(|p| p == "." || p == "..")
            || prefix.contains("//")
        {
            return Err(bad());
        }
        let config = |reason: String| Error::S3Config {
            remote: url.to_string(),
            reason,
        };
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let access_key = var("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| config("AWS_ACCESS_KEY_ID is not set".into()))?;
        let secret_key = var("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| config("AWS_SECRET_ACCESS_KEY is not set".into()))?;
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        if !region
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(config(format!("region {region:?}")));
        }
        let sub = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        let (base, host, key_prefix) = match var("AWS_ENDPOINT_URL_S3")
            .or_else(|| var("AWS_ENDPOINT_URL"))
        {
            Some(endpoint) => {
                let e = endpoint.trim_end_matches('/');
                let host = e
                    .strip_prefix("http://")
                    .or_else(|| e.strip_prefix("https://"))
                    .filter(|h| !h.is_empty() && !h.contains(['/', '?', '#', ' ', '@']))
                    .ok_or_else(|| {
                        config(format!(
                            "endpoint {endpoint:?}: use http[s]://HOST[:PORT] (the bucket is addressed path-style)"
                        ))
                    })?;
                (e.to_string(), host.to_string(), format!("/{bucket}{sub}"))
            }
            // Dots in a bucket name break the wildcard certificate of
            // virtual-hosted addresses: those go path-style.
            None if bucket.contains('.') => {
                let host = format!("s3.{region}.amazonaws.com");
                (format!("https://{host}"), host, format!("/{bucket}{sub}"))
            }
            None => {
                let host = format!("{bucket}.s3.{region}.amazonaws.com");
                (format!("https://{host}"), host, sub)
            }
        };
        Ok(S3 {
            name: url.trim_end_matches('/').to_string(),
            base,
            host,
            key_prefix,
            region,
            creds: Credentials {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
            },
            agent: super::agent(),
        })
    }

    /// Sends one signed request for the object at `path` under the prefix.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        expect: Option<&Expect>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let what = format!("{method} {path}");
        let key = format!("{}/{path}", self.key_prefix);
        let date = sigv4::amz_date(std::time::SystemTime::now());
        let payload = body.map_or_else(|| sigv4::EMPTY_SHA256.to_string(), sigv4::sha256_hex);
        let mut headers = vec![
            ("host", self.host.as_str()),
            ("x-amz-content-sha256", payload.as_str()),
            ("x-amz-date", date.as_str()),
        ];
        if let Some(t) = &self.creds.session_token {
            headers.push(("x-amz-security-token", t.as_str()));
        }
        if let Some(e) = expect {
            headers.push(e.header());
        }
        let auth = sigv4::authorization(
            &self.creds,
            &self.region,
            "s3",
            &date,
            &sigv4::Request {
                method,
                path: &key,
                query: &[],
                headers: &headers,
                payload_sha256: &payload,
            },
        );
        let mut req = ureq::http::Request::builder().method(method).uri(format!(
            "{}{}",
            self.base,
            sigv4::encode_path(&key)
        ));
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        req = req.header("authorization", auth);
        let resp = match body {
            Some(b) => req
                .body(b)
                .map_err(|e| self.err(&what, e))
                .and_then(|r| self.agent.run(r).map_err(|e| self.err(&what, e))),
            None => req
                .body(())
                .map_err(|e| self.err(&what, e))
                .and_then(|r| self.agent.run(r).map_err(|e| self.err(&what, e))),
        }?;
        Ok(resp)
    }

    fn err(&self, what: &str, reason: impl ToString) -> Error {
        http_err(&self.name, what, reason)
    }

    /// The error for a non-success answer: 403 is the credentials (or
    /// the bucket policy), anything else a failing remote.
    fn status_err(&self, what: &str, resp: ureq::http::Response<ureq::Body>) -> Error {
        let code = resp.status().as_u16();
        let mut body = Vec::new();
        let _ = resp
            .into_body()
            .into_with_config()
            .limit(64 << 10)
            .reader()
            .read_to_end(&mut body);
        let detail = error_text(&body)
            .map_or_else(|| format!("HTTP {code}"), |t| format!("HTTP {code}, {t}"));
        if code == 403 {
            Error::Denied {
                remote: self.name.clone(),
                what: what.to_string(),
                reason: detail,
            }
        } else {
            self.err(what, detail)
        }
    }
}

impl Transport for S3 {
    fn get_versioned(&self, path: &str) -> Result<Option<Versioned>> {
        let resp = self.send("GET", path, None, None)?;
        match resp.status().as_u16() {
            200 => {
                let version = super::etag(resp.headers());
                Ok(Some((Box::new(resp.into_body().into_reader()), version)))
            }
            404 => {
                // A missing key is "not there"; a missing bucket is an error.
                match self.status_err(&format!("GET {path}"), resp) {
                    Error::Http { reason, .. } if !reason.contains("NoSuchBucket") => Ok(None),
                    e => Err(e),
                }
            }
            _ => Err(self.status_err(&format!("GET {path}"), resp)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let resp = self.send("HEAD", path, None, None)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_err(&format!("HEAD {path}"), resp)),
        }
    }

    fn put(&self, path: &str, body: &[u8]) -> Result<()> {
        let resp = self.send("PUT", path, Some(body), None)?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(self.status_err(&format!("PUT {path}"), resp)),
        }
    }

    /// S3's conditional writes: 412 when the condition fails, 409 when a
    /// concurrent conditional write is under way.
    fn put_if(&self, path: &str, body: &[u8], expect: &Expect) -> Result<bool> {
        let resp = self.send("PUT", path, Some(body), Some(expect))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            409 | 412 => Ok(false),
            _ => Err(self.status_err(&format!("PUT {path}"), resp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn addressing_from_url_and_environment() {
        let creds = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")];
        let s = S3::new("s3://cache-1/a/b/", &env(&creds)).unwrap();
        assert_eq!(
            (s.base.as_str(), s.key_prefix.as_str(), s.region.as_str()),
            (
                "https://cache-1.s3.us-east-1.amazonaws.com",
                "/a/b",
                "us-east-1"
            )
        );
        let mut vars = creds.to_vec();
        vars.extend([
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/"),
        ]);
        let s = S3::new("s3://cache-1", &env(&vars)).unwrap();
        assert_eq!(
            (
                s.base.as_str(),
                s.host.as_str(),
                s.key_prefix.as_str(),
                s.region.as_str()
            ),
            (
                "http://127.0.0.1:9000",
                "127.0.0.1:9000",
                "/cache-1",
                "eu-west-1"
            )
        );
        let s = S3::new("s3://my.cache", &env(&creds)).unwrap();
        assert_eq!(s.key_prefix, "/my.cache");
        for bad in [
            "s3://",
            "s3://A",
            "s3://ab",
            "s3://b-/x",
            "s3://bucket/../x",
            "s3://bucket/a b",
        ] {
            assert!(
                matches!(S3::new(bad, &env(&creds)), Err(Error::BadUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            S3::new("s3://bucket", &env(&creds[..1])),
            Err(Error::S3Config { reason, .. }) if reason.contains("AWS_SECRET_ACCESS_KEY")
        ));
        vars.push(("AWS_ENDPOINT_URL_S3", "ftp://x"));
        assert!(matches!(
            S3::new("s3://bucket", &env(&vars)),
            Err(Error::S3Config { .. })
        ));
    }

    #[test]
    fn error_documents() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code>\
            <Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";
        assert_eq!(
            error_text(body).unwrap(),
            "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records."
        );
        assert_eq!(error_text(b"<html>nope</html>"), None);
    }
}

//! The HTTP/WebDAV transport: plain GET and HEAD (any static web server
//! can serve a cache), WebDAV PUT and, where the server wants the
//! collections made first, MKCOL.

use super::{http_err, Error, Expect, Result, Transport, Versioned};

pub(super) struct Http {
    /// `http[s]://HOST[:PORT]/PATH`, no trailing slash.
    url: String,
    agent: ureq::Agent,
}

impl Http {
    pub(super) fn new(url: &str) -> Result<Http> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| Error::BadUrl(url.to_string()))?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            return Err(Error::BadUrl(url.to_string()));
        }
        Ok(Http {
            url: url.to_string(),
            agent: super::agent(),
        })
    }

    fn err(&self, what: &str, reason: impl ToString) -> Error {
        http_err(&self.url, what, reason)
    }

    fn mkcol(&self, dir: &str) -> Result<()> {
        let what = format!("MKCOL {dir}");
        let req = ureq::http::Request::builder()
            .method("MKCOL")
            .uri(format!("{}/{dir}", self.url))
            .body(())
            .map_err(|e| self.err(&what, e))?;
        let resp = self.agent.run(req).map_err(|e| self.err(&what, e))?;
        match resp.status().as_u16() {
            // 405: it exists already.
            200..=299 | 405 => Ok(()),
            code => Err(self.err(&what, format!("HTTP {code}"))),
        }
    }
}

impl Transport for Http {
    fn get_versioned(&self, path: &str) -> Result<Option<Versioned>> {
        let what = format!("GET {path}");
        let resp = self
            .agent
            .get(format!("{}/{path}", self.url))
            .call()
            .map_err(|e| self.err(&what, e))?;
        match resp.status().as_u16() {
            200 => {
                let version = super::etag(resp.headers());
                Ok(Some((Box::new(resp.into_body().into_reader()), version)))
            }
            404 | 410 => Ok(None),
            code => Err(self.err(&what, format!("HTTP {code}"))),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let what = format!("HEAD {path}");
        let resp = self
            .agent
            .head(format!("{}/{path}", self.url))
            .call()
            .map_err(|e| self.err(&what, e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 | 410 => Ok(false),
            code => Err(self.err(&what, format!("HTTP {code}"))),
        }
    }

    /// PUT; if that fails the way a missing parent collection makes it
    /// fail (409 by RFC 4918; nginx without `create_full_put_path`
    /// answers 500, some servers 404), MKCOL each parent and try once more.
    fn put(&self, path: &str, body: &[u8]) -> Result<()> {
        self.put_with(path, body, None).map(|_| ())
    }

    fn put_if(&self, path: &str, body: &[u8], expect: &Expect) -> Result<bool> {
        self.put_with(path, body, Some(expect))
    }
}

impl Http {
    /// PUT with an optional condition; `Ok(false)` on 412.
    fn put_with(&self, path: &str, body: &[u8], expect: Option<&Expect>) -> Result<bool> {
        let url = format!("{}/{path}", self.url);
        let what = format!("PUT {path}");
        let send = || {
            let mut req = self.agent.put(&url);
            if let Some((k, v)) = expect.map(Expect::header) {
                req = req.header(k, v);
            }
            req.send(body).map_err(|e| self.err(&what, e))
        };
        let mut resp = send()?;
        if matches!(resp.status().as_u16(), 404 | 409 | 500) {
            let mut dir = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                dir.push_str(part);
                dir.push('/');
                self.mkcol(&dir)?;
            }
            resp = send()?;
        }
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            412 if expect.is_some() => Ok(false),
            507 => Err(Error::Full {
                remote: self.url.clone(),
                what,
            }),
            code => Err(self.err(&what, format!("HTTP {code}"))),
        }
    }
}

//! moto's S3 server on a loopback port (`moto[server]` from PyPI, in the
//! venv `.ci/deps` makes), started by the test that needs it, with
//! authentication on: requests must be SigV4-signed with the access key
//! [`Moto::start`] creates, as AWS S3, MinIO or Ceph RGW require.
//!
//! Setting it up and reaching into the bucket behind cvmbuild's back (to
//! damage an object) go through boto3, AWS's own SDK, from the same venv,
//! so what the tests compare against is not the code under test. The
//! server stops when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/deps` installs moto (overridden by `CVMBUILD_MOTO_VENV`).
const VENV: &str = "/opt/cvmbuild-ci/moto";

pub struct Moto {
    child: Child,
    pub port: u16,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    work: PathBuf,
    venv: PathBuf,
}

/// The boto3 side: `setup BUCKET` (a user allowed s3:*, its key, the
/// bucket; then authentication on), `put KEY FILE`, `get KEY FILE`,
/// `list`. Endpoint and credentials come from the environment.
const CTL: &str = r#"
import json, os, sys, urllib.request
import boto3
ep = os.environ["MOTO_ENDPOINT"]
def client(svc):
    return boto3.client(svc, endpoint_url=ep, region_name="us-east-1")
cmd = sys.argv[1]
if cmd == "setup":
    iam = client("iam")
    iam.create_user(UserName="cvmbuild")
    iam.put_user_policy(UserName="cvmbuild", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    k = iam.create_access_key(UserName="cvmbuild")["AccessKey"]
    client("s3").create_bucket(Bucket=sys.argv[2])
    # From here on every request must be signed by a key moto knows.
    urllib.request.urlopen(urllib.request.Request(ep + "/moto-api/reset-auth", data=b"0", method="POST",
        headers={"Content-Type": "text/plain"})).read()
    print(k["AccessKeyId"], k["SecretAccessKey"])
else:
    s3, bucket = client("s3"), os.environ["MOTO_BUCKET"]
    if cmd == "put":
        s3.put_object(Bucket=bucket, Key=sys.argv[2], Body=open(sys.argv[3], "rb").read())
    elif cmd == "get":
        open(sys.argv[3], "wb").write(s3.get_object(Bucket=bucket, Key=sys.argv[2])["Body"].read())
    elif cmd == "list":
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                print(o["Key"], o["Size"])
"#;

impl Moto {
    /// A fresh server with one bucket, `bucket`; fails (does not skip) if
    /// moto is not installed.
    pub fn start(work: &Path, bucket: &str) -> Moto {
        let venv = PathBuf::from(std::env::var("CVMBUILD_MOTO_VENV").unwrap_or(VENV.into()));
        let server = venv.join("bin/moto_server");
        assert!(
            server.is_file(),
            "{} is missing: moto's S3 server is needed (bash .ci/deps installs it)",
            server.display()
        );
        std::fs::create_dir_all(work).unwrap();
        std::fs::write(work.join("ctl.py"), CTL).unwrap();
        let port = super::rpmrepo::free_port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("moto.log")).unwrap())
            .spawn()
            .unwrap();
        let mut m = Moto {
            child,
            port,
            bucket: bucket.to_string(),
            access_key: String::new(),
            secret_key: String::new(),
            work: work.to_path_buf(),
            venv,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Any key will do while authentication is off.
        let out = m.ctl(&["setup", bucket], ("setup", "setup"));
        let mut words = out.split_whitespace();
        m.access_key = words.next().unwrap().to_string();
        m.secret_key = words.next().unwrap().to_string();
        m
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment an `s3://` remote on this server reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    fn ctl(&self, args: &[&str], (key, secret): (&str, &str)) -> String {
        let out = Command::new(self.venv.join("bin/python"))
            .arg(self.work.join("ctl.py"))
            .args(args)
            .env("MOTO_ENDPOINT", self.endpoint())
            .env("MOTO_BUCKET", &self.bucket)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn own(&self, args: &[&str]) -> String {
        let (k, s) = (self.access_key.clone(), self.secret_key.clone());
        self.ctl(args, (&k, &s))
    }

    /// Every key in the bucket with its size.
    pub fn list(&self) -> Vec<(String, u64)> {
        self.own(&["list"])
            .lines()
            .map(|l| {
                let (k, n) = l.rsplit_once(' ').unwrap();
                (k.to_string(), n.parse().unwrap())
            })
            .collect()
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        let f = self.work.join("object");
        self.own(&["get", key, f.to_str().unwrap()]);
        std::fs::read(f).unwrap()
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        let f = self.work.join("object");
        std::fs::write(&f, bytes).unwrap();
        self.own(&["put", key, f.to_str().unwrap()]);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("moto.log")).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

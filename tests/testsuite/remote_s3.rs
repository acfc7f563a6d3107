//! The binary cache in an S3 bucket: moto's S3 server on loopback with
//! authentication on, so every request cvmbuild makes must carry a valid
//! SigV4 signature. Machine A builds the bundled example and pushes it to
//! `s3://BUCKET/PREFIX`; machine B, with a fresh store, substitutes
//! everything and builds nothing. An object damaged in the bucket (with
//! boto3, behind cvmbuild's back) is refused with a warning naming the
//! remote, and wrong credentials are a clear error naming it.

use crate::support::fixture::{assert_verify_clean, record_signers, text, Fixture};
use crate::support::moto::Moto;
use serde_json::Value;
use std::process::Output;

/// `cvmbuild --store STORE ARGS…` on machine `m` with `env` (the AWS
/// variables) and no AWS configuration inherited from the host.
fn run(m: &Fixture, env: &[(&'static str, String)], args: &[&str]) -> Output {
    let mut cmd = crate::support::cvmbuild(m.dir.path());
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
    ] {
        cmd.env_remove(k);
    }
    cmd.arg("--store")
        .arg(m.store())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap()
}

/// `realize … --json` of both roots; its branch summary and stderr.
fn realize(m: &Fixture, env: &[(&'static str, String)], extra: &[&str]) -> (Value, String) {
    let spec = m.spec();
    let mut args = vec![
        "realize",
        spec.to_str().unwrap(),
        "--branch",
        "production",
        "--offline",
        "--root",
        "os-tree",
        "--root",
        "meta-rpm",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = run(m, env, &args);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v[0].clone(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_second_machine_substitutes_from_s3_and_damage_and_bad_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(&dir.path().join("moto"), "cvmbuild-cache");
    let url = format!("s3://{}/ci", moto.bucket);
    let env = moto.env();

    // Machine A: build, make a key, push both roots with their inputs.
    let a = Fixture::new();
    let (sa, _) = realize(&a, &[], &[]);
    assert!(sa["built"].as_u64().unwrap() > 10, "{sa}");
    let key = a.path("farm-a.key");
    let out = run(
        &a,
        &[],
        &["key", "generate", "farm-a", "--out", key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let pubkey = a.path("farm-a.key.pub");
    let ids: Vec<&str> = ["os-tree", "meta-rpm"]
        .iter()
        .map(|r| sa["roots"][r].as_str().unwrap())
        .collect();
    let mut copy = vec![
        "copy",
        "--to",
        &url,
        "--sign-key",
        key.to_str().unwrap(),
        "--json",
    ];
    copy.extend(&ids);
    let out = run(&a, &env, &copy);
    assert!(out.status.success(), "{}\n{}", text(&out), moto.log());
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(sent["sent_objects"].as_u64().unwrap() > 10, "{sent}");

    // The layout of store-layout.md 2.11 under the prefix, as boto3 lists it.
    let keys = moto.list();
    let has = |k: &str| keys.iter().any(|(name, _)| name == k);
    assert!(has("ci/cvmbuild-cache"), "{keys:?}");
    for id in &ids {
        assert!(has(&format!("ci/outputs/{id}.json")), "{keys:?}");
    }
    let os_tree = sa["outputs"]["os-tree"]["root"]["hash"].as_str().unwrap();
    assert!(
        has(&format!("ci/trees/{}/{os_tree}", &os_tree[..2])),
        "{keys:?}"
    );
    // Every object and record it reports sent, and the marker: nothing else.
    assert_eq!(
        keys.len() as u64,
        sent["sent_objects"].as_u64().unwrap() + 1
    );
    assert!(keys.iter().all(|(k, _)| k.starts_with("ci/")), "{keys:?}");

    // A second signer's push adds its signature with a conditional write
    // over the record's ETag (If-Match), which moto checks as S3 does.
    let key2 = a.path("farm-b.key");
    let out = run(
        &a,
        &[],
        &["key", "generate", "farm-b", "--out", key2.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut copy2 = copy.clone();
    copy2[4] = key2.to_str().unwrap();
    let out = run(&a, &env, &copy2);
    assert!(out.status.success(), "{}\n{}", text(&out), moto.log());
    let record: Value =
        serde_json::from_slice(&moto.get(&format!("ci/outputs/{}.json", ids[0]))).unwrap();
    let signers = record_signers(&record);
    assert_eq!(signers, ["farm-a", "farm-b"]);

    // Machine B: everything substituted, nothing built, the same roots.
    // Set up as `aws configure --profile ci` leaves a machine: nothing in
    // the environment but the profile's name (HOME is the fixture's).
    let b = Fixture::new();
    let aws = b.dir.path().join("home/.aws");
    std::fs::create_dir_all(&aws).unwrap();
    let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = AKIADEFAULTUNUSED000\naws_secret_access_key = x\n\n\
             [ci]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            lookup("AWS_ACCESS_KEY_ID"),
            lookup("AWS_SECRET_ACCESS_KEY")
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile ci]\nregion = us-east-1\nendpoint_url = {}\n",
            lookup("AWS_ENDPOINT_URL")
        ),
    )
    .unwrap();
    let subst = [
        "--substituter",
        &url,
        "--trusted-key",
        pubkey.to_str().unwrap(),
    ];
    let (sb, stderr) = realize(&b, &[("AWS_PROFILE", "ci".into())], &subst);
    assert_eq!(sb["built"], 0, "{sb}\n{stderr}");
    assert_eq!(sb["substituted"], 2, "{sb}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(sb["substituters"][0]["url"], url.as_str());
    assert!(
        sb["substituters"][0]["bytes"].as_u64().unwrap() > 10_000,
        "{sb}"
    );
    assert_eq!(sb["outputs"], sa["outputs"]);
    assert_eq!(sb["roots"], sa["roots"]);
    assert_verify_clean(&b.store());

    // The meta RPM damaged in the bucket: refused, naming the remote, and
    // built locally with the same result.
    let meta = sa["outputs"]["meta-rpm"]["root"]["hash"].as_str().unwrap();
    let meta_key = format!("ci/blobs/{}/{meta}", &meta[..2]);
    let mut bytes = moto.get(&meta_key);
    bytes[100] ^= 1;
    moto.put(&meta_key, &bytes);
    let c = Fixture::new();
    let (sc, stderr) = realize(&c, &env, &subst);
    assert!(
        stderr.contains(&format!(
            "remote {url}: blob {meta} is damaged: content hashes to"
        )) && stderr.contains("building it locally"),
        "{stderr}"
    );
    assert_eq!(sc["substituted"], 1, "{sc}"); // os-tree
    assert_eq!(sc["outputs"], sa["outputs"]);
    assert_verify_clean(&c.store());

    // Wrong credentials: a push fails naming the remote; a substituter
    // that refuses them is one warning, then a local build.
    let mut wrong = env.clone();
    wrong[1].1 = "not-the-secret".into();
    let out = run(&a, &wrong, &copy);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains(&format!(
            "remote {url}: HEAD cvmbuild-cache: access denied (HTTP 403"
        )) && err.contains("AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    let mut unknown = env.clone();
    unknown[0].1 = "AKIAUNKNOWNUNKNOWN00".into();
    let d = Fixture::new();
    let (sd, stderr) = realize(&d, &unknown, &subst);
    assert!(
        stderr.contains(&format!(
            "remote {url}: GET cvmbuild-cache: access denied (HTTP 403, InvalidAccessKeyId"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("access denied").count(), 1, "{stderr}");
    assert_eq!(sd["substituted"], 0, "{sd}");
    assert_eq!(sd["outputs"], sa["outputs"]);
    assert_verify_clean(&d.store());

    // No credentials at all: refused before any request.
    let out = run(&d, &env[2..], &copy);
    assert!(
        text(&out).contains(&format!("remote {url}: AWS_ACCESS_KEY_ID is not set")),
        "{}",
        text(&out)
    );
}

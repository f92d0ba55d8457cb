//! The S3 test server (s3s-fs, see testkit/src/s3.rs) with the object_store
//! client settings the archive uses: SigV4, path-style plain HTTP, create-only
//! puts (`If-None-Match: *`), listing, deletes, bad credentials, a missing
//! bucket, and a server that is killed and restarted.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use testkit::s3::S3Server;

/// Retries and timeouts small enough that a dead server fails a request in
/// seconds rather than minutes.
///
/// `with_client_options` replaces the whole `ClientOptions`, including the
/// `allow_http` set by `with_allow_http` (reqwest then refuses `http://` with
/// a `BadScheme` builder error), so it is set again afterwards.
fn fast_fail(builder: object_store::aws::AmazonS3Builder) -> AmazonS3 {
    builder
        .with_client_options(
            ClientOptions::new()
                .with_timeout(Duration::from_secs(2))
                .with_connect_timeout(Duration::from_secs(1)),
        )
        .with_allow_http(true)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                base: 2.0,
            },
            max_retries: 1,
            retry_timeout: Duration::from_secs(3),
        })
        .build()
        .expect("build S3 client")
}

/// The transport failure behind an error, if any: the public `HttpError` is
/// reachable through the `source()` chain (the retry wrapper around it is not
/// a public type, so statuses cannot be read this way).
fn http_error_kind(err: &object_store::Error) -> Option<HttpErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        cur = e.source();
    }
    None
}

fn store(s3: &S3Server) -> AmazonS3 {
    fast_fail(s3.builder())
}

async fn create(
    store: &AmazonS3,
    key: &str,
    bytes: &[u8],
) -> object_store::Result<object_store::PutResult> {
    store
        .put_opts(
            &Path::from(key),
            PutPayload::from(bytes.to_vec()),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await
}

async fn read(store: &AmazonS3, key: &str) -> Vec<u8> {
    store
        .get(&Path::from(key))
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .bytes()
        .await
        .expect("read body")
        .to_vec()
}

#[tokio::test]
async fn create_only_put_then_get_and_conflict() {
    let s3 = S3Server::start().await;
    let store = store(&s3);

    let first = b"segment one".to_vec();
    create(&store, "archive/seg-001", &first)
        .await
        .unwrap_or_else(|e| panic!("first create: {e}\n{}", s3.log()));
    assert_eq!(read(&store, "archive/seg-001").await, first);
    assert_eq!(
        s3.objects(),
        vec![("archive/seg-001".to_string(), first.len() as u64)]
    );

    let err = create(&store, "archive/seg-001", b"a different body")
        .await
        .expect_err("second create-only put on the same key must fail");
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "expected AlreadyExists, got {err:?}"
    );
    assert_eq!(read(&store, "archive/seg-001").await, first);
    assert_eq!(
        std::fs::read(s3.bucket_dir().join("archive/seg-001")).expect("file on disk"),
        first
    );
    // s3s-fs keeps its bookkeeping (ETag etc.) beside the bucket
    // directories, not in them: `objects()` sees only the object.
    let mut root: Vec<String> = std::fs::read_dir(s3.root())
        .expect("read root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    root.sort();
    println!("s3s-fs root: {root:?}");
    assert!(root.contains(&"otelraft-test".to_string()), "{root:?}");
    assert!(
        root.iter()
            .any(|n| n.starts_with(".bucket-") && n.ends_with(".internal.json")),
        "{root:?}"
    );
}

#[tokio::test]
async fn list_by_prefix_in_key_order_and_delete() {
    let s3 = S3Server::start().await;
    let store = store(&s3);

    // Written out of order; the listing must come back sorted.
    let objects: [(&str, usize); 5] = [
        ("p/logs/0003", 30),
        ("p/logs/0001", 10),
        ("p/logs/0010", 100),
        ("p/logs/0002", 0),
        ("p/metrics/0001", 7),
    ];
    for (key, len) in objects {
        create(&store, key, &vec![b'x'; len])
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    create(&store, "other/0001", b"elsewhere")
        .await
        .expect("put other");

    let listed: Vec<(String, u64)> = store
        .list(Some(&Path::from("p/logs")))
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(
        listed,
        vec![
            ("p/logs/0001".to_string(), 10),
            ("p/logs/0002".to_string(), 0),
            ("p/logs/0003".to_string(), 30),
            ("p/logs/0010".to_string(), 100),
        ]
    );
    let all: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list all");
    assert_eq!(
        all,
        [
            "other/0001",
            "p/logs/0001",
            "p/logs/0002",
            "p/logs/0003",
            "p/logs/0010",
            "p/metrics/0001"
        ]
    );
    assert_eq!(s3.objects().len(), 6);

    store
        .delete(&Path::from("p/logs/0003"))
        .await
        .expect("delete");
    let err = store
        .get(&Path::from("p/logs/0003"))
        .await
        .expect_err("deleted object must be gone");
    assert!(
        matches!(err, object_store::Error::NotFound { .. }),
        "expected NotFound, got {err:?}"
    );
    let listed: Vec<String> = store
        .list(Some(&Path::from("p/logs")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list after delete");
    assert_eq!(listed, ["p/logs/0001", "p/logs/0002", "p/logs/0010"]);
    assert!(!s3.objects().iter().any(|(k, _)| k == "p/logs/0003"));
    // A key freed by delete can be created again.
    create(&store, "p/logs/0003", b"again")
        .await
        .expect("re-create after delete");
    assert_eq!(read(&store, "p/logs/0003").await, b"again");
}

#[tokio::test]
async fn wrong_secret_key_is_rejected() {
    let s3 = S3Server::start().await;
    let bad = fast_fail(s3.builder().with_secret_access_key("not-the-secret"));

    let err = create(&bad, "k/1", b"payload")
        .await
        .expect_err("put with a wrong secret must fail");
    println!("wrong secret, put: {err:?}");
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "expected PermissionDenied, got {err:?}"
    );
    assert_eq!(s3.objects(), Vec::<(String, u64)>::new());

    // Listing errors are not mapped by status: a 403 on list is `Generic`,
    // with the status and S3 error code only in the message.
    let err = bad
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("list with a wrong secret must fail");
    println!("wrong secret, list: {err:?}");
    assert!(
        matches!(err, object_store::Error::Generic { store: "S3", .. }),
        "expected Generic, got {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("403") && msg.contains("SignatureDoesNotMatch"),
        "{msg}"
    );

    let wrong_key = fast_fail(s3.builder().with_access_key_id("AKUNKNOWN"));
    let err = create(&wrong_key, "k/1", b"payload")
        .await
        .expect_err("put with an unknown access key must fail");
    println!("unknown access key, put: {err:?}");
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "expected PermissionDenied, got {err:?}"
    );
    assert_eq!(s3.objects(), Vec::<(String, u64)>::new());

    // The right credentials still work.
    create(&store(&s3), "k/1", b"payload")
        .await
        .expect("put with the right credentials");
    assert_eq!(s3.objects(), vec![("k/1".to_string(), 7)]);
}

#[tokio::test]
async fn missing_bucket_is_an_error() {
    let s3 = S3Server::start().await;
    let missing = fast_fail(s3.builder().with_bucket_name("no-such-bucket"));

    // As with bad credentials, a failed list is `Generic`; the 404 and the
    // S3 code `NoSuchBucket` are only in the message.
    let err = missing
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("list of a missing bucket must fail");
    println!("missing bucket, list: {err:?}");
    assert!(
        matches!(err, object_store::Error::Generic { store: "S3", .. }),
        "expected Generic, got {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains("NoSuchBucket"), "{msg}");

    let err = missing
        .get(&Path::from("k/1"))
        .await
        .expect_err("get from a missing bucket must fail");
    println!("missing bucket, get: {err:?}");
    assert!(
        matches!(err, object_store::Error::NotFound { .. }),
        "expected NotFound, got {err:?}"
    );

    // `delete` goes through the bulk DeleteObjects API (POST /?delete),
    // which s3s-fs answers with success whatever the bucket; deleting
    // something absent is never an error anyway.
    let deleted = missing.delete(&Path::from("k/1")).await;
    println!("missing bucket, delete: {deleted:?}");
    assert!(deleted.is_ok(), "s3s-fs changed: delete gives {deleted:?}");

    // s3s-fs does not check the bucket on PutObject: the put succeeds and
    // creates the bucket directory. Real S3 answers 404 NoSuchBucket. The
    // archive must therefore verify the bucket with a list (or head) first
    // rather than rely on a put failing.
    let put = create(&missing, "k/1", b"payload").await;
    println!("missing bucket, put: {put:?}");
    assert!(
        put.is_ok(),
        "s3s-fs changed: put to a missing bucket gives {put:?}"
    );
    assert!(s3.root().join("no-such-bucket/k/1").is_file());
    assert_eq!(s3.objects(), Vec::<(String, u64)>::new());
}

#[tokio::test]
async fn server_down_then_restarted() {
    let mut s3 = S3Server::start().await;
    let store = store(&s3);
    create(&store, "seg/1", b"before the crash")
        .await
        .expect("put before kill");

    s3.kill();
    let started = Instant::now();
    let err = create(&store, "seg/2", b"while down")
        .await
        .expect_err("put while the server is down must fail");
    let took = started.elapsed();
    println!("server down, put after {took:?}: {err:?}");
    assert!(
        matches!(err, object_store::Error::Generic { store: "S3", .. }),
        "expected Generic, got {err:?}"
    );
    assert_eq!(
        http_error_kind(&err),
        Some(HttpErrorKind::Connect),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(15), "put took {took:?} to fail");
    let err = store
        .get(&Path::from("seg/1"))
        .await
        .expect_err("get while down");
    assert!(
        matches!(err, object_store::Error::Generic { .. }),
        "expected Generic, got {err:?}"
    );
    assert_eq!(
        http_error_kind(&err),
        Some(HttpErrorKind::Connect),
        "{err:?}"
    );

    s3.restart().await;
    // The same client (same endpoint and keys) works again.
    assert_eq!(read(&store, "seg/1").await, b"before the crash");
    create(&store, "seg/2", b"after the restart")
        .await
        .expect("put after restart");
    let err = create(&store, "seg/1", b"overwrite?")
        .await
        .expect_err("create-only still enforced after restart");
    assert!(matches!(err, object_store::Error::AlreadyExists { .. }));
    assert_eq!(
        s3.objects(),
        vec![("seg/1".to_string(), 16), ("seg/2".to_string(), 17)]
    );
}

#[test]
fn env_names_the_archive_settings() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s3 = rt.block_on(S3Server::start());
    let env = s3.env("cluster-a/");
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k} missing from {env:?}"))
    };
    assert_eq!(get("OTELRAFT_ARCHIVE__S3__ENDPOINT"), s3.endpoint);
    assert!(s3.endpoint.starts_with("http://127.0.0.1:"));
    assert_eq!(get("OTELRAFT_ARCHIVE__S3__BUCKET"), "otelraft-test");
    assert_eq!(get("OTELRAFT_ARCHIVE__S3__REGION"), "us-east-1");
    assert_eq!(get("OTELRAFT_ARCHIVE__S3__ACCESS_KEY_ID"), s3.access_key);
    assert_eq!(
        get("OTELRAFT_ARCHIVE__S3__SECRET_ACCESS_KEY"),
        s3.secret_key
    );
    assert_eq!(get("OTELRAFT_ARCHIVE__S3__ALLOW_HTTP"), "true");
    assert_eq!(get("OTELRAFT_ARCHIVE__PREFIX"), "cluster-a/");
    assert_eq!(env.len(), 7);
}

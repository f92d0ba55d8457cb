//! A real S3-compatible server (s3s-fs 0.14.1) for archive tests: started on
//! a free loopback port with random credentials (SigV4 is checked) and one
//! empty bucket, `otelraft-test`, backed by a temporary directory. It honours
//! conditional puts (`If-None-Match: *` answers 412 when the key exists).
//! Killed on drop; `kill()`/`restart()` keep the data.
//!
//! On disk, the server's root directory holds one directory per bucket and
//! each object is a plain file at `<root>/<bucket>/<key>` ('/' in keys become
//! subdirectories). Its own bookkeeping (`.bucket-*.object-*.internal.json`
//! with the ETag, `.metadata.json`, multipart `.upload*` files and
//! `.tmp.*.internal.part` staging files) sits directly in the root, never
//! inside a bucket directory, so `objects()` sees only real objects.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};

/// The bucket every `S3Server` creates.
pub const BUCKET: &str = "otelraft-test";
/// The region the clients sign for (s3s-fs accepts any).
pub const REGION: &str = "us-east-1";

/// The s3s-fs binary: `$OTELRAFT_TEST_S3S_FS`, else `s3s-fs` on PATH, else
/// `$HOME/.cargo/bin/s3s-fs` if it exists (where `cargo install` puts it).
fn binary() -> PathBuf {
    if let Some(b) = std::env::var_os("OTELRAFT_TEST_S3S_FS") {
        return PathBuf::from(b);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("s3s-fs");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let candidate = Path::new(&home).join(".cargo/bin/s3s-fs");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("s3s-fs")
}

/// One s3s-fs process.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

impl S3Server {
    /// Starts s3s-fs with a fresh data directory and waits until it answers.
    pub async fn start() -> S3Server {
        let port = crate::cluster::free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = rand::rng();
        let mut s = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key: format!("AK{}", Alphanumeric.sample_string(&mut rng, 18)),
            secret_key: Alphanumeric.sample_string(&mut rng, 40),
            bucket: BUCKET.to_string(),
            dir,
            child: None,
            port,
        };
        std::fs::create_dir_all(s.bucket_dir()).expect("create bucket directory");
        s.restart().await;
        s
    }

    /// The server's root directory (one subdirectory per bucket).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The directory holding the test bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root().join(&self.bucket)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("s3s-fs.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// (Re)starts the process on the same port, keys and data directory, and
    /// waits until it accepts connections and answers HTTP.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "s3s-fs already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("s3s-fs log");
        let bin = binary();
        let child = Command::new(&bin)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--access-key")
            .arg(&self.access_key)
            .arg("--secret-key")
            .arg(&self.secret_key)
            .arg(self.root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} ({e}); CI installs it with `cargo install s3s-fs --version 0.14.1 \
                     --features binary --locked` (see .ci/run), or set OTELRAFT_TEST_S3S_FS",
                    bin.display()
                )
            });
        self.child = Some(child);

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("s3s-fs exited during startup ({status}):\n{}", self.log());
            }
            let accepting =
                TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_secs(1))
                    .is_ok();
            // Any HTTP answer will do (an unsigned request gets an S3 error).
            if accepting && client.get(&self.endpoint).send().await.is_ok() {
                return;
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                panic!("s3s-fs did not come up on {addr}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the process (the data directory stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's stdout and stderr, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every object in the bucket as (key, size), sorted by key, read straight
    /// from the bucket directory. Directories (from '/' in keys, or left empty
    /// after deletes) are not objects.
    pub fn objects(&self) -> Vec<(String, u64)> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, u64)>) {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) => panic!("read {}: {e}", dir.display()),
            };
            for entry in entries {
                let entry = entry.expect("dir entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = format!("{prefix}{name}");
                let ft = entry.file_type().expect("file type");
                if ft.is_dir() {
                    walk(&entry.path(), &format!("{key}/"), out);
                } else if ft.is_file() {
                    out.push((key, entry.metadata().expect("metadata").len()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.bucket_dir(), "", &mut out);
        out.sort();
        out
    }

    /// The `OTELRAFT_ARCHIVE__*` overrides that point a node's archive at
    /// this server, with object keys under `prefix`.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("OTELRAFT_ARCHIVE__S3__ENDPOINT", self.endpoint.clone()),
            ("OTELRAFT_ARCHIVE__S3__BUCKET", self.bucket.clone()),
            ("OTELRAFT_ARCHIVE__S3__REGION", REGION.to_string()),
            (
                "OTELRAFT_ARCHIVE__S3__ACCESS_KEY_ID",
                self.access_key.clone(),
            ),
            (
                "OTELRAFT_ARCHIVE__S3__SECRET_ACCESS_KEY",
                self.secret_key.clone(),
            ),
            ("OTELRAFT_ARCHIVE__S3__ALLOW_HTTP", "true".to_string()),
            ("OTELRAFT_ARCHIVE__PREFIX", prefix.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// [`Self::env`] plus small, quickly sealed blocks, fast retries and
    /// frequent snapshots, so a short test produces many blocks and trims.
    pub fn fast_archive_env(&self, prefix: &str) -> Vec<(String, String)> {
        let mut env = self.env(prefix);
        env.extend(
            [
                ("OTELRAFT_ARCHIVE__BLOCK_MAX_BYTES", "16384"),
                ("OTELRAFT_ARCHIVE__BLOCK_MAX_AGE_MS", "300"),
                ("OTELRAFT_ARCHIVE__RETRY_INITIAL_MS", "100"),
                ("OTELRAFT_ARCHIVE__RETRY_MAX_MS", "500"),
                ("OTELRAFT_ARCHIVE__REQUEST_TIMEOUT_MS", "3000"),
                ("OTELRAFT_RAFT__SNAPSHOT_EVERY_ENTRIES", "40"),
                ("OTELRAFT_RAFT__LOG_KEEP_ENTRIES", "0"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env
    }

    /// An object_store client builder for this server and bucket:
    /// path-style requests over plain HTTP, conditional puts by ETag.
    pub fn builder(&self) -> object_store::aws::AmazonS3Builder {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_region(REGION)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

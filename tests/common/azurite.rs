//! Azure Blob Storage through Azurite, Microsoft's emulator (npm `azurite`, installed by
//! `scripts/setup.sh` into `~/.cache/pipeline/azurite`), started on a free loopback port per
//! test and killed on drop. The remote is `az://shared/team/cache`.

use std::process::Command;

use futures::TryStreamExt;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::remote::Backend;
use super::service::{find_exe, setup_cache, spawn_listening, Service};

const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (published by Microsoft, not a secret).
const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CONTAINER: &str = "shared";
const PREFIX: &str = "team/cache";

/// How `pipeline` is told where the storage is.
#[derive(Clone, Copy, PartialEq)]
pub enum Reach {
    /// As a real account: name, key and endpoint (`AZURE_STORAGE_ENDPOINT`).
    Account,
    /// Through object_store's emulator switch (`AZURE_STORAGE_USE_EMULATOR`,
    /// `AZURITE_BLOB_STORAGE_URL`), which supplies the development account and key itself.
    Emulator,
}

pub struct Azurite {
    server: Service,
    _dir: tempfile::TempDir,
    reach: Reach,
    runtime: tokio::runtime::Runtime,
    /// The test's own client, to read and damage what the engine pushed.
    store: Box<dyn ObjectStore>,
}

impl Azurite {
    /// Starts Azurite with an empty container; fails the test (it does not skip) when Azurite is
    /// not installed.
    pub fn start(reach: Reach) -> Self {
        let exe = find_exe("azurite-blob", &[setup_cache().join("azurite/node_modules/.bin")]).unwrap_or_else(|| {
            panic!("`azurite-blob` (the Azure Blob Storage emulator these tests start on loopback) is not installed: run scripts/setup.sh (it runs `npm install azurite` into ~/.cache/pipeline/azurite)")
        });
        let dir = tempfile::tempdir().unwrap();
        let server = spawn_listening("azurite-blob", &dir.path().join("azurite.log"), |port| {
            let mut cmd = Command::new(&exe);
            // No telemetry: tests make no requests beyond loopback.
            cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--disableTelemetry"])
                .args(["--skipApiVersionCheck", "--location"])
                .arg(dir.path());
            cmd
        });
        create_container(server.port);
        let mut builder = MicrosoftAzureBuilder::new().with_url(format!("az://{CONTAINER}"));
        for (key, value) in account_env(server.port) {
            builder = builder.with_config(key.to_ascii_lowercase().parse::<AzureConfigKey>().unwrap(), value);
        }
        let store = Box::new(builder.build().unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Self { server, _dir: dir, reach, runtime, store }
    }

    /// Every object in the container, prefix included.
    pub fn list_container(&self) -> Vec<String> {
        let listed: Vec<_> = self.runtime.block_on(self.store.list(None).try_collect()).unwrap();
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }

    fn object(path: &str) -> ObjectPath {
        ObjectPath::from(format!("{PREFIX}/{path}"))
    }
}

fn account_env(port: u16) -> Vec<(String, String)> {
    [
        ("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT.to_owned()),
        ("AZURE_STORAGE_ACCOUNT_KEY", KEY.to_owned()),
        ("AZURE_STORAGE_ENDPOINT", format!("http://127.0.0.1:{port}/{ACCOUNT}")),
        ("AZURE_ALLOW_HTTP", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Creates the container with one Shared Key-signed `PUT ?restype=container` (object_store
/// reads and writes blobs but does not create containers, and Azurite starts with none). Signed
/// by Node, which Azurite runs on, so the tests need no crypto crates of their own.
fn create_container(port: u16) {
    const SCRIPT: &str = r#"
        const [port, account, key, container] = process.argv.slice(1);
        const crypto = require("crypto"), http = require("http");
        const date = new Date().toUTCString(), version = "2021-08-06";
        // The verb, eleven empty standard headers, the x-ms- headers, the resource.
        const toSign = `PUT${"\n".repeat(12)}x-ms-date:${date}\nx-ms-version:${version}\n` +
            `/${account}/${account}/${container}\nrestype:container`;
        const signature = crypto.createHmac("sha256", Buffer.from(key, "base64")).update(toSign).digest("base64");
        const headers = { "x-ms-date": date, "x-ms-version": version, "Content-Length": 0,
            Authorization: `SharedKey ${account}:${signature}` };
        http.request({ host: "127.0.0.1", port, method: "PUT", path: `/${account}/${container}?restype=container`, headers },
            (res) => { console.log(res.statusCode); res.resume(); }).end();
    "#;
    // Azurite can accept a first connection before its blob service answers (seen once as
    // ECONNREFUSED right after the port opened): retry a refused connection for a few seconds.
    let mut attempts = 0;
    loop {
        let out = Command::new("node").args(["-e", SCRIPT, &port.to_string(), ACCOUNT, KEY, CONTAINER]).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        attempts += 1;
        if stdout.trim() != "201" && stderr.contains("ECONNREFUSED") && attempts < 50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        assert_eq!(stdout.trim(), "201", "Azurite did not create the container (attempt {attempts}): {stderr}");
        break;
    }
}

impl Backend for Azurite {
    fn url(&self) -> String {
        format!("az://{CONTAINER}/{PREFIX}")
    }
    fn env(&self) -> Vec<(String, String)> {
        match self.reach {
            Reach::Account => account_env(self.server.port),
            Reach::Emulator => vec![
                ("AZURE_STORAGE_USE_EMULATOR".to_owned(), "true".to_owned()),
                ("AZURITE_BLOB_STORAGE_URL".to_owned(), format!("http://127.0.0.1:{}", self.server.port)),
            ],
        }
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        let root = format!("{PREFIX}/");
        let listed: Vec<_> =
            self.runtime.block_on(self.store.list(Some(&Self::object(prefix.trim_end_matches('/')))).try_collect()).unwrap();
        let mut paths: Vec<String> = listed.into_iter().map(|m| m.location.as_ref().strip_prefix(&root).unwrap().to_owned()).collect();
        paths.sort();
        paths
    }
    fn read(&self, path: &str) -> Vec<u8> {
        self.runtime.block_on(async { self.store.get(&Self::object(path)).await.unwrap().bytes().await.unwrap().to_vec() })
    }
    fn write(&self, path: &str, bytes: &[u8]) {
        self.runtime.block_on(self.store.put(&Self::object(path), PutPayload::from(bytes.to_vec()))).unwrap();
    }
}

//! Enterprise networks: the whole embedded pipeline over TLS to both emulators,
//! with certificates from a private CA made here, and through a real HTTP
//! CONNECT proxy on loopback that counts every tunnel. The emulators are named
//! `falcon.test` and `cloudtrail.test`, which only the proxy resolves, so a
//! request that went around the proxy could not have reached them at all.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use common::*;
use falcon_lake::emulate::cloudtrail::CloudTrailEmulator;
use falcon_lake::emulate::falcon::FalconEmulator;
use falcon_lake::emulate::pipeline_config::EmulatedConfig;
use falcon_lake::emulate::TlsArgs;

const WAIT: Duration = Duration::from_secs(90);
const FALCON_HOST: &str = "falcon.test";
const CLOUDTRAIL_HOST: &str = "cloudtrail.test";

/// A private CA and a server certificate for both emulator names, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki() -> Pki {
    let dir = tempfile::tempdir().expect("dir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "falcon-lake test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec![FALCON_HOST.to_string(), CLOUDTRAIL_HOST.to_string()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, FALCON_HOST);
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
        dir,
    }
}

/// An HTTP CONNECT proxy on loopback (RFC 9110 §9.3.6). It resolves `*.test`
/// names to 127.0.0.1, refuses every other target, and counts tunnels per
/// `host:port`. With `credentials`, it demands `Proxy-Authorization: Basic`.
struct ConnectProxy {
    addr: SocketAddr,
    tunnels: Arc<Mutex<HashMap<String, u64>>>,
    refused: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl ConnectProxy {
    async fn start(credentials: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let tunnels = Arc::new(Mutex::new(HashMap::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let expected_auth = credentials.map(|(user, password)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        let (counts, refusals, stopped) = (tunnels.clone(), refused.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
                };
                let (counts, refusals, auth) = (counts.clone(), refusals.clone(), expected_auth.clone());
                tokio::spawn(async move {
                    let _ = tunnel(client, counts, refusals, auth).await;
                });
            }
        });
        Self {
            addr,
            tunnels,
            refused,
            stop,
        }
    }

    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!("http://{user}:{password}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    fn tunnels(&self) -> HashMap<String, u64> {
        self.tunnels.lock().expect("lock").clone()
    }

    fn refused(&self) -> Vec<String> {
        self.refused.lock().expect("lock").clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn tunnel(
    mut client: TcpStream,
    counts: Arc<Mutex<HashMap<String, u64>>>,
    refused: Arc<Mutex<Vec<String>>>,
    auth: Option<String>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default().to_string();
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let given_auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_string());
    let refuse = |why: String| refused.lock().expect("lock").push(why);
    if method != "CONNECT" {
        refuse(format!("{method} {target}"));
        return client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await;
    }
    if auth.is_some() && given_auth != auth {
        refuse(format!("CONNECT {target} without the right credentials"));
        return client
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\r\n",
            )
            .await;
    }
    let upstream = match target.rsplit_once(':') {
        Some((host, port)) if host.ends_with(".test") => format!("127.0.0.1:{port}"),
        _ => {
            refuse(format!("CONNECT {target}: not a .test name"));
            return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        }
    };
    let mut server = TcpStream::connect(&upstream).await?;
    *counts.lock().expect("lock").entry(target.to_string()).or_insert(0) += 1;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
    server.write_all(&head[end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// Both emulators over TLS and a config that names them by their `.test` names.
struct TlsPipeline {
    pki: Pki,
    falcon: FalconEmulator,
    cloudtrail: CloudTrailEmulator,
    config: PathBuf,
    secrets: PathBuf,
}

impl TlsPipeline {
    async fn start(falcon_extra: &str, cloudtrail_extra: &str) -> Self {
        init_logs();
        let pki = make_pki();
        let tls = TlsArgs::new(&pki.cert, &pki.key);
        let mut falcon = falcon_emulator_config();
        falcon.events = 600;
        falcon.tls = tls.clone();
        let mut cloudtrail = cloudtrail_emulator_config();
        cloudtrail.tls = tls;
        let falcon = FalconEmulator::start(falcon).await.expect("falcon emulator");
        let cloudtrail = CloudTrailEmulator::start(cloudtrail)
            .await
            .expect("cloudtrail emulator");
        assert_eq!(falcon.url().scheme(), "https");
        let falcon_url = named(FALCON_HOST, falcon.server.addr);
        let cloudtrail_url = named(CLOUDTRAIL_HOST, cloudtrail.server.addr);
        let wasm = module_wasm();
        let text = EmulatedConfig {
            name: "tls",
            falcon_url: &falcon_url,
            client_id: CLIENT_ID,
            cloudtrail_url: &cloudtrail_url,
            channel_arn: CHANNEL_ARN,
            wasm: &wasm,
            db: Path::new("log.db"),
            sync: "normal",
            extra_falcon: &format!("  idle_timeout: 5s\n  reconnect_backoff_max: 500ms\n{falcon_extra}"),
            extra_cloudtrail: &format!(
                "  linger: 20ms\n  retry_initial_backoff: 20ms\n  retry_max_backoff: 300ms\n{cloudtrail_extra}"
            ),
            extra: "",
        }
        .yaml();
        let config = pki.dir.path().join("config.yaml");
        std::fs::write(&config, text).expect("config");
        let secrets = pki.dir.path().join("secrets.txt");
        std::fs::write(&secrets, format!("FALCON_CLIENT_SECRET={CLIENT_SECRET}\n")).expect("secrets");
        Self {
            pki,
            falcon,
            cloudtrail,
            config,
            secrets,
        }
    }

    fn load(&self) -> falcon_lake::config::embedded::EmbeddedConfig {
        let store = falcon_lake::config::secrets::SecretStore::File(self.secrets.clone());
        falcon_lake::config::embedded::EmbeddedConfig::load(&self.config, &store).expect("valid config")
    }

    /// Every id the emulated events map to (read in-process: the control API is HTTPS too).
    fn expected(&self) -> Vec<String> {
        let mapper = falcon_lake::audit::Mapper::new(falcon_lake::audit::MappingParams::default());
        let mut ids = Vec::new();
        for (partition, log) in self.falcon.state.partitions.iter().enumerate() {
            for event in log.read(0, usize::MAX) {
                let key = falcon_lake::audit::SourceKey::new(partition as u32, event.offset).encode();
                let ctx = falcon_lake::audit::RecordContext {
                    key: Some(&key),
                    timestamp_ms: 0,
                };
                if let falcon_lake::audit::Outcome::Emit(audit) = mapper.map(&ctx, &event.line) {
                    ids.push(audit.id);
                }
            }
        }
        ids.sort();
        ids
    }

    fn stored(&self) -> BTreeMap<String, u32> {
        let store = self.cloudtrail.state.store.lock().expect("store");
        store.ids.iter().map(|((_, id), n)| (id.clone(), *n)).collect()
    }

    async fn wait_delivered(&self, expected: &[String]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stored = self.stored();
            if expected.iter().all(|id| stored.contains_key(id)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {} delivered",
                stored.len(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until `run` has finished; says how.
async fn run_until_end(run: &tokio::task::JoinHandle<anyhow::Result<()>>) -> String {
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    "see the log (RUST_LOG=falcon_lake=debug)".to_string()
}

fn named(host: &str, addr: SocketAddr) -> url::Url {
    url::Url::parse(&format!("https://{host}:{}/", addr.port())).expect("url")
}

fn ca_line(pki: &Pki) -> String {
    format!("  ca_file: {}\n", pki.ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_runs_over_tls_through_a_connect_proxy() {
    assert!(
        tokio::net::lookup_host(format!("{FALCON_HOST}:443")).await.is_err(),
        "the emulators' names must not resolve without the proxy"
    );
    let credentials = Some(("proxyuser", "proxy-pass-0123"));
    let proxy = ConnectProxy::start(credentials).await;
    let proxy_line = format!("  proxy: {}\n", proxy.url(credentials));
    let p = TlsPipeline::start(&proxy_line, &proxy_line).await;
    // The CA is written after the emulators start, so add it to the config now.
    let text = std::fs::read_to_string(&p.config).expect("config");
    let text = text
        .replacen("falcon:\n", &format!("falcon:\n{}", ca_line(&p.pki)), 1)
        .replacen("cloudtrail:\n", &format!("cloudtrail:\n{}", ca_line(&p.pki)), 1);
    std::fs::write(&p.config, text).expect("config");
    let expected = p.expected();
    assert!(expected.len() > 100, "{} audit events", expected.len());

    let pipeline = falcon_lake::pipeline::embedded::EmbeddedPipeline::build(p.load(), Some(test_credentials()))
        .await
        .expect("pipeline builds");
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(cancel.clone()));
    tokio::select! {
        () = p.wait_delivered(&expected) => {}
        ended = run_until_end(&run) => panic!("the pipeline stopped: {ended}"),
    }
    cancel.cancel();
    run.await.expect("task").expect("clean stop");

    let stored = p.stored();
    assert_eq!(
        stored.keys().cloned().collect::<Vec<_>>(),
        expected,
        "exactly the expected events"
    );
    let tunnels = proxy.tunnels();
    let falcon_target = format!("{FALCON_HOST}:{}", p.falcon.server.addr.port());
    let cloudtrail_target = format!("{CLOUDTRAIL_HOST}:{}", p.cloudtrail.server.addr.port());
    assert!(
        tunnels.get(&falcon_target).copied().unwrap_or(0) >= 2,
        "token, discovery and feed: {tunnels:?}"
    );
    assert!(
        tunnels.get(&cloudtrail_target).copied().unwrap_or(0) >= 1,
        "{tunnels:?}"
    );
    assert_eq!(tunnels.len(), 2, "no other target: {tunnels:?}");
    assert!(proxy.refused().is_empty(), "refused: {:?}", proxy.refused());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_are_checked_by_default() {
    let proxy = ConnectProxy::start(None).await;
    let proxy_line = format!("  proxy: {}\n", proxy.url(None));
    let p = TlsPipeline::start(&proxy_line, &proxy_line).await;
    let config = p.load();
    let client = falcon_lake::falcon::FalconClient::new(config.falcon.clone(), Default::default()).expect("client");
    let err = client.auth().token().await.expect_err("an unknown issuer is refused");
    let message = format!("{err}").to_lowercase();
    assert!(
        message.contains("certificate") || message.contains("issuer"),
        "{message}"
    );

    let service = falcon_lake::cloudtrail::service::CloudTrailService::new(
        config.destination.cloudtrail().expect("a cloudtrail destination"),
        Some(test_credentials()),
    )
    .await
    .expect("service");
    let failure = service.put(&[]).await.expect_err("an unknown issuer is refused");
    let message = format!("{failure:?}").to_lowercase();
    assert!(
        message.contains("certificate") || message.contains("issuer"),
        "{message}"
    );
    assert!(p.stored().is_empty());
    assert!(
        proxy.tunnels().len() == 2,
        "both went through the proxy: {:?}",
        proxy.tunnels()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_proxy_from_the_environment_carries_both_clients() {
    let proxy = ConnectProxy::start(None).await;
    let p = TlsPipeline::start("", "").await;
    let text = std::fs::read_to_string(&p.config).expect("config");
    let text = text
        .replacen("falcon:\n", &format!("falcon:\n{}", ca_line(&p.pki)), 1)
        .replacen("cloudtrail:\n", &format!("cloudtrail:\n{}", ca_line(&p.pki)), 1);
    std::fs::write(&p.config, text).expect("config");
    let expected = p.expected();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_falcon-lake"))
        .args(["run", "--config"])
        .arg(&p.config)
        .arg("--secrets")
        .arg(&p.secrets)
        .env("HTTPS_PROXY", proxy.url(None))
        .env("NO_PROXY", "example.invalid")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let delivered = tokio::time::timeout(WAIT, p.wait_delivered(&expected)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    delivered.expect("delivered through HTTPS_PROXY");
    assert!(status.success(), "{status:?}");
    let tunnels = proxy.tunnels();
    assert!(tunnels.keys().any(|t| t.starts_with(FALCON_HOST)), "{tunnels:?}");
    assert!(tunnels.keys().any(|t| t.starts_with(CLOUDTRAIL_HOST)), "{tunnels:?}");
}

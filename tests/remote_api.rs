//! The remote API on TCP with mutual TLS and roles: certificates are made
//! here with rcgen; the client is rustls + hyper over a real TCP connection.

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Agent};
use http_body_util::BodyExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

/// A CA that signs certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate with subject CN `cn` (and DNS names `sans`).
    fn leaf(&self, cn: &str, sans: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// A port free on loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Remote {
    agent: Agent,
    port: u16,
    server_ca: Ca,
    client_ca: Ca,
}

fn start(dir: &Path) -> Remote {
    start_with(dir, "")
}

/// [`start`] with more config after the roles (`[[api.tokens]]`).
fn start_with(dir: &Path, more: &str) -> Remote {
    let server_ca = Ca::new("berth test server ca");
    let client_ca = Ca::new("berth test client ca");
    let server = server_ca.leaf("berth agent", &["localhost"], false);
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(dir.join("clients.pem"), &client_ca.pem).unwrap();
    let port = free_port();
    let agent = Agent::start_with_config(&format!(
        r#"
[api.tcp]
listen = "127.0.0.1:{port}"
cert = "{d}/server.pem"
key = "{d}/server.key"
client_ca = "{d}/clients.pem"

[api.roles]
operator = ["alice"]
read-only = ["reader"]
{more}
"#,
        d = dir.display()
    ));
    Remote {
        agent,
        port,
        server_ca,
        client_ca,
    }
}

/// One request over TLS: `Err` when the handshake (or the first read,
/// where TLS 1.3 reports a refused client certificate) fails.
fn request(
    remote: &Remote,
    client: Option<&Leaf>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Vec<u8>), String> {
    request_accepting(remote, client, method, path, body, None).map(|(s, _, b)| (s, b))
}

/// [`request`] with an `Accept` header; also answers the content type.
fn request_accepting(
    remote: &Remote,
    client: Option<&Leaf>,
    method: &str,
    path: &str,
    body: Option<Value>,
    accept: Option<&str>,
) -> Result<(u16, String, Vec<u8>), String> {
    request_full(remote, client, method, path, body, accept, None)
}

/// [`request_accepting`] with an `Authorization` header.
fn request_full(
    remote: &Remote,
    client: Option<&Leaf>,
    method: &str,
    path: &str,
    body: Option<Value>,
    accept: Option<&str>,
    authorization: Option<&str>,
) -> Result<(u16, String, Vec<u8>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(remote.server_ca.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(leaf) => builder
                .with_client_auth_cert(
                    vec![leaf.der.clone()],
                    PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", remote.port))
            .await
            .map_err(|e| e.to_string())?;
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let body = body.map(|v| v.to_string()).unwrap_or_default();
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        if let Some(accept) = accept {
            builder = builder.header("accept", accept);
        }
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        let response = sender
            .send_request(
                builder
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap(),
            )
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, content_type, bytes.to_vec()))
    })
}

#[test]
fn refused_clients_and_an_operator_over_tcp() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let remote = start(dir.path());
    let alice = remote.client_ca.leaf("alice", &[], false);
    let reader = remote.client_ca.leaf("reader", &[], false);
    let nobody = remote.client_ca.leaf("mallory", &[], false);
    let expired = remote.client_ca.leaf("alice", &[], true);
    let other_ca = Ca::new("another ca").leaf("alice", &[], false);

    // No client certificate, another CA's, an expired one: the handshake fails.
    for (what, client) in [
        ("no client certificate", None),
        ("another CA", Some(&other_ca)),
        ("expired", Some(&expired)),
    ] {
        let got = request(&remote, client, "GET", "/v1/containers", None);
        assert!(got.is_err(), "{what}: {got:?}");
    }

    // A read-only identity may list but not launch: 403 with an audit line.
    let (status, _) = request(&remote, Some(&reader), "GET", "/v1/containers", None).unwrap();
    assert_eq!(status, 200);
    let launch = json!({"id": "remote", "command": ["echo", "hello over tls"]});
    let (status, body) = request(
        &remote,
        Some(&reader),
        "POST",
        "/v1/containers",
        Some(launch.clone()),
    )
    .unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "forbidden");
    eventually(Duration::from_secs(10), "audit line for reader", || {
        let log = remote.agent.log();
        log.lines()
            .any(|l| l.contains("API request denied") && l.contains("reader") && l.contains("POST"))
            .then_some(())
    });
    // A certificate of the right CA that maps to no role: 403.
    let (status, _) = request(&remote, Some(&nobody), "GET", "/v1/containers", None).unwrap();
    assert_eq!(status, 403);
    assert!(
        remote
            .agent
            .api("GET", "/v1/containers/remote", None)
            .status
            == 404
    );
    // Attack: a CN carrying a newline cannot forge an audit line.
    let forger = remote
        .client_ca
        .leaf("x\nforged audit line who=alice", &[], false);
    let (status, _) = request(&remote, Some(&forger), "DELETE", "/v1/containers/x", None).unwrap();
    assert_eq!(status, 403);
    eventually(Duration::from_secs(10), "audit line for the forger", || {
        remote
            .agent
            .log()
            .contains("forged audit line")
            .then_some(())
    });
    assert!(
        !remote.agent.log().lines().any(|l| l.starts_with("forged")),
        "{}",
        remote.agent.log()
    );

    // The operator launches and reads the logs.
    let (status, body) = request(
        &remote,
        Some(&alice),
        "POST",
        "/v1/containers",
        Some(launch),
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, _) = request(
        &remote,
        Some(&alice),
        "GET",
        "/v1/containers/remote/wait",
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, logs) = request(
        &remote,
        Some(&alice),
        "GET",
        "/v1/containers/remote/logs?stream=stdout",
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&logs).contains("hello over tls"),
        "{}",
        String::from_utf8_lossy(&logs)
    );
    // The unix socket keeps working.
    assert_eq!(
        remote
            .agent
            .api("GET", "/v1/containers/remote", None)
            .status,
        200
    );
}

#[test]
fn non_loopback_without_client_ca_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server ca");
    let server = ca.leaf("berth agent", &["localhost"], false);
    std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &server.key_pem).unwrap();
    let (agent_dir, output) = common::agent_start_output(
        None,
        [
            "--tcp".into(),
            "0.0.0.0:0".into(),
            "--tls-cert".into(),
            dir.path().join("server.pem").into_os_string(),
            "--tls-key".into(),
            dir.path().join("server.key").into_os_string(),
            "--cgroup-root".into(),
            format!("berth-test-refuse-{}", std::process::id()).into(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("non-loopback") && stderr.contains("client_ca"),
        "{stderr}"
    );
    assert!(!agent_dir.path().join("s.sock").exists());
}

/// A TLS connection as `alice`: the request sender and the server's leaf.
async fn connect(
    remote: &Remote,
    client: &Leaf,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    CertificateDer<'static>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(remote.server_ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![client.der.clone()],
            PrivateKeyDer::try_from(client.key_der.clone()).unwrap(),
        )
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", remote.port))
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let server = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    (sender, server)
}

fn get(path: &str) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    hyper::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap()
}

#[test]
fn sighup_rotates_the_certificate_and_keeps_open_streams() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let remote = start(dir.path());
    let alice = remote.client_ca.leaf("alice", &[], false);
    launch_ticker(&remote, &alice);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_sender, old_cert, mut body, mut seen) = follow_ticker(&remote, &alice).await;

        // Rotate: a new pair on disk, then SIGHUP.
        let rotated = remote
            .server_ca
            .leaf("berth agent rotated", &["localhost"], false);
        std::fs::write(dir.path().join("server.pem"), &rotated.cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), &rotated.key_pem).unwrap();
        assert_eq!(
            // SAFETY: kill with the agent's own pid and a valid signal.
            unsafe { libc::kill(remote.agent.pid().unwrap() as i32, libc::SIGHUP) },
            0
        );
        eventually(Duration::from_secs(30), "certificate reloaded", || {
            remote
                .agent
                .log()
                .contains("API TLS certificate reloaded")
                .then_some(())
        });

        // A new connection sees the new certificate.
        let (_, new_cert) = connect(&remote, &alice).await;
        assert_eq!(new_cert, rotated.der);
        assert_ne!(new_cert, old_cert);

        // The open stream goes on after the rotation.
        read_more(&mut seen, &mut body).await;
    });
    let (status, _) = request(
        &remote,
        Some(&alice),
        "POST",
        "/v1/containers/ticker/kill",
        None,
    )
    .unwrap();
    assert!(status < 300, "kill: {status}");
}

/// A plain HTTP GET on loopback (Prometheus's own API), body as JSON.
fn http_get_json(port: u16, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

#[test]
fn a_real_prometheus_scrapes_metrics_over_mutual_tls() {
    require_root!();
    let Some(prometheus) = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        common::skip(
            "a_real_prometheus_scrapes_metrics_over_mutual_tls",
            "no prometheus binary (apt-get install prometheus)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let remote = start(dir.path());
    let reader = remote.client_ca.leaf("reader", &[], false);
    let launch = json!({"id": "metered", "command": ["sleep", "1000"],
        "labels": {"team.name": "db"}});
    let admin = remote.client_ca.leaf("alice", &[], false);
    let (status, body) = request(
        &remote,
        Some(&admin),
        "POST",
        "/v1/containers",
        Some(launch),
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    // The read-only identity may read the metrics; promtool accepts them.
    let (status, text) = request(&remote, Some(&reader), "GET", "/metrics", None).unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("container_memory_usage_bytes{")
            && text.contains("berth_containers{")
            && text.contains("# TYPE container_cpu_usage_seconds_total counter")
            && text.contains("container_cpu_usage_seconds_total{")
            && text.contains("container_processes{"),
        "{text}"
    );
    let promtool = Path::new(prometheus).with_file_name("promtool");
    if promtool.exists() {
        let check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .output_with_stdin(text.as_bytes());
        assert!(check.status.success(), "promtool: {}", check.stderr_text());
    }

    // Prometheus scrapes the TCP listener with the reader's certificate.
    std::fs::write(dir.path().join("server-ca.pem"), &remote.server_ca.pem).unwrap();
    std::fs::write(dir.path().join("reader.pem"), &reader.cert_pem).unwrap();
    std::fs::write(dir.path().join("reader.key"), &reader.key_pem).unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: berth\n    scheme: https\n    tls_config:\n      ca_file: {d}/server-ca.pem\n      cert_file: {d}/reader.pem\n      key_file: {d}/reader.key\n      server_name: localhost\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            remote.port
        ),
    )
    .unwrap();
    let web = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut child = Command::new(prometheus)
        .arg(format!("--config.file={d}/prometheus.yml"))
        .arg(format!("--storage.tsdb.path={d}/tsdb"))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let prometheus_log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let target = eventually(Duration::from_secs(60), "target up", || {
            let targets = http_get_json(web, "/api/v1/targets")?;
            let target = targets["data"]["activeTargets"].get(0)?.clone();
            (target["health"] == "up").then_some(target)
        });
        assert_eq!(target["lastError"], "", "{target}");
        let value = eventually(Duration::from_secs(60), "memory sample", || {
            let answer = http_get_json(
                web,
                // {name="metered",container_label_team_name="db"}: cAdvisor's
                // label names for the container's labels.
                "/api/v1/query?query=container_memory_usage_bytes%7Bname%3D%22metered%22%2Ccontainer_label_team_name%3D%22db%22%7D",
            )?;
            let sample = answer["data"]["result"].get(0)?.clone();
            sample["value"][1].as_str()?.parse::<f64>().ok()
        });
        assert!(value > 0.0, "memory usage {value}");
        let stats = remote
            .agent
            .api("GET", "/v1/containers/metered/stats", None);
        let current = stats.body["isolators"]["memory"]["current_bytes"]
            .as_f64()
            .unwrap();
        // The same cgroup, read a moment apart: within a factor of 4.
        assert!(
            value < current * 4.0 && current < value * 4.0,
            "prometheus {value}, stats {current}"
        );
        eprintln!("prometheus saw {value} bytes, stats {current}");
    }));
    let _ = child.kill();
    let _ = child.wait();
    let _ = request(
        &remote,
        Some(&admin),
        "POST",
        "/v1/containers/metered/kill",
        None,
    );
    if let Err(e) = result {
        eprintln!("prometheus log:\n{}", prometheus_log());
        std::panic::resume_unwind(e);
    }
}

trait WithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl WithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

trait StderrText {
    fn stderr_text(&self) -> String;
}

impl StderrText for std::process::Output {
    fn stderr_text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

/// The value of `metric`'s sample for container `name` in the text.
fn sample(text: &str, metric: &str, name: &str) -> Option<f64> {
    let label = format!("name=\"{name}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn metrics_follow_the_cpu_quota_and_speak_openmetrics_when_asked() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let remote = start(dir.path());
    let alice = remote.client_ca.leaf("alice", &[], false);
    let reader = remote.client_ca.leaf("reader", &[], false);
    let launch = json!({"id": "busy", "command": ["sh", "-c", "while :; do :; done"],
        "resources": {"cpus": 0.5}});
    let (status, body) = request(
        &remote,
        Some(&alice),
        "POST",
        "/v1/containers",
        Some(launch),
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let scrape = || {
        let (status, text) = request(&remote, Some(&reader), "GET", "/metrics", None).unwrap();
        assert_eq!(status, 200);
        String::from_utf8(text).unwrap()
    };
    let text = scrape();
    assert_eq!(
        sample(&text, "container_spec_cpu_quota", "busy"),
        Some(50000.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "container_spec_cpu_period", "busy"),
        Some(100000.0),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let cpu = |text: &str| sample(text, "container_cpu_usage_seconds_total", "busy").unwrap();
    let (start, t0) = (cpu(&scrape()), std::time::Instant::now());
    // A measuring window, as tests/launch.rs's quota test.
    std::thread::sleep(Duration::from_secs(2));
    let text = scrape();
    let rate = (cpu(&text) - start) / t0.elapsed().as_secs_f64();
    assert!(
        (0.35..=0.6).contains(&rate),
        "counter grew at {rate:.3} CPUs under a 0.5 CPU quota"
    );
    assert!(sample(&text, "container_cpu_cfs_throttled_periods_total", "busy").unwrap() > 0.0);

    // OpenMetrics when asked: its content type and the `# EOF` trailer.
    let (status, content_type, body) = request_accepting(
        &remote,
        Some(&reader),
        "GET",
        "/metrics",
        None,
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = String::from_utf8(body).unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE container_cpu_usage_seconds counter"),
        "{body}"
    );
    assert!(!text.contains("# EOF"));
    let _ = request(
        &remote,
        Some(&alice),
        "POST",
        "/v1/containers/busy/kill",
        None,
    );
}

#[test]
fn attach_works_over_the_tls_listener() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let remote = start(dir.path());
    let alice = remote.client_ca.leaf("alice", &[], false);
    let (status, body) = request(
        &remote,
        Some(&alice),
        "POST",
        "/v1/containers",
        Some(json!({"id": "fed", "stdin": true, "command": ["cat"]})),
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ws = runtime.block_on(async {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(remote.server_ca.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![alice.der.clone()],
                PrivateKeyDer::try_from(alice.key_der.clone()).unwrap(),
            )
            .unwrap();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", remote.port))
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut request = "wss://localhost/v1/containers/fed/attach?stdin=1"
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "v5.channel.k8s.io".parse().unwrap(),
        );
        // The upgrade needs hyper's `with_upgrades` on the TCP listener too.
        let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .expect("a WebSocket over the TLS listener");
        let mut frame = vec![0u8];
        frame.extend_from_slice(b"hi over tls\n");
        ws.send(Message::binary(frame)).await.unwrap();
        ws.send(Message::binary(vec![255u8, 0])).await.unwrap();
        ws
    });
    let done = remote.agent.wait("fed");
    assert_eq!(remote.agent.stdout("fed"), "hi over tls\n");
    assert_eq!(done["exit_code"], 0, "{done}");
}

/// `berth token hash` for `token`: the config entry it prints.
fn token_entry(token: &str, name: &str, role: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["token", "hash", "--name", name, "--role", role])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let entry = String::from_utf8(output.stdout).unwrap();
    assert!(
        entry.contains("[[api.tokens]]") && !entry.contains(token),
        "{entry}"
    );
    entry
}

#[test]
fn bearer_tokens_over_tls_only_with_roles_and_audit() {
    require_root!();
    let operator_token = "op-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
    let reader_token = "ro-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let dir = tempfile::tempdir().unwrap();
    let more = token_entry(operator_token, "deployer", "operator")
        + &token_entry(reader_token, "grafana", "read-only");
    let remote = start_with(dir.path(), &more);
    let bearer = |token: &str| format!("Bearer {token}");
    let call = |client: Option<&Leaf>,
                method: &str,
                path: &str,
                body: Option<Value>,
                auth: Option<&str>| {
        request_full(&remote, client, method, path, body, None, auth)
            .map(|(status, _, body)| (status, String::from_utf8_lossy(&body).into_owned()))
    };

    // A read-only token lists but may not launch: 403, audited by its name.
    let (status, body) = call(
        None,
        "GET",
        "/v1/containers",
        None,
        Some(&bearer(reader_token)),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let launch = json!({"id": "tokened", "command": ["echo", "hello by token"]});
    let (status, body) = call(
        None,
        "POST",
        "/v1/containers",
        Some(launch.clone()),
        Some(&bearer(reader_token)),
    )
    .unwrap();
    assert_eq!(status, 403, "{body}");
    eventually(Duration::from_secs(10), "audit line for grafana", || {
        remote
            .agent
            .log()
            .lines()
            .any(|l| {
                l.contains("API request denied")
                    && l.contains("token grafana")
                    && l.contains("POST")
            })
            .then_some(())
    });

    // Attack: guessed tokens (a near miss of the real one, a random one, an
    // empty one, another scheme) are 401 as "unknown token".
    for guess in [
        bearer(&format!("{}X", &operator_token[..operator_token.len() - 1])),
        bearer("guessed-token-0000000000000000000"),
        "Bearer ".to_string(),
        format!("Basic {operator_token}"),
    ] {
        let (status, body) = call(
            None,
            "POST",
            "/v1/containers",
            Some(launch.clone()),
            Some(&guess),
        )
        .unwrap();
        assert_eq!(status, 401, "{guess}: {body}");
    }
    eventually(Duration::from_secs(10), "audit line for the guess", || {
        remote.agent.log().contains("unknown token").then_some(())
    });
    // Without a certificate or a token: 401 (the handshake is allowed
    // because tokens are configured); another CA's certificate still fails
    // the handshake.
    let (status, _) = call(None, "GET", "/v1/containers", None, None).unwrap();
    assert_eq!(status, 401);
    let other_ca = Ca::new("another ca").leaf("alice", &[], false);
    assert!(call(
        Some(&other_ca),
        "GET",
        "/v1/containers",
        None,
        Some(&bearer(operator_token))
    )
    .is_err());

    // Attack: the operator token over plain TCP, no TLS: no HTTP answer,
    // the handshake is refused (there is no plain listener).
    {
        use std::io::{Read, Write};
        let mut plain = std::net::TcpStream::connect(("127.0.0.1", remote.port)).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // The agent may close before all is written (broken pipe).
        let _ = write!(
            plain,
            "POST /v1/containers HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {operator_token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            launch.to_string().len(),
            launch
        )
        ;
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/1"),
            "{answer:?}"
        );
        eventually(
            Duration::from_secs(10),
            "the plain connection's refusal",
            || {
                remote
                    .agent
                    .log()
                    .contains("API TLS handshake refused")
                    .then_some(())
            },
        );
        assert_eq!(
            remote
                .agent
                .api("GET", "/v1/containers/tokened", None)
                .status,
            404
        );
    }

    // The operator token launches and reads logs.
    let (status, body) = call(
        None,
        "POST",
        "/v1/containers",
        Some(launch),
        Some(&bearer(operator_token)),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, _) = call(
        None,
        "GET",
        "/v1/containers/tokened/wait",
        None,
        Some(&bearer(operator_token)),
    )
    .unwrap();
    assert_eq!(status, 200);
    let (status, logs) = call(
        None,
        "GET",
        "/v1/containers/tokened/logs",
        None,
        Some(&bearer(reader_token)),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(logs.contains("hello by token"), "{logs}");
    // A client certificate still works beside the tokens.
    let alice = remote.client_ca.leaf("alice", &[], false);
    assert_eq!(
        call(Some(&alice), "GET", "/v1/containers", None, None)
            .unwrap()
            .0,
        200
    );

    // No token is ever in the agent's log.
    let log = remote.agent.log();
    for token in [
        operator_token,
        reader_token,
        "guessed-token-0000000000000000000",
    ] {
        assert!(!log.contains(token), "{token} in the log:\n{log}");
    }
}

/// Reads a followed log body until one more `tick` arrives.
/// Launches `ticker`, printing `tickN` ten times a second, as `client`.
fn launch_ticker(remote: &Remote, client: &Leaf) {
    let launch = json!({"id": "ticker", "command": ["sh", "-c",
        "i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.1; done"]});
    let (status, body) =
        request(remote, Some(client), "POST", "/v1/containers", Some(launch)).unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
}

/// Follows `ticker`'s stdout as `client` on a connection of its own until
/// the first tick: the connection (kept open by holding it), the server
/// certificate it saw, the stream and what was read of it.
async fn follow_ticker(
    remote: &Remote,
    client: &Leaf,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    CertificateDer<'static>,
    hyper::body::Incoming,
    String,
) {
    let (mut sender, cert) = connect(remote, client).await;
    let response = sender
        .send_request(get("/v1/containers/ticker/logs?follow=true&stream=stdout"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut seen = String::new();
    read_more(&mut seen, &mut body).await;
    (sender, cert, body, seen)
}

/// Reads the log stream `body` into `seen` until a new tick arrives.
async fn read_more(seen: &mut String, body: &mut hyper::body::Incoming) {
    let mark = seen.len();
    while !seen[mark..].contains("tick") {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("log data within 30s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[test]
fn certificate_files_rotated_without_sighup_keep_open_streams() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let remote = start(dir.path());
    let alice = remote.client_ca.leaf("alice", &[], false);
    launch_ticker(&remote, &alice);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_sender, first_cert, mut body, mut seen) = follow_ticker(&remote, &alice).await;

        // 1. Rename into place (certbot, cert-manager): new files beside,
        // then renamed over the old ones. No SIGHUP.
        let second = remote
            .server_ca
            .leaf("berth agent second", &["localhost"], false);
        std::fs::write(dir.path().join(".server.pem.new"), &second.cert_pem).unwrap();
        std::fs::write(dir.path().join(".server.key.new"), &second.key_pem).unwrap();
        std::fs::rename(
            dir.path().join(".server.key.new"),
            dir.path().join("server.key"),
        )
        .unwrap();
        std::fs::rename(
            dir.path().join(".server.pem.new"),
            dir.path().join("server.pem"),
        )
        .unwrap();
        let mut seen_cert = first_cert.clone();
        for _ in 0..300 {
            seen_cert = connect(&remote, &alice).await.1;
            if seen_cert == second.der {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen_cert, second.der,
            "the renamed-in certificate is served"
        );
        read_more(&mut seen, &mut body).await;

        // 2. A broken certificate written in place: the old one stays, an
        // error is logged.
        std::fs::write(
            dir.path().join("server.pem"),
            "-----BEGIN CERTIFICATE-----\nbroken\n",
        )
        .unwrap();
        eventually(
            Duration::from_secs(30),
            "the broken certificate's error",
            || {
                remote
                    .agent
                    .log()
                    .contains("reload the API TLS certificate (keeping the old one)")
                    .then_some(())
            },
        );
        assert_eq!(connect(&remote, &alice).await.1, second.der);

        // 3. Rewritten in place, cert then key.
        let third = remote
            .server_ca
            .leaf("berth agent third", &["localhost"], false);
        std::fs::write(dir.path().join("server.pem"), &third.cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), &third.key_pem).unwrap();
        for _ in 0..300 {
            seen_cert = connect(&remote, &alice).await.1;
            if seen_cert == third.der {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen_cert, third.der, "the rewritten certificate is served");

        // The stream opened before any rotation still delivers.
        read_more(&mut seen, &mut body).await;
    });
    assert!(!remote.agent.log().contains("SIGHUP"));
    let (status, _) = request(
        &remote,
        Some(&alice),
        "POST",
        "/v1/containers/ticker/kill",
        None,
    )
    .unwrap();
    assert!(status < 300, "kill: {status}");
}

/// A group made for the test, removed when dropped.
struct TempGroup(String);

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

#[test]
fn the_socket_is_0660_and_owned_by_the_configured_group() {
    require_root!();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let name = format!("berthsock{}", std::process::id());
    let made = Command::new("groupadd").arg(&name).status();
    if !made.is_ok_and(|s| s.success()) {
        common::skip(
            "the_socket_is_0660_and_owned_by_the_configured_group",
            "groupadd failed",
        );
        return;
    }
    let group = TempGroup(name);
    let gid = nix::unistd::Group::from_name(&group.0)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();

    // By name, in the config.
    let agent = Agent::start_with_config(&format!("[api]\nsocket_group = \"{}\"\n", group.0));
    // The socket answers from its bind on; its group is set just after.
    let meta = eventually(Duration::from_secs(10), "the socket's group", || {
        let meta = std::fs::metadata(&agent.socket).unwrap();
        (meta.gid() == gid).then_some(meta)
    });
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    drop(agent);

    // By number, by flag.
    let agent = Agent::start_with(&["--socket-group", &gid.to_string()]);
    eventually(
        Duration::from_secs(10),
        "the socket's group by number",
        || (std::fs::metadata(&agent.socket).unwrap().gid() == gid).then_some(()),
    );
    drop(agent);

    // A missing group stops the start, naming it; no socket is left.
    let cgroup_root = format!("berth-test-group-{}", std::process::id());
    let (dir, output) = common::agent_start_output(
        None,
        [
            "--socket-group",
            "no-such-group-berth",
            "--cgroup-root",
            cgroup_root.as_str(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("no-such-group-berth") && stderr.contains("socket_group"),
        "{stderr}"
    );
    assert!(!dir.path().join("s.sock").exists());
}

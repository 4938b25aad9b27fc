//! Convene terminating TLS itself (`--tls-cert`, `--tls-key`): https and wss on
//! the one port, HSTS, the certificate reloaded without a restart (files
//! changed, SIGHUP) and kept when the replacement is bad, the plain-HTTP
//! redirect listener, and the handshake under the connection deadline. Every
//! certificate comes from a CA the test makes; clients trust only that CA.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A test CA, and server certificates it issues into a folder of their own.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// One issued certificate: its DER (to compare with what a server presents)
/// and its files' contents.
struct Issued {
    der: Vec<u8>,
    chain_pem: String,
    key_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir =
            std::env::temp_dir().join(format!("convene-tls-{}", convene_storage::new_meeting_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Convene test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost, with a new key.
    fn issue(&self, common_name: &str, serial: u64) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(serial.into());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Issued {
            der: cert.der().to_vec(),
            // The server's certificate, then the chain up to the root.
            chain_pem: format!("{}{}", cert.pem(), self.ca.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Put `issued` in place as a renewal tool does: each file written aside
    /// and renamed over the old one, the key first.
    fn install(&self, issued: &Issued) {
        replace(&self.key_path(), &issued.key_pem);
        replace(&self.cert_path(), &issued.chain_pem);
    }
}

fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A TLS connection that trusts only the test CA (a fresh client each time,
/// so no session is resumed and the server presents its certificate).
async fn tls_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// The certificate a new connection is given.
async fn served_certificate(addr: SocketAddr, ca: &CertificateDer<'static>) -> Vec<u8> {
    let tls = tls_connect(addr, ca).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Wait (up to `limit`) until new connections are given `der`.
async fn until_served(addr: SocketAddr, ca: &CertificateDer<'static>, der: &[u8], limit: Duration) {
    let start = Instant::now();
    while served_certificate(addr, ca).await != der {
        assert!(
            start.elapsed() < limit,
            "the new certificate was not served within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn https_client(pki: &Pki, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn tls_server(
    pki: &Pki,
    tweak: impl FnOnce(&mut convene_server::config::Config),
) -> convene_server::RunningServer {
    let cert = pki.cert_path();
    let key = pki.key_path();
    common::server_with(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        tweak(c);
    })
    .await
}

/// Everything the bytes `request` get back on a plain TCP connection, until
/// the server closes it (at most 5 s).
async fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn https_and_wss_on_one_port_with_hsts_and_no_plain_http() {
    let pki = Pki::new();
    let first = pki.issue("convene.test one", 1);
    pki.install(&first);
    let server = tls_server(&pki, |_| {}).await;
    let url = server.url.clone();
    assert_eq!(url, format!("https://{}", server.addr), "https by default");
    let client = https_client(&pki, server.addr);

    // The home page, by address and by name (both in the certificate).
    for base in [
        url.clone(),
        format!("https://localhost:{}", server.addr.port()),
    ] {
        let res = client.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{base}");
        assert_eq!(
            res.headers()["strict-transport-security"],
            "max-age=31536000",
            "HSTS, without includeSubDomains"
        );
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.starts_with("__Host-convene_device=") && cookie.contains("; Secure"),
            "{cookie}"
        );
        assert!(res.text().await.unwrap().contains("<html"));
    }

    // A meeting made by a browser on this server's origin, and one reached
    // by another loopback name.
    for origin in [
        url.clone(),
        format!("https://localhost:{}", server.addr.port()),
    ] {
        let host = origin.trim_start_matches("https://").to_string();
        let res = client
            .post(format!("https://{host}/api/meetings"))
            .header("origin", &origin)
            .json(&serde_json::json!({ "title": "Over TLS" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{origin}");
    }
    let res = client
        .post(format!("{url}/api/meetings"))
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({ "title": "Cross-site" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "another site's origin is refused");
    let meeting: Value = client
        .post(format!("{url}/api/meetings"))
        .json(&serde_json::json!({ "title": "Over TLS" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        meeting["joinUrl"].as_str().unwrap().starts_with("https://"),
        "{meeting}"
    );
    let id = meeting["id"].as_str().unwrap();

    // Signalling over wss, from the server's origin as a browser would.
    let tls = tls_connect(server.addr, &pki.ca_der()).await.unwrap();
    let mut request = format!("wss://{}/api/meetings/{id}/ws", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("origin", url.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    ws.send(Message::text(
        serde_json::json!({"type": "join", "protocol": 1, "name": "Ann"}).to_string(),
    ))
    .await
    .unwrap();
    let welcome = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                return serde_json::from_str::<Value>(&t).unwrap();
            }
        }
        panic!("the socket closed before an answer")
    })
    .await
    .unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws.close(None).await.unwrap();

    // Plain http on the TLS port gets no page: the connection is closed.
    let answer = raw(
        server.addr,
        format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes(),
    )
    .await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(reqwest::get(format!("http://{}/", server.addr))
        .await
        .is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_has_no_hsts() {
    let server = common::server().await;
    let res = reqwest::get(format!("{}/", server.url)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("strict-transport-security").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_changed_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let ca = pki.ca_der();
    let first = pki.issue("convene.test one", 1);
    pki.install(&first);
    let server = tls_server(&pki, |_| {}).await;
    assert_eq!(served_certificate(server.addr, &ca).await, first.der);
    // A connection open before the change keeps working after it.
    let client = https_client(&pki, server.addr);
    assert_eq!(
        client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let second = pki.issue("convene.test two", 2);
    pki.install(&second);
    // The files are checked every 5 s.
    until_served(server.addr, &ca, &second.der, Duration::from_secs(15)).await;
    assert_eq!(
        client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A key that is not the certificate's: the second certificate stays.
    let stranger = pki.issue("convene.test stranger", 3);
    replace(&pki.key_path(), &stranger.key_pem);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(served_certificate(server.addr, &ca).await, second.der);
    // Put right, it is taken.
    replace(&pki.cert_path(), &stranger.chain_pem);
    until_served(server.addr, &ca, &stranger.der, Duration::from_secs(15)).await;
    server.shutdown().await;
}

/// The real binary: SIGHUP reloads at once, and a bad replacement (found by
/// SIGHUP or by the files' check) is logged naming the file and not used.
#[tokio::test]
async fn sighup_reloads_and_a_bad_replacement_is_logged_and_ignored() {
    use std::io::BufRead;
    let pki = Pki::new();
    let ca = pki.ca_der();
    let first = pki.issue("convene.test one", 11);
    pki.install(&first);
    let data = pki.dir.join("data");
    let mut child = common::binary::convene()
        .args(["--listen", "127.0.0.1:0", "--log", "info"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-cert")
        .arg(pki.cert_path())
        .arg("--tls-key")
        .arg(pki.key_path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let child = Kill(child);
    // Every line, the whole time (a full pipe would stall the server).
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let wait_for = |what: &dyn Fn(&str) -> bool, limit: Duration| -> String {
        let start = Instant::now();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            match lines.recv_timeout(left) {
                Ok(line) if what(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("no such log line within {limit:?}"),
            }
        }
    };
    let running = wait_for(
        &|l| l.contains("Convene is running at "),
        Duration::from_secs(30),
    );
    let url = running
        .split("Convene is running at ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .to_string();
    let addr: SocketAddr = url.strip_prefix("https://").unwrap().parse().unwrap();
    assert_eq!(served_certificate(addr, &ca).await, first.der);

    let hangup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    // Replaced and signalled: served at once, well before the 5 s check.
    let second = pki.issue("convene.test two", 12);
    pki.install(&second);
    hangup();
    wait_for(
        &|l| l.contains("TLS certificate reloaded") && l.contains("SIGHUP"),
        Duration::from_secs(3),
    );
    assert_eq!(served_certificate(addr, &ca).await, second.der);

    // Not a certificate: logged naming the file; the second one stays.
    replace(&pki.cert_path(), "this is not a certificate\n");
    hangup();
    let cert_path = pki.cert_path().display().to_string();
    let line = wait_for(
        &|l| l.contains("TLS certificate not reloaded"),
        Duration::from_secs(3),
    );
    assert!(
        line.contains(&cert_path) && line.contains("no certificate"),
        "{line}"
    );
    assert_eq!(served_certificate(addr, &ca).await, second.der);

    // The certificate back, with another key: found by the check of the
    // files, logged naming both, not used.
    replace(&pki.cert_path(), &second.chain_pem);
    let stranger = pki.issue("convene.test stranger", 13);
    replace(&pki.key_path(), &stranger.key_pem);
    let line = wait_for(
        &|l| l.contains("TLS certificate not reloaded"),
        Duration::from_secs(12),
    );
    assert!(
        line.contains("is not the key of the certificate")
            && line.contains(&pki.key_path().display().to_string()),
        "{line}"
    );
    assert_eq!(served_certificate(addr, &ca).await, second.der);
    drop(child);
}

#[tokio::test]
async fn the_redirect_listener_answers_308_to_https_and_nothing_else() {
    let pki = Pki::new();
    pki.install(&pki.issue("convene.test", 21));
    let server = tls_server(&pki, |c| {
        c.http_redirect_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let redirect = server.redirect_addr.expect("a redirect listener");
    let https_port = server.addr.port();
    let head = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer).to_string();
        text.split("\r\n\r\n").next().unwrap().to_lowercase()
    };
    // Same host, the https port, path and query kept.
    let answer = head(
        &raw(
            redirect,
            b"GET /m/abcd-efgh-ijkm?x=1&y=2 HTTP/1.1\r\nHost: meet.example.test\r\n\r\n",
        )
        .await,
    );
    assert!(answer.starts_with("http/1.1 308"), "{answer}");
    assert!(
        answer.contains(&format!(
            "\r\nlocation: https://meet.example.test:{https_port}/m/abcd-efgh-ijkm?x=1&y=2\r\n"
        )),
        "{answer}"
    );
    assert!(!answer.contains("strict-transport-security"), "{answer}");
    // The port the client used is replaced by the https one.
    let answer = head(
        &raw(
            redirect,
            format!("POST /api/meetings HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 2\r\n\r\n{{}}", redirect.port())
                .as_bytes(),
        )
        .await,
    );
    assert!(answer.starts_with("http/1.1 308"), "{answer}");
    assert!(
        answer.contains(&format!(
            "\r\nlocation: https://127.0.0.1:{https_port}/api/meetings\r\n"
        )),
        "{answer}"
    );
    // No page, API or asset is served there.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/healthz", "/api/policy", "/assets/app.js"] {
        let res = plain
            .get(format!("http://{redirect}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 308, "{path}");
        assert!(res.text().await.unwrap().is_empty(), "{path}");
    }
    // Following it arrives at the page over https.
    let res = https_client(&pki, server.addr)
        .get(format!("http://localhost:{}/", redirect.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers()["location"],
        format!("https://localhost:{https_port}/").as_str()
    );
    server.shutdown().await;

    // With --public-url, redirects go to its origin whatever the Host.
    let server = tls_server(&pki, |c| {
        c.http_redirect_listen = Some("127.0.0.1:0".parse().unwrap());
        c.public_url = Some("https://meet.example.gov.uk/".into());
    })
    .await;
    let answer = head(
        &raw(
            server.redirect_addr.unwrap(),
            b"GET /m/x HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n",
        )
        .await,
    );
    assert!(
        answer.contains("\r\nlocation: https://meet.example.gov.uk/m/x\r\n"),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_handshake_is_closed_at_the_idle_timeout() {
    let pki = Pki::new();
    pki.install(&pki.issue("convene.test", 31));
    let server = tls_server(&pki, |c| c.idle_timeout = 2).await;
    // Nothing at all; a ClientHello's first byte and then nothing; half a
    // ClientHello.
    for sent in [
        &b""[..],
        &[0x16][..],
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..],
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(sent).await.unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf))
            .await
            .expect("closed by the server")
            .unwrap_or(0);
        let took = start.elapsed();
        assert_eq!(n, 0, "{sent:?}: closed without an answer");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_millis(3500),
            "{sent:?}: closed after {took:?}"
        );
    }
    // Their places were given back.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server
            .state
            .connections
            .open
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tls_flags_that_do_not_fit_stop_the_server_with_a_sentence() {
    let pki = Pki::new();
    pki.install(&pki.issue("convene.test", 41));
    let cert = pki.cert_path();
    let key = pki.key_path();
    let error = |tweak: Box<dyn FnOnce(&mut convene_server::config::Config)>| async move {
        let mut config = convene_server::config::Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.data_dir = std::env::temp_dir().join(format!(
            "convene-tls-start-{}",
            convene_storage::new_meeting_id()
        ));
        config.log = "warn".into();
        tweak(&mut config);
        match convene_server::start(config).await {
            Ok(s) => {
                s.shutdown().await;
                panic!("the server started")
            }
            Err(e) => e.to_string(),
        }
    };
    let c = cert.clone();
    let e = error(Box::new(move |c2| c2.tls_cert = Some(c))).await;
    assert!(e.contains("--tls-cert needs --tls-key"), "{e}");
    let k = key.clone();
    let e = error(Box::new(move |c| c.tls_key = Some(k))).await;
    assert!(e.contains("--tls-key needs --tls-cert"), "{e}");
    let e = error(Box::new(|c| {
        c.http_redirect_listen = Some("127.0.0.1:0".parse().unwrap())
    }))
    .await;
    assert!(
        e.contains("--http-redirect-listen") && e.contains("--tls-cert"),
        "{e}"
    );
    let (c, k) = (cert.clone(), key.clone());
    let e = error(Box::new(move |cfg| {
        cfg.tls_cert = Some(c);
        cfg.tls_key = Some(k);
        cfg.public_url = Some("http://meet.example.gov.uk".into());
    }))
    .await;
    assert!(e.contains("--public-url") && e.contains("https://"), "{e}");
    // A key file that is not a key, a missing certificate: named.
    let (c, k) = (cert.clone(), pki.dir.join("ca.pem"));
    let e = error(Box::new(move |cfg| {
        cfg.tls_cert = Some(c);
        cfg.tls_key = Some(k);
    }))
    .await;
    assert!(e.contains("ca.pem") && e.contains("no private key"), "{e}");
    let (c, k) = (pki.dir.join("missing.pem"), key.clone());
    let e = error(Box::new(move |cfg| {
        cfg.tls_cert = Some(c);
        cfg.tls_key = Some(k);
    }))
    .await;
    assert!(e.contains("missing.pem"), "{e}");
}

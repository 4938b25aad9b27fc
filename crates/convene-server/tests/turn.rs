//! TURN end to end, against a real coturn started by each test on loopback:
//! the credentials a participant finds in its welcome open a relay (a real
//! TURN Allocate, over UDP and over TCP); forged and expired ones are refused
//! by coturn; each participant has their own, refreshed before they expire;
//! the connectivity check's endpoint hands out short-lived ones and is rate
//! limited. Needs `turnserver` (Debian's coturn; scripts/test installs it).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use convene_client::Client;
use convene_server::RunningServer;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rand::Rng as _;
use serde_json::Value;
use sha1::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The secret Convene and coturn share (coturn's `static-auth-secret`).
const SECRET: &str = "convene-test-turn-secret-5f0c1d9a";
const REALM: &str = "convene.test";

// ---- coturn ----------------------------------------------------------------

/// A coturn on a free loopback port, UDP and TCP, with TURN REST API
/// credentials (`use-auth-secret`); killed when dropped.
struct Coturn {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Coturn {
    async fn start() -> Coturn {
        Coturn::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Coturn {
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("convene-coturn-{port}-{}", id()));
            std::fs::create_dir_all(&dir).unwrap();
            let log = std::fs::File::create(dir.join("turnserver.log")).unwrap();
            let child = Command::new("turnserver")
                .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
                .arg(format!("--listening-port={port}"))
                .args([
                    "--use-auth-secret",
                    &format!("--static-auth-secret={SECRET}"),
                ])
                .arg(format!("--realm={REALM}"))
                .args([
                    "--no-tls",
                    "--no-dtls",
                    "--no-cli",
                    "--relay-threads=1",
                    "--verbose",
                ])
                .args(["--log-file=stdout", "--simple-log"])
                .arg(format!(
                    "--pidfile={}",
                    dir.join("turnserver.pid").display()
                ))
                .arg(format!("--db={}", dir.join("turndb").display()))
                .args(extra)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("turnserver runs (apt-get install coturn)");
            let mut coturn = Coturn { child, port, dir };
            if coturn.ready().await {
                return coturn;
            }
        }
        panic!("coturn did not start");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)
    }

    fn urls(&self) -> [String; 2] {
        [
            format!("turn:127.0.0.1:{}?transport=udp", self.port),
            format!("turn:127.0.0.1:{}?transport=tcp", self.port),
        ]
    }

    /// Answers a STUN Binding request (within 5 s), and is still running.
    async fn ready(&mut self) -> bool {
        for _ in 0..50 {
            if self.child.try_wait().unwrap().is_some() {
                return false; // the port was taken meanwhile: try another
            }
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let request = encode(BINDING, &[], None);
            sock.send_to(&request, self.addr()).await.unwrap();
            let mut buf = [0u8; 1500];
            let answer = tokio::time::timeout(Duration::from_millis(100), sock.recv(&mut buf));
            if let Ok(Ok(n)) = answer.await {
                if decode(&buf[..n]).is_some_and(|m| m.kind == BINDING_SUCCESS) {
                    return true;
                }
            }
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on loopback just now.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

// ---- a small TURN client (RFC 5389 / 5766) -----------------------------------

const COOKIE: u32 = 0x2112_A442;
const BINDING: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ALLOCATE: u16 = 0x0003;
const ALLOCATE_SUCCESS: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;
const CREATE_PERMISSION: u16 = 0x0008;
const CREATE_PERMISSION_SUCCESS: u16 = 0x0108;
const CREATE_PERMISSION_ERROR: u16 = 0x0118;
const XOR_PEER_ADDRESS: u16 = 0x0012;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const REALM_ATTR: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_RELAYED_ADDRESS: u16 = 0x0016;
const REQUESTED_TRANSPORT: u16 = 0x0019;

struct Stun {
    kind: u16,
    tid: [u8; 12],
    attrs: Vec<(u16, Vec<u8>)>,
}

impl Stun {
    fn attr(&self, kind: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    fn error_code(&self) -> Option<u16> {
        self.attr(ERROR_CODE)
            .map(|v| u16::from(v[2] & 7) * 100 + u16::from(v[3]))
    }

    fn relayed(&self) -> Option<SocketAddr> {
        let v = self.attr(XOR_RELAYED_ADDRESS)?;
        let port = u16::from_be_bytes([v[2], v[3]]) ^ (COOKIE >> 16) as u16;
        let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ COOKIE;
        (v[1] == 1).then(|| SocketAddr::new(IpAddr::V4(ip.into()), port))
    }
}

/// A STUN request with a fresh transaction id; with `key`, MESSAGE-INTEGRITY
/// (HMAC-SHA1 over the message, its length already counting the attribute).
fn encode(kind: u16, attrs: &[(u16, &[u8])], key: Option<&[u8]>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&COOKIE.to_be_bytes());
    m.extend_from_slice(&rand::rng().random::<[u8; 12]>());
    for (t, v) in attrs {
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&(v.len() as u16).to_be_bytes());
        m.extend_from_slice(v);
        m.resize(m.len().next_multiple_of(4), 0);
    }
    if let Some(key) = key {
        let len = (m.len() - 20 + 24) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
        mac.update(&m);
        m.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        m.extend_from_slice(&20u16.to_be_bytes());
        m.extend_from_slice(&mac.finalize().into_bytes());
    } else {
        let len = (m.len() - 20) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
    }
    m
}

fn decode(b: &[u8]) -> Option<Stun> {
    if b.len() < 20 || b[4..8] != COOKIE.to_be_bytes() {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let body = b.get(20..20 + len)?;
    let mut attrs = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let n = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        attrs.push((kind, body.get(at + 4..at + 4 + n)?.to_vec()));
        at = (at + 4 + n).next_multiple_of(4);
    }
    Some(Stun {
        kind: u16::from_be_bytes([b[0], b[1]]),
        tid: b[8..20].try_into().unwrap(),
        attrs,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Udp,
    Tcp,
}

enum Conn {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

impl Conn {
    async fn open(server: SocketAddr, via: Via) -> Conn {
        match via {
            Via::Udp => Conn::Udp(UdpSocket::bind("127.0.0.1:0").await.unwrap(), server),
            Via::Tcp => Conn::Tcp(TcpStream::connect(server).await.unwrap()),
        }
    }

    /// Send `request`, return the answer to it (UDP: resent a few times).
    async fn transact(&mut self, request: &[u8]) -> Stun {
        let tid = &request[8..20];
        match self {
            Conn::Udp(sock, server) => {
                let mut buf = [0u8; 1500];
                for _ in 0..10 {
                    sock.send_to(request, *server).await.unwrap();
                    let wait =
                        tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf));
                    if let Ok(Ok(n)) = wait.await {
                        if let Some(m) = decode(&buf[..n]).filter(|m| m.tid == tid) {
                            return m;
                        }
                    }
                }
                panic!("no answer from the TURN server over UDP");
            }
            Conn::Tcp(stream) => {
                stream.write_all(request).await.unwrap();
                tokio::time::timeout(Duration::from_secs(5), async {
                    loop {
                        let mut head = [0u8; 20];
                        stream.read_exact(&mut head).await.unwrap();
                        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
                        let mut whole = head.to_vec();
                        whole.resize(20 + len, 0);
                        stream.read_exact(&mut whole[20..]).await.unwrap();
                        if let Some(m) = decode(&whole).filter(|m| m.tid == tid) {
                            return m;
                        }
                    }
                })
                .await
                .expect("an answer from the TURN server over TCP")
            }
        }
    }
}

/// An XOR-…-ADDRESS attribute's value for an IPv4 address.
fn xor_address(addr: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(ip) = addr.ip() else {
        panic!("IPv4 only")
    };
    let mut v = vec![0, 1];
    v.extend_from_slice(&(addr.port() ^ (COOKIE >> 16) as u16).to_be_bytes());
    v.extend_from_slice(&(u32::from(ip) ^ COOKIE).to_be_bytes());
    v
}

/// An allocation that worked, and what its later requests are signed with.
struct Relay {
    conn: Conn,
    username: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Vec<u8>,
}

impl Relay {
    /// Ask to relay to `peer` (CreatePermission): Ok, or coturn's error code.
    async fn permit(&mut self, peer: SocketAddr) -> Result<(), u16> {
        let answer = self
            .conn
            .transact(&encode(
                CREATE_PERMISSION,
                &[
                    (XOR_PEER_ADDRESS, &xor_address(peer)),
                    (USERNAME, self.username.as_bytes()),
                    (REALM_ATTR, &self.realm),
                    (NONCE, &self.nonce),
                ],
                Some(&self.key),
            ))
            .await;
        match answer.kind {
            CREATE_PERMISSION_SUCCESS => Ok(()),
            CREATE_PERMISSION_ERROR => Err(answer.error_code().expect("ERROR-CODE")),
            other => panic!("unexpected answer {other:#06x}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Allocation {
    /// The relayed transport address coturn allocated.
    Relayed(SocketAddr),
    /// The error code coturn refused with.
    Refused(u16),
}

/// A TURN Allocate (a UDP relay) with the long-term credential mechanism, as a
/// browser makes it: unauthenticated first, coturn answers 401 with its realm
/// and a nonce, then again with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY
/// keyed with MD5(username:realm:password).
async fn allocate(server: SocketAddr, via: Via, username: &str, password: &str) -> Allocation {
    allocate_relay(server, via, username, password).await.0
}

async fn allocate_relay(
    server: SocketAddr,
    via: Via,
    username: &str,
    password: &str,
) -> (Allocation, Option<Relay>) {
    let mut conn = Conn::open(server, via).await;
    let udp_relay: &[u8] = &[17, 0, 0, 0];
    let challenge = conn
        .transact(&encode(ALLOCATE, &[(REQUESTED_TRANSPORT, udp_relay)], None))
        .await;
    assert_eq!(challenge.kind, ALLOCATE_ERROR);
    assert_eq!(challenge.error_code(), Some(401));
    let realm = challenge.attr(REALM_ATTR).expect("a realm").to_vec();
    let nonce = challenge.attr(NONCE).expect("a nonce").to_vec();
    assert_eq!(realm, REALM.as_bytes());
    let key = Md5::digest(format!("{username}:{REALM}:{password}"));
    let answer = conn
        .transact(&encode(
            ALLOCATE,
            &[
                (REQUESTED_TRANSPORT, udp_relay),
                (USERNAME, username.as_bytes()),
                (REALM_ATTR, &realm),
                (NONCE, &nonce),
            ],
            Some(key.as_slice()),
        ))
        .await;
    match answer.kind {
        ALLOCATE_SUCCESS => {
            let relayed = answer.relayed().expect("XOR-RELAYED-ADDRESS");
            let relay = Relay {
                conn,
                username: username.to_string(),
                realm,
                nonce,
                key: key.to_vec(),
            };
            (Allocation::Relayed(relayed), Some(relay))
        }
        ALLOCATE_ERROR => (
            Allocation::Refused(answer.error_code().expect("ERROR-CODE")),
            None,
        ),
        other => panic!("unexpected answer {other:#06x}"),
    }
}

// ---- Convene ---------------------------------------------------------------

async fn convene(coturn: &Coturn, ttl: Option<Duration>) -> RunningServer {
    let urls = coturn.urls();
    let file = common::deployment_with_turn(&[&urls[0], &urls[1]], SECRET);
    common::server_with(|c| {
        c.config_file = Some(file);
        c.turn_ttl_override = ttl;
    })
    .await
}

/// (urls, username, credential) of the one ICE server in a message.
fn ice(message: &Value) -> (Vec<String>, String, String) {
    let list = message["iceServers"].as_array().expect("iceServers");
    assert_eq!(list.len(), 1, "{message}");
    let s = &list[0];
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "only urls, username, credential: {s}");
    let urls = s["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    let field = |f: &str| {
        s[f].as_str()
            .unwrap_or_else(|| panic!("{f} in {s}"))
            .to_string()
    };
    (urls, field("username"), field("credential"))
}

fn messages<'a>(c: &'a Client, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    c.log.iter().filter(move |m| m["type"] == kind)
}

fn welcome(c: &Client) -> &Value {
    messages(c, "welcome").last().expect("a welcome")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// (expiry, opaque id) of a username.
fn parts(username: &str) -> (u64, &str) {
    let (expiry, id) = username.split_once(':').expect("<expiry>:<id>");
    (expiry.parse().expect("a Unix time"), id)
}

fn credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

// ---- the tests -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_credentials_open_a_relay_and_forged_or_expired_ones_do_not() {
    let coturn = Coturn::start().await;
    let server = convene(&coturn, None).await;
    let meeting = common::create_meeting(&server, "Relayed").await;
    let ann = Client::join(&server.url, &meeting, "Ann Archer", None)
        .await
        .unwrap();
    let bob = Client::join(&server.url, &meeting, "Bob Baker", None)
        .await
        .unwrap();

    let (urls, ann_user, ann_pass) = ice(welcome(&ann));
    let (bob_urls, bob_user, bob_pass) = ice(welcome(&bob));
    assert_eq!(urls, coturn.urls(), "the deployment's URLs, in order");
    assert_eq!(bob_urls, urls);
    // Each participant has their own: an expiry an hour (the default) away, and
    // an opaque id that says nothing of who they are.
    assert_ne!(ann_user, bob_user);
    assert_ne!(ann_pass, bob_pass);
    for (c, user) in [(&ann, &ann_user), (&bob, &bob_user)] {
        let (expiry, id) = parts(user);
        let left = expiry.abs_diff(now_secs() + 3600);
        assert!(left <= 5, "expires in an hour: {user}");
        assert_eq!(id.len(), 16, "{user}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{user}");
        assert!(
            !user.contains(&c.participant_id) && !user.contains("Ann") && !user.contains("Bob")
        );
    }

    // coturn accepts them: a real relay, over UDP and over TCP.
    for (user, pass) in [(&ann_user, &ann_pass), (&bob_user, &bob_pass)] {
        for via in [Via::Udp, Via::Tcp] {
            match allocate(coturn.addr(), via, user, pass).await {
                Allocation::Relayed(relay) => assert!(relay.ip().is_loopback(), "{relay}"),
                refused => panic!("{via:?} {user}: {refused:?}\n{}", coturn.log()),
            }
        }
    }

    // Forged: someone else's password, a wrong secret, or a participant
    // stretching their own expiry.
    let (expiry, ann_id) = parts(&ann_user);
    let stretched = format!("{}:{ann_id}", expiry + 86_400);
    let wrong_secret = credential("not-the-shared-secret-at-all", &ann_user);
    for (user, pass) in [
        (&ann_user, &bob_pass),
        (&ann_user, &wrong_secret),
        (&stretched, &ann_pass),
    ] {
        let got = allocate(coturn.addr(), Via::Udp, user, pass).await;
        assert!(
            matches!(got, Allocation::Refused(401 | 438)),
            "forged {user}: {got:?}"
        );
    }
    // Expired: the right HMAC for a username whose time has passed.
    let expired = format!("{}:{ann_id}", now_secs() - 60);
    let got = allocate(
        coturn.addr(),
        Via::Udp,
        &expired,
        &credential(SECRET, &expired),
    )
    .await;
    assert!(
        matches!(got, Allocation::Refused(401 | 438)),
        "expired: {got:?}"
    );
    // …while the same made for a time to come is accepted: the test's
    // credentials are the scheme's, so the refusals above are for the reasons given.
    let fresh = format!("{}:{ann_id}", now_secs() + 600);
    let got = allocate(coturn.addr(), Via::Tcp, &fresh, &credential(SECRET, &fresh)).await;
    assert!(
        matches!(got, Allocation::Relayed(_)),
        "made by the test: {got:?}"
    );

    // A resume is a new welcome, with new credentials (a new id).
    let token = ann.resume_token.clone();
    drop(ann);
    let back = Client::join(&server.url, &meeting, "Ann Archer", Some(&token))
        .await
        .unwrap();
    let (_, resumed_user, _) = ice(welcome(&back));
    assert_ne!(parts(&resumed_user).1, ann_id);

    drop((back, bob));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_refreshed_before_they_expire() {
    let coturn = Coturn::start().await;
    // Six seconds (the deployment file allows no less than 60): fresh ones at 4.8 s.
    let server = convene(&coturn, Some(Duration::from_secs(6))).await;
    let meeting = common::create_meeting(&server, "Long meeting").await;
    let mut ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    let (_, first_user, first_pass) = ice(welcome(&ann));
    let (first_expiry, id) = parts(&first_user);
    let id = id.to_string();

    // Two refreshes, each before the credentials in hand expire.
    let refreshed = ann
        .run_until(Duration::from_secs(12), |c| {
            messages(c, "ice-servers").count() >= 2
        })
        .await;
    assert!(
        refreshed,
        "{:?}",
        ann.log.iter().map(|m| &m["type"]).collect::<Vec<_>>()
    );
    let refreshes: Vec<Value> = messages(&ann, "ice-servers").cloned().collect();
    let mut last_expiry = first_expiry;
    for m in &refreshes {
        let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["iceServers", "type"], "{m}");
        let (urls, user, pass) = ice(m);
        assert_eq!(urls, coturn.urls());
        let (expiry, same_id) = parts(&user);
        assert_eq!(same_id, id, "the same opaque id, a later expiry");
        assert!(expiry > last_expiry, "{user} after {last_expiry}");
        assert_ne!(pass, first_pass);
        last_expiry = expiry;
    }

    // Once the welcome's credentials have expired, coturn refuses them; the
    // refreshed ones still open a relay.
    while now_secs() <= first_expiry + 1 {
        ann.run_until(Duration::from_millis(200), |_| false).await;
    }
    let got = allocate(coturn.addr(), Via::Udp, &first_user, &first_pass).await;
    assert!(
        matches!(got, Allocation::Refused(401 | 438)),
        "expired: {got:?}"
    );
    let latest = messages(&ann, "ice-servers").last().unwrap().clone();
    let (_, user, pass) = ice(&latest);
    assert!(parts(&user).0 > now_secs(), "{user}");
    let got = allocate(coturn.addr(), Via::Udp, &user, &pass).await;
    assert!(
        matches!(got, Allocation::Relayed(_)),
        "refreshed: {got:?}\n{}",
        coturn.log()
    );
    ann.leave().await;
    server.shutdown().await;
}

/// (status, head, body) of a GET on loopback.
async fn get(server: &RunningServer, path: &str) -> (u16, String, String) {
    get_from(server, path, [127, 0, 0, 1]).await
}

/// From another loopback address: another client, as limits count them.
async fn get_from(server: &RunningServer, path: &str, ip: [u8; 4]) -> (u16, String, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
    let mut s = sock.connect(server.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_endpoint_gives_short_lived_credentials_and_is_rate_limited() {
    let coturn = Coturn::start().await;
    let server = convene(&coturn, None).await;
    let (status, head, body) = get(&server, "/api/check/ice-servers").await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "only iceServers: {v}");
    let (urls, user, pass) = ice(&v);
    assert_eq!(urls, coturn.urls());
    let (expiry, _) = parts(&user);
    assert!(expiry.abs_diff(now_secs() + 60) <= 5, "a minute: {user}");
    let got = allocate(coturn.addr(), Via::Udp, &user, &pass).await;
    assert!(matches!(got, Allocation::Relayed(_)), "{got:?}");

    // Ten a minute from one address (a burst of ten): the eleventh waits.
    let mut users = vec![user];
    for _ in 1..10 {
        let (status, _, body) = get(&server, "/api/check/ice-servers").await;
        assert_eq!(status, 200, "{body}");
        users.push(ice(&serde_json::from_str(&body).unwrap()).1);
    }
    let ids: std::collections::BTreeSet<&str> = users.iter().map(|u| parts(u).1).collect();
    assert_eq!(ids.len(), 10, "each check its own id");
    let (status, head, body) = get(&server, "/api/check/ice-servers").await;
    assert_eq!(status, 429, "{body}");
    assert!(head.contains("retry-after: "), "{head}");
    assert!(!body.contains("credential"), "{body}");

    // Twenty a minute from everyone together: another address gets ten more,
    // a third then nothing (503), as anonymous credentials are what someone
    // farming the TURN server's allocations would collect.
    for _ in 0..10 {
        let (status, _, body) = get_from(&server, "/api/check/ice-servers", [127, 0, 0, 2]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, head, body) = get_from(&server, "/api/check/ice-servers", [127, 0, 0, 3]).await;
    assert_eq!(status, 503, "{body}");
    assert!(head.contains("retry-after: "), "{head}");
    assert!(!body.contains("credential"), "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_turn_there_are_no_ice_servers() {
    let server = common::server().await;
    let meeting = common::create_meeting(&server, "Direct").await;
    let ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    assert_eq!(welcome(&ann)["iceServers"], serde_json::json!([]));
    let (status, _, body) = get(&server, "/api/check/ice-servers").await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"iceServers":[]}"#);
    drop(ann);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_secret_file_stops_the_server_without_showing_the_secret() {
    let file = common::deployment_with_turn(&["turn:127.0.0.1:3478"], "tooshort-secret");
    let mut config = convene_server::config::Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = std::env::temp_dir().join(format!("convene-test-{}", id()));
    config.config_file = Some(file.clone());
    let e = convene_server::start(config).await.err().expect("refused");
    let e = e.to_string();
    assert!(e.contains("at least 16"), "{e}");
    assert!(e.contains("turn.secret"), "names the file: {e}");
    assert!(!e.contains("tooshort-secret"), "{e}");
    std::fs::remove_file(file.parent().unwrap().join("turn.secret")).unwrap();
    let mut config = convene_server::config::Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = std::env::temp_dir().join(format!("convene-test-{}", id()));
    config.config_file = Some(file);
    let e = convene_server::start(config).await.err().expect("refused");
    assert!(e.to_string().contains("turn.secret_file"), "{e}");
}

/// The coturn configuration docs/configuration.md recommends keeps the relay
/// from being an open one: every peer denied but Convene's media address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_peer_rules_relay_to_convene_s_media_address_only() {
    // Everything here is on loopback, which coturn denies unless allowed; the
    // rules are then those of docs/configuration.md, with the media address
    // 127.0.0.1 (Convene's --media-listen default).
    let coturn = Coturn::start_with(&[
        "--allow-loopback-peers",
        "--no-multicast-peers",
        "--denied-peer-ip=0.0.0.0-255.255.255.255",
        "--allowed-peer-ip=127.0.0.1",
    ])
    .await;
    let server = convene(&coturn, None).await;
    let meeting = common::create_meeting(&server, "Fenced").await;
    let ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    let (_, user, pass) = ice(welcome(&ann));
    let (got, relay) = allocate_relay(coturn.addr(), Via::Tcp, &user, &pass).await;
    assert!(matches!(got, Allocation::Relayed(_)), "{got:?}");
    let mut relay = relay.unwrap();
    assert!(server.media_addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
        relay.permit(server.media_addr).await,
        Ok(()),
        "{}",
        coturn.log()
    );
    for elsewhere in [
        "127.0.0.2:22",
        "10.0.0.1:3478",
        "192.168.1.1:53",
        "224.0.0.251:5353",
    ] {
        let peer: SocketAddr = elsewhere.parse().unwrap();
        assert_eq!(relay.permit(peer).await, Err(403), "{peer}");
    }
    // Without the rules, the same peers are relayed to: they are what refuses.
    let open = Coturn::start_with(&["--allow-loopback-peers"]).await;
    let user = format!("{}:{}", now_secs() + 600, id());
    let (_, relay) = allocate_relay(open.addr(), Via::Tcp, &user, &credential(SECRET, &user)).await;
    let mut relay = relay.expect("a relay");
    for elsewhere in ["127.0.0.2:22", "10.0.0.1:3478", "192.168.1.1:53"] {
        let peer: SocketAddr = elsewhere.parse().unwrap();
        assert_eq!(relay.permit(peer).await, Ok(()), "{peer}");
    }
    drop(ann);
    server.shutdown().await;
}

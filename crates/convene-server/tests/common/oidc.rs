//! Real OpenID providers for the tests (tests/oidc/provider.mjs: the
//! certified `oidc-provider` package) and a browser as far as HTTP goes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use convene_client::JoinOptions;
use serde_json::{json, Value};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One oidc-provider process; killed when dropped.
pub struct Provider {
    pub child: Child,
    pub port: u16,
}

impl Provider {
    /// Start it and wait for its readiness line. A start that does not become
    /// ready in 20 s (seen once on a loaded machine) is killed and retried.
    pub fn start(port: u16, key_id: &str, org: &str, convene_port: u16, users: Value) -> Provider {
        for _ in 0..3 {
            if let Some(p) = Self::try_start(port, key_id, org, convene_port, &users) {
                return p;
            }
        }
        panic!("the test OpenID provider did not start on port {port}");
    }

    fn try_start(
        port: u16,
        key_id: &str,
        org: &str,
        convene_port: u16,
        users: &Value,
    ) -> Option<Provider> {
        let dir = repo().join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the test OpenID provider is not installed: run `npm ci` in tests/oidc (scripts/test does)"
        );
        let config = json!({
            "port": port,
            "keyId": key_id,
            "clients": [{
                "client_id": "convene",
                "client_secret": format!("secret-{port}"),
                "redirect_uris": [format!("http://127.0.0.1:{convene_port}/auth/callback/{org}")]
            }],
            "users": users,
        });
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .env("OIDC_CONFIG", config.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("\"ready\":true") => Some(Provider { child, port }),
            other => {
                eprintln!("test provider on port {port} did not become ready: {other:?}");
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn user(name: &str, email: &str, full: &str) -> Value {
    json!({"username": name, "password": "pw", "sub": format!("{name}-sub"), "email": email,
           "email_verified": true, "name": full})
}

/// A browser, as far as HTTP goes: cookies (all on 127.0.0.1, so one jar
/// serves Convene and the providers), no automatic redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: BTreeMap<String, String>,
}

pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub cache_control: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Reply {
        let req = if self.jar.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let res = req.send().await.unwrap();
        for sc in res.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || attrs.to_ascii_lowercase().contains("max-age=0") {
                self.jar.remove(k.trim());
            } else {
                self.jar.insert(k.trim().to_string(), v.to_string());
            }
        }
        Reply {
            status: res.status().as_u16(),
            location: res
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string()),
            cache_control: res
                .headers()
                .get("cache-control")
                .map(|l| l.to_str().unwrap().to_string()),
            body: res.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        let req = self.http.get(url);
        self.send(req).await
    }

    /// Through the provider's login form, up to (not into) Convene's callback.
    /// Returns the callback URL the provider sends the browser to.
    pub async fn sign_in_at_provider(
        &mut self,
        convene: &str,
        org: &str,
        username: &str,
        mfa: bool,
    ) -> String {
        let r = self
            .get(&format!("{convene}/auth/login?org={org}&return=/welcome"))
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let mut url = r.location.unwrap();
        let base = url.split("/auth?").next().unwrap().to_string();
        // Authorize → the provider's interaction page.
        loop {
            let r = self.get(&url).await;
            match r.location {
                Some(next) if next.starts_with('/') => url = format!("{base}{next}"),
                Some(next) if next.starts_with(&base) => url = next,
                Some(next) => return next,
                None => {
                    assert!(
                        r.body.contains("name=\"username\""),
                        "login form: {}",
                        r.body
                    );
                    let mut form = vec![("username", username), ("password", "pw")];
                    if mfa {
                        form.push(("mfa", "1"));
                    }
                    let req = self.http.post(format!("{url}/login")).form(&form);
                    let r = self.send(req).await;
                    let next = r.location.expect("login accepted");
                    url = if next.starts_with('/') {
                        format!("{base}{next}")
                    } else {
                        next
                    };
                }
            }
        }
    }

    pub async fn sign_in(&mut self, convene: &str, org: &str, username: &str, mfa: bool) {
        let callback = self.sign_in_at_provider(convene, org, username, mfa).await;
        let r = self.get(&callback).await;
        assert_eq!(r.status, 303, "callback: {}", r.body);
        assert_eq!(r.location.as_deref(), Some("/welcome"));
        assert!(self.jar.contains_key("convene_session"));
    }

    pub async fn session(&mut self, convene: &str) -> Value {
        let r = self.get(&format!("{convene}/api/session")).await;
        serde_json::from_str(&r.body).unwrap()
    }

    pub fn join_options(&self) -> JoinOptions {
        JoinOptions {
            cookie: Some(self.cookie_header()),
            ..JoinOptions::default()
        }
    }
}

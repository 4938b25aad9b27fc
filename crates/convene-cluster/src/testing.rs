//! A real Redis for tests: a server of the caller's own, in a temporary
//! folder, on a Unix socket only (nothing listens on the network), without
//! persistence. Dropped, it stops; it also gets SIGTERM if the thread that
//! started it ends first. [`Redis::stop`] and [`Redis::start_again`] let a
//! test take it away under a running cluster and bring it back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    dir: PathBuf,
    child: Option<Child>,
    /// With [`Redis::start_over_tls`]: the TCP port it takes TLS on.
    tls_port: Option<u16>,
}

impl Redis {
    /// Start one, and return once it has run past [`crate::SETTLE`] (as
    /// one that has run a while: new meetings are placed at once); panics,
    /// saying what is missing, when it cannot.
    pub fn start() -> Redis {
        Self::start_with(None)
    }

    /// [`Redis::start`], also taking connections over TLS on 127.0.0.1 (at
    /// [`Redis::tls_port`]) with `cert_pem` and `key_pem`; no client
    /// certificate asked for.
    pub fn start_over_tls(cert_pem: &str, key_pem: &str) -> Redis {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Redis {
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!(
            "convene-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tls_port = tls.map(|(cert, key)| {
            std::fs::write(dir.join("tls.crt"), cert).unwrap();
            std::fs::write(dir.join("tls.key"), key).unwrap();
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        });
        let mut r = Redis {
            dir,
            child: None,
            tls_port,
        };
        r.start_again();
        // As one the cluster has used a while (not one found empty).
        // The socket file can be there a moment before Redis answers on it.
        let answering = Instant::now() + Duration::from_secs(10);
        let mut con = loop {
            match redis::Client::open(r.url()).and_then(|c| c.get_connection()) {
                Ok(con) => break con,
                Err(e) if Instant::now() >= answering => {
                    panic!("redis-server for the tests: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let (now, _): (i64, i64) = redis::cmd("TIME").query(&mut con).unwrap();
        let _: () = redis::cmd("SET")
            .arg(crate::SINCE)
            .arg(now - 3600)
            .query(&mut con)
            .unwrap();
        std::thread::sleep(
            (started + crate::SETTLE + Duration::from_millis(1100))
                .saturating_duration_since(Instant::now()),
        );
        r
    }

    /// `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The port it takes TLS on ([`Redis::start_over_tls`]).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// Stop it (the data goes with it: it keeps none).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Start it (again), empty, and wait until it answers (not until it
    /// has settled: see [`crate::SETTLE`]).
    pub fn start_again(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(self.tls_port.iter().flat_map(|port| {
                [
                    "--tls-port".to_string(),
                    port.to_string(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--tls-cert-file".into(),
                    self.dir.join("tls.crt").display().to_string(),
                    "--tls-key-file".into(),
                    self.dir.join("tls.key").display().to_string(),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("redis-server for the tests: {e} (Debian: apt install redis-server)")
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Play a node that took `meeting` while its holder was cut off: the hold
/// is `node`'s now (for [`crate::LIVENESS`], as a fresh hold is).
pub async fn hand_hold_to(redis_url: &str, meeting: &str, node: &str) {
    let mut con = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(crate::meeting_key(meeting))
        .arg(node)
        .arg("PX")
        .arg(crate::LIVENESS.as_millis() as u64)
        .query_async(&mut con)
        .await
        .unwrap();
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

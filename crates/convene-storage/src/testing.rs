//! A real PostgreSQL for tests: one server per test process, started on
//! first use in a temporary folder (`initdb`, then `postgres` listening on a
//! Unix socket only), and a fresh database for each caller. The server goes
//! with the process (it gets SIGINT when the thread that started it ends,
//! which is when the process does); a later run removes folders left by
//! processes that are gone.
//!
//! PostgreSQL refuses to run as root: as root, it runs as the `postgres`
//! user the Debian package makes. Its binaries are looked for in
//! `$CONVENE_PG_BIN`, then `/usr/lib/postgresql/*/bin`, then `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Server {
    socket_dir: PathBuf,
    next: AtomicU32,
    /// How to start it again after [`stop_postgres`].
    launch: Launch,
    /// The postmaster's process id.
    pid: std::sync::Mutex<u32>,
}

struct Launch {
    bin: PathBuf,
    base: PathBuf,
    user: Option<(u32, u32)>,
    /// Settings beyond the defaults (`-c name=value`, after them).
    settings: Vec<String>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// A new, empty database on the test process's PostgreSQL: its address,
/// in the key=value form `--database` and [`crate::Storage::connect`] take.
/// Panics, saying what is missing, when PostgreSQL cannot be started.
pub fn postgres_url() -> String {
    let server = server();
    let n = server.next.fetch_add(1, Ordering::Relaxed);
    let name = format!("t{n}");
    let admin = crate::pg::PgConn::connect(&server.url("postgres"))
        .unwrap_or_else(|e| panic!("PostgreSQL for the tests: {e}"));
    admin
        .batch(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("PostgreSQL for the tests: {e}"));
    server.url(&name)
}

/// Play someone with the database in hand: change the stored hash of audit
/// row `seq` (the append-only guard taken away for it and put back).
pub fn rewrite_audit_hash(storage: &crate::Storage, seq: i64) {
    assert!(storage.is_shared(), "for PostgreSQL");
    storage
        .with(|c| {
            c.exec(
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
                &[],
            )?;
            c.exec(
                "UPDATE audit_log SET hash = 'rewritten' WHERE seq = ?1",
                crate::db::p![seq],
            )?;
            c.exec(
                "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only",
                &[],
            )
        })
        .unwrap();
}

fn server() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("PostgreSQL for the tests: {e}"),
    }
}

/// Stop the test process's PostgreSQL (a fast shutdown: its sessions end),
/// for tests of a database that goes away. Every database [`postgres_url`]
/// gave goes away with it, the other tests' too: use it in a test binary of
/// its own. Returns when the server is gone.
pub fn stop_postgres() {
    let server = server();
    let pid = *server.pid.lock().unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Reaped by its thread: then the pid is gone.
    while Path::new("/proc").join(pid.to_string()).exists() {
        assert!(Instant::now() < deadline, "PostgreSQL did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start the test process's PostgreSQL again after [`stop_postgres`], with
/// its databases as they were; returns when it answers.
pub fn start_postgres_again() {
    let server = server();
    let pid = launch(&server.launch).unwrap_or_else(|e| panic!("PostgreSQL again: {e}"));
    *server.pid.lock().unwrap() = pid;
    server
        .wait_until_up()
        .unwrap_or_else(|e| panic!("PostgreSQL again: {e}"));
}

impl Server {
    fn wait_until_up(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match crate::pg::PgConn::connect(&self.url("postgres")) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(self.socket_dir.join("postgres.log"))
                        .unwrap_or_default();
                    return Err(format!("did not start: {e}\n{log}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn url(&self, db: &str) -> String {
        format!(
            "host={} user=convene dbname={db}",
            self.socket_dir.display()
        )
    }
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("CONVENE_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    if let Some(newest) = found.pop() {
        return Ok(newest);
    }
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if d.join("initdb").exists() && d.join("postgres").exists() {
            return Ok(d);
        }
    }
    Err(
        "no initdb: install PostgreSQL (Debian: apt install postgresql), or set CONVENE_PG_BIN"
            .into(),
    )
}

/// The `postgres` user's uid and gid, from /etc/passwd.
fn postgres_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "postgres")
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| "running as root, and there is no postgres user to run PostgreSQL as".into())
}

/// Folders of test processes that are gone.
fn sweep(tmp: &Path) {
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("convene-pg-") {
            let pid = pid.split('-').next().unwrap_or_default();
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn start() -> Result<Server, String> {
    let launch_with = init("", Vec::new(), |_| Ok(()))?;
    let pid = launch(&launch_with)?;
    let server = Server {
        socket_dir: launch_with.base.clone(),
        next: AtomicU32::new(0),
        launch: launch_with,
        pid: std::sync::Mutex::new(pid),
    };
    server.wait_until_up()?;
    Ok(server)
}

/// Another PostgreSQL of the test process's, for tests of TLS: it listens
/// on 127.0.0.1 at the returned port as well as on its socket, and takes
/// connections there over TLS only (`hostssl`), with `cert_pem` (then its
/// chain) and `key_pem`. Database `convene`, user `convene`, no password.
/// It stops with the test process.
pub fn postgres_over_tls(cert_pem: &str, key_pem: &str) -> u16 {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let settings = vec![
        "listen_addresses=127.0.0.1".into(),
        format!("port={port}"),
        "ssl=on".into(),
        "ssl_cert_file=server.crt".into(),
        "ssl_key_file=server.key".into(),
    ];
    let files = |data: &Path| -> Result<(), String> {
        let write = |name: &str, text: &str| {
            std::fs::write(data.join(name), text).map_err(|e| format!("{name}: {e}"))
        };
        write("server.crt", cert_pem)?;
        write("server.key", key_pem)?;
        write(
            "pg_hba.conf",
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
    };
    another_server(settings, files);
    port
}

/// Another PostgreSQL of the test process's that keeps what it commits as
/// a production server does (`fsync`, full page writes), for figures of
/// commit costs: the address of its database `convene`, on its socket
/// and over TCP on 127.0.0.1 (where a test may add delay with `tc`).
pub fn durable_postgres_urls() -> (String, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let settings = vec![
        "fsync=on".into(),
        "full_page_writes=on".into(),
        "listen_addresses=127.0.0.1".into(),
        format!("port={port}"),
    ];
    let socket = another_server(settings, |_| Ok(()));
    (
        format!("{socket} dbname=convene"),
        format!("host=127.0.0.1 port={port} user=convene dbname=convene sslmode=disable"),
    )
}

static OTHER_SERVERS: AtomicU32 = AtomicU32::new(0);

/// Start another server with `settings` and `files` (see [`init`]), with a
/// database `convene`; the key=value address of its socket, without the
/// database. It stops with the test process.
fn another_server(
    settings: Vec<String>,
    files: impl FnOnce(&Path) -> Result<(), String>,
) -> String {
    let n = OTHER_SERVERS.fetch_add(1, Ordering::Relaxed);
    let port = settings
        .iter()
        .find_map(|s| s.strip_prefix("port="))
        .unwrap_or("5432")
        .to_string();
    let l = init(&format!("-{n}"), settings, files)
        .unwrap_or_else(|e| panic!("another PostgreSQL for the tests: {e}"));
    launch(&l).unwrap_or_else(|e| panic!("another PostgreSQL for the tests: {e}"));
    let socket = format!("host={} port={port} user=convene", l.base.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    let admin = loop {
        match crate::pg::PgConn::connect(&format!("{socket} dbname=postgres")) {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(l.base.join("postgres.log")).unwrap_or_default();
                panic!("another PostgreSQL did not start: {e}\n{log}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    admin.batch("CREATE DATABASE convene").unwrap();
    socket
}

/// A new data folder (`initdb`) in a temporary folder named after this
/// process and `suffix`, with `files` written into it after; how to start
/// PostgreSQL on it.
fn init(
    suffix: &str,
    settings: Vec<String>,
    files: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<Launch, String> {
    let bin = bin_dir()?;
    let tmp = std::env::temp_dir();
    sweep(&tmp);
    let base = tmp.join(format!("convene-pg-{}{suffix}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        let (uid, gid) = postgres_user()?;
        std::os::unix::fs::chown(&base, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        Some((uid, gid))
    } else {
        None
    };
    let as_user = |cmd: &mut Command| {
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
    };
    let data = base.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "convene",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_user(&mut initdb);
    let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    files(&data)?;
    if let Some((uid, gid)) = user {
        for e in std::fs::read_dir(&data)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            std::os::unix::fs::chown(e.path(), Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
    }
    // PostgreSQL refuses a key others may read.
    let key = data.join("server.key");
    if key.exists() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    Ok(Launch {
        bin,
        base,
        user,
        settings,
    })
}

/// Start `postgres` on the data folder under `l.base`; its process id.
fn launch(l: &Launch) -> Result<u32, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(l.base.join("postgres.log"))
        .map_err(|e| e.to_string())?;
    let mut postgres = Command::new(l.bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(l.base.join("data"))
        .arg("-k")
        .arg(&l.base)
        // A Unix socket only: nothing listens on the network.
        .args(["-c", "listen_addresses=", "-c", "max_connections=300"])
        // Tests need no durability across a power cut.
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(l.settings.iter().flat_map(|s| ["-c", s.as_str()]))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    if let Some((uid, gid)) = l.user {
        use std::os::unix::process::CommandExt;
        postgres.uid(uid).gid(gid);
    }
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; set after the uid change
        // (which clears it), so it holds for postgres.
        unsafe {
            postgres.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    // The thread that starts the server lives as long as the server (the
    // death signal is tied to it) and reaps it when it stops.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || match postgres.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(format!("postgres: {e}")));
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

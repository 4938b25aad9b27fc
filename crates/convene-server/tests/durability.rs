//! What the server acknowledges survives `kill -9`: the real binary runs, hosts
//! lock and unlock meetings and people join as fast as they can, every
//! acknowledgement is recorded, the process is killed, and the data folder is
//! read back: each acknowledged lock and join is in the audit log and the
//! meeting's stored state. On SQLite in the data folder, and on PostgreSQL
//! (`--database`, a real server the test starts).

use std::collections::HashSet;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const LOCK_MEETINGS: usize = 160;
const JOINERS: usize = 6;
/// Each round runs this long, then the server is killed and checked.
const RUN_FOR: Duration = Duration::from_millis(2500);
const ROUNDS: usize = 4;
/// A host socket may send 20 messages a second: toggle a bit below that, so
/// acknowledgements arrive in a steady stream rather than in bursts.
const TOGGLE_EVERY: Duration = Duration::from_millis(55);

/// Time from sending a lock to its acknowledgement, every one.
static LATENCIES: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

struct Server {
    child: Child,
    url: String,
}

/// A failed test leaves no server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the server keeps its state: the data folder (SQLite), and
/// PostgreSQL's address when given.
struct Store<'a> {
    data: &'a std::path::Path,
    database: Option<&'a str>,
}

impl Store<'_> {
    fn open(&self) -> convene_storage::Storage {
        convene_storage::Storage::open_or_connect(self.data, self.database).unwrap()
    }
}

fn start(store: &Store<'_>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convene"));
    cmd.args(["--listen", "127.0.0.1:0", "--media-listen", "127.0.0.1:0"])
        .args(["--max-participants", "10000", "--log", "warn"])
        .arg("--data-dir")
        .arg(store.data);
    if let Some(db) = store.database {
        cmd.args(["--database", db]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("the convene binary starts");
    // Log lines share standard output: read it all, the whole time (a full
    // pipe would stall the server), and pick out the line with the address.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.trim().strip_prefix("Convene is running at ") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server says where it runs");
    Server { child, url }
}

/// Anonymous meetings are limited per address: make them from a few loopback
/// addresses (127.0.0.2, …), 50 from each.
async fn create_meeting(url: &str, n: usize) -> (String, String) {
    let from = std::net::Ipv4Addr::new(127, 0, 0, 2 + (n / 50) as u8);
    let res = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(from))
        .build()
        .unwrap()
        .post(format!("{url}/api/meetings"))
        .json(&serde_json::json!({ "title": "Durable" }))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["hostKey"].as_str().unwrap().to_string(),
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(url: &str, meeting: &str, host_key: Option<&str>) -> Option<(Ws, String)> {
    let ws_url = format!(
        "{}/api/meetings/{meeting}/ws",
        url.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.ok()?;
    let mut join = serde_json::json!({ "type": "join", "protocol": 1, "name": "Tester" });
    if let Some(k) = host_key {
        join["hostKey"] = k.into();
    }
    ws.send(Message::text(join.to_string())).await.ok()?;
    loop {
        let Message::Text(t) = ws.next().await?.ok()? else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&t).ok()?;
        match v["type"].as_str() {
            Some("welcome") => return Some((ws, v["participantId"].as_str()?.to_string())),
            Some("error") => return None,
            _ => {}
        }
    }
}

/// The host toggles the lock; each `meeting-updated` showing the new state
/// acknowledges one toggle. Returns when the socket fails (the kill).
async fn toggle_locks(
    url: String,
    meeting: String,
    key: String,
    phase: Duration,
    acked: Arc<Mutex<Vec<bool>>>,
) {
    let Some((mut ws, _)) = join(&url, &meeting, Some(&key)).await else {
        panic!("the host joins");
    };
    tokio::time::sleep(phase).await;
    let mut locked = false;
    loop {
        tokio::time::sleep(TOGGLE_EVERY).await;
        let want = !locked;
        let msg = serde_json::json!({ "type": "lock", "locked": want });
        let sent = Instant::now();
        if ws.send(Message::text(msg.to_string())).await.is_err() {
            return;
        }
        loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                return;
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "error" && v["code"] == "rate-limited" {
                // Twenty messages a second per socket: wait, ask again.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if ws.send(Message::text(msg.to_string())).await.is_err() {
                    return;
                }
                continue;
            }
            if v["type"] == "meeting-updated" && v["meeting"]["locked"] == want {
                acked.lock().unwrap().push(want);
                LATENCIES.lock().unwrap().push(sent.elapsed());
                locked = want;
                break;
            }
        }
    }
}

/// Join, note the participant id the welcome gave, close; again.
async fn keep_joining(url: String, meeting: String, acked: Arc<Mutex<Vec<String>>>) {
    while let Some((ws, id)) = join(&url, &meeting, None).await {
        acked.lock().unwrap().push(id);
        drop(ws);
    }
}

/// What one round's clients were told before the kill.
struct Acked {
    /// Per lock meeting: (meeting id, the states acknowledged, in order).
    locks: Vec<(String, Vec<bool>)>,
    join_meeting: String,
    joins: Vec<String>,
}

async fn round(store: &Store<'_>) -> Acked {
    let mut server = start(store);
    let mut lock_meetings = Vec::new();
    for n in 0..LOCK_MEETINGS {
        lock_meetings.push(create_meeting(&server.url, n).await);
    }
    let (join_meeting, _) = create_meeting(&server.url, LOCK_MEETINGS).await;

    let mut tasks = Vec::new();
    let mut lock_acks = Vec::new();
    for (i, (id, key)) in lock_meetings.iter().enumerate() {
        let acked = Arc::new(Mutex::new(Vec::new()));
        lock_acks.push(acked.clone());
        let phase = TOGGLE_EVERY * i as u32 / LOCK_MEETINGS as u32;
        tasks.push(tokio::spawn(toggle_locks(
            server.url.clone(),
            id.clone(),
            key.clone(),
            phase,
            acked,
        )));
    }
    let join_acks = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..JOINERS {
        tasks.push(tokio::spawn(keep_joining(
            server.url.clone(),
            join_meeting.clone(),
            join_acks.clone(),
        )));
    }

    let started = Instant::now();
    tokio::time::sleep(RUN_FOR).await;
    // The crash: freeze the server at one instant (SIGSTOP), let the clients
    // read what it had sent until then, and kill it (SIGKILL). Whatever a
    // client was told before the crash must be on disk.
    let stopped = Command::new("kill")
        .args(["-STOP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let locks: Vec<(String, Vec<bool>)> = lock_meetings
        .iter()
        .zip(&lock_acks)
        .map(|((id, _), a)| (id.clone(), a.lock().unwrap().clone()))
        .collect();
    let joins: Vec<String> = join_acks.lock().unwrap().clone();
    let elapsed = started.elapsed().as_secs_f64() - 0.3;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(server);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let total_locks: usize = locks.iter().map(|(_, l)| l.len()).sum();
    println!(
        "acknowledged before the kill: {total_locks} lock toggles ({:.0}/s over {LOCK_MEETINGS} meetings), {} joins ({:.0}/s from {JOINERS} joiners)",
        total_locks as f64 / elapsed,
        joins.len(),
        joins.len() as f64 / elapsed
    );
    let mut lat = std::mem::take(&mut *LATENCIES.lock().unwrap());
    lat.sort();
    if !lat.is_empty() {
        println!(
            "lock acknowledged after: median {:?}, 99th percentile {:?}",
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100]
        );
    }
    assert!(total_locks > 20, "the test did some work: {total_locks}");
    assert!(joins.len() > 20, "the test did some work: {}", joins.len());
    Acked {
        locks,
        join_meeting,
        joins,
    }
}

/// What of `acked` is not stored.
fn missing(store: &Store<'_>, acked: &Acked) -> Vec<String> {
    let storage = store.open();
    assert!(storage.verify_audit().unwrap().is_ok());
    let mut missing = Vec::new();
    for (id, acked) in &acked.locks {
        let stored: Vec<bool> = storage
            .audit_records(Some(id))
            .unwrap()
            .iter()
            .filter(|r| r.event == "lock")
            .map(|r| r.outcome == "locked")
            .collect();
        // Every acknowledged toggle, in order; at most one more that was in
        // flight at the kill.
        if stored.len() < acked.len() || stored[..acked.len()] != acked[..] {
            missing.push(format!(
                "meeting {id}: {} toggles acknowledged, {} in the log",
                acked.len(),
                stored.len()
            ));
            continue;
        }
        assert!(stored.len() <= acked.len() + 1, "{id}: {stored:?}");
        let m = storage.meeting(id).unwrap().unwrap();
        assert_eq!(
            Some(&m.locked),
            stored.last(),
            "{id}: the stored lock state is the last logged one"
        );
    }
    let admitted: HashSet<String> = storage
        .audit_records(Some(&acked.join_meeting))
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "join" && r.outcome == "admitted")
        .map(|r| r.subject)
        .collect();
    let lost = acked
        .joins
        .iter()
        .filter(|p| !admitted.contains(*p))
        .count();
    if lost > 0 {
        missing.push(format!(
            "{lost} of {} acknowledged joins are not in the log",
            acked.joins.len()
        ));
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_locks_and_joins_survive_kill_9() {
    survive_kill_9(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_locks_and_joins_survive_kill_9_on_postgres() {
    survive_kill_9(Some(&convene_storage::testing::postgres_url())).await
}

/// One engine at a time: two loads at once on two cores would measure the
/// machine, not the server.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn survive_kill_9(database: Option<&str>) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = std::env::temp_dir().join(format!(
        "convene-durability-{}",
        convene_storage::new_meeting_id()
    ));
    let data = dir.join("data");
    let store = Store {
        data: &data,
        database,
    };
    // A kill lands between an acknowledgement and its commit only now and
    // then: several rounds, restarting on the same data each time.
    for n in 1..=ROUNDS {
        let acked = round(&store).await;
        let missing = missing(&store, &acked);
        assert!(
            missing.is_empty(),
            "round {n}: lost after kill -9: {missing:?}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

use super::*;

fn ev<'a>(event: &'a str, subject: &'a str) -> AuditEvent<'a> {
    AuditEvent {
        meeting: "m1",
        actor: "p1",
        subject,
        event,
        outcome: "ok",
        detail: "",
    }
}

/// `f` on each engine, with `n` rows in the log.
fn with_rows(n: usize, f: impl Fn(Storage)) {
    each_engine(|s| {
        for i in 0..n {
            s.audit(ev("join", &format!("p{i}"))).unwrap();
        }
        f(s)
    })
}

/// Tampering goes around the triggers, as someone with the database would.
fn tamper(s: &Storage, sql: &str) {
    s.raw_unguard();
    s.raw_batch(sql).unwrap();
}

#[test]
fn an_intact_log_verifies_and_reports_its_head() {
    with_rows(5, |s| {
        let head = s.verify_audit().unwrap().unwrap();
        assert_eq!(head.rows, 5);
        assert_eq!(head.hash, s.audit_records(None).unwrap()[4].hash);
    });
    each_engine(|s| assert_eq!(s.verify_audit().unwrap().unwrap().rows, 0));
}

#[test]
fn the_log_refuses_updates_and_deletes() {
    with_rows(2, |s| {
        assert!(s
            .raw_exec("UPDATE audit_log SET outcome = 'x'", &[])
            .is_err());
        assert!(s
            .raw_exec("DELETE FROM audit_log WHERE seq = 1", &[])
            .is_err());
        assert_eq!(s.audit_records(None).unwrap().len(), 2);
    })
}

#[test]
fn a_modified_row_is_detected() {
    with_rows(5, |s| {
        tamper(
            &s,
            "UPDATE audit_log SET outcome = 'admitted' WHERE seq = 3",
        );
        assert_eq!(
            s.verify_audit().unwrap(),
            Err(AuditBreak::Modified { seq: 3 })
        );
    })
}

#[test]
fn a_modified_row_with_a_recomputed_hash_breaks_the_next_link() {
    with_rows(5, |s| {
        let mut r = s.audit_records(None).unwrap()[2].clone();
        r.outcome = "admitted".into();
        r.hash = r.expected_hash();
        tamper(
            &s,
            &format!(
                "UPDATE audit_log SET outcome = 'admitted', hash = '{}' WHERE seq = 3",
                r.hash
            ),
        );
        assert_eq!(
            s.verify_audit().unwrap(),
            Err(AuditBreak::Unchained { seq: 4 })
        );
    })
}

#[test]
fn a_deleted_row_is_detected() {
    with_rows(5, |s| {
        tamper(&s, "DELETE FROM audit_log WHERE seq = 2");
        assert_eq!(
            s.verify_audit().unwrap(),
            Err(AuditBreak::Gap {
                seq: 3,
                expected: 2
            })
        );
    })
}

#[test]
fn reordered_rows_are_detected() {
    with_rows(5, |s| {
        // Swap the contents of rows 2 and 3, keeping each row self-consistent.
        let rows = s.audit_records(None).unwrap();
        let (a, b) = (&rows[1], &rows[2]);
        let swap = |into: &AuditRecord, from: &AuditRecord| {
            format!(
                "UPDATE audit_log SET subject = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
                from.subject, from.prev_hash, from.hash, into.seq
            )
        };
        tamper(&s, &(swap(a, b) + &swap(b, a)));
        assert!(s.verify_audit().unwrap().is_err());
    })
}

#[test]
fn exports_as_jsonl_and_csv() {
    each_engine(exports_as_jsonl_and_csv_on)
}

fn exports_as_jsonl_and_csv_on(s: Storage) {
    s.audit(AuditEvent {
        meeting: "m1",
        actor: "p1",
        subject: "p2",
        event: "remove",
        outcome: "barred",
        detail: "said \"hi\", left",
    })
    .unwrap();
    s.audit(AuditEvent {
        meeting: "m2",
        actor: "system",
        subject: "m2",
        event: "end",
        outcome: "ok",
        detail: "",
    })
    .unwrap();
    let m1 = s.audit_records(Some("m1")).unwrap();
    assert_eq!(m1.len(), 1);
    let jsonl = audit::to_jsonl(&m1);
    let v: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(v["event"], "remove");
    assert_eq!(v["prevHash"], audit::GENESIS);
    let csv = audit::to_csv(&s.audit_records(None).unwrap()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "seq,at,meeting,actor,subject,event,outcome,detail,prevHash,hash"
    );
    assert!(
        lines[1].contains("\"said \"\"hi\"\", left\""),
        "{}",
        lines[1]
    );
    assert_eq!(lines.len(), 3);
}

/// Figures for the audit log's one chain in a cluster (BENCHMARKS.md): every
/// node's writes go one at a time through one lock in PostgreSQL. With
/// `n` nodes (each its own connection, as each node's writer has) writing
/// batches of `rows` audit rows as fast as they can for 3 s, on a server
/// that syncs its commits: rows stored a second, and each batch's time
/// from start to commit. `cargo test --release -p convene-storage
/// figures_audit -- --ignored --nocapture`; with `CONVENE_FIGURES_RTT_US=N`
/// over TCP through a relay that delays each direction by N/2 µs (a
/// network between the nodes and the database) instead of the socket.
#[test]
#[ignore = "figures, not a check"]
fn figures_audit_appends_from_several_nodes() {
    let (socket, tcp) = crate::testing::durable_postgres_urls();
    let url = match std::env::var("CONVENE_FIGURES_RTT_US") {
        Ok(rtt) => {
            let port: u16 = tcp
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("port="))
                .unwrap()
                .parse()
                .unwrap();
            let half = std::time::Duration::from_micros(rtt.parse::<u64>().unwrap() / 2);
            let relay = delaying_relay(port, half);
            format!("host=127.0.0.1 port={relay} user=convene dbname=convene sslmode=disable")
        }
        Err(_) => socket,
    };
    Storage::connect(&url).unwrap();
    for rows in [1usize, 20] {
        for nodes in [1usize, 3, 6] {
            let stop = std::time::Instant::now() + std::time::Duration::from_secs(3);
            let threads: Vec<_> = (0..nodes)
                .map(|n| {
                    let url = url.clone();
                    std::thread::spawn(move || {
                        let s = Storage::connect(&url).unwrap();
                        let mut times = Vec::new();
                        let meeting = format!("m{n}");
                        while std::time::Instant::now() < stop {
                            let t = std::time::Instant::now();
                            s.write_batch(|b| {
                                for i in 0..rows {
                                    let subject = format!("p{i}");
                                    b.audit(
                                        AuditEvent {
                                            meeting: &meeting,
                                            actor: "p1",
                                            subject: &subject,
                                            event: "join",
                                            outcome: "ok",
                                            detail: "",
                                        },
                                        crate::unix_millis(),
                                    )
                                    .unwrap();
                                }
                            })
                            .unwrap();
                            times.push(t.elapsed());
                        }
                        times
                    })
                })
                .collect();
            let mut times: Vec<std::time::Duration> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            println!(
                "# figure: {nodes} node(s), {rows} row(s) a batch: {:.0} rows/s, {:.0} batches/s; a batch {:.2} ms p50, {:.2} ms p99",
                (times.len() * rows) as f64 / 3.0,
                times.len() as f64 / 3.0,
                at(0.5).as_secs_f64() * 1000.0,
                at(0.99).as_secs_f64() * 1000.0
            );
        }
    }
    let s = Storage::connect(&url).unwrap();
    assert!(
        s.verify_audit().unwrap().is_ok(),
        "one chain, every row in it"
    );
}

/// A TCP relay on 127.0.0.1 to `port` that holds back what crosses it, each
/// way, by `delay` (in order); its port.
fn delaying_relay(port: u16, delay: std::time::Duration) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;
    fn pump(mut from: TcpStream, mut to: TcpStream, delay: std::time::Duration) {
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0
                    || tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for (due, bytes) in rx {
                // Sleep for what is left, then spin the last bit: sleeps
                // overshoot by tens of microseconds.
                while let Some(left) = due.checked_duration_since(Instant::now()) {
                    if left > std::time::Duration::from_micros(100) {
                        std::thread::sleep(left - std::time::Duration::from_micros(80));
                    } else {
                        std::hint::spin_loop();
                    }
                }
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(("127.0.0.1", port)).unwrap();
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                delay,
            );
            pump(server, client, delay);
        }
    });
    at
}

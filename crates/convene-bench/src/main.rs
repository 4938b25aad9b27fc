//! convene-bench: joins meetings on a Convene server as real WebRTC peers, through
//! the documented signalling protocol, and measures what the server does.
//! Every run is bounded in participants and time and targets loopback only.

mod procfs;
mod report;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use convene_client::{Client, Meter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::Report;

/// Most participants one run may create, whatever the options say.
const MAX_PARTICIPANTS: usize = 2000;
/// Longest measuring window.
const MAX_DURATION_SECS: u64 = 600;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// One video publisher, N subscribers.
    FanOut,
    /// N people, each publishing camera and microphone and receiving all others.
    Meeting,
    /// S speakers publishing audio, L listeners.
    AudioRoom,
    /// A webinar: one panelist (the host) publishing camera and microphone,
    /// N attendees (--subscribers) who are counted, not announced.
    Webinar,
}

/// Load generator for Convene. Joins as real WebRTC peers (str0m) through the
/// signalling protocol; publishers send synthetic VP8/Opus RTP, subscribers count
/// packets, loss and delay without decoding.
#[derive(Debug, Parser)]
#[command(name = "convene-bench", version)]
struct Args {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long, value_enum, default_value = "fan-out")]
    scenario: Scenario,
    /// fan-out, webinar: number of subscribers (attendees).
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// meeting: number of participants in each meeting.
    #[arg(long, default_value_t = 4)]
    participants: usize,
    /// audio-room: number of speakers.
    #[arg(long, default_value_t = 10)]
    speakers: usize,
    /// audio-room: number of listeners.
    #[arg(long, default_value_t = 100)]
    listeners: usize,
    /// How many meetings to run the scenario in, side by side.
    #[arg(long, default_value_t = 1)]
    meetings: usize,
    /// Cameras are published in three simulcast layers (l, m, h at a
    /// fifteenth, a third and all of --video-kbps), as browsers do; each
    /// subscriber receives the one its downlink estimate allows.
    #[arg(long)]
    simulcast: bool,
    /// Video bitrate of each publisher, kbit/s.
    #[arg(long, default_value_t = 500)]
    video_kbps: u32,
    /// Video frame rate.
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// Joins per second while ramping up.
    #[arg(long, default_value_t = 50.0)]
    join_rate: f64,
    /// Seconds to wait after everyone joined before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The server's process id, to read its CPU time and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the results as JSON to this file ("-" for standard output).
    #[arg(long)]
    json: Option<String>,
    /// Every participant sends and receives media over TCP (ICE-TCP) only, as
    /// browsers behind a firewall that blocks UDP do.
    #[arg(long)]
    tcp: bool,
    /// Worker threads for the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// End-to-end encrypted meetings: every participant is an MLS member and
    /// sends and receives SFrame frames (as browsers do), so the server's
    /// forwarding cost can be compared with clear meetings'. (Each participant
    /// keeps the roster, which MLS needs.)
    #[arg(long)]
    e2ee: bool,
    /// Join this existing meeting instead of creating one (with `--meetings 1`),
    /// for example to watch or hear the load from a browser.
    #[arg(long)]
    meeting: Option<String>,
    /// In a cluster: ask --server where each meeting runs (`GET
    /// /api/meetings/{id}`, as a client must) and join on the node it names.
    /// The join time then includes the question, and is reported apart for
    /// joins --server hosted and joins it sent to another node.
    #[arg(long)]
    follow_node: bool,
}

struct Plan {
    /// (meeting index, name, sources to publish)
    people: Vec<(usize, String, Vec<&'static str>)>,
}

/// A meeting the run created or was given, and its host key if created.
struct Meeting {
    id: String,
    host_key: Option<String>,
}

fn plan(args: &Args) -> Plan {
    let mut people = Vec::new();
    for m in 0..args.meetings {
        match args.scenario {
            Scenario::FanOut => {
                people.push((m, format!("publisher-{m}"), vec!["camera"]));
                people.extend((0..args.subscribers).map(|i| (m, format!("sub-{m}-{i}"), vec![])));
            }
            Scenario::Webinar => {
                people.push((m, format!("panelist-{m}"), vec!["camera", "microphone"]));
                people.extend((0..args.subscribers).map(|i| (m, format!("att-{m}-{i}"), vec![])));
            }
            Scenario::Meeting => {
                people.extend(
                    (0..args.participants)
                        .map(|i| (m, format!("p-{m}-{i}"), vec!["camera", "microphone"])),
                );
            }
            Scenario::AudioRoom => {
                people.extend(
                    (0..args.speakers).map(|i| (m, format!("speaker-{m}-{i}"), vec!["microphone"])),
                );
                people
                    .extend((0..args.listeners).map(|i| (m, format!("listener-{m}-{i}"), vec![])));
            }
        }
    }
    Plan { people }
}

/// A request with a JSON answer, over a connection of its own.
async fn http_json(
    base: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<serde_json::Value, String> {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .map_err(|e| format!("{hostport}: {e}"))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    let json = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(json).map_err(|e| format!("bad reply {out:?}: {e}"))
}

/// The node `base` names for `meeting`, when another node hosts it.
async fn node_for(base: &str, meeting: &str) -> Result<Option<String>, String> {
    let v = http_json(base, "GET", &format!("/api/meetings/{meeting}"), "").await?;
    if v["id"].as_str() != Some(meeting) {
        return Err(format!("{base} cannot say where {meeting} is: {v}"));
    }
    let node = v["node"].as_str().map(str::to_string);
    if let Some(n) = &node {
        check_loopback(n)?;
    }
    Ok(node)
}

async fn create_meeting(
    base: &str,
    title: &str,
    e2ee: bool,
    webinar: bool,
) -> Result<Meeting, String> {
    // Large meetings need a participant limit to match (the server's own limit
    // and the level's still apply).
    let body =
        serde_json::json!({ "title": title, "settings": { "maxParticipants": 2000, "e2ee": e2ee, "webinar": webinar } })
            .to_string();
    let v = http_json(base, "POST", "/api/meetings", &body).await?;
    let id = v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no meeting id in {v}"))?;
    let host_key = v["hostKey"].as_str().map(str::to_string);
    Ok(Meeting { id, host_key })
}

fn check_loopback(url: &str) -> Result<(), String> {
    let host = url
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap_or("");
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        Ok(())
    } else {
        Err(format!(
            "convene-bench only targets loopback servers, not {host}"
        ))
    }
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(args)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("convene-bench: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    check_loopback(&args.server)?;
    let plan = plan(&args);
    if plan.people.len() > MAX_PARTICIPANTS {
        return Err(format!(
            "{} participants is more than the limit of {MAX_PARTICIPANTS}",
            plan.people.len()
        ));
    }
    if args.duration > MAX_DURATION_SECS {
        return Err(format!("--duration is at most {MAX_DURATION_SECS} s"));
    }
    let mut meetings = Vec::new();
    match &args.meeting {
        Some(_) if args.meetings != 1 => {
            return Err("--meeting joins one meeting: use it with --meetings 1".into())
        }
        Some(id) => meetings.push(Meeting {
            id: id.clone(),
            host_key: None,
        }),
        None => {
            let webinar = args.scenario == Scenario::Webinar;
            for m in 0..args.meetings {
                let title = format!("bench {m}");
                meetings.push(create_meeting(&args.server, &title, args.e2ee, webinar).await?);
            }
        }
    }
    let server_before_join = args.server_pid.and_then(procfs::sample);
    let meter = Arc::new(Meter::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let joined = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // How long each join took (socket opened to welcome), by join order.
    let join_ms = Arc::new(std::sync::Mutex::new(vec![f64::NAN; plan.people.len()]));
    // With --follow-node: whether --server sent each join to another node.
    let sent_on = Arc::new(std::sync::Mutex::new(vec![false; plan.people.len()]));
    let total = plan.people.len();

    // Ramp up at the join rate; each participant runs in its own task until stopped.
    let ramp_start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.join_rate.max(0.1));
    let mut tasks = Vec::new();
    for (i, (m, name, sources)) in plan.people.into_iter().enumerate() {
        let at = ramp_start + gap * i as u32;
        tokio::time::sleep_until(at.into()).await;
        let (url, meeting) = (args.server.clone(), meetings[m].id.clone());
        let (meter, stop, joined) = (meter.clone(), stop.clone(), joined.clone());
        let join_ms = join_ms.clone();
        let sent_on = sent_on.clone();
        let follow = args.follow_node;
        // A webinar's panelist is on stage: its host.
        let host_key = match args.scenario {
            Scenario::Webinar if !sources.is_empty() => meetings[m].host_key.clone(),
            _ => None,
        };
        let kbps = args.video_kbps;
        let fps = args.fps;
        let simulcast = args.simulcast;
        let opts = convene_client::JoinOptions {
            media_over_tcp: args.tcp,
            e2ee: args.e2ee,
            host_key,
            ..Default::default()
        };
        let e2ee = args.e2ee;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut url = url;
            if follow {
                if let Some(node) = node_for(&url, &meeting).await? {
                    url = node;
                    if let Ok(mut s) = sent_on.lock() {
                        s[i] = true;
                    }
                }
            }
            let mut c = Client::join_with(&url, &meeting, &name, opts).await?;
            if let Ok(mut ms) = join_ms.lock() {
                ms[i] = started.elapsed().as_secs_f64() * 1000.0;
            }
            joined.fetch_add(1, Relaxed);
            c.meter = Some(meter);
            c.keep_roster = e2ee; // MLS checks adds against the roster
            c.timer_slack = Duration::from_millis(20);
            for s in &sources {
                if simulcast && *s == "camera" {
                    c.publish_simulcast(s, kbps, fps).await?;
                } else {
                    c.publish_with(s, kbps, fps).await?;
                }
            }
            c.run_until(Duration::from_secs(MAX_DURATION_SECS * 2), |_| {
                stop.load(Relaxed)
            })
            .await;
            Ok::<Client, String>(c)
        }));
    }
    // Wait for the joins to finish (or fail).
    let join_deadline = Instant::now() + Duration::from_secs(60);
    while joined.load(Relaxed) < total && Instant::now() < join_deadline {
        if tasks.iter().any(|t| t.is_finished()) {
            break; // a join failed: report it below
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    let joined_n = joined.load(Relaxed);
    eprintln!("joined {joined_n}/{total} in {ramp_secs:.1} s");
    if joined_n < total {
        stop.store(true, Relaxed);
        for t in tasks {
            if let Ok(Err(e)) = t.await {
                return Err(format!("a participant could not join: {e}"));
            }
        }
        return Err("not everyone joined within 60 s".into());
    }

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let server_start = args.server_pid.and_then(procfs::sample);
    let generator_start = procfs::sample(std::process::id());
    let drops_start = procfs::udp_receive_buffer_drops();
    let (p0, b0) = (meter.packets.load(Relaxed), meter.bytes.load(Relaxed));
    meter.measuring.store(true, Relaxed);
    let measure_start = Instant::now();
    let mut last = (p0, measure_start);
    while measure_start.elapsed() < Duration::from_secs(args.duration) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let p = meter.packets.load(Relaxed);
        let rate = (p - last.0) as f64 / last.1.elapsed().as_secs_f64();
        eprint!(
            "\r{:>4.0} s  {:>9.0} packets/s received  {joined_n} participants   ",
            measure_start.elapsed().as_secs_f64(),
            rate
        );
        last = (p, Instant::now());
    }
    meter.measuring.store(false, Relaxed);
    let window = measure_start.elapsed().as_secs_f64();
    let (p1, b1) = (meter.packets.load(Relaxed), meter.bytes.load(Relaxed));
    let server_end = args.server_pid.and_then(procfs::sample);
    let generator_end = procfs::sample(std::process::id());
    let drops_end = procfs::udp_receive_buffer_drops();
    eprintln!();
    stop.store(true, Relaxed);

    let mut clients = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => clients.push(c),
            Ok(Err(e)) => return Err(format!("a participant failed: {e}")),
            Err(e) => return Err(format!("a participant task failed: {e}")),
        }
    }
    let report = Report::build(
        &args_summary(&args),
        joined_n,
        ramp_secs,
        window,
        p1 - p0,
        b1 - b0,
        &clients,
        server_before_join,
        (server_start, server_end),
        (generator_start, generator_end),
        drops_start.zip(drops_end).map(|(a, b)| b.saturating_sub(a)),
    );
    println!("{}", report.table());
    if let Ok(ms) = join_ms.lock() {
        println!("{}", report::join_times(&ms));
        if args.follow_node {
            if let Ok(sent) = sent_on.lock() {
                println!("{}", report::join_times_by_node(&ms, &sent));
            }
        }
    }
    if args.e2ee {
        // Proof the media was sealed end to end, not just sent in an encrypted
        // meeting: the subscribers opened the frames with their own keys.
        let mut t = convene_client::FrameCount::default();
        for c in &clients {
            t.add(&c.frames_total());
        }
        println!(
            "SFrame frames opened / refused   {} / {} ({} incomplete) {:?}",
            t.decrypted, t.failed, t.incomplete, t.why
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        if path == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    for c in clients {
        c.leave().await;
    }
    Ok(())
}

fn args_summary(a: &Args) -> serde_json::Value {
    serde_json::json!({
        "scenario": format!("{:?}", a.scenario),
        "subscribers": a.subscribers,
        "participants": a.participants,
        "speakers": a.speakers,
        "listeners": a.listeners,
        "meetings": a.meetings,
        "videoKbps": a.video_kbps,
        "simulcast": a.simulcast,
        "fps": a.fps,
        "webinar": a.scenario == Scenario::Webinar,
        "joinRate": a.join_rate,
        "duration": a.duration,
        "followNode": a.follow_node,
    })
}

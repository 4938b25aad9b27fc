//! Prometheus metrics (`GET /metrics`, OpenMetrics text via the
//! prometheus-client crate). Two kinds: counters the edges bump as things
//! happen (joins by outcome, signalling messages by type), and values read at
//! each scrape from what already counts them (meetings, the media workers,
//! connections, the audit writer, the process), so the media path pays
//! nothing for being watched. Names and meanings: docs/monitoring.md.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use convene_meeting::protocol::{ErrorCode, ServerMessage};

type Labels = Vec<(&'static str, String)>;

/// What the edges count as it happens. Cheap to share (`Arc`s inside).
#[derive(Debug, Default)]
pub struct Metrics {
    joins: Family<Labels, Counter>,
    messages: Family<Labels, Counter>,
    refused_messages: Family<Labels, Counter>,
    /// People whose signalling socket is joined to a meeting now.
    pub participants: Gauge,
    started: f64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            ..Default::default()
        }
    }

    /// A join that got in (`"joined"`), or the error code that refused it.
    pub fn join(&self, outcome: &str) {
        self.joins
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// A join refused with this message (an `error`).
    pub fn join_refused(&self, refusal: &ServerMessage) {
        match refusal {
            ServerMessage::Error { code, .. } => self.join_refused_with(*code),
            _ => self.join("other"),
        }
    }

    /// A join refused with this error code.
    pub fn join_refused_with(&self, code: ErrorCode) {
        self.join(&code_name(code));
    }

    /// Counts one more participant until the returned guard is dropped.
    pub fn participant(&self) -> ParticipantGuard {
        self.participants.inc();
        ParticipantGuard(self.participants.clone())
    }

    /// A client message accepted by the parser, by its `type`.
    pub fn message(&self, kind: &'static str) {
        self.messages
            .get_or_create(&vec![("type", kind.to_string())])
            .inc();
    }

    /// A client message refused before any meeting saw it, by error code.
    pub fn refused_message(&self, code: ErrorCode) {
        self.refused_messages
            .get_or_create(&vec![("code", code_name(code))])
            .inc();
    }

    /// The whole exposition: these counters and `now`'s values.
    pub fn render(&self, now: Snapshot) -> String {
        let mut root = Registry::default();
        let convene = root.sub_registry_with_prefix("convene");
        convene.register(
            "joins",
            "Joins to meetings, by outcome: joined, or the error code that refused them",
            self.joins.clone(),
        );
        convene.register(
            "signalling_messages",
            "Signalling messages received from clients, by type",
            self.messages.clone(),
        );
        convene.register(
            "signalling_refused",
            "Signalling messages refused before reaching a meeting (bad JSON, too large, too many), by error code",
            self.refused_messages.clone(),
        );
        convene.register(
            "participants",
            "People whose signalling connection is joined to a meeting now",
            self.participants.clone(),
        );
        convene.register_collector(Box::new(now));
        root.register_collector(Box::new(Process::read(self.started)));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &root);
        out
    }
}

/// See [`Metrics::participant`].
pub struct ParticipantGuard(Gauge);

impl Drop for ParticipantGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "other".into())
}

/// Values read at one scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub meetings: u64,
    pub media: convene_sfu::SfuStats,
    /// Per media worker: busy nanoseconds since it started.
    pub worker_busy_ns: Vec<u64>,
    pub web_connections_open: u64,
    pub web_connections_accepted: u64,
    pub web_refused_total_cap: u64,
    pub web_refused_address_cap: u64,
    pub audit_writes: u64,
    pub audit_failed: u64,
    pub audit_unstored: u64,
    pub audit_lost: u64,
    pub audit_queue_full: u64,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One metric with a label: its (label value, value) pairs.
fn family<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &'static str,
    values: Vec<(&str, M)>,
) -> std::fmt::Result {
    let mut d = e.encode_descriptor(name, help, None, kind)?;
    for (value, m) in values {
        let labels = [(label, value)];
        m.encode(d.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.media;
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            &mut e,
            "meetings",
            "Meetings running now (someone connected)",
            n(self.meetings as usize),
        )?;
        family(
            &mut e,
            ("connections", "Connections open now, by transport: web (HTTP and WebSocket), ice_tcp (media over TCP), media (WebRTC peer connections, UDP or TCP)", MetricType::Gauge),
            "transport",
            vec![
                ("web", ConstGauge::new(n(self.web_connections_open as usize))),
                ("ice_tcp", ConstGauge::new(n(m.tcp_connections))),
                ("media", ConstGauge::new(n(m.connections))),
            ],
        )?;
        counter(
            &mut e,
            "web_connections_accepted",
            "Web connections accepted",
            self.web_connections_accepted,
        )?;
        family(
            &mut e,
            (
                "web_connections_refused",
                "Web connections closed on arrival, by the cap they hit",
                MetricType::Counter,
            ),
            "cap",
            vec![
                ("total", ConstCounter::new(self.web_refused_total_cap)),
                (
                    "per_address",
                    ConstCounter::new(self.web_refused_address_cap),
                ),
            ],
        )?;
        family(
            &mut e,
            (
                "media_packets",
                "RTP packets received from publishers (in) and sent on to subscribers (forwarded)",
                MetricType::Counter,
            ),
            "direction",
            vec![
                ("in", ConstCounter::new(m.rtp_in)),
                ("forwarded", ConstCounter::new(m.rtp_forwarded)),
            ],
        )?;
        family(
            &mut e,
            ("media_packets_dropped", "Media not forwarded, by cause: late (waited too long), paused (host-muted), unpublished, tcp_queue_full (frames to a slow ICE-TCP connection), unroutable (datagrams from no known connection)", MetricType::Counter),
            "cause",
            vec![
                ("late", ConstCounter::new(m.rtp_dropped_late)),
                ("paused", ConstCounter::new(m.rtp_dropped_paused)),
                ("unpublished", ConstCounter::new(m.rtp_dropped_unpublished)),
                ("tcp_queue_full", ConstCounter::new(m.tcp_frames_dropped)),
                ("unroutable", ConstCounter::new(m.unroutable)),
            ],
        )?;
        counter(
            &mut e,
            "media_datagrams_received",
            "UDP datagrams received on the media ports",
            m.datagrams_in,
        )?;
        family(
            &mut e,
            (
                "media_bytes",
                "Bytes of media traffic: UDP payload received; sent over UDP or ICE-TCP",
                MetricType::Counter,
            ),
            "direction",
            vec![
                ("in", ConstCounter::new(m.bytes_in)),
                ("out", ConstCounter::new(m.bytes_out)),
            ],
        )?;
        counter(
            &mut e,
            "media_keyframe_requests",
            "Keyframe requests sent to publishers",
            m.keyframe_requests,
        )?;
        counter(
            &mut e,
            "media_layer_switches",
            "Subscribers moved from one simulcast layer to another",
            m.layer_switches,
        )?;
        gauge(&mut e, "media_tracks", "Published tracks now", n(m.tracks))?;
        let workers: Vec<String> = (0..self.worker_busy_ns.len())
            .map(|i| i.to_string())
            .collect();
        family(
            &mut e,
            ("media_worker_busy_seconds", "Time each media worker spent working rather than waiting; its rate is the worker's busy ratio (0 to 1)", MetricType::Counter),
            "worker",
            workers
                .iter()
                .zip(&self.worker_busy_ns)
                .map(|(w, ns)| (w.as_str(), ConstCounter::new(*ns as f64 / 1e9)))
                .collect(),
        )?;
        counter(
            &mut e,
            "audit_writes",
            "Audit rows and meeting changes committed to storage",
            self.audit_writes,
        )?;
        counter(
            &mut e,
            "audit_write_failures",
            "Audit rows and meeting changes whose transaction failed when first tried (kept and tried again)",
            self.audit_failed,
        )?;
        gauge(
            &mut e,
            "audit_unstored",
            "Audit rows and meeting changes waiting for the database now",
            self.audit_unstored as i64,
        )?;
        counter(
            &mut e,
            "audit_lost",
            "Audit rows and meeting changes given up (too many waited for the database)",
            self.audit_lost,
        )?;
        counter(
            &mut e,
            "audit_queue_full",
            "Times a write waited for room in the audit writer's queue",
            self.audit_queue_full,
        )?;
        Ok(())
    }
}

/// The process's own figures (names as Prometheus's client libraries give
/// them), from /proc where there is one.
#[derive(Debug, Default)]
struct Process {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    started: f64,
}

impl Process {
    fn read(started: f64) -> Process {
        let mut p = Process {
            started,
            ..Default::default()
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let Some(rest) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.to_string()))
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime (fields 14 and 15 of stat; 11 and 12 here), in
            // clock ticks of 1/100 s on Linux (USER_HZ).
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
                p.cpu_seconds = Some((u + s) as f64 / 100.0);
            }
            // rss (field 24; 21 here), in pages.
            p.resident_bytes = ticks(21).map(|pages| pages * page_size());
        }
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        p
    }
}

fn page_size() -> u64 {
    // Every Linux platform Convene runs on uses 4 KiB pages by default;
    // /proc/self/smaps would say otherwise, at a cost per scrape.
    4096
}

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        if let Some(s) = self.cpu_seconds {
            let c = ConstCounter::new(s);
            c.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        if let Some(b) = self.resident_bytes {
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                i64::try_from(b).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(n) = self.open_fds {
            gauge(
                &mut e,
                "process_open_fds",
                "Open file descriptors",
                i64::try_from(n).unwrap_or(i64::MAX),
            )?;
        }
        let g = ConstGauge::new(self.started);
        g.encode(e.encode_descriptor(
            "process_start_time_seconds",
            "When the server started, in seconds since the Unix epoch",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

/// What the server's parts count now.
pub fn snapshot(state: &crate::AppState) -> Snapshot {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let c = &state.connections;
    let w = state.writer.stats();
    Snapshot {
        meetings: state.registry.lock().meetings.len() as u64,
        media: state.sfu.stats(),
        worker_busy_ns: state.sfu.handles().map(|h| h.stats().busy_ns).collect(),
        web_connections_open: n(&c.open),
        web_connections_accepted: n(&c.accepted),
        web_refused_total_cap: n(&c.refused_total_cap),
        web_refused_address_cap: n(&c.refused_address_cap),
        audit_writes: n(&w.writes),
        audit_failed: n(&w.failed),
        audit_unstored: n(&w.unstored),
        audit_lost: n(&w.lost),
        audit_queue_full: n(&w.queue_full),
    }
}

/// The exposition as an HTTP answer.
pub fn answer(state: &crate::AppState) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(snapshot(state)),
    )
        .into_response()
}

/// `/metrics` alone, open to whoever reaches it: for `--metrics-listen`.
pub fn router(state: Arc<crate::AppState>) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<Arc<crate::AppState>>| async move {
                    answer(&s)
                },
            ),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_carries_counters_and_scraped_values() {
        let m = Metrics::new();
        m.join("joined");
        m.join("joined");
        m.join_refused(&ServerMessage::error(ErrorCode::WrongPasscode, "no"));
        m.message("chat");
        m.refused_message(ErrorCode::TooLarge);
        m.participants.set(3);
        let text = m.render(Snapshot {
            meetings: 2,
            worker_busy_ns: vec![1_500_000_000, 0],
            media: convene_sfu::SfuStats {
                rtp_in: 10,
                rtp_forwarded: 30,
                rtp_dropped_late: 4,
                ..Default::default()
            },
            audit_failed: 1,
            ..Default::default()
        });
        for line in [
            "convene_joins_total{outcome=\"joined\"} 2",
            "convene_joins_total{outcome=\"wrong-passcode\"} 1",
            "convene_signalling_messages_total{type=\"chat\"} 1",
            "convene_signalling_refused_total{code=\"too-large\"} 1",
            "convene_participants 3",
            "convene_meetings 2",
            "convene_media_packets_total{direction=\"forwarded\"} 30",
            "convene_media_packets_dropped_total{cause=\"late\"} 4",
            "convene_media_worker_busy_seconds_total{worker=\"0\"} 1.5",
            "convene_audit_write_failures_total 1",
            "# TYPE process_start_time_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

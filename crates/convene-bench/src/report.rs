//! The results of a run, as JSON for machines and a table for people.

use convene_client::Client;
use serde::Serialize;

use crate::procfs::ProcSample;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub config: serde_json::Value,
    pub participants: usize,
    pub joins_per_sec: f64,
    pub window_secs: f64,
    /// RTP packets the subscribers received from the server, per second.
    pub forwarded_packets_per_sec: f64,
    /// RTP payload bits per second received (headers and SRTP tags not counted).
    pub forwarded_payload_mbit_per_sec: f64,
    /// Packets never received (sequence gaps not filled by retransmission), over the whole run.
    pub loss_percent: f64,
    /// Send-to-receive delay through the server on loopback (includes both peers' str0m).
    pub delay_p50_ms: Option<f64>,
    pub delay_p99_ms: Option<f64>,
    pub delay_samples: usize,
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU time as a share of one core during the window.
    pub server_cpu_percent_of_core: Option<f64>,
    pub server_cpu_secs_per_million_packets: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub server_rss_kib_per_participant: Option<f64>,
    /// The generator's own CPU as a share of one core: near 100 % means the
    /// figures above are the generator's limit, not the server's.
    pub generator_cpu_percent_of_core: Option<f64>,
    /// Datagrams dropped by full UDP receive buffers during the window, whole
    /// machine (server and generator sockets alike).
    pub udp_receive_buffer_drops: Option<u64>,
    /// How many participants received anything of each source (camera,
    /// microphone…) over the run: fewer than expected means streams that
    /// never started, which the loss figure (gaps within streams) misses.
    pub receivers_by_source: std::collections::BTreeMap<String, usize>,
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(f64::from(sorted[i]) / 1000.0)
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        config: &serde_json::Value,
        participants: usize,
        ramp_secs: f64,
        window: f64,
        packets: u64,
        bytes: u64,
        clients: &[Client],
        before_join: Option<ProcSample>,
        (start, end): (Option<ProcSample>, Option<ProcSample>),
        (gen_start, gen_end): (Option<ProcSample>, Option<ProcSample>),
        udp_receive_buffer_drops: Option<u64>,
    ) -> Report {
        let (mut received, mut missing) = (0u64, 0u64);
        let mut delays: Vec<u32> = Vec::new();
        let mut receivers_by_source = std::collections::BTreeMap::<String, usize>::new();
        for c in clients {
            let mut sources = std::collections::BTreeSet::new();
            for ((_, source), s) in &c.received {
                received += s.packets;
                missing += s.missing.len() as u64;
                if s.packets > 0 {
                    sources.insert(source.clone());
                }
            }
            for source in sources {
                *receivers_by_source.entry(source).or_default() += 1;
            }
            delays.extend_from_slice(&c.delays_us);
        }
        delays.sort_unstable();
        let cpu = match (start, end) {
            (Some(a), Some(b)) => Some(b.cpu.saturating_sub(a.cpu).as_secs_f64()),
            _ => None,
        };
        let per_sec = packets as f64 / window.max(1e-9);
        Report {
            config: config.clone(),
            participants,
            joins_per_sec: participants as f64 / ramp_secs.max(1e-9),
            window_secs: window,
            forwarded_packets_per_sec: per_sec,
            forwarded_payload_mbit_per_sec: bytes as f64 * 8.0 / window.max(1e-9) / 1e6,
            loss_percent: if received + missing == 0 {
                0.0
            } else {
                100.0 * missing as f64 / (received + missing) as f64
            },
            delay_p50_ms: percentile(&delays, 0.50),
            delay_p99_ms: percentile(&delays, 0.99),
            delay_samples: delays.len(),
            server_cpu_seconds: cpu,
            server_cpu_percent_of_core: cpu.map(|c| 100.0 * c / window.max(1e-9)),
            server_cpu_secs_per_million_packets: cpu
                .filter(|_| packets > 0)
                .map(|c| c / (packets as f64 / 1e6)),
            server_rss_mib: end.map(|e| e.rss_bytes as f64 / (1024.0 * 1024.0)),
            generator_cpu_percent_of_core: match (gen_start, gen_end) {
                (Some(a), Some(b)) => {
                    Some(100.0 * b.cpu.saturating_sub(a.cpu).as_secs_f64() / window.max(1e-9))
                }
                _ => None,
            },
            udp_receive_buffer_drops,
            receivers_by_source,
            server_rss_kib_per_participant: match (before_join, end) {
                (Some(a), Some(b)) if participants > 0 => Some(
                    b.rss_bytes.saturating_sub(a.rss_bytes) as f64 / 1024.0 / participants as f64,
                ),
                _ => None,
            },
        }
    }

    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or("n/a (no --server-pid)".to_string(), |v| {
                format!("{v:.2} {unit}")
            })
        };
        let d = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2} ms"));
        [
            ("participants", format!("{}", self.participants)),
            (
                "joins/s during ramp-up",
                format!("{:.1}", self.joins_per_sec),
            ),
            ("measured for", format!("{:.1} s", self.window_secs)),
            (
                "forwarded packets/s",
                format!("{:.0}", self.forwarded_packets_per_sec),
            ),
            (
                "forwarded payload",
                format!("{:.2} Mbit/s", self.forwarded_payload_mbit_per_sec),
            ),
            ("loss", format!("{:.3} %", self.loss_percent)),
            (
                "added delay p50 / p99",
                format!("{} / {}", d(self.delay_p50_ms), d(self.delay_p99_ms)),
            ),
            (
                "server CPU",
                opt(self.server_cpu_percent_of_core, "% of a core"),
            ),
            (
                "server CPU per million packets",
                opt(self.server_cpu_secs_per_million_packets, "s"),
            ),
            ("server memory", opt(self.server_rss_mib, "MiB")),
            (
                "server memory per participant",
                opt(self.server_rss_kib_per_participant, "KiB"),
            ),
            (
                "generator CPU",
                opt(self.generator_cpu_percent_of_core, "% of a core"),
            ),
            (
                "UDP receive-buffer drops",
                self.udp_receive_buffer_drops
                    .map_or("n/a".to_string(), |d| d.to_string()),
            ),
            (
                "participants receiving each source",
                self.receivers_by_source
                    .iter()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ]
        .iter()
        .map(|(k, v)| format!("{k:<32} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
    }
}

/// How long joins took (socket opened to welcome) as the meeting grew: the
/// median and 95th percentile of the 100 joins that brought it to 100, 500,
/// 1 000 and 2 000 people (those it reached), so per-join work that grows
/// with the audience shows as a rising time.
pub fn join_times(ms: &[f64]) -> String {
    let mut lines = vec!["join time (welcome), by meeting size   p50 / p95 ms".to_string()];
    let all: Vec<f64> = ms.to_vec();
    if let Some((n, p50, p95)) = percentiles(all) {
        lines.push(format!(
            "  all {n:>4} joins                       {p50:.1} / {p95:.1}"
        ));
    }
    for size in [100, 500, 1000, 2000] {
        if ms.len() < size {
            break;
        }
        let Some((_, p50, p95)) = percentiles(ms[size - 100..size].to_vec()) else {
            continue;
        };
        lines.push(format!(
            "  joins {:>4}–{:<4}                     {p50:.1} / {p95:.1}",
            size - 99,
            size
        ));
    }
    lines.join("\n")
}

/// With `--follow-node`: join times (question, socket, welcome) for joins
/// the asked node hosted and joins it sent to another node.
pub fn join_times_by_node(ms: &[f64], sent_on: &[bool]) -> String {
    let mut lines = vec!["join time by where it was asked        n / p50 / p95 ms".to_string()];
    for (label, on) in [
        ("hosted by --server", false),
        ("sent to another node", true),
    ] {
        let w: Vec<f64> = ms
            .iter()
            .zip(sent_on)
            .filter(|(_, s)| **s == on)
            .map(|(v, _)| *v)
            .collect();
        let Some((n, p50, p95)) = percentiles(w) else {
            continue;
        };
        lines.push(format!(
            "  {label:<22}               {n} / {p50:.1} / {p95:.1}"
        ));
    }
    lines.join("\n")
}

/// How many of `v` are numbers, and their median and 95th percentile.
fn percentiles(mut v: Vec<f64>) -> Option<(usize, f64, f64)> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some((v.len(), at(0.5), at(0.95)))
}

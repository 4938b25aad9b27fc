//! A headless Convene participant. It speaks only the documented signalling
//! protocol (docs/protocol.md) with plain JSON, so it checks the document as much
//! as the server; it publishes synthetic VP8 and Opus as real RTP through str0m and
//! counts what it receives per (participant, source).

mod e2ee;
mod frames;
mod synth;
mod tcp_link;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use convene_sfu::stamped;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::SdpOffer;
use str0m::media::{Mid, Rid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use e2ee::FrameCount;
pub use synth::{micros_since_epoch, stamped_at, Synth, SynthKind};

/// Shared counters a load generator reads while clients run.
#[derive(Debug, Default)]
pub struct Meter {
    pub packets: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    /// Delay samples are kept only while this is set (after ramp-up).
    pub measuring: std::sync::atomic::AtomicBool,
}

/// Most delay samples one client keeps.
const MAX_DELAY_SAMPLES: usize = 200_000;
/// Most missing sequence numbers remembered per stream.
const MAX_MISSING: usize = 10_000;

type WsSink = futures_util::stream::SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// How to join, beyond a name.
#[derive(Debug, Default, Clone)]
pub struct JoinOptions {
    pub resume: Option<String>,
    pub passcode: Option<String>,
    pub host_key: Option<String>,
    /// Connect from this loopback address (to look like another client).
    pub local_ip: Option<std::net::IpAddr>,
    /// A `Cookie` header value, as a browser would send (its device cookie).
    pub cookie: Option<String>,
    /// Send media over TCP to the SFU's ICE-TCP candidate only, as a browser
    /// on a network that blocks UDP does.
    pub media_over_tcp: bool,
    /// Take part in an end-to-end encrypted meeting (docs/protocol.md §11):
    /// `join.e2ee`, an MLS member on the mls-* messages, SFrame on every
    /// frame sent and received, chat as MLS application messages. Adds are
    /// checked against the roster (`participants`), so `keep_roster` must
    /// stay on.
    pub e2ee: bool,
}

impl JoinOptions {
    /// Join as a host, with the meeting's host key.
    pub fn host(key: impl Into<String>) -> Self {
        JoinOptions {
            host_key: Some(key.into()),
            ..JoinOptions::default()
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct StreamCount {
    pub packets: u64,
    pub bytes: u64,
    pub keyframes: u64,
    /// Sequence numbers skipped (loss, or a broken rewrite).
    pub gaps: u64,
    pub last_seq: Option<u64>,
    /// The m-line the last packet came on: a voice can move between voice slots,
    /// each with its own sequence numbers.
    pub mid: Option<Mid>,
    /// Sequence numbers skipped and not (yet) filled by a retransmission.
    pub missing: std::collections::BTreeSet<u64>,
}

#[derive(Debug, Clone)]
struct SlotInfo {
    direction: String,
    source: Option<String>,
    /// (participant id, source) of a received track.
    key: Option<(String, String)>,
}

pub struct Client {
    ws: WsSink,
    /// Text messages from the server, read by a task of their own (so the media
    /// loop never polls the WebSocket); `None` when the socket closed.
    incoming: tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
    reader: tokio::task::JoinHandle<()>,
    socket: UdpSocket,
    local: SocketAddr,
    /// Media over TCP: connected when the first offer names the SFU's candidate.
    media_over_tcp: bool,
    tcp: Option<tcp_link::TcpLink>,
    rtc: Rtc,
    pub participant_id: String,
    pub resume_token: String,
    pub meeting_title: String,
    /// participant id → last participant object the server sent.
    pub participants: BTreeMap<String, Value>,
    pub chat: Vec<Value>,
    pub errors: Vec<Value>,
    pub speaking: BTreeMap<String, bool>,
    pub left: Vec<(String, String)>,
    /// Every server message, in order, for assertions.
    pub log: Vec<Value>,
    pub offers: u64,
    /// Waiting in the lobby (joined, not yet admitted).
    pub in_lobby: bool,
    slots: HashMap<Mid, SlotInfo>,
    /// Voice slot → participant it carries now (from `voice-slot`; kept across offers).
    voice_holders: HashMap<Mid, String>,
    ssrc_mid: HashMap<str0m::rtp::Ssrc, Mid>,
    /// (participant id, source) → what arrived.
    pub received: BTreeMap<(String, String), StreamCount>,
    /// What this client publishes: (source, simulcast rid, generator).
    synths: Vec<(String, Option<Rid>, Synth)>,
    buf: Vec<u8>,
    pub media_connected: bool,
    /// Test aid: drop every n-th incoming RTP datagram, as a lossy network would.
    pub drop_rtp_every: Option<u64>,
    rtp_datagrams: u64,
    /// Keyframe requests (PLI/FIR) received for what we publish.
    pub keyframe_requests: u64,
    pub meter: Option<std::sync::Arc<Meter>>,
    /// Keep `participants` up to date (true by default). A load generator with a
    /// thousand listeners turns it off: a thousand copies of a thousand-person
    /// roster cost the generator gigabytes and most of its CPU.
    pub keep_roster: bool,
    /// How late str0m's timers may be handled when nothing else wakes the client
    /// (zero by default). Timers that are due are always handled at the next
    /// wake-up, which packets and media cause anyway; a load generator sets this
    /// to about 20 ms so that a listener's NACK check (every 33 ms) rides on the
    /// wake-up of its next packet instead of costing one of its own.
    pub timer_slack: Duration,
    /// When the datagram being handled arrived (the kernel's time): str0m is
    /// given the time of handling, which never goes backwards, and delays are
    /// measured from this.
    arrived: Instant,
    /// Send-to-receive delays in microseconds, sampled while the meter measures.
    pub delays_us: Vec<u32>,
    /// Joined with `JoinOptions::e2ee`: the meeting's encryption, once the
    /// welcome says the meeting is encrypted.
    pub e2ee: Option<e2ee::E2ee>,
    want_e2ee: bool,
}

impl Client {
    /// Open the signalling socket and join as `name` (or resume with a token).
    pub async fn join(
        base_url: &str,
        meeting: &str,
        name: &str,
        resume: Option<&str>,
    ) -> Result<Client, String> {
        let opts = JoinOptions {
            resume: resume.map(str::to_string),
            ..JoinOptions::default()
        };
        Self::join_with(base_url, meeting, name, opts).await
    }

    /// Join with a passcode, a host key, or from another loopback address.
    pub async fn join_with(
        base_url: &str,
        meeting: &str,
        name: &str,
        opts: JoinOptions,
    ) -> Result<Client, String> {
        let ws_url = format!(
            "{}/api/meetings/{meeting}/ws",
            base_url.replacen("http", "ws", 1)
        );
        // Small read buffer: tungstenite zeroes its whole buffer (128 KiB by default)
        // on every read attempt, which was a third of a load generator's CPU.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(cookie) = &opts.cookie {
            request.headers_mut().insert(
                "cookie",
                cookie.parse().map_err(|_| "bad cookie".to_string())?,
            );
        }
        let (ws, _) = match opts.local_ip {
            None => tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .map_err(|e| e.to_string())?,
            Some(ip) => {
                let host = base_url.trim_start_matches("http://").trim_end_matches('/');
                let server: SocketAddr = tokio::net::lookup_host(host)
                    .await
                    .map_err(|e| e.to_string())?
                    .next()
                    .ok_or("no address")?;
                let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                sock.bind(SocketAddr::new(ip, 0))
                    .map_err(|e| e.to_string())?;
                let stream = sock.connect(server).await.map_err(|e| e.to_string())?;
                tokio_tungstenite::client_async_with_config(
                    request,
                    MaybeTlsStream::Plain(stream),
                    Some(config),
                )
                .await
                .map_err(|e| e.to_string())?
            }
        };
        let (ws, mut read) = ws.split();
        let (tx, incoming) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(msg) = read.next().await {
                match msg {
                    Ok(Message::Text(t)) => {
                        if tx.send(Some(t.to_string())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(None);
        });
        let socket = bind_socket().map_err(|e| e.to_string())?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        let candidate = if opts.media_over_tcp {
            // An active TCP candidate: its address only names it (the real
            // port is the connection's), as a browser's says port 9.
            Candidate::builder()
                .tcp()
                .host(local)
                .tcptype(TcpType::Active)
                .build()
        } else {
            Candidate::host(local, "udp")
        };
        rtc.add_local_candidate(candidate.map_err(|e| e.to_string())?);
        let mut c = Client {
            ws,
            incoming,
            reader,
            socket,
            local,
            media_over_tcp: opts.media_over_tcp,
            tcp: None,
            rtc,
            participant_id: String::new(),
            resume_token: String::new(),
            meeting_title: String::new(),
            participants: BTreeMap::new(),
            chat: Vec::new(),
            errors: Vec::new(),
            speaking: BTreeMap::new(),
            left: Vec::new(),
            log: Vec::new(),
            offers: 0,
            in_lobby: false,
            slots: HashMap::new(),
            voice_holders: HashMap::new(),
            ssrc_mid: HashMap::new(),
            received: BTreeMap::new(),
            synths: Vec::new(),
            // A whole segmented run (GRO) fits.
            buf: vec![0; 65536],
            media_connected: false,
            drop_rtp_every: None,
            rtp_datagrams: 0,
            keyframe_requests: 0,
            meter: None,
            keep_roster: true,
            timer_slack: Duration::ZERO,
            arrived: Instant::now(),
            delays_us: Vec::new(),
            e2ee: None,
            want_e2ee: opts.e2ee,
        };
        let mut join = json!({"type": "join", "protocol": 1, "name": name});
        if let Some(token) = opts.resume {
            join["resume"] = json!(token);
        }
        if let Some(p) = opts.passcode {
            join["passcode"] = json!(p);
        }
        if let Some(k) = opts.host_key {
            join["hostKey"] = json!(k);
        }
        if opts.e2ee {
            join["e2ee"] = json!(true);
        }
        c.send(join).await?;
        let ok = c
            .run_until(Duration::from_secs(5), |c| {
                !c.participant_id.is_empty() || c.in_lobby || !c.errors.is_empty()
            })
            .await;
        if !ok || (c.participant_id.is_empty() && !c.in_lobby) {
            return Err(format!("join failed: {:?}", c.errors));
        }
        Ok(c)
    }

    pub async fn send(&mut self, msg: Value) -> Result<(), String> {
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn send_raw(&mut self, msg: Message) -> Result<(), String> {
        self.ws.send(msg).await.map_err(|e| e.to_string())
    }

    /// Publish a synthetic source ("microphone", "camera", "screen", "screen-audio").
    pub async fn publish(&mut self, source: &str, kbps: u32) -> Result<(), String> {
        self.publish_with(source, kbps, 25).await
    }

    /// Publish with a chosen video bitrate and frame rate (ignored for audio).
    pub async fn publish_with(&mut self, source: &str, kbps: u32, fps: u32) -> Result<(), String> {
        let kind = if source == "microphone" || source == "screen-audio" {
            SynthKind::Opus
        } else {
            SynthKind::Vp8 { kbps, fps }
        };
        self.synths
            .push((source.to_string(), None, Synth::new(kind, Instant::now())));
        self.send(json!({"type": "publish", "source": source}))
            .await
    }

    /// Publish a camera in the three simulcast layers the server asks for
    /// (rids l, m, h), as browsers do: the top layer at `kbps`, the others at
    /// a third and a fifteenth of it (the browser client's 1.5 Mbit/s, 500
    /// and 100 kbit/s). Without the server's simulcast offer nothing is sent.
    pub async fn publish_simulcast(
        &mut self,
        source: &str,
        kbps: u32,
        fps: u32,
    ) -> Result<(), String> {
        let now = Instant::now();
        for (rid, share) in [("l", 15), ("m", 3), ("h", 1)] {
            let kind = SynthKind::Vp8 {
                kbps: (kbps / share).max(1),
                fps,
            };
            self.synths.push((
                source.to_string(),
                Some(Rid::from(rid)),
                Synth::new(kind, now),
            ));
        }
        self.send(json!({"type": "publish", "source": source}))
            .await
    }

    /// Keyframes of published video only every `every` (or when asked).
    pub fn set_keyframe_interval(&mut self, source: &str, every: Duration) {
        for (s, _, synth) in &mut self.synths {
            if s == source {
                synth.set_keyframe_interval(every);
            }
        }
    }

    /// Chat: in an encrypted meeting as an MLS application message (`mls-app`).
    pub async fn chat(&mut self, text: &str) -> Result<(), String> {
        if let Some(e) = &mut self.e2ee {
            let msg = e.chat(text)?;
            return self.send(msg).await;
        }
        self.send(json!({"type": "chat", "text": text})).await
    }

    /// Leave as a browser does: say so, close, and wait (2 s at most) for the
    /// server to close too. Hanging up at once can make the kernel reset the
    /// connection, which throws away whatever the server had not read yet,
    /// the leave included.
    pub async fn leave(mut self) {
        let _ = self.send(json!({"type": "leave"})).await;
        let _ = self.ws.send(Message::Close(None)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Some(_)) = self.incoming.recv().await {}
        })
        .await;
        let _ = self.ws.close().await;
    }

    /// The network changes under this client (Wi-Fi to mobile): media goes
    /// out from a new UDP port, the old one is gone, and the client asks the
    /// server for an ICE restart, as a browser does when its connection fails.
    pub async fn change_network(&mut self) -> Result<(), String> {
        let socket = bind_socket().map_err(|e| e.to_string())?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let old = Candidate::host(self.local, "udp").map_err(|e| e.to_string())?;
        self.rtc.direct_api().invalidate_candidate(&old);
        self.rtc
            .add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
        self.socket = socket;
        self.local = local;
        self.send(json!({"type": "restart-ice"})).await
    }

    /// Vanish without a word: sockets dropped, as when a laptop lid closes.
    pub fn vanish(self) {}

    /// Run the client until `done` holds or `timeout` passes; true if `done` held.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Client) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        // One timer for the whole run, moved as needed: a new one per wake-up
        // costs more than the packet it wakes for.
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        loop {
            // Drain first, so `done` sees the events of the last input.
            let mut rtc_timeout = self.drain();
            let now = Instant::now();
            if rtc_timeout <= now {
                // Due while we are awake anyway: handle it now, not after a sleep.
                let _ = self.rtc.handle_input(Input::Timeout(now));
                rtc_timeout = self.drain();
            }
            if done(self) {
                return true;
            }
            if now >= deadline {
                return false;
            }
            if let Some(e) = &mut self.e2ee {
                let events = e.tick(now);
                self.e2ee_events(events).await;
            }
            let next_media = self.synths.iter().map(|(_, _, s)| s.next_at()).min();
            let mut wake = deadline.min(rtc_timeout + self.timer_slack);
            if let Some(t) = self.e2ee.as_ref().and_then(|e| e.next_timeout()) {
                wake = wake.min(t);
            }
            if let Some(t) = next_media {
                wake = wake.min(t);
            }
            let wake = wake.max(Instant::now() + Duration::from_micros(100));
            if sleep.deadline() != wake.into() {
                sleep.as_mut().reset(wake.into());
            }
            tokio::select! {
                msg = self.incoming.recv() => match msg {
                    Some(Some(t)) => {
                        let skip = !self.keep_roster && is_roster_change(&t);
                        if !skip {
                            if let Ok(v) = serde_json::from_str::<Value>(&t) {
                                self.on_message(v).await;
                            }
                        }
                    }
                    Some(None) | None => {
                        self.errors.push(json!({"type": "closed"}));
                        return done(self);
                    }
                },
                r = self.socket.readable() => {
                    if r.is_ok() {
                        self.read_socket();
                    }
                }
                r = tcp_readable(&self.tcp) => {
                    if r.is_ok() {
                        self.read_tcp();
                    }
                }
                _ = &mut sleep => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
            // Its output goes at the top of the loop: one drain per wake-up, as
            // str0m's poll_output walks every subsystem even when idle.
            self.send_due_media();
        }
    }

    /// Whatever the socket holds (up to a bound), each datagram with the time the
    /// kernel received it.
    fn read_socket(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.socket.as_raw_fd();
            let clocks = stamped::Clocks::now();
            for _ in 0..64 {
                let buf = &mut self.buf;
                let got = self
                    .socket
                    .try_io(tokio::io::Interest::READABLE, || stamped::recv(fd, buf));
                let Ok(r) = got else { break };
                // A segmented run (GRO) holds several datagrams.
                for range in r.datagrams() {
                    self.feed(range, r.source, clocks.instant_of(r.arrival));
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        for _ in 0..64 {
            let Ok((n, source)) = self.socket.try_recv_from(&mut self.buf) else {
                break;
            };
            self.feed(0..n, source, Instant::now());
        }
    }

    /// Frames from the TCP connection to the SFU; it is dropped when it fails.
    fn read_tcp(&mut self) {
        let Some(mut link) = self.tcp.take() else {
            return;
        };
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let result = link.read(|f| frames.push(f.to_vec()));
        let source = link.remote;
        if result.is_ok() {
            self.tcp = Some(link);
        } else {
            self.errors
                .push(json!({"type": "client", "message": "media TCP connection closed"}));
        }
        for f in frames {
            let n = f.len().min(self.buf.len());
            self.buf[..n].copy_from_slice(&f[..n]);
            self.feed_as(Protocol::Tcp, 0..n, source, Instant::now());
        }
    }

    /// One received datagram into str0m, and its output out.
    fn feed(&mut self, range: std::ops::Range<usize>, source: SocketAddr, arrived: Instant) {
        self.feed_as(Protocol::Udp, range, source, arrived)
    }

    fn feed_as(
        &mut self,
        proto: Protocol,
        range: std::ops::Range<usize>,
        source: SocketAddr,
        arrived: Instant,
    ) {
        self.arrived = arrived;
        let data = &self.buf[range.clone()];
        // RFC 7983: 128..=191 is RTP or RTCP; RTCP packet types are 192..=223 in byte 1.
        let is_rtp =
            data.len() > 1 && (128..=191).contains(&data[0]) && !(192..=223).contains(&data[1]);
        if is_rtp {
            self.rtp_datagrams += 1;
            if self
                .drop_rtp_every
                .is_some_and(|k| self.rtp_datagrams.is_multiple_of(k))
            {
                return; // lost on the way
            }
        }
        if let Ok(contents) = self.buf[range].try_into() {
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto,
                    source,
                    destination: self.local,
                    contents,
                },
            );
            let _ = self.rtc.handle_input(input);
        }
        self.drain();
    }

    /// Drain str0m's output; returns its next timeout.
    fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) if t.proto == Protocol::Udp => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Transmit(t)) => {
                    if let Some(link) = &mut self.tcp {
                        link.send(&t.contents);
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(_) => return Instant::now() + Duration::from_millis(10),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.media_connected = true,
            Event::KeyframeRequest(req) => {
                self.keyframe_requests += 1;
                let source = self.slots.get(&req.mid).and_then(|s| s.source.clone());
                for (s, rid, synth) in &mut self.synths {
                    if Some(&*s) == source.as_ref() && (rid.is_none() || *rid == req.rid) {
                        synth.request_keyframe();
                    }
                }
            }
            Event::RtpPacket(pkt) => {
                let ssrc = pkt.header.ssrc;
                let mid = match self.ssrc_mid.get(&ssrc) {
                    Some(m) => *m,
                    None => {
                        let Some(m) = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid())
                        else {
                            return;
                        };
                        self.ssrc_mid.insert(ssrc, m);
                        m
                    }
                };
                let Some(info) = self.slots.get(&mid) else {
                    return;
                };
                let Some(key) = &info.key else {
                    return;
                };
                // Look up without allocating; the key is cloned once per stream.
                if !self.received.contains_key(key) {
                    self.received.insert(key.clone(), StreamCount::default());
                }
                let count = self.received.get_mut(key).expect("inserted above");
                count.packets += 1;
                count.bytes += pkt.payload.len() as u64;
                if synth::is_keyframe_start(&pkt.payload) {
                    count.keyframes += 1;
                }
                let seq = *pkt.seq_no;
                if count.mid != Some(mid) {
                    count.mid = Some(mid);
                    count.last_seq = None;
                }
                if let Some(last) = count.last_seq {
                    if seq > last + 1 {
                        count.gaps += seq - last - 1;
                        count.missing.extend(last + 1..seq);
                    }
                }
                count.missing.remove(&seq);
                while count.missing.len() > MAX_MISSING {
                    count.missing.pop_first();
                }
                if let Some(meter) = &self.meter {
                    use std::sync::atomic::Ordering::Relaxed;
                    meter.packets.fetch_add(1, Relaxed);
                    meter.bytes.fetch_add(pkt.payload.len() as u64, Relaxed);
                    if meter.measuring.load(Relaxed) && self.delays_us.len() < MAX_DELAY_SAMPLES {
                        let now = micros_since_epoch(self.arrived);
                        // A stamp from the future is not ours (media from another sender).
                        if let Some(sent) = stamped_at(&pkt.payload).filter(|&t| t <= now) {
                            self.delays_us
                                .push((now - sent).min(u64::from(u32::MAX)) as u32);
                        }
                    }
                }
                count.last_seq = Some(count.last_seq.map_or(seq, |l| l.max(seq)));
                if let Some(e) = &mut self.e2ee {
                    let audio = matches!(key.1.as_str(), "microphone" | "screen-audio");
                    e.receive(key, ssrc, audio, &pkt, Instant::now());
                }
            }
            _ => {}
        }
    }

    fn send_due_media(&mut self) {
        let now = Instant::now();
        for i in 0..self.synths.len() {
            let source = self.synths[i].0.clone();
            let rid = self.synths[i].1;
            let Some(mid) = self
                .slots
                .iter()
                .find(|(_, s)| s.direction == "send" && s.source.as_deref() == Some(&source))
                .map(|(m, _)| *m)
            else {
                continue;
            };
            while self.synths[i].2.next_at() <= now {
                // Encrypted: whole frames through SFrame, one send context
                // (so one counter) per generator; before a key, nothing.
                let packets = match &mut self.e2ee {
                    Some(e) => self.synths[i]
                        .2
                        .next_frame_sealed(|video, frame| e.seal(i as u64, video, frame)),
                    None => self.synths[i].2.next_frame(),
                };
                let pt = {
                    let want = if self.synths[i].2.is_audio() {
                        str0m::format::Codec::Opus
                    } else {
                        str0m::format::Codec::Vp8
                    };
                    match self
                        .rtc
                        .codec_config()
                        .params()
                        .iter()
                        .find(|p| p.spec().codec == want)
                    {
                        Some(p) => p.pt(),
                        None => break,
                    }
                };
                for p in packets {
                    let mut api = self.rtc.direct_api();
                    let Some(tx) = api.stream_tx_by_mid(mid, rid) else {
                        break;
                    };
                    let mut ext = ExtensionValues::default();
                    if let Some(level) = p.audio_level {
                        ext.audio_level = Some(level);
                        ext.voice_activity = Some(true);
                    }
                    tx.write_rtp(
                        RtpWrite::new(pt, SeqNo::from(p.seq), p.timestamp, now, p.payload)
                            .marker(p.marker)
                            .ext_vals(ext)
                            .nackable(true),
                    );
                    self.drain();
                }
            }
        }
    }

    /// Participants from a "welcome" or "roster" list, by id.
    fn add_participants(&mut self, list: &Value) {
        for p in list.as_array().into_iter().flatten() {
            self.participants
                .insert(p["id"].as_str().unwrap_or("").to_string(), p.clone());
        }
    }

    async fn on_message(&mut self, v: Value) {
        self.log.push(v.clone());
        let kind = v["type"].as_str().unwrap_or("");
        if kind.starts_with("mls-")
            || (kind == "error"
                && v["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("mls-") || c == "rate-limited"))
        {
            if let Some(e) = &mut self.e2ee {
                let participants = &self.participants;
                let has =
                    |pid: &str, c: &convene_e2ee::Claims| e2ee::roster_has(participants, pid, c);
                let events = e.handle(&v, &has, Instant::now());
                self.e2ee_events(events).await;
            }
            if kind == "error" {
                self.errors.push(v);
            }
            return;
        }
        match kind {
            "lobby" => self.in_lobby = true,
            "welcome" => {
                self.in_lobby = false;
                self.participant_id = v["participantId"].as_str().unwrap_or("").to_string();
                self.resume_token = v["resumeToken"].as_str().unwrap_or("").to_string();
                self.meeting_title = v["meeting"]["title"].as_str().unwrap_or("").to_string();
                self.participants.clear();
                self.chat.clear();
                self.add_participants(&v["participants"]);
                self.chat
                    .extend(v["chat"].as_array().into_iter().flatten().cloned());
                if self.want_e2ee && v["e2ee"].is_object() {
                    self.e2ee_welcome(&v).await;
                }
            }
            "roster" => self.add_participants(&v["participants"]),
            "chat-history" => self
                .chat
                .extend(v["messages"].as_array().into_iter().flatten().cloned()),
            "participant-joined" | "participant-updated" => {
                let p = &v["participant"];
                self.participants
                    .insert(p["id"].as_str().unwrap_or("").to_string(), p.clone());
            }
            "participant-left" => {
                let id = v["participantId"].as_str().unwrap_or("").to_string();
                self.participants.remove(&id);
                self.left
                    .push((id, v["reason"].as_str().unwrap_or("").to_string()));
            }
            "chat" => self.chat.push(v["message"].clone()),
            "speaking" => {
                self.speaking.insert(
                    v["participantId"].as_str().unwrap_or("").to_string(),
                    v["speaking"].as_bool().unwrap_or(false),
                );
            }
            "voice-slot" => {
                let Some(mid) = v["mid"].as_str().map(Mid::from) else {
                    return;
                };
                match v["participantId"].as_str() {
                    Some(p) => self.voice_holders.insert(mid, p.to_string()),
                    None => self.voice_holders.remove(&mid),
                };
                let key = self.voice_key(mid);
                if let Some(slot) = self.slots.get_mut(&mid) {
                    slot.key = Some(key);
                }
            }
            "error" => self.errors.push(v),
            "offer" => {
                self.offers += 1;
                let Ok(offer) = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or("")) else {
                    self.errors
                        .push(json!({"type": "client", "message": "unparseable offer"}));
                    return;
                };
                if self.media_over_tcp && self.tcp.is_none() {
                    let sfu = tcp_link::passive_tcp_candidate(v["sdp"].as_str().unwrap_or(""));
                    match sfu {
                        Some(addr) => match tcp_link::TcpLink::connect(addr).await {
                            Ok(link) => self.tcp = Some(link),
                            Err(e) => self.errors.push(
                                json!({"type": "client", "message": format!("media TCP: {e}")}),
                            ),
                        },
                        None => self.errors.push(
                            json!({"type": "client", "message": "the offer has no TCP candidate"}),
                        ),
                    }
                }
                let answer = match self.rtc.sdp_api().accept_offer(offer) {
                    Ok(a) => a,
                    Err(e) => {
                        self.errors
                            .push(json!({"type": "client", "message": e.to_string()}));
                        return;
                    }
                };
                self.slots.clear();
                self.ssrc_mid.clear();
                for t in v["tracks"].as_array().into_iter().flatten() {
                    let Some(mid) = t["mid"].as_str().map(Mid::from) else {
                        continue;
                    };
                    let key = if t["voice"] == true {
                        Some(self.voice_key(mid))
                    } else {
                        t["participantId"]
                            .as_str()
                            .zip(t["source"].as_str())
                            .map(|(p, s)| (p.to_string(), s.to_string()))
                    };
                    self.slots.insert(
                        mid,
                        SlotInfo {
                            direction: t["direction"].as_str().unwrap_or("").to_string(),
                            source: t["source"].as_str().map(str::to_string),
                            key,
                        },
                    );
                }
                self.drain();
                let _ = self
                    .send(json!({"type": "answer", "sdp": answer.to_sdp_string()}))
                    .await;
            }
            _ => {}
        }
    }

    /// Whom a voice slot's packets are counted for: the participant it carries, or
    /// "" before the server has said (packets can beat the `voice-slot` message).
    fn voice_key(&self, mid: Mid) -> (String, String) {
        let who = self.voice_holders.get(&mid).cloned().unwrap_or_default();
        (who, "microphone".to_string())
    }

    /// A welcome to an encrypted meeting: start the MLS member, or (after a
    /// resume into another group or epoch) ask to be added again.
    async fn e2ee_welcome(&mut self, welcome: &Value) {
        let now = Instant::now();
        let events = match &mut self.e2ee {
            Some(e) => e.resumed(&welcome["e2ee"], now),
            None => {
                let me = &welcome["participants"][0];
                let claims = e2ee::claims_of(&self.participant_id, me);
                match e2ee::E2ee::start(claims, now) {
                    Ok((e, events)) => {
                        self.e2ee = Some(e);
                        events
                    }
                    Err(err) => {
                        self.errors.push(json!({"type": "client", "message": err}));
                        return;
                    }
                }
            }
        };
        self.e2ee_events(events).await;
    }

    /// What the MLS member asks for: messages go to the server, new epochs'
    /// keys to SFrame (and a keyframe under them, as browsers send one).
    async fn e2ee_events(&mut self, events: Vec<convene_e2ee::Event>) {
        for ev in events {
            let Some(e) = &mut self.e2ee else { return };
            if let Some(msg) = e.on_event(ev, Instant::now()) {
                let _ = self.send(msg).await;
            } else if e.take_new_epoch() {
                for (_, _, synth) in &mut self.synths {
                    if !synth.is_audio() {
                        synth.request_keyframe();
                    }
                }
            }
        }
    }

    /// Frames from `participant`'s `source` that decrypted, and that did not
    /// (an encrypted meeting only).
    pub fn frames_from(&self, participant: &str, source: &str) -> FrameCount {
        self.e2ee
            .as_ref()
            .and_then(|e| e.frames.get(&(participant.to_string(), source.to_string())))
            .cloned()
            .unwrap_or_default()
    }

    /// Frames from everyone, decrypted and not (an encrypted meeting only).
    pub fn frames_total(&self) -> FrameCount {
        let mut total = FrameCount::default();
        for c in self.e2ee.iter().flat_map(|e| e.frames.values()) {
            total.add(c);
        }
        total
    }

    /// Packets received from `participant`'s `source`.
    pub fn received_from(&self, participant: &str, source: &str) -> StreamCount {
        self.received
            .get(&(participant.to_string(), source.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Client {
    /// The reader task holds the socket's read half: end it, so dropping a client
    /// closes its connection.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Readiness of the media TCP connection; never, without one.
async fn tcp_readable(link: &Option<tcp_link::TcpLink>) -> std::io::Result<()> {
    match link {
        Some(l) => l.stream.readable().await,
        None => std::future::pending().await,
    }
}

/// A loopback UDP socket with room for a burst (a keyframe is dozens of packets
/// arriving at once; the default buffer dropped some under load tests).
fn bind_socket() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(1 << 20);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Without arrival times, delays are measured from when we read a packet.
        if let Err(e) = stamped::enable(socket.as_raw_fd()) {
            tracing::debug!("no kernel receive timestamps: {e}");
        }
        // A run of datagrams the server sent segmented is one read and one
        // wake-up here, as a network card's receive offload would make it.
        if let Err(e) = stamped::enable_gro(socket.as_raw_fd()) {
            tracing::debug!("no UDP receive offload: {e}");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    UdpSocket::from_std(socket.into())
}

/// A message that only changes the participant list (cheap to tell: the type is
/// read without building the rest).
fn is_roster_change(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Head>(text).is_ok_and(|h| {
        matches!(
            &*h.kind,
            "roster"
                | "participant-joined"
                | "participant-updated"
                | "participant-left"
                | "speaking"
        )
    })
}

//! The sans-IO SFU: connections, published tracks (producers) and subscriptions.

use std::cell::OnceCell;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpAnswer;
use str0m::config::DtlsCert;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, RtcConfig};
use tracing::{debug, info, warn};

pub use crate::connection::SlotDirection;
use crate::connection::{Connection, Slot};
use crate::feedback::{FeedbackChange, NO_FEEDBACK_ESTIMATE};
use crate::layers::{
    allocate, layer_choices, AudioRate, LayerIn, Priority, View, Want, SIMULCAST_RIDS,
    UPGRADE_HEADROOM_PCT,
};
use crate::offer_candidates::candidates_on_every_m_line;
use crate::quality::Quality;
use crate::red::red_primary;
use crate::route::{Route, RouteTable};
use crate::transport::Transport;
use crate::vp8::vp8_keyframe_size;
use crate::{ConnId, SpeakingDetector, TrackId};

/// A keyframe asked for and not yet arrived is not asked for again sooner
/// than this (about a round trip and an encoder's reaction, with margin).
/// Once it arrives, the next request may go at once: each joiner's request
/// must not wait out the previous one's limit.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// ...but never more often than this per layer, whatever subscribers do.
const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(100);
/// How often layers are measured and every subscriber's layers chosen again
/// (an estimate that changes chooses at once, for that subscriber).
const LAYER_TICK: Duration = Duration::from_millis(500);
/// A layer nobody needed for this long is paused at its publisher.
const PAUSE_UNNEEDED_AFTER: Duration = Duration::from_secs(2);
/// A layer that did not come when asked for (the publisher's uplink cannot
/// carry it) is asked for again after this long.
const LAYER_RETRY: Duration = Duration::from_secs(10);
/// A camera somebody watches from which nothing arrived for this long is
/// reported stalled ("video paused: poor connection").
const STALL_AFTER: Duration = Duration::from_secs(2);
/// A subscriber's downlink is taken to be this until its congestion feedback
/// says otherwise (str0m's estimate starts here and probes upward; a client
/// that never sends feedback stays at it). It decides a joiner's first layers:
/// high, so a joiner on a good link sees sharp video at once; on a narrow link
/// the estimate falls within a second or two and the layers with it. (It was
/// first raised from 1 Mbit/s because str0m paced forwarded media at 1.1x the
/// estimate and a 3 Mbit/s single-layer camera lost packets; forwarded media is
/// no longer paced.)
const INITIAL_ESTIMATE: u64 = 5_000_000;
/// Opus's payload type (what browsers use, and protocol.md promises).
const OPUS_PT: u8 = 111;
/// Redundant audio's (RFC 2198, carrying Opus).
const RED_PT: u8 = 63;
/// Statistics (loss, round trip) are read from str0m this often, for the
/// connection-quality indicator.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Outgoing video packets kept per stream to answer NACKs: about 0.5 s of
/// 2.5 Mbit/s video, 1.6 s of 500 kbit/s, several round trips either way (a
/// retransmission later than that arrives after the receiver gave up on the
/// frame; it asks for a keyframe instead). Each entry costs about 520 bytes per
/// subscribed video stream (measured at fan-out 500: 256 entries made 368 KiB
/// per participant, 128 made 302 KiB, 64 made 270 KiB; str0m's default of 1000
/// made 570 KiB).
const SEND_BUFFER_VIDEO: usize = 128;
/// Immediate timeouts answered in one drain before deferring to the timer heap.
/// str0m's pacer (on with bandwidth estimation) asks for one after each paced
/// packet it releases (probes; forwarded media is unpaced): this many leave at
/// once.
const MAX_IMMEDIATE_TIMEOUTS: u32 = 64;
/// How often speaking indicators are re-checked for publishers that went quiet.
const SPEAKING_TICK: Duration = Duration::from_millis(200);
/// Voices a subscriber hears at once: each connection gets at most this many voice
/// slots, however many people publish a microphone. Three people talking over each
/// other is already more than anyone follows; a fourth waits for a pause. Each
/// outgoing audio stream costs the SFU about 13 KiB of state per subscriber, and a
/// packet sent per 20 ms.
pub const VOICE_SLOTS: usize = 3;
/// Video that waited longer than this between the kernel receiving it and the SFU
/// reading it is not forwarded. This only happens when the server has more to
/// forward than it can: its receive queue grows, and everything forwarded arrives
/// later and later (over 4 s at p99, measured). A listener's jitter buffer would
/// play that far behind the room; a lost packet costs a moment of concealment or a
/// keyframe instead. (Sojourn time as the signal is CoDel's idea, without its
/// control law.) Without overload the whole added delay is far below this: p99
/// about 50 ms at fan-out 500.
pub const MAX_MEDIA_AGE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Audio forwarded to each subscriber on an m-line of its own (a screen's sound).
    Audio,
    /// A microphone: heard through each subscriber's few voice slots, which carry
    /// whoever is talking (see [`VOICE_SLOTS`]).
    Voice,
    Video,
}

impl TrackKind {
    fn media_kind(self) -> MediaKind {
        match self {
            TrackKind::Audio | TrackKind::Voice => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        }
    }

    fn clock_rate(self) -> u32 {
        match self {
            TrackKind::Audio | TrackKind::Voice => 48_000,
            TrackKind::Video => 90_000,
        }
    }

    pub fn is_audio(self) -> bool {
        self.media_kind() == MediaKind::Audio
    }
}

#[derive(Debug, Clone, Default)]
pub struct SfuConfig {
    /// Addresses announced to clients as ICE host candidates (the UDP socket's
    /// address, or the public address in front of it).
    pub candidates: Vec<SocketAddr>,
    /// Addresses announced as passive ICE-TCP candidates (RFC 6544), where a
    /// client that cannot send UDP connects; their frames come in through
    /// [`Sfu::handle_tcp_frame`]. Clients prefer UDP when both work.
    pub tcp_candidates: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SfuError {
    #[error("connection id already in use")]
    DuplicateConnection,
    #[error("unknown connection")]
    UnknownConnection,
    #[error("unknown track")]
    UnknownTrack,
    #[error("no offer is waiting for an answer")]
    NoOfferPending,
    #[error("the SDP answer could not be used: {0}")]
    BadSdp(String),
    #[error("media setup failed: {0}")]
    Rtc(String),
}

/// One m-line as described to the client alongside an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedSlot {
    pub mid: String,
    pub kind: TrackKind,
    pub direction: SlotDirection,
    /// `None` when the slot is inactive, and on voice slots the SFU sends on, which
    /// are always active and change speaker without renegotiation
    /// ([`SfuEvent::VoiceSlot`] says who).
    pub track: Option<TrackId>,
    /// The simulcast layers (rids, lowest first) the client is asked to send
    /// on this m-line; empty for a single layer.
    pub layers: Vec<String>,
}

#[derive(Debug)]
pub enum SfuEvent {
    /// Send this offer to the client; its answer goes to [`Sfu::accept_answer`].
    Offer {
        conn: ConnId,
        sdp: String,
        slots: Vec<OfferedSlot>,
    },
    /// ICE and DTLS are up.
    Connected(ConnId),
    /// ICE lost the client. It may come back; the layer above decides when to give up.
    Disconnected(ConnId),
    /// The connection is gone (closed by the peer or timed out) and was removed.
    Closed(ConnId),
    /// A command for this connection failed (the layer above tells the client).
    Failed { conn: ConnId, error: SfuError },
    /// Voice activity of an audio track changed.
    Speaking { track: TrackId, speaking: bool },
    /// A voice slot of this connection now carries `track` (`None`: nobody).
    VoiceSlot {
        conn: ConnId,
        mid: String,
        track: Option<TrackId>,
    },
    /// The publisher of this simulcast track should send these layers (rids)
    /// and pause the others: nobody receives them.
    VideoLayers { track: TrackId, active: Vec<String> },
    /// A connection's measured quality changed level.
    Quality { conn: ConnId, quality: Quality },
    /// Nothing arrives of a video that people watch (its publisher's uplink
    /// cannot carry even its lowest layer), or it arrives again.
    VideoStalled { track: TrackId, stalled: bool },
}

/// A datagram to send from the SFU's socket (or, over TCP, a frame to send on
/// the connection from `destination`).
#[derive(Debug)]
pub struct Datagram {
    pub transport: Transport,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// Counters for tests, load tests and logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct SfuStats {
    pub datagrams_in: u64,
    pub unroutable: u64,
    pub rtp_in: u64,
    pub rtp_forwarded: u64,
    /// RTP on an m-line that carries no published track (e.g. after an unpublish).
    pub rtp_dropped_unpublished: u64,
    /// RTP of a paused (host-muted) track.
    pub rtp_dropped_paused: u64,
    /// Video RTP not forwarded because it waited longer than [`MAX_MEDIA_AGE`].
    pub rtp_dropped_late: u64,
    /// Keyframe requests sent to publishers (per layer).
    pub keyframe_requests: u64,
    /// Subscribers moved from one simulcast layer to another (at a keyframe).
    pub layer_switches: u64,
    /// Connections and published tracks alive now (to see that nothing leaks).
    pub connections: usize,
    pub tracks: usize,
    /// ICE-TCP connections open now (set by the driver).
    pub tcp_connections: usize,
    /// Frames not sent because a TCP connection's queue was full (set by the driver).
    pub tcp_frames_dropped: u64,
}

/// A published track: where its packets come from and who receives them.
struct Producer {
    kind: TrackKind,
    /// The connection currently publishing it; `None` while the publisher is away.
    conn: Option<ConnId>,
    /// Bumped whenever the track moves to a new connection, so subscribers see a
    /// change of source even if the new connection reuses the SSRC.
    generation: u32,
    /// Subscribers: connection and slot index.
    consumers: Vec<(ConnId, usize)>,
    /// Voice tracks: the connections that hear it through their voice slots.
    listeners: Vec<ConnId>,
    /// Video: its layers, lowest first (one unless published with simulcast).
    layers: Vec<LayerIn>,
    /// Audio: what it costs a subscriber's downlink.
    audio_rate: AudioRate,
    simulcast: bool,
    priority: Priority,
    /// Video: reported stalled (nothing arrives though people watch).
    stalled: bool,
    /// When it was published on its connection (a stall counts from then).
    since: Instant,
    speaking: SpeakingDetector,
    /// Set by the layer above (a host muted it): packets arrive but go nowhere.
    paused: bool,
    /// Video: the RTP timestamp of the frame whose first packet was forwarded in
    /// time; the rest of that frame is forwarded however late.
    frame_out: Option<u32>,
    /// Video: while the server is overloaded (media waited too long), only the
    /// lowest layer is sent, until then.
    overloaded_until: Option<Instant>,
}

pub struct Sfu {
    config: SfuConfig,
    dtls_cert: Option<DtlsCert>,
    /// Boxed: a connection (str0m's `Rtc`) is about 10 KiB inline, and a map keeps up to half
    /// its slots empty after growing.
    conns: HashMap<ConnId, Box<Connection>>,
    producers: HashMap<TrackId, Producer>,
    routes: RouteTable,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    next_speaking_tick: Instant,
    /// Payload types that carry media (Opus, VP8); RTX and anything else is not forwarded.
    media_pts: Vec<Pt>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<SfuEvent>,
    /// str0m events waiting to be handled (handling one may produce more).
    work: VecDeque<(ConnId, Event)>,
    stats: SfuStats,
    /// The latest time given to us; str0m never reads a clock, nor do we.
    now: Instant,
    /// When the kernel received the datagram being handled, while it is handled.
    arrived: Option<Instant>,
    /// Connections whose wanted m-lines changed since the last negotiate_all.
    to_negotiate: BTreeSet<ConnId>,
    /// When layers were last measured and chosen.
    next_layer_tick: Instant,
    /// Subscribers written to since their last drain. Draining once per batch of
    /// incoming datagrams, not once per packet, shares str0m's per-poll work (its
    /// timeout handling and the walk through every layer) between the packets of a
    /// video frame that arrive together.
    to_drain: VecDeque<ConnId>,
}

impl Sfu {
    pub fn new(config: SfuConfig, now: Instant) -> Self {
        // One certificate for every connection: generating one per join costs time.
        let dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        Sfu {
            config,
            dtls_cert,
            conns: HashMap::new(),
            producers: HashMap::new(),
            routes: RouteTable::default(),
            timers: BinaryHeap::new(),
            next_speaking_tick: now + SPEAKING_TICK,
            next_layer_tick: now + LAYER_TICK,
            media_pts: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            work: VecDeque::new(),
            stats: SfuStats::default(),
            now,
            arrived: None,
            to_negotiate: BTreeSet::new(),
            to_drain: VecDeque::new(),
        }
    }

    fn rtc_config(&self) -> RtcConfig {
        let mut cfg = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_vp8(true)
            .set_send_buffer_video(SEND_BUFFER_VIDEO)
            // Each subscriber's downlink estimate, from its transport-wide
            // congestion feedback, chooses its simulcast layers.
            .enable_bwe(Some(Bitrate::bps(INITIAL_ESTIMATE)))
            .set_stats_interval(Some(STATS_INTERVAL));
        // Opus with in-band FEC (recovers a lost packet from the next) and
        // DTX: a silent microphone sends a packet every 400 ms instead of 50
        // a second, which saves every publisher's uplink and the server most
        // of its audio work in a meeting where few talk at once.
        cfg.codec_config().add_config(
            OPUS_PT.into(),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                use_dtx: Some(true),
                ..FormatParams::default()
            },
        );
        // RED before it: a browser that takes it sends each packet with the
        // one before, so random loss of single packets costs nothing.
        cfg.codec_config().set_red_pt(Codec::Opus, RED_PT.into());
        if let Some(cert) = &self.dtls_cert {
            cfg = cfg.set_dtls_cert(cert.clone());
        }
        cfg
    }

    pub fn stats(&self) -> SfuStats {
        SfuStats {
            connections: self.conns.len(),
            tracks: self.producers.len(),
            ..self.stats
        }
    }

    /// RTP packets forwarded so far (a cheap read of one counter of [`Sfu::stats`]).
    pub fn forwarded(&self) -> u64 {
        self.stats.rtp_forwarded
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// A new connection, with no media yet. Its first offer comes with the first
    /// publish or subscribe.
    pub fn add_connection(&mut self, now: Instant, id: ConnId) -> Result<(), SfuError> {
        self.now = self.now.max(now);
        if self.conns.contains_key(&id) {
            return Err(SfuError::DuplicateConnection);
        }
        let mut rtc = self.rtc_config().build(now);
        for addr in &self.config.candidates {
            let c = Candidate::host(*addr, "udp").map_err(|e| SfuError::Rtc(e.to_string()))?;
            rtc.add_local_candidate(c);
        }
        for addr in &self.config.tcp_candidates {
            let c = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| SfuError::Rtc(e.to_string()))?;
            rtc.add_local_candidate(c);
        }
        if self.media_pts.is_empty() {
            self.media_pts = rtc
                .codec_config()
                .params()
                .iter()
                .filter(|p| matches!(p.spec().codec, Codec::Opus | Codec::Vp8))
                .flat_map(|p| [Some(p.pt()), p.red()])
                .flatten()
                .collect();
        }
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        self.routes.add_conn(id, ufrag);
        self.conns.insert(id, Box::new(Connection::new(rtc)));
        self.drain(id);
        debug!(conn = %id, "connection added");
        Ok(())
    }

    /// Forget a connection. Tracks it published stay (without a source) until
    /// unpublished, so a reconnecting publisher can take them over.
    pub fn remove_connection(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.routes.remove_conn(conn);
        for (idx, slot) in c.slots.iter().enumerate() {
            let Some(track) = slot.track else { continue };
            let Some(p) = self.producers.get_mut(&track) else {
                continue;
            };
            match slot.dir {
                SlotDirection::Send => {
                    if p.conn == Some(conn) {
                        p.conn = None;
                    }
                }
                SlotDirection::Receive => p.consumers.retain(|&(c2, i)| (c2, i) != (conn, idx)),
            }
        }
        for track in &c.listening {
            if let Some(p) = self.producers.get_mut(track) {
                p.listeners.retain(|&l| l != conn);
            }
        }
        debug!(conn = %conn, "connection removed");
    }

    /// `conn` publishes `track` in one layer. If the track exists (its
    /// publisher reconnected), it moves to this connection and its subscribers
    /// carry on seamlessly.
    pub fn publish(
        &mut self,
        conn: ConnId,
        track: TrackId,
        kind: TrackKind,
    ) -> Result<(), SfuError> {
        self.publish_with(conn, track, kind, false)
    }

    /// `conn` publishes a camera in simulcast: the offer asks for three layers
    /// (rids `l`, `m`, `h`), and each subscriber gets the one that suits it. A
    /// client that answers without simulcast sends one layer, which is used
    /// as it comes.
    pub fn publish_simulcast(&mut self, conn: ConnId, track: TrackId) -> Result<(), SfuError> {
        self.publish_with(conn, track, TrackKind::Video, true)
    }

    fn publish_with(
        &mut self,
        conn: ConnId,
        track: TrackId,
        kind: TrackKind,
        simulcast: bool,
    ) -> Result<(), SfuError> {
        if !self.conns.contains_key(&conn) {
            return Err(SfuError::UnknownConnection);
        }
        let simulcast = simulcast && kind == TrackKind::Video;
        if let Some(p) = self.producers.get_mut(&track) {
            if p.kind != kind || p.simulcast != simulcast {
                return Err(SfuError::UnknownTrack);
            }
            if p.conn == Some(conn) {
                return Ok(());
            }
            let old = p.conn.replace(conn);
            p.generation = p.generation.wrapping_add(1);
            p.since = self.now;
            // The new connection starts sending every layer.
            for l in &mut p.layers {
                *l = LayerIn::new(l.rid);
            }
            if let Some(old) = old {
                self.release_slot(old, track, SlotDirection::Send);
            }
        } else {
            let layers = match (kind, simulcast) {
                (TrackKind::Video, true) => SIMULCAST_RIDS
                    .iter()
                    .map(|r| LayerIn::new(Some(Rid::from(*r))))
                    .collect(),
                (TrackKind::Video, false) => vec![LayerIn::new(None)],
                _ => Vec::new(),
            };
            self.producers.insert(
                track,
                Producer {
                    kind,
                    conn: Some(conn),
                    generation: 0,
                    consumers: Vec::new(),
                    listeners: Vec::new(),
                    layers,
                    audio_rate: AudioRate::default(),
                    simulcast,
                    priority: Priority::Normal,
                    stalled: false,
                    since: self.now,
                    speaking: SpeakingDetector::default(),
                    paused: false,
                    frame_out: None,
                    overloaded_until: None,
                },
            );
        }
        let c = self.conns.get_mut(&conn).expect("checked above");
        let idx = c.free_slot(kind, SlotDirection::Send, simulcast);
        c.slots[idx].track = Some(track);
        c.dirty = true;
        self.to_negotiate.insert(conn);
        Ok(())
    }

    /// The track ends: its publisher's m-line and every subscriber's go inactive.
    /// Stop (or resume) forwarding a track without renegotiating: what its
    /// publisher sends while paused reaches no one.
    pub fn set_paused(&mut self, track: TrackId, paused: bool) {
        if let Some(p) = self.producers.get_mut(&track) {
            p.paused = paused;
            if paused && p.speaking.is_speaking() {
                p.speaking.reset();
                self.events.push_back(SfuEvent::Speaking {
                    track,
                    speaking: false,
                });
            }
        }
    }

    pub fn unpublish(&mut self, track: TrackId) {
        let Some(p) = self.producers.remove(&track) else {
            return;
        };
        if let Some(conn) = p.conn {
            self.release_slot(conn, track, SlotDirection::Send);
        }
        for (conn, idx) in p.consumers {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.slots[idx].track = None;
                c.dirty = true;
                self.to_negotiate.insert(conn);
            }
        }
        for conn in p.listeners {
            self.stop_hearing(conn, track);
        }
        if p.speaking.is_speaking() {
            self.events.push_back(SfuEvent::Speaking {
                track,
                speaking: false,
            });
        }
    }

    pub fn subscribe(&mut self, conn: ConnId, track: TrackId) -> Result<(), SfuError> {
        let kind = self
            .producers
            .get(&track)
            .ok_or(SfuError::UnknownTrack)?
            .kind;
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(SfuError::UnknownConnection)?;
        if kind == TrackKind::Voice {
            if c.listening.contains(&track) {
                return Ok(());
            }
            c.listening.push(track);
            if c.voice_slots.len() < c.listening.len().min(VOICE_SLOTS) {
                let idx = c.add_slot(TrackKind::Voice, SlotDirection::Receive);
                c.voice_slots.push(idx);
                c.dirty = true;
                self.to_negotiate.insert(conn);
            }
            let p = self.producers.get_mut(&track).expect("checked above");
            p.listeners.push(conn);
            return Ok(());
        }
        if c.slot_of(track, SlotDirection::Receive).is_some() {
            return Ok(());
        }
        let idx = c.free_slot(kind, SlotDirection::Receive, false);
        let slot = &mut c.slots[idx];
        slot.track = Some(track);
        slot.current = None;
        slot.target = None;
        slot.view = None;
        c.dirty = true;
        self.to_negotiate.insert(conn);
        let p = self.producers.get_mut(&track).expect("checked above");
        p.consumers.push((conn, idx));
        if kind == TrackKind::Video {
            self.allocate(conn);
        }
        Ok(())
    }

    /// How `conn` shows `track` (sizes in device pixels): a video is sent in
    /// the smallest layer that covers its tile, and not at all when hidden.
    /// Until this is called, a subscription has no limit by size.
    pub fn set_view(&mut self, conn: ConnId, track: TrackId, view: View) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(idx) = c.slot_of(track, SlotDirection::Receive) else {
            return;
        };
        if c.slots[idx].view == Some(view) {
            return;
        }
        c.slots[idx].view = Some(view);
        self.allocate(conn);
    }

    /// Where `track` comes in the order subscribers' bandwidth is shared.
    pub fn set_priority(&mut self, track: TrackId, priority: Priority) {
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if p.priority == priority {
            return;
        }
        p.priority = priority;
        let subs: Vec<ConnId> = p.consumers.iter().map(|&(c, _)| c).collect();
        for conn in subs {
            self.allocate(conn);
        }
    }

    pub fn unsubscribe(&mut self, conn: ConnId, track: TrackId) {
        if let Some(p) = self.producers.get_mut(&track) {
            p.consumers.retain(|&(c, _)| c != conn);
            if p.kind == TrackKind::Voice {
                p.listeners.retain(|&c| c != conn);
                self.stop_hearing(conn, track);
                return;
            }
        }
        self.release_slot(conn, track, SlotDirection::Receive);
    }

    /// `conn` no longer hears voice `track`; a slot it had goes empty at once.
    fn stop_hearing(&mut self, conn: ConnId, track: TrackId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(mid) = c.drop_voice(track).and_then(|i| c.slots[i].mid) {
            self.events.push_back(SfuEvent::VoiceSlot {
                conn,
                mid: mid.to_string(),
                track: None,
            });
        }
    }

    fn release_slot(&mut self, conn: ConnId, track: TrackId, dir: SlotDirection) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(idx) = c.slot_of(track, dir) {
                c.slots[idx].track = None;
                c.dirty = true;
                c.ssrc_slot.clear();
                self.to_negotiate.insert(conn);
            }
        }
    }

    /// The client's answer to the last offer.
    pub fn accept_answer(&mut self, now: Instant, conn: ConnId, sdp: &str) -> Result<(), SfuError> {
        self.now = self.now.max(now);
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(SfuError::UnknownConnection)?;
        if c.pending_offer.is_none() {
            return Err(SfuError::NoOfferPending);
        }
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let pending = c.pending_offer.take().expect("checked above");
        let new_mids = std::mem::take(&mut c.pending_new_mids);
        let restart = c.pending_restart.take();
        let result = c.rtc.sdp_api().accept_answer(pending, answer);
        c.ssrc_slot.clear();
        if let Err(e) = result {
            // The offer is void: its new m-lines never existed, its new ICE
            // credentials never took. Offer again (restarting again if it did).
            if let Some(ufrag) = restart {
                self.routes.remove_ufrag(conn, &ufrag);
                c.ice_restart = true;
            }
            for idx in new_mids {
                c.slots[idx].mid = None;
                c.slots[idx].offered_active = false;
            }
            c.dirty = true;
            self.drain(conn);
            self.negotiate(conn);
            return Err(SfuError::BadSdp(e.to_string()));
        }
        for slot in &mut c.slots {
            slot.live = slot.offered_active;
        }
        // str0m keeps RED on Opus only if the answer took it.
        c.red = c
            .rtc
            .codec_config()
            .params()
            .iter()
            .any(|p| p.red() == Some(RED_PT.into()));
        self.drain(conn);
        self.allocate(conn);
        // Every outgoing video stream starts with a keyframe, asked for now
        // that there is an m-line to send it on.
        let wanted: Vec<(TrackId, u8)> = self.conns[&conn]
            .slots
            .iter()
            .filter(|s| s.dir == SlotDirection::Receive && s.kind == TrackKind::Video && s.live)
            .filter(|s| s.current.is_none())
            .filter_map(|s| Some((s.track?, s.target?)))
            .collect();
        for (track, layer) in wanted {
            self.request_keyframe(now, track, layer);
        }
        self.process_work(now);
        self.negotiate(conn);
        Ok(())
    }

    /// Make offers for connections whose wanted m-lines changed and that are not
    /// waiting for an answer. Called by the driver after a batch of commands, so
    /// several changes go into one offer.
    pub fn negotiate_all(&mut self) {
        // Only connections changed since the last call; one waiting for an answer
        // renegotiates when the answer comes (see accept_answer).
        for conn in std::mem::take(&mut self.to_negotiate) {
            self.negotiate(conn);
        }
    }

    fn negotiate(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.pending_offer.is_some() || !c.dirty {
            return;
        }
        c.dirty = false;
        let mut api = c.rtc.sdp_api();
        if std::mem::take(&mut c.ice_restart) {
            let creds = api.ice_restart(true);
            self.routes.add_ufrag(conn, creds.ufrag.clone());
            c.pending_restart = Some(creds.ufrag);
        }
        let mut new_mids = Vec::new();
        for (idx, slot) in c.slots.iter_mut().enumerate() {
            let active = slot.wanted();
            if !active {
                slot.live = false;
            }
            match slot.mid {
                None if active => {
                    let simulcast = slot.simulcast.then(|| {
                        let mut s = Simulcast::new();
                        for rid in SIMULCAST_RIDS {
                            s.add_recv_layer(SimulcastLayer::new(rid));
                        }
                        s
                    });
                    let mid = api.add_media(
                        slot.kind.media_kind(),
                        slot.str0m_direction(),
                        None,
                        None,
                        simulcast,
                    );
                    slot.mid = Some(mid);
                    new_mids.push(idx);
                }
                None => {}
                Some(mid) if active != slot.offered_active => {
                    api.set_direction(mid, slot.str0m_direction());
                }
                Some(_) => {}
            }
            slot.offered_active = active && slot.mid.is_some();
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        c.pending_offer = Some(pending);
        c.pending_new_mids = new_mids;
        let slots = c
            .slots
            .iter()
            .filter_map(|s| {
                Some(OfferedSlot {
                    mid: s.mid?.to_string(),
                    kind: s.kind,
                    direction: s.dir,
                    track: s.track.filter(|_| !s.is_voice_out()),
                    layers: if s.simulcast {
                        SIMULCAST_RIDS.iter().map(|r| r.to_string()).collect()
                    } else {
                        Vec::new()
                    },
                })
            })
            .collect();
        let sdp = candidates_on_every_m_line(&offer.to_sdp_string());
        self.events.push_back(SfuEvent::Offer { conn, sdp, slots });
        self.drain(conn);
    }

    /// A datagram handled as soon as it arrived.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.handle_datagram_received(now, now, source, destination, data);
    }

    /// A datagram the kernel received at `arrived` (earlier than `now` when it
    /// waited in the socket's queue): media in it older than [`MAX_MEDIA_AGE`] is
    /// not forwarded.
    pub fn handle_datagram_received(
        &mut self,
        now: Instant,
        arrived: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.arrived = Some(arrived);
        let _ = self.receive(now, (Transport::Udp, source), destination, data);
        self.arrived = None;
    }

    /// One frame from an ICE-TCP connection: `source` is the client's end of
    /// the connection, `destination` the SFU's TCP candidate it connected to.
    /// (TCP already delays what it carries; frames are not dropped as late.)
    /// True if the frame went to a connection: from a peer that passed an ICE
    /// check (or this frame was that check). A TCP connection that sends
    /// nothing else is no one's (the driver closes it).
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.receive(now, (Transport::Tcp, source), destination, data)
    }

    /// An ICE-TCP connection closed: its address no longer routes (a new
    /// connection from the same address and port must pass ICE again).
    pub fn forget_tcp_peer(&mut self, peer: SocketAddr) {
        self.routes.forget((Transport::Tcp, peer));
    }

    /// The next ICE-TCP peer whose connection was removed: its TCP connection
    /// should close.
    pub fn poll_dropped_tcp_peer(&mut self) -> Option<SocketAddr> {
        self.routes.poll_dropped_tcp_peer()
    }

    /// The next ICE username fragment that became known (`true`) or was
    /// forgotten (`false`): which worker a new ICE-TCP connection belongs to.
    pub fn poll_ufrag_change(&mut self) -> Option<(String, bool)> {
        self.routes.poll_ufrag_change()
    }

    /// Move `conn` to new ICE credentials (RFC 8445 §9), for a client whose
    /// network changed: the next offer carries them, and the client's new
    /// address is learnt from its checks. Media and m-lines are kept.
    pub fn restart_ice(&mut self, conn: ConnId) -> Result<(), SfuError> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(SfuError::UnknownConnection)?;
        c.ice_restart = true;
        c.dirty = true;
        self.to_negotiate.insert(conn);
        Ok(())
    }

    fn receive(
        &mut self,
        now: Instant,
        (transport, source): (Transport, SocketAddr),
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.now = self.now.max(now);
        self.stats.datagrams_in += 1;
        let (conn_id, verify) = match self.routes.lookup((transport, source), data) {
            Route::Known(c) => (c, false),
            Route::Candidate(c) => (c, true),
            Route::Unknown => {
                self.stats.unroutable += 1;
                return false;
            }
        };
        let Ok(contents) = data.try_into() else {
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: match transport {
                    Transport::Udp => Protocol::Udp,
                    Transport::Tcp => Protocol::Tcp,
                },
                source,
                destination,
                contents,
            },
        );
        let Some(c) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        if verify {
            if !c.rtc.accepts(&input) {
                return false;
            }
            self.routes.learn(conn_id, (transport, source));
        }
        if let Err(e) = c.rtc.handle_input(input) {
            debug!(conn = %conn_id, "input rejected: {e}");
        }
        self.drain(conn_id);
        self.process_work(now);
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        // Each connection due is handled once per call: str0m's pacer may ask
        // for another timeout at the same instant, which waits for the next call.
        let mut due = Vec::new();
        while let Some(Reverse((at, conn))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            due.push((at, conn));
        }
        for (at, conn) in due {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if c.scheduled != Some(at) {
                continue; // superseded by an earlier entry
            }
            c.scheduled = None;
            match c.next_timeout {
                Some(t) if t <= now => {
                    if let Err(e) = c.rtc.handle_input(Input::Timeout(now)) {
                        debug!(conn = %conn, "timeout error: {e}");
                    }
                    self.drain(conn);
                }
                Some(t) => {
                    c.scheduled = Some(t);
                    self.timers.push(Reverse((t, conn)));
                }
                None => {}
            }
        }
        if now >= self.next_layer_tick {
            self.next_layer_tick = now + LAYER_TICK;
            self.layer_tick(now);
        }
        if now >= self.next_speaking_tick {
            self.next_speaking_tick = now + SPEAKING_TICK;
            for (track, p) in self.producers.iter_mut() {
                if let Some(speaking) = p.speaking.on_tick(now) {
                    self.events.push_back(SfuEvent::Speaking {
                        track: *track,
                        speaking,
                    });
                }
            }
        }
        self.process_work(now);
    }

    pub fn next_timeout(&self) -> Instant {
        if !self.to_drain.is_empty() {
            return self.now;
        }
        let ticks = self.next_speaking_tick.min(self.next_layer_tick);
        let t = self.timers.peek().map(|Reverse((t, _))| *t);
        t.map_or(ticks, |t| t.min(ticks))
    }

    /// The next datagram to send. Datagrams from several inputs may be batched:
    /// call this until it returns `None` after each batch of inputs.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        // Subscribers are drained one at a time as their datagrams are taken, so a
        // keyframe to 500 people is never all encrypted and queued at once (that
        // held megabytes, and each datagram goes out while still in cache).
        loop {
            if let Some(d) = self.transmits.pop_front() {
                return Some(d);
            }
            let conn = self.to_drain.pop_front()?;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.written = false;
            }
            self.drain(conn);
            self.process_work(self.now);
        }
    }

    /// Queue an event for the layer above (the driver reports failed commands so).
    pub fn push_event(&mut self, event: SfuEvent) {
        self.events.push_back(event);
    }

    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// Drain one connection's output to its timeout (str0m's contract after every
    /// mutation). Events are queued, not handled here, so handling cannot recurse.
    fn drain(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // str0m asks for an immediate timeout when it has queued media to send;
        // answering at once sends forwarded packets now, not at the next timer.
        let mut immediate = 0;
        loop {
            match c.rtc.poll_output() {
                Ok(Output::Timeout(t)) if t <= self.now && immediate < MAX_IMMEDIATE_TIMEOUTS => {
                    immediate += 1;
                    if let Err(e) = c.rtc.handle_input(Input::Timeout(self.now)) {
                        debug!(conn = %conn, "timeout error: {e}");
                    }
                }
                Ok(Output::Timeout(t)) => {
                    c.next_timeout = Some(t);
                    if c.scheduled.is_none_or(|s| t < s) {
                        c.scheduled = Some(t);
                        self.timers.push(Reverse((t, conn)));
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(Datagram {
                    transport: match t.proto {
                        Protocol::Udp => Transport::Udp,
                        _ => Transport::Tcp,
                    },
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(Output::Event(e)) => self.work.push_back((conn, e)),
                Err(e) => {
                    warn!(conn = %conn, "connection failed: {e}");
                    c.rtc.disconnect();
                    break;
                }
            }
        }
        if !c.rtc.is_alive() {
            self.remove_connection(conn);
            self.events.push_back(SfuEvent::Closed(conn));
        }
    }

    fn process_work(&mut self, now: Instant) {
        while let Some((conn, event)) = self.work.pop_front() {
            match event {
                Event::RtpPacket(pkt) => self.forward(now, conn, pkt),
                Event::KeyframeRequest(req) => {
                    // For the layer the subscriber receives (or is moving to).
                    let wanted = self.conns.get(&conn).and_then(|c| {
                        let idx = c.slot_by_mid(req.mid)?;
                        let s = &c.slots[idx];
                        if s.dir != SlotDirection::Receive {
                            return None;
                        }
                        Some((s.track?, s.current.or(s.target)?))
                    });
                    if let Some((track, layer)) = wanted {
                        self.request_keyframe(now, track, layer);
                    }
                }
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                    let bps = estimate.as_u64();
                    if let Some(c) = self.conns.get_mut(&conn).filter(|c| !c.feedback.without()) {
                        // Small moves are noise; choosing again costs a walk
                        // through the subscriber's videos.
                        let moved = c.estimate.is_none_or(|e| bps.abs_diff(e) * 20 > e);
                        if moved {
                            c.estimate = Some(bps);
                            self.allocate(conn);
                        }
                    }
                }
                Event::PeerStats(st) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        let rtt = st.rtt.or_else(|| {
                            st.selected_candidate_pair
                                .as_ref()
                                .and_then(|p| p.current_round_trip_time)
                        });
                        let q = c.quality.on_stats(
                            st.ingress_loss_fraction,
                            st.egress_loss_fraction,
                            rtt,
                            None,
                        );
                        if let Some(quality) = q {
                            self.events.push_back(SfuEvent::Quality { conn, quality });
                        }
                        // A subscriber's estimate is only as good as its
                        // feedback: without any, a small fixed budget.
                        let reported = st.egress_loss_fraction.is_some();
                        let estimate = match c.feedback.on_stats(st.bytes_tx, reported) {
                            Some(FeedbackChange::Stopped) => Some(NO_FEEDBACK_ESTIMATE),
                            Some(FeedbackChange::Resumed) => {
                                Some(st.bwe_tx.map_or(INITIAL_ESTIMATE, |b| b.as_u64()))
                            }
                            None => None,
                        };
                        if let Some(bps) = estimate {
                            info!(conn = %conn, bps, reported, "congestion feedback changed");
                            c.estimate = Some(bps);
                            self.allocate(conn);
                        }
                    }
                }
                Event::MediaIngressStats(st) => {
                    // Jitter of the participant's audio (48 kHz clock): video
                    // frames leave in bursts, and a paused simulcast layer's
                    // figure is stale (it read as 0.8 s on a quiet loopback).
                    if let Some(c) = self.conns.get_mut(&conn) {
                        let audio = c
                            .slot_by_mid(st.mid)
                            .is_some_and(|i| c.slots[i].kind.is_audio());
                        if !audio {
                            continue;
                        }
                        let jitter = Duration::from_millis(u64::from(st.jitter) / 48);
                        if let Some(quality) = c.quality.on_stats(None, None, None, Some(jitter)) {
                            self.events.push_back(SfuEvent::Quality { conn, quality });
                        }
                    }
                }
                Event::Connected => {
                    info!(conn = %conn, "media connected");
                    self.events.push_back(SfuEvent::Connected(conn));
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    self.events.push_back(SfuEvent::Disconnected(conn));
                }
                _ => {}
            }
        }
    }

    /// Ask `track`'s publisher for a keyframe on `layer`: at most one
    /// outstanding request per layer (see [`KEYFRAME_REQUEST_INTERVAL`]).
    fn request_keyframe(&mut self, now: Instant, track: TrackId, layer: u8) {
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        let Some(l) = p.layers.get_mut(usize::from(layer)) else {
            return; // not video
        };
        if l.keyframe_asked.is_some_and(|t| {
            let since = now.saturating_duration_since(t);
            since < KEYFRAME_REQUEST_INTERVAL
        }) {
            return;
        }
        if l.last_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_MIN_GAP)
        {
            return;
        }
        let rid = l.rid;
        let Some(conn) = p.conn else { return };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(mid) = c
            .slot_of(track, SlotDirection::Send)
            .and_then(|i| c.slots[i].mid)
        else {
            return;
        };
        let mut api = c.rtc.direct_api();
        // A publisher that answered without simulcast sends without a rid.
        let rx = match rid {
            Some(_) if api.stream_rx_by_mid(mid, rid).is_some() => api.stream_rx_by_mid(mid, rid),
            _ => api.stream_rx_by_mid(mid, None),
        };
        let Some(rx) = rx else {
            return; // no media yet; the first frame will be a keyframe anyway
        };
        rx.request_keyframe(KeyframeRequestKind::Pli);
        l.keyframe_asked = Some(now);
        l.last_request = Some(now);
        self.stats.keyframe_requests += 1;
        self.drain(conn);
    }

    /// Choose again which layer `conn` receives of each video, from its
    /// downlink estimate, what it shows at which size, and priorities.
    fn allocate(&mut self, conn: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut audio = 0u64;
        let mut videos = Vec::new();
        let mut wants = Vec::new();
        for (i, s) in c.slots.iter().enumerate() {
            if s.dir != SlotDirection::Receive {
                continue;
            }
            if s.kind.is_audio() {
                // A voice slot costs only while it carries someone, and a
                // silent microphone (DTX) next to nothing.
                audio += s
                    .track
                    .and_then(|t| self.producers.get(&t))
                    .map_or(0, |p| p.audio_rate.reserve());
                continue;
            }
            let Some(p) = s.track.and_then(|t| self.producers.get(&t)) else {
                continue;
            };
            let overloaded = p.overloaded_until.is_some_and(|t| now < t);
            let mut layers = layer_choices(&p.layers, now);
            if overloaded {
                // The server is behind: nothing above the lowest layer.
                if let Some(low) = layers.iter().position(|l| l.usable) {
                    layers
                        .iter_mut()
                        .skip(low + 1)
                        .for_each(|l| l.usable = false);
                }
            }
            videos.push(i);
            wants.push(Want {
                priority: p.priority,
                view: s.view,
                layers,
                adaptive: p.simulcast,
                previous: s.target,
            });
        }
        let estimate = c.estimate.unwrap_or(INITIAL_ESTIMATE);
        let budget = estimate.saturating_sub(audio);
        let a = allocate(&wants, budget);
        let mut changed = Vec::new();
        for (k, &i) in videos.iter().enumerate() {
            let slot = &mut c.slots[i];
            if a.layers[k].is_none() {
                // Shown again later, it starts from a keyframe.
                slot.current = None;
            }
            if slot.target != a.layers[k] {
                slot.target = a.layers[k];
                if let Some(t) = slot.track {
                    changed.push((t, slot.target, slot.current.is_some() && slot.live));
                }
            }
        }
        // Probe for what the views want, with the headroom a climb needs:
        // str0m probes up to it while the estimate is below (and again when it
        // rises), so a subscriber climbs when its link allows. Never for more:
        // every probe is padding sent to this subscriber, and asking for 5
        // Mbit/s whatever the views wanted kept every connection probing.
        let desired = (a.desired + audio) * UPGRADE_HEADROOM_PCT / 100;
        if desired != c.desired {
            c.desired = desired;
            c.rtc
                .bwe()
                .set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
        }
        for (track, target, sending) in changed {
            self.update_publisher_layers(track, now);
            // A switch waits for the new layer's keyframe: ask for one.
            if let (Some(layer), true) = (target, sending) {
                self.request_keyframe(now, track, layer);
            }
        }
    }

    /// Tell `track`'s publisher to send again a layer somebody now needs (at
    /// once), or to pause one nobody needed for a while.
    fn update_publisher_layers(&mut self, track: TrackId, now: Instant) {
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if !p.simulcast || p.conn.is_none() {
            return;
        }
        let mut needed = [false; 3];
        for &(sub, idx) in &p.consumers {
            let Some(s) = self.conns.get(&sub).map(|c| &c.slots[idx]) else {
                continue;
            };
            // The layer being sent counts while a switch away from it waits
            // for the new one's keyframe; a hidden video needs nothing.
            if s.target.is_none() {
                continue;
            }
            for l in [s.target, s.current].into_iter().flatten() {
                if let Some(n) = needed.get_mut(usize::from(l)) {
                    *n = true;
                }
            }
        }
        // While anyone watches, the lowest layer is never paused: it is cheap,
        // and it is what a publisher whose uplink weakens falls back to
        // (without it, Chromium sends a higher layer scaled down).
        if needed.iter().any(|&n| n) {
            needed[0] = true;
        }
        let mut changed = false;
        for (l, &need) in p.layers.iter_mut().zip(&needed) {
            if need {
                l.unneeded_since = None;
                if l.paused {
                    l.paused = false;
                    l.resumed_at = Some(now);
                    changed = true;
                }
            } else if !l.paused {
                let since = *l.unneeded_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= PAUSE_UNNEEDED_AFTER {
                    l.paused = true;
                    // Gone before it was paused: its publisher could not send it.
                    if !l.arriving(now) {
                        l.retry_at = Some(now + LAYER_RETRY);
                    }
                    changed = true;
                }
            }
        }
        if changed {
            let active = p
                .layers
                .iter()
                .filter(|l| !l.paused)
                .filter_map(|l| l.rid.map(|r| r.to_string()))
                .collect();
            self.events
                .push_back(SfuEvent::VideoLayers { track, active });
        }
    }

    /// Every [`LAYER_TICK`]: measure layers, choose every subscriber's layers
    /// again (layers come and go with publishers' uplinks), pause what nobody
    /// needs, and report cameras that stalled.
    fn layer_tick(&mut self, now: Instant) {
        let mut tracks = Vec::new();
        for (&track, p) in self.producers.iter_mut() {
            if p.kind != TrackKind::Video {
                p.audio_rate.on_window(LAYER_TICK);
                continue;
            }
            for l in &mut p.layers {
                l.on_window(LAYER_TICK);
            }
            tracks.push(track);
        }
        let subscribers: BTreeSet<ConnId> = tracks
            .iter()
            .flat_map(|t| self.producers[t].consumers.iter().map(|&(c, _)| c))
            .collect();
        for conn in subscribers {
            self.allocate(conn);
        }
        for track in tracks {
            self.update_publisher_layers(track, now);
            let p = self.producers.get_mut(&track).expect("listed above");
            let watched = p.consumers.iter().any(|&(sub, idx)| {
                self.conns
                    .get(&sub)
                    .is_some_and(|c| c.slots[idx].target.is_some() || c.slots[idx].view.is_none())
            });
            let last = p
                .layers
                .iter()
                .filter(|l| !l.paused)
                .filter_map(|l| l.last_packet.max(l.resumed_at))
                .max()
                .unwrap_or(p.since)
                .max(p.since);
            let stalled = watched
                && !p.paused
                && p.conn.is_some()
                && p.layers.iter().any(|l| !l.paused)
                && now.saturating_duration_since(last) >= STALL_AFTER;
            if stalled && !p.stalled {
                p.stalled = true;
                self.events.push_back(SfuEvent::VideoStalled {
                    track,
                    stalled: true,
                });
            }
        }
    }

    /// The hot path: one incoming RTP packet to every subscriber of its track.
    fn forward(&mut self, now: Instant, conn: ConnId, pkt: RtpPacket) {
        self.stats.rtp_in += 1;
        if pkt.payload.is_empty() || !self.media_pts.contains(&pkt.header.payload_type) {
            return; // padding/probes and anything not negotiated as media
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let (idx, layer) = match c.ssrc_slot.get(&ssrc) {
            Some(&found) => found,
            None => {
                let Some((mid, rid)) = c
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| (s.mid(), s.rid()))
                else {
                    return;
                };
                let Some(i) = c.slot_by_mid(mid) else { return };
                // Simulcast layers by rid; anything else is the only layer.
                let layer = rid
                    .and_then(|r| SIMULCAST_RIDS.iter().position(|x| **x == *r))
                    .unwrap_or(0) as u8;
                c.ssrc_slot.insert(ssrc, (i, layer));
                (i, layer)
            }
        };
        let slot = &c.slots[idx];
        let Some(track) = slot.track.filter(|_| slot.dir == SlotDirection::Send) else {
            // Media on an m-line that publishes nothing (unpublished, or never allowed).
            self.stats.rtp_dropped_unpublished += 1;
            return;
        };
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if p.conn != Some(conn) {
            return;
        }
        if p.paused {
            self.stats.rtp_dropped_paused += 1;
            return;
        }
        let kind = p.kind;
        if kind.is_audio() {
            p.audio_rate.on_packet(pkt.payload.len());
        }
        // Video is VP8 (the only video codec offered).
        let vp8 = (kind == TrackKind::Video)
            .then(|| Vp8Descriptor::parse(&pkt.payload).ok())
            .flatten();
        let keyframe = vp8.is_some_and(|d| d.starts_keyframe(&pkt.payload));
        if let Some(l) = p.layers.get_mut(usize::from(layer)) {
            let new_layer = !l.arriving(now);
            l.on_packet(now, pkt.payload.len());
            if keyframe {
                l.keyframe_asked = None;
                if let Some(size) = vp8_keyframe_size(&pkt.payload) {
                    l.size = Some(size);
                }
            }
            if new_layer && p.simulcast {
                // A layer (re)appears: subscribers may want it, starting with
                // this packet (a layer starts with a keyframe).
                let subs: Vec<ConnId> = p.consumers.iter().map(|&(c, _)| c).collect();
                for sub in subs {
                    self.allocate(sub);
                }
            }
        }
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if p.stalled {
            p.stalled = false;
            self.events.push_back(SfuEvent::VideoStalled {
                track,
                stalled: false,
            });
        }
        let mut ext = ExtensionValues::default();
        // Packets without a level count as voice: we cannot tell otherwise.
        let mut voiced = true;
        if kind.is_audio() {
            if let Some(level) = pkt.header.ext_vals.audio_level {
                let activity = pkt.header.ext_vals.voice_activity;
                ext.audio_level = Some(level);
                ext.voice_activity = activity;
                voiced = p.speaking.is_voice(level, activity);
                if let Some(speaking) = p.speaking.on_packet(now, voiced) {
                    self.events
                        .push_back(SfuEvent::Speaking { track, speaking });
                }
            }
        } else {
            ext.video_orientation = pkt.header.ext_vals.video_orientation;
        }
        // Only the packets of the datagram being received have a known age, and
        // only video is dropped for it: audio is small and cheap, and a voice
        // breaking up is the first thing people notice. Video is judged by frame:
        // once a frame's first packet went out, the rest follow (a keyframe's
        // tail waits longest; dropping it would freeze the video for good
        // whenever a keyframe takes longer than the bound to forward).
        let late = kind == TrackKind::Video
            && self
                .arrived
                .is_some_and(|a| now.saturating_duration_since(a) > MAX_MEDIA_AGE)
            && p.frame_out != Some(pkt.header.timestamp);
        if late {
            self.stats.rtp_dropped_late += 1;
            // The frame is broken for everyone on this layer: nothing more of it
            // until a keyframe. The first packet on time asks for one (below):
            // not now, while the server is behind, as keyframes are the largest
            // frames. Until the server catches up, subscribers of a simulcast
            // camera move down to its lowest layer rather than stop.
            p.frame_out = None;
            if p.simulcast {
                p.overloaded_until = Some(now + LAYER_TICK * 4);
            }
            for &(sub, slot_idx) in &p.consumers {
                if let Some(c) = self.conns.get_mut(&sub) {
                    let s = &mut c.slots[slot_idx];
                    if s.current == Some(layer) {
                        s.current = None;
                    }
                }
            }
            return;
        }
        if kind == TrackKind::Video {
            p.frame_out = Some(pkt.header.timestamp);
        }
        let out = Outgoing {
            // Track, publisher connection and SSRC: two publishers' SSRCs may be
            // equal; each simulcast layer has its own.
            source: (u128::from(track.0) << 64)
                | (u128::from(p.generation) << 32)
                | u128::from(*ssrc),
            kind,
            pkt: &pkt,
            vp8,
            red_primary: OnceCell::new(),
            ext,
            now,
        };
        let consumers = std::mem::take(&mut p.consumers);
        let listeners = std::mem::take(&mut p.listeners);
        let mut want_keyframe = false;
        for &(sub, slot_idx) in &consumers {
            let Some(sc) = self.conns.get_mut(&sub) else {
                continue;
            };
            let slot = &mut sc.slots[slot_idx];
            if slot.track != Some(track) || !slot.live {
                continue;
            }
            let starts = if kind == TrackKind::Video {
                match video_verdict(slot, layer, keyframe, out.source) {
                    Verdict::Skip => continue,
                    Verdict::Send => false,
                    Verdict::Start => true,
                    Verdict::WantKeyframe => {
                        want_keyframe = true;
                        continue;
                    }
                }
            } else {
                false
            };
            if out.write(sc, slot_idx) {
                if starts {
                    let slot = &mut sc.slots[slot_idx];
                    if slot.current.is_some_and(|c| c != layer) {
                        self.stats.layer_switches += 1;
                    }
                    slot.current = Some(layer);
                }
                self.stats.rtp_forwarded += 1;
                queue_drain(sc, &mut self.to_drain, sub);
            }
        }
        for &sub in &listeners {
            let Some(sc) = self.conns.get_mut(&sub) else {
                continue;
            };
            let Some((slot_idx, taken)) = sc.voice_slot_for(track, voiced, now) else {
                continue; // others are talking in every slot
            };
            if taken {
                let mid = sc.slots[slot_idx].mid.map(|m| m.to_string());
                self.events.push_back(SfuEvent::VoiceSlot {
                    conn: sub,
                    mid: mid.unwrap_or_default(),
                    track: Some(track),
                });
            }
            if out.write(sc, slot_idx) {
                self.stats.rtp_forwarded += 1;
                queue_drain(sc, &mut self.to_drain, sub);
            }
        }
        if let Some(p) = self.producers.get_mut(&track) {
            // Subscriptions made while forwarding (none today) are kept.
            let added = std::mem::replace(&mut p.consumers, consumers);
            p.consumers.extend(added);
            let added = std::mem::replace(&mut p.listeners, listeners);
            p.listeners.extend(added);
        }
        if want_keyframe {
            self.request_keyframe(now, track, layer);
        }
    }
}

/// What to do with a video packet of `layer` for one subscriber's slot.
enum Verdict {
    /// Forward it on the layer being sent.
    Send,
    /// A keyframe of the layer to send: the slot starts (or switches to) it.
    Start,
    /// The slot waits for a keyframe of this layer: ask for one.
    WantKeyframe,
    /// Not for this subscriber (another layer, or nothing to send).
    Skip,
}

fn video_verdict(slot: &Slot, layer: u8, keyframe: bool, source: u128) -> Verdict {
    let Some(target) = slot.target else {
        return Verdict::Skip;
    };
    let on_current = slot.current == Some(layer) && slot.rewriter.is_current(source);
    if layer == target {
        if on_current {
            Verdict::Send
        } else if keyframe {
            Verdict::Start
        } else {
            Verdict::WantKeyframe
        }
    } else if on_current {
        // The old layer goes on until the new one's keyframe: no freeze.
        Verdict::Send
    } else {
        Verdict::Skip
    }
}

/// Queue a subscriber for draining once after this batch of input.
fn queue_drain(c: &mut Connection, to_drain: &mut VecDeque<ConnId>, conn: ConnId) {
    if !c.written {
        c.written = true;
        to_drain.push_back(conn);
    }
}

/// One incoming packet on its way out to subscribers.
struct Outgoing<'a> {
    /// The source's identity for the rewriter.
    source: u128,
    kind: TrackKind,
    pkt: &'a RtpPacket,
    vp8: Option<Vp8Descriptor>,
    /// A RED packet's primary block, for subscribers without RED (made once,
    /// when the first of them needs it).
    red_primary: OnceCell<Option<(Pt, Arc<[u8]>)>>,
    ext: ExtensionValues,
    now: Instant,
}

impl Outgoing<'_> {
    fn red_primary(&self) -> Option<&(Pt, Arc<[u8]>)> {
        self.red_primary
            .get_or_init(|| {
                let (pt, range) = red_primary(&self.pkt.payload)?;
                Some((Pt::from(pt), Arc::from(&self.pkt.payload[range])))
            })
            .as_ref()
    }

    /// Rewrite the packet for one slot of a subscriber and hand it to its `Rtc`.
    /// False if nothing was written (slot not negotiated, or a late packet from
    /// before a change of source).
    fn write(&self, sc: &mut Connection, slot_idx: usize) -> bool {
        let slot = &mut sc.slots[slot_idx];
        let Some(mid) = slot.mid else {
            return false;
        };
        let pkt = self.pkt;
        let mut api = sc.rtc.direct_api();
        // Checked before rewriting: a packet that cannot go out must not move
        // the subscriber's numbering on.
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        // Forwarded video is not paced: the layer choice keeps it within the
        // subscriber's estimate, and pacing it cost a timeout per packet
        // (BENCHMARKS.md 2026-12-02). str0m's pacer still times its probes.
        tx.set_unpaced(true);
        let Some((seq, ts)) = slot.rewriter.rewrite(
            self.source,
            *pkt.seq_no,
            pkt.header.timestamp,
            self.now,
            self.kind.clock_rate(),
        ) else {
            return false;
        };
        let (pt, payload) = if *pkt.header.payload_type == RED_PT && !sc.red {
            match self.red_primary() {
                Some((pt, p)) => (*pt, p.clone()),
                None => return false,
            }
        } else {
            (pkt.header.payload_type, pkt.payload.clone())
        };
        let mut w = RtpWrite::new(pt, SeqNo::from(seq), ts, pkt.timestamp, payload)
            .marker(pkt.header.marker)
            .ext_vals(self.ext.clone())
            .nackable(self.kind == TrackKind::Video);
        if let Some(d) = &self.vp8 {
            if let Some(patch) = slot.picture_ids.rewrite(self.source, &pkt.payload, d) {
                w = w.vp8_patch(patch);
            }
        }
        tx.write_rtp(w);
        true
    }
}

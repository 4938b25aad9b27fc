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

use crate::climb::limit_climbs;
pub use crate::connection::SlotDirection;
use crate::connection::{Connection, Slot};
use crate::feedback::{FeedbackChange, NO_FEEDBACK_ESTIMATE};
use crate::layers::{
    allocate, allocate_holding, layer_choices, AudioRate, LayerIn, Priority, View, Want,
    SIMULCAST_RIDS, UPGRADE_HEADROOM_PCT,
};
use crate::offer_candidates::candidates_on_every_m_line;
use crate::quality::Quality;
use crate::red::red_primary;
use crate::route::{Route, RouteTable};
use crate::transport::Transport;
use crate::vp8::vp8_keyframe_size;
use crate::{ConnId, SpeakingDetector, TrackId};

mod adapt;
mod forward;
mod io;
mod negotiate;
pub(crate) mod relay;

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
/// Loss (per thousand, smoothed) from which a subscriber keeps redundant
/// audio even when its link is too narrow for every video. Below it Opus's
/// own concealment carries speech, and a camera's lowest layer is worth more
/// than the redundancy (at 1 %, a narrow link's own congestion kept RED on,
/// whose extra load kept the congestion going: issue 15).
const RED_NEEDED_LOSS_PERMILLE: u32 = 50;
/// Loss (per thousand, smoothed) from which redundant audio comes back
/// whatever it costs the videos: heavy loss is the link's own, not the
/// congestion that RED would add to.
const RED_HEAVY_LOSS_PERMILLE: u32 = 100;
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

/// How one connection is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnOptions {
    /// Offer redundant audio (RED, RFC 2198). Off in end-to-end encrypted
    /// meetings: a browser encrypts the RED payload as a whole, so the SFU
    /// could not take the redundancy off for a subscriber without RED.
    pub redundant_audio: bool,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            redundant_audio: true,
        }
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
    /// A relay to an edge ([`Sfu::relay_offer`]): what its link lost of what
    /// was sent (from the edge's feedback) and its round trip, about once a
    /// second.
    RelayLink {
        conn: ConnId,
        loss: Option<f32>,
        rtt: Option<Duration>,
    },
    /// The answer to an edge's offer given by [`Command::RelayOffer`]
    /// (driven SFUs only; a sans-IO caller has it from
    /// [`Sfu::relay_offer`]).
    ///
    /// [`Command::RelayOffer`]: crate::driver::Command::RelayOffer
    RelayAnswer { conn: ConnId, sdp: String },
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
    /// Packets sent on relays to edges (each counts once per edge).
    pub rtp_relayed: u64,
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
    /// UDP payload bytes received (set by the driver).
    pub bytes_in: u64,
    /// Media bytes sent: UDP payload the kernel accepted plus frames queued on
    /// ICE-TCP connections (set by the driver).
    pub bytes_out: u64,
    /// Time the worker spent working rather than waiting for input, in
    /// nanoseconds since it started (set by the driver): its busy ratio is
    /// the growth of this over wall-clock time.
    pub busy_ns: u64,
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
    /// Relays to edges (connection and slot): every layer goes to each.
    relays: Vec<(ConnId, usize)>,
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

    fn rtc_config(&self, options: ConnOptions) -> RtcConfig {
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
        if options.redundant_audio {
            cfg.codec_config().set_red_pt(Codec::Opus, RED_PT.into());
        }
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
        self.add_connection_with(now, id, ConnOptions::default())
    }

    /// [`Sfu::add_connection`] set up as `options` say.
    pub fn add_connection_with(
        &mut self,
        now: Instant,
        id: ConnId,
        options: ConnOptions,
    ) -> Result<(), SfuError> {
        self.now = self.now.max(now);
        if self.conns.contains_key(&id) {
            return Err(SfuError::DuplicateConnection);
        }
        let mut rtc = self.rtc_config(options).build(now);
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
        // Every connection's media payload types (with RED or without).
        let pts: Vec<Pt> = rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| matches!(p.spec().codec, Codec::Opus | Codec::Vp8))
            .flat_map(|p| [Some(p.pt()), p.red()])
            .flatten()
            .collect();
        for pt in pts {
            if !self.media_pts.contains(&pt) {
                self.media_pts.push(pt);
            }
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
                SlotDirection::Receive => {
                    p.consumers.retain(|&(c2, i)| (c2, i) != (conn, idx));
                    p.relays.retain(|&(c2, i)| (c2, i) != (conn, idx));
                }
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
        // A relay answers its edge's offers; it publishes nothing.
        if self.conns.get(&conn).is_none_or(|c| c.relay.is_some()) {
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
                    relays: Vec::new(),
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
        // The edge offers again without it (the layer above tells it).
        for (conn, idx) in p.relays {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.slots[idx].track = None;
            }
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
            .filter(|c| c.relay.is_none())
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
        let Some(c) = self.conns.get_mut(&conn).filter(|c| c.relay.is_none()) else {
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
        if self.is_relay(conn) {
            return; // its edge offers again without the track
        }
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
}

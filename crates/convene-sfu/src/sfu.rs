//! The sans-IO SFU: connections, published tracks (producers) and subscriptions.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, RtcConfig};
use tracing::{debug, info, warn};

use crate::connection::Connection;
pub use crate::connection::SlotDirection;
use crate::downstream_twcc::without_downstream_twcc;
use crate::offer_candidates::candidates_on_every_m_line;
use crate::route::{Route, RouteTable};
use crate::transport::Transport;
use crate::{is_vp8_keyframe_start, ConnId, SpeakingDetector, TrackId};

/// Keyframe requests to one publisher are sent at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// Outgoing video packets kept per stream to answer NACKs: about 0.5 s of
/// 2.5 Mbit/s video, 1.6 s of 500 kbit/s, several round trips either way (a
/// retransmission later than that arrives after the receiver gave up on the
/// frame; it asks for a keyframe instead). Each entry costs about 520 bytes per
/// subscribed video stream (measured at fan-out 500: 256 entries made 368 KiB
/// per participant, 128 made 302 KiB, 64 made 270 KiB; str0m's default of 1000
/// made 570 KiB).
const SEND_BUFFER_VIDEO: usize = 128;
/// Immediate timeouts answered in one drain before deferring to the timer heap.
const MAX_IMMEDIATE_TIMEOUTS: u32 = 4;
/// How often speaking indicators are re-checked for publishers that went quiet.
const SPEAKING_TICK: Duration = Duration::from_millis(200);
/// Voices a subscriber hears at once: each connection gets at most this many voice
/// slots, however many people publish a microphone. Three people talking over each
/// other is already more than anyone follows; a fourth waits for a pause. Each
/// outgoing audio stream costs the SFU about 13 KiB of state per subscriber, and a
/// packet sent per 20 ms.
pub const VOICE_SLOTS: usize = 3;
/// Media that waited longer than this between the kernel receiving it and the SFU
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
    /// RTP not forwarded because it waited longer than [`MAX_MEDIA_AGE`].
    pub rtp_dropped_late: u64,
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
    last_keyframe_request: Option<Instant>,
    speaking: SpeakingDetector,
    /// Set by the layer above (a host muted it): packets arrive but go nowhere.
    paused: bool,
    /// Video: the RTP timestamp of the frame whose first packet was forwarded in
    /// time; the rest of that frame is forwarded however late.
    frame_out: Option<u32>,
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
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_send_buffer_video(SEND_BUFFER_VIDEO);
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
                .map(|p| p.pt())
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

    /// `conn` publishes `track`. If the track exists (its publisher reconnected),
    /// it moves to this connection and its subscribers carry on seamlessly.
    pub fn publish(
        &mut self,
        conn: ConnId,
        track: TrackId,
        kind: TrackKind,
    ) -> Result<(), SfuError> {
        if !self.conns.contains_key(&conn) {
            return Err(SfuError::UnknownConnection);
        }
        if let Some(p) = self.producers.get_mut(&track) {
            if p.kind != kind {
                return Err(SfuError::UnknownTrack);
            }
            if p.conn == Some(conn) {
                return Ok(());
            }
            let old = p.conn.replace(conn);
            p.generation = p.generation.wrapping_add(1);
            if let Some(old) = old {
                self.release_slot(old, track, SlotDirection::Send);
            }
        } else {
            self.producers.insert(
                track,
                Producer {
                    kind,
                    conn: Some(conn),
                    generation: 0,
                    consumers: Vec::new(),
                    listeners: Vec::new(),
                    last_keyframe_request: None,
                    speaking: SpeakingDetector::default(),
                    paused: false,
                    frame_out: None,
                },
            );
        }
        let c = self.conns.get_mut(&conn).expect("checked above");
        let idx = c.free_slot(kind, SlotDirection::Send);
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
        let idx = c.free_slot(kind, SlotDirection::Receive);
        let slot = &mut c.slots[idx];
        slot.track = Some(track);
        slot.needs_keyframe = kind == TrackKind::Video;
        c.dirty = true;
        self.to_negotiate.insert(conn);
        let p = self.producers.get_mut(&track).expect("checked above");
        p.consumers.push((conn, idx));
        Ok(())
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
        // Every outgoing video stream starts with a keyframe.
        let wanted: Vec<TrackId> = c
            .slots
            .iter()
            .filter(|s| s.dir == SlotDirection::Receive && s.kind == TrackKind::Video)
            .filter_map(|s| s.track)
            .collect();
        self.drain(conn);
        for track in wanted {
            self.request_keyframe(now, track);
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
            match slot.mid {
                None if active => {
                    let mid = api.add_media(
                        slot.kind.media_kind(),
                        slot.str0m_direction(),
                        None,
                        None,
                        None,
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
                })
            })
            .collect();
        let sending_mids = c
            .slots
            .iter()
            .filter(|s| s.dir == SlotDirection::Receive)
            .filter_map(|s| Some(s.mid?.to_string()))
            .collect();
        let sdp = without_downstream_twcc(&offer.to_sdp_string(), &sending_mids);
        let sdp = candidates_on_every_m_line(&sdp);
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
        while let Some(Reverse((at, conn))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
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
        let t = self.timers.peek().map(|Reverse((t, _))| *t);
        t.map_or(self.next_speaking_tick, |t| t.min(self.next_speaking_tick))
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
                    let track = self.conns.get(&conn).and_then(|c| {
                        let idx = c.slot_by_mid(req.mid)?;
                        let s = &c.slots[idx];
                        (s.dir == SlotDirection::Receive)
                            .then_some(s.track)
                            .flatten()
                    });
                    if let Some(track) = track {
                        self.request_keyframe(now, track);
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

    fn request_keyframe(&mut self, now: Instant, track: TrackId) {
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if p.kind != TrackKind::Video {
            return;
        }
        if p.last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
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
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return; // no media yet; the first frame will be a keyframe anyway
        };
        rx.request_keyframe(KeyframeRequestKind::Pli);
        p.last_keyframe_request = Some(now);
        self.drain(conn);
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
        let idx = match c.ssrc_slot.get(&ssrc) {
            Some(&i) => i,
            None => {
                let Some(mid) = c.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else {
                    return;
                };
                let Some(i) = c.slot_by_mid(mid) else { return };
                c.ssrc_slot.insert(ssrc, i);
                i
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
        // Only the packets of the datagram being received have a known age. Video
        // is judged by frame: once a frame's first packet went out, the rest follow
        // (a keyframe's tail waits longest; dropping it would freeze the video for
        // good whenever a keyframe takes longer than the bound to forward).
        let late = self
            .arrived
            .is_some_and(|a| now.saturating_duration_since(a) > MAX_MEDIA_AGE)
            && !(kind == TrackKind::Video && p.frame_out == Some(pkt.header.timestamp));
        if late {
            self.stats.rtp_dropped_late += 1;
            if kind == TrackKind::Video {
                // The frame is broken for everyone: nothing more until a keyframe.
                // The first packet on time asks for one (`want_keyframe` below):
                // not now, while the server is behind, as keyframes are the
                // largest frames.
                p.frame_out = None;
                for &(sub, slot_idx) in &p.consumers {
                    if let Some(c) = self.conns.get_mut(&sub) {
                        c.slots[slot_idx].needs_keyframe = true;
                    }
                }
            }
            // A late voice neither takes nor keeps a voice slot (its hold can
            // lapse if it stays late for a second): the listeners are not visited.
            return;
        }
        if kind == TrackKind::Video {
            p.frame_out = Some(pkt.header.timestamp);
        }
        let out = Outgoing {
            // Track, publisher connection and SSRC: two publishers' SSRCs may be equal.
            source: (u128::from(track.0) << 64)
                | (u128::from(p.generation) << 32)
                | u128::from(*ssrc),
            kind,
            pkt: &pkt,
            ext,
            now,
        };
        let keyframe = kind == TrackKind::Video && is_vp8_keyframe_start(&pkt.payload);
        let consumers = std::mem::take(&mut p.consumers);
        let listeners = std::mem::take(&mut p.listeners);
        let mut want_keyframe = false;
        for &(sub, slot_idx) in &consumers {
            let Some(sc) = self.conns.get_mut(&sub) else {
                continue;
            };
            let slot = &mut sc.slots[slot_idx];
            if slot.track != Some(track) || slot.mid.is_none() {
                continue;
            }
            if kind == TrackKind::Video
                && (slot.needs_keyframe || !slot.rewriter.is_current(out.source))
            {
                if !keyframe {
                    slot.needs_keyframe = true;
                    want_keyframe = true;
                    continue;
                }
                slot.needs_keyframe = false;
            }
            if out.write(sc, slot_idx) {
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
            self.request_keyframe(now, track);
        }
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
    ext: ExtensionValues,
    now: Instant,
}

impl Outgoing<'_> {
    /// Rewrite the packet for one slot of a subscriber and hand it to its `Rtc`.
    /// False if nothing was written (slot not negotiated, or a late packet from
    /// before a change of source).
    fn write(&self, sc: &mut Connection, slot_idx: usize) -> bool {
        let slot = &mut sc.slots[slot_idx];
        let Some(mid) = slot.mid else {
            return false;
        };
        let pkt = self.pkt;
        let Some((seq, ts)) = slot.rewriter.rewrite(
            self.source,
            *pkt.seq_no,
            pkt.header.timestamp,
            self.now,
            self.kind.clock_rate(),
        ) else {
            return false;
        };
        let mut api = sc.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        tx.write_rtp(
            RtpWrite::new(
                pkt.header.payload_type,
                SeqNo::from(seq),
                ts,
                pkt.timestamp,
                pkt.payload.clone(),
            )
            .marker(pkt.header.marker)
            .ext_vals(self.ext.clone())
            .nackable(self.kind == TrackKind::Video),
        );
        true
    }
}

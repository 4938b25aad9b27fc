//! An in-memory network for the media core: one [`Sfu`] and str0m peers that
//! exchange datagrams through queues, with no sockets and no clock but the one we
//! advance. Used by the SFU's own tests and its criterion benchmarks.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convene_sfu::{ConnId, ConnOptions, Sfu, SfuConfig, SfuEvent, TrackId, TrackKind, Transport};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

pub const SFU_ADDR: &str = "10.0.0.1:5000";
/// A second SFU's, fed by the first over a relay (cascading).
pub const EDGE_ADDR: &str = "10.0.9.1:5000";
/// The edge's connection that receives the relayed tracks, and the host's
/// relay connection that sends them.
pub const EDGE_UPLINK: ConnId = ConnId(1000);
pub const HOST_RELAY: ConnId = ConnId(1000);
/// The SFU's passive ICE-TCP candidate.
pub const SFU_TCP_ADDR: &str = "10.0.0.1:443";

pub struct Peer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub conn: ConnId,
    /// How this peer reaches the SFU (its only local candidate).
    pub transport: Transport,
    /// Datagrams (UDP) and frames (TCP) this peer sent.
    pub sent_udp: u64,
    pub sent_tcp: u64,
    pub connected: bool,
    /// RTP packets this peer received: (mid, extended seq, payload length).
    pub received: Vec<(Mid, u64, usize)>,
    /// Offer mids → (direction "send"/"receive", track).
    pub mids: HashMap<Mid, (bool, Option<TrackId>)>,
    /// Voice slots the SFU sends on, in offer order.
    pub voice_mids: Vec<Mid>,
    /// Received RTP packets that carried a transport-wide sequence number.
    pub twcc_numbered: usize,
    /// Whether any stats event reported loss on what this peer sent, which
    /// str0m knows only from transport-wide congestion feedback.
    pub got_twcc_feedback: bool,
    /// Keyframe requests (PLI/FIR) this peer received for what it sends.
    pub keyframe_requests: usize,
    /// The rid each of those named ("" for none).
    pub keyframe_request_rids: Vec<String>,
    /// Received packets that start a VP8 keyframe: (mid, extended seq).
    pub keyframe_starts: Vec<(Mid, u64)>,
    /// When the first packet arrived on each m-line.
    pub first_packet_at: HashMap<Mid, Instant>,
    /// Bytes of every datagram and frame delivered to this peer (media,
    /// padding, RTCP, ICE and DTLS).
    pub bytes_in: u64,
    /// Received VP8 packets' picture ids and TL0PICIDX, where they carry them
    /// (read here, not by the SFU's parser): (mid, extended seq, id, tl0).
    pub vp8_ids: Vec<(Mid, u64, Option<u16>, Option<u8>)>,
    /// Received audio packets: (payload type, payload).
    pub audio_in: Vec<(u8, Vec<u8>)>,
    /// Connected to the edge SFU, not the host.
    pub on_edge: bool,
}

impl Peer {
    fn new(rtc: Rtc, addr: SocketAddr, conn: ConnId, transport: Transport, on_edge: bool) -> Peer {
        Peer {
            rtc,
            addr,
            conn,
            transport,
            sent_udp: 0,
            sent_tcp: 0,
            connected: false,
            received: Vec::new(),
            mids: HashMap::new(),
            voice_mids: Vec::new(),
            twcc_numbered: 0,
            got_twcc_feedback: false,
            keyframe_requests: 0,
            keyframe_request_rids: Vec::new(),
            keyframe_starts: Vec::new(),
            first_packet_at: HashMap::new(),
            bytes_in: 0,
            vp8_ids: Vec::new(),
            audio_in: Vec::new(),
            on_edge,
        }
    }
}

/// A second SFU (see [`Net::cascade`]).
pub struct Edge {
    pub sfu: Sfu,
    pub addr: SocketAddr,
    /// Relay link figures reported by the host: (loss, round trip).
    pub links: Vec<(Option<f32>, Option<Duration>)>,
}

/// A VP8 payload descriptor's 15-bit (or 7-bit) PictureID and TL0PICIDX
/// (RFC 7741 §4.2).
fn vp8_ids(p: &[u8]) -> (Option<u16>, Option<u8>) {
    if p.len() < 2 || p[0] & 0x80 == 0 {
        return (None, None);
    }
    let (x, mut i) = (p[1], 2);
    let mut pid = None;
    if x & 0x80 != 0 && p.len() > i {
        if p[i] & 0x80 != 0 && p.len() > i + 1 {
            pid = Some(u16::from(p[i] & 0x7f) << 8 | u16::from(p[i + 1]));
            i += 2;
        } else {
            pid = Some(u16::from(p[i] & 0x7f));
            i += 1;
        }
    }
    let tl0 = (x & 0x40 != 0).then(|| p.get(i).copied()).flatten();
    (pid, tl0)
}

pub struct Net {
    pub sfu: Sfu,
    pub sfu_addr: SocketAddr,
    pub now: Instant,
    pub peers: Vec<Peer>,
    /// Datagrams (or TCP frames) on the wire: (transport, from, to, bytes).
    wire: VecDeque<(Transport, SocketAddr, SocketAddr, Vec<u8>)>,
    /// When set, datagrams from this peer are kept here instead of delivered.
    pub capture_from: Option<usize>,
    pub captured: Vec<Vec<u8>>,
    /// SFU output counted but not delivered (for benchmarks).
    pub discard_sfu_output: bool,
    pub sfu_datagrams_out: u64,
    /// `SfuEvent::VoiceSlot`s: (connection, mid, track).
    pub voice_events: Vec<(ConnId, String, Option<TrackId>)>,
    /// How long each datagram to the SFU waits in its socket before being read,
    /// as when the server falls behind.
    pub sfu_queued: Duration,
    /// Peers read the server's ICE candidates from the last m-line of each offer
    /// only, as a client that reads them per m-line may use another than the first.
    pub candidates_from_last_m_line: bool,
    /// SFU events taken so far.
    pub events_seen: usize,
    /// `SfuEvent::VideoLayers` seen: (track, rids the publisher should send).
    pub layer_events: Vec<(TrackId, Vec<String>)>,
    /// Other SFU events, as their debug text, for tests to look at.
    pub other_events: Vec<String>,
    /// Every offer the SFU made, to which connection, in order.
    pub offers: Vec<(ConnId, String)>,
    /// How long a client takes to answer an offer (the SFU gets the answer
    /// this much later; the client applies it at once).
    pub answer_delay: Duration,
    /// (when, connection, answer, to the edge rather than the host).
    answers: VecDeque<(Instant, ConnId, String, bool)>,
    /// Bottlenecks on the way from the SFU to peers, by peer index.
    downlinks: HashMap<usize, Downlink>,
    /// Peers whose downlink loses one datagram in n (random loss, not a
    /// queue's), and how many datagrams each was sent so far.
    downlink_loss: HashMap<usize, (u64, u64)>,
    /// A second SFU fed by the first, if any.
    pub edge: Option<Edge>,
    /// Datagrams from the host to the edge dropped on purpose: one in this many.
    pub relay_loss_one_in: Option<u64>,
    relay_datagrams: u64,
}

/// A bottleneck between the SFU and a peer, as tc's `tbf rate R latency L`:
/// datagrams leave at `bps` one after another; one that would wait longer
/// than `max_delay` behind the others is dropped.
struct Downlink {
    bps: u64,
    max_delay: Duration,
    /// When the last datagram queued will have left.
    busy_until: Instant,
    /// (arrival time, transport, from, to, bytes), in order.
    queue: VecDeque<(Instant, Transport, SocketAddr, SocketAddr, Vec<u8>)>,
    dropped: u64,
}

/// `sdp` with `a=candidate` and `a=end-of-candidates` lines left in the last media
/// section only.
pub fn candidates_in_last_m_line_only(sdp: &str) -> String {
    let last = sdp.rfind("\nm=").expect("a media section") + 1;
    let (head, tail) = sdp.split_at(last);
    let kept: String = head
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:") && !l.starts_with("a=end-of-candidates"))
        .collect();
    kept + tail
}

fn peer_rtc(now: Instant, addr: SocketAddr, transport: Transport, config: RtcConfig) -> Rtc {
    let mut rtc = config.build(now);
    let candidate = match transport {
        Transport::Udp => Candidate::host(addr, "udp").unwrap(),
        // A browser's TCP candidate: it connects out to the SFU's passive one.
        Transport::Tcp => Candidate::builder()
            .tcp()
            .host(addr)
            .tcptype(TcpType::Active)
            .build()
            .unwrap(),
    };
    rtc.add_local_candidate(candidate);
    rtc
}

/// A peer's usual str0m configuration: a browser's codecs and extensions.
fn peer_config() -> RtcConfig {
    RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_stats_interval(Some(Duration::from_secs(1)))
}

/// The configuration of a client that does not do transport-wide congestion
/// control: it never sends the feedback the SFU's estimate comes from.
pub fn without_congestion_feedback(config: RtcConfig) -> RtcConfig {
    let mut exts = ExtensionMap::empty();
    for (id, ext) in [
        (1, Extension::AudioLevel),
        (4, Extension::RtpMid),
        (10, Extension::RtpStreamId),
        (11, Extension::RepairedRtpStreamId),
    ] {
        exts.set(id, ext);
    }
    config.set_extension_map(exts)
}

fn proto(t: Transport) -> Protocol {
    match t {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    }
}

impl Net {
    pub fn new(peers: usize) -> Net {
        Net::with_transports(peers, |_| Transport::Udp)
    }

    /// `peers` peers, peer i reaching the SFU over `transport(i)` only. The SFU
    /// offers both its UDP and its TCP candidate to everyone.
    pub fn with_transports(peers: usize, transport: impl Fn(usize) -> Transport) -> Net {
        Net::with_configs(peers, transport, |_, c| c)
    }

    /// `peers` peers; peer i reaches the SFU over `transport(i)` and its
    /// str0m configuration is the usual one passed through `config(i, ..)`.
    pub fn with_configs(
        peers: usize,
        transport: impl Fn(usize) -> Transport,
        config: impl Fn(usize, RtcConfig) -> RtcConfig,
    ) -> Net {
        Net::with_options(peers, transport, config, |_| ConnOptions::default())
    }

    /// As [`Net::with_configs`], with peer i's SFU connection set up as `options(i)`.
    pub fn with_options(
        peers: usize,
        transport: impl Fn(usize) -> Transport,
        config: impl Fn(usize, RtcConfig) -> RtcConfig,
        options: impl Fn(usize) -> ConnOptions,
    ) -> Net {
        let now = Instant::now();
        let sfu_addr: SocketAddr = SFU_ADDR.parse().unwrap();
        let mut sfu = Sfu::new(
            SfuConfig {
                candidates: vec![sfu_addr],
                tcp_candidates: vec![SFU_TCP_ADDR.parse().unwrap()],
            },
            now,
        );
        let peers = (0..peers)
            .map(|i| {
                let addr =
                    SocketAddr::from(([10, 0, (i / 250) as u8 + 1, (i % 250) as u8 + 2], 6000));
                let conn = ConnId(i as u64 + 1);
                sfu.add_connection_with(now, conn, options(i)).unwrap();
                Peer::new(
                    peer_rtc(now, addr, transport(i), config(i, peer_config())),
                    addr,
                    conn,
                    transport(i),
                    false,
                )
            })
            .collect();
        Net {
            sfu,
            sfu_addr,
            now,
            peers,
            wire: VecDeque::new(),
            capture_from: None,
            captured: Vec::new(),
            discard_sfu_output: false,
            sfu_datagrams_out: 0,
            voice_events: Vec::new(),
            sfu_queued: Duration::ZERO,
            candidates_from_last_m_line: false,
            events_seen: 0,
            layer_events: Vec::new(),
            other_events: Vec::new(),
            offers: Vec::new(),
            answer_delay: Duration::ZERO,
            answers: VecDeque::new(),
            downlinks: HashMap::new(),
            downlink_loss: HashMap::new(),
            edge: None,
            relay_loss_one_in: None,
            relay_datagrams: 0,
        }
    }

    /// Cascading: `host_peers` peers on the SFU, then `edge_peers` on a
    /// second SFU (the edge), which receives tracks from the first over a
    /// relay once [`Net::relay`] names them.
    pub fn cascade(host_peers: usize, edge_peers: usize) -> Net {
        let mut net = Net::new(host_peers);
        let addr: SocketAddr = EDGE_ADDR.parse().unwrap();
        let mut sfu = Sfu::new(
            SfuConfig {
                candidates: vec![addr],
                tcp_candidates: Vec::new(),
            },
            net.now,
        );
        sfu.add_connection(net.now, EDGE_UPLINK).unwrap();
        for k in 0..edge_peers {
            let addr = SocketAddr::from(([10, 0, 200, k as u8 + 2], 6000));
            let conn = ConnId(1001 + k as u64);
            sfu.add_connection(net.now, conn).unwrap();
            net.peers.push(Peer::new(
                peer_rtc(net.now, addr, Transport::Udp, peer_config()),
                addr,
                conn,
                Transport::Udp,
                true,
            ));
        }
        net.edge = Some(Edge {
            sfu,
            addr,
            links: Vec::new(),
        });
        net
    }

    pub fn edge(&mut self) -> &mut Sfu {
        &mut self.edge.as_mut().expect("a cascade").sfu
    }

    /// Peer 0 publishes one track of `kind`; every other peer subscribes to it.
    pub fn fan_out(peers: usize, kind: TrackKind) -> Net {
        let mut net = Net::new(peers);
        let track = TrackId(1);
        net.sfu.publish(net.peers[0].conn, track, kind).unwrap();
        for i in 1..peers {
            let conn = net.peers[i].conn;
            net.sfu.subscribe(conn, track).unwrap();
        }
        net.settle();
        assert!(net.peers.iter().all(|p| p.connected), "every peer connects");
        net
    }

    /// From now on what the SFU sends peer `i` passes a bottleneck of `bps`
    /// that drops what would wait longer than `max_delay`.
    pub fn limit_downlink(&mut self, i: usize, bps: u64, max_delay: Duration) {
        let now = self.now;
        let link = self.downlinks.entry(i).or_insert(Downlink {
            bps,
            max_delay,
            busy_until: now,
            queue: VecDeque::new(),
            dropped: 0,
        });
        link.bps = bps;
        link.max_delay = max_delay;
    }

    /// From now on peer `i`'s downlink loses one datagram in `n`, evenly
    /// spread, whatever the rate (a poor radio link, not congestion).
    pub fn lose_downlink_one_in(&mut self, i: usize, n: u64) {
        self.downlink_loss.insert(i, (n.max(1), 0));
    }

    /// Peer `i`'s downlink is fast again (what was queued still arrives).
    /// Returns how many datagrams the bottleneck dropped.
    pub fn lift_downlink(&mut self, i: usize) -> u64 {
        let Some(link) = self.downlinks.remove(&i) else {
            return 0;
        };
        for (_, t, from, to, bytes) in link.queue {
            self.deliver_to_peer(i, t, from, to, bytes);
        }
        link.dropped
    }

    /// Peer `i`'s network changes: its old address stops working (what is sent
    /// to it is lost) and it gathers a candidate at `addr`, which nobody knows
    /// until an ICE restart.
    pub fn move_peer(&mut self, i: usize, addr: SocketAddr) {
        let p = &mut self.peers[i];
        let old = Candidate::host(p.addr, "udp").unwrap();
        p.rtc.direct_api().invalidate_candidate(&old);
        p.rtc
            .add_local_candidate(Candidate::host(addr, "udp").unwrap());
        p.addr = addr;
    }

    fn peer_by_addr(&self, addr: SocketAddr) -> Option<usize> {
        self.peers.iter().position(|p| p.addr == addr)
    }

    /// Exchange signalling and datagrams, advancing time, until everyone is
    /// connected and nothing that matters moves: no SFU event, no media
    /// received, no keyframe asked for, for a few ticks. (Datagrams alone do
    /// not say: congestion control pads every subscriber's link all the time.)
    /// Quiet means 20 ms of simulated time; it gives up after 20 s.
    pub fn settle(&mut self) {
        let mut quiet = 0;
        for _ in 0..20_000 {
            let before = self.progress();
            self.steps();
            let connected = self.peers.iter().all(|p| p.connected);
            if connected && self.answers.is_empty() && self.progress() == before {
                quiet += 1;
                if quiet >= 20 {
                    return;
                }
            } else {
                quiet = 0;
            }
            self.tick();
        }
    }

    /// Steps at this instant while anything moves, up to a bound: padding and
    /// the feedback it draws can go back and forth without time passing.
    fn steps(&mut self) {
        for _ in 0..64 {
            if !self.step() {
                return;
            }
        }
    }

    /// Everything that counts as progress, summed.
    fn progress(&self) -> usize {
        self.events_seen
            + self.answers.len()
            + self
                .peers
                .iter()
                .map(|p| p.received.len() + p.keyframe_requests + usize::from(p.connected))
                .sum::<usize>()
    }

    /// One round: SFU events and output, then peers' output. True if anything moved.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        self.sfu.negotiate_all();
        while let Some(ev) = self.sfu.poll_event() {
            moved = true;
            self.events_seen += 1;
            if let SfuEvent::VideoLayers { track, active } = ev {
                self.layer_events.push((track, active));
            } else if let SfuEvent::VoiceSlot { conn, mid, track } = ev {
                self.voice_events.push((conn, mid, track));
            } else if let SfuEvent::Offer { conn, sdp, slots } = ev {
                self.take_offer(conn, sdp, &slots, false);
            } else if let SfuEvent::RelayLink { loss, rtt, .. } = ev {
                if let Some(edge) = &mut self.edge {
                    edge.links.push((loss, rtt));
                }
            } else {
                self.other_events.push(format!("{ev:?}"));
            }
        }
        moved |= self.step_edge();
        while self.answers.front().is_some_and(|a| a.0 <= self.now) {
            let (_, conn, sdp, on_edge) = self.answers.pop_front().unwrap();
            moved = true;
            let now = self.now;
            let sfu = if on_edge { self.edge() } else { &mut self.sfu };
            sfu.accept_answer(now, conn, &sdp).unwrap();
        }
        while let Some(d) = self.sfu.poll_transmit() {
            moved = true;
            self.sfu_datagrams_out += 1;
            if !self.discard_sfu_output {
                self.wire
                    .push_back((d.transport, d.source, d.destination, d.contents));
            }
        }
        if let Some(edge) = &mut self.edge {
            while let Some(d) = edge.sfu.poll_transmit() {
                moved = true;
                self.wire
                    .push_back((d.transport, d.source, d.destination, d.contents));
            }
        }
        for i in 0..self.peers.len() {
            moved |= self.drain_peer(i);
        }
        let sfu_tcp: SocketAddr = SFU_TCP_ADDR.parse().unwrap();
        while let Some((transport, from, to, bytes)) = self.wire.pop_front() {
            moved = true;
            let edge_addr = self.edge.as_ref().map(|e| e.addr);
            if Some(to) == edge_addr {
                self.relay_datagrams += 1;
                let lost = self.relay_loss_one_in.is_some_and(|n| {
                    from == self.sfu_addr && self.relay_datagrams.is_multiple_of(n)
                });
                if !lost {
                    let now = self.now;
                    self.edge()
                        .handle_datagram_received(now, now, from, to, &bytes);
                }
            } else if to == self.sfu_addr && transport == Transport::Udp {
                let arrived = self.now - self.sfu_queued;
                self.sfu
                    .handle_datagram_received(self.now, arrived, from, to, &bytes);
            } else if to == sfu_tcp && transport == Transport::Tcp {
                self.sfu.handle_tcp_frame(self.now, from, to, &bytes);
            } else if let Some(i) = self.peer_by_addr(to) {
                let now = self.now;
                if let Some((n, sent)) = self.downlink_loss.get_mut(&i) {
                    *sent += 1;
                    if (*sent).is_multiple_of(*n) {
                        continue;
                    }
                }
                match self.downlinks.get_mut(&i) {
                    Some(link) => {
                        let start = link.busy_until.max(now);
                        if start - now > link.max_delay {
                            link.dropped += 1;
                        } else {
                            let on_wire = bytes.len() as u64 * 8 * 1_000_000 / link.bps;
                            link.busy_until = start + Duration::from_micros(on_wire);
                            link.queue
                                .push_back((link.busy_until, transport, from, to, bytes));
                        }
                    }
                    None => self.deliver_to_peer(i, transport, from, to, bytes),
                }
            }
        }
        // What has come through a bottleneck by now.
        let mut due = Vec::new();
        for (&i, link) in &mut self.downlinks {
            while link.queue.front().is_some_and(|q| q.0 <= self.now) {
                let (_, t, from, to, bytes) = link.queue.pop_front().unwrap();
                due.push((i, t, from, to, bytes));
            }
        }
        for (i, t, from, to, bytes) in due {
            moved = true;
            self.deliver_to_peer(i, t, from, to, bytes);
        }
        moved
    }

    fn deliver_to_peer(
        &mut self,
        i: usize,
        transport: Transport,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    ) {
        let input = Input::Receive(
            self.now,
            Receive {
                proto: proto(transport),
                source: from,
                destination: to,
                contents: bytes.as_slice().try_into().unwrap(),
            },
        );
        self.peers[i].bytes_in += bytes.len() as u64;
        let _ = self.peers[i].rtc.handle_input(input);
        self.drain_peer(i);
    }

    fn drain_peer(&mut self, i: usize) -> bool {
        let mut moved = false;
        loop {
            let out = self.peers[i].rtc.poll_output().unwrap();
            match out {
                Output::Timeout(_) => return moved,
                Output::Transmit(t) => {
                    moved = true;
                    if self.capture_from == Some(i) {
                        self.captured.push(t.contents.into());
                    } else {
                        let transport = match t.proto {
                            Protocol::Udp => Transport::Udp,
                            _ => Transport::Tcp,
                        };
                        let p = &mut self.peers[i];
                        match transport {
                            Transport::Udp => p.sent_udp += 1,
                            Transport::Tcp => p.sent_tcp += 1,
                        }
                        self.wire.push_back((
                            transport,
                            t.source,
                            t.destination,
                            t.contents.into(),
                        ));
                    }
                }
                Output::Event(e) => {
                    let p = &mut self.peers[i];
                    match e {
                        Event::Connected => p.connected = true,
                        // Padding (congestion control's probes) carries nothing.
                        Event::RtpPacket(pkt) if pkt.payload.is_empty() => {}
                        Event::RtpPacket(pkt) => {
                            let mid = p
                                .rtc
                                .direct_api()
                                .stream_rx(&pkt.header.ssrc)
                                .map(|s| s.mid());
                            if let Some(mid) = mid {
                                p.received.push((mid, *pkt.seq_no, pkt.payload.len()));
                                p.first_packet_at.entry(mid).or_insert(self.now);
                                if convene_sfu::is_vp8_keyframe_start(&pkt.payload) {
                                    p.keyframe_starts.push((mid, *pkt.seq_no));
                                }
                                let pt = pkt.header.payload_type;
                                let vp8 = p
                                    .rtc
                                    .codec_config()
                                    .params()
                                    .iter()
                                    .any(|c| c.pt() == pt && c.spec().codec == Codec::Vp8);
                                if !vp8 {
                                    p.audio_in.push((*pt, pkt.payload.to_vec()));
                                }
                                if vp8 {
                                    let (pid, tl0) = vp8_ids(&pkt.payload);
                                    p.vp8_ids.push((mid, *pkt.seq_no, pid, tl0));
                                }
                            }
                            if pkt.header.ext_vals.transport_cc.is_some() {
                                p.twcc_numbered += 1;
                            }
                        }
                        Event::KeyframeRequest(req) => {
                            p.keyframe_requests += 1;
                            p.keyframe_request_rids
                                .push(req.rid.map(|r| r.to_string()).unwrap_or_default());
                        }
                        Event::PeerStats(s) => {
                            p.got_twcc_feedback |= s.egress_loss_fraction.is_some()
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Peer with connection `conn` (on the edge or the host) takes an offer;
    /// its answer goes back after [`Net::answer_delay`].
    fn take_offer(
        &mut self,
        conn: ConnId,
        sdp: String,
        slots: &[convene_sfu::OfferedSlot],
        on_edge: bool,
    ) {
        self.offers.push((conn, sdp.clone()));
        let i = self
            .peers
            .iter()
            .position(|p| p.conn == conn && p.on_edge == on_edge)
            .unwrap();

        let peer = &mut self.peers[i];
        let sdp = if self.candidates_from_last_m_line {
            candidates_in_last_m_line_only(&sdp)
        } else {
            sdp
        };
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&sdp).unwrap())
            .unwrap();
        peer.mids = slots
            .iter()
            .map(|s| {
                (
                    Mid::from(s.mid.as_str()),
                    (s.direction == convene_sfu::SlotDirection::Send, s.track),
                )
            })
            .collect();
        peer.voice_mids = slots
            .iter()
            .filter(|s| {
                s.kind == TrackKind::Voice && s.direction == convene_sfu::SlotDirection::Receive
            })
            .map(|s| Mid::from(s.mid.as_str()))
            .collect();
        self.drain_peer(i);
        self.answers.push_back((
            self.now + self.answer_delay,
            conn,
            answer.to_sdp_string(),
            on_edge,
        ));
    }

    /// The edge's events: its offer for the relayed tracks goes to the
    /// host (as the layer above would carry it), and the host's answer back;
    /// its peers take their offers. True if anything moved.
    fn step_edge(&mut self) -> bool {
        let Some(edge) = &mut self.edge else {
            return false;
        };
        edge.sfu.negotiate_all();
        let mut events = Vec::new();
        while let Some(ev) = edge.sfu.poll_event() {
            events.push(ev);
        }
        let moved = !events.is_empty();
        for ev in events {
            self.events_seen += 1;
            match ev {
                SfuEvent::Offer { conn, sdp, slots } if conn == EDGE_UPLINK => {
                    self.offers.push((conn, sdp.clone()));
                    let tracks: Vec<(String, TrackId)> = slots
                        .iter()
                        .filter_map(|s| Some((s.mid.clone(), s.track?)))
                        .collect();
                    let answer = self
                        .sfu
                        .relay_offer(self.now, HOST_RELAY, &sdp, &tracks)
                        .unwrap();
                    let now = self.now;
                    self.edge()
                        .accept_answer(now, EDGE_UPLINK, &answer)
                        .unwrap();
                }
                SfuEvent::Offer { conn, sdp, slots } => self.take_offer(conn, sdp, &slots, true),
                SfuEvent::VideoLayers { track, active } => self.layer_events.push((track, active)),
                other => self.other_events.push(format!("edge: {other:?}")),
            }
        }
        moved
    }

    /// 5 ms pass: the SFU and every peer see the new time.
    /// One millisecond: the driver wakes each connection at its own timer
    /// (to the millisecond). Steps of 5 ms held str0m's pacer to one padding
    /// packet each, and a subscriber could not show its link had room again.
    fn tick(&mut self) {
        self.now += Duration::from_millis(1);
        self.sfu.handle_timeout(self.now);
        if let Some(edge) = &mut self.edge {
            edge.sfu.handle_timeout(self.now);
        }
        for p in &mut self.peers {
            let _ = p.rtc.handle_input(Input::Timeout(self.now));
        }
    }

    /// Let `d` of time pass in 1 ms ticks, delivering whatever is sent.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick();
            self.steps();
        }
    }

    /// Let peer `i`'s pacer release what it queued: advance its clock until it
    /// emits nothing more.
    pub fn flush_peer(&mut self, i: usize) {
        let mut quiet = 0;
        while quiet < 3 {
            self.now += Duration::from_millis(1);
            let _ = self.peers[i].rtc.handle_input(Input::Timeout(self.now));
            let before = self.captured.len() + self.wire.len();
            self.drain_peer(i);
            quiet = if self.captured.len() + self.wire.len() == before {
                quiet + 1
            } else {
                0
            };
        }
        self.sfu.handle_timeout(self.now);
    }

    fn send_mid(&self, i: usize) -> Mid {
        *self.peers[i]
            .mids
            .iter()
            .find(|(_, (send, _))| *send)
            .expect("a send slot")
            .0
    }

    fn pt(&self, i: usize, codec: Codec) -> Pt {
        self.peers[i]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .unwrap()
            .pt()
    }

    /// Peer `i` sends one Opus-shaped packet of `size` bytes with sequence number
    /// `seq` and an audio level (-dBov: 0 loudest, 127 silence).
    pub fn send_audio(&mut self, i: usize, seq: u64, size: usize, level: i8) {
        let mid = self.send_mid(i);
        let pt = self.pt(i, Codec::Opus);
        let now = self.now;
        let mut api = self.peers[i].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).unwrap();
        let ext = str0m::rtp::ExtensionValues {
            audio_level: Some(-level.abs()),
            voice_activity: Some(level.unsigned_abs() < 50),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(
                pt,
                SeqNo::from(seq),
                seq as u32 * 960,
                now,
                vec![0x0b; size],
            )
            .ext_vals(ext),
        );
        self.drain_peer(i);
    }

    /// Peer `i` (which negotiated RED) sends one redundant-audio packet
    /// (RFC 2198): `redundant`, the previous packet's Opus data, 960 ticks
    /// back, then `primary`, this one's.
    pub fn send_red_audio(&mut self, i: usize, seq: u64, redundant: &[u8], primary: &[u8]) {
        let mid = self.send_mid(i);
        let opus = self.pt(i, Codec::Opus);
        let red = self.peers[i]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find_map(|p| p.red())
            .expect("RED negotiated");
        let header = (960u32 << 10) | redundant.len() as u32;
        let mut payload = vec![0x80 | *opus];
        payload.extend(&header.to_be_bytes()[1..]);
        payload.push(*opus);
        payload.extend(redundant);
        payload.extend(primary);
        let now = self.now;
        let mut api = self.peers[i].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).unwrap();
        let ext = str0m::rtp::ExtensionValues {
            audio_level: Some(-20),
            voice_activity: Some(true),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(red, SeqNo::from(seq), seq as u32 * 960, now, payload).ext_vals(ext),
        );
        self.drain_peer(i);
    }

    /// Frames `frames` of a camera on peer `i` that sends only `rid`, 33 ms
    /// apart, each `packets` packets of `size` bytes: a keyframe (of
    /// `dims`) first, then only when asked, as a browser does. `answered`
    /// counts the requests answered so far.
    #[allow(clippy::too_many_arguments)]
    pub fn send_frames_keyframe_when_asked(
        &mut self,
        i: usize,
        rid: &str,
        frames: std::ops::Range<u64>,
        dims: (u16, u16),
        packets: usize,
        size: usize,
        answered: &mut usize,
    ) {
        for frame in frames {
            let asked = self.peers[i].keyframe_requests > *answered;
            *answered = self.peers[i].keyframe_requests;
            let keyframe = (frame == 0 || asked).then_some(dims);
            let f = frame as u16;
            let seq = 1 + frame * packets as u64;
            self.send_layer_frame(
                i,
                rid,
                seq,
                u32::from(f) * 3000,
                f,
                f as u8,
                keyframe,
                packets,
                size,
            );
            self.run_for(std::time::Duration::from_millis(33));
        }
    }

    /// Peer `i` sends one VP8 frame on its camera's simulcast layer `rid` (which
    /// it must publish with simulcast; "" for a camera without layers): `packets` packets of `size` bytes from
    /// sequence number `seq`, with picture id `pid` (15-bit form), TL0PICIDX
    /// `tl0` and temporal layer 0. A keyframe announces its picture size.
    #[allow(clippy::too_many_arguments)]
    pub fn send_layer_frame(
        &mut self,
        i: usize,
        rid: &str,
        seq: u64,
        ts: u32,
        pid: u16,
        tl0: u8,
        keyframe: Option<(u16, u16)>,
        packets: usize,
        size: usize,
    ) {
        let mid = self.send_mid(i);
        let pt = self.pt(i, Codec::Vp8);
        let now = self.now;
        for k in 0..packets {
            let [hi, lo] = pid.to_be_bytes();
            // X, S (first packet); I, L, T; long PictureID; TL0PICIDX; TID 0, Y.
            let start = if k == 0 { 0x10 } else { 0x00 };
            let mut payload = vec![0x80 | start, 0xe0, 0x80 | hi, lo, tl0, 0x20];
            match keyframe {
                Some((w, h)) if k == 0 => {
                    // Frame tag (keyframe, shown), start code, sizes.
                    payload.extend([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
                    payload.extend(w.to_le_bytes());
                    payload.extend(h.to_le_bytes());
                }
                _ if k == 0 => payload.extend([0x11, 0x02, 0x00]),
                _ => {}
            }
            payload.resize(size.max(payload.len()), 0x5a);
            let mut api = self.peers[i].rtc.direct_api();
            // "": a camera published without layers.
            let rid = (!rid.is_empty()).then(|| rid.into());
            let tx = api
                .stream_tx_by_mid(mid, rid)
                .expect("a simulcast layer to send on");
            tx.write_rtp(
                RtpWrite::new(pt, SeqNo::from(seq + k as u64), ts, now, payload)
                    .marker(k + 1 == packets)
                    .nackable(true),
            );
            self.drain_peer(i);
        }
    }

    /// Peer `i` sends `count` VP8-shaped packets of `size` bytes starting at
    /// sequence number `first_seq`; the first is a keyframe start.
    pub fn send_video(&mut self, i: usize, first_seq: u64, count: usize, size: usize) {
        self.send_vp8(i, first_seq, count, size, true)
    }

    pub fn send_vp8(
        &mut self,
        i: usize,
        first_seq: u64,
        count: usize,
        size: usize,
        keyframe_first: bool,
    ) {
        let mid = self.send_mid(i);
        let pt = self.pt(i, Codec::Vp8);
        let now = self.now;
        for k in 0..count {
            let seq = first_seq + k as u64;
            let mut payload = vec![
                0x80u8,
                0x80,
                0x80 | (seq >> 8) as u8 & 0x7f,
                seq as u8,
                0x11,
            ];
            if k == 0 && keyframe_first {
                payload[0] = 0x90;
                payload[4] = 0x10; // keyframe
            }
            payload.resize(size, 0x5a);
            let ts = (seq / 4) as u32 * 3000;
            let mut api = self.peers[i].rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).unwrap();
            tx.write_rtp(
                RtpWrite::new(pt, SeqNo::from(seq), ts, now, payload)
                    .marker(seq % 4 == 3)
                    .nackable(true),
            );
            self.drain_peer(i);
        }
    }
}

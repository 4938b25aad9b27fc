//! Cascading (docs/cluster-design.md, decision 7): a second SFU, the edge,
//! receives a panelist's camera from the SFU it is published on over one
//! relay connection, and serves its own subscribers from it: each layer
//! crosses once, whatever the edge's audience, and each edge subscriber gets
//! the layer that suits it.

mod support;

use std::time::Duration;

use convene_sfu::{TrackId, View};
use support::{Net, EDGE_UPLINK};

const CAMERA: TrackId = TrackId(1);

/// The layers peer 0 sends, told apart by packet size: (rid, picture size,
/// packet size, packets per frame).
const LAYERS: [(&str, (u16, u16), usize, usize); 3] = [
    ("l", (320, 180), 600, 1),
    ("m", (640, 360), 900, 2),
    ("h", (1280, 720), 1100, 3),
];

struct Stage {
    net: Net,
    seq: [u64; 3],
    frame: u16,
    /// Packets peer 0 sent, all layers.
    sent: u64,
    /// Keyframe requests peer 0 has answered (it answers each at its next
    /// frame, for the layer it names, as a browser does).
    answered: usize,
}

impl Stage {
    /// Peer 0 on the host publishes a simulcast camera; the edge takes it
    /// over the relay, and its `edge_peers` peers subscribe there.
    fn new(edge_peers: usize) -> Stage {
        let mut net = Net::cascade(1, edge_peers);
        let publisher = net.peers[0].conn;
        net.sfu.publish_simulcast(publisher, CAMERA).unwrap();
        net.edge().publish_simulcast(EDGE_UPLINK, CAMERA).unwrap();
        for k in 1..=edge_peers {
            let conn = net.peers[k].conn;
            net.edge().subscribe(conn, CAMERA).unwrap();
        }
        net.settle();
        assert!(net.peers.iter().all(|p| p.connected), "every peer connects");
        Stage {
            net,
            seq: [1, 10_000, 20_000],
            frame: 0,
            sent: 0,
            answered: 0,
        }
    }

    /// Peer `k` (on the edge) shows the camera at `width` x `height`.
    fn show(&mut self, k: usize, width: u32, height: u32) {
        let conn = self.net.peers[k].conn;
        self.net
            .edge()
            .set_view(conn, CAMERA, View::Size { width, height });
    }

    /// `secs` seconds of 30 frames a second on every layer, a keyframe each
    /// `keyframe_every` frames (0: only the first, and those asked for).
    fn run(&mut self, secs: u32, keyframe_every: u16) {
        for _ in 0..secs * 30 {
            let asked: Vec<String> =
                self.net.peers[0].keyframe_request_rids[self.answered..].to_vec();
            self.answered += asked.len();
            for (i, &(rid, size, bytes, packets)) in LAYERS.iter().enumerate() {
                let f = self.frame;
                let keyframe = asked.iter().any(|r| r == rid)
                    || match keyframe_every {
                        0 => f == 0,
                        n => f.is_multiple_of(n),
                    };
                self.net.send_layer_frame(
                    0,
                    rid,
                    self.seq[i],
                    u32::from(f) * 3000,
                    f,
                    f as u8,
                    keyframe.then_some(size),
                    packets,
                    bytes,
                );
                self.seq[i] += packets as u64;
                self.sent += packets as u64;
            }
            self.frame = self.frame.wrapping_add(1) & 0x7fff;
            self.net.run_for(Duration::from_millis(33));
        }
    }

    /// Packet sizes peer `k` received from its `from`th packet on.
    fn sizes(&self, k: usize, from: usize) -> Vec<usize> {
        self.net.peers[k].received[from..]
            .iter()
            .map(|r| r.2)
            .collect()
    }
}

#[test]
fn an_edges_subscribers_each_get_their_layer_and_every_layer_crosses_once() {
    let mut stage = Stage::new(3);
    stage.show(1, 320, 180);
    stage.show(2, 1280, 720);
    stage.show(3, 1280, 720);
    stage.run(1, 15);
    let from: Vec<usize> = (0..4).map(|k| stage.net.peers[k].received.len()).collect();
    let relayed_before = stage.net.sfu.stats().rtp_relayed;
    let sent_before = stage.sent;
    stage.run(2, 15);
    stage.net.settle();

    let small = stage.sizes(1, from[1]);
    assert!(small.len() > 50, "the small tile's video: {}", small.len());
    assert!(
        small.iter().all(|&s| s == 600),
        "a small tile gets the low layer"
    );
    for k in [2, 3] {
        let large = stage.sizes(k, from[k]);
        assert!(large.len() > 150, "peer {k}'s video: {}", large.len());
        assert!(
            large.iter().all(|&s| s == 1100),
            "a large tile on a fast link gets the top layer"
        );
    }
    // Each packet of every layer went over the relay once: three subscribers
    // on the edge cost the host no more than one.
    let host = stage.net.sfu.stats();
    let relayed = host.rtp_relayed - relayed_before;
    let sent = stage.sent - sent_before;
    assert!(
        relayed <= sent && relayed * 100 >= sent * 95,
        "relayed {relayed} of {sent} sent"
    );
    eprintln!(
        "relayed {relayed} sent {sent} small {} edge {:?} links {:?}",
        small.len(),
        stage.net.edge().stats(),
        stage.net.edge.as_ref().unwrap().links.len()
    );
    assert_eq!(host.rtp_forwarded, 0, "no subscriber on the host");
    let edge = stage.net.edge().stats();
    assert!(
        edge.rtp_forwarded >= (small.len() + 2 * 150) as u64,
        "the edge forwards to its own subscribers"
    );
    // The relay's round trip is measured.
    let links = &stage.net.edge.as_ref().unwrap().links;
    assert!(!links.is_empty(), "the relay link is reported");
    assert!(links.iter().any(|l| l.1.is_some()), "with its round trip");
}

#[test]
fn a_keyframe_an_edge_subscriber_needs_is_asked_of_the_publisher_for_its_layer() {
    let mut stage = Stage::new(2);
    stage.show(1, 1280, 720);
    stage.show(2, 1280, 720);
    // One keyframe at the start, then none unless asked for.
    stage.run(1, 0);
    let asked = stage.net.peers[0].keyframe_request_rids.len();
    // Peer 2 moves to a middle-sized tile: it needs the middle layer's
    // keyframe, which only the publisher can make.
    stage.show(2, 640, 360);
    stage.run(1, 0);
    let rids = &stage.net.peers[0].keyframe_request_rids[asked..];
    assert!(
        rids.iter().any(|r| r == "m"),
        "the edge's request for the middle layer reached the publisher: {rids:?}"
    );
    let from = stage.net.peers[2].received.len();
    stage.run(1, 0);
    let sizes = stage.sizes(2, from);
    assert!(
        !sizes.is_empty() && sizes.iter().all(|&s| s == 900),
        "and the middle layer arrives"
    );
}

#[test]
fn a_camera_without_layers_reaches_an_edge_that_asked_for_layers() {
    let mut net = Net::cascade(1, 1);
    let publisher = net.peers[0].conn;
    net.sfu
        .publish(publisher, CAMERA, convene_sfu::TrackKind::Video)
        .unwrap();
    net.edge().publish_simulcast(EDGE_UPLINK, CAMERA).unwrap();
    let conn = net.peers[1].conn;
    net.edge().subscribe(conn, CAMERA).unwrap();
    net.settle();
    // One keyframe, then frames: all on the edge's lowest layer.
    for frame in 0..90u64 {
        let keyframe = (frame == 0).then_some((640, 360));
        let f = frame as u16;
        let ts = u32::from(f) * 3000;
        net.send_layer_frame(0, "", 1 + frame * 4, ts, f, f as u8, keyframe, 4, 800);
        net.run_for(std::time::Duration::from_millis(33));
    }
    net.settle();
    assert_eq!(net.peers[1].received.len(), 360, "every packet arrives");
    assert!(
        net.layer_events.iter().all(|(_, rids)| rids == &["l"]),
        "on the lowest layer: {:?}",
        net.layer_events
    );
}

#[test]
fn a_late_edge_subscriber_of_a_camera_without_layers_starts_from_the_keyframe_it_asks_for() {
    let mut net = Net::cascade(1, 1);
    let publisher = net.peers[0].conn;
    net.sfu
        .publish(publisher, CAMERA, convene_sfu::TrackKind::Video)
        .unwrap();
    net.edge().publish_simulcast(EDGE_UPLINK, CAMERA).unwrap();
    net.settle();
    // The camera sends one keyframe first, then only when asked (as a
    // browser does).
    let mut answered = 0;
    net.send_frames_keyframe_when_asked(0, "", 0..30, (640, 360), 4, 800, &mut answered);
    // Someone on the edge arrives after that keyframe: the edge asks for one
    // on its lowest layer, which the camera's only layer answers.
    let asked = net.peers[0].keyframe_requests;
    let conn = net.peers[1].conn;
    net.edge().subscribe(conn, CAMERA).unwrap();
    net.settle();
    net.send_frames_keyframe_when_asked(0, "", 30..90, (640, 360), 4, 800, &mut answered);
    net.settle();
    assert!(
        net.peers[0].keyframe_requests > asked,
        "the edge's request reached the camera"
    );
    assert!(
        net.peers[1].received.len() >= 200,
        "the video arrives: {}",
        net.peers[1].received.len()
    );
}

#[test]
fn an_edge_offer_naming_an_m_line_twice_or_of_the_wrong_kind_is_refused() {
    let mut stage = Stage::new(1);
    let offer = stage
        .net
        .offers
        .iter()
        .rev()
        .find(|o| o.0 == EDGE_UPLINK)
        .unwrap()
        .1
        .clone();
    let now = stage.net.now;
    let voice = TrackId(2);
    let p = stage.net.peers[0].conn;
    stage
        .net
        .sfu
        .publish(p, voice, convene_sfu::TrackKind::Voice)
        .unwrap();
    let relay = support::HOST_RELAY;
    let twice = [("0".to_string(), CAMERA), ("0".to_string(), voice)];
    assert!(stage
        .net
        .sfu
        .relay_offer(now, relay, &offer, &twice)
        .is_err());
    // The edge's only m-line is video: a microphone cannot go on it.
    let mid = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .unwrap()
        .to_string();
    let wrong = [(mid, voice)];
    assert!(stage
        .net
        .sfu
        .relay_offer(now, relay, &offer, &wrong)
        .is_err());
}

#[test]
fn an_unpublished_track_stops_crossing_and_nothing_of_it_is_left() {
    let mut stage = Stage::new(1);
    stage.show(1, 1280, 720);
    stage.run(1, 15);
    let relayed = stage.net.sfu.stats().rtp_relayed;
    assert!(relayed > 0);
    stage.net.sfu.unpublish(CAMERA);
    stage.net.settle();
    assert_eq!(stage.net.sfu.stats().tracks, 0);
    stage.net.sfu.remove_connection(support::HOST_RELAY);
    assert!(!stage.net.sfu.is_relay(support::HOST_RELAY));
    assert_eq!(stage.net.sfu.stats().connections, 1, "the publisher's");
}

#[test]
fn a_lossy_relay_link_is_repaired_and_its_loss_reported() {
    let mut stage = Stage::new(1);
    stage.show(1, 1280, 720);
    stage.run(1, 15);
    // One datagram in 25 from the host to the edge is lost (4 %).
    stage.net.relay_loss_one_in = Some(25);
    let from = stage.net.peers[1].received.len();
    stage.run(3, 15);
    stage.net.relay_loss_one_in = None;
    stage.net.settle();
    let mut seqs: Vec<u64> = stage.net.peers[1].received[from..]
        .iter()
        .map(|r| r.1)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let span = seqs.last().unwrap() - seqs.first().unwrap() + 1;
    assert!(
        seqs.len() as u64 * 100 >= span * 99,
        "retransmissions over the relay fill the gaps: {} of {span}",
        seqs.len()
    );
    let links = &stage.net.edge.as_ref().unwrap().links;
    assert!(
        links.iter().any(|l| l.0.is_some_and(|loss| loss > 0.01)),
        "the relay's loss is reported: {links:?}"
    );
}

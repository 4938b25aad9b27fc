//! The media core alone, in memory: real str0m peers, real ICE, DTLS and SRTP.

mod support;

use convene_sfu::{ConnId, Sfu, SfuConfig, SfuEvent, TrackId, TrackKind, View, MAX_MEDIA_AGE};
use std::time::Duration;
use str0m::media::Mid;
use support::Net;

#[test]
fn one_publisher_reaches_every_subscriber_with_continuous_sequence_numbers() {
    let mut net = Net::fan_out(5, TrackKind::Video);
    net.send_video(0, 1, 200, 1000);
    net.settle();
    for p in &net.peers[1..] {
        assert_eq!(p.received.len(), 200, "every packet forwarded once");
        let seqs: Vec<u64> = p.received.iter().map(|r| r.1).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "rewritten sequence is continuous"
        );
        assert!(p.received.iter().all(|r| r.2 == 1000), "payloads intact");
    }
    let stats = net.sfu.stats();
    assert_eq!(stats.rtp_forwarded, 800);
}

#[test]
fn audio_that_waited_long_in_the_server_is_still_forwarded() {
    // A voice breaking up is what people notice first, and audio is cheap to
    // forward: an overloaded server drops video, never audio, for lateness.
    // A microphone (voice slots) and a screen's sound (an m-line of its own).
    for kind in [TrackKind::Voice, TrackKind::Audio] {
        let mut net = Net::fan_out(3, kind);
        net.send_audio(0, 1, 100, -30);
        net.settle();
        net.sfu_queued = MAX_MEDIA_AGE + Duration::from_millis(20);
        net.send_audio(0, 2, 100, -30);
        net.send_audio(0, 3, 100, -30);
        net.settle();
        for p in &net.peers[1..] {
            let seqs: Vec<u64> = p.received.iter().map(|r| r.1).collect();
            assert_eq!(seqs.len(), 3, "{kind:?}: the late packets were forwarded");
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{kind:?}");
        }
        let stats = net.sfu.stats();
        assert_eq!(stats.rtp_dropped_late, 0, "{kind:?}");
        assert_eq!(stats.rtp_forwarded, 6, "{kind:?}");
    }
}

#[test]
fn late_video_stops_until_a_keyframe_asked_for_once_the_server_caught_up() {
    let mut net = Net::fan_out(3, TrackKind::Video);
    net.send_video(0, 1, 43, 1000);
    net.run_for(Duration::from_millis(500)); // past the limit on keyframe requests
    let asked = net.peers[0].keyframe_requests;
    // A frame (sequence numbers 44-47 share a timestamp) starts late.
    net.sfu_queued = MAX_MEDIA_AGE + Duration::from_millis(20);
    net.send_vp8(0, 44, 4, 1000, false);
    net.settle();
    assert_eq!(
        net.peers[0].keyframe_requests, asked,
        "no keyframe asked for while the server is behind"
    );
    // Caught up, but that frame was broken: the frames after it would only show
    // as corruption, so nothing goes out until a keyframe, which is asked for.
    net.sfu_queued = Duration::ZERO;
    net.send_vp8(0, 48, 12, 1000, false);
    net.settle();
    assert_eq!(
        net.peers[0].keyframe_requests,
        asked + 1,
        "one keyframe request"
    );
    net.send_video(0, 60, 8, 1000);
    net.settle();
    for p in &net.peers[1..] {
        let seqs: Vec<u64> = p.received.iter().map(|r| r.1).collect();
        assert_eq!(
            seqs.len(),
            51,
            "nothing between the late frame and the keyframe"
        );
        assert_eq!(seqs[43], seqs[42] + 17, "a gap the receiver can see");
    }
    assert_eq!(net.sfu.stats().rtp_dropped_late, 4);
}

#[test]
fn a_frame_that_started_in_time_is_forwarded_whole_however_late_its_tail() {
    // A big keyframe takes long to forward, and its last packets wait longest:
    // dropping them would break every keyframe and freeze the video for good.
    let mut net = Net::fan_out(3, TrackKind::Video);
    net.send_video(0, 1, 40, 1000);
    net.settle();
    net.send_video(0, 44, 1, 1000); // a keyframe's first packet, in time
    net.settle();
    net.sfu_queued = MAX_MEDIA_AGE + Duration::from_millis(20);
    net.send_vp8(0, 45, 3, 1000, false); // the rest of that frame, late
    net.settle();
    for p in &net.peers[1..] {
        assert_eq!(p.received.len(), 44, "the whole frame arrives");
    }
    assert_eq!(net.sfu.stats().rtp_dropped_late, 0);
    net.send_vp8(0, 48, 4, 1000, false); // the next frame starts late: dropped
    net.settle();
    assert_eq!(net.sfu.stats().rtp_dropped_late, 4);
}

#[test]
fn a_subscriber_gets_nothing_until_a_keyframe_starts() {
    let mut net = Net::fan_out(2, TrackKind::Video);
    net.send_vp8(0, 1, 10, 500, false);
    net.settle();
    assert!(
        net.peers[1].received.is_empty(),
        "delta frames alone are not forwarded to a new subscriber"
    );
    net.send_vp8(0, 11, 10, 500, true);
    net.settle();
    let seqs: Vec<u64> = net.peers[1].received.iter().map(|r| r.1).collect();
    assert_eq!(seqs.len(), 10, "from the keyframe on, everything");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap where the deltas were dropped"
    );
}

/// Peer 0 sends 30 frames a second of 4 packets each for `d`, a keyframe as
/// soon as one was asked for: a prompt publisher.
fn prompt_publisher(net: &mut Net, seq: &mut u64, asked: &mut usize, d: Duration) {
    let end = net.now + d;
    while net.now < end {
        let keyframe = net.peers[0].keyframe_requests > *asked;
        *asked = net.peers[0].keyframe_requests;
        net.send_vp8(0, *seq, 4, 300, keyframe);
        *seq += 4;
        net.run_for(Duration::from_millis(33));
    }
}

#[test]
fn a_joiners_first_video_packet_starts_a_keyframe_every_time() {
    // Joiners one after another, each while the previous one's keyframe is
    // on its way, and each taking 30 ms to answer its offer: a keyframe that
    // arrives between a joiner's offer and answer must not be spent on it.
    const JOINERS: usize = 10;
    let mut net = Net::new(JOINERS + 1);
    net.answer_delay = Duration::from_millis(30);
    net.sfu
        .publish(net.peers[0].conn, TrackId(1), TrackKind::Video)
        .unwrap();
    for k in 1..=JOINERS {
        let conn = net.peers[k].conn;
        net.sfu
            .publish(conn, TrackId(100 + k as u64), TrackKind::Voice)
            .unwrap();
    }
    net.settle();
    let (mut seq, mut asked) = (4u64, 0usize);
    prompt_publisher(&mut net, &mut seq, &mut asked, Duration::from_millis(400));
    let mut joined = Vec::new();
    for k in 1..=JOINERS {
        joined.push(net.now);
        let conn = net.peers[k].conn;
        net.sfu.subscribe(conn, TrackId(1)).unwrap();
        prompt_publisher(&mut net, &mut seq, &mut asked, Duration::from_millis(45));
    }
    prompt_publisher(&mut net, &mut seq, &mut asked, Duration::from_millis(600));
    for k in 1..=JOINERS {
        let p = &net.peers[k];
        let &(mid, first, _) = p.received.first().expect("video arrives");
        assert_eq!(
            p.keyframe_starts.first(),
            Some(&(mid, first)),
            "joiner {k}'s first packet starts a keyframe"
        );
        let took = p.first_packet_at[&mid] - joined[k - 1];
        assert!(
            took < Duration::from_millis(150),
            "joiner {k} waited {took:?} for its first frame"
        );
    }
    assert!(
        net.sfu.stats().keyframe_requests <= JOINERS as u64 + 2,
        "about one keyframe request per joiner: {}",
        net.sfu.stats().keyframe_requests
    );
}

#[test]
fn a_client_that_reads_candidates_from_another_m_line_than_the_first_connects() {
    // A late joiner's offer brings two video m-lines (two cameras); clients that
    // read the server's candidates per m-line (aiortc) may take them from any.
    let mut net = Net::new(3);
    net.candidates_from_last_m_line = true;
    for (i, track) in [(0, 1), (1, 2)] {
        let conn = net.peers[i].conn;
        net.sfu
            .publish(conn, TrackId(track), TrackKind::Video)
            .unwrap();
    }
    for track in [1, 2] {
        let conn = net.peers[2].conn;
        net.sfu.subscribe(conn, TrackId(track)).unwrap();
    }
    net.settle();
    assert!(
        net.peers.iter().all(|p| p.connected),
        "every peer connects with the candidates of its last m-line"
    );
    net.send_video(0, 1, 20, 500);
    net.send_video(1, 1, 20, 500);
    net.settle();
    let mids: std::collections::BTreeSet<Mid> = net.peers[2].received.iter().map(|r| r.0).collect();
    assert_eq!(net.peers[2].received.len(), 40, "both cameras arrive");
    assert_eq!(mids.len(), 2, "on two m-lines");
}

#[test]
fn every_m_line_of_an_offer_carries_the_candidate_and_its_end() {
    let now = std::time::Instant::now();
    let mut sfu = Sfu::new(
        SfuConfig {
            candidates: vec![support::SFU_ADDR.parse().unwrap()],
            ..Default::default()
        },
        now,
    );
    for i in 1..=3 {
        sfu.add_connection(now, ConnId(i)).unwrap();
    }
    sfu.publish(ConnId(1), TrackId(1), TrackKind::Video)
        .unwrap();
    sfu.publish(ConnId(2), TrackId(2), TrackKind::Video)
        .unwrap();
    sfu.publish(ConnId(2), TrackId(3), TrackKind::Voice)
        .unwrap();
    for track in 1..=3 {
        sfu.subscribe(ConnId(3), TrackId(track)).unwrap();
    }
    sfu.publish(ConnId(3), TrackId(4), TrackKind::Voice)
        .unwrap();
    sfu.negotiate_all();
    let sdp = std::iter::from_fn(|| sfu.poll_event())
        .find_map(|e| match e {
            SfuEvent::Offer {
                conn: ConnId(3),
                sdp,
                ..
            } => Some(sdp),
            _ => None,
        })
        .expect("an offer for the late joiner");
    let sections: Vec<&str> = sdp.split("\r\nm=").skip(1).collect();
    assert_eq!(sections.len(), 4, "two videos, a voice slot, a microphone");
    for s in sections {
        assert!(
            s.contains("\r\na=candidate:") && s.contains(" 10.0.0.1 5000 typ host"),
            "{s}"
        );
        assert!(s.contains("\r\na=end-of-candidates\r\n"), "{s}");
    }
}

#[test]
fn every_connection_gets_congestion_feedback_both_ways() {
    // Publishers' browsers adapt their bitrate to the SFU's transport-wide
    // feedback; subscribers send theirs on what the SFU forwards, from which
    // the SFU estimates each one's downlink and chooses its simulcast layers.
    let mut net = Net::fan_out(3, TrackKind::Video);
    // A second publisher later: peer 1's m-line for it comes in a renegotiation.
    net.sfu
        .publish(net.peers[2].conn, TrackId(2), TrackKind::Video)
        .unwrap();
    net.sfu.subscribe(net.peers[1].conn, TrackId(2)).unwrap();
    net.settle();
    for second in 0..3u64 {
        net.send_video(0, 1 + second * 50, 50, 1000);
        net.send_video(2, 1 + second * 50, 50, 1000);
        net.run_for(Duration::from_millis(1000));
    }
    assert_eq!(net.peers[1].received.len(), 300, "both videos arrive");
    assert!(
        net.peers[0].got_twcc_feedback && net.peers[2].got_twcc_feedback,
        "both publishers got transport-wide feedback"
    );
    assert!(
        net.peers[1].twcc_numbered >= 300,
        "forwarded packets carry a transport-wide sequence number"
    );
}

#[test]
fn unroutable_datagrams_are_counted_and_ignored() {
    let mut net = Net::fan_out(2, TrackKind::Audio);
    let stranger = "10.9.9.9:1234".parse().unwrap();
    net.sfu.handle_datagram(
        net.now,
        stranger,
        net.sfu_addr,
        &[0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
    );
    net.sfu
        .handle_datagram(net.now, stranger, net.sfu_addr, &[0, 1, 0, 0]);
    net.sfu
        .handle_datagram(net.now, stranger, net.sfu_addr, &[]);
    assert_eq!(net.sfu.stats().unroutable, 3);
    assert!(net.sfu.poll_transmit().is_none());
}

#[test]
fn forwarded_video_leaves_at_once_not_paced() {
    // What the benchmark does: capture the publisher's datagrams, feed them by
    // hand. Forwarded video is not paced (each subscriber is kept within its
    // estimate by the layer it gets): every packet of a burst leaves as it is
    // forwarded, without waiting for time to pass. Paced at the estimate, the
    // subscribers' copies of this burst took about 50 ms.
    let mut net = Net::fan_out(3, TrackKind::Video);
    net.capture_from = Some(0);
    net.send_video(0, 1, 50, 100);
    net.flush_peer(0);
    let datagrams = std::mem::take(&mut net.captured);
    assert!(datagrams.len() >= 50, "captured {}", datagrams.len());
    net.capture_from = None;
    let (from, to, now) = (net.peers[0].addr, net.sfu_addr, net.now);
    let mut out = 0;
    for d in &datagrams {
        net.sfu.handle_datagram(now, from, to, d);
        while net.sfu.poll_transmit().is_some() {
            out += 1;
        }
    }
    // 50 packets × 2 subscribers, plus any feedback the input caused.
    assert!(out >= 100, "only {out} datagrams left before time moved on");
}

#[test]
fn a_subscriber_is_not_probed_for_more_than_its_videos_want() {
    // One camera at about 500 kbit/s, one layer. The SFU's estimator may probe
    // a subscriber's link with padding, but only up to what its videos would
    // take: padding beyond that is bandwidth and server work spent for nothing
    // (the SFU once asked for 5 Mbit/s whatever the views wanted).
    let mut net = Net::fan_out(2, TrackKind::Video);
    let media_bytes = |net: &Net| -> u64 { net.peers[1].received.iter().map(|r| r.2 as u64).sum() };
    let mut seq = 1;
    for _ in 0..(2 * 25) {
        net.send_video(0, seq, 3, 800);
        seq += 3;
        net.run_for(Duration::from_millis(40));
    }
    let (media0, bytes0) = (media_bytes(&net), net.peers[1].bytes_in);
    for _ in 0..(20 * 25) {
        net.send_video(0, seq, 3, 800);
        seq += 3;
        net.run_for(Duration::from_millis(40));
    }
    let media = media_bytes(&net) - media0;
    let total = net.peers[1].bytes_in - bytes0;
    assert!(
        media > 20 * 25 * 3 * 700,
        "the video arrived: {media} bytes"
    );
    let extra = total - media;
    println!("20 s: media {media} bytes, everything else {extra} bytes");
    // Measured: 5.8 % (RTCP, and str0m's probes up to what the view wants);
    // 9.9 % when every subscriber was probed up to 5 Mbit/s.
    assert!(
        extra * 100 <= media * 8,
        "padding and control took {extra} bytes beside {media} of media"
    );
}

/// Memory per connection, for BENCHMARKS.md: `cargo test --release -p convene-sfu
/// --test forwarding memory -- --ignored --nocapture`.
#[test]
#[ignore]
fn memory_per_connection() {
    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
    let before = rss_kib();
    let mut sfu = convene_sfu::Sfu::new(
        convene_sfu::SfuConfig {
            candidates: vec![support::SFU_ADDR.parse().unwrap()],
            ..Default::default()
        },
        std::time::Instant::now(),
    );
    for i in 0..200 {
        sfu.add_connection(std::time::Instant::now(), convene_sfu::ConnId(i))
            .unwrap();
    }
    let after_sfu = rss_kib();
    eprintln!(
        "SFU side, unconnected: {} KiB per connection",
        (after_sfu - before) / 200
    );
    let net = Net::fan_out(101, TrackKind::Video);
    let after_net = rss_kib();
    eprintln!(
        "fan-out of 100, both sides connected: {} KiB per peer pair",
        (after_net - after_sfu) / 101
    );
    drop(net);
}

/// Payload sizes tell the speakers apart at the listener.
fn voice_size(speaker: usize) -> usize {
    100 + speaker
}

/// The voice-slot test's listener (peers 0 to 4 speak).
const LISTENER: usize = 5;

/// Of `senders`, those `talking` send a loud packet and the rest a silent one,
/// every 20 ms for `ms` milliseconds; returns what the listener got meanwhile.
fn talk(
    net: &mut Net,
    seq: &mut u64,
    senders: &[usize],
    talking: &[usize],
    ms: u64,
) -> Vec<(Mid, usize)> {
    let before = net.peers[LISTENER].received.len();
    for _ in 0..ms / 20 {
        *seq += 1;
        for &s in senders {
            let level = if talking.contains(&s) { 20 } else { 127 };
            net.send_audio(s, *seq, voice_size(s), level);
        }
        net.run_for(Duration::from_millis(20));
    }
    net.peers[LISTENER].received[before..]
        .iter()
        .map(|&(mid, _, len)| (mid, len))
        .collect()
}

fn heard(got: &[(Mid, usize)]) -> std::collections::BTreeSet<usize> {
    got.iter().map(|&(_, len)| len - 100).collect()
}

#[test]
fn a_listener_hears_three_voices_and_a_fourth_after_a_pause() {
    // Five microphones, and one listener who subscribes to all of them.
    let speakers = LISTENER;
    let all = [0, 1, 2, 3, 4];
    let mut net = Net::new(speakers + 1);
    let listener = net.peers[speakers].conn;
    for s in 0..speakers {
        let track = TrackId(s as u64 + 1);
        net.sfu
            .publish(net.peers[s].conn, track, TrackKind::Voice)
            .unwrap();
        net.sfu.subscribe(listener, track).unwrap();
    }
    net.settle();
    let voice_mids = net.peers[speakers].voice_mids.clone();
    assert_eq!(
        voice_mids.len(),
        3,
        "three voice m-lines, not one per microphone"
    );
    let mut seq = 0;

    // Three start talking; a fourth joins in while they all still talk.
    talk(&mut net, &mut seq, &all, &[0, 1, 2], 400);
    let got = talk(&mut net, &mut seq, &all, &[0, 1, 2, 3], 600);
    assert_eq!(
        heard(&got),
        [0, 1, 2].into(),
        "the fourth waits: {:?}",
        heard(&got)
    );
    // Each slot carries one speaker, as one gapless stream.
    for mid in &voice_mids {
        let seqs: Vec<u64> = net.peers[speakers]
            .received
            .iter()
            .filter(|(m, _, _)| m == mid)
            .map(|&(_, s, _)| s)
            .collect();
        assert!(
            seqs.len() >= 45,
            "slot {mid} carried {} packets",
            seqs.len()
        );
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "slot {mid} has gaps"
        );
    }

    // Speaker 0 pauses for longer than a breath while nobody new talks: the
    // silent ones don't take its slot.
    let events = net.voice_events.len();
    let got = talk(&mut net, &mut seq, &[3, 4, 0, 1, 2], &[1, 2], 1500);
    assert_eq!(heard(&got), [0, 1, 2].into());
    assert_eq!(net.voice_events.len(), events, "no slot changed hands");

    // Then speaker 3 talks, and takes that slot.
    let got = talk(&mut net, &mut seq, &all, &[1, 2, 3], 400);
    let tail = &got[got.len() - 30..];
    assert_eq!(
        heard(tail),
        [1, 2, 3].into(),
        "after the pause: {:?}",
        heard(tail)
    );
    let taken: Vec<_> = net
        .voice_events
        .iter()
        .filter(|(c, _, _)| *c == listener)
        .map(|(_, mid, t)| (mid.clone(), *t))
        .collect();
    assert!(
        taken.contains(&(taken.last().unwrap().0.clone(), Some(TrackId(4)))),
        "the listener is told who now speaks on the slot: {taken:?}"
    );
    // Speaker 3's slot is the one speaker 0 had, and its sequence runs on.
    let slot_of = |len| got.iter().rev().find(|&&(_, l)| l == len).map(|&(m, _)| m);
    let mid3 = slot_of(voice_size(3)).unwrap();
    let first0 = net.peers[speakers]
        .received
        .iter()
        .find(|&&(_, _, l)| l == voice_size(0))
        .unwrap()
        .0;
    assert_eq!(mid3, first0);
    let seqs: Vec<u64> = net.peers[speakers]
        .received
        .iter()
        .filter(|(m, _, _)| *m == mid3)
        .map(|&(_, s, _)| s)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "the switch leaves no gap"
    );

    // Speaker 1 stops publishing: its slot empties at once, and someone silent
    // who is not yet heard fills it with their first packet.
    net.sfu.unpublish(TrackId(2));
    net.run_for(Duration::from_millis(20));
    assert!(net
        .voice_events
        .iter()
        .any(|(c, _, t)| *c == listener && t.is_none()));
    let got = talk(&mut net, &mut seq, &[0, 2, 3, 4], &[2, 3], 200);
    let now_heard = heard(&got);
    assert!(
        now_heard.contains(&0) || now_heard.contains(&4),
        "{now_heard:?}"
    );
    assert!(!now_heard.contains(&1));
}

#[test]
fn picture_ids_stay_continuous_when_a_subscriber_changes_layer() {
    // Each simulcast layer numbers its pictures (and TL0PICIDX) from its own
    // start. A subscriber moved from the low layer to the high one must see
    // one continuous numbering, or its decoder takes the new layer's frames
    // for old or missing ones (a freeze after the switch).
    let mut net = Net::new(2);
    let (publisher, subscriber, track) = (net.peers[0].conn, net.peers[1].conn, TrackId(1));
    net.sfu.publish_simulcast(publisher, track).unwrap();
    net.sfu.subscribe(subscriber, track).unwrap();
    net.settle();
    let small = View::Size {
        width: 320,
        height: 180,
    };
    net.sfu.set_view(subscriber, track, small);
    // (rid, first picture id, first TL0PICIDX, size, packets per frame)
    let layers = [
        ("l", 100u16, 10u8, (320u16, 180u16), 1usize),
        ("m", 9_000, 80, (640, 360), 2),
        ("h", 20_000, 200, (1280, 720), 3),
    ];
    let mut seq = [1000u64, 5000, 9000];
    for frame in 0..120u16 {
        if frame == 40 {
            let large = View::Size {
                width: 1280,
                height: 720,
            };
            net.sfu.set_view(subscriber, track, large);
        }
        for (i, &(rid, pid, tl0, size, packets)) in layers.iter().enumerate() {
            let keyframe = (frame % 15 == 0).then_some(size);
            net.send_layer_frame(
                0,
                rid,
                seq[i],
                u32::from(frame) * 3000 + i as u32 * 77_777,
                pid + frame,
                tl0.wrapping_add(frame as u8),
                keyframe,
                packets,
                400,
            );
            seq[i] += packets as u64;
        }
        net.run_for(Duration::from_millis(33));
    }
    net.settle();
    let mut got = net.peers[1].vp8_ids.clone();
    got.sort_by_key(|g| g.1);
    assert!(got.len() > 150, "the video arrives: {} packets", got.len());
    assert!(
        net.sfu.stats().layer_switches >= 1,
        "the subscriber moved up a layer"
    );
    let ids: Vec<(u16, u8)> = got
        .iter()
        .map(|g| (g.2.expect("a picture id"), g.3.expect("a TL0PICIDX")))
        .collect();
    for w in ids.windows(2) {
        let step = (
            w[1].0.wrapping_sub(w[0].0) & 0x7fff,
            w[1].1.wrapping_sub(w[0].1),
        );
        assert!(
            step == (0, 0) || step == (1, 1),
            "picture ids and TL0PICIDX go on by one picture at a time: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn a_subscriber_that_sends_no_congestion_feedback_gets_only_a_small_budget() {
    // Layers follow each subscriber's downlink estimate, which comes from its
    // congestion feedback. A client that sends none must not keep the starting
    // estimate (and the top layers) for good: after a few seconds it gets a
    // small budget. Peer 1 sends no feedback, peer 2 does; both show the
    // camera large. Layers are told apart by their packet sizes.
    let mut net = Net::with_configs(
        3,
        |_| convene_sfu::Transport::Udp,
        |i, c| {
            if i == 1 {
                support::without_congestion_feedback(c)
            } else {
                c
            }
        },
    );
    let track = TrackId(1);
    net.sfu.publish_simulcast(net.peers[0].conn, track).unwrap();
    let large = View::Size {
        width: 1280,
        height: 720,
    };
    for i in [1, 2] {
        let conn = net.peers[i].conn;
        net.sfu.subscribe(conn, track).unwrap();
    }
    net.settle();
    for i in [1, 2] {
        let conn = net.peers[i].conn;
        net.sfu.set_view(conn, track, large);
    }
    assert_eq!(net.peers[1].twcc_numbered, 0, "peer 1 did not negotiate it");
    // (rid, size, packet bytes, packets per frame): about 150 kbit/s,
    // 650 kbit/s and 1.6 Mbit/s.
    let layers = [
        ("l", (320u16, 180u16), 600usize, 1usize),
        ("m", (640, 360), 900, 3),
        ("h", (1280, 720), 1100, 6),
    ];
    let mut seq = [1u64, 10_000, 20_000];
    let mut tail_from = [0usize; 3];
    for frame in 0..300u16 {
        if frame == 240 {
            tail_from = [0, net.peers[1].received.len(), net.peers[2].received.len()];
        }
        for (i, &(rid, size, bytes, packets)) in layers.iter().enumerate() {
            net.send_layer_frame(
                0,
                rid,
                seq[i],
                u32::from(frame) * 3000,
                frame,
                frame as u8,
                (frame % 30 == 0).then_some(size),
                packets,
                bytes,
            );
            seq[i] += packets as u64;
        }
        net.run_for(Duration::from_millis(33));
    }
    // The last two seconds.
    let sizes = |i: usize| -> Vec<usize> {
        net.peers[i].received[tail_from[i]..]
            .iter()
            .map(|r| r.2)
            .collect()
    };
    let (without, with) = (sizes(1), sizes(2));
    assert!(
        with.contains(&1100),
        "a subscriber with feedback keeps the top layer"
    );
    assert!(!without.is_empty(), "the other still receives video");
    assert!(
        without.iter().all(|&s| s == 600),
        "without feedback only the lowest layer: {:?}",
        without.iter().filter(|&&s| s != 600).count()
    );
}

/// A subscriber (peer 1) showing peer 0's simulcast camera large, the layers
/// at 30 frames a second with a keyframe every half second (as browsers
/// answer the SFU's keyframe requests): about 150 kbit/s, 650 kbit/s and 1.6
/// Mbit/s, told apart by packet size (600, 900, 1100 bytes).
struct Narrowing {
    net: Net,
    seq: [u64; 3],
    frame: u16,
}

impl Narrowing {
    const LAYERS: [(&'static str, (u16, u16), usize, usize); 3] = [
        ("l", (320, 180), 600, 1),
        ("m", (640, 360), 900, 3),
        ("h", (1280, 720), 1100, 6),
    ];

    fn new() -> Narrowing {
        let mut net = Net::new(2);
        let track = TrackId(1);
        net.sfu.publish_simulcast(net.peers[0].conn, track).unwrap();
        let conn = net.peers[1].conn;
        net.sfu.subscribe(conn, track).unwrap();
        net.settle();
        net.sfu.set_view(
            conn,
            track,
            View::Size {
                width: 1280,
                height: 720,
            },
        );
        Narrowing {
            net,
            seq: [1, 10_000, 20_000],
            frame: 0,
        }
    }

    /// One second of frames; the sizes of the packets peer 1 received in it.
    fn second(&mut self) -> Vec<usize> {
        let from = self.net.peers[1].received.len();
        for _ in 0..30 {
            for (i, &(rid, size, bytes, packets)) in Self::LAYERS.iter().enumerate() {
                let f = self.frame;
                self.net.send_layer_frame(
                    0,
                    rid,
                    self.seq[i],
                    u32::from(f) * 3000,
                    f,
                    f as u8,
                    f.is_multiple_of(15).then_some(size),
                    packets,
                    bytes,
                );
                self.seq[i] += packets as u64;
            }
            self.frame = self.frame.wrapping_add(1) & 0x7fff;
            self.net.run_for(Duration::from_millis(33));
        }
        self.net.peers[1].received[from..]
            .iter()
            .map(|r| r.2)
            .collect()
    }

    /// `secs` seconds; the packet sizes of each.
    fn seconds(&mut self, secs: usize) -> Vec<Vec<usize>> {
        (0..secs).map(|_| self.second()).collect()
    }
}

fn share(got: &[usize], size: usize) -> usize {
    got.iter().filter(|&&s| s == size).count() * 100 / got.len().max(1)
}

#[test]
fn a_subscriber_whose_link_narrows_falls_to_the_low_layer_at_once_and_keeps_it() {
    // Bad-networks scenario 1 without browsers: the subscriber's downlink
    // falls to 400 kbit/s (a bottleneck that drops what would wait over 50
    // ms). Within 2 s it must receive the low layer alone, and then keep
    // receiving it every second: the loss of a late fall once drove str0m's
    // estimate to 100 kbit/s, below the low layer, and the camera stopped.
    //
    // str0m hands on its estimate as a 3 s average, so the fall reached the
    // SFU seconds late; its latest estimate cannot be trusted instead (on a
    // busy machine healthy subscribers' dips too). What the subscriber's
    // feedback says got through in the last half second, counted in bytes,
    // caps it (loss_cap.rs): a second's loss share, half of it sent before
    // the fall, had let the middle layer through (this test failed 8 runs in
    // 12). A lower cap needs two periods of it (one may be the old queue's
    // loss), and str0m's estimate, which falls far below the link after the
    // burst of loss, is not believed below what the link just carried
    // without loss.
    let mut n = Narrowing::new();
    let fast = n.seconds(8).concat();
    assert!(
        share(&fast, 1100) > 80,
        "the top layer on a fast link: {}% of packets",
        share(&fast, 1100)
    );
    n.net.limit_downlink(1, 400_000, Duration::from_millis(50));
    let narrow = n.seconds(12);
    for (k, sec) in narrow.iter().enumerate().skip(2) {
        assert!(
            !sec.is_empty() && sec.iter().all(|&s| s == 600),
            "second {} at 400 kbit/s: {} packets, {}% low, {}% middle, {}% top",
            k + 1,
            sec.len(),
            share(sec, 600),
            share(sec, 900),
            share(sec, 1100)
        );
    }
    assert!(
        n.net.lift_downlink(1) > 0,
        "the bottleneck dropped something"
    );
}

#[test]
fn a_subscriber_climbs_back_to_the_top_layer_once_its_link_recovers() {
    // Scenario 2 after scenario 1: once the link is fast again, the
    // estimate must find the room (str0m's probes while the subscriber is
    // sent far less than its estimate, and the padding adapt.rs asks for)
    // and the subscriber climb through the middle layer to the top. This
    // failed while the test network's clock moved in 5 ms steps, which
    // held str0m's pacer to one padding packet a step (about 360 kbit/s),
    // not at each connection's own timer as the driver does.
    let mut n = Narrowing::new();
    n.seconds(8);
    n.net.limit_downlink(1, 400_000, Duration::from_millis(50));
    n.seconds(12);
    n.net.lift_downlink(1);
    let recovered = n.seconds(15);
    let last = recovered[13..].concat();
    assert!(
        share(&last, 1100) > 80,
        "back on the top layer within 15 s of the link recovering: {}% of the last 2 s ({}% low, {}% middle)",
        share(&last, 1100),
        share(&last, 600),
        share(&last, 900)
    );
}

#[test]
fn redundant_audio_reaches_who_took_it_and_the_primary_the_others() {
    // Browsers send Opus with RED (each packet with the one before), so one
    // lost packet costs nothing; a client that did not negotiate RED gets
    // the newest block alone, as plain Opus.
    let mut net = Net::with_configs(
        3,
        |_| convene_sfu::Transport::Udp,
        |i, c| if i < 2 { c.enable_opus(true, true) } else { c },
    );
    let track = TrackId(1);
    net.sfu
        .publish(net.peers[0].conn, track, TrackKind::Voice)
        .unwrap();
    for i in [1, 2] {
        let conn = net.peers[i].conn;
        net.sfu.subscribe(conn, track).unwrap();
    }
    net.settle();
    for seq in 1..=20u64 {
        let prev = [seq as u8 - 1; 30];
        let this = [seq as u8; 40];
        net.send_red_audio(0, seq, &prev, &this);
        net.run_for(Duration::from_millis(20));
    }
    net.settle();
    let red = &net.peers[1].audio_in;
    let plain = &net.peers[2].audio_in;
    assert_eq!(red.len(), 20, "every packet reaches the RED subscriber");
    assert_eq!(plain.len(), 20, "and the other");
    assert!(
        red.iter()
            .all(|(pt, p)| *pt == 63 && p.len() == 5 + 30 + 40),
        "RED as it came: {:?}",
        red.iter().map(|(pt, p)| (pt, p.len())).collect::<Vec<_>>()
    );
    for (k, (pt, p)) in plain.iter().enumerate() {
        assert_eq!(*pt, 111, "plain Opus");
        assert_eq!(p, &vec![k as u8 + 1; 40], "the primary block only");
    }
}

#[test]
fn connections_set_up_without_redundant_audio_are_not_offered_it() {
    // End-to-end encrypted meetings: a browser would encrypt a RED payload
    // whole, so the SFU could not take the redundancy off for a subscriber
    // without RED. Their connections are offered plain Opus only.
    let mut net = Net::with_options(
        3,
        |_| convene_sfu::Transport::Udp,
        |_, c| c.enable_opus(true, true),
        |i| convene_sfu::ConnOptions {
            redundant_audio: i == 2,
        },
    );
    let track = TrackId(1);
    net.sfu
        .publish(net.peers[0].conn, track, TrackKind::Voice)
        .unwrap();
    for i in [1, 2] {
        let conn = net.peers[i].conn;
        net.sfu.subscribe(conn, track).unwrap();
    }
    net.settle();
    for (i, peer) in net.peers.iter().enumerate() {
        let offers: Vec<&String> = net
            .offers
            .iter()
            .filter(|(c, _)| *c == peer.conn)
            .map(|(_, sdp)| sdp)
            .collect();
        assert!(!offers.is_empty(), "peer {i} was offered media");
        let red = offers.iter().any(|sdp| sdp.contains("red/48000"));
        assert_eq!(red, i == 2, "peer {i}: RED offered only where set up");
    }
    for seq in 1..=10u64 {
        net.send_audio(0, seq, 40, -30);
        net.run_for(Duration::from_millis(20));
    }
    net.settle();
    for i in [1, 2] {
        let got = &net.peers[i].audio_in;
        assert_eq!(got.len(), 10, "peer {i} gets every packet");
        assert!(got.iter().all(|(pt, _)| *pt == 111), "as plain Opus");
    }
}

/// Peers 0 and 1 talk with redundant audio, peers 2 and 3 publish
/// simulcast cameras, and peer 4 (RED too, then as `sub` makes it)
/// receives all four.
fn talkers_and_cameras(sub: impl Fn(str0m::RtcConfig) -> str0m::RtcConfig) -> Net {
    let red = |c: str0m::RtcConfig| c.enable_opus(true, true);
    let mut net = Net::with_configs(
        5,
        |_| convene_sfu::Transport::Udp,
        |i, c| match i {
            0 | 1 => red(c),
            4 => sub(red(c)),
            _ => c,
        },
    );
    let conns: Vec<ConnId> = net.peers.iter().map(|p| p.conn).collect();
    for (talker, track) in [(0, 1), (1, 2)] {
        net.sfu
            .publish(conns[talker], TrackId(track), TrackKind::Voice)
            .unwrap();
    }
    net.sfu.publish_simulcast(conns[2], TrackId(3)).unwrap();
    net.sfu.publish_simulcast(conns[3], TrackId(4)).unwrap();
    for t in 1..=4 {
        net.sfu.subscribe(conns[4], TrackId(t)).unwrap();
    }
    net.settle();
    net
}

/// Step `step` of [`talkers_and_cameras`], 40 ms: two RED packets per
/// talker, and one low-layer frame of `size` bytes per camera (a keyframe
/// every second).
fn talk_and_film(net: &mut Net, step: u64, size: usize) {
    for k in 0..2 {
        let seq = 1 + step * 2 + k;
        for talker in [0, 1] {
            net.send_red_audio(talker, seq, &[1; 100], &[2; 100]);
        }
    }
    for cam in [2, 3] {
        let key = step.is_multiple_of(25).then_some((320, 180));
        net.send_layer_frame(
            cam,
            "l",
            1 + step,
            step as u32 * 3600,
            step as u16,
            step as u8,
            key,
            1,
            size,
        );
    }
    net.run_for(Duration::from_millis(40));
}

#[test]
fn a_narrow_clean_downlink_gets_plain_audio_so_every_camera_fits() {
    // Two talkers send RED (about 107 kbit/s each, 65 as plain Opus) and two
    // cameras their low layer (160 kbit/s each). A subscriber with 500
    // kbit/s (no congestion feedback: the fixed budget) and no loss fits
    // both cameras only beside plain audio: it gets the primary blocks
    // alone, and both cameras, rather than RED and one camera.
    let mut net = talkers_and_cameras(support::without_congestion_feedback);
    let mut tail_from = (0, 0);
    for step in 0..250u64 {
        if step == 200 {
            tail_from = (net.peers[4].audio_in.len(), net.peers[4].received.len());
        }
        talk_and_film(&mut net, step, 800);
    }
    let sub = &net.peers[4];
    let audio: Vec<u8> = sub.audio_in[tail_from.0..].iter().map(|a| a.0).collect();
    assert!(!audio.is_empty(), "audio arrives");
    assert!(
        audio.iter().all(|&pt| pt == 111),
        "plain Opus on a narrow clean link: {audio:?}"
    );
    let cameras: std::collections::BTreeSet<Mid> = sub.received[tail_from.1..]
        .iter()
        .filter(|r| r.2 == 800)
        .map(|r| r.0)
        .collect();
    assert_eq!(cameras.len(), 2, "both cameras' low layers");
}

#[test]
fn a_late_subscriber_of_a_simulcast_camera_whose_upper_layers_never_come_starts_from_the_keyframe_it_asks_for(
) {
    // A browser on a weak uplink publishes three layers but sends only the
    // lowest (as Chromium does when its estimate is small). It sends one
    // keyframe first, then only when asked. Someone who arrives later must
    // get a keyframe on that layer, and the video.
    let mut net = Net::new(2);
    let (publisher, late, track) = (net.peers[0].conn, net.peers[1].conn, TrackId(1));
    net.sfu.publish_simulcast(publisher, track).unwrap();
    net.settle();
    let mut answered = 0;
    net.send_frames_keyframe_when_asked(0, "l", 0..30, (320, 180), 2, 600, &mut answered);
    let asked = net.peers[0].keyframe_requests;
    net.sfu.subscribe(late, track).unwrap();
    net.settle();
    net.send_frames_keyframe_when_asked(0, "l", 30..90, (320, 180), 2, 600, &mut answered);
    net.settle();
    assert!(
        net.peers[0].keyframe_requests > asked,
        "the late subscriber's keyframe request reached the camera"
    );
    assert!(
        net.peers[1].received.len() >= 80,
        "the video arrives: {} packets",
        net.peers[1].received.len()
    );
}

#[test]
fn a_subscriber_on_a_link_that_loses_one_packet_in_six_keeps_redundant_audio() {
    // Heavy random loss (a poor radio link, not congestion): whatever it
    // costs the videos, the subscriber keeps RED, which is what makes such
    // a link's speech intelligible. Two talkers send RED and two cameras
    // their low layer; the subscriber's feedback reports the loss, and the
    // loss cap leaves room for one camera beside plain audio and none
    // beside RED.
    let mut net = talkers_and_cameras(|c| c);
    net.lose_downlink_one_in(4, 6);
    let mut tail_from = 0;
    for step in 0..400u64 {
        if step == 300 {
            tail_from = net.peers[4].audio_in.len();
        }
        talk_and_film(&mut net, step, 400);
    }
    let audio: Vec<u8> = net.peers[4].audio_in[tail_from..]
        .iter()
        .map(|a| a.0)
        .collect();
    assert!(!audio.is_empty(), "audio arrives");
    assert!(
        audio.iter().all(|&pt| pt == 63),
        "RED on a link that loses one packet in six: {audio:?}"
    );
}

#[test]
fn a_camera_that_starts_late_is_not_paused_while_someone_shows_it() {
    // A publisher in an end-to-end encrypted meeting sends no video until it
    // holds the group's key (its frames are dropped before encryption),
    // which can take seconds after it joined. Its subscribers show its tile
    // all that time: its lowest layer must not be paused for want of
    // anyone needing it, or it never starts (Firefox in e2ee-meeting.test).
    // One subscriber has said nothing of its tile, the other its size.
    let mut net = Net::new(3);
    let publisher = net.peers[0].conn;
    let (quiet, sized, track) = (net.peers[1].conn, net.peers[2].conn, TrackId(1));
    net.sfu.publish_simulcast(publisher, track).unwrap();
    net.sfu.subscribe(quiet, track).unwrap();
    net.sfu.subscribe(sized, track).unwrap();
    let tile = View::Size {
        width: 640,
        height: 360,
    };
    net.sfu.set_view(sized, track, tile);
    net.settle();
    net.run_for(Duration::from_secs(4));
    assert_eq!(
        net.layer_events.last().map(|(_, rids)| rids.clone()),
        Some(vec!["l".to_string()]),
        "the upper layers nobody receives pause; the lowest stays on: {:?}",
        net.layer_events
    );
    let mut answered = 0;
    net.send_frames_keyframe_when_asked(0, "l", 0..30, (320, 180), 2, 600, &mut answered);
    net.settle();
    for i in [1, 2] {
        assert!(
            net.peers[i].received.len() >= 40,
            "the video arrives once it starts: {} packets",
            net.peers[i].received.len()
        );
    }
    // Both tiles leave the screen: every layer pauses.
    net.sfu.set_view(quiet, track, View::Hidden);
    net.sfu.set_view(
        sized,
        track,
        View::Size {
            width: 0,
            height: 0,
        },
    );
    net.run_for(Duration::from_secs(4));
    assert_eq!(
        net.layer_events.last().map(|(_, rids)| rids.clone()),
        Some(Vec::new()),
        "nobody shows it: {:?}",
        net.layer_events
    );
}

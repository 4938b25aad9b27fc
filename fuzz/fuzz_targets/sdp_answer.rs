//! Any text as the SDP answer of a connection in a small meeting on a real SFU
//! (sans-IO: no sockets). The corpus holds real answers from str0m peers with
//! their mids written `$0`, `$1`, … (the m-line's index): they are replaced by
//! the mids of this run's offer, which str0m picks at random, so that mutated
//! real answers get past the mid checks and reach deeper.
//!
//! Checked: nothing panics, now or while time passes; a refusal is `BadSdp`; an
//! answer that was not understood leaves the offer open, and a correct answer
//! is then accepted; the connection can be removed and a newcomer negotiates.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convene_sfu::{ConnId, Sfu, SfuConfig, SfuError, SfuEvent, TrackId, TrackKind};
use libfuzzer_sys::fuzz_target;
use str0m::change::SdpOffer;
use str0m::{Candidate, RtcConfig};

const A: ConnId = ConnId(1);
const B: ConnId = ConnId(2);
const C: ConnId = ConnId(3);

/// Offers, closed connections.
fn events(sfu: &mut Sfu) -> (Vec<(ConnId, String)>, Vec<ConnId>) {
    sfu.negotiate_all();
    let (mut offers, mut closed) = (Vec::new(), Vec::new());
    while let Some(ev) = sfu.poll_event() {
        match ev {
            SfuEvent::Offer { conn, sdp, .. } => offers.push((conn, sdp)),
            SfuEvent::Closed(conn) => closed.push(conn),
            _ => {}
        }
    }
    (offers, closed)
}

fn pass(sfu: &mut Sfu, now: &mut Instant, ms: u64) {
    *now += Duration::from_millis(ms);
    sfu.handle_timeout(*now);
    while sfu.poll_transmit().is_some() {}
}

/// The answer a str0m client makes to `offer`.
fn correct_answer(now: Instant, offer: &str) -> String {
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now);
    let addr: SocketAddr = "10.9.0.2:6000".parse().unwrap();
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    rtc.sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(offer).unwrap())
        .unwrap()
        .to_sdp_string()
}

fn mids(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=mid:"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Answers arrive as JSON strings: UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut now = Instant::now();
    let sfu_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let mut sfu = Sfu::new(
        SfuConfig {
            candidates: vec![sfu_addr],
            ..Default::default()
        },
        now,
    );
    for c in [A, B, C] {
        sfu.add_connection(now, c).unwrap();
    }
    sfu.publish(A, TrackId(1), TrackKind::Video).unwrap();
    sfu.publish(A, TrackId(2), TrackKind::Voice).unwrap();
    sfu.publish(B, TrackId(3), TrackKind::Video).unwrap();
    sfu.publish(B, TrackId(4), TrackKind::Voice).unwrap();
    sfu.publish(C, TrackId(5), TrackKind::Audio).unwrap();
    for t in [1, 2, 5] {
        sfu.subscribe(B, TrackId(t)).unwrap();
    }
    let (offers, _) = events(&mut sfu);
    let offer_b = offers.iter().find(|o| o.0 == B).unwrap().1.clone();

    let mut sdp = text.to_owned();
    for (i, mid) in mids(&offer_b).iter().enumerate().rev() {
        sdp = sdp.replace(&format!("${i}"), mid);
    }
    let result = sfu.accept_answer(now, B, &sdp);
    if let Err(e) = &result {
        assert!(matches!(e, SfuError::BadSdp(_)), "{e:?}");
    }
    let (mut renewed, mut closed) = events(&mut sfu);
    for _ in 0..3 {
        pass(&mut sfu, &mut now, 500);
        let (o, c) = events(&mut sfu);
        renewed.extend(o);
        closed.extend(c);
    }
    if result.is_err() && !closed.contains(&B) && !renewed.iter().any(|o| o.0 == B) {
        // Not understood: the offer is still open.
        let good = correct_answer(now, &offer_b);
        assert_eq!(sfu.accept_answer(now, B, &good), Ok(()));
    }
    sfu.remove_connection(B);
    pass(&mut sfu, &mut now, 500);
    let d = ConnId(4);
    sfu.add_connection(now, d).unwrap();
    sfu.subscribe(d, TrackId(1)).unwrap();
    let (offers, _) = events(&mut sfu);
    assert!(offers.iter().any(|o| o.0 == d), "a newcomer gets an offer");
    pass(&mut sfu, &mut now, 500);
});

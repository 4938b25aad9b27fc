//! The forwarding path alone: one SRTP datagram from a publisher goes in, is
//! routed to its connection, unprotected, and written (rewritten and protected)
//! for N subscribers; the datagrams to send come out. No sockets.
//!
//! Throughput is reported in forwarded packets (one per subscriber), so the
//! figure reads as "forwarded packets per second on one core".

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use convene_sfu::{TrackId, TrackKind};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{Net, EDGE_UPLINK};

const CHUNK: usize = 2000;

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_video_1200B");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(20);
    for subscribers in [0usize, 1, 10, 100] {
        let mut net = Net::fan_out(subscribers + 1, TrackKind::Video);
        net.capture_from = Some(0);
        net.discard_sfu_output = true;
        let mut seq = 1u64;
        group.throughput(Throughput::Elements(subscribers.max(1) as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut left = iters as usize;
                    while left > 0 {
                        // Make a chunk of publisher datagrams (not timed)…
                        let n = left.min(CHUNK);
                        net.captured.clear();
                        net.send_video(0, seq, n, 1200);
                        net.flush_peer(0);
                        seq += n as u64;
                        let datagrams = std::mem::take(&mut net.captured);
                        assert!(datagrams.len() >= n, "the publisher sent its chunk");
                        let (from, to, now) = (net.peers[0].addr, net.sfu_addr, net.now);
                        // …and time only the SFU handling them.
                        let start = Instant::now();
                        for d in &datagrams {
                            net.sfu.handle_datagram(now, from, to, d);
                            while let Some(out) = net.sfu.poll_transmit() {
                                std::hint::black_box(out);
                            }
                        }
                        spent += start.elapsed();
                        left -= n;
                    }
                    spent
                });
            },
        );
    }
    group.finish();
}

/// The same datagrams from a publisher, sent on to an edge over a relay
/// instead of to a subscriber (cascading): the host's cost per relayed
/// packet, beside `forward_video_1200B/1`.
fn relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay_video_1200B");
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(20);
    let mut net = Net::cascade(1, 0);
    let track = TrackId(1);
    let publisher = net.peers[0].conn;
    net.sfu.publish(publisher, track, TrackKind::Video).unwrap();
    net.edge()
        .publish(EDGE_UPLINK, track, TrackKind::Video)
        .unwrap();
    net.settle();
    net.send_video(0, 1, 10, 1200);
    net.settle();
    assert!(net.sfu.stats().rtp_relayed > 0, "the relay carries video");
    net.capture_from = Some(0);
    net.discard_sfu_output = true;
    let mut seq = 100u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter(1), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(CHUNK);
                net.captured.clear();
                net.send_vp8(0, seq, n, 1200, false);
                net.flush_peer(0);
                seq += n as u64;
                let datagrams = std::mem::take(&mut net.captured);
                let (from, to, now) = (net.peers[0].addr, net.sfu_addr, net.now);
                let start = Instant::now();
                for d in &datagrams {
                    net.sfu.handle_datagram(now, from, to, d);
                    while let Some(out) = net.sfu.poll_transmit() {
                        std::hint::black_box(out);
                    }
                }
                spent += start.elapsed();
                left -= n;
            }
            spent
        });
    });
    group.finish();
}

criterion_group!(benches, forward, relay);
criterion_main!(benches);

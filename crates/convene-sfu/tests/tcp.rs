//! Media over ICE-TCP and ICE restarts, in memory: real str0m peers whose only
//! candidate is TCP reach the SFU's passive TCP candidate; a peer whose network
//! changes comes back on new ICE credentials without leaving.

mod support;

use std::time::Duration;

use convene_sfu::{SfuEvent, TrackId, TrackKind, Transport};
use support::Net;

#[test]
fn peers_that_only_have_tcp_publish_and_receive_through_the_tcp_candidate() {
    // Peer 0 publishes over TCP; peer 1 receives over TCP, peer 2 over UDP.
    let mut net = Net::with_transports(3, |i| {
        if i < 2 {
            Transport::Tcp
        } else {
            Transport::Udp
        }
    });
    net.sfu
        .publish(net.peers[0].conn, TrackId(1), TrackKind::Video)
        .unwrap();
    for i in 1..3 {
        let conn = net.peers[i].conn;
        net.sfu.subscribe(conn, TrackId(1)).unwrap();
    }
    net.settle();
    assert!(net.peers.iter().all(|p| p.connected), "every peer connects");
    net.send_video(0, 1, 100, 1000);
    net.settle();
    for i in 1..3 {
        assert_eq!(
            net.peers[i].received.len(),
            100,
            "peer {i} gets every packet"
        );
    }
    for (i, p) in net.peers.iter().enumerate() {
        match p.transport {
            Transport::Tcp => assert!(p.sent_tcp > 0 && p.sent_udp == 0, "peer {i}"),
            Transport::Udp => assert!(p.sent_udp > 0 && p.sent_tcp == 0, "peer {i}"),
        }
    }
}

#[test]
fn a_peer_whose_network_changed_comes_back_by_an_ice_restart() {
    let mut net = Net::fan_out(2, TrackKind::Video);
    net.send_video(0, 1, 10, 500);
    net.settle();
    assert_eq!(net.peers[1].received.len(), 10);

    // Peer 1 moves (Wi-Fi to mobile): the SFU's packets to the old address are
    // lost until the peer checks from the new one with new credentials.
    net.move_peer(1, "10.9.9.9:7000".parse().unwrap());
    net.sfu.restart_ice(net.peers[1].conn).unwrap();
    net.settle();
    net.run_for(Duration::from_secs(2));
    let closed =
        std::iter::from_fn(|| net.sfu.poll_event()).any(|e| matches!(e, SfuEvent::Closed(_)));
    assert!(!closed, "nobody's connection closed");
    net.send_vp8(0, 11, 10, 500, true);
    net.settle();
    assert_eq!(
        net.peers[1].received.len(),
        20,
        "media reaches the peer at its new address"
    );
    assert!(net.sfu.stats().connections == 2);
}

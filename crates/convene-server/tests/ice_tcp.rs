//! Media over ICE-TCP through the real server: headless participants whose
//! only candidate is TCP publish and receive, on a port of its own and on the
//! web port; and what hostile or broken TCP clients do to that port does not
//! reach anyone else's media.

mod common;

use std::time::Duration;

use convene_client::{Client, JoinOptions};
use convene_server::config::IceTcp;
use convene_server::RunningServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(15);

fn tcp() -> JoinOptions {
    JoinOptions {
        media_over_tcp: true,
        ..JoinOptions::default()
    }
}

async fn own_port() -> RunningServer {
    common::server_with(|c| {
        c.media_workers = Some(2);
        c.ice_tcp_listen = IceTcp::At("127.0.0.1:0".parse().unwrap());
    })
    .await
}

/// Ann and Bob, both over TCP, each publish a camera and see the other's.
async fn pair_over_tcp(server: &RunningServer, title: &str) -> (Client, Client) {
    let meeting = common::create_meeting(server, title).await;
    let mut ann = Client::join_with(&server.url, &meeting, "Ann", tcp())
        .await
        .unwrap();
    ann.publish("camera", 300).await.unwrap();
    let mut bob = Client::join_with(&server.url, &meeting, "Bob", tcp())
        .await
        .unwrap();
    bob.publish("camera", 300).await.unwrap();
    let (a, b) = (ann.participant_id.clone(), bob.participant_id.clone());
    let (ok_a, ok_b) = common::run_pair(
        &mut ann,
        &mut bob,
        T,
        |c| c.received_from(&b, "camera").packets > 30,
        |c| c.received_from(&a, "camera").packets > 30,
    )
    .await;
    assert!(ok_a && ok_b, "{title}: video both ways over TCP ({ok_a}, {ok_b}); errors {:?} {:?}; ann offers {} received {:?} connected {}", ann.errors, bob.errors, ann.offers, ann.received, ann.media_connected);
    assert!(ann.media_connected && bob.media_connected);
    (ann, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_without_udp_exchange_media_over_the_ice_tcp_port() {
    let server = own_port().await;
    // Two meetings, on the two workers: each TCP connection finds its worker.
    let first = pair_over_tcp(&server, "First").await;
    let second = pair_over_tcp(&server, "Second").await;
    let stats = server.state.sfu.stats();
    assert_eq!(stats.tcp_connections, 4, "connections are TCP: {stats:?}");
    // Operators see them in the admin stats.
    let token = "Authorization: Bearer test-admin-token\r\n";
    let (status, body) = common::http_with(&server, "GET", "/api/admin/stats", None, token).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["media"]["tcpConnections"], 4, "{v}");
    assert!(v["media"]["tcpFramesDropped"].is_u64(), "{v}");
    drop((first, second));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_port_also_carries_media_over_tcp() {
    let server = common::server_with(|c| c.ice_tcp_listen = IceTcp::Web).await;
    let pair = pair_over_tcp(&server, "Shared port").await;
    assert_eq!(server.state.sfu.stats().tcp_connections, 2);
    // And it still serves pages.
    let (status, _) = common::http(&server, "GET", "/", None).await;
    assert_eq!(status, 200);
    drop(pair);
    server.shutdown().await;
}

fn ice_tcp_addr(server: &RunningServer) -> std::net::SocketAddr {
    server.state.sfu.tcp_announce().expect("ICE-TCP is on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_half_open_connections_and_slow_readers_leave_others_media_alone() {
    let server = own_port().await;
    let addr = ice_tcp_addr(&server);
    let meeting = common::create_meeting(&server, "Under fire").await;
    let mut ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    ann.publish_with("camera", 3000, 30).await.unwrap();
    let mut bob = Client::join(&server.url, &meeting, "Bob", None)
        .await
        .unwrap();
    // Carl receives over TCP, then stops reading (a frozen tab, a stalled proxy).
    let mut carl = Client::join_with(&server.url, &meeting, "Carl", tcp())
        .await
        .unwrap();
    let a = ann.participant_id.clone();
    {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let (bob_ok, carl_ok) = (AtomicBool::new(false), AtomicBool::new(false));
        let both = || bob_ok.load(SeqCst) && carl_ok.load(SeqCst);
        tokio::join!(
            ann.run_until(T, |_| both()),
            bob.run_until(T, |c| {
                bob_ok.fetch_or(c.received_from(&a, "camera").packets > 50, SeqCst);
                both()
            }),
            carl.run_until(T, |c| {
                carl_ok.fetch_or(c.received_from(&a, "camera").packets > 50, SeqCst);
                both()
            }),
        );
        assert!(
            carl_ok.load(SeqCst),
            "Carl receives over TCP first: {:?}",
            carl.errors
        );
        assert!(bob_ok.load(SeqCst), "and Bob over UDP");
    }

    // Now, while Carl reads nothing: connections that never speak, that speak
    // garbage, that announce a frame larger than WebRTC sends, and that name
    // no connection of ours.
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut refused = 0;
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 1, 2, 3],
        {
            // A well-formed STUN binding request naming an unknown username.
            let mut f = vec![0, 32, 0, 1, 0, 12, 0x21, 0x12, 0xa4, 0x42];
            f.extend_from_slice(&[7; 12]);
            f.extend_from_slice(&[0, 6, 0, 8]);
            f.extend_from_slice(b"nobody:x");
            f
        },
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        if closed_within(&mut s, Duration::from_secs(3)).await {
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "each bad opening is closed at once");

    let before = bob.received_from(&a, "camera");
    tokio::join!(
        ann.run_until(Duration::from_secs(6), |_| false),
        bob.run_until(Duration::from_secs(6), |_| false),
    );
    let after = bob.received_from(&a, "camera");
    // 3 Mbit/s of 1200-byte packets is about 300 a second.
    assert!(
        after.packets - before.packets > 1000,
        "Bob's video kept flowing: {} packets in 6 s",
        after.packets - before.packets
    );
    let lost = after.missing.len().saturating_sub(before.missing.len()) as u64;
    assert!(
        lost * 100 <= after.packets - before.packets,
        "and lost next to nothing: {lost} packets missing"
    );
    let stats = server.state.sfu.stats();
    assert!(
        stats.tcp_frames_dropped > 0,
        "Carl's queue filled and frames were dropped, not buffered without end: {stats:?}"
    );
    // The silent connections were closed after their first-frame deadline.
    let mut closed = 0;
    for mut s in silent {
        if closed_within(&mut s, Duration::from_secs(2)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 100,
        "connections that never sent a STUN check are closed"
    );
    drop(carl);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_whose_network_changed_comes_back_by_an_ice_restart_and_nobody_sees_a_leave()
{
    let server = common::server().await;
    let meeting = common::create_meeting(&server, "On the move").await;
    let mut ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    ann.publish("camera", 300).await.unwrap();
    let mut bob = Client::join(&server.url, &meeting, "Bob", None)
        .await
        .unwrap();
    let a = ann.participant_id.clone();
    let (_, got) = common::run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| c.received_from(&a, "camera").packets > 30,
    )
    .await;
    assert!(got, "Bob sees Ann");
    let offers = bob.offers;
    let before = bob.received_from(&a, "camera").packets;
    bob.change_network().await.unwrap();
    let (_, back) = common::run_pair(
        &mut ann,
        &mut bob,
        T,
        |_| true,
        |c| c.offers > offers && c.received_from(&a, "camera").packets > before + 60,
    )
    .await;
    assert!(
        back,
        "video reaches Bob's new address after a new offer: errors {:?}",
        bob.errors
    );
    assert!(
        ann.left.is_empty() && bob.left.is_empty(),
        "nobody saw anyone leave: {:?} {:?}",
        ann.left,
        bob.left
    );
    assert_eq!(
        server.state.sfu.stats().connections,
        2,
        "still one connection each"
    );
    server.shutdown().await;
}

/// A STUN binding request naming `ufrag` (the server's) with a made-up
/// integrity value: it routes to a live connection but fails its ICE check.
fn forged_check(ufrag: &str) -> Vec<u8> {
    let username = format!("{ufrag}:evil");
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&0x0024u16.to_be_bytes()); // PRIORITY
    attrs.extend_from_slice(&4u16.to_be_bytes());
    attrs.extend_from_slice(&1_845_501_695u32.to_be_bytes());
    attrs.extend_from_slice(&0x0008u16.to_be_bytes()); // MESSAGE-INTEGRITY
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0x5a; 20]);
    let mut msg = vec![0x00, 0x01];
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    msg.extend_from_slice(&[9; 12]);
    msg.extend_from_slice(&attrs);
    let mut frame = (msg.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&msg);
    frame
}

async fn closed_within(s: &mut TcpStream, d: Duration) -> bool {
    let mut buf = [0u8; 64];
    let end = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowing_a_live_ice_username_does_not_keep_a_tcp_connection_open() {
    let server = own_port().await;
    let addr = ice_tcp_addr(&server);
    let meeting = common::create_meeting(&server, "Names are not keys").await;
    let mut ann = Client::join(&server.url, &meeting, "Ann", None)
        .await
        .unwrap();
    ann.publish("camera", 300).await.unwrap();
    ann.run_until(T, |c| c.media_connected).await;
    let offer = ann
        .log
        .iter()
        .find(|m| m["type"] == "offer")
        .and_then(|m| m["sdp"].as_str())
        .unwrap()
        .to_string();
    let ufrag = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_string();
    let check = forged_check(&ufrag);
    assert_eq!(
        convene_sfu::transport::first_frame(&check),
        Ok(Some(ufrag.clone())),
        "the forged check names Ann's connection, as the acceptor reads it"
    );

    // One floods forged checks: closed once past the unverified allowance.
    let mut flood = TcpStream::connect(addr).await.unwrap();
    for _ in 0..40 {
        // The server may close it before all 40 are written: then a write
        // fails (broken pipe), which is the outcome this part checks for.
        if flood.write_all(&check).await.is_err() {
            break;
        }
    }
    // One sends a forged check, then keeps the line warm with empty frames
    // and more forged checks: closed when its time to pass ICE is up.
    let mut warm = TcpStream::connect(addr).await.unwrap();
    warm.write_all(&check).await.unwrap();
    let keep_warm = async {
        for _ in 0..14 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if warm.write_all(&[0, 0]).await.is_err() || warm.write_all(&check).await.is_err() {
                break;
            }
        }
    };
    let (flood_closed, ()) =
        tokio::join!(closed_within(&mut flood, Duration::from_secs(3)), keep_warm);
    assert!(flood_closed, "a flood of failed checks is closed at once");
    assert!(
        closed_within(&mut warm, Duration::from_secs(1)).await,
        "a connection that never passes ICE is closed within its 10 s"
    );
    // Ann's own media connection is unharmed.
    assert!(ann.media_connected);
    drop(ann);
    server.shutdown().await;
}

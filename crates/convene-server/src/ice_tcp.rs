//! Media over TCP for browsers that cannot send UDP (ICE-TCP, RFC 6544): the
//! SFU offers a passive TCP candidate, and connections to it arrive here,
//! either on a port of their own (`--ice-tcp-listen ADDR`) or on the web port
//! itself, told apart from HTTP and TLS by their first bytes.
//!
//! All this side does is read the first frame, a STUN binding request naming
//! the SFU connection it is for, within [`FIRST_FRAME_TIMEOUT`], and hand the
//! socket to the media worker that holds that connection
//! ([`convene_sfu::pool::SfuPool::adopt_tcp`]); the worker reads and writes it
//! from then on. Connections count against the same per-address and total caps
//! as HTTP ones, for as long as they are open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use convene_sfu::pool::SfuPool;
use convene_sfu::transport::{first_frame, MAX_FRAME};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::listener::{Gate, Slot};

/// A client that connected must send its first STUN check within this.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Accept ICE-TCP connections on a port of their own until `stop` changes.
pub async fn serve(
    listener: TcpListener,
    pool: SfuPool,
    gate: Arc<Gate>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                debug!("ICE-TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = gate.enter(peer.ip()) else {
            continue; // dropped: over a cap (counted by the gate)
        };
        let pool = pool.clone();
        tokio::spawn(take_over(stream, peer, pool, slot, Vec::new()));
    }
}

/// Read the first frame (after `start`, bytes already read) and hand the
/// connection to its media worker, or close it with a log line.
pub async fn take_over(
    mut stream: TcpStream,
    peer: SocketAddr,
    pool: SfuPool,
    slot: Slot,
    start: Vec<u8>,
) {
    let mut buf = start;
    let read = tokio::time::timeout(FIRST_FRAME_TIMEOUT, async {
        loop {
            match first_frame(&buf) {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            let mut chunk = [0u8; 2 + MAX_FRAME];
            let room = (2 + MAX_FRAME).saturating_sub(buf.len()).max(1);
            match stream.read(&mut chunk[..room]).await {
                Ok(0) => return Err("closed before its first frame".to_string()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    match read {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            debug!(peer = %convene_sfu::logged_address::logged(peer), "ICE-TCP connection dropped: {why}");
            return;
        }
        Err(_) => {
            debug!(peer = %convene_sfu::logged_address::logged(peer), "ICE-TCP connection dropped: no STUN check within {FIRST_FRAME_TIMEOUT:?}");
            return;
        }
    }
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            debug!(peer = %convene_sfu::logged_address::logged(peer), "ICE-TCP: {e}");
            return;
        }
    };
    if let Err(e) = pool.adopt_tcp(stream, buf, Box::new(slot)) {
        debug!(peer = %convene_sfu::logged_address::logged(peer), "ICE-TCP connection dropped: {e}");
    }
}

//! Media over ICE-TCP for the headless client: one TCP connection to the SFU's
//! passive candidate, every datagram framed with a two-byte length (RFC 4571),
//! as a browser that cannot send UDP does it.

use std::io::ErrorKind;
use std::net::SocketAddr;

use convene_sfu::transport::{next_frame, push_frame};
use tokio::net::TcpStream;

/// Bytes waiting to be written before frames are dropped.
const MAX_QUEUED: usize = 1 << 20;
/// The socket's receive buffer: fixed, so that a client that stops reading
/// backs up into the server soon (tests of slow readers rely on it).
const RECV_BUFFER: u32 = 256 * 1024;

pub(crate) struct TcpLink {
    pub stream: TcpStream,
    pub remote: SocketAddr,
    input: Vec<u8>,
    output: Vec<u8>,
    buf: Vec<u8>,
}

impl TcpLink {
    pub async fn connect(remote: SocketAddr) -> std::io::Result<TcpLink> {
        let socket = if remote.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_recv_buffer_size(RECV_BUFFER)?;
        let stream = socket.connect(remote).await?;
        stream.set_nodelay(true)?;
        Ok(TcpLink {
            stream,
            remote,
            input: Vec::new(),
            output: Vec::new(),
            buf: vec![0; 64 * 1024],
        })
    }

    /// Frame `payload` and write what the kernel takes now.
    pub fn send(&mut self, payload: &[u8]) {
        if self.output.len() + payload.len() + 2 <= MAX_QUEUED {
            push_frame(&mut self.output, payload);
        }
        self.flush();
    }

    pub fn flush(&mut self) {
        while !self.output.is_empty() {
            match self.stream.try_write(&self.output) {
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Read what is there and hand each whole frame to `frame`. An error (EOF,
    /// a broken frame) means the connection is gone.
    pub fn read(&mut self, mut frame: impl FnMut(&[u8])) -> std::io::Result<()> {
        loop {
            match self.stream.try_read(&mut self.buf) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.input.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut taken = 0;
        while let Some((payload, n)) = next_frame(&self.input[taken..])
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?
        {
            frame(payload);
            taken += n;
        }
        self.input.drain(..taken);
        Ok(())
    }
}

/// The SFU's passive ICE-TCP candidate in an offer, if it has one.
pub(crate) fn passive_tcp_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|l| {
        let l = l.trim().strip_prefix("a=candidate:")?;
        let f: Vec<&str> = l.split_whitespace().collect();
        // foundation component transport priority address port typ host ... tcptype passive
        let passive = f.windows(2).any(|w| w == ["tcptype", "passive"]);
        if f.len() < 6 || !f[2].eq_ignore_ascii_case("tcp") || !passive {
            return None;
        }
        Some(SocketAddr::new(f[4].parse().ok()?, f[5].parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_passive_tcp_candidate_is_found() {
        let sdp = "a=candidate:1 1 udp 2130706175 10.0.0.1 5000 typ host\r\n\
                   a=candidate:2 1 tcp 1509949695 10.0.0.1 443 typ host tcptype passive\r\n";
        assert_eq!(
            super::passive_tcp_candidate(sdp),
            Some("10.0.0.1:443".parse().unwrap())
        );
        assert_eq!(
            super::passive_tcp_candidate("a=candidate:1 1 udp 1 10.0.0.1 5000 typ host"),
            None
        );
    }
}

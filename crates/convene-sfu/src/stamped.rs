//! Receiving a datagram with the kernel's arrival time (`SO_TIMESTAMPNS`): how
//! long a packet waited before this process got to it. The SFU drops media that
//! waited too long (see `MAX_MEDIA_AGE`); the load generator measures the
//! server's delay without its own scheduling in it. Linux only.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Ask the kernel to stamp each datagram received on `fd` with its arrival time.
pub fn enable(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Ask the kernel to hand over a sender's segmented run of datagrams (UDP
/// segmentation offload, see `sendmany.rs`) in one piece where it can: one read
/// and one wake-up instead of one per datagram. `recv` says where they split.
pub fn enable_gro(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What one read brought.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes in the buffer.
    pub len: usize,
    pub source: SocketAddr,
    /// When the kernel received it (wall clock), if it said.
    pub arrival: Option<SystemTime>,
    /// With `enable_gro`: several datagrams of this size in a row (the last may
    /// be shorter). `None`: one datagram.
    pub segment: Option<usize>,
}

impl Received {
    /// The datagrams in `buf[..len]`, as ranges.
    pub fn datagrams(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let (len, step) = (self.len, self.segment.unwrap_or(self.len).max(1));
        (0..len)
            .step_by(step)
            .map(move |start| start..(start + step).min(len))
    }
}

/// One read into `buf` (make it 64 KiB with `enable_gro`).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: every pointer in `msg` points at a live local of the stated size,
    // and the control messages are read only within what the kernel wrote.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for the timestamp (32 bytes) and the GRO segment size (24) with
        // plenty to spare, 8-byte aligned.
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // A datagram larger than the buffer, or control data cut short (a run
        // without its segment size would look like one datagram): drop it.
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "datagram or its control data truncated",
            ));
        }
        let mut arrival = None;
        let mut segment = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                arrival = Some(UNIX_EPOCH + Duration::new(t.tv_sec as u64, t.tv_nsec as u32));
            }
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                segment = usize::try_from(size).ok().filter(|&s| s > 0);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let source = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let a: libc::sockaddr_in =
                    std::ptr::read((&addr as *const libc::sockaddr_storage).cast());
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                SocketAddr::from((ip, u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                let a: libc::sockaddr_in6 =
                    std::ptr::read((&addr as *const libc::sockaddr_storage).cast());
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an IP sender",
                ))
            }
        };
        Ok(Received {
            len: n as usize,
            source,
            arrival,
            segment,
        })
    }
}

/// Translates kernel arrival times (wall clock) to `Instant`s, from one reading
/// of both clocks taken when a batch of datagrams is read.
#[derive(Clone, Copy)]
pub struct Clocks {
    instant: Instant,
    wall: SystemTime,
}

impl Clocks {
    pub fn now() -> Self {
        Clocks {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// When the clocks were read.
    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// When a datagram that arrived at `wall` arrived, as an `Instant` (now, if
    /// unknown or apparently in the future). The kernel stamps with the wall
    /// clock: if that is stepped forward while datagrams wait, they look older
    /// than they are, once.
    pub fn instant_of(&self, wall: Option<SystemTime>) -> Instant {
        let ago = wall
            .and_then(|w| self.wall.duration_since(w).ok())
            .unwrap_or_default();
        self.instant.checked_sub(ago).unwrap_or(self.instant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_datagram_comes_with_its_arrival_time() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(rx.as_raw_fd()).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel turns arrival stamping on a moment after the first socket
        // asks (a deferred switch); until then it stamps at the read. So the
        // first datagrams of a process may look fresh: try a few.
        let mut waits = Vec::new();
        for _ in 0..10 {
            tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let clocks = Clocks::now();
            let mut buf = [0u8; 64];
            let r = recv(rx.as_raw_fd(), &mut buf).unwrap();
            assert_eq!(&buf[..r.len], b"hello");
            assert_eq!(r.source, tx.local_addr().unwrap());
            // It arrived about 50 ms before we read it, and we can tell.
            let waited = clocks.instant.duration_since(clocks.instant_of(r.arrival));
            assert!(waited < Duration::from_secs(5), "{waited:?}");
            if waited >= Duration::from_millis(40) {
                return;
            }
            waits.push(waited);
        }
        panic!("never stamped on arrival: {waits:?}");
    }

    #[test]
    fn an_ipv6_sender_is_told_apart() {
        let Ok(rx) = std::net::UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        enable(rx.as_raw_fd()).unwrap();
        let tx = std::net::UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"hi", rx.local_addr().unwrap()).unwrap();
        rx.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 16];
        let r = recv(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"hi");
        assert_eq!(r.source, tx.local_addr().unwrap());
        assert!(r.arrival.is_some());
    }

    /// A segmented run arrives in one read with GRO on, and splits back into the
    /// datagrams that were sent.
    #[test]
    fn a_segmented_run_is_read_at_once_and_split_where_it_was_cut() {
        use crate::sendmany::SendMany;
        use crate::Datagram;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(rx.as_raw_fd()).unwrap();
        enable_gro(rx.as_raw_fd()).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sizes = [1200, 1200, 1200, 500];
        let datagrams: Vec<Datagram> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Datagram {
                transport: crate::Transport::Udp,
                source: tx.local_addr().unwrap(),
                destination: rx.local_addr().unwrap(),
                contents: vec![i as u8; n],
            })
            .collect();
        let mut sender = SendMany::default();
        sender.send(&tx, &datagrams, |_, e| panic!("{e}"));
        assert_eq!(sender.segmented_messages, 1);
        let mut buf = vec![0u8; 65536];
        let r = recv(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(r.segment, Some(1200), "one read for the run");
        let got: Vec<Vec<u8>> = r.datagrams().map(|range| buf[range].to_vec()).collect();
        let sent: Vec<Vec<u8>> = datagrams.into_iter().map(|d| d.contents).collect();
        assert_eq!(got, sent);
    }

    #[test]
    fn a_read_without_segments_is_one_datagram() {
        let r = Received {
            len: 700,
            source: "127.0.0.1:1".parse().unwrap(),
            arrival: None,
            segment: None,
        };
        assert_eq!(r.datagrams().collect::<Vec<_>>(), vec![0..700]);
        let r = Received {
            segment: Some(300),
            ..r
        };
        assert_eq!(
            r.datagrams().collect::<Vec<_>>(),
            vec![0..300, 300..600, 600..700]
        );
    }
}

//! Sends a batch of datagrams, each to its own destination, in as few system calls
//! as the platform allows: `sendmmsg` on Linux (up to [`MAX_PER_CALL`] messages per
//! call), one `send_to` each elsewhere.
//!
//! A fan-out sends one datagram per subscriber, all to different addresses; but a
//! subscriber's datagrams leave together (it is drained once per batch: a video
//! frame's packets), and those go out as one message with UDP segmentation offload
//! (`UDP_SEGMENT`): the kernel routes and queues them once and cuts them into the
//! original datagrams (all as long as the first, the last possibly shorter), so
//! receivers see no difference.

use std::io;
use std::net::UdpSocket;

use crate::Datagram;

/// Messages per `sendmmsg` call (the kernel's own limit is 1024).
pub const MAX_PER_CALL: usize = 64;
/// Datagrams in one segmented message (the kernel's limit, UDP_MAX_SEGMENTS).
#[cfg(target_os = "linux")]
const MAX_SEGMENTS: usize = 64;
/// Bytes in one segmented message: what one IPv4 datagram may carry.
#[cfg(target_os = "linux")]
const MAX_SEGMENTED_BYTES: usize = 65_507;
/// Datagrams per call, however they are grouped into messages.
#[cfg(target_os = "linux")]
const MAX_DATAGRAMS_PER_CALL: usize = 256;

/// Reusable buffers for the system call's arguments, and whether the kernel
/// takes segmented messages.
#[derive(Default)]
pub struct SendMany {
    #[cfg(target_os = "linux")]
    addrs: Vec<socket2::SockAddr>,
    /// Whether the kernel was asked if it segments (kernels before 4.18 ignore
    /// the control message and would send a run as one datagram).
    #[cfg(target_os = "linux")]
    probed: bool,
    /// The kernel does not segment: one datagram per message.
    #[cfg(target_os = "linux")]
    no_segmentation: bool,
    /// Datagrams to send one per message before grouping again (a run whose
    /// segmented message was refused, e.g. for a route's small MTU).
    #[cfg(target_os = "linux")]
    singly: usize,
    /// Messages that carried more than one datagram (for tests and curiosity).
    pub segmented_messages: u64,
}

impl SendMany {
    /// Send every datagram; `on_error` hears about each one that could not be sent
    /// (the rest are still sent).
    pub fn send(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[Datagram],
        mut on_error: impl FnMut(&Datagram, io::Error),
    ) {
        #[cfg(target_os = "linux")]
        if !self.probed {
            self.probed = true;
            self.no_segmentation = !kernel_segments(socket);
            if self.no_segmentation {
                tracing::info!("no UDP segmentation offload here: one datagram per message");
            }
        }
        let mut start = 0;
        while start < datagrams.len() {
            match self.send_some(socket, &datagrams[start..]) {
                Ok(n) => start += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The first datagram failed (an ICMP error from an earlier send to a
                // peer that left, or a full buffer): skip it, carry on with the rest.
                Err(e) => {
                    on_error(&datagrams[start], e);
                    start += 1;
                }
            }
        }
    }

    /// How many datagrams from the front go in one message: those that follow
    /// the first to the same destination, as long as it (or shorter, last).
    #[cfg(target_os = "linux")]
    fn group_len(&mut self, datagrams: &[Datagram], room: usize) -> usize {
        let first = &datagrams[0];
        let size = first.contents.len();
        if self.singly > 0 {
            self.singly -= 1;
            return 1;
        }
        if self.no_segmentation || size == 0 {
            return 1;
        }
        let mut len = 1;
        let mut bytes = size;
        while len < datagrams.len().min(MAX_SEGMENTS).min(room) {
            let d = &datagrams[len];
            let n = d.contents.len();
            let previous_full = datagrams[len - 1].contents.len() == size;
            if d.destination != first.destination
                || n > size
                || n == 0
                || !previous_full
                || bytes + n > MAX_SEGMENTED_BYTES
            {
                break;
            }
            len += 1;
            bytes += n;
        }
        len
    }

    /// One `sendmmsg`: returns how many datagrams it sent.
    #[cfg(target_os = "linux")]
    fn send_some(&mut self, socket: &UdpSocket, datagrams: &[Datagram]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;

        // (first datagram, datagrams) of each message.
        let mut groups = [(0usize, 0usize); MAX_PER_CALL];
        let mut messages = 0;
        let mut taken = 0;
        let limit = datagrams.len().min(MAX_DATAGRAMS_PER_CALL);
        while taken < limit && messages < MAX_PER_CALL {
            let len = self.group_len(&datagrams[taken..limit], limit - taken);
            groups[messages] = (taken, len);
            messages += 1;
            taken += len;
        }
        self.addrs.clear();
        self.addrs.extend(
            groups[..messages]
                .iter()
                .map(|&(first, _)| socket2::SockAddr::from(datagrams[first].destination)),
        );
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_DATAGRAMS_PER_CALL];
        for (i, d) in datagrams[..taken].iter().enumerate() {
            iov[i].iov_base = d.contents.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = d.contents.len();
        }
        // One control message per segmented message: the segment size, a u16
        // (8-byte aligned buffers, larger than CMSG_SPACE(2)).
        let mut control = [[0u64; 4]; MAX_PER_CALL];
        // SAFETY: an all-zero mmsghdr is a valid empty header (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; MAX_PER_CALL] = unsafe { std::mem::zeroed() };
        for (m, &(first, len)) in groups[..messages].iter().enumerate() {
            let h = &mut hdrs[m].msg_hdr;
            h.msg_name = self.addrs[m].as_ptr() as *mut libc::c_void;
            h.msg_namelen = self.addrs[m].len();
            // SAFETY: first + len <= taken <= MAX_DATAGRAMS_PER_CALL.
            h.msg_iov = unsafe { iov.as_mut_ptr().add(first) };
            h.msg_iovlen = len as _;
            if len > 1 {
                let segment = datagrams[first].contents.len() as u16;
                // SAFETY: `control[m]` is 32 bytes, 8-aligned, room for one cmsghdr
                // with a u16 (CMSG_SPACE(2) is 24 on Linux); CMSG_FIRSTHDR reads only
                // the header fields set here.
                unsafe {
                    h.msg_control = control[m].as_mut_ptr().cast();
                    h.msg_controllen = libc::CMSG_SPACE(2) as _;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
                }
            }
        }
        // SAFETY: the first `messages` headers point into `iov`, `control`,
        // `self.addrs` and the datagrams' contents, all alive and unmoved until the
        // call returns; the kernel only reads them (it writes msg_len, which is ours).
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                messages as libc::c_uint,
                0,
            )
        };
        if sent < 0 {
            let e = io::Error::last_os_error();
            // EINVAL: the route's MTU is below the segment; EIO: a route that
            // cannot segment (IPsec, no checksum offload). Both concern this
            // destination: send its run again, one datagram per message.
            let refused = matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL));
            if groups[0].1 > 1 && refused {
                tracing::debug!("segmented send refused ({e}); sending that run singly");
                self.singly = groups[0].1;
                return Err(io::ErrorKind::Interrupted.into());
            }
            return Err(e);
        }
        let sent = sent as usize;
        self.segmented_messages += groups[..sent].iter().filter(|g| g.1 > 1).count() as u64;
        Ok(groups[..sent].iter().map(|g| g.1).sum())
    }

    #[cfg(not(target_os = "linux"))]
    fn send_some(&mut self, socket: &UdpSocket, datagrams: &[Datagram]) -> io::Result<usize> {
        socket.send_to(&datagrams[0].contents, datagrams[0].destination)?;
        Ok(1)
    }
}

/// Whether the kernel knows UDP segmentation offload (Linux 4.18 and later): it
/// answers a query for the option. Older ones would ignore the control message.
#[cfg(target_os = "linux")]
fn kernel_segments(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid descriptor, and an int-sized output buffer with its length.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams to several receivers, more than one call's worth, arrive intact
    /// and in order; one to a closed port does not stop the others.
    #[test]
    fn sends_each_datagram_to_its_destination() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let receivers: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut datagrams = Vec::new();
        for i in 0..150u32 {
            let destination = if i == 70 {
                closed
            } else {
                receivers[i as usize % 3].local_addr().unwrap()
            };
            datagrams.push(Datagram {
                transport: crate::Transport::Udp,
                source: sender.local_addr().unwrap(),
                destination,
                contents: i.to_be_bytes().repeat(1 + i as usize % 5),
            });
        }
        let mut errors = 0;
        SendMany::default().send(&sender, &datagrams, |_, _| errors += 1);
        let mut buf = [0u8; 64];
        for (r, receiver) in receivers.iter().enumerate() {
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            for i in (0..150u32).filter(|i| *i as usize % 3 == r && *i != 70) {
                let (n, from) = receiver.recv_from(&mut buf).unwrap();
                assert_eq!(from, sender.local_addr().unwrap());
                assert_eq!(&buf[..n], &i.to_be_bytes().repeat(1 + i as usize % 5)[..]);
            }
        }
        // Loopback reports the closed port on a later call at most once.
        assert!(errors <= 1, "errors: {errors}");
    }

    /// Where a run is cut: a new destination, a datagram after a shorter one, a
    /// larger one, 64 segments, the size of one IP datagram, the room left.
    #[test]
    fn runs_are_cut_where_segmentation_would_change_them() {
        let (a, b): (std::net::SocketAddr, std::net::SocketAddr) = (
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:1001".parse().unwrap(),
        );
        let d = |to, len| Datagram {
            transport: crate::Transport::Udp,
            source: a,
            destination: to,
            contents: vec![0; len],
        };
        let mut s = SendMany::default();
        let frame = [d(a, 1200), d(a, 1200), d(a, 500), d(a, 1200)];
        assert_eq!(s.group_len(&frame, 256), 3, "the short one ends the run");
        assert_eq!(s.group_len(&[d(a, 1200), d(b, 1200)], 256), 1);
        assert_eq!(s.group_len(&[d(a, 500), d(a, 1200)], 256), 1);
        let big: Vec<Datagram> = (0..60).map(|_| d(a, 1200)).collect();
        assert_eq!(s.group_len(&big, 256), 54, "54 × 1200 fit in 65 507 bytes");
        assert_eq!(s.group_len(&big, 10), 10);
        let small: Vec<Datagram> = (0..70).map(|_| d(a, 100)).collect();
        assert_eq!(s.group_len(&small, 256), 64);
        // After a refusal, that run goes singly, then grouping resumes.
        s.singly = 2;
        assert_eq!(s.group_len(&frame, 256), 1);
        assert_eq!(s.group_len(&frame[1..], 256), 1);
        assert_eq!(s.group_len(&frame, 256), 3);
    }

    /// A subscriber's datagrams in a row go out as segmented messages, and arrive
    /// as the datagrams they were: same contents, same order, same boundaries.
    #[test]
    fn a_run_to_one_destination_arrives_as_separate_datagrams() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagram = |to: &UdpSocket, tag: u8, len: usize| Datagram {
            transport: crate::Transport::Udp,
            source: sender.local_addr().unwrap(),
            destination: to.local_addr().unwrap(),
            contents: vec![tag; len],
        };
        // A frame of three full packets and a short last one; a shorter packet
        // that is not last (it ends a message); another destination; a run longer
        // than one message may hold.
        let mut datagrams = vec![
            datagram(&a, 1, 1200),
            datagram(&a, 2, 1200),
            datagram(&a, 3, 1200),
            datagram(&a, 4, 700),
            datagram(&b, 5, 900),
            datagram(&b, 6, 500),
            datagram(&b, 7, 900),
            datagram(&a, 8, 300),
        ];
        for i in 0..70 {
            datagrams.push(datagram(&b, 100 + i, 200));
        }
        let mut sender_many = SendMany::default();
        let mut errors = 0;
        sender_many.send(&sender, &datagrams, |_, _| errors += 1);
        assert_eq!(errors, 0);
        assert!(sender_many.segmented_messages >= 3, "runs were segmented");
        let mut buf = [0u8; 2000];
        for r in [&a, &b] {
            r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            for d in datagrams
                .iter()
                .filter(|d| d.destination == r.local_addr().unwrap())
            {
                let (n, _) = r.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &d.contents[..], "datagram {}", d.contents[0]);
            }
        }
    }
}

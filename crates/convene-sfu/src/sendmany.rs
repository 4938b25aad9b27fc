//! Sends a batch of datagrams, each to its own destination, in as few system calls
//! as the platform allows: `sendmmsg` on Linux (up to [`MAX_PER_CALL`] per call),
//! one `send_to` each elsewhere.
//!
//! A fan-out sends one datagram per subscriber, all to different addresses, so
//! segmentation offload (GSO) does not apply; batching the calls does.

use std::io;
use std::net::UdpSocket;

use crate::Datagram;

/// Datagrams per `sendmmsg` call (the kernel's own limit is 1024).
pub const MAX_PER_CALL: usize = 64;

/// Reusable buffers for the system call's arguments.
#[derive(Default)]
pub struct SendMany {
    #[cfg(target_os = "linux")]
    addrs: Vec<socket2::SockAddr>,
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
        let mut start = 0;
        while start < datagrams.len() {
            let end = datagrams.len().min(start + MAX_PER_CALL);
            match self.send_some(socket, &datagrams[start..end]) {
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

    #[cfg(target_os = "linux")]
    fn send_some(&mut self, socket: &UdpSocket, datagrams: &[Datagram]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;

        self.addrs.clear();
        self.addrs.extend(
            datagrams
                .iter()
                .map(|d| socket2::SockAddr::from(d.destination)),
        );
        let mut iov: [libc::iovec; MAX_PER_CALL] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_PER_CALL];
        // SAFETY: an all-zero mmsghdr is a valid empty header (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; MAX_PER_CALL] = unsafe { std::mem::zeroed() };
        let n = datagrams.len().min(MAX_PER_CALL);
        for i in 0..n {
            iov[i].iov_base = datagrams[i].contents.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = datagrams[i].contents.len();
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
            h.msg_namelen = self.addrs[i].len();
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: the first n headers point into `iov`, `self.addrs` and the
        // datagrams' contents, all alive and unmoved until the call returns; the
        // kernel only reads them (it writes msg_len, which is ours).
        let sent =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn send_some(&mut self, socket: &UdpSocket, datagrams: &[Datagram]) -> io::Result<usize> {
        socket.send_to(&datagrams[0].contents, datagrams[0].destination)?;
        Ok(1)
    }
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
}

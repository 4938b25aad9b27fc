//! The SFU's input and output: datagrams and TCP frames in, str0m driven by
//! timeouts, datagrams and events out, and what each connection's str0m
//! reports (keyframe requests, estimates, statistics).

use super::*;

impl Sfu {
    /// A datagram handled as soon as it arrived.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.handle_datagram_received(now, now, source, destination, data);
    }

    /// A datagram the kernel received at `arrived` (earlier than `now` when it
    /// waited in the socket's queue): media in it older than [`MAX_MEDIA_AGE`] is
    /// not forwarded.
    pub fn handle_datagram_received(
        &mut self,
        now: Instant,
        arrived: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.arrived = Some(arrived);
        let _ = self.receive(now, (Transport::Udp, source), destination, data);
        self.arrived = None;
    }

    /// One frame from an ICE-TCP connection: `source` is the client's end of
    /// the connection, `destination` the SFU's TCP candidate it connected to.
    /// (TCP already delays what it carries; frames are not dropped as late.)
    /// True if the frame went to a connection: from a peer that passed an ICE
    /// check (or this frame was that check). A TCP connection that sends
    /// nothing else is no one's (the driver closes it).
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.receive(now, (Transport::Tcp, source), destination, data)
    }

    /// An ICE-TCP connection closed: its address no longer routes (a new
    /// connection from the same address and port must pass ICE again).
    pub fn forget_tcp_peer(&mut self, peer: SocketAddr) {
        self.routes.forget((Transport::Tcp, peer));
    }

    /// The next ICE-TCP peer whose connection was removed: its TCP connection
    /// should close.
    pub fn poll_dropped_tcp_peer(&mut self) -> Option<SocketAddr> {
        self.routes.poll_dropped_tcp_peer()
    }

    /// The next ICE username fragment that became known (`true`) or was
    /// forgotten (`false`): which worker a new ICE-TCP connection belongs to.
    pub fn poll_ufrag_change(&mut self) -> Option<(String, bool)> {
        self.routes.poll_ufrag_change()
    }

    /// Move `conn` to new ICE credentials (RFC 8445 §9), for a client whose
    /// network changed: the next offer carries them, and the client's new
    /// address is learnt from its checks. Media and m-lines are kept.
    pub fn restart_ice(&mut self, conn: ConnId) -> Result<(), SfuError> {
        // A relay's edge restarts ICE with an offer of its own.
        let c = self
            .conns
            .get_mut(&conn)
            .filter(|c| c.relay.is_none())
            .ok_or(SfuError::UnknownConnection)?;
        c.ice_restart = true;
        c.dirty = true;
        self.to_negotiate.insert(conn);
        Ok(())
    }

    pub(super) fn receive(
        &mut self,
        now: Instant,
        (transport, source): (Transport, SocketAddr),
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.now = self.now.max(now);
        self.stats.datagrams_in += 1;
        let (conn_id, verify) = match self.routes.lookup((transport, source), data) {
            Route::Known(c) => (c, false),
            Route::Candidate(c) => (c, true),
            Route::Unknown => {
                self.stats.unroutable += 1;
                return false;
            }
        };
        let Ok(contents) = data.try_into() else {
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: match transport {
                    Transport::Udp => Protocol::Udp,
                    Transport::Tcp => Protocol::Tcp,
                },
                source,
                destination,
                contents,
            },
        );
        let Some(c) = self.conns.get_mut(&conn_id) else {
            return false;
        };
        if verify {
            if !c.rtc.accepts(&input) {
                return false;
            }
            self.routes.learn(conn_id, (transport, source));
        }
        if let Err(e) = c.rtc.handle_input(input) {
            debug!(conn = %conn_id, "input rejected: {e}");
        }
        self.drain(conn_id);
        self.process_work(now);
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        // Each connection due is handled once per call: str0m's pacer may ask
        // for another timeout at the same instant, which waits for the next call.
        let mut due = Vec::new();
        while let Some(Reverse((at, conn))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            due.push((at, conn));
        }
        for (at, conn) in due {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if c.scheduled != Some(at) {
                continue; // superseded by an earlier entry
            }
            c.scheduled = None;
            match c.next_timeout {
                Some(t) if t <= now => {
                    if let Err(e) = c.rtc.handle_input(Input::Timeout(now)) {
                        debug!(conn = %conn, "timeout error: {e}");
                    }
                    self.drain(conn);
                }
                Some(t) => {
                    c.scheduled = Some(t);
                    self.timers.push(Reverse((t, conn)));
                }
                None => {}
            }
        }
        if now >= self.next_layer_tick {
            self.next_layer_tick = now + LAYER_TICK;
            self.layer_tick(now);
        }
        if now >= self.next_speaking_tick {
            self.next_speaking_tick = now + SPEAKING_TICK;
            for (track, p) in self.producers.iter_mut() {
                if let Some(speaking) = p.speaking.on_tick(now) {
                    self.events.push_back(SfuEvent::Speaking {
                        track: *track,
                        speaking,
                    });
                }
            }
        }
        self.process_work(now);
    }

    pub fn next_timeout(&self) -> Instant {
        if !self.to_drain.is_empty() {
            return self.now;
        }
        let ticks = self.next_speaking_tick.min(self.next_layer_tick);
        let t = self.timers.peek().map(|Reverse((t, _))| *t);
        t.map_or(ticks, |t| t.min(ticks))
    }

    /// The next datagram to send. Datagrams from several inputs may be batched:
    /// call this until it returns `None` after each batch of inputs.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        // Subscribers are drained one at a time as their datagrams are taken, so a
        // keyframe to 500 people is never all encrypted and queued at once (that
        // held megabytes, and each datagram goes out while still in cache).
        loop {
            if let Some(d) = self.transmits.pop_front() {
                return Some(d);
            }
            let conn = self.to_drain.pop_front()?;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.written = false;
            }
            self.drain(conn);
            self.process_work(self.now);
        }
    }

    /// Queue an event for the layer above (the driver reports failed commands so).
    pub fn push_event(&mut self, event: SfuEvent) {
        self.events.push_back(event);
    }

    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// Drain one connection's output to its timeout (str0m's contract after every
    /// mutation). Events are queued, not handled here, so handling cannot recurse.
    pub(super) fn drain(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // str0m asks for an immediate timeout when it has queued media to send;
        // answering at once sends forwarded packets now, not at the next timer.
        let mut immediate = 0;
        loop {
            match c.rtc.poll_output() {
                Ok(Output::Timeout(t)) if t <= self.now && immediate < MAX_IMMEDIATE_TIMEOUTS => {
                    immediate += 1;
                    if let Err(e) = c.rtc.handle_input(Input::Timeout(self.now)) {
                        debug!(conn = %conn, "timeout error: {e}");
                    }
                }
                Ok(Output::Timeout(t)) => {
                    c.next_timeout = Some(t);
                    if c.scheduled.is_none_or(|s| t < s) {
                        c.scheduled = Some(t);
                        self.timers.push(Reverse((t, conn)));
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    // A relay checks the edge's candidates: the answers, and
                    // all that follows, come from where it sent them.
                    if c.relay.is_some() && t.contents.first().is_some_and(|b| *b < 4) {
                        let peer = (Transport::Udp, t.destination);
                        if !self.routes.learn_if_free(conn, peer) {
                            debug!(conn = %conn, "a relay's edge address belongs to another connection");
                        }
                    }
                    self.transmits.push_back(Datagram {
                        transport: match t.proto {
                            Protocol::Udp => Transport::Udp,
                            _ => Transport::Tcp,
                        },
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    })
                }
                Ok(Output::Event(e)) => self.work.push_back((conn, e)),
                Err(e) => {
                    warn!(conn = %conn, "connection failed: {e}");
                    c.rtc.disconnect();
                    break;
                }
            }
        }
        if !c.rtc.is_alive() {
            self.remove_connection(conn);
            self.events.push_back(SfuEvent::Closed(conn));
        }
    }

    pub(super) fn process_work(&mut self, now: Instant) {
        while let Some((conn, event)) = self.work.pop_front() {
            match event {
                Event::RtpPacket(pkt) => self.forward(now, conn, pkt),
                Event::KeyframeRequest(req) => {
                    // For the layer the subscriber receives (or is moving to).
                    // A relay's edge asks for the layer it names.
                    let wanted = self.conns.get(&conn).and_then(|c| {
                        let idx = c.slot_by_mid(req.mid)?;
                        let s = &c.slots[idx];
                        if s.dir != SlotDirection::Receive {
                            return None;
                        }
                        if c.relay.is_some() {
                            return Some((s.track?, relay::layer_of(req.rid)));
                        }
                        Some((s.track?, s.current.or(s.target)?))
                    });
                    if let Some((track, layer)) = wanted {
                        // A camera without layers sent on an edge's layer:
                        // its only one.
                        let layers = self.producers.get(&track).map_or(0, |p| p.layers.len());
                        let layer = if usize::from(layer) < layers {
                            layer
                        } else {
                            0
                        };
                        self.request_keyframe(now, track, layer);
                    }
                }
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                    let bps = estimate.as_u64();
                    if let Some(c) = self.conns.get_mut(&conn).filter(|c| !c.feedback.without()) {
                        // Small moves are noise; choosing again costs a walk
                        // through the subscriber's videos.
                        let moved = c.estimate.is_none_or(|e| bps.abs_diff(e) * 20 > e);
                        if moved {
                            debug!(conn = %conn, bps, "downlink estimate");
                            c.estimate = Some(bps);
                            c.climb.on_estimate(now, bps);
                            self.allocate(conn);
                        }
                    }
                }
                Event::PeerStats(st) if self.is_relay(conn) => {
                    self.events.push_back(SfuEvent::RelayLink {
                        conn,
                        loss: st.egress_loss_fraction,
                        rtt: st.rtt,
                    });
                }
                Event::PeerStats(st) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        let rtt = st.rtt.or_else(|| {
                            st.selected_candidate_pair
                                .as_ref()
                                .and_then(|p| p.current_round_trip_time)
                        });
                        let q = c.quality.on_stats(
                            st.ingress_loss_fraction,
                            st.egress_loss_fraction,
                            rtt,
                            None,
                        );
                        if let Some(quality) = q {
                            self.events.push_back(SfuEvent::Quality { conn, quality });
                        }
                        // A subscriber's estimate is only as good as its
                        // feedback: without any, a small fixed budget.
                        let reported = st.egress_loss_fraction.is_some();
                        let estimate = match c.feedback.on_stats(st.bytes_tx, reported) {
                            Some(FeedbackChange::Stopped) => Some(NO_FEEDBACK_ESTIMATE),
                            Some(FeedbackChange::Resumed) => {
                                Some(st.bwe_tx.map_or(INITIAL_ESTIMATE, |b| b.as_u64()))
                            }
                            None => None,
                        };
                        debug!(conn = %conn, bytes_tx = st.bytes_tx, loss = ?st.egress_loss_fraction, offered = ?st.egress_offered, delivered = ?st.egress_delivered, bwe = ?st.bwe_tx, "stats");
                        let new_cap = c.loss_cap.on_stats(
                            now,
                            st.bytes_tx,
                            st.egress_loss_fraction,
                            st.egress_offered
                                .zip(st.egress_delivered)
                                .map(|(sent, delivered)| crate::loss_cap::Recent {
                                    sent: sent.as_u64(),
                                    delivered: delivered.as_u64(),
                                }),
                        );
                        if let Some(cap) = new_cap {
                            debug!(conn = %conn, cap, loss = ?st.egress_loss_fraction, "loss cap set");
                            c.climb.on_estimate(now, cap);
                        }
                        // A cap that has just run out frees what it held.
                        let expired = c.capped && c.loss_cap.cap(now).is_none();
                        if let Some(bps) = estimate {
                            info!(conn = %conn, bps, reported, "congestion feedback changed");
                            c.estimate = Some(bps);
                            c.climb.on_estimate(now, bps);
                        }
                        if estimate.is_some() || new_cap.is_some() || expired {
                            self.allocate(conn);
                        }
                    }
                }
                Event::MediaIngressStats(st) => {
                    // Jitter of the participant's audio (48 kHz clock): video
                    // frames leave in bursts, and a paused simulcast layer's
                    // figure is stale (it read as 0.8 s on a quiet loopback).
                    if let Some(c) = self.conns.get_mut(&conn) {
                        let audio = c
                            .slot_by_mid(st.mid)
                            .is_some_and(|i| c.slots[i].kind.is_audio());
                        if !audio {
                            continue;
                        }
                        let jitter = Duration::from_millis(u64::from(st.jitter) / 48);
                        if let Some(quality) = c.quality.on_stats(None, None, None, Some(jitter)) {
                            self.events.push_back(SfuEvent::Quality { conn, quality });
                        }
                    }
                }
                Event::Connected => {
                    info!(conn = %conn, "media connected");
                    self.events.push_back(SfuEvent::Connected(conn));
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    self.events.push_back(SfuEvent::Disconnected(conn));
                }
                _ => {}
            }
        }
    }
}

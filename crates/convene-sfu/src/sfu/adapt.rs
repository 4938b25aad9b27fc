//! Adapting to each subscriber: which layer of each video it gets, what each
//! publisher must send, keyframes asked for, cameras found stalled.

use super::*;

impl Sfu {
    /// Ask `track`'s publisher for a keyframe on `layer`: at most one
    /// outstanding request per layer (see [`KEYFRAME_REQUEST_INTERVAL`]).
    pub(super) fn request_keyframe(&mut self, now: Instant, track: TrackId, layer: u8) {
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        let Some(l) = p.layers.get_mut(usize::from(layer)) else {
            return; // not video
        };
        if l.keyframe_asked.is_some_and(|t| {
            let since = now.saturating_duration_since(t);
            since < KEYFRAME_REQUEST_INTERVAL
        }) {
            return;
        }
        if l.last_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_MIN_GAP)
        {
            return;
        }
        let rid = l.rid;
        let Some(conn) = p.conn else { return };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(mid) = c
            .slot_of(track, SlotDirection::Send)
            .and_then(|i| c.slots[i].mid)
        else {
            return;
        };
        let mut api = c.rtc.direct_api();
        // A publisher that answered without simulcast sends without a rid.
        let rx = match rid {
            Some(_) if api.stream_rx_by_mid(mid, rid).is_some() => api.stream_rx_by_mid(mid, rid),
            _ => api.stream_rx_by_mid(mid, None),
        };
        let Some(rx) = rx else {
            return; // no media yet; the first frame will be a keyframe anyway
        };
        rx.request_keyframe(KeyframeRequestKind::Pli);
        l.keyframe_asked = Some(now);
        l.last_request = Some(now);
        self.stats.keyframe_requests += 1;
        self.drain(conn);
    }

    /// Choose again which layer `conn` receives of each video, from its
    /// downlink estimate, what it shows at which size, and priorities.
    pub(super) fn allocate(&mut self, conn: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut audio = 0u64;
        let mut plain_audio = 0u64;
        let mut videos = Vec::new();
        let mut wants = Vec::new();
        for (i, s) in c.slots.iter().enumerate() {
            if s.dir != SlotDirection::Receive {
                continue;
            }
            if s.kind.is_audio() {
                // A voice slot costs only while it carries someone, and a
                // silent microphone (DTX) next to nothing.
                let rate = s.track.and_then(|t| self.producers.get(&t));
                audio += rate.map_or(0, |p| p.audio_rate.reserve(false));
                plain_audio += rate.map_or(0, |p| p.audio_rate.reserve(true));
                continue;
            }
            let Some(p) = s.track.and_then(|t| self.producers.get(&t)) else {
                continue;
            };
            let overloaded = p.overloaded_until.is_some_and(|t| now < t);
            let mut layers = layer_choices(&p.layers, now);
            if overloaded {
                // The server is behind: nothing above the lowest layer.
                if let Some(low) = layers.iter().position(|l| l.usable) {
                    layers
                        .iter_mut()
                        .skip(low + 1)
                        .for_each(|l| l.usable = false);
                }
            }
            videos.push(i);
            wants.push(Want {
                priority: p.priority,
                view: s.view,
                layers,
                adaptive: p.simulcast,
                previous: s.target,
            });
        }
        if !c.red {
            // It gets the primary blocks alone anyway.
            audio = plain_audio;
        }
        // Within what got through where the subscriber reports real loss
        // (loss_cap.rs): str0m's average takes seconds to fall.
        let cap = c.loss_cap.cap(now);
        c.capped = cap.is_some();
        // While a cap is in force it is the estimate, floor as well as
        // ceiling: it is what the link was just seen to carry, and str0m's
        // estimate falls far below that after a burst of loss. Never below
        // what the link just carried without loss (what is sent now, if it
        // all arrives, fits).
        let proven = c.loss_cap.proven(now);
        let estimate = match cap {
            Some(cap) => cap,
            None => c.estimate.unwrap_or(INITIAL_ESTIMATE),
        }
        .max(proven);
        // A narrow downlink without loss: redundant audio (RED) costs a
        // video's lowest layer and protects against nothing. Send such a
        // subscriber the primary blocks alone while that lets more videos
        // through; audio still comes first (its room is reserved). Judged
        // without the hold slack, so RED goes before a video overshoots.
        // Under a loss cap the loss is congestion, which redundancy only
        // adds to, once it has stopped (a clean half second since the cap
        // was made) or while it is not heavy (a cap is lowered by loss that
        // goes on while more than it is sent: RED kept it going). Once off,
        // RED stays off while it would starve a video again (turned back on
        // at the next lossy second, it pushed the link back into loss and a
        // camera paused: issue 15, scenario 1), unless the loss turns
        // heavy: then it is the link's own, which RED is for.
        let loss = c.quality.loss_permille();
        let congestion = cap.is_some() && (proven > 0 || loss < RED_HEAVY_LOSS_PERMILLE);
        let clean = loss < RED_NEEDED_LOSS_PERMILLE || congestion;
        let kept_off = c.red_off && loss < RED_HEAVY_LOSS_PERMILLE;
        let mut red_off = false;
        if c.red && plain_audio < audio && (clean || kept_off) {
            let with_red = allocate(&wants, estimate.saturating_sub(audio));
            let plain = allocate(&wants, estimate.saturating_sub(plain_audio));
            red_off = with_red.starved > 0 && plain.starved < with_red.starved;
        }
        if red_off {
            audio = plain_audio;
        }
        c.red_off = red_off;
        let mut a = allocate_holding(&wants, estimate.saturating_sub(audio));
        if a.fell {
            c.climb.on_fall(now);
        }
        // Climbs go by an estimate that has held, and not right after a fall.
        match c.climb.climb_estimate(now, estimate) {
            Some(e) if e >= estimate => {}
            Some(e) => {
                let steady = allocate_holding(&wants, e.saturating_sub(audio)).layers;
                limit_climbs(&wants, &mut a.layers, Some(&steady));
            }
            None => limit_climbs(&wants, &mut a.layers, None),
        }
        if red_off {
            // Room made for lowest layers, not for climbing: an estimate
            // that narrow is no place to try higher ones.
            for (chosen, w) in a.layers.iter_mut().zip(&wants) {
                if chosen.is_some() {
                    *chosen = w.layers.iter().position(|l| l.usable).map(|i| i as u8);
                }
            }
        }
        let mut changed = Vec::new();
        for (k, &i) in videos.iter().enumerate() {
            let slot = &mut c.slots[i];
            if a.layers[k].is_none() {
                // Shown again later, it starts from a keyframe.
                slot.current = None;
            }
            if slot.target != a.layers[k] {
                debug!(conn = %conn, slot = i, from = ?slot.target, to = ?a.layers[k], estimate, audio, red_off, capped = cap.is_some(), proven, "layer chosen");
                slot.target = a.layers[k];
                if let Some(t) = slot.track {
                    changed.push((t, slot.target, slot.current.is_some() && slot.live));
                }
            }
        }
        // Probe for what the views want, with the headroom a climb needs:
        // str0m probes up to it while the estimate is below (and again when it
        // rises), so a subscriber climbs when its link allows. Never for more:
        // every probe is padding sent to this subscriber, and asking for 5
        // Mbit/s whatever the views wanted kept every connection probing.
        // Nothing to choose, nothing to probe for: audio is never adapted,
        // and padding on an audio-only connection shows in the browser as
        // a stream of its own (SSRC 0).
        let desired = if a.desired == 0 {
            0
        } else {
            (a.desired + audio) * UPGRADE_HEADROOM_PCT / 100
        };
        // Short of what the views want: pad up to the estimate (str0m never
        // pads past it). The estimate may only grow to 1.5 times what it
        // sees acknowledged, so a subscriber sent a little less than its
        // estimate (the next layer does not fit) would stay where it fell
        // after its link recovered: there is no idle room to probe in.
        // Never past a loss cap: what it sent over the cap would read as
        // the cap's own overshoot, and keep it in force (loss_cap.rs).
        let pad_to = match cap {
            _ if a.used >= a.desired => 0,
            Some(cap) => desired.min(cap),
            None => desired,
        };
        if desired != c.desired || pad_to != c.pad_to {
            c.desired = desired;
            c.pad_to = pad_to;
            c.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(pad_to), Bitrate::bps(desired));
        }
        for (track, target, sending) in changed {
            self.update_publisher_layers(track, now);
            // A switch waits for the new layer's keyframe: ask for one.
            if let (Some(layer), true) = (target, sending) {
                self.request_keyframe(now, track, layer);
            }
        }
    }

    /// Tell `track`'s publisher to send again a layer somebody now needs (at
    /// once), or to pause one nobody needed for a while.
    pub(super) fn update_publisher_layers(&mut self, track: TrackId, now: Instant) {
        let Some(p) = self.producers.get_mut(&track) else {
            return;
        };
        if !p.simulcast || p.conn.is_none() {
            return;
        }
        let mut needed = [false; 3];
        let mut watched = false;
        for &(sub, idx) in &p.consumers {
            let Some(s) = self.conns.get(&sub).map(|c| &c.slots[idx]) else {
                continue;
            };
            // A hidden video needs nothing. One shown needs a layer even
            // while none is chosen: nothing of a camera that has not started
            // yet (an encrypting publisher waits for its key) can be chosen.
            if !View::on_screen(s.view) {
                continue;
            }
            watched = true;
            if s.target.is_none() {
                continue;
            }
            // The layer being sent counts while a switch away from it waits
            // for the new one's keyframe.
            for l in [s.target, s.current].into_iter().flatten() {
                if let Some(n) = needed.get_mut(usize::from(l)) {
                    *n = true;
                }
            }
        }
        // An edge chooses for its own subscribers: it gets every layer.
        if !p.relays.is_empty() {
            needed = [true; 3];
        }
        // While anyone watches, the lowest layer is never paused: it is cheap,
        // and it is what a publisher whose uplink weakens falls back to
        // (without it, Chromium sends a higher layer scaled down).
        if watched {
            needed[0] = true;
        }
        let mut changed = false;
        for (l, &need) in p.layers.iter_mut().zip(&needed) {
            if need {
                l.unneeded_since = None;
                if l.paused {
                    l.resume(now);
                    changed = true;
                }
            } else if !l.paused {
                let since = *l.unneeded_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= PAUSE_UNNEEDED_AFTER {
                    l.pause();
                    // Gone before it was paused: its publisher could not send it.
                    if !l.arriving(now) {
                        l.retry_at = Some(now + LAYER_RETRY);
                    }
                    changed = true;
                }
            }
        }
        if changed {
            let active = p
                .layers
                .iter()
                .filter(|l| !l.paused)
                .filter_map(|l| l.rid.map(|r| r.to_string()))
                .collect();
            self.events
                .push_back(SfuEvent::VideoLayers { track, active });
        }
    }

    /// Every [`LAYER_TICK`]: measure layers, choose every subscriber's layers
    /// again (layers come and go with publishers' uplinks), pause what nobody
    /// needs, and report cameras that stalled.
    pub(super) fn layer_tick(&mut self, now: Instant) {
        let mut tracks = Vec::new();
        for (&track, p) in self.producers.iter_mut() {
            if p.kind != TrackKind::Video {
                p.audio_rate.on_window(LAYER_TICK);
                continue;
            }
            for l in &mut p.layers {
                l.on_window(LAYER_TICK, now);
            }
            tracks.push(track);
        }
        let subscribers: BTreeSet<ConnId> = tracks
            .iter()
            .flat_map(|t| self.producers[t].consumers.iter().map(|&(c, _)| c))
            .collect();
        for conn in subscribers {
            self.allocate(conn);
        }
        for track in tracks {
            self.update_publisher_layers(track, now);
            let p = self.producers.get_mut(&track).expect("listed above");
            let watched = !p.relays.is_empty()
                || p.consumers.iter().any(|&(sub, idx)| {
                    self.conns.get(&sub).is_some_and(|c| {
                        c.slots[idx].target.is_some() || c.slots[idx].view.is_none()
                    })
                });
            let last = p
                .layers
                .iter()
                .filter(|l| !l.paused)
                .filter_map(|l| l.last_packet.max(l.resumed_at))
                .max()
                .unwrap_or(p.since)
                .max(p.since);
            let stalled = watched
                && !p.paused
                && p.conn.is_some()
                && p.layers.iter().any(|l| !l.paused)
                && now.saturating_duration_since(last) >= STALL_AFTER;
            if stalled && !p.stalled {
                p.stalled = true;
                self.events.push_back(SfuEvent::VideoStalled {
                    track,
                    stalled: true,
                });
            }
        }
    }
}

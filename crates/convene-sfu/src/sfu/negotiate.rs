//! Offers and answers: which m-lines each connection has, and when they go live.

use super::*;

impl Sfu {
    /// The client's answer to the last offer.
    pub fn accept_answer(&mut self, now: Instant, conn: ConnId, sdp: &str) -> Result<(), SfuError> {
        self.now = self.now.max(now);
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(SfuError::UnknownConnection)?;
        if c.pending_offer.is_none() || c.relay.is_some() {
            return Err(SfuError::NoOfferPending);
        }
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let pending = c.pending_offer.take().expect("checked above");
        let new_mids = std::mem::take(&mut c.pending_new_mids);
        let restart = c.pending_restart.take();
        let result = c.rtc.sdp_api().accept_answer(pending, answer);
        c.ssrc_slot.clear();
        if let Err(e) = result {
            // The offer is void: its new m-lines never existed, its new ICE
            // credentials never took. Offer again (restarting again if it did).
            if let Some(ufrag) = restart {
                self.routes.remove_ufrag(conn, &ufrag);
                c.ice_restart = true;
            }
            for idx in new_mids {
                c.slots[idx].mid = None;
                c.slots[idx].offered_active = false;
            }
            c.dirty = true;
            self.drain(conn);
            self.negotiate(conn);
            return Err(SfuError::BadSdp(e.to_string()));
        }
        for slot in &mut c.slots {
            slot.live = slot.offered_active;
        }
        // str0m keeps RED on Opus only if the answer took it.
        c.red = c
            .rtc
            .codec_config()
            .params()
            .iter()
            .any(|p| p.red() == Some(RED_PT.into()));
        self.drain(conn);
        self.allocate(conn);
        // Every outgoing video stream starts with a keyframe, asked for now
        // that there is an m-line to send it on.
        let wanted: Vec<(TrackId, u8)> = self.conns[&conn]
            .slots
            .iter()
            .filter(|s| s.dir == SlotDirection::Receive && s.kind == TrackKind::Video && s.live)
            .filter(|s| s.current.is_none())
            .filter_map(|s| Some((s.track?, s.target?)))
            .collect();
        for (track, layer) in wanted {
            self.request_keyframe(now, track, layer);
        }
        self.process_work(now);
        self.negotiate(conn);
        Ok(())
    }

    /// Make offers for connections whose wanted m-lines changed and that are not
    /// waiting for an answer. Called by the driver after a batch of commands, so
    /// several changes go into one offer.
    pub fn negotiate_all(&mut self) {
        // Only connections changed since the last call; one waiting for an answer
        // renegotiates when the answer comes (see accept_answer).
        for conn in std::mem::take(&mut self.to_negotiate) {
            self.negotiate(conn);
        }
    }

    pub(super) fn negotiate(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // A relay never offers: its edge does.
        if c.pending_offer.is_some() || !c.dirty || c.relay.is_some() {
            return;
        }
        c.dirty = false;
        let mut api = c.rtc.sdp_api();
        if std::mem::take(&mut c.ice_restart) {
            let creds = api.ice_restart(true);
            self.routes.add_ufrag(conn, creds.ufrag.clone());
            c.pending_restart = Some(creds.ufrag);
        }
        let mut new_mids = Vec::new();
        for (idx, slot) in c.slots.iter_mut().enumerate() {
            let active = slot.wanted();
            if !active {
                slot.live = false;
            }
            match slot.mid {
                None if active => {
                    let simulcast = slot.simulcast.then(|| {
                        let mut s = Simulcast::new();
                        for rid in SIMULCAST_RIDS {
                            s.add_recv_layer(SimulcastLayer::new(rid));
                        }
                        s
                    });
                    let mid = api.add_media(
                        slot.kind.media_kind(),
                        slot.str0m_direction(),
                        None,
                        None,
                        simulcast,
                    );
                    slot.mid = Some(mid);
                    new_mids.push(idx);
                }
                None => {}
                Some(mid) if active != slot.offered_active => {
                    api.set_direction(mid, slot.str0m_direction());
                }
                Some(_) => {}
            }
            slot.offered_active = active && slot.mid.is_some();
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        c.pending_offer = Some(pending);
        c.pending_new_mids = new_mids;
        let slots = c
            .slots
            .iter()
            .filter_map(|s| {
                Some(OfferedSlot {
                    mid: s.mid?.to_string(),
                    kind: s.kind,
                    direction: s.dir,
                    track: s.track.filter(|_| !s.is_voice_out()),
                    layers: if s.simulcast {
                        SIMULCAST_RIDS.iter().map(|r| r.to_string()).collect()
                    } else {
                        Vec::new()
                    },
                })
            })
            .collect();
        let sdp = candidates_on_every_m_line(&offer.to_sdp_string());
        self.events.push_back(SfuEvent::Offer { conn, sdp, slots });
        self.drain(conn);
    }
}

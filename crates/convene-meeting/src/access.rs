//! Who may do what in a meeting: roles, the host's settings, and one rule that
//! answers every "may this person do this?" question. The server asks it for
//! every signalling message; the SFU only forwards what it allowed.

use serde::{Deserialize, Serialize};

use crate::identity::LobbyBypass;
use crate::protocol::{Permissions, Source};

/// Roles, most powerful first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Host,
    CoHost,
    Presenter,
    Participant,
}

impl Role {
    pub fn is_host(self) -> bool {
        matches!(self, Role::Host | Role::CoHost)
    }
}

/// Who a setting lets do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Who {
    Everyone,
    /// Hosts, co-hosts and presenters.
    HostsAndPresenters,
    /// Hosts and co-hosts only.
    Hosts,
    /// No one at all (for example chat, where a handling level forbids it).
    Nobody,
}

impl Who {
    fn allows(self, role: Role) -> bool {
        match self {
            Who::Everyone => true,
            Who::HostsAndPresenters => role <= Role::Presenter,
            Who::Hosts => role.is_host(),
            Who::Nobody => false,
        }
    }
}

/// A meeting's settings, chosen at creation and changed by hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    pub lobby: bool,
    pub screen_share: Who,
    /// Who may unmute themselves after a host muted them. (Anyone may unmute
    /// a microphone they muted themselves.)
    pub unmute: Who,
    pub chat: Who,
    /// Whether participants who are not hosts or presenters may send video.
    pub guest_cameras: bool,
    pub max_participants: usize,
    /// With the lobby on, who goes straight in by their verified identity.
    pub lobby_bypass: LobbyBypass,
    /// Whether unverified guests may join at all.
    pub guests_allowed: bool,
    /// Whether members and partners must have signed in with more than one factor.
    pub require_mfa: bool,
    /// End-to-end encryption: chosen when the meeting is created, never changed.
    pub e2ee: bool,
    /// A webinar: hosts, co-hosts and presenters are on stage and seen by
    /// everyone; participants are its audience, who watch, listen, raise
    /// hands and chat as the chat setting allows, are counted rather than
    /// announced, and are seen by hosts only. Chosen at creation, never changed.
    pub webinar: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lobby: false,
            screen_share: Who::Everyone,
            unmute: Who::Everyone,
            chat: Who::Everyone,
            guest_cameras: true,
            max_participants: 100,
            lobby_bypass: LobbyBypass::Nobody,
            guests_allowed: true,
            require_mfa: false,
            e2ee: false,
            webinar: false,
        }
    }
}

impl Settings {
    /// Settings that cannot go together, in words; `None` when they can.
    pub fn conflict(&self) -> Option<&'static str> {
        // An MLS group of a whole audience would commit for every attendee
        // who comes or goes, each commit to everyone: not what a webinar of
        // thousands can carry.
        (self.webinar && self.e2ee)
            .then_some("a webinar cannot be end-to-end encrypted: choose one or the other")
    }
}

/// Something a participant asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish(Source),
    /// Unmute their own microphone.
    Unmute,
    Chat,
    /// Any host action: admit, mute or remove others, change roles or settings,
    /// lock, end.
    Host,
}

/// Why an action is refused, in words to show the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub &'static str);

/// The one rule. `muted_by_host` is whether a host muted this person's microphone.
pub fn check(
    role: Role,
    settings: &Settings,
    action: Action,
    muted_by_host: bool,
) -> Result<(), Denied> {
    match action {
        Action::Publish(_) | Action::Unmute if settings.webinar && role == Role::Participant => {
            Err(Denied(
                "this is a webinar: the audience watches and listens; raise your hand and a host can bring you on stage",
            ))
        }
        Action::Publish(Source::Screen | Source::ScreenAudio)
            if !settings.screen_share.allows(role) =>
        {
            Err(Denied(match settings.screen_share {
                Who::Nobody => "screen sharing is turned off in this meeting",
                Who::Hosts => "only hosts may share their screen in this meeting",
                _ => "only hosts and presenters may share their screen in this meeting",
            }))
        }
        Action::Publish(Source::Camera) if !settings.guest_cameras && role == Role::Participant => {
            Err(Denied(
                "cameras are turned off for participants in this meeting",
            ))
        }
        Action::Publish(Source::Microphone) | Action::Unmute
            if muted_by_host && !settings.unmute.allows(role) =>
        {
            Err(Denied("a host has muted you; ask a host to unmute you"))
        }
        Action::Chat if !settings.chat.allows(role) => {
            Err(Denied("chat is turned off for you in this meeting"))
        }
        Action::Host if !role.is_host() => Err(Denied("only hosts may do that")),
        _ => Ok(()),
    }
}

/// What a person may not do right now, each with the reason, so that the
/// client can disable the control and say why. Computed by [`check`] alone.
pub fn permissions(role: Role, settings: &Settings, muted_by_host: bool) -> Permissions {
    let reason = |action| {
        check(role, settings, action, muted_by_host)
            .err()
            .map(|d| d.0.to_string())
    };
    Permissions {
        camera: reason(Action::Publish(Source::Camera)),
        screen_share: reason(Action::Publish(Source::Screen)),
        unmute: reason(Action::Unmute),
        chat: reason(Action::Chat),
        host: role.is_host(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ROLES: [Role; 4] = [Role::Host, Role::CoHost, Role::Presenter, Role::Participant];

    #[test]
    fn defaults_let_everyone_take_part_but_only_hosts_host() {
        let s = Settings::default();
        for role in ALL_ROLES {
            for src in [
                Source::Microphone,
                Source::Camera,
                Source::Screen,
                Source::ScreenAudio,
            ] {
                assert_eq!(
                    check(role, &s, Action::Publish(src), false),
                    Ok(()),
                    "{role:?} {src:?}"
                );
            }
            assert_eq!(check(role, &s, Action::Chat, false), Ok(()));
            assert_eq!(check(role, &s, Action::Unmute, true), Ok(()));
            assert_eq!(check(role, &s, Action::Host, false).is_ok(), role.is_host());
        }
    }

    #[test]
    fn screen_sharing_for_hosts_and_presenters() {
        let s = Settings {
            screen_share: Who::HostsAndPresenters,
            ..Settings::default()
        };
        let allowed: Vec<Role> = ALL_ROLES
            .into_iter()
            .filter(|r| check(*r, &s, Action::Publish(Source::Screen), false).is_ok())
            .collect();
        assert_eq!(allowed, vec![Role::Host, Role::CoHost, Role::Presenter]);
        assert!(check(
            Role::Participant,
            &s,
            Action::Publish(Source::ScreenAudio),
            false
        )
        .is_err());
        assert!(check(
            Role::Participant,
            &s,
            Action::Publish(Source::Camera),
            false
        )
        .is_ok());
    }

    #[test]
    fn self_unmute_off_keeps_host_mutes_in_force() {
        let s = Settings {
            unmute: Who::Hosts,
            ..Settings::default()
        };
        // Self-muted people may always unmute; a host mute holds.
        assert!(check(Role::Participant, &s, Action::Unmute, false).is_ok());
        assert!(check(Role::Participant, &s, Action::Unmute, true).is_err());
        assert!(check(
            Role::Participant,
            &s,
            Action::Publish(Source::Microphone),
            true
        )
        .is_err());
        // Not muted by a host: publishing a microphone (joining with it) is fine.
        assert!(check(
            Role::Participant,
            &s,
            Action::Publish(Source::Microphone),
            false
        )
        .is_ok());
        assert!(check(Role::CoHost, &s, Action::Unmute, true).is_ok());
    }

    #[test]
    fn chat_and_cameras_can_be_restricted() {
        let s = Settings {
            chat: Who::HostsAndPresenters,
            guest_cameras: false,
            ..Settings::default()
        };
        assert!(check(Role::Participant, &s, Action::Chat, false).is_err());
        assert!(check(Role::Presenter, &s, Action::Chat, false).is_ok());
        assert!(check(
            Role::Participant,
            &s,
            Action::Publish(Source::Camera),
            false
        )
        .is_err());
        assert!(check(Role::Presenter, &s, Action::Publish(Source::Camera), false).is_ok());
    }

    #[test]
    fn permissions_say_why_each_control_is_off() {
        let s = Settings {
            screen_share: Who::HostsAndPresenters,
            unmute: Who::Hosts,
            chat: Who::Hosts,
            guest_cameras: false,
            ..Settings::default()
        };
        let p = permissions(Role::Participant, &s, false);
        assert!(p.camera.unwrap().contains("cameras are turned off"));
        assert!(p.screen_share.unwrap().contains("share their screen"));
        assert!(p.chat.unwrap().contains("chat is turned off"));
        assert_eq!(p.unmute, None, "not muted by a host");
        assert!(!p.host);
        let muted = permissions(Role::Participant, &s, true);
        assert!(muted.unmute.unwrap().contains("muted you"));
        let presenter = permissions(Role::Presenter, &s, true);
        assert_eq!(
            (presenter.camera, presenter.screen_share),
            (None, None),
            "presenters keep cameras and screens"
        );
        assert!(presenter.chat.is_some() && presenter.unmute.is_some());
        let host = permissions(Role::CoHost, &s, true);
        assert_eq!(
            (
                host.camera,
                host.screen_share,
                host.unmute,
                host.chat,
                host.host
            ),
            (None, None, None, None, true)
        );
    }

    #[test]
    fn a_webinars_audience_publishes_nothing_until_brought_on_stage() {
        let s = Settings {
            webinar: true,
            ..Settings::default()
        };
        for src in [
            Source::Microphone,
            Source::Camera,
            Source::Screen,
            Source::ScreenAudio,
        ] {
            assert!(check(Role::Participant, &s, Action::Publish(src), false).is_err());
            assert!(check(Role::Presenter, &s, Action::Publish(src), false).is_ok());
        }
        assert!(check(Role::Participant, &s, Action::Unmute, false).is_err());
        assert!(check(Role::Participant, &s, Action::Chat, false).is_ok());
        let p = permissions(Role::Participant, &s, false);
        assert!(p.camera.unwrap().contains("webinar"));
        assert!(p.unmute.unwrap().contains("webinar"));
        assert_eq!(
            Settings { e2ee: true, ..s }
                .conflict()
                .map(|c| c.contains("webinar")),
            Some(true)
        );
    }

    #[test]
    fn settings_parse_strictly() {
        let s: Settings = serde_json::from_str(
            r#"{"lobby":true,"screenShare":"hosts-and-presenters","unmute":"everyone","chat":"hosts","guestCameras":false,"maxParticipants":20}"#,
        )
        .unwrap();
        assert!(s.lobby && s.chat == Who::Hosts && s.max_participants == 20);
        assert_eq!(
            serde_json::from_str::<Settings>(&serde_json::to_string(&s).unwrap()).unwrap(),
            s
        );
        assert!(serde_json::from_str::<Settings>(r#"{"lobby":true,"bogus":1}"#).is_err());
    }
}

//! Chat: messages checked and cleaned, numbered, kept only where the level keeps chat.

use super::*;

impl Room {
    /// A chat message from `who` (allowed to chat): cleaned, checked,
    /// numbered, kept where the level keeps chat, and sent to everyone.
    pub(super) fn chat(&mut self, who: &ParticipantId, text: &str) -> Result<(), RoomError> {
        let sender = &self.participants[who];
        // No bidi controls: a message must not reverse what is shown after it.
        let text = names::chat_text(text);
        let text = text.trim();
        if text.is_empty() {
            return Err(err(ErrorCode::Invalid, "a chat message cannot be empty"));
        }
        if text.chars().count() > self.limits.max_chat_chars {
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "a chat message is at most {} characters",
                    self.limits.max_chat_chars
                ),
            ));
        }
        let message = ChatMessage {
            id: self.next_chat,
            participant_id: who.0.clone(),
            name: sender.name.clone(),
            text: text.to_string(),
            sent_at: unix_millis(),
            identity: Verification::of(&sender.identity).public(),
        };
        self.next_chat += 1;
        // A webinar's attendee writes to the stage: the rest of the audience
        // does not learn of them ([`webinar`]), and a thousand writing to a
        // thousand would be a million messages.
        let attendee = self.is_attendee(who);
        // Kept (for later joiners, and stored) only where the level
        // keeps chat; otherwise it lives only in the browsers.
        let days = self.level().chat_retention_days;
        if days > 0 {
            if !attendee {
                if self.chat.len() >= self.limits.chat_history {
                    self.chat.pop_front();
                }
                self.chat.push_back(message.clone());
            }
            self.effects.push_back(Effect::Persist(Change::Chat {
                message: message.clone(),
                days,
            }));
        }
        if attendee {
            self.tell_stage_and(who, ServerMessage::Chat { message });
        } else {
            self.broadcast(ServerMessage::Chat { message });
        }
        Ok(())
    }
}

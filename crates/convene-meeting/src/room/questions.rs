//! A webinar's Q&A (issue 20): the audience asks, the stage sees, hosts
//! answer.
//!
//! Anyone in a webinar may `ask`, unless written messages are off in it (its
//! `chat` setting is `nobody`, as a level without chat makes it). A question
//! reaches the stage (hosts, co-hosts, presenters) and its asker, not the
//! rest of the audience: a thousand people's questions are for those who
//! answer them. A host marks one answered, and then everyone sees it, the
//! rest of the audience without who asked; or dismisses it, and it goes
//! from everyone who had it. Questions are held in memory while the meeting
//! runs, for those who join the stage later and for answered ones to reach
//! latecomers; they are never stored. Beyond [`MAX_QUESTIONS`] the oldest
//! answered one goes first (else the oldest), and each person has at most
//! [`MAX_OPEN_PER_ASKER`] waiting for an answer.

use super::*;
use crate::protocol::Question;

/// One question per person in this time; faster ones get `rate-limited`.
pub const QUESTION_INTERVAL: Duration = Duration::from_secs(5);
/// Questions held per meeting; beyond it the oldest answered go first.
pub const MAX_QUESTIONS: usize = 500;
/// Unanswered questions one person may have at once.
pub const MAX_OPEN_PER_ASKER: usize = 5;
/// Questions per `questions` page: with the default limit of 2000
/// characters each (control characters taken out), a page stays under
/// about 80 KB of text.
const QUESTIONS_PAGE: usize = 10;
/// The most `questions` pages one person is sent at once.
pub const MOST_PAGES: usize = MAX_QUESTIONS.div_ceil(QUESTIONS_PAGE);

#[derive(Debug, Default)]
pub(super) struct Questions {
    /// Oldest first, by id.
    held: VecDeque<Question>,
    next: u64,
}

impl Room {
    /// `ask`: a question to the stage.
    pub(super) fn ask(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        text: &str,
    ) -> Result<(), RoomError> {
        if !self.settings.webinar {
            return Err(err(
                ErrorCode::WrongState,
                "questions are for webinars: in this meeting, use the chat",
            ));
        }
        if self.settings.chat == access::Who::Nobody {
            return Err(err(
                ErrorCode::Forbidden,
                "written messages are turned off in this meeting, questions too",
            ));
        }
        // No control characters but line breaks and tabs: each would be six
        // bytes of JSON in every page that carries the question.
        let text: String = names::chat_text(text)
            .chars()
            .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
            .collect();
        let text = text.trim();
        if text.is_empty() {
            return Err(err(ErrorCode::Invalid, "a question cannot be empty"));
        }
        if text.chars().count() > self.limits.max_chat_chars {
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "a question is at most {} characters",
                    self.limits.max_chat_chars
                ),
            ));
        }
        let p = self
            .participants
            .get_mut(who)
            .ok_or_else(|| err(ErrorCode::WrongState, "not in this meeting"))?;
        if p.last_question
            .is_some_and(|t| now.saturating_duration_since(t) < QUESTION_INTERVAL)
        {
            return Err(err(
                ErrorCode::RateLimited,
                "one question every few seconds: wait a moment and ask again",
            ));
        }
        let open = self
            .questions
            .held
            .iter()
            .filter(|q| !q.answered && q.participant_id.as_deref() == Some(who.0.as_str()))
            .count();
        if open >= MAX_OPEN_PER_ASKER {
            return Err(err(
                ErrorCode::RateLimited,
                format!(
                    "you have {MAX_OPEN_PER_ASKER} questions waiting for an answer: wait for one"
                ),
            ));
        }
        p.last_question = Some(now);
        self.questions.next += 1;
        let question = Question {
            id: self.questions.next,
            participant_id: Some(who.0.clone()),
            name: Some(p.name.clone()),
            text: text.to_string(),
            asked_at: unix_millis(),
            answered: false,
        };
        if self.questions.held.len() >= MAX_QUESTIONS {
            // The oldest answered one goes first: it has been seen.
            let at = self
                .questions
                .held
                .iter()
                .position(|q| q.answered)
                .unwrap_or(0);
            if let Some(old) = self.questions.held.get(at).map(|q| q.id) {
                self.remove_question(at, old);
            }
        }
        self.questions.held.push_back(question.clone());
        self.tell_stage_and(who, ServerMessage::Question { question });
        Ok(())
    }

    /// `mark-answered` (hosts): everyone sees the question now.
    pub(super) fn mark_answered(&mut self, id: u64) -> Result<(), RoomError> {
        let q = self
            .questions
            .held
            .iter_mut()
            .find(|q| q.id == id)
            .ok_or_else(|| err(ErrorCode::Invalid, "no such question"))?;
        if !q.answered {
            q.answered = true;
            let question = q.clone();
            let asker = ParticipantId(question.participant_id.clone().unwrap_or_default());
            // The rest of the audience sees what was asked, not who asked.
            let audience: Vec<ParticipantId> = self
                .participants
                .iter()
                .filter(|(id, p)| {
                    **id != asker
                        && p.admitted
                        && p.away_since.is_none()
                        && !webinar::on_stage(p.role)
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !audience.is_empty() {
                let question = anonymous(question.clone());
                let message = ServerMessage::Question { question };
                self.effects.push_back(Effect::Broadcast {
                    to: audience,
                    message,
                });
            }
            self.tell_stage_and(&asker, ServerMessage::Question { question });
        }
        Ok(())
    }

    /// `dismiss-question` (hosts): gone, from everyone who had it.
    pub(super) fn dismiss_question(&mut self, id: u64) -> Result<(), RoomError> {
        let at = self
            .questions
            .held
            .iter()
            .position(|q| q.id == id)
            .ok_or_else(|| err(ErrorCode::Invalid, "no such question"))?;
        self.remove_question(at, id);
        Ok(())
    }

    /// The question at `at` (whose id is `id`) goes, from whoever had it.
    fn remove_question(&mut self, at: usize, id: u64) {
        let Some(q) = self.questions.held.remove(at) else {
            return;
        };
        let removed = ServerMessage::QuestionRemoved { id };
        if q.answered {
            self.broadcast(removed);
        } else {
            let asker = ParticipantId(q.participant_id.unwrap_or_default());
            self.tell_stage_and(&asker, removed);
        }
    }

    /// To everyone on stage, and to `also` (the asker).
    pub(super) fn tell_stage_and(&mut self, also: &ParticipantId, message: ServerMessage) {
        let to: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(id, p)| {
                p.admitted && p.away_since.is_none() && (webinar::on_stage(p.role) || *id == also)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !to.is_empty() {
            self.effects.push_back(Effect::Broadcast { to, message });
        }
    }

    /// The questions `id` may see, in pages: all of them on stage; in the
    /// audience, the answered ones and their own.
    pub(super) fn send_questions(&mut self, id: &ParticipantId) {
        let Some(p) = self.participants.get(id) else {
            return;
        };
        if !self.settings.webinar {
            return;
        }
        let all = webinar::on_stage(p.role);
        let own = |q: &Question| q.participant_id.as_deref() == Some(id.0.as_str());
        let visible: Vec<Question> = self
            .questions
            .held
            .iter()
            .filter(|q| all || q.answered || own(q))
            .map(|q| {
                if all || own(q) {
                    q.clone()
                } else {
                    anonymous(q.clone())
                }
            })
            .collect();
        for page in visible.chunks(QUESTIONS_PAGE) {
            let questions = page.to_vec();
            self.send(id, ServerMessage::Questions { questions });
        }
    }
}

/// The question without who asked, for the rest of the audience.
fn anonymous(mut q: Question) -> Question {
    q.participant_id = None;
    q.name = None;
    q
}

#[cfg(test)]
mod tests;

//! Retention applied: every hour while the server runs, and by `convene
//! purge`. What goes and when is the storage's [`Storage::purge`]; this is
//! when it runs, which meetings it must spare (those open now), and the
//! checkpoint written after it.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use convene_storage::{checkpoint, AuditKey, PurgeReport, Retention, Storage};
use tracing::{info, warn};

use crate::config::Config;
use crate::AppState;

/// How often the running server purges.
const EVERY: Duration = Duration::from_secs(60 * 60);

/// How often back-off records past their retention are dropped.
const BACKOFF_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Purge now, then every [`EVERY`], sparing meetings open on this server;
/// and drop back-off records (client addresses) past their retention every
/// [`BACKOFF_SWEEP_EVERY`].
pub(crate) fn spawn(state: Arc<AppState>, retention: Retention) {
    let st = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(BACKOFF_SWEEP_EVERY);
        loop {
            every.tick().await;
            sweep_backoff(&st, std::time::Instant::now());
        }
    });
    if retention == Retention::default() {
        info!("retention: meetings and audit rows are kept for ever (kept chat still goes at its time)");
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let clock = WallClockCheck::start();
        loop {
            every.tick().await;
            if let Err(jump) = clock.check() {
                warn!(
                    "retention: skipped: the system clock has moved {jump} against the time this process has run; \
                     set it right, or run `convene purge` by hand"
                );
                continue;
            }
            let live: HashSet<String> = state.registry.lock().meetings.keys().cloned().collect();
            // On the audit writer's thread: its own rows, in order.
            match state.writer.purge(retention, live).await {
                Ok(r) if r.is_empty() => {}
                Ok(r) => info!(
                    meetings = r.meetings.len(),
                    audit_rows = r.audit_rows,
                    chat_messages = r.chat_messages,
                    "retention: purged"
                ),
                Err(e) => warn!("retention: purge failed: {e}"),
            }
        }
    });
}

/// Automatic purges trust the wall clock (rows are dated by it), so a clock
/// set a year ahead by mistake would purge a year early. While the process
/// runs, its monotonic clock says how much time has really passed: a wall
/// clock that disagrees by more than [`MAX_CLOCK_DRIFT`] stops automatic
/// purges until a restart (after the clock is put right).
const MAX_CLOCK_DRIFT: Duration = Duration::from_secs(60 * 60);

pub(crate) struct WallClockCheck {
    wall: std::time::SystemTime,
    mono: std::time::Instant,
}

impl WallClockCheck {
    pub(crate) fn start() -> Self {
        WallClockCheck {
            wall: std::time::SystemTime::now(),
            mono: std::time::Instant::now(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.check_at(std::time::SystemTime::now(), std::time::Instant::now())
    }

    /// `Err` naming the jump when the wall clock has moved more than
    /// [`MAX_CLOCK_DRIFT`] away from the time that has passed.
    fn check_at(
        &self,
        wall: std::time::SystemTime,
        mono: std::time::Instant,
    ) -> Result<(), String> {
        let passed = mono.saturating_duration_since(self.mono);
        let (ahead, by) = match wall.duration_since(self.wall) {
            Ok(w) if w >= passed => (true, w - passed),
            Ok(w) => (false, passed - w),
            Err(back) => (false, passed + back.duration()),
        };
        if by > MAX_CLOCK_DRIFT {
            let hours = by.as_secs() / 3600;
            return Err(format!(
                "{hours} h {}",
                if ahead { "ahead" } else { "back" }
            ));
        }
        Ok(())
    }
}

/// Drop the passcode back-off records past their retention.
pub(crate) fn sweep_backoff(state: &AppState, now: std::time::Instant) {
    state
        .passcode_limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sweep(now);
    state
        .meeting_passcode_limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sweep(now);
}

/// One purge, then a checkpoint of the log it left (a failure to write that
/// is reported; the purge stands, its keyed record is in the database).
fn purge(
    storage: &Storage,
    retention: &Retention,
    live: &HashSet<String>,
    key: Option<&AuditKey>,
    checkpoints: &Path,
    dry_run: bool,
) -> Result<PurgeReport, String> {
    let now = convene_storage::unix_millis();
    let report = storage
        .purge(retention, now, live, key, dry_run)
        .map_err(|e| e.to_string())?;
    if !dry_run && !report.is_empty() {
        // A checkpoint of the log as the purge left it (its own row
        // included), so the file pins the new start too.
        let head = storage.audit_head().map_err(|e| e.to_string())?;
        let cp = convene_storage::Checkpoint::new(&head, now, key);
        if let Err(e) = checkpoint::append_to(checkpoints, &cp) {
            warn!(
                "retention: no checkpoint written to {}: {e}",
                checkpoints.display()
            );
        }
    }
    Ok(report)
}

/// `convene purge --dry-run|--now`.
pub fn command(config: &Config, dry_run: bool) -> ExitCode {
    let key = match config.audit_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    let storage = match config.open_storage() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    let retention = config.retention();
    let keep = |d: Option<u32>| d.map_or("for ever".to_string(), |d| format!("{d} days"));
    println!(
        "retention: meetings {} after they end, audit rows {}",
        keep(retention.meetings_days),
        keep(retention.audit_days)
    );
    let r = match purge(
        &storage,
        &retention,
        &HashSet::new(),
        key.as_ref(),
        &config.audit_checkpoints_path(),
        dry_run,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("convene: purge failed, nothing removed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} meeting(s){}",
        r.meetings.len(),
        list(&r.meetings)
    );
    if r.audit_rows > 0 {
        println!(
            "{verb} {} audit row(s): rows {} to {}",
            r.audit_rows, r.audit_from, r.audit_to
        );
    } else {
        println!("{verb} 0 audit rows");
    }
    if dry_run {
        println!("dry run: nothing was changed (purge --now removes it)");
    }
    ExitCode::SUCCESS
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(": {}", ids.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_that_jumps_stops_automatic_purges() {
        let c = WallClockCheck::start();
        let hour = Duration::from_secs(3600);
        let day = 24 * hour;
        // An ordinary day: both clocks moved together (a few seconds of NTP slew).
        assert!(c
            .check_at(c.wall + day + Duration::from_secs(5), c.mono + day)
            .is_ok());
        // Set a year ahead, or two hours back: no purge.
        let jump = c.check_at(c.wall + day + 365 * day, c.mono + day);
        assert!(
            jump.as_ref().is_err_and(|j| j.ends_with("ahead")),
            "{jump:?}"
        );
        let back = c.check_at(c.wall - 2 * hour, c.mono + Duration::from_secs(1));
        assert!(
            back.as_ref().is_err_and(|j| j.ends_with("back")),
            "{back:?}"
        );
    }
}

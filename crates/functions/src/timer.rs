//! Timer triggers (`cron:EXPR`): one thread per function sleeps until the next fire time of
//! its cron schedule (UTC) and invokes the function with one event per fire, with the same
//! retries, backoff and dead letters as a topic trigger.
//!
//! A fire's event: topic `""`, partition `-1`, offset and timestamp the scheduled fire time
//! (milliseconds since the Unix epoch), key the function's name, value the JSON object
//! `{"scheduled_ms":..,"fired_ms":..}`, no headers.
//!
//! The last completed fire time is committed to the position store (key `NAME/timer`), so
//! a restart does not fire again what was done. Fires missed while the function was stopped
//! (or busy) are not all run: only the latest missed one runs, once, like a Kubernetes
//! CronJob catching up; a function slower than its schedule skips fires rather than piling
//! them up. A function deployed for the first time (or with a changed expression) fires
//! from the deploy on, never for times before it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::bindings::{Event, Level};
use crate::engine_host::now_ms;
use crate::limits::{CRON_EXPRESSION_BYTES_MAX, TIMER_SLEEP_MS_MAX};
use crate::registry::{Position, timer_key};
use crate::trigger::{FunctionState, Processed, Shared, Stop, process};

/// Where a service reads the time for its timer triggers: the system clock, or a test's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// Wall-clock milliseconds since the Unix epoch.
    pub fn system() -> Self {
        Clock(Arc::new(now_ms))
    }

    /// A clock reading `now_ms` (milliseconds since the Unix epoch), for tests that move
    /// time instead of waiting for it.
    pub fn new(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now_ms))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// A parsed cron expression, evaluated in UTC at whole seconds.
pub(crate) struct Schedule {
    cron: Cron,
}

impl Schedule {
    /// Parses 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first).
    /// The error is the parser's message, with the expression.
    pub fn parse(expression: &str) -> Result<Self, String> {
        if expression.len() > CRON_EXPRESSION_BYTES_MAX {
            return Err(format!(
                "cron expression of {} bytes exceeds the maximum {CRON_EXPRESSION_BYTES_MAX}",
                expression.len()
            ));
        }
        let fields = expression.split_whitespace().count();
        // croner also reads aliases (`@hourly`, one field) and a trailing year (7 fields):
        // refused, so a cron trigger means one thing.
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "cron expression {expression:?} has {fields} fields: expected 5 (minute hour day-of-month \
                 month day-of-week) or 6 (seconds first)"
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(expression).map_err(|e| format!("cron expression {expression:?} is invalid: {e}"))?;
        Ok(Self { cron })
    }

    /// The first fire time strictly after `ms`, if there is one.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let base = utc(ms.div_euclid(1000) * 1000)?;
        self.cron.find_next_occurrence(&base, false).ok().map(|t| t.timestamp_millis())
    }

    /// The latest fire time at or before `ms`, if there is one.
    pub fn previous_at_or_before(&self, ms: i64) -> Option<i64> {
        let base = utc(ms.div_euclid(1000) * 1000)?;
        self.cron.find_previous_occurrence(&base, true).ok().map(|t| t.timestamp_millis())
    }
}

fn utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

/// Where a timer's last completed fire time is stored: the position's `topic` names the
/// expression, so a redeploy with another expression starts afresh.
fn position_marker(expression: &str) -> String {
    format!("cron:{expression}")
}

/// The event of one fire (see the module docs).
pub(crate) fn timer_event(name: &str, scheduled_ms: i64, fired_ms: i64) -> Event {
    let value = serde_json::json!({ "scheduled_ms": scheduled_ms, "fired_ms": fired_ms });
    Event {
        topic: String::new(),
        partition: -1,
        offset: scheduled_ms,
        timestamp_ms: scheduled_ms,
        key: Some(name.as_bytes().to_vec()),
        value: Some(value.to_string().into_bytes()),
        headers: Vec::new(),
    }
}

/// A running timer's loop.
pub(crate) struct Timer {
    pub shared: Arc<Shared>,
    pub state: Arc<FunctionState>,
    pub schedule: Schedule,
    pub expression: String,
    pub stop: Arc<Stop>,
}

impl Timer {
    pub fn run(self) {
        let name = self.state.name.as_str();
        let key = timer_key(name);
        let marker = position_marker(&self.expression);
        let clock = &self.shared.clock;
        let mut last = match self.shared.positions.get(&key, &marker) {
            Some(ms) => ms,
            None => {
                // Nothing done yet: fire from now on, and remember that, so a restart before
                // the first fire still catches it up.
                let now = clock.now_ms();
                self.commit(&key, &marker, now);
                now
            }
        };
        self.state.host.platform_log(
            Level::Info,
            format!("timer started on cron:{} (last fire at {last} ms, UTC)", self.expression),
        );
        let mut never_logged = false;
        while !self.stop.is_stopped() {
            let now = clock.now_ms();
            if let Some(due) = self.schedule.previous_at_or_before(now)
                && due > last
            {
                if self.schedule.next_after(last).is_some_and(|first_missed| first_missed < due) {
                    self.state.host.platform_log(
                        Level::Warn,
                        format!(
                            "fires of {} missed since {last} ms are skipped; running the latest, {due} ms",
                            self.expression
                        ),
                    );
                }
                match process(&self.shared, &self.state, &[timer_event(name, due, now)], &self.stop) {
                    Processed::Done { .. } => {
                        last = due;
                        self.commit(&key, &marker, due);
                    }
                    // Not committed: the fire runs again (once) when the timer next starts.
                    Processed::Stopped => return,
                }
                continue;
            }
            let wait_ms = match self.schedule.next_after(now) {
                Some(next) => u64::try_from(next.saturating_sub(now)).unwrap_or(0).clamp(1, TIMER_SLEEP_MS_MAX),
                None => {
                    if !never_logged {
                        self.state.host.platform_log(
                            Level::Error,
                            format!("cron expression {} has no fire time after {now} ms", self.expression),
                        );
                        never_logged = true;
                    }
                    TIMER_SLEEP_MS_MAX
                }
            };
            // Sleeps at most TIMER_SLEEP_MS_MAX, then reads the clock again: a clock that
            // jumped (or a test's clock) is noticed within that.
            if self.stop.sleep(Duration::from_millis(wait_ms)) {
                return;
            }
        }
    }

    fn commit(&self, key: &str, marker: &str, ms: i64) {
        let position = Position { topic: marker.to_string(), offset: ms };
        if let Err(e) = self.shared.positions.commit(vec![(key.to_string(), Some(position))]) {
            self.state.host.platform_log(Level::Warn, format!("cannot commit the timer's last fire time: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole hour (2027-01-15T08:00:00Z).
    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn five_and_six_fields_are_accepted() {
        let minutely = Schedule::parse("* * * * *").unwrap();
        assert_eq!(minutely.next_after(T0), Some(T0 + 60_000));
        assert_eq!(minutely.next_after(T0 + 1), Some(T0 + 60_000));
        assert_eq!(minutely.previous_at_or_before(T0 + 59_999), Some(T0));
        let every_second = Schedule::parse("* * * * * *").unwrap();
        assert_eq!(every_second.next_after(T0 + 500), Some(T0 + 1_000));
        assert_eq!(every_second.previous_at_or_before(T0 + 1_500), Some(T0 + 1_000));
        let every_ten = Schedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(every_ten.next_after(T0), Some(T0 + 10_000));
        // Parses, but never fires (there is no 30 February): refused at deploy.
        assert_eq!(Schedule::parse("0 0 30 2 *").unwrap().next_after(T0), None);
    }

    #[test]
    fn bad_expressions_say_why() {
        for bad in ["", "* * *", "@hourly", "* * * * * * *", "61 * * * *", "* * * * FOO", &"* ".repeat(200)] {
            let error = Schedule::parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(error.contains("cron expression"), "{error}");
        }
    }

    #[test]
    fn the_event_carries_the_scheduled_time() {
        let event = timer_event("tick", T0, T0 + 7);
        assert_eq!((event.topic.as_str(), event.partition, event.offset, event.timestamp_ms), ("", -1, T0, T0));
        assert_eq!(event.key.as_deref(), Some(&b"tick"[..]));
        let value: serde_json::Value = serde_json::from_slice(event.value.as_deref().unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({ "scheduled_ms": T0, "fired_ms": T0 + 7 }));
    }
}

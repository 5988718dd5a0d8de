//! Who hears what, when: a customer's preferences and the rule that decides, per
//! channel, whether a notice goes now, waits for quiet hours to end, or is SUPPRESSED.
//!
//! - REGULATORY ignores opt-outs and quiet hours.
//! - SERVICE respects a disabled channel, not quiet hours.
//! - MARKETING needs the channel enabled and marketing consent on it, and waits until
//!   the quiet hours end.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::model::{Channel, Locale, MessageClass, Suppression};

/// The time zone of quiet hours when none is given.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";

/// A customer's settings for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelPreference {
    pub channel: Channel,
    pub enabled: bool,
    pub marketing_enabled: bool,
}

/// A daily window, in minutes after local midnight, in which MARKETING is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start_minute: u16,
    pub end_minute: u16,
    pub time_zone: Tz,
}

impl QuietHours {
    /// 22:00-08:00 Asia/Shanghai.
    pub const DEFAULT: Self = Self {
        start_minute: 22 * 60,
        end_minute: 8 * 60,
        time_zone: chrono_tz::Asia::Shanghai,
    };

    /// The instant the window that contains `now` ends, or `None` if `now` is outside
    /// it (start = end means no window).
    pub fn ends_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (start, end) = (self.start_minute, self.end_minute);
        if start == end {
            return None;
        }
        let local = now.with_timezone(&self.time_zone);
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let inside = if start < end {
            (start..end).contains(&minute)
        } else {
            minute >= start || minute < end
        };
        if !inside {
            return None;
        }
        let end_time = NaiveTime::from_hms_opt(u32::from(end / 60), u32::from(end % 60), 0)?;
        let mut day = local.date_naive();
        if minute >= end {
            day += Duration::days(1);
        }
        // A wall-clock end skipped by a DST change resolves to the next valid instant.
        let end_local = self
            .time_zone
            .from_local_datetime(&day.and_time(end_time))
            .earliest()
            .unwrap_or_else(|| local + Duration::hours(1));
        Some(end_local.with_timezone(&Utc))
    }
}

/// A customer's notification preferences, as stored (`locale` `None` = not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub locale: Option<Locale>,
    /// At most one entry per channel; unlisted channels: enabled, no marketing.
    pub channels: Vec<ChannelPreference>,
    pub quiet_hours: QuietHours,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            locale: None,
            channels: Vec::new(),
            quiet_hours: QuietHours::DEFAULT,
        }
    }
}

impl Preferences {
    /// The customer's setting for `channel`, or the default.
    pub fn channel(&self, channel: Channel) -> ChannelPreference {
        self.channels
            .iter()
            .find(|preference| preference.channel == channel)
            .copied()
            .unwrap_or(ChannelPreference {
                channel,
                enabled: true,
                marketing_enabled: false,
            })
    }
}

/// What happens to a notice on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver from `not_before` on.
    Deliver {
        not_before: DateTime<Utc>,
    },
    Suppress(Suppression),
}

/// The rule (module docs), for a notice of `class` on `channel` created `now` that must
/// not go before `not_before`.
pub fn dispose(
    preferences: &Preferences,
    class: MessageClass,
    channel: Channel,
    now: DateTime<Utc>,
    not_before: Option<DateTime<Utc>>,
) -> Disposition {
    let earliest = not_before.map_or(now, |at| at.max(now));
    let setting = preferences.channel(channel);
    match class {
        MessageClass::Regulatory => Disposition::Deliver {
            not_before: earliest,
        },
        MessageClass::Service if !setting.enabled => {
            Disposition::Suppress(Suppression::ChannelDisabled)
        }
        MessageClass::Service => Disposition::Deliver {
            not_before: earliest,
        },
        MessageClass::Marketing if !setting.enabled => {
            Disposition::Suppress(Suppression::ChannelDisabled)
        }
        MessageClass::Marketing if !setting.marketing_enabled => {
            Disposition::Suppress(Suppression::MarketingNotAllowed)
        }
        MessageClass::Marketing => Disposition::Deliver {
            not_before: preferences
                .quiet_hours
                .ends_after(earliest)
                .unwrap_or(earliest),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("instant")
    }

    fn opted(channel: Channel, enabled: bool, marketing_enabled: bool) -> Preferences {
        Preferences {
            channels: vec![ChannelPreference {
                channel,
                enabled,
                marketing_enabled,
            }],
            ..Preferences::default()
        }
    }

    #[test]
    fn quiet_hours_across_midnight_end_at_the_next_local_end() {
        let quiet = QuietHours::DEFAULT; // 22:00-08:00 Shanghai (UTC+8)
        // 23:30 Shanghai = 15:30 UTC: held until 08:00 Shanghai next day = 00:00 UTC.
        assert_eq!(
            quiet.ends_after(at("2026-11-28T15:30:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        // 07:59 Shanghai = 23:59 UTC the day before: held one minute.
        assert_eq!(
            quiet.ends_after(at("2026-11-28T23:59:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        // 12:00 Shanghai: outside.
        assert_eq!(quiet.ends_after(at("2026-11-28T04:00:00Z")), None);
        let none = QuietHours {
            start_minute: 600,
            end_minute: 600,
            ..QuietHours::DEFAULT
        };
        assert_eq!(none.ends_after(at("2026-11-28T02:00:00Z")), None);
    }

    #[test]
    fn opt_outs_hold_for_service_and_marketing_but_never_for_regulatory() {
        let now = at("2026-11-28T04:00:00Z");
        let off = opted(Channel::Push, false, false);
        assert_eq!(
            dispose(&off, MessageClass::Regulatory, Channel::Push, now, None),
            Disposition::Deliver { not_before: now }
        );
        for class in [MessageClass::Service, MessageClass::Marketing] {
            assert_eq!(
                dispose(&off, class, Channel::Push, now, None),
                Disposition::Suppress(Suppression::ChannelDisabled)
            );
        }
        assert_eq!(
            dispose(
                &Preferences::default(),
                MessageClass::Marketing,
                Channel::Push,
                now,
                None
            ),
            Disposition::Suppress(Suppression::MarketingNotAllowed)
        );
    }

    #[test]
    fn quiet_hours_delay_marketing_only() {
        let night = at("2026-11-28T15:30:00Z"); // 23:30 Shanghai
        let consenting = opted(Channel::Push, true, true);
        assert_eq!(
            dispose(
                &consenting,
                MessageClass::Marketing,
                Channel::Push,
                night,
                None
            ),
            Disposition::Deliver {
                not_before: at("2026-11-29T00:00:00Z")
            }
        );
        for class in [MessageClass::Regulatory, MessageClass::Service] {
            assert_eq!(
                dispose(&consenting, class, Channel::Push, night, None),
                Disposition::Deliver { not_before: night }
            );
        }
    }
}

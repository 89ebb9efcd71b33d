//! Timestamps as the database stores them.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339, UTC, always three fractional digits, so text order is time order.
const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The current time as stored: `2026-11-27T16:05:20.123Z`.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// A time as stored.
pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// A time a person typed (`2026-11-27`, midnight UTC, or RFC 3339 with any offset), as
/// stored, so it compares with stored times as text.
pub fn parse_bound(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(format(at));
    }
    time::Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map(|day| format(day.midnight().assume_utc()))
        .map_err(|_| {
            format!(
                "`{}` is not a time: write 2026-11-27 or 2026-11-27T10:00:00Z",
                text.chars().take(40).collect::<String>()
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn typed_times_become_stored_times() {
        assert_eq!(
            super::parse_bound("2026-11-27").unwrap(),
            "2026-11-27T00:00:00.000Z"
        );
        assert_eq!(
            super::parse_bound("2026-11-27T12:00:00+02:00").unwrap(),
            "2026-11-27T10:00:00.000Z"
        );
        assert!(super::parse_bound("yesterday").is_err());
    }

    #[test]
    fn stored_times_have_fixed_width() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.6 UTC);
        assert_eq!(super::format(at), "2026-01-02T03:04:05.600Z");
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn stored_times_have_fixed_width() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.6 UTC);
        assert_eq!(super::format(at), "2026-01-02T03:04:05.600Z");
    }
}

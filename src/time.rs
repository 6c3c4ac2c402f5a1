//! Time vocabulary (pure): podcreds stores and compares times in whole seconds, as STS and the
//! SDKs write them, so what it wrote reads back equal.

use jiff::Timestamp;

/// `t` without its fraction of a second.
pub fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// RFC 3339 in whole seconds.
pub fn rfc3339(t: Timestamp) -> String {
    whole_second(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_dropped() {
        let t: Timestamp = "2027-01-15T09:00:00.987Z".parse().expect("time");
        assert_eq!(rfc3339(t), "2027-01-15T09:00:00Z");
        assert_eq!(whole_second(t).subsec_nanosecond(), 0);
    }
}

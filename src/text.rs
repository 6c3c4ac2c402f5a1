//! Text vocabulary (pure): how much of a message from outside the operator is ever repeated.

/// Most characters of a remote error message (STS, the apiserver) that are ever copied into
/// status, Events or logs.
pub const MAX_REMOTE_MESSAGE: usize = 256;
/// Most characters of an Event note.
pub const MAX_EVENT_NOTE: usize = 1000;
/// Most characters of an error code from a remote service.
pub const MAX_REMOTE_CODE: usize = 64;

/// Cuts `text` to `max` characters and replaces control characters.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// A message from a remote service, bounded to [`MAX_REMOTE_MESSAGE`].
pub fn remote(text: &str) -> String {
    bounded(text, MAX_REMOTE_MESSAGE)
}

/// Most characters of an identifier from a remote service (an assumed-role ARN) that podcreds
/// keeps on a Secret or in status.
pub const MAX_REMOTE_IDENTIFIER: usize = 256;

/// An identifier from a remote service as podcreds stores it: printable ASCII only (anything else
/// becomes `?`), at most [`MAX_REMOTE_IDENTIFIER`] characters, so its size in bytes is known.
pub fn identifier(text: &str) -> String {
    text.chars()
        .take(MAX_REMOTE_IDENTIFIER)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        // "é" is two bytes: a cut inside it keeps the character out.
        assert_eq!(cut("aé", 2), "a");
    }

    #[test]
    fn remote_messages_are_bounded_and_cleaned() {
        let message = remote(&format!("a\nb\u{7}{}", "z".repeat(1000)));
        assert_eq!(message.chars().count(), MAX_REMOTE_MESSAGE + 1);
        assert!(message.ends_with('…'));
        assert!(!message.contains('\n'));
        assert!(message.starts_with("a b "));
        assert_eq!(bounded("short", 10), "short");
    }

    #[test]
    fn identifiers_are_short_printable_ascii() {
        let arn = "arn:aws:sts::123456789012:assumed-role/app/ns.b";
        assert_eq!(identifier(arn), arn);
        let hostile = format!("a\u{e9} b\n{}", "\u{1f600}".repeat(1000));
        let kept = identifier(&hostile);
        assert_eq!(kept.len(), MAX_REMOTE_IDENTIFIER);
        assert!(kept.starts_with("a??b??"), "{kept}");
        assert!(kept.bytes().all(|b| b.is_ascii_graphic()));
    }
}

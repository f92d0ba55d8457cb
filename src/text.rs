//! Quoting untrusted text in logs, error replies and the replicated state:
//! at most a few hundred bytes, cut at a character boundary, with the full
//! length said, so a 60 MB metric name never becomes a 60 MB log line.

use std::borrow::Cow;

/// The most bytes of one piece of input quoted anywhere.
pub const QUOTE_BYTES: usize = 256;

/// `s` when it is at most `max` bytes; otherwise its longest prefix that,
/// followed by `… (N bytes)` with the full length, fits in `max` bytes and
/// ends on a character boundary. Quoting a quote changes nothing.
pub fn excerpt(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let suffix = format!("… ({} bytes)", s.len());
    let mut cut = max.saturating_sub(suffix.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}{suffix}", &s[..cut]))
}

/// [`excerpt`] at [`QUOTE_BYTES`].
pub fn quote(s: &str) -> Cow<'_, str> {
    excerpt(s, QUOTE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_whole_and_long_text_is_cut_with_its_length() {
        assert_eq!(quote("cpu_seconds_total"), "cpu_seconds_total");
        let long = "a".repeat(100_000);
        let q = quote(&long);
        assert!(q.len() <= QUOTE_BYTES, "{}", q.len());
        assert!(q.ends_with("aaa… (100000 bytes)"), "{q}");
        assert_eq!(quote(&q), q, "a quote is quoted as it is");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 'é' is two bytes; the suffix "… (400 bytes)" is 15, so a cut at
        // 20 bytes falls inside a character and moves back one byte.
        let s = "é".repeat(200);
        let q = excerpt(&s, 20);
        assert_eq!(q, "éé… (400 bytes)");
    }
}

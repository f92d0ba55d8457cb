//! Decoding what the exporter sends Loki, strictly: stream selectors and
//! block-snappy push bodies. The receiver holds the exporter to Loki's
//! rules with these; the exporter itself only encodes.

use otelraft::export::loki::request::is_valid_label_name;
use otelraft::pb::loki::PushRequest;
use prost::Message;

/// Upper bound on a decompressed push body accepted by [`decode_push`], so a
/// tiny hostile body cannot claim gigabytes.
pub const MAX_DECODED_PUSH_BYTES: usize = 256 << 20;

/// Why a stream selector was refused by [`parse_labels`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelsError {
    /// `{}`: Loki needs at least one label per stream.
    #[error("stream selector has no labels")]
    NoLabels,
    /// Not of the form `{name="value", ...}`.
    #[error("stream selector syntax error at byte {at}: {what}")]
    Syntax {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected or found.
        what: &'static str,
    },
    /// A name that is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {0:?}")]
    InvalidName(String),
    /// The same name twice.
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    /// `name=""`: an empty value means "no such label" in Loki.
    #[error("label {0:?} has an empty value")]
    EmptyValue(String),
}

/// Parses a stream selector as written by
/// [`format_labels`](otelraft::export::loki::request::format_labels) (any label
/// order, optional spaces), strictly: only `=` matchers, valid names, no
/// duplicates, non-empty double-quoted values with the escapes `\\`, `\"`,
/// `\n`, `\t`, `\r`, and at least one label. Used by the test receiver to
/// hold the exporter to Loki's rules.
pub fn parse_labels(selector: &str) -> Result<Vec<(String, String)>, LabelsError> {
    let mut s = Scanner {
        src: selector,
        at: 0,
    };
    s.skip_ws();
    s.expect('{', "expected '{'")?;
    s.skip_ws();
    let mut out: Vec<(String, String)> = Vec::new();
    if !s.eat('}') {
        loop {
            let (name, value) = s.pair()?;
            if out.iter().any(|(n, _)| *n == name) {
                return Err(LabelsError::Duplicate(name));
            }
            if value.is_empty() {
                return Err(LabelsError::EmptyValue(name));
            }
            out.push((name, value));
            s.skip_ws();
            if s.eat(',') {
                s.skip_ws();
                continue;
            }
            s.expect('}', "expected ',' or '}'")?;
            break;
        }
    }
    s.skip_ws();
    if s.peek().is_some() {
        return Err(s.error("unexpected text after '}'"));
    }
    if out.is_empty() {
        return Err(LabelsError::NoLabels);
    }
    Ok(out)
}

/// A cursor over a selector string for [`parse_labels`].
struct Scanner<'a> {
    src: &'a str,
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, want: char) -> bool {
        if self.peek() == Some(want) {
            self.at += want.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: char, what: &'static str) -> Result<(), LabelsError> {
        if self.eat(want) {
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn error(&self, what: &'static str) -> LabelsError {
        LabelsError::Syntax { at: self.at, what }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.at += 1;
        }
    }

    /// `name = "value"`.
    fn pair(&mut self) -> Result<(String, String), LabelsError> {
        let start = self.at;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.at += 1;
        }
        let name = &self.src[start..self.at];
        if name.is_empty() {
            return Err(self.error("expected a label name"));
        }
        if !is_valid_label_name(name) {
            return Err(LabelsError::InvalidName(name.to_string()));
        }
        let name = name.to_string();
        self.skip_ws();
        self.expect('=', "expected '=' (only equality matchers are allowed)")?;
        self.skip_ws();
        let value = self.quoted()?;
        Ok((name, value))
    }

    /// A double-quoted value with escapes.
    fn quoted(&mut self) -> Result<String, LabelsError> {
        self.expect('"', "expected '\"' to open a label value")?;
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated label value")),
                Some('"') => return Ok(value),
                Some('\n') => return Err(self.error("raw newline in label value")),
                Some('\\') => value.push(self.escape()?),
                Some(c) => value.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, LabelsError> {
        match self.bump() {
            Some('\\') => Ok('\\'),
            Some('"') => Ok('"'),
            Some('n') => Ok('\n'),
            Some('t') => Ok('\t'),
            Some('r') => Ok('\r'),
            _ => Err(self.error("unknown escape in label value")),
        }
    }
}

/// Why a push body could not be decoded by [`decode_push`].
#[derive(Debug, thiserror::Error)]
pub enum DecodePushError {
    /// Not a valid block-snappy stream.
    #[error("body is not block-snappy compressed: {0}")]
    Snappy(#[from] snap::Error),
    /// The snappy header claims more than [`MAX_DECODED_PUSH_BYTES`].
    #[error("decompressed body would be {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Claimed decompressed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Decompressed, but not a protobuf `PushRequest`.
    #[error("body is not a protobuf PushRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// The inverse of [`encode_push`](otelraft::export::loki::request::encode_push),
/// for the test receiver and tests.
pub fn decode_push(body: &[u8]) -> Result<PushRequest, DecodePushError> {
    let size = snap::raw::decompress_len(body)?;
    if size > MAX_DECODED_PUSH_BYTES {
        return Err(DecodePushError::TooLarge {
            size,
            limit: MAX_DECODED_PUSH_BYTES,
        });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(PushRequest::decode(raw.as_slice())?)
}

#[cfg(test)]
mod tests;

//! The part of Loki's query API the exporter's read-back uses:
//! `GET /loki/api/v1/query_range` with a log query made of a stream
//! selector and label filters, for example
//! `{service_name="x"} | otelraft_record=~"12:(0|1)|13:0"`.
//!
//! Semantics follow Loki 3: selector matchers (`=`, `!=`, `=~`, `!~`) apply
//! to stream labels, label filters after `|` to stream labels and
//! structured metadata, regexes are fully anchored, `start` is inclusive
//! and `end` exclusive (Unix nanoseconds), `limit` defaults to 100 and may
//! not exceed 5000, `direction` defaults to `backward`. The response puts
//! structured metadata into each result stream's labels, unless the
//! request carries `X-Loki-Response-Encoding-Flags: categorize-labels`,
//! which moves it into a third element of each value. Anything outside
//! this subset (line filters, parsers, metric queries) is refused with 400,
//! so a client cannot believe it got an answer it did not.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{json, Value};

use super::StoredLine;

/// Loki's default `max_entries_limit_per_query`.
pub const MAX_LIMIT: usize = 5000;

#[derive(Debug)]
enum Op {
    Eq(String),
    Ne(String),
    Re(Regex),
    Nre(Regex),
}

impl Op {
    fn matches(&self, value: Option<&str>) -> bool {
        // A missing label is the empty string to Loki's matchers.
        let value = value.unwrap_or("");
        match self {
            Op::Eq(v) => value == v,
            Op::Ne(v) => value != v,
            Op::Re(r) => r.is_match(value),
            Op::Nre(r) => !r.is_match(value),
        }
    }
}

#[derive(Debug)]
struct Matcher {
    name: String,
    op: Op,
}

/// A parsed log query.
#[derive(Debug)]
pub struct LogQuery {
    selector: Vec<Matcher>,
    filters: Vec<Matcher>,
}

/// The query's parameters.
pub struct Params {
    pub query: LogQuery,
    pub start: i128,
    pub end: i128,
    pub limit: usize,
    pub forward: bool,
    pub categorize: bool,
}

impl Params {
    /// Parses the query string pairs; errors are Loki-style 400 messages.
    pub fn parse(pairs: &[(String, String)], categorize: bool) -> Result<Params, String> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let query = LogQuery::parse(get("query").ok_or("query is required")?)?;
        let nanos = |k: &str| -> Result<Option<i128>, String> {
            get(k)
                .map(|v| {
                    v.parse::<i128>().map_err(|_| {
                        format!("invalid {k} {v:?}: the test receiver takes Unix nanoseconds")
                    })
                })
                .transpose()
        };
        let end = nanos("end")?.unwrap_or(i128::MAX);
        let start = nanos("start")?.unwrap_or(0);
        if end < start {
            return Err("the end timestamp must not be before the start time".into());
        }
        let limit = match get("limit") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("invalid limit {v:?}"))?,
        };
        if limit > MAX_LIMIT {
            return Err(format!(
                "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {MAX_LIMIT})"
            ));
        }
        let forward = match get("direction").unwrap_or("backward") {
            "forward" | "FORWARD" => true,
            "backward" | "BACKWARD" => false,
            other => return Err(format!("invalid direction {other:?}")),
        };
        Ok(Params {
            query,
            start,
            end,
            limit,
            forward,
            categorize,
        })
    }

    /// The matching lines, in time order in the query's direction, at most
    /// `limit`, as Loki's `streams` result.
    pub fn answer(&self, lines: &[StoredLine]) -> Value {
        let mut hits: Vec<&StoredLine> = lines
            .iter()
            .filter(|l| l.timestamp_nanos >= self.start && l.timestamp_nanos < self.end)
            .filter(|l| self.query.matches(l))
            .collect();
        hits.sort_by_key(|l| l.timestamp_nanos);
        if !self.forward {
            hits.reverse();
        }
        hits.truncate(self.limit);
        let mut streams: BTreeMap<Vec<(String, String)>, Vec<Value>> = BTreeMap::new();
        for l in hits {
            let mut key = stream_labels(l);
            let ts = l.timestamp_nanos.to_string();
            let value = if self.categorize {
                let meta: serde_json::Map<String, Value> = l
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json!([ts, l.line, {"structuredMetadata": meta}])
            } else {
                key.extend(l.metadata.iter().cloned());
                key.sort();
                json!([ts, l.line])
            };
            streams.entry(key).or_default().push(value);
        }
        let result: Vec<Value> = streams
            .into_iter()
            .map(|(labels, values)| {
                let stream: serde_json::Map<String, Value> = labels
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                json!({"stream": stream, "values": values})
            })
            .collect();
        let mut data = json!({"resultType": "streams", "result": result});
        if self.categorize {
            data["encodingFlags"] = json!(["categorize-labels"]);
        }
        json!({"status": "success", "data": data})
    }
}

fn stream_labels(l: &StoredLine) -> Vec<(String, String)> {
    super::decode::parse_labels(&l.labels).unwrap_or_default()
}

impl LogQuery {
    /// Parses `{matchers} (| name op "value")*`.
    pub fn parse(src: &str) -> Result<LogQuery, String> {
        let mut s = Scan { src, at: 0 };
        s.ws();
        s.expect('{')?;
        let mut selector = Vec::new();
        s.ws();
        if !s.eat('}') {
            loop {
                selector.push(s.matcher()?);
                s.ws();
                if s.eat(',') {
                    continue;
                }
                s.expect('}')?;
                break;
            }
        }
        if !selector.iter().any(|m| !m.op.matches(None)) {
            return Err(
                "queries require at least one regexp or equality matcher that does not have an empty-compatible value"
                    .into(),
            );
        }
        let mut filters = Vec::new();
        loop {
            s.ws();
            if s.rest().is_empty() {
                break;
            }
            if !s.eat('|') || s.rest().starts_with('=') || s.rest().starts_with('~') {
                return Err(format!(
                    "unsupported by the test receiver at {:?}",
                    s.rest().chars().take(40).collect::<String>()
                ));
            }
            filters.push(s.matcher()?);
        }
        Ok(LogQuery { selector, filters })
    }

    fn matches(&self, l: &StoredLine) -> bool {
        let labels = stream_labels(l);
        let label = |name: &str| {
            labels
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        self.selector.iter().all(|m| m.op.matches(label(&m.name)))
            && self
                .filters
                .iter()
                .all(|m| m.op.matches(label(&m.name).or_else(|| l.meta(&m.name))))
    }
}

struct Scan<'a> {
    src: &'a str,
    at: usize,
}

impl Scan<'_> {
    fn rest(&self) -> &str {
        &self.src[self.at..]
    }

    fn ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("parse error: expected {c:?} at {:?}", self.rest()))
        }
    }

    fn matcher(&mut self) -> Result<Matcher, String> {
        self.ws();
        let name: String = self
            .rest()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "parse error: expected a label name at {:?}",
                self.rest()
            ));
        }
        self.at += name.len();
        self.ws();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| self.rest().starts_with(op))
            .ok_or_else(|| format!("parse error: expected a matcher after {name}"))?;
        self.at += op.len();
        self.ws();
        let value = self.string()?;
        let anchored = |v: &str| {
            Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("invalid regex {v:?}: {e}"))
        };
        let op = match op {
            "=" => Op::Eq(value),
            "!=" => Op::Ne(value),
            "=~" => Op::Re(anchored(&value)?),
            _ => Op::Nre(anchored(&value)?),
        };
        Ok(Matcher { name, op })
    }

    /// A double-quoted string with Go escapes, or a backquoted raw one.
    fn string(&mut self) -> Result<String, String> {
        if self.eat('`') {
            let end = self.rest().find('`').ok_or("unterminated raw string")?;
            let value = self.rest()[..end].to_string();
            self.at += end + 1;
            return Ok(value);
        }
        if !self.eat('"') {
            return Err(format!(
                "parse error: expected a string at {:?}",
                self.rest()
            ));
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, c @ ('\\' | '"'))) => out.push(c),
                    other => return Err(format!("unsupported escape {other:?}")),
                },
                c => out.push(c),
            }
        }
        Err("unterminated string".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(labels: &str, ts: i128, text: &str, id: &str) -> StoredLine {
        StoredLine {
            labels: labels.into(),
            timestamp_nanos: ts,
            line: text.into(),
            metadata: vec![("otelraft_record".into(), id.into())],
        }
    }

    fn pairs(query: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out = vec![("query".to_string(), query.to_string())];
        out.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        out
    }

    #[test]
    fn a_selector_and_a_metadata_filter_find_exactly_the_named_records() {
        let lines = vec![
            line("{service_name=\"a\"}", 10, "x", "1:0"),
            line("{service_name=\"a\"}", 11, "y", "1:1"),
            line("{service_name=\"b\"}", 12, "z", "1:2"),
            line("{service_name=\"a\"}", 13, "w", "12:0"),
        ];
        let p = Params::parse(
            &pairs(
                r#"{service_name="a"} | otelraft_record=~"1:(0|2)|12:0""#,
                &[
                    ("start", "10"),
                    ("end", "14"),
                    ("limit", "10"),
                    ("direction", "forward"),
                ],
            ),
            false,
        )
        .unwrap();
        let doc = p.answer(&lines);
        let result = doc["data"]["result"].as_array().unwrap();
        let ids: Vec<&str> = result
            .iter()
            .map(|s| s["stream"]["otelraft_record"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["12:0", "1:0"]);
    }

    #[test]
    fn end_is_exclusive_and_the_limit_cuts_in_the_query_s_direction() {
        let lines: Vec<StoredLine> = (0..5)
            .map(|i| line("{service_name=\"a\"}", i, "x", &format!("1:{i}")))
            .collect();
        let q = r#"{service_name="a"}"#;
        let p = Params::parse(
            &pairs(q, &[("start", "0"), ("end", "4"), ("limit", "2")]),
            true,
        )
        .unwrap();
        let doc = p.answer(&lines);
        let values = doc["data"]["result"][0]["values"].as_array().unwrap();
        let ts: Vec<&str> = values.iter().map(|v| v[0].as_str().unwrap()).collect();
        assert_eq!(ts, vec!["3", "2"], "backward by default, index 4 excluded");
        assert_eq!(values[0][2]["structuredMetadata"]["otelraft_record"], "1:3");
    }

    #[test]
    fn what_the_receiver_cannot_answer_is_refused() {
        for q in [
            r#"{service_name="a"} |= "x""#,
            r#"{service_name=~".*"}"#,
            r#"count_over_time({service_name="a"}[1m])"#,
            r#"{service_name="a"} | json"#,
        ] {
            assert!(Params::parse(&pairs(q, &[]), false).is_err(), "{q}");
        }
        let big = pairs(r#"{a="b"}"#, &[("limit", "5001")]);
        assert!(Params::parse(&big, false).is_err());
    }
}

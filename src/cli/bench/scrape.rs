//! What the bench reads from the members' own `/metrics` before and after a
//! run: fsyncs, CPU seconds (from each node's `/proc/self/stat`) and
//! refusals by the server's reason.

use std::collections::BTreeMap;

/// Counters summed over the members at one moment.
#[derive(Debug, Default, Clone)]
pub struct ServerCounters {
    /// `otelraft_storage_fsyncs_total`.
    pub fsyncs: f64,
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// `otelraft_ingest_requests_refused_total` by `reason`.
    pub refused: BTreeMap<String, f64>,
}

impl ServerCounters {
    /// `after - self`, per counter.
    pub fn delta(&self, after: &ServerCounters) -> ServerCounters {
        let mut refused = BTreeMap::new();
        for (reason, n) in &after.refused {
            let d = n - self.refused.get(reason).copied().unwrap_or(0.0);
            if d > 0.0 {
                refused.insert(reason.clone(), d);
            }
        }
        ServerCounters {
            fsyncs: after.fsyncs - self.fsyncs,
            cpu_seconds: after.cpu_seconds - self.cpu_seconds,
            refused,
        }
    }
}

/// Scrapes every admin base URL; `None` if any cannot be read.
pub async fn counters(client: &reqwest::Client, admin: &[String]) -> Option<ServerCounters> {
    let mut total = ServerCounters::default();
    for base in admin {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        add(&mut total, &text);
    }
    Some(total)
}

fn add(total: &mut ServerCounters, text: &str) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        match name {
            "otelraft_storage_fsyncs_total" => total.fsyncs += value,
            "process_cpu_seconds_total" => total.cpu_seconds += value,
            "otelraft_ingest_requests_refused_total" => {
                let reason = label(series, "reason").unwrap_or("unknown");
                *total.refused.entry(reason.to_string()).or_default() += value;
            }
            _ => {}
        }
    }
}

fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = series.find(&key)? + key.len();
    let end = series[start..].find('"')? + start;
    Some(&series[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_members_and_reads_reasons() {
        let mut t = ServerCounters::default();
        let text = "# TYPE x counter\notelraft_storage_fsyncs_total 10\nprocess_cpu_seconds_total 1.5\n\
                    otelraft_ingest_requests_refused_total{signal=\"logs\",reason=\"overloaded\"} 3\n";
        add(&mut t, text);
        add(&mut t, text);
        assert_eq!((t.fsyncs, t.cpu_seconds), (20.0, 3.0));
        assert_eq!(t.refused["overloaded"], 6.0);
        let before = ServerCounters::default();
        let d = before.delta(&t);
        assert_eq!(d.refused["overloaded"], 6.0);
    }
}

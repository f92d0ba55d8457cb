//! `jepsen-like table`: one markdown row per run directory, for
//! `docs/jepsen-like.md` and closing notes.

use std::path::PathBuf;

use serde_json::Value;

/// Prints the table of the runs in `dirs` (each holding a `results.json`).
pub fn print(dirs: &[PathBuf]) -> Result<(), String> {
    println!(
        "| topology | nemesis | seed | s | faults | ops | ok | fail | unknown | avail. in faults | avail. outside | p50 ms | p99 ms | max ms | heal→ack median / max ms | heal→drained max ms | drain s | lost | dup | unexpected | failed+delivered | recovered | valid |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for dir in dirs {
        let path = dir.join("results.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let r: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", row(&r));
    }
    Ok(())
}

fn row(r: &Value) -> String {
    let s = &r["summary"];
    let sum = |field: &str| -> u64 {
        r["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c[field].as_u64().unwrap_or(0))
            .sum()
    };
    let mut acks: Vec<f64> = s["heals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["first_ack_after_ms"].as_f64())
        .collect();
    acks.sort_by(f64::total_cmp);
    let drained = s["heals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["export_drained_after_ms"].as_f64())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let pct = |v: &Value| {
        v.as_f64()
            .map_or("-".to_string(), |x| format!("{:.1} %", x * 100.0))
    };
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
        r["topology"].as_str().unwrap_or(""),
        r["nemesis"].as_str().unwrap_or(""),
        r["seed"],
        r["time_s"],
        r["faults"].as_array().map_or(0, Vec::len),
        s["operations"],
        s["ok"],
        s["fail"],
        s["unknown"],
        pct(&s["availability"]["during_faults"]),
        pct(&s["availability"]["outside_faults"]),
        ms(s["latency_ms"]["p50"].as_f64()),
        ms(s["latency_ms"]["p99"].as_f64()),
        ms(s["latency_ms"]["max"].as_f64()),
        ms(acks.get(acks.len() / 2).copied()),
        ms(acks.last().copied()),
        ms(drained),
        r["drain_s"].as_f64().unwrap_or(f64::NAN),
        sum("lost"),
        sum("duplicated"),
        sum("unexpected"),
        sum("failed_but_delivered"),
        sum("recovered"),
        if r["valid"] == true { "yes" } else { "**NO**" },
    )
}

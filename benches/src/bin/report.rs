//! Turns the last `cargo bench -p benches` results (criterion's JSON under
//! `target/criterion`) into markdown tables: the median time of each
//! benchmark with its 95% confidence interval, and the median per element
//! (entity, client, or entity in the delta: whatever the bench's
//! throughput counts; see each bench's doc comment).
//!
//! `cargo run --release -p benches --bin report [GROUP_PREFIX...]`
//!
//! Criterion never deletes a result: a bench renamed, removed or left out
//! of the last run by a filter keeps its old figures in `target/criterion`.
//! Rows written more than [`EARLIER`] before the newest of their group are
//! marked "earlier run", and a note under the table counts them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Every `new/benchmark.json` below `dir`.
fn find(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find(&path, out);
        } else if path.ends_with("new/benchmark.json") {
            out.push(path);
        }
    }
}

/// A result this much older than the newest of its group is from an
/// earlier run (a whole `cargo bench -p benches` takes about 4 minutes).
const EARLIER: Duration = Duration::from_secs(3600);

/// One table row: the bench's id, its markdown, and when it was written.
struct Row {
    id: String,
    markdown: String,
    written: SystemTime,
}

fn read(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Nanoseconds in the most readable unit.
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns >= 10.0 {
        format!("{ns:.1} ns")
    } else {
        format!("{ns:.2} ns")
    }
}

fn main() -> ExitCode {
    let prefixes: Vec<String> = std::env::args().skip(1).collect();
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion");
    let mut files = Vec::new();
    find(&root, &mut files);
    if files.is_empty() {
        eprintln!(
            "no results under {}: run `cargo bench -p benches` first",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    println!("Machine: {}.", benches::machine());
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for bench in files {
        let (Some(meta), Some(est)) = (
            read(&bench),
            bench.parent().and_then(|d| read(&d.join("estimates.json"))),
        ) else {
            continue;
        };
        let group = meta["group_id"].as_str().unwrap_or("?").to_owned();
        if !prefixes.is_empty() && !prefixes.iter().any(|p| group.starts_with(p.as_str())) {
            continue;
        }
        let id = meta["full_id"].as_str().unwrap_or("?").to_owned();
        let median = &est["median"];
        let point = median["point_estimate"].as_f64().unwrap_or(f64::NAN);
        let lo = median["confidence_interval"]["lower_bound"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let hi = median["confidence_interval"]["upper_bound"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let elements = meta["throughput"]["Elements"].as_f64();
        let per = elements.map_or_else(
            || "".to_owned(),
            |n| format!("{} | {}", n, time(point / n.max(1.0))),
        );
        let markdown = format!("{} | {} – {} | {per} |", time(point), time(lo), time(hi));
        let written = std::fs::metadata(&bench)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        groups.entry(group).or_default().push(Row {
            id,
            markdown,
            written,
        });
    }
    for (group, mut rows) in groups {
        rows.sort_by_key(|r| natural(&r.id));
        let newest = rows.iter().map(|r| r.written).max();
        println!("\n#### `{group}`\n");
        println!("| benchmark | median | 95% CI of the median | elements | median per element |");
        println!("|---|---:|---:|---:|---:|");
        let mut stale = 0;
        for row in &rows {
            let earlier = newest.is_some_and(|n| row.written + EARLIER < n);
            stale += usize::from(earlier);
            let mark = if earlier { " (earlier run)" } else { "" };
            println!("| `{}`{mark} | {}", row.id, row.markdown);
        }
        if stale > 0 {
            println!(
                "\n{stale} of these results are more than an hour older than the newest \
                 of the group: criterion keeps the results of benches renamed, removed or \
                 filtered out of the last run. Delete their directories under \
                 target/criterion to drop them."
            );
        }
    }
    ExitCode::SUCCESS
}

/// Sort key that orders `…/100/…` before `…/1000/…`.
fn natural(id: &str) -> Vec<(u64, String)> {
    id.split('/')
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            (digits.parse().unwrap_or(u64::MAX), part.to_owned())
        })
        .collect()
}

//! `berth stats`: containers' usage as a table that refreshes, like
//! `docker stats`, or one sample as JSON.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::Value;

use super::client::Client;
use super::output::{out, outln};
use super::{container_path, table, Failure};
use crate::container::{ContainerView as Container, State};
use crate::size::format_size;
use crate::wire::Stats;

const REFRESH: Duration = Duration::from_secs(1);

/// One container's stats sample, with the time it was taken.
struct Sample {
    stats: Stats,
    at: Instant,
}

pub async fn run(
    client: &Client,
    ids: Vec<String>,
    no_stream: bool,
    json: bool,
) -> Result<i32, Failure> {
    let explicit = !ids.is_empty();
    let mut previous: HashMap<String, Sample> = HashMap::new();
    // A first sample to measure CPU rates against.
    let ids = resolve(client, &ids).await?;
    for id in &ids {
        if let Some(sample) = sample(client, id, explicit).await? {
            previous.insert(id.clone(), sample);
        }
    }
    loop {
        tokio::time::sleep(if no_stream || json {
            REFRESH / 2
        } else {
            REFRESH
        })
        .await;
        let ids = if explicit {
            ids.clone()
        } else {
            resolve(client, &[]).await?
        };
        let mut rows = Vec::new();
        let mut objects = Vec::new();
        for id in &ids {
            let Some(current) = sample(client, id, explicit).await? else {
                continue;
            };
            let cpu_percent = previous
                .get(id)
                .and_then(|before| cpu_percent(before, &current));
            rows.push(row(id, &current.stats, cpu_percent));
            objects.push(Shown {
                stats: current.stats.clone(),
                cpu_percent,
            });
            previous.insert(id.clone(), current);
        }
        if json {
            let objects = super::output::json_value(&objects);
            outln!("{}", serde_json::to_string_pretty(&objects).expect("json"));
            return Ok(0);
        }
        let rendered = table::render(
            &[
                "ID",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "BLOCK I/O",
                "DISK",
                "NET CLASS",
                "PIDS",
            ],
            &rows,
        );
        if no_stream {
            out!("{rendered}");
            return Ok(0);
        }
        // Clear the screen and draw again, as docker stats does.
        out!("\x1b[2J\x1b[H{rendered}");
        let _ = std::io::stdout().flush();
    }
}

/// A sample as `--json` shows it: the agent's stats and the CPU rate.
#[derive(serde::Serialize)]
struct Shown {
    #[serde(flatten)]
    stats: Stats,
    cpu_percent: Option<f64>,
}

/// The ids to show: the given ones, or every running container.
async fn resolve(client: &Client, ids: &[String]) -> Result<Vec<String>, Failure> {
    if !ids.is_empty() {
        return Ok(ids.to_vec());
    }
    let containers: Vec<Container> = client.json(Method::GET, "/v1/containers", None).await?;
    Ok(containers
        .into_iter()
        .filter(|c| c.state == State::Running)
        .map(|c| c.id.to_string())
        .collect())
}

/// Takes a sample; a container that ended meanwhile is skipped unless it was
/// asked for by name.
async fn sample(client: &Client, id: &str, explicit: bool) -> Result<Option<Sample>, Failure> {
    let path = format!("{}/stats", container_path(id));
    match client.json::<Stats>(Method::GET, &path, None).await {
        Ok(stats) => Ok(Some(Sample {
            stats,
            at: Instant::now(),
        })),
        Err(super::client::ClientError::Api { code, .. }) if !explicit && code == "conflict" => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn cpu_percent(before: &Sample, now: &Sample) -> Option<f64> {
    let used = |s: &Stats| s.isolators.get("cpu")?["usage_seconds"].as_f64();
    let elapsed = now.at.duration_since(before.at).as_secs_f64();
    if elapsed <= 0.0 {
        return None;
    }
    Some(((used(&now.stats)? - used(&before.stats)?) / elapsed * 100.0).max(0.0))
}

fn row(id: &str, stats: &Stats, cpu_percent: Option<f64>) -> Vec<String> {
    // Each isolator's usage keys are its own (the open resource contract):
    // read as JSON, a missing one shown as `-`.
    let isolators = |name: &str| stats.isolators.get(name).unwrap_or(&Value::Null);
    let dash = || "-".to_string();
    let cpu = cpu_percent.map(|p| format!("{p:.1}%")).unwrap_or_else(dash);
    let memory = isolators("memory");
    let (mem, mem_percent) = match (
        memory["current_bytes"].as_u64(),
        memory["limit_bytes"].as_u64(),
    ) {
        (Some(used), Some(limit)) if limit > 0 && limit < (1 << 62) => (
            format!("{} / {}", format_size(used), format_size(limit)),
            format!("{:.1}%", used as f64 * 100.0 / limit as f64),
        ),
        (Some(used), _) => (format!("{} / -", format_size(used)), dash()),
        _ => (dash(), dash()),
    };
    let block = isolators("blkio")["devices"]
        .as_object()
        .map(|devices| {
            let sum = |key: &str| {
                devices
                    .values()
                    .filter_map(|d| d[key].as_u64())
                    .sum::<u64>()
            };
            format!(
                "{} / {}",
                format_size(sum("read_bytes")),
                format_size(sum("write_bytes"))
            )
        })
        .unwrap_or_else(dash);
    let disk = isolators("disk");
    let disk = match (disk["used_bytes"].as_u64(), disk["limit_bytes"].as_u64()) {
        (Some(used), Some(limit)) => format!("{} / {}", format_size(used), format_size(limit)),
        (Some(used), None) => format!("{} / -", format_size(used)),
        _ => dash(),
    };
    let class = isolators("net_cls")["classid"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(dash);
    let pids = isolators("pids");
    let pids = match (pids["current"].as_u64(), &pids["limit"]) {
        (Some(current), serde_json::Value::Number(limit)) => format!("{current} / {limit}"),
        (Some(current), _) => format!("{current} / -"),
        _ => dash(),
    };
    vec![
        id.to_string(),
        cpu,
        mem,
        mem_percent,
        block,
        disk,
        class,
        pids,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stats answer with these isolators' usage.
    fn sample(isolators: Value) -> Stats {
        Stats {
            id: "c".into(),
            read_at: String::new(),
            isolators: isolators["isolators"].as_object().cloned().unwrap(),
            volumes: None,
        }
    }

    #[test]
    fn row_formats_each_isolator_and_tolerates_missing_ones() {
        let stats = sample(json!({"isolators": {
            "cpu": {"usage_seconds": 1.0},
            "memory": {"current_bytes": 32u64 << 20, "limit_bytes": 64u64 << 20},
            "blkio": {"devices": {"254:0": {"read_bytes": 1024, "write_bytes": 2048}}},
            "disk": {"used_bytes": 1u64 << 20, "limit_bytes": 20u64 << 20},
            "net_cls": {"classid": "0xaaaa0001"},
            "pids": {"current": 3, "limit": 4096},
        }}));
        let row = row("c1", &stats, Some(50.0));
        assert_eq!(
            row,
            [
                "c1",
                "50.0%",
                "32.0 MiB / 64.0 MiB",
                "50.0%",
                "1.0 KiB / 2.0 KiB",
                "1.0 MiB / 20.0 MiB",
                "0xaaaa0001",
                "3 / 4096"
            ]
        );
        let bare = super::row("c2", &sample(json!({"isolators": {}})), None);
        assert_eq!(bare[1..], ["-", "-", "-", "-", "-", "-", "-"]);
    }

    #[test]
    fn cpu_percent_is_the_usage_rate() {
        let t0 = Instant::now();
        let before = Sample {
            stats: sample(json!({"isolators": {"cpu": {"usage_seconds": 1.0}}})),
            at: t0,
        };
        let now = Sample {
            stats: sample(json!({"isolators": {"cpu": {"usage_seconds": 1.5}}})),
            at: t0 + Duration::from_secs(1),
        };
        assert!((cpu_percent(&before, &now).unwrap() - 50.0).abs() < 1e-9);
    }
}

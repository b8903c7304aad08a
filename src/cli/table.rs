//! Aligned tables for people.

use crate::container::{ContainerView as Container, State};

/// Formats rows as columns separated by three spaces, padded to the widest
/// cell of each column. Control characters in cells are escaped.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escape_controls(cell)).collect())
        .collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The `berth ps` table.
pub fn containers(containers: &[&Container]) -> String {
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            let status = match c.state {
                State::Exited if c.restart.next_attempt_at.is_some() => format!(
                    "restarting ({}) #{}",
                    c.shell_exit_code(),
                    c.restart.count + 1
                ),
                State::Exited => format!(
                    "{} ({})",
                    c.reason.as_deref().unwrap_or("ended"),
                    c.shell_exit_code()
                ),
                State::Running => {
                    let mut status = "running".to_string();
                    if let Some(health) = &c.health {
                        status.push_str(&format!(" ({})", health.status));
                    }
                    if c.restart.count > 0 {
                        status.push_str(&format!(" (restarted {})", c.restart.count));
                    }
                    status
                }
                State::Created => "starting".to_string(),
                State::Unknown => "unknown".to_string(),
            };
            let mut command = escape_controls(&c.command.join(" "));
            if command.chars().count() > 40 {
                command = command.chars().take(39).collect::<String>() + "…";
            }
            vec![
                c.id.to_string(),
                status,
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                ago(c.created_at.0, chrono::Utc::now()),
                command,
            ]
        })
        .collect();
    render(&["ID", "STATUS", "PID", "CREATED", "COMMAND"], &rows)
}

/// How long before `now` `then` was, as Docker's `ps` says it (`Less
/// than a second ago`, `2 minutes ago`). `--json` keeps the full time.
pub fn ago(then: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let seconds = (now - then).num_seconds().max(0);
    let (count, unit) = match seconds {
        0 => return "Less than a second ago".to_string(),
        1..=59 => (seconds, "second"),
        60..=3599 => (seconds / 60, "minute"),
        3600..=86_399 => (seconds / 3600, "hour"),
        86_400..=1_209_599 => (seconds / 86_400, "day"),
        1_209_600..=5_183_999 => (seconds / 604_800, "week"),
        5_184_000..=63_071_999 => (seconds / 2_592_000, "month"),
        _ => (seconds / 31_536_000, "year"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} ago")
}

/// `text` with control characters (a terminal's escape sequences, line
/// breaks) shown as escapes (`\x1b`, `\n`), so a container's command
/// cannot draw on the terminal or break the table.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// The `berth info` table.
pub fn info(info: &crate::wire::info::Info) -> String {
    let mut out = format!(
        "version: {}\ncgroups: {}\nwork dir: {}\nruntime dir: {}\n\n",
        info.version,
        info.cgroup_mode,
        info.work_dir.display(),
        info.runtime_dir.display(),
    );
    out.insert_str(out.len() - 1, &userns_line(&info.userns));
    let rows: Vec<Vec<String>> = info
        .isolators
        .iter()
        .map(|i| {
            // The isolator's own keys, in order (`details` is sorted).
            // `plugin` has a table of its own.
            let details: Vec<String> = i
                .details
                .iter()
                .filter(|(k, _)| k.as_str() != "plugin")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![i.name.clone(), details.join(" ")]
        })
        .collect();
    out.push_str(&render(&["ISOLATOR", "SUPPORTS"], &rows));
    out.push_str(&super::plugins_table::plugins(info));
    out
}

/// `userns: UIDS gids GIDS, N of M ranges free` or why there are none.
fn userns_line(userns: &serde_json::Value) -> String {
    match userns["unavailable"].as_str() {
        Some(why) => format!("userns: unavailable ({why})\n"),
        None if userns.is_object() => format!(
            "userns: uids {} gids {}, {} of {} ranges free\n",
            userns["subordinate_uids"].as_str().unwrap_or("?"),
            userns["subordinate_gids"].as_str().unwrap_or("?"),
            userns["free"],
            userns["capacity"],
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_times_are_relative() {
        let now = "2026-12-03T10:00:00Z".parse().unwrap();
        for (time, shown) in [
            ("2026-12-03T10:00:00Z", "Less than a second ago"),
            ("2026-12-03T09:59:59Z", "1 second ago"),
            ("2026-12-03T11:58:00+02:00", "2 minutes ago"),
            ("2026-12-03T07:00:00Z", "3 hours ago"),
            ("2026-11-19T10:00:00Z", "2 weeks ago"),
        ] {
            // A time that does not parse no longer gets here: the record
            // holds a real time.
            let time = crate::timestamp::Timestamp::parse(time).unwrap().0;
            assert_eq!(ago(time, now), shown, "{time}");
        }
    }

    #[test]
    fn control_characters_in_commands_are_escaped() {
        assert_eq!(
            escape_controls("a\x1b[2Jb\nc\u{9b}d é"),
            "a\\x1b[2Jb\\nc\\x9bd é"
        );
    }

    #[test]
    fn columns_line_up() {
        let out = render(
            &["ID", "X"],
            &[
                vec!["long-id".into(), "1".into()],
                vec!["a".into(), "22".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID        X");
        assert_eq!(lines[1], "long-id   1");
        assert_eq!(lines[2], "a         22");
    }
}

//! Aligned tables for people.

use crate::container::{Container, State};

/// Formats rows as columns separated by three spaces, padded to the widest
/// cell of each column.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
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
                State::Exited => format!(
                    "{} ({})",
                    c.reason.as_deref().unwrap_or("ended"),
                    c.shell_exit_code()
                ),
                State::Running => "running".to_string(),
                State::Created => "starting".to_string(),
            };
            let mut command = c.command.join(" ");
            if command.chars().count() > 40 {
                command = command.chars().take(39).collect::<String>() + "…";
            }
            vec![
                c.id.to_string(),
                status,
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                c.created_at.chars().take(19).collect(),
                command,
            ]
        })
        .collect();
    render(&["ID", "STATUS", "PID", "CREATED", "COMMAND"], &rows)
}

/// The `berth info` table.
pub fn info(info: &serde_json::Value) -> String {
    let mut out = format!(
        "version: {}\ncgroups: {}\nwork dir: {}\nruntime dir: {}\n\n",
        info["version"].as_str().unwrap_or("?"),
        info["cgroup_mode"].as_str().unwrap_or("?"),
        info["work_dir"].as_str().unwrap_or("?"),
        info["runtime_dir"].as_str().unwrap_or("?"),
    );
    out.insert_str(out.len() - 1, &userns_line(&info["userns"]));
    let rows: Vec<Vec<String>> = info["isolators"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| {
                    let name = i["name"].as_str().unwrap_or("?").to_string();
                    let details: Vec<String> = i
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| k.as_str() != "name")
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    vec![name, details.join(" ")]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&render(&["ISOLATOR", "SUPPORTS"], &rows));
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

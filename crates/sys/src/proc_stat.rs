//! `/proc/PID/stat`: a process's identity (its start time, which a recycled
//! pid does not share) and its state.

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`
/// field 22), or `None` if it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&read(pid)?)
}

/// The text of `/proc/<pid>/stat`, `None` if the process does not exist.
pub fn read(pid: u32) -> Option<String> {
    let file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    crate::seq_file::read_from_start(&file).ok()
}

/// Field 22 (start time) of a stat text.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: fields
    // are counted after its last ')'. Field 3 is the first one after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Field 3 (state: `R`, `S`, `Z`, ...) of a stat text.
pub fn parse_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_state(stat), Some('S'));
        assert_eq!(parse_start_time("1 (x) S 1"), None);
    }

    #[test]
    fn own_start_time_is_read_and_stable() {
        let me = std::process::id();
        let first = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(first));
        assert_eq!(start_time(1 << 23), None);
    }
}

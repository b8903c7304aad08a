//! Finding and signalling processes without being fooled by pid reuse
//! ([`ProcessRef`], in berth-protocol), and signal names.

pub use berth_protocol::process::ProcessRef;
pub use berth_sys::proc_stat::start_time;

/// Parses a signal given as `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(value: &str) -> Option<i32> {
    if let Ok(n) = value.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = value.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("sigkill"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }
}

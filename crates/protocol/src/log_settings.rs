//! How the shim rotates, compresses and backpressures a container's
//! output: set in the agent's config (`[log]`) and per container, handed to
//! the shim on its command line ([`crate::ShimArgs`]), never read from a
//! file the container could write.

use serde::{Deserialize, Serialize};

/// What the shim does when a container writes faster than the disk takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogMode {
    /// Slow the container down; lose nothing.
    Block,
    /// Drop what does not fit and count it.
    Drop,
}

impl LogMode {
    /// The word on the shim's command line and in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            LogMode::Block => "block",
            LogMode::Drop => "drop",
        }
    }

    /// The inverse of [`LogMode::as_str`].
    pub fn parse(word: &str) -> Option<LogMode> {
        match word {
            "block" => Some(LogMode::Block),
            "drop" => Some(LogMode::Drop),
            _ => None,
        }
    }
}

/// Log rotation and backpressure settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Bytes per log file before it rotates.
    pub max_size: u64,
    /// Files kept per stream, the current one included.
    pub max_files: u32,
    /// Compress rotated files.
    pub compress: bool,
    pub mode: LogMode,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            max_size: 10 << 20,
            max_files: 5,
            compress: false,
            mode: LogMode::Block,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_words_round_trip() {
        for mode in [LogMode::Block, LogMode::Drop] {
            assert_eq!(LogMode::parse(mode.as_str()), Some(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
        }
        assert_eq!(LogMode::parse("fast"), None);
    }
}

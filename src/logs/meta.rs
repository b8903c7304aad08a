//! The log metadata file: `<work_dir>/containers/<id>/logs.json`, beside
//! the container's `logs/` dir, so a log shipper (Filebeat, Fluent Bit,
//! Vector) tailing the segment files can tell whose they are: the
//! container's id, name, image and labels, and its streams' file names
//! (relative to `log_dir`). Written at launch, in the container's tree
//! before it becomes the container's dir, before the shim writes any
//! segment; removed with the container dir. Inside the container dir
//! (root's, 0700): the container cannot see it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Stream;
use crate::container::Container;

/// The file's name, in the container dir.
pub const META_FILE: &str = "logs.json";

/// The metadata of a container's log files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMeta {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The dir holding the segments.
    pub log_dir: PathBuf,
    /// Per stream (`stdout`, `stderr`), its files in `log_dir`.
    pub streams: BTreeMap<String, StreamFiles>,
}

/// One stream's files, named relative to `log_dir` (see
/// `docs/log-format.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamFiles {
    /// The symlink to the current segment (what `tail -F` follows).
    pub current: String,
    /// A glob of the uncompressed segments (20-digit start offsets).
    pub segments: String,
    /// The glob of the gzip-compressed rotated segments.
    pub compressed: String,
    /// The timestamp index.
    pub index: String,
}

impl LogMeta {
    /// The metadata of `container`'s logs.
    pub fn of(container: &Container) -> LogMeta {
        let streams = Stream::ALL
            .into_iter()
            .map(|stream| {
                let name = stream.name();
                let digits = "[0-9]".repeat(20);
                (
                    name.to_string(),
                    StreamFiles {
                        current: name.to_string(),
                        segments: format!("{name}.{digits}"),
                        compressed: format!("{name}.{digits}.gz"),
                        index: format!("{name}.idx"),
                    },
                )
            })
            .collect();
        LogMeta {
            id: container.id.to_string(),
            name: container.id.to_string(),
            image: container.image.clone(),
            labels: container.labels.clone(),
            log_dir: container.log_dir().to_path_buf(),
            streams,
        }
    }

    /// The file's content (the store writes it at launch).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("log metadata serializes")
    }
}

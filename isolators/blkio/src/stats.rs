//! Reading block I/O usage: bytes and operations per device.

use std::collections::BTreeMap;
use std::path::Path;

use berth_cgroups::{CgroupError, CgroupMode, ContainerCgroup, Controller};
use serde_json::{json, Map, Value};

use crate::device::DeviceNumber;

const B: Controller = Controller::Blkio;

/// The I/O a cgroup did on one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIo {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Write operations.
    pub write_ops: u64,
}

impl DeviceIo {
    /// The JSON form, with the device's name when sysfs knows it.
    pub fn to_json(&self, device: DeviceNumber) -> Value {
        let mut out = json!({
            "read_bytes": self.read_bytes,
            "write_bytes": self.write_bytes,
            "read_ops": self.read_ops,
            "write_ops": self.write_ops,
        });
        if let Some(name) = device.name() {
            out["name"] = name.into();
        }
        out
    }
}

/// A v1 file whose presence (in the isolator's root) says the kernel has
/// the `_recursive` statistics.
pub(crate) const RECURSIVE_PROBE: &str = "blkio.throttle.io_service_bytes_recursive";

/// The cgroup's I/O per device: v1 from the throttle policy's
/// `io_service_bytes` and `io_serviced` (which count all I/O, throttled or
/// not), their `_recursive` forms when `recursive` (the kernel has them),
/// v2 from `io.stat`. Both include descendant cgroups. Without `ops`, v1
/// reads the bytes file only (the operations stay 0).
pub(crate) fn read(
    cgroup: &ContainerCgroup,
    recursive: bool,
    ops: bool,
) -> Result<BTreeMap<DeviceNumber, DeviceIo>, CgroupError> {
    match cgroup.mode() {
        CgroupMode::V1 => {
            let file = |name: &str| {
                if recursive {
                    format!("{name}_recursive")
                } else {
                    name.to_string()
                }
            };
            let bytes_file = file("blkio.throttle.io_service_bytes");
            let ops_file = file("blkio.throttle.io_serviced");
            let bytes = parse_v1(
                &cgroup.file_path(B, &bytes_file)?,
                &cgroup.read(B, &bytes_file)?,
            )?;
            let ops = if ops {
                parse_v1(
                    &cgroup.file_path(B, &ops_file)?,
                    &cgroup.read(B, &ops_file)?,
                )?
            } else {
                BTreeMap::new()
            };
            let mut out: BTreeMap<DeviceNumber, DeviceIo> = BTreeMap::new();
            for (device, (read, write)) in bytes {
                let io = out.entry(device).or_default();
                io.read_bytes = read;
                io.write_bytes = write;
            }
            for (device, (read, write)) in ops {
                let io = out.entry(device).or_default();
                io.read_ops = read;
                io.write_ops = write;
            }
            Ok(out)
        }
        CgroupMode::V2 => parse_io_stat(
            &cgroup.file_path(B, "io.stat")?,
            &cgroup.read(B, "io.stat")?,
        ),
    }
}

/// The usage JSON object for a device map.
pub(crate) fn devices_json(devices: &BTreeMap<DeviceNumber, DeviceIo>) -> Value {
    let map: Map<String, Value> = devices
        .iter()
        .map(|(d, io)| (d.to_string(), io.to_json(*d)))
        .collect();
    Value::Object(map)
}

fn parse_error(path: &Path, line: &str, reason: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_path_buf(),
        value: line.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses a v1 rwstat file: `MAJ:MIN Read N`, `MAJ:MIN Write N`, other
/// operations (`Sync`, `Async`, `Discard`, `Total`) and the final `Total N`
/// line ignored. Returns (read, write) per device.
pub(crate) fn parse_v1(
    path: &Path,
    text: &str,
) -> Result<BTreeMap<DeviceNumber, (u64, u64)>, CgroupError> {
    let mut out: BTreeMap<DeviceNumber, (u64, u64)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Total", _] => {}
            [device, op, value] => {
                let device: DeviceNumber = device
                    .parse()
                    .map_err(|_| parse_error(path, line, "expected \"MAJ:MIN <op> <count>\""))?;
                let value: u64 = value
                    .parse()
                    .map_err(|_| parse_error(path, line, "count is not an unsigned integer"))?;
                let entry = out.entry(device).or_default();
                match *op {
                    "Read" => entry.0 = value,
                    "Write" => entry.1 = value,
                    _ => {}
                }
            }
            _ => return Err(parse_error(path, line, "expected \"MAJ:MIN <op> <count>\"")),
        }
    }
    Ok(out)
}

/// Parses v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N
/// dios=N`, keys it does not know (newer kernels add some) ignored.
pub(crate) fn parse_io_stat(
    path: &Path,
    text: &str,
) -> Result<BTreeMap<DeviceNumber, DeviceIo>, CgroupError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let device: DeviceNumber = fields
            .next()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| parse_error(path, line, "expected \"MAJ:MIN key=value ...\""))?;
        let mut io = DeviceIo::default();
        for field in fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| parse_error(path, line, "expected key=value"))?;
            let slot = match key {
                "rbytes" => &mut io.read_bytes,
                "wbytes" => &mut io.write_bytes,
                "rios" => &mut io.read_ops,
                "wios" => &mut io.write_ops,
                _ => continue,
            };
            *slot = value
                .parse()
                .map_err(|_| parse_error(path, line, "value is not an unsigned integer"))?;
        }
        out.insert(device, io);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceNumber {
        s.parse().unwrap()
    }

    #[test]
    fn v1_rwstat_takes_read_and_write_per_device() {
        let text = "\
8:16 Read 4096
8:16 Write 20971520
8:16 Sync 20971520
8:16 Async 4096
8:16 Discard 0
8:16 Total 20975616
254:0 Read 0
254:0 Write 0
Total 20975616
";
        let parsed = parse_v1(Path::new("/x"), text).unwrap();
        assert_eq!(parsed[&dev("8:16")], (4096, 20971520));
        assert_eq!(parsed[&dev("254:0")], (0, 0));
        assert_eq!(parsed.len(), 2);
        assert!(parse_v1(Path::new("/x"), "Total 0\n").unwrap().is_empty());
        assert!(parse_v1(Path::new("/x"), "").unwrap().is_empty());
    }

    #[test]
    fn v1_garbage_is_an_error_naming_file_and_line() {
        let err = parse_v1(
            Path::new("/cg/blkio.throttle.io_serviced"),
            "8:16 Read lots\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("blkio.throttle.io_serviced") && msg.contains("8:16 Read lots"),
            "{msg}"
        );
        assert!(parse_v1(Path::new("/x"), "vda Read 1\n").is_err());
        assert!(parse_v1(Path::new("/x"), "8:16 Read\n").is_err());
    }

    #[test]
    fn io_stat_takes_known_keys_and_ignores_new_ones() {
        let text = "\
254:0 rbytes=1048576 wbytes=20971520 rios=16 wios=20 dbytes=0 dios=0
8:0 rbytes=1 wbytes=2 rios=3 wios=4 cost.vrate=100.00
";
        let parsed = parse_io_stat(Path::new("/x"), text).unwrap();
        assert_eq!(
            parsed[&dev("254:0")],
            DeviceIo {
                read_bytes: 1048576,
                write_bytes: 20971520,
                read_ops: 16,
                write_ops: 20
            }
        );
        assert_eq!(parsed[&dev("8:0")].write_ops, 4);
        assert!(parse_io_stat(Path::new("/x"), "254:0 rbytes\n").is_err());
        assert!(parse_io_stat(Path::new("/x"), "254:0 rbytes=x\n").is_err());
        assert!(parse_io_stat(Path::new("/x"), "rbytes=1\n").is_err());
    }

    #[test]
    fn json_has_the_four_counters() {
        let io = DeviceIo {
            read_bytes: 1,
            write_bytes: 2,
            read_ops: 3,
            write_ops: 4,
        };
        // 1:3 is never a block device: no name to look up.
        let value = devices_json(&BTreeMap::from([(dev("1:3"), io)]));
        assert_eq!(
            value,
            json!({"1:3": {"read_bytes": 1, "write_bytes": 2, "read_ops": 3, "write_ops": 4}})
        );
    }
}

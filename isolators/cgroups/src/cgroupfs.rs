//! File operations on cgroupfs, with errors that name the path and value.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::CgroupError;

/// How long [`remove_dir`] retries a busy cgroup.
pub(crate) const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads a whole control file: open, reads until EOF, close. Not
/// `fs::read_to_string`, which also asks for the file's size and position
/// (useless on cgroupfs, which says 4096 or 0): a metrics scrape reads
/// thousands of these.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::File::open(path)
        .and_then(|file| read_from_start(&file))
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

pub(crate) use berth_sys::seq_file::read_from_start;

pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    write_each(path, &[value])
}

/// Writes each of `values` to the control file in a `write(2)` of its own
/// (the kernel parses each write on its own: one device rule, one pid),
/// through one open of the file. The error names the value that failed.
pub(crate) fn write_each(path: &Path, values: &[impl AsRef<str>]) -> Result<(), CgroupError> {
    let err = |value: &str| {
        let value = value.to_string();
        move |source| CgroupError::Write {
            path: path.to_path_buf(),
            value,
            source,
        }
    };
    let Some(first) = values.first() else {
        return Ok(());
    };
    // No O_CREAT: cgroupfs refuses to create files with a misleading EACCES,
    // so a missing control file must show up as ENOENT. O_TRUNC is ignored
    // by cgroupfs but keeps a fake tree (a plain file) from keeping a tail
    // of a longer old value.
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err(first.as_ref()))?;
    for value in values.iter().map(AsRef::as_ref) {
        file.write_all(value.as_bytes()).map_err(err(value))?;
    }
    Ok(())
}

pub(crate) fn parse_u64(path: &Path, value: &str) -> Result<u64, CgroupError> {
    value.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        value: value.to_string(),
        reason: "expected an unsigned integer".into(),
    })
}

/// Parses a flat keyed file (`key value` per line: `cpu.stat`,
/// `memory.stat`, `memory.events`, `memory.oom_control`, ...).
pub(crate) fn parse_keyed(path: &Path, text: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line
            .split_once(' ')
            .and_then(|(key, value)| Some((key, value.trim().parse::<u64>().ok()?)));
        let (key, value) = parsed.ok_or_else(|| CgroupError::Parse {
            path: path.to_path_buf(),
            value: line.to_string(),
            reason: "expected \"<key> <unsigned integer>\"".into(),
        })?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// The values of `keys` in a flat keyed file (`None` for a key it lacks):
/// [`parse_keyed`] without a map, parsing only the lines asked for (a
/// metrics scrape reads `memory.stat` of every container for three keys).
pub(crate) fn parse_keys<const N: usize>(
    path: &Path,
    text: &str,
    keys: [&str; N],
) -> Result<[Option<u64>; N], CgroupError> {
    let mut out = [None; N];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let Some(at) = keys.iter().position(|k| *k == key) else {
            continue;
        };
        let value = value
            .trim()
            .parse::<u64>()
            .map_err(|_| CgroupError::Parse {
                path: path.to_path_buf(),
                value: line.to_string(),
                reason: "expected \"<key> <unsigned integer>\"".into(),
            })?;
        out[at] = Some(value);
    }
    Ok(out)
}

/// Creates a cgroup directory; an existing one is fine (co-mounted
/// controllers share a directory, and a retried prepare finds its own).
pub(crate) fn create_dir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(CgroupError::Create {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Removes a cgroup directory; a missing one is fine.
pub(crate) fn remove_dir(path: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(5);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Tasks that were just killed stay charged to the cgroup until
            // the kernel has finished tearing them down (and a zombie until it
            // is reaped): rmdir says EBUSY for a little while, so wait.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let waited = start.elapsed();
                if waited >= REMOVE_TIMEOUT {
                    return Err(CgroupError::Busy {
                        path: path.to_path_buf(),
                        waited,
                    });
                }
                thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Removes a cgroup and all cgroups below it, deepest first.
pub(crate) fn remove_tree(path: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_asked_for_are_parsed() {
        let path = Path::new("/sys/fs/cgroup/x/memory.stat");
        let text = "cache 8192\nrss 4096\nweird line\ntotal_rss 12288\n";
        assert_eq!(
            parse_keys(path, text, ["total_rss", "rss", "shmem"]).unwrap(),
            [Some(12288), Some(4096), None]
        );
        let err = parse_keys(path, "rss 4k\n", ["rss"]).unwrap_err();
        assert!(err.to_string().contains("rss 4k"), "{err}");
    }

    #[test]
    fn keyed_files_parse_and_refuse_garbage() {
        let p = Path::new("/x/cpu.stat");
        let map = parse_keyed(p, "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n").unwrap();
        assert_eq!(map["nr_throttled"], 2);
        let err = parse_keyed(p, "nr_periods ten\n").unwrap_err();
        assert!(err.to_string().contains("/x/cpu.stat"), "{err}");
        assert!(err.to_string().contains("nr_periods ten"), "{err}");
    }

    #[test]
    fn write_does_not_create_and_names_path_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("cpu.shares"), "512").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cpu.shares") && msg.contains("\"512\""),
            "{msg}"
        );
        assert!(!dir.path().join("cpu.shares").exists());
    }

    #[test]
    fn write_each_writes_every_value_through_one_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("devices.allow");
        fs::write(&file, "an old longer value").unwrap();
        write_each(&file, &["c 1:3 rwm", "c 5:0 rwm"]).unwrap();
        // A plain file keeps both writes, one after the other.
        assert_eq!(fs::read_to_string(&file).unwrap(), "c 1:3 rwmc 5:0 rwm");
        let err = write_each(&dir.path().join("gone"), &["a", "b"]).unwrap_err();
        assert!(err.to_string().contains("\"a\""), "{err}");
    }

    #[test]
    fn write_replaces_a_longer_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cpu.cfs_quota_us");
        fs::write(&file, "100000").unwrap();
        write(&file, "5000").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "5000");
    }

    #[test]
    fn remove_tolerates_missing_and_reports_other_errors() {
        let dir = tempfile::tempdir().unwrap();
        remove_dir(&dir.path().join("gone")).unwrap();
        let full = dir.path().join("full");
        fs::create_dir(&full).unwrap();
        fs::write(full.join("f"), "").unwrap();
        let err = remove_dir(&full).unwrap_err();
        assert!(matches!(err, CgroupError::Remove { .. }), "{err}");
        fs::create_dir_all(dir.path().join("t/a/b")).unwrap();
        fs::create_dir_all(dir.path().join("t/c")).unwrap();
        remove_tree(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
    }
}

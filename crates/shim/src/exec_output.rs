//! An exec's captured output file, written up to
//! [`EXEC_OUTPUT_CAP`] bytes: what the
//! command writes beyond that is read (so it never blocks on a full pipe)
//! and dropped, and the file says so at its end.
//!
//! The output is the container's to choose, and the exec dir lives in the
//! agent's runtime dir (a tmpfs, host memory): uncapped, one health check
//! running `yes` would fill it.

use std::fs::File;
use std::io::Write;

use berth_protocol::messages::EXEC_OUTPUT_CAP;

/// The line appended once when output is dropped.
const DROPPED_NOTICE: &[u8] = b"\n[berth: output beyond the cap was dropped]\n";

/// One of an exec's two output files (`stdout`, `stderr`).
pub struct CappedOutput {
    file: File,
    left: u64,
    dropped: bool,
}

impl CappedOutput {
    pub fn new(file: File) -> Self {
        CappedOutput {
            file,
            left: EXEC_OUTPUT_CAP,
            dropped: false,
        }
    }

    /// Keeps what fits under the cap; notes the first drop in the file.
    pub fn write(&mut self, data: &[u8]) {
        let kept = data.len().min(self.left as usize);
        if kept > 0 && self.file.write_all(&data[..kept]).is_ok() {
            self.left -= kept as u64;
        }
        if kept < data.len() && !self.dropped {
            self.dropped = true;
            let _ = self.file.write_all(DROPPED_NOTICE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_beyond_the_cap_is_dropped_with_a_notice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut out = CappedOutput::new(File::create(&path).unwrap());
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(EXEC_OUTPUT_CAP / (1 << 20)) + 3 {
            out.write(&chunk);
        }
        let written = std::fs::read(&path).unwrap();
        assert_eq!(
            written.len() as u64,
            EXEC_OUTPUT_CAP + DROPPED_NOTICE.len() as u64
        );
        assert!(written.ends_with(DROPPED_NOTICE));
    }

    #[test]
    fn output_under_the_cap_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut out = CappedOutput::new(File::create(&path).unwrap());
        out.write(b"hello ");
        out.write(b"world");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    }
}

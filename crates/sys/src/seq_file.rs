//! Reading the kernel's rendered pseudo files (cgroup control files,
//! `/proc/PID/stat`) whole, in as few reads as they allow.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The whole text of an open pseudo file, read from offset 0 (again, for
/// a file kept open: seq_file then renders it anew). Not
/// `fs::read_to_string`, which also asks for the file's size (0 or 4096
/// here, useless) and reads 32, 64, 128... bytes at a time.
pub fn read_from_start(file: &File) -> io::Result<String> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match file.read_at(&mut chunk, text.len() as u64) {
            Ok(0) => break,
            Ok(n) => {
                text.extend_from_slice(&chunk[..n]);
                // seq_file fills the buffer until the file ends: a short
                // read is the end, and the read that would say 0 is saved.
                if n < chunk.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

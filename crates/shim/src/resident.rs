//! Trimming the monitor's resident memory once setup is done.
//!
//! Setup (spec parsing, mounts, namespaces, the agent protocol) touches far
//! more code than the pump loop that runs for the rest of the container's
//! life: about 1.5 MB of the shim's text and most of libc's stay resident,
//! once per container. Dropping the executable mappings' pages from this
//! process (the page cache keeps them) lets the pump loop fault back in only
//! what it uses.

use std::fs;

/// Drops the resident pages of every read-only file mapping that holds no
/// private (anonymous) pages.
///
/// Such a mapping's pages are clean copies of the file, so `MADV_DONTNEED`
/// merely unmaps them and the next access reads the page cache again. A
/// read-only mapping with anonymous pages (the GOT after RELRO, written by
/// the dynamic loader before it was made read-only) holds private changes
/// that `MADV_DONTNEED` would throw away: those, and every writable
/// mapping, are left alone. Returns how many bytes of mappings were advised.
pub fn trim_code_pages() -> usize {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut advised = 0;
    for (start, end) in clean_read_only_file_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process, read-only,
        // backed by a file and without private pages: dropping its pages
        // loses nothing. The process is single-threaded and nothing can
        // write to a read-only mapping between the read of smaps and here.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            advised += end - start;
        }
    }
    advised
}

/// The `(start, end)` of each mapping in `smaps` text that is private,
/// read-only (`r-xp` or `r--p`), backed by a file, and has no anonymous
/// pages.
fn clean_read_only_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(mapping) = parse_header(line) {
            current = mapping;
            continue;
        }
        if let (Some(range), Some(rest)) = (current, line.strip_prefix("Anonymous:")) {
            if rest.trim() == "0 kB" {
                out.push(range);
            }
            current = None;
        }
    }
    out
}

/// Parses a mapping header line: `Some(Some(range))` for a read-only
/// private file mapping, `Some(None)` for another mapping, `None` for a
/// line that is not a header.
fn parse_header(line: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    );
    let perms = fields.next()?;
    let path = fields.nth(3);
    let wanted = matches!(perms, "r-xp" | "r--p") && path.is_some_and(|p| p.starts_with('/'));
    Some(wanted.then_some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0b00000 r-xp 00001000 fe:00 1234 /usr/libexec/berth/berth-shim
Size:               1024 kB
Anonymous:             0 kB
55d0c0b00000-55d0c0b10000 r--p 00101000 fe:00 1234 /usr/libexec/berth/berth-shim
Size:                 64 kB
Anonymous:             8 kB
55d0c0b10000-55d0c0b20000 rw-p 00111000 fe:00 1234 /usr/libexec/berth/berth-shim
Anonymous:             4 kB
7f0000000000-7f0000010000 r--p 00000000 fe:00 99 /usr/lib/libc.so.6
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7ffd00010000-7ffd00020000 r--p 00000000 00:00 0
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_qualify() {
        assert_eq!(
            clean_read_only_file_mappings(SMAPS),
            [
                (0x55d0c0a00000, 0x55d0c0b00000),
                (0x7f0000000000, 0x7f0000010000)
            ]
        );
    }

    #[test]
    fn trimming_keeps_the_process_working() {
        assert!(trim_code_pages() > 0);
        // Code and read-only data are read again after their pages went.
        assert_eq!(format!("{}", 40 + 2), "42");
    }
}

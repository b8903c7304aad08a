//! Trimming the monitor's resident memory once setup is done.
//!
//! Setup (spec parsing, mounts, namespaces, the agent protocol) touches far
//! more code than the pump loop that runs for the rest of the container's
//! life: about 1.5 MB of the shim's text and most of libc's stay resident,
//! once per container. Dropping the executable mappings' pages from this
//! process (the page cache keeps them) lets the pump loop fault back in only
//! what it uses.

use std::fs;

/// Drops the resident pages of every read-only executable file mapping.
///
/// Only `r-xp` mappings are touched: their pages are clean copies of the
/// file, so `MADV_DONTNEED` merely unmaps them and the next access reads the
/// file again. Writable or relocated mappings (`.data`, the GOT after
/// RELRO) hold private changes that `MADV_DONTNEED` would throw away, so
/// they are left alone. Returns how many bytes of mappings were advised.
pub fn trim_code_pages() -> usize {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut advised = 0;
    for mapping in maps.lines().filter_map(parse_mapping) {
        // SAFETY: the range is a whole mapping of this process, read-only
        // and executable, backed by a file: dropping its pages cannot lose
        // data, and no Rust reference points into code pages.
        let rc = unsafe {
            libc::madvise(
                mapping.0 as *mut libc::c_void,
                mapping.1 - mapping.0,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            advised += mapping.1 - mapping.0;
        }
    }
    advised
}

/// `(start, end)` of a `/proc/self/maps` line that is a private, read-only,
/// executable mapping of a file.
fn parse_mapping(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let path = fields.nth(3)?;
    if perms != "r-xp" || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_executable_file_mappings_qualify() {
        assert_eq!(
            parse_mapping(
                "55d0c0a00000-55d0c0b00000 r-xp 00001000 fe:00 1234 /usr/libexec/berth/berth-shim"
            ),
            Some((0x55d0c0a00000, 0x55d0c0b00000))
        );
        assert_eq!(
            parse_mapping("7f00-7f10 rw-p 00000000 fe:00 1234 /usr/lib/libc.so.6"),
            None
        );
        assert_eq!(
            parse_mapping("7f00-7f10 r--p 00000000 fe:00 1234 /usr/lib/libc.so.6"),
            None
        );
        assert_eq!(
            parse_mapping("7ffd-7ffe r-xp 00000000 00:00 0 [vdso]"),
            None
        );
        assert_eq!(parse_mapping("7ffd-7ffe r-xp 00000000 00:00 0"), None);
    }

    #[test]
    fn trimming_keeps_the_process_working() {
        assert!(trim_code_pages() > 0);
        // Code runs again after its pages were dropped.
        assert_eq!(format!("{}", 40 + 2), "42");
    }
}

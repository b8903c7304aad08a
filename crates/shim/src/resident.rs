//! Trimming the monitor's resident memory once setup is done.
//!
//! Setup (spec parsing, mounts, namespaces, the agent protocol) touches far
//! more code than the pump loop that runs for the rest of the container's
//! life: about 1.5 MB of the shim's text and most of libc's stay resident,
//! once per container. Dropping the executable mappings' pages from this
//! process (the page cache keeps them) lets the pump loop fault back in only
//! what it uses. Setup also runs deeper in the stack than the pump loop
//! ever does again, and frees most of what it allocated: the stack pages
//! below the loop and the allocator's free pages are given back too
//! (decision 0061).

use std::fs;

use berth_sys::prefault::page_size;

/// Drops what setup left resident and the pump loop, which calls this,
/// does not use: the stack below the caller ([`trim_stack`]), the code
/// pages ([`trim_code_pages`]), then the allocator's free memory
/// ([`trim_heap`]), with one read of `/proc/self/smaps` for the first two.
#[inline(never)]
pub fn trim_after_setup() {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    trim_stack(&smaps, STACK_KEPT);
    trim_code_pages(&smaps);
    drop(smaps);
    trim_heap();
}

/// Drops the resident pages of every read-only file mapping that holds no
/// private (anonymous) pages, by `smaps`, this process's `/proc/self/smaps`.
///
/// Such a mapping's pages are clean copies of the file, so `MADV_DONTNEED`
/// merely unmaps them and the next access reads the page cache again. A
/// read-only mapping with anonymous pages (the GOT after RELRO, written by
/// the dynamic loader before it was made read-only) holds private changes
/// that `MADV_DONTNEED` would throw away: those, and every writable
/// mapping, are left alone. Returns how many bytes of mappings were advised.
fn trim_code_pages(smaps: &str) -> usize {
    let mut advised = 0;
    for (start, end) in clean_read_only_file_mappings(smaps) {
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

/// How much of the stack below [`trim_after_setup`]'s frame is kept: the
/// calls the pump loop makes from where it trims (the deepest, a log
/// file's rotation, stays well inside).
const STACK_KEPT: usize = 16 << 10;

/// Drops the resident pages of the calling thread's stack more than
/// `keep` bytes below this function's frame: memory that setup's deeper
/// calls left mapped (some 25 kB in the monitor) and that nothing live is
/// in. A later call that goes as deep gets zeroed pages, as a first touch
/// would. `maps` is this process's `/proc/self/maps` (or `smaps`). Returns
/// how many bytes were advised.
#[inline(never)]
fn trim_stack(maps: &str, keep: usize) -> usize {
    let here = 0u8;
    let frame = std::ptr::addr_of!(here) as usize;
    // The main thread's `[stack]`, or a thread's mapped stack.
    let Some((start, _)) = mapping_containing(maps, frame) else {
        return 0;
    };
    let below = frame.saturating_sub(keep) & !(page_size() - 1);
    if below <= start {
        return 0;
    }
    // SAFETY: [start, below) is the part of this thread's own stack mapping
    // at least `keep` bytes below the current frame: no live frame is
    // there, and no signal handler runs on this stack meanwhile (the
    // monitor installs none; a handler would find zeroed pages, which is
    // what memory below the stack pointer may hold). MADV_DONTNEED on
    // private anonymous memory makes the next touch see zeroes.
    let rc = unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            below - start,
            libc::MADV_DONTNEED,
        )
    };
    if rc == 0 {
        below - start
    } else {
        0
    }
}

/// Gives the allocator's free memory back to the kernel: the pages of the
/// heap that setup allocated and freed (the bundle's parsed spec, the
/// launch's messages) stay resident otherwise, some 100 kB per monitor.
/// Returns whether any was given back.
fn trim_heap() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim has no preconditions; it only releases free
        // memory of glibc's arenas.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// The `(start, end)` of the mapping in `/proc/self/maps` (or `smaps`)
/// text that holds `address`.
fn mapping_containing(maps: &str, address: usize) -> Option<(usize, usize)> {
    maps.lines().find_map(|line| {
        // A header line's first field is the range; no field line has a '-'.
        let range = parse_range(line.split_whitespace().next()?)?;
        (range.0..range.1).contains(&address).then_some(range)
    })
}

/// A mapping header's first field, `start-end` in hex.
fn parse_range(field: &str) -> Option<(usize, usize)> {
    let (start, end) = field.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
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
    let range = parse_range(fields.next()?)?;
    let perms = fields.next()?;
    let path = fields.nth(3);
    let wanted = matches!(perms, "r-xp" | "r--p") && path.is_some_and(|p| p.starts_with('/'));
    Some(wanted.then_some(range))
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
    fn the_mapping_of_an_address_is_found() {
        let maps = "55d0c0a00000-55d0c0b00000 r-xp 00001000 fe:00 1234 /usr/libexec/berth/berth-shim\n\
                    7ffd0a000000-7ffd0a021000 rw-p 00000000 00:00 0                          [stack]\n";
        let stack = Some((0x7ffd0a000000, 0x7ffd0a021000));
        assert_eq!(mapping_containing(maps, 0x7ffd0a020ff8), stack);
        assert_eq!(mapping_containing(maps, 0x7ffd0a000000), stack);
        assert_eq!(mapping_containing(maps, 0x7ffd0a021000), None);
    }

    /// Resident pages of `len` bytes at `start`, by `mincore`.
    fn resident(start: usize, len: usize) -> usize {
        let pages = len.div_ceil(page_size());
        let mut vec = vec![0u8; pages];
        // SAFETY: `vec` has a byte per page of the range, which is mapped.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|b| *b & 1 == 1).count()
    }

    /// Writes `depth` KiB of stack, a KiB a frame; returns a checksum the
    /// optimizer cannot drop.
    #[inline(never)]
    fn go_deep(depth: usize) -> usize {
        let mut frame = [0u8; 1024];
        frame[depth % 1024] = depth as u8;
        let below = if depth > 0 { go_deep(depth - 1) } else { 0 };
        std::hint::black_box(&mut frame);
        below + frame.iter().map(|b| *b as usize).sum::<usize>()
    }

    #[test]
    fn the_stack_below_the_frame_is_dropped_and_usable_again() {
        // On a thread of its own: a stack of a known size, used by no other test.
        std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(|| {
                let here = 0u8;
                let frame = std::ptr::addr_of!(here) as usize & !(page_size() - 1);
                let deep = 512 << 10;
                let sum = go_deep(512);
                // The 256 KiB from 128 KiB to 384 KiB below this frame.
                let probe = (frame - (384 << 10), 256 << 10);
                assert!(
                    resident(probe.0, probe.1) > 32,
                    "the deep calls mapped their pages"
                );
                let maps = fs::read_to_string("/proc/self/maps").unwrap();
                let advised = trim_stack(&maps, STACK_KEPT);
                assert!(advised >= deep - STACK_KEPT, "advised only {advised} bytes");
                assert_eq!(resident(probe.0, probe.1), 0, "the pages below are dropped");
                assert!(
                    resident(frame - page_size(), page_size()) == 1,
                    "the frame's own page is kept"
                );
                assert_eq!(go_deep(512), sum, "the stack works as before");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn trimming_keeps_the_process_working() {
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        assert!(trim_code_pages(&smaps) > 0);
        // Code and read-only data are read again after their pages went.
        assert_eq!(format!("{}", 40 + 2), "42");
    }
}

//! Memory a short-lived process is about to write, mapped in one system
//! call instead of one page fault per page.
//!
//! A page fault is an exception, a trip through the kernel and, in a VM
//! whose page tables the host shadows, a trip through the hypervisor: about
//! 4 µs a page in the VM berth's benchmarks run in, where
//! `madvise(MADV_POPULATE_WRITE)` maps the same pages for about 1.5 µs each
//! (decision 0060). A `berth run` faults in some 50 pages of its allocator's
//! arena and 27 of its stack. Kernels before 5.14 refuse the advice; the
//! pages then fault in as before.

use std::io;

/// Maps the pages of `len` bytes from `start` writable and zeroed (as a
/// first write would), in one call. `start` is rounded down to its page.
/// At a page that is not mapped writable the call stops with an error; the
/// pages before it stay mapped.
///
/// ```
/// let mut buffer = vec![0u8; 64 << 10];
/// // Refused only by kernels older than 5.14.
/// let _ = berth_sys::prefault::populate_write(buffer.as_mut_ptr(), buffer.len());
/// buffer[1000] = 1;
/// assert_eq!(buffer.iter().map(|b| *b as u32).sum::<u32>(), 1);
/// ```
pub fn populate_write(start: *mut u8, len: usize) -> io::Result<()> {
    let page = page_size();
    let first = start as usize & !(page - 1);
    let end = (start as usize).saturating_add(len);
    // SAFETY: MADV_POPULATE_WRITE changes no byte of the range: it faults
    // its pages in as a write would, with their present contents (zero for
    // untouched anonymous memory), and stops with an error at the first
    // page that is not mapped writable.
    let rc = unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            end - first,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Maps `bytes` of the calling thread's stack below the current frame, to
/// be grown into without a fault per page. Only within the stack's mapping:
/// the kernel refuses a range that reaches past it whole (`ENOMEM`) and
/// does not grow a stack for advice. The main thread's mapping ends 128 KiB
/// below its arguments at exec, and `main`'s own frame may hold much of
/// that (a release `berth`'s holds over 30 KiB: 96 KiB below it were
/// refused, decision 0061); a refused range is therefore asked again once,
/// half as deep.
/// A thread's stack must hold `bytes` below the frame.
///
/// ```
/// // 64 KiB below this frame: inside the main thread's first 128 KiB, or
/// // a test thread's stack (2 MiB).
/// berth_sys::prefault::stack(64 << 10).unwrap();
/// ```
#[inline(never)]
pub fn stack(bytes: usize) -> io::Result<()> {
    let mut here = 0u8;
    let top = std::ptr::addr_of_mut!(here) as usize & !(page_size() - 1);
    match populate_write(top.saturating_sub(bytes) as *mut u8, bytes) {
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
            let half = (bytes / 2) & !(page_size() - 1);
            populate_write(top.saturating_sub(half) as *mut u8, half)
        }
        done => done,
    }
}

/// The size of a page of memory (4096 if the system will not say).
pub fn page_size() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of `len` bytes at `start`, by `mincore`.
    fn resident(start: *mut u8, len: usize) -> usize {
        let pages = len.div_ceil(page_size());
        let mut vec = vec![0u8; pages];
        // SAFETY: `start` is page-aligned and the range mapped (the
        // caller's mmap); `vec` has a byte per page.
        let rc = unsafe { libc::mincore(start.cast(), len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        vec.iter().filter(|b| **b & 1 == 1).count()
    }

    /// A fresh private anonymous mapping of `len` bytes, none resident,
    /// without huge pages.
    fn anonymous(len: usize) -> *mut u8 {
        // SAFETY: a new mapping at an address the kernel picks; the caller
        // unmaps it.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(start, libc::MAP_FAILED);
        // Pages of 4 KiB only: a transparent huge page would make a whole
        // 2 MiB resident at once, beyond the range populated.
        // SAFETY: advice on the mapping just made.
        let rc = unsafe { libc::madvise(start, len, libc::MADV_NOHUGEPAGE) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        start.cast()
    }

    #[test]
    fn populated_pages_are_resident_and_zero_before_any_write() {
        let len = 32 * page_size();
        let start = anonymous(len);
        assert_eq!(resident(start, len), 0);
        // The second half only.
        let half = len / 2;
        // SAFETY: in the mapping.
        let middle = unsafe { start.add(half) };
        match populate_write(middle, half) {
            Ok(()) => {
                assert_eq!(resident(start, half), 0, "before the range");
                assert_eq!(resident(middle, half), half / page_size());
            }
            // A kernel before 5.14: nothing to check but the refusal.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}"),
        }
        // SAFETY: the mapping's bytes, all readable.
        let bytes = unsafe { std::slice::from_raw_parts(start, len) };
        assert!(bytes.iter().all(|b| *b == 0));
        // SAFETY: the mapping made above, not used after.
        unsafe { libc::munmap(start.cast(), len) };
    }

    #[test]
    fn a_range_into_memory_that_cannot_be_written_is_refused() {
        let page = page_size();
        // Two pages, the second not writable: the range ends in memory of
        // its own, never in a mapping of another test's made next to it.
        let start = anonymous(2 * page);
        // SAFETY: the second page of the mapping just made.
        let rc = unsafe { libc::mprotect(start.add(page).cast(), page, libc::PROT_NONE) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        assert!(populate_write(start, 2 * page).is_err());
        // SAFETY: the mapping made above, not used after.
        unsafe { libc::munmap(start.cast(), 2 * page) };
    }
}

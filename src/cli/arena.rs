//! The CLI's memory allocator (decision 0055): a command's first
//! allocations bump through a fixed arena that is never given back; the
//! rest, and anything larger than [`LARGEST`], go to the system's
//! allocator.
//!
//! A `berth run` makes a few hundred allocations, most of them short-lived
//! (clap's command tree, the request, hyper's buffers). musl's allocator,
//! which the shipped CLI uses, served them with 29 `mmap` and 16 `munmap`
//! calls, each a page fault or a TLB flush. From the arena they cost an
//! atomic add. A long-running command (`logs -f`, `attach`, `events`) fills
//! the arena once and then allocates as before: it holds at most
//! [`ARENA_BYTES`] more.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The arena's size: a `berth run` touches 47 of its 256 pages.
pub const ARENA_BYTES: usize = 1 << 20;

/// Larger allocations go to the system allocator.
pub const LARGEST: usize = 64 << 10;

/// The arena's bytes, page-aligned, zero until handed out (`.bss`).
#[repr(C, align(4096))]
struct Bytes(UnsafeCell<[u8; ARENA_BYTES]>);

/// A bump allocator over [`ARENA_BYTES`] in front of [`System`], for
/// `#[global_allocator]`:
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: berth::cli::arena::Arena = berth::cli::arena::Arena::new();
///
/// let words: Vec<String> = "a launch in a few words".split(' ').map(String::from).collect();
/// assert_eq!(words.len(), 6);
/// ```
pub struct Arena {
    bytes: Bytes,
    /// Bytes handed out from the start of `bytes`; only grows.
    used: AtomicUsize,
}

// SAFETY: `bytes` is only written through pointers to disjoint ranges,
// each handed out once by an atomic compare-and-swap of `used`; the arena
// has no other shared state.
unsafe impl Sync for Arena {}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// An empty arena.
    pub const fn new() -> Self {
        Arena {
            bytes: Bytes(UnsafeCell::new([0; ARENA_BYTES])),
            used: AtomicUsize::new(0),
        }
    }

    /// Maps the arena's first `bytes` in one call, before they are
    /// allocated (decision 0060): a `berth run` would fault them in a page
    /// at a time. Best effort: an older kernel refuses, and they fault in.
    pub fn prefault(&self, bytes: usize) {
        let _ = berth_sys::prefault::populate_write(self.base(), bytes.min(ARENA_BYTES));
    }

    /// The arena's first byte.
    fn base(&self) -> *mut u8 {
        self.bytes.0.get().cast()
    }

    /// The offset of `ptr` in the arena, if it points into it.
    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        let offset = (ptr as usize).wrapping_sub(self.base() as usize);
        (offset < ARENA_BYTES).then_some(offset)
    }

    /// A fresh range for `layout`, if the arena has room for it.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if layout.size() > LARGEST {
            return None;
        }
        let base = self.base() as usize;
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let start = (base + used).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > ARENA_BYTES {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                // SAFETY: `start + size <= ARENA_BYTES`: in the arena.
                Ok(_) => return Some(unsafe { self.base().add(start) }),
                Err(now) => used = now,
            }
        }
    }

    /// Resizes the range at `offset` in place, if it can: a smaller size
    /// keeps the range as it is (its tail is not handed out again, so the
    /// arena's unused bytes stay zero); a larger one moves the arena's end
    /// if the range is the last one.
    fn resize_in_place(&self, offset: usize, old_size: usize, new_size: usize) -> bool {
        if new_size <= old_size {
            return true;
        }
        let (old_end, new_end) = (offset + old_size, offset + new_size);
        if new_size > LARGEST || new_end > ARENA_BYTES {
            return false;
        }
        // Only the last range ends where `used` does.
        self.used
            .compare_exchange(old_end, new_end, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

// SAFETY: every pointer returned is either a range of the arena handed out
// once (aligned as asked, `layout.size()` long, never handed out again) or
// the system allocator's; `dealloc` and `realloc` tell the two apart by
// address and give the system's back to it.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout has a non-zero size (this
            // function's contract), passed on unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            // Zero: the arena starts zeroed and no range is handed out twice.
            Some(ptr) => ptr,
            // SAFETY: as in `alloc`.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The arena's ranges are not reused.
        if self.offset_of(ptr).is_none() {
            // SAFETY: not the arena's, so the system allocator's, with the
            // layout it was allocated with (the caller's contract).
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset_of(ptr) else {
            // SAFETY: the system allocator's block, as in `dealloc`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        if self.resize_in_place(offset, layout.size(), new_size) {
            return ptr;
        }
        // SAFETY: `new_size` is non-zero and, rounded up to the alignment,
        // does not overflow (the caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as in `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are valid for the smaller size and
            // distinct (the new one was never handed out before).
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn ranges_are_aligned_disjoint_and_in_the_arena() {
        static ARENA: Arena = Arena::new();
        let arena = &ARENA;
        let mut ranges = Vec::new();
        for (size, align) in [(1, 1), (24, 8), (3, 1), (100, 16), (7, 4096), (64, 64)] {
            // SAFETY: non-zero sizes.
            let ptr = unsafe { arena.alloc(layout(size, align)) };
            assert_eq!(ptr as usize % align, 0, "{size}/{align}");
            let offset = arena.offset_of(ptr).expect("from the arena");
            ranges.push((offset, offset + size));
        }
        ranges.sort();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{ranges:?}");
        }
    }

    #[test]
    fn large_or_overflowing_requests_go_to_the_system() {
        static ARENA: Arena = Arena::new();
        let arena = &ARENA;
        // SAFETY: non-zero sizes; each freed with its layout.
        unsafe {
            let big = arena.alloc(layout(LARGEST + 1, 8));
            assert!(arena.offset_of(big).is_none());
            arena.dealloc(big, layout(LARGEST + 1, 8));
            let mut from_arena = 0;
            for _ in 0..(ARENA_BYTES / LARGEST + 2) {
                let ptr = arena.alloc(layout(LARGEST, 8));
                assert!(!ptr.is_null());
                if arena.offset_of(ptr).is_some() {
                    from_arena += 1;
                } else {
                    arena.dealloc(ptr, layout(LARGEST, 8));
                }
            }
            assert_eq!(from_arena, ARENA_BYTES / LARGEST);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_and_grows_the_last_range_in_place() {
        static ARENA: Arena = Arena::new();
        let arena = &ARENA;
        // SAFETY: non-zero sizes, layouts as allocated.
        unsafe {
            let first = arena.alloc(layout(8, 8));
            first.copy_from(b"berth!!!".as_ptr(), 8);
            let grown = arena.realloc(first, layout(8, 8), 32);
            assert_eq!(grown, first, "the last range grows in place");
            let other = arena.alloc(layout(8, 8));
            let moved = arena.realloc(grown, layout(32, 8), 64);
            assert_ne!(moved, grown, "no longer the last: a copy");
            assert_eq!(std::slice::from_raw_parts(moved, 8), b"berth!!!");
            assert!(arena.offset_of(other).is_some());
            // Out of the arena and back: the bytes still follow.
            let system = arena.realloc(moved, layout(64, 8), LARGEST * 2);
            assert!(arena.offset_of(system).is_none());
            assert_eq!(std::slice::from_raw_parts(system, 8), b"berth!!!");
            arena.dealloc(system, layout(LARGEST * 2, 8));
        }
    }

    #[test]
    fn zeroed_memory_is_zero() {
        static ARENA: Arena = Arena::new();
        let arena = &ARENA;
        // SAFETY: non-zero size.
        unsafe {
            let ptr = arena.alloc_zeroed(layout(4096, 8));
            assert!(std::slice::from_raw_parts(ptr, 4096)
                .iter()
                .all(|b| *b == 0));
        }
    }

    #[test]
    fn threads_get_disjoint_ranges() {
        static ARENA: Arena = Arena::new();
        let arena = &ARENA;
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| {
                            // SAFETY: non-zero size.
                            unsafe { arena.alloc(layout(16, 8)) as usize }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<usize> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        for pair in all.windows(2) {
            assert!(pair[1] - pair[0] >= 16);
        }
    }
}

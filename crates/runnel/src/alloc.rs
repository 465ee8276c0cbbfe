//! The process's global allocator: the system allocator, except that huge allocations are
//! reserved lazily with `mmap(MAP_NORESERVE)`.
//!
//! Why: the `kafka-protocol` decoder sizes a vector from an array's length field before
//! reading its elements (`Vec::with_capacity(n)`), so a 14-byte request claiming two billion
//! topics asks for ~150 GB at once. The system allocator refuses, and Rust aborts the process
//! on a failed allocation. Reserved lazily, such an allocation succeeds without using memory;
//! the decoder then fails on the short frame (it can only fill as many elements as the
//! frame, at most `socket.request.max.bytes`, holds) and the mapping is released. Only the
//! offending connection is closed. Ordinary allocations are untouched.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations of at least this many bytes are reserved lazily. Nothing the broker does
/// legitimately allocates this much in one piece (requests are at most 100 MiB).
const LAZY_ALLOCATION_BYTES_MIN: usize = 1 << 30;
/// Alignment an anonymous mapping guarantees (one page).
const PAGE_BYTES: usize = 4096;

pub struct Allocator;

fn is_lazy(size: usize, align: usize) -> bool {
    size >= LAZY_ALLOCATION_BYTES_MIN && align <= PAGE_BYTES
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED { ptr::null_mut() } else { p.cast() }
}

// SAFETY: every block is returned to the allocator that made it: lazy blocks (decided by
// size and alignment alone, which callers pass back unchanged) are unmapped, others go back
// to the system allocator.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout.size(), layout.align()) {
            map(layout.size()) // anonymous mappings are zero-filled
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from `map` with this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !is_lazy(layout.size(), layout.align()) && !is_lazy(new_size, layout.align()) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size`, with the old alignment, is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (it is at least the lazy minimum or the old size).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_lazy_blocks_round_trip() {
        let a = Allocator;
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: valid layout; the block is freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write(7);
            let q = a.realloc(p, layout, 16);
            assert_eq!(q.read(), 7);
            a.dealloc(q, Layout::from_size_align(16, 8).unwrap());
        }
    }
}

//! The guest's allocator: free lists for small blocks in front of the std
//! allocator.
//!
//! Why: a plugin call parses the claims and request JSON into owned values
//! and drops them again, so it makes a few dozen small allocations per
//! request. On `wasm32-unknown-unknown` those go to std's dlmalloc, whose
//! helpers are not inlined into the plugin and each pay the host's
//! interruption check on entry: measured as about a third of a
//! `claims-to-headers` call. Popping a free list costs a handful of
//! instructions.
//!
//! How: sizes up to [`LARGEST_CLASS`] bytes (alignment up to 8) are rounded
//! up to a power-of-two class; a freed block goes on its class's list and is
//! handed out again for the next block of that class. Blocks are carved from
//! the std allocator and never given back, so the lists hold at most the peak
//! number of live blocks of each class (the instance's memory limit still
//! bounds everything). Larger or more strictly aligned requests go to the std
//! allocator unchanged.
//!
//! Installed as the global allocator on `wasm32` without the `atomics`
//! feature (one thread per instance, as the host runs them); elsewhere the
//! type is still here so it can be tested.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Smallest class; holds the free list's link.
const SMALLEST_CLASS: usize = 8;
/// Largest size served from the free lists.
pub const LARGEST_CLASS: usize = 512;
/// Classes 8, 16, 32, 64, 128, 256, 512.
const CLASSES: usize = 7;
/// Alignment every class block has.
const CLASS_ALIGN: usize = 8;

/// Size-class allocator over [`System`]. Not thread-safe: see the module
/// docs for where it is installed.
pub struct SmallBlocks {
    /// Head of each class's list of free blocks (a block's first word is the
    /// next block).
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: only installed where the module runs on one thread (wasm32 without
// atomics); tests use one instance per thread.
unsafe impl Sync for SmallBlocks {}

impl SmallBlocks {
    /// An allocator with empty free lists.
    pub const fn new() -> SmallBlocks {
        SmallBlocks {
            free: UnsafeCell::new([ptr::null_mut(); CLASSES]),
        }
    }

    /// The class serving `layout`, if it is small enough.
    fn class(layout: Layout) -> Option<usize> {
        if layout.size() > LARGEST_CLASS || layout.align() > CLASS_ALIGN {
            return None;
        }
        let size = layout.size().max(SMALLEST_CLASS);
        // 8 -> 0, 9..=16 -> 1, ..., 257..=512 -> 6
        let bits = usize::BITS - (size - 1).leading_zeros();
        Some(bits as usize - 3)
    }

    fn class_layout(class: usize) -> Layout {
        // SAFETY: power-of-two sizes >= 8 with alignment 8 are valid layouts.
        unsafe { Layout::from_size_align_unchecked(SMALLEST_CLASS << class, CLASS_ALIGN) }
    }
}

impl Default for SmallBlocks {
    fn default() -> Self {
        SmallBlocks::new()
    }
}

unsafe impl GlobalAlloc for SmallBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // (No let-else: the SDK builds with rustc 1.63.)
        let class = match SmallBlocks::class(layout) {
            Some(class) => class,
            // SAFETY: the caller's layout contract is passed on unchanged.
            None => return unsafe { System.alloc(layout) },
        };
        // SAFETY: single-threaded (see `Sync`), and no reference into the
        // array outlives this call.
        let heads = unsafe { &mut *self.free.get() };
        let head = heads[class];
        if head.is_null() {
            // SAFETY: a valid non-zero-size layout.
            return unsafe { System.alloc(SmallBlocks::class_layout(class)) };
        }
        // SAFETY: `head` is a free block of this class; its first word holds
        // the next free block (written by `dealloc`, 8-byte aligned).
        heads[class] = unsafe { ptr::read(head as *const *mut u8) };
        head
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let class = match SmallBlocks::class(layout) {
            Some(class) => class,
            // SAFETY: allocated by `System` with this layout (see `alloc`).
            None => return unsafe { System.dealloc(block, layout) },
        };
        // SAFETY: single-threaded; `block` came from this class (same layout
        // => same class), is at least 8 bytes and 8-byte aligned, and is no
        // longer used by the caller, so its first word can hold the link.
        unsafe {
            let heads = &mut *self.free.get();
            ptr::write(block as *mut *mut u8, heads[class]);
            heads[class] = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is valid for `layout.align()`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (SmallBlocks::class(layout), SmallBlocks::class(new_layout)) {
            // Still fits the block it has.
            (Some(old), Some(new)) if old == new => block,
            // Both large: let the std allocator grow in place when it can.
            // SAFETY: allocated by `System` with `layout`.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: standard move to a new block; both layouts valid.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn sizes_round_up_to_power_of_two_classes() {
        let class = |s| SmallBlocks::class(layout(s, 1));
        assert_eq!(class(0), Some(0));
        assert_eq!(class(1), Some(0));
        assert_eq!(class(8), Some(0));
        assert_eq!(class(9), Some(1));
        assert_eq!(class(16), Some(1));
        assert_eq!(class(257), Some(6));
        assert_eq!(class(512), Some(6));
        assert_eq!(class(513), None);
        assert_eq!(SmallBlocks::class(layout(8, 16)), None, "over-aligned");
    }

    #[test]
    fn a_freed_block_is_handed_out_again_for_the_same_class() {
        let a = SmallBlocks::new();
        unsafe {
            let l = layout(24, 8);
            let p = a.alloc(l);
            p.write_bytes(0xAB, 24);
            a.dealloc(p, l);
            let q = a.alloc(layout(32, 4));
            assert_eq!(p, q, "same class (32) reuses the block");
            let r = a.alloc(layout(32, 4));
            assert_ne!(q, r);
            a.dealloc(q, layout(32, 4));
            a.dealloc(r, layout(32, 4));
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_to_large() {
        let a = SmallBlocks::new();
        unsafe {
            let mut l = layout(5, 1);
            let mut p = a.alloc(l);
            for i in 0..5 {
                *p.add(i) = i as u8;
            }
            for new_size in [7, 100, 400, 4000, 9000, 30] {
                p = a.realloc(p, l, new_size);
                assert!(!p.is_null());
                for i in 0..5 {
                    assert_eq!(*p.add(i), i as u8, "after realloc to {new_size}");
                }
                l = layout(new_size, 1);
            }
            a.dealloc(p, l);
        }
    }

    #[test]
    fn many_live_blocks_never_overlap() {
        let a = SmallBlocks::new();
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        unsafe {
            for round in 0..3u8 {
                for (i, size) in (1..600).step_by(7).enumerate() {
                    let l = layout(size, 8);
                    let p = a.alloc(l);
                    let tag = (i as u8).wrapping_add(round);
                    p.write_bytes(tag, size);
                    live.push((p, l, tag));
                }
                // Free every other block, keep the rest.
                let mut keep = Vec::new();
                for (n, (p, l, tag)) in live.drain(..).enumerate() {
                    if n % 2 == 0 {
                        a.dealloc(p, l);
                    } else {
                        keep.push((p, l, tag));
                    }
                }
                live = keep;
            }
            for (p, l, tag) in &live {
                for i in 0..l.size() {
                    assert_eq!(*p.add(i), *tag, "block overwritten");
                }
            }
            for (p, l, _) in live {
                a.dealloc(p, l);
            }
        }
    }
}

//! The global allocator of the `portcullis` binary and of the benchmark's bare Pingora: mimalloc,
//! called the way C's `malloc` is called; and the opt-out from transparent huge pages that both
//! make as they start.
//!
//! Rust hands every allocation an alignment. The `mimalloc` crate passes it on to
//! `mi_malloc_aligned` each time, and mimalloc 3 takes that function's quick path only for a
//! request of at most 1 KiB whose size class has a free block that is aligned already. Every other
//! request (all above 1 KiB, and small ones whose class has no free block at hand) goes through
//! its general aligned path, which allocates plainly only when the block would be a power of two
//! of at most 4 KiB and otherwise allocates `max(size, 16) + alignment - 1` bytes, from a larger
//! size class: a 48-byte request took a 64-byte block. On Portcullis's public route that path
//! cost some 3,000 instructions a request (`bench/instructions.sh`, before and after).
//!
//! Yet every block mimalloc's `mi_malloc` returns is aligned to 16 bytes (`MI_MAX_ALIGN_SIZE`,
//! what C's `max_align_t` needs) when it is 16 bytes or more, and to 8 below that: small sizes
//! are rounded up to whole 16 bytes, larger size classes are multiples of 16, and a page's
//! blocks start where that keeps them aligned (an invariant mimalloc's debug builds check on
//! every allocation). So a layout whose alignment is at most 16 and at most its size (a block
//! at least as large as the size is then aligned enough) is served by `mi_malloc`, as the
//! standard library's `System` allocator serves it by `malloc`; only larger alignments, and the
//! rare layout smaller than its alignment, take the aligned functions. Blocks from either are
//! freed by `mi_free`, and either kind may be reallocated by the other's function.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every `mi_malloc` block of at least this size has (`MI_MAX_ALIGN_SIZE` on
/// 64-bit targets; the tests check it).
const PLAIN_ALIGN: usize = 16;

/// Opts the process out of transparent huge pages; the `portcullis` binary and the benchmark's bare
/// Pingora call it first thing, so that the two run with the same memory.
///
/// mimalloc asks Linux for transparent huge pages on the memory it reserves, so every 2 MiB
/// region it touches becomes resident as a whole, used or not. For a controller holding a
/// cluster's objects that was about 27 MiB of the resident memory after the first table at
/// 10,000 Ingresses (166 → 139 MiB), and 26 MiB of an idle process. Timed with and without them,
/// neither proxy's speed was seen to change (`docs/performance-log.md`, "Transparent huge pages",
/// has the runs). Huge pages stay available to everything else on the node; where the call is
/// refused nothing changes.
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers only and sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// mimalloc as the process's allocator; see the module's documentation.
pub struct Mimalloc;

/// Whether `mi_malloc(size)` is aligned enough for `align`.
#[inline]
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc, aligned as its layout asks (see `plain`, and the
// aligned functions otherwise), and goes back to mimalloc; `realloc` keeps the layout's
// alignment for the new size in the same way.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain allocation calls with sizes and power-of-two alignments from a `Layout`.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned; `mi_free` frees blocks of
        // the plain and the aligned functions alike.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block this allocator returned with `layout`; the new block
        // gets the same alignment by the same rule as `alloc`.
        unsafe {
            if plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 4 KiB, then every 97th to 64 KiB (closer together than any two size
    /// classes there), then sizes of mimalloc's large and huge blocks, each with every alignment
    /// up to 4 KiB.
    fn layouts() -> impl Iterator<Item = Layout> {
        let sizes = (1..=4096)
            .chain((4097..=65536).step_by(97))
            .chain([100_000, 300_000, 1 << 20]);
        sizes.flat_map(|size| {
            (0..=12).filter_map(move |shift| Layout::from_size_align(size, 1 << shift).ok())
        })
    }

    fn aligned(ptr: *mut u8, layout: Layout) -> bool {
        !ptr.is_null() && (ptr as usize).is_multiple_of(layout.align())
    }

    #[test]
    fn every_block_is_aligned_as_its_layout_asks() {
        let a = Mimalloc;
        // Held 512 at a time, so that blocks come from many places in their pages, not one
        // reused slot; then freed.
        let mut held = Vec::new();
        for layout in layouts() {
            // SAFETY: a non-zero size; each block is freed below with its layout.
            let p = unsafe { a.alloc(layout) };
            assert!(aligned(p, layout), "{layout:?} gave {p:p}");
            held.push((p, layout));
            if held.len() == 512 {
                for (p, layout) in held.drain(..) {
                    // SAFETY: allocated above with this layout.
                    unsafe { a.dealloc(p, layout) };
                }
            }
        }
        for (p, layout) in held {
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn the_plain_path_is_taken_only_where_malloc_is_aligned_enough() {
        assert!(plain(8, 8) && plain(16, 16) && plain(48, 16) && plain(1, 1) && plain(24, 16));
        assert!(!plain(8, 16), "an 8-byte block is only 8-aligned");
        assert!(!plain(64, 32) && !plain(4096, 4096));
    }

    #[test]
    fn a_block_is_not_rounded_up_past_its_size_class() {
        let a = Mimalloc;
        for (size, align) in [
            (48, 8),
            (48, 16),
            (80, 8),
            (1040, 8),
            (2056, 8),
            (13_000, 8),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero size; freed below with its layout.
            let p = unsafe { a.alloc(layout) };
            assert!(aligned(p, layout));
            // (Equal as built here: mimalloc's `secure` and `debug` features, which add padding
            // that `mi_good_size` counts and `mi_usable_size` does not, are off.)
            // SAFETY: `p` is a live block of mimalloc's; both calls only read its page's data.
            let (usable, class) = unsafe {
                (
                    mi::mi_usable_size(p.cast::<c_void>()),
                    mi::mi_good_size(size),
                )
            };
            assert_eq!(usable, class, "{size} bytes took a block of {usable}");
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_and_aligned() {
        let a = Mimalloc;
        for layout in layouts().step_by(7) {
            // SAFETY: a non-zero size; freed below with its layout.
            let p = unsafe { a.alloc_zeroed(layout) };
            assert!(aligned(p, layout), "{layout:?} gave {p:p}");
            // SAFETY: `p` holds `layout.size()` initialised bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
            assert!(bytes.iter().all(|&b| b == 0), "{layout:?} is not zeroed");
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn realloc_keeps_the_contents_and_the_alignment() {
        let a = Mimalloc;
        for align in [1usize, 8, 16, 32, 64, 4096] {
            // Starting below the alignment, so that a 16-aligned block begins on the aligned
            // path and moves to the plain one as it grows.
            let mut layout = Layout::from_size_align(8, align).unwrap();
            // SAFETY: a non-zero size.
            let mut p = unsafe { a.alloc(layout) };
            assert!(aligned(p, layout));
            // SAFETY: `p` holds `layout.size()` bytes.
            unsafe { std::ptr::write_bytes(p, 0xa5, layout.size()) };
            // Grow through small, medium, large and huge blocks, then shrink to small ones.
            for new_size in [24, 100, 1000, 5000, 70_000, 300_000, 1 << 20, 3000, 16, 8] {
                let kept = layout.size().min(new_size);
                // SAFETY: `p` was allocated with `layout`; the new size is not zero.
                p = unsafe { a.realloc(p, layout, new_size) };
                layout = Layout::from_size_align(new_size, align).unwrap();
                assert!(aligned(p, layout), "{layout:?} gave {p:p}");
                // SAFETY: the first `kept` bytes were carried over.
                let bytes = unsafe { std::slice::from_raw_parts(p, kept) };
                assert!(
                    bytes.iter().all(|&b| b == 0xa5),
                    "{layout:?} lost its contents"
                );
                // SAFETY: `p` holds `new_size` bytes.
                unsafe { std::ptr::write_bytes(p, 0xa5, new_size) };
            }
            // SAFETY: allocated (and reallocated) above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
    }
}

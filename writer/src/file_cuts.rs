//! Where a large file's content is cut into chunks (`spec/FORMAT.md` section
//! 14): at boundaries its own bytes choose (FastCDC), so that bytes inserted
//! into or removed from the middle of a file move the cuts after them along
//! with the content, and an incremental archive stores about the changed bytes
//! rather than the rest of the file; or, as the first drafts did, in fixed
//! windows aligned to file offset 0.

use fastcdc::v2020::{self, Normalization};

/// How the writer cuts a file-tree section's large files (those it does not
/// pack with other small files). Readers do not care: a file's extents say
/// where its pieces are, whatever cut them.
///
/// # Examples
///
/// ```
/// use strata_writer::{FileCuts, WriterOptions};
///
/// let mut options = WriterOptions::new([7; 16], 0);
/// assert_eq!(options.file_cuts, FileCuts::ContentDefined);
/// options.file_cuts = FileCuts::Windows; // the layout of the first drafts
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileCuts {
    /// Content-defined cuts (FastCDC 2020, normalisation level 1, its
    /// unkeyed gear table): pieces of `chunk_size` / 4 to `chunk_size`
    /// bytes, `chunk_size` / 2 on average (for 4 MiB chunks: 1 MiB, 4 MiB
    /// and about 2 MiB, near borg's 2 MiB). The default.
    ContentDefined,
    /// Windows of `chunk_size` bytes aligned to file offset 0: an insert
    /// moves every later window, so an incremental archive stores the rest
    /// of the file again.
    Windows,
}

/// The content-defined cutter of one section: its sizes and the masks that
/// FastCDC derives from the average size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ContentCutter {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl ContentCutter {
    /// The cutter for a section of `chunk_size` (4 KiB to 16 MiB, a power of
    /// two): pieces of at most `chunk_size`, so every piece is a chunk the
    /// section allows, at least a quarter of it and half of it on average,
    /// within the ranges the FastCDC crate takes. A larger smallest piece
    /// leaves fewer bytes to scan: on the benchmark corpus a quarter was
    /// faster than an eighth and gave an archive as small.
    pub(crate) fn new(chunk_size: usize) -> ContentCutter {
        let max = chunk_size.clamp(v2020::MAXIMUM_MIN, v2020::MAXIMUM_MAX) & !1;
        let avg = (max / 2).clamp(v2020::AVERAGE_MIN, v2020::AVERAGE_MAX) & !1;
        let min = (max / 4).clamp(v2020::MINIMUM_MIN, v2020::MINIMUM_MAX) & !1;
        let (mask_s, mask_l) = v2020::select_masks(avg, Normalization::Level1);
        ContentCutter { min, avg, max, mask_s, mask_l }
    }

    /// The largest piece: how many bytes the caller holds before asking
    /// for a cut, unless the content ends sooner.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The length of the first piece of `data`, which holds the content from
    /// the end of the previous piece: `max` bytes, or fewer when the content
    /// ends there. A result below `data.len()` is a content-defined cut; the
    /// whole of `data` is either its end or a forced cut at `max`.
    pub(crate) fn first_piece(&self, data: &[u8]) -> usize {
        let (_, length) = v2020::cut(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        length
    }
}

#[cfg(test)]
mod tests {
    use super::ContentCutter;
    use crate::test_bytes::noise;

    fn pieces(cutter: &ContentCutter, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let end = (at + cutter.max()).min(data.len());
            let length = cutter.first_piece(&data[at..end]);
            assert!(length > 0 && length <= cutter.max());
            out.push(length);
            at += length;
        }
        out
    }

    #[test]
    fn pieces_stay_within_the_chunk_size_and_cover_the_content() {
        for chunk_size in [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20] {
            let cutter = ContentCutter::new(chunk_size);
            let data = noise(3 * chunk_size + 12_345, chunk_size as u64);
            let lengths = pieces(&cutter, &data);
            assert_eq!(lengths.iter().sum::<usize>(), data.len());
            assert!(lengths.iter().all(|&l| l <= chunk_size), "{chunk_size}: {lengths:?}");
            // Every piece but the last is at least the minimum.
            assert!(lengths[..lengths.len() - 1].iter().all(|&l| l >= cutter.min), "{chunk_size}: {lengths:?}");
        }
    }

    #[test]
    fn an_insert_moves_only_the_pieces_around_it() {
        let cutter = ContentCutter::new(64 << 10);
        let data = noise(4 << 20, 99);
        let mut changed = data.clone();
        let middle = data.len() / 2;
        changed.splice(middle..middle, noise(1000, 5));
        let before = pieces(&cutter, &data);
        let after = pieces(&cutter, &changed);
        let ends = |lengths: &[usize]| {
            lengths
                .iter()
                .scan(0usize, |at, l| {
                    *at += l;
                    Some(*at)
                })
                .collect::<Vec<_>>()
        };
        // The cuts after the insert are the same cuts, 1,000 bytes later.
        let later: std::collections::HashSet<usize> =
            ends(&before).into_iter().filter(|&e| e > middle).map(|e| e + 1000).collect();
        let after_ends: Vec<usize> = ends(&after).into_iter().filter(|&e| e > middle).collect();
        let kept = after_ends.iter().filter(|e| later.contains(e)).count();
        assert!(kept + 2 >= after_ends.len(), "only {kept} of {} cuts after the insert came back", after_ends.len());
        // And before it, nothing moved.
        let earlier: Vec<usize> = ends(&before).into_iter().filter(|&e| e < middle).collect();
        assert_eq!(earlier, ends(&after).into_iter().filter(|&e| e < middle).collect::<Vec<_>>());
    }
}

//! `strata salvage`: everything intact from a damaged archive, into a new valid one.
//!
//! Salvage needs both halves of the library: the reader's walk finds what
//! survives (resynchronising past damage), the writer writes it anew. Image
//! ranges whose data is gone become lost extents, which `info` and `verify` list
//! as lost in salvage, distinct from zeros.

use std::io::{self, BufWriter};
use std::path::PathBuf;

use clap::Args;
use strata_format::image::REF_ZERO;
use strata_format::Extent;
use strata_reader::verify::{self, RecoveredImage};
use strata_reader::{chunk_at, Limits};
use strata_writer::{ArchiveWriter, ImageSource, Window, WriterOptions};

use crate::atomic::AtomicFile;
use crate::create::{random_uuid, BarProgress};
use crate::inspect::open_file;
use crate::{output, Failure};

#[derive(Args)]
pub struct SalvageArgs {
    /// The damaged archive.
    damaged: PathBuf,
    /// The new archive to write (never the damaged one).
    out: PathBuf,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

/// Serves a recovered image to the writer window by window: data from chunks
/// that survive, zeros where the image had zeros, and lost windows elsewhere.
struct RecoveredSource<'a> {
    file: &'a std::fs::File,
    image: &'a RecoveredImage,
    chunks: &'a std::collections::HashMap<u64, u32>,
    tag: [u8; 8],
    position: u64,
    lost: Vec<(u64, u64)>,
}

impl RecoveredSource<'_> {
    /// The extents that overlap `start..end`.
    fn covering(&self, start: u64, end: u64) -> &[Extent] {
        let extents = &self.image.extents;
        let first = extents.partition_point(|e| e.end() <= start);
        let last = extents.partition_point(|e| e.image_offset < end);
        &extents[first..last.max(first)]
    }

    fn note_lost(&mut self, start: u64, end: u64) {
        match self.lost.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => self.lost.push((start, end)),
        }
    }
}

impl ImageSource for RecoveredSource<'_> {
    fn known_size(&self) -> Option<u64> {
        Some(self.image.logical_size)
    }

    fn sector_size(&self) -> u32 {
        self.image.sector_size
    }

    fn next_window(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<Window> {
        buf.clear();
        let start = self.position;
        let end = (start + len as u64).min(self.image.logical_size);
        if start >= end {
            return Ok(Window::End);
        }
        self.position = end;
        let n = (end - start) as usize;
        let covering = self.covering(start, end);
        let covered = covering.first().is_some_and(|e| e.image_offset <= start)
            && covering.last().is_some_and(|e| e.end() >= end)
            && covering.windows(2).all(|w| w[0].end() == w[1].image_offset);
        if covered && covering.iter().all(|e| e.chunk_ref == REF_ZERO) {
            return Ok(Window::Hole(n));
        }
        // One data extent holding exactly this window, whose chunk survived.
        if let [extent] = covering {
            let intact = extent.image_offset == start
                && extent.end() == end
                && self.chunks.get(&extent.chunk_ref).is_some_and(|&raw| u64::from(raw) == extent.length);
            if extent.chunk_ref >= strata_format::image::REF_FIRST_OFFSET && intact {
                if let Ok(chunk) = chunk_at(self.file, extent.chunk_ref, self.tag, &Limits::default()) {
                    buf.extend_from_slice(&chunk.raw);
                    return Ok(Window::Data(n));
                }
            }
        }
        self.note_lost(start, end);
        Ok(Window::Lost(n))
    }
}

pub fn run(args: SalvageArgs) -> Result<u8, Failure> {
    let label = args.damaged.display().to_string();
    if args.damaged == args.out {
        return Err(Failure::fatal("salvage writes a new archive: give another name for OUT"));
    }
    let file = open_file(&args.damaged)?;
    let size = file.metadata().map(|m| m.len()).ok();
    let bar = output::bar("scan", size, args.quiet);
    let (report, recovered) =
        verify::scan(&file, Limits::default(), &|n| bar.inc(n)).map_err(|e| Failure::fatal(format!("{label}: {e}")))?;
    bar.finish_and_clear();
    if !report.recognised {
        return Err(Failure::fatal(format!("{label}: nothing of a Strata archive was found")));
    }
    if recovered.images.is_empty() && recovered.trees.is_empty() {
        return Err(Failure::fatal(format!("{label}: no section survives")));
    }
    let created_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let atomic = AtomicFile::create(&args.out)?;
    let mut writer = ArchiveWriter::new(
        BufWriter::with_capacity(1 << 20, atomic.file()?),
        WriterOptions::new(random_uuid()?, created_ns),
    )
    .map_err(|e| Failure::fatal(e.to_string()))?;
    let mut lost_anything = false;
    for image in &recovered.images {
        writer.set_chunk_size(image.chunk_size).map_err(|e| Failure::fatal(e.to_string()))?;
        let mut source = RecoveredSource {
            file: &file,
            image,
            chunks: &recovered.chunks,
            tag: recovered.tag,
            position: 0,
            lost: Vec::new(),
        };
        let bar = output::bar(&image.name, Some(image.logical_size), args.quiet);
        let summary = writer
            .add_image(&image.name, &mut source, &BarProgress(bar.clone()))
            .map_err(|e| Failure::fatal(format!("image {}: {e}", image.name)))?;
        bar.finish_and_clear();
        eprintln!(
            "image {}: {} of {} kept ({} data){}",
            image.name,
            output::size(summary.logical_size - summary.lost_bytes),
            output::size(summary.logical_size),
            output::size(summary.data_bytes),
            if source.lost.is_empty() {
                String::new()
            } else {
                format!(", {} lost:", output::size(summary.lost_bytes))
            }
        );
        for (start, end) in &source.lost {
            lost_anything = true;
            eprintln!(
                "    bytes {}-{} lost ({})",
                output::grouped(*start),
                output::grouped(end - 1),
                output::size(end - start)
            );
        }
    }
    for tree in &recovered.trees {
        lost_anything = true;
        eprintln!(
            "files {tree}: not salvaged (salvage of file trees is not implemented yet); it is not in the new archive"
        );
    }
    let (out, summary) = writer.finish().map_err(|e| Failure::fatal(e.to_string()))?;
    out.into_inner().map_err(|e| Failure::fatal(format!("writing {}: {}", args.out.display(), e.error())))?;
    atomic.commit()?;
    eprintln!(
        "{}: {} image section{} salvaged from {} problem{} in {label}; {} written",
        args.out.display(),
        summary.images.len(),
        if summary.images.len() == 1 { "" } else { "s" },
        report.problems.len(),
        if report.problems.len() == 1 { "" } else { "s" },
        output::size(summary.archive_length)
    );
    Ok(u8::from(lost_anything || !report.problems.is_empty()))
}

//! One chunk: compressing a 1 MiB window through the writer, and decoding a 1 MiB
//! chunk (the bare `decode_chunk`, and `read_image_at` of one whole chunk window).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::{chunk_body, data_extent_offsets, image_section, options, sample_image, write_archive, MIB};
use strata_reader::{decode_chunk, Archive};

fn chunk(c: &mut Criterion) {
    let image = sample_image(16 * MIB);
    let archive_bytes = write_archive(&image, options(MIB, 0));

    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Bytes(MIB as u64));

    // A text-and-random window: the writer hashes it, compresses it, and writes
    // header, records, index and trailer around it.
    let window = &image[..MIB];
    group.bench_function("write_1MiB_window", |b| {
        b.iter(|| black_box(write_archive(black_box(window), options(MIB, 1))))
    });

    let (body, raw_length) = chunk_body(&archive_bytes, 0);
    assert_eq!(raw_length, MIB as u64);
    assert_eq!(decode_chunk(body).expect("a valid chunk").1, window);
    group.bench_function("decode_chunk_1MiB", |b| {
        b.iter(|| black_box(decode_chunk(black_box(body)).expect("a valid chunk")))
    });

    // The reader caches the last chunk it decoded: alternate between two chunk
    // windows so that every read decodes one.
    let archive = Archive::new(archive_bytes.as_slice()).expect("a valid archive");
    let section = image_section(&archive);
    let offsets = data_extent_offsets(&section);
    let mut buf = vec![0u8; MIB];
    let mut turn = 0usize;
    group.bench_function("read_image_at_1MiB", |b| {
        b.iter(|| {
            turn ^= 1;
            let n = archive.read_image_at(&section, black_box(offsets[turn]), &mut buf).expect("a valid archive");
            black_box(&buf[..n]);
        })
    });
    group.finish();
}

criterion_group!(benches, chunk);
criterion_main!(benches);

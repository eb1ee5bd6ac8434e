//! Restoring the 16 MiB image into memory: by random access (chunks decoded in
//! parallel batches) and front to back (as from a pipe).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::{image_section, options, sample_image, write_archive, VecSink, IMAGE_NAME, MIB};
use strata_reader::{stream, Archive, Limits};

fn restore(c: &mut Criterion) {
    let image = sample_image(16 * MIB);
    let expected = blake3::hash(&image);
    let archive_bytes = write_archive(&image, options(MIB, 0));
    let archive = Archive::new(archive_bytes.as_slice()).expect("a valid archive");
    let section = image_section(&archive);
    let mut sink = VecSink::default();

    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Bytes(image.len() as u64));
    group.sample_size(10);
    group.bench_function("random_access_16MiB", |b| {
        b.iter(|| {
            archive.restore_image(&section, &mut sink, &|_| {}).expect("a valid archive");
            black_box(&sink.bytes);
        })
    });
    assert_eq!(blake3::hash(&sink.bytes), expected);

    group.bench_function("front_to_back_16MiB", |b| {
        b.iter(|| {
            let size = stream::restore_image(
                black_box(archive_bytes.as_slice()),
                IMAGE_NAME,
                &mut sink,
                Limits::default(),
                &|_| {},
            )
            .expect("a valid archive");
            black_box((size, &sink.bytes));
        })
    });
    assert_eq!(blake3::hash(&sink.bytes), expected);
    group.finish();
}

criterion_group!(benches, restore);
criterion_main!(benches);

//! 16 KiB reads of the 16 MiB image through `Archive::read_image_at`: at random
//! offsets (most decode a 1 MiB chunk) and in order (most hit the chunk cache).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::{image_section, options, sample_image, write_archive, Rng, KIB, MIB};
use strata_reader::Archive;

const READ: usize = 16 * KIB;

fn read(c: &mut Criterion) {
    let image = sample_image(16 * MIB);
    let archive_bytes = write_archive(&image, options(MIB, 0));
    let archive = Archive::new(archive_bytes.as_slice()).expect("a valid archive");
    let section = image_section(&archive);
    let mut buf = vec![0u8; READ];

    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(READ as u64));

    let mut rng = Rng::new(42);
    group.bench_function("random_16KiB", |b| {
        b.iter(|| {
            let offset = rng.below((image.len() - READ) as u64);
            let n = archive.read_image_at(&section, black_box(offset), &mut buf).expect("a valid archive");
            black_box(&buf[..n]);
        })
    });

    let mut offset = 0u64;
    group.bench_function("sequential_16KiB", |b| {
        b.iter(|| {
            let n = archive.read_image_at(&section, black_box(offset), &mut buf).expect("a valid archive");
            offset = (offset + READ as u64) % image.len() as u64;
            black_box(&buf[..n]);
        })
    });
    group.finish();

    // The reads return the image's bytes.
    let at = 5 * MIB as u64 + 12345;
    let n = archive.read_image_at(&section, at, &mut buf).expect("a valid archive");
    assert_eq!(&buf[..n], &image[at as usize..at as usize + READ]);
}

criterion_group!(benches, read);
criterion_main!(benches);

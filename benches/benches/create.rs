//! Creating an archive of a 16 MiB image (zeros, text-like and random data) in
//! memory, with the defaults of `strata create` (1 MiB chunks, zstd level 3).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_benches::{options, sample_image, write_archive, MIB};

fn create(c: &mut Criterion) {
    let image = sample_image(16 * MIB);
    let mut group = c.benchmark_group("create");
    group.throughput(Throughput::Bytes(image.len() as u64));
    group.sample_size(10);
    group.bench_function("16MiB_all_threads", |b| {
        b.iter(|| black_box(write_archive(black_box(&image), options(MIB, 0))))
    });
    group.bench_function("16MiB_one_thread", |b| {
        b.iter(|| black_box(write_archive(black_box(&image), options(MIB, 1))))
    });
    group.finish();
}

criterion_group!(benches, create);
criterion_main!(benches);

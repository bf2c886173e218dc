//! `dsr_batch` on 1,000,000 frames (12,000 videos of ~83 frames) against a memcpy
//! floor. Run with `cargo bench -p dsr_geom --bench dsr_batch` (or `make bench`);
//! figures are recorded in docs/BENCHMARKS.md ("DSR scoring engine").

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsr_geom::{dsr_batch, DsrParams, Relation};

const FRAMES: usize = 1_000_000;
const VIDEOS: usize = 12_000;

/// xorshift64*: a tiny deterministic generator, so the bench needs no extra crates.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

/// Realistic tracks in an 832x480 frame: a static object, an animal moving on a
/// jittered straight line across it, ~5% of animal rows and ~2% of object rows
/// missing (all-NaN), like detector output.
struct Data {
    animal: Vec<f64>,
    obj: Vec<f64>,
    offsets: Vec<i64>,
    initial: Vec<Relation>,
    final_: Vec<Relation>,
}

fn data() -> Data {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let offsets: Vec<i64> = (0..=VIDEOS).map(|v| (v * FRAMES / VIDEOS) as i64).collect();
    let rels = [
        Relation::Left,
        Relation::Right,
        Relation::Top,
        Relation::Bottom,
    ];
    let mut animal = Vec::with_capacity(4 * FRAMES);
    let mut obj = Vec::with_capacity(4 * FRAMES);
    let mut initial = Vec::with_capacity(VIDEOS);
    let mut final_ = Vec::with_capacity(VIDEOS);
    for v in 0..VIDEOS {
        initial.push(rels[v % 4]);
        final_.push(rels[(v / 4 + 1) % 4]);
        let n = (offsets[v + 1] - offsets[v]) as usize;
        let (ox, oy) = (rng.uniform(250.0, 580.0), rng.uniform(150.0, 330.0));
        let (ow, oh) = (rng.uniform(60.0, 200.0), rng.uniform(60.0, 200.0));
        let (x0, y0) = (rng.uniform(50.0, 780.0), rng.uniform(50.0, 430.0));
        let (x1, y1) = (rng.uniform(50.0, 780.0), rng.uniform(50.0, 430.0));
        let (aw, ah) = (rng.uniform(30.0, 150.0), rng.uniform(30.0, 150.0));
        for i in 0..n {
            let t = i as f64 / (n - 1) as f64;
            let cx = x0 + t * (x1 - x0) + rng.uniform(-3.0, 3.0);
            let cy = y0 + t * (y1 - y0) + rng.uniform(-3.0, 3.0);
            if rng.next_f64() < 0.05 {
                animal.extend_from_slice(&[f64::NAN; 4]);
            } else {
                animal.extend_from_slice(&[
                    cx - aw / 2.0,
                    cy - ah / 2.0,
                    cx + aw / 2.0,
                    cy + ah / 2.0,
                ]);
            }
            if rng.next_f64() < 0.02 {
                obj.extend_from_slice(&[f64::NAN; 4]);
            } else {
                obj.extend_from_slice(&[
                    ox - ow / 2.0,
                    oy - oh / 2.0,
                    ox + ow / 2.0,
                    oy + oh / 2.0,
                ]);
            }
        }
    }
    Data {
        animal,
        obj,
        offsets,
        initial,
        final_,
    }
}

fn bench(c: &mut Criterion) {
    let d = data();
    let a32: Vec<f32> = d.animal.iter().map(|&x| x as f32).collect();
    let o32: Vec<f32> = d.obj.iter().map(|&x| x as f32).collect();
    let p = DsrParams::default();
    let valid = dsr_batch(&d.animal, &d.obj, &d.offsets, &d.initial, &d.final_, p)
        .unwrap()
        .dsr
        .iter()
        .filter(|x| !x.is_nan())
        .count();
    assert!(valid > VIDEOS / 2, "bench data should be mostly valid");

    let mut g = c.benchmark_group("dsr_batch_1M_frames");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.sample_size(30);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));

    // the floor: copy both input arrays once into preallocated buffers
    let mut da = vec![0.0f64; d.animal.len()];
    let mut dob = vec![0.0f64; d.obj.len()];
    g.bench_function("memcpy_floor_f64", |b| {
        b.iter(|| {
            da.copy_from_slice(black_box(&d.animal));
            dob.copy_from_slice(black_box(&d.obj));
            black_box((&da, &dob));
        })
    });
    g.bench_function("f64_rayon", |b| {
        b.iter(|| {
            dsr_batch(
                black_box(&d.animal),
                black_box(&d.obj),
                &d.offsets,
                &d.initial,
                &d.final_,
                p,
            )
            .unwrap()
        })
    });
    g.bench_function("f32_rayon", |b| {
        b.iter(|| {
            dsr_batch(
                black_box(&a32),
                black_box(&o32),
                &d.offsets,
                &d.initial,
                &d.final_,
                p,
            )
            .unwrap()
        })
    });
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    g.bench_function("f64_1_thread", |b| {
        b.iter(|| {
            one.install(|| {
                dsr_batch(
                    black_box(&d.animal),
                    black_box(&d.obj),
                    &d.offsets,
                    &d.initial,
                    &d.final_,
                    p,
                )
                .unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! `densify_tracks` on the rows `scripts/bench_score_batch.py` writes: 12,000 videos of
//! 81 frames, 10% of animal rows and 5% of object rows missing, every animal row before
//! every object row (as that script's table is), in two chunks (two Parquet row
//! groups), against a floor that reads every input column once. Run with
//! `cargo bench -p dsr_geom --bench densify` (or `make bench`); figures in
//! docs/BENCHMARKS.md ("score-batch: load path").

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsr_geom::{densify_tracks, TrackChunk};

const VIDEOS: usize = 12_000;
const FRAMES: usize = 81;

/// xorshift64*: a tiny deterministic generator, so the bench needs no extra crates.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The long rows as columns (one table; `chunks` cuts it).
#[derive(Default)]
struct Columns {
    sample: Vec<i32>,
    label: Vec<i32>,
    frame: Vec<i64>,
    boxes: [Vec<f64>; 4],
}

fn data() -> Columns {
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let mut c = Columns::default();
    for (label, miss) in [(0, 0.10), (1, 0.05)] {
        for v in 0..VIDEOS {
            for f in 0..FRAMES {
                if rng.next_f64() < miss {
                    continue;
                }
                let x = 100.0 + 600.0 * rng.next_f64();
                let y = 100.0 + 300.0 * rng.next_f64();
                c.sample.push(v as i32);
                c.label.push(label);
                c.frame.push(f as i64);
                for (k, value) in [x, y, x + 50.0, y + 40.0].into_iter().enumerate() {
                    c.boxes[k].push(value);
                }
            }
        }
    }
    c
}

/// `c` cut into chunks of at most `rows` rows; the dictionary is the identity
/// (entry v is video v), as Parquet's is up to a permutation.
fn chunks<'a>(
    c: &'a Columns,
    map: &'a [i32],
    labels: &'a [i32],
    rows: usize,
) -> Vec<TrackChunk<'a>> {
    (0..c.sample.len())
        .step_by(rows)
        .map(|s| {
            let e = (s + rows).min(c.sample.len());
            TrackChunk {
                sample: &c.sample[s..e],
                sample_map: map,
                label: &c.label[s..e],
                label_map: labels,
                frame: &c.frame[s..e],
                x0: &c.boxes[0][s..e],
                y0: &c.boxes[1][s..e],
                x1: &c.boxes[2][s..e],
                y1: &c.boxes[3][s..e],
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let d = data();
    let map: Vec<i32> = (0..VIDEOS as i32).collect();
    let labels = [0, 1];
    let parts = chunks(&d, &map, &labels, 1 << 20);
    let rows = d.sample.len();
    let dense = densify_tracks(&parts, VIDEOS).unwrap();
    assert_eq!(dense.n_rows.iter().sum::<i64>() as usize, rows);

    let mut g = c.benchmark_group("densify_tracks_1.8M_rows");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    // the floor: every input column read once (a max over integers and floats)
    g.bench_function("read_floor", |b| {
        b.iter(|| {
            let s = black_box(&d.sample).iter().copied().max();
            let l = black_box(&d.label).iter().copied().max();
            let f = black_box(&d.frame).iter().copied().max();
            let x = black_box(&d.boxes)
                .iter()
                .map(|col| col.iter().copied().fold(f64::MIN, f64::max))
                .fold(f64::MIN, f64::max);
            black_box((s, l, f, x))
        })
    });
    g.bench_function("rayon", |b| {
        b.iter(|| densify_tracks(black_box(&parts), VIDEOS).unwrap())
    });
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    g.bench_function("1_thread", |b| {
        b.iter(|| one.install(|| densify_tracks(black_box(&parts), VIDEOS).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

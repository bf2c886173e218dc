//! Coverage-guided fuzzing of `dsr_batch` (and the per-video, per-frame and
//! correctness entry points it is checked against). Any panic is a bug; so is an
//! `Ok` result that breaks the documented invariants (DESIGN.md, "Scoring").
#![no_main]

use arbitrary::Arbitrary;
use dsr_geom::{
    correctness_curve, dsr_batch, dsr_video, ssr_scores, DsrParams, InputError, Relation,
};
use libfuzzer_sys::fuzz_target;

/// Interesting floats first; raw bit patterns reach everything else.
const PALETTE: [f64; 20] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    10.0,
    100.0,
    832.0,
    480.0,
    1e-12,
    1e12,
    1e300,
    -1e300,
    f64::MAX,
    f64::MIN_POSITIVE,
    5e-324,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
];

#[derive(Debug, Arbitrary)]
enum Val {
    Palette(u8),
    Small(i16),
    Raw(u64),
}

impl Val {
    fn get(&self) -> f64 {
        match self {
            Val::Palette(i) => PALETTE[*i as usize % PALETTE.len()],
            Val::Small(i) => *i as f64 * 0.5,
            Val::Raw(b) => f64::from_bits(*b),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Row {
    /// All-NaN: not detected.
    Missing,
    /// A well-formed box `[x0, y0, x0 + |w|, y0 + |h|]` (maybe zero-sized).
    Box { x0: Val, y0: Val, w: Val, h: Val },
    /// Four arbitrary values (NaN, inf, inverted boxes, ...).
    Raw([Val; 4]),
}

impl Row {
    fn values(&self) -> [f64; 4] {
        match self {
            Row::Missing => [f64::NAN; 4],
            Row::Box { x0, y0, w, h } => {
                let (x0, y0) = (x0.get(), y0.get());
                [x0, y0, x0 + w.get().abs(), y0 + h.get().abs()]
            }
            Row::Raw(v) => [v[0].get(), v[1].get(), v[2].get(), v[3].get()],
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Offsets {
    /// Valid offsets from video lengths (the last one absorbs the rest).
    Lengths(Vec<u8>),
    /// Anything at all.
    Raw(Vec<i64>),
}

#[derive(Debug, Arbitrary)]
enum Rel {
    Code(u8),
    Name(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    as_f32: bool,
    frames: Vec<(Row, Row)>,
    /// Drop this many object rows (mismatched lengths) when non-zero.
    drop_obj_rows: u8,
    offsets: Offsets,
    initial: Vec<Rel>,
    final_: Vec<Rel>,
    m: u16,
    min_frames: u16,
    huge_params: bool,
    thresholds: Vec<Val>,
}

fn relation(r: &Rel) -> Result<Relation, InputError> {
    match r {
        Rel::Code(c) => Ok([Relation::Left, Relation::Right, Relation::Top, Relation::Bottom]
            [*c as usize % 4]),
        Rel::Name(s) => Relation::parse(s),
    }
}

fn relations(rs: &[Rel]) -> Option<Vec<Relation>> {
    rs.iter().map(relation).collect::<Result<_, _>>().ok()
}

fn check<T: Copy + Into<f64> + Sync>(inp: &Input, animal: &[T], obj: &[T]) {
    let n_rows = animal.len() / 4;
    let offsets: Vec<i64> = match &inp.offsets {
        Offsets::Lengths(ls) => {
            let mut o = vec![0i64];
            for &l in ls {
                let next = (*o.last().unwrap() + l as i64).min(n_rows as i64);
                o.push(next);
            }
            if let Some(last) = o.last_mut() {
                *last = n_rows as i64;
            }
            o
        }
        Offsets::Raw(v) => v.clone(),
    };
    let n_videos = offsets.len().saturating_sub(1);
    let mut ini = relations(&inp.initial).unwrap_or_default();
    let mut fin = relations(&inp.final_).unwrap_or_default();
    // usually give one relation per video so that the scoring itself is reached
    if !inp.initial.is_empty() && ini.len() != n_videos && !ini.is_empty() {
        ini = (0..n_videos).map(|v| ini[v % ini.len()]).collect();
    }
    if !inp.final_.is_empty() && fin.len() != n_videos && !fin.is_empty() {
        fin = (0..n_videos).map(|v| fin[v % fin.len()]).collect();
    }
    let params = if inp.huge_params {
        DsrParams {
            m: usize::MAX - inp.m as usize,
            min_frames: usize::MAX - inp.min_frames as usize,
        }
    } else {
        DsrParams {
            m: inp.m as usize % 8,
            min_frames: inp.min_frames as usize % 40,
        }
    };

    match dsr_batch(animal, obj, &offsets, &ini, &fin, params) {
        Ok(b) => {
            assert!(params.m >= 1 && animal.len() == obj.len());
            assert_eq!(b.dsr.len(), n_videos);
            for v in 0..n_videos {
                let (s, e) = (offsets[v] as usize, offsets[v + 1] as usize);
                let n_kept = b.n_kept[v] as usize;
                assert!(n_kept <= e - s);
                let valid = n_kept > 0 && n_kept >= params.min_frames;
                assert_eq!(!b.dsr[v].is_nan(), valid, "video {v}");
                if valid {
                    assert!((0.0..=1.0).contains(&b.dsr[v]), "dsr {}", b.dsr[v]);
                    for x in [b.r_init[v], b.r_final[v], b.g_init[v], b.g_final[v]] {
                        assert!((-1.0..=1.0).contains(&x), "component {x}");
                    }
                }
                let one = dsr_video(&animal[4 * s..4 * e], &obj[4 * s..4 * e], ini[v], fin[v], params)
                    .expect("a video of a valid batch is valid");
                assert_eq!(one.n_kept, n_kept);
                assert_eq!(one.dsr.map(f64::to_bits), valid.then(|| b.dsr[v].to_bits()));
            }
            let th: Vec<f64> = inp.thresholds.iter().map(Val::get).collect();
            if let Ok(c) = correctness_curve(&b.dsr, &th) {
                assert_eq!(c.len(), th.len());
                for (i, &t) in th.iter().enumerate() {
                    let hits = b.dsr.iter().filter(|&&d| d >= t).count();
                    let want = hits as f64 / b.dsr.len() as f64;
                    assert!(c[i].to_bits() == want.to_bits() || (c[i].is_nan() && want.is_nan()));
                }
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }

    let rel = ini.first().copied().unwrap_or(Relation::Bottom);
    if let Ok(r) = ssr_scores(animal, obj, rel) {
        assert_eq!(r.len(), n_rows);
        assert!(r.iter().all(|x| x.is_nan() || (-1.0..=1.0).contains(x)));
    }
}

fuzz_target!(|inp: Input| {
    let mut animal: Vec<f64> = inp.frames.iter().flat_map(|(a, _)| a.values()).collect();
    let mut obj: Vec<f64> = inp.frames.iter().flat_map(|(_, o)| o.values()).collect();
    let drop = 4 * (inp.drop_obj_rows as usize % 4);
    obj.truncate(obj.len().saturating_sub(drop));
    if inp.as_f32 {
        let a: Vec<f32> = animal.drain(..).map(|x| x as f32).collect();
        let o: Vec<f32> = obj.drain(..).map(|x| x as f32).collect();
        check(&inp, &a, &o);
    } else {
        check(&inp, &animal, &obj);
    }
});

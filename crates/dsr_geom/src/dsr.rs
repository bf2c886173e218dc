//! The DSR score of a video and batch scoring of many videos.

use rayon::prelude::*;

use crate::ssr::{check_pair_len, frame_geometry, frame_kept, kept_frame, row};
use crate::FrameGeometry;
use crate::{InputError, Relation};

/// Scoring parameters: `m` frames averaged at each end, `min_frames` kept frames
/// needed for a valid video. Official values: m = 3, min_frames = 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsrParams {
    pub m: usize,
    pub min_frames: usize,
}

impl Default for DsrParams {
    fn default() -> Self {
        DsrParams {
            m: 3,
            min_frames: 20,
        }
    }
}

impl DsrParams {
    fn check(&self) -> Result<(), InputError> {
        if self.m == 0 {
            return Err(InputError::BadParameter {
                name: "m",
                detail: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// The score of one video and its four components; `dsr` is `None` when the
/// video has fewer than `min_frames` kept frames (invalid).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoScore {
    pub dsr: Option<f64>,
    pub r_init: f64,
    pub r_final: f64,
    pub g_init: f64,
    pub g_final: f64,
    pub n_kept: usize,
}

impl VideoScore {
    fn invalid(n_kept: usize) -> Self {
        VideoScore {
            dsr: None,
            r_init: f64::NAN,
            r_final: f64::NAN,
            g_init: f64::NAN,
            g_final: f64::NAN,
            n_kept,
        }
    }
}

/// Scores one video. `animal`/`obj` are flat `[N*4]` boxes of its frames in time
/// order; `base` is only used to name rows in errors (their index in a batch).
///
/// One forward pass validates every row, counts the kept frames and accumulates the
/// first `m` of them; a short backward scan then finds where the last `m` kept frames
/// start, and they are summed forwards. Geometry is computed for at most `2m + 1`
/// frames and nothing is allocated. Sums run in time order, like numpy's `mean` of
/// the official scorer, so results agree with it to the last bit.
pub fn dsr_video_at<T: Copy + Into<f64>>(
    animal: &[T],
    obj: &[T],
    initial: Relation,
    final_: Relation,
    params: DsrParams,
    base: usize,
) -> Result<VideoScore, InputError> {
    params.check()?;
    let n = check_pair_len(animal, obj)?;
    let m = params.m;
    let mut n_kept = 0usize;
    let mut last = 0usize;
    let mut head_sum = 0.0f64;
    let mut first: Option<FrameGeometry> = None;
    for i in 0..n {
        let (a, o) = (row(animal, i), row(obj, i));
        if frame_kept(a, o, base + i)? {
            if n_kept < m {
                // one of the first m kept frames
                if let Some(g) = frame_geometry(a, o) {
                    head_sum += g.ssr(initial);
                    if n_kept == 0 {
                        first = Some(g);
                    }
                }
            }
            n_kept += 1;
            last = i;
        }
    }
    let first = match first {
        Some(g) if n_kept >= params.min_frames => g,
        _ => return Ok(VideoScore::invalid(n_kept)),
    };
    let k = m.min(n_kept);
    // the last k kept frames start at row `start` (rows were validated above)
    let mut start = last;
    let mut found = 0usize;
    let mut i = last + 1;
    while found < k && i > 0 {
        i -= 1;
        if kept_frame(animal, obj, i, base)?.is_some() {
            found += 1;
            start = i;
        }
    }
    let mut tail_sum = 0.0f64;
    let mut end: Option<FrameGeometry> = None;
    for i in start..=last {
        if let Some(kf) = kept_frame(animal, obj, i, base)? {
            let g = kf.geometry();
            tail_sum += g.ssr(final_);
            end = Some(g);
        }
    }
    let end = end.unwrap_or(first); // unreachable: row `last` is kept
    let r_init = head_sum / k as f64;
    let r_final = tail_sum / k as f64;
    let g_init = 0.5 * (first.ssr(initial) - end.ssr(initial));
    let g_final = 0.5 * (end.ssr(final_) - first.ssr(final_));
    let dsr = (r_init + g_init + r_final + g_final) / 8.0 + 0.5;
    Ok(VideoScore {
        dsr: Some(dsr),
        r_init,
        r_final,
        g_init,
        g_final,
        n_kept,
    })
}

/// Scores one video (see [`dsr_video_at`]).
pub fn dsr_video<T: Copy + Into<f64>>(
    animal: &[T],
    obj: &[T],
    initial: Relation,
    final_: Relation,
    params: DsrParams,
) -> Result<VideoScore, InputError> {
    dsr_video_at(animal, obj, initial, final_, params, 0)
}

/// Column-oriented results of [`dsr_batch`]; NaN where a video is invalid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchScores {
    pub dsr: Vec<f64>,
    pub r_init: Vec<f64>,
    pub r_final: Vec<f64>,
    pub g_init: Vec<f64>,
    pub g_final: Vec<f64>,
    pub n_kept: Vec<i64>,
}

/// Checks `offsets` against `n_rows` frames and `n_videos` videos.
fn check_offsets(offsets: &[i64], n_rows: usize, n_videos: usize) -> Result<(), InputError> {
    if offsets.len() != n_videos + 1 {
        return Err(InputError::LengthMismatch {
            what: "offsets (need one entry more than there are videos, i.e. relations)".into(),
            expected: n_videos + 1,
            got: offsets.len(),
        });
    }
    if offsets[0] != 0 {
        return Err(InputError::BadOffsets {
            index: 0,
            detail: format!("must be 0, got {}", offsets[0]),
        });
    }
    for (i, w) in offsets.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(InputError::BadOffsets {
                index: i + 1,
                detail: format!("decreases ({} after {})", w[1], w[0]),
            });
        }
    }
    let end = offsets[n_videos];
    if end != n_rows as i64 {
        return Err(InputError::BadOffsets {
            index: n_videos,
            detail: format!("must equal the number of frames {n_rows}, got {end}"),
        });
    }
    Ok(())
}

/// Scores `V` videos whose frames are concatenated in `animal`/`obj` (flat
/// `[T*4]`); video `v` owns rows `offsets[v]..offsets[v+1]`. Videos are scored in
/// parallel; on bad input the error of the first offending video is returned.
pub fn dsr_batch<T: Copy + Into<f64> + Sync>(
    animal: &[T],
    obj: &[T],
    offsets: &[i64],
    initial: &[Relation],
    final_: &[Relation],
    params: DsrParams,
) -> Result<BatchScores, InputError> {
    params.check()?;
    let n_rows = check_pair_len(animal, obj)?;
    let v = initial.len();
    if final_.len() != v {
        return Err(InputError::LengthMismatch {
            what: "final relations vs initial relations".into(),
            expected: v,
            got: final_.len(),
        });
    }
    check_offsets(offsets, n_rows, v)?;

    let results: Vec<Result<VideoScore, InputError>> = (0..v)
        .into_par_iter()
        .with_min_len(32)
        .map(|j| {
            let (s, e) = (offsets[j] as usize, offsets[j + 1] as usize);
            dsr_video_at(
                &animal[4 * s..4 * e],
                &obj[4 * s..4 * e],
                initial[j],
                final_[j],
                params,
                s,
            )
            .map_err(|err| InputError::InVideo {
                video: j,
                source: Box::new(err),
            })
        })
        .collect();

    let mut out = BatchScores {
        dsr: Vec::with_capacity(v),
        r_init: Vec::with_capacity(v),
        r_final: Vec::with_capacity(v),
        g_init: Vec::with_capacity(v),
        g_final: Vec::with_capacity(v),
        n_kept: Vec::with_capacity(v),
    };
    for r in results {
        let s = r?;
        out.dsr.push(s.dsr.unwrap_or(f64::NAN));
        out.r_init.push(s.r_init);
        out.r_final.push(s.r_final);
        out.g_init.push(s.g_init);
        out.g_final.push(s.g_final);
        out.n_kept.push(s.n_kept as i64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A video of `n` frames in which the animal moves linearly from `x_start` to
    /// `x_end` (centre x) beside a fixed object centred at x = 100.
    fn slide(n: usize, x_start: f64, x_end: f64) -> (Vec<f64>, Vec<f64>) {
        let mut a = Vec::new();
        let mut o = Vec::new();
        for i in 0..n {
            let t = if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.0
            };
            let cx = x_start + t * (x_end - x_start);
            a.extend_from_slice(&[cx - 10.0, 40.0, cx + 10.0, 60.0]);
            o.extend_from_slice(&[90.0, 40.0, 110.0, 60.0]);
        }
        (a, o)
    }

    #[test]
    fn perfect_left_to_right_scores_one() {
        let (a, o) = slide(30, 0.0, 200.0);
        let s = dsr_video(
            &a,
            &o,
            Relation::Left,
            Relation::Right,
            DsrParams::default(),
        )
        .unwrap();
        assert_eq!(s.n_kept, 30);
        assert_eq!(s.r_init, 1.0);
        assert_eq!(s.r_final, 1.0);
        assert_eq!(s.g_init, 1.0);
        assert_eq!(s.g_final, 1.0);
        assert_eq!(s.dsr, Some(1.0));
    }

    #[test]
    fn reversed_motion_scores_zero() {
        let (a, o) = slide(30, 200.0, 0.0);
        let s = dsr_video(
            &a,
            &o,
            Relation::Left,
            Relation::Right,
            DsrParams::default(),
        )
        .unwrap();
        assert_eq!(s.dsr, Some(0.0));
    }

    #[test]
    fn too_few_kept_frames_is_invalid() {
        let (mut a, o) = slide(25, 0.0, 200.0);
        // hide the animal in 6 frames -> 19 kept < 20
        for i in 0..6 {
            a[4 * i..4 * i + 4].copy_from_slice(&[f64::NAN; 4]);
        }
        let s = dsr_video(
            &a,
            &o,
            Relation::Left,
            Relation::Right,
            DsrParams::default(),
        )
        .unwrap();
        assert_eq!(s.n_kept, 19);
        assert_eq!(s.dsr, None);
        assert!(s.r_init.is_nan());
        let p = DsrParams {
            m: 3,
            min_frames: 19,
        };
        assert!(dsr_video(&a, &o, Relation::Left, Relation::Right, p)
            .unwrap()
            .dsr
            .is_some());
    }

    #[test]
    fn only_ends_matter_and_missing_frames_are_skipped() {
        // hand-computed: kept frames 1,2,3 and 5,6,7 (frames 0 and 4 hidden)
        let xs = [0.0, 60.0, 70.0, 80.0, 0.0, 120.0, 130.0, 140.0];
        let mut a = Vec::new();
        let mut o = Vec::new();
        for (i, &cx) in xs.iter().enumerate() {
            if i == 0 || i == 4 {
                a.extend_from_slice(&[f64::NAN; 4]);
            } else {
                a.extend_from_slice(&[cx - 10.0, 40.0, cx + 10.0, 60.0]);
            }
            o.extend_from_slice(&[90.0, 40.0, 110.0, 60.0]);
        }
        let p = DsrParams {
            m: 3,
            min_frames: 1,
        };
        let s = dsr_video(&a, &o, Relation::Left, Relation::Right, p).unwrap();
        // left SSR of centres 60,70,80 vs 100 (mean width 20): clip(|dx|/20) = 1 each
        assert_eq!(s.n_kept, 6);
        assert_eq!(s.r_init, 1.0);
        assert_eq!(s.r_final, 1.0);
        let d = 0.5 * (1.0 - (-1.0));
        assert_eq!(s.g_init, d);
        assert_eq!(s.dsr, Some((1.0 + 1.0 + 1.0 + 1.0) / 8.0 + 0.5));
    }

    #[test]
    fn short_videos_average_what_they_have() {
        let (a, o) = slide(2, 0.0, 95.0);
        let p = DsrParams {
            m: 3,
            min_frames: 1,
        };
        let s = dsr_video(&a, &o, Relation::Left, Relation::Right, p).unwrap();
        // frame 0: left = 1; frame 1: centre 95 -> dx = -5 -> left = 0.25, right = -0.25
        assert_eq!(s.r_init, (1.0 + 0.25) / 2.0);
        assert_eq!(s.r_final, (-1.0 + -0.25) / 2.0);
    }

    #[test]
    fn f32_and_f64_agree() {
        let (a, o) = slide(40, 3.5, 180.25);
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        let o32: Vec<f32> = o.iter().map(|&x| x as f32).collect();
        let p = DsrParams::default();
        let s64 = dsr_video(&a, &o, Relation::Left, Relation::Top, p).unwrap();
        let s32 = dsr_video(&a32, &o32, Relation::Left, Relation::Top, p).unwrap();
        assert_eq!(s64, s32);
    }

    #[test]
    fn batch_matches_single_videos() {
        let (a1, o1) = slide(30, 0.0, 200.0);
        let (a2, o2) = slide(10, 200.0, 0.0);
        let (a3, o3) = slide(25, 150.0, 20.0);
        let a: Vec<f64> = [a1.clone(), a2.clone(), a3.clone()].concat();
        let o: Vec<f64> = [o1.clone(), o2.clone(), o3.clone()].concat();
        let offs = [0i64, 30, 40, 65];
        let ini = [Relation::Left, Relation::Right, Relation::Right];
        let fin = [Relation::Right, Relation::Left, Relation::Top];
        let p = DsrParams::default();
        let b = dsr_batch(&a, &o, &offs, &ini, &fin, p).unwrap();
        assert_eq!(b.n_kept, vec![30, 10, 25]);
        let s1 = dsr_video(&a1, &o1, ini[0], fin[0], p).unwrap();
        let s3 = dsr_video(&a3, &o3, ini[2], fin[2], p).unwrap();
        assert_eq!(b.dsr[0], s1.dsr.unwrap());
        assert!(b.dsr[1].is_nan());
        assert_eq!(b.dsr[2], s3.dsr.unwrap());
        assert_eq!(b.g_final[2], s3.g_final);
    }

    #[test]
    fn batch_names_the_bad_row_and_video() {
        let (mut a, o) = slide(20, 0.0, 200.0);
        a[4 * 13 + 1] = f64::NAN;
        let offs = [0i64, 10, 20];
        let r = [Relation::Left, Relation::Left];
        let e = dsr_batch(&a, &o, &offs, &r, &r, DsrParams::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("video 1"), "{msg}");
        assert!(msg.contains("row 13"), "{msg}");
    }

    #[test]
    fn batch_rejects_bad_offsets_and_lengths() {
        let (a, o) = slide(20, 0.0, 200.0);
        let r2 = [Relation::Left, Relation::Left];
        let p = DsrParams::default();
        for offs in [
            &[0i64, 10][..],
            &[1, 10, 20],
            &[0, 15, 10],
            &[0, 10, 21],
            &[0, 10, 19],
        ] {
            assert!(dsr_batch(&a, &o, offs, &r2, &r2, p).is_err(), "{offs:?}");
        }
        assert!(dsr_batch(&a, &o, &[0, 10, 20], &r2, &r2[..1], p).is_err());
        assert!(dsr_batch(&a, &o[..40], &[0, 10, 20], &r2, &r2, p).is_err());
        let bad = DsrParams {
            m: 0,
            min_frames: 20,
        };
        assert!(dsr_batch(&a, &o, &[0, 10, 20], &r2, &r2, bad).is_err());
    }

    #[test]
    fn empty_batch_and_empty_videos() {
        let e: [f64; 0] = [];
        let b = dsr_batch(&e, &e, &[0], &[], &[], DsrParams::default()).unwrap();
        assert!(b.dsr.is_empty());
        let p = DsrParams {
            m: 3,
            min_frames: 0,
        };
        let b = dsr_batch(&e, &e, &[0, 0], &[Relation::Left], &[Relation::Top], p).unwrap();
        assert!(b.dsr[0].is_nan());
        assert_eq!(b.n_kept, vec![0]);
    }
}

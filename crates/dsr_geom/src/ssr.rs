//! Per-frame geometry and the SSR (static spatial relation) score.

use crate::{InputError, Relation};

/// Whether a box row holds a detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxState {
    /// All four values NaN: not detected in this frame.
    Missing,
    /// Four finite values with x0 <= x1 and y0 <= y1.
    Present,
}

/// Validates one `[x0, y0, x1, y1]` row. `which` and `row` only name it in the error.
#[inline]
pub fn check_box(b: [f64; 4], which: &'static str, row: usize) -> Result<BoxState, InputError> {
    if b.iter().all(|v| v.is_finite()) {
        if b[2] < b[0] || b[3] < b[1] {
            return Err(InputError::Inverted { which, row });
        }
        return Ok(BoxState::Present);
    }
    if b.iter().all(|v| v.is_nan()) {
        return Ok(BoxState::Missing);
    }
    Err(InputError::NonFinite { which, row })
}

/// The direction and normalised distance of the animal relative to the object in
/// one kept frame; every relation's SSR score is a product of two of these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameGeometry {
    pub cos_x: f64,
    pub cos_y: f64,
    pub d_x: f64,
    pub d_y: f64,
}

impl FrameGeometry {
    /// SSR score in [-1, 1] of `rel` for this frame.
    #[inline]
    pub fn ssr(&self, rel: Relation) -> f64 {
        match rel {
            Relation::Left => -self.cos_x * self.d_x,
            Relation::Right => self.cos_x * self.d_x,
            Relation::Top => -self.cos_y * self.d_y,
            Relation::Bottom => self.cos_y * self.d_y,
        }
    }
}

/// Mean width and height of two present boxes, or `None` when the frame is dropped
/// (zero animal or object width, or zero mean width or height).
#[inline]
pub(crate) fn kept_extent(a: [f64; 4], o: [f64; 4]) -> Option<(f64, f64)> {
    let a_w = a[2] - a[0];
    let o_w = o[2] - o[0];
    let w_mean = 0.5 * (a_w + o_w);
    let h_mean = 0.5 * ((a[3] - a[1]) + (o[3] - o[1]));
    if w_mean == 0.0 || h_mean == 0.0 || a_w == 0.0 || o_w == 0.0 {
        None
    } else {
        Some((w_mean, h_mean))
    }
}

/// Geometry of a frame with two present boxes, or `None` when the frame is not kept
/// (a zero width, or zero mean width/height). Operations are ordered as in the
/// official scorer so that results agree to the last bit where possible.
#[inline]
pub fn frame_geometry(a: [f64; 4], o: [f64; 4]) -> Option<FrameGeometry> {
    let (w_mean, h_mean) = kept_extent(a, o)?;
    Some(geometry_with_extent(a, o, w_mean, h_mean))
}

/// Geometry of a kept frame whose mean width/height [`kept_extent`] already returned.
#[inline(always)]
pub(crate) fn geometry_with_extent(
    a: [f64; 4],
    o: [f64; 4],
    w_mean: f64,
    h_mean: f64,
) -> FrameGeometry {
    let a_cx = 0.5 * (a[0] + a[2]);
    let a_cy = 0.5 * (a[1] + a[3]);
    let o_cx = 0.5 * (o[0] + o[2]);
    let o_cy = 0.5 * (o[1] + o[3]);
    let vx = a_cx - o_cx;
    let vy = a_cy - o_cy;
    let norm = (vx * vx + vy * vy).sqrt();
    if !norm.is_finite() {
        // only for coordinates near f64::MAX, where the official formula overflows
        return geometry_far_out(a, o);
    }
    let (cos_x, cos_y) = if norm == 0.0 {
        (0.0, 0.0)
    } else {
        // the clamp is a no-op except when |v|^2 is subnormal and sqrt loses precision
        ((vx / norm).clamp(-1.0, 1.0), (vy / norm).clamp(-1.0, 1.0))
    };
    FrameGeometry {
        cos_x,
        cos_y,
        d_x: (vx / w_mean).abs().clamp(0.0, 1.0),
        d_y: (vy / h_mean).abs().clamp(0.0, 1.0),
    }
}

/// [`geometry_with_extent`] for finite boxes whose centres, widths or `|v|^2`
/// overflow: the same quantities at half scale, so that every SSR score stays a
/// number in [-1, 1]. Never reached for image coordinates.
#[cold]
#[inline(never)]
fn geometry_far_out(a: [f64; 4], o: [f64; 4]) -> FrameGeometry {
    let half = |x: f64| 0.5 * x;
    // centres, widths, heights and v, all halved (finite: no sum exceeds f64::MAX)
    let vx = half(half(a[0]) + half(a[2])) - half(half(o[0]) + half(o[2]));
    let vy = half(half(a[1]) + half(a[3])) - half(half(o[1]) + half(o[3]));
    let w_mean = half(half(a[2]) - half(a[0])) + half(half(o[2]) - half(o[0]));
    let h_mean = half(half(a[3]) - half(a[1])) + half(half(o[3]) - half(o[1]));
    let s = vx.abs().max(vy.abs());
    let (cos_x, cos_y) = if s == 0.0 {
        (0.0, 0.0)
    } else {
        let (x, y) = (vx / s, vy / s);
        let n = (x * x + y * y).sqrt();
        ((x / n).clamp(-1.0, 1.0), (y / n).clamp(-1.0, 1.0))
    };
    let ratio = |v: f64, e: f64| {
        if e == 0.0 {
            1.0 // the extent underflowed at half scale: |v| dwarfs it
        } else {
            (v / e).abs().clamp(0.0, 1.0)
        }
    };
    FrameGeometry {
        cos_x,
        cos_y,
        d_x: ratio(vx, w_mean),
        d_y: ratio(vy, h_mean),
    }
}

/// Reads row `i` of a flat `[N*4]` box buffer as `f64`.
#[inline]
pub(crate) fn row<T: Copy + Into<f64>>(flat: &[T], i: usize) -> [f64; 4] {
    let r = &flat[4 * i..4 * i + 4];
    [r[0].into(), r[1].into(), r[2].into(), r[3].into()]
}

/// Validates both boxes of a frame and says whether it is kept: both boxes present
/// and the widths and mean extents non-zero (DESIGN.md, "Scoring"). Errors name
/// `row`, the animal box first. This is the scan over every row; in the common
/// case (eight finite values) it is a few well-predicted branches (measured: a
/// branch-free variant was slower).
#[inline(always)]
pub(crate) fn frame_kept(a: [f64; 4], o: [f64; 4], row: usize) -> Result<bool, InputError> {
    let sa = check_box(a, "animal", row)?;
    let so = check_box(o, "object", row)?;
    Ok(sa == BoxState::Present && so == BoxState::Present && kept_extent(a, o).is_some())
}

/// Validates both boxes of frame `i`; returns the two boxes and their mean width and
/// height when the frame is kept, `None` when it is not (a box missing or a zero
/// width/mean extent). `base` is added to `i` in error messages (the row's index
/// in a batch). Errors are reported as [`check_box`] would, animal box first.
#[inline(always)]
pub(crate) fn kept_frame<T: Copy + Into<f64>>(
    animal: &[T],
    obj: &[T],
    i: usize,
    base: usize,
) -> Result<Option<KeptFrame>, InputError> {
    let a = row(animal, i);
    let o = row(obj, i);
    Ok(frame_kept(a, o, base + i)?.then(|| {
        let w_mean = 0.5 * ((a[2] - a[0]) + (o[2] - o[0]));
        let h_mean = 0.5 * ((a[3] - a[1]) + (o[3] - o[1]));
        KeptFrame {
            a,
            o,
            w_mean,
            h_mean,
        }
    }))
}

/// A kept frame: both boxes and their mean width and height (both non-zero).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeptFrame {
    pub a: [f64; 4],
    pub o: [f64; 4],
    pub w_mean: f64,
    pub h_mean: f64,
}

impl KeptFrame {
    #[inline(always)]
    pub fn geometry(&self) -> FrameGeometry {
        geometry_with_extent(self.a, self.o, self.w_mean, self.h_mean)
    }
}

/// Validates both boxes of frame `i` and returns its geometry if the frame is kept.
#[inline]
pub(crate) fn frame_at<T: Copy + Into<f64>>(
    animal: &[T],
    obj: &[T],
    i: usize,
    base: usize,
) -> Result<Option<FrameGeometry>, InputError> {
    Ok(kept_frame(animal, obj, i, base)?.map(|k| k.geometry()))
}

/// Checks that two flat box buffers describe the same number of `[x0,y0,x1,y1]` rows.
pub(crate) fn check_pair_len<T>(animal: &[T], obj: &[T]) -> Result<usize, InputError> {
    if animal.len() % 4 != 0 {
        return Err(InputError::BadShape {
            what: "animal",
            detail: format!("expected N x 4 values, got {}", animal.len()),
        });
    }
    if obj.len() != animal.len() {
        return Err(InputError::LengthMismatch {
            what: "object boxes vs animal boxes (rows)".into(),
            expected: animal.len() / 4,
            got: obj.len() / 4,
        });
    }
    Ok(animal.len() / 4)
}

/// SSR score of `rel` for every frame; NaN where the frame is not kept.
/// `animal` and `obj` are flat row-major `[N*4]` buffers.
pub fn ssr_scores<T: Copy + Into<f64>>(
    animal: &[T],
    obj: &[T],
    rel: Relation,
) -> Result<Vec<f64>, InputError> {
    let n = check_pair_len(animal, obj)?;
    (0..n)
        .map(|i| Ok(frame_at(animal, obj, i, 0)?.map_or(f64::NAN, |g| g.ssr(rel))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN4: [f64; 4] = [f64::NAN; 4];

    #[test]
    fn animal_left_of_object() {
        // animal centre (10, 50), object centre (50, 50), mean width 20 -> d_x clipped to 1
        let g = frame_geometry([0., 40., 20., 60.], [40., 40., 60., 60.]).unwrap();
        assert_eq!(g.cos_x, -1.0);
        assert_eq!(g.cos_y, 0.0);
        assert_eq!(g.ssr(Relation::Left), 1.0);
        assert_eq!(g.ssr(Relation::Right), -1.0);
        assert_eq!(g.ssr(Relation::Top), 0.0);
    }

    #[test]
    fn animal_on_top_y_down() {
        // animal above the object means a smaller y: TOP is positive.
        let g = frame_geometry([40., 0., 60., 10.], [40., 40., 60., 60.]).unwrap();
        assert!(g.ssr(Relation::Top) > 0.99);
        assert!(g.ssr(Relation::Bottom) < -0.99);
    }

    #[test]
    fn partial_distance_is_scaled() {
        // centres 5 px apart horizontally, mean width 20 -> d_x = 0.25, cos_x = 1
        let g = frame_geometry([5., 0., 25., 20.], [0., 0., 20., 20.]).unwrap();
        assert!((g.ssr(Relation::Right) - 0.25).abs() < 1e-15);
    }

    #[test]
    fn coincident_centres_score_zero() {
        let g = frame_geometry([0., 0., 10., 10.], [0., 0., 10., 10.]).unwrap();
        assert_eq!(g.ssr(Relation::Left), 0.0);
        assert_eq!(g.ssr(Relation::Top), 0.0);
    }

    #[test]
    fn zero_width_frames_are_dropped() {
        assert!(frame_geometry([5., 0., 5., 10.], [0., 0., 10., 10.]).is_none());
        assert!(frame_geometry([0., 0., 10., 10.], [3., 0., 3., 10.]).is_none());
        // zero heights on both boxes -> mean height 0 -> dropped
        assert!(frame_geometry([0., 5., 10., 5.], [20., 5., 30., 5.]).is_none());
        // zero height on one box only is kept
        assert!(frame_geometry([0., 5., 10., 5.], [20., 0., 30., 10.]).is_some());
    }

    #[test]
    fn extreme_coordinates_stay_in_range() {
        let big = f64::MAX;
        let cases = [
            ([-big, -big, big, big], [0.0, 0.0, 1.0, 1.0]),
            ([big / 2.0, 0.0, big, 1.0], [-big, 0.0, -big / 2.0, 1.0]),
            (
                [1e200, 1e200, 1.5e200, 1.5e200],
                [-1e200, -1e200, -0.5e200, -0.5e200],
            ),
            ([0.0, 0.0, 1.5e-160, 1e-300], [0.0, 0.0, 5e-324, 1e-300]),
        ];
        for (a, o) in cases {
            let g = frame_geometry(a, o).unwrap();
            for rel in [
                Relation::Left,
                Relation::Right,
                Relation::Top,
                Relation::Bottom,
            ] {
                let r = g.ssr(rel);
                assert!((-1.0..=1.0).contains(&r), "{a:?} {o:?} {rel:?} {r}");
            }
        }
        // far to the right of the object: RIGHT is 1 even when v overflows
        let g = frame_geometry([big / 2.0, 0.0, big, 1.0], [-big, 0.0, -big / 2.0, 1.0]).unwrap();
        assert_eq!(g.ssr(Relation::Right), 1.0);
    }

    #[test]
    fn box_validation() {
        assert_eq!(check_box(NAN4, "animal", 0).unwrap(), BoxState::Missing);
        assert_eq!(
            check_box([0., 0., 1., 1.], "animal", 0).unwrap(),
            BoxState::Present
        );
        let e = check_box([0., f64::NAN, 1., 1.], "object", 7).unwrap_err();
        assert_eq!(
            e,
            InputError::NonFinite {
                which: "object",
                row: 7
            }
        );
        assert!(e.to_string().contains("row 7"));
        let e = check_box([0., 0., f64::INFINITY, 1.], "animal", 2).unwrap_err();
        assert_eq!(
            e,
            InputError::NonFinite {
                which: "animal",
                row: 2
            }
        );
        let e = check_box([2., 0., 1., 1.], "animal", 3).unwrap_err();
        assert_eq!(
            e,
            InputError::Inverted {
                which: "animal",
                row: 3
            }
        );
    }

    #[test]
    fn ssr_scores_marks_dropped_frames_nan() {
        let a = [
            0.,
            0.,
            10.,
            10.,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            0.,
            0.,
            0.,
            10.,
        ];
        let o = [20., 0., 30., 10., 20., 0., 30., 10., 20., 0., 30., 10.];
        let s = ssr_scores(&a, &o, Relation::Left).unwrap();
        assert_eq!(s[0], 1.0);
        assert!(s[1].is_nan());
        assert!(s[2].is_nan());
    }

    #[test]
    fn ssr_scores_rejects_mismatched_lengths() {
        let a = [0.0f32; 8];
        let o = [0.0f32; 4];
        assert!(matches!(
            ssr_scores(&a, &o, Relation::Left),
            Err(InputError::LengthMismatch { .. })
        ));
    }
}

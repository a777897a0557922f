//! Objective picture quality: PSNR between two frames of the same size.

use super::VideoFrame;

/// PSNR in dB of plane `i` of `decoded` against `reference`, over the visible samples.
/// `None` when the sizes differ; `f64::INFINITY` for identical planes.
pub fn psnr_plane(reference: &VideoFrame, decoded: &VideoFrame, i: usize) -> Option<f64> {
    if (reference.width(), reference.height()) != (decoded.width(), decoded.height()) {
        return None;
    }
    let (_, rows) = reference.plane_size(i);
    let mut sse = 0u64;
    let mut count = 0u64;
    for r in 0..rows {
        for (&a, &b) in reference.row(i, r).iter().zip(decoded.row(i, r)) {
            let d = a as i32 - b as i32;
            sse += (d * d) as u64;
        }
        count += reference.row(i, r).len() as u64;
    }
    Some(psnr_from_mse(sse as f64 / count as f64))
}

/// PSNR in dB of the luma plane.
pub fn psnr_y(reference: &VideoFrame, decoded: &VideoFrame) -> Option<f64> {
    psnr_plane(reference, decoded, 0)
}

/// PSNR in dB for 8-bit samples with mean squared error `mse`.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let a = VideoFrame::black(16, 16).unwrap();
        let mut b = a.clone();
        assert_eq!(psnr_y(&a, &b), Some(f64::INFINITY));
        b.plane_mut(0).iter_mut().for_each(|v| *v += 10);
        let p = psnr_y(&a, &b).unwrap();
        assert!((p - 28.13).abs() < 0.01, "{p}");
        assert_eq!(psnr_y(&a, &VideoFrame::black(32, 16).unwrap()), None);
    }
}

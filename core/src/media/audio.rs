//! Synthetic audio sources: speech-like sound and a plain tone.

use std::f64::consts::TAU;

use super::{AUDIO_SAMPLE_RATE, AudioFrame, Channels, MediaError};

fn check_frame_ms(frame_ms: u32) -> Result<usize, MediaError> {
    match frame_ms {
        10 | 20 => Ok((AUDIO_SAMPLE_RATE / 1000 * frame_ms) as usize),
        _ => Err(MediaError::InvalidAudioDuration { ms: frame_ms }),
    }
}

/// Deterministic xorshift generator: the same source always produces the same sound.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u32() as f64 / u32::MAX as f64)
    }
}

/// Speech-like test audio: a voiced sound with a drifting pitch and its harmonics shaped by
/// two moving formants, in syllables of 120–300 ms (about 4 per second, the rate of speech),
/// grouped into phrases separated by pauses of silence. It exercises what speech exercises in
/// an audio path — level changes, silence for DTX, a pitch for the ear — and is the same on
/// every run.
#[derive(Clone, Debug)]
pub struct SpeechSource {
    channels: Channels,
    frame_len: usize,
    pts_us: i64,
    rng: Rng,
    phase: f64,
    /// Samples left in the current syllable or pause, and its length.
    left: usize,
    len: usize,
    voiced: bool,
    syllables_left: u32,
    pitch: f64,
    formants: (f64, f64),
    t: u64,
}

impl SpeechSource {
    /// A source producing frames of `frame_ms` (10 or 20) milliseconds.
    pub fn new(channels: Channels, frame_ms: u32) -> Result<Self, MediaError> {
        Ok(Self {
            channels,
            frame_len: check_frame_ms(frame_ms)?,
            pts_us: 0,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            phase: 0.0,
            left: 0,
            len: 1,
            voiced: false,
            syllables_left: 0,
            pitch: 140.0,
            formants: (600.0, 1500.0),
            t: 0,
        })
    }

    fn next_segment(&mut self) {
        let sr = AUDIO_SAMPLE_RATE as f64;
        if self.syllables_left == 0 && self.voiced {
            self.voiced = false;
            self.len = (self.rng.range(0.25, 0.7) * sr) as usize;
        } else {
            if self.syllables_left == 0 {
                self.syllables_left = 3 + self.rng.next_u32() % 6;
            }
            self.syllables_left -= 1;
            self.voiced = true;
            self.len = (self.rng.range(0.12, 0.3) * sr) as usize;
            self.pitch = self.rng.range(100.0, 220.0);
            self.formants = (self.rng.range(350.0, 850.0), self.rng.range(1000.0, 2400.0));
        }
        self.left = self.len;
    }

    fn sample(&mut self) -> f64 {
        if self.left == 0 {
            self.next_segment();
        }
        self.left -= 1;
        self.t += 1;
        if !self.voiced {
            return 0.0;
        }
        let sr = AUDIO_SAMPLE_RATE as f64;
        // Intonation: the pitch glides a little within each syllable.
        let pos = 1.0 - self.left as f64 / self.len as f64;
        let f0 = self.pitch * (1.0 + 0.08 * (pos * std::f64::consts::PI).sin());
        self.phase = (self.phase + f0 / sr).fract();
        let envelope = (pos * std::f64::consts::PI).sin().powi(2);
        let (f1, f2) = self.formants;
        let mut s = 0.0;
        let mut k = 1.0;
        while k * f0 < 4000.0 {
            let f = k * f0;
            let gain =
                1.0 / (1.0 + ((f - f1) / 150.0).powi(2)) + 0.5 / (1.0 + ((f - f2) / 250.0).powi(2));
            s += gain / k.sqrt() * (TAU * k * self.phase).sin();
            k += 1.0;
        }
        envelope * s * 0.25
    }

    /// The next frame; its pts advances by the frame duration, starting at 0.
    pub fn next_frame(&mut self) -> AudioFrame {
        let n = self.channels.count();
        let mut samples = Vec::with_capacity(self.frame_len * n);
        for _ in 0..self.frame_len {
            let s = (self.sample() * 32767.0).clamp(-32768.0, 32767.0) as i16;
            for c in 0..n {
                // The right channel is a little quieter, so stereo is not just mono twice.
                samples.push(if c == 0 { s } else { (s as i32 * 7 / 8) as i16 });
            }
        }
        let pts = self.pts_us;
        self.pts_us += (self.frame_len as i64) * 1_000_000 / AUDIO_SAMPLE_RATE as i64;
        // The length is frame_len × channels by construction.
        AudioFrame::new(self.channels, samples, pts).expect("valid frame length")
    }
}

/// A steady sine tone.
#[derive(Clone, Debug)]
pub struct Tone {
    channels: Channels,
    frame_len: usize,
    frequency: f64,
    amplitude: f64,
    phase: f64,
    pts_us: i64,
}

impl Tone {
    /// A tone of `frequency` Hz at `amplitude` (0.0–1.0 of full scale), frames of `frame_ms`.
    pub fn new(
        frequency: f64,
        amplitude: f64,
        channels: Channels,
        frame_ms: u32,
    ) -> Result<Self, MediaError> {
        Ok(Self {
            channels,
            frame_len: check_frame_ms(frame_ms)?,
            frequency,
            amplitude: amplitude.clamp(0.0, 1.0),
            phase: 0.0,
            pts_us: 0,
        })
    }

    /// The next frame.
    pub fn next_frame(&mut self) -> AudioFrame {
        let n = self.channels.count();
        let mut samples = Vec::with_capacity(self.frame_len * n);
        for _ in 0..self.frame_len {
            let s = (self.amplitude * 32767.0 * (TAU * self.phase).sin()) as i16;
            self.phase = (self.phase + self.frequency / AUDIO_SAMPLE_RATE as f64).fract();
            samples.extend(std::iter::repeat_n(s, n));
        }
        let pts = self.pts_us;
        self.pts_us += (self.frame_len as i64) * 1_000_000 / AUDIO_SAMPLE_RATE as i64;
        // The length is frame_len × channels by construction.
        AudioFrame::new(self.channels, samples, pts).expect("valid frame length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn speech_has_syllables_and_pauses() {
        let mut src = SpeechSource::new(Channels::Mono, 10).unwrap();
        let levels: Vec<f64> = (0..1000).map(|_| rms(src.next_frame().samples())).collect();
        let silent = levels.iter().filter(|&&l| l < 1.0).count();
        let loud = levels.iter().filter(|&&l| l > 1000.0).count();
        // 10 s of sound: some pauses, mostly voiced.
        assert!(silent > 50 && silent < 500, "silent frames {silent}");
        assert!(loud > 300, "loud frames {loud}");
        // Amplitude modulation: loud and quiet frames alternate at syllable rate, so the level
        // crosses its median many times a second.
        let mut sorted = levels.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[500];
        let crossings = levels
            .windows(2)
            .filter(|w| (w[0] < median) != (w[1] < median))
            .count();
        assert!(crossings > 40, "crossings {crossings}");
    }

    #[test]
    fn pts_and_lengths() {
        let mut src = SpeechSource::new(Channels::Stereo, 20).unwrap();
        let a = src.next_frame();
        let b = src.next_frame();
        assert_eq!(a.samples().len(), 1920);
        assert_eq!(b.pts_us() - a.pts_us(), 20_000);
        assert!(SpeechSource::new(Channels::Mono, 15).is_err());
    }

    #[test]
    fn tone_level() {
        let mut t = Tone::new(1000.0, 0.5, Channels::Mono, 20).unwrap();
        let f = t.next_frame();
        let r = rms(f.samples());
        assert!((r - 0.5 * 32767.0 / 2f64.sqrt()).abs() < 200.0, "rms {r}");
    }
}

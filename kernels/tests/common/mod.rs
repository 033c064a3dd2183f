//! Test data shared by the CUDA twin tests (`cuda_twins.rs`) and the host emulation of the
//! k-quant kernels (`cuda_emulation.rs`).
#![allow(dead_code)]

/// xorshift64, so the data is the same on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Roughly normal (sum of uniforms), times `scale`.
    pub fn weight(&mut self, scale: f32) -> f32 {
        let s: f32 = (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .sum();
        s * scale
    }
}

/// Rows of 256 finite values: random at several magnitudes, then the edge cases.
pub fn finite_rows() -> Vec<f32> {
    let mut r = Rng(0x5EED_1234_ABCD_0001);
    let mut v = Vec::new();
    for scale in [0.02f32, 1.0, 300.0, 1e-30, 1e30] {
        v.extend((0..256 * 8).map(|_| r.weight(scale)));
    }
    // One outlier per 32 (AWQ-like activation outliers show up in weights too).
    v.extend((0..256).map(|i| if i % 32 == 7 { 50.0 } else { r.weight(0.01) }));
    v.extend([0.0f32; 256]);
    v.extend((0..256).map(|i| if i % 3 == 0 { -0.0 } else { 0.0 }));
    v.extend((0..256).map(|i| f32::from_bits(1 + i as u32 * 977))); // subnormals
    v.extend((0..256).map(|i| -f32::from_bits(0x0080_0000 + i as u32))); // smallest normals
    v.extend((0..256).map(|i| f32::MAX / (1.0 + i as f32 / 64.0))); // huge, one sign
    v.extend((0..256).map(|i| -f32::MAX / 4.0 * (i % 5) as f32));
    v.extend((0..256).map(|_| r.weight(1.0).abs() + 1.0)); // all positive
    v.extend((0..256).map(|_| -r.weight(1.0).abs() - 1.0)); // all negative
                                                            // Exact ties: multiples of 0.5 and of 1/16 hit the .5 boundaries of every rounding rule.
    v.extend((0..256).map(|i| (i as f32 - 128.0) * 0.5));
    v.extend((0..256).map(|i| (i % 64) as f32 / 16.0 - 2.0));
    // Blocks whose largest magnitude appears twice with opposite signs (first-index tie-break).
    v.extend((0..256).map(|i| match i % 32 {
        3 => -4.0,
        9 => 4.0,
        _ => r.weight(1.0),
    }));
    v
}

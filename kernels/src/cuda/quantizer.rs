//! [`Quantizer`]: host-slice entry points for every CUDA twin.

use super::device::{device, Device};
use super::CudaError;
use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::sync::Arc;

/// Threads per CUDA block for every kernel (8 warps: 8 ggml blocks or int4 groups per CUDA block).
const THREADS: u32 = 256;
/// Upper bound on the grid of the grid-stride kernels; enough to fill any current GPU.
const MAX_GRID: u64 = 1 << 16;
/// Values per ggml block of the 32-value types.
const QK: usize = 32;
/// Values per k-quant super-block.
const QK_K: usize = 256;
/// Threads per CUDA block for the k-quants, one super-block per thread (their searches are
/// sequential, so fewer threads per block spread the work over more SMs).
const KQUANT_THREADS: u32 = 64;

/// One operation of [`Quantizer::run_resident`], for timing kernels on device-resident input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    F16,
    Bf16,
    F8E4M3,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
    /// amax pass, then the E4M3 encode with the resulting scale.
    Fp8PerTensor,
    Int8PerChannel {
        cols: usize,
    },
    Int4Groupwise {
        cols: usize,
        group: usize,
    },
}

impl Op {
    /// Kernel name, as in `kernels/cuda/*.cu`.
    pub fn kernel(self) -> &'static str {
        match self {
            Op::F16 => "cast_f32_to_f16",
            Op::Bf16 => "cast_f32_to_bf16",
            Op::F8E4M3 => "cast_f32_to_f8e4m3",
            Op::Q8_0 => "quantize_q8_0_f32",
            Op::Q4_0 => "quantize_q4_0_f32",
            Op::Q4_1 => "quantize_q4_1_f32",
            Op::Q5_0 => "quantize_q5_0_f32",
            Op::Q5_1 => "quantize_q5_1_f32",
            Op::Q4K => "quantize_q4_k_f32",
            Op::Q5K => "quantize_q5_k_f32",
            Op::Q6K => "quantize_q6_k_f32",
            Op::Fp8PerTensor => "quantize_fp8_e4m3_f32",
            Op::Int8PerChannel { .. } => "quantize_int8_per_channel_f32",
            Op::Int4Groupwise { .. } => "quantize_int4_groupwise_f32",
        }
    }

    /// (values, bytes) per block of the ggml types (ggml-common.h).
    fn ggml_block(self) -> Option<(usize, usize)> {
        match self {
            Op::Q8_0 => Some((QK, 34)),
            Op::Q4_0 => Some((QK, 18)),
            Op::Q4_1 => Some((QK, 20)),
            Op::Q5_0 => Some((QK, 22)),
            Op::Q5_1 => Some((QK, 24)),
            Op::Q4K => Some((QK_K, 144)),
            Op::Q5K => Some((QK_K, 176)),
            Op::Q6K => Some((QK_K, 210)),
            _ => None,
        }
    }
}

/// f32 input already copied to the device (see [`Quantizer::upload`]).
pub struct DeviceRows {
    data: CudaSlice<f32>,
}

impl DeviceRows {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The CUDA twins of the CPU kernels, on device 0, with a stream of its own.
///
/// Every method checks lengths first ([`CudaError::InvalidInput`]), copies the input to the
/// device, runs the kernel, checks the kernel's NaN/Inf flag ([`CudaError::NonFinite`]) and only
/// then copies the result into the caller's slices. Results equal the CPU twins bit for bit
/// (codes, blocks and scales); see `kernels/cuda/common.cuh` for how.
pub struct Quantizer {
    dev: Arc<Device>,
    stream: Arc<CudaStream>,
}

impl Quantizer {
    /// Opens device 0 (compiling the kernels on the first call in the process). Never panics:
    /// without a driver, NVRTC or GPU it returns [`CudaError::NoDevice`].
    pub fn new() -> Result<Self, CudaError> {
        let dev = device()?;
        let stream = dev.ctx.new_stream()?;
        Ok(Quantizer { dev, stream })
    }

    /// Device name and compute capability, e.g. `NVIDIA H100 80GB HBM3 (sm_90)`.
    pub fn device_name(&self) -> &str {
        &self.dev.name
    }

    /// Twin of `cpu::cast::f32_to_f16`.
    pub fn f32_to_f16(&self, src: &[f32], dst: &mut [u16]) -> Result<(), CudaError> {
        same_len("f32_to_f16", src.len(), dst.len())?;
        let x = self.upload(src)?;
        let out = self.elementwise::<u16>(Op::F16, &x)?;
        self.download(&out, dst)
    }

    /// Twin of `cpu::cast::f32_to_bf16`.
    pub fn f32_to_bf16(&self, src: &[f32], dst: &mut [u16]) -> Result<(), CudaError> {
        same_len("f32_to_bf16", src.len(), dst.len())?;
        let x = self.upload(src)?;
        let out = self.elementwise::<u16>(Op::Bf16, &x)?;
        self.download(&out, dst)
    }

    /// Twin of `cpu::f8::f32_to_f8e4m3` (saturating E4M3FN, no scale).
    pub fn f32_to_f8e4m3(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        same_len("f32_to_f8e4m3", src.len(), dst.len())?;
        let x = self.upload(src)?;
        let out = self.elementwise::<u8>(Op::F8E4M3, &x)?;
        self.download(&out, dst)
    }

    /// Q8_0 blocks (34 bytes per 32 values), twin of the CPU `quantize_q8_0`.
    pub fn q8_0(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q8_0, src, dst)
    }

    /// Q4_0 blocks (18 bytes per 32 values), twin of the CPU `quantize_q4_0`.
    pub fn q4_0(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q4_0, src, dst)
    }

    /// Q4_1 blocks (20 bytes per 32 values), twin of the CPU `quantize_q4_1`.
    pub fn q4_1(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q4_1, src, dst)
    }

    /// Q5_0 blocks (22 bytes per 32 values), twin of the CPU `quantize_q5_0`.
    pub fn q5_0(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q5_0, src, dst)
    }

    /// Q5_1 blocks (24 bytes per 32 values), twin of the CPU `quantize_q5_1`.
    pub fn q5_1(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q5_1, src, dst)
    }

    /// Q4_K super-blocks (144 bytes per 256 values), twin of the CPU `quantize_q4_k` without
    /// importance weights (llama.cpp `quantize_row_q4_K_ref`).
    pub fn q4_k(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q4K, src, dst)
    }

    /// Q5_K super-blocks (176 bytes per 256 values), twin of the CPU `quantize_q5_k` without
    /// importance weights.
    pub fn q5_k(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q5K, src, dst)
    }

    /// Q6_K super-blocks (210 bytes per 256 values), twin of the CPU `quantize_q6_k` without
    /// importance weights.
    pub fn q6_k(&self, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        self.ggml(Op::Q6K, src, dst)
    }

    /// `max |x|` (0 for empty input), the first pass of per-tensor FP8: the executor reduces it
    /// over all chunks of a tensor, then calls [`Self::fp8_e4m3`] per chunk with
    /// `cpu::fp8_quant::fp8_scale(amax)`.
    pub fn amax(&self, src: &[f32]) -> Result<f32, CudaError> {
        if src.is_empty() {
            return Ok(0.0);
        }
        let x = self.upload(src)?;
        self.amax_resident(&x)
    }

    /// E4M3 codes of `src / scale`, twin of `cpu::fp8_quant::quantize_fp8_rows`.
    pub fn fp8_e4m3(&self, src: &[f32], scale: f32, codes: &mut [u8]) -> Result<(), CudaError> {
        same_len("fp8_e4m3", src.len(), codes.len())?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(CudaError::InvalidInput(format!(
                "fp8 scale must be finite and positive, got {scale}"
            )));
        }
        let x = self.upload(src)?;
        if self.amax_flag(&x)? {
            return Err(CudaError::NonFinite);
        }
        let out = self.fp8_resident(&x, scale)?;
        self.download(&out, codes)
    }

    /// Whole-tensor FP8 in one call: returns the scale `fp8_scale(amax)` and fills `codes`.
    pub fn fp8_e4m3_per_tensor(&self, src: &[f32], codes: &mut [u8]) -> Result<f32, CudaError> {
        same_len("fp8_e4m3_per_tensor", src.len(), codes.len())?;
        if src.is_empty() {
            return Ok(crate::cpu::fp8_quant::fp8_scale(0.0));
        }
        let x = self.upload(src)?;
        let scale = crate::cpu::fp8_quant::fp8_scale(self.amax_resident(&x)?);
        let out = self.fp8_resident(&x, scale)?;
        self.download(&out, codes)?;
        Ok(scale)
    }

    /// Per-row int8 (rows of `cols` values): twin of `cpu::int8::quantize_int8_rows`.
    pub fn int8_per_channel(
        &self,
        src: &[f32],
        cols: usize,
        codes: &mut [i8],
        scales: &mut [f32],
    ) -> Result<(), CudaError> {
        same_len("int8_per_channel codes", src.len(), codes.len())?;
        if cols == 0 || !src.len().is_multiple_of(cols) || src.len() / cols != scales.len() {
            return Err(CudaError::InvalidInput(format!(
                "int8_per_channel: {} values are not {} rows of {cols}",
                src.len(),
                scales.len()
            )));
        }
        let x = self.upload(src)?;
        let (c, s) = self.int8_resident(&x, cols)?;
        self.download(&c, codes)?;
        self.download(&s, scales)
    }

    /// Group-wise int4 codes (one per byte, in [-8, 7]) and `[rows, cols / group]` scales: twin
    /// of `cpu::int4::quantize_int4_group_rows`; pack with `cpu::int4::pack_int4_row_pairs`.
    /// `group` must be a multiple of 32 dividing `cols`.
    pub fn int4_groupwise(
        &self,
        src: &[f32],
        cols: usize,
        group: usize,
        codes: &mut [i8],
        scales: &mut [f32],
    ) -> Result<(), CudaError> {
        same_len("int4_groupwise codes", src.len(), codes.len())?;
        check_int4_shape(src.len(), cols, group)?;
        if src.len() / group != scales.len() {
            return Err(CudaError::InvalidInput(format!(
                "int4_groupwise: {} values in groups of {group} need {} scales, got {}",
                src.len(),
                src.len() / group,
                scales.len()
            )));
        }
        let x = self.upload(src)?;
        let (c, s) = self.int4_resident(&x, group)?;
        self.download(&c, codes)?;
        self.download(&s, scales)
    }

    /// Copies `src` to the device, for [`Self::run_resident`].
    pub fn upload(&self, src: &[f32]) -> Result<DeviceRows, CudaError> {
        Ok(DeviceRows {
            data: self.stream.clone_htod(src)?,
        })
    }

    /// Runs `op` on device-resident input, waits for it and drops the output: the kernel-only
    /// part of a twin, for benchmarks.
    pub fn run_resident(&self, op: Op, x: &DeviceRows) -> Result<(), CudaError> {
        match op {
            Op::F16 | Op::Bf16 => drop(self.elementwise::<u16>(op, x)?),
            Op::F8E4M3 => drop(self.elementwise::<u8>(op, x)?),
            Op::Q8_0 | Op::Q4_0 | Op::Q4_1 | Op::Q5_0 | Op::Q5_1 | Op::Q4K | Op::Q5K | Op::Q6K => {
                check_ggml_len(op, x.len())?;
                drop(self.ggml_resident(op, x)?)
            }
            Op::Fp8PerTensor => {
                let scale = crate::cpu::fp8_quant::fp8_scale(self.amax_resident(x)?);
                drop(self.fp8_resident(x, scale)?)
            }
            Op::Int8PerChannel { cols } => {
                if cols == 0 || !x.len().is_multiple_of(cols) {
                    return Err(CudaError::InvalidInput(format!(
                        "int8_per_channel: {} values are not rows of {cols}",
                        x.len()
                    )));
                }
                drop(self.int8_resident(x, cols)?)
            }
            Op::Int4Groupwise { cols, group } => {
                check_int4_shape(x.len(), cols, group)?;
                drop(self.int4_resident(x, group)?)
            }
        }
        self.stream.synchronize()?;
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Launch helpers: input on the device, output left on the device.
    // ---------------------------------------------------------------------------------------

    fn function(&self, op: Op) -> Result<&CudaFunction, CudaError> {
        self.dev.function(op.kernel())
    }

    fn ggml(&self, op: Op, src: &[f32], dst: &mut [u8]) -> Result<(), CudaError> {
        check_ggml_len(op, src.len())?;
        let (values, block) = op.ggml_block().unwrap_or((1, 0));
        if dst.len() != src.len() / values * block {
            return Err(CudaError::InvalidInput(format!(
                "{}: {} values need {} block bytes, got {}",
                op.kernel(),
                src.len(),
                src.len() / values * block,
                dst.len()
            )));
        }
        let x = self.upload(src)?;
        let out = self.ggml_resident(op, &x)?;
        self.download(&out, dst)
    }

    /// Device memory for a kernel's output, left uninitialised: every kernel writes each byte of
    /// its outputs (whole blocks, every code, every scale), and nothing is read back unless the
    /// kernel ran. Saves a memset pass as large as the output.
    fn output<T: DeviceRepr>(&self, len: usize) -> Result<CudaSlice<T>, CudaError> {
        // SAFETY: see above; `T` is a plain number type, and a zero-length request still gets
        // one element (cudarc cannot allocate zero bytes) that is never read.
        Ok(unsafe { self.stream.alloc::<T>(len.max(1)) }?)
    }

    fn elementwise<T: DeviceRepr>(
        &self,
        op: Op,
        x: &DeviceRows,
    ) -> Result<CudaSlice<T>, CudaError> {
        let n = x.len();
        let mut out = self.output::<T>(n)?;
        if n > 0 {
            let n64 = n as i64;
            let f = self.function(op)?;
            let mut b = self.stream.launch_builder(f);
            b.arg(&x.data).arg(&mut out).arg(&n64);
            // SAFETY: the kernel reads n floats of x and writes n elements of out, both that long.
            unsafe { b.launch(grid_stride(n)) }?;
        }
        Ok(out)
    }

    fn ggml_resident(&self, op: Op, x: &DeviceRows) -> Result<CudaSlice<u8>, CudaError> {
        let (values, block) = op.ggml_block().unwrap_or((1, 0));
        let nb = x.len() / values;
        let mut out = self.output::<u8>(nb * block)?;
        let mut flag = self.stream.alloc_zeros::<u32>(1)?;
        if nb > 0 {
            let nb64 = nb as i64;
            let f = self.function(op)?;
            let mut b = self.stream.launch_builder(f);
            b.arg(&x.data).arg(&mut out).arg(&nb64).arg(&mut flag);
            let cfg = if values == QK {
                warp_per_item(nb)?
            } else {
                thread_per_item(nb)?
            };
            // SAFETY: one warp (32-value types) or one thread (k-quants) per block: reads
            // nb*values floats, writes nb*block bytes.
            unsafe { b.launch(cfg) }?;
        }
        self.check_flag(&flag)?;
        Ok(out)
    }

    /// amax and the NaN/Inf flag of `x` in one pass.
    fn amax_and_flag(&self, x: &DeviceRows) -> Result<(f32, bool), CudaError> {
        let mut amax = self.stream.alloc_zeros::<u32>(1)?;
        let mut flag = self.stream.alloc_zeros::<u32>(1)?;
        if !x.is_empty() {
            let n64 = x.len() as i64;
            let f = self.dev.function("amax_abs_f32")?;
            let mut b = self.stream.launch_builder(f);
            b.arg(&x.data).arg(&n64).arg(&mut amax).arg(&mut flag);
            // SAFETY: reads n floats, writes one u32 to each of amax and flag.
            unsafe { b.launch(grid_stride(x.len())) }?;
        }
        let amax = self.stream.clone_dtoh(&amax)?;
        let flag = self.stream.clone_dtoh(&flag)?;
        Ok((f32::from_bits(amax[0]), flag[0] != 0))
    }

    fn amax_resident(&self, x: &DeviceRows) -> Result<f32, CudaError> {
        match self.amax_and_flag(x)? {
            (_, true) => Err(CudaError::NonFinite),
            (amax, false) => Ok(amax),
        }
    }

    fn amax_flag(&self, x: &DeviceRows) -> Result<bool, CudaError> {
        Ok(self.amax_and_flag(x)?.1)
    }

    fn fp8_resident(&self, x: &DeviceRows, scale: f32) -> Result<CudaSlice<u8>, CudaError> {
        let n = x.len();
        let mut out = self.output::<u8>(n)?;
        if n > 0 {
            let n64 = n as i64;
            let f = self.function(Op::Fp8PerTensor)?;
            let mut b = self.stream.launch_builder(f);
            b.arg(&x.data).arg(&mut out).arg(&n64).arg(&scale);
            // SAFETY: reads n floats, writes n bytes.
            unsafe { b.launch(grid_stride(n)) }?;
        }
        Ok(out)
    }

    fn int8_resident(
        &self,
        x: &DeviceRows,
        cols: usize,
    ) -> Result<(CudaSlice<i8>, CudaSlice<f32>), CudaError> {
        let rows = x.len() / cols;
        let mut codes = self.output::<i8>(x.len())?;
        let mut scales = self.output::<f32>(rows)?;
        let mut flag = self.stream.alloc_zeros::<u32>(1)?;
        if rows > 0 {
            let cols64 = cols as i64;
            let floor = crate::cpu::scale::SCALE_FLOOR;
            let f = self.function(Op::Int8PerChannel { cols })?;
            let mut b = self.stream.launch_builder(f);
            b.arg(&x.data)
                .arg(&mut codes)
                .arg(&mut scales)
                .arg(&cols64)
                .arg(&floor)
                .arg(&mut flag);
            let cfg = LaunchConfig {
                grid_dim: (grid_u32(rows)?, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: one CUDA block per row of `cols` values: reads rows*cols floats, writes as
            // many codes and one scale per row.
            unsafe { b.launch(cfg) }?;
        }
        self.check_flag(&flag)?;
        Ok((codes, scales))
    }

    fn int4_resident(
        &self,
        x: &DeviceRows,
        group: usize,
    ) -> Result<(CudaSlice<i8>, CudaSlice<f32>), CudaError> {
        let ngroups = x.len() / group;
        let mut codes = self.output::<i8>(x.len())?;
        let mut scales = self.output::<f32>(ngroups)?;
        let mut flag = self.stream.alloc_zeros::<u32>(1)?;
        if ngroups > 0 {
            let ng64 = ngroups as i64;
            let group32 = i32::try_from(group)
                .map_err(|_| CudaError::InvalidInput(format!("int4 group {group} too large")))?;
            let floor = crate::cpu::scale::SCALE_FLOOR;
            let f = self.function(Op::Int4Groupwise { cols: 0, group })?;
            let mut b = self.stream.launch_builder(f);
            b.arg(&x.data)
                .arg(&mut codes)
                .arg(&mut scales)
                .arg(&ng64)
                .arg(&group32)
                .arg(&floor)
                .arg(&mut flag);
            // SAFETY: one warp per group: reads ngroups*group floats, writes as many codes and
            // one scale per group.
            unsafe { b.launch(warp_per_item(ngroups)?) }?;
        }
        self.check_flag(&flag)?;
        Ok((codes, scales))
    }

    fn check_flag(&self, flag: &CudaSlice<u32>) -> Result<(), CudaError> {
        if self.stream.clone_dtoh(flag)?[0] != 0 {
            return Err(CudaError::NonFinite);
        }
        Ok(())
    }

    fn download<T: DeviceRepr>(&self, src: &CudaSlice<T>, dst: &mut [T]) -> Result<(), CudaError> {
        if !dst.is_empty() {
            let view = src.slice(..dst.len());
            self.stream.memcpy_dtoh(&view, dst)?;
        }
        self.stream.synchronize()?;
        Ok(())
    }
}

fn same_len(what: &str, src: usize, dst: usize) -> Result<(), CudaError> {
    if src != dst {
        return Err(CudaError::InvalidInput(format!(
            "{what}: {src} input values but room for {dst} outputs"
        )));
    }
    Ok(())
}

fn check_ggml_len(op: Op, n: usize) -> Result<(), CudaError> {
    let (values, _) = op.ggml_block().unwrap_or((1, 0));
    if !n.is_multiple_of(values) {
        return Err(CudaError::InvalidInput(format!(
            "{}: {n} values are not whole blocks of {values}",
            op.kernel()
        )));
    }
    Ok(())
}

fn check_int4_shape(n: usize, cols: usize, group: usize) -> Result<(), CudaError> {
    if group == 0 || !group.is_multiple_of(32) || cols == 0 || !cols.is_multiple_of(group) {
        return Err(CudaError::InvalidInput(format!(
            "int4_groupwise: group {group} must be a multiple of 32 dividing cols {cols}"
        )));
    }
    if !n.is_multiple_of(cols) {
        return Err(CudaError::InvalidInput(format!(
            "int4_groupwise: {n} values are not rows of {cols}"
        )));
    }
    Ok(())
}

fn grid_u32(blocks: usize) -> Result<u32, CudaError> {
    u32::try_from(blocks)
        .map_err(|_| CudaError::InvalidInput(format!("{blocks} CUDA blocks exceed the grid limit")))
}

/// Grid-stride launch over `n` elements.
fn grid_stride(n: usize) -> LaunchConfig {
    let blocks = (n as u64).div_ceil(THREADS as u64).clamp(1, MAX_GRID);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One thread per item (k-quant super-block).
fn thread_per_item(items: usize) -> Result<LaunchConfig, CudaError> {
    Ok(LaunchConfig {
        grid_dim: (grid_u32(items.div_ceil(KQUANT_THREADS as usize))?, 1, 1),
        block_dim: (KQUANT_THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// One warp per item (ggml block or int4 group); 8 items per CUDA block.
fn warp_per_item(items: usize) -> Result<LaunchConfig, CudaError> {
    Ok(LaunchConfig {
        grid_dim: (grid_u32(items.div_ceil((THREADS / 32) as usize))?, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

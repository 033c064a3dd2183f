//! Opening the CUDA device without ever panicking.
//!
//! cudarc (with `dynamic-loading`) loads libcuda and libnvrtc on first use and *panics* when they
//! are missing, so presence is checked first with its `is_culib_present()` (a plain `dlopen`
//! attempt), and the context creation runs under `catch_unwind` as a second guard.

use super::module::{self, KERNELS};
use super::CudaError;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

/// Device 0 with the kernels loaded; one per process.
pub(crate) struct Device {
    pub ctx: Arc<CudaContext>,
    pub name: String,
    _module: Arc<CudaModule>,
    functions: HashMap<&'static str, CudaFunction>,
}

impl Device {
    /// The loaded kernel `name` (one of `module::KERNELS`).
    pub fn function(&self, name: &str) -> Result<&CudaFunction, CudaError> {
        self.functions
            .get(name)
            .ok_or_else(|| CudaError::Driver(format!("kernel {name} not loaded")))
    }
}

/// The process-wide device, opened on first call; the error is cached too (a missing driver
/// does not appear later).
pub(crate) fn device() -> Result<Arc<Device>, CudaError> {
    static DEVICE: OnceLock<Result<Arc<Device>, CudaError>> = OnceLock::new();
    DEVICE.get_or_init(open_guarded).clone()
}

fn open_guarded() -> Result<Arc<Device>, CudaError> {
    // SAFETY: these only try to dlopen the libraries by their usual names and unload them again.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDevice(
            "libcuda.so not found (no NVIDIA driver on this machine)".into(),
        ));
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoDevice(
            "libnvrtc.so not found (install the CUDA NVRTC runtime, or put a libnvrtc.so link to \
             it on LD_LIBRARY_PATH)"
                .into(),
        ));
    }
    catch_unwind(AssertUnwindSafe(open)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA library panicked".into());
        Err(CudaError::NoDevice(why))
    })
}

fn open() -> Result<Arc<Device>, CudaError> {
    let no_device = |e: cudarc::driver::DriverError| CudaError::NoDevice(e.to_string());
    let ctx = CudaContext::new(0).map_err(no_device)?;
    let name = ctx.name().map_err(no_device)?;
    let (major, minor) = ctx.compute_capability().map_err(no_device)?;
    let module = ctx.load_module(module::ptx(major, minor)?)?;
    let mut functions = HashMap::new();
    for name in KERNELS {
        functions.insert(name, module.load_function(name)?);
    }
    Ok(Arc::new(Device {
        ctx,
        name: format!("{name} (sm_{major}{minor})"),
        _module: module,
        functions,
    }))
}

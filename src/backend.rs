//! Backends: ndarray on the CPU (default, tests) and CUDA behind the crate's `cuda` feature.

pub type Cpu = burn::backend::NdArray<f32>;
pub type CpuTrain = burn::backend::Autodiff<Cpu>;

#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda<f32, i32>;
#[cfg(feature = "cuda")]
pub type GpuTrain = burn::backend::Autodiff<Gpu>;

/// Fails early (before any file is written) when `device` needs a feature this binary lacks.
pub fn check_device(device: &str) -> anyhow::Result<()> {
    if device == "cuda" && !cfg!(feature = "cuda") {
        anyhow::bail!("train.device = \"cuda\" needs a binary built with `cargo build --release --features cuda`");
    }
    Ok(())
}

/// Runs `$body` with `$B` bound to the training (autodiff) backend named by `$device`
/// ("cpu" or "cuda") and `$dev` to its device; a generic function is the usual body.
#[macro_export]
macro_rules! with_train_backend {
    ($device:expr, |$B:ident, $dev:ident| $body:expr) => {{
        match $device {
            "cuda" => {
                #[cfg(feature = "cuda")]
                {
                    type $B = $crate::backend::GpuTrain;
                    let $dev = burn::backend::cuda::CudaDevice::default();
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    $crate::backend::check_device("cuda")?;
                    unreachable!("check_device fails without the cuda feature")
                }
            }
            _ => {
                type $B = $crate::backend::CpuTrain;
                let $dev = burn::backend::ndarray::NdArrayDevice::Cpu;
                $body
            }
        }
    }};
}

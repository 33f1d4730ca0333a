//! Where the engine's tensors live. Every tensor the engine makes from host values — initial
//! parameters, data batches, state read from checkpoints, reduced bundles from shared memory,
//! RNC noise — is made through a [`Device`]: built on the host from values whose bits do not
//! depend on the device (DESIGN.md §4.4), then moved. A GPU is then a value of this type, not
//! an edit at every site. Tensors computed from other tensors stay where their inputs are.
//! (gnc's portable kernels are host code: they read and write host memory by definition.)

use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device(tch::Device);

impl Device {
    pub const CPU: Device = Device(tch::Device::Cpu);

    /// The device a worker process was given.
    pub fn new(device: gnc_proto::Device) -> Device {
        match device {
            gnc_proto::Device::Cpu => Device::CPU,
            gnc_proto::Device::Cuda(id) => Device(tch::Device::Cuda(id as usize)),
        }
    }

    /// The device `tensor` lives on.
    pub fn of(tensor: &Tensor) -> Device {
        Device(tensor.device())
    }

    /// libtorch's name for it, for options that take one.
    pub fn tch(self) -> tch::Device {
        self.0
    }

    /// f32 `values` as a tensor of `shape` (made on the CPU in one copy, without
    /// `Tensor::from_slice`'s zero fill first).
    pub fn floats(self, values: &[f32], shape: &[i64]) -> Tensor {
        self.place(gnc_kernels::tensor::from_values(values, shape))
    }

    /// A tensor of `shape` whose values `write` writes in place on the host (no buffer and no
    /// copy in between), then moved here.
    pub fn floats_written(self, shape: &[i64], write: impl FnOnce(&mut [f32])) -> Tensor {
        self.place(gnc_kernels::tensor::written(shape, write))
    }

    /// i64 `values` as a vector (class labels).
    pub fn longs(self, values: &[i64]) -> Tensor {
        self.place(Tensor::from_slice(values))
    }

    pub fn zeros(self, shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, self.0))
    }

    pub fn ones(self, shape: &[i64]) -> Tensor {
        Tensor::ones(shape, (Kind::Float, self.0))
    }

    /// `tensor`, made on the host, on this device.
    pub fn place(self, tensor: Tensor) -> Tensor {
        if tensor.device() == self.0 {
            tensor
        } else {
            tensor.to_device(self.0)
        }
    }
}

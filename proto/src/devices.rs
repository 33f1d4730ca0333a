//! Where a job's worker processes run: `cpu:N` (N processes on the CPU), `cuda:0,1,…` (one
//! process per listed GPU) or `cuda:all` (one per GPU of the machine), as the spec's
//! `parallel.devices`, the daemon's `devices` and `--devices` write it; and the one [`Device`]
//! each worker process computes on. Written as strings everywhere (specs, configs, job
//! records), typed in the code.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A job's worker processes and their devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    /// `cpu:N`: N worker processes on the CPU.
    Cpu(usize),
    /// `cuda:0,1,…`: one worker process per listed GPU.
    Cuda(Vec<u32>),
    /// `cuda:all`: one worker process per GPU of the machine.
    CudaAll,
}

/// The device of one worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(u32),
}

impl Devices {
    /// The number of worker processes, where it does not depend on the machine.
    pub fn processes(&self) -> Option<usize> {
        match self {
            Devices::Cpu(n) => Some(*n),
            Devices::Cuda(ids) => Some(ids.len()),
            Devices::CudaAll => None,
        }
    }

    /// The device of each worker process on a machine whose CUDA devices are `cuda`
    /// ([`cuda_devices`]); an error naming what is missing.
    pub fn resolve(&self, cuda: &[u32]) -> Result<Vec<Device>, String> {
        let none = || {
            format!(
                "{self}: this machine has no CUDA device (no NVIDIA driver lists one in \
                 {NVIDIA_GPUS}); use cpu:N"
            )
        };
        match self {
            Devices::Cpu(n) => Ok(vec![Device::Cpu; *n]),
            Devices::CudaAll if cuda.is_empty() => Err(none()),
            Devices::CudaAll => Ok(cuda.iter().map(|&id| Device::Cuda(id)).collect()),
            Devices::Cuda(_) if cuda.is_empty() => Err(none()),
            Devices::Cuda(ids) => ids
                .iter()
                .map(|&id| {
                    if cuda.contains(&id) {
                        Ok(Device::Cuda(id))
                    } else {
                        Err(format!(
                            "{self}: cuda:{id} does not exist; this machine's CUDA devices are \
                             {}",
                            list(cuda)
                        ))
                    }
                })
                .collect(),
        }
    }
}

/// A device this build of gnc cannot compute on: GPU workers are not built yet (DESIGN.md
/// §8). The one refusal every launcher and worker gives, whatever the placement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{device}: gnc computes on the CPU only so far (GPU workers are not built yet); use cpu:N")]
pub struct DeviceUnavailable {
    pub device: String,
}

impl Device {
    /// `Ok` where this build computes on the device.
    pub fn available(self) -> Result<(), DeviceUnavailable> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(_) => Err(DeviceUnavailable {
                device: self.to_string(),
            }),
        }
    }
}

impl Devices {
    /// The device of each worker process, each one this build computes on (`resolve`, then
    /// [`Device::available`]); the error names the devices as given.
    pub fn resolve_available(&self, cuda: &[u32]) -> Result<Vec<Device>, String> {
        let devices = self.resolve(cuda)?;
        match devices.iter().find_map(|d| d.available().err()) {
            None => Ok(devices),
            Some(_) => Err(DeviceUnavailable {
                device: self.to_string(),
            }
            .to_string()),
        }
    }
}

fn list(ids: &[u32]) -> String {
    ids.iter()
        .map(|id| format!("cuda:{id}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the NVIDIA driver lists the machine's GPUs, one directory each.
pub const NVIDIA_GPUS: &str = "/proc/driver/nvidia/gpus";

/// The machine's CUDA devices, 0..n, as the NVIDIA driver lists them (no CUDA library is
/// loaded: the supervisor links none); none without the driver.
pub fn cuda_devices() -> Vec<u32> {
    cuda_devices_in(Path::new(NVIDIA_GPUS))
}

fn cuda_devices_in(dir: &Path) -> Vec<u32> {
    let count = std::fs::read_dir(dir).map_or(0, |entries| entries.flatten().count());
    (0..count as u32).collect()
}

impl FromStr for Devices {
    type Err = String;

    fn from_str(text: &str) -> Result<Devices, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not a device list ({why}); write cpu:N with N >= 1 (e.g. cpu:4), \
                 cuda:I,J,… (e.g. cuda:0,1) or cuda:all"
            )
        };
        if let Some(count) = text.strip_prefix("cpu:") {
            return match count.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Devices::Cpu(n)),
                _ => Err(bad("the CPU process count must be a whole number >= 1")),
            };
        }
        let Some(ids) = text.strip_prefix("cuda:") else {
            return Err(bad("it names neither cpu nor cuda"));
        };
        if ids == "all" {
            return Ok(Devices::CudaAll);
        }
        let mut parsed = Vec::new();
        for id in ids.split(',') {
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| bad(&format!("{id:?} is not a GPU index")))?;
            if parsed.contains(&id) {
                return Err(bad(&format!("cuda:{id} is listed twice")));
            }
            parsed.push(id);
        }
        Ok(Devices::Cuda(parsed))
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Devices::Cpu(n) => write!(f, "cpu:{n}"),
            Devices::CudaAll => write!(f, "cuda:all"),
            Devices::Cuda(ids) => {
                let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                write!(f, "cuda:{}", ids.join(","))
            }
        }
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(text: &str) -> Result<Device, String> {
        if text == "cpu" {
            return Ok(Device::Cpu);
        }
        text.strip_prefix("cuda:")
            .and_then(|id| id.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("{text:?} is not a device; write cpu or cuda:I"))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(id) => write!(f, "cuda:{id}"),
        }
    }
}

/// Written as the string users write, so specs, configs and job records keep their text.
impl Serialize for Devices {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Devices, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_parse_and_print_as_written() {
        for (text, devices) in [
            ("cpu:4", Devices::Cpu(4)),
            ("cuda:0,1", Devices::Cuda(vec![0, 1])),
            ("cuda:3", Devices::Cuda(vec![3])),
            ("cuda:all", Devices::CudaAll),
        ] {
            assert_eq!(text.parse::<Devices>(), Ok(devices.clone()));
            assert_eq!(devices.to_string(), text);
            let json = serde_json::to_string(&devices).unwrap();
            assert_eq!(json, format!("{text:?}"));
            assert_eq!(serde_json::from_str::<Devices>(&json).unwrap(), devices);
        }
        for bad in [
            "cpu:0", "cpu:", "gpu:2", "4", "cpu:-1", "cuda:", "cuda:x", "cuda:0,0", "cuda:0,",
        ] {
            assert!(bad.parse::<Devices>().is_err(), "{bad}");
        }
        assert_eq!("cuda:2".parse::<Device>(), Ok(Device::Cuda(2)));
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cuda_devices_that_the_machine_lacks_are_refused_naming_them() {
        let cuda = |t: &str| t.parse::<Devices>().unwrap();
        let err = cuda("cuda:0").resolve(&[]).unwrap_err();
        assert!(
            err.contains("no CUDA device") && err.contains("cpu:N"),
            "{err}"
        );
        let err = cuda("cuda:all").resolve(&[]).unwrap_err();
        assert!(err.contains("no CUDA device"), "{err}");
        let err = cuda("cuda:0,2").resolve(&[0, 1]).unwrap_err();
        assert!(err.contains("cuda:2 does not exist") && err.contains("cuda:0, cuda:1"));
        assert_eq!(
            cuda("cuda:all").resolve(&[0, 1]),
            Ok(vec![Device::Cuda(0), Device::Cuda(1)])
        );
        assert_eq!(cuda("cpu:2").resolve(&[]), Ok(vec![Device::Cpu; 2]));
    }

    #[test]
    fn the_driver_lists_one_directory_per_gpu() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            cuda_devices_in(&dir.path().join("absent")),
            Vec::<u32>::new()
        );
        for bus in ["0000:01:00.0", "0000:41:00.0"] {
            std::fs::create_dir(dir.path().join(bus)).unwrap();
        }
        assert_eq!(cuda_devices_in(dir.path()), [0, 1]);
    }
}

//! Reproducibility levels, the CPU environment each pins, and the key a run's bits depend on.
//!
//! - `portable` (the default): the same bits on every x86-64 machine with AVX2 and FMA, Intel
//!   or AMD. libtorch's kernels are pinned where their results do not depend on the vendor
//!   (ATen's own kernels at the AVX2 level, oneDNN's convolutions capped at AVX2), and gnc
//!   computes itself what the vendor libraries decide by CPU vendor: the linear layers' matrix
//!   products (MKL's sgemm) and elementwise square roots (MKL's vector math). MKL ignores its
//!   reproducibility settings on non-Intel processors, so no setting of it makes them agree.
//! - `native`: libtorch's fastest kernels for this machine (AVX-512 where it has it, MKL's own
//!   choice of code path). The same bits across thread and process counts and restarts, on
//!   machines of the same CPU model with the same libraries.
//!
//! Both use one intra-op thread per compute thread, so no library reduction depends on a
//! thread count.

use serde::{Deserialize, Serialize};

/// The spec's `reproducibility` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Portable,
    Native,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Native => "native",
        }
    }

    /// The environment variables a process of this level starts with. The libraries read
    /// them as they load or first run, before `main` could change them (and changing the
    /// environment of a running process is unsound once threads exist), so the launcher sets
    /// them ([`Level::apply`]) and the process checks them ([`Level::check_environment`]).
    pub fn environment(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Level::Portable => &[
                ("OMP_NUM_THREADS", "1"),
                ("MKL_NUM_THREADS", "1"),
                ("ATEN_CPU_CAPABILITY", "avx2"),
                ("ONEDNN_MAX_CPU_ISA", "AVX2"),
                // Pins MKL's remaining uses on Intel; MKL ignores it elsewhere, which is why
                // the portable level keeps its results out of the training arithmetic.
                ("MKL_CBWR", "AVX2,STRICT"),
            ],
            Level::Native => &[
                ("OMP_NUM_THREADS", "1"),
                ("MKL_NUM_THREADS", "1"),
                // Code path of MKL's choosing, but fixed from run to run on one machine.
                ("MKL_CBWR", "AUTO"),
            ],
        }
    }

    /// Variables the other level sets and this one must clear (a parent's setting would
    /// otherwise leak into a native process).
    pub fn cleared(self) -> &'static [&'static str] {
        match self {
            Level::Portable => &[],
            Level::Native => &["ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"],
        }
    }
}

impl Level {
    /// Launcher side: gives `command` this level's environment.
    pub fn apply(self, command: &mut std::process::Command) {
        for key in self.cleared() {
            command.env_remove(key);
        }
        command.envs(self.environment().iter().copied());
    }

    /// Process side: whether this process started with this level's environment; the error
    /// names the first variable that differs.
    pub fn check_environment(self) -> Result<(), String> {
        self.check_in(|key| std::env::var(key).ok())
    }

    fn check_in(self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let fix = "start gnc's training processes through gncctl (or gncd), which sets it";
        for (key, wanted) in self.environment() {
            match var(key) {
                Some(value) if value == *wanted => {}
                Some(value) => {
                    return Err(format!(
                        "{key}={value} in the environment, but the {self} reproducibility \
                         level computes with {key}={wanted}: {fix}"
                    ));
                }
                None => {
                    return Err(format!(
                        "{key} is not set, but the {self} reproducibility level computes with \
                         {key}={wanted}: {fix}"
                    ));
                }
            }
        }
        if let Some(key) = self.cleared().iter().find(|key| var(key).is_some()) {
            return Err(format!(
                "{key} is set, but the {self} reproducibility level computes without it: {fix}"
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        match s {
            "portable" => Ok(Level::Portable),
            "native" => Ok(Level::Native),
            _ => Err(format!(
                "unknown reproducibility level {s:?}; use \"portable\" or \"native\""
            )),
        }
    }
}

/// The processor, as the bits of a native run depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// `GenuineIntel`, `AuthenticAMD`, …
    pub vendor: String,
    pub family: u32,
    pub model: u32,
    /// The marketing name, for people.
    pub name: String,
    /// The widest vector ISA libtorch's own kernels use at native level: `avx512`, `avx2`
    /// or `default`.
    pub isa: String,
}

impl Cpu {
    /// This machine's processor, from `/proc/cpuinfo` and CPUID.
    pub fn detect() -> Cpu {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| {
            info.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == key).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        Cpu {
            vendor: field("vendor_id"),
            family: field("cpu family").parse().unwrap_or(0),
            model: field("model").parse().unwrap_or(0),
            name: field("model name"),
            isa: native_isa().into(),
        }
    }

    /// "an AMD EPYC (AuthenticAMD family 25 model 1)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({} family {} model {})",
            self.name, self.vendor, self.family, self.model
        )
    }
}

/// What ATen picks by itself (its rule: AVX-512 needs F, BW, VL and DQ; AVX2 needs FMA too).
fn native_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
            return "avx512";
        }
        if has!("avx2") && has!("fma") {
            return "avx2";
        }
    }
    "default"
}

/// Whether this machine can compute a portable run: AVX2 and FMA.
pub fn portable_supported() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            return Ok(());
        }
    }
    Err("this CPU lacks AVX2 or FMA, which gnc's portable level is defined on".into())
}

/// Everything a run's bits depend on besides its spec: recorded in `result.json` and in every
/// checkpoint manifest, compared by `gncctl verify` and `gncctl doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub level: Level,
    pub cpu: Cpu,
    /// The ISA libtorch's kernels were pinned to (`avx2`), or the native one.
    pub isa: String,
    pub libtorch: String,
    pub mkl: String,
    pub onednn: String,
    pub gnc: String,
    pub gnc_commit: String,
    /// The kind of device the run computed on (`cpu`); absent, and so `cpu`, in keys of
    /// earlier versions.
    #[serde(default = "cpu_kind")]
    pub device: String,
}

fn cpu_kind() -> String {
    "cpu".into()
}

impl Key {
    /// Why a run recorded under `self` may not give the same bits under `here`, in words;
    /// empty when nothing that changes bits differs.
    pub fn differences(&self, here: &Key) -> Vec<String> {
        let mut out = Vec::new();
        if self.level != here.level {
            out.push(format!(
                "recorded at the {} level; this run uses the {} level",
                self.level, here.level
            ));
            return out;
        }
        if self.device != here.device {
            out.push(format!(
                "recorded on {}; this run computes on {}",
                self.device, here.device
            ));
        }
        if self.level == Level::Native && self.cpu != here.cpu {
            out.push(format!(
                "recorded in native mode on {}; this machine is {}",
                self.cpu.describe(),
                here.cpu.describe()
            ));
        }
        for (what, a, b) in [
            ("libtorch", &self.libtorch, &here.libtorch),
            ("MKL", &self.mkl, &here.mkl),
            ("oneDNN", &self.onednn, &here.onednn),
        ] {
            if a != b {
                out.push(format!("recorded with {what} {a}; this machine has {b}"));
            }
        }
        if self.gnc != here.gnc {
            out.push(format!(
                "recorded by gnc {} ({}); this is gnc {} ({})",
                self.gnc, self.gnc_commit, here.gnc, here.gnc_commit
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launched_process_has_its_levels_environment_and_the_check_names_what_differs() {
        for level in [Level::Portable, Level::Native] {
            let mut command = std::process::Command::new("env");
            command.env("ATEN_CPU_CAPABILITY", "avx512");
            level.apply(&mut command);
            let out = String::from_utf8(command.output().unwrap().stdout).unwrap();
            let vars: std::collections::HashMap<&str, &str> =
                out.lines().filter_map(|l| l.split_once('=')).collect();
            level
                .check_in(|key| vars.get(key).map(|v| v.to_string()))
                .unwrap();
        }
        // The portable environment with `key` changed to `value`.
        fn with(key: &'static str, value: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
            move |k| {
                if k == key {
                    return value.map(str::to_string);
                }
                let mut pinned = Level::Portable.environment().iter();
                pinned.find(|(p, _)| *p == k).map(|(_, v)| v.to_string())
            }
        }
        let e = Level::Portable
            .check_in(with("ATEN_CPU_CAPABILITY", Some("avx512")))
            .unwrap_err();
        assert!(
            e.contains("ATEN_CPU_CAPABILITY=avx512") && e.contains("gncctl"),
            "{e}"
        );
        let e = Level::Portable
            .check_in(with("MKL_CBWR", None))
            .unwrap_err();
        assert!(e.contains("MKL_CBWR is not set"), "{e}");
        // Native clears what portable pins.
        let e = Level::Native
            .check_in(|k| match k {
                "MKL_CBWR" => Some("AUTO".into()),
                "ONEDNN_MAX_CPU_ISA" => Some("AVX2".into()),
                "ATEN_CPU_CAPABILITY" => None,
                _ => Some("1".into()),
            })
            .unwrap_err();
        assert!(e.contains("ONEDNN_MAX_CPU_ISA is set"), "{e}");
    }

    fn key(level: Level, vendor: &str) -> Key {
        Key {
            level,
            cpu: Cpu {
                vendor: vendor.into(),
                family: 6,
                model: 207,
                name: format!("{vendor} CPU"),
                isa: "avx512".into(),
            },
            isa: "avx2".into(),
            libtorch: "2.11.0".into(),
            mkl: "2024.2".into(),
            onednn: "3.10.2".into(),
            gnc: "0.1.0".into(),
            gnc_commit: "abc".into(),
            device: "cpu".into(),
        }
    }

    #[test]
    fn portable_keys_ignore_the_cpu_and_native_keys_do_not() {
        let (intel, amd) = (
            key(Level::Portable, "GenuineIntel"),
            key(Level::Portable, "AuthenticAMD"),
        );
        assert!(intel.differences(&amd).is_empty());
        let (intel, amd) = (
            key(Level::Native, "GenuineIntel"),
            key(Level::Native, "AuthenticAMD"),
        );
        let d = intel.differences(&amd);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].starts_with("recorded in native mode on GenuineIntel CPU"),
            "{d:?}"
        );
        assert!(d[0].contains("this machine is AuthenticAMD CPU"), "{d:?}");
    }

    #[test]
    fn another_level_or_library_is_named() {
        let a = key(Level::Native, "AuthenticAMD");
        let b = key(Level::Portable, "AuthenticAMD");
        assert_eq!(
            a.differences(&b),
            ["recorded at the native level; this run uses the portable level"]
        );
        let mut c = key(Level::Portable, "AuthenticAMD");
        c.libtorch = "2.12.0".into();
        assert_eq!(
            b.differences(&c),
            ["recorded with libtorch 2.11.0; this machine has 2.12.0"]
        );
        let mut gpu = key(Level::Portable, "AuthenticAMD");
        gpu.device = "cuda".into();
        assert_eq!(
            b.differences(&gpu),
            ["recorded on cpu; this run computes on cuda"]
        );
        // Keys written before the device kind was recorded read as `cpu`.
        let mut old = serde_json::to_value(&b).unwrap();
        old.as_object_mut().unwrap().remove("device");
        let old: Key = serde_json::from_value(old).unwrap();
        assert!(old.differences(&b).is_empty());
    }

    #[test]
    fn levels_parse_and_print() {
        assert_eq!("native".parse::<Level>(), Ok(Level::Native));
        assert!(
            "fast"
                .parse::<Level>()
                .unwrap_err()
                .contains("\"portable\"")
        );
        assert_eq!(Level::default().to_string(), "portable");
    }
}

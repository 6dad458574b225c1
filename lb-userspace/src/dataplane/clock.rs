//! The data plane's clock: jiffies, as `bpf_jiffies64` reads them.
//!
//! Leases and idle timeouts live in the maps as jiffies, the one clock an XDP program reads for
//! free. Userspace has no direct view of jiffies, so it runs the `xlb_clock` program (which
//! writes them into its test frame) and measures the tick rate once at load.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::names;

/// Tick rates Linux is built with (CONFIG_HZ).
const KNOWN_HZ: [u32; 5] = [100, 250, 300, 500, 1000];
/// Ticks counted to measure the rate: 10 ms at 1000 Hz, 100 ms at 100 Hz.
const CALIBRATION_TICKS: u64 = 10;
const CALIBRATION_LIMIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    hz: u32,
}

impl Clock {
    /// Loads `xlb_clock` and measures the tick rate.
    pub(super) fn load(ebpf: &mut Ebpf) -> Result<Self> {
        let program: &mut Xdp = ebpf
            .program_mut(names::CLOCK_PROGRAM)
            .ok_or_else(|| anyhow!("the XDP object has no program {}", names::CLOCK_PROGRAM))?
            .try_into()?;
        program
            .load()
            .context("the kernel refused the clock program")?;
        let hz = measure_hz(|| read_jiffies(ebpf))?;
        log::debug!("data plane clock: {hz} Hz");
        Ok(Self { hz })
    }

    pub fn hz(&self) -> u32 {
        self.hz
    }

    /// A duration in ticks, rounded up: a lease or timeout never ends early.
    pub fn ticks(&self, d: Duration) -> u64 {
        (d.as_nanos() * u128::from(self.hz)).div_ceil(1_000_000_000) as u64
    }
}

/// Jiffies as a function of CLOCK_MONOTONIC (both come from the kernel's timekeeping, so they
/// do not drift apart), for a thread that cannot run the clock program itself.
#[derive(Clone, Copy, Debug)]
pub struct JiffiesClock {
    pub clock: Clock,
    at: Instant,
    jiffies: u64,
}

impl JiffiesClock {
    pub fn new(clock: Clock, jiffies: u64) -> Self {
        Self {
            clock,
            at: Instant::now(),
            jiffies,
        }
    }

    /// The data plane's jiffies now, give or take a tick.
    pub fn now(&self) -> u64 {
        self.jiffies + self.clock.ticks(self.at.elapsed())
    }
}

/// The current jiffies, read by running `xlb_clock` once.
pub(super) fn read_jiffies(ebpf: &Ebpf) -> Result<u64> {
    let program: &Xdp = ebpf
        .program(names::CLOCK_PROGRAM)
        .ok_or_else(|| anyhow!("no program {}", names::CLOCK_PROGRAM))?
        .try_into()?;
    // The kernel wants at least an Ethernet header's worth of frame.
    let frame = [0u8; 64];
    let mut out = [0u8; 64];
    program
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        })
        .context("running the clock program")?;
    let mut word = [0u8; 8];
    word.copy_from_slice(&out[..8]);
    Ok(u64::from_ne_bytes(word))
}

/// Times `CALIBRATION_TICKS` ticks from one tick edge to another and snaps the rate to the
/// nearest rate Linux is built with.
fn measure_hz(mut read: impl FnMut() -> Result<u64>) -> Result<u32> {
    let deadline = Instant::now() + CALIBRATION_LIMIT;
    let first = read()?;
    let mut wait_past = |j: u64| -> Result<(u64, Instant)> {
        loop {
            let now = read()?;
            if now > j {
                return Ok((now, Instant::now()));
            }
            if Instant::now() > deadline {
                bail!("jiffies did not advance within {CALIBRATION_LIMIT:?}");
            }
            thread::sleep(Duration::from_micros(200));
        }
    };
    let (start, t0) = wait_past(first)?;
    let (end, t1) = wait_past(start + CALIBRATION_TICKS - 1)?;
    let measured = (end - start) as f64 / (t1 - t0).as_secs_f64();
    Ok(snap_hz(measured))
}

fn snap_hz(measured: f64) -> u32 {
    KNOWN_HZ
        .into_iter()
        .min_by(|a, b| {
            let da = (f64::from(*a) - measured).abs();
            let db = (f64::from(*b) - measured).abs();
            da.total_cmp(&db)
        })
        .filter(|hz| (f64::from(*hz) - measured).abs() < f64::from(*hz) * 0.2)
        .unwrap_or(measured.round().max(1.0) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_snap_to_what_linux_is_built_with() {
        assert_eq!(snap_hz(247.0), 250);
        assert_eq!(snap_hz(1013.0), 1000);
        assert_eq!(snap_hz(99.0), 100);
        assert_eq!(snap_hz(2000.0), 2000);
    }

    #[test]
    fn ticks_round_up() {
        let c = Clock { hz: 250 };
        assert_eq!(c.ticks(Duration::from_millis(4)), 1);
        assert_eq!(c.ticks(Duration::from_millis(5)), 2);
        assert_eq!(c.ticks(Duration::from_secs(900)), 225_000);
    }

    #[test]
    fn a_simulated_250_hz_clock_measures_250() {
        let start = Instant::now();
        let hz = measure_hz(|| Ok((start.elapsed().as_micros() / 4000) as u64)).unwrap();
        assert_eq!(hz, 250);
    }
}

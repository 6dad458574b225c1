//! The XDP program and its maps: loading, attaching, pinning, and typed access to every map.
//!
//! Nothing but the reconciler writes to these maps; the status path only reads the counters.

mod clock;
pub mod pins;
mod stats;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
pub use clock::{Clock, JiffiesClock};
use lb_common::{
    Addr, Backend, CLAIM_STATIC, Claim, Control, Counters, DEFAULT_FLOW_TABLE_SIZE, MaglevTable,
    VipAddrValue, VipSlot, names,
};
use pins::{LINK_PIN, MAP_NAMES, PROGRAM_PIN};
pub use stats::{BackendStats, Stats, VipStats};

use crate::reconcile::CounterKind;

/// The XDP programs, built by build.rs with the nightly toolchain and bpf-linker.
pub static XLB_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xlb"));
/// The benchmark floor program (swap MACs, XDP_TX).
pub static FLOOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-floor"));

/// The loaded program and handles on each of its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    vips: Array<MapData, VipSlot>,
    vip_addrs: HashMap<MapData, Addr, VipAddrValue>,
    claims: Array<MapData, Claim>,
    /// Another descriptor of the claims map, for [`Dataplane::claims_handle`].
    claims_fd: std::os::fd::OwnedFd,
    tables: Array<MapData, MaglevTable>,
    backends: Array<MapData, Backend>,
    tx_ports: DevMapHash<MapData>,
    control: Array<MapData, Control>,
    vip_stats: PerCpuArray<MapData, Counters>,
    backend_stats: PerCpuArray<MapData, Counters>,
    outcomes: PerCpuArray<MapData, u64>,
    flow_events: PerCpuArray<MapData, u64>,
    clock: Clock,
    pin_dir: Option<PathBuf>,
    attached: Option<String>,
}

/// Choices made when the program is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Entries of the flow table (connection tracking). A pinned table keeps its size.
    pub flow_table_size: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
        }
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// Removes pins whose layout differs from what this program declares (left by another
/// version): key, value or entry count. Their contents are lost, which costs a restart its
/// hitlessness, never its correctness. The flow table's size is the operator's (a pinned one
/// keeps it), so only its key and value are compared.
fn drop_incompatible_pins(dir: &Path) -> Result<()> {
    let object = aya_obj::Object::parse(XLB_OBJECT).context("parsing the XDP object")?;
    for name in MAP_NAMES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let declared = object
            .maps
            .get(name)
            .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?;
        let fits = match aya::maps::MapInfo::from_pin(&path) {
            Ok(pinned) => {
                pinned.key_size() == declared.key_size()
                    && pinned.value_size() == declared.value_size()
                    && (name == names::FLOWS || pinned.max_entries() == declared.max_entries())
            }
            Err(_) => false,
        };
        if !fits {
            log::warn!(
                "{}: pinned by an xlb with another map layout; replacing it",
                path.display()
            );
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}

impl Dataplane {
    /// Loads the program. With `pin_dir`, every map lives pinned there: maps already pinned
    /// (by a previous xlb) are reused with their contents, the others are created and pinned.
    pub fn load(pin_dir: Option<&Path>, options: LoadOptions) -> Result<Self> {
        bump_memlock_rlimit();
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(names::FLOWS, options.flow_table_size.max(1));
        let paths: Vec<(&str, PathBuf)> = match pin_dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .with_context(|| format!("creating pin directory {}", dir.display()))?;
                drop_incompatible_pins(dir)?;
                MAP_NAMES.iter().map(|n| (*n, dir.join(n))).collect()
            }
            None => Vec::new(),
        };
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(XLB_OBJECT).context("loading the XDP object")?;
        let program: &mut Xdp = ebpf
            .program_mut(names::PROGRAM)
            .ok_or_else(|| anyhow!("the XDP object has no program {}", names::PROGRAM))?
            .try_into()?;
        program
            .load()
            .context("the kernel refused the XDP program")?;
        if let Some(dir) = pin_dir {
            let prog_pin = dir.join(PROGRAM_PIN);
            // A pin left by a crashed xlb is replaced by this program.
            let _ = fs::remove_file(&prog_pin);
            program
                .pin(&prog_pin)
                .with_context(|| format!("pinning the program at {}", prog_pin.display()))?;
        }
        let clock = Clock::load(&mut ebpf)?;
        Ok(Self {
            vips: take(&mut ebpf, names::VIPS)?,
            vip_addrs: take(&mut ebpf, names::VIP_ADDRS)?,
            tables: take(&mut ebpf, names::TABLES)?,
            backends: take(&mut ebpf, names::BACKENDS)?,
            tx_ports: take(&mut ebpf, names::TX_PORTS)?,
            control: take(&mut ebpf, names::CONTROL)?,
            claims_fd: {
                use std::os::fd::AsFd as _;
                let map = ebpf
                    .map(names::CLAIMS)
                    .ok_or_else(|| anyhow!("the XDP object has no map {}", names::CLAIMS))?;
                let aya::maps::Map::Array(data) = map else {
                    bail!("map {} is not an array", names::CLAIMS);
                };
                data.fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .context("duplicating the claims map")?
            },
            claims: take(&mut ebpf, names::CLAIMS)?,
            vip_stats: take(&mut ebpf, names::VIP_STATS)?,
            backend_stats: take(&mut ebpf, names::BACKEND_STATS)?,
            outcomes: take(&mut ebpf, names::OUTCOMES)?,
            flow_events: take(&mut ebpf, names::FLOW_EVENTS)?,
            clock,
            ebpf,
            pin_dir: pin_dir.map(Path::to_path_buf),
            attached: None,
        })
    }

    pub fn program(&mut self) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(names::PROGRAM)
            .ok_or_else(|| anyhow!("no program {}", names::PROGRAM))?
            .try_into()?)
    }

    /// What the pinned maps hold (left by a previous xlb on this interface).
    pub fn pinned_state(&self) -> Result<crate::reconcile::PinnedState> {
        let mut state = crate::reconcile::PinnedState {
            control: self.control()?,
            ..Default::default()
        };
        for slot in self.vips.iter() {
            state.vip_slots.push(slot.context("reading the VIP table")?);
        }
        for entry in self.vip_addrs.iter() {
            state
                .vip_addrs
                .push(entry.context("reading the VIP address map")?);
        }
        state.static_claim = self.claim(CLAIM_STATIC)?;
        for (id, backend) in self.backends.iter().enumerate() {
            let backend = backend.context("reading the backend map")?;
            state.max_generation = state.max_generation.max(backend.generation);
            if backend.flags & lb_common::BACKEND_F_VALID != 0 {
                state.backends.push((id as u32, backend));
            }
        }
        Ok(state)
    }

    /// The clock the data plane measures leases and idle flows in.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The data plane's current time, in [`Clock`] ticks.
    pub fn now(&self) -> Result<u64> {
        clock::read_jiffies(&self.ebpf)
    }

    /// The data plane's clock, readable from any thread.
    pub fn jiffies_clock(&self) -> Result<JiffiesClock> {
        Ok(JiffiesClock::new(self.clock, self.now()?))
    }

    /// Attaches the program to `interface`. With a pin directory the link is pinned too; a link
    /// already pinned there (a previous xlb) gets this program swapped in atomically instead.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<()> {
        let pin_dir = self.pin_dir.clone();
        let program = self.program()?;
        if let Some(path) = pin_dir.as_ref().map(|d| d.join(LINK_PIN))
            && path.exists()
        {
            match PinnedLink::from_pin(&path) {
                Ok(pinned) => {
                    let link = XdpLink::try_from(FdLink::from(pinned))
                        .context("the pinned link is not an XDP link")?;
                    program
                        .attach_to_link(link)
                        .context("replacing the program of the pinned XDP link")?;
                    log::info!(
                        "took over the pinned XDP link on {interface}: program replaced in place"
                    );
                    self.attached = Some(interface.to_string());
                    return Ok(());
                }
                Err(e) => {
                    log::warn!("ignoring unusable pinned link {}: {e}", path.display());
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let link_id = program
            .attach(interface, mode)
            .with_context(|| format!("attaching XDP ({mode:?}) to {interface}"))?;
        if let Some(dir) = pin_dir {
            let link = program.take_link(link_id)?;
            let link = FdLink::try_from(link)
                .context("this kernel attaches XDP without bpf_link; it cannot be pinned")?;
            let path = dir.join(LINK_PIN);
            let _ = fs::remove_file(&path);
            link.pin(&path)
                .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
        }
        self.attached = Some(interface.to_string());
        Ok(())
    }

    /// Detaches the program and removes every pin: what a clean stop leaves behind is nothing.
    /// The caller holds the instance lock, so every pin here is its own.
    pub fn shutdown(self) -> Result<()> {
        if let Some(dir) = &self.pin_dir {
            // The pinned link holds the attachment; removing the last reference detaches.
            pins::remove_pin_set(dir)?;
        }
        drop(self);
        Ok(())
    }

    pub fn set_control(&mut self, control: Control) -> Result<()> {
        self.control
            .set(0, control, 0)
            .context("writing the control entry")
    }

    pub fn control(&self) -> Result<Control> {
        self.control.get(&0, 0).context("reading the control entry")
    }

    pub fn claim(&self, index: u32) -> Result<Claim> {
        self.claims
            .get(&index, 0)
            .with_context(|| format!("reading claim {index}"))
    }

    pub fn set_claim(&mut self, index: u32, claim: Claim) -> Result<()> {
        self.claims
            .set(index, claim, 0)
            .with_context(|| format!("writing claim {index}"))
    }

    /// A handle on the claims map of its own, for the VRRP thread: each VRRP instance writes
    /// only its own entry, so it never contends with the reconciler.
    pub fn claims_handle(&self) -> Result<Claims> {
        let fd = self
            .claims_fd
            .try_clone()
            .context("duplicating the claims map")?;
        let data = MapData::from_fd(fd).context("opening the claims map")?;
        Ok(Claims(
            Array::try_from(aya::maps::Map::Array(data)).context("the claims map")?,
        ))
    }

    /// Lets backends behind `ifindex` be reached by redirect.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("adding ifindex {ifindex} to the devmap"))
    }

    pub fn stats(&self) -> Result<Stats> {
        stats::read(stats::CounterMaps {
            vips: &self.vips,
            control: &self.control,
            backends: &self.backends,
            vip_stats: &self.vip_stats,
            backend_stats: &self.backend_stats,
            outcomes: &self.outcomes,
            flow_events: &self.flow_events,
        })
    }
}

fn nr_cpus() -> Result<usize> {
    aya::util::nr_cpus().map_err(|(path, e)| anyhow!("reading {path}: {e}"))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones use memcg and ignore it.
fn bump_memlock_rlimit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a plain syscall on a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels with memcg accounting");
    }
}

impl crate::reconcile::MapWriter for Dataplane {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        self.backends
            .set(id, backend, 0)
            .with_context(|| format!("writing backend {id}"))
    }

    fn write_table(&mut self, index: u32, table: &MaglevTable) -> Result<()> {
        self.tables
            .set(index, table, 0)
            .with_context(|| format!("writing Maglev table {index}"))
    }

    fn write_vip_slot(&mut self, index: u32, slot: &VipSlot) -> Result<()> {
        self.vips
            .set(index, slot, 0)
            .with_context(|| format!("writing VIP table slot {index}"))
    }

    fn set_vip_addr(&mut self, addr: &Addr, value: VipAddrValue) -> Result<()> {
        self.vip_addrs
            .insert(addr, value, 0)
            .context("writing a VIP address")
    }

    fn remove_vip_addr(&mut self, addr: &Addr) -> Result<()> {
        self.vip_addrs
            .remove(addr)
            .context("removing a VIP address")
    }

    fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        Dataplane::add_tx_port(self, ifindex)
    }

    fn set_control(&mut self, control: &Control) -> Result<()> {
        Dataplane::set_control(self, *control)
    }

    fn set_claim(&mut self, index: u32, claim: &Claim) -> Result<()> {
        Dataplane::set_claim(self, index, *claim)
    }

    fn reset_counters(&mut self, kind: CounterKind, index: u32) -> Result<()> {
        let map = match kind {
            CounterKind::Vip => &mut self.vip_stats,
            CounterKind::Backend => &mut self.backend_stats,
        };
        let zeros = PerCpuValues::try_from(vec![Counters::default(); nr_cpus()?])
            .context("per-CPU counters")?;
        map.set(index, zeros, 0)
            .with_context(|| format!("resetting {kind:?} counters {index}"))
    }

    fn fold_counters(&mut self, backend_id: u32, vip_id: u32) -> Result<()> {
        let from = self
            .backend_stats
            .get(&backend_id, 0)
            .with_context(|| format!("reading backend counters {backend_id}"))?;
        let into = self
            .vip_stats
            .get(&vip_id, 0)
            .with_context(|| format!("reading VIP counters {vip_id}"))?;
        let sums: Vec<Counters> = into
            .iter()
            .zip(from.iter())
            .map(|(v, b)| Counters {
                packets: v.packets + b.packets,
                bytes: v.bytes + b.bytes,
            })
            .collect();
        let sums = PerCpuValues::try_from(sums).context("per-CPU counters")?;
        self.vip_stats
            .set(vip_id, sums, 0)
            .with_context(|| format!("writing VIP counters {vip_id}"))?;
        self.reset_counters(CounterKind::Backend, backend_id)
    }
}

/// The claims map, as the VRRP thread holds it.
pub struct Claims(Array<MapData, Claim>);

impl Claims {
    pub fn set(&mut self, index: u32, claim: Claim) -> Result<()> {
        self.0
            .set(index, claim, 0)
            .with_context(|| format!("writing claim {index}"))
    }

    pub fn get(&self, index: u32) -> Result<Claim> {
        self.0
            .get(&index, 0)
            .with_context(|| format!("reading claim {index}"))
    }
}

/// Counters of a running xlb, from its pinned maps.
pub fn read_pinned_stats(dir: &Path) -> Result<Stats> {
    fn open<T>(dir: &Path, name: &str, wrap: fn(MapData) -> aya::maps::Map) -> Result<T>
    where
        T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
    {
        let path = dir.join(name);
        let data = MapData::from_pin(&path).with_context(|| {
            format!(
                "opening {} (is xlb running on this interface?)",
                path.display()
            )
        })?;
        T::try_from(wrap(data)).with_context(|| format!("map {name} has an unexpected type"))
    }
    let vips = open(dir, names::VIPS, aya::maps::Map::Array)?;
    let control = open(dir, names::CONTROL, aya::maps::Map::Array)?;
    let backends = open(dir, names::BACKENDS, aya::maps::Map::Array)?;
    let vip_stats = open(dir, names::VIP_STATS, aya::maps::Map::PerCpuArray)?;
    let backend_stats = open(dir, names::BACKEND_STATS, aya::maps::Map::PerCpuArray)?;
    let outcomes = open(dir, names::OUTCOMES, aya::maps::Map::PerCpuArray)?;
    let flow_events = open(dir, names::FLOW_EVENTS, aya::maps::Map::PerCpuArray)?;
    stats::read(stats::CounterMaps {
        vips: &vips,
        control: &control,
        backends: &backends,
        vip_stats: &vip_stats,
        backend_stats: &backend_stats,
        outcomes: &outcomes,
        flow_events: &flow_events,
    })
}

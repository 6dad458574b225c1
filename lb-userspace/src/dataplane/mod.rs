//! The XDP program and its maps: loading, attaching, pinning, and typed access to every map.
//!
//! Nothing but the reconciler writes to these maps; the status path only reads the counters.

mod batch;
mod clock;
mod mapped;
mod observe;
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
    Addr, Backend, CLAIM_STATIC, Claim, Control, Counters, DEFAULT_FLOW_TABLE_SIZE,
    DEFAULT_MAGLEV_TABLE_SIZE, MemberSlot, NO_MEMBER, NatReply, NatSource, VipAddrValue, VipSlot,
    names, ring_chunks,
};
pub use mapped::MappedArray;
use observe::ObservedMaps;
pub use observe::{FlowEntry, Observer};
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
    vips: MappedArray<VipSlot>,
    vip_filter: MappedArray<u64>,
    vip_addrs: HashMap<MapData, Addr, VipAddrValue>,
    nat_sources: HashMap<MapData, NatSource, NatReply>,
    nat_filter: MappedArray<u64>,
    claims: Array<MapData, Claim>,
    /// Another descriptor of the claims map, for [`Dataplane::claims_handle`].
    claims_fd: std::os::fd::OwnedFd,
    /// Every Maglev table's entries, end to end.
    rings: MappedArray<u16>,
    members: MappedArray<MemberSlot>,
    backends: Array<MapData, Backend>,
    /// The same map, for reading every entry at once.
    backend_entries: MappedArray<Backend>,
    tx_ports: DevMapHash<MapData>,
    control: Array<MapData, Control>,
    vip_stats: PerCpuArray<MapData, Counters>,
    backend_stats: PerCpuArray<MapData, Counters>,
    /// Descriptors of the maps status requests read, for [`Dataplane::observer`].
    observed: ObservedMaps,
    observer: Observer,
    clock: Clock,
    maglev_size: u32,
    pin_dir: Option<PathBuf>,
    /// The interfaces the program is attached to.
    attached: Vec<String>,
}

/// Choices made when the program is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Entries of the flow table (connection tracking). A pinned table keeps its size.
    pub flow_table_size: u32,
    /// Entries of every Maglev table (one of [`lb_common::MAGLEV_TABLE_SIZES`]).
    pub maglev_size: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
            maglev_size: DEFAULT_MAGLEV_TABLE_SIZE,
        }
    }
}

/// An array map of the object, mapped into this process.
fn take_mapped<T: Copy>(ebpf: &mut Ebpf, name: &str) -> Result<MappedArray<T>> {
    match ebpf.take_map(name) {
        Some(aya::maps::Map::Array(data)) => MappedArray::new(data, name),
        Some(_) => bail!("map {name} is not an array"),
        None => bail!("the XDP object has no map {name}"),
    }
}

/// A descriptor of its own on a map of the object, whatever its type.
fn map_fd(ebpf: &Ebpf, name: &str) -> Result<std::os::fd::OwnedFd> {
    use aya::maps::Map;
    use std::os::fd::AsFd as _;
    let data = match ebpf
        .map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?
    {
        Map::Array(d) | Map::PerCpuArray(d) | Map::HashMap(d) | Map::LruHashMap(d) => d,
        _ => bail!("map {name} has an unexpected type"),
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .with_context(|| format!("duplicating map {name}"))
}

/// Another handle on a map of the object (aya hands each map out once).
fn reopen(ebpf: &Ebpf, name: &str) -> Result<MapData> {
    use std::os::fd::AsFd as _;
    let map = ebpf
        .map(name)
        .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?;
    let data = match map {
        aya::maps::Map::Array(data) => data,
        _ => bail!("map {name} is not an array"),
    };
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .with_context(|| format!("duplicating map {name}"))?;
    MapData::from_fd(fd).with_context(|| format!("opening map {name}"))
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

/// Whether the pins in `dir` were made by a program with these maps: key, value and entry
/// counts as this object declares them (the ring map as `ring_entries` says; the flow table's
/// size is the operator's, and a pinned one keeps it). `Err` names the first that differs.
fn pins_fit(dir: &Path, ring_entries: u32, maglev_size: u32) -> Result<(), String> {
    let object = aya_obj::Object::parse(XLB_OBJECT).map_err(|e| format!("parsing: {e}"))?;
    for name in MAP_NAMES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let declared = object
            .maps
            .get(name)
            .ok_or_else(|| format!("the XDP object has no map {name}"))?;
        let entries = match name {
            names::RINGS => ring_entries,
            _ => declared.max_entries(),
        };
        let pinned = aya::maps::MapInfo::from_pin(&path).map_err(|e| format!("{name}: {e}"))?;
        if name == names::CONTROL
            && let Some(pinned_size) = pinned_maglev_size(&path)
            && pinned_size != 0
            && pinned_size != maglev_size
        {
            return Err(format!(
                "its Maglev tables have {pinned_size} entries, the config asks for {maglev_size}"
            ));
        }
        let fits = pinned.key_size() == declared.key_size()
            && pinned.value_size() == declared.value_size()
            && (name == names::FLOWS || pinned.max_entries() == entries);
        if !fits {
            return Err(format!(
                "{name} has another layout (key {} value {} entries {}; this xlb: {} {} {})",
                pinned.key_size(),
                pinned.value_size(),
                pinned.max_entries(),
                declared.key_size(),
                declared.value_size(),
                entries
            ));
        }
    }
    Ok(())
}

/// The table size the control word pinned at `path` records, if it can be read.
fn pinned_maglev_size(path: &Path) -> Option<u32> {
    let data = MapData::from_pin(path).ok()?;
    let control: Array<MapData, Control> = Array::try_from(aya::maps::Map::Array(data)).ok()?;
    control.get(&0, 0).ok().map(|c| c.maglev_size)
}

impl Dataplane {
    /// Loads the program. With `pin_dir`, every map lives pinned there: maps already pinned
    /// (by a previous xlb) are reused with their contents, the others are created and pinned.
    pub fn load(pin_dir: Option<&Path>, options: LoadOptions) -> Result<Self> {
        bump_memlock_rlimit();
        let mut loader = EbpfLoader::new();
        let ring_entries = ring_chunks(options.maglev_size);
        loader.map_max_entries(names::FLOWS, options.flow_table_size.max(1));
        loader.map_max_entries(names::RINGS, ring_entries);
        let paths: Vec<(&str, PathBuf)> = match pin_dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .with_context(|| format!("creating pin directory {}", dir.display()))?;
                // Pins of another layout (another xlb version, another table size) cannot be
                // adopted piecemeal: maps that point into each other must agree.
                if let Err(why) = pins_fit(dir, ring_entries, options.maglev_size) {
                    log::warn!(
                        "not adopting the pins in {}: {why}; starting clean",
                        dir.display()
                    );
                    pins::remove_pin_set(dir)?;
                }
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
        let observed = ObservedMaps {
            vips: map_fd(&ebpf, names::VIPS)?,
            control: map_fd(&ebpf, names::CONTROL)?,
            backends: map_fd(&ebpf, names::BACKENDS)?,
            vip_stats: map_fd(&ebpf, names::VIP_STATS)?,
            backend_stats: map_fd(&ebpf, names::BACKEND_STATS)?,
            outcomes: map_fd(&ebpf, names::OUTCOMES)?,
            flow_events: map_fd(&ebpf, names::FLOW_EVENTS)?,
            flows: map_fd(&ebpf, names::FLOWS)?,
        };
        let observer = Observer::new(observed.try_clone()?)?;
        let backend_entries = MappedArray::new(reopen(&ebpf, names::BACKENDS)?, names::BACKENDS)?;
        Ok(Self {
            vips: take_mapped(&mut ebpf, names::VIPS)?,
            vip_filter: take_mapped(&mut ebpf, names::VIP_FILTER)?,
            vip_addrs: take(&mut ebpf, names::VIP_ADDRS)?,
            nat_sources: take(&mut ebpf, names::NAT_SOURCES)?,
            nat_filter: take_mapped(&mut ebpf, names::NAT_FILTER)?,
            rings: take_mapped(&mut ebpf, names::RINGS)?,
            members: take_mapped(&mut ebpf, names::MEMBERS)?,
            backends: take(&mut ebpf, names::BACKENDS)?,
            backend_entries,
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
            observed,
            observer,
            clock,
            maglev_size: options.maglev_size,
            ebpf,
            pin_dir: pin_dir.map(Path::to_path_buf),
            attached: Vec::new(),
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
            vip_slots: self.vips.read(0, self.vips.len()),
            vip_filter: self.vip_filter.read(0, self.vip_filter.len()),
            ..Default::default()
        };
        for entry in self.vip_addrs.iter() {
            state
                .vip_addrs
                .push(entry.context("reading the VIP address map")?);
        }
        for entry in self.nat_sources.iter() {
            state
                .nat_sources
                .push(entry.context("reading the NAT source map")?);
        }
        state.nat_filter = self.nat_filter.read(0, self.nat_filter.len());
        state.static_claim = self.claim(CLAIM_STATIC)?;
        for id in 0..self.backend_entries.len() {
            let Some(backend) = self.backend_entries.get(id) else {
                break;
            };
            state.max_generation = state.max_generation.max(backend.generation);
            if backend.flags & lb_common::BACKEND_F_VALID != 0 {
                state.backends.push((id as u32, backend));
            }
        }
        // How long each live member block is: one more than the largest position its table
        // names (tables hold positions only).
        let live = state.control.live_vip_half() as usize * lb_common::VIP_SLOTS as usize;
        let m = self.maglev_size as usize;
        for slot in state.vip_slots[live..live + lb_common::VIP_SLOTS as usize]
            .iter()
            .filter(|s| s.key.proto != 0)
        {
            let table = self.rings.read(slot.value.ring as usize, m);
            let len = table
                .iter()
                .filter(|&&p| p != NO_MEMBER)
                .map(|&p| u32::from(p) + 1)
                .max()
                .unwrap_or(0);
            let block = state.member_blocks.entry(slot.value.members).or_default();
            *block = (*block).max(len);
        }
        Ok(state)
    }

    /// Entries of every Maglev table.
    pub fn maglev_size(&self) -> u32 {
        self.maglev_size
    }

    /// A table slot's entries as the data plane holds them.
    pub fn table(&self, slot: u32) -> Vec<u16> {
        let m = self.maglev_size as usize;
        self.rings.read(slot as usize * m, m)
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
        self.attach_pinned(interface, mode, LINK_PIN)
    }

    /// [`Self::attach`] to another interface the instance serves (NAT's server side), its link
    /// pinned as `link-IFACE`. A pinned link attached elsewhere (the interface was re-created)
    /// is replaced.
    pub fn attach_also(&mut self, interface: &str, mode: XdpMode, ifindex: u32) -> Result<()> {
        let name = pins::link_pin(interface, false);
        if let Some(dir) = &self.pin_dir
            && let Some(why) = pins::foreign_link(&dir.join(&name), ifindex)
        {
            log::warn!("not adopting the XDP link pinned for {interface}: {why}");
            let _ = fs::remove_file(dir.join(&name));
        }
        self.attach_pinned(interface, mode, &name)
    }

    fn attach_pinned(&mut self, interface: &str, mode: XdpMode, pin: &str) -> Result<()> {
        let pin_dir = self.pin_dir.clone();
        let program = self.program()?;
        if let Some(path) = pin_dir.as_ref().map(|d| d.join(pin))
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
                    self.attached.push(interface.to_string());
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
            let path = dir.join(pin);
            let _ = fs::remove_file(&path);
            link.pin(&path)
                .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
        }
        self.attached.push(interface.to_string());
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
    pub fn claims_handle(&self) -> Result<ClaimWriter> {
        let fd = self
            .claims_fd
            .try_clone()
            .context("duplicating the claims map")?;
        let data = MapData::from_fd(fd).context("opening the claims map")?;
        Ok(ClaimWriter(
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
        self.observer.stats()
    }

    /// A reader of the counters and the flow table with descriptors of its own, for another
    /// thread.
    pub fn observer(&self) -> Result<Observer> {
        Observer::new(self.observed.try_clone()?)
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

    fn write_table(&mut self, table: u32, entries: &[u16]) -> Result<()> {
        if entries.len() != self.maglev_size as usize {
            bail!(
                "a table of {} entries, the data plane's have {}",
                entries.len(),
                self.maglev_size
            );
        }
        self.rings
            .write(table as usize * self.maglev_size as usize, entries)
            .with_context(|| format!("writing Maglev table {table}"))
    }

    fn write_members(&mut self, base: u32, backends: &[u32]) -> Result<()> {
        let slots: Vec<MemberSlot> = backends
            .iter()
            .map(|&backend| MemberSlot { backend, _pad: 0 })
            .collect();
        self.members
            .write(base as usize, &slots)
            .with_context(|| format!("writing the member block at {base}"))
    }

    fn write_vip_slot(&mut self, index: u32, slot: &VipSlot) -> Result<()> {
        self.vips
            .write(index as usize, std::slice::from_ref(slot))
            .with_context(|| format!("writing VIP table slot {index}"))
    }

    fn set_vip_filter(&mut self, word: u32, bits: u64) -> Result<()> {
        self.vip_filter
            .write(word as usize, &[bits])
            .context("writing the VIP address filter")
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

    fn set_nat_source(&mut self, source: &NatSource, reply: &NatReply) -> Result<()> {
        self.nat_sources
            .insert(source, reply, 0)
            .context("writing a NAT real server")
    }

    fn remove_nat_source(&mut self, source: &NatSource) -> Result<()> {
        self.nat_sources
            .remove(source)
            .context("removing a NAT real server")
    }

    fn set_nat_filter(&mut self, word: u32, bits: u64) -> Result<()> {
        self.nat_filter
            .write(word as usize, &[bits])
            .context("writing the NAT source filter")
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
            .map(|(v, b)| v.plus(b))
            .collect();
        let sums = PerCpuValues::try_from(sums).context("per-CPU counters")?;
        self.vip_stats
            .set(vip_id, sums, 0)
            .with_context(|| format!("writing VIP counters {vip_id}"))?;
        self.reset_counters(CounterKind::Backend, backend_id)
    }
}

/// The claims map, as the VRRP thread holds it: the only writer of its instances' claims
/// besides the reconciler's withdrawals, so that a lease is renewed on the real-time thread
/// that sends the adverts and by nothing else.
pub struct ClaimWriter(Array<MapData, Claim>);

impl ClaimWriter {
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
    Observer::from_pins(dir)?.stats()
}

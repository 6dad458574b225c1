//! Array maps created with `BPF_F_MMAPABLE`, mapped into this process: the control plane writes
//! a whole Maglev table, member block or half of the VIP table at memory speed, where one
//! `bpf()` call per entry would take seconds for a few thousand services.
//!
//! Only entries no packet can reach are written this way (a spare table slot, an idle half);
//! they go live through a map update (the control word's flip), after a fence.

use std::{
    marker::PhantomData,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use anyhow::{Context as _, Result, bail};
use aya::maps::MapData;

const BPF_F_MMAPABLE: u32 = 1 << 10;

/// An array map as a slice of `T`: values of `T` laid end to end (the map's value is a
/// multiple of `T`'s size and of 8 bytes, so the kernel pads nothing between them).
pub struct MappedArray<T> {
    ptr: NonNull<T>,
    len: usize,
    bytes: usize,
    /// Keeps the map open; the mapping itself holds it too.
    _map: MapData,
    _marker: PhantomData<T>,
}

// SAFETY: the mapping is plain shared memory; `&mut self` methods serialize this process's
// writes, and the XDP program only reads.
unsafe impl<T: Send> Send for MappedArray<T> {}

impl<T: Copy> MappedArray<T> {
    pub fn new(map: MapData, name: &str) -> Result<Self> {
        let info = map.info().with_context(|| format!("reading map {name}"))?;
        if info.map_flags() & BPF_F_MMAPABLE == 0 {
            bail!("map {name} cannot be mapped (no BPF_F_MMAPABLE)");
        }
        let value = info.value_size() as usize;
        let size = size_of::<T>();
        if !value.is_multiple_of(8) || !value.is_multiple_of(size) {
            bail!("map {name}: {value}-byte values do not hold whole {size}-byte entries");
        }
        let data = value * info.max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = data.div_ceil(page) * page;
        // SAFETY: a shared mapping of the map's fd, of the size the kernel gives its values.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mapping map {name} ({bytes} bytes)"));
        }
        let ptr = NonNull::new(ptr.cast::<T>()).context("mmap returned null")?;
        Ok(Self {
            ptr,
            len: data / size,
            bytes,
            _map: map,
            _marker: PhantomData,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, index: usize) -> Option<T> {
        // SAFETY: in bounds; volatile, as the kernel may write too.
        (index < self.len).then(|| unsafe { self.ptr.as_ptr().add(index).read_volatile() })
    }

    /// Writes `values` from `start`.
    pub fn write(&mut self, start: usize, values: &[T]) -> Result<()> {
        if start
            .checked_add(values.len())
            .is_none_or(|end| end > self.len)
        {
            bail!(
                "writing {} entries at {start} of a {}-entry map",
                values.len(),
                self.len
            );
        }
        // SAFETY: in bounds, checked above; the source is a separate allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                self.ptr.as_ptr().add(start),
                values.len(),
            )
        };
        Ok(())
    }

    /// Entries `start..start + len`, copied out.
    pub fn read(&self, start: usize, len: usize) -> Vec<T> {
        (start..start.saturating_add(len).min(self.len))
            .filter_map(|i| self.get(i))
            .collect()
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

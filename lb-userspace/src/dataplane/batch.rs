//! Reading a whole map in a few `bpf()` calls (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6) rather than
//! one per entry: 65,536 backend counters or a flow table of millions would otherwise cost as
//! many system calls on every status request. aya has no wrapper for it yet.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call. A hash map answers whole buckets, so a bucket longer than this
/// fails with ENOSPC and the call is retried with room for more.
const CHUNK: usize = 4096;
const MAX_CHUNK: usize = 1 << 16;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `each(key, value)` for every entry of the map, in the kernel's order. `value_size` is
/// what the kernel copies per entry: for a per-CPU map, the value rounded up to 8 bytes times
/// the possible CPUs.
pub fn for_each(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    mut each: impl FnMut(&[u8], &[u8]),
) -> io::Result<()> {
    let mut chunk = CHUNK;
    let mut keys = vec![0u8; key_size * chunk];
    let mut values = vec![0u8; value_size * chunk];
    // The position to go on from: the kernel writes a key (arrays) or a bucket number (hash
    // maps) there; 8 bytes hold either for the maps xlb has, 64 leave room.
    let mut position = [0u8; 64];
    let mut next = [0u8; 64];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { position.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: the buffers hold `count` keys and values of the sizes given, and outlive the
        // call; the kernel writes at most that.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let error = (rc < 0).then(io::Error::last_os_error);
        match error.as_ref().and_then(io::Error::raw_os_error) {
            Some(libc::ENOSPC) if chunk < MAX_CHUNK => {
                chunk *= 4;
                keys.resize(key_size * chunk, 0);
                values.resize(value_size * chunk, 0);
                continue;
            }
            None | Some(libc::ENOENT) => {}
            Some(_) => return Err(error.unwrap_or_else(io::Error::last_os_error)),
        }
        let count = (attr.count as usize).min(chunk);
        for i in 0..count {
            each(
                &keys[i * key_size..(i + 1) * key_size],
                &values[i * value_size..(i + 1) * value_size],
            );
        }
        if error.is_some() {
            // ENOENT: that was the last of them.
            return Ok(());
        }
        position = next;
        first = false;
    }
}

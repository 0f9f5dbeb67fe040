//! What the GPU ran, with device timestamps: every kernel, copy and memset between
//! [`Recorder::start`] and [`Recorder::stop`], from CUPTI's activity API (NVIDIA's profiling
//! interface, `libcupti`, loaded at run time). Kernels are recorded as `CONCURRENT_KERNEL`
//! activities, which do not serialise them (Nsight Compute does), at the clocks the run has.

/// One span of GPU work.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub kind: ActivityKind,
    /// The kernel's name as compiled (C++ names mangled), or "memcpy HtoD" and the like.
    pub name: String,
    /// Device timestamps in ns (CUPTI's clock, one per process).
    pub start_ns: u64,
    pub end_ns: u64,
    pub stream: u32,
    /// Bytes copied or set (0 for kernels).
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Kernel,
    Memcpy,
    Memset,
}

#[cfg(feature = "cuda")]
pub use cupti::{available, Recorder};
#[cfg(not(feature = "cuda"))]
pub use no_cuda::Recorder;

/// Without CUDA nothing runs on a GPU to record: [`Recorder::start`] says so, and no `Recorder`
/// can exist (its methods are for the code that would use one).
#[cfg(not(feature = "cuda"))]
mod no_cuda {
    use super::Activity;

    pub struct Recorder(std::convert::Infallible);

    impl Recorder {
        pub fn start() -> Result<Self, String> {
            Err("needs a CUDA build (cargo build --release --features cuda)".into())
        }
        pub fn now_ns(&self) -> Result<u64, String> {
            match self.0 {}
        }
        pub fn stop(self, _from_ns: u64) -> Result<(Vec<Activity>, usize), String> {
            match self.0 {}
        }
    }
}

#[cfg(feature = "cuda")]
mod cupti {
    use super::{Activity, ActivityKind};
    use cudarc::cupti::result::{activity, subscribe, unsubscribe};
    use cudarc::cupti::sys::{self, CUpti_ActivityKind as Kind};
    use std::alloc::{alloc, dealloc, Layout};
    use std::sync::Mutex;

    /// The records delivered so far, and how many CUPTI dropped (buffers full).
    static RECORDS: Mutex<(Vec<Activity>, usize)> = Mutex::new((Vec::new(), 0));
    const BUFFER: usize = 8 << 20;
    const KINDS: [Kind; 3] = [Kind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, Kind::CUPTI_ACTIVITY_KIND_MEMCPY, Kind::CUPTI_ACTIVITY_KIND_MEMSET];

    // The leading fields of CUPTI's activity records, which every record version since CUDA 10
    // shares (the versions differ after them); `tests::prefixes_match_cuptis_records` checks the
    // offsets against the bindings of the CUDA version the crate is built for.
    #[repr(C)]
    struct KernelPrefix {
        kind: u32,
        cache_config: u8,
        shared_memory_config: u8,
        registers_per_thread: u16,
        partitioned_requested: u32,
        partitioned_executed: u32,
        start: u64,
        end: u64,
        completed: u64,
        device_id: u32,
        context_id: u32,
        stream_id: u32,
        grid: [i32; 3],
        block: [i32; 3],
        static_shared: i32,
        dynamic_shared: i32,
        local_per_thread: u32,
        local_total: u32,
        correlation_id: u32,
        grid_id: i64,
        name: *const std::ffi::c_char,
    }
    #[repr(C)]
    struct CopyPrefix {
        kind: u32,
        copy_kind: u8,
        src_kind: u8,
        dst_kind: u8,
        flags: u8,
        bytes: u64,
        start: u64,
        end: u64,
        device_id: u32,
        context_id: u32,
        stream_id: u32,
    }
    #[repr(C)]
    struct SetPrefix {
        kind: u32,
        value: u32,
        bytes: u64,
        start: u64,
        end: u64,
        device_id: u32,
        context_id: u32,
        stream_id: u32,
    }

    extern "C" fn requested(buffer: *mut *mut u8, size: *mut usize, max_records: *mut usize) {
        // SAFETY: CUPTI hands the buffer back to `completed`, which frees it with this layout
        unsafe {
            *buffer = alloc(Layout::from_size_align(BUFFER, 8).expect("layout"));
            *size = if (*buffer).is_null() { 0 } else { BUFFER };
            *max_records = 0;
        }
    }

    extern "C" fn completed(ctx: cudarc::driver::sys::CUcontext, stream: u32, buffer: *mut u8, _size: usize, valid: usize) {
        if buffer.is_null() {
            return;
        }
        let mut got = Vec::new();
        let mut record: *mut sys::CUpti_Activity = std::ptr::null_mut();
        // SAFETY: CUPTI wrote `valid` bytes of records into the buffer; each pointer it returns
        // points at a whole record of the kind its first field names
        while unsafe { activity::get_next_record(buffer, valid, &mut record) }.is_ok() {
            if let Some(a) = unsafe { parse(record) } {
                got.push(a);
            }
        }
        let mut dropped = 0usize;
        // SAFETY: the buffer's own context and stream, as CUPTI passed them
        let _ = unsafe { activity::get_num_dropped_records(ctx, stream, &mut dropped) };
        let mut r = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
        r.0.extend(got);
        r.1 += dropped;
        // SAFETY: allocated by `requested` with this layout
        unsafe { dealloc(buffer, Layout::from_size_align(BUFFER, 8).expect("layout")) };
    }

    /// SAFETY: `record` points at a whole CUPTI activity record.
    unsafe fn parse(record: *const sys::CUpti_Activity) -> Option<Activity> {
        let kind = unsafe { *(record as *const u32) };
        if kind == Kind::CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL as u32 || kind == Kind::CUPTI_ACTIVITY_KIND_KERNEL as u32 {
            let k = unsafe { &*(record as *const KernelPrefix) };
            let name = if k.name.is_null() { "?".into() } else { unsafe { std::ffi::CStr::from_ptr(k.name) }.to_string_lossy().into_owned() };
            return Some(Activity { kind: ActivityKind::Kernel, name, start_ns: k.start, end_ns: k.end, stream: k.stream_id, bytes: 0 });
        }
        if kind == Kind::CUPTI_ACTIVITY_KIND_MEMCPY as u32 {
            let c = unsafe { &*(record as *const CopyPrefix) };
            let name = format!("memcpy {}", copy_kind(c.copy_kind));
            return Some(Activity { kind: ActivityKind::Memcpy, name, start_ns: c.start, end_ns: c.end, stream: c.stream_id, bytes: c.bytes });
        }
        if kind == Kind::CUPTI_ACTIVITY_KIND_MEMSET as u32 {
            let s = unsafe { &*(record as *const SetPrefix) };
            return Some(Activity { kind: ActivityKind::Memset, name: "memset".into(), start_ns: s.start, end_ns: s.end, stream: s.stream_id, bytes: s.bytes });
        }
        None
    }

    /// CUpti_ActivityMemcpyKind's names for the directions that occur.
    fn copy_kind(k: u8) -> &'static str {
        match k {
            1 => "HtoD",
            2 => "DtoH",
            8 => "DtoD",
            10 => "PtoP",
            _ => "other",
        }
    }

    /// Whether CUPTI's library can be loaded (what [`Recorder::start`] needs first).
    pub fn available() -> bool {
        // SAFETY: only tries to open the library
        unsafe { sys::is_culib_present() }
    }

    /// Records the GPU's activity of this process until [`Recorder::stop`] (or until dropped,
    /// which discards what it recorded). One at a time.
    pub struct Recorder {
        subscriber: sys::CUpti_SubscriberHandle,
    }

    impl Recorder {
        /// Loads CUPTI and starts recording. Errors if `libcupti` is not found (it ships with
        /// the CUDA toolkit under `extras/CUPTI/lib64`, and as the `nvidia-cuda-cupti` wheel) or
        /// another profiler holds CUPTI.
        pub fn start() -> Result<Self, String> {
            if !available() {
                return Err("CUPTI (libcupti.so) not found: add the directory holding it (the CUDA toolkit's extras/CUPTI/lib64) to LD_LIBRARY_PATH".into());
            }
            let mut subscriber: sys::CUpti_SubscriberHandle = std::ptr::null_mut();
            // SAFETY: no callback (activities only); the handle lives in the Recorder
            unsafe { subscribe(&mut subscriber, None, std::ptr::null_mut()) }.map_err(|e| format!("CUPTI is in use (another profiler attached?): {e:?}"))?;
            *RECORDS.lock().unwrap_or_else(|e| e.into_inner()) = (Vec::new(), 0);
            let started = activity::register_callbacks(Some(requested), Some(completed)).and_then(|_| KINDS.iter().try_for_each(|&k| activity::enable(k)));
            if let Err(e) = started {
                // SAFETY: subscribed above
                let _ = unsafe { unsubscribe(subscriber) };
                return Err(format!("CUPTI refused to record: {e:?}"));
            }
            Ok(Recorder { subscriber })
        }

        /// Now on the activities' clock: with the device synced, work queued after this starts
        /// later (what [`Recorder::stop`] keeps).
        pub fn now_ns(&self) -> Result<u64, String> {
            let mut t = 0u64;
            // SAFETY: writes one u64
            unsafe { cudarc::cupti::result::get_timestamp(&mut t) }.map_err(|e| format!("CUPTI timestamp: {e:?}"))?;
            Ok(t)
        }

        /// Stops recording (after the work to record is finished: sync the device first) and
        /// returns the activities that started at or after `from_ns` ([`Recorder::now_ns`]; 0 for
        /// all) in start order, and how many records CUPTI dropped.
        pub fn stop(self, from_ns: u64) -> Result<(Vec<Activity>, usize), String> {
            // no new records, then the buffers CUPTI holds delivered
            for k in KINDS {
                let _ = activity::disable(k);
            }
            let flushed = activity::flush_all(sys::CUpti_ActivityFlag::CUPTI_ACTIVITY_FLAG_FLUSH_FORCED as u32);
            drop(self);
            flushed.map_err(|e| format!("CUPTI flush: {e:?}"))?;
            let (mut all, dropped) = std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|e| e.into_inner()));
            all.retain(|a| a.start_ns >= from_ns);
            all.sort_by_key(|a| a.start_ns);
            Ok((all, dropped))
        }
    }

    impl Drop for Recorder {
        /// Stops recording and unsubscribes (also when the recorded work failed), so that a later
        /// [`Recorder::start`] finds CUPTI free.
        fn drop(&mut self) {
            for k in KINDS {
                let _ = activity::disable(k);
            }
            // SAFETY: subscribed in `start`, unsubscribed only here
            let _ = unsafe { unsubscribe(self.subscriber) };
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::mem::offset_of;

        /// Each field of ours at the offset of CUPTI's field of that name.
        macro_rules! same_offsets {
            ($ours:ty, $theirs:ty: $($a:ident = $b:ident),*) => {
                $(assert_eq!(offset_of!($ours, $a), offset_of!($theirs, $b), concat!(stringify!($theirs), ".", stringify!($b)));)*
            };
        }

        #[test]
        fn prefixes_match_cuptis_records() {
            // versions that every CUDA from 12.0 to 13.4 has bindings for
            same_offsets!(KernelPrefix, sys::CUpti_ActivityKernel9: start = start, end = end, stream_id = streamId, correlation_id = correlationId, name = name);
            same_offsets!(CopyPrefix, sys::CUpti_ActivityMemcpy5: copy_kind = copyKind, bytes = bytes, start = start, end = end, stream_id = streamId);
            same_offsets!(SetPrefix, sys::CUpti_ActivityMemset4: bytes = bytes, start = start, end = end, stream_id = streamId);
            assert_eq!(sys::CUpti_ActivityMemcpyKind::CUPTI_ACTIVITY_MEMCPY_KIND_HTOD as u8, 1);
            assert_eq!(sys::CUpti_ActivityMemcpyKind::CUPTI_ACTIVITY_MEMCPY_KIND_DTOH as u8, 2);
            assert_eq!(sys::CUpti_ActivityMemcpyKind::CUPTI_ACTIVITY_MEMCPY_KIND_DTOD as u8, 8);
            assert_eq!(sys::CUpti_ActivityMemcpyKind::CUPTI_ACTIVITY_MEMCPY_KIND_PTOP as u8, 10);
        }
    }
}

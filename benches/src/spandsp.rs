//! spandsp's DTMF receiver (`dtmf_rx`), bound by hand, as a speed reference for ours.
//!
//! Bench-only: spandsp is LGPL and never part of the product; this module exists only with the
//! `spandsp` feature of `callmask-benches`, and `build.rs` links `libspandsp` only then.
//!
//! Signatures from `/usr/include/spandsp/dtmf.h` (spandsp 0.0.6):
//! ```c
//! typedef void (*digits_rx_callback_t)(void *user_data, const char *digits, int len);
//! dtmf_rx_state_t *dtmf_rx_init(dtmf_rx_state_t *s, digits_rx_callback_t callback, void *user_data);
//! int dtmf_rx(dtmf_rx_state_t *s, const int16_t amp[], int samples);
//! int dtmf_rx_free(dtmf_rx_state_t *s);
//! ```
//!
//! Calling C needs `unsafe`, which the workspace lints deny; the exception is confined to this
//! module, which wraps the three calls in a safe owner type ([`SpandspDtmfRx`]).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::marker::{PhantomData, PhantomPinned};
use std::ptr::NonNull;

/// Opaque `dtmf_rx_state_t`.
#[repr(C)]
struct DtmfRxState {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

type DigitsRxCallback =
    unsafe extern "C" fn(user_data: *mut c_void, digits: *const c_char, len: c_int);

// Linked by build.rs (`cargo:rustc-link-lib=spandsp`), only with the `spandsp` feature.
extern "C" {
    fn dtmf_rx_init(
        s: *mut DtmfRxState,
        callback: Option<DigitsRxCallback>,
        user_data: *mut c_void,
    ) -> *mut DtmfRxState;
    fn dtmf_rx(s: *mut DtmfRxState, amp: *const i16, samples: c_int) -> c_int;
    fn dtmf_rx_free(s: *mut DtmfRxState) -> c_int;
}

/// Digit callback: counts the digits (the work a caller must do anyway, comparable to
/// draining our receiver's events). `user_data` is the `u64` counter owned by the wrapper.
unsafe extern "C" fn count_digits(user_data: *mut c_void, _digits: *const c_char, len: c_int) {
    // SAFETY: `user_data` is the `Box<u64>` owned by the `SpandspDtmfRx` that registered this
    // callback; spandsp only calls it from inside `dtmf_rx`, i.e. while `process` holds
    // `&mut self`, so the pointer is live and not aliased.
    let counter = unsafe { &mut *user_data.cast::<u64>() };
    *counter += u64::try_from(len).unwrap_or(0);
}

/// One spandsp DTMF receiver with default parameters (twist 8 dB, reverse twist 4 dB,
/// threshold −26 dBm0, no dial-tone filter) and a digit-counting callback.
#[derive(Debug)]
pub struct SpandspDtmfRx {
    state: NonNull<DtmfRxState>,
    digits: Box<u64>,
}

impl SpandspDtmfRx {
    /// Allocates and initialises a receiver (`dtmf_rx_init(NULL, ...)`).
    ///
    /// # Panics
    /// If spandsp fails to allocate.
    pub fn new() -> Self {
        let mut digits = Box::new(0u64);
        let user: *mut u64 = &mut *digits;
        // SAFETY: a null state asks spandsp to allocate one; the callback has the C signature
        // spandsp expects and `user` points to heap memory that outlives the state (both are
        // owned by `Self`, and `Drop` frees the state).
        let raw = unsafe { dtmf_rx_init(std::ptr::null_mut(), Some(count_digits), user.cast()) };
        let state = NonNull::new(raw).expect("dtmf_rx_init returned NULL");
        SpandspDtmfRx { state, digits }
    }

    /// Feeds samples (any length).
    pub fn process(&mut self, samples: &[i16]) {
        for chunk in samples.chunks(c_int::MAX as usize) {
            // SAFETY: `state` is a live receiver owned by `self`; `chunk` is valid for
            // `chunk.len()` reads and spandsp does not keep the pointer past the call.
            unsafe {
                dtmf_rx(self.state.as_ptr(), chunk.as_ptr(), chunk.len() as c_int);
            }
        }
    }

    /// Digits reported so far.
    pub fn digits(&self) -> u64 {
        *self.digits
    }
}

impl Default for SpandspDtmfRx {
    fn default() -> Self {
        SpandspDtmfRx::new()
    }
}

impl Drop for SpandspDtmfRx {
    fn drop(&mut self) {
        // SAFETY: the state was allocated by `dtmf_rx_init(NULL, ...)` and is freed once.
        unsafe {
            dtmf_rx_free(self.state.as_ptr());
        }
    }
}

/// Counts the digits spandsp reports in one pass over `frames` (fresh receiver).
pub fn count_spandsp_tones(frames: &[crate::Frame]) -> u64 {
    let mut rx = SpandspDtmfRx::new();
    for f in frames {
        rx.process(f);
    }
    rx.digits()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the binding and the generated input together: spandsp hears every burst.
    #[test]
    fn spandsp_hears_every_generated_burst() {
        let d = crate::dtmf_bursts();
        assert_eq!(
            count_spandsp_tones(&d.frames),
            crate::dtmf_burst_count() as u64
        );
        assert_eq!(count_spandsp_tones(&crate::silence().frames), 0);
    }
}

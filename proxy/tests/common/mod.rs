//! Helpers shared by the recorder sink tests (`recorder_sinks.rs`, `siprec_sink.rs`).

use std::path::{Path, PathBuf};

use callmask::core::media::tap::{TapEvent, TapFrame, TAP_FRAME_MAX};
use callmask::core::proxy::{CallRef, Side};

/// A fresh folder under the system temp dir, unique per process and call.
pub(crate) fn tmpdir(prefix: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "callmask-{prefix}-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

/// File names in `dir`, sorted (none when it does not exist).
pub(crate) fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// One tapped audio frame of `call`, as the relay hands it to the recorders.
pub(crate) fn frame(call: u64, from: Side, media_time: u64, samples: &[i16]) -> TapEvent {
    assert!(samples.len() <= TAP_FRAME_MAX);
    let mut pcm = [0i16; TAP_FRAME_MAX];
    pcm[..samples.len()].copy_from_slice(samples);
    TapEvent::Frame(Box::new(TapFrame {
        call: CallRef(call),
        from,
        media_time: dsp::MediaTime(media_time),
        len: samples.len(),
        pcm,
    }))
}

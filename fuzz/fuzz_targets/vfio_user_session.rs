#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vblk_vfio_user::fuzzing::session_stream(data));
